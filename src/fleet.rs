//! The fleet: several saslguard nodes ban together through PostgreSQL (`[cluster]`).
//!
//! Each node publishes the bans it decides (policy or by hand) and the bans it lifts by
//! hand; every node reads the others' and applies them through its own enforcers,
//! after its own checks (a compromised node cannot get 0.0.0.0/0, an allowlisted or an
//! own address banned elsewhere). One row per target in `fleet_bans`: concurrent
//! decisions merge and the longest expiry wins. Every change takes a number from one
//! sequence; a node reads what is past the last number it saw, woken by LISTEN/NOTIFY,
//! and again every few seconds, so a lost notification costs seconds, not a ban.
//!
//! The database is never on the path of a local ban: the engine hands bans to this
//! task over a channel and goes on. While PostgreSQL is down the task keeps what it must
//! publish (bounded, the oldest dropped and counted) and sends it when the database
//! returns, then catches up with what the others published meanwhile.
//!
//! Times in the database are the deciding node's; a node applies a fleet ban until its
//! `until`, so clock skew between nodes shifts a ban's end by the skew, never its start.

use crate::ban::target_string;
use crate::time::Timestamp;
use ipnet::IpNet;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// A libpq-style connection string (`host=/run/postgresql dbname=saslguard
    /// user=saslguard sslmode=require`), without the password.
    pub url: String,
    /// The password, first line of this file (or `PGPASSWORD` in the environment).
    pub password_file: Option<PathBuf>,
    /// This node's name in the fleet (default: the host name).
    pub node: String,
    /// The CA that signed the database's certificate (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// Share failures too (count fleet-wide), not only bans.
    pub share_failures: bool,
}

/// The schema, versioned like the SQLite store: `cluster setup` applies what is missing.
const MIGRATIONS: &[&str] = &[
    "
CREATE SEQUENCE fleet_seq;
CREATE TABLE fleet_bans (
    target cidr        PRIMARY KEY,
    at     timestamptz NOT NULL,
    until  timestamptz NOT NULL,
    reason text        NOT NULL,
    rule   text        NOT NULL,
    origin text        NOT NULL,
    node   text        NOT NULL,
    lifted boolean     NOT NULL DEFAULT false,
    seq    bigint      NOT NULL DEFAULT nextval('fleet_seq')
);
CREATE INDEX fleet_bans_seq ON fleet_bans(seq);
CREATE INDEX fleet_bans_until ON fleet_bans(until);
CREATE TABLE fleet_nodes (
    node      text PRIMARY KEY,
    version   text NOT NULL,
    last_seen timestamptz NOT NULL
);
",
    "
CREATE TABLE fleet_failures (
    seq     bigserial   PRIMARY KEY,
    address inet        NOT NULL,
    time    timestamptz NOT NULL,
    count   integer     NOT NULL,
    node    text        NOT NULL
);
CREATE INDEX fleet_failures_time ON fleet_failures(time);
",
    "
-- Postfix's pgsql: access map asks this with each client address (and with the
-- shortened forms access(5) tries, which are not addresses: they match nothing
-- instead of failing the lookup).
CREATE FUNCTION saslguard_access(client text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE a inet;
BEGIN
    BEGIN
        a := client::inet;
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END;
    RETURN (SELECT 'REJECT too many failed logins (saslguard fleet)'
            FROM fleet_bans
            WHERE NOT lifted AND until > now() AND target >>= a
            LIMIT 1);
END
$$;
",
    // v4: what the logs said of each failure, for the fleet's reports.
    "
ALTER TABLE fleet_failures ADD COLUMN service text;
ALTER TABLE fleet_failures ADD COLUMN mechanism text;
ALTER TABLE fleet_failures ADD COLUMN username text;
ALTER TABLE fleet_failures ADD COLUMN posture text;
",
];

/// What Postfix's role needs for the `pgsql:` access map: read the bans, nothing else.
pub fn postfix_grants(role: &str) -> String {
    format!(
        "GRANT SELECT ON fleet_bans TO {role};\n\
         GRANT EXECUTE ON FUNCTION saslguard_access(text) TO {role};\n"
    )
}

/// What a node role needs: read and write, no delete, no DDL.
pub fn grants(role: &str) -> String {
    format!(
        "GRANT SELECT, INSERT, UPDATE ON fleet_bans, fleet_nodes TO {role};\n\
         GRANT SELECT, INSERT ON fleet_failures TO {role};\n\
         GRANT USAGE, SELECT ON SEQUENCE fleet_seq, fleet_failures_seq_seq TO {role};\n\
         GRANT SELECT ON saslguard_schema TO {role};\n"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cluster: {}", chain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("cluster: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
    #[error("cluster: password file {path}: {source}")]
    Password {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster: the connection to the database closed")]
    Closed,
    #[error(
        "cluster: the database's schema is version {found}, this saslguard knows up to {known}"
    )]
    Newer { found: i32, known: i32 },
}

/// An error with its causes (tokio-postgres says "error performing TLS handshake" and
/// keeps OpenSSL's reason in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Parses a libpq-style connection string. libpq's `sslmode=verify-ca` and
/// `verify-full` are taken as `require`: saslguard always checks the certificate and
/// its name when it uses TLS.
pub fn pg_config(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let url: String = url
        .split_whitespace()
        .map(|kv| match kv {
            "sslmode=verify-full" | "sslmode=verify-ca" => "sslmode=require",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(" ");
    url.parse()
}

/// Connects, with TLS when the connection string asks for it (`sslmode`).
async fn connect(
    cfg: &FleetConfig,
) -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<
            tokio_postgres::Socket,
            postgres_openssl::TlsStream<tokio_postgres::Socket>,
        >,
    ),
    FleetError,
> {
    let mut pg = pg_config(&cfg.url)?;
    if let Some(path) = &cfg.password_file {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Password {
            path: path.clone(),
            source,
        })?;
        pg.password(text.lines().next().unwrap_or("").trim_end());
    } else if let Ok(p) = std::env::var("PGPASSWORD") {
        pg.password(p);
    }
    // The server's certificate is always checked, and its name against the host the
    // connection string names: against the CA of `ca_file`, else the system's.
    let mut tls = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())?;
    tls.set_verify(openssl::ssl::SslVerifyMode::PEER);
    if let Some(ca) = &cfg.ca_file {
        tls.set_ca_file(ca)?;
    }
    let tls = postgres_openssl::MakeTlsConnector::new(tls.build());
    Ok(pg.connect(tls).await?)
}

/// Creates or migrates the schema (`saslguard cluster setup`); returns the version now.
pub async fn setup(cfg: &FleetConfig) -> Result<i32, FleetError> {
    let (mut client, conn) = connect(cfg).await?;
    let task = tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS saslguard_schema (version int NOT NULL)")
        .await?;
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE saslguard_schema").await?;
    let found: i32 = tx
        .query_opt("SELECT version FROM saslguard_schema", &[])
        .await?
        .map_or(0, |r| r.get(0));
    let known = MIGRATIONS.len() as i32;
    if found > known {
        return Err(FleetError::Newer { found, known });
    }
    for m in &MIGRATIONS[found as usize..] {
        tx.batch_execute(m).await?;
    }
    tx.execute("DELETE FROM saslguard_schema", &[]).await?;
    tx.execute("INSERT INTO saslguard_schema VALUES ($1)", &[&known])
        .await?;
    tx.commit().await?;
    drop(client);
    let _ = task.await;
    Ok(known)
}

/// One node as `cluster status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub version: String,
    pub last_seen: Timestamp,
    /// Seconds since the node last said it is alive (every 5 s while connected).
    pub seen_ago_s: i64,
    pub failures_published: i64,
    pub bans_decided: i64,
}

/// The fleet as the database sees it: its nodes and its active bans.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetStatus {
    pub schema_version: i32,
    pub nodes: Vec<NodeStatus>,
    pub active_bans: i64,
    pub failures_last_hour: i64,
}

/// `saslguard cluster status`.
pub async fn status(cfg: &FleetConfig) -> Result<FleetStatus, FleetError> {
    let (client, conn) = connect(cfg).await?;
    let task = tokio::spawn(conn);
    let schema_version: i32 = client
        .query_opt("SELECT version FROM saslguard_schema", &[])
        .await?
        .map_or(0, |r| r.get(0));
    let rows = client
        .query(
            "SELECT n.node, n.version, n.last_seen,
                    extract(epoch FROM now() - n.last_seen)::bigint,
                    (SELECT coalesce(sum(count), 0)::bigint FROM fleet_failures f WHERE f.node = n.node),
                    (SELECT count(*) FROM fleet_bans b WHERE b.node = n.node AND NOT b.lifted)
             FROM fleet_nodes n ORDER BY n.node",
            &[],
        )
        .await?;
    let nodes = rows
        .iter()
        .map(|r| NodeStatus {
            node: r.get(0),
            version: r.get(1),
            last_seen: from_ts(r.get(2)),
            seen_ago_s: r.get(3),
            failures_published: r.get(4),
            bans_decided: r.get(5),
        })
        .collect();
    let active_bans: i64 = client
        .query_one(
            "SELECT count(*) FROM fleet_bans WHERE NOT lifted AND until > now()",
            &[],
        )
        .await?
        .get(0);
    let failures_last_hour: i64 = client
        .query_one(
            "SELECT coalesce(sum(count), 0)::bigint FROM fleet_failures WHERE time > now() - interval '1 hour'",
            &[],
        )
        .await?
        .get(0);
    drop(client);
    let _ = task.await;
    Ok(FleetStatus {
        schema_version,
        nodes,
        active_bans,
        failures_last_hour,
    })
}

/// One of the fleet's active bans, with the node that decided it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetBan {
    pub target: String,
    pub node: String,
    pub origin: String,
    pub since: Timestamp,
    pub until: Timestamp,
    pub rule: String,
    pub reason: String,
}

/// `saslguard bans --fleet`: the fleet's active bans, the longest-running first.
pub async fn active_bans(cfg: &FleetConfig) -> Result<Vec<FleetBan>, FleetError> {
    let (client, conn) = connect(cfg).await?;
    let task = tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT target::text, node, origin, at, until, rule, reason FROM fleet_bans
             WHERE NOT lifted AND until > now() ORDER BY until DESC",
            &[],
        )
        .await?;
    let out = rows
        .iter()
        .map(|r| FleetBan {
            target: crate::addr::parse_network(r.get::<_, &str>(0))
                .map(|n| target_string(&n))
                .unwrap_or_else(|_| r.get(0)),
            node: r.get(1),
            origin: r.get(2),
            since: from_ts(r.get(3)),
            until: from_ts(r.get(4)),
            rule: r.get(5),
            reason: r.get(6),
        })
        .collect();
    drop(client);
    let _ = task.await;
    Ok(out)
}

/// An account the fleet saw guessed at, in a period.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountTally {
    pub user: String,
    pub failures: i64,
    pub addresses: i64,
    /// Nodes that saw it.
    pub nodes: Vec<String>,
}

/// `report --fleet`: per node, and the accounts most tried across the fleet.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetTally {
    pub nodes: Vec<NodeTally>,
    pub accounts: Vec<AccountTally>,
}

/// Per node, what it counted and decided in a period (`report --fleet`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeTally {
    pub node: String,
    pub failures: i64,
    pub addresses: i64,
    pub bans: i64,
}

/// Failures and bans per node between `since` and `until`.
pub async fn tally(
    cfg: &FleetConfig,
    since: Timestamp,
    until: Timestamp,
) -> Result<FleetTally, FleetError> {
    let (client, conn) = connect(cfg).await?;
    let task = tokio::spawn(conn);
    let rows = client
        .query(
            "WITH f AS (SELECT node, sum(count)::bigint AS failures, count(DISTINCT address) AS addresses
                        FROM fleet_failures WHERE time > $1 AND time <= $2 GROUP BY node),
                  b AS (SELECT node, count(*) AS bans FROM fleet_bans
                        WHERE at > $1 AND at <= $2 GROUP BY node)
             SELECT coalesce(f.node, b.node), coalesce(f.failures, 0), coalesce(f.addresses, 0),
                    coalesce(b.bans, 0)
             FROM f FULL JOIN b ON f.node = b.node ORDER BY 1",
            &[&ts(since), &ts(until)],
        )
        .await?;
    let nodes = rows
        .iter()
        .map(|r| NodeTally {
            node: r.get(0),
            failures: r.get(1),
            addresses: r.get(2),
            bans: r.get(3),
        })
        .collect();
    let rows = client
        .query(
            "SELECT username, sum(count)::bigint, count(DISTINCT address), array_agg(DISTINCT node ORDER BY node)
             FROM fleet_failures WHERE time > $1 AND time <= $2 AND username IS NOT NULL
             GROUP BY username ORDER BY 2 DESC, 1 LIMIT 20",
            &[&ts(since), &ts(until)],
        )
        .await?;
    let accounts = rows
        .iter()
        .map(|r| AccountTally {
            user: r.get(0),
            failures: r.get(1),
            addresses: r.get(2),
            nodes: r.get(3),
        })
        .collect();
    drop(client);
    let _ = task.await;
    Ok(FleetTally { nodes, accounts })
}

/// A ban or lift this node publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum Publish {
    Ban {
        target: IpNet,
        at: Timestamp,
        until: Timestamp,
        reason: String,
        rule: String,
        origin: String,
    },
    Lift {
        target: IpNet,
    },
    /// Attempts this node counted (the fleet counts them with its own), with what the
    /// logs said of them.
    Failure {
        address: IpAddr,
        time: Timestamp,
        count: u32,
        service: Option<String>,
        mechanism: Option<String>,
        user: Option<String>,
        posture: String,
    },
}

/// A ban or lift another node published.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Ban {
        target: IpNet,
        at: Timestamp,
        until: Timestamp,
        reason: String,
        rule: String,
        node: String,
    },
    Lift {
        target: IpNet,
        node: String,
    },
    /// Attempts another node counted.
    Failure {
        address: IpAddr,
        time: Timestamp,
        count: u32,
    },
}

/// What `status` and the metrics show of the fleet link.
#[derive(Debug, Default)]
pub struct FleetStats {
    pub connected: AtomicU64,
    pub published: AtomicU64,
    pub received: AtomicU64,
    /// Waiting to be published (the database unreachable).
    pub queued: AtomicU64,
    /// Dropped from a full queue.
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
    /// Replication lag of the last row received: from the time it carries (the log
    /// line's, or the ban's start) to now, in milliseconds.
    pub lag_ms: AtomicU64,
}

/// The most bans kept for publishing while the database is unreachable.
const MAX_QUEUE: usize = 100_000;
/// How often a node reads the fleet's changes without a notification.
const CATCH_UP: Duration = Duration::from_secs(5);
const CHANNEL: &str = "saslguard_bans";

fn ts(t: Timestamp) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(t.0.max(0) as u64)
}

fn from_ts(t: std::time::SystemTime) -> Timestamp {
    Timestamp(
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    )
}

/// The fleet link: publishes what `outgoing` brings, sends what other nodes published
/// to `incoming`. Runs until `outgoing` closes; reconnects with backoff.
pub async fn run(
    cfg: FleetConfig,
    window: Duration,
    mut outgoing: mpsc::UnboundedReceiver<Publish>,
    incoming: mpsc::Sender<Received>,
    stats: Arc<FleetStats>,
) {
    let mut queue: VecDeque<Publish> = VecDeque::new();
    // Bans: read from the start, so a node that starts applies every active fleet ban.
    // Failures: from those still inside the longest window (found at the first
    // connection), then each once.
    let mut seqs = Seqs {
        bans: 0,
        failures: None,
        window,
    };
    let mut backoff = Duration::from_millis(500);
    loop {
        match session(
            &cfg,
            &mut outgoing,
            &incoming,
            &stats,
            &mut queue,
            &mut seqs,
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                stats.connected.store(0, Ordering::Relaxed);
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("{e}; banning locally, retrying in {backoff:?}");
            }
        }
        // Keep taking what the engine publishes while the database is away.
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                m = outgoing.recv() => match m {
                    Some(m) => enqueue(&mut queue, m, &stats),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn enqueue(queue: &mut VecDeque<Publish>, m: Publish, stats: &FleetStats) {
    if queue.len() >= MAX_QUEUE {
        queue.pop_front();
        stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
    queue.push_back(m);
    stats.queued.store(queue.len() as u64, Ordering::Relaxed);
}

/// How far this node has read the fleet's changes.
struct Seqs {
    bans: i64,
    /// None until the first connection finds where the window starts.
    failures: Option<i64>,
    window: Duration,
}

/// One connection's life: Ok when the engine is gone, Err when the database is.
async fn session(
    cfg: &FleetConfig,
    outgoing: &mut mpsc::UnboundedReceiver<Publish>,
    incoming: &mpsc::Sender<Received>,
    stats: &FleetStats,
    queue: &mut VecDeque<Publish>,
    seqs: &mut Seqs,
) -> Result<(), FleetError> {
    let (client, mut conn) = connect(cfg).await?;
    // The connection's messages: notifications go to `notes`, the end to `gone`.
    let (notes_tx, mut notes) = mpsc::unbounded_channel::<()>();
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    let _ = notes_tx.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = gone_tx.send(());
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    client
        .execute(
            "INSERT INTO fleet_nodes(node, version, last_seen) VALUES ($1, $2, now())
             ON CONFLICT (node) DO UPDATE SET version = $2, last_seen = now()",
            &[&cfg.node, &env!("CARGO_PKG_VERSION")],
        )
        .await?;
    stats.connected.store(1, Ordering::Relaxed);
    tracing::info!(node = %cfg.node, "cluster: connected");
    if seqs.failures.is_none() {
        let since = std::time::SystemTime::now() - seqs.window;
        let row = client
            .query_one(
                "SELECT coalesce((SELECT min(seq) - 1 FROM fleet_failures WHERE time > $1),
                                 (SELECT max(seq) FROM fleet_failures), 0)",
                &[&since],
            )
            .await?;
        seqs.failures = Some(row.get(0));
    }
    // What waited while the database was away, then what the others did meanwhile.
    while !queue.is_empty() {
        let n = queue.len().min(1000);
        let batch: Vec<Publish> = queue.iter().take(n).cloned().collect();
        publish(&client, cfg, &batch).await?;
        queue.drain(..n);
        stats.published.fetch_add(n as u64, Ordering::Relaxed);
        stats.queued.store(queue.len() as u64, Ordering::Relaxed);
    }
    catch_up(&client, cfg, incoming, stats, seqs).await?;
    let mut tick = tokio::time::interval(CATCH_UP);
    loop {
        tokio::select! {
            m = outgoing.recv() => {
                let Some(m) = m else { return Ok(()) };
                // Whatever else is waiting goes in the same round trip.
                let mut batch = vec![m];
                while batch.len() < 1000 {
                    match outgoing.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                if let Err(e) = publish(&client, cfg, &batch).await {
                    for m in batch {
                        enqueue(queue, m, stats);
                    }
                    return Err(e);
                }
                stats.published.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Some(()) = notes.recv() => {
                catch_up(&client, cfg, incoming, stats, seqs).await?;
            }
            _ = tick.tick() => {
                catch_up(&client, cfg, incoming, stats, seqs).await?;
                client
                    .execute("UPDATE fleet_nodes SET last_seen = now() WHERE node = $1", &[&cfg.node])
                    .await?;
            }
            _ = &mut gone => return Err(FleetError::Closed),
        }
    }
}

/// Publishes a batch in one transaction (the failures in one statement), then wakes
/// the other nodes.
async fn publish(
    client: &tokio_postgres::Client,
    cfg: &FleetConfig,
    batch: &[Publish],
) -> Result<(), FleetError> {
    // One publisher at a time: a row's sequence number is taken inside the lock and
    // committed before the next publisher takes one, so numbers become visible in
    // order and a reader that has seen number n has seen every row below n. (Without
    // it, a transaction that took 1000 and committed after another's 1001 would be
    // skipped by a reader already past 1001: a failure lost to the fleet.)
    client
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(7394722)")
        .await?;
    let r = publish_in(client, cfg, batch).await;
    if r.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
        return r;
    }
    client
        .batch_execute(&format!("NOTIFY {CHANNEL}; COMMIT"))
        .await?;
    Ok(())
}

async fn publish_in(
    client: &tokio_postgres::Client,
    cfg: &FleetConfig,
    batch: &[Publish],
) -> Result<(), FleetError> {
    let (mut addrs, mut times, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    let (mut services, mut mechs, mut users, mut postures) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for m in batch {
        match m {
            Publish::Failure {
                address,
                time,
                count,
                service,
                mechanism,
                user,
                posture,
            } => {
                addrs.push(address.to_string());
                times.push(ts(*time));
                counts.push(i32::try_from(*count).unwrap_or(i32::MAX));
                services.push(service.clone());
                mechs.push(mechanism.clone());
                users.push(user.clone());
                postures.push(posture.clone());
            }
            other => publish_one(client, cfg, other).await?,
        }
    }
    if !addrs.is_empty() {
        client
            .execute(
                "INSERT INTO fleet_failures(address, time, count, node, service, mechanism, username, posture)
                 SELECT a::inet, t, c, $4, s, m, u, p
                 FROM unnest($1::text[], $2::timestamptz[], $3::int[], $5::text[], $6::text[], $7::text[], $8::text[])
                   AS x(a, t, c, s, m, u, p)",
                &[&addrs, &times, &counts, &cfg.node, &services, &mechs, &users, &postures],
            )
            .await?;
    }
    Ok(())
}

async fn publish_one(
    client: &tokio_postgres::Client,
    cfg: &FleetConfig,
    m: &Publish,
) -> Result<(), FleetError> {
    match m {
        Publish::Failure { .. } => {}
        Publish::Ban {
            target,
            at,
            until,
            reason,
            rule,
            origin,
        } => {
            let target = cidr(target);
            client
                .execute(
                    "INSERT INTO fleet_bans(target, at, until, reason, rule, origin, node)
                     VALUES ($1::text::cidr, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (target) DO UPDATE SET
                       at     = CASE WHEN fleet_bans.lifted OR EXCLUDED.until > fleet_bans.until THEN EXCLUDED.at ELSE fleet_bans.at END,
                       reason = CASE WHEN fleet_bans.lifted OR EXCLUDED.until > fleet_bans.until THEN EXCLUDED.reason ELSE fleet_bans.reason END,
                       rule   = CASE WHEN fleet_bans.lifted OR EXCLUDED.until > fleet_bans.until THEN EXCLUDED.rule ELSE fleet_bans.rule END,
                       origin = CASE WHEN fleet_bans.lifted OR EXCLUDED.until > fleet_bans.until THEN EXCLUDED.origin ELSE fleet_bans.origin END,
                       node   = CASE WHEN fleet_bans.lifted OR EXCLUDED.until > fleet_bans.until THEN EXCLUDED.node ELSE fleet_bans.node END,
                       until  = CASE WHEN fleet_bans.lifted THEN EXCLUDED.until ELSE GREATEST(fleet_bans.until, EXCLUDED.until) END,
                       lifted = false,
                       seq    = nextval('fleet_seq')",
                    &[&target, &ts(*at), &ts(*until), reason, rule, origin, &cfg.node],
                )
                .await?;
        }
        Publish::Lift { target } => {
            client
                .execute(
                    "UPDATE fleet_bans SET lifted = true, node = $2, seq = nextval('fleet_seq')
                     WHERE target = $1::text::cidr AND NOT lifted",
                    &[&cidr(target), &cfg.node],
                )
                .await?;
        }
    }
    Ok(())
}

fn note_lag(stats: &FleetStats, t: Timestamp) {
    let now = from_ts(std::time::SystemTime::now());
    stats
        .lag_ms
        .store((now.0 - t.0).max(0) as u64, Ordering::Relaxed);
}

fn cidr(t: &IpNet) -> String {
    // PostgreSQL's cidr wants the prefix length written out.
    format!("{}/{}", t.network(), t.prefix_len())
}

/// Reads the changes past what this node has seen and hands the others' to the engine:
/// bans and lifts, then failures.
async fn catch_up(
    client: &tokio_postgres::Client,
    cfg: &FleetConfig,
    incoming: &mpsc::Sender<Received>,
    stats: &FleetStats,
    seqs: &mut Seqs,
) -> Result<(), FleetError> {
    catch_up_bans(client, cfg, incoming, stats, &mut seqs.bans).await?;
    if !cfg.share_failures {
        return Ok(());
    }
    let Some(last) = seqs.failures.as_mut() else {
        return Ok(());
    };
    loop {
        let rows = client
            .query(
                "SELECT host(address), time, count, seq FROM fleet_failures
                 WHERE seq > $1 AND node <> $2 ORDER BY seq LIMIT 10000",
                &[&*last, &cfg.node],
            )
            .await?;
        let more = rows.len() == 10_000;
        for r in rows {
            *last = (*last).max(r.get::<_, i64>(3));
            let text: String = r.get(0);
            let Ok(address) = text.parse::<IpAddr>() else {
                continue;
            };
            let time = from_ts(r.get(1));
            note_lag(stats, time);
            let m = Received::Failure {
                address: crate::addr::canonical(address),
                time,
                count: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
            };
            stats.received.fetch_add(1, Ordering::Relaxed);
            if incoming.send(m).await.is_err() {
                return Ok(());
            }
        }
        if !more {
            return Ok(());
        }
    }
}

async fn catch_up_bans(
    client: &tokio_postgres::Client,
    cfg: &FleetConfig,
    incoming: &mpsc::Sender<Received>,
    stats: &FleetStats,
    last_seq: &mut i64,
) -> Result<(), FleetError> {
    loop {
        let rows = client
            .query(
                "SELECT target::text, at, until, reason, rule, node, lifted, seq
                 FROM fleet_bans WHERE seq > $1 ORDER BY seq LIMIT 10000",
                &[last_seq],
            )
            .await?;
        let more = rows.len() == 10_000;
        for r in rows {
            let seq: i64 = r.get(7);
            *last_seq = (*last_seq).max(seq);
            let node: String = r.get(5);
            if node == cfg.node {
                continue;
            }
            let text: String = r.get(0);
            let Ok(target) = crate::addr::parse_network(&text) else {
                tracing::warn!(node = %node, "cluster: a ban of {text:?} is not a network; ignored");
                continue;
            };
            let m = if r.get::<_, bool>(6) {
                Received::Lift { target, node }
            } else {
                let at = from_ts(r.get(1));
                note_lag(stats, at);
                Received::Ban {
                    target,
                    at,
                    until: from_ts(r.get(2)),
                    reason: r.get(3),
                    rule: r.get(4),
                    node,
                }
            };
            stats.received.fetch_add(1, Ordering::Relaxed);
            if incoming.send(m).await.is_err() {
                return Ok(());
            }
        }
        if !more {
            return Ok(());
        }
    }
}

impl std::fmt::Display for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Received::Ban { target, node, .. } => {
                write!(f, "ban of {} from node {node}", target_string(target))
            }
            Received::Lift { target, node } => {
                write!(f, "lift of {} from node {node}", target_string(target))
            }
            Received::Failure { address, count, .. } => {
                write!(f, "{count} failures of {address}")
            }
        }
    }
}
