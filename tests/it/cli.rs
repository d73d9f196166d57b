//! The binary as an admin uses it: the README's quick-start command, the JSON shapes
//! of `replay` and `parse`, compressed and piped input, exit codes, `--help`.

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");

/// Replay of the bundled example, as JSON, with its zone and year pinned.
const REPLAY_JSON: [&str; 6] = ["replay", "--json", "--timezone", "UTC", "--year", "2026"];

fn with<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(tail).copied().collect()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn saslguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The arguments of the README's `cargo run --release -- ...` command.
fn readme_command() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.contains("cargo run --release -- replay"))
        .expect("README has the quick-start replay");
    line.split("cargo run --release -- ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_quick_start_shows_bans_tls_posture_and_skipped_garbage() {
    let args = readme_command();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = saslguard(&args);
    assert_eq!(code, 0, "{err}");
    for want in [
        "lines read: 103",
        "lines skipped: 3 (unparsable 3",
        "auth server unavailable, not counted: 3",
        "203.0.113.7  6 failures",
        "tls: TLSv1.3 TLS_AES_256_GCM_SHA384=6",
        "tls: plaintext=5",
        "LOGIN SUCCEEDED after failures: 1 time(s) as office@example.org",
        "bans (dry run): 3",
        "2001:db8:bad:1::/64",
        "30 failures from the prefix within 1h (rule prefix)",
    ] {
        assert!(
            out.contains(want),
            "README example output lacks {want:?}:\n{out}"
        );
    }
    assert!(
        out.contains("users: admin rip=192.0.2.20"),
        "the hostile user name is kept as a user name"
    );
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("192.0.2.20 ")),
        "the user name stuffed with alice's address framed nobody:\n{out}"
    );
}

#[test]
fn replay_json_document() {
    let (code, out, err) = saslguard(&with(&REPLAY_JSON, &["examples/mail.log"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["lines"], 103);
    assert_eq!(v["skipped"], 3);
    assert_eq!(v["failures"], 51);
    let bans = v["bans"].as_array().unwrap();
    let targets: Vec<&str> = bans.iter().map(|b| b["target"].as_str().unwrap()).collect();
    assert_eq!(
        targets,
        ["203.0.113.7", "198.51.100.23", "2001:db8:bad:1::/64"]
    );
    assert_eq!(bans[0]["at"], "2026-11-22T08:05:14Z");
    assert_eq!(bans[0]["until"], "2026-11-22T09:05:14Z");
    assert_eq!(bans[0]["reason"], "5 failures within 10m (rule fast)");
    let first = &v["offenders"][0];
    assert_eq!(first["address"], "203.0.113.7");
    assert_eq!(first["failures"], 6);
    assert_eq!(first["first_failure"], "2026-11-22T08:05:02Z");
    assert_eq!(first["services"]["submission"], 6);
    assert_eq!(first["mechanisms"]["LOGIN"], 6);
    assert_eq!(first["tls"]["TLSv1.3 TLS_AES_256_GCM_SHA384"], 6);
    assert_eq!(first["users"].as_array().unwrap().len(), 6);
    let old = v["offenders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["address"] == "198.51.100.44")
        .unwrap();
    assert_eq!(
        old["tls"]["TLSv1 ECDHE-RSA-AES256-SHA"], 2,
        "weak TLS posture kept as written"
    );
    let alerts: Vec<(&str, &str)> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["address"].as_str().unwrap()))
        .collect();
    assert_eq!(
        alerts,
        [
            ("spray_account", "2001:db8:bad:1::6d"),
            ("login_after_failures", "192.0.2.66")
        ],
        "the IPv6 rotator sprays admin; office@example.org's password is guessed"
    );
    assert_eq!(bans[1]["tls"]["plaintext_credentials"], true);
}

#[test]
fn parse_json_lines() {
    let (code, out, err) = saslguard(&[
        "parse",
        "--json",
        "--timezone",
        "UTC",
        "--year",
        "2026",
        "examples/mail.log",
    ]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events.len(),
        96,
        "103 lines, 3 garbage, 4 with nothing for saslguard"
    );
    let e = events
        .iter()
        .find(|e| {
            e["kind"] == "auth_failure"
                && e["address"] == "203.0.113.7"
                && e["service"] == "submission"
        })
        .unwrap();
    assert_eq!(e["mechanism"], "LOGIN");
    assert_eq!(e["attempts"], 1);
    assert!(e["line"].as_u64().unwrap() > 1);
    let tls = events.iter().find(|e| e["kind"] == "tls").unwrap();
    assert_eq!(tls["tls"]["protocol"], "TLSv1.3");
    assert_eq!(tls["tls"]["cipher"], "TLS_AES_256_GCM_SHA384");
}

#[test]
fn gzip_and_stdin_give_the_same_result_as_the_plain_file() {
    let plain = saslguard(&with(&REPLAY_JSON, &["examples/mail.log"])).1;
    let strip = |s: &str| {
        let mut v: Value = serde_json::from_str(s).unwrap();
        v.as_object_mut().unwrap().remove("files");
        v
    };
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("mail.log.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c examples/mail.log > {}", gz.display()))
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    let zipped = saslguard(&with(&REPLAY_JSON, &[gz.to_str().unwrap()])).1;
    assert_eq!(strip(&zipped), strip(&plain));
    let mut child = Command::new(BIN)
        .args([
            "replay",
            "--json",
            "--timezone",
            "UTC",
            "--year",
            "2026",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(root().join("examples/mail.log")).unwrap())
        .unwrap();
    let piped = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(strip(&piped), strip(&plain));
}

#[test]
fn a_compressed_log_cut_short_is_an_error_not_a_shorter_replay() {
    // A rotated log whose compression a full disk or a crash cut short: replaying what
    // it holds and exiting 0 would report fewer guesses with no word of why.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read(root().join("examples/mail.log")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for _ in 0..50 {
        gz.write_all(&text).unwrap();
    }
    let whole = gz.finish().unwrap();
    for (name, cut) in [("middle", whole.len() / 2), ("trailer", whole.len() - 4)] {
        let p = dir.path().join(format!("mail.log.{name}.gz"));
        std::fs::write(&p, &whole[..cut]).unwrap();
        let p = p.to_str().unwrap();
        for threads in ["1", "2"] {
            let (code, _, err) = saslguard(&with(&REPLAY_JSON, &["--threads", threads, p]));
            assert_eq!(code, 66, "cut in the {name}, {threads} thread(s): {err}");
            assert!(err.contains(p), "{err}");
        }
    }
    let p = dir.path().join("mail.log.gz");
    std::fs::write(&p, &whole).unwrap();
    let (code, _, err) = saslguard(&with(&REPLAY_JSON, &[p.to_str().unwrap()]));
    assert_eq!(code, 0, "the whole file: {err}");
}

#[test]
fn exit_codes_and_help() {
    let (code, _, err) = saslguard(&["replay", "/nonexistent/mail.log"]);
    assert_eq!(code, 66);
    assert!(err.contains("/nonexistent/mail.log"), "{err}");
    let (code, _, err) = saslguard(&["replay", "--timezone", "Mars", "examples/mail.log"]);
    assert_eq!(code, 64, "{err}");
    let (code, out, _) = saslguard(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["parse", "replay", "check-config"] {
        assert!(out.contains(cmd), "--help lists {cmd}:\n{out}");
    }
}

#[test]
fn user_names_cannot_drive_the_admins_terminal() {
    // A guesser's user names carrying an OSC 52 clipboard write, a window title, hidden
    // text and a carriage return that would overwrite the line before it.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let users = [
        "\u{1b}]52;c;cm0gLXJmIH4=\u{7}",
        "\u{1b}]0;owned\u{7}",
        "\u{1b}[8mhidden",
        "x\rroot",
        "\u{9b}31mred",
    ];
    let mut text = String::new();
    for (i, u) in users.iter().enumerate() {
        text.push_str(&format!(
            "Nov 22 10:00:0{i} mx dovecot: imap-login: Disconnected (auth failed, 2 attempts in 2 secs): user=<{u}>, method=PLAIN, rip=203.0.113.9, lip=192.0.2.1, session=<s{i}>\n"
        ));
    }
    std::fs::write(&log, text).unwrap();
    for args in [
        vec!["replay", "--timezone", "UTC", "--year", "2026"],
        vec!["parse", "-v", "--timezone", "UTC", "--year", "2026"],
        vec![
            "trace",
            "--client",
            "203.0.113.9",
            "--timezone",
            "UTC",
            "--year",
            "2026",
        ],
    ] {
        let mut args = args.clone();
        args.push(log.to_str().unwrap());
        let (code, out, err) = saslguard(&args);
        assert!(code == 0 || code == 1, "{args:?}: {err}");
        assert!(
            !out.contains(['\u{1b}', '\u{7}', '\r', '\u{9b}']),
            "{args:?} printed a terminal control: {out:?}"
        );
        // Shown, made visible.
        if args[0] != "trace" {
            assert!(
                out.contains("\\x1b]52;c;") || out.contains("\\u{1b}]52;c;"),
                "{args:?}: {out}"
            );
        }
    }
}

#[test]
fn following_the_journal_and_files_together_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("saslguard.toml");
    std::fs::write(
        &cfg,
        "[sources]\njournal = true\nfiles = [\"/var/log/mail.log\"]\n",
    )
    .unwrap();
    let (code, out, err) = saslguard(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");
    assert!(
        err.contains("warning") && err.contains("counted twice"),
        "{err}"
    );
    // The packaged default follows one of the two.
    let (code, _, err) = saslguard(&["check-config", "config/saslguard.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("counted twice"), "{err}");
}

#[test]
fn postfix_setup_creates_the_map_before_postfix_looks_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("saslguard_access");
    let cfg = dir.path().join("saslguard.toml");
    std::fs::write(
        &cfg,
        format!(
            "[postfix_map]\nenabled = true\nmap = \"cidr:{}\"\n",
            map.display()
        ),
    )
    .unwrap();
    let (code, out, err) = saslguard(&["postfix-setup", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created cidr:"), "{out}");
    let text = std::fs::read_to_string(&map).unwrap();
    assert!(text.starts_with("# saslguard access map"), "{text}");
    // Again: the map is kept as it is; --quiet prints nothing.
    let (code, out, _) = saslguard(&["postfix-setup", "-c", cfg.to_str().unwrap(), "--quiet"]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(std::fs::read_to_string(&map).unwrap(), text);
    // Without [postfix_map] there is nothing to do.
    std::fs::write(&cfg, "").unwrap();
    let (code, out, _) = saslguard(&["postfix-setup", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("not enabled"), "{out}");
}

/// `replay --threads N` reads and parses on other threads but must decide exactly what
/// the one-thread run decides: the same document, byte for byte, over several files
/// written side by side (Postfix's and Dovecot's), one of them gzip, with garbage, and
/// more lines than one batch between threads.
#[test]
fn replay_with_reader_threads_gives_the_same_document() {
    let example = std::fs::read_to_string(root().join("examples/mail.log")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut postfix, mut dovecot) = (String::new(), String::new());
    // The example 60 times over, each copy an hour later, so bans expire and recur.
    for hour in 0..60 {
        for line in example.lines() {
            let line = match line.get(7..9).and_then(|h| h.parse::<u32>().ok()) {
                Some(h) if line.starts_with("Nov 22 ") => {
                    let h = h + hour;
                    format!("Nov {} {:02}{}", 22 + h / 24, h % 24, &line[9..])
                }
                _ => line.to_string(),
            };
            let out = if line.contains("dovecot") {
                &mut dovecot
            } else {
                &mut postfix
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    let p = dir.path().join("mail.log");
    std::fs::write(&p, &postfix).unwrap();
    let d = dir.path().join("dovecot.log.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(dovecot.as_bytes()).unwrap();
    std::fs::write(&d, gz.finish().unwrap()).unwrap();
    let (p, d) = (p.to_str().unwrap(), d.to_str().unwrap());
    let run = |threads: &str| {
        let (code, out, err) = saslguard(&with(&REPLAY_JSON, &["--threads", threads, p, d]));
        assert_eq!(code, 0, "{err}");
        out
    };
    let one = run("1");
    let v: Value = serde_json::from_str(&one).unwrap();
    assert!(v["lines"].as_u64().unwrap() > 6000, "{}", v["lines"]);
    assert!(v["failures"].as_u64().unwrap() > 3000, "{}", v["failures"]);
    assert!(v["bans"].as_array().unwrap().len() >= 3, "{}", v["bans"]);
    assert_eq!(run("2"), one, "two threads decided otherwise");
    assert_eq!(run("4"), one, "four threads decided otherwise");
    // `tls` and `trace` read the same way.
    for head in [
        vec!["tls", "--json", "--timezone", "UTC", "--year", "2026"],
        vec![
            "trace",
            "--client",
            "203.0.113.7",
            "--json",
            "--timezone",
            "UTC",
            "--year",
            "2026",
        ],
    ] {
        let report = |threads: &str| {
            let (code, out, err) = saslguard(&with(&head, &["--threads", threads, p, d]));
            assert_eq!(code, 0, "{head:?}: {err}");
            out
        };
        let one = report("1");
        assert!(one.len() > 300, "{head:?}: {one}");
        assert_eq!(report("2"), one, "{head:?} with two threads");
    }
}
