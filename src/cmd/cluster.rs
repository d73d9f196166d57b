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
    match action {
        ClusterAction::Setup { node_role } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            match rt.block_on(saslguard::fleet::setup(&fc)) {
                Ok(v) => {
                    println!("fleet schema at version {v}; a node's role needs:");
                    print!("{}", saslguard::fleet::grants(&node_role));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("saslguard {e}");
                    Ok(ExitCode::from(EX_UNAVAILABLE))
                }
            }
        }
    }
}
