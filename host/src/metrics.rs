//! Counters of what the host did, their periodic log line and end-of-run
//! summary, and the Prometheus `/metrics` endpoint.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::health::QueueHealth;

/// Declares every counter once: its name (the field of [`Counters`] and
/// [`Snapshot`], the key of the summary and the log line, and
/// `audit_archiver_{name}_total` in Prometheus) and its help text.
macro_rules! counters {
    ($( $(#[doc = $doc:literal])+ $name:ident: $help:literal, )*) => {
        /// Monotonic counters, shared by every worker.
        #[derive(Debug, Default)]
        pub struct Counters {
            $( $(#[doc = $doc])+ pub $name: AtomicU64, )*
        }

        /// A point-in-time copy of [`Counters`]; serialised as the summary
        /// a run prints when it ends.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct Snapshot {
            $( $(#[doc = $doc])+ pub $name: u64, )*
        }

        impl Counters {
            /// Reads every counter.
            pub fn snapshot(&self) -> Snapshot {
                Snapshot {
                    $( $name: self.$name.load(Ordering::Relaxed), )*
                }
            }
        }

        impl Snapshot {
            /// Each counter's name, value and Prometheus help text.
            fn fields(&self) -> Vec<(&'static str, u64, &'static str)> {
                vec![$( (stringify!($name), self.$name, $help), )*]
            }

            /// Logs the counters as one structured line.
            pub fn log(&self, what: &str) {
                tracing::info!($( $name = self.$name, )* "{what}");
            }
        }
    };
}

counters! {
    /// Messages received from SQS (redeliveries count again).
    received: "Messages received from SQS, redeliveries included.",
    /// Objects created (including under an alternate key).
    stored: "Objects created in S3, alternate keys included.",
    /// Messages whose object was already archived (redeliveries).
    already_present: "Messages found already archived (redeliveries).",
    /// Messages stored under their alternate key because another message
    /// held the key.
    collisions: "Messages stored under their alternate key after a name collision.",
    /// Messages stored under the quarantine prefix.
    quarantined: "Messages stored under the quarantine prefix.",
    /// Messages left in SQS because they could not be stored.
    failed: "Messages left in SQS because they could not be stored.",
    /// Messages deleted from SQS.
    deleted: "Messages deleted from SQS after archiving.",
    /// Deletes that failed after archiving (the message will come back and
    /// be recognised as already present).
    delete_failures: "Deletes that failed after archiving.",
    /// Messages released at shutdown (visibility set to 0).
    released: "Messages released at shutdown.",
    /// Retries of transient storage errors.
    retries: "Retries of transient storage errors.",
    /// Retries of transient delete errors (per message).
    delete_retries: "Retries of transient delete errors, per message.",
}

impl Snapshot {
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
}

/// Reads a request head (through its blank line) into `buffer`, however the
/// client split it into packets; answering before it has all arrived would
/// read a wrong path and close the socket on unread data, which resets the
/// connection under the client. `None` if the client left first. A head
/// longer than the buffer is answered from what fits (the path comes first).
async fn read_head(socket: &mut tokio::net::TcpStream, buffer: &mut [u8]) -> Option<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match socket.read(&mut buffer[filled..]).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => filled += n,
        }
        if buffer[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Some(filled)
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
            let Ok(Some(n)) = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                read_head(&mut socket, &mut request),
            )
            .await
            else {
                return;
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
