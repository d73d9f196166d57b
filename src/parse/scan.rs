//! Small, linear-time scanning helpers shared by the parsers. No allocation, no regex.

use std::net::IpAddr;

// Searches for ASCII bytes and ASCII needles: a match can never fall inside a multi-byte
// UTF-8 sequence, so every index returned is a char boundary. memchr/memmem instead of
// `str::find`, which builds a general searcher on every call.

/// Index of the first `b` in `s`.
pub fn find_byte(s: &str, b: u8) -> Option<usize> {
    memchr::memchr(b, s.as_bytes())
}

/// Index of the last `b` in `s`.
pub fn rfind_byte(s: &str, b: u8) -> Option<usize> {
    memchr::memrchr(b, s.as_bytes())
}

/// `s` split around its first `b`.
pub fn split_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    find_byte(s, b).map(|i| (&s[..i], &s[i + 1..]))
}

/// `s` split around its last `b`.
pub fn rsplit_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    rfind_byte(s, b).map(|i| (&s[..i], &s[i + 1..]))
}

/// Index of the first occurrence of the ASCII `needle`: each place its first byte
/// stands, found with memchr, is compared. The needles are a few bytes, the lines
/// short: `memmem` built a searcher for every call.
pub fn find_str(s: &str, needle: &str) -> Option<usize> {
    find_bytes(s.as_bytes(), needle.as_bytes())
}

/// [`find_str`] of bytes.
pub fn find_bytes(b: &[u8], n: &[u8]) -> Option<usize> {
    let Some(&first) = n.first() else {
        return Some(0);
    };
    let mut from = 0;
    while let Some(i) = memchr::memchr(first, &b[from..]) {
        let at = from + i;
        if b[at..].starts_with(n) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Index of the last occurrence of the ASCII `needle` ([`find_str`] from the end).
pub fn rfind_str(s: &str, needle: &str) -> Option<usize> {
    let (b, n) = (s.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return Some(b.len());
    };
    let mut end = b.len();
    while let Some(at) = memchr::memrchr(first, &b[..end]) {
        if b[at..].starts_with(n) {
            return Some(at);
        }
        end = at;
    }
    None
}

/// Where the ASCII `needle` stands in `s`, last first, not overlapping (a non-empty
/// `needle`; an empty one is found nowhere).
pub fn rfind_iter<'a>(s: &'a str, needle: &'a str) -> impl Iterator<Item = usize> + 'a {
    let mut end = s.len();
    std::iter::from_fn(move || {
        if needle.is_empty() {
            return None;
        }
        let at = rfind_str(&s[..end], needle)?;
        end = at;
        Some(at)
    })
}

/// `s` split around the first occurrence of the ASCII `needle`.
pub fn split_str<'a>(s: &'a str, needle: &str) -> Option<(&'a str, &'a str)> {
    find_str(s, needle).map(|i| (&s[..i], &s[i + needle.len()..]))
}

/// The pieces of `s` between occurrences of the ASCII `sep` (like `str::split`; an
/// empty `sep` splits nothing).
pub fn fields<'a>(s: &'a str, sep: &'a str) -> impl Iterator<Item = &'a str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match split_str(r, sep).filter(|_| !sep.is_empty()) {
            Some((piece, after)) => {
                rest = Some(after);
                Some(piece)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Parses an IP address from the whole of `s` (no brackets, no port, no zone), made
/// canonical: `::ffff:192.0.2.1` is 192.0.2.1.
///
/// One pass over the bytes for the two forms a mail log writes (dotted quad, IPv6 of
/// hex groups); the standard library's parser only for IPv6 with an IPv4 tail. Both
/// fast paths read exactly what the standard library reads (tests below).
pub fn ip(s: &str) -> Option<IpAddr> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 45 {
        return None;
    }
    if b.len() <= 15
        && let Some(v4) = ipv4(b)
    {
        return Some(IpAddr::V4(v4));
    }
    match ipv6(b) {
        Ipv6::Addr(a) => Some(crate::addr::canonical(IpAddr::V6(a))),
        Ipv6::Not => None,
        // A `.` where a group ends: perhaps an IPv4 tail (`::ffff:192.0.2.1`).
        Ipv6::Dotted => s.parse().ok().map(crate::addr::canonical),
    }
}

/// Hex digit value, or 16 for any other byte.
const HEX: [u8; 256] = {
    let mut t = [16u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

enum Ipv6 {
    Addr(std::net::Ipv6Addr),
    /// Not an address in any form.
    Not,
    /// Met a `.`: left to the general parser.
    Dotted,
}

/// IPv6 of hex groups only (no embedded IPv4, no zone) as the standard library reads
/// it: one to four hex digits a group, eight groups, or fewer with one `::`.
fn ipv6(b: &[u8]) -> Ipv6 {
    let mut g = [0u16; 8];
    let mut n = 0usize;
    // Where the `::` stands, in groups.
    let mut gap = None;
    let mut i = 0;
    if b.len() >= 2 && b[0] == b':' && b[1] == b':' {
        if b.len() == 2 {
            return Ipv6::Addr(std::net::Ipv6Addr::UNSPECIFIED);
        }
        gap = Some(0);
        i = 2;
    }
    loop {
        let (mut v, start) = (0u32, i);
        while i < b.len() && i - start < 5 {
            let x = HEX[b[i] as usize];
            if x > 15 {
                break;
            }
            v = (v << 4) | u32::from(x);
            i += 1;
        }
        let d = i - start;
        if d == 0 || d > 4 || n == 8 {
            return if i < b.len() && b[i] == b'.' {
                Ipv6::Dotted
            } else {
                Ipv6::Not
            };
        }
        g[n] = v as u16;
        n += 1;
        if i == b.len() {
            break;
        }
        match b[i] {
            b':' => {}
            b'.' => return Ipv6::Dotted,
            _ => return Ipv6::Not,
        }
        i += 1;
        if i < b.len() && b[i] == b':' {
            if gap.is_some() {
                return Ipv6::Not;
            }
            gap = Some(n);
            i += 1;
            if i == b.len() {
                break;
            }
        } else if i == b.len() {
            return Ipv6::Not;
        }
    }
    match gap {
        None if n != 8 => return Ipv6::Not,
        None => {}
        Some(_) if n > 7 => return Ipv6::Not,
        Some(at) => {
            let tail = n - at;
            g.copy_within(at..n, 8 - tail);
            g[at..8 - tail].fill(0);
        }
    }
    Ipv6::Addr(std::net::Ipv6Addr::from(g))
}

/// Dotted-quad IPv4 as the standard library reads it (four decimal parts of one to
/// three digits, at most 255, no leading zero), in one pass: most addresses in a mail
/// log are IPv4, and this is several times faster than the general parser.
fn ipv4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut n, mut v, mut digits) = (0usize, 0u32, 0u32);
    for &c in b {
        if c == b'.' {
            if digits == 0 || n == 3 {
                return None;
            }
            octets[n] = v as u8;
            n += 1;
            (v, digits) = (0, 0);
            continue;
        }
        let d = c.wrapping_sub(b'0');
        // Not a digit, or a digit after a leading zero.
        if d > 9 || (digits == 1 && v == 0) {
            return None;
        }
        v = v * 10 + u32::from(d);
        digits += 1;
        if v > 255 {
            return None;
        }
    }
    if digits == 0 || n != 3 {
        return None;
    }
    octets[3] = v as u8;
    Some(std::net::Ipv4Addr::from(octets))
}

/// Characters Postfix accepts in a validated host name (`valid_hostname()`), plus
/// `unknown`. A name that fails this check cannot have been written by Postfix.
const HOSTNAME: u8 = 1;
/// Program names in a syslog tag: the host name bytes and `/`.
pub(crate) const PROGRAM: u8 = 2;
/// Byte classes for the scans that run on every line: one table lookup a byte.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_' {
            t[b] = HOSTNAME | PROGRAM;
        }
        b += 1;
    }
    t[b'/' as usize] = PROGRAM;
    t
};

/// How many bytes at the start of `s` are of `class`.
pub(crate) fn run_of(s: &[u8], class: u8) -> usize {
    // Four bytes a step while all four are of the class, then one at a time.
    let is = |b: u8| CLASS[b as usize] & class != 0;
    let mut i = 0;
    while let Some(&[a, b, c, d]) = s.get(i..i + 4) {
        if !(is(a) && is(b) && is(c) && is(d)) {
            break;
        }
        i += 4;
    }
    while i < s.len() && is(s[i]) {
        i += 1;
    }
    i
}

/// Parses Postfix's `NAME[ADDR]` with an optional `:PORT` at the start of `s`.
/// Returns the address and the rest after it. The name must be a valid host name:
/// Postfix writes either a validated reverse-DNS name or `unknown` there, so a `[`
/// cannot occur inside it and the first `[` is the one Postfix wrote.
pub fn name_addr(s: &str) -> Option<(IpAddr, &str)> {
    // One pass: the name's bytes, and the first byte that is not one must be the `[`.
    let open = run_of(s.as_bytes(), HOSTNAME);
    if open == 0 || open > 255 || s.as_bytes().get(open) != Some(&b'[') {
        return None;
    }
    let after = &s[open + 1..];
    // An address takes at most 45 bytes: its `]` is no further.
    let close = memchr::memchr(b']', &after.as_bytes()[..after.len().min(46)])?;
    let addr = ip(&after[..close])?;
    let mut rest = &after[close + 1..];
    // `smtpd_client_port_logging = yes` appends `:PORT`.
    if let Some(p) = rest.strip_prefix(':') {
        let digits = p.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && digits <= 5 {
            rest = &p[digits..];
        }
    }
    Some((addr, rest))
}

/// One to nine decimal digits, the whole of `s`, as a number.
pub fn parse_u32(s: &str) -> Option<u32> {
    parse_u32_bytes(s.as_bytes())
}

/// [`parse_u32`] of bytes.
pub fn parse_u32_bytes(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most nine digits: no overflow.
    Some(s.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
}

/// Leading decimal digits of `s` as a number, with the rest.
pub fn leading_u32(s: &str) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    Some((parse_u32(&s[..n])?, &s[n..]))
}

/// ASCII case-insensitive `starts_with`.
pub fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// A token of `[A-Za-z0-9_.-]` characters at the start of `s`.
pub fn token(s: &str) -> (&str, &str) {
    let n = run_of(s.as_bytes(), HOSTNAME);
    (&s[..n], &s[n..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of a class ends at its first byte outside it, at every length and
    /// place (four bytes a step, then one).
    #[test]
    fn a_run_ends_at_its_first_byte_outside_the_class() {
        for len in 0..13 {
            let name = "ab.c-d_e9f/g".repeat(2)[..len].to_string();
            assert_eq!(run_of(name.as_bytes(), PROGRAM), len, "{name:?}");
            for stop in ["[", " ", ":", "\u{e9}", "\0"] {
                let s = format!("{name}{stop}xyzw");
                assert_eq!(run_of(s.as_bytes(), PROGRAM), len, "{s:?}");
            }
        }
        assert_eq!(run_of(b"mail01.example.org[", HOSTNAME), 18);
        assert_eq!(run_of(b"a/b", HOSTNAME), 1);
    }

    /// The searches by first byte find what `str`'s do, at the ends, with overlaps,
    /// repeated first bytes and empty needles.
    #[test]
    fn searches_agree_with_the_standard_library() {
        let hay = [
            "",
            "a",
            "aa",
            "aaa",
            "abab",
            "a, b, c",
            ", ",
            ",,  , ,",
            "x  user=a  user=b",
            "user=",
            "  user",
            "é, ü, ",
            "ab, ",
            ", ab",
        ];
        let needles = ["", "a", "aa", ", ", "  user=", "b", "ü", ",", "ab, "];
        for h in hay {
            for n in needles {
                assert_eq!(find_str(h, n), h.find(n), "find {n:?} in {h:?}");
                assert_eq!(rfind_str(h, n), h.rfind(n), "rfind {n:?} in {h:?}");
                assert_eq!(split_str(h, n), h.split_once(n), "split {n:?} of {h:?}");
                if !n.is_empty() {
                    let back: Vec<usize> = rfind_iter(h, n).collect();
                    let std: Vec<usize> = h.rmatch_indices(n).map(|(i, _)| i).collect();
                    assert_eq!(back, std, "rfind_iter {n:?} in {h:?}");
                    let ours: Vec<&str> = fields(h, n).collect();
                    let std: Vec<&str> = h.split(n).collect();
                    assert_eq!(ours, std, "fields {n:?} of {h:?}");
                }
            }
        }
        assert_eq!(fields("a, b", "").collect::<Vec<_>>(), vec!["a, b"]);
        assert_eq!(rfind_iter("a, b", "").next(), None);
    }

    /// The IPv6 fast path reads exactly what the standard library reads.
    #[test]
    fn ipv6_fast_path_agrees_with_the_standard_parser() {
        let mut cases: Vec<String> = [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:0:0:0:0:1",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::2::3",
            ":1:2",
            "1:2:",
            ":::",
            "12345::",
            "fffff::1",
            "FFFF::abcd",
            "1:2:3:4:5:6:7",
            "::1:",
            "1::8:",
            "2001:DB8::Ab:cD",
            "0:0:0:0:0:0:0:0",
            "1:2:3:4:5:6::7:8",
            // An IPv4 tail: the general parser's part.
            "::ffff:192.0.2.1",
            "64:ff9b::192.0.2.1",
            "::1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1:2:3:4:5:6:7:8:1.2.3.4",
            "::ffff:1.2.3",
            "1.2.3.4::",
            ":.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x = 0xD1B5_4A32_D192_ED03u64;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let alphabet = b"0123456789abcdefABCDEF::::..";
            let len = 1 + (x % 40) as usize;
            let mut y = x;
            let s: String = (0..len)
                .map(|_| {
                    y = y.rotate_left(5).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    alphabet[(y % alphabet.len() as u64) as usize] as char
                })
                .collect();
            cases.push(s);
            // Real addresses, with runs of zero groups, compressed and in full.
            let mut g = [0u16; 8];
            for (i, v) in g.iter_mut().enumerate() {
                if (x >> (i + 40)) & 1 == 1 {
                    *v = (x >> (i * 5)) as u16;
                }
            }
            let a = std::net::Ipv6Addr::from(g);
            cases.push(a.to_string());
            cases.push(
                g.iter()
                    .map(|v| format!("{v:X}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            );
        }
        for c in cases {
            let std = c
                .parse::<std::net::IpAddr>()
                .ok()
                .map(crate::addr::canonical);
            assert_eq!(ip(&c), std, "{c:?}");
        }
    }

    /// The IPv4 fast path reads exactly what the standard library reads.
    #[test]
    fn ipv4_fast_path_agrees_with_the_standard_parser() {
        let mut cases: Vec<String> = [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4.",
            "00.0.0.0",
            "0.0.0.00",
            "192.0.2.1",
            "999.999.999.999",
            "1234.1.1.1",
            "1.2.3.-4",
            "",
            "....",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let alphabet = b"0123456789.";
            let len = 1 + (x % 15) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((x >> (i * 4)) % 11) as usize] as char)
                .collect();
            cases.push(s);
            cases.push(format!(
                "{}.{}.{}.{}",
                x % 300,
                (x >> 9) % 300,
                (x >> 18) % 300,
                (x >> 27) % 300
            ));
        }
        for c in cases {
            let std = c
                .parse::<std::net::Ipv4Addr>()
                .ok()
                .map(std::net::IpAddr::V4);
            assert_eq!(ip(&c), std, "{c:?}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let (a, r) = name_addr("unknown[192.0.2.237]:55729: SASL").unwrap();
        assert_eq!(a.to_string(), "192.0.2.237");
        assert_eq!(r, ": SASL");
        let (a, _) = name_addr("mail.example.org[2001:db8::25]: x").unwrap();
        assert_eq!(a.to_string(), "2001:db8::25");
        // A name with characters Postfix never writes is not a name.
        assert!(name_addr("evil name[192.0.2.1]: x").is_none());
        assert!(name_addr("x[999.1.1.1]").is_none());
    }
}
