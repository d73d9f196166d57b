//! The synchronous middle of saslguard: stamped line → parse → count → windows →
//! policy → decisions, in one loop ([`Pipeline::feed`]).
//!
//! The same [`Pipeline`] serves `replay` and the live daemon; it owns the counter, the
//! windows, the policy, the alerts and the offender records, and takes "now" only from
//! the event times it is fed, so a replay of last month's log decides exactly what the
//! daemon would have decided then. It does no I/O: what it must remember over a restart
//! goes in and out as a [`Snapshot`], which the store converts to and from its rows.

use crate::alert::{AccountHistory, Alert, Alerts};
use crate::attempts::{Counter, CounterSnapshot, Outcome};
use crate::ban::{BanRow, Decision};
use crate::config::Config;
use crate::geo::{Geo, Origin};
use crate::offender::{Offender, Offenders};
use crate::parse::{self, Kind, Parsed};
use crate::policy::Policy;
use crate::source::{Skip, Stamped};
use crate::time::Timestamp;
use crate::windows::Windows;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// What the pipeline needs back after a restart or a reload: the state the store keeps.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Bans not lifted whose time is not over.
    pub active: Vec<BanRow>,
    /// Start times of bans (also ended ones) since the escalation memory began.
    pub history: Vec<(IpNet, Timestamp)>,
    /// Failures still inside the longest window: address, time, attempts.
    pub failures: Vec<(IpAddr, Timestamp, u32)>,
    /// Offender records, newest first.
    pub offenders: Vec<Offender>,
    /// What each targeted account saw (for the spray and new-origin alerts).
    pub accounts: Vec<(String, AccountHistory)>,
    /// Known-good keys with their last login, newest last.
    pub known_good: Vec<(IpNet, Timestamp)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Stats {
    pub lines: u64,
    pub skipped: u64,
    pub skipped_unparsable: u64,
    pub skipped_too_long: u64,
    pub skipped_bad_time: u64,
    /// Lines with invalid UTF-8, parsed with replacement characters (a hostile user
    /// name must not make a failure vanish).
    pub invalid_utf8: u64,
    /// Events by kind (borrowed names while counting, owned when read back).
    pub events: BTreeMap<Cow<'static, str>, u64>,
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

/// What a batch of lines changed, for the daemon's store (collected only when
/// [`Pipeline::record_changes`] is on).
#[derive(Debug, Default)]
pub struct Changes {
    /// Counted failures: address, time, attempts.
    pub failures: Vec<(IpAddr, Timestamp, u32)>,
    /// The same attempts whole (service, mechanism, account, TLS posture), for the
    /// fleet (only with [`Record::ChangesAndAttempts`]: a copy per failure is work the
    /// daemon of a single host does not need).
    pub attempts: Vec<crate::attempts::Attempt>,
    /// Addresses whose offender record may have changed.
    pub touched: Vec<IpAddr>,
    /// Known-good keys (an address, an IPv6 /64) that logged in, with the time.
    pub known_good: Vec<(IpNet, Timestamp)>,
}

/// A line parsed, owning what it needs: the half of [`Pipeline::feed`] that depends on
/// nothing but the line, so replay can do it on the reader threads and hand the ordered
/// half ([`Pipeline::apply`]) only events.
#[derive(Debug)]
pub struct Prepared {
    pub parsed: Result<(Timestamp, Parsed), Skip>,
    pub lossy: bool,
}

impl Prepared {
    #[inline]
    pub fn of(line: &Stamped) -> Prepared {
        Prepared {
            parsed: match &line.stamp {
                Err(why) => Err(*why),
                Ok((time, prefix)) => Ok((*time, parse::parse_prefixed(prefix))),
            },
            lossy: line.lossy,
        }
    }
}

pub struct Pipeline {
    counter: Counter,
    tracker: Windows,
    policy: Policy,
    offenders: Offenders,
    stats: Stats,
    /// Events by kind, indexed by `Kind as usize`: counted here, folded into
    /// [`Stats::events`] when the statistics are read (a map keyed by name cost a
    /// twentieth of the counting thread's time).
    kinds: [u64; Kind::ALL.len()],
    now: Timestamp,
    outcomes: Vec<Outcome>,
    decisions: Vec<Decision>,
    prefix_rules: bool,
    changes: Changes,
    /// Collect [`Changes`] (the daemon drains them after each batch).
    record_changes: bool,
    /// Collect [`Changes::attempts`] too.
    record_attempts: bool,
    /// GeoIP databases, opened by the caller (that is I/O).
    geo: Geo,
    alert_state: Alerts,
    /// Alerts raised and not yet taken (up to [`MAX_ALERTS_KEPT`]): the daemon drains
    /// them after each batch, `replay` after each line.
    alerts: Vec<Alert>,
    alerts_dropped: u64,
    /// The event time of the next [`Pipeline::sweep`].
    next_sweep: Timestamp,
}

pub const MAX_ALERTS_KEPT: usize = 100_000;

/// How often, in event time, state past every window that reads it leaves the
/// tables ([`Pipeline::sweep`]).
const SWEEP_EVERY_MS: i64 = 60_000;

/// The most entries one sweep takes out of a table. A flood of a million addresses
/// that ages out at once took 86 ms to sweep in one go (`examples/addr_cost.rs`): the
/// line that set it off, and any ban it made, waited that long. In pieces of this
/// size, one per line until the backlog is gone (245 lines for that flood), a line
/// waited 1.3 ms (median), 3.5 ms (p99), 15 ms at most (a table giving its room back;
/// 9.6 ms since a table's array is in chunks, `bounded::Lru`).
pub const SWEEP_MAX: usize = 4_096;

/// How far behind the others a source may run and still meet the counter's and the
/// alerts' state as it was (the daemon reads its sources as lines come, not merged by
/// time; a file catching up after a restart runs behind the journal).
pub const LATE_MS: i64 = 3_600_000;

/// Alert kinds that ban the address when `[alerts] ban` is set. `new_origin` does
/// not (a traveller), nor `spray_account` (its addresses are many and each did little).
const BANNING_ALERTS: &[&str] = &["login_after_failures", "marked_country", "spray_address"];

/// Whether the pipeline keeps what changed for a store (the daemon) or not (replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Changes,
    /// Changes, and each counted attempt whole (a fleet that shares failures).
    ChangesAndAttempts,
    Nothing,
}

impl Pipeline {
    /// The one way to build a pipeline: from the configuration, the GeoIP databases the
    /// caller opened, and what the store kept (empty for a replay).
    pub fn new(cfg: &Config, geo: Geo, record: Record, snapshot: &Snapshot) -> Pipeline {
        let mut p = Pipeline::bare(cfg, geo);
        p.record_changes = record != Record::Nothing;
        p.record_attempts = record == Record::ChangesAndAttempts;
        p.restore(snapshot);
        p
    }

    fn bare(cfg: &Config, geo: Geo) -> Pipeline {
        let policy = Policy::new(cfg.policy.clone(), cfg.max_prefixes);
        let (ad, pd) = policy.depths();
        let limits = &cfg.count;
        Pipeline {
            counter: Counter::new(cfg.count.clone()),
            tracker: Windows::new(ad, pd, limits.max_addresses, cfg.max_prefixes),
            prefix_rules: policy.has_prefix_rules(),
            policy,
            offenders: Offenders::new(cfg.max_offenders),
            stats: Stats::default(),
            kinds: [0; Kind::ALL.len()],
            now: Timestamp::default(),
            outcomes: Vec::new(),
            decisions: Vec::new(),
            changes: Changes::default(),
            record_changes: false,
            record_attempts: false,
            geo,
            alert_state: Alerts::new(cfg.alerts.clone(), cfg.max_offenders),
            alerts: Vec::new(),
            alerts_dropped: 0,
            next_sweep: Timestamp(i64::MIN),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn alert_state(&mut self) -> &mut Alerts {
        &mut self.alert_state
    }

    /// The statistics so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        for (kind, &n) in Kind::ALL.iter().zip(&self.kinds) {
            if n > 0 {
                *s.events.entry(Cow::Borrowed(kind.as_str())).or_insert(0) += n;
            }
        }
        s
    }

    pub fn offenders(&self) -> &Offenders {
        &self.offenders
    }

    pub fn geo(&self) -> &Geo {
        &self.geo
    }

    pub fn geo_mut(&mut self) -> &mut Geo {
        &mut self.geo
    }

    /// The latest event time fed so far.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// True when alerts were raised since the last [`Pipeline::take_alerts`].
    pub fn has_alerts(&self) -> bool {
        !self.alerts.is_empty()
    }

    /// Alerts not kept because [`MAX_ALERTS_KEPT`] were waiting already.
    pub fn alerts_dropped(&self) -> u64 {
        self.alerts_dropped
    }

    /// The alerts raised since the last call (the daemon, after each batch).
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.alerts)
    }

    /// What changed since the last call (with [`Record::Changes`]).
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Takes over the line statistics and open sessions of the pipeline this one replaces
    /// (a reload): sessions open over the reload are not counted again.
    pub fn carry_over(&mut self, old: &mut Pipeline) {
        self.counter.restore(&old.counter.snapshot(old.now));
        self.stats = old.stats();
        self.kinds = [0; Kind::ALL.len()];
        old.stats = Stats::default();
        old.kinds = [0; Kind::ALL.len()];
    }

    /// Feeds one stamped line: a line without a time is counted as skipped, the rest is
    /// parsed and processed. Returns the ban decisions it caused.
    pub fn feed(&mut self, line: &Stamped) -> &[Decision] {
        self.apply(&Prepared::of(line))
    }

    /// Feeds one line [`Prepared`] already (perhaps on another thread): the ordered half
    /// of [`Pipeline::feed`]. Lines must come in the order `feed` would have seen them.
    pub fn apply(&mut self, line: &Prepared) -> &[Decision] {
        match &line.parsed {
            Err(why) => {
                self.skip(*why);
                self.decisions.clear();
                &self.decisions
            }
            Ok((time, parsed)) => self.process(*time, parsed, line.lossy),
        }
    }

    fn lookup(&self, addr: IpAddr) -> Origin {
        self.geo.lookup(addr)
    }

    fn raise(&mut self, new: Vec<Alert>) {
        let ban_ms = self.alert_state.config().ban_ms;
        for a in new {
            if ban_ms > 0
                && BANNING_ALERTS.contains(&a.kind.as_str())
                && let Some(d) =
                    self.policy
                        .alert_ban(a.address, ban_ms, &a.kind, &a.geo, a.time.max(self.now))
            {
                self.decisions.push(d);
            }
            if self.alerts.len() < MAX_ALERTS_KEPT {
                self.alerts.push(a);
            } else {
                self.alerts_dropped += 1;
            }
        }
    }

    fn skip(&mut self, why: Skip) {
        self.stats.lines += 1;
        self.stats.skipped += 1;
        match why {
            Skip::Unparsable => self.stats.skipped_unparsable += 1,
            Skip::TooLong => self.stats.skipped_too_long += 1,
            Skip::BadTime => self.stats.skipped_bad_time += 1,
        }
    }

    /// Processes one parsed line; returns the ban decisions it caused.
    fn process(&mut self, time: Timestamp, parsed: &Parsed, lossy: bool) -> &[Decision] {
        self.stats.lines += 1;
        if lossy {
            self.stats.invalid_utf8 += 1;
        }
        self.decisions.clear();
        let Some(ev) = &parsed.event else {
            return &self.decisions;
        };
        self.now = self.now.max(time);
        if self.now >= self.next_sweep {
            self.sweep();
        }
        if let Some(n) = self.kinds.get_mut(ev.kind as usize) {
            *n += 1;
        }
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.clear();
        self.counter
            .feed(time, parsed.process.as_ref(), ev, &mut outcomes);
        for o in &outcomes {
            let allow = match o {
                Outcome::Counted(a) => self.policy.allowlisted(a.address),
                _ => false,
            };
            let geo = match o {
                Outcome::Counted(a) => Some(self.lookup(a.address)),
                _ => None,
            };
            self.offenders.apply(o, allow, geo.as_ref());
            if self.record_changes {
                self.note(o);
            }
            match o {
                Outcome::Counted(a) => {
                    self.stats.failures += u64::from(a.count);
                    let geo = geo.unwrap_or_default();
                    let mut new = Vec::new();
                    self.alert_state
                        .failure(a, self.policy.prefix_of(a.address), &geo, &mut new);
                    if allow {
                        self.stats.allowlisted_failures += u64::from(a.count);
                        self.raise(new);
                        continue;
                    }
                    let prefix = self.prefix_rules.then(|| self.policy.prefix_of(a.address));
                    let windows = self.tracker.record(a.address, prefix, a.time, a.count);
                    let first = self.decisions.len();
                    self.policy.decide(
                        &windows,
                        a.address,
                        &geo,
                        a.time.max(self.now),
                        &mut self.decisions,
                    );
                    if self.decisions.len() > first {
                        let posture = self
                            .offenders
                            .get(&a.address)
                            .map(|r| crate::posture::Posture::of(&r.tls));
                        for d in &mut self.decisions[first..] {
                            d.tls.clone_from(&posture);
                        }
                    }
                    self.raise(new);
                }
                Outcome::Ambiguous => self.stats.ambiguous += 1,
                Outcome::Unavailable { .. } => self.stats.auth_unavailable_not_counted += 1,
                Outcome::Success {
                    time,
                    address,
                    user,
                    service,
                } => {
                    self.stats.logins += 1;
                    self.policy.login(*address, *time);
                    if self.record_changes {
                        self.changes
                            .known_good
                            .push((Policy::good_key(*address), *time));
                    }
                    let geo = self.lookup(*address);
                    let mut new = Vec::new();
                    self.alert_state.login(
                        *time,
                        *address,
                        self.policy.prefix_of(*address),
                        user.as_deref(),
                        service.as_deref(),
                        &geo,
                        &self.offenders,
                        &mut new,
                    );
                    self.raise(new);
                }
                Outcome::Refined { .. } | Outcome::Posture { .. } => {}
            }
        }
        self.outcomes = outcomes;
        &self.decisions
    }

    /// Frees what only further lines would use: the counter's sessions and addresses,
    /// the sliding windows and the alerts' failure history. What a report reads stays:
    /// statistics, offender records, the policy, the accounts' login histories.
    /// `saslguard replay` calls it when its input ends, before its report sorts the
    /// offenders.
    pub fn end_of_input(&mut self) {
        self.counter.clear();
        self.tracker.clear();
        self.alert_state.clear_failures();
    }

    /// Drops state no window can count again from the counter, the sliding windows and
    /// the alerts' history, as of the latest event time. A long replay or a daemon
    /// after a flood then holds the addresses that can still matter, not the last
    /// `max_addresses` it saw; the bounds stay for what is live. Runs once a minute of
    /// event time, and at the next line again while a table had more than
    /// [`SWEEP_MAX`] to drop.
    fn sweep(&mut self) {
        let now = self.now;
        let (addr_span, prefix_span) = self.policy.spans();
        let most = [
            self.tracker.sweep(now, addr_span, prefix_span, SWEEP_MAX),
            self.counter.sweep(now, LATE_MS, SWEEP_MAX),
            self.alert_state.sweep(now, LATE_MS, SWEEP_MAX),
        ];
        // A sum of several tables may reach the bound with none full: one sweep more.
        self.next_sweep = if most.iter().any(|&n| n >= SWEEP_MAX) {
            now
        } else {
            Timestamp(now.0.saturating_add(SWEEP_EVERY_MS))
        };
    }

    fn note(&mut self, o: &Outcome) {
        let addr = match o {
            Outcome::Counted(a) => {
                self.changes.failures.push((a.address, a.time, a.count));
                if self.record_attempts {
                    self.changes.attempts.push(a.clone());
                }
                a.address
            }
            Outcome::Refined { address, .. }
            | Outcome::Posture { address, .. }
            | Outcome::Success { address, .. } => *address,
            Outcome::Unavailable { .. } | Outcome::Ambiguous => return,
        };
        if self.offenders.contains(&addr) && self.changes.touched.last() != Some(&addr) {
            self.changes.touched.push(addr);
        }
    }

    /// Puts back what the store kept (daemon start, reload): offender records, the
    /// failures still inside the windows, and bans (active ones with their end).
    fn restore(&mut self, r: &Snapshot) {
        for (user, h) in &r.accounts {
            self.alert_state.restore_account(user.clone(), h.clone());
        }
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
        for &(key, last) in &r.known_good {
            self.policy.restore_known_good(key, last);
        }
    }

    /// The counter's state for a restart (see [`CounterSnapshot`]).
    pub fn counter_snapshot(&self) -> CounterSnapshot {
        self.counter.snapshot(self.now)
    }

    /// Puts back the counter's state kept at the last stop.
    /// Returns the pending attempts refused (see [`Counter::restore`]).
    pub fn restore_counter(&mut self, snap: &CounterSnapshot) -> usize {
        self.counter.restore(snap)
    }

    /// A ban made by hand: the policy treats the target as banned until `until`.
    pub fn manual_ban(&mut self, target: IpNet, at: Timestamp, until: Timestamp) {
        self.policy.restore(target, at, Some(until));
    }

    /// A failure another node of the fleet counted: it enters the windows (once: the
    /// fleet link hands each one over once) and the policy decides on the fleet's count.
    /// Returns the ban decisions it caused.
    pub fn remote_failure(&mut self, addr: IpAddr, time: Timestamp, count: u32) -> &[Decision] {
        self.decisions.clear();
        if self.policy.allowlisted(addr) {
            return &self.decisions;
        }
        let prefix = self.prefix_rules.then(|| self.policy.prefix_of(addr));
        let geo = self.lookup(addr);
        let windows = self.tracker.record(addr, prefix, time, count);
        self.policy.decide(
            &windows,
            addr,
            &geo,
            time.max(self.now),
            &mut self.decisions,
        );
        &self.decisions
    }

    /// An unban by hand: the target may be banned again, and its failures so far are
    /// forgotten (the admin let it try again).
    pub fn manual_unban(&mut self, target: IpNet) {
        self.policy.lift(&target);
        self.tracker.forget(target);
    }

    /// Networks no ban may touch: the allowlist and the host's own addresses.
    pub fn protected(&self) -> Vec<IpNet> {
        self.policy.protected().copied().collect()
    }

    /// Tells the policy the host's own addresses; true if they changed.
    pub fn set_own_addresses(&mut self, own: Vec<IpNet>) -> bool {
        self.policy.set_own(own)
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
