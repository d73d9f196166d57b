//! Configuration: one TOML file (config/saslguard.toml is the documented example).
//!
//! Two stages, as ripgrep splits its low and high arguments: [`raw`] mirrors the file
//! with spans, [`validate`] turns it into typed values and collects *every* error with
//! its file and line. Nothing past validation sees a string that should be a type.

pub mod raw;
pub mod validate;

use crate::alert::AlertConfig;
use crate::attempts::CountConfig;
use crate::enforce::EnforcerConfig;
use crate::enforce::nft::NftConfig;
use crate::policy::PolicyConfig;
use crate::time::Zone;
use std::fmt;
use std::path::{Path, PathBuf};

/// The Postfix policy service (`check_policy_service`) the daemon serves.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyServiceConfig {
    /// The unix socket Postfix connects to (`unix:private/saslguard` is
    /// `/var/spool/postfix/private/saslguard` on Debian).
    pub socket: std::path::PathBuf,
    /// The access(5) action for a banned client.
    pub reply: String,
}

/// Said by `check-config` and the daemon when both the journal and files are followed.
pub const BOTH_SOURCES_WARNING: &str = "[sources] follows the journal and files: on a host where rsyslog writes the journal's mail lines to those files, every line is read twice and every failure counted twice; follow one of the two";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub zone: Zone,
    pub max_line_bytes: usize,
    pub count: CountConfig,
    pub policy: PolicyConfig,
    pub max_offenders: usize,
    /// Prefix entries in the sliding windows.
    pub max_prefixes: usize,
    pub sources: SourcesConfig,
    pub daemon: DaemonConfig,
    /// None: `[nftables] enabled = false`.
    pub nftables: Option<NftConfig>,
    /// None: `[postfix_map] enabled = false`.
    pub postfix_map: Option<MapConfig>,
    /// None: `[postfix_policy] enabled = false`.
    pub postfix_policy: Option<PolicyServiceConfig>,
    pub geoip: GeoConfig,
    pub alerts: AlertConfig,
    /// `[[block]]`: networks refused before their first guess.
    pub blocks: Vec<crate::block::BlockConfig>,
    /// `[cluster]`: bans shared with the fleet through PostgreSQL (None: off).
    pub cluster: Option<crate::fleet::FleetConfig>,
}

/// GeoIP's settings live with GeoIP (a subsystem owns its config type).
pub use crate::geo::GeoConfig;

/// Where a followed file is read from when saslguard has no checkpoint for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Only lines written from now on (as `tail -f`).
    End,
    /// The whole file.
    Beginning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourcesConfig {
    pub files: Vec<PathBuf>,
    pub journal: bool,
    /// SYSLOG_IDENTIFIER prefixes taken from the journal (`postfix` matches
    /// `postfix/smtpd` and `postfix/submission/smtpd`).
    pub journal_identifiers: Vec<String>,
    /// A journal directory instead of the system journal.
    pub journal_directory: Option<PathBuf>,
    pub start_at: StartAt,
    /// How long a rotated file is still read after a new one took its name.
    pub rotate_grace_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub state_directory: PathBuf,
    pub control_socket: PathBuf,
    pub control_socket_mode: u32,
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Ban history older than this is deleted from the store.
    pub keep_history_ms: i64,
}

/// The Postfix map's settings live with the map enforcer.
pub use crate::enforce::postfix_map::MapConfig;

impl Config {
    /// The enforcers' sections that are on, in the order bans reach them.
    pub fn enforcers(&self) -> Vec<EnforcerConfig> {
        let mut v = Vec::new();
        v.extend(self.nftables.clone().map(EnforcerConfig::Nftables));
        v.extend(self.postfix_map.clone().map(EnforcerConfig::PostfixMap));
        v
    }

    /// What holds the bans once the daemon has stopped, for its last log line: sets
    /// in the kernel expire by themselves, a Postfix map keeps its entries until the
    /// next start drops the expired ones, and the policy service stops with the daemon.
    pub fn after_stop(&self) -> String {
        let mut v = Vec::new();
        if self.nftables.is_some() {
            v.push("bans stay in the kernel's nftables sets until they expire".to_string());
        }
        if let Some(m) = &self.postfix_map {
            v.push(format!(
                "bans stay in the Postfix map {} until the next start drops the expired ones",
                m.map
            ));
        }
        if let Some(p) = &self.postfix_policy {
            v.push(format!(
                "the policy service at {} is gone: Postfix's default_action answers",
                p.socket.display()
            ));
        }
        if v.is_empty() {
            v.push("no enforcer was on: no ban outlasts the daemon".to_string());
        }
        v.join("; ")
    }
}

impl Default for Config {
    fn default() -> Self {
        validate::validate(raw::RawConfig::default(), "", Path::new("<defaults>"))
            .expect("the built-in defaults are valid")
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse(&text, path)
}

/// Validates configuration text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map_or((0, 0), |s| validate::line_col(text, s.start));
        ConfigErrors(vec![ConfigError {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }])
    })?;
    validate::validate(raw, text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's last line names what holds the bans after it stops, and only that:
    /// no kernel where nftables is off, the map where there is one.
    #[test]
    fn what_holds_the_bans_after_a_stop() {
        // (nftables on as by default, or turned off; the rest of the configuration;
        // the note.)
        for (nft, rest, want) in [
            (
                true,
                "",
                "bans stay in the kernel's nftables sets until they expire",
            ),
            (
                false,
                "[postfix_map]\nenabled = true\nmap = \"cidr:/etc/postfix/saslguard_access\"\n",
                "bans stay in the Postfix map cidr:/etc/postfix/saslguard_access until the next start drops the expired ones",
            ),
            (
                false,
                "[postfix_policy]\nenabled = true\nsocket = \"/var/spool/postfix/private/saslguard\"\n",
                "the policy service at /var/spool/postfix/private/saslguard is gone: Postfix's default_action answers",
            ),
            (false, "", "no enforcer was on: no ban outlasts the daemon"),
        ] {
            let off = if nft {
                ""
            } else {
                "[nftables]\nenabled = false\n"
            };
            let text = format!("{off}{rest}");
            let note = parse(&text, Path::new("t.toml")).unwrap().after_stop();
            assert_eq!(note, want, "{text}");
        }
    }
}
