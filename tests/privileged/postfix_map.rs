//! The Postfix access-map enforcer: the file it writes, expiry, reload, refusal of a
//! foreign file, indexed maps through real postmap, and with a real Postfix the
//! configuration that stops a banned client before AUTH (config/postfix/*.saslguard).

use crate::support;
use crate::support::{MailServer, Netns, PASSWORD, SERVER_V4};
use ipnet::IpNet;
use saslguard::enforce::postfix_map::PostfixMap;
use saslguard::policy::Decision;
use saslguard::time::Timestamp;
use serde_json::json;
use std::process::Command;

const T0: i64 = 1_795_341_600_000; // 2026-11-22T10:00:00Z

fn ban(target: &str, at: i64, mins: i64) -> Decision {
    let target: IpNet = target
        .parse()
        .or_else(|_| target.parse::<std::net::IpAddr>().map(IpNet::from))
        .unwrap();
    Decision {
        target,
        at: Timestamp(at),
        until: Timestamp(at + mins * 60_000),
        reason: "5 failures within 10m (rule fast)".into(),
        rule: "fast".into(),
        failures: 5,
        nth: 1,
        geo: Default::default(),
        tls: None,
    }
}

/// One SMTP AUTH as alice from `from` on `port`, sending a message if it works; the
/// client reports each reply code (mailclient.py's `smtp_auth`).
fn login(from: &str, port: u16, starttls: bool, password: &str) -> serde_json::Value {
    json!({"kind": "smtp_auth", "from": from, "port": port, "starttls": starttls, "user": "alice", "password": password, "send": true})
}

/// A directory for a map real Postfix reads (its processes must traverse it).
fn map_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Command::new("chmod")
        .arg("0755")
        .arg(dir.path())
        .status()
        .unwrap();
    dir
}

#[test]
fn a_planted_symlink_never_makes_root_overwrite_another_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // The temporary file's name and postmap's database beside it, planted as symlinks
    // (a leftover, or someone who could write there once).
    let tmp = dir.path().join(format!(
        ".saslguard_access.saslguard-{}",
        std::process::id()
    ));
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    std::os::unix::fs::symlink(&victim, format!("{}.db", tmp.display())).unwrap();
    // postmap reads main.cf for its defaults; a fresh machine may have none.
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(conf.path().join("main.cf"), "").unwrap();
    let kinds: &[&str] = if support::have_tools(
        "a_planted_symlink_never_makes_root_overwrite_another_file (hash)",
        &["postmap"],
    ) {
        &["cidr", "hash"]
    } else {
        &["cidr"]
    };
    for kind in kinds {
        let spec = format!("{kind}:{}", dir.path().join("saslguard_access").display());
        let mut map = PostfixMap::open(&spec, "REJECT too many failed logins")
            .unwrap()
            .with_postfix_config(conf.path());
        map.apply(&[ban("203.0.113.7", T0, 60)], Timestamp(T0))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "precious",
            "{kind}"
        );
        let text = std::fs::read_to_string(dir.path().join("saslguard_access")).unwrap();
        assert!(text.contains("203.0.113.7\tREJECT"), "{kind}: {text}");
        assert!(
            !std::fs::symlink_metadata(dir.path().join("saslguard_access"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    // A directory others may write to is refused with its reason.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let spec = format!("cidr:{}", open.path().join("saslguard_access").display());
    let e = PostfixMap::open(&spec, "REJECT x")
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("writable by group or others"), "{e}");
}

#[test]
fn cidr_map_is_written_atomically_expires_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("saslguard_access");
    let spec = format!("cidr:{}", path.display());
    let mut map = PostfixMap::open(&spec, "REJECT too many failed logins").unwrap();
    map.apply(
        &[
            ban("203.0.113.7", T0, 60),
            ban("2001:db8:bad:1::/64", T0, 360),
            ban("198.51.100.0/24", T0, 30),
        ],
        Timestamp(T0),
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# saslguard access map"), "{text}");
    for line in [
        "# until 2026-11-22T11:00:00Z 5 failures within 10m (rule fast)",
        "203.0.113.7\tREJECT too many failed logins",
        "2001:db8:bad:1::/64\tREJECT too many failed logins",
        "198.51.100.0/24\tREJECT too many failed logins",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file left behind: {leftovers:?}"
    );
    // A longer ban of the same target extends it; a shorter one does not shorten it.
    map.apply(
        &[ban("203.0.113.7", T0, 120), ban("203.0.113.7", T0, 10)],
        Timestamp(T0),
    )
    .unwrap();
    assert_eq!(
        map.entries()[&"203.0.113.7/32".parse::<IpNet>().unwrap()].until,
        Timestamp(T0 + 120 * 60_000)
    );
    // A new process reads what the last one wrote.
    let mut again = PostfixMap::open(&spec, "REJECT too many failed logins").unwrap();
    assert_eq!(again.entries().len(), 3);
    // Expiry: the /24 (30 min) goes at T0+31min, the others stay.
    assert_eq!(again.expire(Timestamp(T0 + 31 * 60_000)).unwrap(), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("198.51.100.0/24"), "{text}");
    // Unbanning what is not banned is not an error.
    assert_eq!(again.unban(&["192.0.2.99/32".parse().unwrap()]).unwrap(), 0);
    assert_eq!(
        again.unban(&["203.0.113.7/32".parse().unwrap()]).unwrap(),
        1
    );
    assert_eq!(again.expire(Timestamp(T0 + 7 * 3_600_000)).unwrap(), 1);
    assert!(again.entries().is_empty());
}

#[test]
fn a_file_saslguard_did_not_write_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access");
    std::fs::write(&path, "192.0.2.0/24 OK\n").unwrap();
    let e = PostfixMap::open(&format!("cidr:{}", path.display()), "REJECT x")
        .err()
        .expect("refused");
    assert!(e.to_string().contains("not written by saslguard"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "192.0.2.0/24 OK\n");
    assert!(PostfixMap::open("cidr:relative/path", "REJECT x").is_err());
    assert!(PostfixMap::open("regexp:/etc/postfix/x", "REJECT x").is_err());
}

#[test]
fn indexed_maps_are_built_with_postmap_and_answer_postfix_lookups() {
    if !support::have_tools("indexed maps", &["postmap"]) {
        return;
    }
    for kind in ["hash", "lmdb"] {
        indexed_map(kind);
    }
}

fn indexed_map(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("saslguard_access");
    let spec = format!("{kind}:{}", path.display());
    // postmap reads main.cf for its defaults; a fresh machine may have none.
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(conf.path().join("main.cf"), "").unwrap();
    let mut map = PostfixMap::open(&spec, "REJECT banned")
        .unwrap()
        .with_postfix_config(conf.path());
    map.apply(
        &[
            ban("203.0.113.7", T0, 60),
            ban("198.51.100.0/24", T0, 60),
            ban("2001:db8:bad:1::/64", T0, 60),
        ],
        Timestamp(T0),
    )
    .unwrap();
    let query = |key: &str| {
        let out = Command::new("postmap")
            .arg("-c")
            .arg(conf.path())
            .args(["-q", key, &spec])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(query("203.0.113.7"), "REJECT banned", "{kind}");
    // Postfix looks up a client address and then its parent networks by dropping octets.
    assert_eq!(query("198.51.100"), "REJECT banned");
    assert_eq!(query("192.0.2.1"), "");
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("2001:db8:bad:1::"),
        "an IPv6 prefix cannot be an lmdb key"
    );
    map.expire(Timestamp(T0 + 61 * 60_000)).unwrap();
    assert_eq!(
        query("203.0.113.7"),
        "",
        "the rebuilt database no longer has the expired ban"
    );
}

#[test]
fn real_postfix_refuses_a_banned_client_before_auth_on_587_and_465() {
    if !support::can_run(
        "real_postfix_refuses_a_banned_client_before_auth_on_587_and_465",
        &["ip", "postfix", "dovecot", "openssl", "python3", "ss"],
    ) {
        return;
    }
    let net = Netns::new(&["192.0.2.10", "192.0.2.11"]);
    let map_dir = map_dir();
    let spec = format!("cidr:{}", map_dir.path().join("saslguard_access").display());
    let now = chrono::Utc::now().timestamp_millis();
    let mut map = PostfixMap::open(&spec, "REJECT too many failed logins").unwrap();
    map.apply(&[ban("192.0.2.10", now, 60)], Timestamp(now))
        .unwrap();
    let mut server = MailServer::start_with(&net, Some(&spec));
    let auth = |from: &str, port: u16, starttls: bool| login(from, port, starttls, PASSWORD);
    let wrong =
        |from: &str, port: u16, starttls: bool| login(from, port, starttls, "not-the-password");
    let actions = vec![
        auth("192.0.2.10", 587, true),
        auth("192.0.2.10", 465, false),
        // Port 25 keeps Postfix's default smtpd_delay_reject = yes: the map acts only at
        // RCPT TO, and a banned client still gets to AUTH. This is why master.cf.saslguard
        // turns it off where clients log in.
        auth("192.0.2.10", 25, false),
        auth("192.0.2.11", 587, true),
        auth("192.0.2.11", 465, false),
        // Wrong passwords from the banned client: on 587 and 465 they must never reach
        // Dovecot; on 25 one does, which shows the check below would see them.
        wrong("192.0.2.10", 587, true),
        wrong("192.0.2.10", 465, false),
        wrong("192.0.2.10", 25, false),
    ];
    let results = net.mail_clients(SERVER_V4, &actions);
    let line = |i: usize| results.lines().nth(i).unwrap_or_default().to_string();
    assert_eq!(
        line(0),
        "smtp_auth 192.0.2.10 greeting=554",
        "banned client refused in the greeting on 587"
    );
    assert_eq!(
        line(1),
        "smtp_auth 192.0.2.10 greeting=554",
        "banned client refused in the greeting on 465"
    );
    assert!(
        line(2).contains("auth=235"),
        "with the default smtpd_delay_reject, AUTH still works on 25: {}",
        line(2)
    );
    assert!(
        line(2).contains("rcpt=554"),
        "... and only the recipient is refused: {}",
        line(2)
    );
    assert!(
        line(3).contains("auth=235") && line(3).contains("sent"),
        "others submit mail on 587: {}",
        line(3)
    );
    assert!(
        line(4).contains("auth=235") && line(4).contains("sent"),
        "and on 465: {}",
        line(4)
    );
    assert_eq!(line(5), "smtp_auth 192.0.2.10 greeting=554");
    assert_eq!(line(6), "smtp_auth 192.0.2.10 greeting=554");
    assert!(line(7).contains("auth=535"), "{}", line(7));

    // A new ban while Postfix runs: cidr maps are read when smtpd starts, so the
    // documented step after a change is `postfix reload` (or waiting out max_idle).
    map.apply(&[ban("192.0.2.11", now, 60)], Timestamp(now))
        .unwrap();
    let conf = server.dir.path().join("postfix");
    net.exec_ok(
        &net.server,
        &["postfix", "-c", conf.to_str().unwrap(), "reload"],
    );
    // The reload restarts smtpd processes in the background: wait for the refusal,
    // with a deadline.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = net.mail_clients(
            SERVER_V4,
            &[login("192.0.2.11", 587, true, "not-the-password")],
        );
        if r.contains("greeting=554") {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "after reload the new ban does not hold: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    server.stop();
    // Exactly one of the banned client's wrong passwords reached Dovecot: port 25's.
    let dovecot = server.log_text(&server.dovecot_log());
    let tried: Vec<&str> = dovecot
        .lines()
        .filter(|l| l.contains("192.0.2.10") && l.contains("Password mismatch"))
        .collect();
    assert_eq!(
        tried.len(),
        1,
        "only port 25's wrong password may reach Dovecot:\n{dovecot}"
    );
}

#[test]
fn real_postfix_asks_the_policy_service_live_and_lets_everyone_in_without_it() {
    if !support::can_run(
        "real_postfix_asks_the_policy_service_live_and_lets_everyone_in_without_it",
        &["ip", "postfix", "dovecot", "openssl", "python3", "ss"],
    ) {
        return;
    }
    let net = Netns::new(&["192.0.2.10", "192.0.2.11"]);
    let server = MailServer::start_with(&net, Some(support::POLICY));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let mut d = support::Daemon::start(
        &net.server,
        &format!(
            // Postfix alone enforces here: no nftables table in the namespace.
            "[sources]\nfiles = [\"{}\"]\njournal = false\n[nftables]\nenabled = false\n[postfix_policy]\nenabled = true\nsocket = \"{}\"\n",
            log.display(),
            server.policy_socket().display()
        ),
    );
    let auth = |from: &str, port: u16, starttls: bool| login(from, port, starttls, PASSWORD);
    let out = d.ctl(&["ban", "192.0.2.10", "--for", "8s"]);
    assert!(out.status.success(), "{out:?}");
    let check = String::from_utf8_lossy(&d.ctl(&["check", "192.0.2.10"]).stdout).into_owned();
    assert!(check.starts_with("192.0.2.10 is banned"), "{check}");
    // Refused in the greeting on 587 and 465; the neighbour logs in and sends.
    let r = net.mail_clients(
        SERVER_V4,
        &[
            auth("192.0.2.10", 587, true),
            auth("192.0.2.10", 465, false),
            auth("192.0.2.11", 587, true),
        ],
    );
    let lines: Vec<&str> = r.lines().collect();
    assert_eq!(
        lines[0],
        "smtp_auth 192.0.2.10 greeting=554",
        "{r}\n{}\n{}\n{}",
        server.log_text(&server.postfix_log()),
        d.log(),
        String::from_utf8_lossy(
            &net.exec(
                &net.server,
                &[
                    "postconf",
                    "-c",
                    server.dir.path().join("postfix").to_str().unwrap(),
                    "-n"
                ]
            )
            .stdout
        )
    );
    assert_eq!(lines[1], "smtp_auth 192.0.2.10 greeting=554", "{r}");
    assert!(
        lines[2].contains("auth=235") && lines[2].contains("sent"),
        "{r}"
    );
    // The ban ends at its expiry: no map, no reload, Postfix asks again.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = net.mail_clients(SERVER_V4, &[auth("192.0.2.10", 587, true)]);
        if r.contains("auth=235") {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "still refused long after the ban's end: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // A ban while saslguard runs, then saslguard stopped: Postfix's default_action
    // lets everyone in.
    assert!(
        d.ctl(&["ban", "192.0.2.11", "--for", "1h"])
            .status
            .success()
    );
    let r = net.mail_clients(SERVER_V4, &[auth("192.0.2.11", 465, false)]);
    assert!(r.contains("greeting=554"), "{r}");
    d.stop();
    assert!(
        !server.policy_socket().exists(),
        "the socket goes with saslguard"
    );
    // Its last line says so, and claims no ban in a kernel it never used.
    let log = d.log();
    let last = log.lines().rfind(|l| l.contains("stopped;")).unwrap_or("");
    assert!(
        last.contains("the policy service at") && !last.contains("kernel"),
        "{log}"
    );
    let r = net.mail_clients(
        SERVER_V4,
        &[
            auth("192.0.2.11", 587, true),
            auth("192.0.2.10", 465, false),
        ],
    );
    assert_eq!(
        r.lines()
            .filter(|l| l.contains("auth=235") && l.contains("sent"))
            .count(),
        2,
        "every login works while saslguard is stopped: {r}"
    );
}

#[test]
fn a_map_postfix_looks_up_before_it_exists_breaks_port_25_until_postfix_setup() {
    if !support::can_run(
        "a_map_postfix_looks_up_before_it_exists_breaks_port_25_until_postfix_setup",
        &["ip", "postfix", "dovecot", "openssl", "python3", "ss"],
    ) {
        return;
    }
    let net = Netns::new(&["192.0.2.10"]);
    let map_dir = map_dir();
    let path = map_dir.path().join("saslguard_access");
    let spec = format!("cidr:{}", path.display());
    let server = MailServer::start_with(&net, Some(&spec));
    let send = login("192.0.2.10", 25, false, PASSWORD);
    // The trap, as Postfix shows it: every message on port 25 deferred.
    let r = net.mail_clients(SERVER_V4, std::slice::from_ref(&send));
    assert!(r.contains("rcpt=451"), "{r}");
    // What the package does at install: create the map, empty.
    let cfg = map_dir.path().join("saslguard.toml");
    std::fs::write(
        &cfg,
        format!("[postfix_map]\nenabled = true\nmap = \"{spec}\"\n"),
    )
    .unwrap();
    support::run_ok(
        Command::new(env!("CARGO_BIN_EXE_saslguard"))
            .args(["postfix-setup", "-c"])
            .arg(&cfg),
    );
    assert!(path.exists());
    net.exec_ok(
        &net.server,
        &[
            "postfix",
            "-c",
            server.dir.path().join("postfix").to_str().unwrap(),
            "reload",
        ],
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = net.mail_clients(SERVER_V4, std::slice::from_ref(&send));
        if r.contains("sent") {
            break;
        }
        assert!(std::time::Instant::now() < end, "port 25 still broken: {r}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Debian's stock master.cf (/usr/share/postfix/master.cf.dist) as an admin enables
/// submission and submissions in it, with config/postfix/master.cf.saslguard's
/// smtpd_client_restrictions and smtpd_delay_reject merged in as its comments say (the
/// stock stanza's line replaced, a missing one added), and every service unchrooted (the test's private instance has no
/// chroot tree).
fn stock_master_cf() -> String {
    let stock = std::fs::read_to_string("/usr/share/postfix/master.cf.dist").unwrap();
    let snippet = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/postfix/master.cf.saslguard"
    ))
    .unwrap();
    // The snippet's options per service (its smtps is the stock file's submissions).
    let mut ours: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in snippet.lines().filter(|l| !l.starts_with('#')) {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            let name = line.split_whitespace().next().unwrap();
            let name = if name == "smtps" { "submissions" } else { name };
            ours.push((name.to_string(), Vec::new()));
        } else if let Some(o) = line.trim().strip_prefix("-o ") {
            // The two options the snippet's comments tell the admin to change; the
            // others show where they go.
            let (k, v) = o.split_once('=').unwrap();
            if k == "smtpd_client_restrictions" || k == "smtpd_delay_reject" {
                ours.last_mut()
                    .unwrap()
                    .1
                    .push((k.to_string(), v.to_string()));
            }
        }
    }
    let mut out = String::new();
    let mut stanza: Option<(String, Vec<(String, String)>)> = None;
    let flush = |stanza: &mut Option<(String, Vec<(String, String)>)>, out: &mut String| {
        if let Some((head, mut opts)) = stanza.take() {
            let name = head.split_whitespace().next().unwrap().to_string();
            if let Some((_, add)) = ours.iter().find(|(n, _)| *n == name) {
                for (k, v) in add {
                    match opts.iter_mut().find(|(ok, _)| ok == k) {
                        Some(o) => o.1 = v.clone(),
                        None => opts.push((k.clone(), v.clone())),
                    }
                }
            }
            out.push_str(&head);
            out.push('\n');
            for (k, v) in opts {
                out.push_str(&format!("  -o {k}={v}\n"));
            }
        }
    };
    for line in stock.lines() {
        // Enable the two login services: uncomment their stanzas, not the prose.
        let line = match line.strip_prefix('#') {
            Some(l) if l.starts_with("submission ") || l.starts_with("submissions ") => l,
            Some(l) if stanza.is_some() && l.starts_with("  -o ") => l,
            _ => line,
        };
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(o) = line.strip_prefix("  -o ") {
            if let Some(s) = stanza.as_mut() {
                let (k, v) = o.split_once('=').unwrap_or((o, ""));
                s.1.push((k.to_string(), v.to_string()));
            }
            continue;
        }
        if line.starts_with(' ') {
            // Other continuation lines (pipe commands) stay with their service.
            if let Some(s) = stanza.as_mut() {
                s.0.push('\n');
                s.0.push_str(line);
            }
            continue;
        }
        flush(&mut stanza, &mut out);
        // Columns: service type private unpriv chroot ...: no chroot here.
        let mut cols: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if cols.len() > 4 && cols[4] == "y" {
            cols[4] = "n".into();
        }
        stanza = Some((cols.join(" "), Vec::new()));
    }
    flush(&mut stanza, &mut out);
    out
}

#[test]
fn the_snippets_work_in_debians_stock_master_cf_with_submission_and_submissions_on() {
    if !support::can_run(
        "the_snippets_work_in_debians_stock_master_cf_with_submission_and_submissions_on",
        &["ip", "postfix", "dovecot", "openssl", "python3", "ss"],
    ) {
        return;
    }
    let master = stock_master_cf();
    for want in [
        "  -o smtpd_client_restrictions=$saslguard_restrictions",
        "  -o smtpd_delay_reject=no",
    ] {
        assert_eq!(master.matches(want).count(), 2, "{want}:\n{master}");
    }
    assert!(!master.contains("smtpd_client_restrictions=\n"), "{master}");
    let net = Netns::new(&["192.0.2.10", "192.0.2.11"]);
    let map_dir = map_dir();
    let spec = format!("cidr:{}", map_dir.path().join("saslguard_access").display());
    let now = chrono::Utc::now().timestamp_millis();
    let mut map = PostfixMap::open(&spec, "REJECT too many failed logins").unwrap();
    map.apply(&[ban("192.0.2.10", now, 60)], Timestamp(now))
        .unwrap();
    let server = MailServer::start_with(&net, Some(&spec));
    let conf = server.dir.path().join("postfix");
    std::fs::write(conf.join("master.cf"), &master).unwrap();
    // A restart, not a reload: smtpd processes of the old services would go on serving
    // their ports until they are idle for max_idle.
    net.exec_ok(
        &net.server,
        &["postfix", "-c", conf.to_str().unwrap(), "stop"],
    );
    net.exec_ok(
        &net.server,
        &["postfix", "-c", conf.to_str().unwrap(), "start"],
    );
    let auth = |from: &str, port: u16, starttls: bool| login(from, port, starttls, PASSWORD);
    // Wait for the first answers of the new configuration.
    let log = server.postfix_log();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let r = loop {
        let r = net.mail_clients(
            SERVER_V4,
            &[
                auth("192.0.2.10", 587, true),
                auth("192.0.2.10", 465, false),
                auth("192.0.2.11", 587, true),
                auth("192.0.2.11", 465, false),
            ],
        );
        // The stock file's submissions service logs as postfix/submissions (the
        // test's own master.cf said smtps): proof that the stock file is in force.
        let stock_in_force = server.log_text(&log).contains("postfix/submissions/smtpd[");
        if (stock_in_force && r.lines().filter(|l| l.contains("greeting=554")).count() == 2)
            || std::time::Instant::now() > end
        {
            assert!(
                stock_in_force,
                "the stock master.cf never took over:\n{}\n{master}",
                server.log_text(&log)
            );
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let lines: Vec<&str> = r.lines().collect();
    assert_eq!(lines[0], "smtp_auth 192.0.2.10 greeting=554", "{r}");
    assert_eq!(lines[1], "smtp_auth 192.0.2.10 greeting=554", "{r}");
    assert!(
        lines[2].contains("auth=235") && lines[2].contains("sent"),
        "{r}"
    );
    assert!(
        lines[3].contains("auth=235") && lines[3].contains("sent"),
        "{r}"
    );
}

#[test]
fn real_postfix_refuses_a_fleet_banned_client_through_the_pgsql_map() {
    if !support::can_run(
        "real_postfix_refuses_a_fleet_banned_client_through_the_pgsql_map",
        &[
            "ip", "postfix", "dovecot", "openssl", "python3", "ss", "runuser", "psql",
        ],
    ) {
        return;
    }
    if support::Postgres::bin().is_none()
        || !std::path::Path::new("/usr/lib/postfix/postfix-pgsql.so").exists()
    {
        support::skip(
            "real_postfix_refuses_a_fleet_banned_client_through_the_pgsql_map",
            "PostgreSQL or postfix-pgsql is not installed",
        );
        return;
    }
    let pg = support::Postgres::start();
    let dir = map_dir();
    // The fleet's schema, as `saslguard cluster setup` makes it.
    let cfg = dir.path().join("saslguard.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cluster]\nenabled = true\nurl = \"{}\"\nnode = \"admin\"\n",
            pg.url()
        ),
    )
    .unwrap();
    let out = support::run(
        Command::new(env!("CARGO_BIN_EXE_saslguard"))
            .args(["cluster", "setup", "-c"])
            .arg(&cfg),
    );
    assert!(out.status.success(), "{out:?}");
    // Bans as the nodes write them: 192.0.2.10 banned, 192.0.2.12 banned but lifted,
    // 192.0.2.13 banned but expired, 198.51.100.0/24 a prefix.
    pg.sql(
        "INSERT INTO fleet_bans(target, at, until, reason, rule, origin, node, lifted) VALUES \
         ('192.0.2.10/32', now(), now() + interval '1 hour', 'r', 'fast', 'policy', 'mx1', false), \
         ('192.0.2.12/32', now(), now() + interval '1 hour', 'r', 'fast', 'policy', 'mx1', true), \
         ('192.0.2.13/32', now() - interval '2 hours', now() - interval '1 hour', 'r', 'fast', 'policy', 'mx1', false)",
    );
    // The shipped table file, pointed at this database.
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/postfix/pgsql-saslguard.cf"),
    )
    .unwrap();
    let table = dir.path().join("pgsql-saslguard.cf");
    std::fs::write(
        &table,
        shipped
            .replace(
                "hosts = unix:/run/postgresql",
                &format!("hosts = unix:{}", pg.socket_dir.display()),
            )
            .replace("user = postfix", "user = postgres"),
    )
    .unwrap();
    let net = Netns::new(&["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"]);
    let mut server = MailServer::start_with(&net, Some(&format!("pgsql:{}", table.display())));
    let auth = |from: &str, port: u16, starttls: bool| login(from, port, starttls, PASSWORD);
    let results = net.mail_clients(
        SERVER_V4,
        &[
            auth("192.0.2.10", 587, true),
            auth("192.0.2.10", 465, false),
            auth("192.0.2.11", 587, true),
            auth("192.0.2.12", 587, true),
            auth("192.0.2.13", 587, true),
        ],
    );
    let line = |i: usize| results.lines().nth(i).unwrap_or_default().to_string();
    let log = server.log_text(&server.postfix_log());
    assert_eq!(
        line(0),
        "smtp_auth 192.0.2.10 greeting=554",
        "{results}\n{log}"
    );
    assert_eq!(
        line(1),
        "smtp_auth 192.0.2.10 greeting=554",
        "{results}\n{log}"
    );
    for i in 2..5 {
        assert!(
            line(i).contains("auth=235") && line(i).contains("sent"),
            "not banned, lifted or expired: let in: {}\n{log}",
            line(i)
        );
    }
    assert!(
        log.contains("too many failed logins (saslguard fleet)"),
        "the refusal says why: {log}"
    );
    // A ban written now holds at once: no map file, no reload.
    pg.sql(
        "INSERT INTO fleet_bans(target, at, until, reason, rule, origin, node) VALUES \
         ('192.0.2.11/32', now(), now() + interval '1 hour', 'r', 'fast', 'policy', 'mx2')",
    );
    let results = net.mail_clients(SERVER_V4, &[auth("192.0.2.11", 587, true)]);
    assert_eq!(
        results.lines().next().unwrap_or_default(),
        "smtp_auth 192.0.2.11 greeting=554"
    );
    server.stop();
}
