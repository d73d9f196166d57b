//! The parser and counter against what real Postfix and Dovecot write: both daemons run
//! in a network namespace made by the test, clients in another make real SMTP, IMAP
//! and POP3 logins (wrong and right passwords, with and without TLS, IPv4 and IPv6),
//! and the logs the daemons wrote are replayed. Every failure must be counted once,
//! from the right address, with the right TLS posture; no line may be unparsable.
//!
//! Needs root, postfix, dovecot, openssl and python3; skips with the reason otherwise.

use crate::support;
use crate::support::{MailServer, Netns, PASSWORD, SERVER_V4};
use saslguard::config::Config;
use saslguard::replay::replay;
use saslguard::source::replay::TimeSettings;
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
    let clients = [
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.12",
        "192.0.2.13",
        "192.0.2.14",
        "2001:db8::10",
    ];
    let net = Netns::new(&clients);
    let mut server = MailServer::start(&net);
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
    actions.push(smtp("192.0.2.11", 465, false, "bob", PASSWORD, true));
    // Plaintext AUTH on port 25 over IPv6.
    actions.push(json!({"kind": "smtp", "from": "2001:db8::10", "server": "2001:db8::1", "port": 25, "starttls": false, "user": "root", "password": "x", "send": false}));
    // IMAP without TLS: two wrong passwords in one session.
    actions.push(
        json!({"kind": "imap", "from": "192.0.2.12", "logins": [["admin", "a"], ["info", "b"]]}),
    );
    // POP3 with STLS: one wrong password.
    actions.push(json!({"kind": "pop3", "from": "192.0.2.13", "starttls": true, "user": "alice", "password": "nope"}));
    // A user who mistypes once, then logs in.
    actions.push(json!({"kind": "imap", "from": "192.0.2.14", "logins": [["alice", "typo"], ["alice", PASSWORD]]}));

    let results = net.mail_clients(SERVER_V4, &actions);
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
        &[postfix, dovecot],
        TimeSettings {
            zone: Zone::Local,
            year: None,
            now,
        },
    )
    .unwrap();
    let s = &r.pipeline.stats;
    assert_eq!(
        s.skipped, 0,
        "every line the daemons wrote has a known prefix: {s:?}"
    );
    let off = |a: &str| r.pipeline.offenders.get(&a.parse().unwrap()).cloned();

    let g = off("192.0.2.10").expect("the guesser is an offender");
    assert_eq!(
        g.failures, 6,
        "six guesses, logged by Postfix and by Dovecot, count six: {g:?}"
    );
    assert_eq!(g.services.get("submission"), Some(&6), "{g:?}");
    assert!(
        s.events.get("auth_unavailable").is_some_and(|&n| n >= 1),
        "Dovecot's penalty made Postfix give up at least once: {s:?}"
    );
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
    assert_eq!(s.failures, 11, "nothing else was counted: {s:?}");
    let bans: Vec<String> = r
        .dry_run
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
