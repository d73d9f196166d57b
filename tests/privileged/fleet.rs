//! The fleet against a real PostgreSQL and three saslguard nodes, each in a network
//! namespace of its own with its own nftables, connecting as a role with only the
//! grants `cluster setup` prints: a guesser spread over the nodes is banned on all; a
//! ban on one node reaches the others' kernels, a lift too; a compromised node's ban of
//! everything is refused; the database stopped mid-run loses nothing and doubles
//! nothing. And TLS to the database, with its certificate checked.

use crate::support;
use crate::support::{Daemon, Netns, Postgres, append, failures};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");

/// A node connecting as the role `saslguard` (the grants `cluster setup` prints, no
/// more); a ban at 5 failures within 10 minutes.
fn node(net: &Netns, log: &std::path::Path, pg: &Postgres, name: &str) -> Daemon {
    Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n\
             [cluster]\nenabled = true\nurl = \"{}\"\nnode = \"{name}\"\n\
             [[rule]]\nname = \"fleet\"\nfailures = 5\nwithin = \"10m\"\nban = \"1h\"\n",
            log.display(),
            pg.url().replace("user=postgres", "user=saslguard")
        ),
    )
}

/// SQL as the node role: what a compromised node could do.
fn as_node(pg: &Postgres, sql: &str) -> std::process::Output {
    support::run(
        std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", "psql", "-qAt", "-h"])
            .arg(&pg.socket_dir)
            .args(["-U", "saslguard", "-d", "saslguard", "-c", sql]),
    )
}

fn fleet_sum(pg: &Postgres, addr: &str) -> String {
    pg.sql(&format!(
        "SELECT coalesce(sum(count), 0) FROM fleet_failures WHERE address = '{addr}'"
    ))
    .trim()
    .to_string()
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < end, "{what} within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn saslguard(args: &[&str], config: &std::path::Path) -> std::process::Output {
    support::run(
        std::process::Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(config),
    )
}

#[test]
fn three_nodes_count_and_ban_together_through_postgresql() {
    let name = "three_nodes_count_and_ban_together_through_postgresql";
    if !support::can_run(name, &["ip", "nft", "runuser", "psql"]) {
        return;
    }
    if Postgres::bin().is_none() {
        support::skip(
            name,
            "PostgreSQL is not installed (apt-get install postgresql)",
        );
        return;
    }
    let pg = Postgres::start();
    let work = tempfile::tempdir().unwrap();
    // The schema, as an admin sets it up once (as the database's owner), and the node
    // role with exactly the grants it prints.
    let admin = work.path().join("admin.toml");
    std::fs::write(
        &admin,
        format!(
            "[cluster]\nenabled = true\nurl = \"{}\"\nnode = \"admin\"\n",
            pg.url()
        ),
    )
    .unwrap();
    let out = saslguard(&["cluster", "setup"], &admin);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let grants: String = printed
        .lines()
        .take_while(|l| !l.starts_with("and Postfix"))
        .filter(|l| l.starts_with("GRANT"))
        .collect();
    assert!(
        grants.contains("GRANT SELECT, INSERT, UPDATE ON fleet_bans"),
        "{printed}"
    );
    pg.sql(&format!("CREATE ROLE saslguard LOGIN; {grants}"));
    let nets = [
        Netns::new(&["192.0.2.50"]),
        Netns::new(&["192.0.2.51"]),
        Netns::new(&["192.0.2.52"]),
    ];
    let logs: Vec<std::path::PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|n| work.path().join(format!("{n}.log")))
        .collect();
    for l in &logs {
        append(l, "");
    }
    let (log_a, log_b, log_c) = (&logs[0], &logs[1], &logs[2]);
    let a = node(&nets[0], log_a, &pg, "a");
    let b = node(&nets[1], log_b, &pg, "b");
    let c = node(&nets[2], log_c, &pg, "c");
    // The node role may not delete history nor change the schema.
    for sql in [
        "DELETE FROM fleet_bans",
        "DELETE FROM fleet_failures",
        "DROP TABLE fleet_bans",
        "ALTER TABLE fleet_bans ADD COLUMN x int",
    ] {
        let err = String::from_utf8_lossy(&as_node(&pg, sql).stderr).into_owned();
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{sql}: {err}"
        );
    }

    // A ban by hand on node a: in b's and c's kernels, with where it came from.
    assert!(
        a.ctl(&["ban", "198.51.100.7", "--for", "1h"])
            .status
            .success()
    );
    wait_for("a's ban in b's and c's kernels", 10, || {
        b.kernel_set("addr4").contains("198.51.100.7")
            && c.kernel_set("addr4").contains("198.51.100.7")
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

    // A ban node b's policy decides from its own log: in a's kernel.
    append(log_b, &failures("203.0.113.9", 10));
    wait_for("b's policy ban in a's kernel", 15, || {
        a.kernel_set("addr4").contains("203.0.113.9")
    });

    // A guesser spreads its tries: 2 on each of three nodes, under the threshold of 5
    // on any one and on any two, 6 in the fleet: banned on all three.
    for l in [log_a, log_b, log_c] {
        append(l, &failures("203.0.113.77", 2));
    }
    wait_for(
        "the spread-out guesser banned on all three nodes",
        15,
        || {
            [&a, &b, &c]
                .iter()
                .all(|d| d.kernel_set("addr4").contains("203.0.113.77"))
        },
    );
    // Each failure is in the fleet once.
    assert_eq!(fleet_sum(&pg, "203.0.113.77"), "6");
    // The replication lag of what a node received: seconds, not minutes.
    let lag = a.json("status")["cluster"]["lag_seconds"].as_f64().unwrap();
    assert!((0.0..30.0).contains(&lag), "{lag}");

    // Node b is down while a counts 3 tries of another guesser; b, started again, reads
    // them from the fleet and its own 2 tries make 5.
    let mut b = b;
    assert!(b.stop().success());
    append(log_a, &failures("203.0.113.88", 3));
    wait_for("a's failures in the fleet", 10, || {
        fleet_sum(&pg, "203.0.113.88") == "3"
    });
    b.restart();
    append(log_b, &failures("203.0.113.88", 2));
    wait_for("the guesser banned after b's restart", 15, || {
        b.kernel_set("addr4").contains("203.0.113.88")
    });

    // A lift on node b reaches a and c.
    assert!(b.ctl(&["unban", "198.51.100.7"]).status.success());
    wait_for("the lift in a's and c's kernels", 10, || {
        !a.kernel_set("addr4").contains("198.51.100.7")
            && !c.kernel_set("addr4").contains("198.51.100.7")
    });

    // A compromised node writes a ban of everything and of the nodes' own address:
    // refused by each node's own checks.
    let o = as_node(
        &pg,
        "INSERT INTO fleet_bans(target, at, until, reason, rule, origin, node) VALUES \
         ('0.0.0.0/0', now(), now() + interval '1 hour', 'x', 'x', 'policy', 'evil'), \
         ('192.0.2.1/32', now(), now() + interval '1 hour', 'x', 'x', 'policy', 'evil'); \
         NOTIFY saslguard_bans",
    );
    assert!(o.status.success(), "{o:?}");
    wait_for("the evil bans refused on every node", 10, || {
        [&a, &b, &c]
            .iter()
            .all(|d| d.json("status")["cluster"]["refused"] == 2)
    });
    for d in [&a, &b, &c] {
        assert!(!d.kernel_set("net4").contains("0.0.0.0/0"));
        assert!(!d.kernel_set("addr4").contains("192.0.2.1"));
    }

    // The database stops: a still bans at once and counts, queues both, and publishes
    // them when the database returns.
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
    append(log_a, &failures("203.0.113.111", 2));
    wait_for("a to count what it queued", 10, || {
        let s = a.json("status");
        s["cluster"]["connected"] == false && s["cluster"]["queued"] == 3
    });
    pg.up();
    wait_for("the queued ban in b's and c's kernels", 40, || {
        b.kernel_set("addr4").contains("198.51.100.99")
            && c.kernel_set("addr4").contains("198.51.100.99")
    });
    // The queued failures reached the fleet once: nothing lost, nothing doubled.
    wait_for("the queued failures in the fleet", 10, || {
        fleet_sum(&pg, "203.0.113.111") == "2"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fleet_sum(&pg, "203.0.113.111"), "2");
    let s = a.json("status");
    assert_eq!(s["cluster"]["queued"], 0, "{s:#}");
    assert_eq!(s["cluster"]["dropped"], 0, "{s:#}");

    // The fleet as the database sees it.
    let out = saslguard(&["cluster", "status", "--json"], &a.config_path());
    assert!(out.status.success(), "{out:?}");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes: Vec<&str> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["a", "b", "c"], "{st:#}");
    assert_eq!(st["schema_version"], 4);

    // The fleet's bans and who decided them, from any node's configuration.
    let out = saslguard(&["bans", "--fleet", "--json"], &c.config_path());
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
    let tally = |n: &str| {
        rep["fleet"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == n)
            .cloned()
            .unwrap_or_default()
    };
    // a counted 2 + 3 + 2 tries, b 10 + 2 + 2, c 2 (the lines appended to each log).
    assert_eq!(tally("a")["failures"], 7, "{rep:#}");
    assert_eq!(tally("b")["failures"], 14, "{rep:#}");
    assert_eq!(tally("c")["failures"], 2, "{rep:#}");
    // And the accounts tried across the fleet, with the nodes that saw them: the
    // spread-out guesser tried user0 and user1 on every node.
    let user0 = rep["fleet"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["user"] == "user0")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        user0["nodes"],
        serde_json::json!(["a", "b", "c"]),
        "{rep:#}"
    );
    // One row per banned target.
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
