//! The probe's connection: plain TCP upgraded to TLS (STARTTLS/STLS or implicit),
//! read line by line; what the TLS session and the certificate show; the errors of one
//! protocol step; base64 and CRAM-MD5 for the SASL exchange.

use super::{CertInfo, TlsInfo};
use openssl::base64;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode, SslVersion};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

/// Why one step of a conversation with the server failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("timed out waiting for the server's answer")]
    Timeout,
    #[error("{0}")]
    Io(std::io::Error),
    /// The greeting said no, or something else than a greeting.
    #[error("greeting: {0}")]
    Greeting(String),
    /// A command refused or an answer out of protocol.
    #[error("{0}")]
    Protocol(String),
    /// The TLS handshake (OpenSSL's reason).
    #[error("{0}")]
    Tls(String),
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> StepError {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => StepError::Timeout,
            _ => StepError::Io(e),
        }
    }
}

pub type Step<T> = Result<T, StepError>;

/// A connection, plain or TLS, read line by line.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

pub(super) struct Conn {
    pub(super) stream: Option<Stream>,
    pub(super) buf: Vec<u8>,
}

impl Conn {
    fn io(&mut self) -> std::io::Result<&mut dyn ReadWrite> {
        match self.stream.as_mut() {
            Some(Stream::Plain(s)) => Ok(s),
            Some(Stream::Tls(s)) => Ok(s.as_mut()),
            None => Err(std::io::Error::new(ErrorKind::NotConnected, "closed")),
        }
    }

    pub(super) fn line(&mut self) -> Step<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                let s = String::from_utf8_lossy(&l);
                return Ok(s.trim_end_matches(['\r', '\n']).to_string());
            }
            if self.buf.len() > 65536 {
                return Err(std::io::Error::new(ErrorKind::InvalidData, "line too long").into());
            }
            let mut chunk = [0u8; 4096];
            let n = self.io()?.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                )
                .into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub(super) fn send(&mut self, line: &str) -> Step<()> {
        let io = self.io()?;
        io.write_all(line.as_bytes())?;
        io.write_all(b"\r\n")?;
        Ok(io.flush()?)
    }

    /// Upgrades to TLS (after STARTTLS/STLS, or at once for implicit TLS).
    pub(super) fn start_tls(&mut self, host: &str, version: Option<SslVersion>) -> Step<()> {
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(StepError::Tls("not a plain connection".into()));
        };
        self.buf.clear();
        let tls = tls_handshake(tcp, host, version)?;
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    pub(super) fn tls(&self) -> Option<&SslStream<TcpStream>> {
        match &self.stream {
            Some(Stream::Tls(s)) => Some(s),
            _ => None,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    version: Option<SslVersion>,
) -> Step<SslStream<TcpStream>> {
    let tls = |e: openssl::error::ErrorStack| StepError::Tls(e.to_string());
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(tls)?;
    // Verification is reported, not enforced: the probe is there to show a bad
    // certificate. Security level 0 lets OpenSSL 3 still speak TLS 1.0/1.1, to find
    // servers that accept them.
    b.set_verify(SslVerifyMode::NONE);
    b.set_security_level(0);
    b.set_cipher_list("ALL:@SECLEVEL=0").map_err(tls)?;
    if let Some(v) = version {
        b.set_min_proto_version(Some(v)).map_err(tls)?;
        b.set_max_proto_version(Some(v)).map_err(tls)?;
    }
    let c = b.build();
    let mut cfg = c.configure().map_err(tls)?;
    cfg.set_verify_hostname(true);
    let sni = host.trim_start_matches('[').trim_end_matches(']');
    cfg.connect(sni, tcp).map_err(|e| {
        StepError::Tls(match e {
            openssl::ssl::HandshakeError::Failure(m) => {
                let err = m.error();
                err.ssl_error()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| err.to_string())
            }
            other => other.to_string(),
        })
    })
}

pub(super) fn tls_info(s: &SslStream<TcpStream>) -> TlsInfo {
    let ssl = s.ssl();
    let c = ssl.current_cipher();
    TlsInfo {
        protocol: ssl.version_str().to_string(),
        cipher: c.map(|c| c.name().to_string()).unwrap_or_default(),
        bits: c.map(|c| c.bits().secret).unwrap_or(0),
    }
}

fn names(n: &openssl::x509::X509NameRef) -> String {
    n.entries()
        .map(|e| {
            format!(
                "{}={}",
                e.object().nid().short_name().unwrap_or("?"),
                e.data().to_string().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn cert_info(s: &SslStream<TcpStream>) -> Option<CertInfo> {
    let ssl = s.ssl();
    let cert = ssl.peer_certificate()?;
    let dns: Vec<String> = cert
        .subject_alt_names()
        .map(|alts| {
            alts.iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let days_left = openssl::asn1::Asn1Time::days_from_now(0)
        .ok()
        .and_then(|now| now.diff(cert.not_after()).ok())
        .map_or(0, |d| d.days);
    let vr = ssl.verify_result();
    let verified = vr == openssl::x509::X509VerifyResult::OK;
    Some(CertInfo {
        subject: names(cert.subject_name()),
        issuer: names(cert.issuer_name()),
        names: dns,
        not_before: cert.not_before().to_string(),
        not_after: cert.not_after().to_string(),
        days_left,
        verified,
        verify_error: (!verified).then(|| vr.error_string().to_string()),
    })
}

/// The RFC 2195 response: `user HEXDIGEST` with HMAC-MD5 keyed by the password over the
/// challenge.
pub fn cram_md5(user: &str, password: &str, challenge: &[u8]) -> String {
    let digest = PKey::hmac(password.as_bytes())
        .and_then(|key| {
            let mut s = Signer::new(MessageDigest::md5(), &key)?;
            s.update(challenge)?;
            s.sign_to_vec()
        })
        .unwrap_or_default();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{user} {hex}")
}

pub(super) fn b64(s: &[u8]) -> String {
    base64::encode_block(s)
}

pub(super) fn unb64(s: &str) -> Vec<u8> {
    base64::decode_block(s.trim()).unwrap_or_default()
}
