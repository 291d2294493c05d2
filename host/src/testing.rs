//! One in-memory implementation of each port, for the unit tests of the
//! loop (`worker/tests.rs`) and of the delivery rules (`settle/tests.rs`).
//! They keep the rules of the real services that the decisions depend on;
//! the same decisions are tested end to end against moto in `host/tests`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::FailureKind;
use crate::settle::{MessageQueue, QueueFailure};
use crate::source::{Delivery, Depth, MessageSource, QueueRef, ReceiveError, ReceivedMessage};
use crate::store::{ArchiveObject, ArchiveStore, PutOutcome, StoreError};

/// A bucket honouring `If-None-Match: *`, with injectable faults.
#[derive(Default)]
pub struct MemoryStore {
    /// Key → (body, `sqs-message-id`).
    pub objects: Mutex<BTreeMap<String, (String, String)>>,
    /// The next this many PUTs fail with a 503.
    pub transient_failures: Mutex<u32>,
    /// PUTs under this prefix are refused (403).
    pub permanent_failure_prefix: Option<String>,
    /// How long each PUT takes.
    pub put_latency: Duration,
    /// PUTs tried.
    pub puts: Mutex<u32>,
}

impl MemoryStore {
    /// A bucket already holding `(key, body, message id)` objects.
    pub fn holding(objects: &[(&str, &str, &str)]) -> Self {
        let store = Self::default();
        store.objects.lock().unwrap().extend(
            objects
                .iter()
                .map(|(key, body, id)| (key.to_string(), (body.to_string(), id.to_string()))),
        );
        store
    }
}

impl ArchiveStore for MemoryStore {
    async fn put_if_absent(&self, object: &ArchiveObject<'_>) -> Result<PutOutcome, StoreError> {
        if !self.put_latency.is_zero() {
            tokio::time::sleep(self.put_latency).await;
        }
        *self.puts.lock().unwrap() += 1;
        {
            let mut failures = self.transient_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(StoreError {
                    kind: FailureKind::Transient,
                    detail: "HTTP 503 SlowDown".into(),
                });
            }
        }
        if let Some(prefix) = &self.permanent_failure_prefix {
            if object.key.starts_with(prefix.as_str()) {
                return Err(StoreError {
                    kind: FailureKind::Denied,
                    detail: "HTTP 403 AccessDenied".into(),
                });
            }
        }
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(&object.key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(
            object.key.clone(),
            (object.body.to_string(), object.message_id.to_string()),
        );
        Ok(PutOutcome::Created)
    }

    async fn stored_message_id(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(_, id)| id.clone()))
    }
}

/// Where a message of a [`MemoryQueue`] is.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Visible,
    InFlight { receipt: String, until: Instant },
    Deleted,
}

#[derive(Debug)]
pub struct Entry {
    id: String,
    group: Option<String>,
    state: State,
}

/// One in-memory queue that keeps SQS's rules that matter here: visibility
/// timeouts, FIFO groups locked while a message of theirs is in flight, long
/// polls that wait their whole time when nothing is available. Deletes can
/// be made to fail, transiently (the next `transient_delete_failures` calls)
/// or for good.
#[derive(Default)]
pub struct MemoryQueue {
    /// The messages, in the order sent (`with`, `push`).
    pub entries: Mutex<Vec<Entry>>,
    /// (virtual time, wait asked, messages returned) of every receive.
    pub receives: Mutex<Vec<(Instant, i32, usize)>>,
    /// Every receipt deleted, in order.
    pub deleted: Mutex<Vec<String>>,
    /// Every visibility change: (receipt, seconds).
    pub visibility: Mutex<Vec<(String, i32)>>,
    /// Delete calls made.
    pub delete_calls: Mutex<u32>,
    /// Every delete is refused (403).
    pub deletes_denied: bool,
    /// The next this many delete calls fail with a 500.
    pub transient_delete_failures: Mutex<u32>,
    /// The next this many receives fail with a 500.
    pub transient_receive_failures: Mutex<u32>,
    /// Numbers receipts.
    pub serial: Mutex<u64>,
}

impl MemoryQueue {
    /// A queue holding `n` messages, `m0`…, in `group` (FIFO) or none.
    pub fn with(n: usize, group: Option<&str>) -> Self {
        let queue = Self::default();
        queue.push(n, group);
        queue
    }

    /// Sends `n` more messages.
    pub fn push(&self, n: usize, group: Option<&str>) {
        let mut entries = self.entries.lock().unwrap();
        let base = entries.len();
        entries.extend((0..n).map(|i| Entry {
            id: format!("m{}", base + i),
            group: group.map(str::to_string),
            state: State::Visible,
        }));
    }

    /// Another consumer takes the first message for `secs`.
    pub fn hold_first(&self, secs: u64) {
        let mut entries = self.entries.lock().unwrap();
        entries[0].state = State::InFlight {
            receipt: "elsewhere".into(),
            until: Instant::now() + Duration::from_secs(secs),
        };
    }

    /// Messages deleted.
    pub fn deleted_count(&self) -> usize {
        let entries = self.entries.lock().unwrap();
        entries.iter().filter(|e| e.state == State::Deleted).count()
    }

    /// The receipts deleted so far, sorted.
    pub fn deleted_sorted(&self) -> Vec<String> {
        let mut deleted = self.deleted.lock().unwrap().clone();
        deleted.sort();
        deleted
    }

    /// The wait of every receive, in order.
    pub fn waits(&self) -> Vec<i32> {
        self.receives.lock().unwrap().iter().map(|r| r.1).collect()
    }

    fn expire(entries: &mut [Entry]) {
        for entry in entries.iter_mut() {
            if let State::InFlight { until, .. } = &entry.state {
                if *until <= Instant::now() {
                    entry.state = State::Visible;
                }
            }
        }
    }

    fn take(&self, max: usize, visibility_secs: i32) -> Vec<Delivery> {
        let mut entries = self.entries.lock().unwrap();
        MemoryQueue::expire(&mut entries);
        let locked: Vec<String> = entries
            .iter()
            .filter(|e| matches!(e.state, State::InFlight { .. }))
            .filter_map(|e| e.group.clone())
            .collect();
        let mut taken = Vec::new();
        let mut serial = self.serial.lock().unwrap();
        for entry in entries.iter_mut() {
            if taken.len() == max {
                break;
            }
            let group_locked = entry.group.as_ref().is_some_and(|g| locked.contains(g));
            if entry.state != State::Visible || group_locked {
                continue;
            }
            *serial += 1;
            let receipt = format!("{}#{serial}", entry.id);
            entry.state = State::InFlight {
                receipt: receipt.clone(),
                until: Instant::now() + Duration::from_secs(visibility_secs as u64),
            };
            taken.push(Delivery {
                receipt_handle: receipt,
                message: ReceivedMessage {
                    message_id: entry.id.clone(),
                    body: "{}".into(),
                    first_receive_ms: Some(1),
                    sent_ms: Some(1),
                    group_id: entry.group.clone(),
                },
            });
        }
        taken
    }
}

impl MessageQueue for MemoryQueue {
    async fn delete(&self, _queue: &QueueRef, receipts: &[String]) -> Vec<QueueFailure> {
        *self.delete_calls.lock().unwrap() += 1;
        let fail = |kind, detail: &str| {
            receipts
                .iter()
                .map(|r| QueueFailure {
                    receipt: r.clone(),
                    kind,
                    detail: detail.into(),
                })
                .collect()
        };
        if self.deletes_denied {
            return fail(FailureKind::Denied, "HTTP 403 AccessDenied");
        }
        {
            let mut failures = self.transient_delete_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return fail(FailureKind::Transient, "HTTP 500 InternalError");
            }
        }
        let mut entries = self.entries.lock().unwrap();
        for entry in entries.iter_mut() {
            if matches!(&entry.state, State::InFlight { receipt, .. } if receipts.contains(receipt))
            {
                entry.state = State::Deleted;
            }
        }
        self.deleted
            .lock()
            .unwrap()
            .extend(receipts.iter().cloned());
        Vec::new()
    }

    async fn set_visibility(
        &self,
        _queue: &QueueRef,
        receipts: &[String],
        seconds: i32,
    ) -> Vec<QueueFailure> {
        self.visibility
            .lock()
            .unwrap()
            .extend(receipts.iter().map(|r| (r.clone(), seconds)));
        let mut entries = self.entries.lock().unwrap();
        for entry in entries.iter_mut() {
            if let State::InFlight { receipt, until } = &mut entry.state {
                if receipts.contains(receipt) {
                    *until = Instant::now() + Duration::from_secs(seconds as u64);
                }
            }
        }
        MemoryQueue::expire(&mut entries);
        Vec::new()
    }
}

impl MessageSource for MemoryQueue {
    async fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait_secs: i32,
        visibility_secs: i32,
    ) -> Result<Vec<Delivery>, ReceiveError> {
        {
            let mut failures = self.transient_receive_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(ReceiveError {
                    action: "ReceiveMessage",
                    queue: queue.name.clone(),
                    detail: "HTTP 500 InternalError".into(),
                    kind: FailureKind::Transient,
                });
            }
        }
        let started = Instant::now();
        let mut taken = self.take(max, visibility_secs);
        if taken.is_empty() && wait_secs > 0 {
            // Like moto: a long poll is not woken when a group unlocks.
            tokio::time::sleep(Duration::from_secs(wait_secs as u64)).await;
            taken = self.take(max, visibility_secs);
        }
        self.receives
            .lock()
            .unwrap()
            .push((started, wait_secs, taken.len()));
        Ok(taken)
    }

    async fn depth(&self, _queue: &QueueRef) -> Result<Depth, ReceiveError> {
        let mut entries = self.entries.lock().unwrap();
        MemoryQueue::expire(&mut entries);
        let count = |f: fn(&State) -> bool| entries.iter().filter(|e| f(&e.state)).count() as u64;
        Ok(Depth {
            visible: count(|s| *s == State::Visible),
            in_flight: count(|s| matches!(s, State::InFlight { .. })),
            delayed: 0,
        })
    }
}

// The loop's tests share one fake between the test and the worker.
impl<T: ArchiveStore> ArchiveStore for Arc<T> {
    fn put_if_absent(
        &self,
        object: &ArchiveObject<'_>,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send {
        (**self).put_if_absent(object)
    }

    fn stored_message_id(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        (**self).stored_message_id(key)
    }
}

impl<T: MessageQueue> MessageQueue for Arc<T> {
    fn delete(
        &self,
        queue: &QueueRef,
        receipts: &[String],
    ) -> impl Future<Output = Vec<QueueFailure>> + Send {
        (**self).delete(queue, receipts)
    }

    fn set_visibility(
        &self,
        queue: &QueueRef,
        receipts: &[String],
        seconds: i32,
    ) -> impl Future<Output = Vec<QueueFailure>> + Send {
        (**self).set_visibility(queue, receipts, seconds)
    }
}

impl<T: MessageSource> MessageSource for Arc<T> {
    fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait_secs: i32,
        visibility_secs: i32,
    ) -> impl Future<Output = Result<Vec<Delivery>, ReceiveError>> + Send {
        (**self).receive(queue, max, wait_secs, visibility_secs)
    }

    fn depth(&self, queue: &QueueRef) -> impl Future<Output = Result<Depth, ReceiveError>> + Send {
        (**self).depth(queue)
    }
}
