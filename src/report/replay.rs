//! What a replay decided, for people (text) and for programs (one JSON document):
//! the lines read and skipped, the events, the offenders, the bans and the alerts.

use crate::ban::{Decision, human_ms, target_string};
use crate::pipeline::Stats;
use crate::replay::Replay;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub files: Vec<String>,
    pub lines: u64,
    pub skipped: u64,
    pub skipped_by_reason: BTreeMap<&'static str, u64>,
    pub invalid_utf8: u64,
    pub events: BTreeMap<std::borrow::Cow<'static, str>, u64>,
    pub failures: u64,
    pub ambiguous: u64,
    pub auth_unavailable_not_counted: u64,
    pub allowlisted_failures: u64,
    pub logins: u64,
    pub offenders: crate::offender::Sorted<'a>,
    pub offenders_evicted: u64,
    pub bans: &'a [Decision],
    pub alerts: Alerts<'a>,
    #[serde(skip_serializing_if = "is_zero")]
    pub alerts_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The replay's alerts, read back from where they were written as the report is
/// written.
#[derive(Debug)]
pub struct Alerts<'a>(&'a crate::replay::AlertLog);

impl Alerts<'_> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = std::io::Result<crate::alert::Alert>> + '_ {
        self.0.iter()
    }
}

impl Serialize for Alerts<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for a in self.iter() {
            let a = a.map_err(|e| S::Error::custom(format!("alerts read back: {e}")))?;
            seq.serialize_element(&a)?;
        }
        seq.end()
    }
}

impl Replay {
    pub fn report(&self) -> Report<'_> {
        let s: Stats = self.pipeline.stats();
        let mut reasons = BTreeMap::new();
        reasons.insert("unparsable", s.skipped_unparsable);
        reasons.insert("too_long", s.skipped_too_long);
        reasons.insert("bad_time", s.skipped_bad_time);
        Report {
            files: self.files.iter().map(|p| p.display().to_string()).collect(),
            lines: s.lines,
            skipped: s.skipped,
            skipped_by_reason: reasons,
            invalid_utf8: s.invalid_utf8,
            events: s.events,
            failures: s.failures,
            ambiguous: s.ambiguous,
            auth_unavailable_not_counted: s.auth_unavailable_not_counted,
            allowlisted_failures: s.allowlisted_failures,
            logins: s.logins,
            offenders: self.pipeline.offenders().sorted(),
            offenders_evicted: self.pipeline.offenders().evicted(),
            bans: &self.bans,
            alerts: Alerts(&self.alerts),
            alerts_dropped: self.pipeline.alerts_dropped() + self.alerts.dropped(),
        }
    }
}

fn join_counts(m: &crate::offender::Counts) -> String {
    let mut v: Vec<(&str, u64)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as text: summary, offenders (the `top` with most failures), bans.
pub fn render_text(r: &Report, top: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "lines read: {}", r.lines);
    let _ = writeln!(
        o,
        "lines skipped: {} (unparsable {}, too long {}, bad time {})",
        r.skipped,
        r.skipped_by_reason["unparsable"],
        r.skipped_by_reason["too_long"],
        r.skipped_by_reason["bad_time"]
    );
    if r.invalid_utf8 > 0 {
        let _ = writeln!(
            o,
            "lines with invalid UTF-8 (read with replacement characters): {}",
            r.invalid_utf8
        );
    }
    let events: Vec<String> = r.events.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        o,
        "events: {}",
        if events.is_empty() {
            "none".into()
        } else {
            events.join(", ")
        }
    );
    let _ = writeln!(o, "failed attempts counted: {}", r.failures);
    if r.ambiguous > 0 {
        let _ = writeln!(
            o,
            "failure lines with an ambiguous address (not counted): {}",
            r.ambiguous
        );
    }
    if r.auth_unavailable_not_counted > 0 {
        let _ = writeln!(
            o,
            "auth server unavailable, not counted: {}",
            r.auth_unavailable_not_counted
        );
    }
    if r.allowlisted_failures > 0 {
        let _ = writeln!(
            o,
            "failures from allowlisted addresses (never banned): {}",
            r.allowlisted_failures
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "offenders: {}{}",
        r.offenders.len(),
        if r.offenders_evicted > 0 {
            format!(
                " ({} more evicted by limits.max_offenders)",
                r.offenders_evicted
            )
        } else {
            String::new()
        }
    );
    for off in r.offenders.iter().take(top) {
        let _ = writeln!(
            o,
            "  {}  {} failures  {} .. {}{}",
            off.address,
            off.failures,
            off.first_failure.rfc3339(),
            off.last_failure.rfc3339(),
            if off.allowlisted {
                "  [allowlisted]"
            } else {
                ""
            }
        );
        let _ = writeln!(o, "      services: {}", join_counts(&off.services));
        if !off.mechanisms.is_empty() {
            let _ = writeln!(o, "      mechanisms: {}", join_counts(&off.mechanisms));
        }
        if !off.users.is_empty() {
            let more = if off.users_not_kept > 0 {
                format!(" (+{} more)", off.users_not_kept)
            } else {
                String::new()
            };
            let _ = writeln!(o, "      users: {}{}", off.users.join(", "), more);
        }
        let _ = writeln!(o, "      tls: {}", join_counts(&off.tls));
        if off.logins_after_failure > 0 {
            let _ = writeln!(
                o,
                "      LOGIN SUCCEEDED after failures: {} time(s){}",
                off.logins_after_failure,
                if off.login_users.is_empty() {
                    String::new()
                } else {
                    format!(" as {}", off.login_users.join(", "))
                }
            );
        }
    }
    if r.offenders.len() > top {
        let _ = writeln!(
            o,
            "  ... {} more (--top N or --json for all)",
            r.offenders.len() - top
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "bans (dry run): {}", r.bans.len());
    for b in r.bans {
        let _ = writeln!(
            o,
            "  {}  {} -> {} ({})  {}",
            target_string(&b.target),
            b.at.rfc3339(),
            b.until.rfc3339(),
            human_ms(b.until.0 - b.at.0),
            b.reason
        );
        if let Some(p) = &b.tls {
            let _ = writeln!(o, "      tls: {}", p.summary());
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "alerts: {}", r.alerts.len());
    for a in r.alerts.iter() {
        match a {
            Ok(a) => {
                let _ = writeln!(o, "  {}  {}  {}", a.time.rfc3339(), a.kind, a.message);
            }
            Err(e) => {
                let _ = writeln!(o, "  (the alerts could not be read back: {e})");
                break;
            }
        }
    }
    o
}
