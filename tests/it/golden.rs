//! The JSON outputs of `replay`, `parse`, `tls`, `trace` and `report` on the bundled
//! example, byte for byte as committed in tests/golden/ (written before the
//! restructuring of issue 15, which must not change them). A deliberate change of an
//! output is made by reviewing `SASLGUARD_BLESS=1`'s proposal (see `support::bless`)
//! and copying it over.

use crate::support;
use std::path::Path;
use std::process::Command;

#[test]
fn json_outputs_on_the_example_are_unchanged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // No GeoIP: a machine's own databases must not change the answer.
    let cfg = dir.path().join("saslguard.toml");
    std::fs::write(
        &cfg,
        "[geoip]\ncountry_database = \"\"\nasn_database = \"\"\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let time = ["--timezone", "UTC", "--year", "2026"];
    let cases: [(&str, Vec<&str>); 5] = [
        ("replay", vec!["replay", "--json", "-c", cfg]),
        ("parse", vec!["parse", "--json"]),
        ("tls", vec!["tls", "--json"]),
        ("trace", vec!["trace", "--json", "--client", "203.0.113.7"]),
        ("report", vec!["report", "--from-logs", "--json", "-c", cfg]),
    ];
    let mut changed = Vec::new();
    for (name, args) in cases {
        // The log named as the README names it: outputs carry the file name.
        let out = Command::new(env!("CARGO_BIN_EXE_saslguard"))
            .current_dir(root)
            .args(&args)
            .args(time)
            .arg("examples/mail.log")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let got = String::from_utf8(out.stdout).unwrap();
        let path = root.join(format!("tests/golden/{name}.json"));
        support::bless(&path, &got);
        if std::fs::read_to_string(&path).unwrap_or_default() != got {
            changed.push(name);
        }
    }
    assert!(changed.is_empty(), "outputs changed: {changed:?}");
}
