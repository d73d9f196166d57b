//! Conformance with fail2ban's own filter samples (../shared/corpus/fail2ban, see its
//! README): for every sample, saslguard's parser must report an authentication failure
//! from exactly the expected address when fail2ban counts one, and none when it does
//! not. Agreement is reported per file; the test fails below full agreement except for
//! the samples listed in DELIBERATE_DIFFERENCES, each with its reason.
//!
//! The corpus is not part of this repository; when ../shared is absent the test says
//! so and passes without checking anything.

use crate::support;
use crate::support::prepare;
use saslguard::parse::Kind;
use saslguard::time::{YearResolver, Zone};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// (file, line, reason). Empty: saslguard agrees with every sample today.
const DELIBERATE_DIFFERENCES: &[(&str, u64, &str)] = &[];

#[derive(Deserialize)]
struct Sample {
    file: String,
    line: u64,
    text: String,
    auth_failure: bool,
    address: Option<String>,
}

#[test]
fn agrees_with_fail2ban_corpus() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/fail2ban/expected.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        support::skip(
            "agrees_with_fail2ban_corpus",
            &format!(
                "conformance corpus not found at {} (it lives in the shared/ folder beside the repository)",
                path.display()
            ),
        );
        return;
    };
    let mut per_file: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let s: Sample = serde_json::from_str(l).expect("corpus line is JSON");
        let mut resolver = YearResolver::with_year(Zone::utc(), 2020);
        let got = prepare(s.text.as_bytes(), &mut resolver)
            .ok()
            .and_then(|(_, p, _)| p.event);
        let failure_from = got
            .as_ref()
            .filter(|e| e.kind == Kind::AuthFailure && !e.ambiguous)
            .and_then(|e| e.address.map(|a| a.to_string()));
        let agrees = match (s.auth_failure, &failure_from) {
            (true, Some(a)) => Some(a) == s.address.as_ref(),
            (true, None) => false,
            (false, got) => got.is_none(),
        };
        let entry = per_file.entry(s.file.clone()).or_default();
        entry.1 += 1;
        let excused = DELIBERATE_DIFFERENCES
            .iter()
            .any(|(f, n, _)| *f == s.file && *n == s.line);
        if agrees {
            entry.0 += 1;
        } else if !excused {
            disagreements.push(format!(
                "{}:{}: fail2ban says failure={} from {:?}, saslguard says {:?}\n    {}",
                s.file, s.line, s.auth_failure, s.address, failure_from, s.text
            ));
        }
    }
    for (file, (ok, total)) in &per_file {
        println!("{file}: {ok}/{total} samples agree");
    }
    assert!(
        per_file.values().map(|v| v.1).sum::<u32>() >= 77,
        "corpus shorter than expected"
    );
    assert!(
        disagreements.is_empty(),
        "disagreements with the corpus:\n{}",
        disagreements.join("\n")
    );
}
