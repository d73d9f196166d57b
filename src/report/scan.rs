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

/// The value of `key=` in a Postfix `k=v, k=v` list: `<...>` kept whole. `key` is
/// ASCII and ends in its `=`: it cannot overlap itself, so each place its first byte
/// stands is tried once (`str::find` built a two-way searcher for every call, and
/// memchr's `memmem` its own searcher: a tenth of `trace`'s time, issue 17).
pub fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let (b, k) = (msg.as_bytes(), key.as_bytes());
    let first = *k.first()?;
    let mut from = 0;
    while let Some(i) = memchr::memchr(first, &b[from..]) {
        let at = from + i;
        if b[at..].starts_with(k) && (at == 0 || matches!(b[at - 1], b' ' | b',')) {
            let v = &msg[at + k.len()..];
            if v.starts_with('<') {
                return v.find('>').map(|e| &v[..=e]);
            }
            let end = v.find([',', ' ']).unwrap_or(v.len());
            return Some(&v[..end]);
        }
        from = at + 1;
    }
    None
}

fn strip_angle(s: &str) -> String {
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}

/// `name[addr]` as Postfix writes the client.
fn client_of(v: &str) -> (String, Option<IpAddr>) {
    let addr = v
        .rsplit_once('[')
        .and_then(|(_, a)| a.split(']').next())
        .and_then(|a| a.strip_prefix("IPv6:").unwrap_or(a).parse().ok());
    (v.to_string(), addr)
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
    /// None for a line without a time or a program tag, which tells the scanner
    /// nothing.
    pub fn of(line: &crate::source::Stamped) -> Option<ScanLine> {
        let Ok((time, prefix)) = &line.stamp else {
            return None;
        };
        let tag = parse::syslog::tag(prefix.rest)?;
        let (program, pid, msg) = tag;
        Some(ScanLine {
            time: *time,
            text: line.text.to_string(),
            host: prefix.host.map_or(0..0, |h| line.range_of(h)),
            program: line.range_of(program),
            pid,
            msg: line.range_of(msg).start,
            event: parse::parse_tagged(prefix, Some(tag)).event,
        })
    }
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
    /// Keep lines (for `trace`).
    pub keep_lines: bool,
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
        if l.program.starts_with("dovecot")
            || l.program.starts_with("imap-login")
            || l.program.starts_with("pop3-login")
        {
            if let Some(ev) = l.event
                && ev.kind == Kind::AuthSuccess
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
        if !l.program.starts_with("postfix") {
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
            *self.outbound.entry(label.clone()).or_insert(0) += 1;
            self.outbound_tls.insert(key, label);
        }
        let Some((qid, rest)) = queue_id(l.msg) else {
            return;
        };
        let keep = self.keep_lines;
        let m = message(&mut self.messages, qid);
        if keep {
            m.lines.push(l.raw.to_string());
        }
        if let Some(v) = field(rest, "message-id=") {
            m.message_id = Some(strip_angle(v));
        }
        if l.program.ends_with("/qmgr") {
            if rest == "removed" {
                m.removed = Some(l.time);
                let m = self.messages.remove(qid).expect("present");
                self.done_messages.push(m);
                return;
            }
            if let Some(v) = field(rest, "from=") {
                m.from = Some(strip_angle(v));
                m.size = field(rest, "size=").and_then(|s| s.parse().ok());
            }
        }
        if let (Some(to), Some(status)) = (field(rest, "to="), field(rest, "status=")) {
            let detail = rest
                .split_once(&format!("status={status}"))
                .map(|(_, d)| d.trim().trim_start_matches('(').trim_end_matches(')'))
                .unwrap_or("")
                .to_string();
            m.recipients.push(Recipient {
                time: l.time,
                to: strip_angle(to),
                orig_to: field(rest, "orig_to=").map(strip_angle),
                relay: field(rest, "relay=").unwrap_or("").to_string(),
                delay: field(rest, "delay=").unwrap_or("").to_string(),
                dsn: field(rest, "dsn=").unwrap_or("").to_string(),
                status: status.to_string(),
                detail,
                tls: self.outbound_tls.get(&key).cloned(),
            });
        }
    }

    fn smtpd(&mut self, key: SKey, l: &LogLine) {
        let ev = l.event;
        if l.msg.starts_with("connect from ") {
            let (client, addr) = client_of(&l.msg["connect from ".len()..]);
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
        let keep = self.keep_lines;
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
            && let Some(c) = field(rest, "client=")
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
            m.sasl_username = field(rest, "sasl_username=").map(str::to_string);
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
        assert_eq!(field(m, "to="), Some("<bob@example.com>"));
        assert_eq!(field(m, "orig_to="), Some("<b@example.com>"));
        assert_eq!(field(m, "relay="), Some("mx.example.com[198.51.100.25]:25"));
        assert_eq!(field(m, "delay="), Some("0.61"));
        assert_eq!(field(m, "status="), Some("sent"));
        assert_eq!(field("from=<>, size=3", "from="), Some("<>"));
        // A key inside a value or another key is not the key.
        assert_eq!(field("xto=<a>, to=<b>", "to="), Some("<b>"));
        assert_eq!(field("relay=to=x, dsn=5", "to="), None);
        assert_eq!(field("sto=1,to=2", "to="), Some("2"));
        assert_eq!(field("to=", "to="), Some(""));
        assert_eq!(field("t", "to="), None);
        assert_eq!(field("to=<unclosed", "to="), None);
    }
}
