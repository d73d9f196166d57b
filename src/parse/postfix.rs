//! Postfix smtpd (under any syslog name: `postfix/smtpd`, `postfix/submission/smtpd`,
//! `postfix-in/smtpd`, ...) and the outbound TLS line of `postfix/smtp`.
//!
//! The client address is taken only from `NAME[ADDR]` written right after the fixed
//! text Postfix puts before it (`warning: `, `connect from `, `client=`...). NAME is a
//! validated host name or `unknown`, so it cannot contain `[`; HELO names, user names
//! and SNI appear only after the address and are never searched for one.

use super::scan::{self, leading_u32, name_addr, token};
use super::{Channel, Direction, Event, Kind, Name, Tally, Tls, name};

/// master.cf service names seen on most servers.
const SERVICES: [&str; 4] = ["smtp", "submission", "smtps", "submissions"];
/// OpenSSL's protocol names.
const PROTOCOLS: [&str; 6] = ["TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1", "SSLv3", "SSLv2"];

/// The Postfix daemons whose lines carry something saslguard reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// The SMTP server, under any service name.
    Smtpd,
    /// The SMTP client (outbound deliveries).
    Smtp,
}

/// The daemon of a program name that ends in `/smtpd` or `/smtp` after a parent path
/// of at least one byte: `postfix/smtpd`, `postfix/submission/smtpd`,
/// `postfix-in/smtpd`, `postfix/smtp`. Read from its end: no search for the last `/`.
pub fn daemon(program: &str) -> Option<Daemon> {
    let b = program.as_bytes();
    if b.len() > 6 && b.ends_with(b"/smtpd") {
        Some(Daemon::Smtpd)
    } else if b.len() > 5 && b.ends_with(b"/smtp") {
        Some(Daemon::Smtp)
    } else {
        None
    }
}

/// The master.cf service an smtpd line belongs to: `submission`, `smtps`, or `smtp`
/// for the plain `postfix/smtpd` (and `postfix-in/smtpd` of a second instance).
fn service(program: &str) -> Name {
    let Some(base) = program.strip_suffix("/smtpd") else {
        // Not smtpd: the daemon's own name.
        let d = scan::rsplit_byte(program, b'/').map_or(program, |(_, d)| d);
        return name(d, &SERVICES);
    };
    match scan::rsplit_byte(base, b'/') {
        Some((_, svc)) => name(svc, &SERVICES),
        None => Name::Borrowed("smtp"),
    }
}

/// Parses the message of a line Postfix's `program` wrote, its [`daemon`] known.
pub fn parse_as(daemon: Daemon, program: &str, msg: &str) -> Option<Event> {
    if daemon == Daemon::Smtp {
        return tls_line(msg, "smtp", Direction::Outbound);
    }
    let svc = || Some(service(program));
    if let Some(rest) = msg.strip_prefix("warning: ") {
        return sasl_warning(rest).map(|mut e| {
            e.service = svc();
            e
        });
    }
    if let Some(rest) = msg.strip_prefix("connect from ") {
        let (addr, tail) = name_addr(rest)?;
        if !tail.is_empty() {
            return None;
        }
        let mut e = Event::new(Kind::Connect, Channel::None, "postfix.connect");
        e.address = Some(addr);
        e.service = svc();
        return Some(e);
    }
    if let Some(rest) = msg.strip_prefix("disconnect from ") {
        let (addr, tail) = name_addr(rest)?;
        let mut e = Event::new(
            Kind::Disconnect,
            Channel::PostfixTally,
            "postfix.disconnect",
        );
        e.address = Some(addr);
        e.service = svc();
        e.tally = tally(tail);
        return Some(e);
    }
    // Postfix 3.10 writes these after `NOQUEUE: ` or the queue ID.
    let unqueued = queue_id_prefix(msg).map_or(msg, |(_, r)| r);
    for (lead, reason, rule) in [
        (
            "lost connection after AUTH from ",
            "lost connection after AUTH",
            "postfix.lost_after_auth",
        ),
        (
            "too many errors after AUTH from ",
            "too many errors after AUTH",
            "postfix.errors_after_auth",
        ),
    ] {
        if let Some(rest) = unqueued.strip_prefix(lead) {
            let (addr, _) = name_addr(rest)?;
            let mut e = Event::new(Kind::AuthAbandoned, Channel::None, rule);
            e.address = Some(addr);
            e.service = svc();
            e.reason = Some(reason.into());
            return Some(e);
        }
    }
    if let Some(mut e) = tls_line(msg, "", Direction::Inbound) {
        e.service = svc();
        return Some(e);
    }
    queue_client(msg).map(|mut e| {
        e.service = svc();
        e
    })
}

/// `NOQUEUE: ` or a queue ID (`4XyZ1k2PQRz9sV: `, `2F4D21234: `) at the start of `msg`:
/// Postfix's own token, before any client text.
pub fn queue_id_prefix(msg: &str) -> Option<(&str, &str)> {
    if let Some(r) = msg.strip_prefix("NOQUEUE: ") {
        return Some(("NOQUEUE", r));
    }
    // A queue ID is 5 to 20 letters and digits: the first byte past them must end it.
    let b = msg.as_bytes();
    let n = b[..b.len().min(21)]
        .iter()
        .position(|c| !c.is_ascii_alphanumeric())?;
    (5..=20).contains(&n).then_some(())?;
    msg[n..].strip_prefix(": ").map(|r| (&msg[..n], r))
}

/// `NAME[ADDR][:port]: SASL MECH authentication failed: REASON[, sasl_username=U]`
fn sasl_warning(rest: &str) -> Option<Event> {
    let (addr, tail) = name_addr(rest)?;
    let tail = tail.strip_prefix(": SASL ")?;
    let (mech, tail) = scan::split_byte(tail, b' ')?;
    if mech.is_empty() || mech.len() > 32 {
        return None;
    }
    let tail = tail.strip_prefix("authentication failed:")?;
    let mut reason = tail.trim_start_matches(' ');
    let mut user = None;
    // Recent Postfix (3.7.11 as Debian ships it) appends the user name, or
    // `(unavailable)`; the reason before it comes from the SASL server, so the first
    // occurrence is the one Postfix added.
    if let Some((r, u)) = scan::split_str(reason, ", sasl_username=") {
        reason = r;
        if u != "(unavailable)" && !u.is_empty() {
            user = Some(u.to_string());
        }
    }
    let (kind, rule) = if reason.starts_with("Connection lost to authentication server") {
        (Kind::AuthUnavailable, "postfix.sasl_unavailable")
    } else if reason.starts_with("Invalid authentication mechanism") {
        // The client asked for a mechanism the SASL server does not offer: a client
        // configuration problem, no password was checked. Not a guess.
        (Kind::AuthAbandoned, "postfix.sasl_invalid_mechanism")
    } else {
        (Kind::AuthFailure, "postfix.sasl_failure")
    };
    let mut e = Event::new(kind, Channel::PostfixSasl, rule);
    e.address = Some(addr);
    e.mechanism = Some(mech.to_ascii_uppercase());
    e.user = user;
    if kind == Kind::AuthFailure {
        e.attempts = Some(1);
    }
    if !reason.is_empty() {
        e.reason = Some(reason.to_string());
    }
    Some(e)
}

/// ` ehlo=1 starttls=1 auth=0/3 quit=1 commands=3/6`: items of a few bytes each, read
/// in plain loops (a vector search's set-up cost more than each search).
fn tally(tail: &str) -> Option<Tally> {
    let mut t = Tally::default();
    let mut any = false;
    let at = |s: &[u8], b: u8| s.iter().position(|&c| c == b);
    let number = scan::parse_u32_bytes;
    for item in tail
        .as_bytes()
        .split(|&c| c == b' ')
        .filter(|s| !s.is_empty())
    {
        let Some(eq) = at(item, b'=') else {
            continue;
        };
        let (cmd, count) = (&item[..eq], &item[eq + 1..]);
        let (ok, total) = match at(count, b'/') {
            Some(i) => (number(&count[..i])?, number(&count[i + 1..])?),
            None => {
                let n = number(count)?;
                (n, n)
            }
        };
        any = true;
        match cmd {
            b"auth" => {
                t.auth_ok = ok.min(total);
                t.auth_total = total;
            }
            b"starttls" => t.starttls = ok > 0,
            _ => {}
        }
    }
    any.then_some(t)
}

/// `Anonymous TLS connection established from NAME[ADDR][ to SNI]: PROTO with cipher C (A/B bits)...`
/// and the outbound `... established to NAME[ADDR]:PORT: ...`.
fn tls_line(msg: &str, service: &'static str, dir: Direction) -> Option<Event> {
    // Most lines start otherwise: look no further than the first byte for them.
    if !matches!(msg.as_bytes().first(), Some(b'A' | b'U' | b'T' | b'V')) {
        return None;
    }
    let (trust, rest) = scan::split_byte(msg, b' ')?;
    if !matches!(trust, "Anonymous" | "Untrusted" | "Trusted" | "Verified") {
        return None;
    }
    let lead = match dir {
        Direction::Inbound => "TLS connection established from ",
        Direction::Outbound => "TLS connection established to ",
    };
    let rest = rest.strip_prefix(lead)?;
    let (addr, mut tail) = name_addr(rest)?;
    // Postfix >= 3.4 may add the SNI name the client asked for and Postfix accepted;
    // it is a validated host name, so it ends at the first character that isn't.
    if let Some(sni) = tail.strip_prefix(" to ") {
        let (name, after) = token(sni);
        if name.is_empty() {
            return None;
        }
        tail = after;
    }
    let tls = tls_desc(tail.strip_prefix(": ")?)?;
    let rule = match dir {
        Direction::Inbound => "postfix.tls_inbound",
        Direction::Outbound => "postfix.tls_outbound",
    };
    let mut e = Event::new(Kind::Tls, Channel::None, rule);
    e.address = Some(addr);
    e.tls = Some(tls);
    e.direction = Some(dir);
    if !service.is_empty() {
        e.service = Some(Name::Borrowed(service));
    }
    Some(e)
}

/// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)` followed by anything.
/// Shared with Dovecot, which writes the same OpenSSL-derived description.
pub fn tls_desc(s: &str) -> Option<Tls> {
    if !matches!(s.as_bytes().first(), Some(b'T' | b'S' | b'D')) {
        return None;
    }
    // The protocol is one word (OpenSSL's name for it): a plain loop finds its end,
    // where a substring search would build a searcher for every line.
    let end = s.bytes().take(16).position(|c| c == b' ')?;
    let (proto, rest) = (&s[..end], s[end..].strip_prefix(" with cipher ")?);
    if !(proto.starts_with("TLSv") || proto.starts_with("SSLv") || proto == "DTLSv1") {
        return None;
    }
    let (cipher, rest) = token(rest);
    if cipher.is_empty() {
        return None;
    }
    let bits = rest
        .strip_prefix(" (")
        .and_then(leading_u32)
        .map(|(n, _)| n);
    Some(Tls {
        protocol: name(proto, &PROTOCOLS),
        cipher: super::cipher(cipher),
        bits,
    })
}

/// `QUEUEID: client=NAME[ADDR][:port][, sasl_method=M, sasl_username=U][, ...]`
fn queue_client(msg: &str) -> Option<Event> {
    let n = msg.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let (qid, rest) = (&msg[..n], msg[n..].strip_prefix(": client=")?);
    if qid.is_empty() || qid.len() > 32 {
        return None;
    }
    let (addr, tail) = name_addr(rest)?;
    // A message from a client that did not authenticate: not an event saslguard counts.
    let auth = tail.strip_prefix(", sasl_method=")?;
    let (method, after) = scan::split_str(auth, ", sasl_username=")?;
    let mut e = Event::new(Kind::AuthSuccess, Channel::None, "postfix.sasl_login");
    e.queue_id = Some(qid.to_string());
    e.address = Some(addr);
    let end = [", sasl_sender=", ", orig_queue_id=", ", orig_client="]
        .iter()
        .filter_map(|m| scan::find_str(after, m))
        .min()
        .unwrap_or(after.len());
    e.mechanism = Some(method.to_ascii_uppercase());
    e.user = Some(after[..end].to_string());
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A queue ID prefix is read as the iterator reading that came before read it
        /// (at most 32 letters and digits counted, 5 to 20 of them, then `: `).
        #[test]
        fn queue_id_prefixes_read_as_before(
            id in proptest::collection::vec(
                proptest::sample::select(b"AZaz09".to_vec()), 0..26),
            sep in proptest::sample::select(vec![": ", ":", " ", ": x", "", "-: "]),
            rest in "[ -~]{0,8}",
        ) {
            let msg = format!("{}{sep}{rest}", String::from_utf8(id).unwrap());
            let n = msg.bytes().take(32).take_while(u8::is_ascii_alphanumeric).count();
            let before = if let Some(r) = msg.strip_prefix("NOQUEUE: ") {
                Some(("NOQUEUE", r))
            } else if (5..=20).contains(&n) {
                msg[n..].strip_prefix(": ").map(|r| (&msg[..n], r))
            } else {
                None
            };
            proptest::prop_assert_eq!(queue_id_prefix(&msg), before);
        }
    }

    #[test]
    fn services() {
        assert_eq!(service("postfix/submission/smtpd"), "submission");
        assert_eq!(service("postfix/smtpd"), "smtp");
        assert_eq!(service("postfix-in/smtpd"), "smtp");
        assert_eq!(daemon("postfix/smtps/smtpd"), Some(Daemon::Smtpd));
        assert_eq!(daemon("smtpd"), None);
        assert_eq!(daemon("postfix/qmgr"), None);
        // Read from the end as the split at the last `/` read them.
        let split = |p: &str| {
            let (base, d) = p.rsplit_once('/')?;
            match d {
                "smtpd" if !base.is_empty() => Some(Daemon::Smtpd),
                "smtp" if !base.is_empty() => Some(Daemon::Smtp),
                _ => None,
            }
        };
        for p in [
            "postfix/smtpd",
            "postfix/smtp",
            "postfix/submission/smtpd",
            "postfix-in/smtpd",
            "/smtpd",
            "/smtp",
            "x/smtp",
            "smtpd",
            "smtp",
            "postfix/smtpd/",
            "postfix/xsmtpd",
            "postfix/smtps",
            "postfix/lmtp",
            "postfix/qmgr",
            "a/b/smtp",
            "",
        ] {
            assert_eq!(daemon(p), split(p), "{p}");
        }
        assert_eq!(service("postfix/smtps/smtpd"), "smtps");
        assert_eq!(service("postfix-out/smtp"), "smtp");
    }

    /// The disconnect summary's counts, as Postfix writes them and as it does not.
    #[test]
    fn disconnect_tallies() {
        let t = |auth_ok, auth_total, starttls| {
            Some(Tally {
                auth_ok,
                auth_total,
                starttls,
            })
        };
        for (tail, want) in [
            (" ehlo=1 auth=0/3 quit=1 commands=2/5", t(0, 3, false)),
            (" ehlo=2 starttls=1 auth=1 mail=1 commands=5", t(1, 1, true)),
            ("  ehlo=1  starttls=0/1 ", t(0, 0, false)),
            (" auth=5/3", t(3, 3, false)),
            (" unknown=0/1 commands=0/1", t(0, 0, false)),
            (" ehlo=1 noise auth=2/9", t(2, 9, false)),
            (
                " auth=999999999/999999999",
                t(999_999_999, 999_999_999, false),
            ),
            (" auth=1/1234567890", None),
            (" auth=1/2/3", None),
            (" ehlo=x", None),
            (" auth=/1", None),
            (" auth=", None),
            (" ehlo=1 auth=\u{663}", None),
            ("", None),
            (" noise only", None),
        ] {
            assert_eq!(tally(tail), want, "{tail:?}");
        }
    }

    #[test]
    fn sasl_username_suffix() {
        let e = parse_as(
            Daemon::Smtpd,
            "postfix/smtpd",
            "warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=bob",
        )
        .unwrap();
        assert_eq!(e.user.as_deref(), Some("bob"));
        assert_eq!(e.reason.as_deref(), Some("UGFzc3dvcmQ6"));
    }
}
