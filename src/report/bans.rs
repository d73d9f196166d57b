//! `saslguard report`: the banned hosts of a period, for the admin and for a manager.
//!
//! Built from the store (bans with their origin and TLS posture, offender records) or
//! from log files directly (the same pipeline as `replay`). Rows: each banned address
//! or prefix with where it comes from, what it did, how it talked to us and what
//! became of its bans; totals by country, AS, service and TLS posture; bans per day.
//! Renders as a table, JSON, CSV, or one self-contained HTML file whose charts are
//! inline SVG (no script, no network), so it can be mailed as it is.

use crate::ban::BanRow;
use crate::ban::target_string;
use crate::geo::Origin;
use crate::offender::{Counts, Offender};
use crate::posture::Posture;
use crate::time::Timestamp;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub target: String,
    #[serde(skip_serializing_if = "Origin::is_empty")]
    pub geo: Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Timestamp>,
    pub failures: u64,
    pub services: Counts,
    pub mechanisms: Counts,
    /// Accounts tried, the first `top` of them.
    pub users: Vec<String>,
    pub users_total: usize,
    pub tls: Counts,
    pub plaintext_credentials: bool,
    pub weak_tls: Vec<String>,
    pub logins_after_failure: u64,
    pub bans: u32,
    pub first_ban: Timestamp,
    pub last_ban: Timestamp,
    pub last_reason: String,
    /// `active`, `expired` or `lifted`.
    pub state: String,
    /// When the last ban ends or ended, or when it was lifted.
    pub state_since: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifted_by: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub hosts: u64,
    pub bans: u64,
    pub failures: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BanReport {
    pub source: String,
    pub since: Timestamp,
    pub until: Timestamp,
    pub hosts: Vec<HostRow>,
    pub by_country: BTreeMap<String, Tally>,
    pub by_as: BTreeMap<String, Tally>,
    /// Failures by service.
    pub by_service: BTreeMap<String, u64>,
    /// Failed attempts by TLS posture.
    pub by_tls: BTreeMap<String, u64>,
    /// Bans started per day (UTC).
    pub bans_per_day: BTreeMap<String, u64>,
    /// Packets each `[[block]]` refused in the period (from the store).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockTally>,
    /// Each fleet node's failures, addresses and bans in the period (`--fleet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::FleetTally>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlockTally {
    pub name: String,
    pub refused_packets: u64,
}

/// Builds the report from ban rows (any order) and the offender records known.
/// `now` decides which bans are still active.
pub fn build(
    source: String,
    rows: &[BanRow],
    offender: impl Fn(&IpNet) -> Option<Offender>,
    since: Timestamp,
    until: Timestamp,
    now: Timestamp,
    top: usize,
) -> BanReport {
    let mut by_target: BTreeMap<IpNet, Vec<&BanRow>> = BTreeMap::new();
    for b in rows.iter().filter(|b| b.at >= since && b.at <= until) {
        by_target.entry(b.target).or_default().push(b);
    }
    let mut r = BanReport {
        source,
        since,
        until,
        hosts: Vec::new(),
        by_country: BTreeMap::new(),
        by_as: BTreeMap::new(),
        by_service: BTreeMap::new(),
        by_tls: BTreeMap::new(),
        bans_per_day: BTreeMap::new(),
        blocks: Vec::new(),
        fleet: None,
    };
    for (target, mut bans) in by_target {
        bans.sort_by_key(|b| b.at);
        let last = *bans.last().expect("one ban at least");
        let (state, state_since) = match (last.lifted_at, last.until > now) {
            (Some(t), _) => ("lifted", t),
            (None, true) => ("active", last.until),
            (None, false) => ("expired", last.until),
        };
        let off = offender(&target);
        let posture = bans
            .iter()
            .rev()
            .find_map(|b| b.tls.clone())
            .or_else(|| off.as_ref().map(|o| Posture::of(&o.tls)))
            .unwrap_or_default();
        let geo = bans
            .iter()
            .rev()
            .map(|b| &b.geo)
            .find(|g| !g.is_empty())
            .cloned()
            .or_else(|| off.as_ref().map(|o| o.geo.clone()))
            .unwrap_or_default();
        let tls = off
            .as_ref()
            .map(|o| o.tls.clone())
            .unwrap_or_else(|| posture.attempts.clone());
        let row = HostRow {
            target: target_string(&target),
            geo,
            first_failure: off.as_ref().map(|o| o.first_failure),
            last_failure: off.as_ref().map(|o| o.last_failure),
            failures: off.as_ref().map_or_else(
                || {
                    bans.iter()
                        .map(|b| u64::from(b.failures))
                        .max()
                        .unwrap_or(0)
                },
                |o| o.failures,
            ),
            services: off.as_ref().map(|o| o.services.clone()).unwrap_or_default(),
            mechanisms: off
                .as_ref()
                .map(|o| o.mechanisms.clone())
                .unwrap_or_default(),
            users: off
                .as_ref()
                .map(|o| o.users.iter().take(top).cloned().collect())
                .unwrap_or_default(),
            users_total: off
                .as_ref()
                .map_or(0, |o| o.users.len() + o.users_not_kept as usize),
            plaintext_credentials: tls.contains_key(crate::attempts::PLAINTEXT),
            weak_tls: Posture::of(&tls).weak,
            tls,
            logins_after_failure: off.as_ref().map_or(0, |o| o.logins_after_failure),
            bans: bans.len() as u32,
            first_ban: bans[0].at,
            last_ban: last.at,
            last_reason: last.reason.clone(),
            state: state.to_string(),
            state_since,
            lifted_by: last.lifted_by.clone(),
        };
        for b in &bans {
            *r.bans_per_day
                .entry(b.at.rfc3339()[..10].to_string())
                .or_insert(0) += 1;
        }
        let country = row.geo.country.clone().unwrap_or_else(|| "--".into());
        let asn = row
            .geo
            .asn
            .map_or("unknown".to_string(), |a| match &row.geo.as_org {
                Some(o) => format!("AS{a} {o}"),
                None => format!("AS{a}"),
            });
        for (map, key) in [(&mut r.by_country, country), (&mut r.by_as, asn)] {
            let t = map.entry(key).or_default();
            t.hosts += 1;
            t.bans += u64::from(row.bans);
            t.failures += row.failures;
        }
        for (k, v) in row.services.iter() {
            *r.by_service.entry(k.to_string()).or_insert(0) += v;
        }
        for (k, v) in row.tls.iter() {
            *r.by_tls.entry(k.to_string()).or_insert(0) += v;
        }
        r.hosts.push(row);
    }
    r.hosts
        .sort_by(|a, b| b.last_ban.cmp(&a.last_ban).then(a.target.cmp(&b.target)));
    r
}

fn counts(c: &Counts) -> String {
    c.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn day(t: Timestamp) -> String {
    t.rfc3339()
}

fn geo_label(g: &Origin) -> String {
    if g.is_empty() { "-".into() } else { g.label() }
}

fn state_text(h: &HostRow) -> String {
    match h.state.as_str() {
        "active" => format!("active until {}", day(h.state_since)),
        "lifted" => format!(
            "lifted by hand {}{}",
            day(h.state_since),
            h.lifted_by
                .as_deref()
                .map(|b| format!(" ({b})"))
                .unwrap_or_default()
        ),
        _ => format!("expired {}", day(h.state_since)),
    }
}

fn sorted_desc<'a, V: Copy + Ord>(
    m: impl IntoIterator<Item = (&'a String, V)>,
) -> Vec<(&'a String, V)> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

/// The readable table.
pub fn render_text(r: &BanReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "banned hosts {} .. {} (from {}): {}",
        day(r.since),
        day(r.until),
        r.source,
        r.hosts.len()
    );
    for h in &r.hosts {
        let _ = writeln!(o);
        let _ = writeln!(o, "{}  {}  {}", h.target, geo_label(&h.geo), state_text(h));
        let _ = writeln!(
            o,
            "  {} ban(s), last {}: {}",
            h.bans,
            day(h.last_ban),
            h.last_reason
        );
        if let (Some(f), Some(l)) = (h.first_failure, h.last_failure) {
            let _ = writeln!(
                o,
                "  {} failures {} .. {}; services: {}; mechanisms: {}",
                h.failures,
                day(f),
                day(l),
                counts(&h.services),
                counts(&h.mechanisms)
            );
        }
        if !h.users.is_empty() {
            let more = h.users_total.saturating_sub(h.users.len());
            let _ = writeln!(
                o,
                "  accounts tried: {}{}",
                h.users.join(", "),
                if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(
            o,
            "  tls: {}{}{}",
            if h.tls.is_empty() {
                "-".into()
            } else {
                counts(&h.tls)
            },
            if h.plaintext_credentials {
                "; CREDENTIALS IN PLAINTEXT"
            } else {
                ""
            },
            if h.weak_tls.is_empty() {
                String::new()
            } else {
                format!("; weak: {}", h.weak_tls.join(", "))
            }
        );
        if h.logins_after_failure > 0 {
            let _ = writeln!(
                o,
                "  LOGGED IN after failing: {} times",
                h.logins_after_failure
            );
        }
    }
    let _ = writeln!(o);
    let tally = |o: &mut String, name: &str, m: &BTreeMap<String, Tally>| {
        let _ = writeln!(o, "by {name}:");
        let mut v: Vec<_> = m.iter().collect();
        v.sort_by(|a, b| b.1.bans.cmp(&a.1.bans).then(a.0.cmp(b.0)));
        for (k, t) in v {
            let _ = writeln!(
                o,
                "  {k:<40} hosts {:>5}  bans {:>5}  failures {:>7}",
                t.hosts, t.bans, t.failures
            );
        }
    };
    tally(&mut o, "country", &r.by_country);
    tally(&mut o, "AS", &r.by_as);
    let _ = writeln!(o, "failures by service:");
    for (k, v) in sorted_desc(r.by_service.iter().map(|(k, v)| (k, *v))) {
        let _ = writeln!(o, "  {k:<40} {v:>7}");
    }
    let _ = writeln!(o, "failed attempts by TLS posture:");
    for (k, v) in sorted_desc(r.by_tls.iter().map(|(k, v)| (k, *v))) {
        let _ = writeln!(o, "  {k:<40} {v:>7}");
    }
    if let Some(fleet) = &r.fleet {
        let _ = writeln!(o, "fleet, by node:");
        for n in &fleet.nodes {
            let _ = writeln!(
                o,
                "  {:<40} failures {:>7}  addresses {:>6}  bans {:>5}",
                n.node, n.failures, n.addresses, n.bans
            );
        }
        if !fleet.accounts.is_empty() {
            let _ = writeln!(o, "fleet, accounts most tried:");
            for a in &fleet.accounts {
                let _ = writeln!(
                    o,
                    "  {:<40} failures {:>7}  addresses {:>6}  on {}",
                    a.user,
                    a.failures,
                    a.addresses,
                    a.nodes.join(", ")
                );
            }
        }
    }
    if !r.blocks.is_empty() {
        let _ = writeln!(o, "packets refused by blocks:");
        for b in &r.blocks {
            let _ = writeln!(o, "  {:<40} {:>7}", b.name, b.refused_packets);
        }
    }
    o
}

/// One CSV cell. Spreadsheets run cells that start with = + - @ (and, after trimming,
/// TAB or CR) as formulas (OWASP "CSV injection"); attacker-chosen user names end up
/// here, so such cells get a leading apostrophe.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// One row per banned host (RFC 4180).
pub fn render_csv(r: &BanReport) -> String {
    let mut o = String::from(
        "target,country,asn,as_org,first_failure,last_failure,failures,services,mechanisms,accounts_tried,tls,plaintext_credentials,weak_tls,logins_after_failure,bans,first_ban,last_ban,state,state_since,last_reason\r\n",
    );
    for h in &r.hosts {
        let f = [
            h.target.clone(),
            h.geo.country.clone().unwrap_or_default(),
            h.geo.asn.map(|a| a.to_string()).unwrap_or_default(),
            h.geo.as_org.clone().unwrap_or_default(),
            h.first_failure.map(day).unwrap_or_default(),
            h.last_failure.map(day).unwrap_or_default(),
            h.failures.to_string(),
            counts(&h.services),
            counts(&h.mechanisms),
            h.users.join(" "),
            counts(&h.tls),
            h.plaintext_credentials.to_string(),
            h.weak_tls.join("; "),
            h.logins_after_failure.to_string(),
            h.bans.to_string(),
            day(h.first_ban),
            day(h.last_ban),
            h.state.clone(),
            day(h.state_since),
            h.last_reason.clone(),
        ];
        let line: Vec<String> = f.iter().map(|x| csv_field(x)).collect();
        o.push_str(&line.join(","));
        o.push_str("\r\n");
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Horizontal bars: one row per (label, value), largest first, at most 15.
fn bar_chart(id: &str, title: &str, data: &[(String, u64)], color: &str) -> String {
    let rows: Vec<&(String, u64)> = data.iter().take(15).collect();
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let h = 28 + rows.len() * 22;
    let mut s = format!(
        "<figure id=\"{id}\"><figcaption>{}</figcaption><svg class=\"chart\" width=\"720\" height=\"{h}\" viewBox=\"0 0 720 {h}\" role=\"img\">",
        esc(title)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 10 + i * 22;
        let w = (*v as f64 / max as f64 * 360.0).max(2.0);
        let _ = write!(
            s,
            "<text x=\"290\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text><rect x=\"300\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"{color}\"><title>{}: {v}</title></rect><text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{v}</text>",
            y + 12,
            esc(&label.chars().take(44).collect::<String>()),
            esc(label),
            304.0 + w,
            y + 12
        );
    }
    if rows.is_empty() {
        s.push_str("<text x=\"10\" y=\"20\" font-size=\"12\">nothing in this period</text>");
    }
    s.push_str("</svg></figure>");
    s
}

/// Vertical bars per day.
fn day_chart(data: &BTreeMap<String, u64>, color: &str) -> String {
    let n = data.len().max(1);
    let max = data.values().copied().max().unwrap_or(1).max(1);
    let bw = (600.0 / n as f64).min(40.0);
    let mut s = String::from(
        "<figure id=\"chart-days\"><figcaption>Bans per day (UTC)</figcaption><svg class=\"chart\" width=\"640\" height=\"220\" viewBox=\"0 0 640 220\" role=\"img\">",
    );
    for (i, (d, v)) in data.iter().enumerate() {
        let h = *v as f64 / max as f64 * 160.0;
        let x = 20.0 + i as f64 * bw;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\"><title>{d}: {v}</title></rect>",
            180.0 - h,
            (bw - 4.0).max(1.0)
        );
        if n <= 16 || i % (n / 8).max(1) == 0 {
            let _ = write!(
                s,
                "<text x=\"{x:.1}\" y=\"200\" font-size=\"10\">{}</text>",
                esc(&d[5..])
            );
        }
    }
    if data.is_empty() {
        s.push_str("<text x=\"10\" y=\"20\" font-size=\"12\">no bans in this period</text>");
    }
    s.push_str("</svg></figure>");
    s
}

/// One self-contained HTML page: summary, three charts, the host table.
pub fn render_html(r: &BanReport) -> String {
    let mut o = String::new();
    let title = format!(
        "saslguard: banned hosts {} .. {}",
        &day(r.since)[..10],
        &day(r.until)[..10]
    );
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;font-size:13px}}\
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}}th{{background:#eee}}\
figure{{display:inline-block;margin:1em 2em 1em 0}}figcaption{{font-weight:bold;margin-bottom:4px}}\
.warn{{color:#b00}}</style></head><body><h1>{}</h1>",
        esc(&title),
        esc(&title)
    );
    let bans: u64 = r.hosts.iter().map(|h| u64::from(h.bans)).sum();
    let failures: u64 = r.hosts.iter().map(|h| h.failures).sum();
    let plaintext = r.hosts.iter().filter(|h| h.plaintext_credentials).count();
    let stolen = r
        .hosts
        .iter()
        .filter(|h| h.logins_after_failure > 0)
        .count();
    let _ = write!(
        o,
        "<p id=\"summary\">{} hosts banned {} times for {} failed logins (from {}). {} sent passwords without TLS. <span class=\"warn\">{} logged in after failing.</span></p>",
        r.hosts.len(),
        bans,
        failures,
        esc(&r.source),
        plaintext,
        stolen
    );
    o.push_str(&day_chart(&r.bans_per_day, "#1c7ed6"));
    if !r.blocks.is_empty() {
        let blocks: Vec<(String, u64)> = r
            .blocks
            .iter()
            .map(|b| (b.name.clone(), b.refused_packets))
            .collect();
        o.push_str(&bar_chart(
            "chart-blocks",
            "Packets refused by blocks (before any guess)",
            &blocks,
            "#862e9c",
        ));
    }
    let mut countries: Vec<(String, u64)> = r
        .by_country
        .iter()
        .map(|(k, t)| (k.clone(), t.hosts))
        .collect();
    countries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    o.push_str(&bar_chart(
        "chart-countries",
        "Banned hosts by country",
        &countries,
        "#e8590c",
    ));
    let mut tls: Vec<(String, u64)> = r.by_tls.iter().map(|(k, v)| (k.clone(), *v)).collect();
    tls.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    o.push_str(&bar_chart(
        "chart-tls",
        "Failed logins by TLS posture",
        &tls,
        "#2f9e44",
    ));
    o.push_str("<h2>Hosts</h2><table><tr><th>host</th><th>from</th><th>state</th><th>bans</th><th>failures</th><th>services</th><th>accounts tried</th><th>TLS</th><th>last reason</th></tr>");
    for h in &r.hosts {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
            esc(&h.target),
            esc(&geo_label(&h.geo)),
            esc(&state_text(h)),
            h.bans,
            h.failures,
            esc(&counts(&h.services)),
            esc(&h.users.join(", ")),
            esc(&counts(&h.tls)),
            if h.plaintext_credentials {
                " <span class=\"warn\">plaintext</span>"
            } else {
                ""
            },
            esc(&h.last_reason)
        );
    }
    o.push_str("</table></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_cannot_become_formulas_and_quotes_survive() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn html_escapes_attacker_text() {
        assert_eq!(esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }
}
