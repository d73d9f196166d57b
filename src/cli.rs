//! Command-line interface (clap). Each subcommand maps to one function under `cmd/`.
//! Values are parsed here, once, into their types (durations, networks, ports, zones,
//! services, mechanisms): a bad one is a usage error (exit 64) before any work starts.

use clap::{Parser, Subcommand};
use ipnet::IpNet;
use saslguard::probe::{Mechanism, Service};
use saslguard::time::Zone;
use std::path::PathBuf;
use std::time::Duration;

/// A positive duration: 90s, 10m, 1h, 7d.
pub fn duration(s: &str) -> Result<Duration, String> {
    match saslguard::config::validate::parse_duration(s) {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
        Ok(_) => Err("expected a duration longer than zero, like 90s, 10m, 1h, 7d".into()),
        Err(e) => Err(format!("{e}; expected a duration like 90s, 10m, 1h, 7d")),
    }
}

/// An address or network, made canonical (`::ffff:192.0.2.7` is `192.0.2.7`).
pub fn network(s: &str) -> Result<IpNet, saslguard::addr::NetworkError> {
    saslguard::addr::parse_network(s)
}

/// One address (not a network), made canonical.
pub fn address(s: &str) -> Result<std::net::IpAddr, String> {
    match network(s) {
        Ok(n) if n.prefix_len() == n.max_prefix_len() => Ok(n.addr()),
        Ok(_) => Err(format!("{s:?} is a network; give one address")),
        Err(e) => Err(e.to_string()),
    }
}

/// TCP ports: comma-separated numbers, or "all" (every port: empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(pub Vec<u16>);

pub fn ports(s: &str) -> Result<Ports, String> {
    if s == "all" {
        return Ok(Ports(Vec::new()));
    }
    match s
        .split(',')
        .map(|p| p.trim().parse::<u16>())
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(p) if !p.is_empty() => Ok(Ports(p)),
        _ => Err("expected port numbers separated by commas, or \"all\"".into()),
    }
}

pub fn zone(s: &str) -> Result<Zone, String> {
    Zone::parse(s).ok_or_else(|| "expected \"local\", \"UTC\" or an offset like \"+01:00\"".into())
}

pub fn service(s: &str) -> Result<Service, String> {
    Service::parse(s)
        .ok_or_else(|| "expected smtp, submission, smtps, imap, imaps, pop3 or pop3s".into())
}

pub fn mechanism(s: &str) -> Result<Mechanism, String> {
    Mechanism::parse(s).ok_or_else(|| "expected PLAIN, LOGIN or CRAM-MD5".into())
}

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
    #[arg(long, value_parser = zone)]
    pub timezone: Option<Zone>,
    /// Year of the first classic syslog timestamp (default: from each file's
    /// modification time).
    #[arg(long)]
    pub year: Option<i32>,
}

/// Where the daemon's control socket is.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// Control socket path (default: the configuration's daemon.control_socket).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Configuration file naming the socket.
    #[arg(long, short, default_value = "/etc/saslguard/saslguard.toml")]
    pub config: PathBuf,
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
        #[command(flatten)]
        read: ReadArgs,
        /// Log files (plain or .gz), merged by time; "-" for standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate a configuration file; print every error with file:line.
    CheckConfig { file: PathBuf },
    /// Prepare Postfix for saslguard: create the configured access map (empty, and its
    /// postmap database for hash:/lmdb:) if it is not there yet, so Postfix never looks
    /// up a missing map; print the main.cf and master.cf settings to add.
    PostfixSetup {
        #[arg(long, short, default_value = "/etc/saslguard/saslguard.toml")]
        config: PathBuf,
        /// Print nothing when there is nothing to do.
        #[arg(long)]
        quiet: bool,
    },
    /// Is an address banned now, and by what?
    Check {
        #[command(flatten)]
        socket: SocketArgs,
        #[arg(long)]
        json: bool,
        address: String,
    },
    /// Run the daemon: follow the logs, ban, keep state (SIGHUP reloads, SIGTERM stops).
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/saslguard/saslguard.toml")]
        config: PathBuf,
    },
    /// The running daemon: sources with their positions, counts, active bans.
    Status {
        #[command(flatten)]
        socket: SocketArgs,
        #[arg(long)]
        json: bool,
    },
    /// Active bans with remaining time, reason and what the offender did.
    Bans {
        #[command(flatten)]
        socket: SocketArgs,
        #[arg(long)]
        json: bool,
        /// The whole fleet's active bans, from its database ([cluster]), with the node
        /// that decided each.
        #[arg(long)]
        fleet: bool,
    },
    /// Ban an address or network (CIDR) by hand.
    Ban {
        #[command(flatten)]
        socket: SocketArgs,
        /// How long (90s, 10m, 1h, 7d).
        #[arg(long = "for", default_value = "1h", value_parser = duration)]
        duration: Duration,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        /// Ban a network wider than the configured shortest prefix (/16, /32). Nothing
        /// lets through a ban that covers an allowlisted or own address, the
        /// unspecified address, link-local, multicast or broadcast.
        #[arg(long)]
        force: bool,
        #[arg(value_parser = network)]
        target: IpNet,
    },
    /// Lift a ban by hand (the address's failures so far are forgotten).
    Unban {
        #[command(flatten)]
        socket: SocketArgs,
        #[arg(value_parser = network)]
        target: IpNet,
    },
    /// Make the daemon read its configuration again (as SIGHUP); a bad file is refused.
    Reload {
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Banned hosts of a period: where from, what they did, TLS posture, what became of
    /// their bans, totals by country, AS, service and TLS. From the daemon's store, or
    /// from log files (--from-logs).
    Report(ReportArgs),
    /// The TLS posture of all mail traffic in the logs: protocol and cipher histograms
    /// (inbound SMTP, outbound SMTP, Dovecot logins), the share of inbound sessions and
    /// received messages that used TLS, and who is still on weak TLS.
    Tls {
        /// Networks whose traffic is internal (repeatable; loopback always is).
        #[arg(long, value_parser = network)]
        internal: Vec<IpNet>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        time: TimeArgs,
        #[command(flatten)]
        read: ReadArgs,
        /// Log files (plain or .gz), merged by time; "-" for standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The whole story of a message or client in the logs: connect, TLS, AUTH, queue
    /// ID, message-id, sender, each recipient with relay, delay and status, removal.
    Trace {
        #[arg(long)]
        queue_id: Option<String>,
        /// An address or network.
        #[arg(long, value_parser = network)]
        client: Option<IpNet>,
        /// Sessions whose TLS cipher or protocol contains this text.
        #[arg(long)]
        cipher: Option<String>,
        /// SASL user name (Postfix) or login (Dovecot).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        time: TimeArgs,
        #[command(flatten)]
        read: ReadArgs,
        /// Log files (plain or .gz), merged by time; "-" for standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check a mail server as a client sees it: greeting, capabilities before and after
    /// TLS, AUTH offered in plaintext, TLS version and cipher, certificate, TLS versions
    /// still accepted, optionally one login; refused, dropped or silent connections
    /// (what a banned client sees). Exit 0: open (and the login worked), 1: the login
    /// failed, 3: refused, dropped or no answer.
    Probe(ProbeArgs),
    /// Country and AS of an address, from the configured GeoIP databases.
    Geo {
        /// Configuration naming the databases ([geoip]).
        #[arg(long, short, default_value = "/etc/saslguard/saslguard.toml")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(value_parser = address)]
        address: std::net::IpAddr,
    },
    /// The [[block]]s of the configuration, computed from the GeoIP databases as the
    /// daemon computes them: their networks, or which block refuses an address.
    Block {
        #[arg(
            long,
            short,
            default_value = "/etc/saslguard/saslguard.toml",
            global = true
        )]
        config: PathBuf,
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: BlockAction,
    },
    /// The fleet's PostgreSQL database ([cluster]).
    Cluster {
        #[arg(
            long,
            short,
            default_value = "/etc/saslguard/saslguard.toml",
            global = true
        )]
        config: PathBuf,
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Work on saslguard's nftables table directly (root): set it up, ban, unban, list,
    /// reconcile with a list of bans, or remove it.
    Nft {
        /// Table name (family inet).
        #[arg(long, default_value = "saslguard", global = true)]
        table: String,
        /// TCP ports to protect, comma-separated, or "all" for all traffic.
        #[arg(
            long,
            default_value = "25,465,587,110,143,993,995,4190",
            global = true,
            value_parser = ports
        )]
        ports: Ports,
        /// Reject TCP with a reset instead of dropping.
        #[arg(long, global = true)]
        reject: bool,
        #[command(subcommand)]
        action: NftAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Create or migrate the fleet's schema (as a role that may create tables), and
    /// print the grants a node's role needs (no delete, no DDL).
    Setup {
        /// The role the nodes connect as.
        #[arg(long, default_value = "saslguard")]
        node_role: String,
        /// The role Postfix's pgsql: map connects as.
        #[arg(long, default_value = "postfix")]
        postfix_role: String,
    },
    /// The fleet's nodes (last seen, version, what each published) and its bans.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BlockAction {
    /// Each block: ports, ranges, addresses covered, the database builds it came from.
    List {
        /// Also print every network (as the fewest CIDRs).
        #[arg(long)]
        networks: bool,
    },
    /// Which block would refuse this address, and why; or that none would.
    Check {
        #[arg(value_parser = address)]
        address: std::net::IpAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum NftAction {
    /// Create the table, chain and sets when missing; replace the rules. Keeps bans.
    Setup,
    /// Ban addresses or networks (CIDR) for a duration, in one batch; "-" reads them,
    /// one per line, from standard input.
    Ban {
        #[arg(long = "for", default_value = "1h", value_parser = duration)]
        duration: Duration,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Remove bans; one that already expired is not an error.
    Unban {
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Active bans with their remaining time.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Re-add the bans of a `replay --json` document (or a JSON list of
    /// {"target", "until"}) that still have time left.
    Reconcile { file: PathBuf },
    /// Remove saslguard's table, its sets and rules.
    Reset,
}

/// How log files are read for a replay.
#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    /// 1: read, parse and count in one thread. 2 or more (the default on a machine with
    /// more than one core): each file is read in a thread of its own while another
    /// counts or reports, the parsing shared between them; the result is the same.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl ReadArgs {
    pub fn threads(&self) -> saslguard::source::merge::Threads {
        use saslguard::source::merge::Threads;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        match self.threads {
            Some(1) => Threads::One,
            Some(_) => Threads::PerFile,
            None if cores > 1 => Threads::PerFile,
            None => Threads::One,
        }
    }
}

/// `saslguard report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Configuration naming the store (daemon.state_directory).
    #[arg(long, short, default_value = "/etc/saslguard/saslguard.toml")]
    pub config: PathBuf,
    /// The store file itself (default: STATE_DIRECTORY/saslguard.db).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Start of the period: a duration back from --until (7d) or an RFC 3339 time
    /// (default: 7d for the store, everything for --from-logs).
    #[arg(long)]
    pub since: Option<String>,
    /// End of the period: RFC 3339, or a duration back from now (default: now, or
    /// the last log line).
    #[arg(long)]
    pub until: Option<String>,
    /// Accounts tried to list per host.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[arg(long, conflicts_with_all = ["csv", "html"])]
    pub json: bool,
    #[arg(long, conflicts_with = "html")]
    pub csv: bool,
    /// One self-contained HTML file with charts.
    #[arg(long)]
    pub html: bool,
    /// Add each fleet node's failures, addresses and bans in the period, from the
    /// fleet's database ([cluster] in the configuration).
    #[arg(long)]
    pub fleet: bool,
    /// Read these log files instead of the store.
    #[arg(long, requires = "files")]
    pub from_logs: bool,
    #[command(flatten)]
    pub time: TimeArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    pub files: Vec<PathBuf>,
}

impl ReportArgs {
    /// "json", "csv", "html" or "text".
    pub fn format(&self) -> &'static str {
        match (self.json, self.csv, self.html) {
            (true, _, _) => "json",
            (_, true, _) => "csv",
            (_, _, true) => "html",
            _ => "text",
        }
    }
}

/// `saslguard probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Host name or address.
    pub host: String,
    /// Port (default: the service's).
    #[arg(long)]
    pub port: Option<u16>,
    /// smtp, submission, smtps, imap, imaps, pop3 or pop3s (default: from the port,
    /// else submission).
    #[arg(long, value_parser = service)]
    pub service: Option<Service>,
    /// Every standard mail port: 25, 465, 587, 110, 143, 993, 995.
    #[arg(long, conflicts_with_all = ["port", "service"])]
    pub all: bool,
    /// Log in as this user (needs --password-file).
    #[arg(long, requires = "password_file")]
    pub user: Option<String>,
    /// File whose first line is the password ("-": standard input). Never printed.
    #[arg(long, requires = "user")]
    pub password_file: Option<PathBuf>,
    /// PLAIN, LOGIN or CRAM-MD5.
    #[arg(long, default_value = "PLAIN", value_parser = mechanism)]
    pub mechanism: Mechanism,
    /// Connect and read timeout (5s, 1m).
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub timeout: Duration,
    #[arg(long)]
    pub json: bool,
}
