//! Reports, all in one place: what the admin asks after an attack and of the mail
//! traffic as a whole. [`bans`] (the banned hosts of a period, as text, CSV or HTML)
//! reads the store's rows or a replay; [`scan`] reads the whole mail log (sessions,
//! messages, logins) for [`tls`] (the TLS posture of all traffic) and [`trace`] (the
//! story of one message or client); [`replay`] renders what a replay decided.
//!
//! Nothing here decides or enforces: reports read what the layers below produced.

pub mod bans;
pub mod replay;
pub mod scan;
pub mod tls;
pub mod trace;
