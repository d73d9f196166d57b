//! Several files read as one log, merged by the time in their lines: the one merge that
//! `replay`, `parse`, `tls`, `trace` and `report --from-logs` share. Files given one after
//! the other (`mail.log.1 mail.log`) come out in order; files written side by side
//! (Postfix's and Dovecot's) are interleaved by time, ties going to the file named first.
//! A line without a time (garbage, too long, an impossible date) comes out where it was
//! read, so it can be counted; it takes no part in the ordering.
//!
//! It hands on what a caller's `prepare` makes of each stamped line and knows nothing of
//! what lines mean.

use super::file::{FileSource, SourceError, TimeSettings};
use super::{Skip, Stamped};
use crate::parse::syslog::Prefix;
use crate::time::{LineTime, Timestamp};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Merge {
    sources: Vec<FileSource>,
    rule: ShareRule,
}

impl Merge {
    pub fn open(paths: &[PathBuf], max_line: usize, t: TimeSettings) -> Result<Merge, SourceError> {
        let sources = paths
            .iter()
            .map(|p| FileSource::open(p, max_line, t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Merge {
            sources,
            rule: ShareRule::Balance,
        })
    }

    /// Which thread prepares the lines with [`Threads::PerFile`] ([`ShareRule::Balance`]
    /// unless set).
    pub fn share(mut self, rule: ShareRule) -> Merge {
        self.rule = rule;
        self
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
    /// Each file is read and stamped in a thread of its own, in batches; the calling
    /// thread merges and consumes, in the same order as with [`Threads::One`]. Each
    /// batch is prepared by its reader or, when the calling thread has taken every batch
    /// sent before it ([`ShareRule::Balance`]), by the calling thread: on a realistic
    /// log the reading half had the larger share of the work (issue 17).
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
/// Bytes of line text a held batch takes before it is sent, at most [`BATCH`] lines:
/// its buffer is made this size once and kept (a line longer than what is left grows
/// it once).
const HELD_BYTES: usize = 128 * 1024;

type Pulled<T> = Option<(u64, Option<Timestamp>, T)>;

impl Merge {
    /// Hands every line of the merged log to `f`, in order, as `prepare` made it (from
    /// the stamped line alone); stops at the first error, of a file or of `f`. With
    /// [`Threads::PerFile`] the reading and stamping happen on one thread per file while
    /// this one merges, and each batch is prepared on one of the two (the merge's
    /// [`ShareRule`]): `f` sees the same items in the same order either way.
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
                // Held batches the consumer is done with go back to be filled again:
                // their buffers are made once, not once a batch.
                let (back, spare) = std::sync::mpsc::channel();
                let queued = Arc::new(AtomicUsize::new(0));
                let share = Share {
                    queued: Arc::clone(&queued),
                    rule: self.rule,
                    spare,
                };
                let prepare = &prepare;
                scope.spawn(move || read_ahead(src, prepare, tx, share));
                feeds.push((rx, queued, back, Current::Ready(Vec::new().into_iter())));
            }
            let pull = |i: usize| -> Result<Pulled<T>, SourceError> {
                let (rx, queued, back, current) = &mut feeds[i];
                loop {
                    if let Some(x) = current.next(&prepare) {
                        return Ok(Some(x));
                    }
                    match rx.recv() {
                        Ok(Ok(b)) => {
                            queued.fetch_sub(1, Ordering::Relaxed);
                            let done = std::mem::replace(
                                current,
                                match b {
                                    Batch::Ready(v) => Current::Ready(v.into_iter()),
                                    Batch::Held(h) => Current::Held(h, 0),
                                },
                            );
                            if let Current::Held(h, _) = done {
                                // A reader gone has no use for it.
                                let _ = back.send(h);
                            }
                        }
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

/// Which thread prepares a batch of [`Threads::PerFile`]: the reader, or the thread
/// that merges and consumes, which then prepares each line as it takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareRule {
    /// The consumer prepares a batch when it had taken every batch sent before it
    /// (it is waiting, or soon will): the two threads share the work whichever side
    /// is heavier.
    Balance,
    /// The reader prepares every line (no line text is copied).
    Reader,
    /// The consumer prepares every line (tests: every line takes the held path).
    Consumer,
}

/// A reader thread's view of its consumer: batches sent and not yet taken, and held
/// batches given back.
struct Share {
    queued: Arc<AtomicUsize>,
    rule: ShareRule,
    spare: std::sync::mpsc::Receiver<HeldBatch>,
}

impl Share {
    fn hold_next(&self) -> bool {
        match self.rule {
            ShareRule::Balance => self.queued.load(Ordering::Relaxed) == 0,
            ShareRule::Reader => false,
            ShareRule::Consumer => true,
        }
    }
}

/// A stamped line held by value for the consumer to prepare: its text in its batch's
/// buffer, its host and message as ranges of that text.
struct Held {
    line_no: u64,
    text: Range<usize>,
    lossy: bool,
    len: usize,
    stamp: Result<HeldPrefix, Skip>,
}

/// A [`Prefix`] with its time, as ranges of its line's batch text.
struct HeldPrefix {
    time: Timestamp,
    written: LineTime,
    host: Option<Range<usize>>,
    rest: Range<usize>,
}

struct HeldBatch {
    text: String,
    lines: Vec<Held>,
}

impl HeldBatch {
    fn new() -> HeldBatch {
        HeldBatch {
            text: String::with_capacity(HELD_BYTES),
            lines: Vec::with_capacity(BATCH),
        }
    }

    fn push(&mut self, line_no: u64, line: &Stamped) {
        let start = self.text.len();
        self.text.push_str(line.text);
        let at = |part: &str| {
            let r = line.range_of(part);
            start + r.start..start + r.end
        };
        self.lines.push(Held {
            line_no,
            text: start..self.text.len(),
            lossy: line.lossy,
            len: line.len,
            stamp: match &line.stamp {
                Ok((t, p)) => Ok(HeldPrefix {
                    time: *t,
                    written: p.time,
                    host: p.host.map(at),
                    rest: at(p.rest),
                }),
                Err(why) => Err(*why),
            },
        });
    }
}

/// The stamped line `h` holds, borrowed from its batch's `text`.
fn unhold<'a>(text: &'a str, h: &Held) -> Stamped<'a> {
    Stamped {
        text: &text[h.text.clone()],
        lossy: h.lossy,
        len: h.len,
        stamp: match &h.stamp {
            Ok(p) => Ok((
                p.time,
                Prefix {
                    time: p.written,
                    host: p.host.clone().map(|r| &text[r]),
                    rest: &text[p.rest.clone()],
                },
            )),
            Err(why) => Err(*why),
        },
    }
}

enum Batch<T> {
    Ready(Vec<(u64, Option<Timestamp>, T)>),
    Held(HeldBatch),
}

/// The batch a consumer is taking lines from (a held one with its next line).
enum Current<T> {
    Ready(std::vec::IntoIter<(u64, Option<Timestamp>, T)>),
    Held(HeldBatch, usize),
}

impl<T> Current<T> {
    fn next<P: Fn(&Stamped) -> T>(&mut self, prepare: &P) -> Pulled<T> {
        match self {
            Current::Ready(it) => it.next(),
            Current::Held(b, next) => b.lines.get(*next).map(|h| {
                *next += 1;
                let line = unhold(&b.text, h);
                (h.line_no, line.time(), prepare(&line))
            }),
        }
    }
}

type Sent<T> = Result<Batch<T>, SourceError>;

/// A reader thread: the file's lines, stamped, in batches, each prepared here or held
/// for the consumer to prepare as `share` says; then its end (the channel closing) or
/// its error.
fn read_ahead<T, P>(
    src: &mut FileSource,
    prepare: &P,
    tx: std::sync::mpsc::SyncSender<Sent<T>>,
    share: Share,
) where
    P: Fn(&Stamped) -> T,
{
    let send = |b: Batch<T>| {
        share.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(Ok(b)).is_ok()
    };
    let new_batch = || {
        if share.hold_next() {
            Batch::Held(match share.spare.try_recv() {
                Ok(mut b) => {
                    b.text.clear();
                    b.lines.clear();
                    b
                }
                Err(_) => HeldBatch::new(),
            })
        } else {
            Batch::Ready(Vec::with_capacity(BATCH))
        }
    };
    let mut batch = new_batch();
    loop {
        match src.next_stamped() {
            Ok(Some((no, line))) => {
                let full = match &mut batch {
                    Batch::Ready(v) => {
                        v.push((no, line.time(), prepare(&line)));
                        v.len() == BATCH
                    }
                    Batch::Held(h) => {
                        h.push(no, &line);
                        h.lines.len() == BATCH || h.text.len() >= HELD_BYTES
                    }
                };
                if full {
                    let next = new_batch();
                    if !send(std::mem::replace(&mut batch, next)) {
                        return;
                    }
                }
            }
            Ok(None) => {
                if !batch.is_empty() {
                    send(batch);
                }
                return;
            }
            Err(e) => {
                if !batch.is_empty() && !send(batch) {
                    return;
                }
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

impl<T> Batch<T> {
    fn is_empty(&self) -> bool {
        match self {
            Batch::Ready(v) => v.is_empty(),
            Batch::Held(h) => h.lines.is_empty(),
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

    /// Every line [`Merge::run`] hands on, as (file, line number, the stamped line as
    /// `prepare` saw it, whole), read with `threads` and `rule`.
    fn items(files: &[Vec<u8>], threads: Threads, rule: ShareRule) -> Vec<(usize, u64, String)> {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = files
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let p = dir.path().join(format!("{i}.log"));
                std::fs::File::create(&p).unwrap().write_all(text).unwrap();
                p
            })
            .collect();
        let t = TimeSettings {
            zone: Zone::utc(),
            year: Some(2026),
            now: Timestamp(0),
        };
        let mut got = Vec::new();
        Merge::open(&paths, 1000, t)
            .unwrap()
            .share(rule)
            .run(
                threads,
                |l: &Stamped| format!("{l:?}"),
                |m| {
                    got.push((m.source, m.line_no, m.value));
                    Ok::<_, SourceError>(())
                },
            )
            .unwrap();
        got
    }

    /// The order lines come out in, as (file, line number), by [`Merge::run`] without
    /// reader threads, and with them whichever thread prepares the lines. Each way
    /// hands on the same stamped lines.
    fn orders(files: &[String]) -> Vec<Vec<(usize, u64)>> {
        let files: Vec<Vec<u8>> = files.iter().map(|f| f.clone().into_bytes()).collect();
        let one = items(&files, Threads::One, ShareRule::Balance);
        [ShareRule::Balance, ShareRule::Reader, ShareRule::Consumer]
            .into_iter()
            .map(|rule| {
                let got = items(&files, Threads::PerFile, rule);
                assert_eq!(got, one, "{rule:?}");
                got
            })
            .chain([one.clone()])
            .map(|v| v.into_iter().map(|(f, n, _)| (f, n)).collect())
            .collect()
    }

    /// A line the consumer prepares (held by the reader as text and ranges) is the
    /// line the reader would have prepared: invalid UTF-8 replaced, no host, a TAI64N
    /// or naive stamp, garbage and a line too long among them, over several batches.
    #[test]
    fn a_held_line_is_the_stamped_line() {
        let mut log = Vec::new();
        for i in 0..(BATCH * 3 + 5) {
            let line: &[u8] = match i % 7 {
                0 => b"Nov 22 08:00:01 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
                1 => b"2026-11-22T08:00:02.5+01:00 mx dovecot: imap-login: Disconnected: user=<\xff\xfe>",
                2 => b"Nov 22 08:00:03 imap-login: Info: Aborted login (auth failed, 1 attempts): user=<\xc3(>, rip=192.0.2.7",
                3 => b"garbage",
                4 => b"@400000004c91b044077a9e94 imap-login: Info: Aborted",
                5 => b"2013-08-11 03:56:40 auth-worker(default): Info: pam(u,192.0.2.4): x",
                _ => b"Nov 22 08:00:04 mx x",
            };
            log.extend_from_slice(line);
            if i % 11 == 0 {
                log.extend_from_slice(&[b'y'; 1200]);
            }
            if i % 5 == 0 {
                log.extend_from_slice(&[0xff, 0xc3, b'(', 0xe2, 0x82]);
            }
            log.push(b'\n');
        }
        let files = [log.clone(), log];
        let one = items(&files, Threads::One, ShareRule::Balance);
        assert_eq!(one.len(), (BATCH * 3 + 5) * 2);
        assert!(one.iter().any(|(_, _, l)| l.contains("lossy: true")));
        assert!(one.iter().any(|(_, _, l)| l.contains("TooLong")));
        assert!(one.iter().any(|(_, _, l)| l.contains("host: None")));
        for rule in [ShareRule::Consumer, ShareRule::Reader, ShareRule::Balance] {
            assert_eq!(items(&files, Threads::PerFile, rule), one, "{rule:?}");
        }
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
        for got in orders(&files) {
            assert_eq!(got, expected);
        }
    }
}
