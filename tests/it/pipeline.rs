//! Pipeline tests: real log lines through parse → count → track → policy, as `replay`
//! runs them, with the questions an admin would ask of the result.

use saslguard::config::{self, Config};
use saslguard::replay::{Replay, replay};
use saslguard::source::file::TimeSettings;
use saslguard::source::merge::Threads;
use saslguard::time::{Timestamp, Zone};
use std::io::Write;
use std::path::{Path, PathBuf};

const T0: i64 = 1_795_341_600; // 2026-11-22T10:00:00Z

/// RFC 3339 stamp `s` seconds after T0.
fn at(s: i64) -> String {
    Timestamp::from_secs(T0 + s).rfc3339()
}

fn cfg(toml: &str) -> Config {
    config::parse(toml, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn files(logs: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = logs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let p = dir.path().join(format!("{i}.log"));
            std::fs::File::create(&p)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            p
        })
        .collect();
    (dir, paths)
}

fn run_cfg(c: &Config, logs: &[&str]) -> Replay {
    let (_d, paths) = files(logs);
    replay(
        c,
        &paths,
        TimeSettings {
            zone: Zone::utc(),
            year: Some(2026),
            now: Timestamp::from_secs(T0),
        },
        Threads::PerFile,
    )
    .unwrap()
}

fn run(logs: &[&str]) -> Replay {
    run_cfg(&Config::default(), logs)
}

fn failures(r: &Replay, addr: &str) -> u64 {
    r.pipeline
        .offenders()
        .get(&addr.parse().unwrap())
        .map_or(0, |o| o.failures)
}

fn bans(r: &Replay) -> Vec<(String, String)> {
    r.bans
        .iter()
        .map(|d| (saslguard::policy::target_string(&d.target), d.rule.clone()))
        .collect()
}

/// One SMTP AUTH guess as Postfix (with Dovecot SASL, auth_verbose = yes, PAM passdb)
/// logs it: Dovecot's pam() line, PAM's own line, then Postfix's warning.
fn smtp_guess(t: i64, pid: u32, addr: &str, user: &str) -> String {
    format!(
        "{ts} mx dovecot: auth-worker(99): pam({user},{addr}): pam_authenticate() failed: Authentication failure (password mismatch?)\n\
         {ts} mx auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser={user} rhost={addr}  user={user}\n\
         {ts} mx postfix/submission/smtpd[{pid}]: warning: unknown[{addr}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n",
        ts = at(t)
    )
}

/// A reload hands the event counts by kind to the new pipeline whole, once: the old
/// one keeps none, and the new one counts on from them.
#[test]
fn a_reload_carries_the_events_by_kind_over_once() {
    use saslguard::geo::Geo;
    use saslguard::pipeline::{Pipeline, Record, Snapshot};
    let mut r = run(&[&format!(
        "{}{}",
        smtp_guess(0, 501, "203.0.113.7", "alice"),
        smtp_guess(5, 502, "203.0.113.7", "bob")
    )]);
    let before = r.pipeline.stats().events;
    assert_eq!(before.get("auth_failure"), Some(&6), "{before:?}");
    let c = Config::default();
    let mut next = Pipeline::new(&c, Geo::none(), Record::Nothing, &Snapshot::default());
    next.carry_over(&mut r.pipeline);
    assert_eq!(next.stats().events, before);
    assert!(r.pipeline.stats().events.is_empty());
    assert_eq!(r.pipeline.stats().lines, 0);
    let mut resolver = saslguard::time::YearResolver::with_year(Zone::utc(), 2026);
    let mut lossy = String::new();
    let line = smtp_guess(9, 503, "203.0.113.7", "carol");
    let warning = line.lines().last().unwrap();
    next.feed(&saslguard::source::stamp(
        warning.as_bytes(),
        &mut resolver,
        &mut lossy,
    ));
    assert_eq!(next.stats().events.get("auth_failure"), Some(&7));
    // Carried back (a reload that failed), they are not counted twice.
    r.pipeline.carry_over(&mut next);
    assert_eq!(r.pipeline.stats().events.get("auth_failure"), Some(&7));
    assert!(next.stats().events.is_empty());
}

#[test]
fn an_smtp_guess_written_by_postfix_dovecot_and_pam_counts_once() {
    let mut log = format!(
        "{} mx postfix/submission/smtpd[100]: connect from unknown[203.0.113.7]\n\
         {} mx postfix/submission/smtpd[100]: Anonymous TLS connection established from unknown[203.0.113.7]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n",
        at(0),
        at(0)
    );
    for (i, user) in ["admin", "info", "root"].iter().enumerate() {
        log += &smtp_guess(1 + i as i64 * 3, 100, "203.0.113.7", user);
    }
    log += &format!(
        "{} mx postfix/submission/smtpd[100]: disconnect from unknown[203.0.113.7] ehlo=2 starttls=1 auth=0/3 quit=1 commands=4/7\n",
        at(10)
    );
    let r = run(&[&log]);
    assert_eq!(failures(&r, "203.0.113.7"), 3);
    let o = r
        .pipeline
        .offenders()
        .get(&"203.0.113.7".parse().unwrap())
        .unwrap();
    assert_eq!(o.users, ["admin", "info", "root"]);
    assert_eq!(o.services.get("submission"), Some(&3), "{:?}", o.services);
    assert_eq!(o.mechanisms.get("LOGIN"), Some(&3));
    assert_eq!(
        o.tls.get("TLSv1.3 TLS_AES_256_GCM_SHA384"),
        Some(&3),
        "{:?}",
        o.tls
    );
}

#[test]
fn postfix_and_dovecot_files_are_merged_by_time_and_deduplicated() {
    let mut postfix = String::new();
    let mut dovecot = String::new();
    for i in 0..4 {
        dovecot += &format!(
            "{} mx dovecot: auth: passwd-file(u{i},198.51.100.5): Password mismatch\n",
            at(i * 4)
        );
        postfix += &format!(
            "{} mx postfix/smtpd[7]: warning: unknown[198.51.100.5]: SASL PLAIN authentication failed: authentication failure\n",
            at(i * 4 + 1)
        );
    }
    let r = run(&[&postfix, &dovecot]);
    assert_eq!(failures(&r, "198.51.100.5"), 4);
    let o = r
        .pipeline
        .offenders()
        .get(&"198.51.100.5".parse().unwrap())
        .unwrap();
    assert_eq!(
        o.users.len(),
        4,
        "user names from Dovecot joined to Postfix's attempts"
    );
    assert_eq!(o.services.get("smtp"), Some(&4), "{:?}", o.services);
}

#[test]
fn imap_session_counts_its_attempts_once_whatever_auth_verbose_says() {
    // auth_verbose = yes: per-attempt lines with the session id, then the summary.
    let verbose = format!(
        "{a} mx dovecot: auth: passwd-file(a,192.0.2.44,<c2Vz>): Password mismatch\n\
         {b} mx dovecot: auth: passwd-file(b,192.0.2.44,<c2Vz>): unknown user\n\
         {c} mx dovecot: imap-login: Disconnected (auth failed, 2 attempts in 6 secs): user=<b>, method=PLAIN, rip=192.0.2.44, lip=192.0.2.1, TLS, session=<c2Vz>\n",
        a = at(0),
        b = at(3),
        c = at(6)
    );
    let r = run(&[&verbose]);
    assert_eq!(failures(&r, "192.0.2.44"), 2);
    let o = r
        .pipeline
        .offenders()
        .get(&"192.0.2.44".parse().unwrap())
        .unwrap();
    assert_eq!(o.services.get("imap"), Some(&2), "{:?}", o.services);
    assert_eq!(
        o.tls.get("TLS (cipher not logged)"),
        Some(&2),
        "{:?}",
        o.tls
    );
    // auth_verbose = no: only the summary.
    let quiet = format!(
        "{} mx dovecot: pop3-login: Aborted login (auth failed, 3 attempts in 9 secs): user=<x>, method=PLAIN, rip=192.0.2.45, lip=192.0.2.1, session=<cXVp>\n",
        at(0)
    );
    let r = run(&[&quiet]);
    assert_eq!(failures(&r, "192.0.2.45"), 3);
    assert_eq!(
        r.pipeline
            .offenders()
            .get(&"192.0.2.45".parse().unwrap())
            .unwrap()
            .tls
            .get("plaintext"),
        Some(&3)
    );
    // PAM passdb with auth_verbose = no: PAM's line per attempt, no session id, and the
    // summary with one. Still 2, not 4.
    let pam = format!(
        "{a} mx auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=a rhost=192.0.2.46  user=a\n\
         {b} mx auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=b rhost=192.0.2.46  user=b\n\
         {c} mx dovecot: imap-login: Disconnected (auth failed, 2 attempts in 8 secs): user=<b>, method=PLAIN, rip=192.0.2.46, lip=192.0.2.1, TLS, session=<cGFt>\n",
        a = at(0),
        b = at(4),
        c = at(8)
    );
    let r = run(&[&pam]);
    assert_eq!(failures(&r, "192.0.2.46"), 2);
}

#[test]
fn disconnect_tally_counts_failed_auth_commands_that_left_no_warning() {
    let log = format!(
        "{a} mx postfix/submission/smtpd[5]: connect from unknown[192.0.2.30]\n\
         {a} mx postfix/submission/smtpd[5]: warning: unknown[192.0.2.30]: SASL PLAIN authentication failed: authentication failure\n\
         {b} mx postfix/submission/smtpd[5]: lost connection after AUTH from unknown[192.0.2.30]\n\
         {b} mx postfix/submission/smtpd[5]: disconnect from unknown[192.0.2.30] ehlo=1 auth=0/3 commands=1/4\n",
        a = at(0),
        b = at(5)
    );
    let r = run(&[&log]);
    assert_eq!(failures(&r, "192.0.2.30"), 3);
    let o = r
        .pipeline
        .offenders()
        .get(&"192.0.2.30".parse().unwrap())
        .unwrap();
    assert_eq!(
        o.tls.get("plaintext"),
        Some(&3),
        "no STARTTLS, no TLS line: plaintext: {:?}",
        o.tls
    );
}

#[test]
fn auth_server_outage_bans_nobody() {
    let mut log = String::new();
    for i in 0..40 {
        log += &format!(
            "{} mx postfix/submission/smtpd[{}]: warning: unknown[192.0.2.{}]: SASL PLAIN authentication failed: Connection lost to authentication server\n",
            at(i * 2),
            1000 + i,
            1 + i % 8
        );
    }
    let r = run(&[&log]);
    assert_eq!(r.pipeline.stats().failures, 0);
    assert_eq!(r.pipeline.stats().auth_unavailable_not_counted, 40);
    assert!(r.bans.is_empty());
}

#[test]
fn guesser_provoking_dovecots_penalty_delay_is_still_counted() {
    // Two quick failures, then Dovecot delays its answers past Postfix's 10 s timeout
    // and Postfix logs "Connection lost": those are guesses too.
    let mut log = String::new();
    for i in 0..2 {
        log += &format!(
            "{} mx postfix/submission/smtpd[9]: warning: unknown[203.0.113.50]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n",
            at(i)
        );
    }
    for i in 0..3 {
        log += &format!(
            "{} mx postfix/submission/smtpd[9]: warning: unknown[203.0.113.50]: SASL LOGIN authentication failed: Connection lost to authentication server\n",
            at(12 + i * 11)
        );
    }
    let r = run(&[&log]);
    assert_eq!(failures(&r, "203.0.113.50"), 5);
    assert_eq!(bans(&r), [("203.0.113.50".to_string(), "fast".to_string())]);
}

#[test]
fn connection_lost_with_dovecots_own_record_counts_once() {
    let log = format!(
        "{} mx dovecot: auth: passwd-file(x,203.0.113.51): Password mismatch\n\
         {} mx postfix/submission/smtpd[9]: warning: unknown[203.0.113.51]: SASL LOGIN authentication failed: Connection lost to authentication server\n",
        at(0),
        at(10)
    );
    let r = run(&[&log]);
    assert_eq!(failures(&r, "203.0.113.51"), 1);
    assert_eq!(r.pipeline.stats().auth_unavailable_not_counted, 0);
}

#[test]
fn dovecots_late_line_for_a_guess_postfix_gave_up_on_counts_once() {
    // Seen with Postfix 3.7.11 and Dovecot 2.3.19: Postfix stops waiting after 10 s and
    // logs `Connection lost`; Dovecot, done with its penalty delay, checks the password
    // anyway and logs the mismatch a few seconds later.
    let log = format!(
        "{a} mx dovecot: auth: passwd-file(alice,203.0.113.52): Password mismatch\n\
         {a} mx postfix/submission/smtpd[9]: warning: unknown[203.0.113.52]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=alice\n\
         {b} mx postfix/submission/smtpd[9]: warning: unknown[203.0.113.52]: SASL PLAIN authentication failed: Connection lost to authentication server, sasl_username=(unavailable)\n\
         {c} mx dovecot: auth: passwd-file(alice,203.0.113.52): Password mismatch\n",
        a = at(0),
        b = at(12),
        c = at(17)
    );
    let r = run(&[&log]);
    assert_eq!(failures(&r, "203.0.113.52"), 2);
}

fn fail(t: i64, addr: &str) -> String {
    format!(
        "{} mx postfix/smtpd[1]: warning: unknown[{addr}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n",
        at(t)
    )
}

const FAST_ONLY: &str = r#"
[[rule]]
name = "fast"
failures = 5
within = "10m"
ban = "1h"
"#;

#[test]
fn window_edges() {
    let c = cfg(FAST_ONLY);
    let inside: String = [0, 100, 200, 300, 599]
        .iter()
        .map(|&t| fail(t, "192.0.2.9"))
        .collect();
    assert_eq!(
        bans(&run_cfg(&c, &[&inside])).len(),
        1,
        "5 failures within 599 s"
    );
    let outside: String = [0, 100, 200, 300, 600]
        .iter()
        .map(|&t| fail(t, "192.0.2.9"))
        .collect();
    assert!(
        bans(&run_cfg(&c, &[&outside])).is_empty(),
        "the first failure left the 10 min window"
    );
    let four: String = [0, 1, 2, 3].iter().map(|&t| fail(t, "192.0.2.9")).collect();
    assert!(
        bans(&run_cfg(&c, &[&four])).is_empty(),
        "4 failures are not 5"
    );
}

#[test]
fn slow_guessing_one_a_minute_for_an_hour_is_banned_by_default() {
    let log: String = (0..60).map(|m| fail(m * 60, "198.51.100.77")).collect();
    let r = run(&[&log]);
    // The fifth failure, at minute 4, is 5 in 10 minutes: `fast`, one hour, which
    // outlasts the rest of the hour's guesses.
    assert_eq!(
        bans(&r),
        [("198.51.100.77".to_string(), "fast".to_string())]
    );
    assert_eq!(r.bans[0].at, Timestamp::from_secs(T0 + 240));
    let log: String = (0..48).map(|m| fail(m * 1800, "198.51.100.78")).collect();
    let r = run(&[&log]);
    assert_eq!(
        bans(&r),
        [("198.51.100.78".to_string(), "patient".to_string())],
        "one every 30 min for a day"
    );
}

/// Over days of log, what no window can count again leaves the tables: at the end the
/// windows hold the two addresses still inside the longest rule window, not every
/// address seen. A guesser patient enough to spread 30 failures over just under a day
/// is still banned, one spreading them over just over a day is not, and every
/// offender is still reported.
#[test]
fn days_of_log_keep_only_live_windows_and_still_ban_the_patient_guesser() {
    let mut lines: Vec<(i64, String)> = (0..1500i64)
        .map(|i| (i * 10, fail(i * 10, &format!("2001:db8:{:x}::1", i + 1))))
        .collect();
    for k in 0..30 {
        let (a, b) = (86_400 + k * 2_970, 86_400 + k * 2_980);
        lines.push((a, fail(a, "192.0.2.10")));
        lines.push((b, fail(b, "192.0.2.11")));
    }
    lines.sort_by_key(|(t, _)| *t);
    let log: String = lines.into_iter().map(|(_, l)| l).collect();
    let r = run(&[&log]);
    assert_eq!(
        bans(&r),
        [("192.0.2.10".to_string(), "patient".to_string())],
        "30 failures within 23 h 55 min 30 s, and not within 24 h 0 min 20 s"
    );
    let (addresses, prefixes, evicted) = r.pipeline.tracked();
    assert_eq!(
        (addresses, prefixes, evicted),
        (2, 1, 0),
        "the bots of the first hours left the windows; nothing was evicted"
    );
    assert_eq!(
        r.pipeline.offenders().len(),
        1502,
        "every offender reported"
    );
    assert_eq!(failures(&r, "2001:db8:1::1"), 1);
}

/// A backlog of dead state larger than one sweep takes goes in pieces, one per line,
/// until it is gone: a single sweep of a million addresses held its line, and any ban
/// that line made, for 86 ms.
#[test]
fn a_large_backlog_of_dead_state_is_swept_in_pieces() {
    use saslguard::pipeline::SWEEP_MAX;
    let n = SWEEP_MAX + 3_616;
    let mut log: String = (0..n)
        .map(|i| fail(0, &format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff)))
        .collect();
    log += &fail(2 * 86_400, "192.0.2.10");
    let r = run(&[&log]);
    assert_eq!(r.pipeline.tracked().0, 3_616 + 1, "one piece went");
    log += &fail(2 * 86_400 + 1, "192.0.2.10");
    let r = run(&[&log]);
    assert_eq!(r.pipeline.tracked().0, 1, "the rest went at the next line");
    assert_eq!(r.pipeline.tracked().2, 0, "nothing evicted");
}

#[test]
fn rotating_ipv6_guesser_gets_its_64_banned_and_no_neighbour_prefix() {
    let mut log = String::new();
    for i in 0..30 {
        log += &fail(i * 10, &format!("2001:db8:1:2::{:x}", 0x100 + i));
    }
    log += &fail(400, "2001:db8:1:3::1");
    let r = run(&[&log]);
    assert_eq!(
        bans(&r),
        [("2001:db8:1:2::/64".to_string(), "prefix".to_string())]
    );
}

#[test]
fn one_noisy_address_does_not_get_its_whole_24_banned() {
    let log: String = (0..40).map(|i| fail(i, "192.0.2.200")).collect();
    let r = run(&[&log]);
    assert_eq!(bans(&r), [("192.0.2.200".to_string(), "fast".to_string())]);
}

#[test]
fn repeat_offender_bans_escalate_up_to_the_maximum() {
    let c = cfg(&format!(
        "{FAST_ONLY}\n[escalation]\nfactor = 2.0\nmax = \"3h\"\nmemory = \"30d\"\n"
    ));
    let mut log = String::new();
    // Four rounds of 5 failures, each after the previous ban ended.
    let mut t = 0;
    for _ in 0..4 {
        for i in 0..5 {
            log += &fail(t + i, "203.0.113.66");
        }
        t += 5 * 3600;
    }
    let r = run_cfg(&c, &[&log]);
    let durations: Vec<i64> = r
        .bans
        .iter()
        .map(|d| (d.until.0 - d.at.0) / 60_000)
        .collect();
    assert_eq!(durations, [60, 120, 180, 180]);
    assert_eq!(
        r.bans.iter().map(|d| d.nth).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

#[test]
fn no_second_ban_while_the_first_is_active() {
    let log: String = (0..20).map(|i| fail(i * 10, "203.0.113.67")).collect();
    let r = run_cfg(&cfg(FAST_ONLY), &[&log]);
    assert_eq!(r.bans.len(), 1);
    assert_eq!(failures(&r, "203.0.113.67"), 20);
}

#[test]
fn allowlisted_addresses_and_the_prefixes_around_them_are_never_banned() {
    let c = cfg(r#"
[allowlist]
networks = ["192.0.2.10", "2001:db8:1:2::/64"]
"#);
    let mut log: String = (0..50).map(|i| fail(i, "192.0.2.10")).collect();
    // 30 failures from other addresses of 192.0.2.0/24: the /24 contains the admin's
    // address, so the addresses are banned one by one instead.
    for i in 0..30 {
        log += &fail(100 + i, &format!("192.0.2.{}", 100 + i % 3));
    }
    log += &(0..10)
        .map(|i| fail(200 + i, "127.0.0.1"))
        .collect::<String>();
    log += &(0..10)
        .map(|i| fail(300 + i, "2001:db8:1:2::99"))
        .collect::<String>();
    let r = run_cfg(&c, &[&log]);
    let b = bans(&r);
    assert!(
        b.iter()
            .all(|(t, _)| t.starts_with("192.0.2.10") && t != "192.0.2.10"),
        "{b:?}"
    );
    assert_eq!(b.len(), 3);
    assert!(
        r.pipeline
            .offenders()
            .get(&"192.0.2.10".parse().unwrap())
            .unwrap()
            .allowlisted
    );
    assert_eq!(r.pipeline.stats().allowlisted_failures, 70);
}

#[test]
fn a_user_who_mistypes_once_then_logs_in_is_not_banned_but_the_login_is_noted() {
    let log = format!(
        "{} mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 3 secs): user=<alice>, method=PLAIN, rip=198.51.100.3, lip=192.0.2.1, TLS, session=<YQ>\n\
         {} mx dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=198.51.100.3, lip=192.0.2.1, mpid=1, TLS, session=<Yg>\n",
        at(0),
        at(20)
    );
    let r = run(&[&log]);
    assert!(r.bans.is_empty());
    let o = r
        .pipeline
        .offenders()
        .get(&"198.51.100.3".parse().unwrap())
        .unwrap();
    assert_eq!((o.failures, o.logins_after_failure), (1, 1));
    assert_eq!(o.login_users, ["alice"]);
}

#[test]
fn memory_stays_bounded_when_an_attacker_sprays_addresses() {
    let c = cfg(r#"
[limits]
max_addresses = 1000
max_offenders = 500
max_connections = 100
"#);
    let mut log = String::with_capacity(200_000 * 120);
    for i in 0..200_000u32 {
        let addr = format!("2001:db8:{:x}:{:x}::1", i >> 12, i & 0xfff);
        log += &format!(
            "{} mx postfix/smtpd[{}]: warning: unknown[{addr}]: SASL LOGIN authentication failed: x\n",
            at(i64::from(i / 50)),
            i
        );
    }
    let r = run_cfg(&c, &[&log]);
    let (addrs, prefixes, evicted) = r.pipeline.tracked();
    assert_eq!(r.pipeline.stats().failures, 200_000);
    // Every address and every /64 is new: the tables fill to their caps and stay there,
    // and each address beyond the cap evicts one.
    assert_eq!(addrs, 1000);
    assert_eq!(prefixes, 20_000);
    assert_eq!(evicted, 199_000);
    assert_eq!(r.pipeline.offenders().len(), 500);
    assert_eq!(r.pipeline.offenders().evicted(), 199_500);
}

/// Postfix giving up on the auth server for `addr` at `t`.
fn lost(t: i64, pid: u32, addr: &str) -> String {
    format!(
        "{} mx postfix/submission/smtpd[{pid}]: warning: unknown[{addr}]: SASL PLAIN authentication failed: Connection lost to authentication server\n",
        at(t)
    )
}

#[test]
fn connection_lost_never_and_always_do_what_they_say() {
    // One real failure, then three `Connection lost` from the same address, and three
    // from an address that never failed (an outage).
    let mut log = fail(0, "203.0.113.51");
    for i in 0..3 {
        log += &lost(10 + i, 100 + i as u32, "203.0.113.51");
        log += &lost(10 + i, 200 + i as u32, "198.51.100.51");
    }
    let counted = |mode: &str| {
        let c = cfg(&format!("[counting]\nconnection_lost = \"{mode}\"\n"));
        let r = run_cfg(&c, &[&log]);
        (
            r.pipeline.stats().failures,
            r.pipeline.stats().auth_unavailable_not_counted,
        )
    };
    // never: only the real failure; always: all seven; after-failure: the guesser's.
    assert_eq!(counted("never"), (1, 6));
    assert_eq!(counted("always"), (7, 0));
    assert_eq!(counted("after-failure"), (4, 3));
}

#[test]
fn the_penalty_window_ends_after_15_minutes() {
    // A failure, then `Connection lost` exactly 15 min later (still inside), and from a
    // second address 15 min and 1 s later (outside).
    let log = fail(0, "203.0.113.52")
        + &fail(0, "203.0.113.53")
        + &lost(900, 1, "203.0.113.52")
        + &lost(901, 2, "203.0.113.53");
    let r = run(&[&log]);
    let failures = |a: &str| {
        r.pipeline
            .offenders()
            .get(&a.parse().unwrap())
            .map_or(0, |o| o.failures)
    };
    assert_eq!(failures("203.0.113.52"), 2);
    assert_eq!(failures("203.0.113.53"), 1);
}

#[test]
fn records_of_one_guess_join_within_20_seconds_and_not_beyond() {
    // Dovecot's auth line, then Postfix's warning for the same guess 20 s later (joined:
    // one attempt), and for another address 21 s later (two attempts).
    let dovecot = |t: i64, addr: &str| {
        format!(
            "{} mx dovecot: auth: passwd-file(alice,{addr}): Password mismatch\n",
            at(t)
        )
    };
    let log = dovecot(0, "203.0.113.54")
        + &dovecot(0, "203.0.113.55")
        + &fail(20, "203.0.113.54")
        + &fail(21, "203.0.113.55");
    let r = run(&[&log]);
    let failures = |a: &str| {
        r.pipeline
            .offenders()
            .get(&a.parse().unwrap())
            .unwrap()
            .failures
    };
    assert_eq!(failures("203.0.113.54"), 1);
    assert_eq!(failures("203.0.113.55"), 2);
}

#[test]
fn escalation_stops_at_the_default_30_days_and_forgets_after_30_days() {
    // Default escalation (max 30d, memory 30d) with a factor that reaches the cap fast.
    let c = cfg(
        "[[rule]]\nname = \"daily\"\nfailures = 5\nwithin = \"10m\"\nban = \"1d\"\n[escalation]\nfactor = 10.0\n",
    );
    const DAY: i64 = 86_400;
    let mut log = String::new();
    // Rounds of five failures, each after the previous ban ended: day 0 (1 d), day 1
    // (10 d), day 11 (100 d, capped at 30 d), and day 42, when the bans of days 0, 1 and
    // 11 are all more than 30 days old: a first ban again.
    for day in [0, 1, 11, 42] {
        for i in 0..5 {
            log += &fail(day * DAY + 60 + i, "203.0.113.56");
        }
    }
    let r = run_cfg(&c, &[&log]);
    let got: Vec<(i64, u32)> = r
        .bans
        .iter()
        .map(|d| ((d.until.0 - d.at.0) / 3_600_000, d.nth))
        .collect();
    assert_eq!(got, [(24, 1), (240, 2), (720, 3), (24, 1)]);
}

#[test]
fn csv_output_defuses_every_formula_trigger() {
    use saslguard::report::bans::csv_field;
    // OWASP's list: = + - @, a leading TAB or CR; each made inert with a leading quote.
    for (raw, want) in [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("=1,2", "\"'=1,2\""),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "\"'\r=1\""),
        ("alice@example.org", "alice@example.org"),
    ] {
        assert_eq!(csv_field(raw), want, "{raw:?}");
    }
}

/// A successful IMAP login from `addr` at `t`.
fn login(t: i64, addr: &str, user: &str) -> String {
    format!(
        "{} mx dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={addr}, lip=192.0.2.1, mpid=1, TLS, session=<l{}>\n",
        at(t),
        t
    )
}

#[test]
fn a_prefix_ban_never_sweeps_up_addresses_that_logged_in() {
    // Two users of a provider's pool log in; then ten bots of the same /24 fail three
    // times each: 30 failures from 10 addresses, the default prefix rule.
    let mut log = login(0, "192.0.2.5", "alice") + &login(5, "192.0.2.6", "bob");
    for round in 0..3 {
        for b in 0..10 {
            log += &fail(60 + round * 60 + b, &format!("192.0.2.{}", 100 + b));
        }
    }
    let r = run(&[&log]);
    let mut got = bans(&r);
    got.sort();
    let mut want: Vec<(String, String)> = (0..10)
        .map(|b| (format!("192.0.2.{}", 100 + b), "prefix".to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want, "the bots one by one, not the /24");
    assert!(
        r.bans[0]
            .reason
            .contains("narrowed: 192.0.2.0/24 holds 2 known-good addresses (192.0.2.5, 192.0.2.6)"),
        "{}",
        r.bans[0].reason
    );
    // Without the logins, the /24 itself.
    let bots: String = log.lines().skip(2).map(|l| format!("{l}\n")).collect();
    assert_eq!(
        bans(&run(&[&bots])),
        [("192.0.2.0/24".to_string(), "prefix".to_string())]
    );
    // With known_good off, the /24 too.
    let c = cfg("[prefix]\nknown_good = \"off\"\n");
    assert_eq!(
        bans(&run_cfg(&c, &[&log])),
        [("192.0.2.0/24".to_string(), "prefix".to_string())]
    );
}

#[test]
fn a_narrowed_prefix_ban_names_every_bot_with_as_few_prefixes_kept_as_the_windows_need() {
    // The failing addresses of a prefix are kept for `max_prefixes` prefixes (the
    // windows' bound). With two, and a second /24 failing in between, every bot of
    // the first is still banned one by one.
    let mut log = login(0, "192.0.2.5", "alice") + &login(5, "192.0.2.6", "bob");
    for round in 0..3 {
        for b in 0..10 {
            log += &fail(60 + round * 60 + b, &format!("192.0.2.{}", 100 + b));
            log += &fail(60 + round * 60 + b, &format!("203.0.113.{}", 100 + b));
        }
    }
    let c = cfg("[limits]\nmax_prefixes = 2\n");
    let mut got = bans(&run_cfg(&c, &[&log]));
    got.sort();
    let mut want: Vec<(String, String)> = (0..10)
        .map(|b| (format!("192.0.2.{}", 100 + b), "prefix".to_string()))
        .chain([("203.0.113.0/24".to_string(), "prefix".to_string())])
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn outbound_deliveries_do_not_push_open_inbound_sessions_out_of_their_table() {
    // An inbound session fails once (explained by its warning), then, before its
    // disconnect, the server delivers mail over TLS to 50 other servers. The outbound
    // TLS lines are no inbound session: the open one keeps its place, and its
    // disconnect tally (auth=0/1) counts nothing more.
    let inbound = |t: i64, msg: &str| format!("{} mx postfix/smtpd[100]: {msg}\n", at(t));
    let mut log = inbound(0, "connect from unknown[203.0.113.7]");
    log += &fail(1, "203.0.113.7").replace("smtpd[1]", "smtpd[100]");
    for i in 0..50 {
        log += &format!(
            "{} mx postfix/smtp[{}]: Verified TLS connection established to mx{i}.example.net[198.51.100.{}]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n",
            at(2),
            200 + i,
            i + 1
        );
    }
    log += &inbound(
        3,
        "disconnect from unknown[203.0.113.7] ehlo=1 auth=0/1 quit=1 commands=2/3",
    );
    let c = cfg("[limits]\nmax_connections = 10\n");
    let r = run_cfg(&c, &[&log]);
    assert_eq!(
        r.pipeline
            .offenders()
            .get(&"203.0.113.7".parse().unwrap())
            .map(|o| o.failures),
        Some(1)
    );
    assert_eq!(r.pipeline.stats().failures, 1);
}

#[test]
fn a_known_good_address_that_guesses_is_still_banned_by_the_address_rules() {
    let mut log = login(0, "192.0.2.5", "alice");
    for i in 0..5 {
        log += &fail(60 + i, "192.0.2.5");
    }
    assert_eq!(
        bans(&run(&[&log])),
        [("192.0.2.5".to_string(), "fast".to_string())]
    );
}

#[test]
fn an_ipv6_login_makes_its_whole_64_known_good() {
    // A privacy address logs in; the rotating guesser in the same /64 gets no prefix
    // ban (the /64 is someone's home network), but one in a neighbour /64 does.
    let mut log = login(0, "2001:db8:1:2::abcd", "alice");
    for i in 0..30 {
        log += &fail(60 + i, &format!("2001:db8:1:2::{:x}", 0x100 + i));
        log += &fail(60 + i, &format!("2001:db8:1:3::{:x}", 0x100 + i));
    }
    assert_eq!(
        bans(&run(&[&log])),
        [("2001:db8:1:3::/64".to_string(), "prefix".to_string())]
    );
}
