//! The integration tests that need nothing but the built binary and the library: one
//! test binary, so the library and its native dependencies are linked once (and the
//! profile-guided build's test, which needs cargo and llvm-profdata as well). The
//! privileged ones (network namespaces, nftables, real Postfix and Dovecot) are the
//! second binary, `tests/privileged`.

#[path = "../support/mod.rs"]
mod support;

mod blocks;
mod cli;
mod config;
mod conformance;
mod fixtures;
mod geo_alerts;
mod golden;
mod hostile_input;
mod maillog;
mod pgo;
mod pipeline;
mod report;
