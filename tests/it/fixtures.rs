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
use saslguard::parse::RULES;
use saslguard::pipeline::{Skip, prepare};
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
