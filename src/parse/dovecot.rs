//! Dovecot 2.3 and 2.4: login processes (`imap-login`, `pop3-login`,
//! `submission-login`, `managesieve-login`), the auth process (`auth`, `auth-worker`)
//! and PAM's `pam_unix(dovecot:auth)` line; with or without the `dovecot:` syslog tag
//! and the `Info:` level that Dovecot's own `log_path` keeps.
//!
//! Address rules, from how Dovecot builds these lines. The user name is the client's
//! and may hold anything Dovecot's own text holds, so a field is Dovecot's only where
//! no placement of the user name could make it otherwise:
//! - login lines are `..., user=<U>, method=M, rip=A, lip=A, ..., session=<S>`: every
//!   place where `U` may end is tried, and a place counts only if a well-formed run of
//!   Dovecot's fields, in Dovecot's order, follows it ([`login_fields`]);
//! - auth lines are `driver(U,A[,master][,<S>]): message` (2.3) or
//!   `auth(U,A,sasl:mech)<S>: driver: message` (2.4): where `U` begins is fixed by
//!   Dovecot's prefix, every `)` that may close the call is read, and the line gives an
//!   address only if every reading agrees ([`auth_line`]).
//!
//! A line whose readings disagree is ambiguous: it is counted in the stats and against
//! no one. Every path looks at a bounded stretch around each candidate: linear time.

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
    /// An AUTH that ended with no verdict on a password (2.4 reason code).
    Abandoned(&'static str),
    /// A login session that ended for a reason that is no login attempt of the client's
    /// (2.4 reason code: a TLS handshake cut short, the auth process not ready, ...).
    Other(&'static str),
}

/// Dovecot 2.4's login-process reason codes (`src/login-common/client-common.c`,
/// `client_get_extra_disconnect_reason` and `client_auth_fail_code_event_reasons`),
/// each with what it means for counting. Only `auth_failed` (a wrong password),
/// `cleartext_auth_disabled` (a password sent in the clear where that is refused) and
/// `proxy_dest_auth_failed` (the next hop refused the password) are failed logins, as
/// their 2.3 wordings were. `authorization_failed`, `user_disabled` and
/// `password_expired` follow a right password; `temp_fail`,
/// `auth_process_comm_fail` and `auth_process_not_ready` are the server's trouble.
const V24_CODES: &[(&str, Code)] = &[
    ("auth_failed", Code::Failed),
    ("cleartext_auth_disabled", Code::Cleartext),
    ("proxy_dest_auth_failed", Code::ProxyFailed),
    ("no_auth_attempts", Code::NoAttempts),
    ("invalid_mech", Code::Abandoned),
    ("invalid_base64", Code::Abandoned),
    ("auth_aborted_by_client", Code::Abandoned),
    ("auth_waiting_client", Code::Abandoned),
    ("tls_handshake_not_finished", Code::Other),
    ("auth_process_not_ready", Code::Other),
    ("process_full", Code::Other),
    ("shutting_down", Code::Other),
    ("client_ssl_not_started", Code::Other),
    ("client_ssl_cert_untrusted", Code::Other),
    ("client_ssl_cert_missing", Code::Other),
    ("authorization_failed", Code::Other),
    ("temp_fail", Code::Other),
    ("user_disabled", Code::Other),
    ("password_expired", Code::Other),
    ("login_disabled", Code::Other),
    ("anonymous_auth_disabled", Code::Other),
    ("auth_process_comm_fail", Code::Other),
    ("auth_nologin_referral", Code::Other),
    ("connection_limit", Code::Other),
    ("internal_failure", Code::Other),
    ("proxy_dest_connect_failed", Code::Other),
    ("proxy_dest_internal_failure", Code::Other),
    ("proxy_dest_remote_failure", Code::Other),
    ("proxy_dest_protocol_failure", Code::Other),
    ("proxy_dest_auth_temp_failed", Code::Other),
    ("proxy_dest_redirected", Code::Other),
];

#[derive(Debug, Clone, Copy)]
enum Code {
    Failed,
    Cleartext,
    ProxyFailed,
    NoAttempts,
    Abandoned,
    Other,
}

/// Dovecot 2.4: `Login aborted: REASON (HUMAN) (CODE): user=<...>, ...`. The code is
/// the parenthesis right before the first `): user=<` or `): rip=` (everything before
/// the fields is Dovecot's text); HUMAN carries `N attempts in S secs` or `K/N
/// successful auths in S secs`. Returns the summary and where the fields start.
fn v24_summary(body: &str) -> Option<(Summary, usize)> {
    let rest = body.strip_prefix("Login aborted: ")?;
    let off = body.len() - rest.len();
    let end = [
        scan::find_str(rest, "): user=<"),
        scan::find_str(rest, "): rip="),
    ]
    .into_iter()
    .flatten()
    .min()?;
    let head = &rest[..end];
    let open = scan::rfind_byte(head, b'(')?;
    let code = &head[open + 1..];
    let (name, what) = V24_CODES.iter().find(|(c, _)| *c == code)?;
    // The human reason: `(...)` right before ` (CODE`.
    let human = head[..open]
        .strip_suffix(' ')
        .and_then(|h| h.strip_suffix(')'))
        .and_then(|h| scan::rfind_byte(h, b'(').map(|p| &h[p + 1..]))
        .unwrap_or("");
    let (attempts, secs) = attempts_in(human);
    let summary = match what {
        Code::Failed => Summary::Failed(attempts.unwrap_or(1).max(1), secs),
        Code::Cleartext => Summary::Refused("plaintext auth disallowed", "dovecot.disallowed"),
        Code::ProxyFailed => {
            Summary::Refused("proxy destination auth failed", "dovecot.proxy_auth_failed")
        }
        Code::NoAttempts => Summary::NoAttempts,
        Code::Abandoned => Summary::Abandoned(name),
        Code::Other => Summary::Other(name),
    };
    Some((summary, off + end + 3))
}

/// `..., N attempts in S secs` or `..., K/N successful auths in S secs`: the failed
/// attempts (N, or N - K) and the seconds.
fn attempts_in(human: &str) -> (Option<u32>, Option<u32>) {
    let Some(comma) = scan::rfind_str(human, ", ") else {
        return (None, None);
    };
    let tail = &human[comma + 2..];
    let Some((k, rest)) = leading_u32(tail) else {
        return (None, None);
    };
    let (failed, rest) = if let Some(r) = rest.strip_prefix(" attempts") {
        (k, r)
    } else if let Some((n, r)) = rest.strip_prefix('/').and_then(leading_u32) {
        match r.strip_prefix(" successful auths") {
            Some(r) => (n.saturating_sub(k), r),
            None => return (None, None),
        }
    } else {
        return (None, None);
    };
    let secs = rest
        .trim_start()
        .strip_prefix("in ")
        .and_then(leading_u32)
        .map(|(s, _)| s);
    (Some(failed), secs)
}

fn summary(body: &str) -> Option<(Summary, usize)> {
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
    let summary = match which {
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
    };
    Some((summary, pos))
}

/// The rank of a field of a login-process line after the user name, in the order
/// Dovecot writes them (`login_log_format_elements`).
fn field_rank(f: &str) -> Option<u8> {
    Some(if let Some(m) = f.strip_prefix("method=") {
        if m.is_empty() || m.contains(' ') {
            return None;
        }
        1
    } else if let Some(a) = f.strip_prefix("rip=") {
        ip(a)?;
        2
    } else if let Some(a) = f.strip_prefix("lip=") {
        ip(a)?;
        3
    } else if let Some(n) = f.strip_prefix("mpid=") {
        scan::parse_u32(n)?;
        4
    } else if let Some(s) = f.strip_prefix("session=<") {
        s.strip_suffix('>')?;
        7
    } else {
        // `TLS`, `TLS: reason`, `TLS handshaking: ...`, `secured`, `%k`, pieces of a
        // reason that held `, `, fields an admin added: after mpid, before session.
        RANK_ANY
    })
}

/// The rank that may repeat.
const RANK_ANY: u8 = 6;

/// Splits the fields of a login line, `user=<U>, method=M, rip=A, ...`, into the user
/// name and Dovecot's fields after it. The user name is the client's and may itself
/// hold `>, method=PLAIN, rip=192.0.2.1, ...`, so every place where it may end is
/// tried: a place counts if what follows starts with `method=` or `rip=` (the fields
/// Dovecot writes right after the user) and is a well-formed run of Dovecot's fields,
/// each in its order and each once. Dovecot writes `method=` and `rip=` once, so a
/// line it wrote has one such place; if several places disagree on `rip=`, the line is
/// ambiguous (`Err(true)`); with no such place at all the line is not Dovecot's
/// (`Err(false)`). One pass from the right: linear time.
fn login_fields(elements: &str) -> Result<(Option<&str>, &str), bool> {
    const USER: &str = "user=<";
    if !elements.starts_with(USER) {
        return Ok((None, elements));
    }
    let mut next_rank = u8::MAX;
    let mut end = elements.len();
    let mut rip: Option<&str> = None;
    // The rightmost place (the longest user name) and the rip= it sees.
    let mut found: Option<(usize, Option<&str>)> = None;
    let mut ambiguous = false;
    // Right to left, without collecting the separators: this runs for every login line.
    for sep in scan::rfind_iter(elements, ", ") {
        let field = &elements[sep + 2..end];
        let Some(rank) = field_rank(field) else { break };
        if rank > next_rank || (rank == next_rank && rank != RANK_ANY) {
            break;
        }
        next_rank = rank;
        if rank == 2 {
            rip = Some(&field[4..]);
        }
        if rank <= 2 && sep > USER.len() && elements[..sep].ends_with('>') {
            match found {
                None => found = Some((sep, rip)),
                Some((_, r)) => ambiguous |= r != rip,
            }
        }
        end = sep;
    }
    match found {
        Some(_) if ambiguous => Err(true),
        Some((sep, _)) => Ok((Some(&elements[USER.len()..sep - 1]), &elements[sep + 2..])),
        // A line cut short or garbled: no field of Dovecot's is certain.
        None => Err(false),
    }
}

fn login_line(service: &str, body: &str) -> Option<Event> {
    let (kind, attempts, secs, reason, rule, fields_at) = if let Some(r) = body
        .strip_prefix("Login: ")
        .or_else(|| body.strip_prefix("Logged in: "))
    {
        let at = body.len() - r.len();
        (Kind::AuthSuccess, None, None, None, "dovecot.login", at)
    } else {
        let (summary, at) = match v24_summary(body) {
            Some(s) => s,
            None => {
                let (summary, pos) = summary(body)?;
                // The fields begin after the first `: ` past the marker: all of that
                // is Dovecot's text, written before the user name.
                (summary, pos + scan::find_str(&body[pos..], ": ")? + 2)
            }
        };
        match summary {
            Summary::Failed(n, s) => (
                Kind::AuthFailure,
                Some(n),
                s,
                None,
                "dovecot.auth_failed",
                at,
            ),
            Summary::Refused(r, rule) => (Kind::AuthFailure, Some(1), None, Some(r), rule, at),
            Summary::Abandoned(code) => (
                Kind::AuthAbandoned,
                None,
                None,
                Some(code),
                "dovecot.auth_abandoned",
                at,
            ),
            Summary::Other(code) => (
                Kind::Disconnect,
                None,
                None,
                Some(code),
                "dovecot.login_aborted",
                at,
            ),
            Summary::NoAttempts => (
                Kind::Disconnect,
                None,
                None,
                None,
                "dovecot.no_auth_attempts",
                at,
            ),
        }
    };
    let mut e = Event::new(kind, Channel::DovecotLogin, rule);
    if kind != Kind::AuthFailure {
        e.channel = Channel::None;
    }
    let (user, fields) = match login_fields(&body[fields_at..]) {
        Ok(f) => f,
        // Only a failure is worth counting as "seen but not attributable".
        Err(true) if kind == Kind::AuthFailure => {
            e.ambiguous = true;
            return Some(e);
        }
        Err(_) => return None,
    };
    e.service = Some(name(
        service,
        &["imap", "pop3", "managesieve", "dovecot-submission"],
    ));
    e.attempts = attempts;
    e.secs = secs;
    e.reason = reason.map(str::to_string);
    e.user = user.filter(|u| !u.is_empty()).map(str::to_string);
    // Fields: method, rip, lip, mpid, the TLS element (`TLS`, `TLS: reason`,
    // `TLS handshaking: ...`, `secured`), optionally `%k` (`TLSv1.3 with cipher ...`),
    // session=<S>.
    let mut tls_seen = false;
    let mut secured = false;
    for field in scan::fields(fields, ", ") {
        if let Some(a) = field.strip_prefix("rip=") {
            e.address = ip(a);
        } else if let Some(m) = field.strip_prefix("method=") {
            e.mechanism = Some(m.to_ascii_uppercase());
        } else if field == "TLS" || field.starts_with("TLS: ") {
            tls_seen = true;
        } else if field == "secured" || field.starts_with("TLS handshaking") {
            secured = true;
        } else if let Some(t) = tls_desc(field) {
            e.tls = Some(t);
        } else if let Some(s) = field.strip_prefix("session=<") {
            let sid = s.strip_suffix('>').unwrap_or(s);
            if !sid.is_empty() && sid.len() <= 64 {
                e.session = Some(sid.to_string());
            }
        }
    }
    // A connection over a unix socket has no rip=: nobody to count against.
    e.address?;
    if e.tls.is_none() {
        if tls_seen {
            e.tls = Some(Tls::unknown_cipher());
        } else if !secured {
            e.plaintext = true;
        }
    }
    Some(e)
}

/// Which generation's grammar a reading follows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Form {
    /// 2.3 and older: `DRIVER(U,A[,master][,<S>]): MESSAGE`.
    V23,
    /// 2.4: `auth(U,A[,sasl:M][,master])[<S>]: [LEVEL: ]DRIVER: MESSAGE`.
    V24,
}

/// Where the client's user name begins, fixed by Dovecot's own prefix (which is
/// written before any client text), and the grammar of the rest.
#[derive(Debug, Clone, Copy)]
struct Start<'a> {
    at: usize,
    form: Form,
    driver: &'a str,
}

/// A reading of an auth-process line: one place where the driver call may close.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading<'a> {
    addr: IpAddr,
    user: &'a str,
    session: Option<&'a str>,
    mech: Option<&'a str>,
    driver: &'a str,
    /// The message after the call is one of Dovecot's "wrong password" messages.
    failure: bool,
}

/// The longest stretch of Dovecot's own fields after the user name:
/// `,ADDR,sasl:MECH,master,<SESSION>` with a 64-byte session id and a 45-byte address.
const FIELDS_MAX: usize = 200;
/// Longest driver or process name read (`passwd-file`, `auth-worker`, `checkpassword`).
const NAME_MAX: usize = 32;

/// A run of `[a-z0-9_-]` at the start of `s`, at most [`NAME_MAX`] long.
fn driver_name(s: &str) -> Option<&str> {
    let n = s
        .bytes()
        .take(NAME_MAX + 1)
        .take_while(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        .count();
    (n > 0 && n <= NAME_MAX).then(|| &s[..n])
}

/// Auth-process lines. Dovecot writes its prefix first and the client's user name
/// inside the driver call, so where the user name *begins* is fixed by Dovecot's text;
/// where it *ends* is not, since a user name may hold `,ADDR): Password mismatch`. Every
/// `)` that could close the call is read; the address counts only if every reading
/// agrees on it and on the line being a failure. Each reading looks at a bounded
/// stretch of text, so the whole line costs time linear in its length.
fn auth_line(text: &str) -> Option<Event> {
    let mut starts: [Option<Start>; 2] = [None, None];
    let proc_len = if text.starts_with("auth-worker") {
        "auth-worker".len()
    } else if text.starts_with("auth") {
        "auth".len()
    } else {
        return None;
    };
    let process = &text[..proc_len];
    let after = &text[proc_len..];
    if let Some(inner) = after.strip_prefix('(') {
        // 2.4: `auth(USER,...`.
        starts[0] = Some(Start {
            at: proc_len + 1,
            form: Form::V24,
            driver: process,
        });
        // Older: `auth(default): ` / `auth-worker(PID): ` before the driver call.
        if let Some(word) = driver_name(inner)
            && let Some(rest) = inner[word.len()..].strip_prefix("): ")
        {
            starts[1] = driver_call(text, text.len() - rest.len());
        }
    } else if let Some(rest) = after.strip_prefix(": ") {
        starts[0] = driver_call(text, text.len() - rest.len());
    }
    let mut first: Option<Reading> = None;
    let mut ambiguous = false;
    let mut users_agree = true;
    for start in starts.into_iter().flatten() {
        for close in memchr::memchr_iter(b')', &text.as_bytes()[start.at..]) {
            let close = start.at + close;
            let Some((session, failure)) = tail(&text[close..], start.form) else {
                continue;
            };
            let Some(r) = reading(start, &text[start.at..close], session, failure) else {
                continue;
            };
            match &first {
                None => first = Some(r),
                Some(f) => {
                    ambiguous |= f.addr != r.addr || f.failure != r.failure;
                    users_agree &= f.user == r.user;
                }
            }
        }
    }
    let first = first?;
    if !first.failure && !ambiguous {
        return None;
    }
    let rule = if first.driver == "auth" || first.driver == "auth-worker" {
        "dovecot.auth_v24"
    } else {
        "dovecot.auth_v23"
    };
    let mut e = Event::new(Kind::AuthFailure, Channel::DovecotAuth, rule);
    e.attempts = Some(1);
    e.service = Some(Name::Borrowed(SERVICE_AUTH));
    if ambiguous {
        e.ambiguous = true;
        return Some(e);
    }
    e.address = Some(first.addr);
    if users_agree && first.user != "?" {
        e.user = Some(first.user.to_string());
    }
    e.session = first.session.map(str::to_string);
    e.mechanism = first.mech.map(|m| m.to_ascii_uppercase());
    if e.mechanism.is_none() && MECH_DRIVERS.contains(&first.driver) {
        e.mechanism = Some(first.driver.to_ascii_uppercase());
    }
    Some(e)
}

/// The start of a 2.3 driver call at `pos`: `[LEVEL: ][conn unix:auth-worker (...):
/// auth-worker<N>: [LEVEL: ]]DRIVER(`.
fn driver_call(text: &str, pos: usize) -> Option<Start<'_>> {
    let mut s = strip_level(&text[pos..]);
    if let Some(conn) = s.strip_prefix("conn unix:") {
        // `conn unix:auth-worker (pid=27359,uid=97): auth-worker<55>: `: Dovecot's own,
        // short, and before any client text.
        let window = &conn.as_bytes()[..conn.len().min(96)];
        let p = scan::find_bytes(window, b"): auth-worker<")?;
        let rest = &conn[p + "): auth-worker<".len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        s = strip_level(rest[digits..].strip_prefix(">: ")?);
    }
    let driver = driver_name(s)?;
    if driver == "auth" || driver == "auth-worker" {
        return None;
    }
    s[driver.len()..].strip_prefix('(')?;
    Some(Start {
        at: text.len() - s.len() + driver.len() + 1,
        form: Form::V23,
        driver,
    })
}

/// What follows a `)` that closes the driver call, if it can: the session id (2.4) and
/// whether the message is a failure. Looks at a bounded stretch only.
fn tail(s: &str, form: Form) -> Option<(Option<&str>, bool)> {
    let s = s.strip_prefix(')')?;
    match form {
        Form::V23 => Some((None, failure_message(s.strip_prefix(": ")?))),
        Form::V24 => {
            let (session, msg) = if let Some(m) = s.strip_prefix(": ") {
                (None, m)
            } else {
                let s = s.strip_prefix('<')?;
                let window = &s.as_bytes()[..s.len().min(66)];
                let close = scan::find_bytes(window, b">: ")?;
                let sid = &s[..close];
                if sid.is_empty() || sid.contains([' ', '<', '>']) {
                    return None;
                }
                (Some(sid), &s[close + 3..])
            };
            let msg = strip_level(msg);
            let driver = driver_name(msg)?;
            let phrase = msg[driver.len()..].strip_prefix(": ")?;
            Some((session, failure_message(phrase)))
        }
    }
}

/// A whole Dovecot failure message: the phrase, then the end of the line, ` (...)` (the
/// given password or its hash, `for LDAP bind`) or `: ...` (PAM's reason).
fn failure_message(msg: &str) -> bool {
    FAILURE_PHRASES.iter().any(|p| {
        starts_with_ci(msg, p) && {
            let rest = &msg[p.len()..];
            rest.is_empty() || rest.starts_with(" (") || rest.starts_with(": ")
        }
    })
}

/// Splits `U,A[,master][,<S>]` (2.3) or `U,A[,sasl:M][,master]` (2.4) from the right,
/// looking no further back than Dovecot's own fields can reach.
fn reading<'a>(
    start: Start<'a>,
    inner: &'a str,
    session: Option<&'a str>,
    failure: bool,
) -> Option<Reading<'a>> {
    let mut lo = inner.len().saturating_sub(FIELDS_MAX);
    while !inner.is_char_boundary(lo) {
        lo += 1;
    }
    let mut rest = &inner[lo..];
    let mut session = session;
    let mut mech = None;
    if start.form == Form::V23 {
        // `ldap(dog,52.37.139.121,)`: an empty trailing field.
        if let Some(r) = rest.strip_suffix(',') {
            rest = r;
        }
        if let Some((r, last)) = scan::rsplit_byte(rest, b',')
            && let Some(s) = last.strip_prefix('<').and_then(|l| l.strip_suffix('>'))
        {
            session = Some(s);
            rest = r;
        }
    }
    if let Some(r) = rest.strip_suffix(",master") {
        rest = r;
    }
    if let Some((r, last)) = scan::rsplit_byte(rest, b',')
        && let Some(m) = last.strip_prefix("sasl:")
    {
        mech = Some(m);
        rest = r;
    }
    let (_, addr) = scan::rsplit_byte(rest, b',')?;
    // The user name is everything from the start to the comma before the address.
    let user_len = addr.as_ptr() as usize - inner.as_ptr() as usize - 1;
    let addr = ip(addr)?;
    Some(Reading {
        addr,
        user: &inner[..user_len],
        session,
        mech,
        driver: start.driver,
        failure,
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

    fn addr(line: &str) -> (Option<String>, bool) {
        let e = parse(line).expect("an event");
        (e.address.map(|a| a.to_string()), e.ambiguous)
    }

    #[test]
    fn fake_driver_anchors_in_a_user_name_frame_no_one() {
        // Nine fake `NAME(` anchors ahead of a fake close: the reading from Dovecot's own
        // anchor sees two closes with two addresses.
        let line = "dovecot: auth: passwd-file(: a(: b(: c(: d(: e(: f(: g(: h(,192.0.2.1): unknown user,203.0.113.66): Password mismatch";
        assert_eq!(addr(line), (None, true));
        // Deeper nesting changes nothing.
        let deep = format!(
            "dovecot: auth: passwd-file({},192.0.2.1): unknown user (,203.0.113.66): Password mismatch",
            ": x(".repeat(100)
        );
        assert_eq!(addr(&deep), (None, true));
        // The 2.4 prefix and IPv6, the same way.
        let v24 = "dovecot: auth(: a(: b(: c(: d(: e(: f(: g(: h(,2001:db8::1,sasl:plain)<x>: passwd-file: unknown user,2001:db8::66,sasl:plain)<sid>: passwd-file: Password mismatch";
        assert_eq!(addr(v24), (None, true));
    }

    #[test]
    fn a_2_4_user_that_looks_like_a_2_3_worker_prefix_frames_no_one() {
        let line = "dovecot: auth(default): passwd-file(x,192.0.2.1): Password mismatch (,203.0.113.66,sasl:plain)<sid>: passwd-file: Password mismatch";
        assert_eq!(addr(line), (None, true));
    }

    #[test]
    fn a_login_line_without_rip_of_its_own_takes_none_from_the_user_name() {
        // Over a unix socket Dovecot drops the empty rip= and lip=.
        let line = "dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, session=<q>, method=PLAIN, session=<real>";
        assert!(parse(line).is_none_or(|e| e.address.is_none()));
        let line = "dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, rip=192.0.2.1, x>, method=PLAIN, session=<real>";
        assert!(parse(line).is_none_or(|e| e.address.is_none()));
        // The same user name on a TCP connection: the real rip= is found.
        let line = "dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, session=<q>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.2, TLS, session=<real>";
        let e = parse(line).unwrap();
        assert_eq!(e.address.unwrap().to_string(), "203.0.113.66");
        assert_eq!(e.session.as_deref(), Some("real"));
        assert_eq!(
            e.user.as_deref(),
            Some("a>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, session=<q")
        );
    }

    #[test]
    fn dovecot_2_4_logged_in_is_a_login() {
        let e = parse("dovecot: imap-login: Logged in: user=<alice>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, mpid=42, TLS, TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits), session=<abc>").unwrap();
        assert_eq!(e.kind, Kind::AuthSuccess);
        assert_eq!(e.address.unwrap().to_string(), "192.0.2.10");
        assert_eq!(e.tls.unwrap().protocol, "TLSv1.3");
    }
}
