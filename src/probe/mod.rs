//! `saslguard probe`: what a mail server shows a client, as an admin checks it by hand
//! with `openssl s_client -starttls smtp` and base64: the greeting, capabilities before
//! and after TLS, whether AUTH is offered before TLS (passwords in plaintext), the TLS
//! protocol and cipher, the certificate, which TLS versions are still accepted, and,
//! with credentials, one login with PLAIN, LOGIN or CRAM-MD5 (RFC 4616, the LOGIN
//! draft, RFC 2195). A refused, dropped or silent connection is reported as such:
//! that is what a banned client sees.
//!
//! Owns only its connections; the password is never printed or put in a report.
//! Speaks SMTP (RFC 5321/3207/4954), IMAP (RFC 9051/2595) and POP3 (RFC 1939/2449/
//! 2595/5034), each only as far as the probe needs.

mod conn;
mod imap;
mod pop3;
mod smtp;

pub use conn::cram_md5;
use conn::{Conn, Step, StepError, Stream, cert_info, tls_info};
use openssl::ssl::SslVersion;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Reads the greeting.
fn greet(c: &mut Conn, f: Family) -> Step<String> {
    match f {
        Family::Smtp => smtp::greet(c),
        Family::Imap => imap::greet(c),
        Family::Pop3 => pop3::greet(c),
    }
}

/// The capabilities (EHLO, CAPABILITY, CAPA).
fn caps(c: &mut Conn, f: Family, tag: &str) -> Step<Vec<String>> {
    match f {
        Family::Smtp => smtp::caps(c),
        Family::Imap => imap::caps(c, tag),
        Family::Pop3 => pop3::caps(c),
    }
}

/// The SASL mechanisms the capabilities name.
fn mechs(f: Family, caps: &[String]) -> Vec<String> {
    match f {
        Family::Smtp => smtp::mechs(caps),
        Family::Imap => imap::mechs(caps),
        Family::Pop3 => pop3::mechs(caps),
    }
}

fn starttls_offered(f: Family, caps: &[String]) -> bool {
    let want = match f {
        Family::Smtp => smtp::STARTTLS,
        Family::Imap => imap::STARTTLS,
        Family::Pop3 => pop3::STARTTLS,
    };
    caps.iter().any(|c| c.eq_ignore_ascii_case(want))
}

/// Sends STARTTLS/STLS and waits for the go-ahead.
fn starttls(c: &mut Conn, f: Family) -> Step<()> {
    match f {
        Family::Smtp => smtp::starttls(c),
        Family::Imap => imap::starttls(c),
        Family::Pop3 => pop3::starttls(c),
    }
}

/// One login; Ok(success, final reply).
fn login(c: &mut Conn, f: Family, cr: &Credentials) -> Step<(bool, String)> {
    match f {
        Family::Smtp => smtp::login(c, cr),
        Family::Imap => imap::login(c, cr),
        Family::Pop3 => pop3::login(c, cr),
    }
}

fn quit(c: &mut Conn, f: Family) {
    let _ = c.send(match f {
        Family::Smtp => smtp::QUIT,
        Family::Imap => imap::QUIT,
        Family::Pop3 => pop3::QUIT,
    });
}

/// The SASL exchange: what to send after each server challenge.
fn sasl_answer(cr: &Credentials, challenge: &[u8], step: usize) -> String {
    use conn::b64;
    match (cr.mechanism, step) {
        (Mechanism::Plain, _) => b64(format!("\0{}\0{}", cr.user, cr.password).as_bytes()),
        (Mechanism::Login, 0) => b64(cr.user.as_bytes()),
        (Mechanism::Login, _) => b64(cr.password.as_bytes()),
        (Mechanism::CramMd5, _) => b64(cram_md5(&cr.user, &cr.password, challenge).as_bytes()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Smtp,
    Submission,
    Smtps,
    Imap,
    Imaps,
    Pop3,
    Pop3s,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Smtp,
    Imap,
    Pop3,
}

impl Service {
    pub const ALL: [Service; 7] = [
        Service::Smtp,
        Service::Smtps,
        Service::Submission,
        Service::Pop3,
        Service::Imap,
        Service::Imaps,
        Service::Pop3s,
    ];

    pub fn port(self) -> u16 {
        match self {
            Service::Smtp => 25,
            Service::Submission => 587,
            Service::Smtps => 465,
            Service::Imap => 143,
            Service::Imaps => 993,
            Service::Pop3 => 110,
            Service::Pop3s => 995,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Submission => "submission",
            Service::Smtps => "smtps",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
            Service::Pop3 => "pop3",
            Service::Pop3s => "pop3s",
        }
    }

    pub fn parse(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn from_port(p: u16) -> Option<Service> {
        Service::ALL.into_iter().find(|x| x.port() == p)
    }

    fn implicit_tls(self) -> bool {
        matches!(self, Service::Smtps | Service::Imaps | Service::Pop3s)
    }

    fn family(self) -> Family {
        match self {
            Service::Smtp | Service::Submission | Service::Smtps => Family::Smtp,
            Service::Imap | Service::Imaps => Family::Imap,
            Service::Pop3 | Service::Pop3s => Family::Pop3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "LOGIN")]
    Login,
    #[serde(rename = "CRAM-MD5")]
    CramMd5,
}

impl Mechanism {
    pub fn parse(s: &str) -> Option<Mechanism> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            "CRAM-MD5" => Some(Mechanism::CramMd5),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
        }
    }
}

pub struct Credentials {
    pub user: String,
    pub password: String,
    pub mechanism: Mechanism,
}

/// How a connection attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Connected and the server spoke.
    Open,
    /// Refused (TCP reset): closed port, or a ban that rejects.
    Refused,
    /// No answer to the connection attempt, or no greeting: a ban that drops.
    Timeout,
    /// Connected, then closed before or during the greeting.
    Dropped,
    /// Anything else (name not found, network unreachable, protocol error).
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsInfo {
    pub protocol: String,
    pub cipher: String,
    pub bits: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    pub days_left: i32,
    /// The chain verified against the system's trust store and the name matched.
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginResult {
    pub mechanism: Mechanism,
    pub user: String,
    pub success: bool,
    /// The server's final answer (never the password).
    pub reply: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub port: u16,
    pub service: Service,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    pub capabilities_before_tls: Vec<String>,
    /// AUTH mechanisms (or USER/LOGIN commands) offered before TLS.
    pub auth_before_tls: Vec<String>,
    /// Credentials could be sent without TLS.
    pub plaintext_auth_exposed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starttls_offered: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertInfo>,
    pub capabilities_after_tls: Vec<String>,
    pub auth_mechanisms: Vec<String>,
    /// TLS versions tried one by one: accepted or not.
    pub protocols: BTreeMap<String, bool>,
    /// Accepted versions that should be off (TLS 1.0 and 1.1, RFC 8996).
    pub weak_protocols: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginResult>,
}

impl Report {
    fn new(host: &str, port: u16, service: Service) -> Report {
        Report {
            host: host.to_string(),
            address: None,
            port,
            service,
            verdict: Verdict::Error,
            detail: None,
            greeting: None,
            capabilities_before_tls: Vec::new(),
            auth_before_tls: Vec::new(),
            plaintext_auth_exposed: false,
            starttls_offered: None,
            tls: None,
            certificate: None,
            capabilities_after_tls: Vec::new(),
            auth_mechanisms: Vec::new(),
            protocols: BTreeMap::new(),
            weak_protocols: Vec::new(),
            login: None,
        }
    }

    /// Refused, silent or dropped: what a banned client sees.
    pub fn blocked(&self) -> bool {
        matches!(
            self.verdict,
            Verdict::Refused | Verdict::Timeout | Verdict::Dropped
        )
    }
}

/// Connects, reporting refused/timeout as the verdict.
fn connect(host: &str, port: u16, timeout: Duration, r: &mut Report) -> Option<Conn> {
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            r.detail = Some(format!("cannot resolve {host}: {e}"));
            return None;
        }
    };
    let Some(addr) = addrs.first().copied() else {
        r.detail = Some(format!("{host} has no address"));
        return None;
    };
    r.address = Some(addr.ip().to_string());
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => {
            let _ = s.set_read_timeout(Some(timeout));
            let _ = s.set_write_timeout(Some(timeout));
            Some(Conn {
                stream: Some(Stream::Plain(s)),
                buf: Vec::new(),
            })
        }
        Err(e) => {
            r.verdict = match e.kind() {
                ErrorKind::ConnectionRefused => Verdict::Refused,
                ErrorKind::TimedOut | ErrorKind::WouldBlock => Verdict::Timeout,
                _ => Verdict::Error,
            };
            r.detail = Some(match r.verdict {
                Verdict::Refused => {
                    "connection refused (closed port, or a ban that rejects)".into()
                }
                Verdict::Timeout => {
                    format!("no answer within {timeout:?} (filtered, or a ban that drops)")
                }
                _ => e.to_string(),
            });
            None
        }
    }
}

/// A greeting that does not come (silent or closed), or one that says no: a `554`
/// (Postfix's access map refusing a banned client, RFC 5321 4.2), `* BYE` or `-ERR` is
/// a refusal too.
fn greeting_failed(r: &mut Report, e: StepError, timeout: Duration) {
    let refusal = matches!(&e, StepError::Greeting(g) if
        g.starts_with('5') || g.starts_with('4') || g.starts_with("* BYE") || g.starts_with("-ERR")
    );
    let timed_out = matches!(e, StepError::Timeout);
    let e = e.to_string();
    if refusal {
        r.verdict = Verdict::Refused;
        r.detail = Some(format!("refused in the {e}"));
    } else if e.contains("closed by the server") || e.contains("reset") {
        r.verdict = Verdict::Dropped;
        r.detail = Some(format!(
            "connected, then closed by the server before its greeting ({e})"
        ));
    } else if timed_out || e.contains("timed out") {
        r.verdict = Verdict::Timeout;
        r.detail = Some(format!("connected, but no greeting within {timeout:?}"));
    } else {
        r.verdict = Verdict::Error;
        r.detail = Some(e);
    }
}

/// Up to the point where TLS starts (greeting, STARTTLS), on a fresh connection.
fn open_to_tls(host: &str, port: u16, s: Service, timeout: Duration) -> Step<Conn> {
    let mut r = Report::new(host, port, s);
    let mut c = connect(host, port, timeout, &mut r)
        .ok_or_else(|| StepError::Protocol(r.detail.clone().unwrap_or_default()))?;
    if !s.implicit_tls() {
        greet(&mut c, s.family())?;
        let caps = caps(&mut c, s.family(), "c0")?;
        if !starttls_offered(s.family(), &caps) {
            return Err(StepError::Protocol("no STARTTLS".into()));
        }
        starttls(&mut c, s.family())?;
    }
    Ok(c)
}

const VERSIONS: [(&str, SslVersion); 4] = [
    ("TLSv1", SslVersion::TLS1),
    ("TLSv1.1", SslVersion::TLS1_1),
    ("TLSv1.2", SslVersion::TLS1_2),
    ("TLSv1.3", SslVersion::TLS1_3),
];

/// Probes one port.
pub fn probe(
    host: &str,
    port: u16,
    s: Service,
    creds: Option<&Credentials>,
    timeout: Duration,
) -> Report {
    let mut r = Report::new(host, port, s);
    let f = s.family();
    let Some(mut c) = connect(host, port, timeout, &mut r) else {
        return r;
    };
    if s.implicit_tls()
        && let Err(e) = c.start_tls(host, None)
    {
        greeting_failed(
            &mut r,
            StepError::Protocol(format!("TLS handshake: {e}")),
            timeout,
        );
        return r;
    }
    match greet(&mut c, f) {
        Ok(g) => {
            r.verdict = Verdict::Open;
            r.greeting = Some(g);
        }
        Err(e) => {
            greeting_failed(&mut r, e, timeout);
            return r;
        }
    }
    let run = |c: &mut Conn, r: &mut Report| -> Step<()> {
        let first = caps(c, f, "c1")?;
        if s.implicit_tls() {
            r.capabilities_after_tls = first;
        } else {
            r.auth_before_tls = mechs(f, &first);
            // POP3 USER/PASS and IMAP LOGIN send the password as it is.
            if f == Family::Pop3 && first.iter().any(|c| c == "USER") {
                r.auth_before_tls.push("USER".into());
            }
            if f == Family::Imap && !first.iter().any(|c| c == "LOGINDISABLED") {
                r.auth_before_tls.push("LOGIN command".into());
            }
            r.plaintext_auth_exposed = !r.auth_before_tls.is_empty();
            let offered = starttls_offered(f, &first);
            r.starttls_offered = Some(offered);
            r.capabilities_before_tls = first;
            if !offered {
                r.auth_mechanisms = r.auth_before_tls.clone();
                return Ok(());
            }
            starttls(c, f)?;
            c.start_tls(host, None)?;
            r.capabilities_after_tls = caps(c, f, "c2")?;
        }
        if let Some(t) = c.tls() {
            r.tls = Some(tls_info(t));
            r.certificate = cert_info(t);
        }
        r.auth_mechanisms = mechs(f, &r.capabilities_after_tls);
        if let Some(cr) = creds {
            let (success, reply) = login(c, f, cr)?;
            r.login = Some(LoginResult {
                mechanism: cr.mechanism,
                user: cr.user.clone(),
                success,
                reply,
            });
        }
        Ok(())
    };
    if let Err(e) = run(&mut c, &mut r) {
        r.detail = Some(e.to_string());
    }
    quit(&mut c, f);
    if r.tls.is_some() {
        for (name, v) in VERSIONS {
            let ok = open_to_tls(host, port, s, timeout)
                .and_then(|mut c| c.start_tls(host, Some(v)).map(|_| quit(&mut c, f)))
                .is_ok();
            r.protocols.insert(name.to_string(), ok);
            if ok && matches!(name, "TLSv1" | "TLSv1.1") {
                r.weak_protocols.push(name.to_string());
            }
        }
    }
    r
}

/// The text an admin reads.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let addr = r
        .address
        .as_deref()
        .filter(|a| *a != r.host)
        .map(|a| format!(" [{a}]"))
        .unwrap_or_default();
    let verdict = match r.verdict {
        Verdict::Open => "open".to_string(),
        v if r.blocked() => format!("{v:?} (BLOCKED, or not listening)").to_lowercase(),
        v => format!("{v:?}").to_lowercase(),
    };
    let _ = writeln!(
        o,
        "{}{}:{} ({}): {verdict}",
        r.host,
        addr,
        r.port,
        r.service.name()
    );
    if let Some(d) = &r.detail {
        let _ = writeln!(o, "  {d}");
    }
    if let Some(g) = &r.greeting {
        let _ = writeln!(o, "  greeting: {g}");
    }
    if !r.capabilities_before_tls.is_empty() {
        let _ = writeln!(o, "  before TLS: {}", r.capabilities_before_tls.join(" | "));
    }
    if r.plaintext_auth_exposed {
        let _ = writeln!(
            o,
            "  WARNING: login offered before TLS ({}): passwords can cross the network in plaintext",
            r.auth_before_tls.join(", ")
        );
    }
    if r.starttls_offered == Some(false) {
        let _ = writeln!(o, "  WARNING: no STARTTLS offered");
    }
    if let Some(t) = &r.tls {
        let _ = writeln!(o, "  TLS: {} {} ({} bits)", t.protocol, t.cipher, t.bits);
    }
    if let Some(c) = &r.certificate {
        let _ = writeln!(
            o,
            "  certificate: {}; issuer {}; names {}; valid {} .. {} ({} days left); {}",
            c.subject,
            c.issuer,
            if c.names.is_empty() {
                "-".to_string()
            } else {
                c.names.join(", ")
            },
            c.not_before,
            c.not_after,
            c.days_left,
            match &c.verify_error {
                None => "verified".to_string(),
                Some(e) => format!("NOT VERIFIED: {e}"),
            }
        );
    }
    if !r.capabilities_after_tls.is_empty() {
        let _ = writeln!(o, "  after TLS: {}", r.capabilities_after_tls.join(" | "));
    }
    if !r.auth_mechanisms.is_empty() {
        let _ = writeln!(o, "  AUTH: {}", r.auth_mechanisms.join(" "));
    }
    if !r.protocols.is_empty() {
        let list: Vec<String> = r
            .protocols
            .iter()
            .map(|(k, v)| format!("{k} {}", if *v { "yes" } else { "no" }))
            .collect();
        let _ = writeln!(o, "  protocols: {}", list.join(", "));
    }
    if !r.weak_protocols.is_empty() {
        let _ = writeln!(
            o,
            "  WARNING: still accepts {} (RFC 8996 says turn them off)",
            r.weak_protocols.join(" and ")
        );
    }
    if let Some(l) = &r.login {
        let _ = writeln!(
            o,
            "  login {} as {}: {} ({})",
            l.mechanism.name(),
            l.user,
            if l.success { "SUCCESS" } else { "FAILED" },
            l.reply
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cram_md5_matches_the_rfc_2195_example() {
        // RFC 2195, section 2: user tim, password tanstaaftanstaaf.
        let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(
            cram_md5("tim", "tanstaaftanstaaf", challenge),
            "tim b913a602c7eda7a495b4e6e7334d3890"
        );
        assert_eq!(
            conn::b64(cram_md5("tim", "tanstaaftanstaaf", challenge).as_bytes()),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
        );
    }

    #[test]
    fn capabilities_name_the_mechanisms() {
        let smtp = vec![
            "PIPELINING".into(),
            "AUTH PLAIN LOGIN".into(),
            "STARTTLS".into(),
        ];
        assert_eq!(smtp::mechs(&smtp), ["PLAIN", "LOGIN"]);
        assert!(starttls_offered(Family::Smtp, &smtp));
        let imap: Vec<String> = "IMAP4rev1 SASL-IR STARTTLS AUTH=PLAIN AUTH=CRAM-MD5"
            .split(' ')
            .map(str::to_string)
            .collect();
        assert_eq!(imap::mechs(&imap), ["PLAIN", "CRAM-MD5"]);
        let pop3 = vec!["USER".into(), "SASL PLAIN LOGIN".into(), "STLS".into()];
        assert_eq!(pop3::mechs(&pop3), ["PLAIN", "LOGIN"]);
        assert!(starttls_offered(Family::Pop3, &pop3));
    }

    #[test]
    fn a_554_greeting_is_a_refusal() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            std::io::Write::write_all(
                &mut s,
                b"554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: too many failed logins\r\n",
            )
            .unwrap();
        });
        let r = probe(
            "127.0.0.1",
            port,
            Service::Submission,
            None,
            Duration::from_secs(5),
        );
        server.join().unwrap();
        assert_eq!(r.verdict, Verdict::Refused, "{:?}", r.detail);
        assert!(r.blocked());
        assert!(r.detail.unwrap().contains("554 5.7.1"));
    }

    #[test]
    fn a_closed_port_is_refused() {
        // Port 1 on loopback: nothing listens there.
        let r = probe("127.0.0.1", 1, Service::Smtp, None, Duration::from_secs(2));
        assert_eq!(r.verdict, Verdict::Refused);
        assert!(r.blocked());
        assert!(render(&r).contains("refused"));
    }
}
