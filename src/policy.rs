//! Policy: turns counted failures into ban decisions.
//!
//! Rules are "N failures within T → ban for D", per address or per prefix. The
//! allowlist is checked first and wins always: an allowlisted address is never
//! banned, and no prefix that overlaps an allowlisted network is banned either (its
//! addresses are banned one by one instead). A target already banned is not decided
//! again until its ban ends. Each new ban of the same target within the escalation
//! memory lasts `factor` times longer than the one before, up to `max`.
//!
//! Pure: takes the tracker's view and the event time, returns decisions.

use crate::time::Timestamp;
use crate::track::{Tracker, prefix_of};
use ipnet::IpNet;
use lru::LruCache;
use serde::{Serialize, Serializer};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroUsize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Address,
    Prefix,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub scope: Scope,
    pub failures: u32,
    pub within_ms: i64,
    pub ban_ms: i64,
    /// Prefix rules: distinct addresses needed among the failures in the window.
    pub min_addresses: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub factor: f64,
    pub max_ms: i64,
    pub memory_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub rules: Vec<Rule>,
    pub allowlist: Vec<IpNet>,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub escalation: Escalation,
    pub max_targets: usize,
}

/// A ban to make.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    #[serde(serialize_with = "ser_target")]
    pub target: IpNet,
    pub at: Timestamp,
    pub until: Timestamp,
    pub reason: String,
    pub rule: String,
    /// Failures in the rule's window when it fired.
    pub failures: u32,
    /// 1 for a first ban, 2 for the second within the escalation memory, ...
    pub nth: u32,
}

/// An address is written without `/32` or `/128`; a prefix with its length.
pub fn target_string(t: &IpNet) -> String {
    if t.prefix_len() == t.max_prefix_len() {
        t.addr().to_string()
    } else {
        t.to_string()
    }
}

fn ser_target<S: Serializer>(t: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&target_string(t))
}

/// `3600000` → `1h`, `5400000` → `1h30m`.
pub fn human_ms(ms: i64) -> String {
    let mut s = ms / 1000;
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{}", s / len, unit));
            s %= len;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

#[derive(Debug, Clone, Default)]
struct BanRecord {
    until: Timestamp,
    history: VecDeque<Timestamp>,
}

pub struct Policy {
    cfg: PolicyConfig,
    bans: LruCache<IpNet, BanRecord>,
}

impl Policy {
    pub fn new(cfg: PolicyConfig) -> Policy {
        let cap = NonZeroUsize::new(cfg.max_targets.max(1)).expect("nonzero");
        Policy {
            cfg,
            bans: LruCache::new(cap),
        }
    }

    pub fn allowlisted(&self, addr: IpAddr) -> bool {
        self.cfg.allowlist.iter().any(|n| n.contains(&addr))
    }

    pub fn prefix_of(&self, addr: IpAddr) -> IpNet {
        prefix_of(addr, self.cfg.prefix_v4, self.cfg.prefix_v6)
    }

    pub fn has_prefix_rules(&self) -> bool {
        self.cfg.rules.iter().any(|r| r.scope == Scope::Prefix)
    }

    /// Depth the tracker needs per scope.
    pub fn depths(&self) -> (usize, usize) {
        let depth = |sc| {
            self.cfg
                .rules
                .iter()
                .filter(|r| r.scope == sc)
                .map(|r| r.failures as usize)
                .max()
                .unwrap_or(0)
        };
        (depth(Scope::Address), depth(Scope::Prefix))
    }

    /// Puts back a ban made before a restart (`until` None: one that has ended, kept
    /// for escalation), or a ban made by hand.
    pub fn restore(&mut self, target: IpNet, at: Timestamp, until: Option<Timestamp>) {
        let rec = self.bans.get_or_insert_mut(target, BanRecord::default);
        if !rec.history.contains(&at) {
            rec.history.push_back(at);
            rec.history.make_contiguous().sort_unstable();
            if rec.history.len() > 64 {
                rec.history.pop_front();
            }
        }
        if let Some(u) = until {
            rec.until = rec.until.max(u);
        }
    }

    /// Ends a ban early (unban by hand): the target can be banned again.
    pub fn lift(&mut self, target: &IpNet) {
        if let Some(rec) = self.bans.get_mut(target) {
            rec.until = Timestamp::default();
        }
    }

    fn active(&self, target: &IpNet, now: Timestamp) -> bool {
        self.bans.peek(target).is_some_and(|b| b.until > now)
    }

    /// Decisions after a failure of `addr` at `now` was recorded in `tracker`.
    pub fn decide(
        &mut self,
        tracker: &Tracker,
        addr: IpAddr,
        now: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        if self.allowlisted(addr) {
            return;
        }
        let prefix = self.prefix_of(addr);
        let single = IpNet::from(addr);
        // The strongest rule that fires for each scope: the longest ban.
        let mut best: [Option<(&Rule, u32)>; 2] = [None, None];
        for rule in &self.cfg.rules {
            let fired = match rule.scope {
                Scope::Address => tracker.address_hits(addr, rule.failures, rule.within_ms, now),
                Scope::Prefix => tracker.prefix_hits(
                    prefix,
                    rule.failures,
                    rule.within_ms,
                    rule.min_addresses,
                    now,
                ),
            };
            let Some(n) = fired else { continue };
            let slot = &mut best[usize::from(rule.scope == Scope::Prefix)];
            if slot.is_none_or(|(r, _)| rule.ban_ms > r.ban_ms) {
                *slot = Some((rule, n));
            }
        }
        let prefix_decision = best[1].filter(|_| {
            !self.active(&prefix, now)
                && !self
                    .cfg
                    .allowlist
                    .iter()
                    .any(|a| a.contains(&prefix) || prefix.contains(a))
        });
        let mut made = Vec::new();
        if let Some((rule, n)) = prefix_decision {
            made.push((prefix, rule.clone(), n));
        }
        let covered = self.active(&prefix, now) || !made.is_empty();
        if let (Some((rule, n)), false) = (best[0], covered || self.active(&single, now)) {
            made.push((single, rule.clone(), n));
        }
        for (target, rule, n) in made {
            out.push(self.ban(target, &rule, n, now));
        }
    }

    fn ban(&mut self, target: IpNet, rule: &Rule, failures: u32, now: Timestamp) -> Decision {
        let esc = &self.cfg.escalation;
        let rec = self.bans.get_or_insert_mut(target, BanRecord::default);
        while rec
            .history
            .front()
            .is_some_and(|t| now.0 - t.0 > esc.memory_ms)
        {
            rec.history.pop_front();
        }
        let nth = rec.history.len() as u32 + 1;
        let scaled = rule.ban_ms as f64 * esc.factor.powi(nth as i32 - 1);
        let dur = if scaled.is_finite() {
            (scaled as i64).min(esc.max_ms.max(rule.ban_ms))
        } else {
            esc.max_ms
        };
        rec.history.push_back(now);
        if rec.history.len() > 64 {
            rec.history.pop_front();
        }
        rec.until = now.add_ms(dur);
        let scope = match rule.scope {
            Scope::Address => "",
            Scope::Prefix => " from the prefix",
        };
        let mut reason = format!(
            "{} failures{} within {} (rule {})",
            failures,
            scope,
            human_ms(rule.within_ms),
            rule.name
        );
        if nth > 1 {
            reason.push_str(&format!(", ban #{nth}"));
        }
        Decision {
            target,
            at: now,
            until: rec.until,
            reason,
            rule: rule.name.clone(),
            failures,
            nth,
        }
    }
}
