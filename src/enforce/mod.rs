//! Enforcers carry out ban decisions. This module holds the trait and the dry-run
//! enforcer that `replay` uses; the nftables and Postfix access-map enforcers build on
//! the same trait.

pub mod dry_run;

use crate::policy::Decision;

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("{enforcer}: {message}")]
    Failed {
        enforcer: &'static str,
        message: String,
    },
}

pub trait Enforcer {
    fn name(&self) -> &'static str;
    /// Applies bans (idempotently: a ban already in place is extended, not an error).
    fn ban(&mut self, decisions: &[Decision]) -> Result<(), EnforceError>;
}
