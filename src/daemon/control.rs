//! The control socket: one JSON request per line, one JSON answer per line.
//!
//! `saslguard status|bans|ban|unban|reload` are thin clients of it. The socket is
//! created with mode `daemon.control_socket_mode` (0600: root only) before it gets its
//! name, so there is no moment where others could connect.

use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    /// Is `address` banned now, and by what? (`saslguard check`, the policy service.)
    Check {
        address: String,
    },
}

pub type Call = (Request, oneshot::Sender<Value>);

/// An error answer.
pub fn error(message: impl Into<String>) -> Value {
    serde_json::json!({"ok": false, "error": message.into()})
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
                let mut out = answer.to_string();
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

/// Sends one request and returns the answer (`{"ok": true, ...}` or
/// `{"ok": false, "error": ...}`).
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
