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
    assert_eq!(err.lines().count(), 6, "one error each:\n{err}");

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

/// What a `block list --json --networks` says of each block: name → its networks.
fn listed(out: &str) -> std::collections::BTreeMap<String, (Vec<ipnet::IpNet>, serde_json::Value)> {
    let v: serde_json::Value = serde_json::from_str(out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let nets = b["networks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().parse().unwrap())
                .collect();
            (b["name"].as_str().unwrap().to_string(), (nets, b.clone()))
        })
        .collect()
}

#[test]
fn blocks_from_maxminds_published_test_databases_match_their_source_data() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/maxmind");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("saslguard.toml");
    std::fs::write(
        &cfg,
        format!(
            "[geoip]\ncountry_database = \"{}\"\nasn_database = \"{}\"\n\
             [[block]]\nname = \"ru\"\ncountries = [\"RU\"]\n\
             [[block]]\nname = \"gb\"\ncountries = [\"GB\"]\n\
             [[block]]\nname = \"google\"\nasns = [15169]\n",
            fx.join("GeoLite2-Country-Test.mmdb").display(),
            fx.join("GeoLite2-ASN-Test.mmdb").display()
        ),
    )
    .unwrap();
    let (code, out, err) = saslguard(&[
        "block",
        "-c",
        cfg.to_str().unwrap(),
        "list",
        "--networks",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let blocks = listed(&out);

    // The expectation, from the JSON MaxMind built the databases from (its networks do
    // not overlap): each network's country (else its registered country), each
    // network's AS number.
    let source = |file: &str| -> Vec<(ipnet::IpNet, serde_json::Value)> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fx.join(file)).unwrap()).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e.as_object().unwrap().clone())
            .map(|(n, rec)| (n.parse().unwrap(), rec))
            .collect()
    };
    let country_of = |rec: &serde_json::Value| {
        rec["country"]["iso_code"]
            .as_str()
            .or_else(|| rec["registered_country"]["iso_code"].as_str())
            .map(str::to_string)
    };
    let check = |name: &str,
                 records: &[(ipnet::IpNet, serde_json::Value)],
                 wants: &dyn Fn(&serde_json::Value) -> bool| {
        let (nets, summary) = &blocks[name];
        let inside = |a: std::net::IpAddr| nets.iter().any(|n| n.contains(&a));
        let (mut v4, mut v6_64s) = (0u64, 0u128);
        for (net, rec) in records {
            let want = wants(rec);
            for a in [net.network(), net.broadcast()] {
                assert_eq!(inside(a), want, "{name}: {a} of {net} ({rec})");
            }
            if want {
                match net {
                    ipnet::IpNet::V4(n) => v4 += 1u64 << (32 - n.prefix_len()),
                    ipnet::IpNet::V6(n) => v6_64s += 1u128 << 64u8.saturating_sub(n.prefix_len()),
                }
            }
        }
        assert!(
            v4 + v6_64s as u64 > 0,
            "{name}: the source data has networks for it"
        );
        assert_eq!(summary["addresses_v4"], v4, "{name}");
        assert_eq!(summary["networks_v6_64"], v6_64s.to_string(), "{name}");
    };
    let countries = source("GeoLite2-Country-Test.json");
    check("ru", &countries, &|r| {
        country_of(r).as_deref() == Some("RU")
    });
    check("gb", &countries, &|r| {
        country_of(r).as_deref() == Some("GB")
    });
    let asns = source("GeoLite2-ASN-Test.json");
    check("google", &asns, &|r| r["autonomous_system_number"] == 15169);
}
