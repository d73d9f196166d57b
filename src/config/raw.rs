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
    #[serde(default)]
    pub sources: RawSources,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub nftables: RawNftables,
    #[serde(default)]
    pub postfix_map: RawPostfixMap,
    #[serde(default)]
    pub postfix_policy: RawPostfixPolicy,
    #[serde(default)]
    pub geoip: RawGeoip,
    #[serde(default)]
    pub origin: Option<Vec<Spanned<RawOrigin>>>,
    #[serde(default)]
    pub block: Option<Vec<Spanned<RawBlock>>>,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub alerts: RawAlerts,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGeoip {
    pub country_database: Option<Spanned<String>>,
    pub asn_database: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    pub name: Spanned<String>,
    pub countries: Option<Vec<Spanned<String>>>,
    pub not_countries: Option<Vec<Spanned<String>>>,
    pub asns: Option<Vec<Spanned<i64>>>,
    pub failures: Spanned<i64>,
    pub within: Spanned<String>,
    pub ban: Spanned<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub enabled: Option<Spanned<bool>>,
    pub url: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub node: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub share_failures: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlock {
    pub name: Spanned<String>,
    pub countries: Option<Vec<Spanned<String>>>,
    pub not_countries: Option<Vec<Spanned<String>>>,
    pub asns: Option<Vec<Spanned<i64>>>,
    pub networks: Option<Vec<Spanned<String>>>,
    pub networks_file: Option<Spanned<String>>,
    pub ports: Option<Vec<Spanned<i64>>>,
    /// Port 25 may only be blocked when this says so.
    pub block_smtp: Option<Spanned<bool>>,
    pub except: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub login_after_failures: Option<Spanned<String>>,
    pub login_after_failures_min: Option<Spanned<i64>>,
    pub new_origin: Option<Spanned<bool>>,
    pub learning: Option<Spanned<String>>,
    pub countries: Option<Vec<Spanned<String>>>,
    pub spray_addresses: Option<Spanned<i64>>,
    pub spray_accounts: Option<Spanned<i64>>,
    pub spray_window: Option<Spanned<String>>,
    pub command: Option<Vec<Spanned<String>>>,
    pub ban: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSources {
    pub files: Option<Vec<Spanned<String>>>,
    pub journal: Option<Spanned<bool>>,
    pub journal_identifiers: Option<Vec<Spanned<String>>>,
    pub journal_directory: Option<Spanned<String>>,
    pub start_at: Option<Spanned<String>>,
    pub rotate_grace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub state_directory: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub control_socket_mode: Option<Spanned<String>>,
    pub metrics_listen: Option<Spanned<String>>,
    pub keep_history: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawNftables {
    pub enabled: Option<Spanned<bool>>,
    pub table: Option<Spanned<String>>,
    pub ports: Option<Vec<Spanned<i64>>>,
    pub reject: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPostfixPolicy {
    pub enabled: Option<Spanned<bool>>,
    pub socket: Option<Spanned<String>>,
    pub reply: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPostfixMap {
    pub enabled: Option<Spanned<bool>>,
    pub map: Option<Spanned<String>>,
    pub reply: Option<Spanned<String>>,
    pub postfix_config: Option<Spanned<String>>,
    pub reload_command: Option<Vec<Spanned<String>>>,
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
    pub known_good: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAllowlist {
    pub networks: Option<Vec<Spanned<String>>>,
    pub own_addresses: Option<Spanned<bool>>,
    pub shortest_prefix_v4: Option<Spanned<i64>>,
    pub shortest_prefix_v6: Option<Spanned<i64>>,
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
