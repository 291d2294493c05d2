//! Counters of what the host did, their periodic log line and end-of-run
//! summary, and the Prometheus `/metrics` endpoint.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::health::QueueHealth;

/// Monotonic counters, shared by every worker.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages received from SQS (redeliveries count again).
    pub received: AtomicU64,
    /// Objects created (including under an alternate key).
    pub stored: AtomicU64,
    /// Messages whose object was already archived (redeliveries).
    pub already_present: AtomicU64,
    /// Messages stored under their alternate key because another message held the key.
    pub collisions: AtomicU64,
    /// Messages stored under the quarantine prefix.
    pub quarantined: AtomicU64,
    /// Messages left in SQS because they could not be stored.
    pub failed: AtomicU64,
    /// Messages deleted from SQS.
    pub deleted: AtomicU64,
    /// Deletes that failed after archiving (the message will come back and be
    /// recognised as already present).
    pub delete_failures: AtomicU64,
    /// Messages released at shutdown (visibility set to 0).
    pub released: AtomicU64,
    /// Retries of transient storage errors.
    pub retries: AtomicU64,
    /// Retries of transient delete errors (per message).
    pub delete_retries: AtomicU64,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// See [`Counters::received`].
    pub received: u64,
    /// See [`Counters::stored`].
    pub stored: u64,
    /// See [`Counters::already_present`].
    pub already_present: u64,
    /// See [`Counters::collisions`].
    pub collisions: u64,
    /// See [`Counters::quarantined`].
    pub quarantined: u64,
    /// See [`Counters::failed`].
    pub failed: u64,
    /// See [`Counters::deleted`].
    pub deleted: u64,
    /// See [`Counters::delete_failures`].
    pub delete_failures: u64,
    /// See [`Counters::released`].
    pub released: u64,
    /// See [`Counters::retries`].
    pub retries: u64,
    /// See [`Counters::delete_retries`].
    pub delete_retries: u64,
}

impl Counters {
    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            received: get(&self.received),
            stored: get(&self.stored),
            already_present: get(&self.already_present),
            collisions: get(&self.collisions),
            quarantined: get(&self.quarantined),
            failed: get(&self.failed),
            deleted: get(&self.deleted),
            delete_failures: get(&self.delete_failures),
            released: get(&self.released),
            retries: get(&self.retries),
            delete_retries: get(&self.delete_retries),
        }
    }
}

impl Snapshot {
    fn fields(&self) -> [(&'static str, u64, &'static str); 11] {
        [
            (
                "received",
                self.received,
                "Messages received from SQS, redeliveries included.",
            ),
            (
                "stored",
                self.stored,
                "Objects created in S3, alternate keys included.",
            ),
            (
                "already_present",
                self.already_present,
                "Messages found already archived (redeliveries).",
            ),
            (
                "collisions",
                self.collisions,
                "Messages stored under their alternate key after a name collision.",
            ),
            (
                "quarantined",
                self.quarantined,
                "Messages stored under the quarantine prefix.",
            ),
            (
                "failed",
                self.failed,
                "Messages left in SQS because they could not be stored.",
            ),
            (
                "deleted",
                self.deleted,
                "Messages deleted from SQS after archiving.",
            ),
            (
                "delete_failures",
                self.delete_failures,
                "Deletes that failed after archiving.",
            ),
            ("released", self.released, "Messages released at shutdown."),
            (
                "retries",
                self.retries,
                "Retries of transient storage errors.",
            ),
            (
                "delete_retries",
                self.delete_retries,
                "Retries of transient delete errors, per message.",
            ),
        ]
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (name, value, help) in self.fields() {
            out.push_str(&format!(
                "# HELP audit_archiver_{name}_total {help}\n# TYPE audit_archiver_{name}_total counter\naudit_archiver_{name}_total {value}\n"
            ));
        }
        out
    }

    /// Logs the counters as one structured line.
    pub fn log(&self, what: &str) {
        tracing::info!(
            received = self.received,
            stored = self.stored,
            already_present = self.already_present,
            collisions = self.collisions,
            quarantined = self.quarantined,
            failed = self.failed,
            deleted = self.deleted,
            delete_failures = self.delete_failures,
            released = self.released,
            retries = self.retries,
            delete_retries = self.delete_retries,
            "{what}"
        );
    }
}

/// Serves `GET /metrics` on `listener` until the process ends: the counters,
/// then each queue's state. Anything else gets 404.
pub async fn serve(listener: TcpListener, counters: Arc<Counters>, queues: Vec<Arc<QueueHealth>>) {
    let queues = Arc::new(queues);
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let counters = counters.clone();
        let queues = queues.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 2048];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                socket.read(&mut request),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let head = String::from_utf8_lossy(&request[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let response = if head.starts_with("GET ")
                && (path == "/metrics" || path.starts_with("/metrics?"))
            {
                let mut body = counters.snapshot().prometheus();
                body.push_str(&crate::health::prometheus(&queues));
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Binds the metrics listener (at start-up, so a bad address fails early).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
