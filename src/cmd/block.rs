//! `saslguard geo` and `saslguard block`: what the GeoIP databases say of an address,
//! and the `[[block]]`s as the daemon computes them, without the daemon.

use super::*;
use crate::cli::BlockAction;
use saslguard::block::{Blocked, compute};
use saslguard::geo::Geo;
use std::net::IpAddr;

/// The configuration at `path`, or the defaults when there is no file there.
fn config_at(path: &std::path::Path) -> Result<Config, ExitCode> {
    if path.exists() {
        load_config(Some(&path.to_path_buf()))
    } else {
        Ok(Config::default())
    }
}

/// `saslguard geo ADDR`.
pub(crate) fn geo(config: &std::path::Path, json: bool, address: IpAddr) -> Result<ExitCode> {
    let cfg = match config_at(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let g = Geo::open(&cfg.geoip, (false, false), false)?;
    if !g.has_country() && !g.has_asn() {
        eprintln!(
            "saslguard geo: no GeoIP database could be read ([geoip] in {})",
            config.display()
        );
        return Ok(ExitCode::from(EX_NOINPUT));
    }
    let o = g.lookup(address);
    #[derive(serde::Serialize)]
    struct Answer {
        address: String,
        #[serde(flatten)]
        origin: saslguard::geo::Origin,
    }
    let a = Answer {
        address: address.to_string(),
        origin: o,
    };
    emit(json, &a, |a| {
        format!(
            "{}  country {}  continent {}  AS{} {}\n",
            a.address,
            a.origin.country.as_deref().unwrap_or("--"),
            a.origin.continent.as_deref().unwrap_or("--"),
            a.origin.asn.map_or("-".to_string(), |n| n.to_string()),
            a.origin.as_org.as_deref().unwrap_or("")
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn computed(cfg: &Config) -> Result<Vec<Blocked>> {
    let needs = (
        cfg.blocks
            .iter()
            .any(|b| !b.countries.is_empty() || !b.not_countries.is_empty()),
        cfg.blocks.iter().any(|b| !b.asns.is_empty()),
    );
    let g = Geo::open(&cfg.geoip, needs, false)?;
    cfg.blocks
        .iter()
        .map(|b| compute(b, &g).map_err(anyhow::Error::from))
        .collect()
}

/// `saslguard block list|check`.
pub(crate) fn block(config: &std::path::Path, json: bool, action: BlockAction) -> Result<ExitCode> {
    let cfg = match config_at(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let blocks = computed(&cfg)?;
    match action {
        BlockAction::List { networks } => {
            #[derive(serde::Serialize)]
            struct Listed {
                #[serde(flatten)]
                summary: saslguard::block::Summary,
                #[serde(skip_serializing_if = "Option::is_none")]
                networks: Option<Vec<String>>,
            }
            let list: Vec<Listed> = blocks
                .iter()
                .map(|b| Listed {
                    summary: b.summary(),
                    networks: networks
                        .then(|| b.ranges.cidrs().iter().map(|n| n.to_string()).collect()),
                })
                .collect();
            emit(json, &list, |list| {
                let mut o = String::new();
                if list.is_empty() {
                    o.push_str("no [[block]] in the configuration\n");
                }
                for l in list {
                    let s = &l.summary;
                    o.push_str(&format!(
                        "{}  ports {}  IPv4: {} ranges, {} addresses  IPv6: {} ranges, {} /64s{}\n",
                        s.name,
                        s.ports
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        s.ranges_v4,
                        s.addresses_v4,
                        s.ranges_v6,
                        s.networks_v6_64,
                        match (s.country_database_build, s.asn_database_build) {
                            (None, None) => String::new(),
                            (c, a) => format!(
                                "  (databases built{}{})",
                                c.map_or(String::new(), |t| format!(
                                    " country {}",
                                    Timestamp::from_secs(t as i64).rfc3339()
                                )),
                                a.map_or(String::new(), |t| format!(
                                    " ASN {}",
                                    Timestamp::from_secs(t as i64).rfc3339()
                                ))
                            ),
                        }
                    ));
                    for n in l.networks.iter().flatten() {
                        o.push_str(&format!("  {n}\n"));
                    }
                }
                o
            })?;
            Ok(ExitCode::SUCCESS)
        }
        BlockAction::Check { address } => {
            let allowed = cfg.policy.allowlist.iter().any(|n| n.contains(&address));
            let by: Vec<&Blocked> = blocks
                .iter()
                .filter(|b| b.ranges.contains(address))
                .collect();
            #[derive(serde::Serialize)]
            struct Checked {
                address: String,
                blocked: bool,
                blocks: Vec<String>,
                allowlisted: bool,
                ports: Vec<u16>,
            }
            let mut ports: Vec<u16> = by.iter().flat_map(|b| b.ports.clone()).collect();
            ports.sort_unstable();
            ports.dedup();
            let c = Checked {
                address: address.to_string(),
                blocked: !by.is_empty() && !allowed,
                blocks: by.iter().map(|b| b.name.clone()).collect(),
                allowlisted: allowed,
                ports,
            };
            emit(json, &c, |c| match (c.blocks.is_empty(), c.allowlisted) {
                (true, _) => format!("{} is in no block\n", c.address),
                (false, true) => format!(
                    "{} is in block {}, but allowlisted: it passes\n",
                    c.address,
                    c.blocks.join(", ")
                ),
                (false, false) => format!(
                    "{} is refused by block {} on ports {}\n",
                    c.address,
                    c.blocks.join(", "),
                    c.ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            })?;
            // Like `grep`: 0 when refused, 1 when not.
            Ok(if c.blocked {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
