//! `saslguard replay`: the whole pipeline over old logs, merged by time, with the
//! dry-run enforcer. What it decided is rendered by [`crate::report::replay`].

use crate::ban::Decision;
use crate::config::Config;
use crate::enforce::{EnforceError, EnforcerConfig, Enforcers};
use crate::pipeline::{Pipeline, Prepared, Record, Snapshot};
use crate::source::file::{SourceError, TimeSettings};
use crate::source::merge::{Merge, Threads};
use crate::time::Timestamp;
use std::path::PathBuf;

pub struct Replay {
    pub pipeline: Pipeline,
    /// Every ban decided, in order.
    pub bans: Vec<Decision>,
    pub files: Vec<PathBuf>,
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
    merge.run(threads, Prepared::of, |m| {
        let first = bans.len();
        bans.extend_from_slice(pipeline.apply(&m.value));
        if bans.len() > first {
            enforcers.ban(&bans[first..], pipeline.now());
        }
        Ok::<_, ReplayError>(())
    })?;

    Ok(Replay {
        pipeline,
        bans,
        files: files.to_vec(),
    })
}
