//! Where replay's time goes, stage by stage, on one log file held in memory (no I/O):
//! splitting lines, stamping them (UTF-8 check, syslog prefix, time), parsing them to
//! events, and the whole pipeline (counting, windows, policy, alerts, offender
//! records). Each row but the last includes the rows above it; the last times the
//! counting half alone, over lines parsed beforehand. Best of 3 passes.
//!
//! cargo run --release --example stage_cost -- FILE

use saslguard::config::Config;
use saslguard::geo::Geo;
use saslguard::parse::parse_prefixed;
use saslguard::pipeline::{Pipeline, Prepared, Record, Snapshot};
use saslguard::source::stamp;
use saslguard::time::{YearResolver, Zone};
use std::time::Instant;

/// The binary's allocator, so the numbers are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

fn best(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut t = f64::MAX;
    let mut n = 0;
    for _ in 0..3 {
        let start = Instant::now();
        n = std::hint::black_box(f());
        t = t.min(start.elapsed().as_secs_f64());
    }
    (t, n)
}

/// Times only [`Pipeline::apply`], over lines prepared beforehand (outside the clock).
fn best_of_prepared(data: &[u8], cfg: &Config) -> (f64, usize) {
    let mut t = f64::MAX;
    let mut n = 0;
    for _ in 0..3 {
        let mut r = YearResolver::with_year(Zone::utc(), 2026);
        let mut lossy = String::new();
        let prepared: Vec<Prepared> = lines(data)
            .map(|l| Prepared::of(&stamp(l, &mut r, &mut lossy)))
            .collect();
        let mut p = Pipeline::new(cfg, Geo::none(), Record::Nothing, &Snapshot::default());
        let start = Instant::now();
        let mut bans = 0;
        for l in &prepared {
            bans += p.apply(l).len();
        }
        t = t.min(start.elapsed().as_secs_f64());
        n = std::hint::black_box(bans);
    }
    (t, n)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: stage_cost FILE");
    let data = std::fs::read(&path).expect("read the log");
    let total = lines(&data).count();
    let cfg = Config::default();
    let resolver = || YearResolver::with_year(Zone::utc(), 2026);
    let rows: Vec<(&str, (f64, usize))> = vec![
        (
            "split lines",
            best(|| lines(&data).map(|l| l.len()).sum::<usize>()),
        ),
        (
            "+ stamp (UTF-8, prefix, time)",
            best(|| {
                let mut r = resolver();
                let mut lossy = String::new();
                lines(&data)
                    .filter(|l| stamp(l, &mut r, &mut lossy).stamp.is_ok())
                    .count()
            }),
        ),
        (
            "+ parse to events",
            best(|| {
                let mut r = resolver();
                let mut lossy = String::new();
                let mut events = 0;
                for l in lines(&data) {
                    if let Ok((_, p)) = stamp(l, &mut r, &mut lossy).stamp {
                        events += usize::from(parse_prefixed(&p).event.is_some());
                    }
                }
                events
            }),
        ),
        (
            "+ pipeline (whole replay but I/O and report)",
            best(|| {
                let mut r = resolver();
                let mut lossy = String::new();
                let mut p = Pipeline::new(&cfg, Geo::none(), Record::Nothing, &Snapshot::default());
                let mut bans = 0;
                for l in lines(&data) {
                    bans += p.feed(&stamp(l, &mut r, &mut lossy)).len();
                }
                bans
            }),
        ),
        (
            "apply alone (the counting thread of --threads 2)",
            best_of_prepared(&data, &cfg),
        ),
    ];
    println!("{total} lines, {} MB", data.len() / 1_000_000);
    println!("| stage | s | ns/line | lines/s |");
    println!("|---|---|---|---|");
    for (name, (t, _)) in rows {
        println!(
            "| {name} | {t:.3} | {:.0} | {:.0} |",
            t * 1e9 / total as f64,
            total as f64 / t
        );
    }
}
