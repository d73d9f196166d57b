//! POP3 as far as the probe needs it (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH
//! RFC 5034): the `+OK` greeting, CAPA, STLS, one AUTH exchange, QUIT.

use super::conn::{Conn, Step, StepError, unb64};
use super::{Credentials, sasl_answer};

pub const STARTTLS: &str = "STLS";
pub const QUIT: &str = "QUIT";

pub fn greet(c: &mut Conn) -> Step<String> {
    let l = c.line()?;
    if !(l.starts_with("* OK") || l.starts_with("+OK")) {
        return Err(StepError::Greeting(l));
    }
    Ok(l)
}

/// CAPA; a server without it has no capabilities to show.
pub fn caps(c: &mut Conn) -> Step<Vec<String>> {
    c.send("CAPA")?;
    let first = c.line()?;
    if !first.starts_with("+OK") {
        return Ok(Vec::new());
    }
    let mut caps = Vec::new();
    loop {
        let l = c.line()?;
        if l == "." {
            return Ok(caps);
        }
        caps.push(l);
    }
}

/// `SASL PLAIN LOGIN`.
pub fn mechs(caps: &[String]) -> Vec<String> {
    caps.iter()
        .find_map(|c| {
            c.strip_prefix("SASL ")
                .map(|m| m.split_whitespace().map(str::to_string).collect())
        })
        .unwrap_or_default()
}

pub fn starttls(c: &mut Conn) -> Step<()> {
    c.send("STLS")?;
    let l = c.line()?;
    if !l.starts_with("+OK") {
        return Err(StepError::Protocol(format!("STLS refused: {l}")));
    }
    Ok(())
}

pub fn login(c: &mut Conn, cr: &Credentials) -> Step<(bool, String)> {
    c.send(&format!("AUTH {}", cr.mechanism.name()))?;
    let mut step = 0;
    loop {
        let l = c.line()?;
        if let Some(ch) = l.strip_prefix('+').filter(|_| !l.starts_with("+OK")) {
            c.send(&sasl_answer(cr, &unb64(ch), step))?;
            step += 1;
        } else {
            return Ok((l.starts_with("+OK"), l));
        }
    }
}
