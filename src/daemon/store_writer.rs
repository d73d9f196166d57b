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

use crate::store::{Batch, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Batches kept in memory while the disk refuses writes; beyond, the oldest go.
const MAX_HELD: usize = 100_000;

/// Batches sent and not yet taken by the thread beyond which the writer is busy.
const BUSY: usize = 32;

enum Msg {
    Batch(Batch),
    Flush(mpsc::Sender<Result<(), String>>),
}

pub struct StoreWriter {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    queued: Arc<AtomicUsize>,
    pub errors: Arc<AtomicU64>,
    pub written: Arc<AtomicU64>,
}

impl StoreWriter {
    pub fn start(mut store: Store) -> StoreWriter {
        let (tx, rx) = mpsc::channel::<Msg>();
        let errors = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let (e, w, q) = (errors.clone(), written.clone(), queued.clone());
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let mut held: Vec<Batch> = Vec::new();
                let mut acks: Vec<mpsc::Sender<Result<(), String>>> = Vec::new();
                let mut open = true;
                while open || !held.is_empty() {
                    let first = if held.is_empty() {
                        rx.recv().ok()
                    } else {
                        rx.recv_timeout(Duration::from_secs(1)).ok()
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
                    // Everything waiting goes into `held`, so that while the disk
                    // refuses writes the MAX_HELD cap below bounds the memory.
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
                            w.fetch_add(held.len() as u64, Ordering::Relaxed);
                            held.clear();
                            for a in acks.drain(..) {
                                let _ = a.send(Ok(()));
                            }
                        }
                        Err(err) => {
                            e.fetch_add(1, Ordering::Relaxed);
                            tracing::error!("{err}; keeping {} batches to retry", held.len());
                            for a in acks.drain(..) {
                                let _ = a.send(Err(err.to_string()));
                            }
                            if held.len() > MAX_HELD {
                                let drop = held.len() - MAX_HELD;
                                held.drain(..drop);
                                tracing::error!(
                                    "store: {drop} batches dropped after repeated write errors"
                                );
                            }
                            if !open {
                                break;
                            }
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
    pub fn flush(&self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .as_ref()
            .ok_or("store closed")?
            .send(Msg::Flush(tx))
            .map_err(|_| "store thread gone".to_string())?;
        rx.recv().map_err(|_| "store thread gone".to_string())?
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
