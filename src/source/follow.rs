//! Following a log file without losing a line: the checkpoint layer under the daemon's
//! file sources.
//!
//! linemux tells the daemon *when* a file changed (inotify, including files that do
//! not exist yet); this module decides *what* to read. It keeps the byte position of
//! the last complete line of every file it reads, identified by device and inode, so:
//!
//! - a restart resumes at the stored position, and a file rotated while saslguard was
//!   stopped is found again by its inode among its siblings (`mail.log.1`) and read to
//!   its end before the new file;
//! - rename-and-create: the renamed file is read to its end, and kept open for
//!   `rotate_grace` in case the logger has not reopened yet, while the new file is
//!   read from its first byte;
//! - copytruncate: a file that got shorter than the position was truncated and is read
//!   again from the start (lines written between logrotate's copy and its truncate are
//!   lost, by logrotate; see the README);
//! - deletion: the open file is read to its end; a file that appears later is read from
//!   its first byte.
//!
//! A line is handed out only once it is complete (ends in `\n`); positions never point
//! into the middle of a line. Lines longer than the cap are dropped and counted
//! without being buffered.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes read from one file per [`Follower::poll`] call, so one busy file cannot
/// starve the others or fill memory.
const READ_BUDGET: usize = 1 << 20;

/// Complete lines read by one poll.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Whole lines, each ending in `\n`.
    pub data: Vec<u8>,
    /// Lines dropped for being longer than the cap.
    pub too_long: u64,
    /// There is more to read right away.
    pub more: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Id {
    dev: u64,
    ino: u64,
}

fn id_of(m: &std::fs::Metadata) -> Id {
    Id {
        dev: m.dev(),
        ino: m.ino(),
    }
}

/// One stored position: a file by identity and the offset after its last complete
/// line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePos {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// The text form kept in the store: `dev:ino:offset`, the rotated files still being
/// read first, comma-separated.
pub fn format_positions(p: &[FilePos]) -> String {
    p.iter()
        .map(|p| format!("{}:{}:{}", p.dev, p.ino, p.offset))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn parse_positions(s: &str) -> Option<Vec<FilePos>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|p| {
            let mut it = p.split(':').map(|n| n.parse::<u64>().ok());
            let pos = FilePos {
                dev: it.next()??,
                ino: it.next()??,
                offset: it.next()??,
            };
            it.next().is_none().then_some(pos)
        })
        .collect()
}

struct Open {
    file: File,
    id: Id,
    /// Bytes read so far.
    read_pos: u64,
    /// Offset after the last complete line handed out.
    line_start: u64,
    partial: Vec<u8>,
    /// Inside a line longer than the cap: drop bytes until its end.
    too_long: bool,
    /// For rotated files: when they last grew.
    last_growth: Instant,
    /// The file's length when last looked at: what was there to read.
    len_seen: u64,
}

impl Open {
    fn new(file: File, id: Id, offset: u64) -> Open {
        Open {
            file,
            id,
            read_pos: offset,
            line_start: offset,
            partial: Vec::new(),
            too_long: false,
            last_growth: Instant::now(),
            len_seen: offset,
        }
    }

    fn position(&self) -> FilePos {
        FilePos {
            dev: self.id.dev,
            ino: self.id.ino,
            offset: self.line_start,
        }
    }

    /// Reads up to `budget` bytes of complete lines into `out`. Returns whether the file
    /// had more than the budget.
    fn read(
        &mut self,
        max_line: usize,
        budget: usize,
        out: &mut Chunk,
        buf: &mut [u8],
    ) -> io::Result<bool> {
        let mut done = 0usize;
        while done < budget {
            let n = match self.file.read_at(buf, self.read_pos) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.last_growth = Instant::now();
            let mut rest = &buf[..n];
            let base = self.read_pos;
            while !rest.is_empty() {
                let consumed = n - rest.len();
                match memchr::memchr(b'\n', rest) {
                    Some(i) => {
                        if self.too_long || self.partial.len() + i > max_line {
                            out.too_long += 1;
                        } else {
                            out.data.extend_from_slice(&self.partial);
                            out.data.extend_from_slice(&rest[..=i]);
                        }
                        self.partial.clear();
                        self.too_long = false;
                        self.line_start = base + (consumed + i + 1) as u64;
                        rest = &rest[i + 1..];
                    }
                    None => {
                        if !self.too_long {
                            if self.partial.len() + rest.len() > max_line {
                                self.too_long = true;
                                self.partial = Vec::new();
                            } else {
                                self.partial.extend_from_slice(rest);
                            }
                        }
                        rest = &[];
                    }
                }
            }
            self.read_pos += n as u64;
            done += n;
        }
        Ok(true)
    }

    /// A rotated file is closed: its unfinished last line is a line too.
    fn finish(&mut self, max_line: usize, out: &mut Chunk) {
        if self.too_long {
            out.too_long += 1;
        } else if !self.partial.is_empty() && self.partial.len() <= max_line {
            out.data.extend_from_slice(&self.partial);
            out.data.push(b'\n');
        }
        self.partial.clear();
        self.line_start = self.read_pos;
    }
}

/// Counters of what happened to a followed file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FollowStats {
    pub bytes: u64,
    pub rotations: u64,
    pub truncations: u64,
    /// Bytes that were in a file, unread, when copytruncate emptied it: lost.
    pub truncated_unread: u64,
    pub errors: u64,
}

pub struct Follower {
    path: PathBuf,
    cur: Option<Open>,
    /// Rotated files still being read, oldest first.
    old: Vec<Open>,
    max_line: usize,
    grace: Duration,
    buf: Vec<u8>,
    pub stats: FollowStats,
    /// Last error reported, to log each kind of trouble once rather than every poll.
    last_error: Option<String>,
}

impl Follower {
    /// Starts following `path`. With stored `positions`, resumes there (finding rotated
    /// files by inode); without, starts at the end (`from_start` false) or the first
    /// byte of the file there now.
    pub fn new(
        path: &Path,
        positions: Option<&[FilePos]>,
        from_start: bool,
        max_line: usize,
        grace: Duration,
    ) -> Follower {
        let mut f = Follower {
            path: path.to_path_buf(),
            cur: None,
            old: Vec::new(),
            max_line,
            grace,
            buf: vec![0; 64 * 1024],
            stats: FollowStats::default(),
            last_error: None,
        };
        // Only a regular file is opened: opening a FIFO blocks until a writer comes,
        // which would hang the daemon's start before its control socket exists.
        let here = match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => {
                tracing::error!(file = %path.display(), "not a regular file (a FIFO, device or directory); not read until a regular file is there");
                Err(std::io::Error::from(std::io::ErrorKind::InvalidInput))
            }
            _ => File::open(path).and_then(|file| {
                let m = file.metadata()?;
                Ok((file, id_of(&m), m.len()))
            }),
        };
        match positions {
            None => {
                if let Ok((file, id, len)) = here {
                    let start = if from_start { 0 } else { len };
                    f.cur = Some(Open::new(file, id, start));
                }
            }
            Some(list) => {
                let here_id = here.as_ref().ok().map(|(_, id, _)| *id);
                let mut newest_old: Option<std::time::SystemTime> = None;
                for p in list {
                    let id = Id {
                        dev: p.dev,
                        ino: p.ino,
                    };
                    if Some(id) == here_id {
                        continue;
                    }
                    if let Some((file, len)) = find_sibling(path, id) {
                        tracing::info!(file = %path.display(), "reading a file rotated while saslguard was stopped to its end");
                        f.stats.rotations += 1;
                        let offset = if len < p.offset { 0 } else { p.offset };
                        let modified = file.metadata().ok().and_then(|m| m.modified().ok());
                        newest_old = newest_old.max(modified);
                        f.old.push(Open::new(file, id, offset));
                    } else {
                        tracing::warn!(file = %path.display(), "a file read before the restart is gone (rotated and compressed or deleted); lines written to it after saslguard stopped were not read");
                    }
                }
                // Rotated more than once while stopped: the files in between, whole.
                if let Some(since) = newest_old {
                    let known: Vec<Id> = list
                        .iter()
                        .map(|p| Id {
                            dev: p.dev,
                            ino: p.ino,
                        })
                        .chain(here_id)
                        .collect();
                    for (file, mid) in middle_files(path, since, &known) {
                        tracing::warn!(file = %path.display(), "rotated more than once while saslguard was stopped: reading a file in between from its start");
                        f.stats.rotations += 1;
                        f.old.push(Open::new(file, mid, 0));
                    }
                }
                if let Ok((file, id, len)) = here {
                    let stored = list
                        .iter()
                        .find(|p| p.dev == id.dev && p.ino == id.ino)
                        .map(|p| p.offset);
                    let start = match stored {
                        Some(off) if off <= len => off,
                        Some(_) => {
                            f.stats.truncations += 1;
                            tracing::warn!(file = %path.display(), "the file is shorter than the stored position (truncated while saslguard was stopped): reading it from the start");
                            0
                        }
                        // A file that took the name while saslguard was stopped: all new.
                        None => 0,
                    };
                    f.cur = Some(Open::new(file, id, start));
                }
            }
        }
        f
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The positions to store: rotated files still open first, then the current one.
    pub fn positions(&self) -> Vec<FilePos> {
        self.old
            .iter()
            .chain(self.cur.iter())
            .map(Open::position)
            .collect()
    }

    /// Bytes written to the current file and not read yet.
    pub fn behind(&self) -> u64 {
        self.cur
            .as_ref()
            .and_then(|c| {
                let len = c.file.metadata().ok()?.len();
                Some(len.saturating_sub(c.read_pos))
            })
            .unwrap_or(0)
    }

    fn trouble(&mut self, what: String) {
        self.stats.errors += 1;
        if self.last_error.as_deref() != Some(&what) {
            tracing::warn!(file = %self.path.display(), "{what}");
            self.last_error = Some(what);
        }
    }

    /// Reads what is new: rotated files first, then the current file; notices
    /// rotation, truncation, deletion and a file that appeared.
    pub fn poll(&mut self) -> Chunk {
        let mut out = Chunk::default();
        let mut buf = std::mem::take(&mut self.buf);
        let max = self.max_line;
        // Rotated files: to their end, then closed once quiet for the grace period.
        let mut i = 0;
        while i < self.old.len() {
            let o = &mut self.old[i];
            match o.read(max, READ_BUDGET, &mut out, &mut buf) {
                Ok(true) => {
                    // One file at a time, oldest first: its lines come before the next
                    // file's.
                    out.more = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    let msg = format!("reading a rotated file: {e}");
                    self.trouble(msg);
                }
            }
            let o = &mut self.old[i];
            if !out.more && o.last_growth.elapsed() >= self.grace {
                o.finish(max, &mut out);
                self.old.remove(i);
            } else {
                i += 1;
            }
        }
        if out.more {
            self.buf = buf;
            self.count(&out);
            return out;
        }
        // The current file: truncated? then read.
        if let Some(c) = &mut self.cur {
            match c.file.metadata() {
                Ok(m) if m.len() < c.read_pos => {
                    let unread = c.len_seen.saturating_sub(c.line_start);
                    if unread > 0 {
                        // copytruncate while behind: what was not read yet is gone from
                        // this file (logrotate's copy holds it; `create` rotation loses
                        // nothing).
                        tracing::error!(file = %self.path.display(), unread_bytes = unread, "the file was truncated (copytruncate) while saslguard was {unread} bytes behind: those lines are not read; rotate with `create` instead of copytruncate");
                        self.stats.truncated_unread += unread;
                    } else {
                        tracing::warn!(file = %self.path.display(), "the file was truncated (copytruncate): reading it again from the start");
                    }
                    self.stats.truncations += 1;
                    c.read_pos = 0;
                    c.line_start = 0;
                    c.partial.clear();
                    c.too_long = false;
                    c.len_seen = m.len();
                }
                Ok(m) => c.len_seen = m.len(),
                _ => {}
            }
            match c.read(max, READ_BUDGET, &mut out, &mut buf) {
                Ok(more) => out.more = more,
                Err(e) => self.trouble(format!("read: {e}")),
            }
        }
        if !out.more {
            self.check_name(&mut out, &mut buf);
        }
        self.buf = buf;
        self.count(&out);
        out
    }

    fn count(&mut self, out: &Chunk) {
        self.stats.bytes += out.data.len() as u64;
    }

    /// Has another file taken the name? Then the current one becomes a rotated file
    /// and the new one is read from its first byte.
    fn check_name(&mut self, out: &mut Chunk, buf: &mut [u8]) {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Renamed without a new file yet, or deleted: keep reading the open one;
                // a deleted file nobody writes to any more is closed after the grace.
                let gone = self.cur.as_ref().is_some_and(|c| {
                    c.file.metadata().is_ok_and(|m| m.nlink() == 0)
                        && c.last_growth.elapsed() >= self.grace
                });
                if gone && let Some(mut c) = self.cur.take() {
                    c.finish(self.max_line, out);
                }
                return;
            }
            Err(e) => {
                self.trouble(format!("stat: {e}"));
                return;
            }
        };
        if !meta.is_file() {
            self.trouble("not a regular file (a FIFO, device or directory); not read".into());
            return;
        }
        if self.cur.as_ref().is_some_and(|c| c.id == id_of(&meta)) {
            return;
        }
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) => {
                self.trouble(format!("open: {e}"));
                return;
            }
        };
        let id = match file.metadata() {
            Ok(m) => id_of(&m),
            Err(e) => {
                self.trouble(format!("stat: {e}"));
                return;
            }
        };
        if let Some(mut c) = self.cur.take() {
            tracing::info!(file = %self.path.display(), "rotated: reading the old file to its end, then the new one");
            self.stats.rotations += 1;
            c.last_growth = Instant::now();
            let since = c.file.metadata().ok().and_then(|m| m.modified().ok());
            let known: Vec<Id> = self.old.iter().map(|o| o.id).chain([c.id, id]).collect();
            self.old.push(c);
            // Rotated more than once while saslguard was behind: the files in between
            // were never under the name while it looked. Each is read whole, in order.
            for (file, mid) in since
                .map(|t| middle_files(&self.path, t, &known))
                .unwrap_or_default()
            {
                tracing::warn!(file = %self.path.display(), "rotated more than once while behind: reading a file in between from its start");
                self.stats.rotations += 1;
                self.old.push(Open::new(file, mid, 0));
            }
        } else {
            tracing::info!(file = %self.path.display(), "the file appeared: reading it from the start");
        }
        self.last_error = None;
        let mut new = Open::new(file, id, 0);
        if self.old.iter().any(|o| o.read_pos == 0) {
            // Files in between wait to be read first: the new one at the next poll.
            out.more = true;
        } else {
            match new.read(self.max_line, READ_BUDGET, out, buf) {
                Ok(more) => out.more = more,
                Err(e) => self.trouble(format!("read: {e}")),
            }
        }
        self.cur = Some(new);
    }
}

/// Rotated siblings of `path` (`mail.log.1`, `mail.log-20261122`, not compressed) that
/// are none of `known` and were written at or after `since`: files that held the name
/// between two rotations saslguard did not see one by one. Oldest first.
fn middle_files(path: &Path, since: std::time::SystemTime, known: &[Id]) -> Vec<(File, Id)> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        if !(rest.starts_with('.') || rest.starts_with('-'))
            || [".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z"]
                .iter()
                .any(|ext| rest.ends_with(ext))
        {
            continue;
        }
        let Ok(m) = std::fs::metadata(entry.path()) else {
            continue;
        };
        let Ok(modified) = m.modified() else { continue };
        if !m.is_file() || known.contains(&id_of(&m)) || modified < since {
            continue;
        }
        if let Ok(file) = File::open(entry.path()) {
            found.push((modified, file, id_of(&m)));
        }
    }
    found.sort_by_key(|(t, _, _)| *t);
    found.into_iter().map(|(_, f, id)| (f, id)).collect()
}

/// A file in `path`'s directory with identity `id` (the file rotated away from `path`:
/// `mail.log.1`, `mail.log-20261122`).
fn find_sibling(path: &Path, id: Id) -> Option<(File, u64)> {
    let dir = path.parent()?;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(m) = entry.metadata() else { continue };
        if m.is_file() && id_of(&m) == id {
            let file = File::open(entry.path()).ok()?;
            return Some((file, m.len()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(p: &Path, s: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    fn text(c: &Chunk) -> String {
        String::from_utf8(c.data.clone()).unwrap()
    }

    /// Everything the follower has now, over as many polls as it takes.
    fn read_all(f: &mut Follower) -> String {
        let mut all = String::new();
        loop {
            let c = f.poll();
            all += &text(&c);
            if !c.more {
                return all;
            }
        }
    }

    const NO_GRACE: Duration = Duration::ZERO;

    #[test]
    fn partial_lines_wait_for_their_end_and_positions_point_after_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mail.log");
        append(&p, "old line\n");
        let mut f = Follower::new(&p, None, false, 100, NO_GRACE);
        assert_eq!(text(&f.poll()), "", "starts at the end");
        append(&p, "one\ntw");
        assert_eq!(text(&f.poll()), "one\n");
        assert_eq!(f.positions()[0].offset, 13);
        append(&p, "o\n");
        assert_eq!(text(&f.poll()), "two\n");
        assert_eq!(f.positions()[0].offset, 17);
    }

    #[test]
    fn long_lines_are_counted_and_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mail.log");
        append(&p, "");
        let mut f = Follower::new(&p, None, true, 10, NO_GRACE);
        append(&p, &format!("{}\nshort\n", "x".repeat(100_000)));
        let mut all = String::new();
        let mut too_long = 0;
        loop {
            let c = f.poll();
            all += &text(&c);
            too_long += c.too_long;
            if !c.more {
                break;
            }
        }
        assert_eq!((all.as_str(), too_long), ("short\n", 1));
    }

    #[test]
    fn rename_and_create_reads_the_old_file_to_its_end_then_the_new_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mail.log");
        append(&p, "");
        let mut f = Follower::new(&p, None, false, 100, Duration::from_secs(3600));
        append(&p, "a\n");
        std::fs::rename(&p, d.path().join("mail.log.1")).unwrap();
        // The logger writes to the old file until it reopens.
        append(&d.path().join("mail.log.1"), "b\n");
        append(&p, "c\n");
        assert_eq!(text(&f.poll()), "a\nb\nc\n");
        append(&d.path().join("mail.log.1"), "late\n");
        append(&p, "d\n");
        assert_eq!(text(&f.poll()), "late\nd\n", "the old file is still read");
        assert_eq!(f.stats.rotations, 1);
        assert_eq!(f.positions().len(), 2);
    }

    /// logrotate's rename-and-create: `.1` to `.2`, the name to `.1`, a new file.
    fn rotate(p: &Path) {
        let dot = |n: u32| PathBuf::from(format!("{}.{n}", p.display()));
        if dot(1).exists() {
            std::fs::rename(dot(1), dot(2)).unwrap();
        }
        std::fs::rename(p, dot(1)).unwrap();
        append(p, "");
    }

    #[test]
    fn two_rotations_while_behind_lose_no_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mail.log");
        append(&p, "");
        let mut f = Follower::new(&p, None, false, 200, NO_GRACE);
        let lines = |tag: &str, n: usize| -> String {
            (0..n)
                .map(|i| format!("{tag} {i:08} {}\n", "x".repeat(80)))
                .collect()
        };
        // A: three read budgets; one poll reads one, so saslguard is behind.
        let a = lines("A", 3 * READ_BUDGET / 100);
        append(&p, &a);
        let mut got = text(&f.poll());
        rotate(&p);
        let b = lines("B", 1000);
        append(&p, &b);
        rotate(&p);
        let c = lines("C", 1000);
        append(&p, &c);
        loop {
            let chunk = f.poll();
            got.push_str(&text(&chunk));
            if !chunk.more && got.len() >= a.len() + b.len() + c.len() {
                break;
            }
            assert!(got.len() <= a.len() + b.len() + c.len(), "read too much");
        }
        let tags: Vec<(char, usize)> =
            got.lines()
                .fold(Vec::new(), |mut v: Vec<(char, usize)>, l| {
                    let t = l.chars().next().unwrap();
                    match v.last_mut() {
                        Some((x, n)) if *x == t => *n += 1,
                        _ => v.push((t, 1)),
                    }
                    v
                });
        assert!(
            got == format!("{a}{b}{c}"),
            "lines lost or out of order: {tags:?} {} {} {}",
            a.len(),
            b.len(),
            c.len()
        );
        assert_eq!(f.stats.rotations, 2);
    }

    #[test]
    fn two_rotations_while_stopped_lose_no_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mail.log");
        append(&p, "one\n");
        let mut f = Follower::new(&p, None, true, 200, NO_GRACE);
        assert_eq!(text(&f.poll()), "one\n");
        let pos = format_positions(&f.positions());
        drop(f);
        append(&p, "two\n");
        rotate(&p);
        append(&p, "three\n");
        rotate(&p);
        append(&p, "four\n");
        let stored = parse_positions(&pos).unwrap();
        let mut f = Follower::new(&p, Some(&stored), false, 200, NO_GRACE);
        assert_eq!(read_all(&mut f), "two\nthree\nfour\n");
    }

    #[test]
    fn copytruncate_starts_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mail.log");
        append(&p, "");
        let mut f = Follower::new(&p, None, false, 100, NO_GRACE);
        append(&p, "first line\nsecond line\n");
        assert_eq!(text(&f.poll()), "first line\nsecond line\n");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&p, "new\n");
        assert_eq!(text(&f.poll()), "new\n");
        assert_eq!(f.stats.truncations, 1);
    }

    #[test]
    fn copytruncate_while_behind_is_reported_with_what_was_lost() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mail.log");
        append(&p, "");
        let mut f = Follower::new(&p, None, false, 100, NO_GRACE);
        let line = "x".repeat(99) + "\n";
        let total = 3 * READ_BUDGET;
        append(&p, &line.repeat(total / 100));
        let first = f.poll();
        assert!(first.more, "one poll reads one budget");
        let read = text(&first).len() as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&p, "new\n");
        assert_eq!(read_all(&mut f), "new\n");
        assert_eq!(f.stats.truncations, 1);
        assert_eq!(f.stats.truncated_unread, (total / 100 * 100) as u64 - read);
    }

    #[test]
    fn a_file_that_appears_later_is_read_from_its_start() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mail.log");
        let mut f = Follower::new(&p, None, false, 100, NO_GRACE);
        assert_eq!(text(&f.poll()), "");
        append(&p, "x\n");
        assert_eq!(text(&f.poll()), "x\n");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(text(&f.poll()), "");
        append(&p, "y\n");
        assert_eq!(text(&f.poll()), "y\n");
    }

    #[test]
    fn resumes_after_a_restart_even_across_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mail.log");
        append(&p, "");
        let mut f = Follower::new(&p, None, false, 100, NO_GRACE);
        append(&p, "1\n2\n");
        assert_eq!(text(&f.poll()), "1\n2\n");
        let stored = format_positions(&f.positions());
        drop(f);
        // While stopped: more lines, a rotation, and lines in the new file.
        append(&p, "3\n");
        std::fs::rename(&p, d.path().join("mail.log.1")).unwrap();
        append(&p, "4\n");
        let pos = parse_positions(&stored).unwrap();
        let mut f = Follower::new(&p, Some(&pos), false, 100, NO_GRACE);
        assert_eq!(text(&f.poll()), "3\n4\n");
        // Plain restart without rotation: nothing twice.
        let stored = f.positions();
        assert_eq!(stored.len(), 1);
        append(&p, "5\n");
        let mut f = Follower::new(&p, Some(&stored), false, 100, NO_GRACE);
        assert_eq!(text(&f.poll()), "5\n");
    }

    #[test]
    fn positions_text_round_trips_and_rejects_junk() {
        let p = vec![
            FilePos {
                dev: 1,
                ino: 2,
                offset: 3,
            },
            FilePos {
                dev: 4,
                ino: 5,
                offset: 6,
            },
        ];
        assert_eq!(parse_positions(&format_positions(&p)), Some(p));
        assert_eq!(parse_positions("1:2"), None);
        assert_eq!(parse_positions("1:2:3:4"), None);
        assert_eq!(parse_positions("a:b:c"), None);
    }
}
