//! The S3 sink: the only module that calls S3. Conditional PUTs
//! (`If-None-Match: *`) with a SHA-256 checksum and the message's metadata,
//! `HeadObject` to identify what holds a key, `HeadBucket` at start-up, and the
//! checkpoints of `backfill` (a conditional PUT and a listing of the state prefix).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode, ServerSideEncryption, StorageClass};
use aws_smithy_types::DateTime;
use sha2::{Digest, Sha256};

use crate::aws::{classify, describe, http_status};
use crate::store::{ArchiveObject, ArchiveStore, PutOutcome, StoreError};

/// Object settings applied to every PUT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectOptions {
    /// `--sse`: `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// `--sse-kms-key-id`.
    pub sse_kms_key_id: Option<String>,
    /// `--expected-bucket-owner`: the account that must own the bucket.
    pub expected_bucket_owner: Option<String>,
    /// `--storage-class`, e.g. `STANDARD_IA`, `GLACIER_IR`.
    pub storage_class: Option<String>,
    /// `--object-lock-mode` (`GOVERNANCE` or `COMPLIANCE`) and
    /// `--object-lock-retain-days`.
    pub object_lock: Option<(String, u32)>,
}

/// The archive bucket.
#[derive(Debug, Clone)]
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
    options: ObjectOptions,
    /// Told of every object stored, for the sealer, when sealing is on.
    recorder: Option<std::sync::Arc<dyn StoredObjects>>,
}

/// Told of every object an archive creates (the sealer's manifest,
/// `seal/manifest.rs`): the store stage knows nothing of digests.
pub trait StoredObjects: Send + Sync + std::fmt::Debug {
    /// `key` was created with `body`, whose SHA-256 is `sha256`, at `now_ms`.
    fn stored(&self, key: &str, body: &[u8], sha256: &[u8], now_ms: i64);
}

/// The bucket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// No such bucket at this endpoint.
    #[error("bucket {0:?} does not exist (check --bucket / S3_BUCKET_NAME, --region and --endpoint-url)")]
    NotFound(String),
    /// Access denied, or owned by another account.
    #[error("access to bucket {0:?} is denied (check the credentials, the IAM policy in docs/iam.md, and --expected-bucket-owner)")]
    Denied(String),
    /// Any other failure.
    #[error("cannot reach bucket {bucket:?}: {detail}")]
    Other {
        /// The bucket.
        bucket: String,
        /// What failed.
        detail: String,
    },
}

/// Checks that `bucket` exists and answers (a `HeadBucket`, with the
/// expected owner when one is set): the start-up check of the archiver and of
/// the read commands.
pub(crate) async fn check_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    expected_bucket_owner: Option<String>,
) -> Result<(), BucketError> {
    let result = client
        .head_bucket()
        .bucket(bucket)
        .set_expected_bucket_owner(expected_bucket_owner)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(error) => match http_status(&error) {
            Some(404) => Err(BucketError::NotFound(bucket.to_string())),
            Some(403) => Err(BucketError::Denied(bucket.to_string())),
            _ => Err(BucketError::Other {
                bucket: bucket.to_string(),
                detail: describe(&error),
            }),
        },
    }
}

impl S3Archive {
    /// A sink writing to `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: String, options: ObjectOptions) -> Self {
        Self {
            client,
            bucket,
            options,
            recorder: None,
        }
    }

    /// Tells `recorder` of every object this archive stores.
    pub fn record_into(&mut self, recorder: std::sync::Arc<dyn StoredObjects>) {
        self.recorder = Some(recorder);
    }

    /// The client, the bucket and its expected owner, for a reader of the
    /// same bucket ([`crate::read::reader::ArchiveReader::of`]).
    pub fn parts(&self) -> (&aws_sdk_s3::Client, &str, Option<&str>) {
        (
            &self.client,
            &self.bucket,
            self.options.expected_bucket_owner.as_deref(),
        )
    }

    /// Checks at start-up that the bucket exists and is reachable.
    pub async fn check_bucket(&self) -> Result<(), BucketError> {
        check_bucket(
            &self.client,
            &self.bucket,
            self.options.expected_bucket_owner.clone(),
        )
        .await
    }

    fn failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        action: &str,
        key: &str,
        error: &SdkError<E, HttpResponse>,
    ) -> StoreError {
        StoreError {
            kind: classify(error),
            detail: format!("{action} s3://{}/{key}: {}", self.bucket, describe(error)),
        }
    }
}

impl S3Archive {
    /// Stores a small state object (a checkpoint, a manifest segment) only
    /// if nothing exists under `key`, with the bucket's encryption settings
    /// (no retention: state may be expired).
    pub async fn put_state_if_absent(
        &self,
        key: &str,
        body: &str,
    ) -> Result<PutOutcome, StoreError> {
        let sha256 = Sha256::digest(body.as_bytes());
        let request = self.conditional_put(key, body.as_bytes().to_vec(), &sha256);
        self.send_conditional(request, key).await
    }

    /// Stores a digest (gzipped JSON) only if nothing exists under `key`,
    /// with its signature in user metadata, the bucket's encryption
    /// settings and Object Lock retention, as every archived object.
    pub async fn put_digest_if_absent(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: Vec<(&'static str, String)>,
    ) -> Result<PutOutcome, StoreError> {
        let sha256 = Sha256::digest(&body);
        let mut request = self
            .conditional_put(key, body, &sha256)
            .content_encoding("gzip");
        for (name, value) in metadata {
            request = request.metadata(name, value);
        }
        let request = self.with_retention(request);
        self.send_conditional(request, key).await
    }

    /// Every key under `prefix` (ListObjectsV2, all pages).
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .set_expected_bucket_owner(self.options.expected_bucket_owner.clone())
                .send()
                .await
                .map_err(|error| self.failure("ListObjectsV2", prefix, &error))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(keys);
            }
        }
    }
}

impl S3Archive {
    /// A PUT of JSON `body` under `key` that succeeds only if nothing is
    /// there (`If-None-Match: *`), with `sha256` (the body's) as checksum,
    /// the expected owner and the bucket's encryption: every PUT the host
    /// makes.
    fn conditional_put(&self, key: &str, body: Vec<u8>, sha256: &[u8]) -> PutObjectFluentBuilder {
        let checksum = aws_smithy_types::base64::encode(sha256);
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type("application/json")
            // The algorithm header too: S3 demands it (or Content-MD5) for
            // Object Lock, and the SDK then sends our value as is.
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(checksum)
            .set_expected_bucket_owner(self.options.expected_bucket_owner.clone())
            .body(ByteStream::from(body));
        if let Some(sse) = &self.options.sse {
            request = request
                .server_side_encryption(ServerSideEncryption::from(sse.as_str()))
                .set_ssekms_key_id(self.options.sse_kms_key_id.clone());
        }
        request
    }

    /// Storage class and Object Lock retention: what archived objects and
    /// digests are written with, and state is not.
    fn with_retention(&self, mut request: PutObjectFluentBuilder) -> PutObjectFluentBuilder {
        if let Some(class) = &self.options.storage_class {
            request = request.storage_class(StorageClass::from(class.as_str()));
        }
        if let Some((mode, days)) = &self.options.object_lock {
            let until = chrono::Utc::now() + chrono::Duration::days(i64::from(*days));
            request = request
                .object_lock_mode(ObjectLockMode::from(mode.as_str()))
                .object_lock_retain_until_date(DateTime::from_secs(until.timestamp()));
        }
        request
    }

    /// Sends a conditional PUT: created, or already there (HTTP 412).
    async fn send_conditional(
        &self,
        request: PutObjectFluentBuilder,
        key: &str,
    ) -> Result<PutOutcome, StoreError> {
        match request.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(error) if http_status(&error) == Some(412) => Ok(PutOutcome::AlreadyExists),
            Err(error) => Err(self.failure("PutObject", key, &error)),
        }
    }
}

impl ArchiveStore for S3Archive {
    async fn put_if_absent(&self, object: &ArchiveObject<'_>) -> Result<PutOutcome, StoreError> {
        let body = object.body.as_bytes();
        let sha256 = Sha256::digest(body);
        let mut request = self
            .conditional_put(&object.key, body.to_vec(), &sha256)
            .metadata(crate::store::metadata::MESSAGE_ID, object.message_id);
        for (name, value) in &object.metadata {
            request = request.metadata(*name, value);
        }
        let request = self.with_retention(request);
        let outcome = self.send_conditional(request, &object.key).await?;
        if let (PutOutcome::Created, Some(recorder)) = (&outcome, &self.recorder) {
            let now = chrono::Utc::now().timestamp_millis();
            recorder.stored(&object.key, body, &sha256, now);
        }
        Ok(outcome)
    }

    async fn stored_message_id(&self, key: &str) -> Result<Option<String>, StoreError> {
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_expected_bucket_owner(self.options.expected_bucket_owner.clone())
            .send()
            .await;
        match result {
            Ok(head) => Ok(head
                .metadata()
                .and_then(|m| m.get(crate::store::metadata::MESSAGE_ID))
                .cloned()),
            Err(error) if http_status(&error) == Some(404) => Ok(None),
            Err(error) => Err(self.failure("HeadObject", key, &error)),
        }
    }
}
