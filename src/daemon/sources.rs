//! The daemon's source tasks: followed files (linemux for change events, the
//! [`Follower`] checkpoint layer for reading) and the systemd journal (journalctl).
//! Both send [`Input`] to the engine: whole lines and the position after them.

use crate::source::follow::{FollowStats, Follower, format_positions};
use crate::source::journal::{journalctl_args, parse_entry};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};

/// Lines from one source.
#[derive(Debug)]
pub struct Input {
    pub source: usize,
    /// Whole lines, each ending in `\n`.
    pub data: Vec<u8>,
    pub too_long: u64,
    /// Position after these lines (file positions or a journal cursor).
    pub position: String,
    pub follow: Option<FollowStats>,
    /// Bytes written and not read yet.
    pub behind: u64,
}

/// Follows files until `stop` turns true. `followers` pairs each with its source index.
pub async fn files(
    mut followers: Vec<(usize, Follower)>,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = match linemux::MuxedEvents::new() {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!("file change events unavailable ({e}); polling every 500 ms");
            None
        }
    };
    let mut by_path: HashMap<PathBuf, usize> = HashMap::new();
    if let Some(ev) = &mut events {
        for (k, (_, f)) in followers.iter().enumerate() {
            match ev.add_file(f.path()).await {
                Ok(canonical) => {
                    by_path.insert(canonical, k);
                    by_path.insert(f.path().to_path_buf(), k);
                }
                Err(e) => {
                    tracing::warn!(file = %f.path().display(), "no change events ({e}); polling every 500 ms")
                }
            }
        }
    }
    if by_path.is_empty() {
        events = None;
    }
    let mut sent: Vec<String> = vec![String::new(); followers.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let which: Option<usize> = tokio::select! {
            _ = stop.changed() => break,
            ev = async {
                match &mut events {
                    Some(e) => e.next_event().await,
                    None => std::future::pending().await,
                }
            } => match ev {
                Ok(Some(ev)) => {
                    let hit: Vec<usize> = ev.paths.iter().filter_map(|p| by_path.get(p).copied()).collect();
                    match hit.as_slice() {
                        [one] => Some(*one),
                        _ => None,
                    }
                }
                Ok(None) => {
                    events = None;
                    None
                }
                Err(e) => {
                    tracing::warn!("file change events: {e}");
                    None
                }
            },
            _ = tick.tick() => None,
        };
        for (k, (source, f)) in followers.iter_mut().enumerate() {
            if which.is_some_and(|w| w != k) {
                continue;
            }
            if !drain(*source, f, &mut sent[k], &tx).await {
                return;
            }
        }
    }
}

/// Reads everything new from one file; false when the engine is gone.
async fn drain(
    source: usize,
    f: &mut Follower,
    last: &mut String,
    tx: &mpsc::Sender<Input>,
) -> bool {
    loop {
        let c = f.poll();
        let position = format_positions(&f.positions());
        if c.data.is_empty() && c.too_long == 0 && position == *last {
            return true;
        }
        last.clone_from(&position);
        let more = c.more;
        let input = Input {
            source,
            data: c.data,
            too_long: c.too_long,
            position,
            follow: Some(f.stats),
            behind: if more { f.behind() } else { 0 },
        };
        if tx.send(input).await.is_err() {
            return false;
        }
        if !more {
            return true;
        }
    }
}

/// Entries per message to the engine while catching up.
const JOURNAL_BATCH: usize = 2000;

pub struct JournalSpec {
    pub source: usize,
    pub directory: Option<PathBuf>,
    pub identifiers: Vec<String>,
    pub cursor: Option<String>,
    pub from_start: bool,
}

/// Checks that journalctl can be run at all (at start, for a clear error).
pub fn journalctl_available() -> Result<(), JournalUnavailable> {
    std::process::Command::new("journalctl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
        .map_err(JournalUnavailable)
}

/// `[sources] journal = true` on a host where journalctl cannot be run.
#[derive(Debug, thiserror::Error)]
#[error(
    "[sources] journal = true, but journalctl cannot be run ({0}); install systemd's \
     journalctl or set journal = false and follow a log file"
)]
pub struct JournalUnavailable(std::io::Error);

/// Follows the journal with journalctl, restarting it from the last cursor if it
/// exits.
pub async fn journal(spec: JournalSpec, tx: mpsc::Sender<Input>, mut stop: watch::Receiver<bool>) {
    let mut cursor = spec.cursor.clone();
    loop {
        let args = journalctl_args(
            spec.directory.as_deref(),
            cursor.as_deref(),
            spec.from_start,
        );
        let child = tokio::process::Command::new("journalctl")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("journalctl: {e}");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        let stdout = child.stdout.take().expect("piped");
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, stdout);
        let mut line = Vec::new();
        let mut bad = 0u64;
        'read: loop {
            let mut data = Vec::new();
            let mut entries = 0usize;
            let mut last_cursor = None;
            loop {
                line.clear();
                let n = tokio::select! {
                    _ = stop.changed() => break 'read,
                    n = reader.read_until(b'\n', &mut line) => n,
                };
                match n {
                    Ok(0) | Err(_) => break 'read,
                    Ok(_) => {}
                }
                match parse_entry(&line, &spec.identifiers) {
                    Ok(e) => {
                        if let Some(l) = e.line {
                            data.extend_from_slice(&l);
                            data.push(b'\n');
                        }
                        last_cursor = Some(e.cursor);
                    }
                    Err(e) => {
                        bad += 1;
                        if bad < 10 {
                            tracing::warn!("{e}");
                        }
                    }
                }
                entries += 1;
                // Send when caught up (nothing more buffered) or the batch is full.
                if entries >= JOURNAL_BATCH || !reader.buffer().contains(&b'\n') {
                    break;
                }
            }
            if let Some(c) = last_cursor {
                cursor = Some(c.clone());
                let input = Input {
                    source: spec.source,
                    data,
                    too_long: 0,
                    position: c,
                    follow: None,
                    behind: 0,
                };
                if tx.send(input).await.is_err() {
                    return;
                }
            }
        }
        let _ = child.start_kill();
        if *stop.borrow() {
            return;
        }
        let status = child.wait().await;
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut err).await;
        }
        tracing::warn!(
            "journalctl stopped ({}): {}; restarting in 5 s",
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            err.trim()
        );
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
