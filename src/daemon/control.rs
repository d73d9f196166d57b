//! The control socket: one JSON request per line, one JSON answer per line. This file
//! defines both, [`Request`] and [`Response`]: the engine answers with them, the CLI
//! reads them back into them and renders them (`render.rs`).
//!
//! `saslguard status|bans|ban|unban|reload|check` are thin clients of it. The socket is
//! created with mode `daemon.control_socket_mode` (0600: root only) before it gets its
//! name, so there is no moment where others could connect.

use crate::geo::Origin;
use crate::offender::Counts;
use crate::pipeline::Stats;
use crate::posture::Posture;
use crate::source::follow::FollowStats;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Bans,
    Ban {
        target: String,
        #[serde(default)]
        duration: Option<String>,
        #[serde(default)]
        reason: Option<String>,
        /// Ban a network wider than `[allowlist] shortest_prefix_*`.
        #[serde(default)]
        force: bool,
    },
    Unban {
        target: String,
    },
    Reload,
    Metrics,
    /// Is `address` banned now, and by what? Or refused by a block, on `port` (any
    /// of the block's ports when none is given)? (`saslguard check`, the policy
    /// service.)
    Check {
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
}

pub type Call = (Request, oneshot::Sender<Response>);

/// `"ok": true` on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct True;

impl Serialize for True {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(true)
    }
}

impl<'de> Deserialize<'de> for True {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match bool::deserialize(d)? {
            true => Ok(True),
            false => Err(serde::de::Error::custom("expected \"ok\": true")),
        }
    }
}

/// The answer to a [`Request`]: `{"ok": true, ...}` with what was asked, or
/// `{"ok": false, "error": ...}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Response {
    Failed(Failed),
    Status(Box<Status>),
    Bans(BanList),
    Check(CheckAnswer),
    Banned(Banned),
    Unbanned(Unbanned),
    /// `reload`.
    Message(Message),
    Metrics(MetricsText),
}

/// A request that was refused or failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failed {
    pub ok: bool,
    pub error: String,
    /// The target is refused for what it is (the CLI exits 65): the input is wrong,
    /// not the daemon.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

/// One source as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceState {
    /// `file:/var/log/mail.log` or `journal`.
    pub name: String,
    pub position: String,
    pub lines: u64,
    pub lines_too_long: u64,
    pub behind_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FollowStats>,
    /// Time of the newest line read (its own timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_line_time: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tracked {
    pub addresses: u64,
    pub prefixes: u64,
    pub evicted: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeoStatus {
    pub country: bool,
    pub asn: bool,
}

/// `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub ok: True,
    pub version: String,
    pub config: String,
    pub store: String,
    pub uptime_s: u64,
    pub sources: Vec<SourceState>,
    pub stats: Stats,
    pub tracked: Tracked,
    pub offenders: u64,
    pub active_bans: u64,
    /// Bans made, by origin.
    pub bans: BTreeMap<String, u64>,
    pub unbans: u64,
    pub enforcer_errors: BTreeMap<String, u64>,
    pub nft_table_rebuilds: u64,
    pub unenforced_bans: u64,
    pub alerts: BTreeMap<String, u64>,
    /// Each `[[block]]` with the networks it holds now.
    #[serde(default)]
    pub blocks: Vec<crate::block::Summary>,
    /// The fleet link (`[cluster]`), when on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
    pub geoip: GeoStatus,
    /// Each enforcer by name, with what it acts on (`table inet saslguard`).
    pub enforcers: BTreeMap<String, String>,
    pub store_errors: u64,
}

/// The fleet link as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterStatus {
    pub node: String,
    pub connected: bool,
    /// Bans and lifts this node published, and received from the others.
    pub published: u64,
    pub received: u64,
    /// Waiting for the database, and dropped from a full queue.
    pub queued: u64,
    pub dropped: u64,
    pub errors: u64,
    /// Fleet bans this node's own checks refused.
    pub refused: u64,
    /// Replication lag of the last row received, in seconds.
    #[serde(default)]
    pub lag_seconds: f64,
}

/// Which enforcers still owe a ban, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Owing {
    pub enforcers: Vec<String>,
    pub error: String,
    pub retries: u32,
}

/// What `bans` shows of the offender behind a ban.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OffenderSummary {
    pub failures: u64,
    pub first_failure: Timestamp,
    pub last_failure: Timestamp,
    pub services: Counts,
    pub mechanisms: Counts,
    /// The first ten user names tried.
    pub users: Vec<String>,
    pub users_total: u64,
    pub tls: Counts,
    pub logins_after_failure: u64,
}

/// One active ban.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BanEntry {
    pub target: String,
    pub since: Timestamp,
    pub until: Timestamp,
    pub remaining_s: i64,
    pub remaining: String,
    pub rule: String,
    pub reason: String,
    pub origin: String,
    pub nth: u32,
    pub geo: Origin,
    pub tls: Option<Posture>,
    pub offender: Option<OffenderSummary>,
    pub not_enforced_by: Option<Owing>,
}

/// `bans`: the active bans, the longest-running first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BanList {
    pub ok: True,
    pub bans: Vec<BanEntry>,
}

/// `check`: whether a ban covers the address now, and which.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckAnswer {
    pub ok: True,
    pub address: String,
    pub banned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The `[[block]]` that refuses the address (on the port asked about), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

impl CheckAnswer {
    /// Whether the address is refused: banned, or blocked.
    pub fn refused(&self) -> bool {
        self.banned || self.block.is_some()
    }
}

/// `ban`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Banned {
    pub ok: True,
    pub target: String,
    pub until: Timestamp,
}

/// `unban`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unbanned {
    pub ok: True,
    pub target: String,
    pub was_banned: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub ok: True,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsText {
    pub ok: True,
    pub text: String,
}

impl Response {
    /// Reads the answer to `req` back from its JSON.
    pub fn read(req: &Request, v: Value) -> Result<Response, serde_json::Error> {
        use serde_json::from_value as from;
        if v.get("ok") != Some(&Value::Bool(true)) {
            return from(v).map(Response::Failed);
        }
        Ok(match req {
            Request::Status => Response::Status(Box::new(from(v)?)),
            Request::Bans => Response::Bans(from(v)?),
            Request::Check { .. } => Response::Check(from(v)?),
            Request::Ban { .. } => Response::Banned(from(v)?),
            Request::Unban { .. } => Response::Unbanned(from(v)?),
            Request::Reload => Response::Message(from(v)?),
            Request::Metrics => Response::Metrics(from(v)?),
        })
    }
}

/// An error answer.
pub fn error(message: impl Into<String>) -> Response {
    Response::Failed(Failed {
        ok: false,
        error: message.into(),
        refused: false,
    })
}

/// An answer refusing a target for what it is (the CLI exits 65).
pub fn refused(message: impl Into<String>) -> Response {
    Response::Failed(Failed {
        ok: false,
        error: message.into(),
        refused: true,
    })
}

/// The control socket this daemon made; dropping it removes the socket, but only if
/// the path still names that socket (not one another daemon made since).
pub struct Bound {
    path: std::path::PathBuf,
    id: (u64, u64),
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Drop for Bound {
    fn drop(&mut self) {
        if identity(&self.path) == Some(self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket at `path` with `mode`, refusing if a daemon already answers there
/// or if the path names anything but a socket (a regular file there is the admin's,
/// not ours to delete).
pub fn bind(path: &Path, mode: u32) -> std::io::Result<(tokio::net::UnixListener, Bound)> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(m) = std::fs::symlink_metadata(path)
        && !m.file_type().is_socket()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; saslguard will not replace it",
                path.display()
            ),
        ));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "{}: another saslguard daemon is running and answers there",
                path.display()
            ),
        ));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)?;
    listener.set_nonblocking(true)?;
    let bound = Bound {
        path: path.to_path_buf(),
        id: identity(path).unwrap_or_default(),
    };
    Ok((tokio::net::UnixListener::from_std(listener)?, bound))
}

/// Answers connections until the engine goes away.
pub async fn serve(listener: tokio::net::UnixListener, engine: mpsc::Sender<Call>) {
    // Bounded like the metrics port (see `accept`).
    let gate = super::accept::gate(64);
    loop {
        let (stream, permit) = super::accept::next(&listener, &gate, "control socket").await;
        let engine = engine.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (r, mut w) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(r.take(64 * 1024)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = match serde_json::from_str::<Request>(&line) {
                    Err(e) => error(format!("bad request: {e}")),
                    Ok(req) => {
                        let (tx, rx) = oneshot::channel();
                        if engine.send((req, tx)).await.is_err() {
                            break;
                        }
                        rx.await.unwrap_or_else(|_| error("saslguard is stopping"))
                    }
                };
                let mut out = serde_json::to_string(&answer)
                    .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"{e}\"}}"));
                out.push('\n');
                if w.write_all(out.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

use tokio::io::AsyncReadExt as _;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the saslguard daemon at {path}: {source} (is `saslguard run` running? \
         --socket or -c tells where its socket is)"
    )]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("control socket: bad answer: {0}")]
    Answer(String),
}

/// Sends one request and returns the answer as it came (`{"ok": true, ...}` or
/// `{"ok": false, "error": ...}`); [`Response::read`] types it.
pub fn call(path: &Path, req: &Request) -> Result<Value, ClientError> {
    let mut s = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.display().to_string(),
        source,
    })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::Answer(e.to_string()))?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| ClientError::Answer(format!("{e}: {answer:?}")))
}
