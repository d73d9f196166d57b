//! The daemon's state on disk: one SQLite file in the state directory.
//!
//! Holds bans (active and history), offender records, the failures still inside the
//! longest rule window (so a restart resumes counting instead of starting from zero)
//! and each source's position. Writes come in [`Batch`]es and every batch is one
//! transaction: a batch ends with the position of the source whose lines it records,
//! so after a crash the file never says a line was read whose failures it lacks, or the
//! other way round, and no line is counted twice.
//!
//! The schema is versioned with `PRAGMA user_version`; migrations run at open. A file
//! written by a newer saslguard, or one that is not a SQLite database, is refused with
//! a clear error and left untouched: replacing it would silently forget every ban.

use crate::alert::{AccountHistory, Alert};
use crate::ban::target_string;
use crate::offender::Offender;
use crate::pipeline::Snapshot;
use crate::posture::Posture;
use crate::time::Timestamp;
use ipnet::IpNet;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The schema this build writes; `MIGRATIONS[i]` takes version i to i + 1.
pub const SCHEMA_VERSION: i64 = 4;

const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE bans (
    id        INTEGER PRIMARY KEY,
    target    TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    until     INTEGER NOT NULL,
    rule      TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    failures  INTEGER NOT NULL,
    nth       INTEGER NOT NULL,
    origin    TEXT    NOT NULL,
    lifted_at INTEGER,
    lifted_by TEXT
);
CREATE INDEX bans_target ON bans(target);
CREATE INDEX bans_until ON bans(until);
CREATE TABLE offenders (
    address       TEXT PRIMARY KEY,
    first_failure INTEGER NOT NULL,
    last_failure  INTEGER NOT NULL,
    failures      INTEGER NOT NULL,
    record        TEXT    NOT NULL
);
CREATE INDEX offenders_last ON offenders(last_failure);
CREATE TABLE failures (
    address TEXT    NOT NULL,
    time    INTEGER NOT NULL,
    count   INTEGER NOT NULL
);
CREATE INDEX failures_time ON failures(time);
CREATE TABLE checkpoints (
    source   TEXT PRIMARY KEY,
    position TEXT    NOT NULL,
    updated  INTEGER NOT NULL
);
",
    "
ALTER TABLE bans ADD COLUMN geo TEXT;
ALTER TABLE bans ADD COLUMN tls TEXT;
CREATE TABLE alerts (
    id      INTEGER PRIMARY KEY,
    time    INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    address TEXT    NOT NULL,
    user    TEXT,
    record  TEXT    NOT NULL
);
CREATE INDEX alerts_time ON alerts(time);
CREATE TABLE accounts (
    user    TEXT PRIMARY KEY,
    record  TEXT NOT NULL
);
",
    // v3: known-good addresses (IPv6: /64s) with their last successful login.
    "
CREATE TABLE known_good (
    key         TEXT PRIMARY KEY,
    last_login  INTEGER NOT NULL
);
CREATE INDEX known_good_last ON known_good(last_login);
",
    // v4: packets refused per [[block]], the daemon's running total now and then.
    "
CREATE TABLE block_counts (
    time    INTEGER NOT NULL,
    block   TEXT    NOT NULL,
    refused INTEGER NOT NULL
);
CREATE INDEX block_counts_time ON block_counts(time);
",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {message}")]
    Refused { path: PathBuf, message: String },
    #[error("store {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

pub use crate::ban::BanRow;

/// One change to the store.
#[derive(Debug, Clone)]
pub enum Op {
    Failure {
        address: IpAddr,
        time: Timestamp,
        count: u32,
    },
    Offender(Box<Offender>),
    Ban(Box<BanRow>),
    Alert(Box<Alert>),
    /// The TLS posture of a ban, completed after it was made.
    BanTls {
        target: IpNet,
        at: Timestamp,
        tls: Posture,
    },
    /// An account's login origins (for `new_origin` alerts).
    Account(Box<(String, AccountHistory)>),
    /// A successful login made `key` known good at `at`.
    KnownGood {
        key: IpNet,
        at: Timestamp,
    },
    /// Bans of `target` still active at `at` are lifted (by hand: `by` says who).
    Lift {
        target: IpNet,
        at: Timestamp,
        by: String,
    },
    Checkpoint {
        source: String,
        position: String,
        at: Timestamp,
    },
    /// The running total of packets a block refused, at `time` (a total that falls
    /// says the daemon started again from 0).
    BlockCount {
        block: String,
        time: Timestamp,
        refused: u64,
    },
    /// Deletes failures older than `failures_before` and ban history (ended bans)
    /// older than `history_before`.
    Prune {
        failures_before: Timestamp,
        history_before: Timestamp,
    },
}

/// Changes written together, in one transaction.
pub type Batch = Vec<Op>;

/// What the daemon reads back at start: the pipeline's [`Snapshot`] and the sources'
/// positions.
#[derive(Debug, Default)]
pub struct Restored {
    pub snapshot: Snapshot,
    /// (source name, position), and the daemon's counter state row.
    pub checkpoints: Vec<(String, String)>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

impl Store {
    /// Opens (creating it if missing) and migrates the store.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, false)
    }

    /// Opens an existing store without writing to it (reports, `bans` without a
    /// daemon).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, read_only: bool) -> Result<Store, StoreError> {
        let refused = |message: String| StoreError::Refused {
            path: path.to_path_buf(),
            message,
        };
        // The file's first bytes only: the store may be large.
        let head = std::fs::File::open(path).and_then(|f| {
            let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
            std::io::Read::read_to_end(
                &mut std::io::Read::take(f, SQLITE_MAGIC.len() as u64),
                &mut head,
            )?;
            Ok(head)
        });
        match head {
            Ok(head) if head.is_empty() => {
                return Err(refused(
                    "is empty (0 bytes): a store cut short by a full disk or a failed copy, \
                     not a new one; saslguard will not start from nothing in its place. Move \
                     it away to start with an empty store."
                        .into(),
                ));
            }
            Ok(head) if !head.starts_with(SQLITE_MAGIC) => {
                return Err(refused(
                    "is not a SQLite database (corrupt, or another file); saslguard will not \
                     overwrite it. Move it away to start with an empty store."
                        .into(),
                ));
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound || read_only => {
                return Err(refused(format!("cannot read: {e}")));
            }
            _ => {}
        }
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
        let sql = |source| StoreError::Sql {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| {
                refused(format!(
                    "is damaged ({e}); saslguard will not overwrite it. Move it away to start \
                     with an empty store."
                ))
            })?;
        if check != "ok" {
            return Err(refused(format!(
                "is damaged ({check}); saslguard will not overwrite it. Move it away to start \
                 with an empty store."
            )));
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(refused(format!(
                "has schema version {version}, written by a newer saslguard; this one knows \
                 versions up to {SCHEMA_VERSION}. Run the newer saslguard, or move the file away."
            )));
        }
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        if read_only {
            if version < SCHEMA_VERSION {
                return Err(refused(format!(
                    "has schema version {version}; start the daemon once to migrate it"
                )));
            }
            return Ok(store);
        }
        store
            .conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(sql)?;
        store.migrate(version)?;
        Ok(store)
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self, from: i64) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = move |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        for v in from..SCHEMA_VERSION {
            let tx = self.conn.transaction().map_err(&sql)?;
            tx.execute_batch(MIGRATIONS[v as usize]).map_err(&sql)?;
            tx.pragma_update(None, "user_version", v + 1)
                .map_err(&sql)?;
            tx.commit().map_err(&sql)?;
            tracing::info!(store = %self.path.display(), version = v + 1, "store schema migrated");
        }
        Ok(())
    }

    /// Packets each block refused within `(since, until]`, from the running totals the
    /// daemon wrote: the sum of their increases, a total that fell counting from 0.
    pub fn block_refused(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let sql = self.sql();
        let mut st = self
            .conn
            .prepare("SELECT block, time, refused FROM block_counts WHERE time <= ?1 ORDER BY block, time")
            .map_err(&sql)?;
        let rows = st
            .query_map(params![until.0], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(&sql)?;
        let mut out: Vec<(String, u64)> = Vec::new();
        let mut last: Option<(String, u64)> = None;
        for row in rows {
            let (block, time, total) = row.map_err(&sql)?;
            let total = total.max(0) as u64;
            let before = match &last {
                Some((b, t)) if *b == block => Some(*t),
                _ => None,
            };
            if out.last().is_none_or(|(b, _)| *b != block) {
                out.push((block.clone(), 0));
            }
            if time > since.0 {
                let add = match before {
                    Some(b) if total >= b => total - b,
                    _ => total,
                };
                if let Some((_, n)) = out.last_mut() {
                    *n += add;
                }
            }
            last = Some((block, total));
        }
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes several batches in one transaction.
    pub fn write(&mut self, batches: &[Batch]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = move |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&sql)?;
        {
            let mut fail = tx
                .prepare_cached("INSERT INTO failures(address, time, count) VALUES (?1, ?2, ?3)")
                .map_err(&sql)?;
            let mut off = tx
                .prepare_cached(
                    "INSERT INTO offenders(address, first_failure, last_failure, failures, record)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(address) DO UPDATE SET first_failure = ?2, last_failure = ?3,
                     failures = ?4, record = ?5",
                )
                .map_err(&sql)?;
            let superseded = superseded(batches);
            for (_, op) in batches
                .iter()
                .flatten()
                .enumerate()
                .filter(|(i, _)| !superseded.contains(i))
            {
                match op {
                    Op::Failure {
                        address,
                        time,
                        count,
                    } => {
                        fail.execute(params![address.to_string(), time.0, count])
                            .map_err(&sql)?;
                    }
                    Op::Offender(o) => {
                        let record = serde_json::to_string(o).unwrap_or_default();
                        off.execute(params![
                            o.address.to_string(),
                            o.first_failure.0,
                            o.last_failure.0,
                            o.failures as i64,
                            record
                        ])
                        .map_err(&sql)?;
                    }
                    Op::Ban(b) => {
                        tx.execute(
                            "INSERT INTO bans(target, at, until, rule, reason, failures, nth,
                             origin, lifted_at, lifted_by, geo, tls)
                             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                            params![
                                target_string(&b.target),
                                b.at.0,
                                b.until.0,
                                b.rule,
                                b.reason,
                                b.failures,
                                b.nth,
                                b.origin,
                                b.lifted_at.map(|t| t.0),
                                b.lifted_by,
                                (!b.geo.is_empty())
                                    .then(|| serde_json::to_string(&b.geo).unwrap_or_default()),
                                b.tls
                                    .as_ref()
                                    .map(|p| serde_json::to_string(p).unwrap_or_default()),
                            ],
                        )
                        .map_err(&sql)?;
                    }
                    Op::BanTls { target, at, tls } => {
                        tx.execute(
                            "UPDATE bans SET tls = ?3 WHERE target = ?1 AND at = ?2",
                            params![
                                target_string(target),
                                at.0,
                                serde_json::to_string(tls).unwrap_or_default()
                            ],
                        )
                        .map_err(&sql)?;
                    }
                    Op::Alert(a) => {
                        tx.execute(
                            "INSERT INTO alerts(time, kind, address, user, record)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![
                                a.time.0,
                                a.kind,
                                a.address.to_string(),
                                a.user,
                                serde_json::to_string(a).unwrap_or_default()
                            ],
                        )
                        .map_err(&sql)?;
                    }
                    Op::KnownGood { key, at } => {
                        tx.execute(
                            "INSERT INTO known_good(key, last_login) VALUES (?1, ?2)
                             ON CONFLICT(key) DO UPDATE SET last_login = MAX(last_login, ?2)",
                            params![key.to_string(), at.0],
                        )
                        .map_err(&sql)?;
                    }
                    Op::Account(acc) => {
                        tx.execute(
                            "INSERT INTO accounts(user, record) VALUES (?1, ?2)
                             ON CONFLICT(user) DO UPDATE SET record = ?2",
                            params![acc.0, serde_json::to_string(&acc.1).unwrap_or_default()],
                        )
                        .map_err(&sql)?;
                    }
                    Op::Lift { target, at, by } => {
                        tx.execute(
                            "UPDATE bans SET lifted_at = ?2, lifted_by = ?3
                             WHERE target = ?1 AND lifted_at IS NULL AND until > ?2",
                            params![target_string(target), at.0, by],
                        )
                        .map_err(&sql)?;
                    }
                    Op::Checkpoint {
                        source,
                        position,
                        at,
                    } => {
                        tx.execute(
                            "INSERT INTO checkpoints(source, position, updated) VALUES (?1, ?2, ?3)
                             ON CONFLICT(source) DO UPDATE SET position = ?2, updated = ?3",
                            params![source, position, at.0],
                        )
                        .map_err(&sql)?;
                    }
                    Op::BlockCount {
                        block,
                        time,
                        refused,
                    } => {
                        tx.prepare_cached(
                            "INSERT INTO block_counts(time, block, refused) VALUES (?1, ?2, ?3)",
                        )
                        .and_then(|mut st| st.execute(params![time.0, block, *refused as i64]))
                        .map_err(&sql)?;
                    }
                    Op::Prune {
                        failures_before,
                        history_before,
                    } => {
                        tx.execute(
                            "DELETE FROM block_counts WHERE time < ?1",
                            params![history_before.0],
                        )
                        .map_err(&sql)?;
                        tx.execute(
                            "DELETE FROM failures WHERE time < ?1",
                            params![failures_before.0],
                        )
                        .map_err(&sql)?;
                        // Known-good addresses are kept as long as ban history.
                        tx.execute(
                            "DELETE FROM known_good WHERE last_login < ?1",
                            params![history_before.0],
                        )
                        .map_err(&sql)?;
                        tx.execute(
                            "DELETE FROM bans WHERE until < ?1 OR lifted_at < ?1",
                            params![history_before.0],
                        )
                        .map_err(&sql)?;
                        tx.execute(
                            "DELETE FROM alerts WHERE time < ?1",
                            params![history_before.0],
                        )
                        .map_err(&sql)?;
                    }
                }
            }
        }
        tx.commit().map_err(&sql)
    }

    /// What the daemon needs at start: active bans at `now`, ban starts since
    /// `history_since`, failures since `failures_since`, the `max_offenders` most
    /// recent offender records, and the source positions.
    /// Reads back what a pipeline needs, within the bounds a running one keeps: of the
    /// failures since `failures_since`, only the newest `per_address` rows of each of
    /// the `max_addresses` most recently failing addresses (the sliding windows keep no
    /// more), so a restart needs no more memory than the daemon had while running.
    pub fn restore(
        &self,
        now: Timestamp,
        history_since: Timestamp,
        failures_since: Timestamp,
        max_offenders: usize,
        per_address: usize,
        max_addresses: usize,
    ) -> Result<Restored, StoreError> {
        let sql = self.sql();
        let mut r = Restored::default();
        r.snapshot.active = self.bans(Some(now))?;
        let mut st = self
            .conn
            .prepare("SELECT target, at FROM bans WHERE at >= ?1 ORDER BY at")
            .map_err(&sql)?;
        let rows = st
            .query_map(params![history_since.0], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(&sql)?;
        for row in rows {
            let (t, at) = row.map_err(&sql)?;
            if let Some(t) = parse_target(&t) {
                r.snapshot.history.push((t, Timestamp(at)));
            }
        }
        let mut st = self
            .conn
            .prepare(
                "WITH recent AS (
                     SELECT address, MAX(time) AS last FROM failures WHERE time >= ?1
                     GROUP BY address ORDER BY last DESC LIMIT ?3),
                 ranked AS (
                     SELECT f.address, f.time, f.count,
                            ROW_NUMBER() OVER (PARTITION BY f.address ORDER BY f.time DESC) AS n
                     FROM failures f JOIN recent r ON r.address = f.address
                     WHERE f.time >= ?1)
                 SELECT address, time, count FROM ranked WHERE n <= ?2 ORDER BY time",
            )
            .map_err(&sql)?;
        let rows = st
            .query_map(
                params![
                    failures_since.0,
                    per_address.max(1) as i64,
                    max_addresses.max(1) as i64
                ],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, u32>(2)?,
                    ))
                },
            )
            .map_err(&sql)?;
        for row in rows {
            let (a, t, n) = row.map_err(&sql)?;
            if let Ok(a) = a.parse() {
                r.snapshot.failures.push((a, Timestamp(t), n));
            }
        }
        r.snapshot.offenders = self.offenders(max_offenders)?;
        let mut st = self
            .conn
            .prepare("SELECT source, position FROM checkpoints")
            .map_err(&sql)?;
        let rows = st
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(&sql)?;
        for row in rows {
            r.checkpoints.push(row.map_err(&sql)?);
        }
        let mut st = self
            .conn
            .prepare("SELECT user, record FROM accounts")
            .map_err(&sql)?;
        let rows = st
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(&sql)?;
        for row in rows {
            let (user, rec) = row.map_err(&sql)?;
            if let Ok(h) = serde_json::from_str(&rec) {
                r.snapshot.accounts.push((user, h));
            }
        }
        // The most recent known-good keys (as many as the policy keeps), oldest first.
        let mut st = self
            .conn
            .prepare(
                "SELECT key, last_login FROM (SELECT key, last_login FROM known_good
                 ORDER BY last_login DESC LIMIT ?1) ORDER BY last_login",
            )
            .map_err(&sql)?;
        let rows = st
            .query_map(params![max_addresses.max(1) as i64], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(&sql)?;
        for row in rows {
            let (key, at) = row.map_err(&sql)?;
            if let Some(k) = parse_target(&key) {
                r.snapshot.known_good.push((k, Timestamp(at)));
            }
        }
        Ok(r)
    }

    /// Alerts since `since`, oldest first.
    pub fn alerts(&self, since: Timestamp) -> Result<Vec<Alert>, StoreError> {
        let sql = self.sql();
        let mut st = self
            .conn
            .prepare("SELECT record FROM alerts WHERE time >= ?1 ORDER BY time, id")
            .map_err(&sql)?;
        let rows = st
            .query_map(params![since.0], |row| row.get::<_, String>(0))
            .map_err(&sql)?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(a) = serde_json::from_str(&row.map_err(&sql)?) {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Bans, newest first: with `active_at`, only those not lifted and not over then
    /// (the latest row of each target); without, the whole history.
    pub fn bans(&self, active_at: Option<Timestamp>) -> Result<Vec<BanRow>, StoreError> {
        let sql = self.sql();
        let query = if active_at.is_some() {
            "SELECT target, at, until, rule, reason, failures, nth, origin, lifted_at, lifted_by,
             geo, tls FROM bans WHERE lifted_at IS NULL AND until > ?1 ORDER BY at DESC, id DESC"
        } else {
            "SELECT target, at, until, rule, reason, failures, nth, origin, lifted_at, lifted_by,
             geo, tls FROM bans WHERE ?1 IS NULL OR 1 ORDER BY at DESC, id DESC"
        };
        let mut st = self.conn.prepare(query).map_err(&sql)?;
        let rows = st
            .query_map(params![active_at.map(|t| t.0)], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    BanRow {
                        target: IpNet::default(),
                        at: Timestamp(row.get(1)?),
                        until: Timestamp(row.get(2)?),
                        rule: row.get(3)?,
                        reason: row.get(4)?,
                        failures: row.get(5)?,
                        nth: row.get(6)?,
                        origin: row.get(7)?,
                        lifted_at: row.get::<_, Option<i64>>(8)?.map(Timestamp),
                        lifted_by: row.get(9)?,
                        geo: row
                            .get::<_, Option<String>>(10)?
                            .and_then(|g| serde_json::from_str(&g).ok())
                            .unwrap_or_default(),
                        tls: row
                            .get::<_, Option<String>>(11)?
                            .and_then(|t| serde_json::from_str(&t).ok()),
                    },
                ))
            })
            .map_err(&sql)?;
        let mut out: Vec<BanRow> = Vec::new();
        for row in rows {
            let (t, mut b) = row.map_err(&sql)?;
            let Some(t) = parse_target(&t) else { continue };
            if active_at.is_some() && out.iter().any(|x| x.target == t) {
                continue;
            }
            b.target = t;
            out.push(b);
        }
        Ok(out)
    }

    /// The `limit` most recently active offender records.
    pub fn offenders(&self, limit: usize) -> Result<Vec<Offender>, StoreError> {
        let sql = self.sql();
        let mut st = self
            .conn
            .prepare("SELECT record FROM offenders ORDER BY last_failure DESC LIMIT ?1")
            .map_err(&sql)?;
        let rows = st
            .query_map(params![limit as i64], |row| row.get::<_, String>(0))
            .map_err(&sql)?;
        let mut out = Vec::new();
        for row in rows {
            match serde_json::from_str(&row.map_err(&sql)?) {
                Ok(o) => out.push(o),
                Err(e) => {
                    tracing::warn!(store = %self.path.display(), "unreadable offender record skipped: {e}")
                }
            }
        }
        Ok(out)
    }

    pub fn offender(&self, addr: IpAddr) -> Result<Option<Offender>, StoreError> {
        let sql = self.sql();
        let rec: Option<String> = self
            .conn
            .query_row(
                "SELECT record FROM offenders WHERE address = ?1",
                params![addr.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?;
        Ok(rec.and_then(|r| serde_json::from_str(&r).ok()))
    }

    pub fn checkpoint(&self, source: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT position FROM checkpoints WHERE source = ?1",
                params![source],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())
    }

    /// Rows in the failures table (for tests and `status`).
    pub fn failure_rows(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(SUM(count), 0) FROM failures", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(self.sql())
    }
}

/// The ops of `batches` (numbered in write order) that a later op of the same
/// transaction makes pointless: a whole record (an offender's, an account's, a source's
/// position) is an upsert of its key, so only the last one of each key has an effect.
/// A store behind a flood takes many batches at once, and each repeats the records of
/// the addresses it touched (issue 17: nearly one offender record per failure).
fn superseded(batches: &[Batch]) -> std::collections::HashSet<usize> {
    #[derive(PartialEq, Eq, Hash)]
    enum Key<'a> {
        Offender(IpAddr),
        Account(&'a str),
        Checkpoint(&'a str),
    }
    let mut out = std::collections::HashSet::new();
    if batches.len() < 2 {
        // The engine sends each record once per batch.
        return out;
    }
    let ops: Vec<&Op> = batches.iter().flatten().collect();
    let mut seen = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate().rev() {
        let key = match op {
            Op::Offender(o) => Key::Offender(o.address),
            Op::Account(a) => Key::Account(&a.0),
            Op::Checkpoint { source, .. } => Key::Checkpoint(source),
            _ => continue,
        };
        if !seen.insert(key) {
            out.insert(i);
        }
    }
    out
}

fn parse_target(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(crate::addr::canonical_net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(target: &str, at: i64, until: i64) -> BanRow {
        BanRow {
            target: parse_target(target).unwrap(),
            at: Timestamp(at),
            until: Timestamp(until),
            rule: "fast".into(),
            reason: "5 failures within 10m (rule fast)".into(),
            failures: 5,
            nth: 1,
            origin: "policy".into(),
            lifted_at: None,
            lifted_by: None,
            geo: crate::geo::Origin {
                country: Some("NL".into()),
                ..Default::default()
            },
            tls: None,
        }
    }

    #[test]
    fn bans_round_trip_and_lifting_ends_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut s = Store::open(&path).unwrap();
        s.write(&[vec![
            Op::Ban(Box::new(ban("192.0.2.7", 1_000, 10_000))),
            Op::Ban(Box::new(ban("198.51.100.0/24", 1_000, 5_000))),
            Op::Checkpoint {
                source: "file:/var/log/mail.log".into(),
                position: "1:2:300".into(),
                at: Timestamp(1_000),
            },
        ]])
        .unwrap();
        drop(s);
        let mut s = Store::open(&path).unwrap();
        let active = s.bans(Some(Timestamp(6_000))).unwrap();
        assert_eq!(active.len(), 1, "the /24 ended at 5000");
        assert_eq!(active[0], ban("192.0.2.7", 1_000, 10_000));
        s.write(&[vec![Op::Lift {
            target: parse_target("192.0.2.7").unwrap(),
            at: Timestamp(7_000),
            by: "hand".into(),
        }]])
        .unwrap();
        assert!(s.bans(Some(Timestamp(7_500))).unwrap().is_empty());
        let all = s.bans(None).unwrap();
        assert_eq!(all.len(), 2);
        let lifted = all.iter().find(|b| b.target.prefix_len() == 32).unwrap();
        assert_eq!(lifted.lifted_by.as_deref(), Some("hand"));
        assert_eq!(lifted.lifted_at, Some(Timestamp(7_000)));
        assert_eq!(
            s.checkpoint("file:/var/log/mail.log").unwrap().as_deref(),
            Some("1:2:300")
        );
    }

    #[test]
    fn a_version_1_store_is_migrated_and_keeps_its_bans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // The store as saslguard 0.1 with schema 1 left it.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO bans(target, at, until, rule, reason, failures, nth, origin)
                 VALUES ('192.0.2.7', 1000, 10000, 'fast', 'r', 5, 1, 'policy')",
                [],
            )
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        let active = s.bans(Some(Timestamp(2_000))).unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].geo, crate::geo::Origin::default());
        assert_eq!(active[0].tls, None);
        let mut posture = crate::offender::Counts::default();
        posture.bump("TLSv1 AES256-SHA", 2);
        s.write(&[vec![Op::BanTls {
            target: active[0].target,
            at: active[0].at,
            tls: Posture::of(&posture),
        }]])
        .unwrap();
        let tls = s.bans(Some(Timestamp(2_000))).unwrap()[0]
            .tls
            .clone()
            .unwrap();
        assert_eq!(tls.weak, ["TLSv1 AES256-SHA: TLS 1.0"]);
        let v: i64 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn refuses_a_newer_schema_and_a_file_that_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer saslguard"), "{e}");

        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"this is not a database at all, but a log line\n").unwrap();
        let e = Store::open(&junk).err().unwrap().to_string();
        assert!(e.contains("not a SQLite database"), "{e}");
        assert_eq!(
            std::fs::read(&junk).unwrap(),
            b"this is not a database at all, but a log line\n",
            "left untouched"
        );
    }

    #[test]
    fn refuses_a_damaged_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut s = Store::open(&path).unwrap();
            let batch: Batch = (0..2000)
                .map(|i| Op::Failure {
                    address: format!("192.0.2.{}", i % 250).parse().unwrap(),
                    time: Timestamp(i),
                    count: 1,
                })
                .collect();
            s.write(&[batch]).unwrap();
            s.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        // Keep the header, wreck the pages after the first.
        for b in bytes.iter_mut().skip(4096 + 100).step_by(7) {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("damaged"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left untouched");
    }

    #[test]
    fn of_records_written_together_the_last_one_is_what_a_restart_reads() {
        // A store behind a flood writes many batches in one transaction, each
        // repeating the whole records of the addresses, accounts and sources it
        // touched; only the last of each may decide what is stored, and every failure
        // of every batch is kept.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("state.db")).unwrap();
        let offender = |addr: &str, failures: u64, user: &str| {
            let mut o: Offender = serde_json::from_value(serde_json::json!({
                "address": addr, "failures": failures,
                "first_failure": "2026-11-27T10:00:00Z", "last_failure": "2026-11-27T10:00:00Z",
                "services": {}, "mechanisms": {}, "users": [user], "tls": {},
                "logins_after_failure": 0,
            }))
            .unwrap();
            o.last_failure = Timestamp(1_000 + failures as i64);
            Op::Offender(Box::new(o))
        };
        let account = |country: &str| {
            Op::Account(Box::new((
                "root".to_string(),
                AccountHistory {
                    first_seen: Timestamp(1_000),
                    countries: vec![country.into()],
                    asns: vec![],
                },
            )))
        };
        let position = |p: &str| Op::Checkpoint {
            source: "mail.log".into(),
            position: p.into(),
            at: Timestamp(2_000),
        };
        let failure = |addr: &str, t: i64| Op::Failure {
            address: addr.parse().unwrap(),
            time: Timestamp(t),
            count: 1,
        };
        s.write(&[
            vec![
                failure("2001:db8::7", 1_001),
                failure("192.0.2.7", 1_001),
                offender("2001:db8::7", 1, "root"),
                offender("192.0.2.7", 1, "admin"),
                account("NL"),
                position("p1"),
            ],
            vec![
                failure("2001:db8::7", 1_002),
                offender("2001:db8::7", 2, "info"),
                position("p2"),
            ],
            vec![
                failure("2001:db8::7", 1_003),
                offender("2001:db8::7", 3, "test"),
                account("DE"),
                position("p3"),
            ],
        ])
        .unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let o = s.offender(v6).unwrap().unwrap();
        assert_eq!((o.failures, o.users.clone()), (3, vec!["test".to_string()]));
        let o = s.offender("192.0.2.7".parse().unwrap()).unwrap().unwrap();
        assert_eq!(
            (o.failures, o.users.clone()),
            (1, vec!["admin".to_string()])
        );
        assert_eq!(s.checkpoint("mail.log").unwrap().as_deref(), Some("p3"));
        let r = s
            .restore(Timestamp(2_000), Timestamp(0), Timestamp(0), 10, 10, 10)
            .unwrap();
        assert_eq!(r.snapshot.accounts.len(), 1);
        assert_eq!(r.snapshot.accounts[0].1.countries, vec!["DE".to_string()]);
        let times: Vec<i64> = (r.snapshot.failures.iter())
            .filter(|f| f.0 == v6)
            .map(|f| f.1.0)
            .collect();
        assert_eq!(times, vec![1_001, 1_002, 1_003]);
        assert_eq!(s.failure_rows().unwrap(), 4);
    }

    #[test]
    fn a_restart_reads_back_only_what_the_windows_keep() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("state.db")).unwrap();
        // Three addresses, 50 failures each; 192.0.2.3 failed last, 192.0.2.1 first.
        let batch: Batch = (0..150)
            .map(|i| Op::Failure {
                address: format!("192.0.2.{}", i / 50 + 1).parse().unwrap(),
                time: Timestamp(1_000 + i),
                count: 1,
            })
            .collect();
        s.write(&[batch]).unwrap();
        let r = s
            .restore(Timestamp(2_000), Timestamp(0), Timestamp(0), 10, 5, 2)
            .unwrap();
        let got: Vec<(String, i64)> = r
            .snapshot
            .failures
            .iter()
            .map(|(a, t, _)| (a.to_string(), t.0))
            .collect();
        let want: Vec<(String, i64)> = (95..100)
            .map(|i| ("192.0.2.2".to_string(), 1_000 + i))
            .chain((145..150).map(|i| ("192.0.2.3".to_string(), 1_000 + i)))
            .collect();
        assert_eq!(got, want);
        // Failures before the window are not read at all.
        let r = s
            .restore(Timestamp(2_000), Timestamp(0), Timestamp(1_148), 10, 5, 3)
            .unwrap();
        assert_eq!(r.snapshot.failures.len(), 2);
    }

    #[test]
    fn known_good_addresses_survive_a_restart_and_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("state.db")).unwrap();
        let batch: Batch = [
            ("192.0.2.5/32", 10),
            ("2001:db8:1:2::/64", 20),
            ("192.0.2.5/32", 30),
        ]
        .iter()
        .map(|(k, t)| Op::KnownGood {
            key: k.parse().unwrap(),
            at: Timestamp(*t),
        })
        .collect();
        s.write(&[batch]).unwrap();
        let r = s
            .restore(Timestamp(100), Timestamp(0), Timestamp(0), 10, 5, 10)
            .unwrap();
        let got: Vec<(String, i64)> = r
            .snapshot
            .known_good
            .iter()
            .map(|(k, t)| (k.to_string(), t.0))
            .collect();
        assert_eq!(
            got,
            [
                ("2001:db8:1:2::/64".to_string(), 20),
                ("192.0.2.5/32".to_string(), 30)
            ]
        );
        let r = s
            .restore(Timestamp(100), Timestamp(0), Timestamp(0), 10, 5, 1)
            .unwrap();
        assert_eq!(
            r.snapshot.known_good.len(),
            1,
            "bounded by the addresses kept"
        );
    }

    #[test]
    fn packets_refused_in_a_period_count_increases_and_restarts_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let row = |time: i64, refused: u64| Op::BlockCount {
            block: "abroad".into(),
            time: Timestamp(time),
            refused,
        };
        // 10, then 25, then the daemon restarted (5 since), then 9.
        s.write(&[vec![
            row(1000, 10),
            row(2000, 25),
            row(3000, 5),
            row(4000, 9),
        ]])
        .unwrap();
        let got = |since, until| s.block_refused(Timestamp(since), Timestamp(until)).unwrap();
        assert_eq!(got(1500, 3500), [("abroad".to_string(), 15 + 5)]);
        assert_eq!(got(0, 5000), [("abroad".to_string(), 10 + 15 + 5 + 4)]);
        assert_eq!(got(4000, 5000), [("abroad".to_string(), 0)]);
    }
}
