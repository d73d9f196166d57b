//! saslguard: stops password guessers on Postfix and Dovecot mail servers.
//!
//! The library holds all the logic; the binary is a thin CLI over it. Modules, bottom
//! up: every one imports only from those above it in this list (ARCHITECTURE.md has
//! the picture and the recipes).
//!
//! [`time`], [`addr`], [`escape`], [`geo`], [`probe`] are leaves; [`parse`] turns one
//! line into at most one event; [`windows`] keeps the sliding windows; [`attempts`]
//! joins the records of one attempt; [`offender`] and [`posture`] describe what each
//! address did; [`ban`] is the ban vocabulary; [`policy`] and [`alert`] decide;
//! [`source`] reads and merges lines; [`enforce`] carries out bans; [`config`] reads
//! the file; [`pipeline`] is the one loop from stamped line to decisions; [`store`],
//! [`replay`] and [`report`] sit on it; [`daemon`] runs it live.

pub mod addr;
pub mod alert;
pub mod attempts;
pub mod ban;
pub mod block;
pub mod bounded;
pub mod config;
pub mod daemon;
pub mod enforce;
pub mod escape;
pub mod fleet;
pub mod geo;
pub mod offender;
pub mod parse;
pub mod pipeline;
pub mod policy;
pub mod posture;
pub mod probe;
pub mod replay;
pub mod report;
pub mod source;
pub mod store;
pub mod time;
pub mod windows;
