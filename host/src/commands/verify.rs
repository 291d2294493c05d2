//! `audit-archiver verify`: proves the archive whole and untouched. Lists
//! only the prefixes of the days asked for (a bounded window of prefixes at
//! once, with every version and delete marker in one `ListObjectVersions`
//! per prefix), reads each current object with checksum validation on
//! (bounded concurrency), and checks it against its own metadata and the
//! key layout. Where signed digests exist (or with `--digests`), also proves
//! each chain (`crate::seal::validate`) and prints `validate-logs`' counts,
//! with one line per problem on stderr. Prints a report per tenant and day;
//! exit 0 when there is no finding, 1 when there is one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{CommandError, Exit};
use crate::archive_layout::{Day, Layout};
use crate::archive_read::{ArchiveReader, KeyVersions, ReadError};
use crate::config::{ReadConfig, VerifyConfig, VerifyFormat};
use crate::metadata as meta;
use crate::seal::kms::KmsKey;
use crate::seal::validate::{validate, ChainReport, KnownBodies, ValidateSettings};
use crate::seal::{BucketDigests, PublicKey};

/// Prefixes listed at once.
const PREFIX_WINDOW: usize = 4;

/// What can be wrong with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// The current version is a delete marker: someone deleted it.
    Deleted,
    /// More than one version: someone wrote over it.
    Overwritten,
    /// The key does not have the layout's shape.
    Stray,
    /// Not where its metadata says it belongs.
    Misplaced,
    /// Metadata the archiver writes is missing or unreadable.
    MissingMetadata,
    /// The body does not match its stored SHA-256 checksum.
    ChecksumMismatch,
    /// No stored SHA-256 checksum.
    NoChecksum,
    /// Object Lock is on for the bucket but the object has no retention.
    NoRetention,
    /// It could not be read.
    Unreadable,
}

impl FindingKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Overwritten => "overwritten",
            Self::Stray => "stray",
            Self::Misplaced => "misplaced",
            Self::MissingMetadata => "missing-metadata",
            Self::ChecksumMismatch => "checksum-mismatch",
            Self::NoChecksum => "no-checksum",
            Self::NoRetention => "no-retention",
            Self::Unreadable => "unreadable",
        }
    }
}

/// Everything wrong with one key: one entry per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The key.
    pub key: String,
    /// What is wrong, most serious first.
    pub kinds: Vec<FindingKind>,
    /// Details, one per kind, `; `-separated.
    pub detail: String,
}

/// Objects of one tenant and day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DayStats {
    objects: u64,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
}

impl DayStats {
    fn add(&mut self, ms: Option<i64>) {
        self.objects += 1;
        if let Some(ms) = ms {
            self.first_ms = Some(self.first_ms.map_or(ms, |f| f.min(ms)));
            self.last_ms = Some(self.last_ms.map_or(ms, |l| l.max(ms)));
        }
    }

    fn merge(&mut self, other: &DayStats) {
        self.objects += other.objects;
        for ms in [other.first_ms, other.last_ms].into_iter().flatten() {
            self.first_ms = Some(self.first_ms.map_or(ms, |f| f.min(ms)));
            self.last_ms = Some(self.last_ms.map_or(ms, |l| l.max(ms)));
        }
    }
}

/// What one prefix (or the whole run) found.
#[derive(Debug, Default)]
struct Tally {
    days: BTreeMap<(String, Day), DayStats>,
    /// Objects of a tenant whose day is unknown (no date in metadata or key).
    undated: BTreeMap<String, u64>,
    findings: Vec<Finding>,
    objects: u64,
    versioned: bool,
    /// Every body read: key -> (hex SHA-256, version), so proving the
    /// digests need not read the same objects again.
    read: KnownBodies,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (day, stats) in other.days {
            self.days.entry(day).or_default().merge(&stats);
        }
        for (tenant, n) in other.undated {
            *self.undated.entry(tenant).or_default() += n;
        }
        self.findings.extend(other.findings);
        self.objects += other.objects;
        self.versioned |= other.versioned;
        self.read.extend(other.read);
    }
}

/// One prefix to list.
#[derive(Debug, Clone)]
struct PrefixJob {
    tenant: String,
    prefix: String,
}

/// What the checks share.
struct Checker {
    reader: ArchiveReader,
    layout: Layout,
    object_lock: Option<bool>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    permits: Semaphore,
    concurrency: usize,
    objects_done: AtomicU64,
    prefixes_done: AtomicU64,
}

/// One key's outcome.
struct Checked {
    key: String,
    tenant: String,
    day: Option<Day>,
    archive_ms: Option<i64>,
    counted: bool,
    finding: Option<Finding>,
    versioned: bool,
    /// The body's hex SHA-256 and the version read, for the digests' proof.
    read: Option<(String, Option<String>)>,
}

/// A quarantined object, reported (not a finding: quarantining is how the
/// archiver keeps what it cannot route).
#[derive(Debug, Clone, Serialize)]
pub struct Quarantined {
    /// The key.
    pub key: String,
    /// The queue it came from.
    pub queue: Option<String>,
    /// The SQS message id.
    pub message_id: Option<String>,
    /// Why it could not be routed.
    pub reason: Option<String>,
    /// When the message was first received (else sent, else stored).
    pub received_at: Option<String>,
}

/// Runs `verify`.
pub async fn verify(config: VerifyConfig) -> Result<Exit, CommandError> {
    let startup = |e: String| CommandError::Startup(e);
    let reader = open_archive(&config.read).await?;
    let layout = config.read.layout.clone();
    let offset = layout.utc_offset_minutes();
    let top = reader.top_level().await.map_err(|e| unreadable(&e))?;

    let quarantine_top = layout
        .quarantine_prefix()
        .split_inclusive('/')
        .next()
        .unwrap_or_default()
        .to_string();
    // backfill's checkpoints live beside the tenants and are no audit logs.
    let state_top = config
        .read
        .state_prefix
        .split_inclusive('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let digest_top = crate::seal::sealer::top_folder(&config.digests.digest_prefix);
    let mut tally = Tally::default();
    let mut known = Vec::new();
    for prefix in &top.prefixes {
        if *prefix == quarantine_top || *prefix == state_top || *prefix == digest_top {
            continue;
        }
        let name = prefix.trim_end_matches('/');
        if audit_archiver_transform::queue::is_valid_tenant(name) {
            known.push(name.to_string());
        } else if config.tenants.is_empty() {
            tally.findings.push(Finding {
                key: prefix.clone(),
                kinds: vec![FindingKind::Stray],
                detail: "a top-level prefix that is not a tenant name".into(),
            });
        }
    }
    let tenants = if config.tenants.is_empty() {
        for key in &top.keys {
            tally.findings.push(Finding {
                key: key.clone(),
                kinds: vec![FindingKind::Stray],
                detail: "a key outside every tenant's prefix".into(),
            });
        }
        known.clone()
    } else {
        for tenant in &config.tenants {
            if !known.contains(tenant) {
                return Err(startup(format!(
                    "unknown --tenant {tenant:?}: s3://{}/ has no {tenant}/ prefix; its tenants are: {}",
                    reader.bucket(),
                    if known.is_empty() { "(none)".to_string() } else { known.join(", ") }
                )));
            }
        }
        config.tenants.clone()
    };

    // Both ends known: only the date prefixes in range. Otherwise the whole
    // tenant, filtered by whichever end was given.
    let bounded = config.from_ms.zip(config.to_ms);
    let mut jobs = Vec::new();
    for tenant in &tenants {
        match bounded {
            Some((from_ms, to_ms)) => {
                for (prefix, _) in layout.prefixes(
                    tenant,
                    Day::of_ms(from_ms, offset),
                    Day::of_ms(to_ms, offset),
                ) {
                    jobs.push(PrefixJob {
                        tenant: tenant.clone(),
                        prefix,
                    });
                }
            }
            None => jobs.push(PrefixJob {
                tenant: tenant.clone(),
                prefix: format!("{tenant}/"),
            }),
        }
    }

    let object_lock = reader.object_lock_enabled().await;
    let checker = Arc::new(Checker {
        reader: reader.clone(),
        layout: layout.clone(),
        object_lock,
        from_ms: config.from_ms,
        to_ms: config.to_ms,
        permits: Semaphore::new(config.read.concurrency),
        concurrency: config.read.concurrency,
        objects_done: AtomicU64::new(0),
        prefixes_done: AtomicU64::new(0),
    });
    let progress = Progress::start(checker.clone(), jobs.len());
    let results: Vec<Result<Tally, ReadError>> = stream::iter(jobs)
        .map(|job| {
            let checker = checker.clone();
            async move {
                let result = checker.check_prefix(&job).await;
                checker.prefixes_done.fetch_add(1, Ordering::Relaxed);
                result
            }
        })
        .buffer_unordered(PREFIX_WINDOW)
        .collect()
        .await;
    progress.stop();
    for result in results {
        tally.merge(result.map_err(|e| unreadable(&e))?);
    }
    let quarantined = quarantined(&reader, &layout, &config).await?;

    let read = std::mem::take(&mut tally.read);
    let mut report = Report::new(&config, &tenants, tally, quarantined, object_lock);
    let has_quarantine = top.prefixes.contains(&quarantine_top);
    report.digests = prove_digests(
        &config,
        &reader,
        &tenants,
        has_quarantine.then_some(&quarantine_top),
        &read,
    )
    .await?;
    let mut stdout = std::io::stdout().lock();
    let written = match config.format {
        VerifyFormat::Json => serde_json::to_writer_pretty(&mut stdout, &report)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(stdout)),
        VerifyFormat::Table => report.write_table(&mut stdout),
    };
    if let Err(error) = written.and_then(|_| stdout.flush()) {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(CommandError::Runtime(anyhow::anyhow!(
                "writing the report: {error}"
            )));
        }
    }
    if let Some(digests) = &report.digests {
        let mut stderr = std::io::stderr().lock();
        for problem in &digests.problems {
            let _ = writeln!(stderr, "{problem}");
        }
    }
    let digests_valid = report.digests.as_ref().is_none_or(|d| d.valid());
    Ok(if report.findings.is_empty() && digests_valid {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// The signed digests proved, when they exist or `--digests` asks: the
/// chains of the verified tenants, and of the quarantine when every tenant
/// is verified. `None` when there is nothing to prove.
async fn prove_digests(
    config: &VerifyConfig,
    reader: &ArchiveReader,
    tenants: &[String],
    quarantine_top: Option<&String>,
    read: &KnownBodies,
) -> Result<Option<ChainReport>, CommandError> {
    let check = &config.digests;
    let present = reader
        .has_prefix(&check.digest_prefix)
        .await
        .map_err(|e| unreadable(&e))?;
    if !present && !check.required {
        return Ok(None);
    }
    let key = match (&check.public_key, &check.kms_key_id) {
        (Some(path), _) => PublicKey::from_pem_file(path)
            .map_err(|e| CommandError::Startup(e.to_string()))?,
        (None, Some(key_id)) => {
            let clients = crate::aws::clients(&config.read.aws)
                .await
                .map_err(|e| CommandError::Startup(e.to_string()))?;
            KmsKey::new(clients.kms, key_id.clone())
                .public_key()
                .await
                .map_err(CommandError::Startup)?
        }
        (None, None) => {
            return Err(CommandError::Startup(format!(
                "s3://{}/{} holds signed digests: pass --public-key FILE (PEM) or --digest-kms-key-id KEY to prove them",
                reader.bucket(),
                check.digest_prefix
            )))
        }
    };
    let mut chains = tenants.to_vec();
    if config.tenants.is_empty() {
        if let Some(quarantine) = quarantine_top {
            chains.push(quarantine.trim_end_matches('/').to_string());
        }
    }
    let settings = ValidateSettings {
        digest_prefix: check.digest_prefix.clone(),
        chains,
        from_ms: config.from_ms,
        expect_until_ms: check.expect_until_ms,
        concurrency: config.read.concurrency,
    };
    let layout = config.read.layout.clone();
    let offset = layout.utc_offset_minutes();
    // The time a key's date claims: the end of its day.
    let claimed = move |key: &str| {
        let tenant = key.split('/').next()?;
        Some(layout.shape(key, tenant)?.day?.end_ms(offset))
    };
    let store = BucketDigests::new(reader.clone(), None);
    let report = validate(&store, &key, &settings, &claimed, read)
        .await
        .map_err(|e| CommandError::Runtime(anyhow::anyhow!("proving the digests: {e}")))?;
    Ok(Some(report))
}

/// The reader of the archive `read` names, once its bucket answers
/// (`verify` and `query`; a failure is a start-up error, exit 2).
pub(super) async fn open_archive(read: &ReadConfig) -> Result<ArchiveReader, CommandError> {
    let startup = |e: String| CommandError::Startup(e);
    let clients = crate::aws::clients(&read.aws)
        .await
        .map_err(|e| startup(e.to_string()))?;
    let reader = ArchiveReader::new(
        clients.s3,
        read.bucket.clone(),
        read.expected_bucket_owner.clone(),
    );
    reader
        .check_bucket()
        .await
        .map_err(|e| startup(e.to_string()))?;
    Ok(reader)
}

/// A listing failed: the bucket cannot be read (exit 2).
pub(super) fn unreadable(error: &ReadError) -> CommandError {
    let hint = match error.status {
        Some(403) => format!(
            " (it needs {}: see the auditor policy in docs/iam.md)",
            error.permission()
        ),
        _ => String::new(),
    };
    CommandError::Startup(format!("cannot read the bucket: {error}{hint}"))
}

impl Checker {
    /// Lists one prefix's versions page by page and checks each key.
    async fn check_prefix(&self, job: &PrefixJob) -> Result<Tally, ReadError> {
        let mut tally = Tally::default();
        let mut pages = self.reader.versions(&job.prefix);
        while let Some(page) = pages.next_page().await? {
            let checked: Vec<Checked> = stream::iter(page)
                .map(|key| self.check_key(&job.tenant, key))
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            for outcome in checked {
                self.objects_done.fetch_add(1, Ordering::Relaxed);
                tally.versioned |= outcome.versioned;
                if outcome.counted {
                    tally.objects += 1;
                    match outcome.day {
                        Some(day) => tally
                            .days
                            .entry((outcome.tenant.clone(), day))
                            .or_default()
                            .add(outcome.archive_ms),
                        None => *tally.undated.entry(outcome.tenant.clone()).or_default() += 1,
                    }
                }
                tally.findings.extend(outcome.finding);
                if let Some(read) = outcome.read {
                    tally.read.insert(outcome.key, read);
                }
            }
        }
        Ok(tally)
    }

    fn in_range(&self, ms: i64) -> bool {
        self.from_ms.is_none_or(|from| ms >= from) && self.to_ms.is_none_or(|to| ms <= to)
    }

    async fn check_key(&self, tenant: &str, listed: KeyVersions) -> Checked {
        let key = listed.key.clone();
        let mut problems: Vec<(FindingKind, String)> = Vec::new();
        let versioned = listed.versions.iter().any(|v| v.version_id != "null");
        let shape = self.layout.shape(&key, tenant);
        let mut checked = Checked {
            key: key.clone(),
            tenant: tenant.to_string(),
            day: shape.and_then(|s| s.day),
            archive_ms: None,
            counted: false,
            finding: None,
            versioned,
            read: None,
        };
        let finish = |mut checked: Checked, mut problems: Vec<(FindingKind, String)>| {
            if !problems.is_empty() {
                problems.sort_by_key(|(kind, _)| *kind);
                checked.finding = Some(Finding {
                    key: key.clone(),
                    kinds: problems.iter().map(|(kind, _)| *kind).collect(),
                    detail: problems
                        .iter()
                        .map(|(_, detail)| detail.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            checked
        };

        if listed.deleted() {
            let kept = listed.versions.iter().filter(|v| !v.delete_marker).count();
            problems.push((
                FindingKind::Deleted,
                format!("the current version is a delete marker ({kept} earlier version(s) kept)"),
            ));
            return finish(checked, problems);
        }
        if listed.versions.len() > 1 {
            let markers = listed.versions.iter().filter(|v| v.delete_marker).count();
            problems.push((
                FindingKind::Overwritten,
                format!(
                    "{} versions{}: written more than once",
                    listed.versions.len() - markers,
                    if markers > 0 {
                        format!(" and {markers} delete marker(s)")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        if shape.is_none() {
            problems.push((
                FindingKind::Stray,
                "the key does not have the layout of --key-template".into(),
            ));
            return finish(checked, problems);
        }

        let fetched = {
            let _permit = self.permits.acquire().await.expect("never closed");
            self.reader.get(&key).await
        };
        let object = match fetched {
            Ok(object) => object,
            Err(error) => {
                problems.push((FindingKind::Unreadable, error.to_string()));
                return finish(checked, problems);
            }
        };
        checked.counted = true;

        let field = |name: &str| object.metadata.get(name).map(String::as_str);
        let missing: Vec<&str> = meta::REQUIRED
            .iter()
            .copied()
            .filter(|name| field(name).is_none_or(str::is_empty))
            .collect();
        if !missing.is_empty() {
            problems.push((
                FindingKind::MissingMetadata,
                format!("metadata {} missing", missing.join(", ")),
            ));
        }
        let archive_ms = match field(meta::ARCHIVE_TIME_MS).map(str::parse::<u64>) {
            Some(Ok(ms)) if i64::try_from(ms).is_ok() => Some(ms),
            Some(_) => {
                problems.push((
                    FindingKind::MissingMetadata,
                    format!(
                        "metadata {} is not epoch milliseconds",
                        meta::ARCHIVE_TIME_MS
                    ),
                ));
                None
            }
            None => None,
        };
        if let Some(ms) = archive_ms {
            checked.archive_ms = Some(ms as i64);
            checked.day = Some(Day::of_ms(ms as i64, self.layout.utc_offset_minutes()));
        }
        match field(meta::TENANT) {
            Some(owner) if owner != tenant => problems.push((
                FindingKind::Misplaced,
                format!("its metadata names tenant {owner:?}, but it is under {tenant}/"),
            )),
            _ => {
                if let (Some(ms), Some(id)) = (archive_ms, field(meta::MESSAGE_ID)) {
                    let queue = field(meta::QUEUE).unwrap_or("");
                    if let Err(misplaced) = self.layout.check_placement(&key, tenant, queue, id, ms)
                    {
                        problems.push((
                            FindingKind::Misplaced,
                            format!("its metadata places it at {}", misplaced.expected),
                        ));
                    }
                }
            }
        }
        if let Ok(body) = &object.body {
            checked.read = Some((
                crate::seal::digest::sha256_hex(body),
                object.version_id.clone(),
            ));
        }
        match (&object.checksum_sha256, &object.body) {
            (_, Err(error)) if error.to_ascii_lowercase().contains("checksum") => problems.push((
                FindingKind::ChecksumMismatch,
                format!("the body does not match its stored SHA-256 checksum ({error})"),
            )),
            (_, Err(error)) => problems.push((
                FindingKind::Unreadable,
                format!("the body could not be read: {error}"),
            )),
            (None, Ok(_)) => {
                problems.push((FindingKind::NoChecksum, "no stored SHA-256 checksum".into()))
            }
            (Some(stored), Ok(body)) => {
                // A composite (multipart) checksum ends in `-N`; the archiver
                // never writes one, and the SDK validated what it could.
                let actual = aws_smithy_types::base64::encode(Sha256::digest(body));
                if !stored.contains('-') && *stored != actual {
                    problems.push((
                        FindingKind::ChecksumMismatch,
                        format!("the body's SHA-256 is {actual}, the stored checksum {stored}"),
                    ));
                }
            }
        }
        if self.object_lock == Some(true) {
            match &object.retention {
                None => problems.push((
                    FindingKind::NoRetention,
                    "Object Lock is enabled on the bucket but the object has no retention".into(),
                )),
                Some((mode, until_ms)) if *until_ms < chrono::Utc::now().timestamp_millis() => {
                    problems.push((
                        FindingKind::NoRetention,
                        format!("its {mode} retention expired at {until_ms} ms"),
                    ))
                }
                Some(_) => {}
            }
        }
        if problems.is_empty() && !checked.archive_ms.is_none_or(|ms| self.in_range(ms)) {
            // A partial day at an RFC 3339 bound: outside the range asked for.
            checked.counted = false;
        }
        finish(checked, problems)
    }
}

/// The quarantined objects of the tenants asked for, received in range (by
/// the message's first receive or sent time, else when it was stored).
async fn quarantined(
    reader: &ArchiveReader,
    layout: &Layout,
    config: &VerifyConfig,
) -> Result<Vec<Quarantined>, CommandError> {
    let offset = layout.utc_offset_minutes();
    let mut pages = reader.keys(layout.quarantine_prefix());
    let mut listed = Vec::new();
    while let Some(page) = pages.next_page().await.map_err(|e| unreadable(&e))? {
        // Stored before the range starts: received before it too.
        listed.extend(page.into_iter().filter(|object| {
            object
                .last_modified_ms
                .is_none_or(|ms| config.from_ms.is_none_or(|from| ms >= from))
        }));
    }
    let heads: Vec<_> = stream::iter(listed)
        .map(|object| async move {
            let metadata = reader.metadata(&object.key).await;
            (object, metadata)
        })
        .buffered(config.read.concurrency)
        .collect()
        .await;
    let mut out = Vec::new();
    for (object, metadata) in heads {
        let metadata = metadata.unwrap_or_default();
        let queue = metadata.get(meta::QUEUE).cloned();
        if !config.tenants.is_empty() {
            let tenant = queue
                .as_deref()
                .map(audit_archiver_transform::queue::tenant_from_name);
            if !tenant.is_some_and(|t| config.tenants.iter().any(|c| c == t)) {
                continue;
            }
        }
        let received_ms = [meta::FIRST_RECEIVE_MS, meta::SENT_MS]
            .iter()
            .find_map(|name| metadata.get(*name).and_then(|v| v.parse::<i64>().ok()))
            .or(object.last_modified_ms);
        let in_range = received_ms.is_none_or(|ms| {
            config.from_ms.is_none_or(|from| ms >= from) && config.to_ms.is_none_or(|to| ms <= to)
        });
        if !in_range {
            continue;
        }
        out.push(Quarantined {
            key: object.key,
            queue,
            message_id: metadata.get(meta::MESSAGE_ID).cloned(),
            reason: metadata.get(meta::QUARANTINE_REASON).cloned(),
            received_at: received_ms.map(|ms| rfc3339(ms, offset)),
        });
    }
    Ok(out)
}

/// An RFC 3339 time with milliseconds at `offset_minutes`.
pub fn rfc3339(ms: i64, offset_minutes: i16) -> String {
    let offset = chrono::FixedOffset::east_opt(i32::from(offset_minutes) * 60)
        .unwrap_or(chrono::FixedOffset::east_opt(0).expect("UTC"));
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&offset)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A tenant's day in the report.
#[derive(Debug, Serialize)]
pub struct DayReport {
    /// The tenant.
    pub tenant: String,
    /// `YYYY-MM-DD` in the layout's offset.
    pub day: String,
    /// Objects archived that day.
    pub objects: u64,
    /// The earliest archive time.
    pub first: Option<String>,
    /// The latest archive time.
    pub last: Option<String>,
}

/// A day in range with no object (a possible gap; not a finding).
#[derive(Debug, Serialize)]
pub struct EmptyDay {
    /// The tenant.
    pub tenant: String,
    /// `YYYY-MM-DD`.
    pub day: String,
}

/// The whole report (`--format json` prints it as is).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The bucket.
    pub bucket: String,
    /// The layout's offset, `+09:00`.
    pub utc_offset: String,
    /// `--from`, if given.
    pub from: Option<String>,
    /// `--to`, if given.
    pub to: Option<String>,
    /// Whether any object has a version id (the bucket is or was versioned).
    pub versioned: bool,
    /// Whether Object Lock is enabled; `null` when it could not be read.
    pub object_lock: Option<bool>,
    /// The tenants verified.
    pub tenants: Vec<String>,
    /// Objects checked (current objects in the layout, deleted ones aside).
    pub objects: u64,
    /// Per tenant and day with objects.
    pub days: Vec<DayReport>,
    /// Days in range with no object.
    pub empty_days: Vec<EmptyDay>,
    /// Objects per tenant whose day is not known.
    pub undated: BTreeMap<String, u64>,
    /// Quarantined objects.
    pub quarantined: Vec<Quarantined>,
    /// One per key with something wrong, sorted by key.
    pub findings: Vec<Finding>,
    /// The signed digests' proof, when there are digests (or `--digests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digests: Option<ChainReport>,
}

impl Report {
    fn new(
        config: &VerifyConfig,
        tenants: &[String],
        mut tally: Tally,
        quarantined: Vec<Quarantined>,
        object_lock: Option<bool>,
    ) -> Report {
        let offset = config.read.layout.utc_offset_minutes();
        let mut empty_days = Vec::new();
        for tenant in tenants {
            let seen: BTreeSet<Day> = tally
                .days
                .keys()
                .filter(|(t, _)| t == tenant)
                .map(|(_, d)| *d)
                .collect();
            let first = config
                .from_ms
                .map(|ms| Day::of_ms(ms, offset))
                .or(seen.first().copied());
            let last = config
                .to_ms
                .map(|ms| Day::of_ms(ms, offset))
                .or(seen.last().copied());
            if let (Some(first), Some(last)) = (first, last) {
                let mut day = first;
                while day <= last {
                    if !seen.contains(&day) {
                        empty_days.push(EmptyDay {
                            tenant: tenant.clone(),
                            day: day.to_string(),
                        });
                    }
                    day = day.next();
                }
            }
        }
        tally.findings.sort_by(|a, b| a.key.cmp(&b.key));
        Report {
            bucket: config.read.bucket.clone(),
            utc_offset: audit_archiver_transform::time::format_offset(offset),
            from: config.from_ms.map(|ms| rfc3339(ms, offset)),
            to: config.to_ms.map(|ms| rfc3339(ms, offset)),
            versioned: tally.versioned,
            object_lock,
            tenants: tenants.to_vec(),
            objects: tally.objects,
            days: tally
                .days
                .iter()
                .map(|((tenant, day), stats)| DayReport {
                    tenant: tenant.clone(),
                    day: day.to_string(),
                    objects: stats.objects,
                    first: stats.first_ms.map(|ms| rfc3339(ms, offset)),
                    last: stats.last_ms.map(|ms| rfc3339(ms, offset)),
                })
                .collect(),
            empty_days,
            undated: tally.undated,
            quarantined,
            findings: tally.findings,
            digests: None,
        }
    }

    fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let yes_no = |b: Option<bool>| match b {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        writeln!(
            out,
            "s3://{}  from {}  to {}  (UTC{})  versioned: {}  Object Lock: {}",
            self.bucket,
            self.from.as_deref().unwrap_or("the first object"),
            self.to.as_deref().unwrap_or("the last object"),
            self.utc_offset,
            yes_no(Some(self.versioned)),
            yes_no(self.object_lock)
        )?;
        let time_of = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| t.get(11..23))
                .unwrap_or("-")
                .to_string()
        };
        let mut rows: Vec<(&str, &str, String)> = Vec::new();
        for day in &self.days {
            rows.push((
                &day.tenant,
                &day.day,
                format!(
                    "{:>8}  {:<12}  {}",
                    day.objects,
                    time_of(&day.first),
                    time_of(&day.last)
                ),
            ));
        }
        for day in &self.empty_days {
            rows.push((
                &day.tenant,
                &day.day,
                format!("{:>8}  (no object: a gap?)", 0),
            ));
        }
        rows.sort();
        let width = self
            .tenants
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(6)
            .max(6);
        writeln!(out)?;
        writeln!(
            out,
            "{:<width$}  {:<10}  {:>8}  {:<12}  LAST",
            "TENANT", "DAY", "OBJECTS", "FIRST"
        )?;
        for (tenant, day, rest) in rows {
            writeln!(out, "{tenant:<width$}  {day:<10}  {rest}")?;
        }
        for (tenant, n) in &self.undated {
            writeln!(out, "{tenant:<width$}  {:<10}  {n:>8}", "(undated)")?;
        }
        if !self.quarantined.is_empty() {
            writeln!(
                out,
                "\nQUARANTINED ({}): stored aside, not findings",
                self.quarantined.len()
            )?;
            for q in &self.quarantined {
                writeln!(
                    out,
                    "  {}  {}",
                    q.key,
                    q.reason.as_deref().unwrap_or("(no reason recorded)")
                )?;
            }
        }
        if !self.findings.is_empty() {
            writeln!(out, "\nFINDINGS ({})", self.findings.len())?;
            for f in &self.findings {
                let kinds: Vec<&str> = f.kinds.iter().map(|k| k.as_str()).collect();
                writeln!(out, "  {}  {}\n      {}", kinds.join(","), f.key, f.detail)?;
            }
        }
        writeln!(
            out,
            "\n{}: {} object(s) checked, {} finding(s), {} quarantined, {} empty day(s)",
            if self.findings.is_empty() {
                "OK"
            } else {
                "FINDINGS"
            },
            self.objects,
            self.findings.len(),
            self.quarantined.len(),
            self.empty_days.len()
        )?;
        if let Some(digests) = &self.digests {
            writeln!(out, "\nSIGNED DIGESTS ({} chain(s))", digests.chains.len())?;
            for (chain, extent) in &digests.chains {
                writeln!(
                    out,
                    "  {chain}: {} digest(s) from {} to {}",
                    extent.digests,
                    extent.first_start.as_deref().unwrap_or("-"),
                    extent.newest_end.as_deref().unwrap_or("-")
                )?;
            }
            writeln!(
                out,
                "{}/{} digest files valid",
                digests.valid_digest_files, digests.digest_files
            )?;
            writeln!(
                out,
                "{}/{} log files valid",
                digests.valid_log_files, digests.log_files
            )?;
            if digests.unsealed > 0 {
                writeln!(
                    out,
                    "{} object(s) delivered after their chain's newest digest, not sealed yet",
                    digests.unsealed
                )?;
            }
            if !digests.valid() {
                writeln!(
                    out,
                    "DIGEST PROBLEMS: {} (listed on stderr)",
                    digests.problems.len()
                )?;
            }
        }
        Ok(())
    }
}

/// The progress line on stderr, when stderr is a terminal.
struct Progress {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(checker: Arc<Checker>, prefixes: usize) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, task: None };
        }
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let objects = checker.objects_done.load(Ordering::Relaxed);
                let rate = objects as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprint!(
                    "\rverify: {}/{prefixes} prefixes, {objects} objects, {rate:.0} objects/s   ",
                    checker.prefixes_done.load(Ordering::Relaxed)
                );
            }
            eprint!("\r{:78}\r", "");
        });
        Progress {
            stop,
            task: Some(task),
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task {
            task.abort();
            eprint!("\r{:78}\r", "");
        }
    }
}
