//! The cost of a `[[block]]` the size of a large country: a country database with
//! 20,000 IPv4 and 5,000 IPv6 networks of the blocked country (none adjacent, so none
//! merge) among as many of another, written here; the block computed from it (the tree
//! walked, the ranges merged), then loaded into a kernel set and replaced.
//!
//!   cargo run --release --example block_bench                   # computing only
//!   ip netns add sgbench && ip netns exec sgbench \
//!     target/release/examples/block_bench --load; ip netns del sgbench
//!
//! `bash bench/block.sh` does the second in a namespace of its own. Never run `--load`
//! in the host's own namespace: it creates a table there.

#[allow(dead_code)]
#[path = "../tests/support/mmdb.rs"]
mod mmdb;

use saslguard::block::{BlockConfig, LOGIN_PORTS, compute};
use saslguard::enforce::nft::{Nft, NftConfig};
use saslguard::geo::{Geo, GeoConfig};
use std::time::Instant;

fn main() {
    let load = std::env::args().any(|a| a == "--load");
    let dir = std::env::temp_dir().join(format!("saslguard-block-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("country.mmdb");
    // IPv4: /24s from 16.0.0.0 on, alternating XX and YY: 20,000 of each. IPv6: /48s
    // under 2a00::/16, alternating, 5,000 of each.
    let mut names: Vec<String> = Vec::new();
    let mut values: Vec<mmdb::V> = Vec::new();
    for i in 0..40_000u32 {
        let a = std::net::Ipv4Addr::from((16u32 << 24) + (i << 8));
        let cc = if i % 2 == 0 { "XX" } else { "YY" };
        names.push(format!("{a}/24"));
        values.push(mmdb::country(Some(cc), "EU"));
    }
    for i in 0..10_000u128 {
        let a = std::net::Ipv6Addr::from((0x2a00u128 << 112) + (i << 80));
        let cc = if i % 2 == 0 { "XX" } else { "YY" };
        names.push(format!("{a}/48"));
        values.push(mmdb::country(Some(cc), "EU"));
    }
    let t = Instant::now();
    let count = names.len();
    let entries = names.iter().map(String::as_str).zip(values).collect();
    std::fs::write(&db, mmdb::build("GeoLite2-Country", entries)).unwrap();
    println!(
        "database written: {count} networks, {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let geo = Geo::open(
        &GeoConfig {
            country_database: Some(db.clone()),
            asn_database: None,
            explicit: true,
        },
        (true, false),
        false,
    )
    .unwrap();
    let cfg = BlockConfig {
        name: "bench".into(),
        countries: vec!["XX".into()],
        not_countries: Vec::new(),
        asns: Vec::new(),
        networks: Vec::new(),
        ports: LOGIN_PORTS.to_vec(),
        except: Vec::new(),
    };
    let blocked = compute(&cfg, &geo).unwrap();
    let (r4, r6) = blocked.ranges.len();
    println!(
        "computed from the database: {r4} IPv4 and {r6} IPv6 ranges in {:.3} s",
        t.elapsed().as_secs_f64()
    );
    if load {
        let nft = Nft::new(NftConfig {
            table: "sgbench".into(),
            blocks: vec![("bench".into(), LOGIN_PORTS.to_vec())],
            ..NftConfig::default()
        })
        .unwrap();
        nft.setup().unwrap();
        let t = Instant::now();
        nft.load_block("bench", &blocked.ranges).unwrap();
        println!("loaded into the kernel: {:.3} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        nft.load_block("bench", &blocked.ranges).unwrap();
        println!("replaced in the kernel: {:.3} s", t.elapsed().as_secs_f64());
        // What the kernel holds, as nft lists it: every range, none lost.
        for (set, want) in [("b4_bench", r4), ("b6_bench", r6)] {
            let out = std::process::Command::new("nft")
                .args(["list", "set", "inet", "sgbench", set])
                .output()
                .expect("nft");
            let text = String::from_utf8_lossy(&out.stdout);
            let listed = text.matches('/').count();
            println!("kernel set {set}: {listed} networks listed");
            assert_eq!(listed, want, "the kernel holds every range");
        }
        nft.reset().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
