//! Command-line interface (clap). Each subcommand maps to one function in main.rs.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "saslguard",
    version,
    about = "Stops password guessers on Postfix and Dovecot mail servers"
)]
pub struct Cli {
    /// Log level for saslguard's own messages (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TimeArgs {
    /// Zone of timestamps that carry none: "local", "UTC" or "+01:00" (default: the
    /// configuration's input.timezone, else local).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Year of the first classic syslog timestamp (default: from each file's
    /// modification time).
    #[arg(long)]
    pub year: Option<i32>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show how each log line is understood (like fail2ban-regex).
    Parse {
        /// One JSON object per line that yields an event.
        #[arg(long)]
        json: bool,
        /// Also list lines that yield no event, and why.
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        time: TimeArgs,
        /// Log files (plain or .gz); "-" for standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the whole pipeline over old logs with a dry-run enforcer; print offenders and
    /// the bans it would have made.
    Replay {
        /// Configuration file (default: built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Offenders to list in text output.
        #[arg(long, default_value_t = 20)]
        top: usize,
        #[command(flatten)]
        time: TimeArgs,
        /// Log files (plain or .gz), merged by time; "-" for standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate a configuration file; print every error with file:line.
    CheckConfig { file: PathBuf },
}
