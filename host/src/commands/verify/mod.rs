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
use crate::config::{ReadConfig, VerifyConfig, VerifyFormat};
use crate::read::layout::{Day, Layout};
use crate::read::reader::{ArchiveReader, KeyVersions, ReadError};
use crate::seal::kms::KmsKey;
use crate::seal::validate::{validate, ChainReport, KnownBodies, ValidateSettings};
use crate::seal::{BucketDigests, PublicKey};
use crate::store::metadata as meta;

mod checker;
mod digests;
mod report;

use checker::quarantined;
use digests::prove_digests;
use report::Progress;
pub use report::{rfc3339, DayReport, EmptyDay, Report};

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

/// The reader of the archive `read` names, once its bucket answers
/// (`verify` and `query`; a failure is a start-up error, exit 2).
pub(in crate::commands) async fn open_archive(
    read: &ReadConfig,
) -> Result<ArchiveReader, CommandError> {
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
pub(in crate::commands) fn unreadable(error: &ReadError) -> CommandError {
    let hint = match error.status {
        Some(403) => format!(
            " (it needs {}: see the auditor policy in docs/iam.md)",
            error.permission()
        ),
        _ => String::new(),
    };
    CommandError::Startup(format!("cannot read the bucket: {error}{hint}"))
}
