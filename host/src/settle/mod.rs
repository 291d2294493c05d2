//! The settle stage: what happens in SQS to a message once the store stage
//! is done with it. The rules, written against the narrow [`MessageQueue`]
//! port (`sqs.rs` implements it for real) so they can be tested in memory:
//! - a message is deleted only after its object is stored, or after an
//!   object carrying the same `sqs-message-id` was found under its key;
//! - transient delete errors are retried with backoff for a bounded time (the
//!   receipt handle stays valid while the batch's visibility is extended);
//!   what still cannot be deleted is reported, with whether an operator must
//!   act, and comes back after its visibility timeout to be recognised as
//!   archived;
//! - messages a shutdown left unstored are released at once (visibility 0)
//!   for other consumers.
//!
//! The other sources settle without it: a Lambda function reports the
//! messages not archived in `batchItemFailures` and Lambda deletes the rest;
//! `backfill` moves its checkpoint once a window is stored.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::aws::FailureKind;
use crate::observe::metrics::Counters;
use crate::source::{Delivery, QueueRef};
use crate::store::{Settlement, Stored};

mod sqs;
#[cfg(test)]
mod tests;

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

/// Settings of the settle stage.
#[derive(Debug, Clone)]
pub struct SettleSettings {
    /// First retry delay of a transient delete error; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
    /// How long transient delete failures are retried before the messages
    /// are left to come back after their visibility timeout.
    pub delete_retry_budget: Duration,
}

impl Default for SettleSettings {
    fn default() -> Self {
        Self {
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(20),
            delete_retry_budget: Duration::from_secs(30),
        }
    }
}

/// A delivery after the settle stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The delivery.
    pub delivery: Delivery,
    /// What the store stage made of it.
    pub settlement: Settlement,
    /// Archived (or quarantined) but not deleted: it comes back after its
    /// visibility timeout and is recognised as already stored.
    pub undeleted: Option<QueueFailure>,
}

impl Settled {
    /// Whether the message is archived and gone from its queue.
    pub fn deleted(&self) -> bool {
        self.settlement.deletable() && self.undeleted.is_none()
    }
}

/// Deletes and releases the deliveries of one queue.
pub struct SettleStage<'a, Q> {
    /// The queue's client.
    pub queue_client: &'a Q,
    /// The queue.
    pub queue: &'a QueueRef,
    /// Retry timings.
    pub settings: &'a SettleSettings,
    /// Counters to update.
    pub counters: &'a Counters,
    /// Becomes `true` when the host is stopping: deletes are not retried.
    pub shutdown: watch::Receiver<bool>,
}

impl<Q: MessageQueue> SettleStage<'_, Q> {
    /// Deletes the stored deliveries (retrying transient failures within the
    /// budget) and releases the ones a shutdown left unstored. Batch order
    /// out as in.
    pub async fn settle(&self, batch: Vec<Stored<Delivery>>) -> Vec<Settled> {
        let deletable: Vec<&Delivery> = batch
            .iter()
            .filter(|stored| stored.settlement.deletable())
            .map(|stored| &stored.message)
            .collect();
        let mut undeleted = self.delete_with_retry(&deletable).await;
        self.counters
            .delete_failures
            .fetch_add(undeleted.len() as u64, Ordering::Relaxed);

        let released: Vec<String> = batch
            .iter()
            .filter(|stored| matches!(stored.settlement, Settlement::Released))
            .map(|stored| stored.message.receipt_handle.clone())
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

        batch
            .into_iter()
            .map(
                |Stored {
                     message,
                     settlement,
                 }| {
                    let undeleted = if settlement.deletable() {
                        undeleted.remove(&message.receipt_handle)
                    } else {
                        None
                    };
                    if let Some(failure) = &undeleted {
                        // Archived already: a redelivery will be recognised and deleted.
                        tracing::debug!(
                            message_id = %message.message.message_id, queue = %self.queue.name,
                            reason = %failure.detail, "delete failed after archiving"
                        );
                    }
                    Settled {
                        delivery: message,
                        settlement,
                        undeleted,
                    }
                },
            )
            .collect()
    }

    /// Sets the visibility of `receipts` to `seconds`: keeps a batch hidden
    /// while it is being stored.
    pub async fn extend_visibility(&self, receipts: &[String], seconds: i32) -> Vec<QueueFailure> {
        self.queue_client
            .set_visibility(self.queue, receipts, seconds)
            .await
    }

    /// Deletes `pending`, retrying transient failures with backoff within
    /// the delete budget, unless the host is stopping. Returns the failures
    /// left, by receipt handle.
    async fn delete_with_retry(
        &self,
        pending: &[&Delivery],
    ) -> std::collections::HashMap<String, QueueFailure> {
        let mut undeleted = std::collections::HashMap::new();
        let started = Instant::now();
        let mut delay = self.settings.retry_initial;
        let mut receipts: Vec<String> = pending.iter().map(|d| d.receipt_handle.clone()).collect();
        while !receipts.is_empty() {
            let failures = self.queue_client.delete(self.queue, &receipts).await;
            let deleted = (receipts.len() - failures.len()) as u64;
            self.counters.deleted.fetch_add(deleted, Ordering::Relaxed);
            let mut retry = Vec::new();
            for failure in failures {
                if !receipts.contains(&failure.receipt) {
                    continue;
                }
                if failure.kind.is_transient() {
                    retry.push(failure);
                } else {
                    undeleted.insert(failure.receipt.clone(), failure);
                }
            }
            let out_of_time = started.elapsed() + delay > self.settings.delete_retry_budget;
            if retry.is_empty() || out_of_time || *self.shutdown.borrow() {
                undeleted.extend(retry.into_iter().map(|f| (f.receipt.clone(), f)));
                break;
            }
            self.counters
                .delete_retries
                .fetch_add(retry.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                queue = %self.queue.name, messages = retry.len(), error = %retry[0].detail,
                retry_in_ms = delay.as_millis() as u64, "deleting failed; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.settings.retry_max);
            receipts = retry.into_iter().map(|f| f.receipt).collect();
        }
        undeleted
    }
}

/// The first reason in a batch that says a store permission is missing, and
/// how many messages it kept.
pub fn store_denied(settled: &[Settled]) -> Option<(&str, u64)> {
    let mut denied = settled.iter().filter_map(|s| match &s.settlement {
        Settlement::Kept {
            reason,
            kind: FailureKind::Denied,
        } => Some(reason.as_str()),
        _ => None,
    });
    let first = denied.next()?;
    Some((first, 1 + denied.count() as u64))
}
