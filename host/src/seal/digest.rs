//! The digest file: its periods, its key, its JSON (CloudTrail's digest
//! field names), the string its signature is over, and its gzip encoding.
//! Pure functions; the sealer and the validator share them, so what is
//! written and what is checked cannot drift apart.

use std::io::{Read, Write};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The hash algorithm of every `hashValue` and `previousDigestHashValue`.
pub const HASH_ALGORITHM: &str = "SHA-256";

/// One sealing period, `[start_ms, end_ms)` in epoch milliseconds (UTC),
/// aligned to whole multiples of its length since the epoch, so every
/// sealer cuts time the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    /// First millisecond.
    pub start_ms: i64,
    /// First millisecond after.
    pub end_ms: i64,
}

impl Period {
    /// The period of length `len_ms` that holds `ms`.
    pub fn containing(ms: i64, len_ms: i64) -> Period {
        let start_ms = ms.div_euclid(len_ms) * len_ms;
        Period {
            start_ms,
            end_ms: start_ms + len_ms,
        }
    }

    /// The period that follows.
    pub fn next(self) -> Period {
        Period {
            start_ms: self.end_ms,
            end_ms: self.end_ms + (self.end_ms - self.start_ms),
        }
    }

    /// Whether `ms` falls inside.
    pub fn contains(self, ms: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&ms)
    }
}

/// `2026-12-04T10:00:00Z`: the digest's period bounds.
pub fn format_instant(ms: i64) -> String {
    utc(ms).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2026-12-04T10:00:00.123Z`: event times, to the millisecond.
pub fn format_event_time(ms: i64) -> String {
    utc(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 instant into epoch ms.
pub fn parse_instant(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Where a chain's digests live: `{digest_prefix}{chain}/`.
pub fn chain_prefix(digest_prefix: &str, chain: &str) -> String {
    format!("{digest_prefix}{chain}/")
}

/// The digest of `chain` for the period ending at `end_ms`:
/// `{prefix}{chain}/YYYY/MM/DD/{chain}-digest-YYYYMMDDTHHMMSSZ.json.gz`,
/// dated by the UTC end, so a chain's keys sort in time order.
pub fn digest_key(digest_prefix: &str, chain: &str, end_ms: i64) -> String {
    let end = utc(end_ms);
    format!(
        "{}{}/{chain}-digest-{}.json.gz",
        chain_prefix(digest_prefix, chain),
        end.format("%Y/%m/%d"),
        end.format("%Y%m%dT%H%M%SZ")
    )
}

/// The end (epoch ms) a digest key names, if it is shaped like one of `chain`.
pub fn digest_key_end(key: &str, chain: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    let stamp = name
        .strip_prefix(chain)?
        .strip_prefix("-digest-")?
        .strip_suffix(".json.gz")?;
    let time = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok()?;
    Some(time.and_utc().timestamp_millis())
}

/// One archived object as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFile {
    /// The bucket.
    pub s3_bucket: String,
    /// The key.
    pub s3_object: String,
    /// The version read, on a versioned bucket.
    pub version_id: Option<String>,
    /// Hex SHA-256 of the stored body.
    pub hash_value: String,
    /// Always [`HASH_ALGORITHM`].
    pub hash_algorithm: String,
    /// The earliest audit record's `timestamp` in the body, when it has one.
    pub oldest_event_time: Option<String>,
    /// The latest audit record's `timestamp` in the body.
    pub newest_event_time: Option<String>,
}

/// One digest file's JSON, field for field CloudTrail's where CloudTrail
/// has the field. Serialised in this order; its bytes are what is hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestFile {
    /// The period's first instant.
    pub digest_start_time: String,
    /// The instant after the period.
    pub digest_end_time: String,
    /// Where the digest was written: bucket.
    pub digest_s3_bucket: String,
    /// Where the digest was written: key.
    pub digest_s3_object: String,
    /// Hex SHA-256 of the signing key's DER SubjectPublicKeyInfo (a local
    /// key); `None` when KMS signed.
    pub digest_public_key_fingerprint: Option<String>,
    /// The KMS key that signed (its ARN); `None` for a local key.
    pub digest_signing_key_id: Option<String>,
    /// `SHA256withRSA` or `Ed25519`.
    pub digest_signature_algorithm: String,
    /// The latest event time of the listed objects.
    pub newest_event_time: Option<String>,
    /// The earliest event time of the listed objects.
    pub oldest_event_time: Option<String>,
    /// The previous digest of the chain: bucket (`None` for the first).
    pub previous_digest_s3_bucket: Option<String>,
    /// The previous digest: key.
    pub previous_digest_s3_object: Option<String>,
    /// Hex SHA-256 of the previous digest's uncompressed JSON.
    pub previous_digest_hash_value: Option<String>,
    /// [`HASH_ALGORITHM`] when there is a previous digest.
    pub previous_digest_hash_algorithm: Option<String>,
    /// The previous digest's signature (hex).
    pub previous_digest_signature: Option<String>,
    /// Every object delivered in the period (and any delivered late into
    /// the period before), by key.
    pub log_files: Vec<LogFile>,
}

/// A digest as stored: its JSON, the JSON's hash and the signature from its
/// metadata; what the next digest links to and what `verify` checks.
#[derive(Debug, Clone)]
pub struct StoredDigest {
    /// The parsed JSON.
    pub file: DigestFile,
    /// Hex SHA-256 of the uncompressed JSON.
    pub json_sha256: String,
    /// The `signature` metadata (hex); empty when absent.
    pub signature: String,
}

impl StoredDigest {
    /// Opens a stored digest object (gzipped JSON and its user metadata),
    /// at most `limit` bytes of JSON; the error says what it is not.
    pub fn open(
        body: &[u8],
        metadata: &std::collections::HashMap<String, String>,
        limit: u64,
    ) -> Result<StoredDigest, String> {
        let json = gunzip(body, limit).map_err(|e| format!("not gzip: {e}"))?;
        let file = serde_json::from_slice(&json).map_err(|e| format!("not a digest: {e}"))?;
        Ok(StoredDigest {
            file,
            json_sha256: sha256_hex(&json),
            signature: metadata
                .get(crate::store::metadata::SIGNATURE)
                .cloned()
                .unwrap_or_default(),
        })
    }
}

/// The string a digest's signature is over, as CloudTrail builds it:
/// `digestEndTime \n bucket/key \n hex(SHA-256(json)) \n previousSignature`
/// (the literal `null` for the first digest of a chain).
pub fn string_to_sign(
    end_time: &str,
    bucket: &str,
    key: &str,
    json_sha256_hex: &str,
    previous_signature: Option<&str>,
) -> String {
    format!(
        "{end_time}\n{bucket}/{key}\n{json_sha256_hex}\n{}",
        previous_signature.unwrap_or("null")
    )
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// Bytes from hex; `None` when it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Gzip, as the digest object is stored.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .and_then(|_| encoder.finish())
        .expect("gzip into memory cannot fail")
}

/// Gunzip a stored digest, at most `limit` bytes of JSON (a digest lists
/// one period's objects; anything larger is not one of ours).
pub fn gunzip(bytes: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(limit + 1)
        .read_to_end(&mut json)?;
    if json.len() as u64 > limit {
        return Err(std::io::Error::other("larger than a digest can be"));
    }
    Ok(json)
}

/// The earliest and latest audit-record `timestamp` (epoch ms) in a body:
/// one record or a JSON array of records. `None` for a body without any
/// (a quarantined message, say).
pub fn event_times(body: &[u8]) -> Option<(i64, i64)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let stamp = |record: &serde_json::Value| record.get("timestamp")?.as_i64();
    let stamps: Vec<i64> = match &value {
        serde_json::Value::Array(records) => records.iter().filter_map(stamp).collect(),
        record => stamp(record).into_iter().collect(),
    };
    Some((*stamps.iter().min()?, *stamps.iter().max()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_aligned_and_contiguous() {
        let hour = 3_600_000;
        let p = Period::containing(1_750_991_540_913, hour);
        assert_eq!(p.start_ms % hour, 0);
        assert!(p.contains(1_750_991_540_913));
        assert!(!p.contains(p.end_ms));
        assert_eq!(p.next().start_ms, p.end_ms);
        assert_eq!(Period::containing(-1, hour).end_ms, 0);
    }

    #[test]
    fn keys_are_dated_by_the_utc_end_and_parse_back() {
        let end = parse_instant("2026-12-04T10:00:00Z").unwrap();
        let key = digest_key("_digest/", "acme", end);
        assert_eq!(
            key,
            "_digest/acme/2026/12/04/acme-digest-20261204T100000Z.json.gz"
        );
        assert_eq!(digest_key_end(&key, "acme"), Some(end));
        assert_eq!(digest_key_end(&key, "acm"), None);
        assert_eq!(digest_key_end("_digest/acme/x.json", "acme"), None);
    }

    #[test]
    fn the_string_to_sign_is_cloudtrails() {
        assert_eq!(
            string_to_sign("2026-12-04T10:00:00Z", "b", "k/d.json.gz", "ab", None),
            "2026-12-04T10:00:00Z\nb/k/d.json.gz\nab\nnull"
        );
        assert_eq!(
            string_to_sign("t", "b", "k", "ab", Some("ff00")),
            "t\nb/k\nab\nff00"
        );
    }

    #[test]
    fn hex_round_trips_and_gzip_round_trips() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(unhex("000fff"), Some(vec![0, 15, 255]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
        let json = br#"{"logFiles":[]}"#;
        assert_eq!(gunzip(&gzip(json), 1 << 20).unwrap(), json);
        assert!(gunzip(&gzip(json), 4).is_err());
        assert!(gunzip(b"not gzip", 1 << 20).is_err());
    }

    #[test]
    fn event_times_of_one_record_or_an_array() {
        assert_eq!(event_times(br#"{"timestamp": 5}"#), Some((5, 5)));
        assert_eq!(
            event_times(br#"[{"timestamp": 9}, {"timestamp": 3}, {"x": 1}]"#),
            Some((3, 9))
        );
        assert_eq!(event_times(b"not json"), None);
        assert_eq!(event_times(br#"{"user": "a"}"#), None);
    }

    #[test]
    fn the_json_uses_cloudtrails_field_names_in_order() {
        let digest = DigestFile {
            digest_start_time: "s".into(),
            digest_end_time: "e".into(),
            digest_s3_bucket: "b".into(),
            digest_s3_object: "k".into(),
            digest_public_key_fingerprint: None,
            digest_signing_key_id: None,
            digest_signature_algorithm: "Ed25519".into(),
            newest_event_time: None,
            oldest_event_time: None,
            previous_digest_s3_bucket: None,
            previous_digest_s3_object: None,
            previous_digest_hash_value: None,
            previous_digest_hash_algorithm: None,
            previous_digest_signature: None,
            log_files: vec![],
        };
        let json = serde_json::to_string(&digest).unwrap();
        assert!(json.starts_with(r#"{"digestStartTime":"s","digestEndTime":"e","digestS3Bucket":"b","digestS3Object":"k","digestPublicKeyFingerprint":null"#), "{json}");
        assert!(json.ends_with(r#""previousDigestSignature":null,"logFiles":[]}"#));
        assert_eq!(serde_json::from_str::<DigestFile>(&json).unwrap(), digest);
    }
}
