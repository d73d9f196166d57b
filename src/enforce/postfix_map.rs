//! The Postfix access-map enforcer: a `check_client_access` table of
//! `ADDRESS-OR-NETWORK  REJECT text` lines, owned by saslguard.
//!
//! - Map types: `cidr:` (read when an smtpd process starts: a change reaches new
//!   processes at once and old ones when they exit, after `max_idle`/`max_use`, or at
//!   `postfix reload`), and the indexed `lmdb:`/`hash:` (rebuilt with postmap; smtpd
//!   notices the changed database and restarts itself, see DATABASE_README).
//! - Every entry carries its expiry in a comment line above it (cidr tables have no
//!   inline comments); expired entries are dropped at every write and by `expire`.
//! - Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of
//!   the directory; Postfix never sees half a table.
//! - The file is saslguard's alone: a file that saslguard did not write is refused,
//!   never overwritten.
//! - Indexed maps match exact addresses and, for IPv4, the dropped-octet forms
//!   `203.0.113` (/24), `203.0` (/16), `203` (/8); other prefixes need `cidr:`.

use super::{Applied, EnforceError, Enforcer};
use crate::ban::{Decision, target_string};
use crate::time::Timestamp;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const HEADER: &str = "# saslguard access map: clients banned for password guessing.\n\
# Written by saslguard; do not edit (saslguard rewrites it). Each entry's expiry is on the\n\
# line above it. Use: check_client_access TYPE:PATH (see saslguard's README).\n";
const UNTIL: &str = "# until ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    Cidr,
    Hash,
    Lmdb,
}

/// `[postfix_map]`: which map, what it answers, how Postfix is told.
#[derive(Debug, Clone, PartialEq)]
pub struct MapConfig {
    /// `cidr:/etc/postfix/saslguard_access`, `hash:PATH` or `lmdb:PATH`.
    pub map: String,
    pub reply: String,
    /// `postmap -c DIR` for a Postfix instance with its own configuration.
    pub postfix_config: Option<PathBuf>,
    /// Run after the map changed (argv, no shell); empty: none.
    pub reload_command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub until: Timestamp,
    pub reason: String,
}

pub struct PostfixMap {
    kind: MapType,
    path: PathBuf,
    reply: String,
    postmap: PathBuf,
    /// Postfix configuration directory for postmap (`-c`); None: Postfix's default.
    config_dir: Option<PathBuf>,
    entries: BTreeMap<IpNet, Entry>,
    /// Run after the map changed (argv, no shell); empty: none.
    reload_command: Vec<String>,
}

fn err(message: impl Into<String>) -> EnforceError {
    EnforceError::Failed {
        enforcer: "postfix-map",
        message: message.into(),
    }
}

impl PostfixMap {
    /// Opens `TYPE:PATH` (`cidr:/etc/postfix/saslguard_access`), loading the entries a
    /// previous run wrote. `reply` is the access(5) result, e.g.
    /// `REJECT too many failed logins`.
    pub fn open(spec: &str, reply: &str) -> Result<PostfixMap, EnforceError> {
        let (kind, path) = match spec.split_once(':') {
            Some(("cidr", p)) => (MapType::Cidr, p),
            Some(("hash", p)) => (MapType::Hash, p),
            Some(("lmdb", p)) => (MapType::Lmdb, p),
            _ => {
                return Err(err(format!(
                    "{spec:?}: expected cidr:PATH, hash:PATH or lmdb:PATH"
                )));
            }
        };
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(err(format!("{spec:?}: the path must be absolute")));
        }
        if reply.contains('\n') || reply.trim().is_empty() {
            return Err(err("the reply must be one non-empty line"));
        }
        check_directory(&path)?;
        let mut map = PostfixMap {
            kind,
            path,
            reply: reply.trim().to_string(),
            postmap: PathBuf::from("postmap"),
            config_dir: None,
            entries: BTreeMap::new(),
            reload_command: Vec::new(),
        };
        map.load()?;
        Ok(map)
    }

    /// Opens the map of a `[postfix_map]` section, with its postmap configuration and
    /// the command that tells Postfix of a change.
    pub fn from_config(m: &MapConfig) -> Result<PostfixMap, EnforceError> {
        let mut map = PostfixMap::open(&m.map, &m.reply)?;
        map.config_dir.clone_from(&m.postfix_config);
        map.reload_command.clone_from(&m.reload_command);
        Ok(map)
    }

    /// Postfix processes read a cidr map when they start; a reload makes a change
    /// effective at once. Runs in the background: a slow `postfix reload` must not hold
    /// up the bans behind it.
    fn reload_postfix(&self) {
        let cmd = self.reload_command.clone();
        if cmd.is_empty() {
            return;
        }
        std::thread::spawn(move || {
            match Command::new(&cmd[0])
                .args(&cmd[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
            {
                Ok(o) if o.status.success() => {}
                Ok(o) => tracing::warn!(
                    "{}: {} {}",
                    cmd.join(" "),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => tracing::warn!("{}: {e}", cmd.join(" ")),
            }
        });
    }

    /// True when the map file exists (Postfix can look it up).
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Writes the map as it is now (empty for a new one), with its database for
    /// indexed types.
    pub fn create(&self) -> Result<(), EnforceError> {
        self.write()
    }

    /// Runs postmap with `-c dir` (a Postfix instance with its own configuration).
    pub fn with_postfix_config(mut self, dir: &Path) -> PostfixMap {
        self.config_dir = Some(dir.to_path_buf());
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The active entries, as written.
    pub fn entries(&self) -> &BTreeMap<IpNet, Entry> {
        &self.entries
    }

    fn load(&mut self) -> Result<(), EnforceError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(format!("{}: {e}", self.path.display()))),
        };
        if text.trim().is_empty() {
            return Ok(());
        }
        if !text.starts_with(HEADER.lines().next().unwrap_or_default()) {
            return Err(err(format!(
                "{}: not written by saslguard; refusing to overwrite it (name another file)",
                self.path.display()
            )));
        }
        let mut pending: Option<Entry> = None;
        for (n, line) in text.lines().enumerate() {
            let bad = |why: &str| err(format!("{}:{}: {why}", self.path.display(), n + 1));
            if let Some(rest) = line.strip_prefix(UNTIL) {
                let (ts, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                let until = chrono::DateTime::parse_from_rfc3339(ts)
                    .map_err(|_| bad("bad expiry time"))?
                    .timestamp_millis();
                pending = Some(Entry {
                    until: Timestamp(until),
                    reason: reason.to_string(),
                });
            } else if line.starts_with('#') || line.trim().is_empty() {
                continue;
            } else {
                let key = line.split_whitespace().next().unwrap_or_default();
                let net = parse_key(key).ok_or_else(|| bad("not an address or network"))?;
                let entry = pending
                    .take()
                    .ok_or_else(|| bad("entry without its `# until` line"))?;
                self.entries.insert(net, entry);
            }
        }
        Ok(())
    }

    fn key(&self, net: &IpNet) -> Option<String> {
        if self.kind == MapType::Cidr || net.prefix_len() == net.max_prefix_len() {
            return Some(target_string(net));
        }
        // Indexed maps: Postfix looks up the client address, then drops IPv4 octets.
        let IpNet::V4(v4) = net else { return None };
        let o = v4.network().octets();
        match v4.prefix_len() {
            24 => Some(format!("{}.{}.{}", o[0], o[1], o[2])),
            16 => Some(format!("{}.{}", o[0], o[1])),
            8 => Some(format!("{}", o[0])),
            _ => None,
        }
    }

    fn render(&self) -> String {
        let mut out = String::from(HEADER);
        for (net, e) in &self.entries {
            let Some(key) = self.key(net) else { continue };
            out.push_str(&format!(
                "{UNTIL}{} {}\n{key}\t{}\n",
                e.until.rfc3339(),
                e.reason.replace('\n', " "),
                self.reply
            ));
        }
        out
    }

    /// Drops entries whose time is over; returns how many, and rewrites the map if any.
    pub fn expire(&mut self, now: Timestamp) -> Result<usize, EnforceError> {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.until > now);
        let gone = before - self.entries.len();
        if gone > 0 {
            self.write()?;
        }
        Ok(gone)
    }

    /// Removes bans by hand (`unban`); a target that is not there is not an error.
    pub fn unban(&mut self, targets: &[IpNet]) -> Result<usize, EnforceError> {
        let removed = targets
            .iter()
            .filter(|t| self.entries.remove(t).is_some())
            .count();
        if removed > 0 {
            self.write()?;
        }
        Ok(removed)
    }

    fn write(&self) -> Result<(), EnforceError> {
        let io =
            |what: &str, e: std::io::Error| err(format!("{}: {what}: {e}", self.path.display()));
        let dir = self
            .path
            .parent()
            .ok_or_else(|| err("the map path has no directory"))?;
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("map");
        let tmp = dir.join(format!(".{name}.saslguard-{}", std::process::id()));
        // A leftover of a crashed run (or anything planted there) is unlinked, never
        // followed; the new file is created exclusively and not through a symlink.
        let db_tmps = ["db", "lmdb"].map(|ext| PathBuf::from(format!("{}.{ext}", tmp.display())));
        for stale in std::iter::once(&tmp).chain(&db_tmps) {
            match std::fs::remove_file(stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove a stale temporary file", e)),
            }
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(|e| io("create temporary file", e))?;
            f.write_all(self.render().as_bytes())
                .map_err(|e| io("write", e))?;
            f.sync_all().map_err(|e| io("fsync", e))?;
        }
        if self.kind != MapType::Cidr {
            // Build the database beside the temporary source, then move both in place:
            // the database first, so Postfix never pairs a new source with an old index.
            let kind = if self.kind == MapType::Lmdb {
                "lmdb"
            } else {
                "hash"
            };
            let mut cmd = Command::new(&self.postmap);
            if let Some(dir) = &self.config_dir {
                cmd.arg("-c").arg(dir);
            }
            let out = cmd
                .arg(format!("{kind}:{}", tmp.display()))
                .output()
                .map_err(|e| err(format!("postmap: {e}")))?;
            if !out.status.success() {
                let _ = std::fs::remove_file(&tmp);
                return Err(err(format!(
                    "postmap failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let ext = if self.kind == MapType::Lmdb {
                "lmdb"
            } else {
                "db"
            };
            let db_tmp = PathBuf::from(format!("{}.{ext}", tmp.display()));
            let db = PathBuf::from(format!("{}.{ext}", self.path.display()));
            std::fs::rename(&db_tmp, &db).map_err(|e| io("rename database", e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| io("rename", e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Adds or extends bans at time `now` (an existing entry keeps the later expiry);
    /// expired entries go in the same write.
    pub fn apply(&mut self, decisions: &[Decision], now: Timestamp) -> Result<(), EnforceError> {
        for d in decisions {
            if self.key(&d.target).is_none() {
                tracing::warn!(net = %d.target, "an indexed Postfix map cannot hold this prefix; use cidr:");
                continue;
            }
            let e = self.entries.entry(d.target).or_insert(Entry {
                until: d.until,
                reason: d.reason.clone(),
            });
            if d.until > e.until {
                *e = Entry {
                    until: d.until,
                    reason: d.reason.clone(),
                };
            }
        }
        self.entries.retain(|_, e| e.until > now);
        self.write()
    }
}

/// saslguard writes the map as root: a directory that others may write to would let
/// them plant a symlink where the map, its temporary file or postmap's database goes,
/// and make root overwrite any file. Such a directory is refused.
fn check_directory(path: &Path) -> Result<(), EnforceError> {
    use std::os::unix::fs::MetadataExt;
    let dir = path
        .parent()
        .ok_or_else(|| err("the map path has no directory"))?;
    let m = match std::fs::metadata(dir) {
        Ok(m) => m,
        // Not there yet: nothing to plant in either; writing will say what is wrong.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(format!("{}: {e}", dir.display()))),
    };
    // This process's effective uid owns /proc/self.
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    if m.mode() & 0o022 != 0 {
        return Err(err(format!(
            "{}: the map's directory is writable by group or others (mode {:o}); saslguard \
             will not write there as root. Use a directory only root can write, such as \
             /etc/postfix",
            dir.display(),
            m.mode() & 0o7777
        )));
    }
    if m.uid() != 0 && m.uid() != me {
        return Err(err(format!(
            "{}: the map's directory belongs to uid {}, not to root; saslguard will not \
             write there",
            dir.display(),
            m.uid()
        )));
    }
    Ok(())
}

fn parse_key(key: &str) -> Option<IpNet> {
    if let Ok(n) = key.parse::<IpNet>() {
        return Some(crate::addr::canonical_net(n));
    }
    if let Ok(a) = key.parse::<std::net::IpAddr>() {
        return Some(IpNet::from(crate::addr::canonical(a)));
    }
    // Dropped-octet IPv4 forms of indexed maps.
    let parts: Vec<u8> = key
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let len = match parts.len() {
        1 => 8,
        2 => 16,
        3 => 24,
        _ => return None,
    };
    let mut o = [0u8; 4];
    o[..parts.len()].copy_from_slice(&parts);
    IpNet::new(std::net::Ipv4Addr::from(o).into(), len).ok()
}

impl Enforcer for PostfixMap {
    fn name(&self) -> &'static str {
        "postfix-map"
    }

    fn describe(&self) -> String {
        format!("map {}", self.path.display())
    }

    /// Puts every active ban in the map (an entry it holds already keeps the later end).
    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<Applied, EnforceError> {
        self.apply(active, now)?;
        Ok(Applied::default())
    }

    fn ban(&mut self, decisions: &[Decision], now: Timestamp) -> Result<Applied, EnforceError> {
        self.apply(decisions, now)?;
        self.reload_postfix();
        Ok(Applied::default())
    }

    fn unban(&mut self, targets: &[IpNet]) -> Result<usize, EnforceError> {
        let n = PostfixMap::unban(self, targets)?;
        if n > 0 {
            self.reload_postfix();
        }
        Ok(n)
    }

    fn expire(&mut self, now: Timestamp) -> Result<usize, EnforceError> {
        let n = PostfixMap::expire(self, now)?;
        if n > 0 {
            self.reload_postfix();
        }
        Ok(n)
    }

    fn retire(&mut self, active: &[IpNet]) -> Result<(), EnforceError> {
        Enforcer::unban(self, active).map(|_| ())
    }
}
