//! Text for the control commands' answers (`--json` prints the answer as it is).

use super::control::Request;
use serde_json::Value;
use std::fmt::Write as _;

fn counts(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn text(req: &Request, a: &Value) -> String {
    let mut o = String::new();
    match req {
        Request::Check { .. } => {
            if a["banned"] == Value::Bool(true) {
                let _ = writeln!(
                    o,
                    "{} is banned ({}) until {}: {}",
                    s(&a["address"]),
                    s(&a["target"]),
                    s(&a["until"]),
                    s(&a["reason"])
                );
            } else {
                let _ = writeln!(o, "{} is not banned", s(&a["address"]));
            }
        }
        Request::Status => {
            let _ = writeln!(
                o,
                "saslguard {} up {}s, config {}, store {}",
                s(&a["version"]),
                s(&a["uptime_s"]),
                s(&a["config"]),
                s(&a["store"])
            );
            let _ = writeln!(o, "sources:");
            for src in a["sources"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    o,
                    "  {}  lines {}  behind {} bytes  position {}  last line {}",
                    s(&src["name"]),
                    s(&src["lines"]),
                    s(&src["behind_bytes"]),
                    s(&src["position"]),
                    s(&src["last_line_time"])
                );
            }
            let st = &a["stats"];
            let _ = writeln!(
                o,
                "lines {}  skipped {}  failures {}  logins {}  ambiguous {}",
                s(&st["lines"]),
                s(&st["skipped"]),
                s(&st["failures"]),
                s(&st["logins"]),
                s(&st["ambiguous"])
            );
            let _ = writeln!(o, "events: {}", counts(&st["events"]));
            let _ = writeln!(
                o,
                "tracked addresses {}  prefixes {}  offenders {}",
                s(&a["tracked"]["addresses"]),
                s(&a["tracked"]["prefixes"]),
                s(&a["offenders"])
            );
            let _ = writeln!(
                o,
                "active bans {}  bans made: {}  unbans {}  enforcer errors: {}  store errors {}",
                s(&a["active_bans"]),
                counts(&a["bans"]),
                s(&a["unbans"]),
                counts(&a["enforcer_errors"]),
                s(&a["store_errors"])
            );
            let _ = writeln!(
                o,
                "alerts: {}  geoip: country {}  asn {}",
                counts(&a["alerts"]),
                s(&a["geoip"]["country"]),
                s(&a["geoip"]["asn"])
            );
        }
        Request::Bans => {
            let list = a["bans"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                o.push_str("no active bans\n");
            }
            for b in &list {
                let _ = writeln!(
                    o,
                    "{}  {} left (until {})  {}  [{}]",
                    s(&b["target"]),
                    s(&b["remaining"]),
                    s(&b["until"]),
                    s(&b["reason"]),
                    s(&b["origin"])
                );
                let owed = &b["not_enforced_by"];
                if owed.is_object() {
                    let _ = writeln!(
                        o,
                        "    NOT ENFORCED by {} yet ({} retries): {}",
                        strings(&owed["enforcers"]).join(", "),
                        owed["retries"],
                        s(&owed["error"])
                    );
                }
                let geo = &b["geo"];
                if geo.is_object() {
                    let _ = writeln!(
                        o,
                        "    from {} {}{}",
                        geo["country"].as_str().unwrap_or("--"),
                        geo["asn"]
                            .as_u64()
                            .map_or(String::new(), |n| format!("AS{n} ")),
                        geo["as_org"].as_str().unwrap_or("")
                    );
                }
                let tls = &b["tls"];
                if tls.is_object() {
                    let weak = strings(&tls["weak"]);
                    let _ = writeln!(
                        o,
                        "    tls at ban time: {}{}{}",
                        counts(&tls["attempts"]),
                        if tls["plaintext_credentials"] == Value::Bool(true) {
                            "; CREDENTIALS SENT IN PLAINTEXT"
                        } else {
                            ""
                        },
                        if weak.is_empty() {
                            String::new()
                        } else {
                            format!("; weak: {}", weak.join(", "))
                        }
                    );
                }
                let off = &b["offender"];
                if off.is_object() {
                    let users = strings(&off["users"]);
                    let _ = writeln!(
                        o,
                        "    {} failures {} .. {}; services: {}; mechanisms: {}; tls: {}",
                        s(&off["failures"]),
                        s(&off["first_failure"]),
                        s(&off["last_failure"]),
                        counts(&off["services"]),
                        counts(&off["mechanisms"]),
                        counts(&off["tls"])
                    );
                    if !users.is_empty() {
                        let _ = writeln!(o, "    users tried: {}", users.join(", "));
                    }
                    if off["logins_after_failure"].as_u64().unwrap_or(0) > 0 {
                        let _ = writeln!(
                            o,
                            "    LOGGED IN after failing: {} times",
                            s(&off["logins_after_failure"])
                        );
                    }
                }
            }
        }
        Request::Ban { .. } => {
            let _ = writeln!(o, "banned {} until {}", s(&a["target"]), s(&a["until"]));
        }
        Request::Unban { .. } => {
            let was = if a["was_banned"] == Value::Bool(true) {
                "ban lifted"
            } else {
                "was not banned; its failures are forgotten"
            };
            let _ = writeln!(o, "{}: {was}", s(&a["target"]));
        }
        Request::Reload | Request::Metrics => {
            let _ = writeln!(o, "{}", s(&a["message"]));
        }
    }
    o
}

/// A JSON array as strings.
fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().map(s).collect()
}
