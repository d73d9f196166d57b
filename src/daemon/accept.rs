//! Accepting connections on a socket anyone allowed may open (control, metrics, the
//! Postfix policy service): at most a fixed number open at once, the rest left waiting
//! in the kernel's backlog where they cost the daemon no descriptor, and an accept
//! error (descriptors exhausted) followed by a pause instead of a spin.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A listener whose connections can be accepted (TCP or unix).
pub trait Listener {
    type Stream;
    fn accept_stream(&self) -> impl Future<Output = std::io::Result<Self::Stream>>;
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_stream(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_stream(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// Room for `n` connections at once.
pub fn gate(n: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(n))
}

/// The next connection, once there is room for it; the permit is its room and goes
/// with the connection's task.
pub async fn next<L: Listener>(
    listener: &L,
    gate: &Arc<Semaphore>,
    what: &str,
) -> (L::Stream, OwnedSemaphorePermit) {
    let permit = gate
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    loop {
        match listener.accept_stream().await {
            Ok(s) => return (s, permit),
            Err(e) => {
                // EMFILE and the like: waiting lets descriptors come back; retrying at
                // once would spin the CPU.
                tracing::warn!("{what}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
