//! IMAP as far as the probe needs it (RFC 9051, STARTTLS RFC 2595): the `* OK`
//! greeting, CAPABILITY, STARTTLS, one AUTHENTICATE exchange, LOGOUT.

use super::conn::{Conn, Step, StepError, unb64};
use super::{Credentials, sasl_answer};

pub const STARTTLS: &str = "STARTTLS";
pub const QUIT: &str = "z LOGOUT";

pub fn greet(c: &mut Conn) -> Step<String> {
    let l = c.line()?;
    if !(l.starts_with("* OK") || l.starts_with("+OK")) {
        return Err(StepError::Greeting(l));
    }
    Ok(l)
}

pub fn caps(c: &mut Conn, tag: &str) -> Step<Vec<String>> {
    c.send(&format!("{tag} CAPABILITY"))?;
    let mut caps = Vec::new();
    loop {
        let l = c.line()?;
        if let Some(rest) = l.strip_prefix("* CAPABILITY ") {
            caps = rest.split_whitespace().map(str::to_string).collect();
        } else if l.starts_with(&format!("{tag} ")) {
            return Ok(caps);
        }
    }
}

/// `AUTH=PLAIN AUTH=CRAM-MD5`.
pub fn mechs(caps: &[String]) -> Vec<String> {
    caps.iter()
        .filter_map(|c| {
            c.to_ascii_uppercase()
                .strip_prefix("AUTH=")
                .map(str::to_string)
        })
        .collect()
}

pub fn starttls(c: &mut Conn) -> Step<()> {
    c.send("s1 STARTTLS")?;
    loop {
        let l = c.line()?;
        if l.starts_with("s1 OK") {
            return Ok(());
        }
        if l.starts_with("s1 ") {
            return Err(StepError::Protocol(format!("STARTTLS refused: {l}")));
        }
    }
}

pub fn login(c: &mut Conn, cr: &Credentials) -> Step<(bool, String)> {
    c.send(&format!("a1 AUTHENTICATE {}", cr.mechanism.name()))?;
    let mut step = 0;
    loop {
        let l = c.line()?;
        if let Some(ch) = l.strip_prefix('+') {
            c.send(&sasl_answer(cr, &unb64(ch), step))?;
            step += 1;
        } else if let Some(rest) = l.strip_prefix("a1 ") {
            return Ok((rest.starts_with("OK"), l));
        }
    }
}
