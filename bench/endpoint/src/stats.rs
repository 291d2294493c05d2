//! What the endpoint has seen, for the bench to read (`GET /_bench/stats`):
//! requests by operation, and the time from send to stored of every archived
//! object. Counting here, not in the client, counts what a bill would: every
//! request that reached the service, retries included.

use std::collections::BTreeMap;
use std::sync::Mutex;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde_json::json;

/// The stats' path; no S3 bucket can be named `_bench`.
pub const PATH: &str = "/_bench/stats";

/// The metadata header carrying SQS's `SentTimestamp` (epoch ms).
const SENT_MS_HEADER: &str = "x-amz-meta-sqs-sent-ms";

#[derive(Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<String, u64>,
    /// Send → stored, ms, one per successful archive PUT, in PUT order.
    stored_ms: Vec<i64>,
}

impl Stats {
    pub fn count(&self, operation: &str) {
        let mut inner = self.inner.lock().expect("stats");
        *inner.requests.entry(operation.to_string()).or_default() += 1;
    }

    pub fn stored(&self, sent_ms: i64) {
        let latency = chrono::Utc::now().timestamp_millis() - sent_ms;
        self.inner.lock().expect("stats").stored_ms.push(latency);
    }

    pub fn response(&self) -> Response<Full<Bytes>> {
        let inner = self.inner.lock().expect("stats");
        let body = json!({"requests": inner.requests, "stored_ms": inner.stored_ms});
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a static response")
    }
}

/// The S3 operation of a path-style request, as the S3 API Reference names it.
pub fn s3_operation(request: &Request<Incoming>) -> &'static str {
    let path = request.uri().path().trim_start_matches('/');
    let object = path.split_once('/').is_some_and(|(_, key)| !key.is_empty());
    match (request.method(), object) {
        (&Method::PUT, true) => "PutObject",
        (&Method::HEAD, true) => "HeadObject",
        (&Method::GET, true) => "GetObject",
        (&Method::PUT, false) => "CreateBucket",
        (&Method::HEAD, false) => "HeadBucket",
        (&Method::GET, false) => "ListObjectsV2",
        _ => "other",
    }
}

/// The message's send time the host wrote into the object's metadata.
pub fn sent_ms(request: &Request<Incoming>) -> Option<i64> {
    request
        .headers()
        .get(SENT_MS_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
