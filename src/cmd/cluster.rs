//! `saslguard cluster`: the fleet's PostgreSQL database.

use super::*;
use crate::cli::ClusterAction;

pub(crate) fn cluster(config: &std::path::Path, action: ClusterAction) -> Result<ExitCode> {
    let cfg = match load_config(Some(&config.to_path_buf())) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(fc) = cfg.cluster else {
        eprintln!(
            "saslguard cluster: [cluster] is not enabled in {}",
            config.display()
        );
        return Ok(ExitCode::from(EX_USAGE));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
            Err(e) => {
                eprintln!("saslguard {e}");
                Ok(ExitCode::from(EX_UNAVAILABLE))
            }
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
            Err(e) => {
                eprintln!("saslguard {e}");
                Ok(ExitCode::from(EX_UNAVAILABLE))
            }
        },
    }
}
