//! A Postfix policy service (SMTPD_POLICY_README): Postfix asks, for each client,
//! `request=smtpd_access_policy` with `client_address=...`, and saslguard answers from
//! its live bans and blocks: the configured action (`REJECT ...`) while a ban covers
//! the address or a `[[block]]` refuses it on the port it came to (`server_port=`),
//! `DUNNO` otherwise. This is how a host without nftables enforces blocks, for SMTP
//! only: IMAP and POP3 do not ask Postfix. No map to rewrite, no `postfix reload`, and a ban ends at its
//! expiry to the second. Postfix's `default_action=DUNNO` makes it fail open: while
//! saslguard is stopped every client is let through.
//!
//! Connections are bounded like the control socket's; a request is at most
//! [`MAX_REQUEST`] bytes and an idle connection is closed after [`IDLE`] (Postfix
//! keeps its policy connections for `smtpd_policy_service_max_idle`, 300 s).

use super::control::{Call, Request, Response};
use crate::addr::parse_network;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Connections served at once (Postfix opens one per smtpd process).
const MAX_CONNECTIONS: usize = 256;
/// The largest request (Postfix's are under 2 KB).
const MAX_REQUEST: u64 = 16 * 1024;
/// An idle connection is closed after this.
const IDLE: Duration = Duration::from_secs(330);

pub async fn serve(listener: tokio::net::UnixListener, engine: mpsc::Sender<Call>, reply: String) {
    let gate = super::accept::gate(MAX_CONNECTIONS);
    let reply = Arc::new(reply);
    loop {
        let (stream, permit) = super::accept::next(&listener, &gate, "policy service").await;
        let (engine, reply) = (engine.clone(), reply.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (r, mut w) = stream.into_split();
            let mut r = tokio::io::BufReader::new(r);
            loop {
                let request = match tokio::time::timeout(IDLE, read_request(&mut r)).await {
                    Ok(Some(req)) => req,
                    _ => break,
                };
                let action = decide(&engine, &request, &reply).await;
                if w.write_all(format!("action={action}\n\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
}

/// One request: `name=value` lines up to an empty line. None at the end of the
/// connection, or for a request larger than [`MAX_REQUEST`].
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    let mut limited = r.take(MAX_REQUEST);
    loop {
        let mut line = String::new();
        let n = limited.read_line(&mut line).await.ok()?;
        if n == 0 || !line.ends_with('\n') {
            return None;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line.to_string());
    }
}

/// The action for one request: `reply` while a ban covers `client_address`, DUNNO
/// otherwise, and DUNNO when saslguard cannot tell (fail open).
async fn decide(engine: &mpsc::Sender<Call>, request: &[String], reply: &str) -> String {
    let addr = request
        .iter()
        .find_map(|l| l.strip_prefix("client_address="))
        .and_then(|a| parse_network(a).ok())
        .filter(|n| n.prefix_len() == n.max_prefix_len());
    let Some(addr) = addr else {
        return "DUNNO".into();
    };
    // Postfix 3.2 and later say which port the client came to: a block refuses only on
    // its own ports (never on 25 unless it says so).
    let port = request
        .iter()
        .find_map(|l| l.strip_prefix("server_port="))
        .and_then(|p| p.trim().parse::<u16>().ok());
    let (tx, rx) = oneshot::channel();
    let req = Request::Check {
        address: addr.addr().to_string(),
        port: Some(port.unwrap_or(0)),
    };
    if engine.send((req, tx)).await.is_err() {
        return "DUNNO".into();
    }
    match rx.await {
        Ok(Response::Check(c)) if c.refused() => {
            tracing::debug!(ip = %addr.addr(), "policy service: refused");
            reply.to_string()
        }
        _ => "DUNNO".into(),
    }
}
