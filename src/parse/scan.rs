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

/// Index of the first occurrence of the ASCII `needle`.
pub fn find_str(s: &str, needle: &str) -> Option<usize> {
    memchr::memmem::find(s.as_bytes(), needle.as_bytes())
}

/// Index of the last occurrence of the ASCII `needle`.
pub fn rfind_str(s: &str, needle: &str) -> Option<usize> {
    memchr::memmem::rfind(s.as_bytes(), needle.as_bytes())
}

/// `s` split around the first occurrence of the ASCII `needle`.
pub fn split_str<'a>(s: &'a str, needle: &str) -> Option<(&'a str, &'a str)> {
    find_str(s, needle).map(|i| (&s[..i], &s[i + needle.len()..]))
}

/// The pieces of `s` between occurrences of the ASCII `sep` (like `str::split`).
pub fn fields<'a>(s: &'a str, sep: &'a str) -> impl Iterator<Item = &'a str> {
    let mut matches = memchr::memmem::find_iter(s.as_bytes(), sep.as_bytes());
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match matches.next() {
            Some(i) => {
                start = Some(i + sep.len());
                Some(&s[from..i])
            }
            None => {
                start = None;
                Some(&s[from..])
            }
        }
    })
}

/// Parses an IP address from the whole of `s` (no brackets, no port, no zone), made
/// canonical: `::ffff:192.0.2.1` is 192.0.2.1.
pub fn ip(s: &str) -> Option<IpAddr> {
    if s.is_empty() || s.len() > 45 {
        return None;
    }
    // One pass to tell the forms apart: digits and dots, or hex digits and colons.
    let (mut v4, mut v6) = (true, true);
    for &c in s.as_bytes() {
        let digit = c.is_ascii_digit();
        v4 &= digit || c == b'.';
        v6 &= digit || c == b':' || matches!(c | 0x20, b'a'..=b'f');
    }
    if v4 && s.len() <= 15 {
        return ipv4(s.as_bytes()).map(IpAddr::V4);
    }
    if v6 {
        return ipv6(s.as_bytes()).map(|a| crate::addr::canonical(IpAddr::V6(a)));
    }
    // IPv6 with an embedded IPv4 part, or not an address: the general parser.
    s.parse().ok().map(crate::addr::canonical)
}

/// IPv6 of hex groups only (no embedded IPv4, no zone) as the standard library reads
/// it: one to four hex digits a group, eight groups, or fewer with one `::`.
fn ipv6(b: &[u8]) -> Option<std::net::Ipv6Addr> {
    fn groups(part: &[u8], out: &mut [u16; 8]) -> Option<usize> {
        if part.is_empty() {
            return Some(0);
        }
        let mut n = 0;
        for g in part.split(|&c| c == b':') {
            if g.is_empty() || g.len() > 4 || n == 8 {
                return None;
            }
            out[n] = g.iter().fold(0u16, |v, &d| {
                let x = match d {
                    b'0'..=b'9' => d - b'0',
                    b'a'..=b'f' => d - b'a' + 10,
                    _ => d - b'A' + 10,
                };
                (v << 4) | u16::from(x)
            });
            n += 1;
        }
        Some(n)
    }
    let mut head = [0u16; 8];
    let mut tail = [0u16; 8];
    let mut seg = [0u16; 8];
    // At most 45 bytes: a plain scan costs less than building a searcher.
    match b.windows(2).position(|w| w == b"::") {
        None => {
            if groups(b, &mut head)? != 8 {
                return None;
            }
            seg = head;
        }
        Some(i) => {
            let (h, t) = (&b[..i], &b[i + 2..]);
            let nh = groups(h, &mut head)?;
            let nt = groups(t, &mut tail)?;
            if nh + nt > 7 {
                return None;
            }
            seg[..nh].copy_from_slice(&head[..nh]);
            seg[8 - nt..].copy_from_slice(&tail[..nt]);
        }
    }
    Some(std::net::Ipv6Addr::from(seg))
}

/// Dotted-quad IPv4 as the standard library reads it (four decimal parts of one to
/// three digits, at most 255, no leading zero), without its general parser: most
/// addresses in a mail log are IPv4, and this is several times faster.
fn ipv4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = b.split(|&c| c == b'.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p[0] == b'0') {
            return None;
        }
        let v = p.iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
        *o = u8::try_from(v).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(std::net::Ipv4Addr::from(octets))
}

/// Characters Postfix accepts in a validated host name (`valid_hostname()`), plus
/// `unknown`. A name that fails this check cannot have been written by Postfix.
pub fn is_hostname_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// Parses Postfix's `NAME[ADDR]` with an optional `:PORT` at the start of `s`.
/// Returns the address and the rest after it. The name must be a valid host name:
/// Postfix writes either a validated reverse-DNS name or `unknown` there, so a `[`
/// cannot occur inside it and the first `[` is the one Postfix wrote.
pub fn name_addr(s: &str) -> Option<(IpAddr, &str)> {
    let open = find_byte(s, b'[')?;
    let name = &s.as_bytes()[..open];
    if name.is_empty() || name.len() > 255 || !name.iter().all(|&b| is_hostname_byte(b)) {
        return None;
    }
    let after = &s[open + 1..];
    let close = find_byte(after, b']')?;
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

pub fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // At most nine digits: no overflow.
    Some(s.bytes().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
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
    let n = s.bytes().take_while(|&b| is_hostname_byte(b)).count();
    (&s[..n], &s[n..])
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x = 0xD1B5_4A32_D192_ED03u64;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let alphabet = b"0123456789abcdefABCDEF::::";
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
