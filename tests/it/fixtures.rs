//! Parser fixtures: every sample line in tests/fixtures/parse/*.log carries its
//! expectation on the line above (`# expect: {...}`), the exact event
//! `saslguard parse --json` prints for it. The test fails when a line has no
//! expectation, when any field differs, and when a parser rule has no fixture.
//!
//! `SASLGUARD_BLESS=1 cargo test --test fixtures` writes each file as the parser would
//! have it to `target/bless/tests/fixtures/parse/` for review (see `support::bless`);
//! the test still fails on every difference. Where each expectation comes from is said
//! in the comments of its file.

use crate::support;
use crate::support::prepare;
use saslguard::parse::RULES;
use saslguard::source::Skip;
use saslguard::source::merge::Threads;
use saslguard::time::{YearResolver, Zone};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

const EXPECT: &str = "# expect: ";

fn actual(line: &str, resolver: &mut YearResolver) -> Value {
    match prepare(line.as_bytes(), resolver) {
        Err(Skip::Unparsable) => json!({"skip": "unparsable"}),
        Err(Skip::BadTime) => json!({"skip": "bad_time"}),
        Err(Skip::TooLong) => json!({"skip": "too_long"}),
        Ok((t, parsed, _)) => match parsed.event {
            None => Value::Null,
            Some(ev) => {
                let mut v = serde_json::to_value(&ev).unwrap();
                v.as_object_mut()
                    .unwrap()
                    .insert("time".into(), t.rfc3339().into());
                v
            }
        },
    }
}

#[test]
fn every_fixture_line_parses_as_expected_and_every_rule_has_a_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parse");
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    let mut samples = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let mut resolver = YearResolver::with_year(Zone::utc(), 2026);
        let mut pending: Option<Value> = None;
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            if let Some(e) = line.strip_prefix(EXPECT) {
                pending = Some(serde_json::from_str(e).unwrap_or_else(|err| {
                    panic!("{}:{}: bad expectation: {err}", path.display(), i + 1)
                }));
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            samples += 1;
            let got = actual(line, &mut resolver);
            if let Some(r) = got.get("rule").and_then(Value::as_str) {
                covered.insert(r.to_string());
            }
            match pending.take() {
                None => failures.push(format!(
                    "{}:{}: no `# expect:` line above: {line}",
                    path.display(),
                    i + 1
                )),
                Some(want) if want != got => failures.push(format!(
                    "{}:{}: {line}\n    want {want}\n    got  {got}",
                    path.display(),
                    i + 1
                )),
                Some(_) => {}
            }
            out.push_str(EXPECT);
            out.push_str(&got.to_string());
            out.push('\n');
            out.push_str(line);
            out.push('\n');
        }
        support::bless(path, &out);
    }
    let missing: Vec<_> = RULES.iter().filter(|r| !covered.contains(**r)).collect();
    assert!(
        missing.is_empty(),
        "parser rules without a fixture: {missing:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {samples} fixture lines differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(samples > 50, "only {samples} fixture lines");
}

#[test]
fn the_captured_real_daemon_log_counts_what_its_clients_did() {
    use saslguard::config::Config;
    use saslguard::replay::replay;
    use saslguard::source::file::TimeSettings;
    use saslguard::time::Timestamp;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parse/real-postfix-3.7-dovecot-2.3.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let truth: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# client: "))
        .map(|l| {
            let (a, n) = l.split_once(' ').unwrap();
            (a.to_string(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(truth.len(), 6);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("real.log");
    std::fs::write(
        &log,
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let r = replay(
        &Config::default(),
        &[log],
        TimeSettings {
            zone: Zone::utc(),
            year: Some(2026),
            now: Timestamp::default(),
        },
        Threads::PerFile,
    )
    .unwrap();
    for (addr, n) in &truth {
        let got = r
            .pipeline
            .offenders()
            .get(&addr.parse().unwrap())
            .map_or(0, |o| o.failures);
        assert_eq!(got, *n, "{addr}");
    }
    let total: u64 = truth.iter().map(|(_, n)| n).sum();
    assert_eq!(r.pipeline.stats().failures, total);
    assert_eq!(r.pipeline.stats().skipped_unparsable, 0);
}

/// An independent reading of the address in well-formed daemon lines, written from the
/// daemons' documented line formats with regular expressions (nothing of saslguard's
/// parser): Postfix's first `NAME[ADDR]` after the program's own text, Dovecot's
/// `rip=`, the address field of an auth driver call (2.3 `driver(user,ADDR...)`, 2.4
/// `auth(user,ADDR...)`), PAM's `rhost=`. It is not meant for hostile lines, where the
/// whole point is that such a reading is fooled.
fn oracle_address(line: &str) -> Option<String> {
    use regex::Regex;
    use std::sync::OnceLock;
    static RES: OnceLock<Vec<Regex>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            r"postfix(?:-\w+)?/[\w/-]+\[\d+\]: (?:[0-9A-Za-z]+: |NOQUEUE: )?(?:connect from|disconnect from|lost connection after \w+ from|too many errors after \w+ from|warning: |client=|reject: \w+ from|Anonymous TLS connection established from|Untrusted TLS connection established from|Trusted TLS connection established from|Verified TLS connection established from|(?:Anonymous|Untrusted|Trusted|Verified) TLS connection established to|improper command pipelining after \w+ from|timeout after \w+ from) ?[\w.-]+\[([0-9A-Fa-f:.]+)\]",
            r"-login: .*?\brip=([0-9A-Fa-f:.]+)",
            r"\bauth(?:-worker)?\([^,()]*,([0-9A-Fa-f:.]+)[,)]",
            r"(?:auth|auth-worker\([^)]*\)|conn [^)]*\): auth-worker<\d+>): (?:Info: )?[a-z][\w-]*\([^,()]*,([0-9A-Fa-f:.]+)[,)]",
            r"\brhost=([0-9A-Fa-f:.]+)",
        ]
        .iter()
        .map(|r| Regex::new(r).unwrap())
        .collect()
    });
    res.iter()
        .find_map(|re| re.captures(line))
        .map(|c| c[1].parse::<std::net::IpAddr>().unwrap().to_string())
}

#[test]
fn every_expected_address_in_well_formed_lines_agrees_with_an_independent_reading() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parse");
    let mut checked = 0;
    let mut disagree = Vec::new();
    for name in [
        "postfix-3.7.log",
        "postfix-3.9.log",
        "postfix-3.10.log",
        "dovecot-2.3.log",
        "dovecot-2.4.log",
        "real-postfix-3.7-dovecot-2.3.log",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let mut want: Option<Value> = None;
        for line in text.lines() {
            if let Some(e) = line.strip_prefix(EXPECT) {
                want = serde_json::from_str(e).ok();
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let Some(w) = want.take() else { continue };
            let Some(addr) = w.get("address").and_then(Value::as_str) else {
                continue;
            };
            checked += 1;
            let got = oracle_address(line);
            if got.as_deref() != Some(addr) {
                disagree.push(format!("{name}: expect {addr}, read {got:?}: {line}"));
            }
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
    assert!(checked > 60, "only {checked} lines checked");
}
