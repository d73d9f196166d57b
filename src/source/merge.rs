//! Several files read as one log, merged by the time in their lines: the one merge that
//! `replay`, `parse`, `tls`, `trace` and `report --from-logs` share. Files given one after
//! the other (`mail.log.1 mail.log`) come out in order; files written side by side
//! (Postfix's and Dovecot's) are interleaved by time, ties going to the file named first.
//! A line without a time (garbage, too long, an impossible date) comes out where it was
//! read, so it can be counted; it takes no part in the ordering.
//!
//! It yields stamped lines and knows nothing of what they mean.

use super::Stamped;
use super::file::{FileSource, SourceError, TimeSettings};
use crate::parse::syslog;
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

/// One line of the merged log.
#[derive(Debug)]
pub struct Merged<'a> {
    /// Which file, as an index into the paths given to [`Merge::open`].
    pub source: usize,
    /// Its line number in that file, from 1.
    pub line_no: u64,
    pub line: Stamped<'a>,
}

/// A source's next timed line, read ahead and waiting for its turn.
#[derive(Debug, Default)]
struct Head {
    time: Timestamp,
    text: String,
    lossy: bool,
    len: usize,
    line_no: u64,
}

pub struct Merge {
    sources: Vec<FileSource>,
    heads: Vec<Head>,
    /// Sources with a head waiting, by (time, source): ties go to the file named first.
    heap: BinaryHeap<Reverse<(Timestamp, usize)>>,
}

impl Merge {
    pub fn open(paths: &[PathBuf], max_line: usize, t: TimeSettings) -> Result<Merge, SourceError> {
        let sources = paths
            .iter()
            .map(|p| FileSource::open(p, max_line, t))
            .collect::<Result<Vec<_>, _>>()?;
        let heads = sources.iter().map(|_| Head::default()).collect();
        Ok(Merge {
            sources,
            heads,
            heap: BinaryHeap::new(),
        })
    }

    pub fn path(&self, source: usize) -> &Path {
        &self.sources[source].path
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Hands every line of the merged log to `f`, in order; stops at the first error,
    /// of a file or of `f`.
    pub fn run<E: From<SourceError>>(
        &mut self,
        mut f: impl FnMut(Merged<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        // First each source up to its first timed line, which waits as its head.
        for i in 0..self.sources.len() {
            let src = &mut self.sources[i];
            while let Some((line_no, line)) = src.next_stamped()? {
                match line.time() {
                    None => f(Merged {
                        source: i,
                        line_no,
                        line,
                    })?,
                    Some(t) => {
                        park(&mut self.heads[i], t, &line, line_no);
                        self.heap.push(Reverse((t, i)));
                        break;
                    }
                }
            }
        }
        while let Some(Reverse((t, i))) = self.heap.pop() {
            let h = &self.heads[i];
            let Some(prefix) = syslog::parse(&h.text) else {
                continue; // cannot be: its prefix parsed when it was read
            };
            f(Merged {
                source: i,
                line_no: h.line_no,
                line: Stamped {
                    text: &h.text,
                    lossy: h.lossy,
                    len: h.len,
                    stamp: Ok((t, prefix)),
                },
            })?;
            // Then this source goes on while its lines come no later than every waiting
            // head, so a single file never touches the heap again.
            let src = &mut self.sources[i];
            while let Some((line_no, line)) = src.next_stamped()? {
                let first = match line.time() {
                    None => true,
                    Some(t) => self.heap.peek().is_none_or(|Reverse(top)| (t, i) < *top),
                };
                if first {
                    f(Merged {
                        source: i,
                        line_no,
                        line,
                    })?;
                } else {
                    let t = line.time().unwrap_or(t);
                    park(&mut self.heads[i], t, &line, line_no);
                    self.heap.push(Reverse((t, i)));
                    break;
                }
            }
        }
        Ok(())
    }
}

fn park(head: &mut Head, time: Timestamp, line: &Stamped, line_no: u64) {
    head.time = time;
    head.text.clear();
    head.text.push_str(line.text);
    head.lossy = line.lossy;
    head.len = line.len;
    head.line_no = line_no;
}
