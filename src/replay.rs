//! `saslguard replay`: the whole pipeline over old logs, merged by time, with the
//! dry-run enforcer. What it decided is rendered by [`crate::report::replay`].

use crate::alert::Alert;
use crate::ban::Decision;
use crate::config::Config;
use crate::enforce::{EnforceError, EnforcerConfig, Enforcers};
use crate::pipeline::{Pipeline, Prepared, Record, Snapshot};
use crate::source::file::{SourceError, TimeSettings};
use crate::source::merge::{Merge, Threads};
use crate::time::Timestamp;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

pub struct Replay {
    pub pipeline: Pipeline,
    /// Every ban decided, in order.
    pub bans: Vec<Decision>,
    /// Every alert raised (up to [`crate::pipeline::MAX_ALERTS_KEPT`]), in order.
    pub alerts: AlertLog,
    pub files: Vec<PathBuf>,
}

/// The alerts of a replay, in the order they were raised, written as they come to an
/// unlinked temporary file (one JSON document a line) rather than kept in memory: a
/// replay of 10M lines of a realistic log raised 12,837 alerts, about 10 MB of
/// memory, and one may keep up to [`crate::pipeline::MAX_ALERTS_KEPT`]. Where the file
/// cannot be made or written (a full disk), the alert that failed and every later one
/// are kept in memory instead: none is lost.
#[derive(Debug)]
pub struct AlertLog {
    file: Option<File>,
    /// Bytes of the file that hold whole alerts (a failed write may leave part of one).
    written: u64,
    /// False once a write failed: the alerts written stay in the file, the rest are
    /// kept.
    writing: bool,
    kept: Vec<Alert>,
    len: usize,
    dropped: u64,
    line: Vec<u8>,
}

impl AlertLog {
    /// A log in a new temporary file (in memory if none can be made).
    pub fn new() -> AlertLog {
        AlertLog::to(tempfile::tempfile().ok())
    }

    /// A log written to `file` (opened for reading and writing), or kept in memory.
    pub fn to(file: Option<File>) -> AlertLog {
        AlertLog {
            writing: file.is_some(),
            file,
            written: 0,
            kept: Vec::new(),
            len: 0,
            dropped: 0,
            line: Vec::new(),
        }
    }

    /// Adds `a` after the others (past the limit, counts it as dropped).
    pub fn push(&mut self, a: Alert) {
        if self.len >= crate::pipeline::MAX_ALERTS_KEPT {
            self.dropped += 1;
            return;
        }
        self.len += 1;
        if let (Some(f), true) = (&mut self.file, self.writing) {
            self.line.clear();
            if serde_json::to_writer(&mut self.line, &a).is_ok() {
                self.line.push(b'\n');
                match f.write_all(&self.line) {
                    Ok(()) => {
                        self.written += self.line.len() as u64;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "alerts no longer written to a temporary file ({e}): kept in memory"
                        );
                        self.writing = false;
                    }
                }
            }
        }
        self.kept.push(a);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Alerts not kept because [`crate::pipeline::MAX_ALERTS_KEPT`] were kept already.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The alerts in the order they were raised: those in the file, then those kept.
    pub fn iter(&self) -> impl Iterator<Item = std::io::Result<Alert>> + '_ {
        let from_file = self.file.as_ref().map(|mut f| {
            let whole = f.seek(SeekFrom::Start(0)).map(|_| {
                serde_json::Deserializer::from_reader(BufReader::new(f.take(self.written)))
                    .into_iter::<Alert>()
                    .map(|r| r.map_err(std::io::Error::other))
            });
            let (ok, err) = match whole {
                Ok(it) => (Some(it), None),
                Err(e) => (None, Some(Err(e))),
            };
            ok.into_iter().flatten().chain(err)
        });
        from_file
            .into_iter()
            .flatten()
            .chain(self.kept.iter().cloned().map(Ok))
    }
}

impl Default for AlertLog {
    fn default() -> AlertLog {
        AlertLog::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Enforce(#[from] EnforceError),
    #[error("GeoIP: {0}")]
    Geo(#[from] crate::geo::GeoError),
}

/// Runs `files` through a fresh pipeline.
///
/// With [`Threads::PerFile`] each file is read and parsed on a thread of its own while
/// this thread counts, in the same order: the result is the same as with
/// [`Threads::One`].
pub fn replay(
    cfg: &Config,
    files: &[PathBuf],
    time: TimeSettings,
    threads: Threads,
) -> Result<Replay, ReplayError> {
    let mut merge = Merge::open(files, cfg.max_line_bytes, time)?;
    let geo = crate::geo::Geo::open(&cfg.geoip, cfg.policy.needs_geo(), true)?;
    let mut pipeline = Pipeline::new(cfg, geo, Record::Nothing, &Snapshot::default());
    let (mut enforcers, _) = Enforcers::open(&[EnforcerConfig::DryRun], &[], Timestamp(0))?;
    let mut bans = Vec::new();
    let mut alerts = AlertLog::new();
    merge.run(threads, Prepared::of, |m| {
        let first = bans.len();
        bans.extend_from_slice(pipeline.apply(&m.value));
        if bans.len() > first {
            enforcers.ban(&bans[first..], pipeline.now());
        }
        if pipeline.has_alerts() {
            for a in pipeline.take_alerts() {
                alerts.push(a);
            }
        }
        Ok::<_, ReplayError>(())
    })?;

    Ok(Replay {
        pipeline,
        bans,
        alerts,
        files: files.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Origin;

    fn alert(i: u32) -> Alert {
        Alert {
            kind: "login_after_prefix_failures".into(),
            time: Timestamp(1_795_341_600_123 + i64::from(i)),
            address: format!("2001:db8::{i:x}").parse().unwrap(),
            user: Some(format!("user \"{i}\"\n\u{e9}")),
            service: Some("imap".into()),
            geo: Origin {
                country: Some("NL".into()),
                continent: Some("EU".into()),
                asn: Some(64_496),
                as_org: Some("Example, Inc.".into()),
            },
            message: format!("alert {i}"),
            failures: Some(u64::from(i) * 3),
            users_tried: vec!["a".into(), "b\u{0}c".into()],
            addresses: Some(i),
            known_origins: vec!["DE".into(), "AS64497".into()],
            prefix: Some("2001:db8::/64".parse().unwrap()),
        }
    }

    /// Alerts written to the temporary file come back whole and in order.
    #[test]
    fn alerts_come_back_from_their_file_as_they_were_raised() {
        let mut log = AlertLog::new();
        assert!(log.file.is_some(), "a temporary file could be made here");
        let sent: Vec<Alert> = (0..1000).map(alert).collect();
        for a in &sent {
            log.push(a.clone());
        }
        assert!(log.kept.is_empty(), "none was kept in memory");
        assert_eq!(log.len(), 1000);
        let back: Vec<Alert> = log.iter().map(Result::unwrap).collect();
        assert_eq!(back, sent);
        // Read twice (the report's text and JSON forms each read them).
        assert_eq!(log.iter().count(), 1000);
    }

    /// A disk that is full (here /dev/full, where every write fails with ENOSPC)
    /// loses no alert: from the first failed write on they are kept in memory, after
    /// the ones written before.
    #[test]
    fn a_full_disk_loses_no_alert() {
        let full = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let mut log = AlertLog::to(Some(full));
        let sent: Vec<Alert> = (0..10).map(alert).collect();
        for a in &sent {
            log.push(a.clone());
        }
        assert!(!log.writing, "writing was given up");
        let back: Vec<Alert> = log.iter().map(Result::unwrap).collect();
        assert_eq!(back, sent);
    }

    /// Alerts written before the file refused a write are read from it, the rest from
    /// memory, in the order raised.
    #[test]
    fn alerts_written_before_a_failed_write_are_not_lost() {
        let named = tempfile::NamedTempFile::new().unwrap();
        let mut log = AlertLog::to(Some(named.reopen().unwrap()));
        let sent: Vec<Alert> = (0..6).map(alert).collect();
        for a in &sent[..3] {
            log.push(a.clone());
        }
        // The same file from here on through a handle that refuses every write.
        log.file = Some(File::open(named.path()).unwrap());
        for a in &sent[3..] {
            log.push(a.clone());
        }
        assert!(!log.writing);
        assert_eq!(log.kept.len(), 3);
        let back: Vec<Alert> = log.iter().map(Result::unwrap).collect();
        assert_eq!(back, sent);
    }
}
