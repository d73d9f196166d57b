//! `saslguard run` and the thin clients of its control socket.

use super::*;

/// Sends one request to the daemon and prints the answer.
pub(crate) fn control(args: &SocketArgs, req: Request, json: bool) -> Result<ExitCode> {
    let path = match &args.socket {
        Some(p) => p.clone(),
        None => match config::load(&args.config) {
            Ok(c) => c.daemon.control_socket,
            // No readable configuration: the packaged default.
            Err(_) if !args.config.exists() => Config::default().daemon.control_socket,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(EX_USAGE));
            }
        },
    };
    let answer = match call(&path, &req).map(|v| Response::read(&req, v)) {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            eprintln!("saslguard: the daemon's answer is not what was asked: {e}");
            return Ok(ExitCode::from(EX_UNAVAILABLE));
        }
        Err(e) => {
            eprintln!("saslguard: {e}");
            return Ok(ExitCode::from(EX_UNAVAILABLE));
        }
    };
    if let Response::Failed(f) = &answer {
        eprintln!("saslguard: {}", saslguard::escape::escape(&f.error));
        // A target refused for what it is: the input is wrong, not the daemon.
        if f.refused {
            return Ok(ExitCode::from(EX_DATAERR));
        }
        return Ok(ExitCode::FAILURE);
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &answer)?;
        writeln!(out)?;
    } else {
        let text = saslguard::daemon::render::text(&answer);
        write!(out, "{}", saslguard::escape::terminal(&text))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `saslguard run`: a bad configuration exits 64 with every error.
pub(crate) fn run(config: &std::path::Path) -> Result<ExitCode> {
    match saslguard::daemon::run(config) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(saslguard::daemon::DaemonError::Config(c)) => {
            eprintln!("{c}");
            Ok(ExitCode::from(EX_USAGE))
        }
        Err(e) => Err(e.into()),
    }
}
