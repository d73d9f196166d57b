//! `[[block]]` without the kernel: the configuration's checks, and `saslguard block
//! list|check` and `saslguard geo` over a database the test writes.

use crate::support::mmdb::{self, asn, country};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_saslguard");

fn saslguard(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A country database (RU: two IPv4 networks, one IPv6; DE; FR) and an ASN database,
/// and a configuration naming them with `blocks` appended.
fn setup(dir: &Path, blocks: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("country.mmdb"),
        mmdb::build(
            "GeoLite2-Country",
            vec![
                ("198.51.100.0/25", country(Some("RU"), "EU")),
                ("198.51.100.128/25", country(Some("RU"), "EU")),
                ("203.0.113.0/25", country(Some("RU"), "EU")),
                ("203.0.113.128/25", country(Some("FR"), "EU")),
                ("192.0.2.0/24", country(Some("DE"), "EU")),
                ("2001:db8:77::/48", country(Some("RU"), "EU")),
            ],
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("asn.mmdb"),
        mmdb::build(
            "GeoLite2-ASN",
            vec![
                ("192.0.2.0/25", asn(64500, "Example Hosting")),
                ("203.0.113.128/25", asn(64501, "Example Transit")),
            ],
        ),
    )
    .unwrap();
    let cfg = dir.join("saslguard.toml");
    std::fs::write(
        &cfg,
        format!(
            "[geoip]\ncountry_database = \"{}\"\nasn_database = \"{}\"\n{blocks}",
            dir.join("country.mmdb").display(),
            dir.join("asn.mmdb").display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn block_list_shows_the_countrys_networks_merged_and_block_check_names_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(
        dir.path(),
        "[allowlist]\nnetworks = [\"198.51.100.9/32\"]\n\
         [[block]]\nname = \"ru\"\ncountries = [\"RU\"]\nexcept = [\"203.0.113.64/26\"]\n\
         [[block]]\nname = \"hosting\"\nasns = [64500]\nnetworks = [\"10.9.0.0/16\"]\nports = [587]\n",
    );
    let c = cfg.to_str().unwrap();
    let (code, out, err) = saslguard(&["block", "-c", c, "list", "--networks", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ru = &v[0];
    assert_eq!(ru["name"], "ru");
    // The two halves of 198.51.100.0/24 are one network; the except is cut out.
    assert_eq!(
        ru["networks"],
        serde_json::json!(["198.51.100.0/24", "203.0.113.0/26", "2001:db8:77::/48"])
    );
    assert_eq!(ru["addresses_v4"], 256 + 64);
    assert_eq!(ru["networks_v6_64"], "65536");
    assert_eq!(
        ru["ports"],
        serde_json::json!([465, 587, 110, 143, 993, 995, 4190])
    );
    assert!(ru["country_database_build"].as_u64().is_some());
    let hosting = &v[1];
    assert_eq!(
        hosting["networks"],
        serde_json::json!(["10.9.0.0/16", "192.0.2.0/25"])
    );

    // check: which block, and the allowlist wins; exit 0 only when refused.
    let (code, out, _) = saslguard(&["block", "-c", c, "check", "198.51.100.7"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("refused by block ru on ports 110,143,465,587,993,995,4190"),
        "{out}"
    );
    let (code, out, _) = saslguard(&["block", "-c", c, "check", "198.51.100.9"]);
    assert_eq!(code, 1);
    assert!(out.contains("allowlisted: it passes"), "{out}");
    let (code, out, _) = saslguard(&["block", "-c", c, "check", "203.0.113.70"]);
    assert_eq!(code, 1, "the except network is not blocked");
    assert!(out.contains("in no block"), "{out}");
    let (code, out, _) = saslguard(&["block", "-c", c, "--json", "check", "192.0.2.5"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["blocks"], serde_json::json!(["hosting"]));
    assert_eq!(v["ports"], serde_json::json!([587]));
    let (code, _, err) = saslguard(&["block", "-c", c, "check", "198.51.100.0/24"]);
    assert_eq!(code, 64, "a network is not an address: {err}");
}

#[test]
fn geo_answers_country_and_as_of_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "");
    let c = cfg.to_str().unwrap();
    let (code, out, err) = saslguard(&["geo", "-c", c, "192.0.2.7"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "192.0.2.7  country DE  continent EU  AS64500 Example Hosting\n"
    );
    let (code, out, _) = saslguard(&["geo", "-c", c, "--json", "::ffff:203.0.113.200"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["address"], "203.0.113.200",
        "mapped addresses are made IPv4"
    );
    assert_eq!(v["country"], "FR");
    assert_eq!(v["asn"], 64501);
}

#[test]
fn check_config_refuses_blocks_that_would_hurt() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[allowlist]\nnetworks = [\"192.0.2.0/28\"]\n\
         [[block]]\nname = \"mx\"\ncountries = [\"UK\"]\nports = [25, 587]\n\
         [[block]]\nname = \"office\"\nnetworks = [\"192.0.2.0/24\"]\n\
         [[block]]\nname = \"bad name!\"\nnetworks = [\"198.51.100.0/24\"]\n\
         [[block]]\nname = \"empty\"\n\
         [[block]]\nname = \"file\"\nnetworks_file = \"missing.txt\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let at = |line: usize| format!("{}:{line}:", bad.display());
    for (line, what) in [
        (5, "\"UK\" is not an ISO 3166-1 alpha-2 country code"),
        (6, "ports: 25 refuses this block's mail servers"),
        (7, "covers the whole allowlist (192.0.2.0/28)"),
        (11, "block name \"bad name!\""),
        (13, "block \"empty\" blocks nothing"),
        (17, "missing.txt"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&at(line)) && l.contains(what)),
            "no error at line {line} ({what}) in:\n{err}"
        );
    }

    // A networks_file's bad line is reported with that file's name and line; port 25
    // is accepted when the block says so.
    std::fs::write(
        dir.path().join("nets.txt"),
        "# ok\n198.51.100.0/24\n\n192.0.2.7/24 # typo\n",
    )
    .unwrap();
    std::fs::write(
        &bad,
        "[[block]]\nname = \"file\"\nnetworks_file = \"nets.txt\"\nports = [25]\nblock_smtp = true\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4:", dir.path().join("nets.txt").display()))
            && err.contains("did you mean 192.0.2.0/24"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
