//! GeoIP, origin rules, TLS posture at ban time and alerts, through `saslguard replay`
//! on tests/fixtures/geo/mail.log (annotated in tests/fixtures/geo/README) with MaxMind
//! databases this test builds, against tests/fixtures/geo/expect.json.

use crate::support;
use crate::support::mmdb::{self, asn, country};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/geo")
        .join(name)
}

/// Country and ASN databases with known networks, IPv4 and IPv6, one record
/// continent-only (no country), as GeoLite2 has for anycast networks.
fn databases(dir: &Path) -> (PathBuf, PathBuf) {
    let c = dir.join("country.mmdb");
    let a = dir.join("asn.mmdb");
    std::fs::write(&c, mmdb::build("GeoLite2-Country", mmdb::test_countries())).unwrap();
    std::fs::write(
        &a,
        mmdb::build(
            "GeoLite2-ASN",
            vec![
                ("192.0.2.0/24", asn(64500, "Example Home ISP")),
                ("198.51.100.0/24", asn(64501, "Example Cloud")),
                ("203.0.113.0/24", asn(64502, "Example Hosting")),
                ("2001:db8:2::/48", asn(64503, "Example Anycast")),
                ("2001:db8:3::/48", asn(64504, "Example Mobile")),
            ],
        ),
    )
    .unwrap();
    (c, a)
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let (c, a) = databases(dir);
    let path = dir.join("saslguard.toml");
    std::fs::write(
        &path,
        format!(
            r#"[geoip]
country_database = "{}"
asn_database = "{}"

[[origin]]
name = "anycast"
countries = ["--"]
failures = 2
within = "1h"
ban = "2h"

[[origin]]
name = "hosting"
asns = [64502]
failures = 3
within = "1h"
ban = "1d"

[[origin]]
name = "abroad"
not_countries = ["DE"]
failures = 1
within = "1d"
ban = "7d"

[alerts]
learning = "1d"
countries = ["BR"]
spray_addresses = 3
spray_accounts = 4
{extra}
"#,
            c.display(),
            a.display()
        ),
    )
    .unwrap();
    path
}

fn replay(cfg: &Path) -> Value {
    support::json_ok(
        Command::new(BIN)
            .args([
                "replay",
                "--json",
                "--timezone",
                "UTC",
                "--year",
                "2026",
                "-c",
            ])
            .arg(cfg)
            .arg(fixture("mail.log")),
    )
}

#[test]
fn origins_decide_bans_and_alerts_name_stolen_passwords_and_spraying() {
    let dir = tempfile::tempdir().unwrap();
    let v = replay(&config(dir.path(), ""));
    let doc = serde_json::json!({"bans": v["bans"], "alerts": v["alerts"]});
    support::bless(&fixture("expect.json"), &format!("{doc:#}\n"));
    let expect: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expect.json")).unwrap()).unwrap();
    assert_eq!(v["bans"], expect["bans"], "bans:\n{:#}", v["bans"]);
    assert_eq!(v["alerts"], expect["alerts"], "alerts:\n{:#}", v["alerts"]);
    let off = |a: &str| {
        v["offenders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["address"] == a)
            .unwrap_or_else(|| panic!("no offender {a}"))
            .clone()
    };
    assert_eq!(
        off("203.0.113.7")["geo"],
        serde_json::json!({"country": "NL", "continent": "EU", "asn": 64502, "as_org": "Example Hosting"})
    );
    assert_eq!(
        off("192.0.2.21")["login_users"],
        serde_json::json!(["bob@example.org"]),
        "bob's typo is recorded, and nothing else comes of it"
    );
    let kinds = |who: &str| -> Vec<String> {
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["user"] == who)
            .map(|a| a["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        kinds("frank@example.org"),
        ["login_after_prefix_failures"],
        "guessed from two addresses of a /64, logged in from a third"
    );
    assert!(
        kinds("grace@example.org").is_empty(),
        "one typo in the /64 before a login is not an alert"
    );
}

#[test]
fn alerts_can_ban_the_address_and_a_typo_user_is_never_banned() {
    let dir = tempfile::tempdir().unwrap();
    let v = replay(&config(dir.path(), "ban = \"2h\""));
    let alert_bans: Vec<(String, String)> = v["bans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["rule"].as_str().unwrap().starts_with("alert "))
        .map(|b| {
            (
                b["target"].as_str().unwrap().to_string(),
                b["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        alert_bans,
        [
            (
                "192.0.2.60".to_string(),
                "alert login_after_failures".to_string()
            ),
            (
                "2001:db8:3::9".to_string(),
                "alert marked_country".to_string()
            ),
            ("192.0.2.80".to_string(), "alert spray_address".to_string()),
            (
                "192.0.2.90".to_string(),
                "alert login_after_failures".to_string()
            ),
        ],
        "new_origin and spray_account alerts do not ban"
    );
    assert!(
        !v["bans"].to_string().contains("192.0.2.21"),
        "bob mistyped once and logged in"
    );
}

#[test]
fn a_database_replaced_on_disk_is_picked_up_and_a_broken_one_keeps_the_old() {
    use saslguard::geo::Geo;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("country.mmdb");
    let write = |iso: &str| {
        let tmp = dir.path().join("new.mmdb");
        std::fs::write(
            &tmp,
            mmdb::build(
                "GeoLite2-Country",
                vec![("198.51.100.0/24", country(Some(iso), "EU"))],
            ),
        )
        .unwrap();
        // geoipupdate writes a new file and renames it over the old one.
        std::fs::rename(&tmp, &path).unwrap();
    };
    write("FR");
    let mut g = Geo::new(Some(path.clone()), None);
    assert_eq!(g.refresh().loaded.len(), 1);
    let addr = "198.51.100.9".parse().unwrap();
    assert_eq!(g.lookup(addr).country.as_deref(), Some("FR"));
    assert!(g.lookup("192.0.2.1".parse().unwrap()).country.is_none());
    write("IT");
    let news = g.refresh();
    assert!(news.loaded[0].contains("reloaded"), "{news:?}");
    assert_eq!(g.lookup(addr).country.as_deref(), Some("IT"));
    std::fs::write(&path, b"truncated by a full disk").unwrap();
    let news = g.refresh();
    assert!(
        news.problems[0].contains("keeping the copy loaded before"),
        "{news:?}"
    );
    assert_eq!(g.lookup(addr).country.as_deref(), Some("IT"));
}

#[test]
fn an_origin_rule_without_its_database_is_an_error_and_bad_codes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[geoip]\ncountry_database = \"/nonexistent/GeoLite2-Country.mmdb\"\n\n[[origin]]\nname = \"abroad\"\nnot_countries = [\"DE\"]\nfailures = 1\nwithin = \"1d\"\nban = \"7d\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["replay", "-c"])
        .arg(&cfg)
        .arg(fixture("mail.log"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("an [[origin]] matches by country, but no country database could be read")
            && err.contains("/nonexistent/GeoLite2-Country.mmdb: missing"),
        "{err}"
    );

    std::fs::write(
        &cfg,
        "[[origin]]\nname = \"x\"\ncountries = [\"UK\", \"de\"]\nasns = [-1]\nfailures = 1\nwithin = \"1d\"\nban = \"7d\"\n\n[[origin]]\nname = \"nothing\"\nfailures = 1\nwithin = \"1d\"\nban = \"7d\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let at = |line: usize| format!("{}:{line}:", cfg.display());
    for (line, what) in [
        (3, "\"UK\" is not an ISO 3166-1 alpha-2 country code"),
        (3, "\"de\": country codes are upper case (\"DE\")"),
        (4, "asns: -1 is not an AS number"),
        (9, "origin \"nothing\" matches nothing"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&at(line)) && l.contains(what)),
            "{what} at line {line}:\n{err}"
        );
    }
}
