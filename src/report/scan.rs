//! The one scanner of the whole mail log, not only its failures: Postfix sessions
//! (connect, TLS, AUTH, the queue IDs they created, disconnect) and messages (client,
//! message-id, sender, each recipient's relay, delay and status, removal), and Dovecot
//! logins. [`super::tls`] and [`super::trace`] read what it finishes.
//!
//! Client addresses come from the fields Postfix and Dovecot write (`name[addr]`,
//! `rip=`), through the same parser as the rest of saslguard. Lines are read in the
//! order of the files given; memory holds the open sessions and messages, and for
//! `trace` the ones that matched.

use crate::parse::{self, Direction, Event, Kind, Tls};
use crate::time::Timestamp;
use hashbrown::HashMap;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One line as the scanner sees it.
pub struct LogLine<'a> {
    pub time: Timestamp,
    pub host: &'a str,
    pub program: &'a str,
    pub pid: Option<u32>,
    pub msg: &'a str,
    pub raw: &'a str,
    pub event: Option<&'a parse::Event>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    pub time: Timestamp,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_to: Option<String>,
    pub relay: String,
    pub delay: String,
    pub dsn: String,
    pub status: String,
    pub detail: String,
    /// TLS of the delivery (Postfix smtp client), when logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Message {
    pub queue_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    /// TLS of the session that handed the message in (`plaintext` if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub recipients: Vec<Recipient>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Timestamp>,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Session {
    pub service: String,
    pub pid: u32,
    pub start: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The disconnect tally said STARTTLS was used.
    pub starttls: bool,
    pub auth_failures: u32,
    pub users: Vec<String>,
    pub queue_ids: Vec<String>,
    pub lines: Vec<String>,
}

impl Session {
    /// TLS of the session: the logged label, or what the tally and the service say.
    pub fn posture(&self) -> String {
        match &self.tls {
            Some(t) => t.clone(),
            None if self.starttls || self.service.ends_with("smtps/smtpd") => {
                Tls::unknown_cipher().label()
            }
            None => crate::attempts::PLAINTEXT.to_string(),
        }
    }
}

/// The queue ID at the start of a Postfix message: `4Nq2Yb1QzRz9sT: ...` (long IDs)
/// or `3F2A1B4C5D: ...` (short hex IDs): the parser's reading of the token
/// ([`parse::postfix::queue_id_prefix`]), less `NOQUEUE` and words without a digit.
pub fn queue_id(msg: &str) -> Option<(&str, &str)> {
    let (id, rest) = parse::postfix::queue_id_prefix(msg)?;
    (id != "NOQUEUE" && id.bytes().any(|b| b.is_ascii_digit())).then_some((id, rest))
}

/// A Postfix `k=v, k=v` list read once from its start, as the text after a queue ID
/// has it: `to=<a@example.org>, relay=..., dsn=2.0.0, status=sent (250 Ok)`,
/// `from=<b@example.org>, size=1234, nrcpt=1 (queue active)`, `client=name[addr]`.
///
/// A key is `[a-z_-]` up to its `=`. A value in `<...>` ends at the first `>` outside
/// double quotes: Postfix quotes a local part with specials and escapes `"` and `\`
/// in it (`<"a, status=sent"@example.org>`); where the quotes do not close (an address
/// logged in its internal form), at the first `>`. Any other value ends at a `,` or a
/// space. Fields are separated by a `,` (Postfix writes a space after it; one is
/// skipped); anything else ends the list, and what follows is its
/// [`Fields::trailer`] (`(queue active)`, a delivery's detail).
///
/// Only a field's start is a key: text in a value, in the trailer (a remote server's
/// reply) or on a line that is no list (`reject: ...`, `warning: header ...`, where a
/// sender writes what they like) is never read as one. A search for `key=` anywhere
/// on the line took a sender's quoted ` client=` or `, status=` for Postfix's.
pub struct Fields<'a> {
    rest: &'a str,
    ended: bool,
}

/// The fields of `list`, from its start.
pub fn fields(list: &str) -> Fields<'_> {
    Fields {
        rest: list,
        ended: false,
    }
}

impl<'a> Fields<'a> {
    /// What follows the list once its fields are read: `(250 2.0.0 Ok)`, `(queue
    /// active)`; the whole text if its start is no field; "" before the end.
    pub fn trailer(&self) -> &'a str {
        if self.ended { self.rest } else { "" }
    }

    /// The value of the next field named `key` (without its `=`).
    pub fn value(&mut self, key: &str) -> Option<&'a str> {
        self.find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn end(&mut self, trailer: &'a str) -> Option<(&'a str, &'a str)> {
        self.ended = true;
        self.rest = trailer;
        None
    }
}

/// Where the `<...>` at the start of `b` ends (after its `>`).
fn angle_end(b: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    memchr::memchr(b'>', b).map(|e| e + 1)
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.ended {
            return None;
        }
        let (s, b) = (self.rest, self.rest.as_bytes());
        let k = b
            .iter()
            .position(|&c| !(c.is_ascii_lowercase() || c == b'_' || c == b'-'));
        let Some(k) = k.filter(|&k| k > 0 && b[k] == b'=') else {
            return self.end(s);
        };
        let v = &b[k + 1..];
        let len = if v.first() == Some(&b'<') {
            match angle_end(v) {
                Some(n) => n,
                None => return self.end(s),
            }
        } else {
            memchr::memchr2(b',', b' ', v).unwrap_or(v.len())
        };
        let end = k + 1 + len;
        let field = (&s[..k], &s[k + 1..end]);
        let after = &s[end..];
        match after.strip_prefix(',') {
            Some(next) => self.rest = next.strip_prefix(' ').unwrap_or(next),
            None => {
                self.ended = true;
                self.rest = after.trim_start();
            }
        }
        Some(field)
    }
}

/// One more of `label`: its key is copied only the first time.
pub(crate) fn bump(m: &mut BTreeMap<String, u64>, label: &str) {
    match m.get_mut(label) {
        Some(n) => *n += 1,
        None => {
            m.insert(label.to_string(), 1);
        }
    }
}

fn strip_angle(s: &str) -> String {
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}

/// `name[addr]` as Postfix writes the client: the address through the parser the
/// rest of saslguard reads it with.
fn client_of(v: &str) -> (String, Option<IpAddr>) {
    (v.to_string(), parse::scan::name_addr(v).map(|(a, _)| a))
}

/// A process (host, program, pid) as the pipeline keys it: no allocation per line.
type SKey = parse::ProcessKey;

/// A Dovecot login as `tls` and `trace` see it.
#[derive(Debug, Clone, Serialize)]
pub struct DovecotLogin {
    pub time: Timestamp,
    pub service: String,
    pub user: String,
    pub address: IpAddr,
    pub tls: String,
    pub line: String,
}

/// A line as the scanner needs it, owned and parsed: made on a reader thread, fed in
/// order with [`Scanner::feed_line`].
#[derive(Debug)]
pub struct ScanLine {
    pub time: Timestamp,
    pub text: String,
    /// Where in `text` the host is (empty when the line has none), the program and the
    /// message; the pid: the tag, read once.
    host: std::ops::Range<usize>,
    program: std::ops::Range<usize>,
    pid: Option<u32>,
    msg: usize,
    pub event: Option<Box<Event>>,
}

impl ScanLine {
    /// None for a line without a time or a program tag, and for one the scanner
    /// would pass over ([`Scanner::feed`]: a Dovecot line that is no login, another
    /// program's), so that its text is not copied.
    pub fn of(line: &crate::source::Stamped) -> Option<ScanLine> {
        let Ok((time, prefix)) = &line.stamp else {
            return None;
        };
        let tag = parse::syslog::tag(prefix.rest)?;
        let (program, pid, msg) = tag;
        let event = parse::parse_tagged(prefix, Some(tag)).event;
        let read = match Program::of(program) {
            Program::Dovecot => event.as_deref().is_some_and(is_login),
            Program::Postfix => true,
            Program::Other => false,
        };
        read.then(|| ScanLine {
            time: *time,
            text: line.text.to_string(),
            host: prefix.host.map_or(0..0, |h| line.range_of(h)),
            program: line.range_of(program),
            pid,
            msg: line.range_of(msg).start,
            event,
        })
    }
}

/// Whose lines the scanner reads.
#[derive(PartialEq)]
enum Program {
    /// Dovecot's, for its logins.
    Dovecot,
    /// Postfix's, for sessions and messages.
    Postfix,
    Other,
}

impl Program {
    fn of(program: &str) -> Program {
        if program.starts_with("dovecot")
            || program.starts_with("imap-login")
            || program.starts_with("pop3-login")
        {
            Program::Dovecot
        } else if program.starts_with("postfix") {
            Program::Postfix
        } else {
            Program::Other
        }
    }
}

/// A Dovecot login the scanner records: a success with an address and a user.
fn is_login(ev: &Event) -> bool {
    ev.kind == Kind::AuthSuccess && ev.address.is_some() && ev.user.is_some()
}

#[derive(Default)]
pub struct Scanner {
    sessions: HashMap<SKey, Session>,
    messages: HashMap<String, Message>,
    /// The TLS of each Postfix smtp client process's current delivery.
    outbound_tls: HashMap<SKey, String>,
    /// Sessions and messages that ended (drained by the caller).
    pub closed_sessions: Vec<Session>,
    pub done_messages: Vec<Message>,
    pub logins: Vec<DovecotLogin>,
    /// Outbound TLS handshakes by label.
    pub outbound: BTreeMap<String, u64>,
    /// Keep what only `trace` shows: the lines of each session and message, and each
    /// message's message-id and recipients (`tls` reads none of it, and a recipient is
    /// six strings).
    pub for_trace: bool,
}

/// The message of `qid`, new if unknown: its key is allocated only then (hashbrown's
/// fast hash, not SipHash: queue IDs are Postfix's, not a client's).
fn message<'a>(messages: &'a mut HashMap<String, Message>, qid: &str) -> &'a mut Message {
    messages.entry_ref(qid).or_insert_with(|| Message {
        queue_id: qid.to_string(),
        ..Message::default()
    })
}

fn is_smtpd(program: &str) -> bool {
    program.ends_with("/smtpd")
}

impl Scanner {
    /// Feeds one line of the merged log as [`ScanLine::of`] made it (perhaps on a
    /// reader thread); false for a line without a time or a tag, which tells nothing.
    pub fn feed_line(&mut self, line: Option<ScanLine>) -> bool {
        let Some(line) = line else {
            return false;
        };
        self.feed(&LogLine {
            time: line.time,
            host: &line.text[line.host.clone()],
            program: &line.text[line.program.clone()],
            pid: line.pid,
            msg: &line.text[line.msg..],
            raw: &line.text,
            event: line.event.as_deref(),
        });
        true
    }

    /// The Postfix sessions still open.
    pub fn open_sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    pub fn feed(&mut self, l: &LogLine) {
        let pid = l.pid.unwrap_or(0);
        let key: SKey = parse::ProcessKey::new(l.host, l.program, pid);
        let program = Program::of(l.program);
        if program == Program::Dovecot {
            if let Some(ev) = l.event.filter(|e| is_login(e))
                && let (Some(addr), Some(user)) = (ev.address, &ev.user)
            {
                let tls = match (&ev.tls, ev.plaintext) {
                    (Some(t), _) => t.label(),
                    (None, true) => crate::attempts::PLAINTEXT.to_string(),
                    (None, false) => {
                        if l.msg.contains(", TLS") {
                            Tls::unknown_cipher().label()
                        } else {
                            crate::attempts::PLAINTEXT.to_string()
                        }
                    }
                };
                self.logins.push(DovecotLogin {
                    time: l.time,
                    service: ev.service.as_deref().unwrap_or("dovecot").to_string(),
                    user: user.clone(),
                    address: addr,
                    tls,
                    line: l.raw.to_string(),
                });
            }
            return;
        }
        if program == Program::Other {
            return;
        }
        if is_smtpd(l.program) {
            self.smtpd(key, l);
            return;
        }
        if (l.program.ends_with("/smtp") || l.program.ends_with("/lmtp"))
            && let Some(ev) = l.event
            && ev.kind == Kind::Tls
            && ev.direction == Some(Direction::Outbound)
            && let Some(t) = &ev.tls
        {
            let label = t.label();
            bump(&mut self.outbound, &label);
            self.outbound_tls.insert(key, label);
        }
        let Some((qid, rest)) = queue_id(l.msg) else {
            return;
        };
        let keep = self.for_trace;
        let m = message(&mut self.messages, qid);
        if keep {
            m.lines.push(l.raw.to_string());
        }
        if l.program.ends_with("/qmgr") && rest == "removed" {
            m.removed = Some(l.time);
            let m = self.messages.remove(qid).expect("present");
            self.done_messages.push(m);
            return;
        }
        // The first field says what the line is; a line that is no list (`reject:`,
        // `warning: header ...`) adds nothing.
        let mut f = fields(rest);
        match f.next() {
            Some(("message-id", v)) if keep => m.message_id = Some(strip_angle(v)),
            Some(("from", v)) if l.program.ends_with("/qmgr") => {
                m.from = Some(strip_angle(v));
                m.size = f.value("size").and_then(|s| s.parse().ok());
            }
            Some(("to", to)) if keep => {
                let (mut orig_to, mut relay, mut delay, mut dsn, mut status) =
                    (None, "", "", "", None);
                for (k, v) in f.by_ref() {
                    match k {
                        "orig_to" => orig_to = Some(strip_angle(v)),
                        "relay" => relay = v,
                        "delay" => delay = v,
                        "dsn" => dsn = v,
                        "status" => status = Some(v),
                        _ => {}
                    }
                }
                if let Some(status) = status {
                    let detail = f.trailer().trim_start_matches('(').trim_end_matches(')');
                    m.recipients.push(Recipient {
                        time: l.time,
                        to: strip_angle(to),
                        orig_to,
                        relay: relay.to_string(),
                        delay: delay.to_string(),
                        dsn: dsn.to_string(),
                        status: status.to_string(),
                        detail: detail.to_string(),
                        tls: self.outbound_tls.get(&key).cloned(),
                    });
                }
            }
            _ => {}
        }
    }

    fn smtpd(&mut self, key: SKey, l: &LogLine) {
        let ev = l.event;
        if l.msg.starts_with("connect from ") {
            let client = &l.msg["connect from ".len()..];
            // The parser read the address already where the line is a whole connect.
            let addr = match ev {
                Some(e) if e.kind == Kind::Connect => e.address,
                _ => client_of(client).1,
            };
            let client = client.to_string();
            let s = Session {
                service: l.program.to_string(),
                pid: key.pid,
                start: l.time,
                client,
                client_address: addr,
                ..Session::default()
            };
            if let Some(old) = self.sessions.insert(key, s) {
                self.closed_sessions.push(old);
            }
        }
        let keep = self.for_trace;
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if keep {
            s.lines.push(l.raw.to_string());
        }
        if let Some(ev) = ev {
            match ev.kind {
                Kind::Tls if ev.direction != Some(Direction::Outbound) => {
                    s.tls = ev.tls.as_ref().map(Tls::label);
                }
                Kind::AuthFailure => s.auth_failures += ev.attempts.unwrap_or(1),
                Kind::AuthSuccess => {
                    if let Some(u) = &ev.user
                        && !s.users.contains(u)
                    {
                        s.users.push(u.clone());
                    }
                }
                _ => {}
            }
            if let Some(t) = &ev.tally {
                s.starttls = t.starttls;
            }
        }
        if let Some((qid, rest)) = queue_id(l.msg)
            && let mut f = fields(rest)
            && let Some(("client", c)) = f.next()
        {
            s.queue_ids.push(qid.to_string());
            let (client, addr) = client_of(c);
            let posture = s.posture();
            let tls = if s.tls.is_some() || s.service.ends_with("smtps/smtpd") {
                posture
            } else {
                // STARTTLS not logged (smtpd_tls_loglevel 0) is told at disconnect.
                posture.replace(crate::attempts::PLAINTEXT, "plaintext (so far)")
            };
            let m = message(&mut self.messages, qid);
            m.received = Some(l.time);
            m.client = Some(client);
            m.client_address = addr;
            m.sasl_username = f.value("sasl_username").map(str::to_string);
            m.tls = Some(tls);
            if keep {
                m.lines.push(l.raw.to_string());
            }
        }
        if l.msg.starts_with("disconnect from ") {
            let mut s = self.sessions.remove(&key).expect("present");
            s.end = Some(l.time);
            // The tally is the session's last word on STARTTLS.
            let posture = s.posture();
            for q in &s.queue_ids {
                if let Some(m) = self.messages.get_mut(q) {
                    m.tls = Some(posture.clone());
                }
            }
            self.closed_sessions.push(s);
        }
    }

    /// Ends the scan: sessions and messages still open count as closed.
    pub fn finish(&mut self) {
        let mut open: Vec<Session> = self.sessions.drain().map(|(_, s)| s).collect();
        open.sort_by_key(|s| s.start);
        self.closed_sessions.extend(open);
        let mut msgs: Vec<Message> = self.messages.drain().map(|(_, m)| m).collect();
        msgs.sort_by_key(|m| m.received);
        self.done_messages.extend(msgs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(list: &'a str, key: &str) -> Option<&'a str> {
        fields(list).value(key)
    }

    /// A line carries its tag to the scanner read once: the session a connect opens
    /// is keyed, named and addressed as the line says, and a tag with an empty message
    /// (`prog[1]:`) is no slice of the line and breaks nothing.
    #[test]
    fn a_scan_line_carries_its_tag() {
        let mut r = crate::time::YearResolver::with_year(crate::time::Zone::utc(), 2026);
        let mut lossy = String::new();
        let mut sc = Scanner::default();
        for raw in [
            "Nov 22 08:00:00 mx postfix/submission/smtpd[4242]: connect from unknown[192.0.2.7]",
            "Nov 22 08:00:01 mx postfix/submission/smtpd[4242]:",
            "Nov 22 08:00:02 postfix/submission/smtpd[4243]:",
        ] {
            let line = crate::source::stamp(raw.as_bytes(), &mut r, &mut lossy);
            assert!(sc.feed_line(ScanLine::of(&line)), "{raw}");
        }
        let s: Vec<&Session> = sc.open_sessions().collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].service, "postfix/submission/smtpd");
        assert_eq!(s[0].pid, 4242);
        assert_eq!(s[0].client, "unknown[192.0.2.7]");
        assert_eq!(s[0].client_address, Some("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn queue_ids_and_fields() {
        assert_eq!(
            queue_id("4Nq2Yb1QzRz9sT: client=x[1.2.3.4]"),
            Some(("4Nq2Yb1QzRz9sT", "client=x[1.2.3.4]"))
        );
        assert_eq!(
            queue_id("3F2A1B4C5D: removed"),
            Some(("3F2A1B4C5D", "removed"))
        );
        assert_eq!(queue_id("NOQUEUE: reject: RCPT"), None);
        assert_eq!(queue_id("warning: x"), None);
        // The ID at its bounds, and the first `: ` only.
        assert_eq!(queue_id("1abcd: x"), Some(("1abcd", "x")));
        assert_eq!(queue_id("1abc: x"), None);
        assert_eq!(
            queue_id("1234567890abcdefghij: x: y"),
            Some(("1234567890abcdefghij", "x: y"))
        );
        assert_eq!(queue_id("1234567890abcdefghijk: x"), None);
        assert_eq!(queue_id("abcdef: x"), None);
        assert_eq!(queue_id("4Nq2Yb1QzRz9sT:x: y"), None);
        assert_eq!(queue_id("4Nq2Y-b1Q: x"), None);
        assert_eq!(queue_id("4Nq2Yb1QzRz9sT"), None);
        let m = "to=<bob@example.com>, orig_to=<b@example.com>, relay=mx.example.com[198.51.100.25]:25, delay=0.61, delays=0.1/0/0.3/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9A1)";
        assert_eq!(field(m, "to"), Some("<bob@example.com>"));
        assert_eq!(field(m, "orig_to"), Some("<b@example.com>"));
        assert_eq!(field(m, "relay"), Some("mx.example.com[198.51.100.25]:25"));
        assert_eq!(field(m, "delay"), Some("0.61"));
        assert_eq!(field(m, "status"), Some("sent"));
        let mut f = fields(m);
        assert_eq!(f.by_ref().count(), 7);
        assert_eq!(f.trailer(), "(250 2.0.0 Ok: queued as 9A1)");
        assert_eq!(field("from=<>, size=3", "from"), Some("<>"));
        // A key inside a value or another key is not the key.
        assert_eq!(field("xto=<a>, to=<b>", "to"), Some("<b>"));
        assert_eq!(field("relay=to=x, dsn=5", "to"), None);
        assert_eq!(field("sto=1,to=2", "to"), Some("2"));
        assert_eq!(field("to=", "to"), Some(""));
        assert_eq!(field("t", "to"), None);
        assert_eq!(field("to=<unclosed", "to"), None);
        // A quoted local part is one value, escapes and all; the trailer and what
        // follows a text that is no list are never fields.
        let q = r#"to=<"a\">, status=sent"@example.org>, status=bounced (550 x, orig_to=<y>)"#;
        assert_eq!(field(q, "to"), Some(r#"<"a\">, status=sent"@example.org>"#));
        assert_eq!(field(q, "status"), Some("bounced"));
        assert_eq!(field(q, "orig_to"), None);
        assert_eq!(field("reject: x; to=<a>, status=sent", "status"), None);
        assert_eq!(fields("removed").trailer(), "");
        let mut f = fields("warning: to=<a>");
        assert_eq!(f.next(), None);
        assert_eq!(f.trailer(), "warning: to=<a>");
        // An address in its internal form, quotes unclosed: the first `>`.
        assert_eq!(field(r#"to=<a"b@x>, dsn=5"#, "to"), Some(r#"<a"b@x>"#));
        assert_eq!(field(r#"to=<a"b@x>, dsn=5"#, "dsn"), Some("5"));
    }

    /// Only Postfix's own fields are read: the list at the start of what follows a
    /// queue ID, a quoted local part as one value. What a sender or a remote server
    /// writes (a quoted recipient in a reject, a header in a cleanup warning, a
    /// reply) sets no client, recipient, status, size or message ID.
    #[test]
    fn only_the_fields_postfix_wrote_are_read() {
        let q = "4ZAbc1dEfGhJk";
        let lines = [
            "Nov 22 08:00:00 mx postfix/smtpd[100]: connect from mail.example.net[192.0.2.10]".to_string(),
            format!("Nov 22 08:00:01 mx postfix/smtpd[100]: {q}: client=mail.example.net[192.0.2.10]"),
            format!(r#"Nov 22 08:00:02 mx postfix/smtpd[100]: {q}: reject: RCPT from mail.example.net[192.0.2.10]: 550 5.1.1 <"x client=victim.example[198.51.100.9]"@example.org>: Recipient address rejected: User unknown; from=<a@example.net> to=<"x client=victim.example[198.51.100.9]"@example.org> proto=ESMTP helo=<mail.example.net>"#),
            format!("Nov 22 08:00:03 mx postfix/cleanup[101]: {q}: message-id=<m1@example.net>"),
            format!("Nov 22 08:00:03 mx postfix/cleanup[101]: {q}: warning: header Subject: hi message-id=<evil@example.net> to=<victim@example.org>, status=sent (x) from mail.example.net[192.0.2.10]; from=<a@example.net> to=<bob@example.org> proto=ESMTP helo=<mail.example.net>"),
            format!(r#"Nov 22 08:00:04 mx postfix/qmgr[102]: {q}: from=<"a, size=1"@example.net>, size=2345, nrcpt=1 (queue active)"#),
            format!(r#"Nov 22 08:00:05 mx postfix/smtp[103]: {q}: to=<"b, status=sent"@example.com>, relay=mx.example.com[198.51.100.25]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.1.1, status=bounced (host mx.example.com said: 550 orig_to=<x@example.com>, relay=evil, status=sent)"#),
            "Nov 22 08:00:06 mx postfix/smtpd[100]: disconnect from mail.example.net[192.0.2.10] ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 commands=5/6".to_string(),
            format!("Nov 22 08:00:07 mx postfix/qmgr[102]: {q}: removed"),
        ];
        // As `trace` scans (message-ids and recipients kept) and as `tls` does (not
        // kept: the rest is the same).
        let scan = |for_trace: bool| {
            let mut r = crate::time::YearResolver::with_year(crate::time::Zone::utc(), 2026);
            let mut lossy = String::new();
            let mut sc = Scanner {
                for_trace,
                ..Scanner::default()
            };
            for raw in &lines {
                let line = crate::source::stamp(raw.as_bytes(), &mut r, &mut lossy);
                assert!(sc.feed_line(ScanLine::of(&line)), "{raw}");
            }
            sc.finish();
            sc
        };
        let sc = scan(false);
        assert_eq!(sc.done_messages.len(), 1);
        let m = &sc.done_messages[0];
        assert_eq!(m.client_address, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(m.from.as_deref(), Some(r#""a, size=1"@example.net"#));
        assert_eq!((m.message_id.as_deref(), m.recipients.len()), (None, 0));
        let sc = scan(true);
        assert_eq!(sc.closed_sessions.len(), 1);
        assert_eq!(sc.closed_sessions[0].queue_ids, vec![q.to_string()]);
        assert_eq!(sc.done_messages.len(), 1);
        let m = &sc.done_messages[0];
        assert_eq!(m.client_address, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(m.client.as_deref(), Some("mail.example.net[192.0.2.10]"));
        assert_eq!(m.message_id.as_deref(), Some("m1@example.net"));
        assert_eq!(m.from.as_deref(), Some(r#""a, size=1"@example.net"#));
        assert_eq!(m.size, Some(2345));
        assert_eq!(m.recipients.len(), 1, "{:?}", m.recipients);
        let rc = &m.recipients[0];
        assert_eq!(rc.to, r#""b, status=sent"@example.com"#);
        assert_eq!(rc.status, "bounced");
        assert_eq!(rc.dsn, "5.1.1");
        assert_eq!(rc.relay, "mx.example.com[198.51.100.25]:25");
        assert_eq!(rc.orig_to, None);
        assert_eq!(
            rc.detail,
            "host mx.example.com said: 550 orig_to=<x@example.com>, relay=evil, status=sent"
        );
    }
}
