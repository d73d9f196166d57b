//! `saslguard nft`: saslguard's nftables table by hand (root).

use super::*;

use crate::cli::network as parse_target;

pub(crate) fn nft(
    table: String,
    ports: Vec<u16>,
    reject: bool,
    action: NftAction,
) -> Result<ExitCode> {
    use saslguard::ban::{human_ms, target_string};
    use saslguard::enforce::nft::{Nft, NftConfig};
    let n = Nft::new(NftConfig {
        table,
        ports,
        reject,
        blocks: Vec::new(),
    })?;
    let targets = |list: &[String]| -> Result<Vec<ipnet::IpNet>, ExitCode> {
        list.iter()
            .map(|t| {
                parse_target(t).map_err(|e| {
                    eprintln!("saslguard: {e}");
                    ExitCode::from(EX_USAGE)
                })
            })
            .collect()
    };
    match action {
        NftAction::Setup => n.setup()?,
        NftAction::Ban {
            duration,
            targets: t,
        } => {
            let ms = duration.as_millis() as u64;
            // `-`: targets one per line on standard input (many bans in one batch).
            let t: Vec<String> = if t == ["-"] {
                std::io::stdin()
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| !l.trim().is_empty())
                    .collect()
            } else {
                t
            };
            let t = match targets(&t) {
                Ok(t) => t,
                Err(c) => return Ok(c),
            };
            n.setup()?;
            let bans: Vec<_> = t.into_iter().map(|t| (t, ms)).collect();
            let r = n.ban(&bans)?;
            let retried = if r.retried {
                " (batch retried one by one)"
            } else {
                ""
            };
            println!(
                "added {}, extended {}, kept {}{retried}",
                r.added, r.extended, r.kept
            );
            for (t, why) in &r.failed {
                eprintln!("saslguard: {}: {why}", target_string(t));
            }
            if !r.failed.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        NftAction::Unban { targets: t } => {
            let t = match targets(&t) {
                Ok(t) => t,
                Err(c) => return Ok(c),
            };
            println!("removed {}", n.unban(&t)?);
        }
        NftAction::List { json } => {
            let list = n.list()?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|a| serde_json::json!({"target": target_string(&a.target), "remaining_ms": a.remaining_ms}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for a in &list {
                    println!(
                        "{}\t{}",
                        target_string(&a.target),
                        human_ms(a.remaining_ms as i64)
                    );
                }
            }
        }
        NftAction::Reconcile { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let list = v
                .get("bans")
                .unwrap_or(&v)
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut want = Vec::new();
            for b in &list {
                let (Some(t), Some(u)) = (b["target"].as_str(), b["until"].as_str()) else {
                    anyhow::bail!(
                        "{}: each ban needs \"target\" and \"until\"",
                        file.display()
                    );
                };
                let until = chrono::DateTime::parse_from_rfc3339(u)
                    .map_err(|e| anyhow::anyhow!("{}: {u:?}: {e}", file.display()))?;
                want.push((
                    parse_target(t).map_err(|e| anyhow::anyhow!(e))?,
                    Timestamp(until.timestamp_millis()),
                ));
            }
            let now = Timestamp(chrono::Utc::now().timestamp_millis());
            let r = n.reconcile(&want, now)?;
            println!("restored {}", r.added + r.extended);
            for (t, why) in &r.failed {
                eprintln!("saslguard: could not restore {}: {why}", target_string(t));
            }
            if !r.failed.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        NftAction::Reset => {
            println!(
                "{}",
                if n.reset()? {
                    "table removed"
                } else {
                    "no table"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
