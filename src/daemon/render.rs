//! Text for the control commands' answers (`--json` prints the answer itself).

use super::control::{BanEntry, Response, Status};
use crate::offender::Counts;
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn counts(c: &Counts) -> String {
    c.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn map<K: std::fmt::Display, V: std::fmt::Display>(m: &BTreeMap<K, V>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".into(), Timestamp::rfc3339)
}

pub fn text(answer: &Response) -> String {
    let mut o = String::new();
    match answer {
        Response::Failed(f) => {
            let _ = writeln!(o, "{}", f.error);
        }
        Response::Check(c) => match (&c.target, c.until, &c.reason) {
            (Some(target), Some(until), reason) if c.banned => {
                let _ = writeln!(
                    o,
                    "{} is banned ({target}) until {}: {}",
                    c.address,
                    until.rfc3339(),
                    reason.as_deref().unwrap_or("-")
                );
            }
            _ => match &c.block {
                Some(b) => {
                    let _ = writeln!(o, "{} is not banned; it is refused by block {b}", c.address);
                }
                None => {
                    let _ = writeln!(o, "{} is not banned", c.address);
                }
            },
        },
        Response::Status(s) => status(&mut o, s),
        Response::Bans(list) => {
            if list.bans.is_empty() {
                o.push_str("no active bans\n");
            }
            for b in &list.bans {
                ban(&mut o, b);
            }
        }
        Response::Banned(b) => {
            let _ = writeln!(o, "banned {} until {}", b.target, b.until.rfc3339());
        }
        Response::Unbanned(u) => {
            let was = if u.was_banned {
                "ban lifted"
            } else {
                "was not banned; its failures are forgotten"
            };
            let _ = writeln!(o, "{}: {was}", u.target);
        }
        Response::Message(m) => {
            let _ = writeln!(o, "{}", m.message);
        }
        Response::Metrics(m) => o.push_str(&m.text),
    }
    o
}

fn status(o: &mut String, a: &Status) {
    let _ = writeln!(
        o,
        "saslguard {} up {}s, config {}, store {}",
        a.version, a.uptime_s, a.config, a.store
    );
    let _ = writeln!(o, "sources:");
    for src in &a.sources {
        let _ = writeln!(
            o,
            "  {}  lines {}  behind {} bytes  position {}  last line {}",
            src.name,
            src.lines,
            src.behind_bytes,
            src.position,
            time(src.last_line_time)
        );
    }
    let st = &a.stats;
    let _ = writeln!(
        o,
        "lines {}  skipped {}  failures {}  logins {}  ambiguous {}",
        st.lines, st.skipped, st.failures, st.logins, st.ambiguous
    );
    let _ = writeln!(o, "events: {}", map(&st.events));
    let _ = writeln!(
        o,
        "tracked addresses {}  prefixes {}  offenders {}",
        a.tracked.addresses, a.tracked.prefixes, a.offenders
    );
    let _ = writeln!(
        o,
        "active bans {}  bans made: {}  unbans {}  enforcer errors: {}  store errors {}",
        a.active_bans,
        map(&a.bans),
        a.unbans,
        map(&a.enforcer_errors),
        a.store_errors
    );
    let _ = writeln!(
        o,
        "enforcers: {}",
        if a.enforcers.is_empty() {
            "none".to_string()
        } else {
            a.enforcers
                .iter()
                .map(|(n, d)| format!("{n} ({d})"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    for b in &a.blocks {
        let _ = writeln!(
            o,
            "block {}: IPv4 {} ranges ({} addresses), IPv6 {} ranges ({} /64s), {} packets refused",
            b.name,
            b.ranges_v4,
            b.addresses_v4,
            b.ranges_v6,
            b.networks_v6_64,
            b.refused_packets.unwrap_or(0)
        );
    }
    let _ = writeln!(
        o,
        "alerts: {}  geoip: country {}  asn {}",
        map(&a.alerts),
        a.geoip.country,
        a.geoip.asn
    );
}

fn ban(o: &mut String, b: &BanEntry) {
    let _ = writeln!(
        o,
        "{}  {} left (until {})  {}  [{}]",
        b.target,
        b.remaining,
        b.until.rfc3339(),
        b.reason,
        b.origin
    );
    if let Some(owed) = &b.not_enforced_by {
        let _ = writeln!(
            o,
            "    NOT ENFORCED by {} yet ({} retries): {}",
            owed.enforcers.join(", "),
            owed.retries,
            owed.error
        );
    }
    if !b.geo.is_empty() {
        let _ = writeln!(
            o,
            "    from {} {}{}",
            b.geo.country.as_deref().unwrap_or("--"),
            b.geo.asn.map_or(String::new(), |n| format!("AS{n} ")),
            b.geo.as_org.as_deref().unwrap_or("")
        );
    }
    if let Some(tls) = &b.tls {
        let _ = writeln!(
            o,
            "    tls at ban time: {}{}{}",
            counts(&tls.attempts),
            if tls.plaintext_credentials {
                "; CREDENTIALS SENT IN PLAINTEXT"
            } else {
                ""
            },
            if tls.weak.is_empty() {
                String::new()
            } else {
                format!("; weak: {}", tls.weak.join(", "))
            }
        );
    }
    if let Some(off) = &b.offender {
        let _ = writeln!(
            o,
            "    {} failures {} .. {}; services: {}; mechanisms: {}; tls: {}",
            off.failures,
            off.first_failure.rfc3339(),
            off.last_failure.rfc3339(),
            counts(&off.services),
            counts(&off.mechanisms),
            counts(&off.tls)
        );
        if !off.users.is_empty() {
            let _ = writeln!(o, "    users tried: {}", off.users.join(", "));
        }
        if off.logins_after_failure > 0 {
            let _ = writeln!(
                o,
                "    LOGGED IN after failing: {} times",
                off.logins_after_failure
            );
        }
    }
}
