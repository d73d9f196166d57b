//! Counting that matches reality: one failed attempt counts once, however many
//! writers record it.
//!
//! One SMTP AUTH guess through Dovecot SASL can appear as Postfix's warning, Dovecot's
//! `passwd-file(user,ADDR): Password mismatch` (with `auth_verbose = yes`), PAM's
//! `pam_unix(dovecot:auth)` line, and later in Postfix's `auth=0/N` tally. An IMAP or
//! POP3 guess appears as Dovecot's `driver(user,ADDR,<session>)` line, perhaps PAM's,
//! and in the login process's `auth failed, N attempts` summary. The rules:
//!
//! 1. Records of one attempt are joined per address within `pair_window` (Postfix
//!    gives Dovecot at most 10 s to answer): a Postfix warning joins a Dovecot or PAM
//!    record that has no Postfix verdict yet, and so on. A record that joins nothing
//!    starts a new attempt and is counted at once.
//! 2. A login summary with `session=<S>` counts only the attempts of S that no auth line
//!    counted (all N when `auth_verbose = no`); without a session id it first absorbs
//!    unclaimed auth-process records of its address from the session's duration.
//! 3. Postfix's disconnect tally counts AUTH commands that failed with no line of their
//!    own (aborted, dropped, refused before TLS).
//! 4. `Connection lost to authentication server`: joins a Dovecot record of the same
//!    guess when there is one (Dovecot logged the mismatch, then delayed its answer past
//!    Postfix's timeout). Otherwise it counts only if the address already had a counted
//!    failure within `penalty_window`: Dovecot delays answers only to addresses that
//!    keep failing, so that is a guesser provoking the penalty; from an address with no
//!    recent failure it is an auth server outage and counts for nothing. Dovecot may
//!    still check the abandoned request after its delay and log the mismatch seconds
//!    later; that line joins the attempt already counted.
//!
//! Pure and synchronous: events in, [`Outcome`]s out; all state bounded by LRU caps.

use crate::addr::AddrKey;
use crate::parse::dovecot::SERVICE_AUTH;
use crate::parse::{Channel, Direction, Event, Kind, Name, ProcessKey, Tls};
pub mod connections;

use crate::time::Timestamp;
use connections::Sessions;
use lru::LruCache;
use serde::Serialize;
use smallvec::SmallVec;
use std::net::IpAddr;

/// What the counter needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CountConfig {
    pub pair_window_ms: i64,
    pub penalty_window_ms: i64,
    pub connection_lost: ConnectionLost,
    pub max_connections: usize,
    pub max_addresses: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionLost {
    /// Never count it (trusts that Dovecot's own line is read).
    Never,
    /// Rule 4 above (default).
    AfterFailure,
    /// Always count it (an auth outage will count against every user).
    Always,
}

impl Default for CountConfig {
    fn default() -> Self {
        CountConfig {
            pair_window_ms: 20_000,
            penalty_window_ms: 15 * 60_000,
            connection_lost: ConnectionLost::AfterFailure,
            max_connections: 50_000,
            max_addresses: 100_000,
        }
    }
}

pub const UNKNOWN_POSTURE: &str = "unknown";
pub const PLAINTEXT: &str = "plaintext";

/// A counted failure (`count` attempts at once for summaries and tallies).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub time: Timestamp,
    pub address: IpAddr,
    pub count: u32,
    pub service: Option<Name>,
    pub mechanism: Option<String>,
    pub user: Option<String>,
    /// A posture label, or [`UNKNOWN_POSTURE`] until a later line settles it.
    pub posture: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Counted(Attempt),
    /// A later record of `n` already counted attempts tells more about them.
    Refined {
        address: IpAddr,
        n: u32,
        service: Option<(Name, Name)>,
        mechanism: Option<(String, String)>,
        user: Option<String>,
    },
    /// `n` attempts counted with an unknown posture had this one.
    Posture {
        address: IpAddr,
        n: u32,
        label: String,
    },
    Success {
        time: Timestamp,
        address: IpAddr,
        user: Option<String>,
        service: Option<Name>,
    },
    /// `Connection lost to authentication server` that was not counted.
    Unavailable {
        time: Timestamp,
        address: IpAddr,
    },
    /// A failure line whose address could not be told apart from client text.
    Ambiguous,
}

const P: u8 = 1; // Postfix warning
const D: u8 = 2; // Dovecot auth line without session
const S: u8 = 4; // Dovecot auth line with session
const U: u8 = 8; // pam_unix
const L: u8 = 16; // Postfix connection lost

const MAX_PENDING_PER_ADDRESS: usize = 64;
const RETAIN_MS: i64 = 300_000;

/// A counted attempt waiting for its other records: its time, which records it has,
/// and which of its details a later record may still tell (issue 17: 16 bytes, where
/// the names themselves took 56; what joining needs is only whether each is known).
#[derive(Debug, Clone, Copy)]
struct Pending {
    time: Timestamp,
    mask: u8,
    known: u8,
}

/// [`Pending::known`]: counted under Dovecot's auth process as its service, so a
/// later record may name the real one.
const AUTH_SERVICE: u8 = 1;
const MECHANISM: u8 = 2;
const USER: u8 = 4;
const POSTURE: u8 = 8;

/// [`Pending::known`] of an attempt counted under `service`, with or without a
/// mechanism, an account and a posture.
fn known(service: Option<&str>, mechanism: bool, user: bool, posture: bool) -> u8 {
    let flag = |on: bool, f: u8| if on { f } else { 0 };
    flag(service == Some(SERVICE_AUTH), AUTH_SERVICE)
        | flag(mechanism, MECHANISM)
        | flag(user, USER)
        | flag(posture, POSTURE)
}

impl Pending {
    fn has(&self, f: u8) -> bool {
        self.known & f != 0
    }
}

#[derive(Debug)]
struct AddrState {
    /// Oldest first; one attempt inline, in the table's own entry (issue 17: most
    /// addresses never have a second one, and a separate allocation cost 64 bytes
    /// each at 1M addresses).
    pending: SmallVec<[Pending; 1]>,
    /// The time of the last attempt counted, [`NEVER`] before the first (an `Option`
    /// would take 8 bytes more in every entry).
    last_counted: Timestamp,
}

const NEVER: Timestamp = Timestamp(i64::MIN);

impl AddrState {
    fn last_counted(&self) -> Option<Timestamp> {
        (self.last_counted != NEVER).then_some(self.last_counted)
    }

    /// Keeps `p` as the newest pending attempt, the oldest dropped past the bound.
    fn pend(&mut self, p: Pending) {
        if self.pending.len() >= MAX_PENDING_PER_ADDRESS {
            self.pending.remove(0);
        }
        self.pending.push(p);
    }
}

#[derive(Debug, Default, Clone)]
struct SessionCount {
    counted: u32,
    /// Counted with service `dovecot-auth` / no mechanism, to be refined by the summary.
    no_mech: u32,
    /// Attempts the login summary counted before the session's auth lines arrived:
    /// Dovecot 2.4's login and auth processes write through different processes, and
    /// the summary can come first. Each later auth line of the session takes one.
    prepaid: u32,
}

/// What the counter must remember over a restart so that no attempt is counted twice:
/// the open Dovecot sessions with the attempts their auth lines already counted (the
/// login summary at their end counts only the rest), the open Postfix connections with
/// the AUTH commands already explained (the disconnect tally counts only the rest), and
/// the attempts still waiting for their other records within the pair window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CounterSnapshot {
    /// Session id, attempts counted, of which without a mechanism.
    pub dovecot: Vec<(String, u32, u32)>,
    /// Session id, attempts its login summary counted before its auth lines came.
    pub dovecot_prepaid: Vec<(String, u32)>,
    pub postfix: Vec<connections::ConnSnapshot>,
    /// Pending attempts as earlier builds wrote them, one object each (read, no longer
    /// written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingSnapshot>,
    /// Pending attempts as `[address, time in ms, records, details known]`, the last
    /// two the bits of [`Pending`] (issue 17: an object with field names took about
    /// 150 bytes of JSON each, and a daemon with 1M of them needed three times its
    /// settled memory to write and read them back).
    pub pending_packed: Vec<(IpAddr, i64, u8, u8)>,
}

/// A counted attempt waiting for its other records, as a restart keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PendingSnapshot {
    pub address: IpAddr,
    pub time: Timestamp,
    pub mask: u8,
    /// `dovecot-auth` when a later record may name the real service, else none.
    pub service: Option<String>,
    /// The mechanism, as snapshots before issue 17 kept it (read, no longer written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    #[serde(default)]
    pub mechanism_known: bool,
    pub has_user: bool,
    pub posture_known: bool,
}

pub struct Counter {
    cfg: CountConfig,
    sessions: Sessions,
    addrs: crate::bounded::Lru<AddrKey, AddrState>,
    dovecot_sessions: LruCache<Box<str>, SessionCount>,
}

/// What [`Counter::join_or_count`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    /// Joined to a pending attempt.
    Joined,
    /// Counted as a new attempt.
    Counted,
    /// Neither: its `count` said no.
    Left,
}

/// Joins record `c` to a pending attempt in `st` (of `addr`) within `window`; pushes
/// what the record adds. Returns true when it joined.
#[allow(clippy::too_many_arguments)]
fn join(
    st: &mut AddrState,
    window: i64,
    time: Timestamp,
    c: u8,
    ev: &Event,
    addr: IpAddr,
    posture: Option<&str>,
    out: &mut Vec<Outcome>,
) -> bool {
    let found = st
        .pending
        .iter_mut()
        .find(|p| (time.0 - p.time.0).abs() <= window && compatible(c, p.mask));
    let Some(p) = found else { return false };
    p.mask |= c;
    let service = match &ev.service {
        Some(new) if p.has(AUTH_SERVICE) && new != SERVICE_AUTH => {
            p.known &= !AUTH_SERVICE;
            Some((Name::Borrowed(SERVICE_AUTH), new.clone()))
        }
        _ => None,
    };
    let mechanism = match &ev.mechanism {
        Some(new) if !p.has(MECHANISM) => {
            p.known |= MECHANISM;
            Some((String::new(), new.clone()))
        }
        _ => None,
    };
    let user = if !p.has(USER) && ev.user.is_some() {
        p.known |= USER;
        ev.user.clone()
    } else {
        None
    };
    if service.is_some() || mechanism.is_some() || user.is_some() {
        out.push(Outcome::Refined {
            address: addr,
            n: 1,
            service,
            mechanism,
            user,
        });
    }
    if !p.has(POSTURE)
        && let Some(label) = posture
    {
        p.known |= POSTURE;
        out.push(Outcome::Posture {
            address: addr,
            n: 1,
            label: label.to_string(),
        });
    }
    true
}

/// Counts `n` new attempts of `ev` from `addr` (its state `st`), pending for the
/// other records of their kind `c` (none: 0).
#[allow(clippy::too_many_arguments)]
fn count_on(
    st: &mut AddrState,
    time: Timestamp,
    c: u8,
    ev: &Event,
    addr: IpAddr,
    n: u32,
    posture: Option<String>,
    out: &mut Vec<Outcome>,
) {
    st.last_counted = time;
    if c != 0 {
        st.pend(Pending {
            time,
            mask: c,
            known: known(
                ev.service.as_deref(),
                ev.mechanism.is_some(),
                ev.user.is_some(),
                posture.is_some(),
            ),
        });
    }
    out.push(Outcome::Counted(Attempt {
        time,
        address: addr,
        count: n,
        service: ev.service.clone(),
        mechanism: ev.mechanism.clone(),
        user: ev.user.clone(),
        posture: posture.unwrap_or_else(|| UNKNOWN_POSTURE.to_string()),
    }));
}

fn compatible(c: u8, mask: u8) -> bool {
    match c {
        P | L => mask & (P | L | S) == 0 && mask & (D | U) != 0,
        D => mask & (D | S) == 0,
        S => mask & (P | D | S | L) == 0 && mask & U != 0,
        U => mask & U == 0 && mask & (P | D | S) != 0,
        _ => false,
    }
}

impl Counter {
    pub fn new(cfg: CountConfig) -> Counter {
        Counter {
            sessions: Sessions::new(cfg.max_connections),
            addrs: crate::bounded::Lru::new(cfg.max_addresses),
            dovecot_sessions: crate::bounded::lru(cfg.max_connections),
            cfg,
        }
    }

    /// Forgets every open session and address, as a new counter of the same
    /// configuration.
    pub fn clear(&mut self) {
        *self = Counter::new(self.cfg.clone());
    }

    pub fn connections(&self) -> usize {
        self.sessions.len()
    }

    /// The state a restart needs (see [`CounterSnapshot`]); pending records older than
    /// the pair window at `now` are left out, they can join nothing.
    pub fn snapshot(&self, now: Timestamp) -> CounterSnapshot {
        let window = self.cfg.pair_window_ms;
        CounterSnapshot {
            dovecot: self
                .dovecot_sessions
                .iter()
                .rev()
                .filter(|(_, s)| s.counted > 0)
                .map(|(k, s)| (k.to_string(), s.counted, s.no_mech))
                .collect(),
            dovecot_prepaid: self
                .dovecot_sessions
                .iter()
                .rev()
                .filter(|(_, s)| s.prepaid > 0)
                .map(|(k, s)| (k.to_string(), s.prepaid))
                .collect(),
            postfix: self.sessions.snapshot(),
            pending: Vec::new(),
            pending_packed: self
                .addrs
                .iter_oldest_first()
                .flat_map(|(a, st)| {
                    st.pending
                        .iter()
                        .filter(move |p| now.0 - p.time.0 <= window)
                        .map(move |p| (a.ip(), p.time.0, p.mask, p.known))
                })
                .collect(),
        }
    }

    /// Puts back a [`CounterSnapshot`] (before any line is fed). Returns the pending
    /// attempts refused: times no log line can have (a damaged store).
    pub fn restore(&mut self, snap: &CounterSnapshot) -> usize {
        for (sid, counted, no_mech) in &snap.dovecot {
            self.dovecot_sessions.put(
                sid.as_str().into(),
                SessionCount {
                    counted: *counted,
                    no_mech: *no_mech,
                    prepaid: 0,
                },
            );
        }
        for (sid, prepaid) in &snap.dovecot_prepaid {
            self.dovecot_sessions.put(
                sid.as_str().into(),
                SessionCount {
                    prepaid: *prepaid,
                    ..SessionCount::default()
                },
            );
        }
        self.sessions.restore(&snap.postfix);
        let old = snap.pending.iter().map(|p| {
            let k = known(
                p.service.as_deref(),
                p.mechanism_known || p.mechanism.is_some(),
                p.has_user,
                p.posture_known,
            );
            (p.address, p.time.0, p.mask, k)
        });
        let mut refused = 0;
        for (address, time, mask, k) in old.chain(snap.pending_packed.iter().copied()) {
            let time = Timestamp(time);
            if !time.is_writable() {
                refused += 1;
                continue;
            }
            let st = self.state(address, time);
            st.pend(Pending {
                time,
                mask,
                known: k & (AUTH_SERVICE | MECHANISM | USER | POSTURE),
            });
            st.last_counted = st.last_counted.max(time);
        }
        refused
    }

    /// Feeds one event; pushes what it means onto `out`.
    pub fn feed(
        &mut self,
        time: Timestamp,
        process: Option<&ProcessKey>,
        ev: &Event,
        out: &mut Vec<Outcome>,
    ) {
        if ev.ambiguous {
            out.push(Outcome::Ambiguous);
            return;
        }
        let Some(addr) = ev.address else { return };
        match (ev.kind, ev.channel) {
            (Kind::Connect, _) => {
                if let Some(k) = process {
                    self.sessions.connect(*k, addr, ev.service.clone());
                }
            }
            // The outbound client's TLS line is a delivery, no inbound session: made
            // one, it never met its disconnect and pushed open sessions out of the
            // table (their failures counted again by their disconnect tally).
            (Kind::Tls, _) if ev.direction == Some(Direction::Outbound) => {}
            (Kind::Tls, _) => {
                if let (Some(k), Some(t)) = (process, &ev.tls) {
                    self.sessions.get(k, addr, ev.service.as_ref()).tls = Some(t.clone());
                }
            }
            (Kind::AuthFailure, Channel::PostfixSasl) => {
                self.postfix_failure(time, process, ev, addr, out)
            }
            (Kind::AuthUnavailable, _) => self.connection_lost(time, process, ev, addr, out),
            (Kind::AuthAbandoned, Channel::PostfixSasl) => {
                // A warning for an AUTH the SASL server refused outright: it is one of the
                // tally's failed AUTH commands, explained, not a guess.
                if let Some(k) = process {
                    self.sessions.get(k, addr, ev.service.as_ref()).explained += 1;
                }
            }
            (Kind::Disconnect, Channel::PostfixTally) => {
                self.postfix_disconnect(time, process, ev, addr, out)
            }
            (Kind::AuthFailure, Channel::DovecotAuth) => {
                let c = if ev.session.is_some() { S } else { D };
                self.auth_record(time, c, ev, addr, out);
            }
            (Kind::AuthFailure, Channel::PamUnix) => self.auth_record(time, U, ev, addr, out),
            (Kind::AuthFailure, Channel::DovecotLogin) => self.login_summary(time, ev, addr, out),
            (Kind::AuthSuccess, _) => {
                if let Some(k) = process {
                    self.sessions.get(k, addr, ev.service.as_ref()).success_seen = true;
                }
                out.push(Outcome::Success {
                    time,
                    address: addr,
                    user: ev.user.clone(),
                    service: ev.service.clone(),
                });
            }
            // Every other pair is named, so that a new kind or channel cannot be parsed
            // and then silently dropped: the compiler asks where it goes.
            // No parser writes a failure without a record of its own.
            (Kind::AuthFailure, Channel::PostfixTally | Channel::None) => {}
            // Dovecot's AUTHs without a verdict (2.4's invalid_mech, aborted by the
            // client, ...) and Postfix's lost connection after AUTH: no password was
            // checked, nothing to count.
            (
                Kind::AuthAbandoned,
                Channel::PostfixTally
                | Channel::DovecotAuth
                | Channel::PamUnix
                | Channel::DovecotLogin
                | Channel::None,
            ) => {}
            // Session ends other than Postfix's tally (Dovecot's no_auth_attempts, 2.4's
            // other reason codes) carry no attempt.
            (
                Kind::Disconnect,
                Channel::PostfixSasl
                | Channel::DovecotAuth
                | Channel::PamUnix
                | Channel::DovecotLogin
                | Channel::None,
            ) => {}
        }
    }

    /// Drops the state of addresses no record can use any more: no pending attempt
    /// within the time a record may still join it, and no count within the penalty
    /// window, both before `now` less `late_ms`. The records of a source that runs
    /// behind the others by up to `late_ms` still find what they pair with. At most
    /// `max`; returns how many went.
    pub fn sweep(&mut self, now: Timestamp, late_ms: i64, max: usize) -> usize {
        let joins = RETAIN_MS
            .max(self.cfg.pair_window_ms)
            .saturating_add(late_ms);
        let penalty = self.cfg.penalty_window_ms.saturating_add(late_ms);
        let past = |t: Timestamp, span: i64| now.0.saturating_sub(t.0) > span;
        self.addrs.pop_oldest_while(max, |_, st| {
            st.pending.iter().all(|p| past(p.time, joins))
                && (st.last_counted == NEVER || past(st.last_counted, penalty))
        })
    }

    /// The state of `addr`, made if new, its pending attempts older than any record
    /// can join dropped.
    fn state(&mut self, addr: IpAddr, now: Timestamp) -> &mut AddrState {
        let st = self.addrs.get_or_insert_mut(addr.into(), || AddrState {
            pending: SmallVec::new(),
            last_counted: NEVER,
        });
        let stale = st
            .pending
            .iter()
            .take_while(|p| now.0 - p.time.0 > RETAIN_MS)
            .count();
        if stale > 0 {
            st.pending.drain(..stale);
        }
        st
    }

    /// Joins record `c` to a pending attempt of `addr`, or counts it as a new attempt
    /// when `count` says so of the address's state: one lookup of the address.
    #[allow(clippy::too_many_arguments)]
    fn join_or_count(
        &mut self,
        time: Timestamp,
        c: u8,
        ev: &Event,
        addr: IpAddr,
        posture: Option<String>,
        count: impl FnOnce(&AddrState) -> bool,
        out: &mut Vec<Outcome>,
    ) -> Record {
        let window = self.cfg.pair_window_ms;
        let st = self.state(addr, time);
        if join(st, window, time, c, ev, addr, posture.as_deref(), out) {
            return Record::Joined;
        }
        if !count(st) {
            return Record::Left;
        }
        count_on(st, time, c, ev, addr, 1, posture, out);
        Record::Counted
    }

    /// Counts `n` new attempts of `ev`'s address.
    fn count_new(
        &mut self,
        time: Timestamp,
        c: u8,
        ev: &Event,
        n: u32,
        posture: Option<String>,
        out: &mut Vec<Outcome>,
    ) {
        let Some(addr) = ev.address else { return };
        let st = self.state(addr, time);
        count_on(st, time, c, ev, addr, n, posture, out);
    }

    /// The posture a Postfix record can tell now; registers the attempt as pending on
    /// the connection when it can only be told at disconnect.
    fn postfix_posture(
        &mut self,
        process: Option<&ProcessKey>,
        ev: &Event,
        addr: IpAddr,
    ) -> Option<String> {
        let k = process?;
        let conn = self.sessions.get(k, addr, ev.service.as_ref());
        conn.explained += 1;
        let p = conn.posture();
        if p.is_none() {
            conn.posture_pending += 1;
        }
        p
    }

    fn postfix_failure(
        &mut self,
        time: Timestamp,
        process: Option<&ProcessKey>,
        ev: &Event,
        addr: IpAddr,
        out: &mut Vec<Outcome>,
    ) {
        // When the posture is pending on the connection it is settled at disconnect.
        let posture = self.postfix_posture(process, ev, addr);
        self.join_or_count(time, P, ev, addr, posture, |_| true, out);
    }

    fn connection_lost(
        &mut self,
        time: Timestamp,
        process: Option<&ProcessKey>,
        ev: &Event,
        addr: IpAddr,
        out: &mut Vec<Outcome>,
    ) {
        let posture = self.postfix_posture(process, ev, addr);
        let was_pending = posture.is_none();
        let (penalty, lost) = (self.cfg.penalty_window_ms, self.cfg.connection_lost);
        match lost {
            ConnectionLost::Never => {}
            ConnectionLost::AfterFailure | ConnectionLost::Always => {
                // Counted when the address failed recently, or always: left pending,
                // as Dovecot may still process the abandoned request after Postfix
                // gave up and log its mismatch seconds later (seen with Dovecot
                // 2.3.19); that line must join this attempt.
                let count = |st: &AddrState| {
                    lost == ConnectionLost::Always
                        || st.last_counted().is_some_and(|t| time.0 - t.0 <= penalty)
                };
                if self.join_or_count(time, L, ev, addr, posture, count, out) != Record::Left {
                    return;
                }
            }
        }
        self.unpend_posture(process, addr, was_pending);
        out.push(Outcome::Unavailable {
            time,
            address: addr,
        });
    }

    /// Undo the posture registration of a record that was not counted.
    fn unpend_posture(&mut self, process: Option<&ProcessKey>, addr: IpAddr, was_pending: bool) {
        if let (Some(k), true) = (process, was_pending) {
            let conn = self.sessions.get(k, addr, None);
            conn.posture_pending = conn.posture_pending.saturating_sub(1);
        }
    }

    fn postfix_disconnect(
        &mut self,
        time: Timestamp,
        process: Option<&ProcessKey>,
        ev: &Event,
        addr: IpAddr,
        out: &mut Vec<Outcome>,
    ) {
        let conn = process
            .and_then(|k| self.sessions.remove(k))
            .filter(|c| c.address == addr);
        let tally = ev.tally.unwrap_or_default();
        let (explained, pending, success_seen) = conn.as_ref().map_or((0, 0, false), |c| {
            (c.explained, c.posture_pending, c.success_seen)
        });
        let failed = tally.auth_total.saturating_sub(tally.auth_ok);
        let extra = failed.saturating_sub(explained);
        // The posture label is written out only for a disconnect that needs it: most
        // sessions end with nothing left to count.
        if pending > 0 || extra > 0 {
            let label = match conn.as_ref().and_then(|c| c.posture()) {
                Some(l) => l,
                None if tally.starttls => Tls::unknown_cipher().label(),
                None => PLAINTEXT.to_string(),
            };
            if pending > 0 {
                out.push(Outcome::Posture {
                    address: addr,
                    n: pending,
                    label: label.clone(),
                });
            }
            if extra > 0 {
                self.count_new(time, 0, ev, extra, Some(label), out);
            }
        }
        if tally.auth_ok > 0 && !success_seen {
            out.push(Outcome::Success {
                time,
                address: addr,
                user: None,
                service: ev.service.clone(),
            });
        }
    }

    fn auth_record(
        &mut self,
        time: Timestamp,
        c: u8,
        ev: &Event,
        addr: IpAddr,
        out: &mut Vec<Outcome>,
    ) {
        if let Some(sid) = &ev.session
            && let Some(sc) = self.dovecot_sessions.get_mut(sid.as_str())
            && sc.prepaid > 0
        {
            sc.prepaid -= 1;
            out.push(Outcome::Refined {
                address: addr,
                n: 1,
                service: None,
                mechanism: None,
                user: ev.user.clone(),
            });
            return;
        }
        if self.join_or_count(time, c, ev, addr, None, |_| true, out) == Record::Counted
            && let Some(sid) = &ev.session
        {
            let sc = self
                .dovecot_sessions
                .get_or_insert_mut(sid.as_str().into(), SessionCount::default);
            sc.counted += 1;
            if ev.mechanism.is_none() {
                sc.no_mech += 1;
            }
        }
    }

    fn login_summary(&mut self, time: Timestamp, ev: &Event, addr: IpAddr, out: &mut Vec<Outcome>) {
        let n = ev.attempts.unwrap_or(1);
        let label = match (&ev.tls, ev.plaintext) {
            (Some(t), _) => Some(t.label()),
            (None, true) => Some(PLAINTEXT.to_string()),
            (None, false) => None,
        };
        let mut explained = 0;
        if let Some(sid) = &ev.session
            && let Some(sc) = self.dovecot_sessions.pop(sid.as_str())
        {
            explained = sc.counted.min(n);
            if sc.counted > 0 {
                let service = ev
                    .service
                    .clone()
                    .map(|s| (Name::Borrowed(SERVICE_AUTH), s));
                let mechanism = match (&ev.mechanism, sc.no_mech) {
                    (Some(m), k) if k > 0 => Some((String::new(), m.clone())),
                    _ => None,
                };
                out.push(Outcome::Refined {
                    address: addr,
                    n: sc.counted,
                    service,
                    mechanism,
                    user: None,
                });
                if let Some(l) = &label {
                    out.push(Outcome::Posture {
                        address: addr,
                        n: sc.counted,
                        label: l.clone(),
                    });
                }
            }
        }
        let mut rest = n - explained;
        // Absorb auth-process records of this session that carried no session id
        // (PAM's line always; Dovecot's own before 2.1): unclaimed, from the session's
        // lifetime.
        if rest > 0 {
            let since = time.0 - i64::from(ev.secs.unwrap_or(300)) * 1000 - 2000;
            let claimable = if ev.session.is_some() { U } else { U | D };
            let st = self.state(addr, time);
            let mut absorbed = 0;
            st.pending.retain(|p| {
                if absorbed < rest && p.time.0 >= since && p.mask & !claimable == 0 {
                    absorbed += 1;
                    false
                } else {
                    true
                }
            });
            if absorbed > 0 {
                let service = ev
                    .service
                    .clone()
                    .map(|s| (Name::Borrowed(SERVICE_AUTH), s));
                out.push(Outcome::Refined {
                    address: addr,
                    n: absorbed,
                    service,
                    mechanism: None,
                    user: None,
                });
                if let Some(l) = &label {
                    out.push(Outcome::Posture {
                        address: addr,
                        n: absorbed,
                        label: l.clone(),
                    });
                }
            }
            rest -= absorbed;
        }
        if rest > 0 {
            if let Some(sid) = &ev.session {
                self.dovecot_sessions.put(
                    sid.as_str().into(),
                    SessionCount {
                        prepaid: rest,
                        ..SessionCount::default()
                    },
                );
            }
            self.count_new(time, 0, ev, rest, label, out);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The counter's rules on real lines, each as Postfix and Dovecot write them.
    use super::*;
    use crate::parse::parse_line;

    /// Feeds `lines` (one second apart) and returns the attempts counted.
    fn counted(lines: &[&str]) -> (u32, Vec<Outcome>) {
        let mut c = Counter::new(CountConfig::default());
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let p = parse_line(l).expect("a log line");
            let ev = p.event.expect("an event");
            c.feed(
                Timestamp::from_secs(1_000 + i as i64),
                p.process.as_ref(),
                &ev,
                &mut out,
            );
        }
        let n = out
            .iter()
            .map(|o| match o {
                Outcome::Counted(a) => a.count,
                _ => 0,
            })
            .sum();
        (n, out)
    }

    /// Feeds one line at second `at` and returns what it meant.
    fn feed_at(c: &mut Counter, at: i64, line: &str) -> Vec<Outcome> {
        let p = parse_line(line).expect("a log line");
        let mut out = Vec::new();
        c.feed(
            Timestamp::from_secs(at),
            p.process.as_ref(),
            &p.event.expect("an event"),
            &mut out,
        );
        out
    }

    #[test]
    fn a_guess_half_written_before_a_restart_is_completed_not_counted_again() {
        let dovecot =
            "Nov 22 12:00:10 mx dovecot: auth: passwd-file(admin,203.0.113.30): Password mismatch";
        let postfix = "Nov 22 12:00:11 mx postfix/submission/smtpd[7000]: warning: unknown[203.0.113.30]: SASL PLAIN authentication failed: UGFzc3dvcmQ6";
        let mut before = Counter::new(CountConfig::default());
        let out = feed_at(&mut before, 1_000, dovecot);
        assert!(matches!(&out[..], [Outcome::Counted(a)] if a.count == 1));
        // The snapshot goes through the store as JSON, an attempt as a short array.
        let json = serde_json::to_string(&before.snapshot(Timestamp::from_secs(1_000))).unwrap();
        assert!(
            json.contains(r#""pending_packed":[["203.0.113.30","#)
                && !json.contains(r#""pending":"#),
            "{json}"
        );
        let mut after = Counter::new(CountConfig::default());
        after.restore(&serde_json::from_str(&json).unwrap());
        let out = feed_at(&mut after, 1_001, postfix);
        assert!(
            !out.iter().any(|o| matches!(o, Outcome::Counted(_))),
            "{out:?}"
        );
        // What a later record told about the attempt: service and mechanism.
        let refined = |out: &[Outcome]| {
            out.iter().find_map(|o| match o {
                Outcome::Refined {
                    service, mechanism, ..
                } => Some((service.clone(), mechanism.clone())),
                _ => None,
            })
        };
        assert_eq!(
            refined(&out),
            Some((
                Some((SERVICE_AUTH.into(), "submission".into())),
                Some((String::new(), "PLAIN".to_string()))
            ))
        );
        // A snapshot written before issue 17 named the mechanism: it is known, so the
        // Postfix record refines only the service.
        let old = r#"{"pending":[{"address":"203.0.113.30","time":"2026-11-22T12:00:10Z","mask":2,"service":"dovecot-auth","mechanism":"LOGIN","has_user":true,"posture_known":false}]}"#;
        let mut c = Counter::new(CountConfig::default());
        c.restore(&serde_json::from_str(old).unwrap());
        let t: Timestamp = serde_json::from_str(r#""2026-11-22T12:00:11Z""#).unwrap();
        let out = feed_at(&mut c, t.0 / 1000, postfix);
        assert_eq!(
            refined(&out),
            Some((Some((SERVICE_AUTH.into(), "submission".into())), None))
        );
        // One written by the build before the packed form: an object with flags.
        let object = r#"{"pending":[{"address":"203.0.113.30","time":"2026-11-22T12:00:10Z","mask":2,"service":"dovecot-auth","mechanism_known":false,"has_user":true,"posture_known":false}]}"#;
        let mut c = Counter::new(CountConfig::default());
        c.restore(&serde_json::from_str(object).unwrap());
        let out = feed_at(&mut c, t.0 / 1000, postfix);
        assert!(
            !out.iter().any(|o| matches!(o, Outcome::Counted(_))),
            "{out:?}"
        );
        assert_eq!(
            refined(&out),
            Some((
                Some((SERVICE_AUTH.into(), "submission".into())),
                Some((String::new(), "PLAIN".to_string()))
            ))
        );
    }

    #[test]
    fn a_saved_state_with_impossible_times_is_refused_entry_by_entry() {
        // A damaged store row: times no log line can have (they would overflow the
        // window arithmetic), odd bits; the one sane entry is kept.
        let postfix = "Nov 22 12:00:11 mx postfix/submission/smtpd[7000]: warning: unknown[203.0.113.30]: SASL PLAIN authentication failed: UGFzc3dvcmQ6";
        let t: Timestamp = serde_json::from_str(r#""2026-11-22T12:00:10Z""#).unwrap();
        let state = format!(
            r#"{{"pending_packed":[["203.0.113.30",{},255,255],["203.0.113.30",{},255,255],["203.0.113.30",{},2,255]]}}"#,
            i64::MIN,
            i64::MAX,
            t.0
        );
        let mut c = Counter::new(CountConfig::default());
        assert_eq!(c.restore(&serde_json::from_str(&state).unwrap()), 2);
        let out = feed_at(&mut c, t.0 / 1000 + 1, postfix);
        assert!(
            !out.iter().any(|o| matches!(o, Outcome::Counted(_))),
            "the sane entry joins: {out:?}"
        );
        // Not an address: the whole state is refused (the daemon warns and starts
        // without it).
        assert!(
            serde_json::from_str::<CounterSnapshot>(r#"{"pending_packed":[["x",0,1,1]]}"#).is_err()
        );
    }

    fn n_counted(out: &[Outcome]) -> u32 {
        out.iter()
            .map(|o| match o {
                Outcome::Counted(a) => a.count,
                _ => 0,
            })
            .sum()
    }

    /// A sweep drops an address's state only once no record can use it: a record of a
    /// source running behind the others by almost the allowance still joins the
    /// attempt it belongs to (counted once), and the state stays while a `Connection
    /// lost` could still be taken for a guess (penalty window plus the allowance).
    #[test]
    fn a_sweep_keeps_what_a_late_record_still_needs() {
        let late = crate::pipeline::LATE_MS;
        let dovecot =
            "Nov 22 12:00:10 mx dovecot: auth: passwd-file(admin,203.0.113.30): Password mismatch";
        let postfix = "Nov 22 12:00:11 mx postfix/submission/smtpd[7000]: warning: unknown[203.0.113.30]: SASL PLAIN authentication failed: UGFzc3dvcmQ6";
        // A penalty window shorter than the time a record may join: the pending
        // attempt alone keeps the state.
        let short = CountConfig {
            penalty_window_ms: 60_000,
            ..CountConfig::default()
        };
        let mut c = Counter::new(short);
        assert_eq!(n_counted(&feed_at(&mut c, 10_000, dovecot)), 1);
        // Another source's lines have moved the clock on past the penalty window.
        assert_eq!(
            c.sweep(Timestamp(10_000_000 + late + 200_000), late, usize::MAX),
            0
        );
        assert_eq!(
            n_counted(&feed_at(&mut c, 10_001, postfix)),
            0,
            "joined, not counted again"
        );
        assert_eq!(
            c.sweep(Timestamp(10_000_000 + RETAIN_MS + late), late, usize::MAX),
            0
        );
        assert_eq!(
            c.sweep(
                Timestamp(10_000_000 + RETAIN_MS + late + 1),
                late,
                usize::MAX
            ),
            1
        );
        // The default penalty window is the longer one: the last count keeps it.
        let mut c = Counter::new(CountConfig::default());
        feed_at(&mut c, 10_000, dovecot);
        let last = 10_000_000 + CountConfig::default().penalty_window_ms + late;
        assert_eq!(c.sweep(Timestamp(last), late, usize::MAX), 0);
        assert_eq!(c.addrs.len(), 1);
        assert_eq!(c.sweep(Timestamp(last + 1), late, usize::MAX), 1);
        assert_eq!(c.addrs.len(), 0);
        assert_eq!(c.addrs.evicted(), 0);
    }

    #[test]
    fn one_smtp_guess_written_by_dovecot_and_by_postfix_counts_once() {
        let (n, _) = counted(&[
            "Nov 22 12:00:10 mx dovecot: auth: passwd-file(admin,203.0.113.30): Password mismatch",
            "Nov 22 12:00:11 mx postfix/submission/smtpd[7000]: warning: unknown[203.0.113.30]: SASL PLAIN authentication failed: UGFzc3dvcmQ6",
        ]);
        assert_eq!(n, 1);
    }

    #[test]
    fn two_smtp_guesses_count_twice() {
        let (n, _) = counted(&[
            "Nov 22 12:00:10 mx postfix/submission/smtpd[7000]: warning: unknown[203.0.113.30]: SASL PLAIN authentication failed: UGFzc3dvcmQ6",
            "Nov 22 12:00:11 mx postfix/submission/smtpd[7000]: warning: unknown[203.0.113.30]: SASL PLAIN authentication failed: UGFzc3dvcmQ6",
        ]);
        assert_eq!(n, 2);
    }

    #[test]
    fn an_imap_summary_adds_nothing_to_the_guesses_of_its_session_already_counted() {
        let (n, _) = counted(&[
            "Nov 22 12:00:10 mx dovecot: auth: passwd-file(admin,203.0.113.30,<Qm9iQXR0YWNr>): Password mismatch",
            "Nov 22 12:00:12 mx dovecot: auth: passwd-file(root,203.0.113.30,<Qm9iQXR0YWNr>): Password mismatch",
            "Nov 22 12:00:14 mx dovecot: imap-login: Disconnected (auth failed, 2 attempts in 4 secs): user=<root>, method=PLAIN, rip=203.0.113.30, lip=192.0.2.1, TLS, session=<Qm9iQXR0YWNr>",
        ]);
        assert_eq!(n, 2);
    }

    #[test]
    fn a_dovecot_2_4_summary_written_before_its_auth_lines_counts_them_once() {
        // Seen in a real Dovecot 2.4.1 log: the login process's line first.
        let (n, out) = counted(&[
            "Nov 27 12:34:52 imap-login: Info: Login aborted: Logged out (auth failed, 2 attempts in 0 secs) (auth_failed): user=<info>, method=PLAIN, rip=192.0.2.12, lip=192.0.2.1, session=<FzhrSUFhp7rAAAIM>",
            "Nov 27 12:34:52 auth(admin,192.0.2.12,sasl:plain)<FzhrSUFhp7rAAAIM>: Info: passwd-file: unknown user",
            "Nov 27 12:34:52 auth(info,192.0.2.12,sasl:plain)<FzhrSUFhp7rAAAIM>: Info: passwd-file: unknown user",
        ]);
        assert_eq!(n, 2, "{out:?}");
        // The user names the summary did not carry still reach the offender record.
        assert!(
            out.iter()
                .any(|o| matches!(o, Outcome::Refined { user: Some(u), .. } if u == "admin")),
            "{out:?}"
        );
    }

    #[test]
    fn an_imap_summary_alone_counts_its_attempts() {
        let (n, out) = counted(&[
            "Nov 22 12:00:14 mx dovecot: imap-login: Disconnected (auth failed, 3 attempts in 4 secs): user=<root>, method=PLAIN, rip=203.0.113.30, lip=192.0.2.1, TLS, session=<Qm9iQXR0YWNr>",
        ]);
        assert_eq!(n, 3);
        let Some(Outcome::Counted(a)) = out.first() else {
            panic!("{out:?}")
        };
        assert_eq!(a.address, "203.0.113.30".parse::<IpAddr>().unwrap());
        assert_eq!(a.user.as_deref(), Some("root"));
    }

    #[test]
    fn a_login_is_a_success_not_a_failure() {
        let (n, out) = counted(&[
            "Nov 22 12:00:14 mx dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, mpid=4242, TLS, session=<abc>",
        ]);
        assert_eq!(n, 0);
        assert!(
            matches!(out.as_slice(), [Outcome::Success { user: Some(u), .. }] if u == "alice"),
            "{out:?}"
        );
    }
}
