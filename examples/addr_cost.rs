//! Heap bytes per tracked address, counted exactly (a counting allocator, no RSS noise):
//! a pipeline with the daemon's tables is fed one Postfix SASL failure from each of N
//! distinct addresses (as `bench/daemon.py memory` does), with `[limits]
//! max_addresses = N` and the other limits at their defaults. Prints the live heap
//! after the feed, and per address beyond a pipeline fed nothing; then feeds lines two
//! days later, past every window, until the flood's state is swept out, and prints how
//! long that took per line and the heap after it.
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
    // Two days later, past every window: lines from then on sweep the flood's state
    // out, a piece per line (`pipeline::SWEEP_MAX` entries per table at most).
    let (mut lines, mut longest, mut total) = (0, 0.0f64, 0.0f64);
    loop {
        let line = format!(
            "2026-11-24T10:00:{:02}.000000Z mx postfix/submission/smtpd[77]: warning: unknown[2001:db8:ffff:ffff::1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=info",
            lines % 60
        );
        let stamped = stamp(line.as_bytes(), &mut resolver, &mut lossy);
        let t = std::time::Instant::now();
        p.feed(&stamped);
        let took = t.elapsed().as_secs_f64() * 1e3;
        drop(p.take_changes());
        lines += 1;
        longest = longest.max(took);
        total += took;
        if p.tracked().0 <= 1 || lines >= 1000 {
            break;
        }
    }
    let (addresses, _, _) = p.tracked();
    println!(
        "lines two days later: the flood's state gone after {lines} lines, the longest fed in {longest:.1} ms, {total:.1} ms in all; {addresses} tracked, live heap {:.1} MB ({} offender records kept)",
        LIVE.load(Ordering::Relaxed) as f64 / 1e6,
        p.offenders().len()
    );
}
