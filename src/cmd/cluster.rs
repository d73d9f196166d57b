//! `saslguard cluster`: the fleet's PostgreSQL database.

use super::*;
use crate::cli::ClusterAction;

fn fleet_config(config: &std::path::Path) -> Result<saslguard::fleet::FleetConfig, ExitCode> {
    let cfg = load_config(Some(&config.to_path_buf()))?;
    cfg.cluster.ok_or_else(|| {
        eprintln!(
            "saslguard: [cluster] is not enabled in {}",
            config.display()
        );
        ExitCode::from(EX_USAGE)
    })
}

/// The fleet's database did not answer: exit 69.
fn unavailable(e: &saslguard::fleet::FleetError) -> ExitCode {
    eprintln!("saslguard {e}");
    ExitCode::from(EX_UNAVAILABLE)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `saslguard bans --fleet`.
pub(crate) fn fleet_bans(config: &std::path::Path, json: bool) -> Result<ExitCode> {
    let fc = match fleet_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match runtime()?.block_on(saslguard::fleet::active_bans(&fc)) {
        Ok(list) => {
            emit(json, &list, |list| {
                if list.is_empty() {
                    return "no active fleet bans\n".into();
                }
                list.iter()
                    .map(|b| {
                        format!(
                            "{}  until {}  node {} ({})  {}\n",
                            b.target,
                            b.until.rfc3339(),
                            b.node,
                            b.origin,
                            b.reason
                        )
                    })
                    .collect()
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(unavailable(&e)),
    }
}

/// Per node, from the fleet's database: for `report --fleet`.
pub(crate) fn fleet_tally(
    config: &std::path::Path,
    since: Timestamp,
    until: Timestamp,
) -> Result<Result<saslguard::fleet::FleetTally, ExitCode>> {
    let fc = match fleet_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(Err(code)),
    };
    match runtime()?.block_on(saslguard::fleet::tally(&fc, since, until)) {
        Ok(t) => Ok(Ok(t)),
        Err(e) => Ok(Err(unavailable(&e))),
    }
}

pub(crate) fn cluster(config: &std::path::Path, action: ClusterAction) -> Result<ExitCode> {
    let fc = match fleet_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let rt = runtime()?;
    match action {
        ClusterAction::Status { json } => match rt.block_on(saslguard::fleet::status(&fc)) {
            Ok(s) => {
                emit(json, &s, |s| {
                    let mut o = format!(
                        "fleet schema {}; {} active bans; {} failures in the last hour\n",
                        s.schema_version, s.active_bans, s.failures_last_hour
                    );
                    for n in &s.nodes {
                        o.push_str(&format!(
                            "  {}  saslguard {}  seen {} s ago  failures published {}  active bans decided {}\n",
                            n.node, n.version, n.seen_ago_s, n.failures_published, n.bans_decided
                        ));
                    }
                    o
                })?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(unavailable(&e)),
        },
        ClusterAction::Setup {
            node_role,
            postfix_role,
        } => match rt.block_on(saslguard::fleet::setup(&fc)) {
            Ok(v) => {
                println!("fleet schema at version {v}; a node's role needs:");
                print!("{}", saslguard::fleet::grants(&node_role));
                println!(
                    "and Postfix's role, for the pgsql: map (config/postfix/pgsql-saslguard.cf):"
                );
                print!("{}", saslguard::fleet::postfix_grants(&postfix_role));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(unavailable(&e)),
        },
    }
}
