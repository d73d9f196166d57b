//! The live daemon, end to end, with the real kernel: `saslguard run` in a network
//! namespace the test creates (and deletes), bans in its nftables table, state in a
//! real SQLite file.
//!
//! - rotation (while stopped, rename-and-create while running with a late writer,
//!   copytruncate) and restarts: no failure lost, none counted twice, bans kept;
//! - real Postfix and Dovecot: a guesser on submission and one on IMAP are banned and
//!   their next connection fails, a user with one typo is not banned and sends mail,
//!   a restart mid-ban keeps the ban, `postfix logrotate` mid-attack loses nothing, and
//!   bans lift when they expire.
//!
//! Needs root (namespaces, nftables); skips with the reason otherwise.

use crate::support;
use crate::support::{Daemon, MailServer, Netns, PASSWORD, SERVER_V4, append, failures};
use serde_json::{Value, json};

fn failures_counted(s: &Value) -> u64 {
    s["stats"]["failures"].as_u64().unwrap()
}

fn offender_failures(d: &Daemon, target: &str) -> u64 {
    let bans = d.json("bans");
    bans["bans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == target)
        .unwrap_or_else(|| panic!("{target} not banned: {bans:#}"))["offender"]["failures"]
        .as_u64()
        .unwrap()
}

#[test]
fn rotation_and_restarts_lose_no_failure_and_count_none_twice() {
    if !support::can_run(
        "rotation_and_restarts_lose_no_failure_and_count_none_twice",
        &["ip", "nft"],
    ) {
        return;
    }
    let net = Netns::new(&["192.0.2.99"]);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let mut d = Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\nrotate_grace = \"1s\"\n\
             [[rule]]\nname = \"test\"\nfailures = 4\nwithin = \"10m\"\nban = \"1h\"\n",
            log.display()
        ),
    );

    // Two failures, then a stop; while stopped: one more, a rotation, one in the new file.
    append(&log, &failures("192.0.2.50", 2));
    d.wait_status(10, "2 failures", |s| failures_counted(s) == 2);
    assert!(d.stop().success(), "SIGTERM is a clean stop");
    assert!(
        d.log()
            .contains("stopped; bans stay in the kernel's nftables sets until they expire"),
        "{}",
        d.log()
    );
    append(&log, &failures("192.0.2.50", 1));
    std::fs::rename(&log, logs.path().join("mail.log.1")).unwrap();
    append(&log, &failures("192.0.2.50", 1));
    d.restart();
    // Exactly the two lines written while stopped are read (none of the first two
    // again), and with the two from before the restart the address reaches 4.
    d.wait_banned("192.0.2.50", true, 10);
    let s = d.json("status");
    assert_eq!(failures_counted(&s), 2, "nothing read twice: {s:#}");
    assert_eq!(offender_failures(&d, "192.0.2.50"), 4);

    // Rename and create while running, the logger still writing to the old file.
    append(&log, &failures("192.0.2.51", 1));
    d.wait_status(10, "B's first failure", |s| failures_counted(s) == 3);
    std::fs::rename(&log, logs.path().join("mail.log.2")).unwrap();
    append(&logs.path().join("mail.log.2"), &failures("192.0.2.51", 1));
    append(&log, &failures("192.0.2.51", 2));
    d.wait_banned("192.0.2.51", true, 10);
    assert_eq!(offender_failures(&d, "192.0.2.51"), 4);

    // copytruncate: the file is emptied in place and written again.
    append(&log, &failures("192.0.2.52", 2));
    d.wait_status(10, "C's first failures", |s| failures_counted(s) == 8);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &failures("192.0.2.52", 2));
    d.wait_banned("192.0.2.52", true, 10);
    assert_eq!(offender_failures(&d, "192.0.2.52"), 4);

    // A garbage line is counted and skipped; the lines around it still count.
    append(&log, "\u{0}garbage \u{7f}\n");
    append(&log, &failures("192.0.2.53", 1));
    let s = d.wait_status(10, "the line after the garbage", |s| {
        failures_counted(s) == 11
    });
    assert_eq!(s["stats"]["skipped_unparsable"], 1, "{s:#}");

    // In the kernel.
    let set = d.kernel_set("addr4");
    for a in ["192.0.2.50", "192.0.2.51", "192.0.2.52"] {
        assert!(set.contains(a), "{a} not in the kernel set:\n{set}");
    }

    // Another restart: the bans are kept, nothing is read again.
    assert!(d.stop().success());
    d.restart();
    let banned = d.banned();
    for a in ["192.0.2.50", "192.0.2.51", "192.0.2.52"] {
        assert!(banned.iter().any(|b| b == a), "{a} lost: {banned:?}");
    }
    let s = d.wait_caught_up(10);
    assert_eq!(s["stats"]["lines"], 0, "nothing read again: {s:#}");

    // Ban and unban by hand.
    let out = d.ctl(&[
        "ban",
        "203.0.113.0/24",
        "--for",
        "2h",
        "--reason",
        "seen in a report",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.kernel_set("net4").contains("203.0.113.0/24"));
    let out = d.ctl(&["unban", "192.0.2.50"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ban lifted"));
    assert!(!d.kernel_set("addr4").contains("192.0.2.50"));
    let out = d.ctl(&["ban", "127.0.0.1"]);
    assert_eq!(
        out.status.code(),
        Some(65),
        "loopback is always allowlisted"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("covers 127.0.0.0/8, which is allowlisted"),
        "{out:?}"
    );

    // A bad configuration on reload is refused; the daemon keeps running.
    let good = std::fs::read_to_string(d.config_path()).unwrap();
    std::fs::write(d.config_path(), format!("{good}\n[[rule]]\nname = \"x\"\n")).unwrap();
    let out = d.ctl(&["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("saslguard.toml:") && err.contains("running one is kept"),
        "{err}"
    );
    std::fs::write(d.config_path(), &good).unwrap();
    assert!(d.ctl(&["reload"]).status.success());

    // A store written by a newer saslguard is refused at start, and left alone.
    assert!(d.stop().success());
    let db = d.state().join("saslguard.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &net.server])
        .arg(env!("CARGO_BIN_EXE_saslguard"))
        .args(["run", "-c"])
        .arg(d.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema version 99") && err.contains("newer saslguard"),
        "{err}"
    );
}

#[test]
fn real_guessers_are_banned_and_users_are_not() {
    if !support::can_run(
        "real_guessers_are_banned_and_users_are_not",
        &[
            "ip", "nft", "postfix", "dovecot", "openssl", "python3", "ss",
        ],
    ) {
        return;
    }
    let (guesser, typo, imap_guesser, rotator) =
        ("192.0.2.20", "192.0.2.21", "192.0.2.22", "192.0.2.23");
    let net = Netns::new(&[guesser, typo, imap_guesser, rotator]);
    let server = MailServer::start(&net);
    let d = Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\", \"{}\"]\njournal = false\n\
             [[rule]]\nname = \"test\"\nfailures = 3\nwithin = \"10m\"\nban = \"40s\"\n\
             [nftables]\nreject = true\n",
            server.postfix_log().display(),
            server.dovecot_log().display()
        ),
    );
    let mut d = d;
    let smtp = |from: &str, user: &str, password: &str, send: bool| json!({"kind": "smtp", "from": from, "port": 587, "starttls": true, "user": user, "password": password, "send": send});

    // A guesser on submission, a user with one typo who then sends mail, and an IMAP
    // guesser with three wrong passwords in one session.
    let results = net.mail_clients(
        SERVER_V4,
        &[
            smtp(guesser, "alice", "guess1", false),
            smtp(guesser, "alice", "guess2", false),
            smtp(guesser, "alice", "guess3", false),
            smtp(typo, "bob", "typo", false),
            smtp(typo, "bob", PASSWORD, true),
            json!({"kind": "imap", "from": imap_guesser, "logins": [["admin", "a"], ["info", "b"], ["root", "c"]]}),
        ],
    );
    assert!(
        results.contains(&format!("smtp {typo} ok")),
        "the user sent mail: {results}"
    );
    d.wait_banned(guesser, true, 30);
    d.wait_banned(imap_guesser, true, 30);
    assert!(
        !d.banned().iter().any(|b| b == typo),
        "one typo is not a ban"
    );

    // The guesser's next connection fails (reset by the kernel); the user's works.
    let results = net.mail_clients(
        SERVER_V4,
        &[
            smtp(guesser, "alice", PASSWORD, false),
            smtp(typo, "bob", PASSWORD, false),
        ],
    );
    assert!(
        results.contains(&format!("smtp {guesser} error ConnectionRefusedError")),
        "{results}"
    );
    assert!(results.contains(&format!("smtp {typo} ok")), "{results}");

    // Restart mid-ban: the ban stays, in the daemon and in the kernel, and no line is
    // counted again.
    let before = d.json("status");
    assert!(d.stop().success());
    d.restart();
    assert!(
        d.banned().iter().any(|b| b == guesser),
        "ban kept over a restart"
    );
    assert!(d.kernel_set("addr4").contains(guesser));
    let after = d.wait_caught_up(10);
    assert_eq!(
        after["stats"]["failures"], 0,
        "nothing counted twice (before: {before:#})"
    );

    // `postfix logrotate` in the middle of an attack: one guess before, two after.
    net.mail_clients(SERVER_V4, &[smtp(rotator, "alice", "r1", false)]);
    d.wait_status(30, "the rotator's first failure", |s| {
        failures_counted(s) >= 1
    });
    support::run_ok(
        std::process::Command::new("ip")
            .args(["netns", "exec", &net.server, "postfix", "-c"])
            .arg(server.dir.path().join("postfix"))
            .arg("logrotate"),
    );
    net.mail_clients(
        SERVER_V4,
        &[
            smtp(rotator, "alice", "r2", false),
            smtp(rotator, "alice", "r3", false),
        ],
    );
    d.wait_banned(rotator, true, 40);
    assert_eq!(
        offender_failures(&d, rotator),
        3,
        "no failure lost or doubled in the rotation"
    );

    // The bans lift when their time is over (40 s), in the daemon and the kernel, and
    // the former guesser can connect again.
    d.wait_banned(guesser, false, 60);
    // The kernel drops the element on its own timer, which ends at the same `until`
    // (give its timer and garbage collection a moment).
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while d.kernel_set("addr4").contains(guesser) {
        assert!(
            std::time::Instant::now() < end,
            "the ban is over but the kernel still has it:\n{}",
            d.kernel_set("addr4")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let results = net.mail_clients(SERVER_V4, &[smtp(guesser, "alice", PASSWORD, false)]);
    assert!(results.contains(&format!("smtp {guesser} ok")), "{results}");
    println!("{}", d.log());
}

/// Journal entries in export format (what systemd-journal-remote reads): SASL failures
/// from `addr` and one line of another mail program, stamped now.
fn journal_export(addr: &str, n: usize, seq: &mut u64) -> String {
    let now = chrono::Utc::now().timestamp_micros();
    let mut out = String::new();
    let mut entry = |ident: &str, msg: &str| {
        *seq += 1;
        out.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={seq}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n\
             _HOSTNAME=mx\nSYSLOG_FACILITY=2\nSYSLOG_IDENTIFIER={ident}\n_PID=77\nMESSAGE={msg}\n\n",
            now + *seq as i64
        ));
    };
    entry(
        "opendkim",
        &format!("warning: unknown[{addr}]: SASL LOGIN authentication failed: x"),
    );
    for _ in 0..n {
        entry(
            "postfix/submission/smtpd",
            &format!("warning: unknown[{addr}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"),
        );
    }
    out
}

#[test]
fn the_journal_is_followed_and_resumed_from_its_cursor() {
    let remote = "/lib/systemd/systemd-journal-remote";
    if !support::can_run(
        "the_journal_is_followed_and_resumed_from_its_cursor",
        &["ip", "nft", "journalctl", remote],
    ) {
        return;
    }
    let net = Netns::new(&["192.0.2.99"]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let mut seq = 0;
    let write = |addr: &str, n: usize, seq: &mut u64| {
        let export = dir.path().join("entries.export");
        std::fs::write(&export, journal_export(addr, n, seq)).unwrap();
        support::run_ok(
            std::process::Command::new(remote)
                .arg(format!(
                    "--output={}",
                    journal.join("remote.journal").display()
                ))
                .arg(&export),
        );
    };
    write("192.0.2.60", 2, &mut seq);
    let mut d = Daemon::start(
        &net.server,
        &format!(
            "[sources]\njournal = true\njournal_directory = \"{}\"\nstart_at = \"beginning\"\n\
             [[rule]]\nname = \"test\"\nfailures = 4\nwithin = \"10m\"\nban = \"1h\"\n",
            journal.display()
        ),
    );
    d.wait_status(10, "the two entries already there", |s| {
        failures_counted(s) == 2
    });
    write("192.0.2.60", 2, &mut seq);
    d.wait_banned("192.0.2.60", true, 10);
    let s = d.json("status");
    assert_eq!(
        failures_counted(&s),
        4,
        "opendkim's lines are not Postfix's: {s:#}"
    );
    assert!(d.kernel_set("addr4").contains("192.0.2.60"));

    // Restart: resumes after the stored cursor.
    assert!(d.stop().success());
    write("192.0.2.61", 1, &mut seq);
    d.restart();
    let s = d.wait_status(10, "the entry written while stopped", |s| {
        failures_counted(s) >= 1
    });
    // A sentinel written after the restart: once it is counted, every entry before it
    // in the journal has been read.
    write("192.0.2.62", 1, &mut seq);
    let s2 = d.wait_status(10, "the sentinel", |s| failures_counted(s) >= 2);
    assert_eq!(failures_counted(&s2), 2, "only the new entries: {s:#}");
    assert!(d.banned().iter().any(|b| b == "192.0.2.60"));
}

fn dovecot(line: &str) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    format!("{now} mx dovecot: {line}\n")
}

fn ban_of(d: &Daemon, target: &str) -> Value {
    let bans = d.json("bans");
    bans["bans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == target)
        .unwrap_or_else(|| panic!("{target} not banned: {bans:#}"))
        .clone()
}

#[test]
fn geoip_origins_tls_posture_and_alerts_in_the_live_daemon() {
    use support::mmdb::{self, asn, country};
    if !support::can_run(
        "geoip_origins_tls_posture_and_alerts_in_the_live_daemon",
        &["ip", "nft"],
    ) {
        return;
    }
    let net = Netns::new(&["192.0.2.99"]);
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let cdb = work.path().join("country.mmdb");
    let write_country = |third: &str| {
        let tmp = work.path().join("country.new");
        std::fs::write(
            &tmp,
            mmdb::build(
                "GeoLite2-Country",
                vec![
                    ("192.0.2.0/24", country(Some("DE"), "EU")),
                    ("198.51.100.0/24", country(Some("CN"), "AS")),
                    ("203.0.113.0/24", country(Some(third), "EU")),
                ],
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, &cdb).unwrap();
    };
    write_country("DE");
    let adb = work.path().join("asn.mmdb");
    std::fs::write(
        &adb,
        mmdb::build(
            "GeoLite2-ASN",
            vec![("192.0.2.0/24", asn(64500, "Example Home ISP"))],
        ),
    )
    .unwrap();
    let alerts_dir = work.path().join("alerts");
    std::fs::create_dir(&alerts_dir).unwrap();
    let d = Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n\
             [geoip]\ncountry_database = \"{}\"\nasn_database = \"{}\"\n\
             [[origin]]\nname = \"abroad\"\nnot_countries = [\"DE\"]\nfailures = 1\nwithin = \"1d\"\nban = \"7d\"\n\
             [alerts]\ncommand = [\"/bin/sh\", \"-c\", \"env | grep ^SASLGUARD_ALERT_ | sort > {a}/.$SASLGUARD_ALERT_KIND && mv {a}/.$SASLGUARD_ALERT_KIND {a}/$SASLGUARD_ALERT_KIND\"]\n",
            log.display(),
            cdb.display(),
            adb.display(),
            a = alerts_dir.display()
        ),
    );

    // A Chinese address, one plaintext IMAP failure: banned at once, geo and posture on
    // the ban.
    append(
        &log,
        &dovecot(
            "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<admin>, method=PLAIN, rip=198.51.100.23, lip=192.0.2.1, session=<Y24xMDAyMw>",
        ),
    );
    d.wait_banned("198.51.100.23", true, 10);
    let b = ban_of(&d, "198.51.100.23");
    assert_eq!(b["geo"]["country"], "CN");
    assert_eq!(b["tls"]["plaintext_credentials"], true, "{b:#}");
    assert!(
        b["reason"].as_str().unwrap().contains("origin abroad: CN"),
        "{b:#}"
    );

    // Banned on Dovecot's auth line, before the session said how it talked: the ban's
    // posture is completed when the session ends.
    append(
        &log,
        &dovecot("auth: passwd-file(admin,198.51.100.30,<Y24xMDAzMA>): unknown user"),
    );
    d.wait_banned("198.51.100.30", true, 10);
    assert_eq!(ban_of(&d, "198.51.100.30")["tls"]["unknown"], 1);
    append(
        &log,
        &dovecot(
            "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<admin>, method=PLAIN, rip=198.51.100.30, lip=192.0.2.1, TLS, TLSv1 with cipher ECDHE-RSA-AES256-SHA (256/256 bits), session=<Y24xMDAzMA>",
        ),
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let tls = loop {
        let t = ban_of(&d, "198.51.100.30")["tls"].clone();
        if t.get("unknown").is_none() || std::time::Instant::now() > end {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        tls,
        json!({"attempts": {"TLSv1 ECDHE-RSA-AES256-SHA": 1}, "plaintext_credentials": false,
               "weak": ["TLSv1 ECDHE-RSA-AES256-SHA: TLS 1.0"]})
    );

    // A German address guesses carol's password on the third try: not banned (the
    // default rules), but an alert with everything in the command's environment.
    append(
        &log,
        &(dovecot(
            "imap-login: Disconnected (auth failed, 3 attempts in 9 secs): user=<carol@example.org>, method=PLAIN, rip=192.0.2.60, lip=192.0.2.1, TLS, session=<ZGUwMDYw>",
        ) + &dovecot(
            "imap-login: Login: user=<carol@example.org>, method=PLAIN, rip=192.0.2.60, lip=192.0.2.1, mpid=4242, TLS, session=<ZGUwMDYx>",
        )),
    );
    let env_file = alerts_dir.join("login_after_failures");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The command renames its file into place when it is complete.
    while !env_file.exists() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let env = std::fs::read_to_string(&env_file)
        .unwrap_or_else(|e| panic!("alert command not run ({e}):\n{}", d.log()));
    for want in [
        "SASLGUARD_ALERT_ADDRESS=192.0.2.60",
        "SASLGUARD_ALERT_USER=carol@example.org",
        "SASLGUARD_ALERT_COUNTRY=DE",
        "SASLGUARD_ALERT_ASN=64500",
        "SASLGUARD_ALERT_SERVICE=imap",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in\n{env}");
    }
    assert!(!d.banned().contains(&"192.0.2.60".to_string()));
    assert!(
        d.log()
            .contains("alert: login to account \"carol@example.org\"")
    );
    assert_eq!(d.json("status")["alerts"]["login_after_failures"], 1);

    // geoipupdate replaces the country database: 203.0.113.0/24 moves from DE to FR.
    // Before, one failure from there is no ban; after, without a restart, it is.
    append(
        &log,
        &dovecot(
            "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1, TLS, session=<bmwwMDA1>",
        ),
    );
    let s = d.wait_status(10, "the failure from 203.0.113.5", |s| {
        s["stats"]["failures"].as_u64() >= Some(6)
    });
    assert_eq!(s["stats"]["failures"], 6, "{s:#}");
    assert!(!d.banned().contains(&"203.0.113.5".to_string()));
    write_country("FR");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !d.log().contains("country database") || !d.log().contains("reloaded") {
        assert!(
            std::time::Instant::now() < end,
            "not reloaded:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    append(
        &log,
        &dovecot(
            "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, method=PLAIN, rip=203.0.113.6, lip=192.0.2.1, TLS, session=<bmwwMDA2>",
        ),
    );
    d.wait_banned("203.0.113.6", true, 10);
    assert_eq!(ban_of(&d, "203.0.113.6")["geo"]["country"], "FR");

    // The store keeps the alert and the ban's origin for reports.
    let mut d = d;
    d.stop();
    let store = saslguard::store::Store::open_read_only(&d.state().join("saslguard.db")).unwrap();
    let alerts = store.alerts(saslguard::time::Timestamp(0)).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, "login_after_failures");
    let bans = store.bans(None).unwrap();
    let cn = bans
        .iter()
        .find(|b| b.target.to_string() == "198.51.100.30/32")
        .unwrap();
    assert_eq!(cn.geo.country.as_deref(), Some("CN"));
    assert_eq!(
        cn.tls.as_ref().unwrap().unknown,
        0,
        "completed posture stored"
    );
}

#[test]
fn reloads_apply_at_once_unban_forgets_and_kill_9_loses_and_doubles_nothing() {
    if !support::can_run(
        "reloads_apply_at_once_unban_forgets_and_kill_9_loses_and_doubles_nothing",
        &["ip", "nft", "python3"],
    ) {
        return;
    }
    let net = Netns::new(&["192.0.2.99"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let rules = |n: u32| {
        format!("[[rule]]\nname = \"test\"\nfailures = {n}\nwithin = \"10m\"\nban = \"1h\"\n")
    };
    let head = format!(
        "metrics_listen = \"127.0.0.1:9155\"\n[sources]\nfiles = [\"{}\"]\njournal = false\n[nftables]\n",
        log.display()
    );
    let mut d = Daemon::start(&net.server, &format!("{head}{}", rules(3)));
    let write_config = |d: &Daemon, extra: &str| {
        std::fs::write(
            d.config_path(),
            std::fs::read_to_string(d.config_path())
                .unwrap()
                .split("metrics_listen")
                .next()
                .unwrap()
                .to_string()
                + &head
                + extra,
        )
        .unwrap();
        let out = d.ctl(&["reload"]);
        assert!(out.status.success(), "{out:?}");
    };
    // Two failures under a 3-failure rule: no ban. A reload to a 2-failure rule applies
    // to the next guesser at once.
    append(&log, &failures("198.51.100.1", 2));
    d.wait_status(10, "2 failures", |s| failures_counted(s) == 2);
    assert!(d.banned().is_empty());
    write_config(&d, &rules(2));
    append(&log, &failures("198.51.100.2", 2));
    d.wait_banned("198.51.100.2", true, 10);
    // The allowlist, likewise.
    write_config(
        &d,
        &format!("{}[allowlist]\nnetworks = [\"198.51.100.3\"]\n", rules(2)),
    );
    append(&log, &failures("198.51.100.3", 4));
    append(&log, &failures("198.51.100.4", 2));
    d.wait_banned("198.51.100.4", true, 10);
    assert!(!d.banned().contains(&"198.51.100.3".to_string()));
    // Unban forgets the failures so far: one more failure is not a second ban.
    let out = d.ctl(&["unban", "198.51.100.4"]);
    assert!(out.status.success());
    append(&log, &failures("198.51.100.4", 1));
    append(&log, &failures("198.51.100.5", 2));
    d.wait_banned("198.51.100.5", true, 10);
    assert!(!d.banned().contains(&"198.51.100.4".to_string()));
    // The metrics say the same.
    let metrics = String::from_utf8_lossy(
        &net.exec_ok(
            &net.server,
            &[
                "python3",
                "-c",
                "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9155/metrics',timeout=10).read().decode())",
            ],
        )
        .stdout,
    )
    .into_owned();
    for want in [
        "saslguard_active_bans 2",
        "saslguard_bans_total{origin=\"policy\"} 3",
        "saslguard_unbans_total 1",
        "saslguard_failures_total 13",
        "saslguard_unenforced_bans 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == want),
            "no {want:?} in:\n{metrics}"
        );
    }
    // kill -9 right after lines arrive: after the restart nothing is lost and nothing
    // counted twice (failures and positions are written in one transaction).
    append(&log, &failures("198.51.100.6", 5));
    d.wait_status(10, "the five failures", |s| failures_counted(s) == 18);
    support::run_ok(std::process::Command::new("kill").args(["-KILL", &d.pid().to_string()]));
    d.reap();
    d.restart();
    d.wait_caught_up(10);
    assert_eq!(offender_failures(&d, "198.51.100.6"), 5);
    assert_eq!(offender_failures(&d, "198.51.100.5"), 2);
}
