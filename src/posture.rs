//! TLS posture labels (`TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384`, `plaintext`,
//! `TLS (cipher not logged)`, `unknown`): which ones are weak and why, and the
//! posture summary a ban carries.
//!
//! Weak means what current guidance (RFC 8996, RFC 7465, the Mozilla server-side TLS
//! guide) says to switch off: SSLv2/SSLv3/TLSv1/TLSv1.1, RC4, single and triple DES,
//! export-grade, NULL and anonymous ciphers. Both OpenSSL names (Postfix, Dovecot) and
//! IANA names are recognised. Pure: labels in, verdicts out.

use crate::attempts::{PLAINTEXT, UNKNOWN_POSTURE};
use crate::offender::Counts;
use serde::{Deserialize, Serialize};

/// Why a posture label is weak, or None.
pub fn weakness(label: &str) -> Option<&'static str> {
    if label == PLAINTEXT {
        return Some("no TLS");
    }
    let (protocol, cipher) = label.split_once(' ').unwrap_or((label, ""));
    match protocol {
        "SSLv2" | "SSLv3" => return Some("SSL protocol"),
        "TLSv1" | "TLSv1.0" => return Some("TLS 1.0"),
        "TLSv1.1" => return Some("TLS 1.1"),
        _ => {}
    }
    // The cipher's parts between `-` and `_`, whatever their case, in one pass and
    // without a copy (`tls` asks this of every session, message and login): a part is
    // compared only with the names of its length.
    let [
        mut rc4,
        mut des,
        mut export,
        mut null,
        mut anon,
        mut ends_des,
    ] = [false; 6];
    // Split as bytes: a split at a set of chars decoded every character.
    for part in cipher.as_bytes().split(|&c| c == b'-' || c == b'_') {
        let is = |t: &str| part.eq_ignore_ascii_case(t.as_bytes());
        match part.len() {
            3 => {
                rc4 |= is("RC4");
                des |= is("DES");
                export |= is("EXP");
                anon |= is("ADH");
            }
            4 => {
                des |= is("3DES");
                null |= is("NULL");
                anon |= is("ANON");
            }
            5 => anon |= is("AECDH"),
            // OpenSSL's old names: EXP-, EXP1024- (EXP1024-RC2-CBC-MD5 has no RC4 or DES).
            6 | 7 | 8 | 10 => {
                export |= is("EXPORT") || is("EXP1024") || is("EXPORT40") || is("EXPORT1024")
            }
            _ => {}
        }
        ends_des |= part.len() >= 3 && part[part.len() - 3..].eq_ignore_ascii_case(b"DES");
    }
    // `DES-CBC3` and `DES_EDE` anywhere: a part ends in `DES` where they stand.
    let contains = |t: &str| {
        ends_des
            && cipher
                .as_bytes()
                .windows(t.len())
                .any(|w| w.eq_ignore_ascii_case(t.as_bytes()))
    };
    if rc4 {
        Some("RC4 cipher")
    } else if des || contains("DES-CBC3") || contains("DES_EDE") {
        Some("DES cipher")
    } else if export {
        Some("export cipher")
    } else if null {
        Some("NULL cipher")
    } else if anon {
        Some("anonymous cipher")
    } else {
        None
    }
}

/// How an offender talked to us, as its ban records it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Posture {
    /// Failed attempts by posture label.
    pub attempts: Counts,
    /// Weak labels among them, each with the reason (`TLSv1 AES256-SHA: TLS 1.0`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub weak: Vec<String>,
    /// Some password was sent without TLS.
    pub plaintext_credentials: bool,
    /// Attempts whose posture was not known yet when the ban was made (a Dovecot
    /// session says it only when it ends).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub unknown: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Posture {
    pub fn of(attempts: &Counts) -> Posture {
        let mut p = Posture {
            attempts: attempts.clone(),
            ..Posture::default()
        };
        for (label, n) in attempts.iter() {
            if label == UNKNOWN_POSTURE {
                p.unknown += n;
            }
            if label == PLAINTEXT {
                p.plaintext_credentials = true;
            }
            if let Some(why) = weakness(label) {
                p.weak.push(format!("{label}: {why}"));
            }
        }
        p
    }

    /// One line for logs: `TLSv1.3 TLS_AES_256_GCM_SHA384 x3, plaintext x1 (weak: ...)`.
    pub fn summary(&self) -> String {
        let mut s = self
            .attempts
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect::<Vec<_>>()
            .join(", ");
        if s.is_empty() {
            s.push('-');
        }
        if self.plaintext_credentials {
            s.push_str("; credentials sent in plaintext");
        }
        if !self.weak.is_empty() {
            s.push_str(&format!("; weak: {}", self.weak.join(", ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_protocols_and_ciphers_are_named() {
        for (label, why) in [
            ("plaintext", Some("no TLS")),
            ("SSLv3 DES-CBC3-SHA", Some("SSL protocol")),
            ("TLSv1 AES256-SHA", Some("TLS 1.0")),
            ("TLSv1.1 ECDHE-RSA-AES128-SHA", Some("TLS 1.1")),
            ("TLSv1.2 RC4-SHA", Some("RC4 cipher")),
            ("TLSv1.2 ECDHE-RSA-DES-CBC3-SHA", Some("DES cipher")),
            ("TLSv1.2 TLS_RSA_WITH_3DES_EDE_CBC_SHA", Some("DES cipher")),
            ("TLSv1.2 EXP-RC2-CBC-MD5", Some("export cipher")),
            ("TLSv1.2 NULL-SHA256", Some("NULL cipher")),
            ("TLSv1.2 ADH-AES256-GCM-SHA384", Some("anonymous cipher")),
            ("TLSv1.2 AECDH-AES128-SHA", Some("anonymous cipher")),
            // Any case; a DES-CBC3 inside a part.
            ("TLSv1.2 rc4-sha", Some("RC4 cipher")),
            ("TLSv1.2 ecdhe-rsa-des-cbc3-sha", Some("DES cipher")),
            ("TLSv1.2 XDES-CBC3-SHA", Some("DES cipher")),
            ("TLSv1.2 AES128-XDES_EDEX", Some("DES cipher")),
            ("TLSv1 EXP1024-RC2-CBC-MD5", Some("TLS 1.0")),
            ("TLSv1.2 exp1024-rc2-cbc-md5", Some("export cipher")),
            (
                "TLSv1.2 TLS_ECDH_anon_WITH_AES_128_CBC_SHA",
                Some("anonymous cipher"),
            ),
            ("TLSv1.2 ECDHE-RSA-NULLX-SHA", None),
            // Not ASCII: no panic at a byte that is no character's start.
            ("TLSv1.2 €B-SHA", None),
            ("TLSv1.2 €DES-CBC3", Some("DES cipher")),
            ("TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384", None),
            ("TLSv1.3 TLS_AES_256_GCM_SHA384", None),
            ("TLSv1.3 TLS_CHACHA20_POLY1305_SHA256", None),
            ("TLS (cipher not logged)", None),
            ("unknown", None),
        ] {
            assert_eq!(weakness(label), why, "{label}");
        }
    }

    #[test]
    fn a_posture_flags_plaintext_and_weak_sessions() {
        let mut c = Counts::default();
        c.bump("plaintext", 2);
        c.bump("TLSv1 AES256-SHA", 1);
        c.bump("TLSv1.3 TLS_AES_256_GCM_SHA384", 4);
        c.bump("unknown", 1);
        let p = Posture::of(&c);
        assert!(p.plaintext_credentials);
        assert_eq!(p.unknown, 1);
        assert_eq!(
            p.weak,
            vec!["TLSv1 AES256-SHA: TLS 1.0", "plaintext: no TLS"]
        );
        assert!(p.summary().contains("credentials sent in plaintext"));
    }
}
