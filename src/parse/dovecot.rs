//! Dovecot 2.3 and 2.4: login processes (`imap-login`, `pop3-login`,
//! `submission-login`, `managesieve-login`), the auth process (`auth`, `auth-worker`)
//! and PAM's `pam_unix(dovecot:auth)` line; with or without the `dovecot:` syslog tag
//! and the `Info:` level that Dovecot's own `log_path` keeps.
//!
//! Address rules, from how Dovecot builds these lines:
//! - login lines are `..., user=<U>, method=M, rip=A, lip=A, ..., session=<S>`: the user
//!   comes first and everything after `rip=` is written by Dovecot, so the *last*
//!   `rip=` is the real one;
//! - auth lines are `driver(U,A[,master][,<S>]): message` (2.3) or
//!   `auth(U,A,sasl:mech)<S>: driver: message` (2.4), where U may contain commas and
//!   parentheses. Every reading of the line is tried; if two readings give different
//!   addresses the line is ambiguous and gives none.

use super::postfix::tls_desc;
use super::scan::{self, ip, leading_u32, starts_with_ci};
use super::{Channel, Event, Kind, Name, Tls, name};
use std::net::IpAddr;

/// Messages of the auth process that mean "this password was wrong".
const FAILURE_PHRASES: [&str; 4] = [
    "password mismatch",
    "unknown user",
    "pam_authenticate() failed",
    "invalid credentials",
];

/// The service of auth-process lines: the protocol is told by another line, if any.
pub const SERVICE_AUTH: &str = "dovecot-auth";

/// Auth drivers that are SASL mechanisms rather than passdbs.
const MECH_DRIVERS: [&str; 7] = [
    "cram-md5",
    "digest-md5",
    "scram-sha-1",
    "scram-sha-256",
    "ntlm",
    "otp",
    "apop",
];

pub fn parse(rest: &str) -> Option<Event> {
    let mut text = rest;
    // `dovecot: ` / `dovecot[241]: `, sometimes twice (`dovecot[442]: dovecot: auth...`).
    while let Some(("dovecot", _, msg)) = super::syslog::tag(text) {
        text = msg;
    }
    let name_len = text
        .bytes()
        .take_while(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        .count();
    let process = &text[..name_len];
    if let Some(svc) = process.strip_suffix("-login") {
        let body = text[name_len..].strip_prefix(": ")?;
        let body = strip_level(body);
        let service = match svc {
            "submission" => "dovecot-submission",
            other => other,
        };
        return login_line(service, body);
    }
    if process == "auth" || process == "auth-worker" {
        return auth_line(text);
    }
    None
}

fn strip_level(s: &str) -> &str {
    for l in ["Info: ", "Warning: ", "Error: ", "Debug: "] {
        if let Some(r) = s.strip_prefix(l) {
            return r;
        }
    }
    s
}

/// Which summary a login-process line carries, at its earliest marker.
enum Summary {
    Failed(u32, Option<u32>),
    Refused(&'static str, &'static str),
    NoAttempts,
}

fn summary(body: &str) -> Option<Summary> {
    // The markers are written before the fields; the user name (client text) comes
    // after them, so the earliest marker is Dovecot's own.
    let markers: [(&str, u8); 5] = [
        ("(auth failed, ", 0),
        ("(tried to use disabled ", 1),
        ("(tried to use disallowed ", 1),
        ("(proxy dest auth failed)", 2),
        ("(no auth attempts", 3),
    ];
    // One pass over the `(` of the line instead of a substring search per marker.
    let (pos, which) = memchr::memchr_iter(b'(', body.as_bytes()).find_map(|p| {
        markers
            .iter()
            .find(|(m, _)| body[p..].starts_with(m))
            .map(|(_, w)| (p, *w))
    })?;
    Some(match which {
        0 => {
            let after = &body[pos + "(auth failed, ".len()..];
            let (n, tail) = leading_u32(after)?;
            let tail = tail.strip_prefix(" attempts")?;
            let secs = tail
                .strip_prefix(" in ")
                .and_then(leading_u32)
                .map(|(s, _)| s);
            Summary::Failed(n, secs)
        }
        1 => Summary::Refused(
            if body[pos..].contains("plaintext auth)") {
                "plaintext auth disallowed"
            } else {
                "mechanism disallowed"
            },
            "dovecot.disallowed",
        ),
        2 => Summary::Refused("proxy destination auth failed", "dovecot.proxy_auth_failed"),
        _ => Summary::NoAttempts,
    })
}

/// The position of the real `rip=` (the last one that is a field of its own and holds
/// an address) and that address.
fn real_rip(body: &str) -> Option<(usize, IpAddr)> {
    let mut end = body.len();
    while let Some(pos) = scan::rfind_str(&body[..end], "rip=") {
        let field_start = pos == 0 || body[..pos].ends_with(", ") || body[..pos].ends_with(": ");
        if field_start {
            let val = &body[pos + 4..];
            let v = &val[..scan::find_byte(val, b',').unwrap_or(val.len())];
            if let Some(a) = ip(v) {
                return Some((pos, a));
            }
            // The last rip= is Dovecot's own: if it does not hold an address the line is
            // truncated or not Dovecot's, and an earlier one may be client text.
            return None;
        }
        end = pos;
    }
    None
}

fn login_line(service: &str, body: &str) -> Option<Event> {
    let (kind, attempts, secs, reason, rule) = if body.starts_with("Login: ") {
        (Kind::AuthSuccess, None, None, None, "dovecot.login")
    } else {
        match summary(body)? {
            Summary::Failed(n, s) => (Kind::AuthFailure, Some(n), s, None, "dovecot.auth_failed"),
            Summary::Refused(r, rule) => (Kind::AuthFailure, Some(1), None, Some(r), rule),
            Summary::NoAttempts => (
                Kind::Disconnect,
                None,
                None,
                None,
                "dovecot.no_auth_attempts",
            ),
        }
    };
    let (rip_pos, addr) = real_rip(body)?;
    let before = &body[..rip_pos];
    let mut e = Event::new(kind, Channel::DovecotLogin, rule);
    if kind != Kind::AuthFailure {
        e.channel = Channel::None;
    }
    e.address = Some(addr);
    e.service = Some(name(
        service,
        &["imap", "pop3", "managesieve", "dovecot-submission"],
    ));
    e.attempts = attempts;
    e.secs = secs;
    e.reason = reason.map(str::to_string);
    // `method=M, ` sits right before rip=; `user=<U>, ` right before that.
    let mut user_end = before.len();
    if let Some(m) = before
        .strip_suffix(", ")
        .and_then(|b| scan::rfind_str(b, "method=").map(|p| (b, p)))
    {
        let (b, p) = m;
        let mech = &b[p + 7..];
        if !mech.is_empty()
            && !mech.contains(' ')
            && (p == 0 || b[..p].ends_with(", ") || b[..p].ends_with(": "))
        {
            e.mechanism = Some(mech.to_ascii_uppercase());
            user_end = p;
        }
    }
    if let Some(u) = scan::find_str(before, "user=<") {
        let ubody = &before[..user_end];
        if let Some(stripped) = ubody.strip_suffix(">, ") {
            if u + 6 <= stripped.len() {
                let user = &stripped[u + 6..];
                if !user.is_empty() {
                    e.user = Some(user.to_string());
                }
            }
        }
    }
    // Fields after rip=: lip, mpid, the TLS element (`TLS`, `TLS: reason`,
    // `TLS handshaking: ...`, `secured`), optionally `%k` (`TLSv1.3 with cipher ...`),
    // session=<S>.
    let after = &body[rip_pos..];
    let mut tls_seen = false;
    for field in scan::fields(after, ", ") {
        if field == "TLS" || field.starts_with("TLS: ") {
            tls_seen = true;
        } else if let Some(t) = tls_desc(field) {
            e.tls = Some(t);
        } else if let Some(s) = field.strip_prefix("session=<") {
            let sid = s.strip_suffix('>').unwrap_or(s);
            if !sid.is_empty() && sid.len() <= 64 {
                e.session = Some(sid.to_string());
            }
        }
    }
    if e.tls.is_none() {
        if tls_seen {
            e.tls = Some(Tls::unknown_cipher());
        } else if scan::find_str(after, ", secured").is_none()
            && scan::find_str(after, "TLS handshaking").is_none()
        {
            e.plaintext = true;
        }
    }
    Some(e)
}

/// A reading of an auth-process driver call.
#[derive(Debug, Clone, PartialEq)]
struct Reading<'a> {
    addr: IpAddr,
    user: &'a str,
    session: Option<&'a str>,
    mech: Option<&'a str>,
    driver: &'a str,
}

fn auth_line(text: &str) -> Option<Event> {
    let mut readings: Vec<Reading> = Vec::new();
    let bytes = text.as_bytes();
    // Anchors: `NAME(` at the start of a segment (start of text or after ": ").
    let mut anchors = Vec::new();
    let mut seg = 0;
    loop {
        let n = bytes[seg..]
            .iter()
            .take_while(|&&b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
            })
            .count();
        if n > 0 && bytes.get(seg + n) == Some(&b'(') {
            anchors.push((seg, seg + n + 1));
        }
        match scan::find_str(&text[seg..], ": ") {
            Some(p) => seg += p + 2,
            None => break,
        }
        if anchors.len() > 16 {
            break;
        }
    }
    if anchors.is_empty() {
        return None;
    }
    for i in memchr::memchr_iter(b')', text.as_bytes()) {
        let Some(tail) = failure_tail(&text[i..]) else {
            continue;
        };
        for &(name_start, open) in &anchors {
            if open > i {
                continue;
            }
            let driver = &text[name_start..open - 1];
            if let Some(r) = reading(driver, &text[open..i], tail) {
                if !readings.contains(&r) {
                    readings.push(r);
                }
            }
        }
        if readings.len() > 8 {
            break;
        }
    }
    let first = readings.first()?.clone();
    let rule = if first.driver == "auth" || first.driver == "auth-worker" {
        "dovecot.auth_v24"
    } else {
        "dovecot.auth_v23"
    };
    let mut e = Event::new(Kind::AuthFailure, Channel::DovecotAuth, rule);
    e.attempts = Some(1);
    e.service = Some(Name::Borrowed(SERVICE_AUTH));
    if readings.iter().any(|r| r.addr != first.addr) {
        e.ambiguous = true;
        return Some(e);
    }
    e.address = Some(first.addr);
    // Users may differ between readings (the split point moves); keep the user only
    // when all readings agree on it.
    if readings.iter().all(|r| r.user == first.user) && first.user != "?" {
        e.user = Some(first.user.to_string());
    }
    e.session = first.session.map(str::to_string);
    e.mechanism = first.mech.map(|m| m.to_ascii_uppercase());
    if e.mechanism.is_none() && MECH_DRIVERS.contains(&first.driver) {
        e.mechanism = Some(first.driver.to_ascii_uppercase());
    }
    Some(e)
}

/// What may follow the closing parenthesis of a driver call on a failure line.
#[derive(Debug, Clone, Copy)]
enum Tail<'a> {
    /// 2.3: `): PHRASE`
    V23,
    /// 2.4: `)<SID>: [Info: ]DRIVER: PHRASE`
    V24 { session: Option<&'a str> },
}

fn failure_tail(s: &str) -> Option<Tail<'_>> {
    let s = s.strip_prefix(')')?;
    if let Some(msg) = s.strip_prefix(": ") {
        if is_failure_phrase(msg) {
            return Some(Tail::V23);
        }
        // 2.4 without a session id.
        let msg = strip_level(msg);
        return v24_message(msg).then_some(Tail::V24 { session: None });
    }
    let s = s.strip_prefix('<')?;
    let close = scan::find_str(s, ">: ")?;
    let sid = &s[..close];
    if sid.is_empty() || sid.len() > 64 || sid.contains(' ') {
        return None;
    }
    let msg = strip_level(&s[close + 3..]);
    v24_message(msg).then_some(Tail::V24 { session: Some(sid) })
}

/// `DRIVER: PHRASE`
fn v24_message(msg: &str) -> bool {
    let n = msg
        .bytes()
        .take_while(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        .count();
    n > 0 && msg[n..].strip_prefix(": ").is_some_and(is_failure_phrase)
}

fn is_failure_phrase(msg: &str) -> bool {
    FAILURE_PHRASES.iter().any(|p| starts_with_ci(msg, p))
}

/// Splits `U,A[,master][,<S>]` (2.3) or `U,A[,sasl:M][,master]` (2.4) from the right.
fn reading<'a>(driver: &'a str, inner: &'a str, tail: Tail<'a>) -> Option<Reading<'a>> {
    let mut rest = inner;
    let mut session = None;
    let mut mech = None;
    match tail {
        Tail::V23 => {
            if driver == "auth" || driver == "auth-worker" {
                // `auth(default): ` is a process prefix, not a driver call.
                return None;
            }
            // `ldap(dog,52.37.139.121,)`: an empty trailing field.
            if let Some(r) = rest.strip_suffix(',') {
                rest = r;
            }
            if let Some((r, last)) = scan::rsplit_byte(rest, b',') {
                if let Some(s) = last.strip_prefix('<').and_then(|l| l.strip_suffix('>')) {
                    session = Some(s);
                    rest = r;
                }
            }
        }
        Tail::V24 { session: s } => {
            if driver != "auth" && driver != "auth-worker" {
                return None;
            }
            session = s;
        }
    }
    if let Some(r) = rest.strip_suffix(",master") {
        rest = r;
    }
    if let Some((r, last)) = scan::rsplit_byte(rest, b',') {
        if let Some(m) = last.strip_prefix("sasl:") {
            mech = Some(m);
            rest = r;
        }
    }
    let (user, addr) = scan::rsplit_byte(rest, b',')?;
    let addr = ip(addr)?;
    Some(Reading {
        addr,
        user,
        session,
        mech,
        driver,
    })
}

/// `pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot
/// ruser=U rhost=A[  user=U]` — ruser and user are the client's user name, so `rhost=`
/// is accepted only where the readings agree: a ` rhost=ADDR` followed by the end of the
/// line or by `  user=`.
pub fn pam_unix(msg: &str) -> Option<Event> {
    const LEAD: &str = "pam_unix(dovecot:auth): authentication failure; ";
    if !msg.starts_with("pam_unix(") && !msg.starts_with("auth: pam_unix(") {
        return None;
    }
    let msg = if msg.starts_with(LEAD) {
        msg
    } else {
        // `dovecot: auth: pam_unix(...)` via syslog.
        super::syslog::tag(msg)
            .map(|(_, _, m)| m)
            .filter(|m| m.starts_with(LEAD))?
    };
    let body = &msg[LEAD.len()..];
    let mut found: Option<IpAddr> = None;
    let mut ambiguous = false;
    for pos in memchr::memmem::find_iter(body.as_bytes(), b" rhost=") {
        let val = &body[pos + 7..];
        let end = scan::find_byte(val, b' ').unwrap_or(val.len());
        let after = &val[end..];
        if !(after.is_empty() || after.starts_with("  user=")) {
            continue;
        }
        let Some(a) = ip(&val[..end]) else { continue };
        match found {
            None => found = Some(a),
            Some(f) if f != a => ambiguous = true,
            _ => {}
        }
    }
    let mut e = Event::new(Kind::AuthFailure, Channel::PamUnix, "dovecot.pam_unix");
    e.attempts = Some(1);
    e.service = Some(Name::Borrowed(SERVICE_AUTH));
    if ambiguous || found.is_none() {
        e.ambiguous = true;
        return Some(e);
    }
    e.address = found;
    if let Some(u) = scan::rfind_str(body, "  user=") {
        let user = &body[u + 7..];
        if !user.is_empty() && !user.contains(" rhost=") {
            e.user = Some(user.to_string());
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_with_fake_rip_cannot_supply_the_address() {
        let e = parse(
            "dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, method=PLAIN, rip=192.0.2.66, lip=1.1.1.1>, method=PLAIN, rip=198.51.100.7, lip=203.0.113.1, TLS, session=<abc>",
        )
        .unwrap();
        assert_eq!(e.address.unwrap().to_string(), "198.51.100.7");
        assert_eq!(
            e.user.as_deref(),
            Some("x>, method=PLAIN, rip=192.0.2.66, lip=1.1.1.1")
        );
        assert_eq!(e.session.as_deref(), Some("abc"));
    }

    #[test]
    fn driver_user_with_commas_is_ambiguous_not_wrong() {
        let e =
            parse("auth: passwd-file(a,192.0.2.66): unknown user,198.51.100.7): Password mismatch")
                .unwrap();
        assert!(e.ambiguous);
        assert_eq!(e.address, None);
        let e = parse("auth: passwd-file(a,b,c,198.51.100.7): Password mismatch").unwrap();
        assert_eq!(e.address.unwrap().to_string(), "198.51.100.7");
        assert_eq!(e.user.as_deref(), Some("a,b,c"));
    }

    #[test]
    fn v24_prefix() {
        let e = parse("auth(info@example.com,192.0.2.110,sasl:login)<CvN+E95U>: Info: sql: Password mismatch (given password: a,1.2.3.4): unknown user)").unwrap();
        assert_eq!(e.address.unwrap().to_string(), "192.0.2.110");
        assert_eq!(e.mechanism.as_deref(), Some("LOGIN"));
        assert_eq!(e.session.as_deref(), Some("CvN+E95U"));
    }
}
