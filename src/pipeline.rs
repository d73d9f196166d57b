//! The synchronous middle of saslguard: line → parse → count → track → policy.
//!
//! The same [`Pipeline`] serves `replay` and (later) the live daemon; it owns the
//! counter, tracker, policy and offender records and takes "now" only from the event
//! times it is fed, so a replay of last month's log decides exactly what the daemon
//! would have decided then.

use crate::config::Config;
use crate::count::{Counter, Outcome};
use crate::offender::Offenders;
use crate::parse::{self, Parsed};
use crate::policy::{Decision, Policy};
use crate::store::Restored;
use crate::time::{Timestamp, YearResolver};
use crate::track::Tracker;
use ipnet::IpNet;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not a log line of any supported format (garbage, truncated prefix).
    Unparsable,
    /// Longer than `input.max_line_bytes`.
    TooLong,
    /// A timestamp that names no real time (Feb 30, a year out of range).
    BadTime,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    pub lines: u64,
    pub skipped: u64,
    pub skipped_unparsable: u64,
    pub skipped_too_long: u64,
    pub skipped_bad_time: u64,
    /// Lines with invalid UTF-8, parsed with replacement characters (a hostile user
    /// name must not make a failure vanish).
    pub invalid_utf8: u64,
    pub events: BTreeMap<&'static str, u64>,
    /// Failed attempts counted after de-duplication.
    pub failures: u64,
    /// Failure lines whose address could not be told apart from client text.
    pub ambiguous: u64,
    /// `Connection lost to authentication server` not counted (auth server outage).
    pub auth_unavailable_not_counted: u64,
    /// Failures from allowlisted addresses (recorded, never banned).
    pub allowlisted_failures: u64,
    pub logins: u64,
}

/// Decodes and parses one raw line, resolving its time with the stream's resolver.
/// Returns the time, the parse, and whether the line had invalid UTF-8.
pub fn prepare(raw: &[u8], resolver: &mut YearResolver) -> Result<(Timestamp, Parsed, bool), Skip> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let (text, lossy) = match std::str::from_utf8(raw) {
        Ok(s) => (Cow::Borrowed(s), false),
        Err(_) => (String::from_utf8_lossy(raw), true),
    };
    let parsed = parse::parse_line(&text).map_err(|_| Skip::Unparsable)?;
    let time = resolver.resolve(parsed.time).ok_or(Skip::BadTime)?;
    Ok((time, parsed, lossy))
}

/// What a batch of lines changed, for the daemon's store (collected only when
/// [`Pipeline::record_changes`] is on).
#[derive(Debug, Default)]
pub struct Changes {
    /// Counted failures: address, time, attempts.
    pub failures: Vec<(IpAddr, Timestamp, u32)>,
    /// Addresses whose offender record may have changed.
    pub touched: Vec<IpAddr>,
}

pub struct Pipeline {
    counter: Counter,
    tracker: Tracker,
    policy: Policy,
    pub offenders: Offenders,
    pub stats: Stats,
    pub now: Timestamp,
    outcomes: Vec<Outcome>,
    decisions: Vec<Decision>,
    prefix_rules: bool,
    pub changes: Changes,
    /// Collect [`Changes`] (the daemon drains them after each batch).
    pub record_changes: bool,
}

impl Pipeline {
    pub fn new(cfg: &Config) -> Pipeline {
        let policy = Policy::new(cfg.policy.clone());
        let (ad, pd) = policy.depths();
        let limits = &cfg.count;
        Pipeline {
            counter: Counter::new(cfg.count.clone()),
            tracker: Tracker::new(ad, pd, limits.max_addresses, cfg.max_prefixes),
            prefix_rules: policy.has_prefix_rules(),
            policy,
            offenders: Offenders::new(cfg.max_offenders),
            stats: Stats::default(),
            now: Timestamp::default(),
            outcomes: Vec::new(),
            decisions: Vec::new(),
            changes: Changes::default(),
            record_changes: false,
        }
    }

    pub fn skip(&mut self, why: Skip) {
        self.stats.lines += 1;
        self.stats.skipped += 1;
        match why {
            Skip::Unparsable => self.stats.skipped_unparsable += 1,
            Skip::TooLong => self.stats.skipped_too_long += 1,
            Skip::BadTime => self.stats.skipped_bad_time += 1,
        }
    }

    /// Feeds one parsed line; returns the ban decisions it caused.
    pub fn process(&mut self, time: Timestamp, parsed: &Parsed, lossy: bool) -> &[Decision] {
        self.stats.lines += 1;
        if lossy {
            self.stats.invalid_utf8 += 1;
        }
        self.decisions.clear();
        let Some(ev) = &parsed.event else {
            return &self.decisions;
        };
        self.now = self.now.max(time);
        *self.stats.events.entry(ev.kind.as_str()).or_insert(0) += 1;
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.clear();
        self.counter
            .feed(time, parsed.process.as_ref(), ev, &mut outcomes);
        for o in &outcomes {
            let allow = match o {
                Outcome::Counted(a) => self.policy.allowlisted(a.address),
                _ => false,
            };
            self.offenders.apply(o, allow);
            if self.record_changes {
                self.note(o);
            }
            match o {
                Outcome::Counted(a) => {
                    self.stats.failures += u64::from(a.count);
                    if allow {
                        self.stats.allowlisted_failures += u64::from(a.count);
                        continue;
                    }
                    let prefix = self.prefix_rules.then(|| self.policy.prefix_of(a.address));
                    self.tracker.record(a.address, prefix, a.time, a.count);
                    self.policy.decide(
                        &self.tracker,
                        a.address,
                        a.time.max(self.now),
                        &mut self.decisions,
                    );
                }
                Outcome::Ambiguous => self.stats.ambiguous += 1,
                Outcome::Unavailable { .. } => self.stats.auth_unavailable_not_counted += 1,
                Outcome::Success { .. } => self.stats.logins += 1,
                Outcome::Refined { .. } | Outcome::Posture { .. } => {}
            }
        }
        self.outcomes = outcomes;
        &self.decisions
    }

    fn note(&mut self, o: &Outcome) {
        let addr = match o {
            Outcome::Counted(a) => {
                self.changes.failures.push((a.address, a.time, a.count));
                a.address
            }
            Outcome::Refined { address, .. }
            | Outcome::Posture { address, .. }
            | Outcome::Success { address, .. } => *address,
            Outcome::Unavailable { .. } | Outcome::Ambiguous => return,
        };
        if self.offenders.get(&addr).is_some() && self.changes.touched.last() != Some(&addr) {
            self.changes.touched.push(addr);
        }
    }

    /// Puts back what the store kept (daemon start, reload): offender records, the
    /// failures still inside the windows, and bans (active ones with their end).
    pub fn restore(&mut self, r: &Restored) {
        for o in r.offenders.iter().rev() {
            self.offenders.restore(o.clone());
        }
        for &(addr, time, count) in &r.failures {
            self.now = self.now.max(time);
            if self.policy.allowlisted(addr) {
                continue;
            }
            let prefix = self.prefix_rules.then(|| self.policy.prefix_of(addr));
            self.tracker.record(addr, prefix, time, count);
        }
        for &(target, at) in &r.history {
            self.policy.restore(target, at, None);
        }
        for b in &r.active {
            self.policy.restore(b.target, b.at, Some(b.until));
        }
    }

    /// A ban made by hand: the policy treats the target as banned until `until`.
    pub fn manual_ban(&mut self, target: IpNet, at: Timestamp, until: Timestamp) {
        self.policy.restore(target, at, Some(until));
    }

    /// An unban by hand: the target may be banned again, and its failures so far are
    /// forgotten (the admin let it try again).
    pub fn manual_unban(&mut self, target: IpNet) {
        self.policy.lift(&target);
        self.tracker.forget(target);
    }

    pub fn allowlisted(&self, addr: IpAddr) -> bool {
        self.policy.allowlisted(addr)
    }

    /// Addresses and prefixes in the sliding windows now, and evictions so far.
    pub fn tracked(&self) -> (usize, usize, u64) {
        let (a, p) = self.tracker.len();
        (a, p, self.tracker.evicted())
    }
}
