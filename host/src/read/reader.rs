//! The archive bucket read back: the S3 calls of `verify` and `query`, and
//! nothing that writes. Listing (top-level tenants, one prefix's objects or
//! versions, page by page), `GetObject` with checksum validation on, and the
//! bucket's Object Lock configuration. `s3.rs` owns the writing side.

use std::collections::HashMap;

use aws_sdk_s3::types::{ChecksumMode, ObjectLockEnabled};

use crate::aws::{describe, http_status};
use crate::store::s3::BucketError;

/// A read failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} s3://{bucket}/{target}: {detail}")]
pub struct ReadError {
    /// The S3 action, e.g. `ListObjectVersions`.
    pub action: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The key or prefix.
    pub target: String,
    /// What failed (HTTP status, code and message).
    pub detail: String,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
}

impl ReadError {
    /// The IAM action that authorises the failed call.
    pub fn permission(&self) -> &'static str {
        match self.action {
            "ListObjectVersions" => "s3:ListBucketVersions",
            "ListObjectsV2" => "s3:ListBucket",
            _ => "s3:GetObject",
        }
    }
}

/// The archive bucket, read-only.
#[derive(Debug, Clone)]
pub struct ArchiveReader {
    client: aws_sdk_s3::Client,
    bucket: String,
    expected_bucket_owner: Option<String>,
}

/// What the top of the bucket holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopLevel {
    /// Common prefixes, e.g. `acme/`, `_quarantine/`.
    pub prefixes: Vec<String>,
    /// Keys with no `/` at all (never written by the archiver).
    pub keys: Vec<String>,
}

/// One version or delete marker of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The version id (`null` on a bucket that was never versioned).
    pub version_id: String,
    /// A delete marker rather than an object.
    pub delete_marker: bool,
    /// The current version.
    pub is_latest: bool,
    /// When it was written, epoch ms.
    pub last_modified_ms: Option<i64>,
}

/// Every version of one key, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersions {
    /// The key.
    pub key: String,
    /// Its versions and delete markers, newest first.
    pub versions: Vec<Version>,
}

impl KeyVersions {
    /// The current entry is a delete marker: the key was deleted.
    pub fn deleted(&self) -> bool {
        self.versions
            .iter()
            .find(|v| v.is_latest)
            .or(self.versions.first())
            .is_some_and(|v| v.delete_marker)
    }
}

/// An object as `GetObject` returned it.
#[derive(Debug, Clone)]
pub struct FetchedObject {
    /// User metadata (names lower-case, without `x-amz-meta-`).
    pub metadata: HashMap<String, String>,
    /// The stored SHA-256 checksum (base64), when there is one.
    pub checksum_sha256: Option<String>,
    /// The version read, on a versioned bucket.
    pub version_id: Option<String>,
    /// The Object Lock retention: mode and retain-until (epoch ms).
    pub retention: Option<(String, i64)>,
    /// The body, or why it could not be read in full (a checksum mismatch
    /// found by the SDK's validation shows here).
    pub body: Result<Vec<u8>, String>,
}

impl ArchiveReader {
    /// A reader of `bucket`.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: String,
        expected_bucket_owner: Option<String>,
    ) -> Self {
        Self {
            client,
            bucket,
            expected_bucket_owner,
        }
    }

    /// The same bucket as `archive`, read-only, with the same expected owner.
    pub fn of(archive: &crate::store::s3::S3Archive) -> Self {
        let (client, bucket, owner) = archive.parts();
        Self::new(
            client.clone(),
            bucket.to_string(),
            owner.map(str::to_string),
        )
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn error<E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        action: &'static str,
        target: &str,
        error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> ReadError {
        ReadError {
            action,
            bucket: self.bucket.clone(),
            target: target.to_string(),
            detail: describe(error),
            status: http_status(error),
        }
    }

    /// Checks that the bucket exists and can be listed.
    pub async fn check_bucket(&self) -> Result<(), BucketError> {
        crate::store::s3::check_bucket(
            &self.client,
            &self.bucket,
            self.expected_bucket_owner.clone(),
        )
        .await
    }

    /// Whether Object Lock is enabled on the bucket; `None` when the
    /// configuration cannot be read (e.g. no `s3:GetBucketObjectLockConfiguration`).
    pub async fn object_lock_enabled(&self) -> Option<bool> {
        let result = self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await;
        match result {
            Ok(output) => Some(
                output
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled),
            ),
            Err(error)
                if aws_sdk_s3::error::ProvideErrorMetadata::code(&error)
                    == Some("ObjectLockConfigurationNotFoundError") =>
            {
                Some(false)
            }
            Err(error) => {
                tracing::warn!(bucket = %self.bucket, error = %describe(&error), "cannot read the Object Lock configuration; retention is not checked");
                None
            }
        }
    }

    /// The top-level prefixes and keys (`ListObjectsV2` with delimiter `/`).
    pub async fn top_level(&self) -> Result<TopLevel, ReadError> {
        let mut top = TopLevel::default();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .delimiter("/")
                .set_continuation_token(token)
                .set_expected_bucket_owner(self.expected_bucket_owner.clone())
                .send()
                .await
                .map_err(|e| self.error("ListObjectsV2", "", &e))?;
            top.prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            top.keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() || page.is_truncated() != Some(true) {
                return Ok(top);
            }
        }
    }

    /// Whether any key starts with `prefix`.
    pub async fn has_prefix(&self, prefix: &str) -> Result<bool, ReadError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_keys(1)
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await
            .map_err(|e| self.error("ListObjectsV2", prefix, &e))?;
        Ok(!page.contents().is_empty())
    }

    /// The keys under `prefix`, page by page (`ListObjectsV2`).
    pub fn keys(&self, prefix: &str) -> KeyPages {
        self.keys_after(prefix, "")
    }

    /// The objects under `prefix` whose keys sort after `start_after`,
    /// page by page.
    pub fn keys_after(&self, prefix: &str, start_after: &str) -> KeyPages {
        KeyPages {
            reader: self.clone(),
            prefix: prefix.to_string(),
            start_after: (!start_after.is_empty()).then(|| start_after.to_string()),
            token: None,
            done: false,
        }
    }

    /// Every version of every key under `prefix`, page by page
    /// (`ListObjectVersions`: one listing per prefix, not a call per object).
    pub fn versions(&self, prefix: &str) -> VersionPages {
        VersionPages {
            reader: self.clone(),
            prefix: prefix.to_string(),
            key_marker: None,
            version_marker: None,
            carry: None,
            done: false,
        }
    }

    /// The current version of `key`, with checksum validation on.
    pub async fn get(&self, key: &str) -> Result<FetchedObject, ReadError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await
            .map_err(|e| self.error("GetObject", key, &e))?;
        let metadata = output.metadata().cloned().unwrap_or_default();
        let checksum_sha256 = output.checksum_sha256().map(str::to_string);
        let version_id = output.version_id().map(str::to_string);
        let retention = match (
            output.object_lock_mode(),
            output.object_lock_retain_until_date(),
        ) {
            (Some(mode), Some(until)) => Some((
                mode.as_str().to_string(),
                until.to_millis().unwrap_or(i64::MAX),
            )),
            _ => None,
        };
        let body = match output.body.collect().await {
            Ok(bytes) => Ok(bytes.into_bytes().to_vec()),
            Err(error) => {
                let mut text = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                Err(text)
            }
        };
        Ok(FetchedObject {
            metadata,
            checksum_sha256,
            version_id,
            retention,
            body,
        })
    }

    /// The user metadata of `key` (`HeadObject`).
    pub async fn metadata(&self, key: &str) -> Result<HashMap<String, String>, ReadError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_expected_bucket_owner(self.expected_bucket_owner.clone())
            .send()
            .await
            .map_err(|e| self.error("HeadObject", key, &e))?;
        Ok(output.metadata().cloned().unwrap_or_default())
    }
}

/// A listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// The key.
    pub key: String,
    /// When it was written, epoch ms.
    pub last_modified_ms: Option<i64>,
}

/// `ListObjectsV2` of one prefix, a page at a time.
#[derive(Debug)]
pub struct KeyPages {
    reader: ArchiveReader,
    prefix: String,
    start_after: Option<String>,
    token: Option<String>,
    done: bool,
}

impl KeyPages {
    /// The next page of keys; `None` when the listing is over.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ListedObject>>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let reader = &self.reader;
        let page = reader
            .client
            .list_objects_v2()
            .bucket(&reader.bucket)
            .prefix(&self.prefix)
            .set_start_after(self.start_after.clone())
            .set_continuation_token(self.token.take())
            .set_expected_bucket_owner(reader.expected_bucket_owner.clone())
            .send()
            .await
            .map_err(|e| reader.error("ListObjectsV2", &self.prefix, &e))?;
        self.token = page.next_continuation_token().map(str::to_string);
        self.done = self.token.is_none() || page.is_truncated() != Some(true);
        Ok(Some(
            page.contents()
                .iter()
                .filter_map(|o| {
                    Some(ListedObject {
                        key: o.key()?.to_string(),
                        last_modified_ms: o.last_modified().and_then(|t| t.to_millis().ok()),
                    })
                })
                .collect(),
        ))
    }
}

/// `ListObjectVersions` of one prefix, a page at a time, grouped by key. A
/// key whose versions straddle two pages is held back until it is whole.
#[derive(Debug)]
pub struct VersionPages {
    reader: ArchiveReader,
    prefix: String,
    key_marker: Option<String>,
    version_marker: Option<String>,
    carry: Option<KeyVersions>,
    done: bool,
}

impl VersionPages {
    /// The next keys, each with all its versions; `None` when the listing is over.
    pub async fn next_page(&mut self) -> Result<Option<Vec<KeyVersions>>, ReadError> {
        if self.done {
            return Ok(self.carry.take().map(|last| vec![last]));
        }
        let reader = &self.reader;
        let page = reader
            .client
            .list_object_versions()
            .bucket(&reader.bucket)
            .prefix(&self.prefix)
            .set_key_marker(self.key_marker.take())
            .set_version_id_marker(self.version_marker.take())
            .set_expected_bucket_owner(reader.expected_bucket_owner.clone())
            .send()
            .await
            .map_err(|e| reader.error("ListObjectVersions", &self.prefix, &e))?;
        let millis = |t: Option<&aws_smithy_types::DateTime>| t.and_then(|t| t.to_millis().ok());
        let mut entries: Vec<(String, Version)> = Vec::new();
        for v in page.versions() {
            if let Some(key) = v.key() {
                entries.push((
                    key.to_string(),
                    Version {
                        version_id: v.version_id().unwrap_or("null").to_string(),
                        delete_marker: false,
                        is_latest: v.is_latest().unwrap_or(false),
                        last_modified_ms: millis(v.last_modified()),
                    },
                ));
            }
        }
        for m in page.delete_markers() {
            if let Some(key) = m.key() {
                entries.push((
                    key.to_string(),
                    Version {
                        version_id: m.version_id().unwrap_or("null").to_string(),
                        delete_marker: true,
                        is_latest: m.is_latest().unwrap_or(false),
                        last_modified_ms: millis(m.last_modified()),
                    },
                ));
            }
        }
        // Versions and delete markers come in two lists: merge them back
        // into key order, newest first within a key.
        entries.sort_by(|(a, va), (b, vb)| {
            a.cmp(b)
                .then(vb.is_latest.cmp(&va.is_latest))
                .then(vb.last_modified_ms.cmp(&va.last_modified_ms))
        });
        let mut keys: Vec<KeyVersions> = Vec::new();
        if let Some(carry) = self.carry.take() {
            keys.push(carry);
        }
        for (key, version) in entries {
            match keys.last_mut() {
                Some(last) if last.key == key => last.versions.push(version),
                _ => keys.push(KeyVersions {
                    key,
                    versions: vec![version],
                }),
            }
        }
        if page.is_truncated() == Some(true) {
            self.key_marker = page.next_key_marker().map(str::to_string);
            self.version_marker = page.next_version_id_marker().map(str::to_string);
            self.done = self.key_marker.is_none();
            // The last key may go on in the next page.
            if !self.done {
                self.carry = keys.pop();
            }
        } else {
            self.done = true;
        }
        Ok(Some(keys))
    }
}
