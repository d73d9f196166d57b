//! The fleet through a real PostgreSQL, in one process: three nodes' fleet links (the
//! same code the daemon runs), measuring
//! - ban propagation: node A publishes a ban, node B's link hands it to its engine
//!   (p50/p99 over 200 bans, one at a time);
//! - failures per second through the database with three nodes publishing at once;
//! - the database's size per million failures.
//!
//!   bash bench/fleet.sh            # starts a temporary PostgreSQL, runs this, stops it
//!   cargo run --release --example fleet_bench -- "host=/tmp/... dbname=saslguard user=postgres"

use saslguard::fleet::{self, FleetConfig, FleetStats, Publish, Received};
use saslguard::time::Timestamp;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn node(url: &str, name: &str) -> FleetConfig {
    FleetConfig {
        url: url.to_string(),
        password_file: None,
        node: name.to_string(),
        ca_file: None,
        share_failures: true,
    }
}

struct Link {
    out: mpsc::UnboundedSender<Publish>,
    inc: mpsc::Receiver<Received>,
}

fn start(url: &str, name: &str) -> Link {
    let (out, out_rx) = mpsc::unbounded_channel();
    let (inc_tx, inc) = mpsc::channel(100_000);
    tokio::spawn(fleet::run(
        node(url, name),
        Duration::from_secs(3600),
        out_rx,
        inc_tx,
        Arc::new(FleetStats::default()),
    ));
    Link { out, inc }
}

fn now() -> Timestamp {
    Timestamp(chrono::Utc::now().timestamp_millis())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::args().nth(1).expect("a connection string");
    fleet::setup(&node(&url, "setup")).await.expect("schema");
    let (mut a, mut b, mut c) = (start(&url, "a"), start(&url, "b"), start(&url, "c"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Drain what b sees of earlier runs.
    while tokio::time::timeout(Duration::from_millis(300), b.inc.recv())
        .await
        .is_ok()
    {}

    // Propagation, one ban at a time.
    let mut lat = Vec::new();
    for i in 0..200u32 {
        let target = format!("198.18.{}.{}/32", i / 250, i % 250 + 1)
            .parse()
            .unwrap();
        let t = Instant::now();
        a.out
            .send(Publish::Ban {
                target,
                at: now(),
                until: now().add_ms(3_600_000),
                reason: "bench".into(),
                rule: "bench".into(),
                origin: "policy".into(),
            })
            .unwrap();
        loop {
            match b.inc.recv().await {
                Some(Received::Ban { target: got, .. }) if got == target => break,
                Some(_) => continue,
                None => panic!("b's link ended"),
            }
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "ban propagation, node a publishes -> node b's engine receives: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );

    // Three nodes publish failures at once; each also takes in the others' (drained
    // here as an engine would take them).
    let got: Vec<Arc<std::sync::atomic::AtomicU64>> = (0..3)
        .map(|_| Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .collect();
    for (link, n) in [&mut a, &mut b, &mut c].into_iter().zip(&got) {
        let mut inc = std::mem::replace(&mut link.inc, mpsc::channel(1).1);
        let n = n.clone();
        tokio::spawn(async move {
            while let Some(m) = inc.recv().await {
                if let Received::Failure { count, .. } = m {
                    n.fetch_add(u64::from(count), std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let per_node = 200_000u32;
    let t = Instant::now();
    let senders = [a.out.clone(), b.out.clone(), c.out.clone()];
    for (k, s) in senders.iter().enumerate() {
        for i in 0..per_node {
            s.send(Publish::Failure {
                address: std::net::IpAddr::from([10, k as u8, (i >> 8) as u8, i as u8]),
                time: now(),
                count: 1,
                service: Some("submission".into()),
                mechanism: Some("LOGIN".into()),
                user: Some(format!("user{}", i % 1000)),
                posture: "TLSv1.3 TLS_AES_256_GCM_SHA384".into(),
            })
            .unwrap();
        }
    }
    let want = 3 * per_node as i64;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let base: i64 = client
        .query_one(
            "SELECT count(*) FROM fleet_failures WHERE address << '10.0.0.0/8'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM fleet_failures WHERE address << '10.0.0.0/8'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n - base >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    // Every node has every other node's failures, each once.
    let end = Instant::now() + Duration::from_secs(60);
    let each = 2 * u64::from(per_node);
    while got
        .iter()
        .any(|n| n.load(std::sync::atomic::Ordering::Relaxed) < each)
        && Instant::now() < end
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts: Vec<u64> = got
        .iter()
        .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    println!(
        "each node received the other two nodes' failures: {:?} (want {each} each){}",
        counts,
        if counts.iter().all(|&n| n == each) {
            ", each once"
        } else {
            ": LOST OR DOUBLED"
        }
    );
    println!(
        "failures through the database, 3 nodes publishing at once: {} in {:.2} s = {:.0} failures/s",
        want,
        secs,
        want as f64 / secs
    );
    let (bytes, rows): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT pg_total_relation_size('fleet_failures'), (SELECT count(*) FROM fleet_failures)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    println!(
        "database size: {:.0} MB per million failures (fleet_failures with its indexes, {} rows)",
        bytes as f64 / rows as f64,
        rows
    );
}
