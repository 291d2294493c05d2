//! Counters of what the host did, their periodic log line and end-of-run
//! summary, and the Prometheus `/metrics` endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::observe::health::PolledQueues;

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

/// How long a client may take to send its request head (a scraper sends it
/// at once; one that stalls is dropped).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer to one request: `GET /metrics` (with or without a query) gets
/// the counters, then each queue's state; anything else gets an empty 404.
fn answer<B>(
    request: &Request<B>,
    counters: &Counters,
    queues: &PolledQueues,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) =
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            let mut body = counters.snapshot().prometheus();
            body.push_str(&crate::observe::health::prometheus(queues));
            (StatusCode::OK, Some("text/plain; version=0.0.4"), body)
        } else {
            (StatusCode::NOT_FOUND, None, String::new())
        };
    let mut response = Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header(CONTENT_TYPE, content_type);
    }
    // Explicit, so that a HEAD is told its 404 is empty too.
    response
        .header(CONTENT_LENGTH, body.len())
        .header(CONNECTION, "close")
        .body(Full::new(Bytes::from(body)))
        .expect("static status and headers")
}

/// Serves `GET /metrics` on `listener` (HTTP/1.1, one request per
/// connection) until the host's runtime ends, which ends it and every
/// connection with it. hyper reads the whole request head, however the client
/// split it into packets, before the path is looked at; a client that sends
/// no complete head within [`HEAD_TIMEOUT`] is dropped.
pub async fn serve(listener: TcpListener, counters: Arc<Counters>, queues: PolledQueues) {
    let queues = Arc::new(queues);
    let mut http = http1::Builder::new();
    http.keep_alive(false)
        .title_case_headers(true)
        .auto_date_header(false)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let counters = counters.clone();
        let queues = queues.clone();
        let service = service_fn(move |request| {
            let response = answer(&request, &counters, &queues);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http.serve_connection(TokioIo::new(socket), service);
        tokio::spawn(async move {
            // A client that leaves or sends garbage ends only its connection.
            let _ = connection.await;
        });
    }
}

/// Binds the metrics listener (at start-up, so a bad address fails early).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::source::QueueRef;

    /// A served endpoint with some counts and one queue.
    async fn endpoint() -> SocketAddr {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        counters.received.store(8, Ordering::Relaxed);
        counters.stored.store(7, Ordering::Relaxed);
        let queue = QueueRef {
            url: "http://q".into(),
            name: "acme-q".into(),
            arn: "arn:aws:sqs:us-east-1:123456789012:acme-q".into(),
            fifo: false,
        };
        let queues = PolledQueues::default();
        queues.insert(crate::observe::health::QueueHealth::new(&queue, "b"));
        tokio::spawn(serve(listener, counters, queues));
        addr
    }

    /// Sends `pieces`, each in its own packet, and reads until the server
    /// closes the connection.
    async fn exchange(addr: SocketAddr, pieces: &[&str]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        for piece in pieces {
            stream.write_all(piece.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .expect("the server closes the connection after answering")
            .unwrap();
        String::from_utf8(response).unwrap()
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    }

    /// A response's status line, its header lines (sorted: their order means
    /// nothing) and its body.
    fn parts(response: &str) -> (&str, Vec<&str>, &str) {
        let (head, body) = response.split_once("\r\n\r\n").expect("a whole head");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap();
        let mut headers: Vec<&str> = lines.collect();
        headers.sort_unstable();
        (status, headers, body)
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_text_format_then_the_connection_closes() {
        let addr = endpoint().await;
        let response = exchange(addr, &[&get("/metrics")]).await;
        let (status, headers, body) = parts(&response);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            headers,
            [
                "Connection: close".to_string(),
                format!("Content-Length: {}", body.len()),
                "Content-Type: text/plain; version=0.0.4".to_string(),
            ]
        );
        assert!(body.starts_with(
            "# HELP audit_archiver_received_total Messages received from SQS, redeliveries included.\n\
             # TYPE audit_archiver_received_total counter\n\
             audit_archiver_received_total 8\n"
        ));
        assert!(body.contains("\naudit_archiver_stored_total 7\n"), "{body}");
        assert!(
            body.contains("\naudit_archiver_queue_up{queue=\"acme-q\"} 1\n"),
            "{body}"
        );
        let with_query = exchange(addr, &[&get("/metrics?name[]=x")]).await;
        assert!(
            with_query.starts_with("HTTP/1.1 200 OK\r\n"),
            "{with_query}"
        );
    }

    #[tokio::test]
    async fn metrics_answer_a_request_split_across_packets() {
        let addr = endpoint().await;
        let response = exchange(
            addr,
            &[
                "GET ",
                "/metr",
                "ics HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                "\r\n",
            ],
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("\naudit_archiver_received_total 8\n"));
    }

    #[tokio::test]
    async fn metrics_answer_anything_else_with_an_empty_404() {
        let addr = endpoint().await;
        for request in [
            get("/other"),
            get("/"),
            get("/metrics/x"),
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".to_string(),
            "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ] {
            let response = exchange(addr, &[&request]).await;
            assert_eq!(
                parts(&response),
                (
                    "HTTP/1.1 404 Not Found",
                    vec!["Connection: close", "Content-Length: 0"],
                    ""
                ),
                "{request}"
            );
        }
    }

    #[tokio::test]
    async fn metrics_outlive_clients_that_leave_early() {
        let addr = endpoint().await;
        drop(TcpStream::connect(addr).await.unwrap());
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET /metr").await.unwrap();
        drop(half);
        let response = exchange(addr, &[&get("/metrics")]).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    }
}
