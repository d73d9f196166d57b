//! Heap bytes per tracked address, counted exactly (a counting allocator, no RSS noise):
//! a pipeline with the daemon's tables is fed one Postfix SASL failure from each of N
//! distinct addresses (as `bench/daemon.py memory` does), with `[limits]
//! max_addresses = N` and the other limits at their defaults. Prints the live heap
//! after the feed, and per address beyond a pipeline fed nothing.
//!
//! cargo run --release --example addr_cost -- 1000000

// A global allocator is an unsafe trait: the one unsafe code outside `nft_sys.rs`, in
// a measuring tool that does not ship.
#![allow(unsafe_code)]

use saslguard::config::Config;
use saslguard::geo::Geo;
use saslguard::pipeline::{Pipeline, Record, Snapshot};
use saslguard::source::stamp;
use saslguard::time::{YearResolver, Zone};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let text = format!("[limits]\nmax_addresses = {n}\n");
    let cfg = saslguard::config::parse(&text, std::path::Path::new("addr_cost.toml"))
        .expect("a valid configuration");
    let cfg: Config = cfg;
    let mut resolver = YearResolver::with_year(Zone::utc(), 2026);
    let mut lossy = String::new();
    let mut p = Pipeline::new(&cfg, Geo::none(), Record::Changes, &Snapshot::default());
    let empty = LIVE.load(Ordering::Relaxed);
    PEAK.store(empty, Ordering::Relaxed);
    for i in 1..=n {
        let line = format!(
            "2026-11-22T10:00:00.000000Z mx postfix/submission/smtpd[77]: warning: unknown[2001:db8:{:x}:{:x}::1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=info",
            i >> 16,
            i & 0xffff
        );
        p.feed(&stamp(line.as_bytes(), &mut resolver, &mut lossy));
        // The daemon drains what changed after each batch.
        if i % 1000 == 0 {
            drop(p.take_changes());
        }
    }
    drop(p.take_changes());
    let live = LIVE.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    let (addresses, _, _) = p.tracked();
    println!(
        "{n} addresses ({addresses} tracked, {} offender records): live heap {:.1} MB, peak {:.1} MB; {:.0} bytes per address over an empty pipeline ({:.1} MB)",
        p.offenders().len(),
        live as f64 / 1e6,
        peak as f64 / 1e6,
        (live - empty) as f64 / n as f64,
        empty as f64 / 1e6
    );
}
