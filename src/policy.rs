//! Policy: turns counted failures into ban decisions.
//!
//! Rules are "N failures within T → ban for D", per address or per prefix. The
//! allowlist is checked first and wins always: an allowlisted address is never
//! banned, and no prefix that overlaps an allowlisted network is banned either (its
//! addresses are banned one by one instead). A target already banned is not decided
//! again until its ban ends. Each new ban of the same target within the escalation
//! memory lasts `factor` times longer than the one before, up to `max`.
//!
//! Origin rules (`[[origin]]`) replace the address rules for the addresses they match
//! (by country and/or AS number): the first one in file order that matches is the
//! address rule for that address; prefix rules still apply to everyone, and the
//! allowlist still wins over all. There is no "never ban" origin: a country's
//! networks hold rented servers like any other, so only the allowlist never bans.
//!
//! Pure: takes the tracker's view, the address's origin and the event time, returns
//! decisions.

use crate::addr::AddrKey;
use crate::block::Ranges;
use crate::geo::Origin;
use crate::time::Timestamp;
use crate::windows::{View, prefix_of};
use ipnet::IpNet;
use lru::LruCache;
use smallvec::SmallVec;
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

/// An `[[origin]]`: the address rule for addresses of some countries or networks.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginRule {
    /// Matches when the country is one of these (`--`: no country known). Empty: any.
    pub countries: Vec<String>,
    /// Matches when the country is none of these.
    pub not_countries: Vec<String>,
    /// Matches when the AS number is one of these. Empty: any.
    pub asns: Vec<u32>,
    pub rule: Rule,
}

impl OriginRule {
    pub fn matches(&self, o: &Origin) -> bool {
        let country = o.country.as_deref().unwrap_or("--");
        (self.countries.is_empty() || self.countries.iter().any(|c| c == country))
            && !self.not_countries.iter().any(|c| c == country)
            && (self.asns.is_empty() || o.asn.is_some_and(|a| self.asns.contains(&a)))
    }

    pub fn needs_country(&self) -> bool {
        !self.countries.is_empty() || !self.not_countries.is_empty()
    }
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
    pub origins: Vec<OriginRule>,
    pub allowlist: Vec<IpNet>,
    /// The host's own addresses are never banned (`[allowlist] own_addresses`); the
    /// daemon tells the policy what they are ([`Policy::set_own`]).
    pub own_addresses: bool,
    /// What a ban by hand must satisfy.
    pub targets: crate::addr::TargetRules,
    /// How long a successful login makes its address (its /64 for IPv6) known good:
    /// never swept up by a prefix ban (0: off).
    pub known_good_ms: i64,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub escalation: Escalation,
    pub max_targets: usize,
}

impl PolicyConfig {
    /// The databases the origin rules need: (country, ASN).
    pub fn needs_geo(&self) -> (bool, bool) {
        let o = &self.origins;
        (
            o.iter().any(OriginRule::needs_country),
            o.iter().any(|r| !r.asns.is_empty()),
        )
    }

    pub fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .chain(self.origins.iter().map(|o| &o.rule))
    }

    /// The largest `of` any rule per scope, address and prefix (0: no rule of that
    /// scope).
    fn largest_per_scope<T: Ord + Default>(&self, of: impl Fn(&Rule) -> T) -> (T, T) {
        let largest = |sc| {
            self.all_rules()
                .filter(|r| r.scope == sc)
                .map(&of)
                .max()
                .unwrap_or_default()
        };
        (largest(Scope::Address), largest(Scope::Prefix))
    }

    /// The failures the sliding windows keep per key, for address and prefix rules:
    /// the largest count of any rule of that scope (0: no rule of that scope).
    pub fn depths(&self) -> (usize, usize) {
        self.largest_per_scope(|r| r.failures as usize)
    }

    /// The longest window of any rule per scope, address and prefix, in ms (0: no rule
    /// of that scope): how long the sliding windows must keep a failure.
    pub fn spans(&self) -> (i64, i64) {
        self.largest_per_scope(|r| r.within_ms)
    }

    /// The most failures the windows keep for any key: all a restart or a held write
    /// needs per address.
    pub fn deepest(&self) -> usize {
        let (a, p) = self.depths();
        a.max(p)
    }
}

// The ban vocabulary lives in `ban`; these names stay here for the library's users.
pub use crate::ban::{Decision, human_ms, target_string};

#[derive(Debug, Clone, Default)]
struct BanRecord {
    until: Timestamp,
    history: VecDeque<Timestamp>,
}

pub struct Policy {
    cfg: PolicyConfig,
    bans: LruCache<IpNet, BanRecord>,
    /// The host's interface addresses, when `own_addresses` is on.
    own: Vec<IpNet>,
    /// The allowlist, `own` and the special ranges merged, for
    /// [`Policy::allowlisted`] (asked twice a failure; `IpNet::contains` over each
    /// network took about 450 instructions, issue 17). Made anew with `own`.
    never_banned: Ranges,
    /// Known-good keys (an IPv4 address, an IPv6 /64) with their last login.
    known_good: crate::bounded::Lru<IpNet, Timestamp>,
    /// The same keys by the prefix they lie in, newest last, so that a prefix rule
    /// firing over and over under a botnet looks up its prefix instead of scanning
    /// every known-good key.
    good_by_prefix: crate::bounded::Lru<IpNet, Vec<(IpNet, Timestamp)>>,
    /// The failing addresses of each prefix, newest last, for a narrowed prefix ban:
    /// as many prefixes as the windows follow (`max_prefixes`), since a prefix whose
    /// failures the windows forgot cannot fire before it fails again (issue 17: with
    /// `max_ban_records` entries, an IPv6 botnet with one address per /64 made this the
    /// largest table after the offender records). The first member inline.
    members: crate::bounded::Lru<IpNet, SmallVec<[AddrKey; 1]>>,
}

/// `protected` (the allowlist and the host's own addresses) and the special ranges
/// ([`crate::addr::special`]) as one set of merged ranges.
fn never_banned<'a>(protected: impl Iterator<Item = &'a IpNet>) -> Ranges {
    Ranges::from_nets(protected.chain(crate::addr::special_nets().iter().map(|(n, _)| n)))
}

/// Failing addresses kept per prefix for a narrowed ban.
const MEMBERS_PER_PREFIX: usize = 64;
/// Known-good keys kept per prefix (the most recent logins).
const GOOD_PER_PREFIX: usize = 16;

impl Policy {
    /// `max_prefixes`: the prefixes whose failing addresses are kept (the windows'
    /// bound).
    pub fn new(cfg: PolicyConfig, max_prefixes: usize) -> Policy {
        let cap = NonZeroUsize::new(cfg.max_targets.max(1)).expect("nonzero");
        let never_banned = never_banned(cfg.allowlist.iter());
        Policy {
            cfg,
            bans: crate::bounded::lru(cap.get()),
            own: Vec::new(),
            never_banned,
            known_good: crate::bounded::Lru::new(cap.get()),
            good_by_prefix: crate::bounded::Lru::new(cap.get()),
            members: crate::bounded::Lru::new(max_prefixes),
        }
    }

    /// The key a login makes known good: the address, or its /64 for IPv6 (privacy
    /// addresses change within it).
    pub fn good_key(addr: IpAddr) -> IpNet {
        match addr {
            IpAddr::V4(_) => IpNet::from(addr),
            IpAddr::V6(_) => IpNet::new(addr, 64).expect("valid").trunc(),
        }
    }

    /// A successful login from `addr` at `time`.
    pub fn login(&mut self, addr: IpAddr, time: Timestamp) {
        if self.cfg.known_good_ms > 0 {
            self.restore_known_good(Self::good_key(addr), time);
        }
    }

    /// Records a known-good key with its last login (a login, or the store at start).
    pub fn restore_known_good(&mut self, key: IpNet, last: Timestamp) {
        // One lookup: the entry made the most recent, its time the later of the two.
        let seen = self.known_good.get_or_insert_mut(key, || last);
        *seen = (*seen).max(last);
        let t = *seen;
        let prefix = self.prefix_of(key.network());
        let keys = self.good_by_prefix.get_or_insert_mut(prefix, Vec::new);
        keys.retain(|(k, _)| *k != key);
        keys.push((key, t));
        if keys.len() > GOOD_PER_PREFIX {
            keys.remove(0);
        }
    }

    /// The known-good keys inside `prefix` at `now` (an IPv6 prefix narrower than a /64
    /// lies inside its key), sorted.
    fn good_in(&self, prefix: &IpNet, now: Timestamp) -> Vec<IpNet> {
        if self.cfg.known_good_ms <= 0 {
            return Vec::new();
        }
        let fresh = |t: &Timestamp| now.0 - t.0 <= self.cfg.known_good_ms;
        let mut good: Vec<IpNet> = self
            .good_by_prefix
            .peek(prefix)
            .into_iter()
            .flatten()
            .filter(|(_, t)| fresh(t))
            .map(|(k, _)| *k)
            .collect();
        let around = Self::good_key(prefix.network());
        if around.contains(prefix)
            && !good.contains(&around)
            && self.known_good.peek(&around).is_some_and(fresh)
        {
            good.push(around);
        }
        good.sort();
        good
    }

    /// True when `addr` is known good at `now`.
    fn is_good(&self, addr: IpAddr, now: Timestamp) -> bool {
        self.cfg.known_good_ms > 0
            && self
                .known_good
                .peek(&Self::good_key(addr))
                .is_some_and(|t| now.0 - t.0 <= self.cfg.known_good_ms)
    }

    /// The host's own addresses as they are now; ignored when `own_addresses` is off.
    /// Returns true if they changed.
    pub fn set_own(&mut self, own: Vec<IpNet>) -> bool {
        let own = if self.cfg.own_addresses {
            own
        } else {
            Vec::new()
        };
        let changed = own != self.own;
        self.own = own;
        self.never_banned = never_banned(self.protected());
        changed
    }

    /// Networks no ban may touch: the allowlist and the host's own addresses.
    pub fn protected(&self) -> impl Iterator<Item = &IpNet> {
        self.cfg.allowlist.iter().chain(&self.own)
    }

    /// Never banned: allowlisted, one of the host's own addresses, or an address that
    /// is no internet host (unspecified, link-local, multicast, broadcast).
    pub fn allowlisted(&self, addr: IpAddr) -> bool {
        self.never_banned.contains(addr)
    }

    pub fn prefix_of(&self, addr: IpAddr) -> IpNet {
        prefix_of(addr, self.cfg.prefix_v4, self.cfg.prefix_v6)
    }

    pub fn has_prefix_rules(&self) -> bool {
        self.cfg.rules.iter().any(|r| r.scope == Scope::Prefix)
    }

    /// The databases the origin rules need: (country, ASN).
    pub fn needs_geo(&self) -> (bool, bool) {
        self.cfg.needs_geo()
    }

    /// All rules with their windows: the `[[rule]]`s and the origin rules.
    pub fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.cfg.all_rules()
    }

    /// Depth the tracker needs per scope.
    pub fn depths(&self) -> (usize, usize) {
        self.cfg.depths()
    }

    /// How long the tracker must keep a failure per scope (see [`PolicyConfig::spans`]).
    pub fn spans(&self) -> (i64, i64) {
        self.cfg.spans()
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

    /// Decisions after a failure of `addr` at `now` was recorded in the windows
    /// (`windows`: those of `addr` and its prefix, as recording it left them).
    pub fn decide(
        &mut self,
        windows: &View,
        addr: IpAddr,
        geo: &Origin,
        now: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        if self.allowlisted(addr) {
            return;
        }
        let prefix = self.prefix_of(addr);
        let single = IpNet::from(addr);
        let origin_rule = self.cfg.origins.iter().find(|o| o.matches(geo));
        let rules = self
            .cfg
            .rules
            .iter()
            .filter(|r| origin_rule.is_none() || r.scope == Scope::Prefix)
            .chain(origin_rule.map(|o| &o.rule));
        // The strongest rule that fires for each scope: the longest ban.
        let mut best: [Option<(&Rule, u32)>; 2] = [None, None];
        for rule in rules {
            let fired = match rule.scope {
                Scope::Address => windows.address_hits(rule.failures, rule.within_ms, now),
                Scope::Prefix => {
                    windows.prefix_hits(rule.failures, rule.within_ms, rule.min_addresses, now)
                }
            };
            let Some(n) = fired else { continue };
            let slot = &mut best[usize::from(rule.scope == Scope::Prefix)];
            if slot.is_none_or(|(r, _)| rule.ban_ms > r.ban_ms) {
                *slot = Some((rule, n));
            }
        }
        let prefix_decision = best[1]
            .filter(|_| {
                !self.active(&prefix, now)
                    && !self
                        .protected()
                        .any(|a| a.contains(&prefix) || prefix.contains(a))
            })
            .map(|(r, n)| (r.clone(), n));
        let address_decision = best[0].map(|(r, n)| (r.clone(), n));
        // The failing addresses of the prefix, for a ban narrowed around known-good ones.
        if prefix.prefix_len() < prefix.max_prefix_len() && self.has_prefix_rules() {
            let m = self.members.get_or_insert_mut(prefix, SmallVec::new);
            let key = AddrKey::from(addr);
            if !m.contains(&key) {
                if m.len() == MEMBERS_PER_PREFIX {
                    m.remove(0);
                }
                m.push(key);
            }
        }
        let mut made: Vec<(IpNet, Rule, u32, Option<String>)> = Vec::new();
        if let Some((rule, n)) = prefix_decision {
            let good = self.good_in(&prefix, now);
            if good.is_empty() {
                made.push((prefix, rule, n, None));
            } else {
                // Addresses that logged in lately live there (a provider's pool, an
                // office): ban the addresses that failed, one by one, not the prefix.
                let list: Vec<String> = good.iter().take(4).map(target_string).collect();
                let why = format!(
                    "; narrowed: {} holds {} known-good address{} ({}{}), so its failing addresses are banned one by one",
                    prefix,
                    good.len(),
                    if good.len() == 1 { "" } else { "es" },
                    list.join(", "),
                    if good.len() > 4 { ", ..." } else { "" }
                );
                let members: Vec<IpAddr> = self
                    .members
                    .peek(&prefix)
                    .map(|m| m.iter().map(|k| k.ip()).collect())
                    .unwrap_or_default();
                for m in members {
                    let t = IpNet::from(m);
                    let own_rule = m == addr && address_decision.is_some();
                    if own_rule
                        || self.is_good(m, now)
                        || self.allowlisted(m)
                        || self.active(&t, now)
                    {
                        continue;
                    }
                    made.push((t, rule.clone(), n, Some(why.clone())));
                }
            }
        }
        let covered = self.active(&prefix, now) || made.iter().any(|(t, ..)| *t == prefix);
        if let (Some((rule, n)), false) = (address_decision, covered || self.active(&single, now)) {
            made.push((single, rule, n, None));
        }
        let origin_name = origin_rule.map(|o| o.rule.name.clone());
        for (target, rule, n, narrowed) in made {
            let mut d = self.ban(target, &rule, n, now);
            if let Some(why) = narrowed {
                d.reason.push_str(&why);
            }
            if origin_name.as_ref() == Some(&rule.name) {
                d.reason = d.reason.replacen(
                    &format!("(rule {})", rule.name),
                    &format!("(origin {}: {})", rule.name, geo.label()),
                    1,
                );
            }
            d.geo = geo.clone();
            out.push(d);
        }
    }

    /// A ban asked for by an alert (`[alerts] ban`): None when the address is
    /// allowlisted or already banned.
    pub fn alert_ban(
        &mut self,
        addr: IpAddr,
        ban_ms: i64,
        kind: &str,
        geo: &Origin,
        now: Timestamp,
    ) -> Option<Decision> {
        let target = IpNet::from(addr);
        if self.allowlisted(addr) || self.active(&target, now) {
            return None;
        }
        let rule = Rule {
            name: format!("alert {kind}"),
            scope: Scope::Address,
            failures: 0,
            within_ms: 0,
            ban_ms,
            min_addresses: 1,
        };
        let mut d = self.ban(target, &rule, 0, now);
        d.reason = format!("alert {kind} ({})", geo.label());
        d.geo = geo.clone();
        Some(d)
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
            geo: Origin::default(),
            tls: None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The policy over the sliding windows, with the clock in the test's hands.
    use super::*;
    use crate::windows::Windows;

    fn policy(toml: &str) -> (Policy, Windows) {
        let cfg = crate::config::parse(toml, std::path::Path::new("test.toml")).unwrap();
        let p = Policy::new(cfg.policy, cfg.max_prefixes);
        let (a, pd) = p.depths();
        (p, Windows::new(a, pd, 1000, 1000))
    }

    const RULE: &str = "[[rule]]\nname = \"t\"\nfailures = 3\nwithin = \"10m\"\nban = \"1h\"\n[escalation]\nfactor = 2.0\nmax = \"30d\"\nmemory = \"30d\"\n";

    fn fail(p: &mut Policy, w: &mut Windows, addr: IpAddr, secs: i64) -> Vec<Decision> {
        let t = Timestamp::from_secs(secs);
        let view = w.record(addr, None, t, 1);
        let mut out = Vec::new();
        p.decide(&view, addr, &Origin::default(), t, &mut out);
        out
    }

    #[test]
    fn the_third_failure_within_the_window_bans_and_not_before() {
        let (mut p, mut w) = policy(RULE);
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        assert!(fail(&mut p, &mut w, a, 0).is_empty());
        assert!(fail(&mut p, &mut w, a, 60).is_empty());
        let d = fail(&mut p, &mut w, a, 120);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].target, IpNet::from(a));
        assert_eq!(d[0].until.0 - d[0].at.0, 3_600_000);
        assert_eq!(d[0].nth, 1);
    }

    #[test]
    fn failing_addresses_are_kept_for_as_many_prefixes_as_the_windows_follow() {
        // One address in each of 100 /24s: the member lists are bounded by
        // max_prefixes, not by max_ban_records.
        let (mut p, mut w) = policy("[limits]\nmax_prefixes = 4\nmax_ban_records = 1000\n");
        assert!(p.has_prefix_rules());
        for i in 0..100u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0xC633_0000 + (i << 8) + 7));
            fail(&mut p, &mut w, a, i64::from(i));
        }
        assert_eq!(p.members.len(), 4);
        let newest = prefix_of("198.51.99.7".parse().unwrap(), 24, 64);
        assert_eq!(
            p.members.peek(&newest).map(|m| m[0].ip()),
            Some("198.51.99.7".parse().unwrap())
        );
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_ban() {
        let (mut p, mut w) = policy(RULE);
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        for i in 0..10 {
            assert!(fail(&mut p, &mut w, a, i * 400).is_empty(), "failure {i}");
        }
    }

    #[test]
    fn a_second_ban_within_the_memory_lasts_twice_as_long() {
        let (mut p, mut w) = policy(RULE);
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        for s in [0, 1, 2] {
            fail(&mut p, &mut w, a, s);
        }
        // After the first ban ends, three more failures.
        let later = 2 * 3600;
        fail(&mut p, &mut w, a, later);
        fail(&mut p, &mut w, a, later + 1);
        let d = fail(&mut p, &mut w, a, later + 2);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].nth, 2);
        assert_eq!(d[0].until.0 - d[0].at.0, 2 * 3_600_000);
    }

    #[test]
    fn allowlisted_and_special_addresses_are_never_banned() {
        let (mut p, mut w) = policy(&format!(
            "{RULE}[allowlist]\nnetworks = [\"198.51.100.0/24\"]\n"
        ));
        for a in ["198.51.100.7", "0.0.0.0", "224.0.0.1", "fe80::1", "ff02::1"] {
            let a: IpAddr = a.parse().unwrap();
            assert!(p.allowlisted(a), "{a}");
            for s in 0..10 {
                assert!(fail(&mut p, &mut w, a, s).is_empty(), "{a}");
            }
        }
        // Next to them, and an IPv6 address whose bits an IPv4 range would hold: not.
        for a in ["198.51.101.7", "192.0.2.1", "::a9fe:304", "2001:db8::1"] {
            assert!(!p.allowlisted(a.parse().unwrap()), "{a}");
        }
    }
}
