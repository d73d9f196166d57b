//! Configuration: the documented example covers every key the parser accepts and
//! equals the built-in defaults; bad files are refused with file, line and reason.

use saslguard::config::{self, Config};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/saslguard.toml")
}

/// The keys the parser accepts in a table, read from its own "unknown field" error.
fn accepted(prefix: &str) -> BTreeSet<String> {
    let doc = format!("{prefix}\nzz_not_a_key = 1\n");
    let err = config::parse(&doc, Path::new("probe.toml"))
        .unwrap_err()
        .to_string();
    let list = err
        .split("expected one of ")
        .nth(1)
        .or_else(|| err.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("{err}"));
    list.replace("` or `", "`, `")
        .split(", ")
        .map(|k| k.trim().trim_matches('`').to_string())
        .collect()
}

#[test]
fn example_config_covers_every_key_and_matches_the_defaults() {
    let text = std::fs::read_to_string(example()).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let mut top = accepted("");
    // [[origin]] has no default: the example shows one commented out.
    let origin: String = text
        .split("# [[origin]]\n")
        .nth(1)
        .expect("a commented [[origin]] example")
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let origin_doc: toml::Table = origin.parse().unwrap();
    assert_eq!(
        origin_doc.keys().cloned().collect::<BTreeSet<_>>(),
        accepted("[[origin]]"),
        "keys of the [[origin]] example"
    );
    config::parse(
        &format!("[[origin]]\n{origin}"),
        Path::new("origin-example.toml"),
    )
    .unwrap();
    assert!(top.remove("origin"));
    // [[block]] likewise: a commented example, whose networks_file is the one shipped
    // beside the example configuration.
    let block: String = text
        .split("# [[block]]\n")
        .nth(1)
        .expect("a commented [[block]] example")
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let block_doc: toml::Table = block.parse().unwrap();
    assert_eq!(
        block_doc.keys().cloned().collect::<BTreeSet<_>>(),
        accepted("[[block]]"),
        "keys of the [[block]] example"
    );
    let with_block = config::parse(&format!("[[block]]\n{block}"), &example()).unwrap();
    assert_eq!(with_block.blocks[0].not_countries, ["DE"]);
    assert!(
        with_block.blocks[0]
            .networks
            .contains(&"192.0.2.0/24".parse().unwrap()),
        "the networks_file is read"
    );
    assert!(top.remove("block"));
    assert_eq!(
        doc.keys().cloned().collect::<BTreeSet<_>>(),
        top,
        "top-level tables"
    );
    for table in &top {
        let (probe, in_example): (String, BTreeSet<String>) = if table == "rule" {
            let rules = doc["rule"].as_array().unwrap();
            (
                "[[rule]]".into(),
                rules
                    .iter()
                    .flat_map(|r| r.as_table().unwrap().keys().cloned())
                    .collect(),
            )
        } else {
            (
                format!("[{table}]"),
                doc[table].as_table().unwrap().keys().cloned().collect(),
            )
        };
        assert_eq!(
            in_example,
            accepted(&probe),
            "keys of [{table}] in config/saslguard.toml"
        );
    }
    let loaded = config::load(&example()).unwrap();
    assert_eq!(
        loaded,
        Config::default(),
        "the example documents the defaults"
    );
}

fn check_config(file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_saslguard"))
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn check_config_refuses_bad_files_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[input]\ntimezone = \"Mars/Olympus\"\n\n[[rule]]\nname = \"fast\"\nfailures = 0\nwithin = \"10 minutes\"\nban = \"1h\"\n\n[allowlist]\nnetworks = [\"192.0.2.7/24\"]\n",
    )
    .unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8(out.stderr).unwrap();
    let path = bad.display().to_string();
    for (line, what) in [
        (2, "timezone"),
        (6, "failures = 0"),
        (7, "within"),
        (11, "did you mean 192.0.2.0/24"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{path}:{line}:")) && l.contains(what)),
            "no error for line {line} ({what}) in:\n{err}"
        );
    }
    std::fs::write(&bad, "[input]\ntimezone = \"UTC\"\nmystery = 1\n").unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!("{path}:3:")) && err.contains("mystery"),
        "{err}"
    );
    let ok = check_config(&example());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn the_disable_account_example_locks_the_account_and_refuses_odd_names() {
    let dir = tempfile::tempdir().unwrap();
    let deny = dir.path().join("deny-users");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alerts/disable-account.sh");
    let run = |kind: &str, user: &str| {
        let out = std::process::Command::new("sh")
            .arg(&script)
            .env("SASLGUARD_DENY_FILE", &deny)
            .env("SASLGUARD_ALERT_KIND", kind)
            .env("SASLGUARD_ALERT_USER", user)
            .env("SASLGUARD_ALERT_ADDRESS", "203.0.113.9")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    run("login_after_failures", "bob@example.org");
    run("login_after_failures", "bob@example.org");
    run("spray_account", "carol@example.org");
    for hostile in ["eve\nroot:", "-rf", "a:b", "x y", ""] {
        run("login_after_failures", hostile);
    }
    assert_eq!(
        std::fs::read_to_string(&deny).unwrap(),
        "bob@example.org:\n",
        "one line for the guessed account, nothing for other kinds or odd names"
    );
}
