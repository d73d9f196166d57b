//! `saslguard check-config` and `saslguard postfix-setup`.

use super::*;

/// Validates a configuration; says what it means where a setting is a trap.
pub(crate) fn check_config(file: &std::path::Path) -> Result<ExitCode> {
    let cfg = match config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    if cfg.alerts.ban_ms <= 0 {
        eprintln!(
            "{}: note: [alerts] ban = \"off\": a login after guesses is alerted, but the account keeps working; lock it with an alert command (README: Alerts, config/alerts/disable-account.sh)",
            file.display()
        );
    }
    if cfg.sources.journal && !cfg.sources.files.is_empty() {
        eprintln!(
            "{}: warning: {}",
            file.display(),
            config::BOTH_SOURCES_WARNING
        );
    }
    if let Some(p) = cfg
        .daemon
        .control_socket
        .symlink_metadata()
        .ok()
        .filter(|m| !std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        .map(|_| cfg.daemon.control_socket.display().to_string())
    {
        eprintln!(
            "{}: daemon.control_socket {p} exists and is not a socket; the daemon will refuse to start",
            file.display()
        );
        return Ok(ExitCode::from(EX_USAGE));
    }
    println!("{}: OK ({} rules)", file.display(), cfg.policy.rules.len());
    Ok(ExitCode::SUCCESS)
}

/// Creates the configured Postfix map if it is not there yet.
pub(crate) fn postfix_setup(file: &std::path::Path, quiet: bool) -> Result<ExitCode> {
    let cfg = match config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let Some(mc) = &cfg.postfix_map else {
        if !quiet {
            println!(
                "[postfix_map] is not enabled in {}: no map to create",
                file.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let map = saslguard::enforce::postfix_map::PostfixMap::from_config(mc)?;
    if map.exists() {
        if !quiet {
            println!("{} exists", mc.map);
        }
    } else {
        map.create()?;
        println!("created {} (empty)", mc.map);
    }
    if !quiet {
        println!(
            "add to main.cf: /usr/share/doc/saslguard/postfix/main.cf.saslguard (map path {}); to master.cf: master.cf.saslguard",
            mc.map
        );
    }
    Ok(ExitCode::SUCCESS)
}
