//! saslguard: stops password guessers on Postfix and Dovecot mail servers.
//!
//! The library holds all the logic, in the order of the data flow (see DESIGN.md):
//! [`source`] → [`parse`] → [`count`] (with [`session`]) → [`track`] → [`policy`] →
//! [`enforce`]; [`pipeline`] strings the synchronous middle together and [`replay`]
//! drives it over old logs. The binary is a thin CLI over it.

pub mod addr;
pub mod alert;
pub mod ban;
pub mod cli;
pub mod config;
pub mod count;
pub mod daemon;
pub mod enforce;
pub mod escape;
pub mod geo;
pub mod maillog;
pub mod offender;
pub mod parse;
pub mod pipeline;
pub mod policy;
pub mod probe;
pub mod replay;
pub mod report;
pub mod session;
pub mod source;
pub mod store;
pub mod time;
pub mod tls;
pub mod track;
