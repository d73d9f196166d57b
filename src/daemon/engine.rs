//! The daemon's engine: the pipeline, the enforcers, the active bans and the store,
//! driven by lines from the sources, control requests and a one-second tick.
//!
//! Synchronous: it runs inline in the daemon's event loop, one message at a time, so
//! no lock is needed and bans reach the kernel a few hundred microseconds after their
//! last line arrived.

use super::control::{
    BanEntry, BanList, Banned, CheckAnswer, ClusterStatus, GeoStatus, Message, MetricsText,
    OffenderSummary, Owing, Request, Response, SourceState, Status, Tracked, True, Unbanned, error,
    refused,
};
use super::metrics::{Readings, SourceReading};
use super::sources::Input;
use super::store_writer::StoreWriter;
use crate::ban::BanRow;
use crate::ban::{Decision, human_ms, target_string};
use crate::config::{self, Config};
use crate::enforce::{EnforceError, Enforcers, Failure};
use crate::offender::Offender;
use crate::pipeline::{Pipeline, Record};
use crate::source::{Stamped, stamp};
use crate::store::{Batch, Op, Restored, Store, StoreError};
use crate::time::{Timestamp, YearResolver};
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The engine's end of the fleet link.
struct Fleet {
    share_failures: bool,
    out: tokio::sync::mpsc::UnboundedSender<crate::fleet::Publish>,
    stats: std::sync::Arc<crate::fleet::FleetStats>,
    node: String,
    /// Fleet bans refused by this node's own checks.
    refused: u64,
}

/// A ban some enforcers still owe.
#[derive(Debug, Clone)]
struct Owed {
    enforcers: std::collections::BTreeSet<&'static str>,
    attempts: u32,
    next: Instant,
    last_error: String,
}

impl Owed {
    /// Backoff: 1 s, 2 s, 4 s, ... up to a minute.
    fn schedule(&mut self) {
        self.attempts += 1;
        let secs = 1u64 << self.attempts.min(6).saturating_sub(1);
        self.next = Instant::now() + std::time::Duration::from_secs(secs.min(60));
    }
}

/// The store row (beside the sources' positions, written in the same transaction)
/// that keeps the counter's open sessions over a stop.
pub const COUNTER_STATE: &str = "state:counter";

/// How often the host's own addresses are read again.
const OWN_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

pub fn wall_now() -> Timestamp {
    Timestamp(chrono::Utc::now().timestamp_millis())
}

#[derive(Debug, Default)]
struct Counters {
    bans: BTreeMap<String, u64>,
    unbans: u64,
    enforcer_errors: BTreeMap<&'static str, u64>,
    alerts: BTreeMap<String, u64>,
    /// Times the nftables table was found gone and rebuilt.
    table_rebuilds: u64,
}

pub struct Engine {
    cfg: Config,
    config_path: PathBuf,
    store_path: PathBuf,
    pipeline: Pipeline,
    resolvers: Vec<YearResolver>,
    pub sources: Vec<SourceState>,
    enforcers: Enforcers,
    active: BTreeMap<IpNet, BanRow>,
    store: StoreWriter,
    counters: Counters,
    started: Instant,
    last_prune: Timestamp,
    last_geo_check: Instant,
    last_own_check: Instant,
    /// Active bans an enforcer has not taken (the kernel refused, the map could not be
    /// written), with the enforcers still owing them; retried with backoff.
    unenforced: BTreeMap<IpNet, Owed>,
    /// The blocks as last computed (kept when a database cannot be read).
    blocked: Vec<crate::block::Blocked>,
    /// Packets refused per block: the kernel's counter as last read, and the total
    /// over the rules' lives (a reload or a rebuilt table starts the kernel's at 0).
    block_refused: BTreeMap<String, (u64, u64)>,
    last_counter_read: Instant,
    /// The totals last written to the store, by block, and when.
    block_written: BTreeMap<String, (u64, Instant)>,
    /// The fleet link (`[cluster]`): where this node's bans go, its counters, its name.
    fleet: Option<Fleet>,
}

/// Why the engine could not start, or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("GeoIP: {0}")]
    Geo(#[from] crate::geo::GeoError),
    #[error(transparent)]
    Enforce(#[from] EnforceError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("store: {0}")]
    StoreWriter(#[from] super::store_writer::FlushError),
    #[error("configuration not reloaded, the running one is kept:\n{0}")]
    Config(#[from] config::ConfigErrors),
}

/// The longest rule window: failures older than this no longer matter.
pub(crate) fn max_window(cfg: &Config) -> i64 {
    cfg.policy
        .all_rules()
        .map(|r| r.within_ms)
        .max()
        .unwrap_or(0)
}

/// Reads what the store holds for a pipeline built from `cfg`.
pub fn restore_from(store: &Store, cfg: &Config, now: Timestamp) -> Result<Restored, StoreError> {
    store.restore(
        now,
        now.add_ms(-cfg.policy.escalation.memory_ms),
        now.add_ms(-max_window(cfg)),
        cfg.max_offenders,
        cfg.policy.deepest(),
        cfg.count.max_addresses,
    )
}

/// The daemon's pipeline: GeoIP opened for the policy's needs, changes recorded for
/// the store, the store's state put back. Start and reload build it the same way.
fn live_pipeline(cfg: &Config, restored: &Restored) -> Result<Pipeline, EngineError> {
    let geo = crate::geo::Geo::open(&cfg.geoip, cfg.policy.needs_geo(), false)?;
    // A fleet that shares failures publishes each attempt whole.
    let record = match &cfg.cluster {
        Some(c) if c.share_failures => Record::ChangesAndAttempts,
        _ => Record::Changes,
    };
    Ok(Pipeline::new(cfg, geo, record, &restored.snapshot))
}

impl Engine {
    /// Builds the engine: restores state, sets up the enforcers and puts every active
    /// ban back in them (the kernel may have lost its table in a reboot).
    pub fn new(
        cfg: Config,
        config_path: &Path,
        store_path: &Path,
        restored: &Restored,
        store: StoreWriter,
        sources: Vec<String>,
    ) -> Result<Engine, EngineError> {
        let now = wall_now();
        let mut pipeline = live_pipeline(&cfg, restored)?;
        if let Some((_, s)) = restored
            .checkpoints
            .iter()
            .find(|(k, _)| k == COUNTER_STATE)
        {
            match serde_json::from_str::<crate::attempts::CounterSnapshot>(s) {
                Ok(snap) => {
                    tracing::info!(
                        "{} Dovecot sessions and {} Postfix connections still open at the last stop",
                        snap.dovecot.len(),
                        snap.postfix.len()
                    );
                    let refused = pipeline.restore_counter(&snap);
                    if refused > 0 {
                        tracing::warn!(
                            "the counter state kept at the last stop: {refused} pending attempts with impossible times refused"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!("the counter state kept at the last stop is unreadable: {e}")
                }
            }
            // Used once: after a crash, the state of this start would not match it.
            store.send(vec![Op::Checkpoint {
                source: COUNTER_STATE.into(),
                position: "{}".into(),
                at: now,
            }]);
        }
        let active: BTreeMap<IpNet, BanRow> = restored
            .snapshot
            .active
            .iter()
            .map(|b| (b.target, b.clone()))
            .collect();
        let want: Vec<Decision> = active.values().map(decision_of).collect();
        let (enforcers, refused) = Enforcers::open(&cfg.enforcers(), &want, now)?;
        for f in &refused {
            // One ban an enforcer will not take (an older saslguard stored it) must not
            // keep the daemon from starting and enforcing all the others.
            tracing::error!("could not restore the ban: {f}");
        }
        let resolvers = sources
            .iter()
            .map(|_| YearResolver::new(cfg.zone, now))
            .collect();
        let sources = sources
            .into_iter()
            .map(|name| SourceState {
                position: restored
                    .checkpoints
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default(),
                name,
                lines: 0,
                lines_too_long: 0,
                behind_bytes: 0,
                file: None,
                last_line_time: None,
            })
            .collect();
        if !active.is_empty() {
            tracing::info!("{} active bans restored", active.len());
        }
        let mut engine = Engine {
            cfg,
            config_path: config_path.to_path_buf(),
            store_path: store_path.to_path_buf(),
            pipeline,
            resolvers,
            sources,
            enforcers,
            active,
            store,
            counters: Counters::default(),
            started: Instant::now(),
            last_prune: Timestamp::default(),
            last_geo_check: Instant::now(),
            last_own_check: Instant::now(),
            unenforced: BTreeMap::new(),
            blocked: Vec::new(),
            block_refused: BTreeMap::new(),
            last_counter_read: Instant::now(),
            block_written: BTreeMap::new(),
            fleet: None,
        };
        engine.refresh_own();
        engine.push_allow();
        engine.load_blocks();
        Ok(engine)
    }

    /// Reads the host's own addresses again (`[allowlist] own_addresses`): an address
    /// added to an interface is protected within [`OWN_CHECK`].
    fn refresh_own(&mut self) {
        self.last_own_check = Instant::now();
        if !self.cfg.policy.own_addresses {
            return;
        }
        match crate::addr::own_addresses() {
            Ok(own) => {
                let n = own.len();
                if self.pipeline.set_own_addresses(own) {
                    tracing::info!("{n} addresses of this host's interfaces are never banned");
                    self.push_allow();
                }
            }
            Err(e) => tracing::warn!("reading this host's addresses from /proc/net: {e}"),
        }
    }

    /// Tells the enforcers which networks pass every ban and block.
    fn push_allow(&mut self) {
        let nets = self.pipeline.protected();
        for f in self.enforcers.allow(&nets) {
            self.enforcer_error(&f);
        }
    }

    /// Computes every block from the databases now loaded and hands them to the
    /// enforcers. A block that cannot be computed (its database unreadable) keeps
    /// what it had: a broken download must not open the door.
    fn load_blocks(&mut self) {
        let mut next = Vec::with_capacity(self.cfg.blocks.len());
        for b in &self.cfg.blocks {
            match crate::block::compute(b, self.pipeline.geo()) {
                Ok(x) => next.push(x),
                Err(e) => {
                    tracing::error!("{e}; the block keeps the networks it had");
                    if let Some(old) = self.blocked.iter().find(|o| o.name == b.name) {
                        next.push(old.clone());
                    }
                }
            }
        }
        self.blocked = next;
        for f in self.enforcers.block(&self.blocked) {
            self.enforcer_error(&f);
        }
    }

    /// Connects the engine to the fleet: its bans and lifts by hand are published.
    pub fn set_fleet(
        &mut self,
        out: tokio::sync::mpsc::UnboundedSender<crate::fleet::Publish>,
        stats: std::sync::Arc<crate::fleet::FleetStats>,
        node: String,
    ) {
        self.fleet = Some(Fleet {
            share_failures: self.cfg.cluster.as_ref().is_none_or(|c| c.share_failures),
            out,
            stats,
            node,
            refused: 0,
        });
    }

    /// Stops publishing (the daemon stops; the link sends what is queued and ends).
    pub fn close_fleet(&mut self) {
        self.fleet = None;
    }

    fn publish(&self, m: crate::fleet::Publish) {
        if let Some(f) = &self.fleet {
            let _ = f.out.send(m);
        }
    }

    /// A ban or lift another node published: checked as a ban by hand would be here,
    /// then applied through this node's enforcers (and not published again).
    pub fn fleet_input(&mut self, r: crate::fleet::Received) {
        let now = wall_now();
        match r {
            crate::fleet::Received::Ban {
                target,
                at,
                until,
                reason,
                rule,
                node,
            } => {
                if until <= now {
                    return;
                }
                let protected = self.pipeline.protected();
                if let Err(why) =
                    crate::addr::check_target(target, &protected, self.cfg.policy.targets, false)
                {
                    tracing::warn!(net = %target_string(&target), node = %node, "cluster: ban refused here: {why}");
                    if let Some(f) = &mut self.fleet {
                        f.refused += 1;
                    }
                    return;
                }
                if self.active.get(&target).is_some_and(|b| b.until >= until) {
                    return;
                }
                let d = Decision {
                    target,
                    at,
                    until,
                    reason: format!("{reason} [node {node}]"),
                    rule,
                    failures: 0,
                    nth: 1,
                    geo: target_geo(&self.pipeline, &target),
                    tls: None,
                };
                self.pipeline.manual_ban(target, at, until);
                let mut batch = Vec::new();
                let _ = self.enforce(std::slice::from_ref(&d), now, "fleet", &mut batch);
                self.store.send(batch);
            }
            crate::fleet::Received::Failure {
                address,
                time,
                count,
            } => {
                // A node's clock may run ahead (or a compromised node may say anything):
                // a failure is never later than now here, so it cannot start a ban in
                // the future and make it outlast its length.
                let time = time.min(now);
                let decisions = self.pipeline.remote_failure(address, time, count).to_vec();
                if !decisions.is_empty() {
                    let mut batch = Vec::new();
                    let _ = self.enforce(&decisions, now, "policy", &mut batch);
                    self.store.send(batch);
                }
            }
            crate::fleet::Received::Lift { target, node } => {
                if self.active.remove(&target).is_none() {
                    return;
                }
                let (_, errors) = self.enforcers.unban(&[target]);
                for f in &errors {
                    self.enforcer_error(f);
                }
                self.pipeline.manual_unban(target);
                self.counters.unbans += 1;
                self.store.send(vec![Op::Lift {
                    target,
                    at: now,
                    by: format!("node {node}"),
                }]);
                tracing::warn!("unban {} by node {node}", target_string(&target));
            }
        }
    }

    /// Reads the blocks' counters from the enforcers and adds what is new to the totals.
    fn read_block_counters(&mut self) {
        self.last_counter_read = Instant::now();
        if self.cfg.blocks.is_empty() {
            return;
        }
        let (now, failures) = self.enforcers.block_counters();
        for f in failures {
            tracing::debug!("reading block counters: {f}");
        }
        for (name, n) in now {
            let (last, total) = self.block_refused.entry(name).or_insert((0, 0));
            *total += if n >= *last { n - *last } else { n };
            *last = n;
        }
        self.write_block_counts(false);
    }

    /// Keeps the blocks' totals in the store for `report`: when they changed, at most
    /// once a minute (or now, at a stop).
    fn write_block_counts(&mut self, now: bool) {
        let at = wall_now();
        let mut batch = Vec::new();
        for (name, (_, total)) in &self.block_refused {
            let due = match self.block_written.get(name) {
                None => true,
                Some((t, when)) => {
                    t != total && (now || when.elapsed() >= std::time::Duration::from_secs(60))
                }
            };
            if due {
                batch.push(Op::BlockCount {
                    block: name.clone(),
                    time: at,
                    refused: *total,
                });
                self.block_written
                    .insert(name.clone(), (*total, Instant::now()));
            }
        }
        if !batch.is_empty() {
            self.store.send(batch);
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// True while the store is too far behind to take more lines (backpressure).
    pub fn store_busy(&self) -> bool {
        self.store.busy()
    }

    /// Lines from a source.
    pub fn input(&mut self, input: Input) {
        let now = wall_now();
        let mut decisions: Vec<Decision> = Vec::new();
        let i = input.source;
        let mut lines = 0u64;
        let mut last_time = None;
        let mut lossy = String::new();
        for line in input.data.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            lines += 1;
            let line = stamp(line, &mut self.resolvers[i], &mut lossy);
            last_time = line.time().or(last_time);
            decisions.extend_from_slice(self.pipeline.feed(&line));
        }
        for _ in 0..input.too_long {
            self.pipeline.feed(&Stamped::too_long(0));
        }
        let s = &mut self.sources[i];
        s.lines += lines;
        s.lines_too_long += input.too_long;
        s.behind_bytes = input.behind;
        if input.follow.is_some() {
            s.file = input.follow;
        }
        if last_time.is_some() {
            s.last_line_time = last_time;
        }
        s.position.clone_from(&input.position);
        let mut batch = self.changes();
        self.alerts(&mut batch);
        if !decisions.is_empty() {
            let _ = self.enforce(&decisions, now, "policy", &mut batch);
        }
        batch.push(Op::Checkpoint {
            source: self.sources[i].name.clone(),
            position: input.position,
            at: now,
        });
        self.store.send(batch);
    }

    /// The pipeline's changes since the last call, as store operations.
    fn changes(&mut self) -> Batch {
        let ch = self.pipeline.take_changes();
        // The fleet counts this node's failures with its own.
        if self.fleet.as_ref().is_some_and(|f| f.share_failures) {
            for a in &ch.attempts {
                self.publish(crate::fleet::Publish::Failure {
                    address: a.address,
                    time: a.time,
                    count: a.count,
                    service: a.service.as_deref().map(str::to_string),
                    mechanism: a.mechanism.clone(),
                    user: a.user.clone(),
                    posture: a.posture.clone(),
                });
            }
        }
        // Failures of one address at one instant (a guesser's burst within the log's
        // time resolution) are one row with their count: the same windows after a
        // restart, fewer rows to write (issue 17).
        let mut batch: Batch = Vec::with_capacity(ch.failures.len());
        let mut row_of: HashMap<(std::net::IpAddr, Timestamp), usize> = HashMap::new();
        for &(address, time, count) in &ch.failures {
            match row_of.get(&(address, time)) {
                Some(&i) => {
                    if let Some(Op::Failure { count: c, .. }) = batch.get_mut(i) {
                        *c = c.saturating_add(count);
                    }
                }
                None => {
                    row_of.insert((address, time), batch.len());
                    batch.push(Op::Failure {
                        address,
                        time,
                        count,
                    });
                }
            }
        }
        batch.extend(
            ch.known_good
                .iter()
                .map(|&(key, at)| Op::KnownGood { key, at }),
        );
        let mut seen = HashSet::new();
        for a in ch.touched {
            if seen.insert(a)
                && let Some(o) = self.pipeline.offenders().get(&a)
            {
                batch.push(Op::Offender(Box::new(o.clone())));
                // A Dovecot session tells its TLS posture only when it ends, often
                // after its failures got the address banned: complete the ban.
                if let Some(row) = self.active.get_mut(&IpNet::from(a))
                    && row.tls.as_ref().is_some_and(|p| p.unknown > 0)
                {
                    let now = crate::posture::Posture::of(&o.tls);
                    if row.tls.as_ref() != Some(&now) {
                        tracing::info!(
                            "ban {}: tls now known: {}",
                            target_string(&row.target),
                            now.summary()
                        );
                        row.tls = Some(now.clone());
                        batch.push(Op::BanTls {
                            target: row.target,
                            at: row.at,
                            tls: now,
                        });
                    }
                }
            }
        }
        batch
    }

    /// Alerts raised by the last lines: logged, stored, and handed to the command.
    fn alerts(&mut self, batch: &mut Batch) {
        let alerts = self.pipeline.take_alerts();
        let state = self.pipeline.alert_state();
        let changed = std::mem::take(&mut state.changed_accounts);
        let mut seen = HashSet::new();
        for user in changed {
            if seen.insert(user.clone())
                && let Some(h) = state.account(&user)
            {
                batch.push(Op::Account(Box::new((user, h.clone()))));
            }
        }
        for a in alerts {
            *self.counters.alerts.entry(a.kind.clone()).or_insert(0) += 1;
            tracing::warn!(
                kind = %a.kind,
                ip = %a.address,
                user = a.user.as_deref().unwrap_or(""),
                country = a.geo.country.as_deref().unwrap_or(""),
                asn = a.geo.asn.unwrap_or(0),
                "alert: {}",
                a.message
            );
            crate::alert::run_command(&self.cfg.alerts.command, &a);
            batch.push(Op::Alert(Box::new(a)));
        }
    }

    fn enforcer_error(&mut self, f: &Failure) {
        *self.counters.enforcer_errors.entry(f.enforcer).or_insert(0) += 1;
        tracing::error!("{f}");
    }

    /// Carries out decisions in every enforcer and records them.
    /// Returns the enforcer errors, each naming its enforcer.
    fn enforce(
        &mut self,
        decisions: &[Decision],
        now: Timestamp,
        origin: &str,
        batch: &mut Batch,
    ) -> Vec<String> {
        // The kernel's timeout counts from the moment the element goes in: measure it
        // from the clock now, not from when this batch of lines began, so the kernel
        // and `tick` end the ban at the same `until`.
        let wall = wall_now().max(now);
        let failures = self.enforcers.ban(decisions, wall);
        // This node's own decisions go to the fleet (after the local enforcers: the
        // database is never on the path of a local ban).
        if origin != "fleet" {
            for d in decisions.iter().filter(|d| d.until > wall) {
                self.publish(crate::fleet::Publish::Ban {
                    target: d.target,
                    at: d.at,
                    until: d.until,
                    reason: d.reason.clone(),
                    rule: d.rule.clone(),
                    origin: origin.to_string(),
                });
            }
        }
        for f in &failures {
            for t in &f.targets {
                let o = self.unenforced.entry(*t).or_insert_with(|| Owed {
                    enforcers: Default::default(),
                    attempts: 0,
                    next: Instant::now(),
                    last_error: String::new(),
                });
                o.enforcers.insert(f.enforcer);
                o.last_error.clone_from(&f.error);
                o.attempts = 0;
                o.schedule();
            }
            self.enforcer_error(f);
        }
        for d in decisions {
            let row = BanRow::of(d, origin);
            tracing::warn!(
                "ban {} for {} until {}: {}{} [tls: {}]",
                target_string(&d.target),
                human_ms(d.until.0 - d.at.0),
                d.until.rfc3339(),
                d.reason,
                if d.geo.is_empty() || d.reason.contains("(origin ") {
                    String::new()
                } else {
                    format!(" [{}]", d.geo.label())
                },
                d.tls.as_ref().map_or("-".to_string(), |p| p.summary())
            );
            *self.counters.bans.entry(origin.to_string()).or_insert(0) += 1;
            if d.until > now {
                self.active.insert(d.target, row.clone());
            }
            batch.push(Op::Ban(Box::new(row)));
        }
        failures.iter().map(Failure::to_string).collect()
    }

    /// Puts an enforcer that lost what it held (`nft flush ruleset`, `systemctl reload
    /// nftables`) back with every active ban and its remaining time: checked every tick,
    /// so bans are enforced again within a second.
    fn heal(&mut self, now: Timestamp) {
        let want: Vec<Decision> = self.active.values().map(decision_of).collect();
        let (rebuilt, errors) = self.enforcers.heal(&want, now);
        if !rebuilt.is_empty() {
            // The rebuilt table has empty allow and block sets: fill them again.
            self.push_allow();
            for f in self.enforcers.block(&self.blocked) {
                self.enforcer_error(&f);
            }
        }
        for r in rebuilt {
            self.counters.table_rebuilds += 1;
            tracing::warn!(
                "{}: {} was removed or changed outside saslguard; rebuilt with {} active bans",
                r.enforcer,
                r.describe,
                r.bans
            );
            // The rebuild put every active ban in: what it owed is paid, except what
            // it refused again.
            for o in self.unenforced.values_mut() {
                o.enforcers.remove(r.enforcer);
            }
            for f in &r.failures {
                for t in &f.targets {
                    if let Some(o) = self.unenforced.get_mut(t) {
                        o.enforcers.insert(f.enforcer);
                    }
                }
                self.enforcer_error(f);
            }
            self.forget_paid(" (the rebuild put it back)");
        }
        for f in &errors {
            self.enforcer_error(f);
        }
    }

    /// Forgets the owed bans that no enforcer owes any more, saying so (`how`: what
    /// paid them, if not a retry).
    fn forget_paid(&mut self, how: &str) {
        self.unenforced.retain(|t, o| {
            let done = o.enforcers.is_empty();
            if done {
                tracing::warn!(
                    "ban of {} now enforced after {} retries{how}",
                    target_string(t),
                    o.attempts
                );
            }
            !done
        });
    }

    /// Retries the bans an enforcer has not taken yet, each when its backoff is due.
    fn retry_owed(&mut self, now: Timestamp) {
        let active = &self.active;
        self.unenforced
            .retain(|t, _| active.get(t).is_some_and(|b| b.until > now));
        let due: Vec<IpNet> = self
            .unenforced
            .iter()
            .filter(|(_, o)| o.next <= Instant::now())
            .map(|(t, _)| *t)
            .collect();
        if due.is_empty() {
            return;
        }
        let wall = wall_now().max(now);
        let mut failed: Vec<Failure> = Vec::new();
        for who in self.enforcers.names() {
            let owed: Vec<Decision> = due
                .iter()
                .filter(|t| self.unenforced[*t].enforcers.contains(who))
                .map(|t| decision_of(&self.active[t]))
                .collect();
            if owed.is_empty() {
                continue;
            }
            let f = self.enforcers.retry(who, &owed, wall);
            for d in &owed {
                if !f.iter().any(|f| f.targets.contains(&d.target))
                    && let Some(o) = self.unenforced.get_mut(&d.target)
                {
                    o.enforcers.remove(who);
                }
            }
            failed.extend(f);
        }
        self.forget_paid("");
        for f in failed {
            for t in &f.targets {
                if let Some(o) = self.unenforced.get_mut(t) {
                    o.last_error.clone_from(&f.error);
                    o.schedule();
                }
            }
        }
    }

    /// Once a second: forget bans that are over, expire map entries, prune the store.
    pub fn tick(&mut self, now: Timestamp) {
        self.heal(now);
        self.retry_owed(now);
        self.active.retain(|t, b| {
            let keep = b.until > now;
            if !keep {
                tracing::info!("ban of {} is over", target_string(t));
            }
            keep
        });
        for f in self.enforcers.expire(now) {
            self.enforcer_error(&f);
        }
        if self.last_counter_read.elapsed() >= OWN_CHECK {
            self.read_block_counters();
        }
        if self.last_own_check.elapsed() >= OWN_CHECK {
            self.refresh_own();
        }
        if self.last_geo_check.elapsed() >= std::time::Duration::from_secs(5) {
            self.last_geo_check = Instant::now();
            if self.pipeline.geo_mut().reload_changed() && !self.cfg.blocks.is_empty() {
                self.load_blocks();
            }
        }
        if now.0 - self.last_prune.0 >= 3_600_000 {
            self.last_prune = now;
            self.store.send(vec![Op::Prune {
                failures_before: now.add_ms(-max_window(&self.cfg)),
                history_before: now.add_ms(-self.cfg.daemon.keep_history_ms),
            }]);
        }
    }

    pub fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Status => {
                self.read_block_counters();
                self.status()
            }
            Request::Bans => self.bans(),
            Request::Ban {
                target,
                duration,
                reason,
                force,
            } => self.ban_by_hand(&target, duration.as_deref(), reason.as_deref(), force),
            Request::Unban { target } => self.unban(&target),
            Request::Reload => match self.reload() {
                Ok(message) => Response::Message(Message { ok: True, message }),
                Err(e @ EngineError::Config(_)) => error(e.to_string()),
                Err(e) => error(format!(
                    "configuration not reloaded, the running one is kept: {e}"
                )),
            },
            Request::Metrics => Response::Metrics(MetricsText {
                ok: True,
                text: {
                    self.read_block_counters();
                    self.metrics()
                },
            }),
            Request::Check { address, port } => self.check(&address, port),
        }
    }

    /// The fleet link as `status` and the metrics show it.
    fn cluster_status(&self) -> Option<ClusterStatus> {
        let f = self.fleet.as_ref()?;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Some(ClusterStatus {
            node: f.node.clone(),
            connected: n(&f.stats.connected) == 1,
            published: n(&f.stats.published),
            received: n(&f.stats.received),
            queued: n(&f.stats.queued),
            dropped: n(&f.stats.dropped),
            errors: n(&f.stats.errors),
            refused: f.refused,
            lag_seconds: n(&f.stats.lag_ms) as f64 / 1000.0,
        })
    }

    fn status(&self) -> Response {
        let (addresses, prefixes, evicted) = self.pipeline.tracked();
        Response::Status(Box::new(Status {
            ok: True,
            version: env!("CARGO_PKG_VERSION").into(),
            config: self.config_path.display().to_string(),
            store: self.store_path.display().to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            sources: self.sources.clone(),
            stats: self.pipeline.stats(),
            tracked: Tracked {
                addresses: addresses as u64,
                prefixes: prefixes as u64,
                evicted,
            },
            offenders: self.pipeline.offenders().len() as u64,
            active_bans: self.active.len() as u64,
            bans: self.counters.bans.clone(),
            unbans: self.counters.unbans,
            enforcer_errors: self
                .counters
                .enforcer_errors
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            nft_table_rebuilds: self.counters.table_rebuilds,
            unenforced_bans: self.unenforced.len() as u64,
            alerts: self.counters.alerts.clone(),
            cluster: self.cluster_status(),
            blocks: self
                .blocked
                .iter()
                .map(|b| {
                    let mut s = b.summary();
                    s.refused_packets = self.block_refused.get(&b.name).map(|c| c.1);
                    s
                })
                .collect(),
            geoip: GeoStatus {
                country: self.pipeline.geo().has_country(),
                asn: self.pipeline.geo().has_asn(),
            },
            enforcers: self
                .enforcers
                .described()
                .into_iter()
                .map(|(n, d)| (n.to_string(), d))
                .collect(),
            store_errors: self.store.errors.load(Ordering::Relaxed),
        }))
    }

    /// Whether a ban covers `address` now: the longest-running one that does.
    fn check(&self, address: &str, port: Option<u16>) -> Response {
        let addr = match config::validate::parse_network(address) {
            Ok(n) if n.prefix_len() == n.max_prefix_len() => n.addr(),
            _ => return refused(format!("{address:?} is not an address")),
        };
        let now = wall_now();
        let ban = self
            .active
            .values()
            .filter(|b| b.until > now && b.target.contains(&addr))
            .max_by_key(|b| b.until);
        Response::Check(CheckAnswer {
            ok: True,
            address: addr.to_string(),
            banned: ban.is_some(),
            target: ban.map(|b| target_string(&b.target)),
            until: ban.map(|b| b.until),
            reason: ban.map(|b| b.reason.clone()),
            block: self.block_of(addr, port),
        })
    }

    /// The block that refuses `addr` on `port` (on any of its ports when `port` is
    /// None); never one for the allowlist or this host's own addresses.
    fn block_of(&self, addr: std::net::IpAddr, port: Option<u16>) -> Option<String> {
        if self.pipeline.allowlisted(addr) {
            return None;
        }
        self.blocked
            .iter()
            .find(|b| {
                (b.ports.is_empty() || port.is_none_or(|p| b.ports.contains(&p)))
                    && b.ranges.contains(addr)
            })
            .map(|b| b.name.clone())
    }

    fn bans(&self) -> Response {
        let now = wall_now();
        let mut list: Vec<&BanRow> = self.active.values().filter(|b| b.until > now).collect();
        list.sort_by_key(|b| std::cmp::Reverse(b.until));
        let bans = list
            .iter()
            .map(|b| BanEntry {
                target: target_string(&b.target),
                since: b.at,
                until: b.until,
                remaining_s: (b.until.0 - now.0) / 1000,
                remaining: human_ms(b.until.0 - now.0),
                rule: b.rule.clone(),
                reason: b.reason.clone(),
                origin: b.origin.clone(),
                nth: b.nth,
                geo: b.geo.clone(),
                tls: b.tls.clone(),
                offender: (b.target.prefix_len() == b.target.max_prefix_len())
                    .then(|| self.pipeline.offenders().get(&b.target.addr()))
                    .flatten()
                    .map(|o| summary(&o)),
                not_enforced_by: self.unenforced.get(&b.target).map(|o| Owing {
                    enforcers: o.enforcers.iter().map(|e| e.to_string()).collect(),
                    error: o.last_error.clone(),
                    retries: o.attempts,
                }),
            })
            .collect();
        Response::Bans(BanList { ok: True, bans })
    }

    fn ban_by_hand(
        &mut self,
        target: &str,
        duration: Option<&str>,
        reason: Option<&str>,
        force: bool,
    ) -> Response {
        let target = match config::validate::parse_network(target) {
            Ok(t) => t,
            Err(e) => return refused(e.to_string()),
        };
        let protected: Vec<IpNet> = self.pipeline.protected();
        if let Err(r) =
            crate::addr::check_target(target, &protected, self.cfg.policy.targets, force)
        {
            return refused(r.to_string());
        }
        let ms = match duration.map(config::validate::parse_duration) {
            None => 3_600_000,
            Some(Ok(ms)) if ms > 0 => ms,
            Some(_) => return error("duration: expected something like 90s, 10m, 1h, 7d"),
        };
        let now = wall_now();
        let until = now.add_ms(ms);
        let d = Decision {
            target,
            at: now,
            until,
            reason: match reason {
                Some(r) if !r.trim().is_empty() => format!("banned by hand: {}", r.trim()),
                _ => "banned by hand".into(),
            },
            rule: "manual".into(),
            failures: 0,
            nth: 1,
            geo: target_geo(&self.pipeline, &target),
            tls: None,
        };
        self.pipeline.manual_ban(target, now, until);
        let mut batch = Vec::new();
        let errors = self.enforce(std::slice::from_ref(&d), now, "manual", &mut batch);
        self.store.send(batch);
        if !errors.is_empty() {
            // Recorded, but not (fully) in force: the admin must hear it.
            return error(format!(
                "{} recorded but not enforced: {}",
                target_string(&target),
                errors.join("; ")
            ));
        }
        Response::Banned(Banned {
            ok: True,
            target: target_string(&target),
            until,
        })
    }

    fn unban(&mut self, target: &str) -> Response {
        let target = match config::validate::parse_network(target) {
            Ok(t) => t,
            Err(e) => return error(e.to_string()),
        };
        let now = wall_now();
        let mut removed = self.active.remove(&target).is_some();
        let (held, errors) = self.enforcers.unban(&[target]);
        removed |= held;
        for f in &errors {
            self.enforcer_error(f);
        }
        self.pipeline.manual_unban(target);
        self.publish(crate::fleet::Publish::Lift { target });
        self.counters.unbans += u64::from(removed);
        self.store.send(vec![Op::Lift {
            target,
            at: now,
            by: "hand".into(),
        }]);
        tracing::warn!("unban {} by hand", target_string(&target));
        if let Some(f) = errors.first() {
            return error(f.to_string());
        }
        Response::Unbanned(Unbanned {
            ok: True,
            target: target_string(&target),
            was_banned: removed,
        })
    }

    /// Reads the configuration file again. A bad file is refused and the running
    /// configuration kept. Counting, policy and enforcer settings take effect at once
    /// (the windows are rebuilt from the store); sources and daemon paths need a
    /// restart.
    pub fn reload(&mut self) -> Result<String, EngineError> {
        let r = self.try_reload();
        if let Err(e) = &r {
            tracing::error!("configuration not reloaded, the running one is kept: {e}");
        }
        r
    }

    fn try_reload(&mut self) -> Result<String, EngineError> {
        let cfg = config::load(&self.config_path)?;
        let mut notes = Vec::new();
        if cfg.sources != self.cfg.sources || cfg.daemon != self.cfg.daemon {
            notes.push("[sources] and [daemon] changes take effect at the next restart");
        }
        self.store.flush()?;
        let now = wall_now();
        let store = Store::open_read_only(&self.store_path)?;
        let restored = restore_from(&store, &cfg, now)?;
        drop(store);
        let mut pipeline = live_pipeline(&cfg, &restored)?;
        // Open sessions stay open over a reload: their attempts are not counted again.
        pipeline.carry_over(&mut self.pipeline);
        // An enforcer that changed or went away takes its bans with it: the old table
        // (another name, or nftables turned off) would go on blocking, and the old map
        // on refusing, while `unban` no longer reaches them.
        let want: Vec<Decision> = self.active.values().map(decision_of).collect();
        let failures = match self.enforcers.reload(&cfg.enforcers(), &want, now) {
            Ok(f) => f,
            Err(e) => {
                // Nothing changed: the pipeline this reload built is dropped, and the
                // statistics go back to the running one.
                self.pipeline.carry_over(&mut pipeline);
                return Err(e.into());
            }
        };
        for f in &failures {
            self.enforcer_error(f);
        }
        if cfg.zone != self.cfg.zone {
            self.resolvers = self
                .resolvers
                .iter()
                .map(|_| YearResolver::new(cfg.zone, now))
                .collect();
        }
        self.pipeline = pipeline;
        self.cfg = cfg;
        self.refresh_own();
        self.push_allow();
        self.load_blocks();
        let msg = format!(
            "configuration reloaded from {}{}",
            self.config_path.display(),
            notes.iter().map(|n| format!("; {n}")).collect::<String>()
        );
        tracing::warn!("{msg}");
        Ok(msg)
    }

    fn metrics(&self) -> String {
        let st = self.pipeline.stats();
        let now = wall_now();
        let (a, p, _) = self.pipeline.tracked();
        let mut enforcer_errors: BTreeMap<&'static str, u64> = ["nftables", "postfix-map"]
            .into_iter()
            .map(|e| (e, 0))
            .collect();
        for e in self.enforcers.names() {
            enforcer_errors.entry(e).or_insert(0);
        }
        for (e, n) in &self.counters.enforcer_errors {
            enforcer_errors.insert(e, *n);
        }
        let readings = Readings {
            sources: self
                .sources
                .iter()
                .map(|s| SourceReading {
                    name: s.name.clone(),
                    lines: s.lines,
                    behind_bytes: s.behind_bytes,
                    lag_seconds: s
                        .last_line_time
                        .map_or(0.0, |t| (now.0 - t.0).max(0) as f64 / 1000.0),
                })
                .collect(),
            skipped: [
                ("unparsable", st.skipped_unparsable),
                ("too_long", st.skipped_too_long),
                ("bad_time", st.skipped_bad_time),
            ],
            events: st.events.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            failures: st.failures,
            bans: self.counters.bans.clone(),
            unbans: self.counters.unbans,
            active_bans: self.active.len() as u64,
            enforcer_errors,
            unenforced_bans: self.unenforced.len() as u64,
            table_rebuilds: self.counters.table_rebuilds,
            alerts: crate::alert::KINDS
                .iter()
                .map(|k| (k.to_string(), *self.counters.alerts.get(*k).unwrap_or(&0)))
                .collect(),
            tracked_addresses: a as u64,
            tracked_prefixes: p as u64,
            store_errors: self.store.errors.load(Ordering::Relaxed),
            blocks: self
                .blocked
                .iter()
                .map(|b| {
                    let n = self.block_refused.get(&b.name).map_or(0, |c| c.1);
                    (b.name.clone(), n)
                })
                .collect(),
            cluster: self.cluster_status(),
        };
        super::metrics::render(&readings)
    }

    /// Stops: writes what is left to the store.
    /// Keeps what the counter knows of open sessions, with the sources' last
    /// positions, so the next start counts none of their attempts twice; then closes
    /// the store.
    pub fn shutdown(&mut self) {
        self.read_block_counters();
        self.write_block_counts(true);
        let snap = self.pipeline.counter_snapshot();
        match serde_json::to_string(&snap) {
            Ok(position) => self.store.send(vec![Op::Checkpoint {
                source: COUNTER_STATE.into(),
                position,
                at: wall_now(),
            }]),
            Err(e) => tracing::warn!("counter state not kept: {e}"),
        }
        self.store.close();
    }
}

fn decision_of(b: &BanRow) -> Decision {
    Decision {
        target: b.target,
        at: b.at,
        until: b.until,
        reason: b.reason.clone(),
        rule: b.rule.clone(),
        failures: b.failures,
        nth: b.nth,
        geo: b.geo.clone(),
        tls: b.tls.clone(),
    }
}

/// Country and AS of a single address (nothing for a prefix).
fn target_geo(p: &Pipeline, target: &IpNet) -> crate::geo::Origin {
    if target.prefix_len() == target.max_prefix_len() {
        p.geo().lookup(target.addr())
    } else {
        crate::geo::Origin::default()
    }
}

/// What `bans` shows of an offender.
fn summary(o: &Offender) -> OffenderSummary {
    OffenderSummary {
        failures: o.failures,
        first_failure: o.first_failure,
        last_failure: o.last_failure,
        services: o.services.clone(),
        mechanisms: o.mechanisms.clone(),
        users: o.users.iter().take(10).cloned().collect(),
        users_total: o.users.len() as u64 + o.users_not_kept,
        tls: o.tls.clone(),
        logins_after_failure: o.logins_after_failure,
    }
}

#[cfg(test)]
mod tests {
    //! The engine's own logic with the clock in the test's hands: no kernel, no waiting.
    use super::*;

    fn engine(dir: &Path) -> Engine {
        let path = dir.join("saslguard.toml");
        let cfg = config::parse(
            "[sources]\njournal = false\n[nftables]\nenabled = false\n[[rule]]\nname = \"t\"\nfailures = 3\nwithin = \"10m\"\nban = \"1h\"\n",
            &path,
        )
        .unwrap();
        let store_path = dir.join("saslguard.db");
        let store = Store::open(&store_path).unwrap();
        let restored = restore_from(&store, &cfg, wall_now()).unwrap();
        let writer = StoreWriter::start(store, Default::default());
        Engine::new(cfg, &path, &store_path, &restored, writer, vec![]).unwrap()
    }

    fn targets(e: &mut Engine) -> Vec<String> {
        let Response::Bans(list) = e.handle(Request::Bans) else {
            panic!("bans answers with the list")
        };
        list.bans.into_iter().map(|b| b.target).collect()
    }

    #[test]
    fn a_ban_ends_when_the_clock_passes_its_until_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = engine(dir.path());
        let a = e.handle(Request::Ban {
            target: "198.51.100.9".into(),
            duration: Some("1h".into()),
            reason: None,
            force: false,
        });
        let Response::Banned(a) = a else {
            panic!("not banned: {a:?}")
        };
        // The time the answer says, to the millisecond.
        let until = a.until;
        // One millisecond before its end the ban holds; at its end it is over.
        e.tick(until.add_ms(-1));
        assert_eq!(e.active.len(), 1);
        e.tick(until);
        assert!(e.active.is_empty());
        assert!(targets(&mut e).is_empty());
        e.shutdown();
    }

    #[test]
    fn failures_from_the_fleet_dated_in_the_future_start_no_ban_in_the_future() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = engine(dir.path());
        let ahead = wall_now().add_ms(86_400_000);
        for _ in 0..3 {
            e.fleet_input(crate::fleet::Received::Failure {
                address: "198.51.100.9".parse().unwrap(),
                time: ahead,
                count: 1,
            });
        }
        let Response::Bans(list) = e.handle(Request::Bans) else {
            panic!("bans answers with the list")
        };
        assert_eq!(list.bans.len(), 1, "three fleet failures ban");
        let b = &list.bans[0];
        assert!(b.since <= wall_now(), "the ban starts now, not a day ahead");
        assert!(
            b.until.0 - wall_now().0 <= 3_600_000,
            "and lasts its hour from now"
        );
        e.shutdown();
    }
}
