//! The ban vocabulary every layer above the policy shares: the decision to ban a target
//! for a time and why ([`Decision`]), the row the store keeps of a ban carried out
//! ([`BanRow`]), and how targets and durations are written. Knows nothing of how a
//! decision is made (the policy) or carried out (the enforcers).

use crate::geo::Origin;
use crate::posture::Posture;
use crate::time::Timestamp;
use ipnet::IpNet;
use serde::{Serialize, Serializer};

/// A ban to make.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    #[serde(serialize_with = "ser_target")]
    pub target: IpNet,
    pub at: Timestamp,
    pub until: Timestamp,
    pub reason: String,
    pub rule: String,
    /// Failures in the rule's window when it fired.
    pub failures: u32,
    /// 1 for a first ban, 2 for the second within the escalation memory, ...
    pub nth: u32,
    /// Where the address that caused it comes from.
    #[serde(skip_serializing_if = "Origin::is_empty")]
    pub geo: Origin,
    /// How that address talked to us (None for bans by hand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Posture>,
}

/// An address is written without `/32` or `/128`; a prefix with its length.
pub fn target_string(t: &IpNet) -> String {
    if t.prefix_len() == t.max_prefix_len() {
        t.addr().to_string()
    } else {
        t.to_string()
    }
}

fn ser_target<S: Serializer>(t: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&target_string(t))
}

/// `3600000` → `1h`, `5400000` → `1h30m`.
pub fn human_ms(ms: i64) -> String {
    let mut s = ms / 1000;
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{}", s / len, unit));
            s %= len;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

/// One ban as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BanRow {
    pub target: IpNet,
    pub at: Timestamp,
    pub until: Timestamp,
    pub rule: String,
    pub reason: String,
    pub failures: u32,
    pub nth: u32,
    /// `policy` or `manual`.
    pub origin: String,
    pub lifted_at: Option<Timestamp>,
    pub lifted_by: Option<String>,
    pub geo: Origin,
    pub tls: Option<Posture>,
}

impl BanRow {
    /// The row of a decision carried out (`origin`: `policy` or `manual`).
    pub fn of(d: &Decision, origin: &str) -> BanRow {
        BanRow {
            target: d.target,
            at: d.at,
            until: d.until,
            rule: d.rule.clone(),
            reason: d.reason.clone(),
            failures: d.failures,
            nth: d.nth,
            origin: origin.to_string(),
            lifted_at: None,
            lifted_by: None,
            geo: d.geo.clone(),
            tls: d.tls.clone(),
        }
    }
}
