//! SMTP as far as the probe needs it (RFC 5321, STARTTLS RFC 3207, AUTH RFC 4954):
//! the 220 greeting, EHLO, STARTTLS, one AUTH exchange, QUIT.

use super::conn::{Conn, Step, StepError, unb64};
use super::{Credentials, sasl_answer};

pub const STARTTLS: &str = "STARTTLS";
pub const QUIT: &str = "QUIT";

/// One reply: its code and text lines.
fn reply(c: &mut Conn) -> Step<(u16, Vec<String>)> {
    let mut lines = Vec::new();
    loop {
        let l = c.line()?;
        let code = l.get(..3).and_then(|x| x.parse().ok()).unwrap_or(0);
        let more = l.as_bytes().get(3) == Some(&b'-');
        lines.push(l.get(4..).unwrap_or("").to_string());
        if !more {
            return Ok((code, lines));
        }
    }
}

pub fn greet(c: &mut Conn) -> Step<String> {
    let (code, lines) = reply(c)?;
    if code != 220 {
        return Err(StepError::Greeting(format!("{code} {}", lines.join(" "))));
    }
    Ok(format!("{code} {}", lines.join(" ")))
}

/// EHLO: the capabilities, without the first line (the server's name).
pub fn caps(c: &mut Conn) -> Step<Vec<String>> {
    c.send("EHLO probe.saslguard.invalid")?;
    let (code, lines) = reply(c)?;
    if code != 250 {
        return Err(StepError::Protocol(format!(
            "EHLO refused: {code} {}",
            lines.join(" ")
        )));
    }
    Ok(lines.into_iter().skip(1).collect())
}

/// `AUTH PLAIN LOGIN` (or the old `AUTH=PLAIN LOGIN`).
pub fn mechs(caps: &[String]) -> Vec<String> {
    caps.iter()
        .find_map(|c| {
            let u = c.to_ascii_uppercase();
            u.strip_prefix("AUTH ")
                .or_else(|| u.strip_prefix("AUTH="))
                .map(|m| m.split_whitespace().map(str::to_string).collect())
        })
        .unwrap_or_default()
}

pub fn starttls(c: &mut Conn) -> Step<()> {
    c.send("STARTTLS")?;
    let (code, lines) = reply(c)?;
    if code != 220 {
        return Err(StepError::Protocol(format!(
            "STARTTLS refused: {code} {}",
            lines.join(" ")
        )));
    }
    Ok(())
}

pub fn login(c: &mut Conn, cr: &Credentials) -> Step<(bool, String)> {
    c.send(&format!("AUTH {}", cr.mechanism.name()))?;
    for step in 0..4 {
        let (code, lines) = reply(c)?;
        let text = lines.join(" ");
        match code {
            334 => c.send(&sasl_answer(cr, &unb64(&text), step))?,
            235 => return Ok((true, format!("{code} {text}"))),
            _ => return Ok((false, format!("{code} {text}"))),
        }
    }
    Err(StepError::Protocol("AUTH exchange did not end".into()))
}
