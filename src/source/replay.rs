//! Replay sources: whole files (plain or gzip, told by their magic bytes) and stdin,
//! several at once merged by the time in their lines. Files given one after the other
//! (`mail.log.1 mail.log`) come out in order; files written side by side (Postfix's and
//! Dovecot's) are interleaved by time, ties going to the file named first.

use super::{Line, LineReader};
use crate::parse::Parsed;
use crate::pipeline::{Pipeline, prepare};
use crate::time::{Timestamp, YearResolver, Zone};
use flate2::read::MultiGzDecoder;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
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
    reader: LineReader<Box<dyn BufRead>>,
    resolver: YearResolver,
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
        let (raw, mtime): (Box<dyn Read>, Option<Timestamp>) = if path == Path::new("-") {
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
        let mut buf = BufReader::with_capacity(256 * 1024, raw);
        let gz = buf.fill_buf().map_err(err)?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead> = if gz {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                MultiGzDecoder::new(buf),
            ))
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
            line_no: 0,
        })
    }

    /// The next line that parses, counting skipped ones in `pipe`.
    pub fn next_parsed(
        &mut self,
        pipe: &mut Pipeline,
    ) -> Result<Option<(Timestamp, Parsed, bool)>, SourceError> {
        loop {
            let line = self
                .reader
                .next_line()
                .map_err(|source| SourceError::Read {
                    path: self.path.clone(),
                    line: self.line_no + 1,
                    source,
                })?;
            self.line_no += 1;
            match line {
                None => return Ok(None),
                Some(Line::TooLong(_)) => pipe.skip(crate::pipeline::Skip::TooLong),
                Some(Line::Ok(bytes)) => match prepare(bytes, &mut self.resolver) {
                    Ok(x) => return Ok(Some(x)),
                    Err(s) => pipe.skip(s),
                },
            }
        }
    }

    /// Raw access for `parse`: the next line with its number.
    pub fn next_raw(&mut self) -> Result<Option<Line<'_>>, SourceError> {
        self.line_no += 1;
        let (path, line) = (self.path.clone(), self.line_no);
        self.reader
            .next_line()
            .map_err(|source| SourceError::Read { path, line, source })
    }

    pub fn resolver(&mut self) -> &mut YearResolver {
        &mut self.resolver
    }
}

/// Runs every line of `sources` through `pipe`, merged by time; `on_decision` sees each
/// ban as it is made.
pub fn run(
    sources: &mut [FileSource],
    pipe: &mut Pipeline,
    mut on_decision: impl FnMut(&crate::ban::Decision),
) -> Result<(), SourceError> {
    let mut heads: Vec<Option<(Timestamp, Parsed, bool)>> = Vec::with_capacity(sources.len());
    let mut heap = BinaryHeap::new();
    for (i, s) in sources.iter_mut().enumerate() {
        let h = s.next_parsed(pipe)?;
        if let Some((t, _, _)) = &h {
            heap.push(Reverse((*t, i)));
        }
        heads.push(h);
    }
    while let Some(Reverse((_, i))) = heap.pop() {
        let (t, parsed, lossy) = heads[i].take().expect("a head for every heap entry");
        for d in pipe.process(t, &parsed, lossy) {
            on_decision(d);
        }
        // Drain this source while it stays at or before the next one's head, so a
        // single file (the common case) never touches the heap again.
        loop {
            let next = sources[i].next_parsed(pipe)?;
            match next {
                None => break,
                Some((t2, p2, l2)) => {
                    if heap
                        .peek()
                        .is_none_or(|Reverse((t_other, j))| (t2, i) < (*t_other, *j))
                    {
                        for d in pipe.process(t2, &p2, l2) {
                            on_decision(d);
                        }
                    } else {
                        heads[i] = Some((t2, p2, l2));
                        heap.push(Reverse((t2, i)));
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}
