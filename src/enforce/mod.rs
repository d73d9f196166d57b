//! Enforcers carry out ban decisions: nftables sets in the kernel, the Postfix access
//! map, and the dry run that `replay` uses. Each implements [`Enforcer`]; [`Enforcers`]
//! fans every ban, unban, expiry and check out to all of them and says which of them
//! failed at what, so the daemon can retry exactly what is owed.
//!
//! Adding an enforcer: one file here implementing [`Enforcer`], a variant of
//! [`EnforcerConfig`] that opens it, and its section in `config/`.

pub mod dry_run;
pub mod nft;
#[allow(unsafe_code)]
mod nft_sys;
pub mod postfix_map;

use crate::ban::{Decision, target_string};
use crate::block::Blocked;
use crate::time::Timestamp;
use ipnet::IpNet;
use nft::{Nft, NftConfig};
use postfix_map::{MapConfig, PostfixMap};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("{enforcer}: {message}")]
    Failed {
        enforcer: &'static str,
        message: String,
    },
}

impl EnforceError {
    pub fn failed(enforcer: &'static str, message: impl Into<String>) -> EnforceError {
        EnforceError::Failed {
            enforcer,
            message: message.into(),
        }
    }

    /// The message without the enforcer's name.
    pub fn message(&self) -> &str {
        match self {
            EnforceError::Failed { message, .. } => message,
        }
    }
}

/// What one enforcer did with a batch: the targets it refused, each with why. The
/// others are in force.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub refused: Vec<(IpNet, String)>,
}

pub trait Enforcer: Send {
    /// Short and fixed (`nftables`, `postfix-map`): in logs, metrics and `bans`.
    fn name(&self) -> &'static str;

    /// What it acts on (`table inet saslguard`, `cidr:/etc/postfix/saslguard_access`):
    /// two enforcers with the same description hold the same bans.
    fn describe(&self) -> String;

    /// Makes it hold exactly the bans in `active` that have time left at `now` (start,
    /// reload, a rebuilt table). Idempotent.
    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<Applied, EnforceError>;

    /// Adds or extends bans, each until its `until`, counted from `now`. A ban already
    /// in place is extended, not an error; one the enforcer refuses is in the result.
    fn ban(&mut self, decisions: &[Decision], now: Timestamp) -> Result<Applied, EnforceError>;

    /// Lifts bans; returns how many it held. A target it does not hold is no error.
    fn unban(&mut self, targets: &[IpNet]) -> Result<usize, EnforceError>;

    /// Drops what is over at `now` where nothing drops it by itself (the kernel expires
    /// set elements on its own; a map file does not); returns how many.
    fn expire(&mut self, _now: Timestamp) -> Result<usize, EnforceError> {
        Ok(0)
    }

    /// Checked every second: false when what it holds was lost outside saslguard (a
    /// flushed ruleset) and must be rebuilt with [`Enforcer::reconcile`].
    fn intact(&mut self) -> Result<bool, EnforceError> {
        Ok(true)
    }

    /// Puts back its own structure (a set or rule deleted by hand) before a retry.
    fn repair(&mut self) -> Result<(), EnforceError> {
        Ok(())
    }

    /// It is configured away: remove what it holds, so the bans it took no longer
    /// block once nothing can lift them.
    fn retire(&mut self, active: &[IpNet]) -> Result<(), EnforceError>;

    /// Loads the blocks (`[[block]]`: networks refused before any guess), each one
    /// replacing what it held in one step. An enforcer that cannot block ignores them.
    fn block(&mut self, _blocks: &[Blocked]) -> Result<(), EnforceError> {
        Ok(())
    }

    /// The networks that pass whatever a ban or a block says: the allowlist and this
    /// host's own addresses.
    fn allow(&mut self, _nets: &[IpNet]) -> Result<(), EnforceError> {
        Ok(())
    }

    /// Packets each block refused since its rules were put in place, by block name.
    fn block_counters(&mut self) -> Result<BTreeMap<String, u64>, EnforceError> {
        Ok(BTreeMap::new())
    }
}

/// One enforcer's configuration section; [`EnforcerConfig::open`] builds it.
#[derive(Debug, Clone, PartialEq)]
pub enum EnforcerConfig {
    Nftables(NftConfig),
    PostfixMap(MapConfig),
    /// Logs bans and touches nothing (`replay`).
    DryRun,
}

impl EnforcerConfig {
    pub fn open(&self) -> Result<Box<dyn Enforcer>, EnforceError> {
        Ok(match self {
            EnforcerConfig::Nftables(c) => Box::new(
                Nft::new(c.clone()).map_err(|e| EnforceError::failed("nftables", e.to_string()))?,
            ),
            EnforcerConfig::PostfixMap(c) => Box::new(PostfixMap::from_config(c)?),
            EnforcerConfig::DryRun => Box::new(dry_run::DryRun),
        })
    }
}

/// Something an enforcer could not do: a whole batch (`targets` all it was given) or
/// single targets it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub enforcer: &'static str,
    /// The targets it owes now (empty for an unban or an expiry).
    pub targets: Vec<IpNet>,
    /// The whole call failed (else: `targets` is the one target it refused).
    pub whole: bool,
    pub error: String,
}

impl Failure {
    /// A whole call of `enforcer` that failed, owing no single target.
    fn whole(enforcer: &'static str, error: String) -> Failure {
        Failure {
            enforcer,
            targets: Vec::new(),
            whole: true,
            error,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.whole, self.targets.first()) {
            (false, Some(t)) => {
                write!(f, "{}: {}: {}", self.enforcer, target_string(t), self.error)
            }
            _ => write!(f, "{}: {}", self.enforcer, self.error),
        }
    }
}

fn failures(
    enforcer: &'static str,
    r: Result<Applied, EnforceError>,
    all: &[IpNet],
) -> Vec<Failure> {
    match r {
        Ok(a) => a
            .refused
            .into_iter()
            .map(|(t, error)| Failure {
                enforcer,
                targets: vec![t],
                whole: false,
                error,
            })
            .collect(),
        Err(e) => vec![Failure {
            enforcer,
            targets: all.to_vec(),
            whole: true,
            error: e.message().to_string(),
        }],
    }
}

/// An enforcer that had lost its state and was rebuilt.
#[derive(Debug)]
pub struct Rebuilt {
    pub enforcer: &'static str,
    pub describe: String,
    /// Bans put back.
    pub bans: usize,
    /// Bans it refused again, with the others' failures.
    pub failures: Vec<Failure>,
}

/// Every configured enforcer, in configuration order.
#[derive(Default)]
pub struct Enforcers {
    list: Vec<(EnforcerConfig, Box<dyn Enforcer>)>,
}

impl Enforcers {
    /// Opens the enforcers of `configs` and puts every active ban in each. A ban an
    /// enforcer refuses does not stop the start (an older saslguard may have stored it);
    /// it is in the failures.
    pub fn open(
        configs: &[EnforcerConfig],
        active: &[Decision],
        now: Timestamp,
    ) -> Result<(Enforcers, Vec<Failure>), EnforceError> {
        let mut e = Enforcers::default();
        let mut failed = Vec::new();
        for c in configs {
            let (enf, f) = open_one(c, active, now)?;
            failed.extend(f);
            e.list.push((c.clone(), enf));
        }
        Ok((e, failed))
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Each enforcer's name and what it acts on, in order.
    pub fn described(&self) -> Vec<(&'static str, String)> {
        self.list
            .iter()
            .map(|(_, e)| (e.name(), e.describe()))
            .collect()
    }

    /// The enforcers' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|(_, e)| e.name()).collect()
    }

    /// Bans in every enforcer; what each one could not take is in the result.
    pub fn ban(&mut self, decisions: &[Decision], now: Timestamp) -> Vec<Failure> {
        let live: Vec<Decision> = decisions
            .iter()
            .filter(|d| d.until > now)
            .cloned()
            .collect();
        if live.is_empty() {
            return Vec::new();
        }
        let targets: Vec<IpNet> = live.iter().map(|d| d.target).collect();
        let mut out = Vec::new();
        for (_, e) in &mut self.list {
            out.extend(failures(e.name(), e.ban(&live, now), &targets));
        }
        out
    }

    /// Bans again, in the one enforcer named `enforcer` only, what it owes; its
    /// structure is repaired first (a set or rule deleted by hand is why bans fail).
    pub fn retry(
        &mut self,
        enforcer: &str,
        decisions: &[Decision],
        now: Timestamp,
    ) -> Vec<Failure> {
        let targets: Vec<IpNet> = decisions.iter().map(|d| d.target).collect();
        let Some((_, e)) = self.list.iter_mut().find(|(_, e)| e.name() == enforcer) else {
            return Vec::new();
        };
        if let Err(err) = e.repair() {
            tracing::warn!("{}: repair before a retry: {}", e.name(), err.message());
        }
        failures(e.name(), e.ban(decisions, now), &targets)
    }

    /// Lifts `targets` everywhere; returns whether any enforcer held one.
    pub fn unban(&mut self, targets: &[IpNet]) -> (bool, Vec<Failure>) {
        let mut held = false;
        let mut out = Vec::new();
        for (_, e) in &mut self.list {
            match e.unban(targets) {
                Ok(n) => held |= n > 0,
                Err(err) => out.push(Failure::whole(e.name(), err.message().to_string())),
            }
        }
        (held, out)
    }

    /// Loads the blocks into every enforcer that can block.
    pub fn block(&mut self, blocks: &[Blocked]) -> Vec<Failure> {
        self.each(|e| e.block(blocks))
    }

    /// Packets refused per block, summed over the enforcers that block; the failures of
    /// those that could not say.
    pub fn block_counters(&mut self) -> (BTreeMap<String, u64>, Vec<Failure>) {
        let mut sum = BTreeMap::new();
        let mut out = Vec::new();
        for (_, e) in &mut self.list {
            match e.block_counters() {
                Ok(m) => {
                    for (k, v) in m {
                        *sum.entry(k).or_insert(0) += v;
                    }
                }
                Err(err) => out.push(Failure::whole(e.name(), err.message().to_string())),
            }
        }
        (sum, out)
    }

    /// Tells every enforcer which networks always pass.
    pub fn allow(&mut self, nets: &[IpNet]) -> Vec<Failure> {
        self.each(|e| e.allow(nets))
    }

    fn each(
        &mut self,
        mut f: impl FnMut(&mut dyn Enforcer) -> Result<(), EnforceError>,
    ) -> Vec<Failure> {
        let mut out = Vec::new();
        for (_, e) in &mut self.list {
            if let Err(err) = f(e.as_mut()) {
                out.push(Failure::whole(e.name(), err.message().to_string()));
            }
        }
        out
    }

    /// Drops what is over where the enforcer must do it itself.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Failure> {
        self.each(|e| e.expire(now).map(drop))
    }

    /// Rebuilds every enforcer that lost what it held (checked every second), with
    /// `active`. Errors of the check itself are in the second list.
    pub fn heal(&mut self, active: &[Decision], now: Timestamp) -> (Vec<Rebuilt>, Vec<Failure>) {
        let mut rebuilt = Vec::new();
        let mut errors = Vec::new();
        let fail = |enforcer, what: &str, err: EnforceError| {
            Failure::whole(enforcer, format!("{what}: {}", err.message()))
        };
        for (_, e) in &mut self.list {
            match e.intact() {
                Ok(true) => {}
                Ok(false) => match e.reconcile(active, now) {
                    Ok(a) => {
                        let live = active.iter().filter(|d| d.until > now).count();
                        rebuilt.push(Rebuilt {
                            enforcer: e.name(),
                            describe: e.describe(),
                            bans: live - a.refused.len(),
                            failures: failures(e.name(), Ok(a), &[]),
                        })
                    }
                    Err(err) => errors.push(fail(e.name(), "rebuilding", err)),
                },
                Err(err) => errors.push(fail(e.name(), "checking", err)),
            }
        }
        (rebuilt, errors)
    }

    /// Takes a new configuration: an enforcer whose section did not change is kept as
    /// it is; a new or changed one is opened and given every active ban; one that is
    /// gone (or now acts on something else) is retired, so its bans do not go on
    /// blocking where `unban` no longer reaches. Nothing changes if a new one cannot be
    /// opened.
    pub fn reload(
        &mut self,
        configs: &[EnforcerConfig],
        active: &[Decision],
        now: Timestamp,
    ) -> Result<Vec<Failure>, EnforceError> {
        let mut opened = Vec::new();
        let mut failed = Vec::new();
        for c in configs {
            if self.list.iter().any(|(old, _)| old == c) {
                continue;
            }
            let (enf, f) = open_one(c, active, now)?;
            failed.extend(f);
            opened.push((c.clone(), enf));
        }
        let mut old = std::mem::take(&mut self.list);
        for c in configs {
            match old.iter().position(|(o, _)| o == c) {
                Some(i) => self.list.push(old.remove(i)),
                None => {
                    let i = opened
                        .iter()
                        .position(|(o, _)| o == c)
                        .expect("every new section was opened above");
                    self.list.push(opened.remove(i));
                }
            }
        }
        let targets: Vec<IpNet> = active.iter().map(|d| d.target).collect();
        for (_, mut gone) in old {
            let what = gone.describe();
            if self.list.iter().any(|(_, e)| e.describe() == what) {
                continue; // the same table or map, taken over by its new configuration
            }
            match gone.retire(&targets) {
                Ok(()) => tracing::warn!(
                    "{}: {what} retired, its bans moved to the new configuration",
                    gone.name()
                ),
                Err(e) => failed.push(Failure::whole(
                    gone.name(),
                    format!("retiring {what}: {}", e.message()),
                )),
            }
        }
        Ok(failed)
    }
}

fn open_one(
    c: &EnforcerConfig,
    active: &[Decision],
    now: Timestamp,
) -> Result<(Box<dyn Enforcer>, Vec<Failure>), EnforceError> {
    let mut enf = c.open()?;
    let a = enf.reconcile(active, now)?;
    let put = active.iter().filter(|d| d.until > now).count() - a.refused.len();
    if put > 0 {
        tracing::info!("{}: {put} bans put back in {}", enf.name(), enf.describe());
    }
    let f = failures(enf.name(), Ok(a), &[]);
    Ok((enf, f))
}
