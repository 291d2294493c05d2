//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1, between the host and moto.
//!
//! Each client connection carries exactly one request: the proxy reads the
//! request head and its body (Content-Length or chunked), decides what to do
//! with it, forwards it upstream on a fresh connection, reads the whole
//! response (Content-Length, chunked, or until the upstream closes) and sends
//! it back with `Connection: close`. That is enough HTTP for the AWS SDK talking
//! plain HTTP to moto, and it makes every fault exact: one request, one fault.
//!
//! S3 and SQS share moto's endpoint; SQS requests are `POST /` with an
//! `X-Amz-Target: AmazonSQS.*` header, everything else is S3 (path-style).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happens to S3 requests while an outage is simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Mode {
    /// Forwarded.
    Pass,
    /// The connection is reset (RST) after the request is read.
    Reset,
    /// The connection is closed without an answer after the request is read.
    Drop,
    /// The request is read and never answered until the mode changes.
    Stall,
}

/// The fault plan; change it at any time with [`Proxy::set`].
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The listener is closed: connections are refused (both services).
    pub refuse: bool,
    /// What happens to every S3 request.
    pub s3: S3Mode,
    /// Per mille of S3 requests answered 503 SlowDown without forwarding.
    pub s3_503_permille: u32,
    /// Per mille of S3 requests forwarded, then answered 500 (the request took
    /// effect; the client cannot know).
    pub s3_500_after_permille: u32,
    /// Per mille of SQS requests answered 500 without forwarding.
    pub sqs_500_permille: u32,
    /// Per mille of SQS requests forwarded, then answered 503.
    pub sqs_503_after_permille: u32,
    /// Per mille of SQS `DeleteMessageBatch` requests answered 500 without
    /// forwarding (on top of `sqs_500_permille`).
    pub sqs_delete_500_permille: u32,
    /// Delay added to every forwarded request (load).
    pub latency: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            refuse: false,
            s3: S3Mode::Pass,
            s3_503_permille: 0,
            s3_500_after_permille: 0,
            sqs_500_permille: 0,
            sqs_503_after_permille: 0,
            sqs_delete_500_permille: 0,
            latency: Duration::ZERO,
        }
    }
}

/// What the proxy saw and did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests read from clients.
    pub requests: AtomicU64,
    /// Of which S3.
    pub s3_requests: AtomicU64,
    /// Of which SQS.
    pub sqs_requests: AtomicU64,
    /// Connections refused (accepts skipped while the listener was closed).
    pub refused_periods: AtomicU64,
    /// Requests answered by a reset.
    pub resets: AtomicU64,
    /// Requests dropped unanswered.
    pub drops: AtomicU64,
    /// Requests stalled.
    pub stalls: AtomicU64,
    /// S3 requests answered 503 SlowDown unforwarded.
    pub s3_503: AtomicU64,
    /// S3 requests answered 500 after taking effect.
    pub s3_500_after: AtomicU64,
    /// SQS requests answered 500 unforwarded.
    pub sqs_500: AtomicU64,
    /// SQS requests answered 503 after taking effect.
    pub sqs_503_after: AtomicU64,
    /// SQS DeleteMessage/DeleteMessageBatch requests forwarded to moto.
    pub sqs_deletes_forwarded: AtomicU64,
    /// S3 PutObject requests forwarded to moto.
    pub s3_puts_forwarded: AtomicU64,
}

impl Stats {
    /// Faults injected so far, all kinds.
    pub fn faults(&self) -> u64 {
        [
            &self.resets,
            &self.drops,
            &self.stalls,
            &self.s3_503,
            &self.s3_500_after,
            &self.sqs_500,
            &self.sqs_503_after,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "requests={} (s3={} sqs={}) resets={} drops={} stalls={} s3_503={} s3_500_after_effect={} \
             sqs_500={} sqs_503_after_effect={} refused_periods={}",
            g(&self.requests),
            g(&self.s3_requests),
            g(&self.sqs_requests),
            g(&self.resets),
            g(&self.drops),
            g(&self.stalls),
            g(&self.s3_503),
            g(&self.s3_500_after),
            g(&self.sqs_500),
            g(&self.sqs_503_after),
            g(&self.refused_periods),
        )
    }
}

struct Shared {
    upstream: SocketAddr,
    plan: Mutex<Plan>,
    plan_changed: tokio::sync::watch::Sender<u64>,
    rng: Mutex<u64>,
    stats: Stats,
    record_heads: bool,
    heads: Mutex<Vec<String>>,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    /// `http://127.0.0.1:PORT`: give this to the host as `--endpoint-url`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` (e.g. moto's `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, seed: u64, record_heads: bool) -> Proxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("upstream is http://127.0.0.1:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            plan: Mutex::new(Plan::default()),
            plan_changed: tokio::sync::watch::channel(0).0,
            rng: Mutex::new(seed | 1),
            stats: Stats::default(),
            record_heads,
            heads: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept_loop(listener, addr, shared.clone()));
        Proxy {
            shared,
            url: format!("http://{addr}"),
            task,
        }
    }

    /// Replaces the fault plan.
    pub fn set(&self, plan: Plan) {
        *self.shared.plan.lock().unwrap() = plan;
        self.shared.plan_changed.send_modify(|n| *n += 1);
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Every request head seen (only with `record_heads`).
    pub fn heads(&self) -> Vec<String> {
        self.shared.heads.lock().unwrap().clone()
    }
}

async fn accept_loop(mut listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    loop {
        if shared.plan.lock().unwrap().refuse {
            // Really refuse: no listener on the port at all.
            drop(listener);
            shared.stats.refused_periods.fetch_add(1, Ordering::Relaxed);
            while shared.plan.lock().unwrap().refuse {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            listener = loop {
                match TcpListener::bind(addr).await {
                    Ok(listener) => break listener,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        if let Ok((client, _)) = accepted {
            let shared = shared.clone();
            tokio::spawn(async move {
                let _ = handle(client, shared).await;
            });
        }
    }
}

fn roll(shared: &Shared, permille: u32) -> bool {
    if permille == 0 {
        return false;
    }
    let mut state = shared.rng.lock().unwrap();
    // xorshift64*
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % 1000 < u64::from(permille)
}

/// A parsed message head.
struct Head {
    raw: Vec<u8>,
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The head with `Connection: close` instead of any connection header.
    fn closing(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + 20);
        out.extend_from_slice(self.first_line.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out
    }
}

/// Reads until the end of a head; `buffer` keeps what follows it.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<Option<Head>> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let raw: Vec<u8> = buffer.drain(..end + 4).collect();
            let text = String::from_utf8_lossy(&raw[..end]).into_owned();
            let mut lines = text.split("\r\n");
            let first_line = lines.next().unwrap_or_default().to_string();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            return Ok(Some(Head {
                raw,
                first_line,
                headers,
            }));
        }
        if buffer.len() > 1 << 20 {
            return Err(std::io::Error::other("head too long"));
        }
        let mut chunk = [0u8; 16 << 10];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, len: usize) -> std::io::Result<bool> {
    let mut chunk = vec![0u8; 64 << 10];
    while buffer.len() < len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(false);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(true)
}

/// How a body is framed.
enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads a body framed as given; returns its raw bytes (framing included).
async fn read_body(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    framing: Framing,
) -> std::io::Result<Vec<u8>> {
    match framing {
        Framing::None => Ok(Vec::new()),
        Framing::Length(len) => {
            if !fill(stream, buffer, len).await? {
                return Err(std::io::Error::other("body cut short"));
            }
            Ok(buffer.drain(..len).collect())
        }
        Framing::UntilClose => {
            stream.read_to_end(buffer).await?;
            Ok(std::mem::take(buffer))
        }
        Framing::Chunked => {
            let mut pos = 0;
            loop {
                // The size line.
                let line_end = loop {
                    if let Some(at) = buffer[pos..].windows(2).position(|w| w == b"\r\n") {
                        break pos + at;
                    }
                    let want = buffer.len() + 1;
                    if !fill(stream, buffer, want).await? {
                        return Err(std::io::Error::other("chunk cut short"));
                    }
                };
                let line = String::from_utf8_lossy(&buffer[pos..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                pos = line_end + 2;
                if size == 0 {
                    // Trailers, up to an empty line.
                    loop {
                        let at = loop {
                            if let Some(at) = buffer[pos..].windows(2).position(|w| w == b"\r\n") {
                                break pos + at;
                            }
                            let want = buffer.len() + 1;
                            if !fill(stream, buffer, want).await? {
                                return Err(std::io::Error::other("trailer cut short"));
                            }
                        };
                        let empty = at == pos;
                        pos = at + 2;
                        if empty {
                            return Ok(buffer.drain(..pos).collect());
                        }
                    }
                }
                if !fill(stream, buffer, pos + size + 2).await? {
                    return Err(std::io::Error::other("chunk cut short"));
                }
                pos += size + 2;
            }
        }
    }
}

fn request_framing(head: &Head) -> Framing {
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked
    } else if let Some(len) = head.header("content-length") {
        Framing::Length(len.parse().unwrap_or(0))
    } else {
        Framing::None
    }
}

fn response_framing(head: &Head, method: &str) -> Framing {
    let status: u16 = head
        .first_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked
    } else if let Some(len) = head.header("content-length") {
        Framing::Length(len.parse().unwrap_or(0))
    } else {
        Framing::UntilClose
    }
}

fn error_response(status: u16, reason: &str, sqs: bool, code: &str) -> Vec<u8> {
    let (content_type, body) = if sqs {
        (
            "application/x-amz-json-1.0",
            format!(
                r#"{{"__type":"com.amazonaws.sqs#{code}","message":"injected by the test proxy"}}"#
            ),
        )
    } else {
        (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
                 <Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
            ),
        )
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn reset(client: TcpStream) {
    // SO_LINGER 0: closing sends RST instead of FIN.
    let _ = client.set_zero_linger();
    drop(client);
}

async fn handle(mut client: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let Some(head) = read_head(&mut client, &mut buffer).await? else {
        return Ok(());
    };
    let body = read_body(&mut client, &mut buffer, request_framing(&head)).await?;
    let method = head
        .first_line
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    let target = head.header("x-amz-target").unwrap_or("").to_string();
    let sqs = target.starts_with("AmazonSQS");
    let stats = &shared.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if sqs {
        stats.sqs_requests.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.s3_requests.fetch_add(1, Ordering::Relaxed);
    }
    if shared.record_heads {
        shared
            .heads
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&head.raw).into_owned());
    }
    let plan = *shared.plan.lock().unwrap();
    let mut answer_after = None;
    if sqs {
        let failed_delete =
            target.contains("DeleteMessage") && roll(&shared, plan.sqs_delete_500_permille);
        if failed_delete || roll(&shared, plan.sqs_500_permille) {
            stats.sqs_500.fetch_add(1, Ordering::Relaxed);
            client
                .write_all(&error_response(
                    500,
                    "Internal Server Error",
                    true,
                    "InternalError",
                ))
                .await?;
            return client.shutdown().await;
        }
        if roll(&shared, plan.sqs_503_after_permille) {
            answer_after = Some(error_response(
                503,
                "Service Unavailable",
                true,
                "ServiceUnavailable",
            ));
            stats.sqs_503_after.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        match plan.s3 {
            S3Mode::Pass => {}
            S3Mode::Reset => {
                stats.resets.fetch_add(1, Ordering::Relaxed);
                reset(client).await;
                return Ok(());
            }
            S3Mode::Drop => {
                stats.drops.fetch_add(1, Ordering::Relaxed);
                drop(client);
                return Ok(());
            }
            S3Mode::Stall => {
                stats.stalls.fetch_add(1, Ordering::Relaxed);
                let mut changed = shared.plan_changed.subscribe();
                let _ = tokio::time::timeout(Duration::from_secs(120), async {
                    while shared.plan.lock().unwrap().s3 == S3Mode::Stall {
                        if changed.changed().await.is_err() {
                            break;
                        }
                    }
                })
                .await;
                drop(client);
                return Ok(());
            }
        }
        if roll(&shared, plan.s3_503_permille) {
            stats.s3_503.fetch_add(1, Ordering::Relaxed);
            client
                .write_all(&error_response(503, "Slow Down", false, "SlowDown"))
                .await?;
            return client.shutdown().await;
        }
        if roll(&shared, plan.s3_500_after_permille) {
            answer_after = Some(error_response(
                500,
                "Internal Server Error",
                false,
                "InternalError",
            ));
            stats.s3_500_after.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    if sqs && target.contains("DeleteMessage") {
        stats.sqs_deletes_forwarded.fetch_add(1, Ordering::Relaxed);
    }
    if !sqs && method == "PUT" {
        stats.s3_puts_forwarded.fetch_add(1, Ordering::Relaxed);
    }
    let mut upstream = TcpStream::connect(shared.upstream).await?;
    upstream.write_all(&head.closing()).await?;
    upstream.write_all(&body).await?;
    let mut rbuffer = Vec::new();
    let response = tokio::time::timeout(Duration::from_secs(90), async {
        let Some(rhead) = read_head(&mut upstream, &mut rbuffer).await? else {
            return Err(std::io::Error::other("upstream closed"));
        };
        let rbody = read_body(
            &mut upstream,
            &mut rbuffer,
            response_framing(&rhead, &method),
        )
        .await?;
        Ok::<_, std::io::Error>((rhead, rbody))
    })
    .await
    .map_err(|_| std::io::Error::other("upstream timed out"))??;
    if let Some(answer) = answer_after {
        client.write_all(&answer).await?;
        return client.shutdown().await;
    }
    let (rhead, rbody) = response;
    client.write_all(&rhead.closing()).await?;
    client.write_all(&rbody).await?;
    client.shutdown().await
}
