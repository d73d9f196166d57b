//! Attacks and faults against the live daemon, each made to happen for real: in a
//! network namespace the test creates (and deletes), with the real kernel and a real
//! SQLite store.
//!
//! - manual bans that could only hurt are refused, with their reason and exit 65;
//! - the host's own addresses are never banned, also one added while running;
//! - `nft flush ruleset` (what `systemctl reload nftables` does) is healed within a
//!   second or two, every ban back with its time;
//! - a reload that renames the table takes the bans along and removes the old table;
//! - a second daemon on the same state is refused and the first keeps its socket;
//! - a control socket path naming a file, an empty store file and a FIFO log are each
//!   met with a clear refusal, nothing deleted and nothing hung;
//! - the state directory is 0700 and the store 0600, whoever starts the daemon.

use crate::support;
use crate::support::{Daemon, Netns, SERVER_V4, append, failures};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");

/// A daemon following one log file with a 3-failure rule and nftables on.
fn daemon(net: &Netns, log: &Path, extra: &str) -> Daemon {
    Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n\
             [[rule]]\nname = \"test\"\nfailures = 3\nwithin = \"10m\"\nban = \"1h\"\n{extra}",
            log.display()
        ),
    )
}

fn failures_counted(d: &Daemon) -> u64 {
    d.json("status")["stats"]["failures"].as_u64().unwrap()
}

#[test]
fn manual_bans_that_could_only_hurt_are_refused_with_their_reason() {
    if !support::can_run(
        "manual_bans_that_could_only_hurt_are_refused_with_their_reason",
        &["ip", "nft"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let d = daemon(
        &net,
        &log,
        "[allowlist]\nnetworks = [\"203.0.113.0/28\"]\n[nftables]\n",
    );
    for (target, force, why) in [
        ("0.0.0.0", true, "unspecified"),
        ("::", true, "unspecified"),
        ("224.0.0.1", true, "multicast"),
        ("ff02::1", true, "multicast"),
        ("255.255.255.255", true, "broadcast"),
        ("169.254.10.1", true, "link-local"),
        ("fe80::1", true, "link-local"),
        ("8000::/1", true, "never banned"),
        ("127.0.0.1", true, "127.0.0.0/8"),
        ("::ffff:127.0.0.1", true, "127.0.0.0/8"),
        // The server's own address, and a prefix around it.
        (SERVER_V4, true, "192.0.2.1"),
        ("192.0.2.0/24", true, "192.0.2.1"),
        ("203.0.113.5", true, "203.0.113.0/28"),
        ("10.0.0.0/8", false, "--force"),
        ("2001:dba::/31", false, "--force"),
    ] {
        let mut args = vec!["ban", target];
        if force {
            args.push("--force");
        }
        let out = d.ctl(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "ban {target}: {err}");
        assert!(err.contains(why), "ban {target}: {err}");
    }
    assert!(
        d.banned().is_empty(),
        "nothing may be banned: {:?}",
        d.banned()
    );
    // A deliberate wide ban with --force, and a mapped address banned as IPv4.
    let out = d.ctl(&["ban", "10.0.0.0/8", "--force"]);
    assert!(out.status.success(), "{out:?}");
    let out = d.ctl(&["ban", "::ffff:198.51.100.7"]);
    assert!(out.status.success(), "{out:?}");
    let mut banned = d.banned();
    banned.sort();
    assert_eq!(banned, ["10.0.0.0/8", "198.51.100.7"]);
    assert!(d.kernel_set("addr4").contains("198.51.100.7"));
    assert!(!d.kernel_set("addr6").contains("198.51.100.7"));
}

#[test]
fn the_hosts_own_addresses_are_never_banned() {
    if !support::can_run("the_hosts_own_addresses_are_never_banned", &["ip", "nft"]) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let d = daemon(&net, &log, "[nftables]\n");
    // The server's public address (a webmail or monitoring check) fails five times,
    // written both ways Linux may write it; a stranger fails three times.
    append(&log, &failures(SERVER_V4, 5));
    append(&log, &failures(&format!("::ffff:{SERVER_V4}"), 5));
    append(&log, &failures("198.51.100.9", 3));
    d.wait_banned("198.51.100.9", true, 10);
    assert_eq!(d.banned(), ["198.51.100.9"]);
    // An address added to an interface while running is protected once re-read (a
    // reload reads the interfaces at once; the daemon also does every 10 s).
    net.exec_ok(
        &net.server,
        &["ip", "addr", "add", "203.0.113.77/32", "dev", "lo"],
    );
    assert!(d.ctl(&["reload"]).status.success());
    append(&log, &failures("203.0.113.77", 5));
    append(&log, &failures("198.51.100.10", 3));
    d.wait_banned("198.51.100.10", true, 10);
    let mut banned = d.banned();
    banned.sort();
    assert_eq!(banned, ["198.51.100.10", "198.51.100.9"]);
    assert_eq!(failures_counted(&d), 21);
    // With `own_addresses = false` the protection is off.
    let cfg = std::fs::read_to_string(d.config_path()).unwrap();
    std::fs::write(
        d.config_path(),
        format!("{cfg}[allowlist]\nown_addresses = false\n"),
    )
    .unwrap();
    assert!(d.ctl(&["reload"]).status.success());
    append(&log, &failures("203.0.113.77", 3));
    d.wait_banned("203.0.113.77", true, 10);
}

#[test]
fn a_flushed_ruleset_is_rebuilt_with_every_ban_within_seconds() {
    if !support::can_run(
        "a_flushed_ruleset_is_rebuilt_with_every_ban_within_seconds",
        &["ip", "nft"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let d = daemon(&net, &log, "[nftables]\n");
    for t in ["198.51.100.20", "2001:db8:5::20", "203.0.113.0/24"] {
        assert!(d.ctl(&["ban", t]).status.success());
    }
    assert!(d.kernel_set("addr4").contains("198.51.100.20"));
    net.exec_ok(&net.server, &["nft", "flush", "ruleset"]);
    let started = std::time::Instant::now();
    let end = started + Duration::from_secs(5);
    loop {
        let (a4, a6, n4) = (
            d.kernel_set("addr4"),
            d.kernel_set("addr6"),
            d.kernel_set("net4"),
        );
        if a4.contains("198.51.100.20")
            && a6.contains("2001:db8:5::20")
            && n4.contains("203.0.113.0/24")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the table did not come back within 5 s:\n{a4}\n{a6}\n{n4}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Back with the time the bans had left, not a fresh hour or none.
    let set = d.kernel_set("addr4");
    assert!(
        set.contains("expires 59m") || set.contains("expires 1h"),
        "{set}"
    );
    let s = d.json("status");
    assert_eq!(s["nft_table_rebuilds"], 1, "{s:#}");
    // And new bans land in it.
    append(&log, &failures("198.51.100.21", 3));
    d.wait_banned("198.51.100.21", true, 10);
    assert!(d.kernel_set("addr4").contains("198.51.100.21"));
    // The rule is back too: a banned client's packets are dropped (counted by the rule).
    let ruleset = String::from_utf8_lossy(
        &net.exec_ok(&net.server, &["nft", "list", "table", "inet", "saslguard"])
            .stdout,
    )
    .into_owned();
    assert!(
        ruleset.contains("@addr4") && ruleset.contains("drop"),
        "{ruleset}"
    );
}

#[test]
fn a_reload_refused_halfway_keeps_the_enforcer_that_runs() {
    if !support::can_run(
        "a_reload_refused_halfway_keeps_the_enforcer_that_runs",
        &["ip", "nft"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let d = daemon(&net, &log, "[nftables]\n");
    // The new configuration keeps nftables and adds a Postfix map in a directory anyone
    // may write to, which the map refuses to open: the reload fails after nftables was
    // already taken over.
    let open_dir = tempfile::tempdir().unwrap();
    Command::new("chmod")
        .arg("1777")
        .arg(open_dir.path())
        .status()
        .unwrap();
    let cfg = std::fs::read_to_string(d.config_path()).unwrap();
    std::fs::write(
        d.config_path(),
        format!(
            "{cfg}[postfix_map]\nenabled = true\nmap = \"cidr:{}/access\"\n",
            open_dir.path().display()
        ),
    )
    .unwrap();
    let out = d.ctl(&["reload"]);
    assert!(!out.status.success(), "{}", d.log());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the running one is kept"),
        "{out:?}"
    );
    // The running nftables enforcer is still there: a ban reaches the kernel.
    assert!(
        d.ctl(&["ban", "198.51.100.31"]).status.success(),
        "{}",
        d.log()
    );
    assert!(
        d.kernel_set("addr4").contains("198.51.100.31"),
        "{}",
        d.log()
    );
}

#[test]
fn a_reload_that_renames_the_table_takes_the_bans_along() {
    if !support::can_run(
        "a_reload_that_renames_the_table_takes_the_bans_along",
        &["ip", "nft"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let d = daemon(&net, &log, "[nftables]\ntable = \"saslguard\"\n");
    assert!(d.ctl(&["ban", "198.51.100.30"]).status.success());
    let cfg = std::fs::read_to_string(d.config_path()).unwrap();
    std::fs::write(
        d.config_path(),
        cfg.replace("table = \"saslguard\"", "table = \"mailguard\""),
    )
    .unwrap();
    assert!(d.ctl(&["reload"]).status.success(), "{}", d.log());
    let tables = |ns: &str| {
        String::from_utf8_lossy(&net.exec_ok(ns, &["nft", "list", "tables"]).stdout).into_owned()
    };
    let t = tables(&net.server);
    assert!(
        t.contains("mailguard") && !t.contains("saslguard"),
        "old table must be gone, new one there: {t}"
    );
    let set = String::from_utf8_lossy(
        &net.exec_ok(
            &net.server,
            &["nft", "list", "set", "inet", "mailguard", "addr4"],
        )
        .stdout,
    )
    .into_owned();
    assert!(set.contains("198.51.100.30"), "{set}");
    // unban reaches the table that enforces.
    assert!(d.ctl(&["unban", "198.51.100.30"]).status.success());
    let set = String::from_utf8_lossy(
        &net.exec_ok(
            &net.server,
            &["nft", "list", "set", "inet", "mailguard", "addr4"],
        )
        .stdout,
    )
    .into_owned();
    assert!(!set.contains("198.51.100.30"), "{set}");
}

/// Runs `saslguard run -c CONFIG` in `ns`, which must exit (with an error) within 10 s;
/// returns its exit code and output.
fn run_must_exit(ns: &str, config: &Path) -> (Option<i32>, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns, BIN, "run", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .spawn()
        .unwrap();
    let st = support::wait_until(&mut c, Duration::from_secs(10));
    if st.is_none() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let text = std::fs::read_to_string(out.path()).unwrap();
    let st = st.unwrap_or_else(|| panic!("saslguard run did not exit within 10 s:\n{text}"));
    (st.code(), text)
}

#[test]
fn a_second_daemon_on_the_same_state_is_refused_and_the_first_is_unharmed() {
    if !support::can_run(
        "a_second_daemon_on_the_same_state_is_refused_and_the_first_is_unharmed",
        &["ip"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let d = daemon(&net, &log, "");
    // Same configuration, and a copy that names another control socket but the same
    // state: both refused, before they touch the store or the socket.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(d.config_path())
            .unwrap()
            .replace("control.sock", "other.sock"),
    )
    .unwrap();
    for cfg in [d.config_path(), other] {
        let (code, text) = run_must_exit(&net.server, &cfg);
        assert_ne!(code, Some(0), "{text}");
        assert!(
            text.contains("in use by another saslguard daemon"),
            "{text}"
        );
    }
    assert!(d.ctl(&["status"]).status.success(), "{}", d.log());
    append(&log, &failures("198.51.100.40", 3));
    d.wait_banned("198.51.100.40", true, 10);
    assert_eq!(failures_counted(&d), 3);
}

#[test]
fn bad_paths_are_refused_clearly_and_nothing_is_deleted_or_hung() {
    if !support::can_run(
        "bad_paths_are_refused_clearly_and_nothing_is_deleted_or_hung",
        &["ip", "mkfifo"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write_cfg = |name: &str, log: &Path, socket: &Path, state: &Path| {
        let p = d.join(name);
        std::fs::write(
            &p,
            format!(
                "[sources]\nfiles = [\"{}\"]\njournal = false\n[daemon]\nstate_directory = \"{}\"\ncontrol_socket = \"{}\"\n",
                log.display(),
                state.display(),
                socket.display()
            ),
        )
        .unwrap();
        p
    };
    let log = d.join("mail.log");
    append(&log, "");

    // control_socket names the admin's regular file: refused by check-config and by
    // run, and the file is still there.
    let precious = d.join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    let cfg = write_cfg("a.toml", &log, &precious, &d.join("state-a"));
    let out = support::run(Command::new(BIN).arg("check-config").arg(&cfg));
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    let (code, text) = run_must_exit(&net.server, &cfg);
    assert_ne!(code, Some(0));
    assert!(text.contains("not a socket"), "{text}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");

    // An empty store file is not a new store.
    let state = d.join("state-b");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("saslguard.db"), "").unwrap();
    let cfg = write_cfg("b.toml", &log, &d.join("b.sock"), &state);
    let (code, text) = run_must_exit(&net.server, &cfg);
    assert_ne!(code, Some(0));
    assert!(text.contains("is empty (0 bytes)"), "{text}");
    assert_eq!(
        std::fs::metadata(state.join("saslguard.db")).unwrap().len(),
        0
    );

    // A FIFO at the log path: the daemon starts and answers, and says why it does not
    // read it; a regular file there later is read.
    let fifo = d.join("fifo.log");
    support::run_ok(Command::new("mkfifo").arg(&fifo));
    let state = d.join("state-c");
    let sock = d.join("c.sock");
    let cfg = write_cfg("c.toml", &fifo, &sock, &state);
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut c = Command::new("ip")
        .args(["netns", "exec", &net.server, BIN, "run", "-c"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let answered = loop {
        let o = support::run(Command::new(BIN).args(["status", "--socket"]).arg(&sock));
        if o.status.success() {
            break true;
        }
        if std::time::Instant::now() > end {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    if support::wait_until(&mut c, Duration::from_secs(10)).is_none() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let text = std::fs::read_to_string(out.path()).unwrap();
    assert!(answered, "the daemon hung on the FIFO:\n{text}");
    assert!(text.contains("not a regular file"), "{text}");
    // The state directory and the store are private.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("saslguard.db")), 0o600);
}

#[test]
fn connections_held_open_on_the_metrics_port_do_not_stop_bans() {
    if !support::can_run(
        "connections_held_open_on_the_metrics_port_do_not_stop_bans",
        &["ip", "nft", "python3", "prlimit"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    // Right after the [daemon] section the harness writes.
    let d = Daemon::start(
        &net.server,
        &format!(
            "metrics_listen = \"127.0.0.1:9154\"\n[sources]\nfiles = [\"{}\"]\njournal = false\n\
             [[rule]]\nname = \"test\"\nfailures = 3\nwithin = \"10m\"\nban = \"1h\"\n[nftables]\n",
            log.display()
        ),
    );
    // The descriptor limit systemd gives by default, scaled down so the test needs few
    // connections: 128 descriptors, 250 connections held open by a local user.
    support::run_ok(Command::new("prlimit").args([
        "--pid",
        &d.pid().to_string(),
        "--nofile=128:128",
    ]));
    let holder = "import socket,sys,time\nheld=[]\nfor i in range(250):\n    try:\n        held.append(socket.create_connection(('127.0.0.1',9154),timeout=2))\n    except OSError:\n        pass\nprint(len(held),flush=True)\nsys.stdin.read()\n";
    let mut hold = Command::new("ip")
        .args(["netns", "exec", &net.server, "python3", "-c", holder])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(hold.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.trim().parse::<u32>().unwrap() >= 200, "{first}");
    // Bans keep landing in the kernel, the control socket answers, a rotated log could
    // be opened.
    for (i, a) in ["198.51.100.50", "198.51.100.51", "198.51.100.52"]
        .iter()
        .enumerate()
    {
        append(&log, &failures(a, 3));
        d.wait_banned(a, true, 10);
        assert!(
            d.kernel_set("addr4").contains(a),
            "ban {i} not in the kernel"
        );
    }
    let s = d.json("status");
    assert_eq!(s["enforcer_errors"], serde_json::json!({}), "{s:#}");
    drop(hold.stdin.take());
    let _ = support::wait_until(&mut hold, Duration::from_secs(10));
    // The port works again once the holder is gone.
    let out = net.exec_ok(
        &net.server,
        &[
            "python3",
            "-c",
            "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9154/metrics',timeout=15).read().decode())",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("saslguard_active_bans 3"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn sessions_open_over_a_restart_or_reload_count_no_attempt_twice() {
    if !support::can_run(
        "sessions_open_over_a_restart_or_reload_count_no_attempt_twice",
        &["ip"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let mut d = Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n\
             [[rule]]\nname = \"test\"\nfailures = 10\nwithin = \"10m\"\nban = \"1h\"\n",
            log.display()
        ),
    );
    let now = || {
        chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    };
    // An IMAP session with two guesses (auth_verbose lines carry its session id) and a
    // submission connection with one, both still open when saslguard stops.
    let t = now();
    append(
        &log,
        &format!(
            "{t} mx dovecot: auth: passwd-file(admin,198.51.100.60,<c2Vzcw>): Password mismatch\n\
             {t} mx dovecot: auth: passwd-file(root,198.51.100.60,<c2Vzcw>): unknown user\n\
             {t} mx postfix/submission/smtpd[6001]: connect from unknown[198.51.100.61]\n\
             {t} mx postfix/submission/smtpd[6001]: warning: unknown[198.51.100.61]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=x\n"
        ),
    );
    d.wait_status(10, "4 lines", |s| s["stats"]["lines"] == 4);
    assert_eq!(failures_counted(&d), 3);
    d.stop();
    d.restart();
    // The sessions end after the restart: Dovecot's summary says 2 attempts, Postfix's
    // tally 1 failed AUTH; all three were counted before the stop.
    let t = now();
    append(
        &log,
        &format!(
            "{t} mx dovecot: imap-login: Disconnected (auth failed, 2 attempts in 30 secs): user=<root>, method=PLAIN, rip=198.51.100.60, lip=192.0.2.1, TLS, session=<c2Vzcw>\n\
             {t} mx postfix/submission/smtpd[6001]: disconnect from unknown[198.51.100.61] ehlo=1 auth=0/1 quit=1 commands=2/3\n"
        ),
    );
    d.wait_status(10, "2 lines after the restart", |s| {
        s["stats"]["lines"] == 2
    });
    assert_eq!(failures_counted(&d), 0, "{}", d.log());
    // The same over a reload.
    let t = now();
    append(
        &log,
        &format!(
            "{t} mx dovecot: auth: passwd-file(admin,198.51.100.62,<c2Vzcz>): Password mismatch\n"
        ),
    );
    d.wait_status(10, "3 lines", |s| s["stats"]["lines"] == 3);
    assert!(d.ctl(&["reload"]).status.success());
    let t = now();
    append(
        &log,
        &format!(
            "{t} mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 5 secs): user=<admin>, method=PLAIN, rip=198.51.100.62, lip=192.0.2.1, TLS, session=<c2Vzcz>\n"
        ),
    );
    d.wait_status(10, "4 lines", |s| s["stats"]["lines"] == 4);
    assert_eq!(failures_counted(&d), 1, "{}", d.log());
}

/// A tmpfs of `size` mounted at `dir` for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        support::run_ok(Command::new("mount").args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            dir.to_str().unwrap(),
        ]));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A daemon configured with `extra` whose state directory is a 4 MB tmpfs, filled to
/// its last byte once the daemon runs. Returns the daemon, the mount (unmounted on
/// drop) and the filler file (remove it and the space is back).
fn daemon_on_a_full_disk(net: &Netns, extra: &str) -> (Daemon, Tmpfs, std::path::PathBuf) {
    let mut d = Daemon::prepare(&net.server, extra);
    let fs = Tmpfs::mount(&d.state(), "4m");
    d.restart();
    let filler = d.state().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    (d, fs, filler)
}

#[test]
fn a_full_disk_stops_neither_bans_nor_the_daemon_and_loses_nothing() {
    if !support::can_run(
        "a_full_disk_stops_neither_bans_nor_the_daemon_and_loses_nothing",
        &["ip", "nft", "mount", "umount", "dd"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let (mut d, _fs, filler) = daemon_on_a_full_disk(
        &net,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n\
             [[rule]]\nname = \"test\"\nfailures = 5\nwithin = \"10m\"\nban = \"1h\"\n[nftables]\n",
            log.display()
        ),
    );
    // 300 guessers, five failures each: every one banned while nothing can be written.
    let addrs: Vec<String> = (0..300)
        .map(|i| format!("198.51.{}.{}", 100 + i / 250, 1 + i % 250))
        .collect();
    for a in &addrs {
        append(&log, &failures(a, 5));
    }
    d.wait_status(30, "all 1500 lines read", |s| s["stats"]["lines"] == 1500);
    d.wait_status(10, "the store to report write errors", |s| {
        s["store_errors"].as_u64().unwrap_or(0) > 0
    });
    let s = d.json("status");
    assert_eq!(s["active_bans"], 300, "{s:#}");
    let set = d.kernel_set("addr4");
    assert!(
        addrs.iter().all(|a| set.contains(a.as_str())),
        "every ban in the kernel"
    );
    // Space comes back: everything counted reaches the store, with the position.
    std::fs::remove_file(&filler).unwrap();
    let db = d.state().join("saslguard.db");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = saslguard::store::Store::open_read_only(&db)
            .and_then(|s| s.failure_rows())
            .unwrap_or(0);
        if rows == 1500 {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "{rows} of 1500 failures in the store\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A stop and a start: nothing read again, nothing lost, the bans still there.
    d.stop();
    d.restart();
    d.wait_status(10, "the log position restored", |s| {
        s["sources"][0]["behind_bytes"] == 0
    });
    let s = d.json("status");
    assert_eq!(s["stats"]["lines"], 0, "{s:#}");
    assert_eq!(s["active_bans"], 300, "{s:#}");
}

#[test]
fn a_stop_while_the_disk_is_full_takes_seconds_and_the_next_start_reads_again() {
    if !support::can_run(
        "a_stop_while_the_disk_is_full_takes_seconds_and_the_next_start_reads_again",
        &["ip", "mount", "umount", "dd"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let (mut d, _fs, filler) = daemon_on_a_full_disk(
        &net,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n\
             [[rule]]\nname = \"test\"\nfailures = 50\nwithin = \"10m\"\nban = \"1h\"\n",
            log.display()
        ),
    );
    append(&log, &failures("198.51.100.70", 7));
    d.wait_status(10, "7 lines read", |s| s["stats"]["lines"] == 7);
    d.wait_status(10, "write errors", |s| {
        s["store_errors"].as_u64().unwrap_or(0) > 0
    });
    // Daemon::stop fails the test if SIGTERM takes more than 10 s.
    d.stop();
    assert!(
        d.log().contains("will be read again at the next start"),
        "{}",
        d.log()
    );
    std::fs::remove_file(&filler).unwrap();
    d.restart();
    d.wait_status(10, "the 7 lines read again", |s| s["stats"]["lines"] == 7);
    assert_eq!(failures_counted(&d), 7);
}

#[test]
fn a_ban_the_kernel_refused_is_reported_and_retried_until_it_holds() {
    if !support::can_run(
        "a_ban_the_kernel_refused_is_reported_and_retried_until_it_holds",
        &["ip", "nft"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let d = daemon(&net, &log, "[nftables]\n");
    // Someone removes the IPv4 address set (the chain first, which uses it).
    net.exec_ok(
        &net.server,
        &["nft", "flush", "chain", "inet", "saslguard", "input"],
    );
    net.exec_ok(
        &net.server,
        &["nft", "delete", "set", "inet", "saslguard", "addr4"],
    );
    // A ban by hand that no enforcer took fails loudly.
    let out = d.ctl(&["ban", "198.51.100.80"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("recorded but not enforced: nftables"), "{err}");
    // The first retry is a second away: the gap shows now.
    let bans = d.json("bans");
    assert_eq!(
        bans["bans"][0]["not_enforced_by"]["enforcers"],
        serde_json::json!(["nftables"]),
        "{bans:#}"
    );
    assert_eq!(d.json("status")["unenforced_bans"], 1);
    // And one from the log: the gap is in `bans`, `status` and the metrics until the
    // retry puts the set back and the bans in it.
    append(&log, &failures("198.51.100.81", 3));
    d.wait_banned("198.51.100.81", true, 10);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = d.json("status");
        let set = d.kernel_set("addr4");
        if s["unenforced_bans"] == 0
            && set.contains("198.51.100.80")
            && set.contains("198.51.100.81")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "not enforced after 10 s: {s:#}\n{set}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.log().contains("now enforced after"), "{}", d.log());
    let bans = d.json("bans");
    assert!(
        bans["bans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["not_enforced_by"].is_null()),
        "{bans:#}"
    );
    // The rule is back too.
    let table = String::from_utf8_lossy(
        &net.exec_ok(&net.server, &["nft", "list", "table", "inet", "saslguard"])
            .stdout,
    )
    .into_owned();
    assert!(table.contains("@addr4"), "{table}");
}

#[test]
fn the_policy_service_takes_hostile_requests_calmly() {
    if !support::can_run(
        "the_policy_service_takes_hostile_requests_calmly",
        &["ip", "python3"],
    ) {
        return;
    }
    let net = Netns::new(&["198.51.100.2"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let sock = dir.path().join("policy.sock");
    let d = Daemon::start(
        &net.server,
        &format!(
            "[sources]\nfiles = [\"{}\"]\njournal = false\n[nftables]\nenabled = false\n[postfix_policy]\nenabled = true\nsocket = \"{}\"\n",
            log.display(),
            sock.display()
        ),
    );
    assert!(d.ctl(&["ban", "198.51.100.7"]).status.success());
    // Answers as Postfix would read them, one per request on one connection; then a
    // request too large to be Postfix's, which ends the connection; then a connection
    // that says nothing and goes away.
    let script = format!(
        r#"import socket
def ask(s, req):
    try:
        s.sendall(req)
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = s.recv(4096)
            if not chunk:
                return "closed"
            data += chunk
    except OSError:
        return "closed"
    return data.decode().strip()
s = socket.socket(socket.AF_UNIX); s.connect({sock:?})
print(ask(s, b"request=smtpd_access_policy\nclient_address=::ffff:198.51.100.7\n\n"))
print(ask(s, b"request=smtpd_access_policy\nclient_address=198.51.100.8\n\n"))
print(ask(s, b"request=smtpd_access_policy\nclient_address=not-an-address\n\n"))
print(ask(s, b"request=smtpd_access_policy\nclient_address=198.51.100.0/24\n\n"))
print(ask(s, b"garbage without any attribute\n\n"))
print(ask(s, b"x=" + b"A" * 20000 + b"\n\n"))
t = socket.socket(socket.AF_UNIX); t.connect({sock:?}); t.sendall(b"client_address=198.51"); t.close()
"#,
        sock = sock.display().to_string()
    );
    let out = net.exec_ok(&net.server, &["python3", "-c", &script]);
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        answers,
        [
            "action=REJECT too many failed logins from your address",
            "action=DUNNO",
            "action=DUNNO",
            "action=DUNNO",
            "action=DUNNO",
            "closed",
        ]
    );
    // And it goes on answering, as does the daemon.
    let out = net.exec_ok(
        &net.server,
        &[
            "python3",
            "-c",
            &format!(
                "import socket\ns=socket.socket(socket.AF_UNIX); s.connect({:?}); s.sendall(b'client_address=198.51.100.7\\n\\n'); print(s.recv(100).decode().strip())",
                sock.display().to_string()
            ),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "action=REJECT too many failed logins from your address"
    );
    assert!(d.ctl(&["status"]).status.success());
}
