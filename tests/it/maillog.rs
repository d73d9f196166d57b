//! `saslguard tls` and `saslguard trace` on tests/fixtures/maillog/mail.log, whose
//! answers were worked out by hand: five inbound sessions (TLS 1.3, TLS 1.0, TLS 1.1 on
//! submission, two plaintext of which one internal), one outbound TLS delivery, a
//! bounce, a deferred message still queued, three Dovecot logins.

use crate::support;
use serde_json::{Value, json};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");
const LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/maillog/mail.log"
);

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--timezone", "UTC", "--year", "2026", LOG])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn json_of(args: &[&str]) -> Value {
    let (code, out) = run(args);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn tls_posture_of_all_traffic() {
    let v = json_of(&["tls", "--json", "--internal", "192.0.2.0/24"]);
    assert_eq!(
        v["inbound"],
        json!({"plaintext": 2, "TLSv1 ECDHE-RSA-AES256-SHA": 1,
               "TLSv1.1 ECDHE-RSA-AES128-SHA": 1, "TLSv1.3 TLS_AES_256_GCM_SHA384": 1})
    );
    assert_eq!(
        v["outbound"],
        json!({"TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384": 1})
    );
    assert_eq!(
        v["dovecot"],
        json!({"TLS (cipher not logged)": 1, "TLSv1 ECDHE-RSA-AES256-SHA": 1, "plaintext": 1})
    );
    assert_eq!(
        v["inbound_sessions"],
        json!({"total": 5, "tls": 3, "percent": 60.0})
    );
    assert_eq!(
        v["inbound_sessions_external"],
        json!({"total": 4, "tls": 3, "percent": 75.0})
    );
    assert_eq!(
        v["received_messages"],
        json!({"total": 5, "tls": 3, "percent": 60.0})
    );
    assert_eq!(v["received_messages_external"]["percent"], 75.0);
    let who = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|w| {
                format!(
                    "{} {}",
                    w["who"].as_str().unwrap(),
                    w["why"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        who("weak_clients"),
        [
            "laptop.example.net[198.51.100.40] TLS 1.1",
            "old.example.com[203.0.113.20] TLS 1.0"
        ]
    );
    assert_eq!(
        who("weak_accounts"),
        [
            "dave@example.org TLS 1.1",
            "frank@example.org (imap) TLS 1.0"
        ]
    );
    assert_eq!(
        who("weak_senders"),
        ["dave@example.org TLS 1.1", "legacy@example.com TLS 1.0"]
    );

    // Without --internal only loopback is internal: all five are from outside.
    let v = json_of(&["tls", "--json"]);
    assert_eq!(v["inbound_sessions_external"]["total"], 5);
}

#[test]
fn trace_a_queue_id_a_client_a_cipher_and_a_user() {
    let v = json_of(&["trace", "--json", "--queue-id", "6D3E4F5A6B"]);
    let m = &v["messages"][0];
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    assert_eq!(m["from"], "printer@example.org");
    assert_eq!(m["message_id"], "scan1@example.org");
    assert_eq!(m["client"], "printer.example.org[192.0.2.50]");
    assert_eq!(m["tls"], "plaintext");
    assert_eq!(m["removed"], "2026-11-22T10:15:04Z");
    let r = &m["recipients"][0];
    assert_eq!(r["to"], "carol@example.com");
    assert_eq!(r["relay"], "mx.example.com[198.51.100.25]:25");
    assert_eq!(r["delay"], "3");
    assert_eq!(r["status"], "sent");
    assert_eq!(r["tls"], "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384");
    assert_eq!(
        m["lines"].as_array().unwrap().len(),
        5,
        "client, cleanup, qmgr, smtp, removed"
    );
    assert_eq!(
        v["sessions"][0]["client"], "printer.example.org[192.0.2.50]",
        "the session that received it"
    );

    let v = json_of(&["trace", "--json", "--client", "203.0.113.20"]);
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(v["sessions"][0]["tls"], "TLSv1 ECDHE-RSA-AES256-SHA");
    assert_eq!(v["messages"][0]["queue_id"], "4B1C2D3E4F");

    let v = json_of(&["trace", "--json", "--cipher", "TLSv1.1"]);
    let m = &v["messages"][0];
    assert_eq!(m["queue_id"], "7E4F5A6B7C");
    assert!(
        m.get("removed").is_none(),
        "still queued at the end of the log"
    );
    assert_eq!(m["recipients"][0]["status"], "deferred");
    assert_eq!(m["recipients"][0]["dsn"], "4.4.1");

    let v = json_of(&["trace", "--json", "--user", "dave@example.org"]);
    assert_eq!(v["sessions"][0]["users"], json!(["dave@example.org"]));
    assert_eq!(v["messages"][0]["sasl_username"], "dave@example.org");

    let v = json_of(&["trace", "--json", "--user", "frank@example.org"]);
    assert_eq!(v["logins"][0]["tls"], "TLSv1 ECDHE-RSA-AES256-SHA");
    assert_eq!(v["logins"][0]["address"], "203.0.113.70");

    let (_, text) = run(&["trace", "--queue-id", "3F2A1B4C5D"]);
    assert!(
        text.contains("to <nobody@example.org>: bounced via local after 1.1s (5.1.1)"),
        "{text}"
    );
    assert!(
        text.contains("removed from the queue 2026-11-22T10:00:04Z"),
        "{text}"
    );

    let (code, text) = run(&["trace", "--client", "192.0.2.99"]);
    assert_eq!((code, text.as_str()), (1, "nothing matched\n"));
}

#[test]
fn rotated_and_side_by_side_files_read_as_one_log() {
    // The fixture cut in the middle of a session into mail.log.1 (older) and mail.log,
    // given newest first as `mail.log*` expands; and cut into Postfix's and Dovecot's
    // lines. Both must tell exactly what the single file tells.
    let dir = tempfile::tempdir().unwrap();
    let all = std::fs::read_to_string(LOG).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let (old, new) = lines.split_at(lines.len() / 2);
    let write = |name: &str, ls: &[&str]| {
        let p = dir.path().join(name);
        std::fs::write(&p, ls.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let rotated = [write("mail.log", new), write("mail.log.1", old)];
    let (dovecot, postfix): (Vec<&str>, Vec<&str>) =
        lines.iter().partition(|l| l.contains(" dovecot"));
    let split = [
        write("dovecot.log", &dovecot),
        write("postfix.log", &postfix),
    ];
    let with_files = |args: &[&str], files: &[String]| -> Value {
        support::json_ok(
            Command::new(BIN)
                .args(args)
                .args(["--json", "--timezone", "UTC", "--year", "2026"])
                .args(files),
        )
    };
    let one = [LOG.to_string()];
    for args in [
        &["tls", "--internal", "192.0.2.0/24"][..],
        &["trace", "--client", "0.0.0.0/0"][..],
        &["trace", "--user", "alice@example.org"][..],
    ] {
        let expect = with_files(args, &one);
        assert_eq!(
            with_files(args, &rotated),
            expect,
            "{args:?} on mail.log mail.log.1"
        );
        assert_eq!(
            with_files(args, &split),
            expect,
            "{args:?} on dovecot.log postfix.log"
        );
    }
}
