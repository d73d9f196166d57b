//! The binary's commands: each turns its typed arguments into library calls and
//! prints the answer. Shared here: exit codes, configuration and time settings, and
//! the JSON-or-text printer.

pub mod block;
pub mod check;
pub mod cluster;
pub mod daemon;
pub mod logs;
pub mod nft;
pub mod parse;
pub mod probe;
pub mod replay;
pub mod report;

pub(crate) use crate::cli::{NftAction, SocketArgs, TimeArgs};
pub(crate) use anyhow::Result;
pub(crate) use saslguard::config::{self, Config};
pub(crate) use saslguard::daemon::control::{Request, Response, call};
pub(crate) use saslguard::source::file::TimeSettings;
pub(crate) use saslguard::source::merge::Merge;
pub(crate) use saslguard::time::Timestamp;
pub(crate) use std::io::{BufWriter, Write};
pub(crate) use std::path::PathBuf;
pub(crate) use std::process::ExitCode;

pub(crate) const EX_USAGE: u8 = 64;
pub(crate) const EX_DATAERR: u8 = 65;
pub(crate) const EX_NOINPUT: u8 = 66;
/// Service unavailable (the daemon's control socket does not answer).
pub(crate) const EX_UNAVAILABLE: u8 = 69;

/// A log file that cannot be opened or read: exit 66.
pub(crate) fn no_input(e: &saslguard::source::file::SourceError) -> ExitCode {
    eprintln!("saslguard: {e}");
    ExitCode::from(EX_NOINPUT)
}

/// What a replay that failed exits with: 66 for a log file, 1 for the rest.
pub(crate) fn replay_failed(e: saslguard::replay::ReplayError) -> ExitCode {
    match e {
        saslguard::replay::ReplayError::Source(s) => no_input(&s),
        other => {
            eprintln!("saslguard: {other}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn load_config(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::default()),
        Some(p) => config::load(p).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(EX_USAGE)
        }),
    }
}

pub(crate) fn time_settings(args: &TimeArgs, cfg: &Config) -> Result<TimeSettings, ExitCode> {
    let zone = args.timezone.unwrap_or(cfg.zone);
    let now = Timestamp(chrono::Utc::now().timestamp_millis());
    Ok(TimeSettings {
        zone,
        year: args.year,
        now,
    })
}

/// Prints `value` as pretty JSON, or as `text` renders it.
pub(crate) fn emit<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl Fn(&T) -> String,
) -> Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", saslguard::escape::terminal(&text(value)))?;
    }
    out.flush()?;
    Ok(())
}
