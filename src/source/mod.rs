//! Where lines come from, and when they were written. This module holds the bounded
//! line reader and [`stamp`], which gives each raw line its time (or the reason it has
//! none); [`file`] reads whole files, [`merge`] reads several of them as one log by
//! time, [`follow`] and [`journal`] are the daemon's live sources. Nothing here knows
//! what a line means beyond its syslog prefix: that is the pipeline's business.

pub mod file;
pub mod follow;
pub mod journal;
pub mod merge;

use crate::parse::syslog::{self, Prefix};
use crate::time::{Timestamp, YearResolver};
use std::io::{self, BufRead};

/// Why a line has no time, and so no place in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not a log line of any supported format (garbage, truncated prefix).
    Unparsable,
    /// Longer than `input.max_line_bytes`.
    TooLong,
    /// A timestamp that names no real time (Feb 30, a year out of range).
    BadTime,
}

/// One line with its time: decoded, its syslog prefix read, its year and zone resolved.
#[derive(Debug, Clone)]
pub struct Stamped<'a> {
    /// The line without its line end, invalid UTF-8 replaced (a hostile user name must
    /// not make a failure vanish); empty for a line that was too long.
    pub text: &'a str,
    /// The line had invalid UTF-8.
    pub lossy: bool,
    /// Its length in bytes as read.
    pub len: usize,
    /// Its time and prefix, or why it has none.
    pub stamp: Result<(Timestamp, Prefix<'a>), Skip>,
}

impl Stamped<'_> {
    pub fn too_long(len: usize) -> Stamped<'static> {
        Stamped {
            text: "",
            lossy: false,
            len,
            stamp: Err(Skip::TooLong),
        }
    }

    pub fn time(&self) -> Option<Timestamp> {
        self.stamp.as_ref().ok().map(|(t, _)| *t)
    }

    /// Where `part`, a slice of this line's text (its host, tag or message), stands
    /// in it. An empty `part` may be no slice of it (`syslog::tag` gives a literal
    /// `""` for a message-less tag): it stands at the end.
    pub fn range_of(&self, part: &str) -> std::ops::Range<usize> {
        if part.is_empty() {
            return self.text.len()..self.text.len();
        }
        let at = part.as_ptr() as usize - self.text.as_ptr() as usize;
        at..at + part.len()
    }
}

/// Stamps one raw line (without its `\n`) with the time its prefix names, resolved
/// by the stream's `resolver`; `lossy` holds the decoded text when the line is not
/// valid UTF-8.
#[inline]
pub fn stamp<'a>(raw: &'a [u8], resolver: &mut YearResolver, lossy: &'a mut String) -> Stamped<'a> {
    let len = raw.len();
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    // simdutf8: the standard check is a tenth of reading a line (issue 17); on
    // invalid input both fail and the line is decoded with replacements.
    let (text, is_lossy): (&'a str, bool) = match simdutf8::basic::from_utf8(raw) {
        Ok(s) => (s, false),
        Err(_) => {
            lossy.clear();
            lossy.push_str(&String::from_utf8_lossy(raw));
            (lossy.as_str(), true)
        }
    };
    let stamp = match syslog::parse_with(text, &mut resolver.iso) {
        None => Err(Skip::Unparsable),
        Some(p) => match resolver.resolve(p.time) {
            Some(t) => Ok((t, p)),
            None => Err(Skip::BadTime),
        },
    };
    Stamped {
        text,
        lossy: is_lossy,
        len,
        stamp,
    }
}

/// One line from a [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Ok(&'a [u8]),
    /// Longer than the cap: its bytes were read and dropped, `len` of them.
    TooLong(usize),
}

/// Reads lines of at most `max` bytes without ever buffering more than that: a
/// 1 GB line without a newline costs `max` bytes of memory, not 1 GB. A line that lies
/// whole in the reader's buffer is handed out in place, without a copy.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
    /// Bytes of the inner buffer handed out by the last call, consumed by the next.
    pending: usize,
}

fn fill<R: BufRead>(r: &mut R) -> io::Result<&[u8]> {
    loop {
        match r.fill_buf() {
            Ok(_) => return r.fill_buf(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            buf: Vec::with_capacity(256),
            pending: 0,
        }
    }

    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        if self.pending > 0 {
            self.inner.consume(self.pending);
            self.pending = 0;
        }
        let max = self.max;
        let whole = memchr::memchr(b'\n', fill(&mut self.inner)?).filter(|&i| i <= max);
        if let Some(i) = whole {
            self.pending = i + 1;
            return Ok(Some(Line::Ok(&fill(&mut self.inner)?[..i])));
        }
        self.buf.clear();
        let mut total = 0usize;
        let mut seen_any = false;
        loop {
            let chunk = fill(&mut self.inner)?;
            if chunk.is_empty() {
                if !seen_any {
                    return Ok(None);
                }
                break;
            }
            seen_any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if total + take <= self.max {
                self.buf.extend_from_slice(&chunk[..take]);
            }
            total += take;
            self.inner.consume(take + usize::from(done));
            if done {
                break;
            }
        }
        if total > self.max {
            return Ok(Some(Line::TooLong(total)));
        }
        Ok(Some(Line::Ok(&self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_long_lines_and_keeps_going() {
        let mut data = vec![b'x'; 5000];
        data.extend_from_slice(b"\nshort\nlast");
        let mut r = LineReader::new(io::BufReader::with_capacity(64, &data[..]), 100);
        assert_eq!(r.next_line().unwrap(), Some(Line::TooLong(5000)));
        assert_eq!(r.next_line().unwrap(), Some(Line::Ok(b"short")));
        assert_eq!(r.next_line().unwrap(), Some(Line::Ok(b"last")));
        assert_eq!(r.next_line().unwrap(), None);
    }
}
