//! Several files read as one log, merged by the time in their lines: the one merge that
//! `replay`, `parse`, `tls`, `trace` and `report --from-logs` share. Files given one after
//! the other (`mail.log.1 mail.log`) come out in order; files written side by side
//! (Postfix's and Dovecot's) are interleaved by time, ties going to the file named first.
//! A line without a time (garbage, too long, an impossible date) comes out where it was
//! read, so it can be counted; it takes no part in the ordering.
//!
//! It hands on what a caller's `prepare` makes of each stamped line and knows nothing of
//! what lines mean.

use super::Stamped;
use super::file::{FileSource, SourceError, TimeSettings};
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

pub struct Merge {
    sources: Vec<FileSource>,
}

impl Merge {
    pub fn open(paths: &[PathBuf], max_line: usize, t: TimeSettings) -> Result<Merge, SourceError> {
        let sources = paths
            .iter()
            .map(|p| FileSource::open(p, max_line, t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Merge { sources })
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
}

/// One line as the `prepare` of [`Merge::run`] made it, with where it came
/// from and its time.
#[derive(Debug)]
pub struct Item<T> {
    pub source: usize,
    pub line_no: u64,
    pub time: Option<Timestamp>,
    pub value: T,
}

/// How [`Merge::run`] reads its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Everything in the calling thread.
    One,
    /// Each file is read, stamped and prepared in a thread of its own, in batches; the
    /// calling thread merges and consumes, in the same order as with [`Threads::One`].
    PerFile,
}

/// Lines per batch handed from a reader thread to the merging one.
const BATCH: usize = 1024;
/// Batches a reader may have waiting: bounds the memory a fast reader takes. Up to
/// `BATCHES_AHEAD + 2` batches are alive at once (one filling, one read); a line with
/// its event is about 250 bytes, so 4 of 1,024 lines hold about 1 MB where 6 of 2,048
/// held 3 MB, at the same speed within this machine's noise (issue 17: a two-thread
/// replay of the realistic 10M-line log peaked at 41.0 to 42.0 MB with 2,048 and 4,
/// 39.7 to 40.1 MB with 1,024 and 2; 256 lines a batch had been 7% slower).
const BATCHES_AHEAD: usize = 2;

type Pulled<T> = Option<(u64, Option<Timestamp>, T)>;

impl Merge {
    /// Hands every line of the merged log to `f`, in order, as `prepare` made it (from
    /// the stamped line alone); stops at the first error, of a file or of `f`. With
    /// [`Threads::PerFile`] the reading, stamping and preparing happen on one thread per
    /// file while this one merges: `f` sees the same items in the same order either way.
    pub fn run<T, P, E, F>(&mut self, threads: Threads, prepare: P, f: F) -> Result<(), E>
    where
        T: Send,
        P: Fn(&Stamped) -> T + Sync,
        E: From<SourceError>,
        F: FnMut(Item<T>) -> Result<(), E>,
    {
        let n = self.sources.len();
        if threads == Threads::One {
            let sources = &mut self.sources;
            let pull = |i: usize| -> Result<Pulled<T>, SourceError> {
                Ok(sources[i]
                    .next_stamped()?
                    .map(|(no, line)| (no, line.time(), prepare(&line))))
            };
            return merge_items(n, pull, f);
        }
        std::thread::scope(|scope| {
            let mut feeds = Vec::with_capacity(n);
            for src in self.sources.iter_mut() {
                let (tx, rx) = std::sync::mpsc::sync_channel(BATCHES_AHEAD);
                let prepare = &prepare;
                scope.spawn(move || read_ahead(src, prepare, tx));
                feeds.push((rx, Vec::new().into_iter()));
            }
            let pull = |i: usize| -> Result<Pulled<T>, SourceError> {
                let (rx, batch) = &mut feeds[i];
                loop {
                    if let Some(x) = batch.next() {
                        return Ok(Some(x));
                    }
                    match rx.recv() {
                        Ok(Ok(b)) => *batch = b.into_iter(),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Ok(None),
                    }
                }
            };
            // Returning drops the receivers, which stops readers still going (after an
            // error of `f`) before the scope waits for them.
            merge_items(n, pull, f)
        })
    }
}

type Batch<T> = Result<Vec<(u64, Option<Timestamp>, T)>, SourceError>;

/// A reader thread: the file's lines, stamped and prepared, in batches, then its end
/// (the channel closing) or its error.
fn read_ahead<T, P>(src: &mut FileSource, prepare: &P, tx: std::sync::mpsc::SyncSender<Batch<T>>)
where
    P: Fn(&Stamped) -> T,
{
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        match src.next_stamped() {
            Ok(Some((no, line))) => {
                batch.push((no, line.time(), prepare(&line)));
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => {
                if !batch.is_empty() {
                    let _ = tx.send(Ok(batch));
                }
                return;
            }
            Err(e) => {
                if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
                    return;
                }
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// The merge rule: each source's lines in their order; between sources by time, ties
/// to the lower index; a line without a time where it was read. A source's next timed
/// line waits as its head; after one is handed on, its source goes on while its lines
/// come no later than every waiting head, so a single file never touches the heap.
fn merge_items<T, E: From<SourceError>>(
    n: usize,
    mut pull: impl FnMut(usize) -> Result<Pulled<T>, SourceError>,
    mut f: impl FnMut(Item<T>) -> Result<(), E>,
) -> Result<(), E> {
    let mut heads: Vec<Option<(u64, T)>> = (0..n).map(|_| None).collect();
    let mut heap = BinaryHeap::new();
    for (i, head) in heads.iter_mut().enumerate() {
        while let Some((line_no, time, value)) = pull(i)? {
            match time {
                None => f(Item {
                    source: i,
                    line_no,
                    time,
                    value,
                })?,
                Some(t) => {
                    *head = Some((line_no, value));
                    heap.push(Reverse((t, i)));
                    break;
                }
            }
        }
    }
    while let Some(Reverse((t, i))) = heap.pop() {
        let Some((line_no, value)) = heads[i].take() else {
            continue; // cannot be: a source is on the heap only with its head
        };
        f(Item {
            source: i,
            line_no,
            time: Some(t),
            value,
        })?;
        while let Some((line_no, time, value)) = pull(i)? {
            let first = match time {
                None => true,
                Some(next) => heap.peek().is_none_or(|Reverse(top)| (next, i) < *top),
            };
            if first {
                f(Item {
                    source: i,
                    line_no,
                    time,
                    value,
                })?;
            } else {
                heads[i] = Some((line_no, value));
                heap.push(Reverse((time.unwrap_or(t), i)));
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Zone;
    use std::io::Write;

    /// The order lines come out in, as (file, line number), by [`Merge::run`] with and
    /// without reader threads.
    fn orders(files: &[String]) -> [Vec<(usize, u64)>; 2] {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = files
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let p = dir.path().join(format!("{i}.log"));
                std::fs::File::create(&p)
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                p
            })
            .collect();
        let t = TimeSettings {
            zone: Zone::utc(),
            year: Some(2026),
            now: Timestamp(0),
        };
        let run = |threads| {
            let mut got = Vec::new();
            Merge::open(&paths, 1000, t)
                .unwrap()
                .run(
                    threads,
                    |l: &Stamped| l.text.len(),
                    |m| {
                        got.push((m.source, m.line_no));
                        Ok::<_, SourceError>(())
                    },
                )
                .unwrap();
            got
        };
        [run(Threads::One), run(Threads::PerFile)]
    }

    /// The merge rule written plainly over each file's line times (None: no time):
    /// untimed lines come out as their file is read; of the files' next timed lines the
    /// earliest goes first, ties to the file named first.
    fn model(times: &[Vec<Option<u64>>]) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        let mut pos = vec![0usize; times.len()];
        // Reads file i up to its next timed line, handing on the untimed ones.
        let advance = |i: usize, pos: &mut Vec<usize>, out: &mut Vec<(usize, u64)>| {
            while let Some(None) = times[i].get(pos[i]) {
                pos[i] += 1;
                out.push((i, pos[i] as u64));
            }
        };
        for i in 0..times.len() {
            advance(i, &mut pos, &mut out);
        }
        while let Some((_, i)) = (0..times.len())
            .filter_map(|i| times[i].get(pos[i]).copied().flatten().map(|t| (t, i)))
            .min()
        {
            pos[i] += 1;
            out.push((i, pos[i] as u64));
            advance(i, &mut pos, &mut out);
        }
        out
    }

    #[test]
    fn threads_or_not_lines_come_out_in_the_one_merge_order() {
        // Files written side by side with ties, lines without a time (garbage, a
        // line too long), out-of-order stretches, and more lines than one batch.
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut times = Vec::new();
        let files: Vec<String> = (0..3)
            .map(|_| {
                let mut text = String::new();
                let mut these = Vec::new();
                let mut sec = 0u64;
                for _ in 0..(BATCH * 2 + 77) {
                    match next() % 20 {
                        0 => {
                            text.push_str("garbage without a time\n");
                            these.push(None);
                        }
                        1 => {
                            text.push_str(&format!("Nov 22 08:00:00 mx {}\n", "x".repeat(1200)));
                            these.push(None);
                        }
                        2 => sec = sec.saturating_sub(next() % 30),
                        _ => sec += next() % 3,
                    }
                    text.push_str(&format!(
                        "Nov 22 {:02}:{:02}:{:02} mx postfix/smtpd[1]: connect from unknown[192.0.2.1]\n",
                        8 + sec / 3600,
                        sec / 60 % 60,
                        sec % 60
                    ));
                    these.push(Some(sec));
                }
                times.push(these);
                text
            })
            .collect();
        let expected = model(&times);
        assert_eq!(
            expected.len(),
            files.iter().map(|f| f.lines().count()).sum::<usize>()
        );
        let [one, threads] = orders(&files);
        assert_eq!(one, expected);
        assert_eq!(threads, expected);
    }
}
