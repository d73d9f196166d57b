//! The fleet against a real PostgreSQL and two saslguard nodes, each in a network
//! namespace of its own with its own nftables: a ban on one node reaches the other's
//! kernel, a lift too; a compromised node's ban of everything is refused; the database
//! stopped mid-run loses nothing.

use crate::support;
use crate::support::{Daemon, Netns, Postgres, append, failures};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");

fn node(net: &Netns, log: &std::path::Path, pg: &Postgres, name: &str) -> Daemon {
    Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n\
             [cluster]\nenabled = true\nurl = \"{}\"\nnode = \"{name}\"\n\
             [[rule]]\nname = \"fleet\"\nfailures = 4\nwithin = \"10m\"\nban = \"1h\"\n",
            log.display(),
            pg.url()
        ),
    )
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < end, "{what} within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_nodes_ban_together_through_postgresql() {
    if !support::can_run(
        "two_nodes_ban_together_through_postgresql",
        &["ip", "nft", "runuser", "psql"],
    ) {
        return;
    }
    if Postgres::bin().is_none() {
        support::skip(
            "two_nodes_ban_together_through_postgresql",
            "PostgreSQL is not installed (apt-get install postgresql)",
        );
        return;
    }
    let pg = Postgres::start();
    let (net_a, net_b) = (Netns::new(&["192.0.2.50"]), Netns::new(&["192.0.2.51"]));
    let work = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (work.path().join("a.log"), work.path().join("b.log"));
    append(&log_a, "");
    append(&log_b, "");
    let a = node(&net_a, &log_a, &pg, "a");
    // The schema, as an admin sets it up once.
    let out = support::run(
        std::process::Command::new(BIN)
            .args(["cluster", "setup", "-c"])
            .arg(a.config_path()),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("GRANT SELECT, INSERT, UPDATE ON fleet_bans")
    );
    let b = node(&net_b, &log_b, &pg, "b");

    // A ban by hand on node a: in b's kernel within seconds, with where it came from.
    assert!(
        a.ctl(&["ban", "198.51.100.7", "--for", "1h"])
            .status
            .success()
    );
    wait_for("a's ban in b's kernel", 10, || {
        b.kernel_set("addr4").contains("198.51.100.7")
    });
    let bans = b.json("bans");
    assert!(
        bans["bans"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("[node a]"),
        "{bans:#}"
    );
    assert_eq!(bans["bans"][0]["origin"], "fleet");

    // A ban node b's policy decides, from its own log: in a's kernel.
    append(&log_b, &failures("203.0.113.9", 10));
    wait_for("b's policy ban in a's kernel", 15, || {
        a.kernel_set("addr4").contains("203.0.113.9")
    });

    // A guesser spreads its tries: 2 on each node, under the threshold of 4 on either,
    // 4 in the fleet: banned on both.
    append(&log_a, &failures("203.0.113.77", 2));
    append(&log_b, &failures("203.0.113.77", 2));
    wait_for("the spread-out guesser banned on both nodes", 15, || {
        a.kernel_set("addr4").contains("203.0.113.77")
            && b.kernel_set("addr4").contains("203.0.113.77")
    });
    // Each failure is in the fleet once.
    assert_eq!(
        pg.sql("SELECT sum(count) FROM fleet_failures WHERE address = '203.0.113.77'")
            .trim(),
        "4"
    );

    // Node b is down while a counts 2 more tries of another guesser; b, started again,
    // reads them from the fleet and its own 2 tries make 4.
    let mut b = b;
    assert!(b.stop().success());
    append(&log_a, &failures("203.0.113.88", 2));
    wait_for("a's failures in the fleet", 10, || {
        pg.sql("SELECT coalesce(sum(count), 0) FROM fleet_failures WHERE address = '203.0.113.88'")
            .trim()
            == "2"
    });
    b.restart();
    append(&log_b, &failures("203.0.113.88", 2));
    wait_for("the guesser banned after b's restart", 15, || {
        b.kernel_set("addr4").contains("203.0.113.88")
    });

    // A lift on node b reaches a.
    assert!(b.ctl(&["unban", "198.51.100.7"]).status.success());
    wait_for("the lift in a's kernel", 10, || {
        !a.kernel_set("addr4").contains("198.51.100.7")
    });

    // A compromised node writes a ban of everything and of a's own address: refused by
    // each node's own checks.
    pg.sql(
        "INSERT INTO fleet_bans(target, at, until, reason, rule, origin, node) VALUES \
         ('0.0.0.0/0', now(), now() + interval '1 hour', 'x', 'x', 'policy', 'evil'), \
         ('192.0.2.1/32', now(), now() + interval '1 hour', 'x', 'x', 'policy', 'evil'); \
         NOTIFY saslguard_bans",
    );
    wait_for("the evil bans refused on both nodes", 10, || {
        a.json("status")["cluster"]["refused"] == 2 && b.json("status")["cluster"]["refused"] == 2
    });
    for d in [&a, &b] {
        assert!(!d.kernel_set("net4").contains("0.0.0.0/0"));
        assert!(!d.kernel_set("addr4").contains("192.0.2.1"));
    }

    // The database stops: a still bans at once, queues, and publishes when it returns.
    pg.down();
    assert!(
        a.ctl(&["ban", "198.51.100.99", "--for", "1h"])
            .status
            .success()
    );
    assert!(
        a.kernel_set("addr4").contains("198.51.100.99"),
        "a local ban needs no database"
    );
    wait_for("a to count the queued ban", 10, || {
        let s = a.json("status");
        s["cluster"]["connected"] == false && s["cluster"]["queued"] == 1
    });
    pg.up();
    wait_for("the queued ban in b's kernel", 40, || {
        b.kernel_set("addr4").contains("198.51.100.99")
    });
    let s = a.json("status");
    assert_eq!(s["cluster"]["queued"], 0, "{s:#}");
    assert_eq!(s["cluster"]["dropped"], 0, "{s:#}");
    // The fleet as the database sees it.
    let out = support::run(
        std::process::Command::new(BIN)
            .args(["cluster", "status", "--json", "-c"])
            .arg(a.config_path()),
    );
    assert!(out.status.success(), "{out:?}");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes: Vec<&str> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["a", "b"], "{st:#}");
    assert_eq!(st["schema_version"], 3);
    // The fleet's bans and who decided them, from any node's configuration.
    let out = support::run(
        std::process::Command::new(BIN)
            .args(["bans", "--fleet", "--json", "-c"])
            .arg(b.config_path()),
    );
    assert!(out.status.success(), "{out:?}");
    let fb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by = |t: &str| {
        fb.as_array()
            .unwrap()
            .iter()
            .find(|x| x["target"] == t)
            .map(|x| x["node"].as_str().unwrap().to_string())
    };
    assert_eq!(by("198.51.100.99").as_deref(), Some("a"), "{fb:#}");
    assert_eq!(by("203.0.113.9").as_deref(), Some("b"), "{fb:#}");
    assert_eq!(by("198.51.100.7"), None, "lifted: {fb:#}");
    // The report's fleet view: what each node counted.
    let out = support::run(
        std::process::Command::new(BIN)
            .args(["report", "--fleet", "--json", "--since", "1h", "--store"])
            .arg(a.state().join("saslguard.db"))
            .arg("-c")
            .arg(a.config_path()),
    );
    assert!(out.status.success(), "{out:?}");
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = |n: &str| {
        rep["fleet"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == n)
            .cloned()
            .unwrap_or_default()
    };
    // a counted 2 + 2 tries, b 10 + 2 + 2 (the lines appended to each node's log).
    assert_eq!(node("a")["failures"], 4, "{rep:#}");
    assert_eq!(node("b")["failures"], 14, "{rep:#}");
    // Published once: one row for the target.
    assert_eq!(
        pg.sql("SELECT count(*) FROM fleet_bans WHERE target = '198.51.100.99/32'")
            .trim(),
        "1"
    );
}

#[test]
fn the_fleet_database_is_reached_over_tls_with_its_certificate_checked() {
    if !support::can_run(
        "the_fleet_database_is_reached_over_tls_with_its_certificate_checked",
        &["runuser", "psql", "openssl"],
    ) {
        return;
    }
    if Postgres::bin().is_none() {
        support::skip(
            "the_fleet_database_is_reached_over_tls_with_its_certificate_checked",
            "PostgreSQL is not installed (apt-get install postgresql)",
        );
        return;
    }
    // A free port on loopback for the database's TLS listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_pg, ca) = Postgres::start_tls(port);
    let dir = tempfile::tempdir().unwrap();
    let setup = |sslmode: &str, ca_file: &str| {
        let cfg = dir.path().join("saslguard.toml");
        std::fs::write(
            &cfg,
            format!(
                "[cluster]\nenabled = true\nurl = \"host=127.0.0.1 port={port} dbname=saslguard user=postgres sslmode={sslmode}\"\nnode = \"a\"\nca_file = \"{ca_file}\"\n"
            ),
        )
        .unwrap();
        support::run(
            std::process::Command::new(BIN)
                .args(["cluster", "setup", "-c"])
                .arg(&cfg),
        )
    };
    let ca = ca.display().to_string();
    let ok = setup("require", &ca);
    assert!(ok.status.success(), "TLS with the database's CA: {ok:?}");
    // The certificate is checked: without its CA the connection is refused.
    let no_ca = setup("require", "");
    assert!(!no_ca.status.success());
    assert!(
        String::from_utf8_lossy(&no_ca.stderr).contains("certificate"),
        "{no_ca:?}"
    );
    // And the database takes no connection without TLS: the first one used it.
    let plain = setup("disable", &ca);
    assert!(!plain.status.success(), "{plain:?}");
}
