//! Sealing: the stage after storing. For every chain of the archive (each
//! tenant, and the quarantine), one signed digest per period lists the
//! SHA-256 of every object delivered in it and links to the digest before
//! (AWS CloudTrail's log file integrity model), so that any later change —
//! an object replaced, deleted or added, a digest removed or rewritten —
//! is provable by `verify`, and by any auditor with the public key.
//!
//! - [`digest`]: the file format, keys, periods and the string to sign;
//! - [`signer`]: a local PEM key or a KMS key, and the auditor's public key;
//! - [`kms`]: the only module that calls KMS;
//! - [`manifest`]: what the writers stored, so the sealer need not read it back;
//! - [`sealer`]: writes the digests (race- and crash-safe);
//! - [`validate`]: proves the chains for `verify`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub mod digest;
pub mod kms;
pub mod manifest;
pub mod sealer;
pub mod signer;
pub mod validate;

pub use sealer::{DigestStore, Fetched, Listed, SealError, SealSettings, Sealed, Sealer};
pub use signer::{PublicKey, Signer};

use crate::aws::Clients;
use crate::read::reader::ArchiveReader;
use crate::store::s3::S3Archive;
use crate::store::PutOutcome;

/// Which key signs the digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKey {
    /// `--digest-key-file`: a PEM private key.
    File(PathBuf),
    /// `--digest-kms-key-id`: an asymmetric KMS key.
    Kms(String),
}

/// Validated sealing settings: sealing is on when a key is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealConfig {
    /// The signing key.
    pub key: SigningKey,
    /// Prefix, period, delay.
    pub settings: SealSettings,
}

impl SealConfig {
    /// The signer, its key read or its client built; an unusable key file
    /// is a start-up error naming the flag.
    pub fn signer(&self, clients: &Clients) -> Result<Signer, signer::KeyError> {
        Ok(match &self.key {
            SigningKey::File(path) => Signer::Local(signer::LocalKey::from_pem_file(path)?),
            SigningKey::Kms(key_id) => {
                Signer::Kms(kms::KmsKey::new(clients.kms.clone(), key_id.clone()))
            }
        })
    }
}

/// The archive bucket as the sealer and the validator use it: listing and
/// reading through [`ArchiveReader`], writing digests through [`S3Archive`]
/// (none for `verify`, which only reads).
#[derive(Debug, Clone)]
pub struct BucketDigests {
    reader: ArchiveReader,
    writer: Option<S3Archive>,
}

impl BucketDigests {
    /// Reads (and, with a writer, seals) `reader`'s bucket.
    pub fn new(reader: ArchiveReader, writer: Option<S3Archive>) -> Self {
        Self { reader, writer }
    }
}

impl BucketDigests {
    fn writer(&self) -> Result<&S3Archive, SealError> {
        self.writer
            .as_ref()
            .ok_or_else(|| SealError::Store("this command only reads".into()))
    }
}

impl DigestStore for BucketDigests {
    fn bucket(&self) -> &str {
        self.reader.bucket()
    }

    async fn folders(&self) -> Result<Vec<String>, SealError> {
        let top = self.reader.top_level().await.map_err(store_error)?;
        Ok(top.prefixes)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, SealError> {
        self.list_after(prefix, "").await
    }

    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<Listed>, SealError> {
        let mut pages = self.reader.keys_after(prefix, start_after);
        let mut listed = Vec::new();
        while let Some(page) = pages.next_page().await.map_err(store_error)? {
            listed.extend(page.into_iter().map(|object| Listed {
                last_modified_ms: object.last_modified_ms.unwrap_or_default(),
                key: object.key,
            }));
        }
        Ok(listed)
    }

    async fn read(&self, key: &str) -> Result<Option<Fetched>, SealError> {
        match self.reader.get(key).await {
            Ok(object) => Ok(Some(Fetched {
                body: object.body.map_err(|e| {
                    SealError::Store(format!("reading s3://{}/{key}: {e}", self.bucket()))
                })?,
                version_id: object.version_id,
                metadata: object.metadata,
            })),
            Err(error) if error.status == Some(404) => Ok(None),
            Err(error) => Err(store_error(error)),
        }
    }

    async fn put_state_if_absent(&self, key: &str, json: &str) -> Result<PutOutcome, SealError> {
        self.writer()?
            .put_state_if_absent(key, json)
            .await
            .map_err(|e| SealError::Store(e.detail))
    }

    async fn put_if_absent(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: Vec<(&'static str, String)>,
    ) -> Result<PutOutcome, SealError> {
        self.writer()?
            .put_digest_if_absent(key, body, metadata)
            .await
            .map_err(|e| SealError::Store(e.detail))
    }
}

fn store_error(error: crate::read::reader::ReadError) -> SealError {
    SealError::Store(error.to_string())
}

/// Now, epoch ms.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sealing beside a long-running writer (`run`, `backfill`): a background
/// task seals every chain whenever a period has closed; [`Sealing::finish`]
/// stops it and makes one last pass.
#[derive(Debug)]
pub struct Sealing {
    sealer: Arc<Sealer<BucketDigests>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sealing {
    /// Starts sealing in the background.
    pub fn start(sealer: Sealer<BucketDigests>) -> Sealing {
        let sealer = Arc::new(sealer);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(seal_periodically(sealer.clone(), stopped));
        Sealing { sealer, stop, task }
    }

    /// Stops the background task, seals what has closed by now, and returns
    /// everything this sealer did. Periods still open are sealed by the next
    /// pass of any sealer (`run`, the Lambda schedule, `seal`).
    pub async fn finish(self) -> Sealed {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Err(error) = self.sealer.seal_all(now_ms()).await {
            tracing::error!(%error, "the last sealing pass failed; `audit-archiver seal` or the next run completes it");
        }
        self.sealer.totals().await
    }
}

/// Seals every chain whenever a period has closed, until `stop` turns true.
/// A failed pass is logged and retried at the next tick; nothing it leaves
/// half-done needs repair.
async fn seal_periodically(
    sealer: Arc<Sealer<BucketDigests>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Often enough to seal soon after a period closes, never more than
    // once a period (a test's periods are seconds long).
    let tick = Duration::from_millis(sealer.settings().period_ms.clamp(1_000, 60_000) as u64);
    loop {
        if let Err(error) = sealer.seal_all(now_ms()).await {
            tracing::warn!(%error, "sealing pass failed; retrying at the next tick");
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
