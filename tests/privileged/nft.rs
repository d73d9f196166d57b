//! The nftables enforcer against the real kernel, in network namespaces the test creates
//! and always deletes: a TCP listener on port 587 in the server namespace, clients with
//! several documentation-range addresses (IPv4 and IPv6) in another. Bans are made with
//! `saslguard nft` inside the server namespace; what counts is whether a client's TCP
//! connection gets through.

use crate::support;
use crate::support::{Netns, SERVER_V4, SERVER_V6};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");

/// A TCP listener on port 587 (IPv4 and IPv6) in a namespace, stopped by pid on drop.
struct Listener(Child);

impl Listener {
    fn start(net: &Netns) -> Listener {
        let code = "import socket\n\
                    s = socket.socket(socket.AF_INET6)\n\
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                    s.bind(('::', 587))\n\
                    s.listen(128)\n\
                    while True:\n    c, _ = s.accept()\n    c.close()\n";
        let child = Command::new("ip")
            .args(["netns", "exec", &net.server, "python3", "-c", code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Up when the port is listening, with a deadline.
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let o = net.exec_ok(&net.server, &["ss", "-Hltn", "sport = :587"]);
            if !o.stdout.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < end,
                "the listener did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// "ok", "timeout" (dropped) or "refused" (reset) for a TCP connection from `src`.
fn probe(net: &Netns, src: &str, dst: &str) -> String {
    let code = format!(
        "import socket\n\
         try:\n    socket.create_connection(('{dst}', 587), timeout=1.5, source_address=('{src}', 0)).close(); print('ok')\n\
         except socket.timeout:\n    print('timeout')\n\
         except ConnectionRefusedError:\n    print('refused')\n\
         except OSError as e:\n    print('error', e)\n"
    );
    let out = net.client(&["python3", "-c", &code]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sg(net: &Netns, args: &[&str]) -> String {
    let mut all = vec![BIN, "nft", "--ports", "587"];
    all.extend_from_slice(args);
    let out = net.exec(&net.server, &all);
    assert!(
        out.status.success(),
        "saslguard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kernel_bans_block_clients_expire_on_their_own_and_survive_a_flush() {
    if !support::can_run(
        "kernel_bans_block_clients_expire_on_their_own_and_survive_a_flush",
        &["ip", "nft", "python3", "ss"],
    ) {
        return;
    }
    let net = Netns::new(&[
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.12",
        "198.51.100.10",
        "2001:db8::10",
        "2001:db8::11",
    ]);
    net.exec_ok(
        &net.server,
        &[
            "ip",
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            &net.server_dev,
        ],
    );
    let _listener = Listener::start(&net);
    for src in ["192.0.2.10", "192.0.2.11", "198.51.100.10"] {
        let dst = if src.starts_with("198.") {
            "198.51.100.1"
        } else {
            SERVER_V4
        };
        assert_eq!(probe(&net, src, dst), "ok", "{src} connects before any ban");
    }
    sg(&net, &["setup"]);

    // An address ban, IPv4 and IPv6: the banned client is dropped, the others connect.
    sg(&net, &["ban", "--for", "1h", "192.0.2.10", "2001:db8::10"]);
    assert_eq!(probe(&net, "192.0.2.10", SERVER_V4), "timeout");
    assert_eq!(probe(&net, "192.0.2.11", SERVER_V4), "ok");
    assert_eq!(probe(&net, "2001:db8::10", SERVER_V6), "timeout");
    assert_eq!(probe(&net, "2001:db8::11", SERVER_V6), "ok");

    // A prefix ban blocks every address in it and nothing outside.
    sg(&net, &["ban", "--for", "1h", "192.0.2.0/24"]);
    assert_eq!(probe(&net, "192.0.2.11", SERVER_V4), "timeout");
    assert_eq!(probe(&net, "192.0.2.12", SERVER_V4), "timeout");
    assert_eq!(probe(&net, "198.51.100.10", "198.51.100.1"), "ok");
    let listed = sg(&net, &["list"]);
    for t in ["192.0.2.10", "192.0.2.0/24", "2001:db8::10"] {
        assert!(
            listed.lines().any(|l| l.starts_with(&format!("{t}\t"))),
            "{t} listed:\n{listed}"
        );
    }
    assert_eq!(sg(&net, &["unban", "192.0.2.0/24"]).trim(), "removed 1");
    assert_eq!(probe(&net, "192.0.2.11", SERVER_V4), "ok");

    // The kernel lifts a ban on time, with no action from saslguard.
    sg(&net, &["ban", "--for", "2s", "192.0.2.12"]);
    assert_eq!(probe(&net, "192.0.2.12", SERVER_V4), "timeout");
    // The kernel's own timer, in real time: the ban must lapse within a few seconds of
    // its 2 s, with no action from saslguard.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while probe(&net, "192.0.2.12", SERVER_V4) != "ok" {
        assert!(
            std::time::Instant::now() < end,
            "the kernel did not lift a 2 s ban within 10 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Unbanning what the kernel already expired is not an error.
    assert_eq!(sg(&net, &["unban", "192.0.2.12"]).trim(), "removed 0");

    // Prefixes that reach the top of the address space go in whole, read back as they
    // went in, and come out again.
    for t in [
        "ffff::/16",
        "8000::/1",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120",
    ] {
        sg(&net, &["ban", "--for", "1h", t]);
        let list = sg(&net, &["list"]);
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{t}\t"))),
            "{t} not listed as it went in:\n{list}"
        );
        assert_eq!(sg(&net, &["unban", t]).trim(), "removed 1", "{t}");
        assert!(!sg(&net, &["list"]).contains(t));
    }

    // `nft flush ruleset` (or a reboot) loses the bans; reconcile restores them with
    // their remaining time, from a replay-style document.
    net.exec_ok(&net.server, &["nft", "flush", "ruleset"]);
    assert_eq!(probe(&net, "192.0.2.10", SERVER_V4), "ok");
    let until = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        serde_json::json!({"bans": [{"target": "192.0.2.10", "until": until}, {"target": "192.0.2.11", "until": past}]}).to_string(),
    )
    .unwrap();
    assert_eq!(
        sg(&net, &["reconcile", file.path().to_str().unwrap()]).trim(),
        "restored 1"
    );
    assert_eq!(probe(&net, "192.0.2.10", SERVER_V4), "timeout");
    assert_eq!(
        probe(&net, "192.0.2.11", SERVER_V4),
        "ok",
        "an expired ban is not restored"
    );
    let left = sg(&net, &["list"]);
    let line = left
        .lines()
        .find(|l| l.starts_with("192.0.2.10\t"))
        .unwrap();
    assert!(
        line.ends_with("29m59s") || line.ends_with("29m58s") || line.contains("29m5"),
        "remaining time kept: {line}"
    );

    // A real `replay --json` document of the bundled example, replayed as if it were
    // next year's log (so its bans still have time left): every ban goes in.
    let next_year = (chrono::Datelike::year(&chrono::Utc::now()) + 1).to_string();
    let doc = std::process::Command::new(BIN)
        .args([
            "replay",
            "--json",
            "--timezone",
            "UTC",
            "--year",
            &next_year,
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mail.log"))
        .output()
        .unwrap();
    assert!(doc.status.success());
    let replayed = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(replayed.path(), &doc.stdout).unwrap();
    assert_eq!(
        sg(&net, &["reconcile", replayed.path().to_str().unwrap()]).trim(),
        "restored 3"
    );
    let list = sg(&net, &["list"]);
    for t in ["203.0.113.7", "198.51.100.23", "2001:db8:bad:1::/64"] {
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{t}\t"))),
            "{t} not restored:\n{list}"
        );
    }
    for t in ["203.0.113.7", "198.51.100.23", "2001:db8:bad:1::/64"] {
        assert_eq!(sg(&net, &["unban", t]).trim(), "removed 1");
    }

    // A routine restart (setup again) keeps the bans; reject mode answers with a reset.
    let out = net.exec(
        &net.server,
        &[BIN, "nft", "--ports", "587", "--reject", "setup"],
    );
    assert!(out.status.success());
    assert_eq!(
        probe(&net, "192.0.2.10", SERVER_V4),
        "refused",
        "TCP reset instead of silence"
    );

    // reset removes saslguard's table and nothing else.
    net.exec_ok(&net.server, &["nft", "add", "table", "inet", "admins_own"]);
    assert_eq!(sg(&net, &["reset"]).trim(), "table removed");
    let tables =
        String::from_utf8_lossy(&net.exec_ok(&net.server, &["nft", "list", "tables"]).stdout)
            .to_string();
    assert!(
        !tables.contains("saslguard") && tables.contains("admins_own"),
        "{tables}"
    );
    assert_eq!(probe(&net, "192.0.2.10", SERVER_V4), "ok");
}
