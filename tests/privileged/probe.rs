//! `saslguard probe` against a real Postfix (25, 465, 587 with Dovecot SASL) and a real
//! Dovecot (IMAP 143/993, POP3 110/995) in a network namespace the test creates, from a
//! client namespace: every mechanism on every service succeeds with the right password
//! and fails with a wrong one, each wrong one is exactly one failure in the logs as
//! saslguard counts them, plaintext exposure and TLS 1.0 are reported where they are,
//! and a client banned in nftables gets the "blocked" verdict.
//!
//! Needs root (namespaces, nftables); skips with the reason otherwise.

use crate::support;
use crate::support::{MailServer, Netns, PASSWORD, SERVER_V4};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");

fn probe(net: &Netns, args: &[&str], password: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let pw = pw.display().to_string();
    let mut all = vec![BIN, "probe", SERVER_V4, "--json"];
    all.extend_from_slice(args);
    if !password.is_empty() {
        all.extend_from_slice(&["--user", "alice", "--password-file", &pw]);
    }
    let out = net.client(&all);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(PASSWORD) && !text.contains("wrong horse"),
        "the password is never printed"
    );
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn probe_reports_tls_auth_exposure_logins_and_bans() {
    if !support::can_run(
        "probe_reports_tls_auth_exposure_logins_and_bans",
        &["ip", "nft", "postfix", "dovecot", "openssl", "ss"],
    ) {
        return;
    }
    let net = Netns::new(&["192.0.2.10"]);
    let mut srv = MailServer::start_for_probe(&net);

    // Every service, every mechanism: the right password works, a wrong one fails.
    // Dovecot delays its answer to an address that just failed (2 s), hence the timeout.
    let mut wrong = 0;
    for service in ["submission", "smtps", "imap", "imaps", "pop3", "pop3s"] {
        for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
            let args = [
                "--service",
                service,
                "--mechanism",
                mech,
                "--timeout",
                "20s",
            ];
            let (code, v) = probe(&net, &args, PASSWORD);
            assert_eq!(v["verdict"], "open", "{service}: {v:#}");
            assert_eq!(v["login"]["success"], true, "{service} {mech}: {v:#}");
            assert_eq!(code, 0);
            let (code, v) = probe(&net, &args, "wrong horse");
            assert_eq!(v["login"]["success"], false, "{service} {mech}: {v:#}");
            assert_eq!(code, 1, "a failed login exits 1");
            wrong += 1;
        }
    }

    // Exposure: port 25 offers AUTH before STARTTLS (smtpd_tls_auth_only = no), as do
    // IMAP and POP3 (disable_plaintext_auth = no); submission requires TLS first.
    let (_, v) = probe(&net, &["--service", "smtp"], "");
    assert_eq!(v["plaintext_auth_exposed"], true, "{v:#}");
    assert_eq!(v["starttls_offered"], true);
    let (_, v) = probe(&net, &["--service", "submission"], "");
    assert_eq!(v["plaintext_auth_exposed"], false, "{v:#}");
    assert!(
        v["auth_mechanisms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "CRAM-MD5")
    );
    assert_eq!(v["tls"]["protocol"], "TLSv1.3");
    assert_eq!(v["certificate"]["subject"], "CN=mx.example.org");
    assert_eq!(v["certificate"]["verified"], false, "self-signed");
    assert_eq!(v["protocols"]["TLSv1"], false, "{v:#}");
    assert_eq!(v["protocols"]["TLSv1.2"], true);
    for service in ["imap", "pop3"] {
        let (_, v) = probe(&net, &["--service", service], "");
        assert_eq!(v["plaintext_auth_exposed"], true, "{service}: {v:#}");
    }
    // Dovecot here still accepts TLS 1.0: reported as weak.
    let (_, v) = probe(&net, &["--service", "pop3s"], "");
    assert_eq!(v["protocols"]["TLSv1"], true, "{v:#}");
    assert_eq!(v["weak_protocols"][0], "TLSv1");

    // --all: one report per port.
    let (_, v) = probe(&net, &["--all"], "");
    let ports: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [25, 465, 587, 110, 143, 993, 995]);
    assert!(v.as_array().unwrap().iter().all(|r| r["verdict"] == "open"));

    // A banned client: the kernel drops it, the probe says so.
    net.exec_ok(&net.server.clone(), &[BIN, "nft", "setup"]);
    net.exec_ok(
        &net.server.clone(),
        &[BIN, "nft", "ban", "--for", "10m", "192.0.2.10"],
    );
    let (code, v) = probe(&net, &["--service", "submission", "--timeout", "2s"], "");
    assert_eq!(v["verdict"], "timeout", "{v:#}");
    assert_eq!(code, 3);

    // Each wrong password is exactly one failure in the logs, as saslguard counts them.
    srv.stop();
    let out = std::process::Command::new(BIN)
        .args(["replay", "--json", "--timezone", "local"])
        .arg(srv.postfix_log())
        .arg(srv.dovecot_log())
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["failures"],
        wrong,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["offenders"][0]["address"], "192.0.2.10");
}
