//! Raw configuration → typed [`Config`], collecting every error with file:line.

use super::raw::{
    RawAlerts, RawBlock, RawCluster, RawConfig, RawDaemon, RawGeoip, RawNftables, RawOrigin,
    RawPostfixMap, RawPostfixPolicy, RawSources,
};
use super::{
    Config, ConfigError, ConfigErrors, DaemonConfig, GeoConfig, MapConfig, SourcesConfig, StartAt,
};
use crate::alert::AlertConfig;
use crate::attempts::{ConnectionLost, CountConfig};
use crate::block::{BlockConfig, LOGIN_PORTS, Ranges};
use crate::enforce::nft::NftConfig;
use crate::geo::is_country_code;
use crate::policy::{Escalation, OriginRule, PolicyConfig, Rule, Scope};
use crate::time::Zone;
use ipnet::IpNet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("duration too large")]
    TooLarge,
    #[error("bad duration {given:?}: unit {unit:?} is not one of s, m, h, d, w")]
    Unit { given: String, unit: char },
    #[error("bad duration {0:?}: a unit without a number")]
    UnitWithoutNumber(String),
    #[error("bad duration {0:?}: the last number has no unit (s, m, h, d or w)")]
    NumberWithoutUnit(String),
    #[error("duration {0:?} is longer than ten years")]
    TooLong(String),
}

/// `90s`, `10m`, `1h30m`, `7d`, `2w` → milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: i64 = 0;
    let mut num: Option<i64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(d)))
                    .ok_or(DurationError::TooLarge)?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(DurationError::Unit {
                    given: s.to_string(),
                    unit: c,
                });
            }
        };
        let n = num
            .take()
            .ok_or_else(|| DurationError::UnitWithoutNumber(s.to_string()))?;
        total = n
            .checked_mul(unit * 1000)
            .and_then(|v| total.checked_add(v))
            .ok_or(DurationError::TooLarge)?;
    }
    if num.is_some() {
        return Err(DurationError::NumberWithoutUnit(s.to_string()));
    }
    if total > 3650 * 86_400_000 {
        return Err(DurationError::TooLong(s.to_string()));
    }
    Ok(total)
}

struct Errs<'a> {
    text: &'a str,
    path: &'a Path,
    list: Vec<ConfigError>,
}

impl Errs<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = if self.text.is_empty() {
            (0, 0)
        } else {
            line_col(self.text, span.start)
        };
        self.list.push(ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, key: &str, default: i64) -> i64 {
        match v {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(0) => {
                    self.at(s.span(), format!("{key} must be longer than 0s"));
                    default
                }
                Ok(ms) => ms,
                Err(e) => {
                    self.at(s.span(), format!("{key}: {e}"));
                    default
                }
            },
        }
    }

    fn int(
        &mut self,
        v: &Option<Spanned<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> i64 {
        match v {
            None => default,
            Some(n) if range.contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                self.at(
                    n.span(),
                    format!(
                        "{key} = {} is out of range {}..={}",
                        n.get_ref(),
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }
}

pub fn default_rules() -> Vec<Rule> {
    let r = |name: &str, scope, failures, within_ms, ban_ms, min_addresses| Rule {
        name: name.into(),
        scope,
        failures,
        within_ms,
        ban_ms,
        min_addresses,
    };
    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    vec![
        // Fast guessing, and one failure a minute, are caught within minutes.
        r("fast", Scope::Address, 5, 10 * MIN, HOUR, 1),
        // One failure every five minutes for an hour.
        r("slow", Scope::Address, 10, HOUR, 6 * HOUR, 1),
        // A patient guesser: one every half hour for a day.
        r("patient", Scope::Address, 30, 24 * HOUR, 7 * 24 * HOUR, 1),
        // Rotating addresses inside one /24 or /64.
        r("prefix", Scope::Prefix, 30, HOUR, 6 * HOUR, 3),
    ]
}

pub fn validate(raw: RawConfig, text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut e = Errs {
        text,
        path,
        list: Vec::new(),
    };

    let zone = match &raw.input.timezone {
        None => Zone::Local,
        Some(s) => Zone::parse(s.get_ref()).unwrap_or_else(|| {
            e.at(
                s.span(),
                format!(
                    "timezone {:?}: expected \"local\", \"UTC\" or an offset like \"+01:00\"",
                    s.get_ref()
                ),
            );
            Zone::Local
        }),
    };
    let max_line_bytes = e.int(
        &raw.input.max_line_bytes,
        "input.max_line_bytes",
        512..=1 << 20,
        16 * 1024,
    ) as usize;

    let connection_lost = match &raw.counting.connection_lost {
        None => ConnectionLost::AfterFailure,
        Some(s) => match s.get_ref().as_str() {
            "never" => ConnectionLost::Never,
            "after-failure" => ConnectionLost::AfterFailure,
            "always" => ConnectionLost::Always,
            other => {
                e.at(s.span(), format!("counting.connection_lost = {other:?}: expected \"never\", \"after-failure\" or \"always\""));
                ConnectionLost::AfterFailure
            }
        },
    };
    let limits = &raw.limits;
    let mut limit = |v: &Option<Spanned<i64>>, key: &str, default: i64| {
        e.int(v, &format!("limits.{key}"), 1..=100_000_000, default) as usize
    };
    let max_addresses = limit(&limits.max_addresses, "max_addresses", 100_000);
    let max_prefixes = limit(&limits.max_prefixes, "max_prefixes", 20_000);
    let max_offenders = limit(&limits.max_offenders, "max_offenders", 50_000);
    let max_connections = limit(&limits.max_connections, "max_connections", 50_000);
    let max_targets = limit(&limits.max_ban_records, "max_ban_records", 100_000);

    let count = CountConfig {
        pair_window_ms: e.duration(&raw.counting.pair_window, "counting.pair_window", 20_000),
        penalty_window_ms: e.duration(
            &raw.counting.penalty_window,
            "counting.penalty_window",
            15 * 60_000,
        ),
        connection_lost,
        max_connections,
        max_addresses,
    };

    let rules = match &raw.rule {
        None => default_rules(),
        Some(list) if list.is_empty() => {
            e.at(0..0, "no [[rule]]: saslguard would never ban (remove the empty list to use the defaults)");
            Vec::new()
        }
        Some(list) => {
            let mut rules = Vec::new();
            for sr in list {
                let r = sr.get_ref();
                let name = r.name.get_ref().trim().to_string();
                if name.is_empty() {
                    e.at(r.name.span(), "rule name is empty");
                }
                if rules.iter().any(|x: &Rule| x.name == name) {
                    e.at(r.name.span(), format!("rule name {name:?} is used twice"));
                }
                let scope = match r.scope.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
                    None | Some(("address", _)) => Scope::Address,
                    Some(("prefix", _)) => Scope::Prefix,
                    Some((other, span)) => {
                        e.at(
                            span,
                            format!("scope = {other:?}: expected \"address\" or \"prefix\""),
                        );
                        Scope::Address
                    }
                };
                let failures = e.int(&Some(r.failures.clone()), "failures", 1..=1000, 1) as u32;
                let within_ms = e.duration(&Some(r.within.clone()), "within", 1);
                let ban_ms = e.duration(&Some(r.ban.clone()), "ban", 1);
                let min_addresses = match (&r.min_addresses, scope) {
                    (Some(m), Scope::Address) => {
                        e.at(m.span(), "min_addresses applies only to scope = \"prefix\"");
                        1
                    }
                    (m, _) => e.int(m, "min_addresses", 1..=1000, 1) as u32,
                };
                if scope == Scope::Prefix && min_addresses > failures {
                    e.at(
                        sr.span(),
                        format!(
                            "min_addresses ({min_addresses}) cannot exceed failures ({failures})"
                        ),
                    );
                }
                rules.push(Rule {
                    name,
                    scope,
                    failures,
                    within_ms,
                    ban_ms,
                    min_addresses,
                });
            }
            rules
        }
    };

    let prefix_v4 = e.int(&raw.prefix.ipv4, "prefix.ipv4", 8..=32, 24) as u8;
    let prefix_v6 = e.int(&raw.prefix.ipv6, "prefix.ipv6", 16..=128, 64) as u8;
    let known_good_ms = match &raw.prefix.known_good {
        Some(v) if v.get_ref() == "off" => 0,
        v => e.duration(v, "prefix.known_good", 30 * 86_400_000),
    };

    let own_addresses = raw
        .allowlist
        .own_addresses
        .as_ref()
        .is_none_or(|v| *v.get_ref());
    let targets = crate::addr::TargetRules {
        shortest_v4: e.int(
            &raw.allowlist.shortest_prefix_v4,
            "allowlist.shortest_prefix_v4",
            0..=32,
            16,
        ) as u8,
        shortest_v6: e.int(
            &raw.allowlist.shortest_prefix_v6,
            "allowlist.shortest_prefix_v6",
            0..=128,
            32,
        ) as u8,
    };
    // Loopback is always allowlisted: banning it would cut the host off from itself.
    let mut allowlist: Vec<IpNet> = vec![
        "127.0.0.0/8".parse().expect("net"),
        "::1/128".parse().expect("net"),
    ];
    for s in raw.allowlist.networks.iter().flatten() {
        match parse_network(s.get_ref()) {
            Ok(n) => {
                if !allowlist.contains(&n) {
                    allowlist.push(n);
                }
            }
            Err(msg) => e.at(s.span(), format!("allowlist: {msg}")),
        }
    }

    let factor = match &raw.escalation.factor {
        None => 2.0,
        Some(f) if (1.0..=100.0).contains(f.get_ref()) => *f.get_ref(),
        Some(f) => {
            e.at(
                f.span(),
                format!(
                    "escalation.factor = {} is out of range 1.0..=100.0",
                    f.get_ref()
                ),
            );
            2.0
        }
    };
    let escalation = Escalation {
        factor,
        max_ms: e.duration(&raw.escalation.max, "escalation.max", 30 * 86_400_000),
        memory_ms: e.duration(&raw.escalation.memory, "escalation.memory", 30 * 86_400_000),
    };

    let sources = sources(&mut e, &raw.sources);
    let daemon = daemon(&mut e, &raw.daemon);
    let nftables = nftables(&mut e, &raw.nftables);
    let postfix_map = postfix_map(&mut e, &raw.postfix_map);
    let postfix_policy = postfix_policy(&mut e, &raw.postfix_policy);
    let geoip = geoip(&mut e, &raw.geoip);
    let origins = origins(&mut e, raw.origin.as_deref().unwrap_or_default());
    let alerts = alerts(&mut e, &raw.alerts);
    let blocks = blocks(
        &mut e,
        raw.block.as_deref().unwrap_or_default(),
        &allowlist,
        path,
    );
    let cluster = cluster(&mut e, &raw.cluster);
    let nftables = nftables.map(|mut n| {
        n.blocks = blocks
            .iter()
            .map(|b| (b.name.clone(), b.ports.clone()))
            .collect();
        n
    });

    if !e.list.is_empty() {
        return Err(ConfigErrors(e.list));
    }
    Ok(Config {
        zone,
        max_line_bytes,
        count,
        policy: PolicyConfig {
            rules,
            origins,
            allowlist,
            own_addresses,
            targets,
            known_good_ms,
            prefix_v4,
            prefix_v6,
            escalation,
            max_targets,
        },
        max_offenders,
        max_prefixes,
        sources,
        daemon,
        nftables,
        postfix_map,
        postfix_policy,
        geoip,
        alerts,
        blocks,
        cluster,
    })
}

/// This host's name, for the fleet.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn cluster(e: &mut Errs, raw: &RawCluster) -> Option<crate::fleet::FleetConfig> {
    let url = match &raw.url {
        None => "host=/run/postgresql dbname=saslguard user=saslguard".to_string(),
        Some(u) => {
            let text = u.get_ref();
            if let Err(err) = crate::fleet::pg_config(text) {
                e.at(u.span(), format!("cluster.url: {err}"));
            } else if crate::fleet::pg_config(text).is_ok_and(|c| c.get_password().is_some()) {
                e.at(
                    u.span(),
                    "cluster.url must not hold the password: put it in cluster.password_file \
                     or PGPASSWORD",
                );
            }
            text.clone()
        }
    };
    let password_file = raw
        .password_file
        .as_ref()
        .filter(|p| !p.get_ref().is_empty())
        .map(|p| absolute(e, p, "cluster.password_file"));
    let node = match &raw.node {
        None => host_name(),
        Some(n) if n.get_ref().is_empty() => host_name(),
        Some(n) => {
            let v = n.get_ref().trim();
            if v.is_empty() || v.len() > 64 || v.contains(char::is_control) {
                e.at(n.span(), "cluster.node: 1 to 64 printable characters");
            }
            v.to_string()
        }
    };
    raw.enabled
        .as_ref()
        .is_some_and(|v| *v.get_ref())
        .then_some(crate::fleet::FleetConfig {
            url,
            password_file,
            node,
            share_failures: raw.share_failures.as_ref().is_none_or(|v| *v.get_ref()),
            ca_file: raw
                .ca_file
                .as_ref()
                .filter(|p| !p.get_ref().is_empty())
                .map(|p| absolute(e, p, "cluster.ca_file")),
        })
}

fn geoip(e: &mut Errs, raw: &RawGeoip) -> GeoConfig {
    let path = |e: &mut Errs, v: &Option<Spanned<String>>, key: &str, default: &str| match v {
        None => (Some(PathBuf::from(default)), false),
        Some(s) if s.get_ref().is_empty() => (None, false),
        Some(s) => (Some(absolute(e, s, key)), s.get_ref() != default),
    };
    let (country_database, c) = path(
        e,
        &raw.country_database,
        "geoip.country_database",
        "/var/lib/GeoIP/GeoLite2-Country.mmdb",
    );
    let (asn_database, a) = path(
        e,
        &raw.asn_database,
        "geoip.asn_database",
        "/var/lib/GeoIP/GeoLite2-ASN.mmdb",
    );
    GeoConfig {
        country_database,
        asn_database,
        explicit: c || a,
    }
}

fn country_list(e: &mut Errs, list: &Option<Vec<Spanned<String>>>, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for c in list.iter().flatten() {
        let v = c.get_ref();
        if v == "--" || is_country_code(v) {
            out.push(v.clone());
        } else if is_country_code(&v.to_ascii_uppercase()) {
            e.at(
                c.span(),
                format!(
                    "{key}: {v:?}: country codes are upper case ({:?})",
                    v.to_ascii_uppercase()
                ),
            );
        } else {
            e.at(
                c.span(),
                format!(
                    "{key}: {v:?} is not an ISO 3166-1 alpha-2 country code (\"GB\", not \"UK\"; \"--\" for addresses the database gives no country)"
                ),
            );
        }
    }
    out
}

/// `networks_file`: one network per line; `#` starts a comment; blank lines are fine.
/// Each bad line is an error of its own, with the file's name and line.
fn networks_file(e: &mut Errs, v: &Spanned<String>, base: &Path) -> Vec<IpNet> {
    let path = {
        let p = PathBuf::from(v.get_ref());
        if p.is_absolute() {
            p
        } else {
            base.parent().unwrap_or(Path::new(".")).join(p)
        }
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(err) => {
            e.at(v.span(), format!("networks_file {}: {err}", path.display()));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        match parse_network(l) {
            Ok(n) => out.push(n),
            Err(msg) => e.list.push(ConfigError {
                path: path.clone(),
                line: i + 1,
                column: 1,
                message: format!("networks_file: {msg}"),
            }),
        }
    }
    out
}

fn blocks(
    e: &mut Errs,
    list: &[Spanned<RawBlock>],
    allowlist: &[IpNet],
    path: &Path,
) -> Vec<BlockConfig> {
    let mut out: Vec<BlockConfig> = Vec::new();
    for sb in list {
        let b = sb.get_ref();
        let name = b.name.get_ref().clone();
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !ok {
            e.at(
                b.name.span(),
                format!("block name {name:?}: expected 1 to 32 letters, digits, _ or -"),
            );
        }
        if out.iter().any(|x| x.name == name) {
            e.at(b.name.span(), format!("block name {name:?} is used twice"));
        }
        let countries = country_list(e, &b.countries, "countries");
        let not_countries = country_list(e, &b.not_countries, "not_countries");
        let mut asns = Vec::new();
        for a in b.asns.iter().flatten() {
            match u32::try_from(*a.get_ref()) {
                Ok(n) if n > 0 => asns.push(n),
                _ => e.at(
                    a.span(),
                    format!("asns: {} is not an AS number", a.get_ref()),
                ),
            }
        }
        let nets = |e: &mut Errs, v: &Option<Vec<Spanned<String>>>, key: &str| {
            let mut out = Vec::new();
            for s in v.iter().flatten() {
                match parse_network(s.get_ref()) {
                    Ok(n) => out.push(n),
                    Err(msg) => e.at(s.span(), format!("{key}: {msg}")),
                }
            }
            out
        };
        let mut networks = nets(e, &b.networks, "networks");
        if let Some(f) = &b.networks_file {
            networks.extend(networks_file(e, f, path));
        }
        let except = nets(e, &b.except, "except");
        let smtp = b.block_smtp.as_ref().is_some_and(|v| *v.get_ref());
        let ports = match &b.ports {
            None => LOGIN_PORTS.to_vec(),
            Some(list) => {
                let mut ports = Vec::new();
                for p in list {
                    match u16::try_from(*p.get_ref()) {
                        Ok(25) if !smtp => e.at(
                            p.span(),
                            "ports: 25 refuses this block's mail servers, not only its \
                             guessers; an MX loses their mail. Set block_smtp = true if that \
                             is what you want",
                        ),
                        Ok(v) if v > 0 => ports.push(v),
                        _ => e.at(
                            p.span(),
                            format!("ports: {} is not a TCP port (1..=65535)", p.get_ref()),
                        ),
                    }
                }
                ports
            }
        };
        let says_what = b.countries.is_some()
            || b.not_countries.is_some()
            || b.asns.is_some()
            || b.networks.is_some()
            || b.networks_file.is_some();
        if !says_what {
            e.at(
                sb.span(),
                format!(
                    "block {name:?} blocks nothing: give countries, not_countries, asns, \
                     networks or networks_file"
                ),
            );
        }
        // A block over the whole allowlist is a mistake: every network trusted is inside
        // it (your own country or provider). The allowlist would still pass, but the
        // block was surely not meant. An allowlisted address inside a block is fine: it
        // punches through.
        let listed = Ranges::from_nets(&networks).minus(&Ranges::from_nets(&except));
        let trusted: Vec<&IpNet> = allowlist
            .iter()
            .filter(|a| !a.addr().is_loopback())
            .collect();
        if !trusted.is_empty() && trusted.iter().all(|a| listed.covers(a)) {
            e.at(
                sb.span(),
                format!(
                    "block {name:?} covers the whole allowlist ({}); put what you trust in \
                     except",
                    trusted
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        out.push(BlockConfig {
            name,
            countries,
            not_countries,
            asns,
            networks,
            ports,
            except,
        });
    }
    out
}

fn origins(e: &mut Errs, list: &[Spanned<RawOrigin>]) -> Vec<OriginRule> {
    let mut out: Vec<OriginRule> = Vec::new();
    for so in list {
        let o = so.get_ref();
        let name = o.name.get_ref().trim().to_string();
        if name.is_empty() {
            e.at(o.name.span(), "origin name is empty");
        }
        if out.iter().any(|x| x.rule.name == name) {
            e.at(o.name.span(), format!("origin name {name:?} is used twice"));
        }
        let countries = country_list(e, &o.countries, "countries");
        let not_countries = country_list(e, &o.not_countries, "not_countries");
        let mut asns = Vec::new();
        for a in o.asns.iter().flatten() {
            match u32::try_from(*a.get_ref()) {
                Ok(n) if n > 0 => asns.push(n),
                _ => e.at(
                    a.span(),
                    format!("asns: {} is not an AS number", a.get_ref()),
                ),
            }
        }
        if o.countries.is_none() && o.not_countries.is_none() && o.asns.is_none() {
            e.at(
                so.span(),
                format!("origin {name:?} matches nothing: give countries, not_countries or asns"),
            );
        }
        out.push(OriginRule {
            countries,
            not_countries,
            asns,
            rule: Rule {
                name,
                scope: Scope::Address,
                failures: e.int(&Some(o.failures.clone()), "failures", 1..=1000, 1) as u32,
                within_ms: e.duration(&Some(o.within.clone()), "within", 1),
                ban_ms: e.duration(&Some(o.ban.clone()), "ban", 1),
                min_addresses: 1,
            },
        });
    }
    out
}

fn alerts(e: &mut Errs, raw: &RawAlerts) -> AlertConfig {
    let off_or = |e: &mut Errs, v: &Option<Spanned<String>>, key: &str, default: i64| match v {
        Some(s) if s.get_ref() == "0s" || s.get_ref() == "off" => 0,
        _ => e.duration(v, key, default),
    };
    AlertConfig {
        login_after_failures_ms: off_or(
            e,
            &raw.login_after_failures,
            "alerts.login_after_failures",
            86_400_000,
        ),
        login_after_failures_min: e.int(
            &raw.login_after_failures_min,
            "alerts.login_after_failures_min",
            1..=1000,
            3,
        ) as u32,
        new_origin: raw.new_origin.as_ref().is_none_or(|v| *v.get_ref()),
        learning_ms: e.duration(&raw.learning, "alerts.learning", 14 * 86_400_000),
        countries: country_list(e, &raw.countries, "alerts.countries"),
        spray_addresses: e.int(
            &raw.spray_addresses,
            "alerts.spray_addresses",
            0..=100_000,
            10,
        ) as u32,
        spray_accounts: e.int(
            &raw.spray_accounts,
            "alerts.spray_accounts",
            0..=100_000,
            10,
        ) as u32,
        spray_window_ms: e.duration(&raw.spray_window, "alerts.spray_window", 3_600_000),
        command: raw
            .command
            .iter()
            .flatten()
            .map(|a| a.get_ref().clone())
            .collect(),
        ban_ms: off_or(e, &raw.ban, "alerts.ban", 0),
    }
}

fn absolute(e: &mut Errs, v: &Spanned<String>, key: &str) -> PathBuf {
    let p = PathBuf::from(v.get_ref());
    if !p.is_absolute() {
        e.at(
            v.span(),
            format!("{key} = {:?}: the path must be absolute", v.get_ref()),
        );
    }
    p
}

fn sources(e: &mut Errs, raw: &RawSources) -> SourcesConfig {
    let mut files: Vec<PathBuf> = Vec::new();
    for f in raw.files.iter().flatten() {
        let p = absolute(e, f, "sources.files");
        if files.contains(&p) {
            e.at(
                f.span(),
                format!("sources.files: {:?} is listed twice", f.get_ref()),
            );
        }
        files.push(p);
    }
    let journal = raw.journal.as_ref().is_none_or(|j| *j.get_ref());
    let journal_identifiers = match &raw.journal_identifiers {
        None => vec!["postfix".to_string(), "dovecot".to_string()],
        Some(list) => {
            for i in list {
                if i.get_ref().trim().is_empty() {
                    e.at(
                        i.span(),
                        "sources.journal_identifiers: an empty identifier matches everything",
                    );
                }
            }
            list.iter()
                .map(|i| i.get_ref().trim().to_string())
                .collect()
        }
    };
    let journal_directory = match &raw.journal_directory {
        Some(d) if !d.get_ref().is_empty() => Some(absolute(e, d, "sources.journal_directory")),
        _ => None,
    };
    let start_at = match raw
        .start_at
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None | Some(("end", _)) => StartAt::End,
        Some(("beginning", _)) => StartAt::Beginning,
        Some((other, span)) => {
            e.at(
                span,
                format!("sources.start_at = {other:?}: expected \"end\" or \"beginning\""),
            );
            StartAt::End
        }
    };
    let rotate_grace_ms = e.duration(&raw.rotate_grace, "sources.rotate_grace", 5_000);
    SourcesConfig {
        files,
        journal,
        journal_identifiers,
        journal_directory,
        start_at,
        rotate_grace_ms,
    }
}

fn daemon(e: &mut Errs, raw: &RawDaemon) -> DaemonConfig {
    let path = |e: &mut Errs, v: &Option<Spanned<String>>, key: &str, default: &str| match v {
        None => PathBuf::from(default),
        Some(s) => absolute(e, s, key),
    };
    let state_directory = path(
        e,
        &raw.state_directory,
        "daemon.state_directory",
        "/var/lib/saslguard",
    );
    let control_socket = path(
        e,
        &raw.control_socket,
        "daemon.control_socket",
        "/run/saslguard/control.sock",
    );
    let control_socket_mode = match &raw.control_socket_mode {
        None => 0o600,
        Some(m) => match u32::from_str_radix(m.get_ref(), 8) {
            Ok(v) if v <= 0o777 && v & 0o600 == 0o600 => v,
            _ => {
                e.at(m.span(), format!("daemon.control_socket_mode = {:?}: expected an octal mode like \"0600\" or \"0660\" (the owner needs rw)", m.get_ref()));
                0o600
            }
        },
    };
    let metrics_listen = match &raw.metrics_listen {
        Some(m) if !m.get_ref().is_empty() => match m.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                e.at(m.span(), format!("daemon.metrics_listen = {:?}: expected ADDRESS:PORT like \"127.0.0.1:9117\", or \"\" for off", m.get_ref()));
                None
            }
        },
        _ => None,
    };
    let keep_history_ms = e.duration(&raw.keep_history, "daemon.keep_history", 365 * 86_400_000);
    DaemonConfig {
        state_directory,
        control_socket,
        control_socket_mode,
        metrics_listen,
        keep_history_ms,
    }
}

fn nftables(e: &mut Errs, raw: &RawNftables) -> Option<NftConfig> {
    let mut cfg = NftConfig::default();
    if let Some(t) = &raw.table {
        let ok = !t.get_ref().is_empty()
            && t.get_ref().len() <= 64
            && t.get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            e.at(
                t.span(),
                format!(
                    "nftables.table = {:?}: expected 1 to 64 letters, digits, _ or -",
                    t.get_ref()
                ),
            );
        }
        cfg.table = t.get_ref().clone();
    }
    if let Some(list) = &raw.ports {
        cfg.ports = Vec::new();
        for p in list {
            match u16::try_from(*p.get_ref()) {
                Ok(v) if v > 0 => cfg.ports.push(v),
                _ => e.at(
                    p.span(),
                    format!(
                        "nftables.ports: {} is not a TCP port (1..=65535)",
                        p.get_ref()
                    ),
                ),
            }
        }
    }
    if let Some(r) = &raw.reject {
        cfg.reject = *r.get_ref();
    }
    raw.enabled
        .as_ref()
        .is_none_or(|v| *v.get_ref())
        .then_some(cfg)
}

fn postfix_map(e: &mut Errs, raw: &RawPostfixMap) -> Option<MapConfig> {
    let map = match &raw.map {
        None => "cidr:/etc/postfix/saslguard_access".to_string(),
        Some(m) => {
            let ok = match m.get_ref().split_once(':') {
                Some(("cidr" | "hash" | "lmdb", p)) => Path::new(p).is_absolute(),
                _ => false,
            };
            if !ok {
                e.at(m.span(), format!("postfix_map.map = {:?}: expected cidr:/ABSOLUTE/PATH, hash:PATH or lmdb:PATH", m.get_ref()));
            }
            m.get_ref().clone()
        }
    };
    let reply = match &raw.reply {
        None => "REJECT too many failed logins from your address".to_string(),
        Some(r) => {
            if r.get_ref().trim().is_empty() || r.get_ref().contains('\n') {
                e.at(
                    r.span(),
                    "postfix_map.reply must be one non-empty line (an access(5) action)",
                );
            }
            r.get_ref().trim().to_string()
        }
    };
    let postfix_config = match &raw.postfix_config {
        Some(d) if !d.get_ref().is_empty() => Some(absolute(e, d, "postfix_map.postfix_config")),
        _ => None,
    };
    let reload_command = match &raw.reload_command {
        None => vec!["postfix".to_string(), "reload".to_string()],
        Some(list) => list.iter().map(|a| a.get_ref().clone()).collect(),
    };
    raw.enabled
        .as_ref()
        .is_some_and(|v| *v.get_ref())
        .then_some(MapConfig {
            map,
            reply,
            postfix_config,
            reload_command,
        })
}

fn postfix_policy(
    e: &mut Errs,
    raw: &RawPostfixPolicy,
) -> Option<crate::config::PolicyServiceConfig> {
    let socket = match &raw.socket {
        None => PathBuf::from("/var/spool/postfix/private/saslguard"),
        Some(s) => absolute(e, s, "postfix_policy.socket"),
    };
    let reply = match &raw.reply {
        None => "REJECT too many failed logins from your address".to_string(),
        Some(r) => {
            let t = r.get_ref().trim();
            if t.is_empty() || t.contains(['\n', '\r']) {
                e.at(
                    r.span(),
                    "postfix_policy.reply must be one non-empty line (an access(5) action)",
                );
            }
            t.to_string()
        }
    };
    raw.enabled
        .as_ref()
        .is_some_and(|v| *v.get_ref())
        .then_some(crate::config::PolicyServiceConfig { socket, reply })
}

pub use crate::addr::parse_network;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(600_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("2w"), Ok(1_209_600_000));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn networks() {
        assert!(
            parse_network("192.0.2.7/24")
                .unwrap_err()
                .to_string()
                .contains("192.0.2.0/24")
        );
        assert_eq!(
            parse_network("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
    }

    #[test]
    fn cluster_urls_hold_no_password_and_take_libpq_sslmodes() {
        let path = Path::new("t.toml");
        let e = crate::config::parse(
            "[cluster]\nenabled = true\nurl = \"host=db user=x password=secret\"\n",
            path,
        )
        .unwrap_err();
        assert!(e.to_string().contains("must not hold the password"), "{e}");
        let c = crate::config::parse(
            "[cluster]\nenabled = true\nurl = \"host=db sslmode=verify-full\"\nnode = \"mx1\"\n",
            path,
        )
        .unwrap();
        assert_eq!(c.cluster.unwrap().node, "mx1");
        let off = crate::config::parse("[cluster]\nurl = \"host=db\"\n", path).unwrap();
        assert!(off.cluster.is_none(), "off unless enabled");
    }
}
