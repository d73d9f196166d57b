//! The dry-run enforcer: logs each ban at INFO and keeps it, touches nothing.

use super::{EnforceError, Enforcer};
use crate::ban::{Decision, target_string};

#[derive(Debug, Default)]
pub struct DryRun {
    pub bans: Vec<Decision>,
}

impl Enforcer for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn ban(&mut self, decisions: &[Decision]) -> Result<(), EnforceError> {
        for d in decisions {
            tracing::info!(net = %target_string(&d.target), until = %d.until.rfc3339(), reason = %d.reason, "ban (dry run)");
            self.bans.push(d.clone());
        }
        Ok(())
    }
}
