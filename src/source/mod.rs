//! Where lines come from. This module holds the bounded line reader and the replay
//! sources (whole files, plain or gzip, and stdin); the live file and journal sources
//! come with the daemon.

pub mod follow;
pub mod journal;
pub mod replay;

use std::io::{self, BufRead};

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
