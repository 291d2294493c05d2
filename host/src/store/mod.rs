//! The store stage: every message becomes an object in the archive, or
//! stays in its source. The rules, written against the narrow
//! [`ArchiveStore`] port (`s3.rs` implements it for real) so they can be
//! tested in memory:
//! - every PUT is conditional (`If-None-Match: *`): nothing is overwritten;
//! - a 412 whose object carries the same `sqs-message-id` is this message,
//!   stored before (a redelivery): it counts as stored;
//! - a name collision (same key, other message) stores the message under
//!   [`alternate_key`], never over the existing object;
//! - a message the component rejects is stored under the quarantine prefix
//!   with the reason (`quarantine.rs`); if that fails it stays in its source;
//! - transient store errors are retried with backoff for as long as the host
//!   runs; on shutdown, unstored messages are released for other consumers;
//! - in a FIFO queue, a message group is stored in order and stops at its
//!   first failure, so a later message never overtakes an earlier one.
//!
//! [`StoreStage`] applies them to a batch of routed messages
//! (`stage.rs`); what then happens to each message in its source is the
//! settle stage's (`crate::settle`).

use std::future::Future;
use std::time::Duration;

use audit_archiver_transform::alternate_key;

pub use crate::aws::FailureKind;
use metadata as meta;

pub mod metadata;
pub mod quarantine;
pub mod s3;
mod stage;

pub use quarantine::quarantine_key;
pub use stage::{Origin, StoreStage, Stored};

/// The quarantine prefix when `--quarantine-prefix` is not given.
pub const DEFAULT_QUARANTINE_PREFIX: &str = "_quarantine/";

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

/// Settings of the store stage.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Prefix of quarantine keys, e.g. `_quarantine/`.
    pub quarantine_prefix: String,
    /// First retry delay of a transient store error; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
}

impl StoreSettings {
    /// The store stage of a command: quarantine keys under
    /// `quarantine_prefix` (`--quarantine-prefix`, validated), the retry
    /// timings every writer uses.
    pub fn with_quarantine_prefix(quarantine_prefix: String) -> Self {
        Self {
            quarantine_prefix,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(20),
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self::with_quarantine_prefix(DEFAULT_QUARANTINE_PREFIX.into())
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
