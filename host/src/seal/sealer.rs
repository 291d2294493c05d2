//! The sealer: for each chain (a top-level folder of the bucket: a tenant,
//! or the quarantine), writes one signed digest per closed period listing
//! every object S3 says was delivered in it, chained to the digest before.
//!
//! What makes it safe to run anywhere, any number of times:
//! - An object's delivery time is its `LastModified`, stamped by S3 and never
//!   changed (nothing is overwritten), so each object falls in exactly one
//!   period. One that appears after its period was sealed (a PUT still in
//!   flight past the delay) is listed by the next digest instead.
//! - A period is sealed only once it closed (`end + delay <= now`), and its
//!   digest is written with `If-None-Match: *` under a key named by the
//!   period: two sealers cannot fork a chain; the one that loses reads the
//!   winner's digest and continues from it. A sealer killed at any point
//!   leaves either no digest or a whole one.
//! - Empty periods get a digest too: it proves nothing was delivered.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio::sync::Mutex;

use super::digest::{
    chain_prefix, digest_key, digest_key_end, event_times, format_event_time, format_instant, gzip,
    sha256_hex, string_to_sign, DigestFile, LogFile, Period, StoredDigest, HASH_ALGORITHM,
};
use super::manifest::{self, Entry, Recorder};
use super::signer::Signer;
use crate::store::metadata;
use crate::store::PutOutcome;

/// Objects read at once while sealing a period.
const READ_WINDOW: usize = 16;
/// The largest digest JSON the sealer reads back (a million listed objects).
pub const MAX_DIGEST_JSON: u64 = 512 << 20;

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key.
    pub key: String,
    /// Its `LastModified`, epoch ms: when it was delivered.
    pub last_modified_ms: i64,
}

/// An object read in full.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The stored bytes.
    pub body: Vec<u8>,
    /// The version read, on a versioned bucket.
    pub version_id: Option<String>,
    /// User metadata.
    pub metadata: HashMap<String, String>,
}

/// The bucket as the sealer and the validator use it: the port the S3
/// adapter implements, and an in-memory store in the tests.
pub trait DigestStore: Send + Sync {
    /// The bucket's name, as digests record it.
    fn bucket(&self) -> &str;
    /// The top-level folders, e.g. `acme/`, `_quarantine/`.
    fn folders(&self) -> impl Future<Output = Result<Vec<String>, SealError>> + Send;
    /// Every object under `prefix`, in key order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<Listed>, SealError>> + Send;
    /// Every object under `prefix` whose key sorts after `start_after`.
    fn list_after(
        &self,
        prefix: &str,
        start_after: &str,
    ) -> impl Future<Output = Result<Vec<Listed>, SealError>> + Send;
    /// The current object under `key`; `None` when there is none.
    fn read(&self, key: &str) -> impl Future<Output = Result<Option<Fetched>, SealError>> + Send;
    /// Writes a state object (a manifest segment: JSON, no retention, so
    /// it may expire) only if nothing exists under `key`.
    fn put_state_if_absent(
        &self,
        key: &str,
        json: &str,
    ) -> impl Future<Output = Result<PutOutcome, SealError>> + Send;
    /// Writes a digest only if nothing exists under `key`.
    fn put_if_absent(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: Vec<(&'static str, String)>,
    ) -> impl Future<Output = Result<PutOutcome, SealError>> + Send;
}

/// Sealing failed; the chain is left as it was and the next attempt
/// continues from its newest digest.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Reading or writing the bucket failed.
    #[error("{0}")]
    Store(String),
    /// The signer failed.
    #[error(transparent)]
    Sign(#[from] super::signer::SignError),
}

/// How sealing is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSettings {
    /// Where digests go, e.g. `_digest/`.
    pub digest_prefix: String,
    /// Length of a period, ms.
    pub period_ms: i64,
    /// How long after its end a period closes, ms.
    pub delay_ms: i64,
    /// Top-level folders that are no chain (the state prefix's), besides
    /// the digest prefix's own.
    pub not_chains: Vec<String>,
    /// Where writers keep what they stored for the sealer
    /// ([`super::manifest`]); `None`: every object is read back.
    pub manifest_prefix: Option<String>,
}

impl SealSettings {
    /// The top-level folders that hold archived objects and so form chains.
    pub fn chains(&self, folders: &[String]) -> Vec<String> {
        let digest_top = top_folder(&self.digest_prefix);
        folders
            .iter()
            .filter(|folder| **folder != digest_top && !self.not_chains.contains(folder))
            .map(|folder| folder.trim_end_matches('/').to_string())
            .filter(|chain| !chain.is_empty())
            .collect()
    }

    /// The end of the newest period closed at `now_ms`.
    pub fn closed_until(&self, now_ms: i64) -> i64 {
        Period::containing(now_ms - self.delay_ms, self.period_ms).start_ms
    }
}

/// The first folder of a prefix, with its `/` (`_digest/` of `_digest/x/`).
pub fn top_folder(prefix: &str) -> String {
    prefix
        .split_inclusive('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// What one sealing pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sealed {
    /// Chains looked at.
    pub chains: u64,
    /// Digests this sealer wrote.
    pub digests_written: u64,
    /// Digests another sealer had written first (continued from).
    pub digests_found: u64,
    /// Objects listed in the digests this sealer wrote.
    pub objects_listed: u64,
}

impl Sealed {
    fn add(&mut self, other: &Sealed) {
        self.chains += other.chains;
        self.digests_written += other.digests_written;
        self.digests_found += other.digests_found;
        self.objects_listed += other.objects_listed;
    }
}

/// The newest digest of a chain, as the next one links to it.
#[derive(Debug, Clone)]
struct Head {
    key: String,
    period: Period,
    json_sha256: String,
    signature: String,
    listed: HashSet<String>,
}

/// Writes the digests of every chain in a bucket.
#[derive(Debug)]
pub struct Sealer<S> {
    store: S,
    signer: Signer,
    settings: SealSettings,
    /// Each chain's newest digest as last seen, so a pass with nothing
    /// closed makes no request for that chain.
    heads: Mutex<HashMap<String, Head>>,
    /// Everything this sealer did, for the command's summary.
    totals: Mutex<Sealed>,
    /// What this process's writer stored, to flush before sealing.
    recorder: Option<Arc<Recorder>>,
}

impl<S: DigestStore> Sealer<S> {
    /// A sealer of `store`'s chains.
    pub fn new(store: S, signer: Signer, settings: SealSettings) -> Self {
        Self {
            store,
            signer,
            heads: Mutex::new(HashMap::new()),
            totals: Mutex::new(Sealed::default()),
            recorder: settings
                .manifest_prefix
                .clone()
                .map(|prefix| Arc::new(Recorder::new(prefix, settings.period_ms))),
            settings,
        }
    }

    /// The recorder a writer sharing this sealer's process records into.
    pub fn recorder(&self) -> Option<Arc<Recorder>> {
        self.recorder.clone()
    }

    /// Writes what the writer recorded since the last flush; what cannot be
    /// written is kept for the next flush (and the sealer reads those
    /// objects back meanwhile).
    pub async fn flush_manifest(&self) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let mut failed = Vec::new();
        for (key, json) in recorder.take() {
            if let Err(error) = self.store.put_state_if_absent(&key, &json).await {
                tracing::warn!(segment = %key, %error, "cannot write a manifest segment; kept for the next flush");
                failed.push((key, json));
            }
        }
        recorder.restore(failed);
    }

    /// Digests written and found, objects listed, over every pass so far
    /// (`chains` is the last pass's).
    pub async fn totals(&self) -> Sealed {
        self.totals.lock().await.clone()
    }

    /// The settings.
    pub fn settings(&self) -> &SealSettings {
        &self.settings
    }

    /// Seals every closed period of every chain in the bucket, up to `now_ms`.
    /// A chain that fails is logged and the others are still sealed; the
    /// first failure is returned.
    pub async fn seal_all(&self, now_ms: i64) -> Result<Sealed, SealError> {
        self.flush_manifest().await;
        let folders = self.store.folders().await?;
        let mut total = Sealed::default();
        let mut first_error = None;
        for chain in self.settings.chains(&folders) {
            match self.seal_chain(&chain, now_ms).await {
                Ok(sealed) => total.add(&sealed),
                Err(error) => {
                    tracing::error!(chain = %chain, %error, "sealing failed; the next pass continues from the newest digest");
                    first_error.get_or_insert(error);
                }
            }
        }
        {
            let mut totals = self.totals.lock().await;
            let chains = total.chains;
            totals.add(&total);
            totals.chains = chains;
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(total),
        }
    }

    /// Seals every closed period of `chain` up to `now_ms`.
    pub async fn seal_chain(&self, chain: &str, now_ms: i64) -> Result<Sealed, SealError> {
        let mut sealed = Sealed {
            chains: 1,
            ..Sealed::default()
        };
        let closed_until = self.settings.closed_until(now_ms);
        let cached = self.heads.lock().await.get(chain).cloned();
        if cached
            .as_ref()
            .is_some_and(|head| head.period.end_ms >= closed_until)
        {
            return Ok(sealed);
        }
        let mut head = match cached {
            Some(head) => Some(head),
            None => self.newest_digest(chain).await?,
        };
        let next_start = head.as_ref().map(|h| h.period.end_ms);
        if next_start.is_some_and(|start| start >= closed_until) {
            self.remember(chain, head).await;
            return Ok(sealed);
        }

        let objects = self.store.list(&format!("{chain}/")).await?;
        let first = match next_start {
            Some(start) => Period {
                start_ms: start,
                end_ms: start + self.settings.period_ms,
            },
            None => match objects.iter().map(|o| o.last_modified_ms).min() {
                Some(oldest) => Period::containing(oldest, self.settings.period_ms),
                // Nothing delivered yet: the chain starts with its first object.
                None => return Ok(sealed),
            },
        };
        let manifest = self.manifest(chain, first.start_ms).await?;
        // Delivered into the newest sealed period after it was sealed.
        let mut late: Vec<&Listed> = match &head {
            Some(h) => objects
                .iter()
                .filter(|o| {
                    o.last_modified_ms < first.start_ms
                        && o.last_modified_ms >= h.period.start_ms
                        && !h.listed.contains(&o.key)
                })
                .collect(),
            None => Vec::new(),
        };
        let mut period = first;
        while period.end_ms <= closed_until {
            let mut members: Vec<&Listed> = std::mem::take(&mut late);
            members.extend(
                objects
                    .iter()
                    .filter(|o| period.contains(o.last_modified_ms)),
            );
            let (next, written) = self
                .seal_period(chain, period, head.as_ref(), &members, &manifest)
                .await?;
            if written {
                sealed.digests_written += 1;
                sealed.objects_listed += next.listed.len() as u64;
            } else {
                sealed.digests_found += 1;
            }
            head = Some(next);
            period = period.next();
        }
        self.remember(chain, head).await;
        Ok(sealed)
    }

    async fn remember(&self, chain: &str, head: Option<Head>) {
        if let Some(head) = head {
            self.heads.lock().await.insert(chain.to_string(), head);
        }
    }

    /// Writes the digest of `period`, or reads the one already there.
    /// Returns the new head and whether this sealer wrote it.
    async fn seal_period(
        &self,
        chain: &str,
        period: Period,
        previous: Option<&Head>,
        members: &[&Listed],
        manifest: &HashMap<String, Entry>,
    ) -> Result<(Head, bool), SealError> {
        let key = digest_key(&self.settings.digest_prefix, chain, period.end_ms);
        let bucket = self.store.bucket().to_string();
        let owned: Vec<Listed> = members.iter().map(|m| (*m).clone()).collect();
        let read: Vec<Result<Option<LogFile>, SealError>> = stream::iter(owned)
            .map(|object| async move { self.log_file(&object, manifest).await })
            .buffer_unordered(READ_WINDOW)
            .collect()
            .await;
        let mut log_files = Vec::with_capacity(read.len());
        for file in read {
            log_files.extend(file?);
        }
        log_files.sort_by(|a, b| a.s3_object.cmp(&b.s3_object));
        let times = |pick: fn(&LogFile) -> &Option<String>| {
            log_files
                .iter()
                .filter_map(|f| pick(f).clone())
                .collect::<Vec<_>>()
        };
        let end_time = format_instant(period.end_ms);
        let file = DigestFile {
            digest_start_time: format_instant(period.start_ms),
            digest_end_time: end_time.clone(),
            digest_s3_bucket: bucket.clone(),
            digest_s3_object: key.clone(),
            digest_public_key_fingerprint: self.signer.fingerprint(),
            digest_signing_key_id: self.signer.key_id(),
            digest_signature_algorithm: self.signer.algorithm().to_string(),
            // RFC 3339 at one precision in UTC sorts as time does.
            newest_event_time: times(|f| &f.newest_event_time).into_iter().max(),
            oldest_event_time: times(|f| &f.oldest_event_time).into_iter().min(),
            previous_digest_s3_bucket: previous.map(|_| bucket.clone()),
            previous_digest_s3_object: previous.map(|h| h.key.clone()),
            previous_digest_hash_value: previous.map(|h| h.json_sha256.clone()),
            previous_digest_hash_algorithm: previous.map(|_| HASH_ALGORITHM.to_string()),
            previous_digest_signature: previous.map(|h| h.signature.clone()),
            log_files,
        };
        let json = serde_json::to_vec(&file).expect("a digest serialises");
        let json_sha256 = sha256_hex(&json);
        let to_sign = string_to_sign(
            &end_time,
            &bucket,
            &key,
            &json_sha256,
            previous.map(|h| h.signature.as_str()),
        );
        let signature = self.signer.sign(to_sign.as_bytes()).await?;
        let signature = super::digest::hex(&signature);
        let metadata = vec![
            (metadata::SIGNATURE, signature.clone()),
            (
                metadata::SIGNATURE_ALGORITHM,
                self.signer.algorithm().to_string(),
            ),
        ];
        match self
            .store
            .put_if_absent(&key, gzip(&json), metadata)
            .await?
        {
            PutOutcome::Created => {
                tracing::info!(
                    chain,
                    digest = %key,
                    period_start = %file.digest_start_time,
                    period_end = %end_time,
                    objects = file.log_files.len(),
                    "digest sealed"
                );
                let listed = file.log_files.into_iter().map(|f| f.s3_object).collect();
                Ok((
                    Head {
                        key,
                        period,
                        json_sha256,
                        signature,
                        listed,
                    },
                    true,
                ))
            }
            PutOutcome::AlreadyExists => {
                tracing::info!(chain, digest = %key, "digest already sealed by another sealer; continuing from it");
                let head = self
                    .read_head(chain, &key)
                    .await?
                    .ok_or_else(|| SealError::Store(format!("{key} vanished after a 412")))?;
                Ok((head, false))
            }
        }
    }

    /// What the writers recorded for `chain` from the period before
    /// `from_ms` on: key -> entry.
    async fn manifest(
        &self,
        chain: &str,
        from_ms: i64,
    ) -> Result<HashMap<String, Entry>, SealError> {
        let Some(prefix) = &self.settings.manifest_prefix else {
            return Ok(HashMap::new());
        };
        let segments = self
            .store
            .list_after(
                &manifest::chain_prefix(prefix, chain),
                &manifest::period_key(prefix, chain, from_ms - self.settings.period_ms),
            )
            .await?;
        let mut entries = HashMap::new();
        for segment in segments {
            let Some(fetched) = self.store.read(&segment.key).await? else {
                continue;
            };
            match serde_json::from_slice::<Vec<Entry>>(&fetched.body).ok() {
                Some(list) => entries.extend(list.into_iter().map(|e| (e.key.clone(), e))),
                None => {
                    tracing::warn!(segment = %segment.key, "not a manifest segment; its objects are read back")
                }
            }
        }
        Ok(entries)
    }

    /// The entry of one delivered object, from the manifest when a writer
    /// recorded it, else read back; `None` if it is gone already.
    async fn log_file(
        &self,
        object: &Listed,
        manifest: &HashMap<String, Entry>,
    ) -> Result<Option<LogFile>, SealError> {
        if let Some(entry) = manifest.get(&object.key) {
            return Ok(Some(LogFile {
                s3_bucket: self.store.bucket().to_string(),
                s3_object: object.key.clone(),
                version_id: None,
                hash_value: entry.sha256.clone(),
                hash_algorithm: HASH_ALGORITHM.to_string(),
                oldest_event_time: entry
                    .event_times
                    .map(|(oldest, _)| format_event_time(oldest)),
                newest_event_time: entry
                    .event_times
                    .map(|(_, newest)| format_event_time(newest)),
            }));
        }
        let Some(fetched) = self.store.read(&object.key).await? else {
            tracing::warn!(key = %object.key, "listed but gone when read; not sealed");
            return Ok(None);
        };
        let times = event_times(&fetched.body);
        Ok(Some(LogFile {
            s3_bucket: self.store.bucket().to_string(),
            s3_object: object.key.clone(),
            version_id: fetched.version_id,
            hash_value: sha256_hex(&fetched.body),
            hash_algorithm: HASH_ALGORITHM.to_string(),
            oldest_event_time: times.map(|(oldest, _)| format_event_time(oldest)),
            newest_event_time: times.map(|(_, newest)| format_event_time(newest)),
        }))
    }

    /// The newest digest of `chain` in the bucket, if any.
    async fn newest_digest(&self, chain: &str) -> Result<Option<Head>, SealError> {
        let prefix = chain_prefix(&self.settings.digest_prefix, chain);
        let newest = self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|o| Some((digest_key_end(&o.key, chain)?, o.key)))
            .max();
        match newest {
            Some((_, key)) => self.read_head(chain, &key).await,
            None => Ok(None),
        }
    }

    async fn read_head(&self, chain: &str, key: &str) -> Result<Option<Head>, SealError> {
        let Some(fetched) = self.store.read(key).await? else {
            return Ok(None);
        };
        let stored = StoredDigest::open(&fetched.body, &fetched.metadata, MAX_DIGEST_JSON)
            .map_err(|e| SealError::Store(format!("digest {key} is {e}")))?;
        let end_ms = digest_key_end(key, chain)
            .ok_or_else(|| SealError::Store(format!("{key} is not a digest key")))?;
        let start_ms = super::digest::parse_instant(&stored.file.digest_start_time)
            .unwrap_or(end_ms - self.settings.period_ms);
        let period = Period { start_ms, end_ms };
        let file = stored.file;
        Ok(Some(Head {
            key: key.to_string(),
            period,
            json_sha256: stored.json_sha256,
            signature: stored.signature,
            listed: file.log_files.into_iter().map(|f| f.s3_object).collect(),
        }))
    }
}
