//! The AWS Lambda Runtime API, served on 127.0.0.1 for the real `bootstrap`.
//!
//! Follows the AWS Lambda Developer Guide, "Using the Lambda runtime API for
//! custom runtimes" (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html),
//! API version 2018-06-01:
//! - `GET /2018-06-01/runtime/invocation/next` blocks until an event is
//!   queued, then answers 200 with the event as the body and the headers
//!   `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` (epoch ms),
//!   `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and
//!   `POST /2018-06-01/runtime/invocation/{id}/error` answer 202 (400 for an
//!   unknown id);
//! - `POST /2018-06-01/runtime/init/error` answers 202; Lambda would then stop
//!   the environment: here the test checks the process exits.
//!
//! Every call is recorded with the time it arrived, so tests can check what
//! the function said and when (e.g. before the deadline).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What the function answered for one invocation.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `…/response`: the body, and when it arrived (epoch ms).
    Response {
        /// The JSON body.
        body: serde_json::Value,
        /// Arrival, epoch ms.
        at_ms: u64,
    },
    /// `…/error`: the body and the `Lambda-Runtime-Function-Error-Type` header.
    Error {
        /// The JSON body.
        body: serde_json::Value,
        /// The error type header, if sent.
        error_type: Option<String>,
    },
}

impl Outcome {
    /// The `batchItemFailures` ids of a response (panics on an error).
    pub fn failures(&self) -> Vec<String> {
        match self {
            Outcome::Response { body, .. } => body["batchItemFailures"]
                .as_array()
                .unwrap_or_else(|| panic!("no batchItemFailures array in {body}"))
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
                .collect(),
            Outcome::Error { body, error_type } => {
                panic!("the invocation failed ({error_type:?}): {body}")
            }
        }
    }

    /// When the response arrived (panics on an error).
    pub fn at_ms(&self) -> u64 {
        match self {
            Outcome::Response { at_ms, .. } => *at_ms,
            Outcome::Error { body, .. } => panic!("the invocation failed: {body}"),
        }
    }
}

/// An `init/error` the function posted.
#[derive(Debug, Clone)]
pub struct InitError {
    /// The JSON body (`errorMessage`, `errorType`).
    pub body: serde_json::Value,
    /// The `Lambda-Runtime-Function-Error-Type` header.
    pub error_type: Option<String>,
}

#[derive(Default)]
struct State {
    queued: VecDeque<(String, String, u64)>,
    handed_out: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, Outcome>,
    init_errors: Vec<InitError>,
    next_requests: Vec<u64>,
    counter: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

/// A running Runtime API; stops when dropped.
pub struct RuntimeApi {
    shared: Arc<Shared>,
    /// `127.0.0.1:PORT`: the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Now, epoch ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl RuntimeApi {
    /// Listens on a free loopback port.
    pub async fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        RuntimeApi {
            shared,
            address,
            task,
        }
    }

    /// Queues an event whose deadline is `deadline_in` from now; returns its
    /// request id.
    pub fn submit(&self, event: &serde_json::Value, deadline_in: Duration) -> String {
        let mut state = self.shared.state.lock().unwrap();
        state.counter += 1;
        let id = format!("{:08x}-0000-4000-8000-{:012x}", state.counter, now_ms());
        let deadline = now_ms() + deadline_in.as_millis() as u64;
        state
            .queued
            .push_back((id.clone(), event.to_string(), deadline));
        drop(state);
        self.shared.changed.notify_waiters();
        id
    }

    /// Waits up to `limit` for the answer to `id`.
    pub async fn outcome(&self, id: &str, limit: Duration) -> Option<Outcome> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.shared.changed.notified();
            if let Some(outcome) = self.shared.state.lock().unwrap().outcomes.get(id) {
                return Some(outcome.clone());
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Submits and waits (at most 60 s) for the answer.
    pub async fn invoke(&self, event: &serde_json::Value, deadline_in: Duration) -> Outcome {
        let id = self.submit(event, deadline_in);
        self.outcome(&id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("no answer to invocation {id} within 60 s"))
    }

    /// Whether the function has taken `id` (its `next` returned it).
    pub fn handed_out(&self, id: &str) -> bool {
        self.shared
            .state
            .lock()
            .unwrap()
            .handed_out
            .contains_key(id)
    }

    /// The deadline (epoch ms) `id` was handed out with.
    pub fn deadline_of(&self, id: &str) -> u64 {
        self.shared.state.lock().unwrap().handed_out[id]
    }

    /// Every `init/error` received.
    pub fn init_errors(&self) -> Vec<InitError> {
        self.shared.state.lock().unwrap().init_errors.clone()
    }

    /// When each `GET …/invocation/next` arrived (epoch ms).
    pub fn next_requests(&self) -> Vec<u64> {
        self.shared.state.lock().unwrap().next_requests.clone()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = serve(stream, shared).await;
        });
    }
}

/// One keep-alive connection: requests in sequence, each answered with a
/// Content-Length body.
async fn serve(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let reply = answer(&shared, method, path, &headers, &body).await;
        write.write_all(reply.as_bytes()).await?;
    }
}

fn reply(status: &str, extra_headers: &[(&str, String)], body: &str) -> String {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

async fn answer(
    shared: &Shared,
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> String {
    const PREFIX: &str = "/2018-06-01/runtime/";
    let Some(route) = path.strip_prefix(PREFIX) else {
        return reply("404 Not Found", &[], r#"{"errorMessage":"unknown path"}"#);
    };
    let json = || serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let error_type = headers.get("lambda-runtime-function-error-type").cloned();
    match (method, route) {
        ("GET", "invocation/next") => {
            shared.state.lock().unwrap().next_requests.push(now_ms());
            let (id, event, deadline) = loop {
                let changed = shared.changed.notified();
                let popped = {
                    let mut state = shared.state.lock().unwrap();
                    let popped = state.queued.pop_front();
                    if let Some((id, _, deadline)) = &popped {
                        state.handed_out.insert(id.clone(), *deadline);
                    }
                    popped
                };
                match popped {
                    Some(invocation) => break invocation,
                    None => changed.await,
                }
            };
            reply(
                "200 OK",
                &[
                    ("Lambda-Runtime-Aws-Request-Id", id),
                    ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                    (
                        "Lambda-Runtime-Invoked-Function-Arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:audit-archiver".into(),
                    ),
                    (
                        "Lambda-Runtime-Trace-Id",
                        "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
                            .into(),
                    ),
                ],
                &event,
            )
        }
        ("POST", "init/error") => {
            shared.state.lock().unwrap().init_errors.push(InitError {
                body: json(),
                error_type,
            });
            shared.changed.notify_waiters();
            reply("202 Accepted", &[], r#"{"status":"OK"}"#)
        }
        ("POST", invocation) => {
            let Some(rest) = invocation.strip_prefix("invocation/") else {
                return reply("404 Not Found", &[], r#"{"errorMessage":"unknown path"}"#);
            };
            let Some((id, kind)) = rest.split_once('/') else {
                return reply("404 Not Found", &[], r#"{"errorMessage":"unknown path"}"#);
            };
            let mut state = shared.state.lock().unwrap();
            if !state.handed_out.contains_key(id) {
                return reply(
                    "400 Bad Request",
                    &[],
                    r#"{"errorMessage":"unknown request id"}"#,
                );
            }
            let outcome = match kind {
                "response" => Outcome::Response {
                    body: json(),
                    at_ms: now_ms(),
                },
                "error" => Outcome::Error {
                    body: json(),
                    error_type,
                },
                _ => return reply("404 Not Found", &[], r#"{"errorMessage":"unknown path"}"#),
            };
            state.outcomes.insert(id.to_string(), outcome);
            drop(state);
            shared.changed.notify_waiters();
            reply("202 Accepted", &[], r#"{"status":"OK"}"#)
        }
        _ => reply(
            "405 Method Not Allowed",
            &[],
            r#"{"errorMessage":"method"}"#,
        ),
    }
}
