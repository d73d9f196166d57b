//! `saslguard trace`: the story of one message or client (a queue ID, an address or
//! network, a cipher, a user), gathered from the scanner as the log goes by.

use super::scan::{DovecotLogin, Message, Scanner, Session};
use ipnet::IpNet;
use serde::Serialize;

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
        for m in std::mem::take(&mut sc.done_messages) {
            let via_session = self.qids.contains(&m.queue_id)
                || sc
                    .open_sessions()
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
