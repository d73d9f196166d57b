//! The whole mail log, not only its failures: Postfix sessions (connect, TLS, AUTH,
//! the queue IDs they created, disconnect) and messages (client, message-id, sender,
//! each recipient's relay, delay and status, removal), and Dovecot logins. Used by
//! `saslguard tls` (the TLS posture of all mail traffic) and `saslguard trace` (the
//! story of one message or client), which the seed articles assemble by hand with
//! grep, sort and uniq.
//!
//! Client addresses come from the fields Postfix and Dovecot write (`name[addr]`,
//! `rip=`), through the same parser as the rest of saslguard. Lines are read in the
//! order of the files given; memory holds the open sessions and messages, and for
//! `trace` the ones that matched.

use crate::parse::{self, Direction, Kind, Tls};
use crate::time::Timestamp;
use crate::tls::weakness;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
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
            None => crate::count::PLAINTEXT.to_string(),
        }
    }
}

/// The queue ID at the start of a Postfix message: `4Nq2Yb1QzRz9sT: ...` (long IDs)
/// or `3F2A1B4C5D: ...` (short hex IDs).
pub fn queue_id(msg: &str) -> Option<(&str, &str)> {
    let (id, rest) = msg.split_once(": ")?;
    let ok = (5..=20).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
        && id.bytes().any(|b| b.is_ascii_digit())
        && id != "NOQUEUE";
    ok.then_some((id, rest))
}

/// The value of `key=` in a Postfix `k=v, k=v` list: `<...>` kept whole.
pub fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = msg[from..].find(key) {
        let at = from + i;
        if at == 0 || msg[..at].ends_with(' ') || msg[..at].ends_with(',') {
            let v = &msg[at + key.len()..];
            if v.starts_with('<') {
                return v.find('>').map(|e| &v[..=e]);
            }
            let end = v.find([',', ' ']).unwrap_or(v.len());
            return Some(&v[..end]);
        }
        from = at + key.len();
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

type SKey = (String, String, u32);

/// What to keep for `trace`: sessions and messages that match one of these.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub queue_id: Option<String>,
    pub client: Option<IpNet>,
    pub cipher: Option<String>,
    pub user: Option<String>,
}

impl Filter {
    fn session(&self, s: &Session) -> bool {
        self.queue_id
            .as_ref()
            .is_some_and(|q| s.queue_ids.contains(q))
            || self
                .client
                .is_some_and(|n| s.client_address.is_some_and(|a| n.contains(&a)))
            || self
                .cipher
                .as_ref()
                .is_some_and(|c| s.tls.as_ref().is_some_and(|t| t.contains(c.as_str())))
            || self
                .user
                .as_ref()
                .is_some_and(|u| s.users.iter().any(|x| x == u))
    }
    fn message(&self, m: &Message) -> bool {
        self.queue_id.as_deref() == Some(m.queue_id.as_str())
            || self
                .client
                .is_some_and(|n| m.client_address.is_some_and(|a| n.contains(&a)))
            || self
                .user
                .as_ref()
                .is_some_and(|u| m.sasl_username.as_deref() == Some(u.as_str()))
            || self
                .cipher
                .as_ref()
                .is_some_and(|c| m.tls.as_ref().is_some_and(|t| t.contains(c.as_str())))
    }
}

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

fn message<'a>(messages: &'a mut HashMap<String, Message>, qid: &str) -> &'a mut Message {
    messages.entry(qid.to_string()).or_insert_with(|| Message {
        queue_id: qid.to_string(),
        ..Message::default()
    })
}

fn is_smtpd(program: &str) -> bool {
    program.ends_with("/smtpd")
}

impl Scanner {
    /// Feeds one line of the merged log; false for a line without a time or a tag,
    /// which tells nothing.
    pub fn feed_stamped(&mut self, line: &crate::source::Stamped) -> bool {
        let Ok((time, prefix)) = &line.stamp else {
            return false;
        };
        let Some((program, pid, msg)) = parse::syslog::tag(prefix.rest) else {
            return false;
        };
        let parsed = parse::parse_prefixed(prefix);
        self.feed(&LogLine {
            time: *time,
            host: prefix.host.unwrap_or(""),
            program,
            pid,
            msg,
            raw: line.text,
            event: parsed.event.as_deref(),
        });
        true
    }

    pub fn feed(&mut self, l: &LogLine) {
        let pid = l.pid.unwrap_or(0);
        let key: SKey = (l.host.to_string(), l.program.to_string(), pid);
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
                    (None, true) => crate::count::PLAINTEXT.to_string(),
                    (None, false) => {
                        if l.msg.contains(", TLS") {
                            Tls::unknown_cipher().label()
                        } else {
                            crate::count::PLAINTEXT.to_string()
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
            self.outbound_tls.insert(key.clone(), label);
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
                pid: key.2,
                start: l.time,
                client,
                client_address: addr,
                ..Session::default()
            };
            if let Some(old) = self.sessions.insert(key.clone(), s) {
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
                posture.replace(crate::count::PLAINTEXT, "plaintext (so far)")
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

/// Counts for `saslguard tls`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Share {
    pub total: u64,
    pub tls: u64,
    pub percent: f64,
}

impl Share {
    fn add(&mut self, tls: bool) {
        self.total += 1;
        if tls {
            self.tls += 1;
        }
        self.percent = (self.tls as f64 * 1000.0 / self.total as f64).round() / 10.0;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WeakUse {
    pub who: String,
    pub posture: String,
    pub why: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsReport {
    /// Inbound SMTP (smtpd) sessions by TLS protocol and cipher.
    pub inbound: BTreeMap<String, u64>,
    /// Outbound SMTP (smtp client) TLS handshakes.
    pub outbound: BTreeMap<String, u64>,
    /// Dovecot logins.
    pub dovecot: BTreeMap<String, u64>,
    pub inbound_sessions: Share,
    pub inbound_sessions_external: Share,
    pub received_messages: Share,
    pub received_messages_external: Share,
    /// Weak postures, by client, account and sending address.
    pub weak_clients: Vec<WeakUse>,
    pub weak_accounts: Vec<WeakUse>,
    pub weak_senders: Vec<WeakUse>,
}

fn is_tls(posture: &str) -> bool {
    posture != crate::count::PLAINTEXT && !posture.starts_with("plaintext")
}

/// Builds the TLS report while the scan goes on: sessions, messages and logins are
/// counted as they finish and dropped, so memory holds only what is open (and, for
/// messages whose session ended first, their queue ID and posture until they leave
/// the queue).
pub struct TlsAggregate {
    internal: Vec<IpNet>,
    r: TlsReport,
    weak: [BTreeMap<(String, String), u64>; 3],
    /// Posture of closed sessions, by the queue IDs they created, until the message is
    /// done.
    session_posture: HashMap<String, String>,
    /// Messages done while their session was still open.
    waiting: HashMap<String, Message>,
}

fn weak_not_plain(p: &str) -> bool {
    weakness(p).is_some() && p != crate::count::PLAINTEXT
}

impl TlsAggregate {
    /// `internal`: networks whose traffic is not "from outside".
    pub fn new(internal: Vec<IpNet>) -> TlsAggregate {
        TlsAggregate {
            internal,
            r: TlsReport::default(),
            weak: Default::default(),
            session_posture: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    fn external(&self, a: Option<IpAddr>) -> bool {
        a.is_some_and(|a| !self.internal.iter().any(|n| n.contains(&a)))
    }

    fn message(&mut self, m: &Message, p: &str) {
        self.r.received_messages.add(is_tls(p));
        if self.external(m.client_address) {
            self.r.received_messages_external.add(is_tls(p));
        }
        if weak_not_plain(p)
            && let Some(f) = &m.from
        {
            *self.weak[2].entry((f.clone(), p.to_string())).or_insert(0) += 1;
        }
    }

    /// Counts what the scanner finished since the last call.
    pub fn absorb(&mut self, sc: &mut Scanner) {
        for s in sc.closed_sessions.drain(..) {
            let p = s.posture();
            *self.r.inbound.entry(p.clone()).or_insert(0) += 1;
            self.r.inbound_sessions.add(is_tls(&p));
            if self.external(s.client_address) {
                self.r.inbound_sessions_external.add(is_tls(&p));
            }
            if weak_not_plain(&p) {
                *self.weak[0]
                    .entry((s.client.clone(), p.clone()))
                    .or_insert(0) += 1;
                for u in &s.users {
                    *self.weak[1].entry((u.clone(), p.clone())).or_insert(0) += 1;
                }
            }
            for q in &s.queue_ids {
                match self.waiting.remove(q) {
                    Some(m) => self.message(&m, &p),
                    None => {
                        self.session_posture.insert(q.clone(), p.clone());
                    }
                }
            }
        }
        for mut m in sc.done_messages.drain(..) {
            if m.received.is_none() {
                continue;
            }
            m.lines = Vec::new();
            if let Some(p) = self.session_posture.remove(&m.queue_id) {
                self.message(&m, &p);
            } else if sc
                .sessions
                .values()
                .any(|s| s.queue_ids.contains(&m.queue_id))
            {
                // The session's disconnect tally is its last word on STARTTLS.
                self.waiting.insert(m.queue_id.clone(), m);
            } else {
                let p = m
                    .tls
                    .clone()
                    .unwrap_or_else(|| crate::count::PLAINTEXT.into());
                self.message(&m, &p);
            }
        }
        for l in sc.logins.drain(..) {
            *self.r.dovecot.entry(l.tls.clone()).or_insert(0) += 1;
            if weak_not_plain(&l.tls) {
                *self.weak[1]
                    .entry((format!("{} ({})", l.user, l.service), l.tls.clone()))
                    .or_insert(0) += 1;
            }
        }
        for (k, v) in std::mem::take(&mut sc.outbound) {
            *self.r.outbound.entry(k).or_insert(0) += v;
        }
    }

    /// Ends the scan and returns the report.
    pub fn finish(mut self, sc: &mut Scanner) -> TlsReport {
        sc.finish();
        self.absorb(sc);
        for (_, m) in std::mem::take(&mut self.waiting) {
            let p = m
                .tls
                .clone()
                .unwrap_or_else(|| crate::count::PLAINTEXT.into());
            self.message(&m, &p);
        }
        let list = |m: &BTreeMap<(String, String), u64>| {
            let mut v: Vec<WeakUse> = m
                .iter()
                .map(|((who, p), n)| WeakUse {
                    who: who.clone(),
                    posture: p.clone(),
                    why: weakness(p).unwrap_or("").to_string(),
                    count: *n,
                })
                .collect();
            v.sort_by(|a, b| b.count.cmp(&a.count).then(a.who.cmp(&b.who)));
            v
        };
        self.r.weak_clients = list(&self.weak[0]);
        self.r.weak_accounts = list(&self.weak[1]);
        self.r.weak_senders = list(&self.weak[2]);
        self.r
    }
}

pub fn render_tls(r: &TlsReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let hist = |o: &mut String, title: &str, m: &BTreeMap<String, u64>| {
        let total: u64 = m.values().sum();
        let _ = writeln!(o, "{title}: {total}");
        let mut v: Vec<_> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, n) in v {
            let pct = *n as f64 * 100.0 / total.max(1) as f64;
            let flag = weakness(k)
                .map(|w| format!("  WEAK: {w}"))
                .unwrap_or_default();
            let _ = writeln!(o, "  {n:>8} {pct:>5.1}%  {k}{flag}");
        }
    };
    hist(&mut o, "inbound SMTP sessions by TLS", &r.inbound);
    hist(&mut o, "outbound SMTP TLS handshakes", &r.outbound);
    hist(&mut o, "Dovecot logins by TLS", &r.dovecot);
    let share = |o: &mut String, what: &str, s: &Share| {
        let _ = writeln!(
            o,
            "{what}: {} of {} used TLS ({}%)",
            s.tls, s.total, s.percent
        );
    };
    share(&mut o, "inbound SMTP sessions", &r.inbound_sessions);
    share(
        &mut o,
        "  from outside the internal networks",
        &r.inbound_sessions_external,
    );
    share(&mut o, "received messages", &r.received_messages);
    share(
        &mut o,
        "  from outside the internal networks",
        &r.received_messages_external,
    );
    for (title, list) in [
        ("clients on weak TLS", &r.weak_clients),
        ("accounts on weak TLS", &r.weak_accounts),
        ("senders on weak TLS", &r.weak_senders),
    ] {
        let _ = writeln!(o, "{title}: {}", list.len());
        for w in list {
            let _ = writeln!(o, "  {:>6}  {}  {} ({})", w.count, w.who, w.posture, w.why);
        }
    }
    o
}

/// What `trace` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    pub sessions: Vec<Session>,
    pub messages: Vec<Message>,
    pub logins: Vec<DovecotLogin>,
}

/// Collects what matches a [`Filter`] while the scan goes on, dropping the rest as
/// soon as it is finished, so memory holds only open and matching things.
pub struct Tracer {
    f: Filter,
    qids: std::collections::HashSet<String>,
    pub found: Trace,
}

impl Tracer {
    pub fn new(f: Filter) -> Tracer {
        Tracer {
            f,
            qids: Default::default(),
            found: Trace::default(),
        }
    }

    /// Takes what the scanner finished since the last call.
    pub fn absorb(&mut self, sc: &mut Scanner) {
        for s in sc.closed_sessions.drain(..) {
            if self.f.session(&s) {
                self.qids.extend(s.queue_ids.iter().cloned());
                self.found.sessions.push(s);
            }
        }
        for m in sc.done_messages.drain(..) {
            let via_session = self.qids.contains(&m.queue_id)
                || sc
                    .sessions
                    .values()
                    .any(|s| s.queue_ids.contains(&m.queue_id) && self.f.session(s));
            if self.f.message(&m) || via_session {
                self.found.messages.push(m);
            }
        }
        for l in sc.logins.drain(..) {
            if self.f.client.is_some_and(|n| n.contains(&l.address))
                || self.f.user.as_deref() == Some(l.user.as_str())
                || self
                    .f
                    .cipher
                    .as_ref()
                    .is_some_and(|c| l.tls.contains(c.as_str()))
            {
                self.found.logins.push(l);
            }
        }
    }

    pub fn finish(mut self, sc: &mut Scanner) -> Trace {
        sc.finish();
        self.absorb(sc);
        let t = &mut self.found;
        t.sessions.sort_by_key(|s| s.start);
        t.messages.sort_by_key(|m| m.received);
        self.found
    }
}

pub fn render_trace(t: &Trace) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for s in &t.sessions {
        let _ = writeln!(
            o,
            "session {}[{}] {} from {} .. {}: {}; AUTH failures {}{}",
            s.service,
            s.pid,
            s.client,
            s.start.rfc3339(),
            s.end.map_or("(open)".into(), |e| e.rfc3339()),
            s.posture(),
            s.auth_failures,
            if s.users.is_empty() {
                String::new()
            } else {
                format!("; logged in as {}", s.users.join(", "))
            }
        );
        if !s.queue_ids.is_empty() {
            let _ = writeln!(o, "  queue IDs: {}", s.queue_ids.join(", "));
        }
        for l in &s.lines {
            let _ = writeln!(o, "  | {l}");
        }
    }
    for m in &t.messages {
        let _ = writeln!(
            o,
            "message {}: from <{}>, message-id <{}>, client {}, {}{}",
            m.queue_id,
            m.from.as_deref().unwrap_or(""),
            m.message_id.as_deref().unwrap_or(""),
            m.client.as_deref().unwrap_or("(local)"),
            m.tls.as_deref().unwrap_or("-"),
            m.sasl_username
                .as_deref()
                .map(|u| format!(", sasl_username {u}"))
                .unwrap_or_default()
        );
        for r in &m.recipients {
            let _ = writeln!(
                o,
                "  to <{}>{}: {} via {} after {}s ({}){} {}",
                r.to,
                r.orig_to
                    .as_deref()
                    .map(|x| format!(" (was <{x}>)"))
                    .unwrap_or_default(),
                r.status,
                r.relay,
                r.delay,
                r.dsn,
                r.tls
                    .as_deref()
                    .map(|x| format!(" over {x}"))
                    .unwrap_or_default(),
                r.detail
            );
        }
        match m.removed {
            Some(t) => {
                let _ = writeln!(o, "  removed from the queue {}", t.rfc3339());
            }
            None => {
                let _ = writeln!(o, "  still in the queue at the end of the log");
            }
        }
        for l in &m.lines {
            let _ = writeln!(o, "  | {l}");
        }
    }
    for l in &t.logins {
        let _ = writeln!(
            o,
            "login {} {} as {} from {}: {}",
            l.time.rfc3339(),
            l.service,
            l.user,
            l.address,
            l.tls
        );
    }
    if t.sessions.is_empty() && t.messages.is_empty() && t.logins.is_empty() {
        o.push_str("nothing matched\n");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let m = "to=<bob@example.com>, orig_to=<b@example.com>, relay=mx.example.com[198.51.100.25]:25, delay=0.61, delays=0.1/0/0.3/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9A1)";
        assert_eq!(field(m, "to="), Some("<bob@example.com>"));
        assert_eq!(field(m, "orig_to="), Some("<b@example.com>"));
        assert_eq!(field(m, "relay="), Some("mx.example.com[198.51.100.25]:25"));
        assert_eq!(field(m, "delay="), Some("0.61"));
        assert_eq!(field(m, "status="), Some("sent"));
        assert_eq!(field("from=<>, size=3", "from="), Some("<>"));
    }
}
