//! The parser and counter against what real Postfix and Dovecot write: both daemons run
//! in a network namespace made by the test, clients in another make real SMTP, IMAP
//! and POP3 logins (wrong and right passwords, with and without TLS, IPv4 and IPv6),
//! and the logs the daemons wrote are replayed. Every failure must be counted once,
//! from the right address, with the right TLS posture; no line may be unparsable.
//!
//! Needs root, postfix, dovecot, openssl and python3; skips with the reason otherwise.

use crate::support;
use crate::support::prepare;
use crate::support::{MailServer, Netns, PASSWORD, SERVER_V4};
use saslguard::config::Config;
use saslguard::parse::Kind;
use saslguard::replay::replay;
use saslguard::source::file::TimeSettings;
use saslguard::source::merge::Threads;
use saslguard::time::YearResolver;
use saslguard::time::{Timestamp, Zone};
use serde_json::json;

#[test]
fn real_postfix_and_dovecot_logs_are_counted_exactly() {
    if !support::can_run(
        "real_postfix_and_dovecot_logs_are_counted_exactly",
        &["ip", "postfix", "dovecot", "openssl", "python3", "ss"],
    ) {
        return;
    }
    let net = Netns::new(&CLIENTS);
    let server = MailServer::start(&net);
    scenario(&net, server, Dovecot::V23);
}

/// The same clients and the same expectations against Debian 13's Postfix 3.10 and
/// Dovecot 2.4, run from a root filesystem built with debootstrap (cached in
/// /var/cache/saslguard-test between runs) inside the same kind of namespace.
#[test]
fn debian_13_postfix_3_10_and_dovecot_2_4_logs_are_counted_exactly() {
    if !support::can_run(
        "debian_13_postfix_3_10_and_dovecot_2_4_logs_are_counted_exactly",
        &["ip", "openssl", "python3", "ss", "debootstrap", "chroot"],
    ) {
        return;
    }
    let root = support::debian13_root();
    let net = Netns::new(&CLIENTS);
    let server = MailServer::start_debian13(&net, &root);
    scenario(&net, server, Dovecot::V24);
}

/// What differs between the two Dovecots the scenario runs against.
#[derive(PartialEq)]
enum Dovecot {
    /// 2.3 delays its answers to an address that keeps failing (2, 4, 8, 15 s) even
    /// with `auth_failure_delay = 0`, so Postfix gives up on some of the guesses.
    V23,
    /// 2.4 with `auth_failure_delay = 0` answers at once.
    V24,
}

const CLIENTS: [&str; 7] = [
    "192.0.2.10",
    "192.0.2.11",
    "192.0.2.12",
    "192.0.2.13",
    "192.0.2.14",
    "192.0.2.15",
    "2001:db8::10",
];

/// Real clients against `server`, then its logs replayed: every failure counted once,
/// from the right address, with the right TLS posture; every login with its TLS; the
/// stolen password alerted, the typo not; no line of a login, an auth attempt or a TLS
/// handshake left without an event.
fn scenario(net: &Netns, mut server: MailServer, dovecot_version: Dovecot) {
    let smtp = |from: &str, port: u16, starttls: bool, user: &str, password: &str, send: bool| json!({"kind": "smtp", "from": from, "port": port, "starttls": starttls, "user": user, "password": password, "send": send});
    let mut actions = vec![];
    // A guesser on submission over STARTTLS: six connections, one guess each. Dovecot
    // delays its answers more and more (2, 4, 8, 15 s), so Postfix, which waits 10 s,
    // logs the last ones as `Connection lost to authentication server`.
    for i in 0..6 {
        actions.push(smtp(
            "192.0.2.10",
            587,
            true,
            "alice",
            &format!("guess{i}"),
            false,
        ));
    }
    // A user sending mail on smtps (implicit TLS).
    actions.push(smtp("192.0.2.11", 465, false, "carol", PASSWORD, true));
    // Plaintext AUTH on port 25 over IPv6.
    actions.push(json!({"kind": "smtp", "from": "2001:db8::10", "server": "2001:db8::1", "port": 25, "starttls": false, "user": "root", "password": "x", "send": false}));
    // IMAP without TLS: two wrong passwords in one session.
    actions.push(
        json!({"kind": "imap", "from": "192.0.2.12", "logins": [["admin", "a"], ["info", "b"]]}),
    );
    // POP3 with STLS: one wrong password.
    actions.push(json!({"kind": "pop3", "from": "192.0.2.13", "starttls": true, "user": "alice", "password": "nope"}));
    // A user who mistypes once, then logs in (an account nobody else tried).
    actions.push(json!({"kind": "imap", "from": "192.0.2.14", "logins": [["dave", "typo"], ["dave", PASSWORD]]}));
    // A stolen password: three guesses in three IMAP sessions over STARTTLS, then the
    // right one.
    for pw in ["winter1", "summer2", "autumn3", PASSWORD] {
        actions.push(json!({"kind": "imap", "from": "192.0.2.15", "starttls": true, "logins": [["bob", pw]]}));
    }
    // A POP3 login over STLS, by a user whose account nobody guessed (her /24 neighbours
    // guessed others': no alert).
    actions.push(json!({"kind": "pop3", "from": "192.0.2.11", "starttls": true, "user": "carol", "password": PASSWORD}));

    let results = net.mail_clients_parallel(SERVER_V4, &actions);
    assert_eq!(
        results.lines().count(),
        actions.len(),
        "every client action reported"
    );
    assert!(
        results.contains("smtp 192.0.2.11 ok"),
        "the legitimate submission worked: {results}"
    );
    assert!(results.contains("imap 192.0.2.14 fail ok"), "{results}");
    assert!(results.contains("imap 192.0.2.15 ok"), "{results}");
    assert!(results.contains("pop3 192.0.2.11 ok"), "{results}");
    server.stop();

    let postfix = server.postfix_log();
    let dovecot = server.dovecot_log();
    println!(
        "--- postfix.log\n{}--- dovecot.log\n{}",
        server.log_text(&postfix),
        server.log_text(&dovecot)
    );
    let now = Timestamp(chrono::Utc::now().timestamp_millis());
    let r = replay(
        &Config::default(),
        &[postfix.clone(), dovecot.clone()],
        TimeSettings {
            zone: Zone::Local,
            year: None,
            now,
        },
        Threads::PerFile,
    )
    .unwrap();
    let s = &r.pipeline.stats();
    assert_eq!(
        s.skipped, 0,
        "every line the daemons wrote has a known prefix: {s:?}"
    );
    let off = |a: &str| r.pipeline.offenders().get(&a.parse().unwrap());

    let g = off("192.0.2.10").expect("the guesser is an offender");
    assert_eq!(
        g.failures, 6,
        "six guesses, logged by Postfix and by Dovecot, count six: {g:?}"
    );
    assert_eq!(g.services.get("submission"), Some(&6), "{g:?}");
    if dovecot_version == Dovecot::V23 {
        assert!(
            s.events.get("auth_unavailable").is_some_and(|&n| n >= 1),
            "Dovecot's penalty made Postfix give up at least once: {s:?}"
        );
    } else {
        assert_eq!(s.events.get("auth_unavailable"), None, "{s:?}");
    }
    assert_eq!(
        s.auth_unavailable_not_counted, 0,
        "and those guesses were counted"
    );
    assert!(
        g.tls.keys().all(|k| k.starts_with("TLSv1.")),
        "STARTTLS posture recorded: {:?}",
        g.tls
    );
    assert_eq!(g.tls.values().sum::<u64>(), 6);
    assert_eq!(
        g.users,
        ["alice"],
        "the account tried, from Dovecot's auth lines"
    );

    assert!(off("192.0.2.11").is_none(), "a clean login is no offender");
    let v6 = off("2001:db8::10").expect("IPv6 plaintext guesser");
    assert_eq!(
        (v6.failures, v6.tls.get("plaintext")),
        (1, Some(&1)),
        "{v6:?}"
    );
    assert_eq!(v6.services.get("smtp"), Some(&1));

    let imap = off("192.0.2.12").expect("IMAP guesser");
    assert_eq!(
        imap.failures, 2,
        "two attempts in one session: auth lines and the summary agree: {imap:?}"
    );
    assert_eq!(imap.services.get("imap"), Some(&2), "{imap:?}");
    assert_eq!(imap.tls.get("plaintext"), Some(&2), "{imap:?}");
    assert_eq!(imap.users, ["admin", "info"]);

    let pop = off("192.0.2.13").expect("POP3 guesser");
    assert_eq!(pop.failures, 1, "{pop:?}");
    assert_eq!(pop.services.get("pop3"), Some(&1));
    assert!(
        !pop.tls.contains_key("plaintext") && !pop.tls.contains_key("unknown"),
        "STLS session: {:?}",
        pop.tls
    );

    let typo = off("192.0.2.14").expect("the user who mistyped");
    assert_eq!(
        (typo.failures, typo.logins_after_failure),
        (1, 1),
        "{typo:?}"
    );
    let stolen = off("192.0.2.15").expect("the stolen password's guesser");
    assert_eq!(
        (stolen.failures, stolen.logins_after_failure),
        (3, 1),
        "{stolen:?}"
    );
    assert_eq!(stolen.services.get("imap"), Some(&3), "{stolen:?}");
    // Dovecot's default login line says `TLS` but not the cipher.
    assert_eq!(
        stolen.tls.get("TLS (cipher not logged)"),
        Some(&3),
        "STARTTLS posture: {:?}",
        stolen.tls
    );
    assert_eq!(s.failures, 14, "nothing else was counted: {s:?}");
    // The guessed password is an alert; the typo is not.
    let report = serde_json::to_value(r.report()).unwrap();
    let alerted: Vec<(String, String)> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_string(),
                a["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        alerted,
        [("login_after_failures".to_string(), "192.0.2.15".to_string())],
        "{:#}",
        report["alerts"]
    );
    // Every IMAP and POP3 login is a login event with the session's TLS.
    let mut logins = dovecot_logins(&server.log_text(&dovecot));
    logins.sort();
    assert_eq!(
        logins,
        [
            (
                "192.0.2.11".to_string(),
                "pop3".to_string(),
                "TLS".to_string()
            ),
            (
                "192.0.2.14".to_string(),
                "imap".to_string(),
                "plaintext".to_string()
            ),
            (
                "192.0.2.15".to_string(),
                "imap".to_string(),
                "TLS".to_string()
            ),
        ]
    );
    // `saslguard tls` counts the Dovecot logins by their TLS.
    let tls = std::process::Command::new(env!("CARGO_BIN_EXE_saslguard"))
        .args(["tls", "--json"])
        .arg(&postfix)
        .arg(&dovecot)
        .output()
        .unwrap();
    assert!(tls.status.success(), "{tls:?}");
    let tls: serde_json::Value = serde_json::from_slice(&tls.stdout).unwrap();
    assert_eq!(
        tls["dovecot"],
        json!({"TLS (cipher not logged)": 2, "plaintext": 1}),
        "{tls:#}"
    );
    // No line of a login, an auth attempt or a TLS handshake is left without an event,
    // except the kinds README.md lists.
    let text = server.log_text(&postfix) + &server.log_text(&dovecot);
    let unread = unexplained_lines(&text);
    assert!(
        unread.is_empty(),
        "lines without an event:\n{}",
        unread.join("\n")
    );
    let bans: Vec<String> = r
        .bans
        .iter()
        .map(|d| saslguard::policy::target_string(&d.target))
        .collect();
    assert_eq!(
        bans,
        ["192.0.2.10"],
        "the guesser, and only the guesser, reached the default threshold"
    );
}

/// (address, service, TLS or plaintext) of every Dovecot login event in `log`, in order.
fn dovecot_logins(log: &str) -> Vec<(String, String, String)> {
    let mut resolver = YearResolver::new(
        Zone::Local,
        Timestamp(chrono::Utc::now().timestamp_millis()),
    );
    log.lines()
        .filter_map(|l| prepare(l.as_bytes(), &mut resolver).ok())
        .filter_map(|(_, p, _)| p.event)
        .filter(|e| e.kind == Kind::AuthSuccess && e.rule == "dovecot.login")
        .map(|e| {
            (
                e.address.unwrap().to_string(),
                e.service.as_deref().unwrap_or("").to_string(),
                if e.tls.is_some() {
                    "TLS"
                } else if e.plaintext {
                    "plaintext"
                } else {
                    "?"
                }
                .to_string(),
            )
        })
        .collect()
}

/// Lines of `log` about a login, an auth attempt or a TLS handshake that give no event
/// and are not of a kind README.md ("Lines without an event") says is left alone.
fn unexplained_lines(log: &str) -> Vec<String> {
    let mut resolver = YearResolver::new(
        Zone::Local,
        Timestamp(chrono::Utc::now().timestamp_millis()),
    );
    let about_logins = [
        "-login: ",
        " auth: ",
        "auth(",
        "auth-worker",
        "SASL",
        "TLS",
        "SSL",
        "authentication",
    ];
    log.lines()
        .filter(|l| about_logins.iter().any(|w| l.contains(w)))
        .filter(|l| {
            prepare(l.as_bytes(), &mut resolver).map_or(true, |(_, p, _)| p.event.is_none())
        })
        .filter(|l| !saslguard::parse::LEFT_ALONE.iter().any(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

/// A botnet and legitimate users in one /24, against real Postfix and Dovecot: the
/// default prefix rule fires, but the /24 holds addresses that logged in, so the bots
/// are banned one by one and no address that logged in is banned.
#[test]
fn a_botnet_next_to_real_users_gets_banned_and_the_users_do_not() {
    if !support::can_run(
        "a_botnet_next_to_real_users_gets_banned_and_the_users_do_not",
        &["ip", "postfix", "dovecot", "openssl", "python3", "ss"],
    ) {
        return;
    }
    let bots: Vec<String> = (20..30).map(|i| format!("192.0.2.{i}")).collect();
    let mut addrs: Vec<&str> = vec!["192.0.2.11", "192.0.2.14"];
    addrs.extend(bots.iter().map(String::as_str));
    let net = Netns::new(&addrs);
    let mut server = MailServer::start(&net);
    // First the users: one logs in, one mistypes once and then logs in.
    let users = [
        json!({"kind": "imap", "from": "192.0.2.11", "starttls": true, "logins": [["carol", PASSWORD]]}),
        json!({"kind": "imap", "from": "192.0.2.14", "logins": [["dave", "typo"], ["dave", PASSWORD]]}),
    ];
    let r = net.mail_clients_parallel(SERVER_V4, &users);
    assert!(
        r.contains("imap 192.0.2.11 ok") && r.contains("imap 192.0.2.14 fail ok"),
        "{r}"
    );
    // Then ten bots of the same /24, three wrong passwords each: 30 failures.
    let attack: Vec<serde_json::Value> = bots
        .iter()
        .map(|b| json!({"kind": "imap", "from": b, "logins": [["admin", "1"], ["info", "2"], ["root", "3"]]}))
        .collect();
    let r = net.mail_clients_parallel(SERVER_V4, &attack);
    assert_eq!(
        r.lines().filter(|l| l.ends_with("fail fail fail")).count(),
        10,
        "{r}"
    );
    server.stop();
    let r = replay(
        &Config::default(),
        &[server.postfix_log(), server.dovecot_log()],
        TimeSettings {
            zone: Zone::Local,
            year: None,
            now: Timestamp(chrono::Utc::now().timestamp_millis()),
        },
        Threads::PerFile,
    )
    .unwrap();
    assert_eq!(r.pipeline.stats().failures, 31, "{:?}", r.pipeline.stats());
    let mut banned: Vec<String> = r
        .bans
        .iter()
        .map(|d| saslguard::policy::target_string(&d.target))
        .collect();
    banned.sort();
    let mut want = bots.clone();
    want.sort();
    assert_eq!(banned, want, "each bot, not the /24, not the users");
    assert!(
        r.bans.iter().all(|d| d.rule == "prefix"
            && d.reason.contains(
                "narrowed: 192.0.2.0/24 holds 2 known-good addresses (192.0.2.11, 192.0.2.14)"
            )),
        "{:#?}",
        r.bans
    );
}
