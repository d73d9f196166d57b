//! The `saslguard` binary: parse arguments, set up logging, run one command, map errors
//! to exit codes (64: bad configuration or usage, 66: an input cannot be read).

use anyhow::Result;
use clap::Parser;
use saslguard::cli::{Cli, Command, NftAction, SocketArgs, TimeArgs};
use saslguard::config::{self, Config};
use saslguard::daemon::control::{Request, call};
use saslguard::pipeline::{Skip, prepare};
use saslguard::replay::ReplayError;
use saslguard::source::Line;
use saslguard::source::replay::{FileSource, SourceError, TimeSettings};
use saslguard::time::{Timestamp, Zone};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;
/// The daemon cannot be reached (sysexits EX_UNAVAILABLE).
const EX_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let source = e
                .downcast_ref::<SourceError>()
                .or_else(|| match e.downcast_ref() {
                    Some(ReplayError::Source(s)) => Some(s),
                    _ => None,
                });
            if let Some(src) = source {
                eprintln!("saslguard: {src}");
                return ExitCode::from(EX_NOINPUT);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("saslguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::default()),
        Some(p) => config::load(p).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(EX_USAGE)
        }),
    }
}

fn time_settings(args: &TimeArgs, cfg: &Config) -> Result<TimeSettings, ExitCode> {
    let zone = match &args.timezone {
        None => cfg.zone,
        Some(z) => Zone::parse(z).ok_or_else(|| {
            eprintln!("saslguard: --timezone {z:?}: expected \"local\", \"UTC\" or an offset like \"+01:00\"");
            ExitCode::from(EX_USAGE)
        })?,
    };
    let now = Timestamp(chrono::Utc::now().timestamp_millis());
    Ok(TimeSettings {
        zone,
        year: args.year,
        now,
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check {
            socket,
            json,
            address,
        } => control(&socket, Request::Check { address }, json),
        Command::PostfixSetup {
            config: file,
            quiet,
        } => {
            let cfg = match config::load(&file) {
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
            let map = saslguard::daemon::engine::open_map(mc).map_err(anyhow::Error::msg)?;
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
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(cfg) => {
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
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(EX_USAGE))
            }
        },
        Command::Replay {
            config,
            json,
            top,
            time,
            files,
        } => {
            let cfg = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let ts = match time_settings(&time, &cfg) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            let r = saslguard::replay::replay(&cfg, &files, ts)?;
            let report = r.report();
            let mut out = BufWriter::new(std::io::stdout().lock());
            if json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                let text = saslguard::replay::render_text(&report, top);
                write!(out, "{}", saslguard::escape::terminal(&text))?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            config,
            store,
            since,
            until,
            top,
            json,
            csv,
            html,
            from_logs,
            time,
            files,
        } => report(ReportArgs {
            config,
            store,
            since,
            until,
            top,
            format: if json {
                "json"
            } else if csv {
                "csv"
            } else if html {
                "html"
            } else {
                "text"
            },
            from_logs,
            time,
            files,
        }),
        Command::Tls {
            internal,
            json,
            time,
            files,
        } => {
            let mut nets: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];
            for n in &internal {
                match config::validate::parse_network(n) {
                    Ok(n) => nets.push(n),
                    Err(e) => {
                        eprintln!("saslguard tls: --internal {n:?}: {e}");
                        return Ok(ExitCode::from(EX_USAGE));
                    }
                }
            }
            let mut sc = saslguard::maillog::Scanner::default();
            let mut agg = saslguard::maillog::TlsAggregate::new(nets);
            if let Err(code) = scan_logs(&files, &time, &mut sc, |sc| agg.absorb(sc)) {
                return Ok(code);
            }
            let r = agg.finish(&mut sc);
            emit(json, &r, saslguard::maillog::render_tls)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace {
            queue_id,
            client,
            cipher,
            user,
            json,
            time,
            files,
        } => {
            let client = match client.as_deref().map(config::validate::parse_network) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(e)) => {
                    eprintln!("saslguard trace: --client: {e}");
                    return Ok(ExitCode::from(EX_USAGE));
                }
            };
            if queue_id.is_none() && client.is_none() && cipher.is_none() && user.is_none() {
                eprintln!("saslguard trace: give --queue-id, --client, --cipher or --user");
                return Ok(ExitCode::from(EX_USAGE));
            }
            let mut sc = saslguard::maillog::Scanner::default();
            sc.keep_lines = true;
            let mut tracer = saslguard::maillog::Tracer::new(saslguard::maillog::Filter {
                queue_id,
                client,
                cipher,
                user,
            });
            if let Err(code) = scan_logs(&files, &time, &mut sc, |sc| tracer.absorb(sc)) {
                return Ok(code);
            }
            let t = tracer.finish(&mut sc);
            emit(json, &t, saslguard::maillog::render_trace)?;
            let found = !(t.sessions.is_empty() && t.messages.is_empty() && t.logins.is_empty());
            Ok(if found {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Probe {
            host,
            port,
            service,
            all,
            user,
            password_file,
            mechanism,
            timeout,
            json,
        } => probe(ProbeArgs {
            host,
            port,
            service,
            all,
            user,
            password_file,
            mechanism,
            timeout,
            json,
        }),
        Command::Nft {
            table,
            ports,
            reject,
            action,
        } => nft(table, &ports, reject, action),
        Command::Run { config } => match saslguard::daemon::run(&config) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                if let Some(c) = e.downcast_ref::<config::ConfigErrors>() {
                    eprintln!("{c}");
                    return Ok(ExitCode::from(EX_USAGE));
                }
                Err(e)
            }
        },
        Command::Status { socket, json } => control(&socket, Request::Status, json),
        Command::Bans { socket, json } => control(&socket, Request::Bans, json),
        Command::Ban {
            socket,
            duration,
            reason,
            force,
            target,
        } => control(
            &socket,
            Request::Ban {
                target,
                duration: Some(duration),
                reason,
                force,
            },
            false,
        ),
        Command::Unban { socket, target } => control(&socket, Request::Unban { target }, false),
        Command::Reload { socket } => control(&socket, Request::Reload, false),
        Command::Parse {
            json,
            verbose,
            time,
            files,
        } => {
            let cfg = Config::default();
            let ts = match time_settings(&time, &cfg) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            parse_files(&files, json, verbose, ts, cfg.max_line_bytes)
        }
    }
}

fn parse_files(
    files: &[PathBuf],
    json: bool,
    verbose: bool,
    ts: TimeSettings,
    max_line: usize,
) -> Result<ExitCode> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let (mut lines, mut events, mut skipped) = (0u64, 0u64, 0u64);
    let mut by_kind = std::collections::BTreeMap::<&str, u64>::new();
    let many = files.len() > 1;
    for path in files {
        let mut src = FileSource::open(path, max_line, ts)?;
        loop {
            let raw = match src.next_raw()? {
                None => break,
                Some(Line::TooLong(n)) => Err((Skip::TooLong, format!("{n} bytes"))),
                Some(Line::Ok(b)) => Ok(b.to_vec()),
            };
            let n = src.line_no;
            lines += 1;
            let prepared = match raw {
                Ok(b) => prepare(&b, src.resolver())
                    .map_err(|s| (s, String::from_utf8_lossy(&b).into_owned())),
                Err(e) => Err(e),
            };
            let where_ = if many {
                format!("{}:{}", path.display(), n)
            } else {
                n.to_string()
            };
            match prepared {
                Err((why, text)) => {
                    skipped += 1;
                    if verbose && !json {
                        writeln!(
                            out,
                            "{where_}: skipped ({why:?}): {}",
                            saslguard::escape::escape(&text.chars().take(120).collect::<String>())
                        )?;
                    }
                }
                Ok((t, parsed, _)) => {
                    let Some(ev) = parsed.event else {
                        if verbose && !json {
                            writeln!(out, "{where_}: no event")?;
                        }
                        continue;
                    };
                    events += 1;
                    *by_kind.entry(ev.kind.as_str()).or_insert(0) += 1;
                    if json {
                        let mut v = serde_json::to_value(&ev)?;
                        if let Some(o) = v.as_object_mut() {
                            o.insert("line".into(), n.into());
                            if many {
                                o.insert("file".into(), path.display().to_string().into());
                            }
                            o.insert("time".into(), t.rfc3339().into());
                        }
                        serde_json::to_writer(&mut out, &v)?;
                        writeln!(out)?;
                    } else {
                        writeln!(
                            out,
                            "{where_}: {}",
                            saslguard::escape::escape(&describe(&ev))
                        )?;
                    }
                }
            }
        }
    }
    if !json {
        let kinds: Vec<String> = by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            out,
            "\nlines: {lines}, with an event: {events}, skipped: {skipped}"
        )?;
        if !kinds.is_empty() {
            writeln!(out, "events: {}", kinds.join(", "))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn describe(ev: &saslguard::parse::Event) -> String {
    let mut s = ev.kind.as_str().to_string();
    if ev.ambiguous {
        s.push_str(" AMBIGUOUS-ADDRESS (not counted)");
    }
    if let Some(a) = ev.address {
        s.push_str(&format!(" address={a}"));
    }
    for (k, v) in [
        ("service", ev.service.as_deref()),
        ("mechanism", ev.mechanism.as_deref()),
        ("user", ev.user.as_deref()),
        ("session", ev.session.as_deref()),
        ("queue_id", ev.queue_id.as_deref()),
        ("reason", ev.reason.as_deref()),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v:?}"));
        }
    }
    if let Some(n) = ev.attempts {
        s.push_str(&format!(" attempts={n}"));
    }
    if let Some(t) = &ev.tls {
        s.push_str(&format!(" tls={:?}", t.label()));
    } else if ev.plaintext {
        s.push_str(" tls=plaintext");
    }
    if let Some(t) = &ev.tally {
        s.push_str(&format!(
            " auth={}/{}{}",
            t.auth_ok,
            t.auth_total,
            if t.starttls { " starttls" } else { "" }
        ));
    }
    s
}

/// Sends one request to the daemon and prints the answer.
fn control(args: &SocketArgs, req: Request, json: bool) -> Result<ExitCode> {
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
    let kind = req.clone();
    let answer = match call(&path, &req) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("saslguard: {e}");
            return Ok(ExitCode::from(EX_UNAVAILABLE));
        }
    };
    if answer["ok"] != serde_json::Value::Bool(true) {
        eprintln!(
            "saslguard: {}",
            saslguard::escape::escape(answer["error"].as_str().unwrap_or("the daemon refused"))
        );
        // A target refused for what it is: the input is wrong, not the daemon.
        if answer["refused"] == serde_json::Value::Bool(true) {
            return Ok(ExitCode::from(EX_DATAERR));
        }
        return Ok(ExitCode::FAILURE);
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &answer)?;
        writeln!(out)?;
    } else {
        let text = saslguard::daemon::render::text(&kind, &answer);
        write!(out, "{}", saslguard::escape::terminal(&text))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn parse_target(s: &str) -> Result<ipnet::IpNet, String> {
    saslguard::config::validate::parse_network(s)
}

fn nft(table: String, ports: &str, reject: bool, action: NftAction) -> Result<ExitCode> {
    use saslguard::ban::{human_ms, target_string};
    use saslguard::enforce::nft::{Nft, NftConfig};
    let ports = if ports == "all" {
        Vec::new()
    } else {
        match ports
            .split(',')
            .map(|p| p.trim().parse::<u16>())
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(p) if !p.is_empty() => p,
            _ => {
                eprintln!(
                    "saslguard: --ports {ports:?}: expected port numbers separated by commas, or \"all\""
                );
                return Ok(ExitCode::from(EX_USAGE));
            }
        }
    };
    let n = Nft::new(NftConfig {
        table,
        ports,
        reject,
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
            let ms = match saslguard::config::validate::parse_duration(&duration) {
                Ok(ms) if ms > 0 => ms as u64,
                _ => {
                    eprintln!(
                        "saslguard: --for {duration:?}: expected a duration like 90s, 10m, 1h, 7d"
                    );
                    return Ok(ExitCode::from(EX_USAGE));
                }
            };
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

struct ProbeArgs {
    host: String,
    port: Option<u16>,
    service: Option<String>,
    all: bool,
    user: Option<String>,
    password_file: Option<PathBuf>,
    mechanism: String,
    timeout: String,
    json: bool,
}

fn probe(a: ProbeArgs) -> Result<ExitCode> {
    use saslguard::probe::{self, Credentials, Mechanism, Service};
    let usage = |m: String| {
        eprintln!("saslguard probe: {m}");
        Ok(ExitCode::from(EX_USAGE))
    };
    let timeout = match config::validate::parse_duration(&a.timeout) {
        Ok(ms) if ms > 0 => std::time::Duration::from_millis(ms as u64),
        _ => return usage(format!("--timeout {:?}: expected 5s, 1m, ...", a.timeout)),
    };
    let Some(mechanism) = Mechanism::parse(&a.mechanism) else {
        return usage(format!(
            "--mechanism {:?}: expected PLAIN, LOGIN or CRAM-MD5",
            a.mechanism
        ));
    };
    let creds = match (a.user, a.password_file) {
        (Some(user), Some(file)) => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_line(&mut s)?;
                s
            } else {
                match std::fs::read_to_string(&file) {
                    Ok(t) => t,
                    Err(e) => return usage(format!("{}: {e}", file.display())),
                }
            };
            let password = text.lines().next().unwrap_or("").to_string();
            Some(Credentials {
                user,
                password,
                mechanism,
            })
        }
        _ => None,
    };
    let targets: Vec<(u16, Service)> = if a.all {
        Service::ALL.iter().map(|s| (s.port(), *s)).collect()
    } else {
        let service = match a.service.as_deref().map(|s| (s, Service::parse(s))) {
            Some((_, Some(s))) => s,
            Some((s, None)) => {
                return usage(format!(
                    "--service {s:?}: expected smtp, submission, smtps, imap, imaps, pop3 or pop3s"
                ));
            }
            None => a
                .port
                .and_then(Service::from_port)
                .unwrap_or(Service::Submission),
        };
        vec![(a.port.unwrap_or(service.port()), service)]
    };
    let reports: Vec<probe::Report> = targets
        .iter()
        .map(|(port, s)| probe::probe(&a.host, *port, *s, creds.as_ref(), timeout))
        .collect();
    if a.json {
        let doc = if a.all {
            serde_json::to_string_pretty(&reports)?
        } else {
            serde_json::to_string_pretty(&reports[0])?
        };
        println!("{doc}");
    } else {
        for r in &reports {
            print!("{}", probe::render(r));
        }
        if a.all {
            let open: Vec<String> = reports
                .iter()
                .filter(|r| !r.blocked() && r.verdict == probe::Verdict::Open)
                .map(|r| r.port.to_string())
                .collect();
            let exposed: Vec<String> = reports
                .iter()
                .filter(|r| r.plaintext_auth_exposed)
                .map(|r| r.port.to_string())
                .collect();
            let weak: Vec<String> = reports
                .iter()
                .filter(|r| !r.weak_protocols.is_empty())
                .map(|r| r.port.to_string())
                .collect();
            println!(
                "summary: open {}; login before TLS on {}; TLS 1.0/1.1 accepted on {}",
                if open.is_empty() {
                    "none".into()
                } else {
                    open.join(", ")
                },
                if exposed.is_empty() {
                    "none".into()
                } else {
                    exposed.join(", ")
                },
                if weak.is_empty() {
                    "none".into()
                } else {
                    weak.join(", ")
                },
            );
        }
    }
    if reports.iter().all(|r| r.blocked()) {
        return Ok(ExitCode::from(3));
    }
    if reports
        .iter()
        .any(|r| r.login.as_ref().is_some_and(|l| !l.success))
    {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

struct ReportArgs {
    config: PathBuf,
    store: Option<PathBuf>,
    since: Option<String>,
    until: Option<String>,
    top: usize,
    format: &'static str,
    from_logs: bool,
    time: TimeArgs,
    files: Vec<PathBuf>,
}

/// `--since`/`--until`: RFC 3339, or a duration back from `from`.
fn point_in_time(s: &str, from: Timestamp) -> Option<Timestamp> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(Timestamp(t.timestamp_millis()));
    }
    config::validate::parse_duration(s)
        .ok()
        .map(|ms| from.add_ms(-ms))
}

fn report(a: ReportArgs) -> Result<ExitCode> {
    use saslguard::ban::BanRow;
    use saslguard::report;
    use saslguard::store::Store;
    let usage = |m: String| {
        eprintln!("saslguard report: {m}");
        Ok(ExitCode::from(EX_USAGE))
    };
    let wall = Timestamp(chrono::Utc::now().timestamp_millis());
    let (source, rows, offenders, now): (
        String,
        Vec<BanRow>,
        Vec<saslguard::offender::Offender>,
        Timestamp,
    ) = if a.from_logs {
        let cfg = if a.config.exists() {
            match load_config(Some(&a.config)) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            }
        } else {
            Config::default()
        };
        let ts = match time_settings(&a.time, &cfg) {
            Ok(t) => t,
            Err(code) => return Ok(code),
        };
        let r = saslguard::replay::replay(&cfg, &a.files, ts)?;
        let rows = r
            .dry_run
            .bans
            .iter()
            .map(|d| BanRow::of(d, "policy"))
            .collect();
        let names: Vec<String> = a.files.iter().map(|f| f.display().to_string()).collect();
        (
            format!("logs {}", names.join(" ")),
            rows,
            r.pipeline.offenders.sorted().into_iter().cloned().collect(),
            r.pipeline.now,
        )
    } else {
        let path = match a.store {
            Some(p) => p,
            None => match config::load(&a.config) {
                Ok(c) => c.daemon.state_directory.join("saslguard.db"),
                Err(e) => return usage(format!("{e} (or give --store FILE)")),
            },
        };
        let store = match Store::open_read_only(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("saslguard report: {e}");
                return Ok(ExitCode::from(EX_NOINPUT));
            }
        };
        let rows = store.bans(None)?;
        let offenders = store.offenders(usize::MAX >> 1)?;
        (format!("store {}", path.display()), rows, offenders, wall)
    };
    let until = match a.until.as_deref().map(|s| point_in_time(s, wall)) {
        None => now,
        Some(Some(t)) => t,
        Some(None) => return usage("--until: expected RFC 3339 or a duration like 1d".into()),
    };
    let since = match a.since.as_deref().map(|s| point_in_time(s, until)) {
        None if a.from_logs => rows.iter().map(|b| b.at).min().unwrap_or(until),
        None => until.add_ms(-7 * 86_400_000),
        Some(Some(t)) => t,
        Some(None) => return usage("--since: expected RFC 3339 or a duration like 7d".into()),
    };
    let by_addr: std::collections::HashMap<std::net::IpAddr, &saslguard::offender::Offender> =
        offenders.iter().map(|o| (o.address, o)).collect();
    let rep = report::build(
        source,
        &rows,
        |t| {
            (t.prefix_len() == t.max_prefix_len())
                .then(|| by_addr.get(&t.addr()).map(|o| (*o).clone()))
                .flatten()
        },
        since,
        until,
        now,
        a.top,
    );
    let mut out = BufWriter::new(std::io::stdout().lock());
    match a.format {
        "json" => {
            serde_json::to_writer_pretty(&mut out, &rep)?;
            writeln!(out)?;
        }
        "csv" => write!(out, "{}", report::render_csv(&rep))?,
        "html" => write!(out, "{}", report::render_html(&rep))?,
        _ => write!(
            out,
            "{}",
            saslguard::escape::terminal(&report::render_text(&rep))
        )?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The next line of `src` that has a syslog time, with that time.
fn next_timed(src: &mut FileSource) -> Result<Option<(Timestamp, String)>, ExitCode> {
    use saslguard::parse::syslog;
    loop {
        let raw = match src.next_raw() {
            Ok(Some(Line::Ok(b))) => String::from_utf8_lossy(b).into_owned(),
            Ok(Some(Line::TooLong(_))) => continue,
            Ok(None) => return Ok(None),
            Err(e) => {
                eprintln!("saslguard: {e}");
                return Err(ExitCode::from(EX_NOINPUT));
            }
        };
        let Some(prefix) = syslog::parse(raw.trim_end_matches('\r')) else {
            continue;
        };
        let Some(t) = src.resolver().resolve(prefix.time) else {
            continue;
        };
        return Ok(Some((t, raw)));
    }
}

/// Feeds every line of `files` to the scanner, merged by time as `replay` does (so
/// `mail.log mail.log.1` and side-by-side Postfix and Dovecot logs read as one log);
/// `after` runs after each line.
fn scan_logs(
    files: &[PathBuf],
    time: &TimeArgs,
    sc: &mut saslguard::maillog::Scanner,
    mut after: impl FnMut(&mut saslguard::maillog::Scanner),
) -> Result<(), ExitCode> {
    use saslguard::parse::syslog;
    use std::cmp::Reverse;
    let cfg = Config::default();
    let ts = time_settings(time, &cfg)?;
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        sources.push(FileSource::open(path, cfg.max_line_bytes, ts).map_err(|e| {
            eprintln!("saslguard: {e}");
            ExitCode::from(EX_NOINPUT)
        })?);
    }
    let mut heads: Vec<Option<String>> = Vec::with_capacity(sources.len());
    let mut heap = std::collections::BinaryHeap::new();
    for (i, src) in sources.iter_mut().enumerate() {
        let head = next_timed(src)?;
        if let Some((t, _)) = &head {
            heap.push(Reverse((*t, i)));
        }
        heads.push(head.map(|(_, raw)| raw));
    }
    while let Some(Reverse((t, i))) = heap.pop() {
        let raw = heads[i].take().expect("a head for every heap entry");
        if let Some((t2, next)) = next_timed(&mut sources[i])? {
            heads[i] = Some(next);
            heap.push(Reverse((t2, i)));
        }
        let line = raw.trim_end_matches('\r');
        let Some(prefix) = syslog::parse(line) else {
            continue;
        };
        let Some((program, pid, msg)) = syslog::tag(prefix.rest) else {
            continue;
        };
        let parsed = saslguard::parse::parse_line(line).ok();
        let event = parsed.as_ref().and_then(|p| p.event.as_deref());
        sc.feed(&saslguard::maillog::LogLine {
            time: t,
            host: prefix.host.unwrap_or(""),
            program,
            pid,
            msg,
            raw: line,
            event,
        });
        after(sc);
    }
    Ok(())
}

/// Prints `value` as pretty JSON, or as `text` renders it.
fn emit<T: serde::Serialize>(json: bool, value: &T, text: impl Fn(&T) -> String) -> Result<()> {
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
