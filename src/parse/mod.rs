//! Log line → at most one [`Event`]. Pure functions: no I/O, no clock, no regex.
//!
//! One function per log family ([`postfix`], [`dovecot`]) behind the shared syslog
//! prefix parser ([`syslog`]). Every address comes from a field the daemon itself
//! wrote, found by anchored scanning; text a client controls (user names, HELO,
//! reverse-DNS names, SNI, passwords in verbose logs) never supplies one. A line whose
//! address field cannot be told apart from client text yields no address at all.

pub mod dovecot;
pub mod postfix;
pub mod scan;
pub mod syslog;

use crate::time::LineTime;
use serde::Serialize;
use std::borrow::Cow;
use std::net::IpAddr;

/// A name that is usually one of a few fixed strings (service, TLS protocol): those are
/// borrowed, so the common event costs no allocation for them.
pub type Name = Cow<'static, str>;

/// `s` as a [`Name`], borrowed when it is one of `known`.
pub fn name(s: &str, known: &[&'static str]) -> Name {
    match known.iter().find(|k| **k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One or more failed authentication attempts (`attempts`).
    AuthFailure,
    /// Postfix could not get an answer from the auth server (`Connection lost to
    /// authentication server`): a guess delayed by Dovecot's penalty, or an outage.
    AuthUnavailable,
    AuthSuccess,
    Tls,
    Connect,
    Disconnect,
    /// An AUTH that ended with no verdict on a password: `lost connection after AUTH`,
    /// `too many errors after AUTH`, a mechanism the SASL server does not offer.
    AuthAbandoned,
}

impl Kind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [Kind; 7] = [
        Kind::AuthFailure,
        Kind::AuthUnavailable,
        Kind::AuthSuccess,
        Kind::Tls,
        Kind::Connect,
        Kind::Disconnect,
        Kind::AuthAbandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AuthFailure => "auth_failure",
            Kind::AuthUnavailable => "auth_unavailable",
            Kind::AuthSuccess => "auth_success",
            Kind::Tls => "tls",
            Kind::Connect => "connect",
            Kind::Disconnect => "disconnect",
            Kind::AuthAbandoned => "auth_abandoned",
        }
    }
}

/// Which record of an attempt a line is. The same failed attempt can be written by
/// several writers (Postfix, Dovecot's auth process, PAM, Dovecot's login process);
/// the counter uses this to count it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Postfix smtpd's `SASL ... authentication failed` warning.
    PostfixSasl,
    /// Postfix's `auth=ok/total` tally at disconnect.
    PostfixTally,
    /// Dovecot auth process, passdb/mechanism line, with or without a session id.
    DovecotAuth,
    /// `pam_unix(dovecot:auth): authentication failure; ... rhost=`.
    PamUnix,
    /// Dovecot login process session summary (`auth failed, N attempts`).
    DovecotLogin,
    /// Not an attempt record.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub struct Tls {
    pub protocol: Name,
    /// Empty when the log says TLS was used but not which cipher (Postfix without
    /// `smtpd_tls_loglevel`, Dovecot's plain `TLS` element).
    #[serde(skip_serializing_if = "no_cipher")]
    pub cipher: Name,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits: Option<u32>,
}

impl Tls {
    pub fn unknown_cipher() -> Tls {
        Tls {
            protocol: "TLS".into(),
            cipher: Name::Borrowed(""),
            bits: None,
        }
    }
    /// The posture label used in offender records: `TLSv1.3 TLS_AES_256_GCM_SHA384`.
    pub fn label(&self) -> String {
        // Put together by hand: `format!` cost several times this, once per TLS line.
        let cipher = if self.cipher.is_empty() {
            "(cipher not logged)"
        } else {
            &self.cipher
        };
        let mut s = String::with_capacity(self.protocol.len() + 1 + cipher.len());
        s.push_str(&self.protocol);
        s.push(' ');
        s.push_str(cipher);
        s
    }
}

fn no_cipher(c: &Name) -> bool {
    c.is_empty()
}

/// OpenSSL's names of the ciphers mail servers negotiate most (TLS 1.3's, then TLS
/// 1.2's and older ones still met), as [`cipher`] keeps them without an allocation.
const CIPHERS: [&str; 30] = [
    "TLS_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA",
    "DHE-RSA-AES256-SHA256",
    "DHE-RSA-AES256-SHA",
    "DHE-RSA-AES128-SHA",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
    "AES256-SHA256",
    "AES256-SHA",
    "AES128-SHA",
    "DES-CBC3-SHA",
];

/// A cipher's name as a [`Tls`] keeps it: one of [`CIPHERS`] borrowed (no allocation
/// for a TLS line of a common cipher), any other copied.
pub fn cipher(s: &str) -> Name {
    name(s, &CIPHERS)
}

/// Postfix >= 3.0 disconnect summary, the parts saslguard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Tally {
    pub auth_ok: u32,
    pub auth_total: u32,
    /// `starttls=` present with at least one success.
    pub starttls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Every template the parsers recognise. The fixture test fails when one of them has
/// no fixture line.
/// Lines about logins, auth or TLS that saslguard reads and deliberately turns into no
/// event, by a phrase each contains (README.md, "Lines without an event", says why).
pub const LEFT_ALONE: &[&str] = &[
    // Dovecot 2.3's auth process after Postfix stopped waiting for an answer: the same
    // guess is Postfix's `Connection lost to authentication server` line.
    "pending requests",
];

pub const RULES: &[&str] = &[
    "postfix.sasl_failure",
    "postfix.sasl_unavailable",
    "postfix.sasl_invalid_mechanism",
    "postfix.connect",
    "postfix.disconnect",
    "postfix.lost_after_auth",
    "postfix.errors_after_auth",
    "postfix.tls_inbound",
    "postfix.tls_outbound",
    "postfix.sasl_login",
    "dovecot.login",
    "dovecot.auth_failed",
    "dovecot.disallowed",
    "dovecot.proxy_auth_failed",
    "dovecot.no_auth_attempts",
    "dovecot.auth_abandoned",
    "dovecot.login_aborted",
    "dovecot.auth_v23",
    "dovecot.auth_v24",
    "dovecot.pam_unix",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub kind: Kind,
    /// The template that matched (one of [`RULES`]).
    pub rule: &'static str,
    #[serde(skip)]
    pub channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// For Dovecot: the session posture was written but with no TLS (plaintext).
    #[serde(skip)]
    pub plaintext: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tally: Option<Tally>,
    /// Seconds the Dovecot login session lasted (`in S secs`).
    #[serde(skip)]
    pub secs: Option<u32>,
    /// The line names a failure but its address could not be told apart from client
    /// text; it is reported and never counted against any address.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ambiguous: bool,
}

impl Event {
    pub fn new(kind: Kind, channel: Channel, rule: &'static str) -> Event {
        Event {
            kind,
            rule,
            channel,
            address: None,
            service: None,
            mechanism: None,
            user: None,
            attempts: None,
            tls: None,
            plaintext: false,
            reason: None,
            session: None,
            queue_id: None,
            direction: None,
            tally: None,
            secs: None,
            ambiguous: false,
        }
    }
}

/// Where a line came from, for joining lines of one connection: (host, program, pid).
/// Host and program are kept as a 64-bit hash, so a key costs no allocation per line;
/// two live connections would have to share the pid *and* the hash to be confused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct ProcessKey {
    pub origin: u64,
    pub pid: u32,
}

impl ProcessKey {
    pub fn new(host: &str, program: &str, pid: u32) -> ProcessKey {
        // FNV-1a: host and program are names the log's writer chose, not client
        // input, and the key carries the pid as well; a keyed hash costs more here.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in host.bytes().chain([0]).chain(program.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        ProcessKey { origin: h, pid }
    }
}

/// A line understood as far as its prefix. The event is boxed: lines travel through
/// several stages by value, and a box moves as 8 bytes where the event is ~300.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub time: LineTime,
    pub process: Option<ProcessKey>,
    pub event: Option<Box<Event>>,
}

/// Why a line yields nothing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unparsable {
    /// No timestamp or tag that any supported format writes.
    Prefix,
}

/// Parses one line (without its newline). `Err` means the prefix itself is not a log
/// line; `Ok` with `event: None` is a well-formed line saslguard has no use for.
pub fn parse_line(line: &str) -> Result<Parsed, Unparsable> {
    let p = syslog::parse(line).ok_or(Unparsable::Prefix)?;
    Ok(parse_prefixed(&p))
}

/// Parses the rest of a line whose syslog prefix is read already.
#[inline]
pub fn parse_prefixed(p: &syslog::Prefix) -> Parsed {
    parse_tagged(p, syslog::tag(p.rest))
}

/// [`parse_prefixed`] of a line whose tag ([`syslog::tag`] of `p.rest`) is read
/// already too.
#[inline]
pub fn parse_tagged(p: &syslog::Prefix, tag: Option<(&str, Option<u32>, &str)>) -> Parsed {
    let host = p.host.unwrap_or("");
    let nothing = |time| Parsed {
        time,
        process: None,
        event: None,
    };
    if let Some((program, pid, msg)) = tag {
        if let Some(daemon) = postfix::daemon(program) {
            let event = postfix::parse_as(daemon, program, msg).map(Box::new);
            // Only an event is joined to its connection: a line without one needs no key.
            let process = pid
                .filter(|_| event.is_some())
                .map(|pid| ProcessKey::new(host, program, pid));
            return Parsed {
                time: p.time,
                process,
                event,
            };
        }
        // Other Postfix daemons (qmgr, cleanup, local...) and anything else with a
        // path-like name: nothing for saslguard.
        if scan::find_byte(program, b'/').is_some() {
            return nothing(p.time);
        }
        // pam_unix writes through whatever ident the process has (`auth`,
        // `dovecot-auth`, `dovecot: auth`): recognise it by its own fixed text.
        if let Some(ev) = dovecot::pam_unix(msg) {
            return Parsed {
                time: p.time,
                process: None,
                event: Some(Box::new(ev)),
            };
        }
    }
    let event = dovecot::parse(p.rest).map(Box::new);
    Parsed {
        time: p.time,
        process: None,
        event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A posture label is the protocol, a space and the cipher, or what stands for a
    /// cipher the log did not name.
    #[test]
    fn tls_labels() {
        let t = Tls {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            bits: Some(256),
        };
        assert_eq!(t.label(), "TLSv1.3 TLS_AES_256_GCM_SHA384");
        assert_eq!(Tls::unknown_cipher().label(), "TLS (cipher not logged)");
    }

    /// A cipher of the list is kept borrowed, any other copied; both read back as the
    /// log wrote them.
    #[test]
    fn ciphers_read_back_as_written() {
        for c in CIPHERS {
            let t = postfix::tls_desc(&format!("TLSv1.2 with cipher {c} (256/256 bits)"))
                .expect("a TLS description");
            assert_eq!(t.cipher, c);
            assert!(matches!(t.cipher, Cow::Borrowed(_)), "{c}");
        }
        let t = postfix::tls_desc("TLSv1.2 with cipher ECDHE-PSK-AES256-CBC-SHA384 (256/256 bits)")
            .expect("a TLS description");
        assert_eq!(t.label(), "TLSv1.2 ECDHE-PSK-AES256-CBC-SHA384");
        assert!(matches!(t.cipher, Cow::Owned(_)));
    }

    /// [`Kind::ALL`] holds every kind at the place `kind as usize` names: the
    /// pipeline counts events by kind in an array indexed so.
    #[test]
    fn every_kind_has_its_place_in_all() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
            // A kind added to the enum and not to ALL stops this match compiling.
            match k {
                Kind::AuthFailure
                | Kind::AuthUnavailable
                | Kind::AuthSuccess
                | Kind::Tls
                | Kind::Connect
                | Kind::Disconnect
                | Kind::AuthAbandoned => {}
            }
        }
        assert_eq!(Kind::ALL.len(), Kind::AuthAbandoned as usize + 1);
    }
}
