//! SQS in memory, in the AWS JSON 1.0 protocol the AWS SDKs use (`POST /`,
//! `X-Amz-Target: AmazonSQS.<Action>`, `application/x-amz-json-1.0`).
//!
//! Modelled on the *Amazon Simple Queue Service API Reference* (API version
//! 2012-11-05: CreateQueue, GetQueueUrl, ListQueues, GetQueueAttributes,
//! SendMessage, SendMessageBatch, ReceiveMessage, DeleteMessage,
//! DeleteMessageBatch, ChangeMessageVisibility, ChangeMessageVisibilityBatch,
//! and "Common Errors") and the *Amazon SQS Developer Guide* ("Visibility
//! timeout", "Amazon SQS short and long polling", "FIFO queue delivery logic",
//! "Exactly-once processing in Amazon SQS"):
//!
//! - a receive hides each message for the request's `VisibilityTimeout` (else
//!   the queue's, 30 s by default) and hands out a new receipt handle; only
//!   the latest handle deletes the message — an older one "succeeds, but the
//!   message will not be deleted" — and changing the visibility of a message
//!   that is not in flight fails with `MessageNotInflight`;
//! - FIFO queues deliver each message group in order, and return nothing more
//!   of a group while any of its messages is in flight; a receive takes as
//!   many messages of one group as it can before the next group; sends with a
//!   `MessageDeduplicationId` (or the body's SHA-256 under
//!   `ContentBasedDeduplication`) seen in the last 5 minutes are accepted and
//!   not enqueued again;
//! - a long poll (`WaitTimeSeconds` > 0) returns as soon as a message is
//!   available, or empty at the end of the wait; a short poll answers at once
//!   (from every message: there is only one "server" to sample here).
//!
//! Not modelled: delays, message attributes, dead-letter queues, retention,
//! the in-flight limit, permissions.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use md5::{Digest as _, Md5};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest as _;
use sha2::Sha256;
use tokio::sync::Notify;

/// The account id in queue URLs and ARNs.
const ACCOUNT: &str = "000000000000";
/// SQS's default queue visibility timeout.
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// The deduplication interval of FIFO queues.
const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(300);
/// A batch call takes at most ten entries.
const MAX_BATCH: usize = 10;

/// Every queue, behind one lock (each call holds it for a few µs).
pub struct Sqs {
    base_url: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queues: Vec<Queue>,
    by_name: HashMap<String, usize>,
    /// Message ids and FIFO sequence numbers, unique across queues.
    next_sequence: u64,
}

struct Queue {
    name: String,
    url: String,
    fifo: bool,
    content_based_deduplication: bool,
    visibility: Duration,
    created_s: u64,
    messages: HashMap<u64, Message>,
    /// Standard queues: every message, oldest first.
    order: BTreeSet<u64>,
    /// FIFO queues: every message of each group, oldest first.
    groups: BTreeMap<String, VecDeque<u64>>,
    /// FIFO queues: deduplication id → when it was first sent.
    deduplication: HashMap<String, (Instant, String)>,
    /// Woken by whatever can make a message available to a long poll.
    available: Arc<Notify>,
}

struct Message {
    id: String,
    body: String,
    md5_of_body: String,
    sent_ms: u64,
    first_receive_ms: Option<u64>,
    receive_count: u32,
    /// When a received message becomes visible again.
    visible_at: Instant,
    group: Option<String>,
    deduplication_id: Option<String>,
    sequence: u64,
}

impl Message {
    fn in_flight(&self, now: Instant) -> bool {
        self.receive_count > 0 && self.visible_at > now
    }
}

/// What a call can fail with, as SQS names it.
#[derive(Debug, thiserror::Error)]
enum SqsError {
    #[error("The specified queue does not exist.")]
    QueueDoesNotExist,
    #[error("The input receipt handle \"{0}\" is not a valid receipt handle.")]
    ReceiptHandleIsInvalid(String),
    #[error("Message does not exist or is not available for visibility timeout change.")]
    MessageNotInflight,
    #[error("There should be at least one SendMessageBatchRequestEntry in the request.")]
    EmptyBatchRequest,
    #[error("Maximum number of entries per request are 10. You have sent {0}.")]
    TooManyEntriesInBatchRequest(usize),
    #[error("Id {0} repeated.")]
    BatchEntryIdsNotDistinct(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    UnsupportedOperation(String),
}

impl SqsError {
    /// The JSON `__type` and the query-compatible code (`x-amzn-query-error`),
    /// which the SDK reports as the error's code.
    fn codes(&self) -> (&'static str, &'static str) {
        match self {
            Self::QueueDoesNotExist => (
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
            ),
            Self::ReceiptHandleIsInvalid(_) => ("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
            Self::MessageNotInflight => (
                "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight",
            ),
            Self::EmptyBatchRequest => (
                "EmptyBatchRequest",
                "AWS.SimpleQueueService.EmptyBatchRequest",
            ),
            Self::TooManyEntriesInBatchRequest(_) => (
                "TooManyEntriesInBatchRequest",
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            ),
            Self::BatchEntryIdsNotDistinct(_) => (
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            ),
            Self::InvalidParameterValue(_) => ("InvalidParameterValue", "InvalidParameterValue"),
            Self::MissingParameter(_) => ("MissingParameter", "MissingParameter"),
            Self::UnsupportedOperation(_) => (
                "UnsupportedOperation",
                "AWS.SimpleQueueService.UnsupportedOperation",
            ),
        }
    }

    /// The entry of a batch response's `Failed` list.
    fn entry(&self, id: &str) -> Value {
        json!({"Id": id, "Code": self.codes().0, "Message": self.to_string(), "SenderFault": true})
    }
}

/// A 400 in the JSON protocol's error shape.
fn error_response(error: &SqsError) -> Response<Full<Bytes>> {
    let (kind, query_code) = error.codes();
    let body = json!({"__type": format!("com.amazonaws.sqs#{kind}"), "message": error.to_string()});
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-query-error", format!("{query_code};Sender"))
        .body(Full::from(body.to_string()))
        .expect("static headers")
}

/// A request that is not JSON or not the action's shape.
pub fn bad_request(detail: &str) -> Response<Full<Bytes>> {
    error_response(&SqsError::InvalidParameterValue(detail.to_string()))
}

fn ok_response(body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::from(body.to_string()))
        .expect("static headers")
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Lower-case hex of an MD5 digest (message bodies, S3 ETags).
pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The queue name of a queue URL (its last path segment).
fn name_of_url(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Receipt handles say which receive of which message they came from:
/// `{queue index}.{sequence}.{receive count}`.
fn receipt_handle(queue: usize, message: &Message) -> String {
    format!("{queue}.{}.{}", message.sequence, message.receive_count)
}

fn parse_receipt_handle(handle: &str) -> Option<(usize, u64, u32)> {
    let mut parts = handle.split('.');
    let parsed = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    parts.next().is_none().then_some(parsed)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Request {
    queue_name: Option<String>,
    queue_url: Option<String>,
    queue_name_prefix: Option<String>,
    attributes: HashMap<String, String>,
    attribute_names: Vec<String>,
    message_system_attribute_names: Vec<String>,
    max_number_of_messages: Option<i64>,
    wait_time_seconds: Option<i64>,
    visibility_timeout: Option<i64>,
    receipt_handle: Option<String>,
    message_body: Option<String>,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
    delay_seconds: Option<i64>,
    entries: Vec<Entry>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Entry {
    id: String,
    receipt_handle: Option<String>,
    visibility_timeout: Option<i64>,
    message_body: Option<String>,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
    delay_seconds: Option<i64>,
}

/// One message to send.
struct Send<'a> {
    body: Option<&'a str>,
    group: Option<&'a str>,
    deduplication_id: Option<&'a str>,
    delay_seconds: Option<i64>,
}

impl Sqs {
    /// An endpoint with no queue, whose queue URLs start with `base_url`.
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_string(),
            state: Mutex::new(State::default()),
        }
    }

    /// One call: `action` from `X-Amz-Target`, `body` its JSON.
    pub async fn handle(&self, action: &str, body: &[u8]) -> Response<Full<Bytes>> {
        let request: Request =
            match serde_json::from_slice(if body.is_empty() { b"{}" } else { body }) {
                Ok(request) => request,
                Err(error) => return bad_request(&format!("invalid request: {error}")),
            };
        let result = match action {
            "ReceiveMessage" => self.receive(&request).await,
            "DeleteMessageBatch" => self.batch(&request, |state, q, entry| {
                state.delete(q, entry.receipt_handle.as_deref())
            }),
            "ChangeMessageVisibilityBatch" => self.batch(&request, |state, q, entry| {
                state.change_visibility(
                    q,
                    entry.receipt_handle.as_deref(),
                    entry.visibility_timeout,
                )
            }),
            "DeleteMessage" => self.with_queue(&request, |state, q| {
                state.delete(q, request.receipt_handle.as_deref())
            }),
            "ChangeMessageVisibility" => self.with_queue(&request, |state, q| {
                state.change_visibility(
                    q,
                    request.receipt_handle.as_deref(),
                    request.visibility_timeout,
                )
            }),
            "GetQueueAttributes" => self.with_queue(&request, |state, q| {
                Ok(json!({"Attributes": state.attributes(q, &request.attribute_names)}))
            }),
            "SendMessage" => self.with_queue(&request, |state, q| {
                state.send(
                    q,
                    &Send {
                        body: request.message_body.as_deref(),
                        group: request.message_group_id.as_deref(),
                        deduplication_id: request.message_deduplication_id.as_deref(),
                        delay_seconds: request.delay_seconds,
                    },
                )
            }),
            "SendMessageBatch" => self.batch(&request, |state, q, entry| {
                state
                    .send(
                        q,
                        &Send {
                            body: entry.message_body.as_deref(),
                            group: entry.message_group_id.as_deref(),
                            deduplication_id: entry.message_deduplication_id.as_deref(),
                            delay_seconds: entry.delay_seconds,
                        },
                    )
                    .map(|mut sent| {
                        sent["Id"] = json!(entry.id);
                        sent
                    })
            }),
            "GetQueueUrl" => {
                let state = self.state.lock().expect("state");
                match request
                    .queue_name
                    .as_deref()
                    .and_then(|name| state.by_name.get(name))
                {
                    Some(&q) => Ok(json!({"QueueUrl": state.queues[q].url})),
                    None => Err(SqsError::QueueDoesNotExist),
                }
            }
            "ListQueues" => {
                let state = self.state.lock().expect("state");
                let prefix = request.queue_name_prefix.as_deref().unwrap_or("");
                let mut urls: Vec<&str> = state
                    .queues
                    .iter()
                    .filter(|q| q.name.starts_with(prefix))
                    .map(|q| q.url.as_str())
                    .collect();
                urls.sort_unstable();
                Ok(json!({ "QueueUrls": urls }))
            }
            "CreateQueue" => self.create_queue(&request),
            other => Err(SqsError::UnsupportedOperation(format!(
                "{other} is not served by the bench endpoint"
            ))),
        };
        match result {
            Ok(body) => ok_response(&body),
            Err(error) => error_response(&error),
        }
    }

    fn create_queue(&self, request: &Request) -> Result<Value, SqsError> {
        let name = request
            .queue_name
            .as_deref()
            .ok_or_else(|| SqsError::MissingParameter("QueueName is required".into()))?;
        let fifo = request.attributes.get("FifoQueue").map(String::as_str) == Some("true");
        if fifo != name.ends_with(".fifo") {
            return Err(SqsError::InvalidParameterValue(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix".into(),
            ));
        }
        let visibility = match request.attributes.get("VisibilityTimeout") {
            Some(seconds) => Duration::from_secs(seconds.parse().map_err(|_| {
                SqsError::InvalidParameterValue("VisibilityTimeout must be a number".into())
            })?),
            None => DEFAULT_VISIBILITY,
        };
        let mut state = self.state.lock().expect("state");
        if let Some(&q) = state.by_name.get(name) {
            return Ok(json!({"QueueUrl": state.queues[q].url}));
        }
        let url = format!("{}/{ACCOUNT}/{name}", self.base_url);
        let index = state.queues.len();
        state.by_name.insert(name.to_string(), index);
        state.queues.push(Queue {
            name: name.to_string(),
            url: url.clone(),
            fifo,
            content_based_deduplication: request
                .attributes
                .get("ContentBasedDeduplication")
                .map(String::as_str)
                == Some("true"),
            visibility,
            created_s: epoch_ms() / 1000,
            messages: HashMap::new(),
            order: BTreeSet::new(),
            groups: BTreeMap::new(),
            deduplication: HashMap::new(),
            available: Arc::new(Notify::new()),
        });
        Ok(json!({ "QueueUrl": url }))
    }

    /// Runs `call` on the request's queue, under the lock.
    fn with_queue(
        &self,
        request: &Request,
        call: impl FnOnce(&mut State, usize) -> Result<Value, SqsError>,
    ) -> Result<Value, SqsError> {
        let mut state = self.state.lock().expect("state");
        let q = state.queue_index(request.queue_url.as_deref())?;
        call(&mut state, q)
    }

    /// A batch call: the checks of the whole request, then each entry on its
    /// own (`Successful` / `Failed`).
    fn batch(
        &self,
        request: &Request,
        mut call: impl FnMut(&mut State, usize, &Entry) -> Result<Value, SqsError>,
    ) -> Result<Value, SqsError> {
        if request.entries.is_empty() {
            return Err(SqsError::EmptyBatchRequest);
        }
        if request.entries.len() > MAX_BATCH {
            return Err(SqsError::TooManyEntriesInBatchRequest(
                request.entries.len(),
            ));
        }
        for (i, entry) in request.entries.iter().enumerate() {
            if request.entries[..i].iter().any(|e| e.id == entry.id) {
                return Err(SqsError::BatchEntryIdsNotDistinct(entry.id.clone()));
            }
        }
        let mut state = self.state.lock().expect("state");
        let q = state.queue_index(request.queue_url.as_deref())?;
        let (mut successful, mut failed) = (Vec::new(), Vec::new());
        for entry in &request.entries {
            match call(&mut state, q, entry) {
                Ok(Value::Object(fields)) if !fields.is_empty() => {
                    successful.push(Value::Object(fields))
                }
                Ok(_) => successful.push(json!({"Id": entry.id})),
                Err(error) => failed.push(error.entry(&entry.id)),
            }
        }
        Ok(json!({"Successful": successful, "Failed": failed}))
    }

    async fn receive(&self, request: &Request) -> Result<Value, SqsError> {
        let max = request.max_number_of_messages.unwrap_or(1);
        if !(1..=10).contains(&max) {
            return Err(SqsError::InvalidParameterValue(format!(
                "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
            )));
        }
        let wait = request.wait_time_seconds.unwrap_or(0);
        if !(0..=20).contains(&wait) {
            return Err(SqsError::InvalidParameterValue(format!(
                "Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
            )));
        }
        let visibility = match request.visibility_timeout {
            Some(seconds @ 0..=43_200) => Some(Duration::from_secs(seconds as u64)),
            Some(other) => {
                return Err(SqsError::InvalidParameterValue(format!(
                    "Value {other} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
                )))
            }
            None => None,
        };
        let mut wanted: Vec<&str> = request
            .message_system_attribute_names
            .iter()
            .chain(&request.attribute_names)
            .map(String::as_str)
            .collect();
        if wanted.contains(&"All") {
            wanted.clear();
            wanted.push("All");
        }
        let deadline = Instant::now() + Duration::from_secs(wait as u64);
        loop {
            let (available, received, next_change) = {
                let mut state = self.state.lock().expect("state");
                let q = state.queue_index(request.queue_url.as_deref())?;
                let available = state.queues[q].available.clone();
                // Registered under the lock: a send after it wakes this poll.
                let notified = available.notified_owned();
                let (messages, next_change) =
                    state.take(q, max as usize, visibility, Instant::now());
                let received: Vec<Value> = messages
                    .into_iter()
                    .map(|seq| state.received_json(q, seq, &wanted))
                    .collect();
                (notified, received, next_change)
            };
            let now = Instant::now();
            if !received.is_empty() || now >= deadline {
                return Ok(json!({ "Messages": received }));
            }
            let wake = next_change.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                _ = available => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}

impl State {
    fn queue_index(&self, url: Option<&str>) -> Result<usize, SqsError> {
        let url = url.ok_or_else(|| SqsError::MissingParameter("QueueUrl is required".into()))?;
        self.by_name
            .get(name_of_url(url))
            .copied()
            .ok_or(SqsError::QueueDoesNotExist)
    }

    fn send(&mut self, q: usize, send: &Send<'_>) -> Result<Value, SqsError> {
        let body = send
            .body
            .filter(|b| !b.is_empty())
            .ok_or_else(|| SqsError::MissingParameter("MessageBody is required".into()))?;
        let now = Instant::now();
        let queue = &mut self.queues[q];
        let delay = Duration::from_secs(send.delay_seconds.unwrap_or(0).clamp(0, 900) as u64);
        let (group, deduplication_id) = if queue.fifo {
            if send.delay_seconds.unwrap_or(0) != 0 {
                return Err(SqsError::InvalidParameterValue(
                    "Value for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.".into(),
                ));
            }
            let group = send.group.ok_or_else(|| {
                SqsError::MissingParameter(
                    "The request must contain the parameter MessageGroupId.".into(),
                )
            })?;
            let deduplication_id = match (send.deduplication_id, queue.content_based_deduplication)
            {
                (Some(id), _) => id.to_string(),
                (None, true) => format!("{:x}", Sha256::digest(body.as_bytes())),
                (None, false) => return Err(SqsError::InvalidParameterValue(
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
                )),
            };
            queue
                .deduplication
                .retain(|_, (at, _)| now.duration_since(*at) < DEDUPLICATION_WINDOW);
            if let Some((_, message_id)) = queue.deduplication.get(&deduplication_id) {
                // Accepted, not enqueued again.
                return Ok(json!({
                    "MessageId": message_id,
                    "MD5OfMessageBody": md5_hex(body.as_bytes()),
                }));
            }
            (Some(group.to_string()), Some(deduplication_id))
        } else {
            (None, None)
        };
        self.next_sequence += 1;
        let sequence = self.next_sequence;
        let id = format!("00000000-0000-4000-8000-{sequence:012x}");
        let md5_of_body = md5_hex(body.as_bytes());
        let mut reply = json!({"MessageId": id, "MD5OfMessageBody": md5_of_body});
        match &group {
            Some(group) => {
                reply["SequenceNumber"] = json!(format!("{sequence:020}"));
                let deduplication_id = deduplication_id.clone().expect("set with the group");
                queue
                    .deduplication
                    .insert(deduplication_id, (now, id.clone()));
                queue
                    .groups
                    .entry(group.clone())
                    .or_default()
                    .push_back(sequence);
            }
            None => {
                queue.order.insert(sequence);
            }
        }
        queue.messages.insert(
            sequence,
            Message {
                id,
                body: body.to_string(),
                md5_of_body,
                sent_ms: epoch_ms(),
                first_receive_ms: None,
                receive_count: 0,
                visible_at: now + delay,
                group,
                deduplication_id,
                sequence,
            },
        );
        queue.available.notify_waiters();
        Ok(reply)
    }

    /// Receives up to `max` messages: marks them in flight and returns their
    /// sequences, and the earliest time something hidden becomes visible.
    fn take(
        &mut self,
        q: usize,
        max: usize,
        visibility: Option<Duration>,
        now: Instant,
    ) -> (Vec<u64>, Option<Instant>) {
        let queue = &mut self.queues[q];
        let mut taken = Vec::new();
        let mut next_change: Option<Instant> = None;
        let mut note = |at: Instant| {
            next_change = Some(next_change.map_or(at, |n: Instant| n.min(at)));
        };
        if queue.fifo {
            // Groups with nothing in flight, oldest first message first.
            let mut ready: Vec<(u64, &VecDeque<u64>)> = Vec::new();
            for sequences in queue.groups.values() {
                let mut blocked = false;
                for seq in sequences {
                    let message = &queue.messages[seq];
                    if message.in_flight(now) {
                        note(message.visible_at);
                        blocked = true;
                    }
                    if message.receive_count == 0 {
                        // Messages after the first never-received one have
                        // never been received either: none is in flight.
                        break;
                    }
                }
                let first = &queue.messages[&sequences[0]];
                if !blocked {
                    if first.visible_at <= now {
                        ready.push((first.sequence, sequences));
                    } else {
                        note(first.visible_at);
                    }
                }
            }
            ready.sort_unstable_by_key(|(first, _)| *first);
            'groups: for (_, sequences) in ready {
                for seq in sequences {
                    if taken.len() == max {
                        break 'groups;
                    }
                    taken.push(*seq);
                }
            }
        } else {
            for seq in &queue.order {
                if taken.len() == max {
                    break;
                }
                let message = &queue.messages[seq];
                if message.visible_at <= now {
                    taken.push(*seq);
                } else {
                    note(message.visible_at);
                }
            }
        }
        let hidden_until = now + visibility.unwrap_or(queue.visibility);
        let now_ms = epoch_ms();
        for seq in &taken {
            let message = queue.messages.get_mut(seq).expect("taken from the queue");
            message.receive_count += 1;
            message.first_receive_ms.get_or_insert(now_ms);
            message.visible_at = hidden_until;
        }
        (taken, next_change)
    }

    fn received_json(&self, q: usize, seq: u64, wanted: &[&str]) -> Value {
        let message = &self.queues[q].messages[&seq];
        let all = wanted.contains(&"All");
        let mut attributes = serde_json::Map::new();
        let mut put = |name: &str, value: String| {
            if all || wanted.contains(&name) {
                attributes.insert(name.to_string(), Value::String(value));
            }
        };
        put("SenderId", "AIDAIT2UOQQY3AUEKVGXU".to_string());
        put("SentTimestamp", message.sent_ms.to_string());
        put("ApproximateReceiveCount", message.receive_count.to_string());
        put(
            "ApproximateFirstReceiveTimestamp",
            message.first_receive_ms.unwrap_or(0).to_string(),
        );
        if let Some(group) = &message.group {
            put("MessageGroupId", group.clone());
            put("SequenceNumber", format!("{:020}", message.sequence));
        }
        if let Some(id) = &message.deduplication_id {
            put("MessageDeduplicationId", id.clone());
        }
        let mut value = json!({
            "MessageId": message.id,
            "ReceiptHandle": receipt_handle(q, message),
            "MD5OfBody": message.md5_of_body,
            "Body": message.body,
        });
        if !attributes.is_empty() {
            value["Attributes"] = Value::Object(attributes);
        }
        value
    }

    /// The message a receipt handle names, if that handle is its latest:
    /// `Ok(None)` for a handle of a deleted message or of an earlier receive.
    fn current(
        &mut self,
        q: usize,
        handle: Option<&str>,
    ) -> Result<Option<&mut Message>, SqsError> {
        let handle =
            handle.ok_or_else(|| SqsError::MissingParameter("ReceiptHandle is required".into()))?;
        let (queue, seq, count) = parse_receipt_handle(handle)
            .filter(|(queue, _, count)| *queue == q && *count > 0)
            .ok_or_else(|| SqsError::ReceiptHandleIsInvalid(handle.to_string()))?;
        let _ = queue;
        Ok(self.queues[q]
            .messages
            .get_mut(&seq)
            .filter(|m| m.receive_count == count))
    }

    fn delete(&mut self, q: usize, handle: Option<&str>) -> Result<Value, SqsError> {
        let Some(message) = self.current(q, handle)? else {
            // "the request succeeds, but the message will not be deleted"
            return Ok(json!({}));
        };
        let (seq, group) = (message.sequence, message.group.clone());
        let queue = &mut self.queues[q];
        queue.messages.remove(&seq);
        match group {
            Some(group) => {
                let sequences = queue.groups.get_mut(&group).expect("message's group");
                if let Some(at) = sequences.iter().position(|s| *s == seq) {
                    sequences.remove(at);
                }
                if sequences.is_empty() {
                    queue.groups.remove(&group);
                }
                // The group may be unblocked.
                queue.available.notify_waiters();
            }
            None => {
                queue.order.remove(&seq);
            }
        }
        Ok(json!({}))
    }

    fn change_visibility(
        &mut self,
        q: usize,
        handle: Option<&str>,
        seconds: Option<i64>,
    ) -> Result<Value, SqsError> {
        let seconds = match seconds {
            Some(s @ 0..=43_200) => s as u64,
            Some(other) => {
                return Err(SqsError::InvalidParameterValue(format!(
                    "Value {other} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
                )))
            }
            None => {
                return Err(SqsError::MissingParameter(
                    "VisibilityTimeout is required".into(),
                ))
            }
        };
        let now = Instant::now();
        let message = self
            .current(q, handle)?
            .filter(|m| m.in_flight(now))
            .ok_or(SqsError::MessageNotInflight)?;
        // Counted from now, not from the receive.
        message.visible_at = now + Duration::from_secs(seconds);
        self.queues[q].available.notify_waiters();
        Ok(json!({}))
    }

    fn attributes(&self, q: usize, names: &[String]) -> Value {
        let queue = &self.queues[q];
        let now = Instant::now();
        let all = names.iter().any(|n| n == "All");
        let (mut visible, mut in_flight, mut delayed) = (0u64, 0u64, 0u64);
        for message in queue.messages.values() {
            if message.in_flight(now) {
                in_flight += 1;
            } else if message.visible_at > now {
                delayed += 1;
            } else {
                visible += 1;
            }
        }
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, value: String| {
            if all || names.iter().any(|n| n == name) {
                out.insert(name.to_string(), Value::String(value));
            }
        };
        put("ApproximateNumberOfMessages", visible.to_string());
        put(
            "ApproximateNumberOfMessagesNotVisible",
            in_flight.to_string(),
        );
        put("ApproximateNumberOfMessagesDelayed", delayed.to_string());
        put(
            "QueueArn",
            format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{}", queue.name),
        );
        put("VisibilityTimeout", queue.visibility.as_secs().to_string());
        put("CreatedTimestamp", queue.created_s.to_string());
        put("ReceiveMessageWaitTimeSeconds", "0".to_string());
        if queue.fifo {
            put("FifoQueue", "true".to_string());
            put(
                "ContentBasedDeduplication",
                queue.content_based_deduplication.to_string(),
            );
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(sqs: &Sqs, name: &str) -> usize {
        let fifo = name.ends_with(".fifo");
        let attributes = if fifo {
            HashMap::from([("FifoQueue".to_string(), "true".to_string())])
        } else {
            HashMap::new()
        };
        sqs.create_queue(&Request {
            queue_name: Some(name.into()),
            attributes,
            ..Request::default()
        })
        .unwrap();
        sqs.state.lock().unwrap().by_name[name]
    }

    fn send(state: &mut State, q: usize, body: &str, group: Option<&str>) {
        state
            .send(
                q,
                &Send {
                    body: Some(body),
                    group,
                    deduplication_id: Some(body),
                    delay_seconds: None,
                },
            )
            .unwrap();
    }

    #[test]
    fn a_fifo_group_waits_for_its_in_flight_messages() {
        let sqs = Sqs::new("http://127.0.0.1:1");
        let q = queue(&sqs, "t-q.fifo");
        let mut state = sqs.state.lock().unwrap();
        for body in ["a1", "a2", "a3"] {
            send(&mut state, q, body, Some("a"));
        }
        send(&mut state, q, "b1", Some("b"));
        let now = Instant::now();
        let visibility = Some(Duration::from_secs(30));
        let (first, _) = state.take(q, 2, visibility, now);
        assert_eq!(first.len(), 2, "two of group a, in order");
        assert_eq!(state.queues[q].messages[&first[0]].body, "a1");
        assert_eq!(state.queues[q].messages[&first[1]].body, "a2");
        let (second, next) = state.take(q, 10, visibility, now);
        assert_eq!(second.len(), 1, "a is blocked; only b");
        assert_eq!(state.queues[q].messages[&second[0]].body, "b1");
        assert!(next.is_some());
        // Deleting a1 leaves a2 in flight: a stays blocked.
        let handle = receipt_handle(q, &state.queues[q].messages[&first[0]]);
        state.delete(q, Some(&handle)).unwrap();
        assert!(state.take(q, 10, visibility, now).0.is_empty());
        // a2's visibility ends: a2 comes back before a3.
        let later = now + Duration::from_secs(31);
        let (third, _) = state.take(q, 10, visibility, later);
        let bodies: Vec<&str> = third
            .iter()
            .map(|s| state.queues[q].messages[s].body.as_str())
            .collect();
        assert_eq!(
            bodies,
            ["a2", "a3", "b1"],
            "a first (older), in order, then b"
        );
    }

    #[test]
    fn only_the_latest_receipt_handle_deletes() {
        let sqs = Sqs::new("http://127.0.0.1:1");
        let q = queue(&sqs, "t-q");
        let mut state = sqs.state.lock().unwrap();
        send(&mut state, q, "m", None);
        let now = Instant::now();
        let (taken, _) = state.take(q, 1, Some(Duration::from_secs(1)), now);
        let old = receipt_handle(q, &state.queues[q].messages[&taken[0]]);
        let later = now + Duration::from_secs(2);
        let (again, _) = state.take(q, 1, Some(Duration::from_secs(1)), later);
        assert_eq!(again, taken, "visible again after its timeout");
        state.delete(q, Some(&old)).unwrap();
        assert_eq!(
            state.queues[q].messages.len(),
            1,
            "stale handle: not deleted"
        );
        let current = receipt_handle(q, &state.queues[q].messages[&taken[0]]);
        state.delete(q, Some(&current)).unwrap();
        assert!(state.queues[q].messages.is_empty());
        assert!(matches!(
            state.delete(q, Some("garbage")),
            Err(SqsError::ReceiptHandleIsInvalid(_))
        ));
    }
}
