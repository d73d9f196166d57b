//! Prometheus metrics over plain HTTP (`GET /metrics`), off unless
//! `daemon.metrics_listen` is set. The text comes from the engine.
//!
//! Anyone who can reach the port can connect, so connections are bounded: at most
//! [`MAX_CONNECTIONS`] at once (the rest wait in the kernel's backlog and cost the
//! daemon no descriptor), each ended after [`CONNECTION_TIME`]. A local user holding a
//! thousand connections open must not take the descriptors the daemon needs for
//! netlink, its logs and its store.

use super::control::{Call, Request};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// The longest a connection may take, request and answer.
pub const CONNECTION_TIME: Duration = Duration::from_secs(10);

pub async fn serve(listener: tokio::net::TcpListener, engine: mpsc::Sender<Call>) {
    let gate = super::accept::gate(MAX_CONNECTIONS);
    loop {
        let (mut stream, permit) = super::accept::next(&listener, &gate, "metrics").await;
        let engine = engine.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CONNECTION_TIME, answer(&mut stream, engine)).await;
        });
    }
}

async fn answer(stream: &mut tokio::net::TcpStream, engine: mpsc::Sender<Call>) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let (status, body) = if req.starts_with(b"GET /metrics ") || req.starts_with(b"GET / ") {
        let (tx, rx) = oneshot::channel();
        if engine.send((Request::Metrics, tx)).await.is_err() {
            return;
        }
        match rx.await {
            Ok(v) => ("200 OK", v["text"].as_str().unwrap_or_default().to_string()),
            Err(_) => return,
        }
    } else {
        ("404 Not Found", "only /metrics is here\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
}

/// Prometheus label value escaping.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
