//! The store's writer thread: batches go to SQLite off the daemon's hot path.
//!
//! The engine sends each batch of changes (one per chunk of lines, ending with that
//! source's position) and never waits; the thread writes whatever has arrived in one
//! transaction. A failed write (disk full) is retried with the batches kept, so the
//! positions on disk never run ahead of the failures recorded with them.
//!
//! [`StoreWriter::busy`] is the backpressure: while the thread is that far behind, the
//! daemon stops taking lines (they wait in the log, behind a saved position), so a flood
//! costs lag, not memory. Bans and the control socket go on meanwhile.
//!
//! While the disk refuses writes (full, read-only) the daemon goes on reading and
//! banning: the batches held for the retry are merged into one after every failed
//! write ([`compact`]), keeping what a restart would read back (each source's latest
//! position, each offender's and account's latest record, the newest failures of each
//! address as deep as the windows go, every ban, lift and alert in order), so memory is
//! bounded by the same `[limits]` as the daemon's tables, not by the outage's length.
//! At a stop it retries for [`CLOSE_GRACE`] and then gives up: the positions on disk
//! are still those of the failures on disk, so the next start reads the unsaved lines
//! again and nothing counted is lost.

use crate::store::{Batch, Op, Store};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a stop waits for a disk that refuses writes.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// What the held batches may keep while the disk refuses writes (the daemon's limits).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Failures per address the sliding windows keep.
    pub failures_per_address: usize,
    pub max_addresses: usize,
    pub max_offenders: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            failures_per_address: 64,
            max_addresses: 100_000,
            max_offenders: 50_000,
        }
    }
}

/// Merges batches held for a retry into one with the same effect on what a restart
/// reads back: the latest position of each source, the latest record of each offender
/// and account, the newest `failures_per_address` failures of the most recently failing
/// `max_addresses` addresses, and every other change in order.
pub fn compact(held: Vec<Batch>, b: Bounds) -> Batch {
    use lru::LruCache;
    use std::collections::{BTreeMap, VecDeque};
    let mut failures: LruCache<IpAddr, VecDeque<Op>> = LruCache::unbounded();
    let mut offenders: LruCache<IpAddr, Op> = crate::bounded::lru(b.max_offenders);
    let mut accounts: BTreeMap<String, Op> = BTreeMap::new();
    let mut checkpoints: BTreeMap<String, Op> = BTreeMap::new();
    let mut known_good: BTreeMap<ipnet::IpNet, Op> = BTreeMap::new();
    let mut ordered: Vec<Op> = Vec::new();
    for op in held.into_iter().flatten() {
        match op {
            Op::Failure { address, .. } => {
                let q = failures.get_or_insert_mut(address, VecDeque::new);
                q.push_back(op);
                if q.len() > b.failures_per_address.max(1) {
                    q.pop_front();
                }
                if failures.len() > b.max_addresses.max(1) {
                    failures.pop_lru();
                }
            }
            Op::Offender(ref o) => {
                offenders.put(o.address, op);
            }
            Op::Account(ref a) => {
                accounts.insert(a.0.clone(), op);
            }
            Op::Checkpoint { ref source, .. } => {
                checkpoints.insert(source.clone(), op);
            }
            Op::KnownGood { key, .. } => {
                known_good.insert(key, op);
            }
            other => ordered.push(other),
        }
    }
    let mut out: Batch = Vec::new();
    // Oldest address first, each address's failures in time order.
    while let Some((_, q)) = failures.pop_lru() {
        out.extend(q);
    }
    while let Some((_, o)) = offenders.pop_lru() {
        out.push(o);
    }
    out.extend(accounts.into_values());
    out.extend(known_good.into_values());
    out.extend(ordered);
    // Last: the positions, in the same transaction as everything they cover.
    out.extend(checkpoints.into_values());
    out
}

/// How long the thread waits for the next batch after a write before it gives freed
/// memory back.
const QUIET: Duration = Duration::from_secs(1);

/// Batches sent and not yet taken by the thread beyond which the writer is busy.
const BUSY: usize = 32;

enum Msg {
    Batch(Batch),
    Flush(mpsc::Sender<Result<(), FlushError>>),
}

/// What was sent could not be confirmed on disk.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushError {
    #[error("store closed")]
    Closed,
    #[error("store thread gone")]
    Gone,
    #[error("{0}")]
    Write(String),
}

pub struct StoreWriter {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    queued: Arc<AtomicUsize>,
    pub errors: Arc<AtomicU64>,
    pub written: Arc<AtomicU64>,
}

impl StoreWriter {
    pub fn start(mut store: Store, bounds: Bounds) -> StoreWriter {
        let (tx, rx) = mpsc::channel::<Msg>();
        let errors = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let (e, w, q) = (errors.clone(), written.clone(), queued.clone());
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let mut held: Vec<Batch> = Vec::new();
                let mut acks: Vec<mpsc::Sender<Result<(), FlushError>>> = Vec::new();
                let mut open = true;
                let mut closing_since: Option<std::time::Instant> = None;
                // Written since memory was last given back (see `release_memory`).
                let mut wrote = false;
                while open || !held.is_empty() {
                    // Waiting with nothing held; with batches held (the disk refused
                    // them), only as long as the retry pause.
                    let first = if held.is_empty() && wrote {
                        match rx.recv_timeout(QUIET) {
                            Ok(m) => Some(m),
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                super::release_memory();
                                wrote = false;
                                continue;
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => None,
                        }
                    } else if held.is_empty() {
                        rx.recv().ok()
                    } else if open {
                        match rx.recv_timeout(Duration::from_millis(100)) {
                            Ok(m) => Some(m),
                            Err(mpsc::RecvTimeoutError::Timeout) => None,
                            Err(mpsc::RecvTimeoutError::Disconnected) => {
                                open = false;
                                None
                            }
                        }
                    } else {
                        None
                    };
                    let take = |m: Msg, held: &mut Vec<Batch>, acks: &mut Vec<_>| match m {
                        Msg::Batch(b) => {
                            q.fetch_sub(1, Ordering::Relaxed);
                            held.push(b)
                        }
                        Msg::Flush(a) => acks.push(a),
                    };
                    match first {
                        Some(m) => take(m, &mut held, &mut acks),
                        None if held.is_empty() => open = false,
                        None => {}
                    }
                    // Everything waiting goes into `held`, merged below if the disk
                    // refuses it.
                    while let Ok(m) = rx.try_recv() {
                        take(m, &mut held, &mut acks);
                    }
                    if held.is_empty() {
                        for a in acks.drain(..) {
                            let _ = a.send(Ok(()));
                        }
                        continue;
                    }
                    match store.write(&held) {
                        Ok(()) => {
                            wrote = true;
                            w.fetch_add(held.len() as u64, Ordering::Relaxed);
                            held.clear();
                            for a in acks.drain(..) {
                                let _ = a.send(Ok(()));
                            }
                        }
                        Err(err) => {
                            e.fetch_add(1, Ordering::Relaxed);
                            for a in acks.drain(..) {
                                let _ = a.send(Err(FlushError::Write(err.to_string())));
                            }
                            let n = held.len();
                            let merged = compact(std::mem::take(&mut held), bounds);
                            tracing::error!(
                                "{err}; {n} batches held as one of {} changes, retrying",
                                merged.len()
                            );
                            held.push(merged);
                            if !open {
                                let since = *closing_since.get_or_insert_with(std::time::Instant::now);
                                if since.elapsed() >= CLOSE_GRACE {
                                    tracing::error!(
                                        "store: stopping with changes not written ({err}); the lines after the last saved position will be read again at the next start"
                                    );
                                    break;
                                }
                            }
                            // A pause before the retry; meanwhile batches queue up and
                            // the daemon's intake slows (backpressure), bounding the work.
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                }
            })
            .expect("spawn the store thread");
        StoreWriter {
            tx: Some(tx),
            thread: Some(thread),
            queued,
            errors,
            written,
        }
    }

    pub fn send(&self, batch: Batch) {
        if let Some(tx) = &self.tx {
            // Counted before sending, so the thread never takes it below zero.
            self.queued.fetch_add(1, Ordering::Relaxed);
            if tx.send(Msg::Batch(batch)).is_err() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// True while the thread has more batches waiting than it should.
    pub fn busy(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > BUSY
    }

    /// Waits until everything sent so far is on disk.
    pub fn flush(&self) -> Result<(), FlushError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .as_ref()
            .ok_or(FlushError::Closed)?
            .send(Msg::Flush(tx))
            .map_err(|_| FlushError::Gone)?;
        rx.recv().map_err(|_| FlushError::Gone)?
    }

    /// Writes what is left and stops the thread.
    pub fn close(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn held_batches_merge_into_what_a_restart_reads_back() {
        let b = Bounds {
            failures_per_address: 3,
            max_addresses: 2,
            max_offenders: 2,
        };
        // 100 batches of lines: a failure from one of two addresses each (and from a
        // third, first, that fails no more), a position.
        let held: Vec<Batch> = (0..100)
            .map(|i| {
                vec![
                    Op::Failure {
                        address: format!("192.0.2.{}", if i == 0 { 9 } else { i % 2 })
                            .parse()
                            .unwrap(),
                        time: Timestamp(i),
                        count: 1,
                    },
                    Op::Checkpoint {
                        source: "file:/var/log/mail.log".into(),
                        position: format!("1:2:{i}"),
                        at: Timestamp(i),
                    },
                ]
            })
            .collect();
        let m = compact(held, b);
        let failures: Vec<(String, i64)> = m
            .iter()
            .filter_map(|op| match op {
                Op::Failure { address, time, .. } => Some((address.to_string(), time.0)),
                _ => None,
            })
            .collect();
        // The two most recently failing addresses, their newest three each.
        assert_eq!(
            failures,
            [
                ("192.0.2.0", 94),
                ("192.0.2.0", 96),
                ("192.0.2.0", 98),
                ("192.0.2.1", 95),
                ("192.0.2.1", 97),
                ("192.0.2.1", 99)
            ]
            .map(|(a, t)| (a.to_string(), t))
        );
        // One position, the latest, last.
        assert_eq!(m.len(), 7);
        assert!(matches!(m.last(), Some(Op::Checkpoint { position, .. }) if position == "1:2:99"));
        // Merging again changes nothing.
        let again = compact(vec![m.clone()], b);
        assert_eq!(again.len(), m.len());
    }
}
