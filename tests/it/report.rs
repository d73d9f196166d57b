//! `saslguard report`: from the store (states of bans, the period) and from logs (the geo
//! fixture), as a table, JSON, CSV and HTML; the HTML opened in headless Chromium, whose
//! screenshot must show all three charts.

use crate::support;
use crate::support::mmdb::{self, asn};
use saslguard::geo::Origin;
use saslguard::offender::Counts;
use saslguard::store::{BanRow, Op, Store};
use saslguard::time::Timestamp;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");
const DAY: i64 = 86_400_000;

fn saslguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ban(target: &str, at: i64, until: i64, country: &str, posture: Option<&str>) -> BanRow {
    BanRow {
        target: target
            .parse()
            .or_else(|_| target.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .unwrap(),
        at: Timestamp(at),
        until: Timestamp(until),
        rule: "fast".into(),
        reason: "5 failures within 10m (rule fast)".into(),
        failures: 5,
        nth: 1,
        origin: "policy".into(),
        lifted_at: None,
        lifted_by: None,
        geo: Origin {
            country: Some(country.into()),
            ..Default::default()
        },
        // Written out, not computed by saslguard: five attempts in that posture, with
        // the flags the README defines for it.
        tls: posture.map(|p| {
            let mut attempts = Counts::default();
            attempts.bump(p, 5);
            saslguard::posture::Posture {
                attempts,
                weak: match p {
                    "TLSv1 AES256-SHA" => vec!["TLSv1 AES256-SHA: TLS 1.0".to_string()],
                    _ => vec![],
                },
                plaintext_credentials: p == "plaintext",
                unknown: 0,
            }
        }),
    }
}

/// A store with bans of every state, now = 2026-11-22T12:00:00Z minus nothing: the
/// report runs at wall-clock time, so the times are relative to now.
fn store(dir: &Path) -> PathBuf {
    let path = dir.join("saslguard.db");
    let now = chrono::Utc::now().timestamp_millis();
    let mut s = Store::open(&path).unwrap();
    let mut lifted = ban(
        "198.51.100.7",
        now - 2 * DAY,
        now + DAY,
        "CN",
        Some("plaintext"),
    );
    lifted.lifted_at = Some(Timestamp(now - DAY));
    lifted.lifted_by = Some("by hand".into());
    s.write(&[vec![
        Op::Ban(Box::new(ban(
            "203.0.113.9",
            now - 3 * DAY,
            now - 3 * DAY + 3_600_000,
            "NL",
            Some("TLSv1 AES256-SHA"),
        ))),
        Op::Ban(Box::new(ban(
            "203.0.113.9",
            now - 3_600_000,
            now + 3_600_000,
            "NL",
            Some("TLSv1.3 TLS_AES_256_GCM_SHA384"),
        ))),
        Op::Ban(Box::new(lifted)),
        Op::Ban(Box::new(ban(
            "192.0.2.66",
            now - 30 * DAY,
            now - 29 * DAY,
            "DE",
            None,
        ))),
    ]])
    .unwrap();
    path
}

#[test]
fn a_report_from_the_store_knows_each_ban_s_fate_and_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path());
    let db = db.to_str().unwrap();
    let (code, out, err) = saslguard(&["report", "--store", db, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    let t: Vec<(&str, &str, u64)> = hosts
        .iter()
        .map(|h| {
            (
                h["target"].as_str().unwrap(),
                h["state"].as_str().unwrap(),
                h["bans"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        t,
        [("203.0.113.9", "active", 2), ("198.51.100.7", "lifted", 1)],
        "the ban of 30 days ago is outside the default 7 days"
    );
    assert_eq!(hosts[1]["lifted_by"], "by hand");
    assert_eq!(hosts[1]["plaintext_credentials"], true);
    assert_eq!(hosts[0]["geo"]["country"], "NL");
    assert_eq!(v["by_country"]["NL"]["bans"], 2);
    assert_eq!(v["by_country"]["CN"]["hosts"], 1);

    let (_, out, _) = saslguard(&["report", "--store", db, "--json", "--since", "40d"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let old = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["target"] == "192.0.2.66")
        .unwrap()
        .clone();
    assert_eq!(old["state"], "expired");

    let (_, out, _) = saslguard(&["report", "--store", db, "--csv"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("target,country,asn"));
    assert!(lines[2].starts_with("198.51.100.7,CN,"), "{out}");

    let (_, out, _) = saslguard(&["report", "--store", db]);
    assert!(out.contains("198.51.100.7  CN  lifted by hand"), "{out}");
    assert!(out.contains("CREDENTIALS IN PLAINTEXT"), "{out}");

    let (code, _, err) = saslguard(&["report", "--store", "/nonexistent/saslguard.db"]);
    assert_eq!(code, 66, "{err}");
}

fn geo_config(dir: &Path) -> PathBuf {
    let c = dir.join("country.mmdb");
    std::fs::write(&c, mmdb::build("GeoLite2-Country", mmdb::test_countries())).unwrap();
    let a = dir.join("asn.mmdb");
    std::fs::write(
        &a,
        mmdb::build(
            "GeoLite2-ASN",
            vec![("203.0.113.0/24", asn(64502, "Example Hosting"))],
        ),
    )
    .unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[geoip]\ncountry_database = \"{}\"\nasn_database = \"{}\"\n[[origin]]\nname = \"abroad\"\nnot_countries = [\"DE\"]\nfailures = 1\nwithin = \"1d\"\nban = \"7d\"\n",
            c.display(),
            a.display()
        ),
    )
    .unwrap();
    cfg
}

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/geo/mail.log")
        .display()
        .to_string()
}

#[test]
fn a_report_from_logs_totals_by_country_as_service_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = geo_config(dir.path());
    let (code, out, err) = saslguard(&[
        "report",
        "--from-logs",
        "-c",
        cfg.to_str().unwrap(),
        "--json",
        "--timezone",
        "UTC",
        "--year",
        "2026",
        &fixture(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut targets: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "192.0.2.50",
            "198.51.100.23",
            "2001:db8:2::5",
            "203.0.113.7"
        ]
    );
    assert_eq!(v["by_country"]["CN"]["hosts"], 1);
    assert_eq!(v["by_country"]["--"]["failures"], 2);
    assert_eq!(v["by_country"]["DE"]["failures"], 5);
    assert_eq!(v["by_as"]["AS64502 Example Hosting"]["failures"], 3);
    assert_eq!(v["by_service"]["imap"], 11);
    assert_eq!(v["by_tls"]["plaintext"], 1);
    assert_eq!(v["by_tls"]["TLSv1 ECDHE-RSA-AES256-SHA"], 2);
    assert_eq!(v["bans_per_day"]["2026-11-22"], 4);
    let nl = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["target"] == "203.0.113.7")
        .unwrap();
    assert_eq!(nl["weak_tls"][0], "TLSv1 ECDHE-RSA-AES256-SHA: TLS 1.0");
    assert_eq!(nl["users"][0], "info");
}

#[test]
fn the_html_report_renders_its_charts_in_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| support::missing_tool(&[c]).is_none())
    else {
        support::skip(
            "the_html_report_renders_its_charts_in_chromium",
            "chromium is not installed (bash .ci/deps installs it)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = geo_config(dir.path());
    let (code, html, err) = saslguard(&[
        "report",
        "--from-logs",
        "-c",
        cfg.to_str().unwrap(),
        "--html",
        "--timezone",
        "UTC",
        "--year",
        "2026",
        &fixture(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !html.contains("<script") && !html.contains("http"),
        "self-contained"
    );
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let shot = dir.path().join("shot.png");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,1400",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let count = |rgb: [u8; 3]| {
        buf[..info.buffer_size()]
            .chunks(px)
            .filter(|p| p[..3] == rgb)
            .count()
    };
    // The bar colours of the three charts: days, countries, TLS postures.
    for (name, rgb) in [
        ("bans per day", [0x1c, 0x7e, 0xd6]),
        ("countries", [0xe8, 0x59, 0x0c]),
        ("TLS postures", [0x2f, 0x9e, 0x44]),
    ] {
        let n = count(rgb);
        assert!(n > 500, "the {name} chart drew {n} pixels of its colour");
    }
}
