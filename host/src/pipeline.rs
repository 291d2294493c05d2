//! The delivery decisions: route → store → delete, and what happens on every
//! failure.
//!
//! Everything here is written against two narrow traits, [`ArchiveStore`] and
//! [`MessageQueue`], so the rules can be tested in memory; `s3.rs` and `sqs.rs`
//! implement them for real. The rules:
//! - a message is deleted only after its object is stored, or after an object
//!   carrying the same `sqs-message-id` was found under its key;
//! - a name collision (same key, other message) stores the message under
//!   [`alternate_key`], never over the existing object;
//! - a message the component rejects is stored under the quarantine prefix
//!   with the reason, then deleted; if that fails it stays in SQS;
//! - transient store errors are retried with backoff for as long as the host
//!   runs; on shutdown, unstored messages are released for other consumers;
//! - transient delete errors are retried with backoff for a bounded time (the
//!   receipt handle stays valid while the batch's visibility is extended);
//!   what still cannot be deleted is reported, with whether an operator must act;
//! - in a FIFO queue, a message group is handled in order and stops at its first
//!   failure, so a later message never overtakes an earlier one.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use audit_archiver_transform::{alternate_key, Placement};
use tokio::sync::watch;

pub use crate::aws::FailureKind;
use crate::engine::RouteFailure;
use crate::metadata as meta;
use crate::metrics::Counters;

/// One message as received from SQS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The SQS message id.
    pub message_id: String,
    /// The handle that deletes or releases this delivery.
    pub receipt_handle: String,
    /// The body, as received.
    pub body: String,
    /// `ApproximateFirstReceiveTimestamp`, epoch ms.
    pub first_receive_ms: Option<u64>,
    /// `SentTimestamp`, epoch ms.
    pub sent_ms: Option<u64>,
    /// `MessageGroupId` (FIFO queues only).
    pub group_id: Option<String>,
}

/// The queue a batch came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    /// The queue URL (what SQS calls take).
    pub url: String,
    /// The bare queue name.
    pub name: String,
    /// The queue ARN (what IAM policies name).
    pub arn: String,
    /// Whether it is a FIFO queue.
    pub fifo: bool,
}

/// An object to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveObject<'a> {
    /// The object key.
    pub key: String,
    /// The body, byte for byte the SQS body.
    pub body: &'a str,
    /// The SQS message id; also stored as `sqs-message-id` metadata.
    pub message_id: &'a str,
    /// Further user metadata (name, value).
    pub metadata: Vec<(&'static str, String)>,
}

/// What a conditional PUT found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was created.
    Created,
    /// An object already exists under that key (HTTP 412).
    AlreadyExists,
}

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct StoreError {
    /// Whether trying again may succeed, or a permission is missing.
    pub kind: FailureKind,
    /// What failed, with bucket and key.
    pub detail: String,
}

/// The archive, as the pipeline needs it.
pub trait ArchiveStore: Send + Sync {
    /// Stores `object` only if nothing exists under its key.
    fn put_if_absent(
        &self,
        object: &ArchiveObject<'_>,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// The `sqs-message-id` of the object under `key`; `None` if there is no
    /// object or it has no such metadata.
    fn stored_message_id(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

/// A failed SQS call on some deliveries (delete or visibility change).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct QueueFailure {
    /// The receipt handle of the delivery.
    pub receipt: String,
    /// Whether trying again may succeed, or a permission is missing.
    pub kind: FailureKind,
    /// What SQS said.
    pub detail: String,
}

/// The queue operations that settle a message.
pub trait MessageQueue: Send + Sync {
    /// Deletes deliveries; returns the ones that could not be deleted.
    fn delete(
        &self,
        queue: &QueueRef,
        receipts: &[String],
    ) -> impl Future<Output = Vec<QueueFailure>> + Send;

    /// Sets the visibility timeout of deliveries (0 releases them at once);
    /// returns the ones whose visibility could not be changed.
    fn set_visibility(
        &self,
        queue: &QueueRef,
        receipts: &[String],
        seconds: i32,
    ) -> impl Future<Output = Vec<QueueFailure>> + Send;
}

/// How an archived message was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archived {
    /// Stored under its key.
    Stored(String),
    /// Stored under the alternate key because another message holds its key.
    StoredAlternate(String),
    /// This message was already archived under that key (a redelivery).
    AlreadyPresent(String),
}

impl Archived {
    /// The key the message is archived under.
    pub fn key(&self) -> &str {
        match self {
            Self::Stored(key) | Self::StoredAlternate(key) | Self::AlreadyPresent(key) => key,
        }
    }
}

/// The final state of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Archived (or already there): delete it.
    Archived(Archived),
    /// Not routable; stored under the quarantine prefix: delete it.
    Quarantined {
        /// The quarantine key.
        key: String,
        /// Why it was not routed.
        reason: String,
    },
    /// Not stored; left in SQS to come back after its visibility timeout
    /// (and to the DLQ after the redrive policy's count).
    Kept {
        /// Why it was not stored.
        reason: String,
        /// Whether a missing permission is the cause.
        kind: FailureKind,
    },
    /// Not stored because the host is stopping: released at once.
    Released,
}

impl Settlement {
    /// Whether the message may now be deleted from SQS.
    pub fn deletable(&self) -> bool {
        matches!(self, Self::Archived(_) | Self::Quarantined { .. })
    }
}

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Each message's settlement, in batch order.
    pub settlements: Vec<Settlement>,
    /// Messages archived (or quarantined) but not deleted, by batch index:
    /// they come back after their visibility timeout and are recognised as
    /// already stored.
    pub undeleted: Vec<(usize, QueueFailure)>,
}

impl BatchOutcome {
    /// The first reason in the batch that says a store permission is missing.
    pub fn store_denied(&self) -> Option<&str> {
        self.settlements.iter().find_map(|s| match s {
            Settlement::Kept {
                reason,
                kind: FailureKind::Denied,
            } => Some(reason.as_str()),
            _ => None,
        })
    }

    /// Whether message `index` was deleted from its queue.
    pub fn deleted(&self, index: usize) -> bool {
        self.settlements[index].deletable() && !self.undeleted.iter().any(|(i, _)| *i == index)
    }
}

/// Settings of the store step.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Prefix of quarantine keys, e.g. `_quarantine/`.
    pub quarantine_prefix: String,
    /// First retry delay of a transient store error; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
    /// How long transient delete failures are retried before the messages
    /// are left to come back after their visibility timeout.
    pub delete_retry_budget: Duration,
}

impl PipelineSettings {
    /// The store step of a command: quarantine keys under
    /// `quarantine_prefix` (`--quarantine-prefix`, validated), the retry
    /// timings every writer uses.
    pub fn with_quarantine_prefix(quarantine_prefix: String) -> Self {
        Self {
            quarantine_prefix,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(20),
            delete_retry_budget: Duration::from_secs(30),
        }
    }
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self::with_quarantine_prefix(crate::config::defaults::QUARANTINE_PREFIX.into())
    }
}

/// Stores `object` without ever overwriting, resolving 412s by metadata.
pub async fn archive<S: ArchiveStore>(
    store: &S,
    object: &ArchiveObject<'_>,
) -> Result<Archived, StoreError> {
    if store.put_if_absent(object).await? == PutOutcome::Created {
        return Ok(Archived::Stored(object.key.clone()));
    }
    if is_ours(store, &object.key, object.message_id).await? {
        return Ok(Archived::AlreadyPresent(object.key.clone()));
    }
    // A different message holds the key (e.g. two logs in one second under the
    // `seed` layout): use this message's own deterministic variant.
    let alternate = ArchiveObject {
        key: alternate_key(&object.key, object.message_id),
        ..object.clone()
    };
    if store.put_if_absent(&alternate).await? == PutOutcome::Created {
        return Ok(Archived::StoredAlternate(alternate.key));
    }
    if is_ours(store, &alternate.key, object.message_id).await? {
        return Ok(Archived::AlreadyPresent(alternate.key));
    }
    Err(StoreError {
        kind: FailureKind::Permanent,
        detail: format!(
            "both {} and {} hold other messages; message {} is kept in the queue",
            object.key, alternate.key, object.message_id
        ),
    })
}

async fn is_ours<S: ArchiveStore>(
    store: &S,
    key: &str,
    message_id: &str,
) -> Result<bool, StoreError> {
    match store.stored_message_id(key).await? {
        Some(stored) => Ok(stored == message_id),
        // A 412 and then no object: it vanished in between (or lacks our
        // metadata). Never guess: let the caller retry.
        None => Err(StoreError {
            kind: FailureKind::Transient,
            detail: format!("{key} exists but carries no {}; retrying", meta::MESSAGE_ID),
        }),
    }
}

/// Resolves once the host is stopping. Returns nothing, so no borrow of the
/// channel is held across later awaits.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The quarantine key of a message: `{prefix}{queue}/{message_id}.json`, with
/// every byte outside `[A-Za-z0-9._-]` percent-encoded so a hostile id or queue
/// name cannot escape the prefix.
pub fn quarantine_key(prefix: &str, queue_name: &str, message_id: &str) -> String {
    format!(
        "{prefix}{}/{}.json",
        encode_segment(queue_name),
        encode_segment(message_id)
    )
}

fn encode_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(byte as char),
            b'.' if !raw.trim_matches('.').is_empty() => out.push('.'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// User metadata values must be printable ASCII; keep the reason readable.
fn metadata_value(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    out.truncate(max);
    out
}

/// Routes, stores and settles one batch from one queue.
pub struct BatchRun<'a, S, Q> {
    /// Where objects go.
    pub store: &'a S,
    /// Where settled messages are deleted or released.
    pub queue_client: &'a Q,
    /// The queue of the batch.
    pub queue: &'a QueueRef,
    /// Store-step settings.
    pub settings: &'a PipelineSettings,
    /// Counters to update.
    pub counters: &'a Counters,
    /// Becomes `true` when the host is stopping.
    pub shutdown: watch::Receiver<bool>,
    /// User metadata added to every object of the batch (e.g. where records
    /// came from when they did not come from SQS); empty for SQS batches.
    pub extra_metadata: &'a [(&'static str, String)],
}

impl<S: ArchiveStore, Q: MessageQueue> BatchRun<'_, S, Q> {
    /// Stores every message of the batch (routed already, one result per
    /// message, in order), then deletes the archived ones and releases the
    /// ones left unstored by a shutdown.
    pub async fn settle(
        &self,
        messages: &[ReceivedMessage],
        routes: Vec<Result<Placement, RouteFailure>>,
    ) -> BatchOutcome {
        let settlements = self.store(messages, &routes).await;
        let undeleted = self.finish(messages, &settlements).await;
        BatchOutcome {
            settlements,
            undeleted,
        }
    }

    /// Deletes the settled messages (retrying transient failures within the
    /// budget) and releases the ones a shutdown left unstored. Returns the
    /// messages that could not be deleted.
    async fn finish(
        &self,
        messages: &[ReceivedMessage],
        settlements: &[Settlement],
    ) -> Vec<(usize, QueueFailure)> {
        let deletable: Vec<usize> = (0..messages.len())
            .filter(|&i| settlements[i].deletable())
            .collect();
        let undeleted = self.delete_with_retry(messages, deletable).await;
        for (index, failure) in &undeleted {
            // Archived already: a redelivery will be recognised and deleted.
            tracing::debug!(
                message_id = %messages[*index].message_id, queue = %self.queue.name,
                reason = %failure.detail, "delete failed after archiving"
            );
        }
        self.counters
            .delete_failures
            .fetch_add(undeleted.len() as u64, Ordering::Relaxed);

        let released: Vec<String> = messages
            .iter()
            .zip(settlements)
            .filter(|(_, s)| matches!(s, Settlement::Released))
            .map(|(m, _)| m.receipt_handle.clone())
            .collect();
        if !released.is_empty() {
            let failures = self
                .queue_client
                .set_visibility(self.queue, &released, 0)
                .await;
            if let Some(failure) = failures.first() {
                tracing::warn!(
                    queue = %self.queue.name, failed = failures.len(), error = %failure.detail,
                    "could not release some messages; they come back after their visibility timeout"
                );
            }
            self.counters
                .released
                .fetch_add(released.len() as u64, Ordering::Relaxed);
        }
        undeleted
    }

    /// Deletes `pending` (batch indices), retrying transient failures with
    /// backoff within the delete budget, unless the host is stopping.
    async fn delete_with_retry(
        &self,
        messages: &[ReceivedMessage],
        mut pending: Vec<usize>,
    ) -> Vec<(usize, QueueFailure)> {
        let mut undeleted = Vec::new();
        let started = Instant::now();
        let mut delay = self.settings.retry_initial;
        while !pending.is_empty() {
            let receipts: Vec<String> = pending
                .iter()
                .map(|&i| messages[i].receipt_handle.clone())
                .collect();
            let failures = self.queue_client.delete(self.queue, &receipts).await;
            let deleted = (pending.len() - failures.len()) as u64;
            self.counters.deleted.fetch_add(deleted, Ordering::Relaxed);
            let mut retry = Vec::new();
            for failure in failures {
                let Some(&index) = pending
                    .iter()
                    .find(|&&i| messages[i].receipt_handle == failure.receipt)
                else {
                    continue;
                };
                if failure.kind.is_transient() {
                    retry.push((index, failure));
                } else {
                    undeleted.push((index, failure));
                }
            }
            let out_of_time = started.elapsed() + delay > self.settings.delete_retry_budget;
            if retry.is_empty() || out_of_time || *self.shutdown.borrow() {
                undeleted.extend(retry);
                break;
            }
            self.counters
                .delete_retries
                .fetch_add(retry.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                queue = %self.queue.name, messages = retry.len(), error = %retry[0].1.detail,
                retry_in_ms = delay.as_millis() as u64, "deleting failed; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.settings.retry_max);
            pending = retry.into_iter().map(|(index, _)| index).collect();
        }
        undeleted.sort_by_key(|(index, _)| *index);
        undeleted
    }
}

/// The store step makes no queue call, so it needs no [`MessageQueue`]: a
/// Lambda function returns the settlements and Lambda deletes; the API
/// backfill has no queue at all.
impl<S: ArchiveStore, Q> BatchRun<'_, S, Q> {
    /// Stores every message of the batch and says how each was settled,
    /// without deleting or releasing anything.
    pub async fn store(
        &self,
        messages: &[ReceivedMessage],
        routes: &[Result<Placement, RouteFailure>],
    ) -> Vec<Settlement> {
        assert_eq!(messages.len(), routes.len(), "one route per message");
        // Standard queues: every message on its own. FIFO: one sequence per
        // message group, stopping at the group's first failure.
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut lanes: Vec<Vec<usize>> = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            if self.queue.fifo {
                groups
                    .entry(message.group_id.as_deref().unwrap_or(""))
                    .or_default()
                    .push(index);
            } else {
                lanes.push(vec![index]);
            }
        }
        lanes.extend(groups.into_values());
        let lanes = lanes.into_iter().map(|indices| async move {
            let mut settled = Vec::with_capacity(indices.len());
            let mut blocked = false;
            for index in indices {
                // After a failure in a FIFO group the rest are released
                // untouched: SQS hands them out again only after the
                // failed one, so the order holds.
                let outcome = if blocked {
                    Settlement::Released
                } else {
                    self.settle_one(&messages[index], &routes[index]).await
                };
                blocked |= !outcome.deletable();
                settled.push((index, outcome));
            }
            settled
        });
        let mut settlements: Vec<Option<Settlement>> = messages.iter().map(|_| None).collect();
        for (index, outcome) in futures::future::join_all(lanes).await.into_iter().flatten() {
            settlements[index] = Some(outcome);
        }
        settlements
            .into_iter()
            .map(|s| s.expect("every message settled"))
            .collect()
    }

    async fn settle_one(
        &self,
        message: &ReceivedMessage,
        route: &Result<Placement, RouteFailure>,
    ) -> Settlement {
        let queue = &self.queue.name;
        match route {
            Ok(placement) => {
                let object = ArchiveObject {
                    key: placement.key.clone(),
                    body: &message.body,
                    message_id: &message.message_id,
                    metadata: self.metadata(message, Some(placement), None),
                };
                match self.archive_with_retry(&object).await {
                    Ok(Some(archived)) => {
                        match &archived {
                            Archived::Stored(_) => {
                                self.counters.stored.fetch_add(1, Ordering::Relaxed)
                            }
                            Archived::StoredAlternate(key) => {
                                tracing::info!(
                                    message_id = %message.message_id, queue = %queue,
                                    key = %placement.key, stored_as = %key,
                                    "key held by another message; stored under its alternate key"
                                );
                                self.counters.stored.fetch_add(1, Ordering::Relaxed);
                                self.counters.collisions.fetch_add(1, Ordering::Relaxed)
                            }
                            Archived::AlreadyPresent(_) => self
                                .counters
                                .already_present
                                .fetch_add(1, Ordering::Relaxed),
                        };
                        tracing::debug!(message_id = %message.message_id, queue = %queue, key = %archived.key(), "archived");
                        Settlement::Archived(archived)
                    }
                    Ok(None) => Settlement::Released,
                    Err(error) => self.kept(message, error.detail, error.kind),
                }
            }
            Err(RouteFailure::ComponentFailed(detail)) => self.kept(
                message,
                format!("component-trap: {detail}"),
                FailureKind::Permanent,
            ),
            Err(failure) => self.quarantine(message, failure.to_string()).await,
        }
    }

    async fn quarantine(&self, message: &ReceivedMessage, reason: String) -> Settlement {
        let key = quarantine_key(
            &self.settings.quarantine_prefix,
            &self.queue.name,
            &message.message_id,
        );
        tracing::warn!(
            message_id = %message.message_id, queue = %self.queue.name, %reason, %key,
            "message cannot be routed; quarantining it"
        );
        let object = ArchiveObject {
            key,
            body: &message.body,
            message_id: &message.message_id,
            metadata: self.metadata(message, None, Some(&reason)),
        };
        match self.archive_with_retry(&object).await {
            Ok(Some(archived)) => {
                self.counters.quarantined.fetch_add(1, Ordering::Relaxed);
                Settlement::Quarantined {
                    key: archived.key().to_string(),
                    reason,
                }
            }
            Ok(None) => Settlement::Released,
            Err(error) => self.kept(
                message,
                format!("quarantine failed: {}", error.detail),
                error.kind,
            ),
        }
    }

    fn kept(&self, message: &ReceivedMessage, reason: String, kind: FailureKind) -> Settlement {
        if kind == FailureKind::Denied {
            // A missing permission fails every message alike: the worker
            // logs it once for the queue, naming the permission.
            tracing::debug!(
                message_id = %message.message_id, queue = %self.queue.name, %reason,
                "message not archived (permission denied); it stays in the queue"
            );
        } else {
            tracing::error!(
                message_id = %message.message_id, queue = %self.queue.name, %reason,
                "message not archived; it stays in the queue"
            );
        }
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        Settlement::Kept { reason, kind }
    }

    /// Archives, retrying transient errors with backoff until it succeeds,
    /// fails permanently, or the host stops (`Ok(None)`).
    async fn archive_with_retry(
        &self,
        object: &ArchiveObject<'_>,
    ) -> Result<Option<Archived>, StoreError> {
        let mut shutdown = self.shutdown.clone();
        let mut delay = self.settings.retry_initial;
        loop {
            if *shutdown.borrow() {
                return Ok(None);
            }
            match archive(self.store, object).await {
                Ok(archived) => return Ok(Some(archived)),
                Err(error) if error.kind.is_transient() => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        message_id = %object.message_id, queue = %self.queue.name,
                        error = %error.detail, retry_in_ms = delay.as_millis() as u64,
                        "storing failed; retrying"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stopped(&mut shutdown) => return Ok(None),
                    }
                    delay = (delay * 2).min(self.settings.retry_max);
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn metadata(
        &self,
        message: &ReceivedMessage,
        placement: Option<&Placement>,
        reason: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let mut metadata = vec![(meta::QUEUE, metadata_value(&self.queue.name, 256))];
        if let Some(placement) = placement {
            metadata.push((meta::TENANT, placement.tenant.clone()));
            metadata.push((meta::ARCHIVE_TIME_MS, placement.time_ms.to_string()));
        }
        if let Some(ms) = message.first_receive_ms {
            metadata.push((meta::FIRST_RECEIVE_MS, ms.to_string()));
        }
        if let Some(ms) = message.sent_ms {
            metadata.push((meta::SENT_MS, ms.to_string()));
        }
        if let Some(group) = &message.group_id {
            metadata.push((meta::MESSAGE_GROUP_ID, metadata_value(group, 128)));
        }
        if let Some(reason) = reason {
            metadata.push((meta::QUARANTINE_REASON, metadata_value(reason, 1024)));
        }
        metadata.extend(self.extra_metadata.iter().cloned());
        metadata
    }
}

#[cfg(test)]
mod tests {
    //! The delivery rules, against in-memory implementations of the two
    //! traits. The same rules are tested end to end in `host/tests/e2e`.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use audit_archiver_transform::RouteError;

    use super::*;

    /// An in-memory bucket honouring `If-None-Match: *`, with injectable faults.
    #[derive(Default)]
    struct MemoryStore {
        objects: Mutex<BTreeMap<String, (String, String)>>,
        transient_failures: Mutex<u32>,
        permanent_failure_prefix: Option<String>,
        puts: Mutex<u32>,
    }

    impl ArchiveStore for MemoryStore {
        async fn put_if_absent(
            &self,
            object: &ArchiveObject<'_>,
        ) -> Result<PutOutcome, StoreError> {
            *self.puts.lock().unwrap() += 1;
            {
                let mut failures = self.transient_failures.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    return Err(StoreError {
                        kind: FailureKind::Transient,
                        detail: "503 SlowDown".into(),
                    });
                }
            }
            if let Some(prefix) = &self.permanent_failure_prefix {
                if object.key.starts_with(prefix.as_str()) {
                    return Err(StoreError {
                        kind: FailureKind::Denied,
                        detail: "403 AccessDenied".into(),
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

    impl MemoryStore {
        /// A bucket already holding `(key, body, message id)` objects.
        fn holding(objects: &[(&str, &str, &str)]) -> Self {
            let store = Self::default();
            store.objects.lock().unwrap().extend(
                objects
                    .iter()
                    .map(|(key, body, id)| (key.to_string(), (body.to_string(), id.to_string()))),
            );
            store
        }
    }

    /// An in-memory queue; deletes can be made to fail, transiently (the
    /// next `transient_delete_failures` calls) or for good.
    #[derive(Default)]
    struct MemoryQueue {
        deleted: Mutex<Vec<String>>,
        visibility: Mutex<Vec<(String, i32)>>,
        transient_delete_failures: Mutex<u32>,
        deletes_denied: bool,
        delete_calls: Mutex<u32>,
    }

    impl MemoryQueue {
        /// The receipts deleted so far, sorted.
        fn deleted_sorted(&self) -> Vec<String> {
            let mut deleted = self.deleted.lock().unwrap().clone();
            deleted.sort();
            deleted
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
            Vec::new()
        }
    }

    fn message(id: &str, group: Option<&str>) -> ReceivedMessage {
        ReceivedMessage {
            message_id: id.into(),
            receipt_handle: format!("receipt-{id}"),
            body: format!("{{\"id\":\"{id}\"}}"),
            first_receive_ms: Some(1),
            sent_ms: Some(1),
            group_id: group.map(str::to_string),
        }
    }

    fn placed(key: &str) -> Result<Placement, RouteFailure> {
        Ok(Placement {
            tenant: "acme".into(),
            key: key.into(),
            time_ms: 1,
        })
    }

    fn queue(fifo: bool) -> QueueRef {
        QueueRef {
            url: "http://q".into(),
            name: "acme-q".into(),
            arn: "arn:aws:sqs:us-east-1:123456789012:acme-q".into(),
            fifo,
        }
    }

    /// How a test batch is run: from a standard queue, without a shutdown,
    /// unless the test says otherwise.
    #[derive(Debug, Clone, Copy, Default)]
    struct RunAs {
        fifo: bool,
        stop: bool,
    }

    /// Settles a batch from a standard queue; its settlements.
    async fn settle(
        store: &MemoryStore,
        queue_client: &MemoryQueue,
        messages: &[ReceivedMessage],
        routes: Vec<Result<Placement, RouteFailure>>,
    ) -> (Vec<Settlement>, Counters) {
        settle_as(RunAs::default(), store, queue_client, messages, routes).await
    }

    /// Settles a batch run as `run_as`; its settlements.
    async fn settle_as(
        run_as: RunAs,
        store: &MemoryStore,
        queue_client: &MemoryQueue,
        messages: &[ReceivedMessage],
        routes: Vec<Result<Placement, RouteFailure>>,
    ) -> (Vec<Settlement>, Counters) {
        let (outcome, counters) =
            settle_batch_as(run_as, store, queue_client, messages, routes).await;
        (outcome.settlements, counters)
    }

    /// Settles a batch from a standard queue; the whole outcome.
    async fn settle_batch(
        store: &MemoryStore,
        queue_client: &MemoryQueue,
        messages: &[ReceivedMessage],
        routes: Vec<Result<Placement, RouteFailure>>,
    ) -> (BatchOutcome, Counters) {
        settle_batch_as(RunAs::default(), store, queue_client, messages, routes).await
    }

    async fn settle_batch_as(
        RunAs { fifo, stop }: RunAs,
        store: &MemoryStore,
        queue_client: &MemoryQueue,
        messages: &[ReceivedMessage],
        routes: Vec<Result<Placement, RouteFailure>>,
    ) -> (BatchOutcome, Counters) {
        let counters = Counters::default();
        let (_tx, shutdown) = watch::channel(stop);
        let queue = queue(fifo);
        let settings = PipelineSettings {
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(4),
            delete_retry_budget: Duration::from_millis(50),
            ..PipelineSettings::default()
        };
        let run = BatchRun {
            store,
            queue_client,
            queue: &queue,
            settings: &settings,
            counters: &counters,
            shutdown,
            extra_metadata: &[],
        };
        let outcome = run.settle(messages, routes).await;
        (outcome, counters)
    }

    #[tokio::test]
    async fn stores_then_deletes() {
        let (store, sqs) = (MemoryStore::default(), MemoryQueue::default());
        let messages = [message("m1", None), message("m2", None)];
        let (settled, counters) = settle(
            &store,
            &sqs,
            &messages,
            vec![placed("acme/a.json"), placed("acme/b.json")],
        )
        .await;
        assert_eq!(
            settled[0],
            Settlement::Archived(Archived::Stored("acme/a.json".into()))
        );
        assert_eq!(
            store.objects.lock().unwrap()["acme/b.json"],
            (messages[1].body.clone(), "m2".into())
        );
        assert_eq!(sqs.deleted_sorted(), ["receipt-m1", "receipt-m2"]);
        assert_eq!(counters.snapshot().stored, 2);
        assert_eq!(counters.snapshot().deleted, 2);
    }

    #[tokio::test]
    async fn a_redelivery_is_recognised_by_message_id_and_nothing_is_rewritten() {
        let (store, sqs) = (
            MemoryStore::holding(&[("acme/a.json", "original", "m1")]),
            MemoryQueue::default(),
        );
        let (settled, counters) = settle(
            &store,
            &sqs,
            &[message("m1", None)],
            vec![placed("acme/a.json")],
        )
        .await;
        assert_eq!(
            settled[0],
            Settlement::Archived(Archived::AlreadyPresent("acme/a.json".into()))
        );
        assert_eq!(store.objects.lock().unwrap()["acme/a.json"].0, "original");
        assert_eq!(store.objects.lock().unwrap().len(), 1);
        assert_eq!(sqs.deleted.lock().unwrap().as_slice(), ["receipt-m1"]);
        assert_eq!(counters.snapshot().already_present, 1);
    }

    #[tokio::test]
    async fn a_collision_stores_under_the_alternate_key_and_keeps_the_original() {
        let (store, sqs) = (
            MemoryStore::holding(&[("acme/a.json", "first", "m0")]),
            MemoryQueue::default(),
        );
        let (settled, counters) = settle(
            &store,
            &sqs,
            &[message("m1", None)],
            vec![placed("acme/a.json")],
        )
        .await;
        assert_eq!(
            settled[0],
            Settlement::Archived(Archived::StoredAlternate("acme/a-m1.json".into()))
        );
        let objects = store.objects.lock().unwrap();
        assert_eq!(objects["acme/a.json"].0, "first");
        assert_eq!(objects["acme/a-m1.json"].1, "m1");
        assert_eq!(counters.snapshot().collisions, 1);
        assert_eq!(sqs.deleted.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn when_both_names_hold_other_messages_the_message_stays_in_the_queue() {
        let (store, sqs) = (
            MemoryStore::holding(&[("acme/a.json", "x", "m0"), ("acme/a-m1.json", "y", "m9")]),
            MemoryQueue::default(),
        );
        let (settled, counters) = settle(
            &store,
            &sqs,
            &[message("m1", None)],
            vec![placed("acme/a.json")],
        )
        .await;
        assert!(
            matches!(&settled[0], Settlement::Kept { reason, .. } if reason.contains("m1")),
            "{settled:?}"
        );
        assert!(sqs.deleted.lock().unwrap().is_empty());
        assert_eq!(store.objects.lock().unwrap()["acme/a.json"].0, "x");
        assert_eq!(counters.snapshot().failed, 1);
    }

    #[tokio::test]
    async fn rejected_messages_are_quarantined_then_deleted() {
        let (store, sqs) = (MemoryStore::default(), MemoryQueue::default());
        let rejected = Err(RouteFailure::Rejected(RouteError::InvalidBody(
            "not JSON".into(),
        )));
        let unsafe_key = Err(RouteFailure::UnsafePlacement("key ../x".into()));
        let messages = [message("m1", None), message("../../etc", None)];
        let (settled, counters) = settle(&store, &sqs, &messages, vec![rejected, unsafe_key]).await;
        assert_eq!(
            settled[0],
            Settlement::Quarantined {
                key: "_quarantine/acme-q/m1.json".into(),
                reason: "invalid-body: not JSON".into()
            }
        );
        let Settlement::Quarantined { key, .. } = &settled[1] else {
            panic!("{settled:?}")
        };
        assert_eq!(key, "_quarantine/acme-q/..%2F..%2Fetc.json");
        assert_eq!(sqs.deleted.lock().unwrap().len(), 2);
        assert_eq!(counters.snapshot().quarantined, 2);
    }

    #[tokio::test]
    async fn a_failed_quarantine_or_a_trap_keeps_the_message() {
        let store = MemoryStore {
            permanent_failure_prefix: Some("_quarantine/".into()),
            ..MemoryStore::default()
        };
        let sqs = MemoryQueue::default();
        let rejected = Err(RouteFailure::Rejected(RouteError::InvalidBody(
            "not JSON".into(),
        )));
        let trapped = Err(RouteFailure::ComponentFailed("fuel".into()));
        let messages = [message("m1", None), message("m2", None)];
        let (settled, _) = settle(&store, &sqs, &messages, vec![rejected, trapped]).await;
        assert!(
            matches!(&settled[0], Settlement::Kept { reason: r, .. } if r.contains("quarantine failed")),
            "{settled:?}"
        );
        assert!(
            matches!(&settled[1], Settlement::Kept { reason: r, .. } if r.contains("component-trap")),
            "{settled:?}"
        );
        assert!(sqs.deleted.lock().unwrap().is_empty());
        assert!(
            sqs.visibility.lock().unwrap().is_empty(),
            "kept messages wait out their timeout"
        );
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_stored() {
        let store = MemoryStore {
            transient_failures: Mutex::new(3),
            ..MemoryStore::default()
        };
        let sqs = MemoryQueue::default();
        let (settled, counters) = settle(
            &store,
            &sqs,
            &[message("m1", None)],
            vec![placed("acme/a.json")],
        )
        .await;
        assert_eq!(
            settled[0],
            Settlement::Archived(Archived::Stored("acme/a.json".into()))
        );
        assert_eq!(counters.snapshot().retries, 3);
        assert_eq!(*store.puts.lock().unwrap(), 4);
    }

    #[tokio::test]
    async fn on_shutdown_unstored_messages_are_released_not_deleted() {
        let (store, sqs) = (MemoryStore::default(), MemoryQueue::default());
        let (settled, counters) = settle_as(
            RunAs {
                stop: true,
                ..RunAs::default()
            },
            &store,
            &sqs,
            &[message("m1", None)],
            vec![placed("acme/a.json")],
        )
        .await;
        assert_eq!(settled[0], Settlement::Released);
        assert!(store.objects.lock().unwrap().is_empty());
        assert!(sqs.deleted.lock().unwrap().is_empty());
        assert_eq!(
            sqs.visibility.lock().unwrap().as_slice(),
            [("receipt-m1".to_string(), 0)]
        );
        assert_eq!(counters.snapshot().released, 1);
    }

    #[tokio::test]
    async fn a_fifo_group_stops_at_its_first_failure_and_other_groups_go_on() {
        let (store, sqs) = (MemoryStore::default(), MemoryQueue::default());
        let messages = [
            message("a1", Some("a")),
            message("a2", Some("a")),
            message("a3", Some("a")),
            message("b1", Some("b")),
        ];
        let routes = vec![
            placed("acme/a1.json"),
            Err(RouteFailure::ComponentFailed("limit".into())),
            placed("acme/a3.json"),
            placed("acme/b1.json"),
        ];
        let (settled, _) = settle_as(
            RunAs {
                fifo: true,
                ..RunAs::default()
            },
            &store,
            &sqs,
            &messages,
            routes,
        )
        .await;
        assert!(settled[0].deletable());
        assert!(matches!(settled[1], Settlement::Kept { .. }));
        assert_eq!(settled[2], Settlement::Released, "a3 must not overtake a2");
        assert!(settled[3].deletable());
        assert!(!store.objects.lock().unwrap().contains_key("acme/a3.json"));
        assert_eq!(sqs.deleted_sorted(), ["receipt-a1", "receipt-b1"]);
    }

    #[tokio::test]
    async fn transient_delete_failures_are_retried_until_deleted() {
        let store = MemoryStore::default();
        let sqs = MemoryQueue {
            transient_delete_failures: Mutex::new(2),
            ..MemoryQueue::default()
        };
        let messages = [message("m1", None), message("m2", None)];
        let (outcome, counters) = settle_batch(
            &store,
            &sqs,
            &messages,
            vec![placed("acme/a.json"), placed("acme/b.json")],
        )
        .await;
        assert!(outcome.undeleted.is_empty(), "{:?}", outcome.undeleted);
        assert!(outcome.deleted(0) && outcome.deleted(1));
        assert_eq!(*sqs.delete_calls.lock().unwrap(), 3);
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.deleted, snapshot.delete_failures), (2, 0));
        assert_eq!(snapshot.delete_retries, 4);
    }

    #[tokio::test]
    async fn transient_delete_failures_stop_at_the_budget() {
        let store = MemoryStore::default();
        let sqs = MemoryQueue {
            transient_delete_failures: Mutex::new(u32::MAX),
            ..MemoryQueue::default()
        };
        let (outcome, counters) = settle_batch(
            &store,
            &sqs,
            &[message("m1", None)],
            vec![placed("acme/a.json")],
        )
        .await;
        assert_eq!(outcome.undeleted.len(), 1);
        assert_eq!(outcome.undeleted[0].1.kind, FailureKind::Transient);
        assert!(!outcome.deleted(0));
        assert!(
            *sqs.delete_calls.lock().unwrap() > 1,
            "retried before giving up"
        );
        assert_eq!(counters.snapshot().delete_failures, 1);
    }

    #[tokio::test]
    async fn a_refused_delete_is_reported_once_not_retried() {
        let store = MemoryStore::default();
        let sqs = MemoryQueue {
            deletes_denied: true,
            ..MemoryQueue::default()
        };
        let messages = [message("m1", None), message("m2", None)];
        let (outcome, counters) = settle_batch(
            &store,
            &sqs,
            &messages,
            vec![placed("acme/a.json"), placed("acme/b.json")],
        )
        .await;
        assert_eq!(*sqs.delete_calls.lock().unwrap(), 1, "denied: no retry");
        let kinds: Vec<_> = outcome
            .undeleted
            .iter()
            .map(|(i, f)| (*i, f.kind))
            .collect();
        assert_eq!(kinds, [(0, FailureKind::Denied), (1, FailureKind::Denied)]);
        assert_eq!(
            store.objects.lock().unwrap().len(),
            2,
            "archived all the same"
        );
        let snapshot = counters.snapshot();
        assert_eq!(
            (snapshot.stored, snapshot.deleted, snapshot.delete_failures),
            (2, 0, 2)
        );
    }

    #[tokio::test]
    async fn a_denied_put_is_reported_as_a_missing_permission() {
        let store = MemoryStore {
            permanent_failure_prefix: Some("acme/".into()),
            ..MemoryStore::default()
        };
        let sqs = MemoryQueue::default();
        let (outcome, _) = settle_batch(
            &store,
            &sqs,
            &[message("m1", None)],
            vec![placed("acme/a.json")],
        )
        .await;
        assert!(outcome.store_denied().unwrap().contains("AccessDenied"));
        assert!(sqs.deleted.lock().unwrap().is_empty());
    }

    #[test]
    fn quarantine_keys_cannot_escape_their_prefix() {
        assert_eq!(
            quarantine_key("_q/", "acme-q.fifo", "abc-123"),
            "_q/acme-q.fifo/abc-123.json"
        );
        assert_eq!(quarantine_key("_q/", "..", "."), "_q/%2E%2E/%2E.json");
        assert_eq!(quarantine_key("_q/", "a/b", "x\ny"), "_q/a%2Fb/x%0Ay.json");
        assert_eq!(quarantine_key("_q/", "", ""), "_q/%00/%00.json");
    }
}
