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
    s.parse().ok().map(crate::addr::canonical)
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
    s.parse().ok()
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
