//! The store stage over a batch: each routed message is stored (or
//! quarantined, or kept in its source), one value per message in and out.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use audit_archiver_transform::Placement;
use tokio::sync::watch;

use super::metadata as meta;
use super::{
    archive, quarantine_key, ArchiveObject, ArchiveStore, Archived, FailureKind, Settlement,
    StoreError, StoreSettings,
};
use crate::observe::metrics::Counters;
use crate::route::{RouteFailure, Routed};
use crate::shutdown::stopped;
use crate::source::{QueueRef, ReceivedMessage};

/// Where a batch came from, as the store stage names it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The queue's name: the `queue` metadata, the quarantine folder, the logs.
    pub queue: &'a str,
    /// A FIFO queue: each message group is stored in order.
    pub fifo: bool,
    /// Metadata added to every object (where records came from when they did
    /// not come from SQS); empty for SQS.
    pub metadata: &'a [(&'static str, String)],
}

impl<'a> From<&'a QueueRef> for Origin<'a> {
    fn from(queue: &'a QueueRef) -> Self {
        Self {
            queue: &queue.name,
            fifo: queue.fifo,
            metadata: &[],
        }
    }
}

/// A message after the store stage: what became of it, and the message
/// itself (with whatever its source needs to settle it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<M> {
    /// The message, as the source gave it.
    pub message: M,
    /// Stored, quarantined, kept or released.
    pub settlement: Settlement,
}

/// Stores batches into one archive. It makes no call to a source: how a
/// stored message is settled is the source's (SQS deletes, Lambda reports
/// `batchItemFailures`, `backfill` moves its checkpoint).
pub struct StoreStage<'a, S> {
    /// Where objects go.
    pub store: &'a S,
    /// Quarantine prefix and retry timings.
    pub settings: &'a StoreSettings,
    /// Counters to update.
    pub counters: &'a Counters,
    /// Becomes `true` when the host is stopping: unstored messages are
    /// released.
    pub shutdown: watch::Receiver<bool>,
}

impl<S: ArchiveStore> StoreStage<'_, S> {
    /// Stores every message of a batch from `origin`, in batch order out as
    /// in. Standard queues: every message on its own, at once. FIFO: one
    /// sequence per message group, stopping at the group's first failure.
    pub async fn store<M: AsRef<ReceivedMessage>>(
        &self,
        origin: &Origin<'_>,
        batch: Vec<Routed<M>>,
    ) -> Vec<Stored<M>> {
        let mut groups: BTreeMap<String, Vec<(usize, Routed<M>)>> = BTreeMap::new();
        let mut lanes: Vec<Vec<(usize, Routed<M>)>> = Vec::new();
        for (position, routed) in batch.into_iter().enumerate() {
            if origin.fifo {
                let group = routed.message.as_ref().group_id.clone();
                groups
                    .entry(group.unwrap_or_default())
                    .or_default()
                    .push((position, routed));
            } else {
                lanes.push(vec![(position, routed)]);
            }
        }
        lanes.extend(groups.into_values());
        let lanes = lanes.into_iter().map(|lane| async move {
            let mut stored = Vec::with_capacity(lane.len());
            let mut blocked = false;
            for (position, Routed { message, route }) in lane {
                // After a failure in a FIFO group the rest are released
                // untouched: SQS hands them out again only after the
                // failed one, so the order holds.
                let settlement = if blocked {
                    Settlement::Released
                } else {
                    self.store_one(origin, message.as_ref(), &route).await
                };
                blocked |= !settlement.deletable();
                stored.push((
                    position,
                    Stored {
                        message,
                        settlement,
                    },
                ));
            }
            stored
        });
        let mut stored: Vec<_> = futures::future::join_all(lanes)
            .await
            .into_iter()
            .flatten()
            .collect();
        stored.sort_by_key(|(position, _)| *position);
        stored.into_iter().map(|(_, stored)| stored).collect()
    }

    async fn store_one(
        &self,
        origin: &Origin<'_>,
        message: &ReceivedMessage,
        route: &Result<Placement, RouteFailure>,
    ) -> Settlement {
        let queue = origin.queue;
        match route {
            Ok(placement) => {
                let object = ArchiveObject {
                    key: placement.key.clone(),
                    body: &message.body,
                    message_id: &message.message_id,
                    metadata: self.metadata(origin, message, Some(placement), None),
                };
                match self.archive_with_retry(origin, &object).await {
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
                    Err(error) => self.kept(origin, message, error.detail, error.kind),
                }
            }
            Err(RouteFailure::ComponentFailed(detail)) => self.kept(
                origin,
                message,
                format!("component-trap: {detail}"),
                FailureKind::Permanent,
            ),
            Err(failure) => self.quarantine(origin, message, failure.to_string()).await,
        }
    }

    async fn quarantine(
        &self,
        origin: &Origin<'_>,
        message: &ReceivedMessage,
        reason: String,
    ) -> Settlement {
        let key = quarantine_key(
            &self.settings.quarantine_prefix,
            origin.queue,
            &message.message_id,
        );
        tracing::warn!(
            message_id = %message.message_id, queue = %origin.queue, %reason, %key,
            "message cannot be routed; quarantining it"
        );
        let object = ArchiveObject {
            key,
            body: &message.body,
            message_id: &message.message_id,
            metadata: self.metadata(origin, message, None, Some(&reason)),
        };
        match self.archive_with_retry(origin, &object).await {
            Ok(Some(archived)) => {
                self.counters.quarantined.fetch_add(1, Ordering::Relaxed);
                Settlement::Quarantined {
                    key: archived.key().to_string(),
                    reason,
                }
            }
            Ok(None) => Settlement::Released,
            Err(error) => self.kept(
                origin,
                message,
                format!("quarantine failed: {}", error.detail),
                error.kind,
            ),
        }
    }

    fn kept(
        &self,
        origin: &Origin<'_>,
        message: &ReceivedMessage,
        reason: String,
        kind: FailureKind,
    ) -> Settlement {
        if kind == FailureKind::Denied {
            // A missing permission fails every message alike: the worker
            // logs it once for the queue, naming the permission.
            tracing::debug!(
                message_id = %message.message_id, queue = %origin.queue, %reason,
                "message not archived (permission denied); it stays in the queue"
            );
        } else {
            tracing::error!(
                message_id = %message.message_id, queue = %origin.queue, %reason,
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
        origin: &Origin<'_>,
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
                        message_id = %object.message_id, queue = %origin.queue,
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
        origin: &Origin<'_>,
        message: &ReceivedMessage,
        placement: Option<&Placement>,
        reason: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let mut metadata = vec![(meta::QUEUE, metadata_value(origin.queue, 256))];
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
        metadata.extend(origin.metadata.iter().cloned());
        metadata
    }
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
