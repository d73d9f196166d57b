//! Alerts for logins that look like stolen passwords, and for password spraying.
//!
//! Owns the little history alerts need: which countries and networks each account
//! logged in from (with a learning period before "new" means anything), which
//! addresses failed for each account and which accounts each address failed for,
//! within a window. All of it is bounded (LRUs), since user names in failures are
//! chosen by attackers; the per-address and per-prefix tables hold as many entries as
//! there are offender records (`[limits] max_offenders`), the most recent kept.
//!
//! Pure: outcomes, origins and the offender record in, alerts out; the daemon logs,
//! stores and runs commands, `replay` reports.
//!
//! Kinds:
//! - `login_after_failures`: a login from an address that failed at least
//!   `login_after_failures_min` times within `login_after_failures` before. One typo
//!   before a login is not an alert.
//! - `login_after_prefix_failures`: the same, counted over the address's prefix
//!   (`[prefix]`, /24 and /64 by default) when the address alone did not fail enough:
//!   a guesser that moves to a neighbouring address, or an IPv6 host whose privacy
//!   address changed, before it logs in. Alert only, never a ban: the address itself
//!   has not shown enough failures to be banned on its own evidence.
//! - `new_origin`: a login for an account from a country or AS it has not logged in
//!   from, once its history is older than `learning`.
//! - `marked_country`: a login from a country in `[alerts] countries`.
//! - `spray_account`: one account failing from `spray_addresses` addresses within
//!   `spray_window` (password spraying from a botnet).
//! - `spray_address`: one address failing for `spray_accounts` accounts within
//!   `spray_window`.

use crate::addr::AddrKey;
use crate::attempts::Attempt;
use crate::geo::Origin;
use crate::offender::Offenders;
use crate::time::Timestamp;
use ipnet::IpNet;
use lru::LruCache;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// 0: off.
    pub login_after_failures_ms: i64,
    pub login_after_failures_min: u32,
    pub new_origin: bool,
    pub learning_ms: i64,
    pub countries: Vec<String>,
    /// 0: off.
    pub spray_addresses: u32,
    /// 0: off.
    pub spray_accounts: u32,
    pub spray_window_ms: i64,
    /// Run for each alert (argv, no shell).
    pub command: Vec<String>,
    /// Ban the address of `login_after_failures`, `marked_country` and
    /// `spray_address` alerts for this long; 0: no.
    pub ban_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: String,
    pub time: Timestamp,
    pub address: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Origin::is_empty", default)]
    pub geo: Origin,
    /// One line for people.
    pub message: String,
    /// Failures of the address before the login (`login_after_failures`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failures: Option<u64>,
    /// Accounts the address tried (`login_after_failures`, `spray_address`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub users_tried: Vec<String>,
    /// Distinct addresses that failed for the account (`spray_account`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub addresses: Option<u32>,
    /// Countries and ASes the account used before (`new_origin`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub known_origins: Vec<String>,
    /// The prefix whose failures made the alert (`login_after_prefix_failures`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prefix: Option<IpNet>,
}

/// Where an account logged in from, as kept for `new_origin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountHistory {
    pub first_seen: Timestamp,
    pub countries: Vec<String>,
    pub asns: Vec<u32>,
}

/// Every kind of alert, for the metrics.
pub const KINDS: &[&str] = &[
    "login_after_failures",
    "login_after_prefix_failures",
    "new_origin",
    "marked_country",
    "spray_account",
    "spray_address",
];

const MAX_ORIGINS_PER_ACCOUNT: usize = 64;
const MAX_ACCOUNTS: usize = 100_000;
/// Recent failures of one prefix: a run of failures with no gap longer than the
/// `login_after_failures` window.
/// (Issue 17: it also kept the prefix's first addresses and accounts, which nothing
/// read; with one /64 per address of an IPv6 botnet that was the largest table of a
/// replay.)
struct PrefixFailures {
    first: Timestamp,
    last: Timestamp,
    /// The addresses of [`PrefixFailures::tries`], each once, in the order they came;
    /// the first inline: most prefixes of a botnet hold one address.
    addrs: SmallVec<[AddrKey; 1]>,
    /// Failures by (account, address), for the account that later logs in.
    tries: SmallVec<[Try; 1]>,
}

/// Failures for one account from one address of a prefix: the account as its keyed
/// hash ([`Alerts::key`]), so a name costs no allocation, and the address as its place
/// in [`PrefixFailures::addrs`]. (Issue 17: with the address itself and a 64-bit
/// count it took twice the room; a bot's prefix holds one address and many accounts.)
struct Try {
    account: u64,
    count: u32,
    addr: u8,
}

/// How often a login from a marked country alerts per (address, account).
const MARKED_COUNTRY_MS: i64 = 86_400_000;

/// (account, address) pairs kept per prefix (at most 256: an address is a `u8` place).
const MAX_TRIES_PER_PREFIX: usize = 64;
const _: () = assert!(MAX_TRIES_PER_PREFIX <= 256);

pub struct Alerts {
    cfg: AlertConfig,
    accounts: LruCache<String, AccountHistory>,
    /// Recent (time, address) pairs of each account, oldest first, the account as its
    /// keyed hash ([`Alerts::key`]): hashed once per failure, no name kept.
    by_user: crate::bounded::Lru<u64, VecDeque<(Timestamp, AddrKey)>>,
    /// Recent (time, account key) pairs of each address, oldest first; the first inline.
    by_addr: crate::bounded::Lru<AddrKey, SmallVec<[(Timestamp, u64); 1]>>,
    by_prefix: crate::bounded::Lru<IpNet, PrefixFailures>,
    /// When each (kind, key) last alerted: one alert per window, not one per line.
    /// Keys as their keyed hash ([`Alerts::key`]): no allocation per failure.
    last: LruCache<(u8, u64), Timestamp>,
    /// The key of [`Alerts::key`], random per process: an attacker cannot pick two
    /// account names that collide.
    keys: std::collections::hash_map::RandomState,
    /// Accounts whose history changed, for the store.
    pub changed_accounts: Vec<String>,
}

/// ` (DE AS3320 ...)`, or nothing without GeoIP.
fn place(geo: &Origin) -> String {
    if geo.is_empty() {
        String::new()
    } else {
        format!(" ({})", geo.label())
    }
}

impl Alerts {
    /// `per_address`: entries of the per-address and per-prefix tables.
    pub fn new(cfg: AlertConfig, per_address: usize) -> Alerts {
        Alerts {
            cfg,
            accounts: crate::bounded::lru(MAX_ACCOUNTS),
            by_user: crate::bounded::Lru::new(MAX_ACCOUNTS),
            by_addr: crate::bounded::Lru::new(per_address),
            by_prefix: crate::bounded::Lru::new(per_address),
            last: crate::bounded::lru(MAX_ACCOUNTS),
            keys: std::collections::hash_map::RandomState::new(),
            changed_accounts: Vec::new(),
        }
    }

    pub fn config(&self) -> &AlertConfig {
        &self.cfg
    }

    pub fn account(&self, user: &str) -> Option<&AccountHistory> {
        self.accounts.peek(user)
    }

    /// Puts back an account's login history (daemon start).
    pub fn restore_account(&mut self, user: String, h: AccountHistory) {
        self.accounts.put(user, h);
    }

    /// True when (kind, key) has not alerted within `window_ms` before `now`. The key
    /// is hashed as it is, not written out: most checks find it alerted already.
    fn fresh(
        &mut self,
        kind: u8,
        key: impl std::hash::Hash,
        now: Timestamp,
        window_ms: i64,
    ) -> bool {
        use std::hash::BuildHasher;
        let key = self.keys.hash_one(key);
        self.fresh_hashed(kind, key, now, window_ms)
    }

    /// [`Alerts::fresh`] for a key already hashed under [`Alerts::keys`] (an account's
    /// [`Alerts::key`] is its name's).
    fn fresh_hashed(&mut self, kind: u8, hash: u64, now: Timestamp, window_ms: i64) -> bool {
        let key = (kind, hash);
        match self.last.get_mut(&key) {
            Some(t) if now.0 - t.0 < window_ms => false,
            Some(t) => {
                *t = now;
                true
            }
            None => {
                self.last.put(key, now);
                true
            }
        }
    }

    /// Drops what no alert can read any more: failures of an address, an account or a
    /// prefix past the window that reads them, and once-per-window marks past the
    /// longest such window, all before `now` less `late_ms` (the failures of a source
    /// that runs behind the others by up to `late_ms` still meet what they would
    /// have). Account login histories stay (they are what `new_origin` learns). At most
    /// `max` of each table; returns how many went.
    pub fn sweep(&mut self, now: Timestamp, late_ms: i64, max: usize) -> usize {
        let past =
            |t: Timestamp, span: i64| now.0.saturating_sub(t.0) > span.saturating_add(late_ms);
        let (spray, login) = (self.cfg.spray_window_ms, self.cfg.login_after_failures_ms);
        let mut n = self
            .by_addr
            .pop_oldest_while(max, |_, r| r.iter().all(|&(t, _)| past(t, spray)));
        n += self
            .by_prefix
            .pop_oldest_while(max, |_, p| past(p.last, login));
        n += self
            .by_user
            .pop_oldest_while(max, |_, r| r.iter().all(|&(t, _)| past(t, spray)));
        // `fresh` is asked with these windows; a mark at least this old lets any of
        // them alert again, as no mark does.
        let longest = spray.max(login).max(MARKED_COUNTRY_MS);
        n + crate::bounded::pop_lru_while(&mut self.last, max, |&t| past(t, longest - 1))
    }

    /// Forgets the failures of every address, account and prefix and the
    /// once-per-window marks; the accounts' login histories stay.
    pub fn clear_failures(&mut self) {
        let n = self.by_addr.cap();
        self.by_addr = crate::bounded::Lru::new(n);
        self.by_prefix = crate::bounded::Lru::new(n);
        self.by_user = crate::bounded::Lru::new(MAX_ACCOUNTS);
        self.last = crate::bounded::lru(MAX_ACCOUNTS);
    }

    /// An account name as a 64-bit hash under this process's random key.
    fn key(&self, user: &str) -> u64 {
        use std::hash::BuildHasher;
        self.keys.hash_one(user)
    }

    /// A counted attempt `a` (failures of its address, in `prefix`).
    pub fn failure(&mut self, a: &Attempt, prefix: IpNet, geo: &Origin, out: &mut Vec<Alert>) {
        // The account's key, hashed once for the prefix's tries and the address's ring.
        let key = a.user.as_deref().map(|u| self.key(u));
        self.prefix_failure(a, key, prefix);
        let (time, addr) = (a.time, a.address);
        let (Some(user), Some(h)) = (a.user.as_deref(), key) else {
            return;
        };
        let w = self.cfg.spray_window_ms;
        if self.cfg.spray_addresses > 0 {
            let need = self.cfg.spray_addresses as usize;
            let key = AddrKey::from(addr);
            let ring = self.by_user.get_or_insert_mut(h, VecDeque::new);
            ring.retain(|(t, a)| time.0 - t.0 <= w && *a != key);
            crate::bounded::ring_room_for_one(ring);
            ring.push_back((time, key));
            while ring.len() > need * 2 {
                ring.pop_front();
            }
            let n = ring.len();
            // `h` is the name's hash, as `fresh` would make it.
            if n >= need && self.fresh_hashed(0, h, time, w) {
                out.push(Alert {
                    kind: "spray_account".into(),
                    time,
                    address: addr,
                    user: Some(user.to_string()),
                    service: None,
                    geo: geo.clone(),
                    message: format!(
                        "account {user:?} failed from {n} addresses within {} (password spraying); last {addr}",
                        crate::ban::human_ms(w)
                    ),
                    failures: None,
                    users_tried: Vec::new(),
                    addresses: Some(n as u32),
                    known_origins: Vec::new(),
                    prefix: None,
                });
            }
        }
        if self.cfg.spray_accounts > 0 {
            let need = self.cfg.spray_accounts as usize;
            let ring = self.by_addr.get_or_insert_mut(addr.into(), SmallVec::new);
            ring.retain(|(t, u)| time.0 - t.0 <= w && *u != h);
            ring.push((time, h));
            if ring.len() > need * 2 {
                ring.drain(..ring.len() - need * 2);
            }
            let n = ring.len();
            if n >= need && self.fresh(1, addr, time, w) {
                out.push(Alert {
                    kind: "spray_address".into(),
                    time,
                    address: addr,
                    user: None,
                    service: None,
                    geo: geo.clone(),
                    message: format!(
                        "{addr}{} failed for {n} accounts within {}",
                        place(geo),
                        crate::ban::human_ms(w)
                    ),
                    failures: None,
                    users_tried: Vec::new(),
                    addresses: None,
                    known_origins: Vec::new(),
                    prefix: None,
                });
            }
        }
    }

    /// `user` is the key of the attempt's account ([`Alerts::key`]), if it has one.
    fn prefix_failure(&mut self, a: &Attempt, user: Option<u64>, prefix: IpNet) {
        let (time, addr) = (a.time, a.address);
        let window = self.cfg.login_after_failures_ms;
        if window <= 0 {
            return;
        }
        let fresh = || PrefixFailures {
            first: time,
            last: time,
            addrs: SmallVec::new(),
            tries: SmallVec::new(),
        };
        let p = self.by_prefix.get_or_insert_mut(prefix, fresh);
        if time.0 - p.last.0 > window {
            *p = fresh();
        }
        p.last = p.last.max(time);
        if let Some(u) = user {
            let key = AddrKey::from(addr);
            let at = p.addrs.iter().position(|&x| x == key);
            let full = p.tries.len() >= MAX_TRIES_PER_PREFIX;
            let known = at.and_then(|i| {
                p.tries
                    .iter_mut()
                    .find(|t| t.account == u && usize::from(t.addr) == i)
            });
            match known {
                Some(t) => t.count = t.count.saturating_add(a.count),
                None if !full => {
                    let i = at.unwrap_or_else(|| {
                        p.addrs.push(key);
                        p.addrs.len() - 1
                    });
                    p.tries.push(Try {
                        account: u,
                        count: a.count,
                        // At most MAX_TRIES_PER_PREFIX (64) addresses.
                        addr: i as u8,
                    });
                }
                None => {}
            }
        }
    }

    /// A successful login from `addr` in `prefix`. `offenders` holds the address's
    /// failure record, if any: read whole only for an alert.
    #[allow(clippy::too_many_arguments)]
    pub fn login(
        &mut self,
        time: Timestamp,
        addr: IpAddr,
        prefix: IpNet,
        user: Option<&str>,
        service: Option<&str>,
        geo: &Origin,
        offenders: &Offenders,
        out: &mut Vec<Alert>,
    ) {
        let base = |kind: &str, message: String| Alert {
            kind: kind.into(),
            time,
            address: addr,
            user: user.map(str::to_string),
            service: service.map(str::to_string),
            geo: geo.clone(),
            message,
            failures: None,
            users_tried: Vec::new(),
            addresses: None,
            known_origins: Vec::new(),
            prefix: None,
        };
        // Only for an alert's message: most logins raise none.
        let who = || {
            user.map_or("an account (name not logged)".to_string(), |u| {
                format!("account {u:?}")
            })
        };
        let window = self.cfg.login_after_failures_ms;
        let min = u64::from(self.cfg.login_after_failures_min);
        let by_address = window > 0
            && offenders
                .failures(&addr)
                .is_some_and(|(n, last)| time.0 - last.0 <= window && n >= min);
        // The once-per-window check before the record: most logins of an address
        // that failed have alerted already, and a record is built with its lists.
        if by_address
            && self.fresh(2, (addr, user.unwrap_or("")), time, window)
            && let Some(o) = offenders.get(&addr)
        {
            let tried_it = user.is_some_and(|u| o.users.iter().any(|x| x == u));
            let mut a = base(
                "login_after_failures",
                format!(
                    "login to {} from {addr}{} after {} failed attempts from that address since {}{} (stolen password?)",
                    who(),
                    place(geo),
                    o.failures,
                    o.first_failure.rfc3339(),
                    if tried_it {
                        ", some of them for this account"
                    } else {
                        ""
                    }
                ),
            );
            a.failures = Some(o.failures);
            a.users_tried = o.users.iter().take(20).cloned().collect();
            out.push(a);
        }
        // Over the prefix: only failures for this very account, from the prefix's
        // other addresses, as many as the address rule needs. A user who mistyped once
        // next to a bot that tried other accounts is no alert; a guesser who moved to
        // another address of its /24 or /64 after guessing this account's password is.
        let user_key = user.map(|u| self.key(u));
        let for_account = |p: &PrefixFailures| -> (u64, Vec<IpAddr>) {
            let Some(u) = user_key else {
                return (0, Vec::new());
            };
            let mut from = Vec::new();
            let mut n = 0;
            for t in p.tries.iter().filter(|t| t.account == u) {
                let ad = p.addrs[usize::from(t.addr)].ip();
                if ad != addr {
                    n += u64::from(t.count);
                    if !from.contains(&ad) {
                        from.push(ad);
                    }
                }
            }
            (n, from)
        };
        if window > 0
            && !by_address
            && prefix.prefix_len() < prefix.max_prefix_len()
            && let Some(p) = self.by_prefix.peek(&prefix)
            && time.0 - p.last.0 <= window
            && let (failures, from) = for_account(p)
            && failures >= min
        {
            let first = p.first;
            if self.fresh(4, (prefix, user.unwrap_or("")), time, window) {
                let others: Vec<String> = from.iter().map(ToString::to_string).collect();
                let mut a = base(
                    "login_after_prefix_failures",
                    format!(
                        "login to {} from {addr}{} after {failures} failed attempts for this account from other addresses of {prefix} since {} (from {}) (stolen password?)",
                        who(),
                        place(geo),
                        first.rfc3339(),
                        others.join(", "),
                    ),
                );
                a.failures = Some(failures);
                a.users_tried = user.map(|u| vec![u.to_string()]).unwrap_or_default();
                a.prefix = Some(prefix);
                out.push(a);
            }
        }
        if let Some(c) = &geo.country
            && self.cfg.countries.contains(c)
            && self.fresh(3, (addr, user.unwrap_or("")), time, MARKED_COUNTRY_MS)
        {
            out.push(base(
                "marked_country",
                format!(
                    "login to {} from {addr}{}, a country marked in [alerts]",
                    who(),
                    place(geo)
                ),
            ));
        }
        let Some(user) = user else { return };
        if geo.country.is_none() && geo.asn.is_none() {
            return;
        }
        let country = geo.country.clone().unwrap_or_else(|| "--".into());
        let learning = self.cfg.learning_ms;
        let alerting = self.cfg.new_origin;
        let h = self
            .accounts
            .get_or_insert_mut(user.to_string(), || AccountHistory {
                first_seen: time,
                countries: Vec::new(),
                asns: Vec::new(),
            });
        let new_country = !h.countries.contains(&country);
        let new_asn = geo.asn.is_some_and(|a| !h.asns.contains(&a));
        if !new_country && !new_asn {
            return;
        }
        let learned = time.0 - h.first_seen.0 >= learning && !h.countries.is_empty();
        let known: Vec<String> = h
            .countries
            .iter()
            .cloned()
            .chain(h.asns.iter().map(|a| format!("AS{a}")))
            .collect();
        if new_country && h.countries.len() < MAX_ORIGINS_PER_ACCOUNT {
            h.countries.push(country);
        }
        if let Some(a) = geo
            .asn
            .filter(|_| new_asn && h.asns.len() < MAX_ORIGINS_PER_ACCOUNT)
        {
            h.asns.push(a);
        }
        self.changed_accounts.push(user.to_string());
        if alerting && learned {
            let what = match (new_country, new_asn) {
                (true, true) => "a country and a network",
                (true, false) => "a country",
                _ => "a network",
            };
            let mut a = base(
                "new_origin",
                format!(
                    "login to {} from {addr}{}: {what} this account has not logged in from (known: {})",
                    who(),
                    place(geo),
                    known.join(" ")
                ),
            );
            a.known_origins = known;
            out.push(a);
        }
    }
}

/// The environment an alert command gets: `SASLGUARD_ALERT_KIND`, `_TIME`, `_ADDRESS`,
/// `_USER`, `_SERVICE`, `_COUNTRY`, `_ASN`, `_AS_ORG`, `_MESSAGE`, and `_JSON` (the
/// whole alert).
pub fn command_env(a: &Alert) -> Vec<(&'static str, String)> {
    vec![
        ("SASLGUARD_ALERT_KIND", a.kind.clone()),
        ("SASLGUARD_ALERT_TIME", a.time.rfc3339()),
        ("SASLGUARD_ALERT_ADDRESS", a.address.to_string()),
        ("SASLGUARD_ALERT_USER", a.user.clone().unwrap_or_default()),
        (
            "SASLGUARD_ALERT_SERVICE",
            a.service.clone().unwrap_or_default(),
        ),
        (
            "SASLGUARD_ALERT_COUNTRY",
            a.geo.country.clone().unwrap_or_default(),
        ),
        (
            "SASLGUARD_ALERT_ASN",
            a.geo.asn.map(|n| n.to_string()).unwrap_or_default(),
        ),
        (
            "SASLGUARD_ALERT_AS_ORG",
            a.geo.as_org.clone().unwrap_or_default(),
        ),
        ("SASLGUARD_ALERT_MESSAGE", a.message.clone()),
        (
            "SASLGUARD_ALERT_JSON",
            serde_json::to_string(a).unwrap_or_default(),
        ),
    ]
}

/// How long an alert command may run before it is killed.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the configured alert command (argv, no shell: nothing from the log reaches a
/// shell) in the background; its failure is logged, never fatal.
pub fn run_command(argv: &[String], a: &Alert) {
    let Some((prog, args)) = argv.split_first() else {
        return;
    };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args)
        .envs(command_env(a))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let prog = prog.clone();
    let spawned = cmd.spawn();
    let _ = std::thread::Builder::new()
        .name("alert-command".into())
        .spawn(move || {
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("alert command {prog}: {e}");
                    return;
                }
            };
            let start = std::time::Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(st)) if st.success() => return,
                    Ok(Some(st)) => {
                        let mut err = String::new();
                        if let Some(mut e) = child.stderr.take() {
                            use std::io::Read;
                            let _ = e.read_to_string(&mut err);
                        }
                        tracing::error!("alert command {prog}: {st}: {}", err.trim());
                        return;
                    }
                    Ok(None) if start.elapsed() > COMMAND_TIMEOUT => {
                        let _ = child.kill();
                        let _ = child.wait();
                        tracing::error!("alert command {prog}: killed after {COMMAND_TIMEOUT:?}");
                        return;
                    }
                    Ok(None) => std::thread::sleep(std::time::Duration::from_millis(100)),
                    Err(e) => {
                        tracing::error!("alert command {prog}: {e}");
                        return;
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    //! The spray alerts on counted attempts, with the clock in the test's hands.
    use super::*;
    use crate::attempts::UNKNOWN_POSTURE;

    fn cfg(addresses: u32, accounts: u32) -> AlertConfig {
        AlertConfig {
            login_after_failures_ms: 86_400_000,
            login_after_failures_min: 3,
            new_origin: false,
            learning_ms: 0,
            countries: Vec::new(),
            spray_addresses: addresses,
            spray_accounts: accounts,
            spray_window_ms: 3_600_000,
            command: Vec::new(),
            ban_ms: 0,
        }
    }

    fn attempt(addr: &str, user: &str, secs: i64) -> Attempt {
        Attempt {
            time: Timestamp::from_secs(secs),
            address: addr.parse().unwrap(),
            count: 1,
            service: None,
            mechanism: None,
            user: Some(user.into()),
            posture: UNKNOWN_POSTURE.into(),
        }
    }

    fn kinds(a: &mut Alerts, attempts: &[Attempt]) -> Vec<String> {
        let mut out = Vec::new();
        for at in attempts {
            let prefix = crate::windows::prefix_of(at.address, 24, 64);
            a.failure(at, prefix, &Origin::default(), &mut out);
        }
        out.into_iter().map(|x| x.kind).collect()
    }

    /// A sweep keeps a prefix's failures as long as a login may still be measured
    /// against them (its window, plus the allowance for a source running behind the
    /// others) and drops them after; the spray rings go after their own window.
    #[test]
    fn a_sweep_keeps_prefix_failures_a_late_login_still_meets() {
        let late = crate::pipeline::LATE_MS;
        let day = 86_400;
        let mut a = Alerts::new(cfg(3, 3), 100);
        let tries: Vec<Attempt> = (0..3).map(|i| attempt("203.0.113.7", "alice", i)).collect();
        assert!(kinds(&mut a, &tries).is_empty());
        let login_at = Timestamp::from_secs(2 + day);
        a.sweep(Timestamp(login_at.0 + late), late, usize::MAX);
        assert_eq!(
            (a.by_addr.len(), a.by_user.len()),
            (0, 0),
            "past the spray window"
        );
        assert_eq!(a.by_prefix.len(), 1);
        let addr: IpAddr = "203.0.113.8".parse().unwrap();
        let mut out = Vec::new();
        a.login(
            login_at,
            addr,
            crate::windows::prefix_of(addr, 24, 64),
            Some("alice"),
            None,
            &Origin::default(),
            &Offenders::new(10),
            &mut out,
        );
        let got: Vec<&str> = out.iter().map(|x| x.kind.as_str()).collect();
        assert_eq!(got, ["login_after_prefix_failures"]);
        a.sweep(Timestamp(login_at.0 + late + 1), late, usize::MAX);
        assert_eq!(a.by_prefix.len(), 0);
    }

    fn login(a: &mut Alerts, addr: &str, user: &str, secs: i64) -> Vec<Alert> {
        let addr: IpAddr = addr.parse().unwrap();
        let mut out = Vec::new();
        a.login(
            Timestamp::from_secs(secs),
            addr,
            crate::windows::prefix_of(addr, 24, 64),
            Some(user),
            None,
            &Origin::default(),
            &Offenders::new(10),
            &mut out,
        );
        out
    }

    /// A login counts the failures for its account from the prefix's other addresses
    /// (not its own, nor other accounts'), names those addresses in the order they
    /// failed, and past MAX_TRIES_PER_PREFIX (account, address) pairs nothing more is
    /// kept.
    #[test]
    fn prefix_failures_name_the_other_addresses_that_tried_the_account() {
        let mut a = Alerts::new(cfg(0, 0), 100);
        let tries: Vec<Attempt> = [
            ("203.0.113.7", "alice"),
            ("203.0.113.9", "bob"),
            ("203.0.113.9", "bob"),
            ("203.0.113.9", "alice"),
            ("203.0.113.7", "alice"),
            ("203.0.113.5", "alice"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (ad, u))| attempt(ad, u, i as i64))
        .collect();
        kinds(&mut a, &tries);
        let out = login(&mut a, "203.0.113.8", "alice", 10);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, "login_after_prefix_failures");
        assert_eq!(out[0].failures, Some(4));
        assert!(
            out[0]
                .message
                .contains("(from 203.0.113.7, 203.0.113.9, 203.0.113.5)"),
            "{}",
            out[0].message
        );
        // From .7 itself: only .9 and .5 are others, 2 < 3.
        assert!(login(&mut a, "203.0.113.7", "alice", 11).is_empty());
        // 4 pairs are kept; 60 more fit.
        let more: Vec<Attempt> = (100..170)
            .map(|i| attempt(&format!("203.0.113.{i}"), "dave", 20))
            .collect();
        kinds(&mut a, &more);
        let out = login(&mut a, "203.0.113.99", "dave", 30);
        assert_eq!(out[0].failures, Some(60));
        assert!(
            out[0].message.contains("203.0.113.159)"),
            "{}",
            out[0].message
        );
    }

    #[test]
    fn one_account_tried_from_many_addresses_is_a_spray_once() {
        let mut a = Alerts::new(cfg(5, 0), 100);
        let tries: Vec<Attempt> = (1..=8)
            .map(|i| attempt(&format!("198.51.{i}.9"), "alice", i))
            .collect();
        assert_eq!(kinds(&mut a, &tries), ["spray_account"]);
    }

    #[test]
    fn one_address_trying_many_accounts_is_a_spray() {
        let mut a = Alerts::new(cfg(0, 4), 100);
        let tries: Vec<Attempt> = (1..=4)
            .map(|i| attempt("203.0.113.9", &format!("user{i}"), i))
            .collect();
        assert_eq!(kinds(&mut a, &tries), ["spray_address"]);
    }

    #[test]
    fn tries_spread_wider_than_the_window_are_no_spray() {
        let mut a = Alerts::new(cfg(3, 3), 100);
        let tries: Vec<Attempt> = (1..=6)
            .map(|i| attempt(&format!("198.51.{i}.9"), "alice", i * 7200))
            .collect();
        assert!(kinds(&mut a, &tries).is_empty());
    }
}
