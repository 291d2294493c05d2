//! The chain proved, as `aws cloudtrail validate-logs` proves CloudTrail's:
//! every digest's signature and place, the links between digests, every
//! listed object's SHA-256 and version, and that no object of a sealed
//! period is missing from the digests. `verify` prints what this returns.
//!
//! Each tampering is named once: a digest that fails is not also blamed
//! for its successor's link, and objects of a period whose digest is
//! missing are not each reported again.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::digest::{
    chain_prefix, digest_key_end, format_instant, parse_instant, sha256_hex, string_to_sign, unhex,
    DigestFile, LogFile, StoredDigest,
};
use super::sealer::{DigestStore, Listed, SealError, MAX_DIGEST_JSON};
use super::signer::PublicKey;

/// What the auditor asked for.
#[derive(Debug, Clone)]
pub struct ValidateSettings {
    /// Where the digests are.
    pub digest_prefix: String,
    /// The chains to prove (tenants, `_quarantine`).
    pub chains: Vec<String>,
    /// Digests ending at or before this are not checked, nor objects
    /// delivered before it (`--from`).
    pub from_ms: Option<i64>,
    /// Every chain must reach at least this instant (`--expect-until`).
    pub expect_until_ms: Option<i64>,
    /// Objects read at once.
    pub concurrency: usize,
}

/// One invalid thing, as `validate-logs` prints it on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `Digest file`, `Log file` or `Chain`.
    pub subject: &'static str,
    /// `s3://bucket/key`, or the chain's name.
    pub target: String,
    /// `not found`, `hash value doesn't match`, …
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} INVALID: {}",
            self.subject, self.target, self.reason
        )
    }
}

/// One chain's extent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainExtent {
    /// Digests found.
    pub digests: u64,
    /// The first digest's start.
    pub first_start: Option<String>,
    /// The newest digest's end.
    pub newest_end: Option<String>,
}

/// The proof of every chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Digest files checked.
    pub digest_files: u64,
    /// Of which valid.
    pub valid_digest_files: u64,
    /// Log files checked: those listed, and any found in no digest.
    pub log_files: u64,
    /// Of which valid.
    pub valid_log_files: u64,
    /// Objects delivered after their chain's newest digest: not sealed yet,
    /// so neither valid nor invalid.
    pub unsealed: u64,
    /// Each chain's extent.
    pub chains: BTreeMap<String, ChainExtent>,
    /// Everything invalid.
    pub problems: Vec<Problem>,
}

impl ChainReport {
    /// Nothing invalid.
    pub fn valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A digest as found.
struct Found {
    key: String,
    json_sha256: String,
    signature: String,
    file: DigestFile,
    start_ms: i64,
    end_ms: i64,
}

/// What is already known of current objects: key -> (hex SHA-256, version).
pub type KnownBodies = HashMap<String, (String, Option<String>)>;

/// Proves every chain in `settings.chains`. `claimed_ms` tells the time a
/// key claims (its date in the layout), so an object added after sealing
/// but dated inside a sealed period is caught before the next seal.
/// Objects in `known` (read by `verify`'s own checks) are not read again.
pub async fn validate<S: DigestStore>(
    store: &S,
    key: &PublicKey,
    settings: &ValidateSettings,
    claimed_ms: &(dyn Fn(&str) -> Option<i64> + Sync),
    known: &KnownBodies,
) -> Result<ChainReport, SealError> {
    let mut report = ChainReport::default();
    let mut horizons = Vec::new();
    for chain in &settings.chains {
        let horizon =
            validate_chain(store, key, settings, chain, claimed_ms, known, &mut report).await?;
        horizons.push((chain.clone(), horizon));
    }
    // A chain with objects but no digest at all is as late as the bucket's
    // sealed horizon says it should not be.
    let bucket_horizon = horizons.iter().filter_map(|(_, h)| *h).max();
    for (chain, horizon) in horizons {
        if horizon.is_none() {
            unsealed_chain(store, settings, &chain, bucket_horizon, &mut report).await?;
        }
    }
    Ok(report)
}

/// Proves one chain; returns its newest digest's end (`None`: no digest).
async fn validate_chain<S: DigestStore>(
    store: &S,
    key: &PublicKey,
    settings: &ValidateSettings,
    chain: &str,
    claimed_ms: &(dyn Fn(&str) -> Option<i64> + Sync),
    known: &KnownBodies,
    report: &mut ChainReport,
) -> Result<Option<i64>, SealError> {
    let bucket = store.bucket().to_string();
    let s3 = |key: &str| format!("s3://{bucket}/{key}");
    let prefix = chain_prefix(&settings.digest_prefix, chain);
    let mut found = Vec::new();
    for listed in store.list(&prefix).await? {
        if digest_key_end(&listed.key, chain).is_none() {
            report.digest_files += 1;
            report.problems.push(Problem {
                subject: "Digest file",
                target: s3(&listed.key),
                reason: "invalid format (not a digest key)".into(),
            });
            continue;
        }
        let Some(fetched) = store.read(&listed.key).await? else {
            continue;
        };
        report.digest_files += 1;
        let Ok(stored) = StoredDigest::open(&fetched.body, &fetched.metadata, MAX_DIGEST_JSON)
        else {
            report.problems.push(Problem {
                subject: "Digest file",
                target: s3(&listed.key),
                reason: "invalid format".into(),
            });
            continue;
        };
        let (Some(start_ms), Some(end_ms)) = (
            parse_instant(&stored.file.digest_start_time),
            parse_instant(&stored.file.digest_end_time),
        ) else {
            report.problems.push(Problem {
                subject: "Digest file",
                target: s3(&listed.key),
                reason: "invalid format (digest times)".into(),
            });
            continue;
        };
        found.push(Found {
            key: listed.key,
            json_sha256: stored.json_sha256,
            signature: stored.signature,
            file: stored.file,
            start_ms,
            end_ms,
        });
    }
    // In the order the digests say they were written, not where they lie:
    // two swapped digests are then each "moved", and nothing else.
    found.sort_by_key(|d| (d.end_ms, d.start_ms));
    let checked_from = settings.from_ms.unwrap_or(i64::MIN);

    let mut extent = ChainExtent::default();
    let mut valid_digests: Vec<&Found> = Vec::new();
    // Periods no valid digest covers, already reported.
    let mut holes: Vec<(i64, i64)> = Vec::new();
    let mut listed_keys: HashSet<&str> = HashSet::new();
    let mut previous: Option<(&Found, bool)> = None;
    for digest in &found {
        extent.digests += 1;
        extent
            .first_start
            .get_or_insert(digest.file.digest_start_time.clone());
        extent.newest_end = Some(digest.file.digest_end_time.clone());
        let reason = digest_problem(&bucket, key, digest, previous, &mut holes, report, &s3);
        for file in &digest.file.log_files {
            listed_keys.insert(file.s3_object.as_str());
        }
        let valid = reason.is_none();
        match reason {
            Some(reason) => {
                holes.push((digest.start_ms, digest.end_ms));
                report.problems.push(Problem {
                    subject: "Digest file",
                    target: s3(&digest.key),
                    reason,
                });
            }
            None => {
                report.valid_digest_files += 1;
                if digest.end_ms > checked_from {
                    valid_digests.push(digest);
                }
            }
        }
        previous = Some((digest, valid));
    }
    let newest_end = found.last().map(|d| d.end_ms);
    if let (Some(until), Some(newest)) = (settings.expect_until_ms, newest_end) {
        let length = found.last().map(|d| d.end_ms - d.start_ms).unwrap_or(1);
        if newest + length <= until {
            holes.push((newest, i64::MAX));
            report.problems.push(Problem {
                subject: "Chain",
                target: chain.to_string(),
                reason: format!(
                    "no digest for {} to {} (the chain ends early: its newest digests are missing, or sealing stopped)",
                    format_instant(newest),
                    format_instant(until)
                ),
            });
        }
    }
    report.chains.insert(chain.to_string(), extent);

    // Every listed object, against what the bucket holds now.
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut entries: Vec<&LogFile> = Vec::new();
    for digest in &valid_digests {
        for file in &digest.file.log_files {
            if let Some(first) = seen.insert(&file.s3_object, &digest.key) {
                report.log_files += 1;
                report.problems.push(Problem {
                    subject: "Log file",
                    target: s3(&file.s3_object),
                    reason: format!(
                        "listed in more than one digest ({first} and {})",
                        digest.key
                    ),
                });
                continue;
            }
            entries.push(file);
        }
    }
    let results: Vec<Result<Option<String>, SealError>> = stream::iter(entries.iter().copied())
        .map(|file| async move {
            let current = match known.get(&file.s3_object) {
                Some((sha256, version)) => Some((sha256.clone(), version.clone())),
                None => match store.read(&file.s3_object).await {
                    Ok(object) => object.map(|o| (sha256_hex(&o.body), o.version_id)),
                    Err(error) => return Ok(Some(format!("unreadable: {error}"))),
                },
            };
            Ok(match current {
                None => Some("not found".to_string()),
                Some((sha256, _)) if sha256 != file.hash_value => {
                    Some("hash value doesn't match".to_string())
                }
                Some((_, version)) if file.version_id.is_some() && version != file.version_id => {
                    Some(format!(
                        "has been replaced (version {} is not the listed {})",
                        version.as_deref().unwrap_or("null"),
                        file.version_id.as_deref().unwrap_or("null")
                    ))
                }
                Some(_) => None,
            })
        })
        .buffered(settings.concurrency.max(1))
        .collect()
        .await;
    for (file, result) in entries.iter().zip(results) {
        report.log_files += 1;
        match result? {
            None => report.valid_log_files += 1,
            Some(reason) => report.problems.push(Problem {
                subject: "Log file",
                target: s3(&file.s3_object),
                reason,
            }),
        }
    }

    // Objects no digest lists.
    let Some(newest) = newest_end else {
        return Ok(None);
    };
    let newest_start = found.last().map(|d| d.start_ms).unwrap_or(newest);
    for object in store.list(&format!("{chain}/")).await? {
        if listed_keys.contains(object.key.as_str()) || object.last_modified_ms < checked_from {
            continue;
        }
        let in_hole = holes
            .iter()
            .any(|(start, end)| (*start..*end).contains(&object.last_modified_ms));
        if in_hole {
            continue;
        }
        let dated_sealed = claimed_ms(&object.key).is_some_and(|t| t < newest_start);
        if object.last_modified_ms < newest || dated_sealed {
            report.log_files += 1;
            report.problems.push(Problem {
                subject: "Log file",
                target: s3(&object.key),
                reason: if object.last_modified_ms < newest {
                    "not in any digest".into()
                } else {
                    format!(
                        "not in any digest (dated inside a sealed period, delivered {} after the newest digest)",
                        format_instant(object.last_modified_ms)
                    )
                },
            });
        } else {
            report.unsealed += 1;
        }
    }
    Ok(Some(newest))
}

/// Why a digest is invalid, if it is; a gap before it is reported here too.
fn digest_problem(
    bucket: &str,
    key: &PublicKey,
    digest: &Found,
    previous: Option<(&Found, bool)>,
    holes: &mut Vec<(i64, i64)>,
    report: &mut ChainReport,
    s3: &dyn Fn(&str) -> String,
) -> Option<String> {
    let file = &digest.file;
    if file.digest_s3_object != digest.key || file.digest_s3_bucket != bucket {
        return Some(format!(
            "has been moved from its original location (it says s3://{}/{})",
            file.digest_s3_bucket, file.digest_s3_object
        ));
    }
    let to_sign = string_to_sign(
        &file.digest_end_time,
        bucket,
        &digest.key,
        &digest.json_sha256,
        file.previous_digest_signature.as_deref(),
    );
    let signed = unhex(&digest.signature)
        .is_some_and(|signature| key.verifies(to_sign.as_bytes(), &signature));
    if !signed {
        return Some("signature verification failed".into());
    }
    match (previous, &file.previous_digest_s3_object) {
        (None, None) => None,
        (None, Some(missing)) => {
            // The digest it links to is gone: that one is the problem.
            let start = parse_instant(&file.digest_start_time).unwrap_or(digest.start_ms);
            holes.push((i64::MIN, start));
            report.digest_files += 1;
            report.problems.push(Problem {
                subject: "Digest file",
                target: s3(missing),
                reason: "not found".into(),
            });
            None
        }
        (Some((before, _)), None) => Some(format!(
            "chain broken: starts a new chain after {}",
            before.key
        )),
        (Some((before, before_valid)), Some(link)) => {
            if *link != before.file.digest_s3_object {
                // Digests between `before` and this one are missing.
                holes.push((before.end_ms, digest.start_ms));
                report.digest_files += 1;
                report.problems.push(Problem {
                    subject: "Digest file",
                    target: s3(link),
                    reason: "not found".into(),
                });
                return None;
            }
            if !before_valid {
                return None;
            }
            if file.previous_digest_hash_value.as_deref() != Some(before.json_sha256.as_str())
                || file.previous_digest_signature.as_deref() != Some(before.signature.as_str())
            {
                return Some(format!(
                    "chain broken: the previous digest {} is not the one it was chained to",
                    before.key
                ));
            }
            if digest.start_ms != before.end_ms {
                holes.push((before.end_ms, digest.start_ms));
                report.problems.push(Problem {
                    subject: "Chain",
                    target: s3(&digest.key),
                    reason: format!(
                        "no digest for {} to {}",
                        format_instant(before.end_ms),
                        format_instant(digest.start_ms)
                    ),
                });
            }
            None
        }
    }
}

/// A chain with objects and no digest: everything delivered before the
/// bucket's sealed horizon is in no digest.
async fn unsealed_chain<S: DigestStore>(
    store: &S,
    settings: &ValidateSettings,
    chain: &str,
    horizon: Option<i64>,
    report: &mut ChainReport,
) -> Result<(), SealError> {
    let objects: Vec<Listed> = store.list(&format!("{chain}/")).await?;
    report
        .chains
        .insert(chain.to_string(), ChainExtent::default());
    let from = settings.from_ms.unwrap_or(i64::MIN);
    let late: Vec<&Listed> = objects
        .iter()
        .filter(|o| o.last_modified_ms >= from)
        .filter(|o| horizon.is_some_and(|h| o.last_modified_ms < h))
        .collect();
    report.unsealed += (objects.len() - late.len()) as u64;
    if !late.is_empty() {
        report.log_files += late.len() as u64;
        report.problems.push(Problem {
            subject: "Chain",
            target: chain.to_string(),
            reason: format!(
                "no digest at all, yet {} of its objects were delivered before {} (the other chains' newest digest)",
                late.len(),
                format_instant(horizon.unwrap_or_default())
            ),
        });
    }
    Ok(())
}
