//! The dry-run enforcer: logs each ban at INFO, touches nothing. `replay` runs the
//! pipeline through it and reports the decisions it saw.

use super::{Applied, EnforceError, Enforcer};
use crate::ban::{Decision, target_string};
use crate::time::Timestamp;
use ipnet::IpNet;

#[derive(Debug, Default)]
pub struct DryRun;

impl Enforcer for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn describe(&self) -> String {
        "dry run".into()
    }

    fn reconcile(
        &mut self,
        _active: &[Decision],
        _now: Timestamp,
    ) -> Result<Applied, EnforceError> {
        Ok(Applied::default())
    }

    fn ban(&mut self, decisions: &[Decision], _now: Timestamp) -> Result<Applied, EnforceError> {
        for d in decisions {
            tracing::info!(net = %target_string(&d.target), until = %d.until.rfc3339(), reason = %d.reason, "ban (dry run)");
        }
        Ok(Applied::default())
    }

    fn unban(&mut self, _targets: &[IpNet]) -> Result<usize, EnforceError> {
        Ok(0)
    }

    fn retire(&mut self, _active: &[IpNet]) -> Result<(), EnforceError> {
        Ok(())
    }
}
