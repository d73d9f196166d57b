//! The profile-guided build (`packaging/build-pgo.sh`): it runs on a machine `.ci/deps`
//! prepared, its profile matched the build it optimised, the binary it makes is not the
//! instrumented one, that binary writes what the plain build writes, and its daemon
//! bans what the plain build's daemon bans.

use crate::support::{self, run_ok};
use std::path::{Path, PathBuf};
use std::process::Command;

const NAME: &str = "the_profile_guided_build_writes_what_the_plain_build_writes";

/// How many profiles `bin` writes for one run, with `LLVM_PROFILE_FILE` set.
fn profiles_written(bin: &Path, log: &Path) -> usize {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(bin)
            .args(["parse", "--json"])
            .arg(log)
            .env("LLVM_PROFILE_FILE", dir.path().join("%p.profraw")),
    );
    std::fs::read_dir(dir.path()).unwrap().count()
}

/// Runs `bin`'s daemon (no nftables: a Postfix access map, so neither root nor a
/// namespace is needed) on a log that gets five failures of each of 200 addresses, an
/// address at a time, and returns the map's entries, sorted, once every line is read
/// and every ban is in the map.
fn daemon_bans(bin: &Path) -> Vec<String> {
    let files = tempfile::tempdir().unwrap();
    let (log, map) = (files.path().join("mail.log"), files.path().join("access"));
    std::fs::write(&log, "").unwrap();
    let mut d = support::Daemon::prepare_with(
        bin,
        None,
        &format!(
            "[sources]\nfiles = [{log:?}]\njournal = false\n[nftables]\nenabled = false\n\
             [postfix_map]\nenabled = true\nmap = \"cidr:{}\"\nreload_command = [\"true\"]\n",
            map.display()
        ),
    );
    d.restart();
    for i in 1..=200 {
        support::append(&log, &support::failures(&format!("2001:db8:7:{i:x}::1"), 5));
    }
    d.wait_status(60, "the 1,000 lines read", |s| {
        s["stats"]["lines"].as_u64() >= Some(1000)
    });
    let entries = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_to_string(&map)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    d.wait_status(60, "every ban in the map", |s| {
        s["unenforced_bans"].as_u64() == Some(0)
            && s["active_bans"].as_u64() == Some(entries().len() as u64)
    });
    d.stop();
    entries()
}

#[test]
fn the_profile_guided_build_writes_what_the_plain_build_writes() {
    // Two release builds of the whole tree, minutes on two cores: under CI, or asked for.
    if std::env::var_os("CI").is_none_or(|v| v.is_empty())
        && std::env::var_os("SASLGUARD_TEST_PGO").is_none()
    {
        support::skip(
            NAME,
            "builds saslguard twice in release (minutes): runs under CI, or with SASLGUARD_TEST_PGO=1",
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plain = Path::new(env!("CARGO_BIN_EXE_saslguard"));
    let train = tempfile::tempdir().unwrap();
    let mut build = Command::new("bash");
    build
        .arg(root.join("packaging/build-pgo.sh"))
        .current_dir(root)
        .env("PGO_DIR", train.path());
    // The log writer `cargo test` built with the examples, if it did: no third build.
    if let Some(loggen) = plain
        .parent()
        .map(|d| d.join("examples/loggen"))
        .filter(|p| p.exists())
    {
        build.env("LOGGEN", loggen);
    }
    let out = run_ok(&mut build);
    let said = String::from_utf8_lossy(&out.stderr);
    // Each of saslguard's functions found its record: a profile of another build (other
    // features, other dependencies) matches by name almost nothing, and LLVM says so.
    assert!(
        said.contains("functions without profile data: 0"),
        "the build did not report a matching profile:\n{said}"
    );
    let pgo = root.join("target/pgo/release/saslguard");
    let instrumented = root.join("target/pgo-gen/release/saslguard");

    let mut logs: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures/parse"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.push(root.join("examples/mail.log"));
    // The generated realistic mix the training replayed (200,000 lines).
    logs.push(train.path().join("realistic.log"));
    for log in &logs {
        for args in [
            &["replay", "--json", "--timezone", "UTC", "--year", "2026"][..],
            &["tls", "--json", "--timezone", "UTC", "--year", "2026"][..],
        ] {
            let want = run_ok(Command::new(plain).args(args).arg(log)).stdout;
            let got = run_ok(Command::new(&pgo).args(args).arg(log)).stdout;
            assert!(!want.is_empty(), "{args:?} {} wrote nothing", log.display());
            assert!(
                want == got,
                "{args:?} {}: the profile-guided build writes another document",
                log.display()
            );
        }
    }

    // The binary made is the optimised one, not the instrumented one, which would write
    // a profile on every run into its working directory; the instrumented one does.
    let log = &logs[0];
    assert!(profiles_written(&instrumented, log) > 0);
    assert_eq!(profiles_written(&pgo, log), 0);

    // The daemon (its code laid out by the training's daemon run) bans what the plain
    // build's bans.
    let want = daemon_bans(plain);
    let got = daemon_bans(&pgo);
    assert!(
        want.len() >= 200,
        "the plain daemon banned too little: {want:?}"
    );
    assert_eq!(want, got, "the profile-guided daemon bans otherwise");
}
