//! `[[block]]` in the live daemon against the real kernel: a country's networks, walked
//! from a MaxMind-format database the test writes, refused on the login ports before any
//! guess, port 25 still open, the allowlist punching through, and a database replaced on
//! disk changing the block with no moment where it lets the country in.

use crate::support;
use crate::support::mmdb::{self, country};
use crate::support::{Daemon, Netns, SERVER_V4, SERVER_V6};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TCP listeners on 25 and 587 (IPv4 and IPv6) in the server namespace, stopped on drop.
struct Listeners(Child);

impl Listeners {
    fn start(net: &Netns) -> Listeners {
        let code = "import socket, threading\n\
                    def serve(port):\n    \
                        s = socket.socket(socket.AF_INET6)\n    \
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n    \
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
                        s.bind(('::', port))\n    \
                        s.listen(128)\n    \
                        while True:\n        c, _ = s.accept()\n        c.close()\n\
                    threading.Thread(target=serve, args=(25,), daemon=True).start()\n\
                    serve(587)\n";
        let child = Command::new("ip")
            .args(["netns", "exec", &net.server, "python3", "-c", code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let o = net.exec_ok(
                &net.server,
                &["ss", "-Hltn", "( sport = :587 or sport = :25 )"],
            );
            if String::from_utf8_lossy(&o.stdout).lines().count() >= 2 {
                break;
            }
            assert!(Instant::now() < end, "the listeners did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Listeners(child)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// "ok", "timeout" (dropped) or "refused" for a TCP connection from `src` to `port`.
fn connect(net: &Netns, src: &str, port: u16) -> String {
    let dst = if src.contains(':') {
        SERVER_V6
    } else {
        SERVER_V4
    };
    let code = format!(
        "import socket\n\
         try:\n    socket.create_connection(('{dst}', {port}), timeout=1.5, source_address=('{src}', 0)).close(); print('ok')\n\
         except socket.timeout:\n    print('timeout')\n\
         except ConnectionRefusedError:\n    print('refused')\n\
         except OSError as e:\n    print('error', e)\n"
    );
    let out = net.client(&["python3", "-c", &code]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write_db(path: &Path, entries: Vec<(&str, mmdb::V)>) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, mmdb::build("GeoLite2-Country", entries)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_blocked_country_gets_no_first_guess_and_the_allowlist_punches_through() {
    if !support::can_run(
        "a_blocked_country_gets_no_first_guess_and_the_allowlist_punches_through",
        &["ip", "nft", "python3", "ss"],
    ) {
        return;
    }
    // RU: 198.51.100.0/24, 203.0.113.0/25 and 2001:db8::40/122; DE: 192.0.2.0/24;
    // FR: 203.0.113.128/25.
    let net = Netns::new(&[
        "198.51.100.7",
        "198.51.100.8",
        "192.0.2.99",
        "203.0.113.200",
        "2001:db8::55",
    ]);
    // The clients outside the server's own subnet are on the same link.
    for n in ["198.51.100.0/24", "203.0.113.0/24"] {
        net.exec_ok(
            &net.server,
            &["ip", "route", "add", n, "dev", &net.server_dev],
        );
    }
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let cdb = work.path().join("country.mmdb");
    let before = || {
        vec![
            ("198.51.100.0/24", country(Some("RU"), "EU")),
            ("203.0.113.0/25", country(Some("RU"), "EU")),
            ("203.0.113.128/25", country(Some("FR"), "EU")),
            ("192.0.2.0/24", country(Some("DE"), "EU")),
            ("2001:db8::40/122", country(Some("RU"), "EU")),
        ]
    };
    write_db(&cdb, before());
    let _listeners = Listeners::start(&net);
    let d = Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n\
             [geoip]\ncountry_database = \"{}\"\nasn_database = \"\"\n\
             [allowlist]\nnetworks = [\"198.51.100.8/32\"]\n\
             [[block]]\nname = \"ru\"\ncountries = [\"RU\"]\n",
            log.display(),
            cdb.display()
        ),
    );

    // The block holds exactly the country's networks, merged and nothing else.
    let s = d.json("status");
    let b = &s["blocks"][0];
    assert_eq!(b["name"], "ru", "{s:#}");
    assert_eq!(b["ranges_v4"], 2, "{s:#}");
    assert_eq!(b["ranges_v6"], 1, "{s:#}");
    assert_eq!(b["addresses_v4"], 256 + 128, "{s:#}");
    let set4 = d.kernel_set("b4_ru");
    assert!(
        set4.contains("198.51.100.0/24") && set4.contains("203.0.113.0/25"),
        "{set4}"
    );
    assert!(
        !set4.contains("192.0.2.") && !set4.contains("203.0.113.128"),
        "{set4}"
    );
    assert!(d.kernel_set("b6_ru").contains("2001:db8::40/122"));

    // Before any guess: the country is dropped on the login port and still reaches
    // port 25; others, and the allowlisted address inside the country, get through.
    assert_eq!(connect(&net, "198.51.100.7", 587), "timeout");
    assert_eq!(connect(&net, "2001:db8::55", 587), "timeout");

    assert_eq!(connect(&net, "198.51.100.7", 25), "ok");
    assert_eq!(
        connect(&net, "198.51.100.8", 587),
        "ok",
        "the allowlist wins"
    );
    assert_eq!(connect(&net, "192.0.2.99", 587), "ok");
    assert_eq!(connect(&net, "203.0.113.200", 587), "ok");
    // The kernel counted what it refused: a SYN and its retransmission per attempt,
    // IPv4 and IPv6; nothing for port 25 or the allowlisted address.
    let refused = d.json("status")["blocks"][0]["refused_packets"]
        .as_u64()
        .unwrap();
    assert!((4..=8).contains(&refused), "{refused} packets refused");

    // The database is replaced (geoipupdate): 192.0.2.0/24 is now RU and the RU half
    // of 203.0.113.0/24 is gone. A client of the country keeps trying all the while:
    // not one of its connections may get through during the swap.
    let prober = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.client,
            "python3",
            "-c",
            &format!(
                "import socket, time\n\
                 end = time.time() + 12\n\
                 while time.time() < end:\n    \
                     try:\n        \
                         socket.create_connection(('{SERVER_V4}', 587), timeout=0.2, source_address=('198.51.100.7', 0)).close(); print('GOT THROUGH', flush=True)\n    \
                     except OSError:\n        pass\n    \
                     time.sleep(0.02)\n\
                 print('done')\n"
            ),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    write_db(
        &cdb,
        vec![
            ("198.51.100.0/24", country(Some("RU"), "EU")),
            ("192.0.2.0/24", country(Some("RU"), "EU")),
            ("203.0.113.0/24", country(Some("FR"), "EU")),
            ("2001:db8::40/122", country(Some("RU"), "EU")),
        ],
    );
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let set4 = d.kernel_set("b4_ru");
        if set4.contains("192.0.2.0/24") {
            assert!(!set4.contains("203.0.113."), "{set4}");
            break;
        }
        assert!(
            Instant::now() < end,
            "the replaced database did not reach the block: {set4}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = prober.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(seen.trim(), "done", "the block let the country in: {seen}");
    assert_eq!(connect(&net, "192.0.2.99", 587), "timeout");
    assert_eq!(connect(&net, "203.0.113.200", 587), "ok");

    // A broken database keeps the loaded block.
    std::fs::write(&cdb, b"not a database").unwrap();
    std::thread::sleep(Duration::from_secs(7));
    assert!(d.kernel_set("b4_ru").contains("192.0.2.0/24"));
    assert_eq!(connect(&net, "198.51.100.7", 587), "timeout");

    // A flushed ruleset: the block comes back with the table.
    net.exec_ok(&net.server, &["nft", "flush", "ruleset"]);
    let end = Instant::now() + Duration::from_secs(10);
    while !d.kernel_set("b4_ru").contains("198.51.100.0/24") {
        assert!(
            Instant::now() < end,
            "the block did not come back: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(connect(&net, "198.51.100.7", 587), "timeout");
    assert_eq!(
        connect(&net, "198.51.100.8", 587),
        "ok",
        "the allowlist wins"
    );
    // The count goes on over the rebuilt table (whose own counter started at 0).
    let after = d.json("status")["blocks"][0]["refused_packets"]
        .as_u64()
        .unwrap();
    assert!(after > refused, "{after} after, {refused} before");

    // Rules replaced by hand without the block's (`saslguard nft setup` knows nothing of
    // blocks): the daemon notices and puts them back.
    let o = net.exec(
        &net.server,
        &[env!("CARGO_BIN_EXE_saslguard"), "nft", "setup"],
    );
    assert!(o.status.success(), "{o:?}");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let chain = String::from_utf8_lossy(
            &net.exec(
                &net.server,
                &["nft", "list", "chain", "inet", "saslguard", "input"],
            )
            .stdout,
        )
        .into_owned();
        if chain.contains("@b4_ru") && chain.contains("@allow4") {
            break;
        }
        assert!(
            Instant::now() < end,
            "the block's rules did not come back: {chain}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(connect(&net, "198.51.100.7", 587), "timeout");
    assert_eq!(
        connect(&net, "198.51.100.8", 587),
        "ok",
        "the allowlist wins"
    );

    // The report of the period says what the block refused (the totals are written to
    // the store when they change, at most once a minute, and at the stop).
    let total = d.json("status")["blocks"][0]["refused_packets"]
        .as_u64()
        .unwrap();
    let mut d = d;
    assert!(d.stop().success());
    let out = Command::new(env!("CARGO_BIN_EXE_saslguard"))
        .args(["report", "--json", "--store"])
        .arg(d.state().join("saslguard.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["blocks"][0]["name"], "ru", "{r:#}");
    assert!(
        r["blocks"][0]["refused_packets"].as_u64().unwrap() >= total,
        "{r:#}"
    );
}

#[test]
fn without_nftables_the_policy_service_refuses_a_block_on_its_ports_only() {
    if !support::can_run(
        "without_nftables_the_policy_service_refuses_a_block_on_its_ports_only",
        &["ip", "python3"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    support::append(&log, "");
    let sock = dir.path().join("policy.sock");
    let d = Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n[nftables]\nenabled = false\n\
             [postfix_policy]\nenabled = true\nsocket = \"{}\"\n\
             [allowlist]\nnetworks = [\"198.51.100.9/32\", \"203.0.113.50/32\"]\n\
             [[block]]\nname = \"listed\"\nnetworks = [\"198.51.100.0/24\"]\n",
            log.display(),
            sock.display()
        ),
    );
    // What Postfix 3.2+ sends: the client and the port it came to.
    let script = format!(
        r#"import socket
def ask(s, req):
    s.sendall(req)
    data = b""
    while not data.endswith(b"\n\n"):
        data += s.recv(4096)
    return data.decode().strip()
s = socket.socket(socket.AF_UNIX); s.connect({sock:?})
for client, port in [("198.51.100.7", "587"), ("198.51.100.7", "465"), ("198.51.100.7", "25"), ("198.51.100.9", "587"), ("203.0.113.5", "587")]:
    print(ask(s, ("request=smtpd_access_policy\nclient_address=%s\nserver_port=%s\n\n" % (client, port)).encode()))
print(ask(s, b"request=smtpd_access_policy\nclient_address=198.51.100.7\n\n"))
"#,
        sock = sock.display().to_string()
    );
    let out = net.exec_ok(&net.server, &["python3", "-c", &script]);
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let reject = "action=REJECT too many failed logins from your address";
    assert_eq!(
        answers,
        [
            reject,
            reject,
            "action=DUNNO",
            "action=DUNNO",
            "action=DUNNO",
            // An older Postfix that does not say the port: fail open.
            "action=DUNNO",
        ],
        "{}",
        d.log()
    );
    // `saslguard check` names the block.
    let o = d.ctl(&["check", "198.51.100.7"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("refused by block listed"),
        "{o:?}"
    );
}
