//! The systemd journal as a source: `journalctl --output=json` entries turned back
//! into syslog lines the parsers know.
//!
//! The daemon runs `journalctl --follow --output=json SYSLOG_FACILITY=2` (the mail
//! facility, where Postfix and Dovecot log) and keeps entries whose
//! SYSLOG_IDENTIFIER starts with one of the configured identifiers. Each entry's
//! `__CURSOR` is its position; a restart resumes with `--after-cursor`.

use crate::time::Timestamp;
use serde_json::Value;
use std::path::Path;

/// One journal entry as a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub cursor: String,
    /// `2026-11-22T10:00:00.123Z host ident[pid]: message`, without a newline; None
    /// when the identifier is not one of ours.
    pub line: Option<Vec<u8>>,
}

/// The journalctl arguments for following `identifiers` from `cursor` (or from the
/// end, or the beginning).
pub fn journalctl_args(
    directory: Option<&Path>,
    cursor: Option<&str>,
    from_start: bool,
) -> Vec<String> {
    let mut a = vec![
        "--follow".to_string(),
        "--output=json".to_string(),
        "--no-pager".to_string(),
        "--quiet".to_string(),
    ];
    if let Some(d) = directory {
        a.push(format!("--directory={}", d.display()));
    }
    match cursor {
        Some(c) => a.push(format!("--after-cursor={c}")),
        None if from_start => a.push("--lines=all".into()),
        None => a.push("--lines=0".into()),
    }
    a.push("SYSLOG_FACILITY=2".into());
    a
}

fn text(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        // Not valid UTF-8: journalctl writes the bytes as an array of numbers.
        Value::Array(a) => a
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect(),
        _ => None,
    }
}

/// Why a line of `journalctl --output=json` is no entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("journal entry: {0}")]
    Json(serde_json::Error),
    #[error("journal entry without {0}")]
    Missing(&'static str),
}

/// Turns one line of `journalctl --output=json` into an [`Entry`].
pub fn parse_entry(json: &[u8], identifiers: &[String]) -> Result<Entry, EntryError> {
    let v: Value = serde_json::from_slice(json).map_err(EntryError::Json)?;
    let cursor = v["__CURSOR"]
        .as_str()
        .ok_or(EntryError::Missing("__CURSOR"))?
        .to_string();
    let ident = v
        .get("SYSLOG_IDENTIFIER")
        .and_then(text)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if !identifiers.iter().any(|i| ident.starts_with(i.as_str())) {
        return Ok(Entry { cursor, line: None });
    }
    let micros: i64 = v["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or(EntryError::Missing("__REALTIME_TIMESTAMP"))?;
    let Some(message) = v.get("MESSAGE").and_then(text) else {
        return Ok(Entry { cursor, line: None });
    };
    let host = v.get("_HOSTNAME").and_then(text).unwrap_or(b"-".to_vec());
    let pid = v
        .get("SYSLOG_PID")
        .or_else(|| v.get("_PID"))
        .and_then(text)
        .map(|p| String::from_utf8_lossy(&p).into_owned());
    let mut line = Timestamp(micros / 1000).rfc3339().into_bytes();
    if !line.contains(&b'.') {
        // Keep the form fixed: the parsers read both, but one is easier on the eye.
        line.truncate(line.len() - 1);
        line.extend_from_slice(b".000Z");
    }
    line.push(b' ');
    line.extend_from_slice(&host);
    line.push(b' ');
    line.extend_from_slice(ident.as_bytes());
    if let Some(p) = pid {
        line.extend_from_slice(format!("[{p}]").as_bytes());
    }
    line.extend_from_slice(b": ");
    line.extend(message.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
    Ok(Entry {
        cursor,
        line: Some(line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        vec!["postfix".into(), "dovecot".into()]
    }

    #[test]
    fn entries_become_lines_the_parser_reads() {
        let j = br#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1795341600123456","_HOSTNAME":"mx","SYSLOG_IDENTIFIER":"postfix/submission/smtpd","_PID":"812","MESSAGE":"warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"}"#;
        let e = parse_entry(j, &ids()).unwrap();
        assert_eq!(e.cursor, "s=1;i=2");
        let line = String::from_utf8(e.line.unwrap()).unwrap();
        assert_eq!(
            line,
            "2026-11-22T10:00:00.123Z mx postfix/submission/smtpd[812]: warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
        );
        let p = crate::parse::parse_line(&line).unwrap();
        let ev = p.event.unwrap();
        assert_eq!(ev.address, Some("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn other_programs_and_binary_messages() {
        let j = br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1795341600000000","SYSLOG_IDENTIFIER":"opendkim","MESSAGE":"x"}"#;
        assert_eq!(parse_entry(j, &ids()).unwrap().line, None);
        let j = br#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1795341600000000","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":[104,105,255]}"#;
        let line = parse_entry(j, &ids()).unwrap().line.unwrap();
        assert!(line.ends_with(b"dovecot: hi\xff"), "{line:?}");
        assert!(parse_entry(b"{not json", &ids()).is_err());
    }
}
