//! The integration tests that run real parts as root: the kernel's nftables in network
//! namespaces the tests create and delete, real Postfix and Dovecot, the live daemon,
//! the Debian package. One test binary (the unprivileged ones are `tests/it`). Under CI
//! a test that cannot run here fails with its reason; elsewhere it is skipped visibly
//! (see `support::skip`).

#[path = "../support/mod.rs"]
mod support;

mod blocks;
mod daemon;
mod fleet;
mod hardening;
mod nft;
mod packaging;
mod postfix_map;
mod probe;
mod real_daemons;
