//! Every log byte is hostile: arbitrary bytes never panic the parser, an address is
//! never invented, client-chosen text never supplies one, and bad lines are counted and
//! skipped without losing the good lines around them.

use crate::support::prepare;
use proptest::prelude::*;
use saslguard::config::Config;
use saslguard::replay::replay;
use saslguard::source::file::TimeSettings;
use saslguard::source::merge::Threads;
use saslguard::time::{Timestamp, YearResolver, Zone};
use std::io::Write;

fn resolver() -> YearResolver {
    YearResolver::with_year(Zone::utc(), 2026)
}

/// Templates of real lines; `{U}` is where the client's user name goes, the real client
/// address is 203.0.113.99.
const TEMPLATES: &[&str] = &[
    "Nov 22 10:00:00 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{U}>, method=PLAIN, rip=203.0.113.99, lip=192.0.2.2, TLS, session=<abc>",
    "Nov 22 10:00:00 mx dovecot: imap-login: Login: user=<{U}>, method=PLAIN, rip=203.0.113.99, lip=192.0.2.2, mpid=1, TLS, session=<abc>",
    "Nov 22 10:00:00 mx dovecot: auth: passwd-file({U},203.0.113.99,<abc>): Password mismatch",
    "Nov 22 10:00:00 mx dovecot: auth: passwd-file({U},203.0.113.99): unknown user",
    "Nov 22 10:00:00 mx dovecot: auth-worker(7): pam({U},203.0.113.99): pam_authenticate() failed: Authentication failure",
    "Nov 22 10:00:00 mx dovecot: auth({U},203.0.113.99,sasl:plain)<abc>: passwd-file: Password mismatch",
    "Nov 22 10:00:00 mx auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser={U} rhost=203.0.113.99  user={U}",
    "Nov 22 10:00:00 mx postfix/submission/smtpd[1]: warning: unknown[203.0.113.99]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={U}",
    "Nov 22 10:00:00 mx postfix/submission/smtpd[1]: 4XyZ1k2P: client=unknown[203.0.113.99], sasl_method=PLAIN, sasl_username={U}",
];

/// User names an attacker would try: addresses in every field syntax the parsers know,
/// fake driver anchors (`: a(`), both Dovecot generations' closes, IPv4 and IPv6, nested
/// as deep as the attacker likes (framing through a Dovecot auth line took 17 pieces).
fn hostile_user() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        ": a(",
        "passwd-file(",
        ",192.0.2.1): unknown user",
        ",192.0.2.1): Password mismatch (",
        ",2001:db8::1): unknown user",
        ",192.0.2.1,sasl:plain)<x>: passwd-file: Password mismatch",
        ",2001:db8::1,sasl:plain): passwd-file: unknown user (",
        "default): pam(",
        "7): Info: sql(",
        ">, method=PLAIN, rip=192.0.2.1, session=<q",
        ">, rip=2001:db8::1, lip=192.0.2.2, mpid=1, TLS, session=<q",
        "::ffff:192.0.2.1",
        "192.0.2.1",
        "[192.0.2.1]",
        "rip=192.0.2.1",
        ", rip=192.0.2.1",
        ">, method=PLAIN, rip=192.0.2.1, lip=1.1.1.1",
        ",192.0.2.1",
        "): Password mismatch",
        "): unknown user",
        ",<x>",
        ")<x>: passwd-file: Password mismatch",
        " rhost=192.0.2.1",
        "  user=",
        "(",
        ")",
        ",",
        " ",
        "admin",
        "2001:db8::1",
        ",sasl:plain",
        ",master",
        "(auth failed, 9 attempts)",
        "session=<q>",
        "unknown[192.0.2.1]",
        ": ",
        "\u{0}",
        "é",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_never_invent_an_address(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok((_, parsed, _)) = prepare(&bytes, &mut resolver())
            && let Some(a) = parsed.event.and_then(|e| e.address) {
                let text = String::from_utf8_lossy(&bytes);
                prop_assert!(text.contains(&a.to_string()) || text.to_lowercase().contains(&a.to_string()), "address {a} not in {text:?}");
            }
    }

    #[test]
    fn prefixed_garbage_never_panics(tail in ".{0,300}", i in 0..TEMPLATES.len()) {
        let line = format!("{}{}", &TEMPLATES[i][..60.min(TEMPLATES[i].len())], tail);
        let _ = prepare(line.as_bytes(), &mut resolver());
    }

    #[test]
    fn client_chosen_user_names_never_supply_the_address(user in hostile_user(), i in 0..TEMPLATES.len(), v6 in any::<bool>()) {
        let mut line = TEMPLATES[i].replace("{U}", &user);
        if v6 {
            line = line.replace("203.0.113.99", "2001:db8:99::99");
        }
        let (_, parsed, _) = prepare(line.as_bytes(), &mut resolver()).expect("prefix parses");
        if let Some(ev) = parsed.event {
            if let Some(a) = ev.address {
                let want = if v6 { "2001:db8:99::99" } else { "203.0.113.99" };
                prop_assert_eq!(a.to_string(), want, "line: {}", line);
            } else {
                prop_assert!(ev.ambiguous, "an address-less event must say it is ambiguous: {}", line);
            }
        }
    }
}

/// Lines the daemons write, with every field a client chooses (HELO, reverse-DNS name as
/// far as Postfix lets it through, SNI, SASL user name, Dovecot login name) hostile.
const CLIENT_FIELD_TEMPLATES: &[&str] = &[
    "Nov 22 10:00:00 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[203.0.113.99]: 554 5.7.1 <a@b>: Relay access denied; from=<{U}> to=<{U}> proto=ESMTP helo=<{U}>",
    "Nov 22 10:00:00 mx postfix/submission/smtpd[1]: warning: {H}[203.0.113.99]: SASL PLAIN authentication failed: authentication failure, sasl_username={U}",
    "Nov 22 10:00:00 mx postfix/smtpd[1]: connect from {H}[203.0.113.99]",
    "Nov 22 10:00:00 mx postfix/smtpd[1]: Anonymous TLS connection established from {H}[203.0.113.99] to {U}: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
    "Nov 22 10:00:00 mx postfix/smtpd[1]: disconnect from {H}[203.0.113.99] ehlo=1 auth=0/1 quit=1 commands=2/3",
    "Nov 22 10:00:00 mx dovecot: pop3-login: Login aborted: Logged out (auth failed, 1 attempts in 2 secs) (auth_failed): user=<{U}>, method=PLAIN, rip=203.0.113.99, lip=192.0.2.2, TLS, session=<abc>",
    "Nov 22 10:00:00 mx dovecot: imap-login: Logged in: user=<{U}>, method=PLAIN, rip=203.0.113.99, lip=192.0.2.2, mpid=1, TLS, session=<abc>",
    "Nov 22 10:00:00 mx dovecot: auth-worker(3201): conn unix:auth-worker (pid=3100,uid=97): auth-worker<55>: sql({U},203.0.113.99): unknown user",
    "Nov 22 10:00:00 mx dovecot: auth-worker({U},203.0.113.99,sasl:plain)<cGF0>: Info: pam: pam_authenticate() failed: Authentication failure (Password mismatch?)",
];

/// Host names: Postfix writes only valid names (or `unknown`), but their labels are the
/// attacker's own reverse DNS.
fn hostile_host() -> impl Strategy<Value = String> {
    let labels = prop::sample::select(vec![
        "192.0.2.1",
        "unknown",
        "mail",
        "rip",
        "203-0-113-66",
        "x",
        "2001",
        "db8",
        "",
    ]);
    prop::collection::vec(labels, 1..6).prop_map(|v| v.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn valid_daemon_lines_with_hostile_client_fields_name_only_the_client(
        user in hostile_user(), host in hostile_host(), i in 0..CLIENT_FIELD_TEMPLATES.len(),
    ) {
        let line = CLIENT_FIELD_TEMPLATES[i].replace("{U}", &user).replace("{H}", &host);
        let (_, parsed, _) = prepare(line.as_bytes(), &mut resolver()).expect("prefix parses");
        if let Some(a) = parsed.event.and_then(|e| e.address) {
            prop_assert_eq!(a.to_string(), "203.0.113.99", "line: {}", line);
        }
    }
}

#[test]
fn plain_user_names_give_the_right_address_in_every_template() {
    // The first client-field template (a reject) is no event of saslguard's.
    for t in TEMPLATES.iter().chain(&CLIENT_FIELD_TEMPLATES[1..]) {
        let line = t.replace("{U}", "alice").replace("{H}", "mail.example.org");
        let (_, parsed, _) = prepare(line.as_bytes(), &mut resolver()).unwrap();
        let ev = parsed.event.unwrap_or_else(|| panic!("no event: {line}"));
        assert_eq!(
            ev.address.map(|a| a.to_string()).as_deref(),
            Some("203.0.113.99"),
            "{line}"
        );
    }
}

#[test]
fn bad_lines_are_counted_and_skipped_and_lose_nothing_around_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.log");
    let mut f = std::fs::File::create(&path).unwrap();
    let fail = |user: &[u8]| -> Vec<u8> {
        let mut l = b"Nov 22 10:00:01 mx dovecot: pop3-login: Aborted login (auth failed, 1 attempts in 2 secs): user=<".to_vec();
        l.extend_from_slice(user);
        l.extend_from_slice(b">, method=PLAIN, rip=198.51.100.8, lip=192.0.2.1, session=<x>\n");
        l
    };
    f.write_all(&fail(b"ok")).unwrap();
    f.write_all(&fail(b"\xff\xfe invalid utf-8")).unwrap(); // still a guess: counted
    f.write_all(&fail(b"nul\x00byte")).unwrap();
    f.write_all(&vec![b'A'; 1 << 20]).unwrap(); // a 1 MB line
    f.write_all(b"\n").unwrap();
    f.write_all(b"\x00\x01\x02 garbage\n").unwrap();
    f.write_all(b"Nov 22 10:00:0").unwrap(); // truncated
    f.write_all(b"\n").unwrap();
    f.write_all(&fail(b"after")).unwrap();
    f.write_all(b"Nov 22 10:00:02 mx dovecot: pop3-login: Aborted login (auth failed, 1 attempts in 2 secs): user=<last>, method=PLAIN, rip=198.51.100.8, lip=192.0.2.1, session=<y>").unwrap(); // no final newline
    drop(f);
    let r = replay(
        &Config::default(),
        &[path],
        TimeSettings {
            zone: Zone::utc(),
            year: Some(2026),
            now: Timestamp::default(),
        },
        Threads::PerFile,
    )
    .unwrap();
    let s = &r.pipeline.stats();
    assert_eq!(s.lines, 8);
    assert_eq!(s.skipped_too_long, 1);
    assert_eq!(s.skipped_unparsable, 2);
    assert_eq!(s.invalid_utf8, 1);
    assert_eq!(s.failures, 5);
    let o = r
        .pipeline
        .offenders()
        .get(&"198.51.100.8".parse().unwrap())
        .unwrap();
    assert_eq!(o.failures, 5);
    assert!(
        o.users.iter().any(|u| u.contains('\u{fffd}')),
        "{:?}",
        o.users
    );
}

#[test]
fn ipv4_mapped_addresses_are_ipv4_for_the_allowlist_and_the_bans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mapped.log");
    let mut text = String::new();
    for (i, a) in ["::ffff:127.0.0.1", "::ffff:203.0.113.5", "::ffff:cb00:7105"]
        .iter()
        .enumerate()
    {
        for n in 0..6 {
            text.push_str(&format!(
                "Nov 22 10:0{i}:0{n} mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u{n}>, method=PLAIN, rip={a}, lip=::ffff:192.0.2.1, session=<s{i}{n}>\n"
            ));
        }
    }
    std::fs::write(&path, text).unwrap();
    let r = replay(
        &Config::default(),
        &[path],
        TimeSettings {
            zone: Zone::utc(),
            year: Some(2026),
            now: Timestamp::default(),
        },
        Threads::PerFile,
    )
    .unwrap();
    let report = r.report();
    let v = serde_json::to_value(&report).unwrap();
    let targets: Vec<&str> = v["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["target"].as_str().unwrap())
        .collect();
    // Loopback written as a mapped address is still loopback: never banned. The other
    // two are one IPv4 address (203.0.113.5 = cb00:7105) with 12 failures, banned once
    // as IPv4 so the kernel's IPv4 set holds it.
    assert_eq!(targets, ["203.0.113.5"], "{v:#}");
    assert_eq!(r.pipeline.stats().allowlisted_failures, 6);
    let o = r
        .pipeline
        .offenders()
        .get(&"203.0.113.5".parse().unwrap())
        .unwrap();
    assert_eq!(o.failures, 12);
}
