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
use std::io::{self, Read};

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
    // simdutf8: the standard check is a tenth of reading a line (issue 17); on
    // invalid input both fail and the line is decoded with replacements. The `\r` of
    // a CRLF end is left to `stamp_text` (a `\r` decodes as itself).
    match simdutf8::basic::from_utf8(raw) {
        Ok(s) => stamp_text(s, len, false, resolver),
        Err(_) => {
            lossy.clear();
            lossy.push_str(&String::from_utf8_lossy(raw));
            stamp_text(lossy.as_str(), len, true, resolver)
        }
    }
}

/// [`stamp`] for a line already known to be text (a [`Line::Text`]), `len` its length
/// in bytes as read (a `\r` at its end is left out of the text).
#[inline]
pub fn stamp_text<'a>(
    text: &'a str,
    len: usize,
    lossy: bool,
    resolver: &mut YearResolver,
) -> Stamped<'a> {
    let text = text.strip_suffix('\r').unwrap_or(text);
    let stamp = match syslog::parse_with(text, &mut resolver.iso) {
        None => Err(Skip::Unparsable),
        Some(p) => match resolver.resolve(p.time) {
            Some(t) => Ok((t, p)),
            None => Err(Skip::BadTime),
        },
    };
    Stamped {
        text,
        lossy,
        len,
        stamp,
    }
}

/// One line from a [`LineReader`], without its `\n`.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Valid UTF-8, checked with the rest of its block.
    Text(&'a str),
    /// From a block that held invalid UTF-8: this line may be one of the valid ones,
    /// [`stamp`] tells.
    Bytes(&'a [u8]),
    /// Longer than the cap: its bytes were read and dropped, `len` of them.
    TooLong(usize),
}

/// Bytes asked of the reader at a time.
const READ: usize = 256 * 1024;

/// Reads lines of at most `max` bytes, in blocks of whole lines: a block is checked as
/// UTF-8 once and its lines handed out in place as text (issue 17: checking each line
/// on its own took a quarter of reading it; it is now done only in a block with
/// invalid UTF-8 somewhere). A line longer than `max` is counted and dropped as it is
/// read: a 1 GB line without a newline costs memory in proportion to `max` and the
/// block size ([`READ`]), not 1 GB.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    /// Bytes asked of `inner` at a time: [`READ`], smaller in tests.
    chunk: usize,
    /// Whole lines read (the last may lack its `\n` at the end of the input), handed
    /// out from `at`.
    block: Block,
    at: usize,
    /// What was read after the block's last `\n`: the start of the next line.
    carry: Vec<u8>,
    eof: bool,
}

enum Block {
    Text(String),
    /// A block with invalid UTF-8.
    Bytes(Vec<u8>),
}

impl Block {
    fn bytes(&self) -> &[u8] {
        match self {
            Block::Text(s) => s.as_bytes(),
            Block::Bytes(b) => b,
        }
    }
}

/// What [`LineReader::refill`] found.
enum Fill {
    Lines,
    TooLong(usize),
    End,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self::with_chunk(inner, max, READ)
    }

    fn with_chunk(inner: R, max: usize, chunk: usize) -> Self {
        LineReader {
            inner,
            max,
            chunk: chunk.max(1),
            block: Block::Text(String::new()),
            at: 0,
            carry: Vec::new(),
            eof: false,
        }
    }

    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        while self.at >= self.block.bytes().len() {
            match self.refill()? {
                Fill::Lines => {}
                Fill::TooLong(n) => return Ok(Some(Line::TooLong(n))),
                Fill::End => return Ok(None),
            }
        }
        let from = self.at;
        let bytes = self.block.bytes();
        let end = memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |i| from + i);
        self.at = end + 1;
        if end - from > self.max {
            return Ok(Some(Line::TooLong(end - from)));
        }
        Ok(Some(match &self.block {
            // A `\n` is a character of its own: both ends are boundaries.
            Block::Text(s) => Line::Text(&s[from..end]),
            Block::Bytes(b) => Line::Bytes(&b[from..end]),
        }))
    }

    /// Reads the next block: the carried start of a line, then as much as it takes to
    /// end at least one line (or the input).
    fn refill(&mut self) -> io::Result<Fill> {
        let mut v = match std::mem::replace(&mut self.block, Block::Bytes(Vec::new())) {
            Block::Text(s) => s.into_bytes(),
            Block::Bytes(b) => b,
        };
        v.clear();
        v.append(&mut self.carry);
        self.at = 0;
        // `v[..scanned]` holds no `\n`.
        let mut scanned = 0;
        loop {
            if let Some(i) = memchr::memrchr(b'\n', &v[scanned..]) {
                let split = scanned + i + 1;
                self.carry.extend_from_slice(&v[split..]);
                v.truncate(split);
                break;
            }
            scanned = v.len();
            if scanned > self.max {
                return self.drop_long_line(v);
            }
            if self.eof {
                if v.is_empty() {
                    self.block = Block::Bytes(v);
                    return Ok(Fill::End);
                }
                // The last line, without its `\n`.
                break;
            }
            if self.read_more(&mut v)? == 0 {
                self.eof = true;
            }
        }
        self.block = match String::from_utf8(v) {
            Ok(s) => Block::Text(s),
            Err(e) => Block::Bytes(e.into_bytes()),
        };
        Ok(Fill::Lines)
    }

    /// `v` is the start of a line already longer than the cap, without its `\n`:
    /// reads and drops the rest of it, keeps what follows.
    fn drop_long_line(&mut self, mut v: Vec<u8>) -> io::Result<Fill> {
        let mut total = v.len();
        loop {
            v.clear();
            if self.eof || self.read_more(&mut v)? == 0 {
                self.eof = true;
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &v) {
                total += i;
                self.carry.extend_from_slice(&v[i + 1..]);
                break;
            }
            total += v.len();
        }
        v.clear();
        self.block = Block::Bytes(v);
        Ok(Fill::TooLong(total))
    }

    /// Appends up to a chunk of input to `v`; 0 at the end. The room is made first,
    /// exactly: `read_to_end` would double it (a block of 512 KiB for 256 read).
    fn read_more(&mut self, v: &mut Vec<u8>) -> io::Result<usize> {
        v.reserve_exact(self.chunk);
        (&mut self.inner).take(self.chunk as u64).read_to_end(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as the reader gave it: its bytes, or the length of a line too long.
    fn read_all(r: &mut LineReader<impl Read>) -> Vec<Result<Vec<u8>, usize>> {
        let mut out = Vec::new();
        while let Some(l) = r.next_line().expect("no read error") {
            out.push(match l {
                Line::Text(s) => Ok(s.as_bytes().to_vec()),
                Line::Bytes(b) => Ok(b.to_vec()),
                Line::TooLong(n) => Err(n),
            });
        }
        out
    }

    /// A line loses the one `\r` of its CRLF end, however it was read: as text from
    /// a block, as bytes, or as invalid UTF-8. A `\r` before that one is the line's.
    #[test]
    fn a_line_loses_one_carriage_return_however_it_is_read() {
        let mut r = YearResolver::with_year(crate::time::Zone::utc(), 2026);
        let mut lossy = String::new();
        let line = "Nov 22 08:00:00 mx postfix/smtpd[1]: connect from x[192.0.2.1]\r\r";
        let want = &line[..line.len() - 1];
        let text = stamp_text(line, line.len(), false, &mut r);
        assert_eq!((text.text, text.len), (want, line.len()));
        let bytes = stamp(line.as_bytes(), &mut r, &mut lossy);
        assert_eq!(
            (bytes.text, bytes.len, bytes.lossy),
            (want, line.len(), false)
        );
        let mut bad = line.as_bytes().to_vec();
        bad.insert(10, 0xff);
        let bad = stamp(&bad, &mut r, &mut lossy);
        assert!(bad.lossy);
        assert!(bad.text.ends_with("[192.0.2.1]\r"), "{:?}", bad.text);
    }

    #[test]
    fn caps_long_lines_and_keeps_going() {
        let mut data = vec![b'x'; 5000];
        data.extend_from_slice(b"\nshort\nlast");
        for chunk in [1, 7, 64, READ] {
            let mut r = LineReader::with_chunk(&data[..], 100, chunk);
            assert_eq!(r.next_line().unwrap(), Some(Line::TooLong(5000)));
            assert_eq!(r.next_line().unwrap(), Some(Line::Text("short")));
            assert_eq!(r.next_line().unwrap(), Some(Line::Text("last")));
            assert_eq!(r.next_line().unwrap(), None);
            assert_eq!(r.next_line().unwrap(), None);
        }
    }

    /// A line with invalid UTF-8 leaves its block (here the first 30 bytes' whole
    /// lines) as bytes; its neighbours are still handed out whole, and the next block
    /// is text again.
    #[test]
    fn invalid_utf8_falls_back_to_bytes_for_its_block_only() {
        let mut data = b"ok\nbad \xff here\nalso ok\n".to_vec();
        data.extend(std::iter::repeat_n(b'y', 40));
        data.extend_from_slice(b"\n\xc3\xa9t\xc3\xa9\n");
        let mut r = LineReader::with_chunk(&data[..], 100, 30);
        let mut kinds = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            kinds.push(match l {
                Line::Text(s) => format!("text {s}"),
                Line::Bytes(b) => format!("bytes {}", String::from_utf8_lossy(b)),
                Line::TooLong(n) => format!("long {n}"),
            });
        }
        assert_eq!(
            kinds,
            [
                "bytes ok".to_string(),
                "bytes bad \u{fffd} here".into(),
                "bytes also ok".into(),
                format!("text {}", "y".repeat(40)),
                "text été".into(),
            ]
        );
    }

    /// A reader that hands out at most a few bytes a call, and is interrupted now and
    /// then, as a pipe may be.
    struct Trickle<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        n: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.n += 1;
            let size = self.sizes[self.n % self.sizes.len()];
            if size == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let k = size.min(buf.len()).min(self.data.len());
            buf[..k].copy_from_slice(&self.data[..k]);
            self.data = &self.data[k..];
            Ok(k)
        }
    }

    proptest::proptest! {
        /// Whatever the block size, the reads' sizes and the bytes, the reader gives
        /// the input's lines split at `\n` (the last without one, if any), each too
        /// long one as its length; text blocks when the whole input is UTF-8.
        #[test]
        fn lines_are_the_input_split_at_newlines(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec![b'a', b'\r', 0xc3, 0xa9, 0xff, b' ']),
                    0..40,
                ),
                0..12,
            ),
            end in proptest::bool::ANY,
            max in 0usize..30,
            chunk in 1usize..50,
            sizes in proptest::collection::vec(0usize..20, 1..5),
        ) {
            let mut data = lines.join(&b'\n');
            if end && !lines.is_empty() {
                data.push(b'\n');
            }
            let mut want: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            if data.is_empty() || data.ends_with(b"\n") {
                want.pop();
            }
            let want: Vec<Result<Vec<u8>, usize>> = want
                .into_iter()
                .map(|l| if l.len() > max { Err(l.len()) } else { Ok(l.to_vec()) })
                .collect();
            let sizes = if sizes.iter().all(|&s| s == 0) { vec![1] } else { sizes };
            let trickle = Trickle { data: &data, sizes, n: 0 };
            let mut r = LineReader::with_chunk(trickle, max, chunk);
            proptest::prop_assert_eq!(read_all(&mut r), want);
            if std::str::from_utf8(&data).is_ok() {
                let mut r = LineReader::with_chunk(&data[..], max, chunk);
                while let Some(l) = r.next_line().unwrap() {
                    proptest::prop_assert!(!matches!(l, Line::Bytes(_)));
                }
            }
        }
    }
}
