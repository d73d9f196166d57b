//! Event time: the timestamp a log line carries, resolved to UTC milliseconds.
//!
//! Owns the conversion of the several syslog timestamp forms (classic `Nov 22 09:59:36`
//! with no year and no zone, RFC 3339, TAI64N) into [`Timestamp`], and the year
//! inference for classic timestamps. It never reads the system clock itself: the
//! reference year and the zone for zone-less stamps are handed in by the caller.

use chrono::{DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Days since 1970-01-01 of a proleptic Gregorian date, or None for a date that does
/// not exist (month 13, Feb 30). Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i64> {
    const DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let last = DAYS[month as usize - 1] + u32::from(month == 2 && leap);
    if day > last {
        return None;
    }
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// (year, month, day) of a count of days since 1970-01-01: the inverse of
/// [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub fn add_ms(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
    /// True for a time of the years 0000 to 9999, the ones RFC 3339 (and so a log
    /// line) can write. Between two of them, a difference never overflows.
    pub fn is_writable(self) -> bool {
        // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
        (-62_167_219_200_000..=253_402_300_799_999).contains(&self.0)
    }
    /// RFC 3339 in UTC, seconds precision (milliseconds when present).
    pub fn rfc3339(self) -> String {
        // Written by hand for the years of real logs: reports and the store write one
        // per offender, ban and failure, and chrono parses its format string each time
        // (issue 17: 3% of the daemon's store thread). Same text as chrono's.
        let days = self.0.div_euclid(86_400_000);
        let ms = self.0.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        if (0..=9999).contains(&y) {
            let mut out = String::with_capacity(24);
            let two = |out: &mut String, n: i64| {
                out.push(char::from(b'0' + (n / 10) as u8));
                out.push(char::from(b'0' + (n % 10) as u8));
            };
            two(&mut out, y / 100);
            two(&mut out, y % 100);
            out.push('-');
            two(&mut out, m);
            out.push('-');
            two(&mut out, d);
            out.push('T');
            two(&mut out, ms / 3_600_000);
            out.push(':');
            two(&mut out, ms / 60_000 % 60);
            out.push(':');
            two(&mut out, ms / 1000 % 60);
            if ms % 1000 != 0 {
                out.push('.');
                let frac = ms % 1000;
                out.push(char::from(b'0' + (frac / 100) as u8));
                two(&mut out, frac % 100);
            }
            out.push('Z');
            return out;
        }
        match Utc.timestamp_millis_opt(self.0) {
            LocalResult::Single(t) => {
                if self.0 % 1000 == 0 {
                    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                } else {
                    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
                }
            }
            _ => format!("@{}", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(ms) = s.strip_prefix('@') {
            return ms.parse().map(Timestamp).map_err(serde::de::Error::custom);
        }
        DateTime::parse_from_rfc3339(&s)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(serde::de::Error::custom)
    }
}

/// A time as written in the line, before the year and zone are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTime {
    /// Fully specified (RFC 3339 with offset, TAI64N).
    Absolute(Timestamp),
    /// Date and time without a zone (`2013-08-11 03:56:40`, RFC 3339 without offset).
    Naive {
        year: i32,
        month: u32,
        day: u32,
        ms_of_day: u32,
    },
    /// Classic BSD syslog: no year, no zone.
    NoYear {
        month: u32,
        day: u32,
        ms_of_day: u32,
    },
}

/// How zone-less timestamps are read: the zone the logging host wrote them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Local,
    Fixed(FixedOffset),
}

impl Zone {
    pub fn utc() -> Self {
        Zone::Fixed(FixedOffset::east_opt(0).expect("zero offset"))
    }

    /// Parses `local`, `UTC`, `Z` or `+HH:MM` / `-HH:MM`.
    pub fn parse(s: &str) -> Option<Zone> {
        match s {
            "local" => Some(Zone::Local),
            "UTC" | "utc" | "Z" => Some(Zone::utc()),
            _ => parse_offset(s.as_bytes()).map(Zone::Fixed),
        }
    }

    fn resolve(self, year: i32, month: u32, day: u32, ms_of_day: u32) -> Option<Timestamp> {
        let date = NaiveDate::from_ymd_opt(year, month, day)?;
        let naive = date.and_hms_milli_opt(
            ms_of_day / 3_600_000,
            (ms_of_day / 60_000) % 60,
            (ms_of_day / 1000) % 60,
            ms_of_day % 1000,
        )?;
        let ms = match self {
            // An ambiguous local time (the repeated hour when DST ends) takes the
            // earlier instant; a skipped one (DST start) is read as UTC+offset before.
            Zone::Local => match chrono::Local.from_local_datetime(&naive) {
                LocalResult::Single(t) => t.timestamp_millis(),
                LocalResult::Ambiguous(a, _) => a.timestamp_millis(),
                LocalResult::None => naive.and_utc().timestamp_millis(),
            },
            Zone::Fixed(off) => match off.from_local_datetime(&naive) {
                LocalResult::Single(t) => t.timestamp_millis(),
                _ => return None,
            },
        };
        Some(Timestamp(ms))
    }
}

/// Parses `+01:00`, `+0100`, `Z`.
pub fn parse_offset(b: &[u8]) -> Option<FixedOffset> {
    if b == b"Z" || b == b"z" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match b.first()? {
        b'+' => (1, &b[1..]),
        b'-' => (-1, &b[1..]),
        _ => return None,
    };
    let (h, m) = match rest.len() {
        5 if rest[2] == b':' => (num(&rest[0..2])?, num(&rest[3..5])?),
        4 => (num(&rest[0..2])?, num(&rest[2..4])?),
        2 => (num(&rest[0..2])?, 0),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h as i32 * 3600 + m as i32 * 60))
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')))
}

/// The date and zone of the last ISO stamp read in a stream, and the instant they
/// name: the lines of a log share them for a day, and reading them again (the date's
/// days since 1970, the zone's offset) was a third of the work of an ISO stamp.
#[derive(Debug, Clone, Copy, Default)]
pub struct IsoMemo {
    /// `YYYY-MM-DD`.
    date: [u8; 10],
    /// The zone text (at most [`MEMO_ZONE`] bytes) as a little-endian word, zero-padded,
    /// and the mask of its bytes: compared with the line's next eight bytes at once.
    zone: u64,
    zone_mask: u64,
    zone_len: u8,
    /// UTC milliseconds of the local midnight of that date in that zone; `None`: empty.
    midnight: Option<i64>,
}

/// The longest zone text an [`IsoMemo`] keeps (`+01:00`); longer ones are read every
/// time.
const MEMO_ZONE: usize = 6;

impl IsoMemo {
    /// The midnight kept for `date` (`YYYY-MM-DD`) and the zone at the start of `rest`,
    /// if they are the ones kept: `rest` starts with the zone kept, and a space or the
    /// end follows it. Returns the midnight and the zone's length.
    #[inline]
    pub fn at(&self, date: &[u8; 10], rest: &[u8]) -> Option<(i64, usize)> {
        let midnight = self.midnight?;
        let n = usize::from(self.zone_len);
        if *date != self.date {
            return None;
        }
        let zone = match rest.first_chunk::<8>() {
            Some(w) => (u64::from_le_bytes(*w) ^ self.zone) & self.zone_mask == 0,
            // Near the end of the line: byte by byte.
            None => rest.get(..n) == Some(&self.zone.to_le_bytes()[..n]),
        };
        (zone && rest.get(n).is_none_or(|&c| c == b' ')).then_some((midnight, n))
    }

    /// Keeps `midnight` for `date` in `zone`, in place of what was kept (no zone, a
    /// zone text longer than [`MEMO_ZONE`], or a date not of ten bytes is not kept: a
    /// stamp without a zone is no instant).
    pub fn keep(&mut self, date: &[u8], zone: &[u8], midnight: i64) {
        let Ok(date) = <[u8; 10]>::try_from(date) else {
            return;
        };
        if zone.is_empty() || zone.len() > MEMO_ZONE {
            return;
        }
        let mut z = [0u8; 8];
        z[..zone.len()].copy_from_slice(zone);
        self.date = date;
        self.zone = u64::from_le_bytes(z);
        self.zone_mask = u64::MAX >> (8 * (8 - zone.len()));
        self.zone_len = zone.len() as u8;
        self.midnight = Some(midnight);
    }
}

/// Turns [`LineTime`] into [`Timestamp`] for one stream of lines, inferring the year of
/// classic syslog stamps: it starts from a reference (the file's modification time for
/// a replayed file, "now" for a live source) and steps the year forward when the month
/// goes back by more than six months (December to January).
#[derive(Debug, Clone)]
pub struct YearResolver {
    zone: Zone,
    year: i32,
    last_month: Option<u32>,
    reference_month: u32,
    /// The UTC instant of the start of the last local hour resolved: consecutive lines
    /// share their hour, and asking the zone database per line costs a clock call.
    hour_cache: Option<((i32, u32, u32, u32), i64)>,
    /// The last ISO date and zone of the stream ([`crate::parse::syslog::parse_with`]).
    pub iso: IsoMemo,
}

impl YearResolver {
    pub fn new(zone: Zone, reference: Timestamp) -> Self {
        let t = Utc
            .timestamp_millis_opt(reference.0)
            .single()
            .unwrap_or_else(|| DateTime::<Utc>::from_timestamp(0, 0).expect("epoch"));
        YearResolver {
            zone,
            year: t.year(),
            last_month: None,
            reference_month: t.month(),
            hour_cache: None,
            iso: Default::default(),
        }
    }

    pub fn with_year(zone: Zone, year: i32) -> Self {
        YearResolver {
            zone,
            year,
            last_month: None,
            reference_month: 12,
            hour_cache: None,
            iso: Default::default(),
        }
    }

    pub fn resolve(&mut self, t: LineTime) -> Option<Timestamp> {
        match t {
            LineTime::Absolute(ts) => Some(ts),
            LineTime::Naive {
                year,
                month,
                day,
                ms_of_day,
            } => self.zone.resolve(year, month, day, ms_of_day),
            LineTime::NoYear {
                month,
                day,
                ms_of_day,
            } => {
                match self.last_month {
                    // The first stamp of the stream: a month after the reference month
                    // belongs to the year before (a file last written in January that
                    // starts in December).
                    None if month > self.reference_month + 1 => self.year -= 1,
                    Some(last) if month + 6 < last => self.year += 1,
                    Some(last) if last + 6 < month => self.year -= 1,
                    _ => {}
                }
                self.last_month = Some(month);
                // Feb 29 in a year without it: try the year before and after is wrong;
                // such a line cannot be placed and is skipped as unparsable time.
                self.local(self.year, month, day, ms_of_day)
            }
        }
    }

    fn local(&mut self, year: i32, month: u32, day: u32, ms_of_day: u32) -> Option<Timestamp> {
        let hour = ms_of_day / 3_600_000;
        let key = (year, month, day, hour);
        let start = match self.hour_cache {
            Some((k, start)) if k == key => start,
            _ => {
                let start = self.zone.resolve(year, month, day, hour * 3_600_000)?.0;
                self.hour_cache = Some((key, start));
                start
            }
        };
        Some(Timestamp(start + i64::from(ms_of_day - hour * 3_600_000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memo answers for its own date and zone only, the zone whole and followed by
    /// a space or the end, whether the line has eight bytes left after the clock or
    /// fewer.
    #[test]
    fn the_iso_memo_answers_for_its_date_and_zone_only() {
        let mut m = IsoMemo::default();
        assert_eq!(m.at(b"2026-11-22", b"+01:00 mx"), None, "empty");
        m.keep(b"2026-11-22", b"+01:00", 42);
        for (date, rest, want) in [
            (b"2026-11-22", &b"+01:00 mx postfix"[..], Some((42, 6))),
            (b"2026-11-22", b"+01:00", Some((42, 6))),
            (b"2026-11-22", b"+01:00 ", Some((42, 6))),
            (b"2026-11-23", b"+01:00 mx postfix", None),
            (b"2026-11-22", b"+01:30 mx postfix", None),
            (b"2026-11-22", b"+01:001 mx postfix", None),
            (b"2026-11-22", b"+01:0", None),
            (b"2026-11-22", b"+01:01", None),
            (b"2026-11-22", b"Z mx postfix", None),
        ] {
            assert_eq!(
                m.at(date, rest),
                want,
                "{:?}",
                String::from_utf8_lossy(rest)
            );
        }
        m.keep(b"2026-11-22", b"Z", 7);
        assert_eq!(m.at(b"2026-11-22", b"Z mx postfix"), Some((7, 1)));
        assert_eq!(m.at(b"2026-11-22", b"Z"), Some((7, 1)));
        assert_eq!(m.at(b"2026-11-22", b"Zx"), None);
        assert_eq!(m.at(b"2026-11-22", b"+01:00 mx postfix"), None);
        // Not kept: too long a zone, or no zone; the memo stays as it was.
        m.keep(b"2026-11-22", b"+01:00:00", 9);
        m.keep(b"2026-11-22", b"", 9);
        assert_eq!(m.at(b"2026-11-22", b"Z mx postfix"), Some((7, 1)));
    }

    /// The hand-written date arithmetic and RFC 3339 text against chrono's, for every
    /// day from 1900 to 2200 (both ways) and a spread of instants with and without
    /// milliseconds.
    #[test]
    fn hand_written_dates_agree_with_chrono() {
        let mut date = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2200, 12, 31).unwrap();
        while date <= end {
            let days = date
                .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
                .num_days();
            assert_eq!(
                days_from_civil(date.year(), date.month(), date.day()),
                Some(days),
                "{date}"
            );
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                (y, m, d),
                (
                    i64::from(date.year()),
                    i64::from(date.month()),
                    i64::from(date.day())
                )
            );
            date = date.succ_opt().unwrap();
        }
        for (y, m, d) in [
            (2026, 2, 29),
            (2026, 13, 1),
            (2026, 4, 31),
            (2026, 0, 1),
            (2026, 1, 0),
            (1900, 2, 29),
        ] {
            assert_eq!(days_from_civil(y, m, d), None, "{y}-{m}-{d}");
        }
        assert!(days_from_civil(2000, 2, 29).is_some() && days_from_civil(2028, 2, 29).is_some());
        let chrono_text = |ms: i64| {
            let t = Utc.timestamp_millis_opt(ms).unwrap();
            if ms % 1000 == 0 {
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            } else {
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            }
        };
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for i in 0..200_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // From 1000 to 3000, half of them on whole seconds.
            let mut ms = -30_610_224_000_000 + (x % 63_113_904_000_000) as i64;
            if i % 2 == 0 {
                ms -= ms.rem_euclid(1000);
            }
            assert_eq!(Timestamp(ms).rfc3339(), chrono_text(ms), "{ms}");
        }
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(-1).rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp(1_795_305_600_007).rfc3339(),
            "2026-11-22T00:00:00.007Z"
        );
    }

    #[test]
    fn year_rolls_over_at_new_year() {
        let mut r = YearResolver::with_year(Zone::utc(), 2025);
        let dec = r.resolve(LineTime::NoYear {
            month: 12,
            day: 31,
            ms_of_day: 86_399_000,
        });
        let jan = r.resolve(LineTime::NoYear {
            month: 1,
            day: 1,
            ms_of_day: 1000,
        });
        assert_eq!(dec.unwrap().rfc3339(), "2025-12-31T23:59:59Z");
        assert_eq!(jan.unwrap().rfc3339(), "2026-01-01T00:00:01Z");
    }

    #[test]
    fn file_written_in_january_that_starts_in_december() {
        let jan_2026 = Timestamp::from_secs(1_767_225_600 + 86_400 * 3);
        let mut r = YearResolver::new(Zone::utc(), jan_2026);
        let dec = r
            .resolve(LineTime::NoYear {
                month: 12,
                day: 30,
                ms_of_day: 0,
            })
            .unwrap();
        assert_eq!(dec.rfc3339(), "2025-12-30T00:00:00Z");
        let jan = r
            .resolve(LineTime::NoYear {
                month: 1,
                day: 2,
                ms_of_day: 0,
            })
            .unwrap();
        assert_eq!(jan.rfc3339(), "2026-01-02T00:00:00Z");
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset(b"+0100").unwrap().local_minus_utc(), 3600);
        assert_eq!(parse_offset(b"-05:30").unwrap().local_minus_utc(), -19800);
        assert!(parse_offset(b"+25:00").is_none());
        assert!(Zone::parse("Europe/Paris").is_none());
    }
}
