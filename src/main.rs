//! The saslguard binary: parses the command line, sets up logging, hands each command
//! to its module under `cmd/` and maps errors to exit codes.

mod cli;
mod cmd;

/// mimalloc: replay and the daemon allocate and free many small strings per event;
/// with reader threads they are allocated on one thread and freed on another. It was
/// faster than glibc's malloc, most of all with two threads (5.1 against 8.5 s for 10M
/// lines), at the same peak memory (BENCHMARKS.md, "How it got there").
///
/// Built without transparent huge pages (the `no_thp` feature): mimalloc asks the
/// kernel for them on its arenas, and a 2 MiB page stays resident as long as one byte
/// of it is in use, so pages given back by `mi_collect` did not leave the resident
/// size. A quiet daemon held 6 to 11 MB more for it (BENCHMARKS.md), with no
/// measurable gain in speed.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's own collection, linked in with the allocator above.
#[allow(unsafe_code)]
unsafe extern "C" {
    fn mi_collect(force: bool);
}

/// Gives the calling thread's free pages back to the system at once (the daemon calls
/// it when a thread falls quiet; see `saslguard::daemon::set_memory_release`).
#[allow(unsafe_code)]
fn release_freed_memory() {
    // SAFETY: mi_collect takes no pointer and has no precondition: it walks the
    // calling thread's own heap and purges free pages.
    unsafe { mi_collect(true) }
}

use crate::cli::{Cli, Command};
use clap::Parser;
use cmd::{EX_USAGE, ExitCode, Request, Result};

fn main() -> ExitCode {
    saslguard::daemon::set_memory_release(release_freed_memory);
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version go to stdout and succeed; a bad argument is a usage error.
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
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
            // Output cut short (`saslguard parse ... | head`) is no failure.
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

fn run(cli: Cli) -> Result<ExitCode> {
    use cmd::daemon::control;
    match cli.command {
        Command::Check {
            socket,
            json,
            address,
        } => control(
            &socket,
            Request::Check {
                address,
                port: None,
            },
            json,
        ),
        Command::PostfixSetup { config, quiet } => cmd::check::postfix_setup(&config, quiet),
        Command::CheckConfig { file } => cmd::check::check_config(&file),
        Command::Replay {
            config,
            json,
            top,
            time,
            read,
            files,
        } => cmd::replay::replay(config.as_ref(), json, top, &time, read.threads(), &files),
        Command::Report(a) => cmd::report::report(a),
        Command::Tls {
            internal,
            json,
            time,
            read,
            files,
        } => cmd::logs::tls(&internal, json, &time, read.threads(), &files),
        Command::Trace {
            queue_id,
            client,
            cipher,
            user,
            json,
            time,
            read,
            files,
        } => {
            let filter = saslguard::report::trace::Filter {
                queue_id,
                client,
                cipher,
                user,
            };
            cmd::logs::trace(filter, json, &time, read.threads(), &files)
        }
        Command::Probe(a) => cmd::probe::probe(a),
        Command::Nft {
            table,
            ports,
            reject,
            action,
        } => cmd::nft::nft(table, ports.0, reject, action),
        Command::Run { config } => cmd::daemon::run(&config),
        Command::Geo {
            config,
            json,
            address,
        } => cmd::block::geo(&config, json, address),
        Command::Cluster { config, action } => cmd::cluster::cluster(&config, action),
        Command::Block {
            config,
            json,
            action,
        } => cmd::block::block(&config, json, action),
        Command::Status { socket, json } => control(&socket, Request::Status, json),
        Command::Bans {
            socket,
            json,
            fleet: true,
        } => cmd::cluster::fleet_bans(&socket.config, json),
        Command::Bans { socket, json, .. } => control(&socket, Request::Bans, json),
        Command::Ban {
            socket,
            duration,
            reason,
            force,
            target,
        } => control(
            &socket,
            Request::Ban {
                target: target.to_string(),
                duration: Some(format!("{}s", duration.as_secs())),
                reason,
                force,
            },
            false,
        ),
        Command::Unban { socket, target } => control(
            &socket,
            Request::Unban {
                target: target.to_string(),
            },
            false,
        ),
        Command::Reload { socket } => control(&socket, Request::Reload, false),
        Command::Parse {
            json,
            verbose,
            time,
            files,
        } => cmd::parse::parse(json, verbose, &time, &files),
    }
}
