//! `saslguard run`: the live daemon.
//!
//! Start-up order: configuration → store (opened and migrated; state read back) →
//! enforcers (table set up, active bans put back) → control socket → sources (each
//! from its stored position). Then one event loop: lines, control requests, a
//! one-second tick, SIGHUP (reload; a bad file is refused and the running
//! configuration kept) and SIGTERM/SIGINT (sources stop, lines already read are
//! processed, the store is written, the socket removed). The nftables table stays
//! when saslguard stops, so the kernel keeps enforcing and expiring bans.

pub mod accept;
pub mod control;
pub mod engine;
pub mod metrics;
pub mod policy_service;
pub mod render;
pub mod sources;
pub mod store_writer;

use crate::config::{self, StartAt};
use crate::source::follow::{Follower, parse_positions};
use crate::store::Store;
use engine::{Engine, restore_from, wall_now};
use std::path::{Path, PathBuf};
use std::time::Duration;
use store_writer::StoreWriter;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

/// Why the daemon could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration file (the CLI exits 64).
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    /// A configuration that cannot run: no sources.
    #[error("{0}")]
    Unusable(String),
    /// Another daemon holds the state directory.
    #[error("{0}")]
    Locked(String),
    #[error(transparent)]
    Journal(#[from] sources::JournalUnavailable),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// A file, socket or listener: what, and the system's reason.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, DaemonError>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// How the binary's allocator gives the calling thread's freed memory back to the
/// system (set once by `main`; the library knows no allocator). The daemon's busy
/// threads call it when they fall quiet after work: mimalloc keeps freed pages until
/// the thread allocates again after a delay, so a daemon idle after a flood held up to
/// twice its live heap (issue 17: 1M tracked addresses, 185 MB live, 300 to 390 MB
/// resident).
static RELEASE_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

pub fn set_memory_release(f: fn()) {
    let _ = RELEASE_MEMORY.set(f);
}

/// Gives the calling thread's freed memory back, if the binary said how.
pub(crate) fn release_memory() {
    if let Some(f) = RELEASE_MEMORY.get() {
        f();
    }
}

/// The store file inside the state directory.
pub fn store_path(state_dir: &Path) -> PathBuf {
    state_dir.join("saslguard.db")
}

/// Sets `path`'s mode.
fn private(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("{}: setting mode {mode:o}", path.display())))
}

/// Creates the state directory (0700: the store holds the account names tried) and
/// takes an exclusive lock on it, held until the daemon exits: a second daemon with
/// the same state refuses to start before it touches the store or the control socket.
fn lock_state(state: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(state)
        .map_err(io(format!("state directory {}", state.display())))?;
    private(state, 0o700)?;
    let path = state.join("saslguard.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(format!("lock file {}", path.display())))?;
    if let Err(e) = f.try_lock() {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        return Err(DaemonError::Locked(format!(
            "state directory {} is in use by another saslguard daemon{} ({e}); refusing to start",
            state.display(),
            match pid.trim() {
                "" => String::new(),
                p => format!(" (pid {p})"),
            }
        )));
    }
    let write = io(format!("lock file {}", path.display()));
    (|| {
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())
    })()
    .map_err(write)?;
    Ok(f)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config_path: &Path) -> Result<()> {
    let cfg = config::load(config_path)?;
    if cfg.sources.files.is_empty() && !cfg.sources.journal {
        return Err(DaemonError::Unusable(format!(
            "{}: no sources: set [sources] files or journal = true",
            config_path.display()
        )));
    }
    if cfg.sources.journal {
        sources::journalctl_available()?;
    }
    if cfg.sources.journal && !cfg.sources.files.is_empty() {
        tracing::warn!("{}", config::BOTH_SOURCES_WARNING);
    }
    let state = &cfg.daemon.state_directory;
    let _lock = lock_state(state)?;
    let path = store_path(state);
    let store = Store::open(&path)?;
    // Account names tried are in it: root's only, whoever started the daemon.
    private(&path, 0o600)?;
    let now = wall_now();
    let mut restored = restore_from(&store, &cfg, now)?;
    let writer = StoreWriter::start(
        store,
        store_writer::Bounds {
            failures_per_address: cfg.policy.deepest(),
            max_addresses: cfg.count.max_addresses,
            max_offenders: cfg.max_offenders,
        },
    );

    let mut names: Vec<String> = cfg
        .sources
        .files
        .iter()
        .map(|f| format!("file:{}", f.display()))
        .collect();
    if cfg.sources.journal {
        names.push("journal".into());
    }
    let mut engine = Engine::new(
        cfg.clone(),
        config_path,
        &path,
        &restored,
        writer,
        names.clone(),
    )?;
    // The engine has taken what it needs; the rest (every failure row, the offender
    // records, the counter's saved state) must not stay for the daemon's life.
    let mut checkpoints = std::mem::take(&mut restored.checkpoints);
    checkpoints.retain(|(k, _)| k != engine::COUNTER_STATE);
    drop(restored);
    let checkpoint = |name: &str| {
        checkpoints
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, p)| p.clone())
    };
    let from_start = cfg.sources.start_at == StartAt::Beginning;
    let grace = Duration::from_millis(cfg.sources.rotate_grace_ms as u64);
    let mut followers = Vec::new();
    for (i, f) in cfg.sources.files.iter().enumerate() {
        let pos = checkpoint(&names[i]).and_then(|p| {
            let parsed = parse_positions(&p);
            if parsed.is_none() {
                tracing::warn!(file = %f.display(), "stored position {p:?} unreadable; starting as configured");
            }
            parsed
        });
        followers.push((
            i,
            Follower::new(f, pos.as_deref(), from_start, cfg.max_line_bytes, grace),
        ));
    }
    let journal = cfg.sources.journal.then(|| sources::JournalSpec {
        source: names.len() - 1,
        directory: cfg.sources.journal_directory.clone(),
        identifiers: cfg.sources.journal_identifiers.clone(),
        cursor: checkpoint("journal"),
        from_start,
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("the event loop"))?;
    let result = rt.block_on(event_loop(&mut engine, followers, journal));
    engine.shutdown();
    result?;
    // After a reload: the configuration that ran last.
    tracing::warn!("stopped; {}", engine.config().after_stop());
    Ok(())
}

async fn event_loop(
    engine: &mut Engine,
    followers: Vec<(usize, Follower)>,
    journal: Option<sources::JournalSpec>,
) -> Result<()> {
    let cfg = engine.config().clone();
    let (tx, mut rx) = mpsc::channel::<sources::Input>(4);
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<control::Call>(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = io("signal handlers");
    let (mut hup, mut term, mut int) = (|| {
        Ok((
            signal(SignalKind::hangup())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })()
    .map_err(signals)?;

    let (listener, _bound) =
        control::bind(&cfg.daemon.control_socket, cfg.daemon.control_socket_mode).map_err(io(
            format!("control socket {}", cfg.daemon.control_socket.display()),
        ))?;
    tokio::spawn(control::serve(listener, ctl_tx.clone()));
    // Postfix's policy client (smtpd, as postfix) must connect; the socket sits in
    // Postfix's private/ directory, which only postfix and root can enter.
    let _policy_bound = match &cfg.postfix_policy {
        Some(pc) => {
            let (l, bound) = control::bind(&pc.socket, 0o666)
                .map_err(io(format!("policy service socket {}", pc.socket.display())))?;
            tokio::spawn(policy_service::serve(l, ctl_tx.clone(), pc.reply.clone()));
            tracing::info!("Postfix policy service on {}", pc.socket.display());
            Some(bound)
        }
        None => None,
    };
    if let Some(addr) = cfg.daemon.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io(format!("metrics listener {addr}")))?;
        tokio::spawn(metrics::serve(l, ctl_tx.clone()));
    }
    // The fleet link: bans out to PostgreSQL, the others' bans in. A slow or absent
    // database never holds up a local ban: the engine only queues.
    let (fleet_tx, mut fleet_rx) = mpsc::channel::<crate::fleet::Received>(1024);
    let mut fleet_task = None;
    if let Some(fc) = &cfg.cluster {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let stats = std::sync::Arc::new(crate::fleet::FleetStats::default());
        engine.set_fleet(out_tx, stats.clone(), fc.node.clone());
        let window = Duration::from_millis(engine::max_window(&cfg).max(0) as u64);
        fleet_task = Some(tokio::spawn(crate::fleet::run(
            fc.clone(),
            window,
            out_rx,
            fleet_tx.clone(),
            stats,
        )));
    }
    drop(fleet_tx);
    let mut tasks = Vec::new();
    if !followers.is_empty() {
        tasks.push(tokio::spawn(sources::files(
            followers,
            tx.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(j) = journal {
        tasks.push(tokio::spawn(sources::journal(
            j,
            tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(tx);
    notify_ready();
    tracing::warn!(
        "running: {} sources, control socket {}",
        engine.sources.len(),
        cfg.daemon.control_socket.display()
    );

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // While the store is behind, lines wait in their source (see StoreWriter::busy).
    let mut pause = tokio::time::interval(Duration::from_millis(5));
    // Lines read since the last tick, and since memory was last given back (at start:
    // what reading the store back took).
    let (mut read_since_tick, mut read_since_release) = (false, true);
    loop {
        let busy = engine.store_busy();
        tokio::select! {
            Some(input) = rx.recv(), if !busy => {
                engine.input(input);
                (read_since_tick, read_since_release) = (true, true);
            }
            _ = pause.tick(), if busy => {}
            Some((req, reply)) = ctl_rx.recv() => {
                let answer = engine.handle(req);
                let _ = reply.send(answer);
            }
            _ = tick.tick() => {
                engine.tick(wall_now());
                // Quiet for a whole tick after reading: the flood is over.
                if read_since_release && !read_since_tick {
                    release_memory();
                    read_since_release = false;
                }
                read_since_tick = false;
            }
            Some(r) = fleet_rx.recv() => engine.fleet_input(r),
            _ = hup.recv() => { let _ = engine.reload(); }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // Stop the sources; process what they already sent.
    let _ = stop_tx.send(true);
    let drain = async {
        while let Some(input) = rx.recv().await {
            engine.input(input);
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("sources did not stop within 10 s");
    }
    for t in tasks {
        t.abort();
    }
    if let Some(t) = fleet_task {
        // What is still queued for the fleet gets a moment to go out.
        engine.close_fleet();
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    Ok(())
}

/// Tells systemd (Type=notify) that start-up is done.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(b"READY=1", &a))
    } else {
        sock.send_to(b"READY=1", &path)
    };
    if let Err(e) = sent {
        tracing::warn!("sd_notify: {e}");
    }
}
