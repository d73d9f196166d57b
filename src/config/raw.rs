//! The TOML file as written: a serde mirror with spans, so that validation can point
//! at the line of every bad value. Nothing here is interpreted; `validate` does that.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub input: RawInput,
    #[serde(default)]
    pub counting: RawCounting,
    #[serde(default)]
    pub rule: Option<Vec<Spanned<RawRule>>>,
    #[serde(default)]
    pub prefix: RawPrefix,
    #[serde(default)]
    pub allowlist: RawAllowlist,
    #[serde(default)]
    pub escalation: RawEscalation,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    pub timezone: Option<Spanned<String>>,
    pub max_line_bytes: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCounting {
    pub pair_window: Option<Spanned<String>>,
    pub penalty_window: Option<Spanned<String>>,
    pub connection_lost: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Spanned<String>,
    pub scope: Option<Spanned<String>>,
    pub failures: Spanned<i64>,
    pub within: Spanned<String>,
    pub ban: Spanned<String>,
    pub min_addresses: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPrefix {
    pub ipv4: Option<Spanned<i64>>,
    pub ipv6: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAllowlist {
    pub networks: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    pub factor: Option<Spanned<f64>>,
    pub max: Option<Spanned<String>>,
    pub memory: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_addresses: Option<Spanned<i64>>,
    pub max_prefixes: Option<Spanned<i64>>,
    pub max_offenders: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_ban_records: Option<Spanned<i64>>,
}
