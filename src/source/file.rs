//! Whole files (plain or gzip, told by their magic bytes) and stdin, read once from
//! start to end, each line stamped with its time. [`super::merge`] reads several of
//! them as one log; the live daemon follows files with [`super::follow`] instead.

use super::{Line, LineReader, Stamped, stamp, stamp_text};
use crate::time::{Timestamp, YearResolver, Zone};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: line {line}: {source}")]
    Read {
        path: PathBuf,
        line: u64,
        source: io::Error,
    },
}

pub struct FileSource {
    pub path: PathBuf,
    reader: LineReader<Box<dyn Read + Send>>,
    resolver: YearResolver,
    /// The decoded text of the last line when it was not valid UTF-8.
    lossy: String,
    pub line_no: u64,
}

/// How zone-less and year-less timestamps are read.
#[derive(Debug, Clone, Copy)]
pub struct TimeSettings {
    pub zone: Zone,
    /// The year of classic syslog stamps' first line; None: from the file's mtime.
    pub year: Option<i32>,
    /// "Now", for stdin and files without an mtime.
    pub now: Timestamp,
}

impl FileSource {
    pub fn open(path: &Path, max_line: usize, t: TimeSettings) -> Result<FileSource, SourceError> {
        let err = |source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        };
        let (raw, mtime): (Box<dyn Read + Send>, Option<Timestamp>) = if path == Path::new("-") {
            (Box::new(io::stdin()), None)
        } else {
            let f = File::open(path).map_err(err)?;
            let mtime = f
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| Timestamp(d.as_millis() as i64));
            (Box::new(f), mtime)
        };
        // A plain file is read in the line reader's blocks, which pass a buffer this
        // small; a gzip one is decompressed from a buffer of its own.
        let mut buf = BufReader::with_capacity(8 * 1024, raw);
        let gz = buf.fill_buf().map_err(err)?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read + Send> = if gz {
            // The decoder keeps an input buffer of its own.
            Box::new(MultiGzDecoder::new(buf))
        } else {
            Box::new(buf)
        };
        let resolver = match t.year {
            Some(y) => YearResolver::with_year(t.zone, y),
            None => YearResolver::new(t.zone, mtime.unwrap_or(t.now)),
        };
        Ok(FileSource {
            path: path.to_path_buf(),
            reader: LineReader::new(reader, max_line),
            resolver,
            lossy: String::new(),
            line_no: 0,
        })
    }

    /// The next line with its number and its time (or why it has none); `Ok(None)` at
    /// the end.
    pub fn next_stamped(&mut self) -> Result<Option<(u64, Stamped<'_>)>, SourceError> {
        self.line_no += 1;
        let line = self
            .reader
            .next_line()
            .map_err(|source| SourceError::Read {
                path: self.path.clone(),
                line: self.line_no,
                source,
            })?;
        let n = self.line_no;
        Ok(line.map(|l| match l {
            Line::TooLong(len) => (n, Stamped::too_long(len)),
            Line::Text(text) => (n, stamp_text(text, text.len(), false, &mut self.resolver)),
            Line::Bytes(raw) => (n, stamp(raw, &mut self.resolver, &mut self.lossy)),
        }))
    }

    pub fn resolver(&mut self) -> &mut YearResolver {
        &mut self.resolver
    }
}
