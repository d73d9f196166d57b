//! Enforcers carry out ban decisions: the dry-run enforcer that `replay` uses and the
//! Postfix access map; the nftables enforcer builds on the same trait.

pub mod dry_run;
pub mod nft;
#[allow(unsafe_code)]
mod nft_sys;
pub mod postfix_map;

use crate::ban::Decision;

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
