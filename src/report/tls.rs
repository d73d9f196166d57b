//! `saslguard tls`: the TLS posture of all mail traffic, from the scanner's sessions,
//! messages and logins: protocol and cipher histograms (inbound, outbound, Dovecot),
//! the share of encrypted inbound mail (all of it, and from outside), and who still
//! uses weak protocols or ciphers.

use super::scan::{Message, Scanner, bump};
use crate::block::Ranges;
use crate::posture::weakness;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

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
    posture != crate::attempts::PLAINTEXT && !posture.starts_with("plaintext")
}

/// Builds the TLS report while the scan goes on: sessions, messages and logins are
/// counted as they finish and dropped, so memory holds only what is open (and, for
/// messages whose session ended first, their queue ID and posture until they leave
/// the queue).
pub struct TlsAggregate {
    /// The internal networks merged, asked once per closed session.
    internal: Ranges,
    r: TlsReport,
    weak: [BTreeMap<(String, String), u64>; 3],
    /// Posture of closed sessions, by the queue IDs they created, until the message is
    /// done.
    session_posture: HashMap<String, String>,
    /// Messages done while their session was still open.
    waiting: HashMap<String, Message>,
    /// [`WeakLabels`] of the labels met so far.
    weak_labels: WeakLabels,
}

/// Whether a posture label is weak (and not plaintext), remembered for the first
/// [`WeakLabels::MAX`] labels met: a log holds a handful (its servers' protocols and
/// ciphers), each asked of every session, message and login.
#[derive(Default)]
struct WeakLabels(Vec<(String, bool)>);

impl WeakLabels {
    const MAX: usize = 64;

    fn of(&mut self, p: &str) -> bool {
        if let Some((_, w)) = self.0.iter().find(|(l, _)| l == p) {
            return *w;
        }
        let w = weakness(p).is_some() && p != crate::attempts::PLAINTEXT;
        if self.0.len() < Self::MAX {
            self.0.push((p.to_string(), w));
        }
        w
    }
}

impl TlsAggregate {
    /// `internal`: networks whose traffic is not "from outside".
    pub fn new(internal: Vec<IpNet>) -> TlsAggregate {
        TlsAggregate {
            internal: Ranges::from_nets(&internal),
            r: TlsReport::default(),
            weak: Default::default(),
            session_posture: HashMap::new(),
            waiting: HashMap::new(),
            weak_labels: WeakLabels::default(),
        }
    }

    fn external(&self, a: Option<IpAddr>) -> bool {
        a.is_some_and(|a| !self.internal.contains(a))
    }

    fn message(&mut self, m: &Message, p: &str) {
        self.r.received_messages.add(is_tls(p));
        if self.external(m.client_address) {
            self.r.received_messages_external.add(is_tls(p));
        }
        if self.weak_labels.of(p)
            && let Some(f) = &m.from
        {
            *self.weak[2].entry((f.clone(), p.to_string())).or_insert(0) += 1;
        }
    }

    /// Counts what the scanner finished since the last call.
    pub fn absorb(&mut self, sc: &mut Scanner) {
        for s in sc.closed_sessions.drain(..) {
            let p = s.posture();
            bump(&mut self.r.inbound, &p);
            self.r.inbound_sessions.add(is_tls(&p));
            if self.external(s.client_address) {
                self.r.inbound_sessions_external.add(is_tls(&p));
            }
            if self.weak_labels.of(&p) {
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
        for mut m in std::mem::take(&mut sc.done_messages) {
            if m.received.is_none() {
                continue;
            }
            m.lines = Vec::new();
            if let Some(p) = self.session_posture.remove(&m.queue_id) {
                self.message(&m, &p);
            } else if sc
                .open_sessions()
                .any(|s| s.queue_ids.contains(&m.queue_id))
            {
                // The session's disconnect tally is its last word on STARTTLS.
                self.waiting.insert(m.queue_id.clone(), m);
            } else {
                let p = m
                    .tls
                    .clone()
                    .unwrap_or_else(|| crate::attempts::PLAINTEXT.into());
                self.message(&m, &p);
            }
        }
        for l in sc.logins.drain(..) {
            bump(&mut self.r.dovecot, &l.tls);
            if self.weak_labels.of(&l.tls) {
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
                .unwrap_or_else(|| crate::attempts::PLAINTEXT.into());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembered or not (past the first 64 labels), a label is weak exactly when
    /// `posture::weakness` says so and it is not plaintext, asked once or again.
    #[test]
    fn weak_labels_answer_as_weakness_does_past_their_bound() {
        let mut labels: Vec<String> = (0..100)
            .map(|i| match i % 4 {
                0 => format!("TLSv1.2 ECDHE-RSA-AES{i}-GCM-SHA384"),
                1 => format!("TLSv1 ECDHE-RSA-AES{i}-SHA"),
                2 => format!("TLSv1.2 EXP-RC4-MD5-{i}"),
                _ => format!("TLSv1.3 TLS_AES_{i}_GCM_SHA384"),
            })
            .collect();
        labels.push(crate::attempts::PLAINTEXT.to_string());
        let mut w = WeakLabels::default();
        for round in 0..2 {
            for l in &labels {
                let want = weakness(l).is_some() && l != crate::attempts::PLAINTEXT;
                assert_eq!(w.of(l), want, "{l}, round {round}");
            }
        }
        assert_eq!(w.0.len(), WeakLabels::MAX);
        assert!(labels.iter().filter(|l| w.of(l)).count() >= 50);
    }
}
