//! The syslog prefix: timestamp, optional host, and the program tag.
//!
//! Forms recognised (all seen in real mail logs):
//! - classic BSD syslog `Nov 22 09:59:36 host tag[pid]: ` (day space-padded, zero-padded
//!   or bare; no year, no zone);
//! - RFC 3339 as rsyslog's high-precision format and `journalctl -o short-iso` write it
//!   (`2026-11-22T09:59:36.123456+01:00`, `...+0100`, `...Z`);
//! - `2013-08-11 03:56:40 ` as Dovecot's `log_timestamp` may be configured;
//! - TAI64N `@4000000000000000xxxxxxxx` from daemontools/s6 loggers;
//! - any of these without a host field (Dovecot's own `log_path`, multilog).
//!
//! Pure: bytes in, borrowed slices out. The year and zone are resolved later.

use crate::time::{IsoMemo, LineTime, Timestamp, days_from_civil, parse_offset};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix<'a> {
    pub time: LineTime,
    pub host: Option<&'a str>,
    /// Everything after the timestamp and host: starts with the program tag.
    pub rest: &'a str,
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Dovecot process names that may start a line with no host field and whose tag
/// may contain a space (Dovecot 2.4 writes `auth(USER,ADDR,...)<id>: ` where USER is
/// whatever the client sent).
const DOVECOT_PROCESSES: [&str; 12] = [
    "auth",
    "auth-worker",
    "imap-login",
    "pop3-login",
    "submission-login",
    "managesieve-login",
    "imap",
    "pop3",
    "lmtp",
    "submission",
    "managesieve",
    "master",
];

/// Reads the syslog prefix of `line` (see the module documentation).
#[inline]
pub fn parse(line: &str) -> Option<Prefix<'_>> {
    parse_with(line, &mut IsoMemo::default())
}

/// [`parse`], for a stream of lines: `memo` carries the last ISO date and zone from one
/// line to the next.
#[inline]
pub fn parse_with<'a>(line: &'a str, memo: &mut IsoMemo) -> Option<Prefix<'a>> {
    let b = line.as_bytes();
    let (time, used) = if b.first() == Some(&b'@') {
        tai64n(b)?
    } else if b.len() >= 4 && b[..4].iter().all(u8::is_ascii_digit) {
        iso(b, memo)?
    } else {
        classic(b)?
    };
    let after = line[used..].trim_start_matches(' ');
    if after.is_empty() {
        return None;
    }
    // The host or the tag: a short word, a plain loop finds its end.
    let word_end = after.bytes().position(|c| c == b' ').unwrap_or(after.len());
    let word = &after[..word_end];
    let hostless =
        word.ends_with(':') || (word.as_bytes().contains(&b'(') && starts_with_process_paren(word));
    if hostless {
        return Some(Prefix {
            time,
            host: None,
            rest: after,
        });
    }
    let rest = after[word_end..].trim_start_matches(' ');
    if rest.is_empty() {
        return None;
    }
    Some(Prefix {
        time,
        host: Some(word),
        rest,
    })
}

fn starts_with_process_paren(word: &str) -> bool {
    DOVECOT_PROCESSES
        .iter()
        .any(|p| word.len() > p.len() && word.starts_with(p) && word.as_bytes()[p.len()] == b'(')
}

/// The first `n` bytes of `b` as a decimal number, in one pass.
#[inline]
fn digits(b: &[u8], n: usize) -> Option<u32> {
    let mut v = 0;
    for &c in b.get(..n)? {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u32::from(d);
    }
    Some(v)
}

/// Two decimal digits as a number.
#[inline]
fn two(a: u8, b: u8) -> Option<u32> {
    let (x, y) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
    (x < 10 && y < 10).then_some(u32::from(x) * 10 + u32::from(y))
}

/// The bytes of `x` that are no decimal digit, each as its top bit (`x` a little-endian
/// word of eight bytes, each less `'0'` by xor). Exact up to the first such byte; past
/// it a carry may mark a digit too.
#[inline]
fn not_digits(x: u64) -> u64 {
    // A byte of 0 to 9 stays under 0x80 with 0x76 added; any other has its top bit
    // set by then, or had it already.
    (x.wrapping_add(0x7676_7676_7676_7676) | x) & 0x8080_8080_8080_8080
}

/// `HH:MM:SS[.frac]` → (ms of day, bytes used). `HH:MM:SS` and up to eight digits of
/// the fraction are each checked as one word (issue 17: byte by byte, the clock was a
/// sixth of reading a line's prefix).
fn clock(b: &[u8]) -> Option<(u32, usize)> {
    // Each byte xor its character in `00:00:00`: digits 0 to 9, the colons 0.
    let x = u64::from_le_bytes(*b.first_chunk::<8>()?) ^ u64::from_le_bytes(*b"00:00:00");
    if not_digits(x) != 0 || x & 0x0000_ff00_00ff_0000 != 0 {
        return None;
    }
    let t = x.to_le_bytes().map(u32::from);
    let (h, m, s) = (t[0] * 10 + t[1], t[3] * 10 + t[4], t[6] * 10 + t[7]);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut used = 8;
    let mut ms = 0;
    if b.get(8) == Some(&b'.') {
        // Milliseconds from the first three digits of the fraction; at most nine.
        let f = &b[9..];
        // The next eight bytes as one word; near the end of the text, zero bytes
        // (no digit) in place of the missing ones.
        let w = match f.first_chunk::<8>() {
            Some(w) => *w,
            None => {
                let mut w = [0u8; 8];
                w[..f.len()].copy_from_slice(f);
                w
            }
        };
        let y = u64::from_le_bytes(w) ^ u64::from_le_bytes(*b"00000000");
        let bad = not_digits(y);
        let n = if bad == 0 {
            // Eight digits (so eight bytes of the text: a zero byte is none): a ninth
            // may follow, not a tenth.
            8 + f[8..]
                .iter()
                .take(2)
                .take_while(|c| c.is_ascii_digit())
                .count()
        } else {
            (bad.trailing_zeros() / 8) as usize
        };
        let first = y.to_le_bytes();
        if n == 0 || n > 9 {
            return None;
        }
        let d = |i: usize| if i < n { u32::from(first[i]) } else { 0 };
        ms = d(0) * 100 + d(1) * 10 + d(2);
        used = 9 + n;
    }
    // A leap second is read as the last millisecond of the minute before.
    let s = s.min(59);
    Some(((h * 3600 + m * 60 + s) * 1000 + ms, used))
}

fn classic(b: &[u8]) -> Option<(LineTime, usize)> {
    if b.len() < 15 {
        return None;
    }
    let month = MONTHS.iter().position(|m| &b[..3] == *m)? as u32 + 1;
    if b[3] != b' ' {
        return None;
    }
    let mut i = 4;
    if b[i] == b' ' {
        i += 1;
    }
    let nd = b[i..]
        .iter()
        .take(3)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if nd == 0 || nd > 2 {
        return None;
    }
    let day = digits(&b[i..], nd)?;
    if !(1..=31).contains(&day) {
        return None;
    }
    i += nd;
    if b.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let (ms_of_day, used) = clock(&b[i..])?;
    i += used;
    if i < b.len() && b[i] != b' ' {
        return None;
    }
    Some((
        LineTime::NoYear {
            month,
            day,
            ms_of_day,
        },
        i,
    ))
}

fn iso(b: &[u8], memo: &mut IsoMemo) -> Option<(LineTime, usize)> {
    // `YYYY-MM-DD` and the `T` or space after it, at fixed places.
    let d = b.first_chunk::<11>()?;
    if d[4] != b'-' || d[7] != b'-' || !matches!(d[10], b'T' | b' ') {
        return None;
    }
    let (ms_of_day, used) = clock(&b[11..])?;
    let mut i = 11 + used;
    // The same date and zone as the line before (read and checked then), the zone
    // ending where a scan for its end would stop: no scan.
    let date = d.first_chunk::<10>()?;
    if let Some((midnight, zone_len)) = memo.at(date, &b[i..]) {
        return Some((
            LineTime::Absolute(Timestamp(midnight + i64::from(ms_of_day))),
            i + zone_len,
        ));
    }
    // Not the memo's date and zone (it would have matched above): read them.
    let zone_len = b[i..].iter().take_while(|&&c| c != b' ').count();
    let zone = &b[i..i + zone_len];
    i += zone_len;
    let year = (two(d[0], d[1])? * 100 + two(d[2], d[3])?) as i32;
    let (month, day) = (two(d[5], d[6])?, two(d[8], d[9])?);
    let days = days_from_civil(year, month, day)?;
    if zone_len == 0 {
        return Some((
            LineTime::Naive {
                year,
                month,
                day,
                ms_of_day,
            },
            i,
        ));
    }
    let off = parse_offset(zone)?;
    let midnight = days * 86_400_000 - i64::from(off.local_minus_utc()) * 1000;
    memo.keep(&d[..10], zone, midnight);
    Some((
        LineTime::Absolute(Timestamp(midnight + i64::from(ms_of_day))),
        i,
    ))
}

/// TAI64N label: `@` + 16 hex digits of 2^62 + TAI seconds + 8 hex digits of nanoseconds.
/// Converted as tai64nlocal does (TAI - UTC taken as 10 s, leap seconds ignored).
fn tai64n(b: &[u8]) -> Option<(LineTime, usize)> {
    if b.len() < 25 {
        return None;
    }
    let hex = std::str::from_utf8(&b[1..25]).ok()?;
    if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let secs = u64::from_str_radix(&hex[..16], 16).ok()?;
    let nanos = u32::from_str_radix(&hex[16..], 16).ok()?;
    let base = 1u64 << 62;
    if secs < base || nanos >= 1_000_000_000 {
        return None;
    }
    let unix = i64::try_from(secs - base).ok()? - 10;
    let ms = unix.checked_mul(1000)? + i64::from(nanos / 1_000_000);
    Some((LineTime::Absolute(Timestamp(ms)), 25))
}

/// A program tag `NAME[PID]: ` or `NAME: ` at the start of `rest`.
/// Returns (name, pid, message). Names are `[A-Za-z0-9_./-]` (Postfix syslog names
/// like `postfix/submission/smtpd`, `postfix-in/smtpd`).
pub fn tag(rest: &str) -> Option<(&str, Option<u32>, &str)> {
    let n = super::scan::run_of(rest.as_bytes(), super::scan::PROGRAM);
    if n == 0 {
        return None;
    }
    let name = &rest[..n];
    let mut after = &rest[n..];
    let mut pid = None;
    if let Some(p) = after.strip_prefix('[') {
        // One to nine digits (a tenth is no `]`), then the `]`, read in one pass.
        let (mut n, mut digits) = (0u32, 0);
        for &c in p.as_bytes().iter().take(9) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            n = n * 10 + u32::from(d);
            digits += 1;
        }
        if digits == 0 || p.as_bytes().get(digits) != Some(&b']') {
            return None;
        }
        pid = Some(n);
        after = &p[digits + 1..];
    }
    let msg = after
        .strip_prefix(": ")
        .or_else(|| (after == ":").then_some(""))?;
    Some((name, pid, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_with_host() {
        let p = parse("Nov  4 09:11:01 mail postfix/submission/smtpd[27133]: warning: x").unwrap();
        assert_eq!(p.host, Some("mail"));
        assert_eq!(
            p.time,
            LineTime::NoYear {
                month: 11,
                day: 4,
                ms_of_day: 33_061_000
            }
        );
        assert_eq!(
            tag(p.rest),
            Some(("postfix/submission/smtpd", Some(27133), "warning: x"))
        );
    }

    /// Pids of one to nine digits, and the fraction of a second to nine digits; the
    /// rest is no tag and no time.
    #[test]
    fn pids_and_fractions_at_their_bounds() {
        assert_eq!(tag("p[1]: x"), Some(("p", Some(1), "x")));
        assert_eq!(tag("p[999999999]: x"), Some(("p", Some(999_999_999), "x")));
        assert_eq!(tag("p[007]:"), Some(("p", Some(7), "")));
        assert_eq!(tag("p: x"), Some(("p", None, "x")));
        for bad in [
            "p[1234567890]: x",
            "p[4294967295]: x",
            "p[]: x",
            "p[12a]: x",
            "p[1: x",
            "p[1]x",
        ] {
            assert_eq!(tag(bad), None, "{bad}");
        }
        let ms = |s: &str| clock(s.as_bytes());
        assert_eq!(ms("00:00:01.5 x"), Some((1500, 10)));
        assert_eq!(ms("00:00:01.05"), Some((1050, 11)));
        assert_eq!(ms("23:59:59.123456789"), Some((86_399_123, 18)));
        assert_eq!(ms("00:00:00.999 "), Some((999, 12)));
        assert_eq!(ms("00:00:01 x"), Some((1000, 8)));
        assert_eq!(ms("00:00:00.1234567890"), None);
        assert_eq!(ms("00:00:00. x"), None);
        assert_eq!(ms("24:00:00"), None);
    }

    /// The clock as it was read byte by byte before the word-at-a-time reading: the
    /// model the word reading must agree with.
    fn clock_bytewise(b: &[u8]) -> Option<(u32, usize)> {
        let t = b.get(..8)?;
        if t[2] != b':' || t[5] != b':' {
            return None;
        }
        let (h, m, s) = (two(t[0], t[1])?, two(t[3], t[4])?, two(t[6], t[7])?);
        if h > 23 || m > 59 || s > 60 {
            return None;
        }
        let mut used = 8;
        let mut ms = 0;
        if b.get(8) == Some(&b'.') {
            let f = &b[9..];
            let mut n = 0;
            while let Some(&c) = f.get(n) {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                if n < 3 {
                    ms = ms * 10 + u32::from(d);
                }
                n += 1;
                if n > 9 {
                    return None;
                }
            }
            if n == 0 {
                return None;
            }
            for _ in n..3 {
                ms *= 10;
            }
            used = 9 + n;
        }
        Some(((h * 3600 + m * 60 + s.min(59)) * 1000 + ms, used))
    }

    proptest::proptest! {
        /// Clocks of every shape (digits, colons, dots, other bytes, any length, near
        /// the end of the text or not) read as the byte-by-byte reading reads them.
        #[test]
        fn the_clock_reads_as_byte_by_byte(
            head in proptest::collection::vec(
                proptest::sample::select(b"0123456789:.".to_vec()), 0..12),
            digits in proptest::collection::vec(
                proptest::sample::select(b"0123456789".to_vec()), 0..12),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..10),
            (h, m, s) in (0u32..26, 0u32..62, 0u32..62),
            (at, byte) in (0usize..9, proptest::sample::select(b"0123456789:.;? \xff".to_vec())),
            form in 0u8..4,
        ) {
            let mut b = match form {
                // A clock, a fraction of any length, then anything.
                0 => format!("{h:02}:{m:02}:{s:02}.").into_bytes(),
                1 => format!("{h:02}:{m:02}:{s:02}").into_bytes(),
                // A clock with one byte of it, or its dot, changed.
                2 => {
                    let mut c = format!("{h:02}:{m:02}:{s:02}.").into_bytes();
                    c[at] = byte;
                    c
                }
                _ => head,
            };
            b.extend_from_slice(&digits);
            b.extend_from_slice(&tail);
            proptest::prop_assert_eq!(clock(&b), clock_bytewise(&b), "{:?}", String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn hostless_and_odd_days() {
        let p = parse("Aug 3 15:30:49 pop3-login: Info: Aborted").unwrap();
        assert_eq!(p.host, None);
        let p = parse("Jul 02 13:49:31 hostname dovecot[442]: pop3-login: x").unwrap();
        assert_eq!(p.host, Some("hostname"));
        let p = parse("Aug 30 00:10:57 auth(a b,192.0.2.1,sasl:login)<X>: Info: sql: y").unwrap();
        assert_eq!(p.host, None);
    }

    #[test]
    fn iso_and_tai() {
        let p = parse("2026-11-22T09:59:36.123456+01:00 mx postfix/smtpd[1]: connect").unwrap();
        assert_eq!(p.time, LineTime::Absolute(Timestamp(1_795_337_976_123)));
        let p = parse("2026-11-22T09:59:36+0100 mx postfix/smtpd[1]: connect").unwrap();
        assert_eq!(p.time, LineTime::Absolute(Timestamp(1_795_337_976_000)));
        let p = parse("2013-08-11 03:56:40 auth-worker(default): Info: pam(u,1.2.3.4): x").unwrap();
        assert!(matches!(p.time, LineTime::Naive { year: 2013, .. }));
        assert_eq!(p.host, None);
        let p = parse("@400000004c91b044077a9e94 imap-login: Info: Aborted").unwrap();
        assert_eq!(p.time, LineTime::Absolute(Timestamp(1_284_616_250_125)));
    }

    /// ISO stamps in runs of one date and zone, with jumps between them, read as
    /// chrono reads them.
    #[test]
    fn iso_stamps_read_alike_whatever_came_before() {
        let zones = ["Z", "+01:00", "-05:30", "+0100", "-0000", "+14:00"];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut prev = None;
        let mut memo = IsoMemo::default();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Runs of one date and zone, as in a log, with jumps between them.
            let (date, zone) = match prev {
                Some(p) if !x.is_multiple_of(5) => p,
                _ => {
                    let days = (x >> 8) % 60_000;
                    let d = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                        + chrono::Days::new(days);
                    (d, zones[(x >> 40) as usize % zones.len()])
                }
            };
            prev = Some((date, zone));
            let secs = (x >> 20) % 86_400;
            let frac = (x >> 45) % 1_000_000;
            let stamp = format!(
                "{}T{:02}:{:02}:{:02}.{frac:06}{zone}",
                date.format("%Y-%m-%d"),
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            );
            let line = format!("{stamp} mx postfix/smtpd[1]: connect");
            let p = parse_with(&line, &mut memo).unwrap_or_else(|| panic!("{line}"));
            // chrono reads the zone with a colon only.
            let colon = match zone.len() {
                5 => format!("{}:{}", &zone[..3], &zone[3..]),
                _ => zone.to_string(),
            };
            let rfc = format!("{}{colon}", &stamp[..stamp.len() - zone.len()]);
            let want = chrono::DateTime::parse_from_rfc3339(&rfc)
                .unwrap_or_else(|e| panic!("{rfc}: {e}"))
                .timestamp_millis();
            assert_eq!(p.time, LineTime::Absolute(Timestamp(want)), "{line}");
        }
        // A naive stamp after a zoned one of the same date, and a bad date after a good
        // one: neither reads what was kept.
        let good = "2026-11-22T09:59:36+01:00 mx t: x";
        assert!(parse_with(good, &mut memo).is_some());
        let p = parse_with("2026-11-22 09:59:36 auth: x", &mut memo).unwrap();
        assert!(matches!(
            p.time,
            LineTime::Naive {
                year: 2026,
                month: 11,
                day: 22,
                ..
            }
        ));
        assert!(parse_with(good, &mut memo).is_some());
        assert!(parse_with("2026-11-31T09:59:36+01:00 mx t: x", &mut memo).is_none());
        assert!(parse_with(good, &mut memo).is_some());
        assert!(parse_with("2026-11-22T09:59:36+25:00 mx t: x", &mut memo).is_none());
        assert!(parse_with(good, &mut memo).is_some());
        assert!(parse_with("2026-11-22T25:59:36+01:00 mx t: x", &mut memo).is_none());
        // Seven bytes of zone are not kept, and read alike every time.
        let long = "2026-11-22T09:59:36.5+01:00:0 mx t: x";
        assert_eq!(parse_with(long, &mut memo), parse(long));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("").is_none());
        assert!(parse("Foo 12 00:00:00 h t: x").is_none());
        assert!(parse("Nov 32 00:00:00 h t: x").is_none());
        assert!(parse("2026-13-01T00:00:00Z h t: x").is_none());
        assert!(parse("@4000").is_none());
    }
}
