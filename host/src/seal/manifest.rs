//! What a writer knows of each object it stores, kept for the sealer: the
//! SHA-256 it sent as the PUT's checksum and the records' event times. The
//! writer records them as it stores and flushes them, one small JSON
//! segment per chain and period, under the state prefix (not a chain, not
//! sealed, written as checkpoints are: no retention, so it may expire); the
//! sealer then reads one segment instead of every object.
//!
//! The manifest only saves reads: an object it does not cover (a writer
//! killed before its flush, a segment flushed late, a writer of another
//! kind) is read back by the sealer as before, and a forged entry can do no
//! more than a forged object in the same open period.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::digest::{event_times, Period};

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Hex SHA-256 of the body stored.
    pub sha256: String,
    /// The earliest and latest record `timestamp`, epoch ms.
    pub event_times: Option<(i64, i64)>,
}

/// Where a chain's segments are: `{manifest_prefix}{chain}/`.
pub fn chain_prefix(manifest_prefix: &str, chain: &str) -> String {
    format!("{manifest_prefix}{chain}/")
}

/// The first key of a period's segments (zero-padded ms: keys sort by time).
pub fn period_key(manifest_prefix: &str, chain: &str, period_start_ms: i64) -> String {
    format!(
        "{}{:013}/",
        chain_prefix(manifest_prefix, chain),
        period_start_ms.max(0)
    )
}

/// Entries recorded by one writer process, not yet flushed.
#[derive(Debug)]
pub struct Recorder {
    manifest_prefix: String,
    period_ms: i64,
    /// Names this process's segments apart from every other writer's.
    writer: String,
    flushes: AtomicU64,
    pending: Mutex<BTreeMap<(String, i64), Vec<Entry>>>,
}

impl crate::store::s3::StoredObjects for Recorder {
    fn stored(&self, key: &str, body: &[u8], sha256: &[u8], now_ms: i64) {
        self.record(key, body, super::digest::hex(sha256), now_ms);
    }
}

impl Recorder {
    /// A recorder writing under `manifest_prefix`, by periods of `period_ms`.
    pub fn new(manifest_prefix: String, period_ms: i64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self {
            manifest_prefix,
            period_ms,
            writer: format!("{}-{nanos:x}", std::process::id()),
            flushes: AtomicU64::new(0),
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records an object just stored under `key`.
    pub fn record(&self, key: &str, body: &[u8], sha256: String, now_ms: i64) {
        let Some((chain, _)) = key.split_once('/') else {
            return;
        };
        let period = Period::containing(now_ms, self.period_ms);
        let entry = Entry {
            key: key.to_string(),
            sha256,
            event_times: event_times(body),
        };
        self.pending
            .lock()
            .expect("the manifest lock")
            .entry((chain.to_string(), period.start_ms))
            .or_default()
            .push(entry);
    }

    /// Everything recorded so far, as segments to write: (key, JSON).
    pub fn take(&self) -> Vec<(String, String)> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("the manifest lock"));
        pending
            .into_iter()
            .map(|((chain, start), entries)| {
                let n = self.flushes.fetch_add(1, Ordering::Relaxed);
                let key = format!(
                    "{}{}-{n}.json",
                    period_key(&self.manifest_prefix, &chain, start),
                    self.writer
                );
                (
                    key,
                    serde_json::to_string(&entries).expect("entries serialise"),
                )
            })
            .collect()
    }

    /// Puts back segments that could not be written, to try again.
    pub fn restore(&self, segments: Vec<(String, String)>) {
        let mut pending = self.pending.lock().expect("the manifest lock");
        for (key, json) in segments {
            let Ok(entries) = serde_json::from_str::<Vec<Entry>>(&json) else {
                continue;
            };
            let mut parts = key
                .strip_prefix(&self.manifest_prefix)
                .unwrap_or_default()
                .split('/');
            let (Some(chain), Some(start)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(start) = start.parse::<i64>() else {
                continue;
            };
            pending
                .entry((chain.to_string(), start))
                .or_default()
                .extend(entries);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_grouped_by_chain_and_period_and_round_trip() {
        let recorder = Recorder::new("_state/manifest/".into(), 60_000);
        recorder.record("acme/a.json", br#"{"timestamp": 7}"#, "aa".into(), 61_000);
        recorder.record("acme/b.json", b"x", "bb".into(), 62_000);
        recorder.record("beta/c.json", b"x", "cc".into(), 62_000);
        recorder.record("no-folder.json", b"x", "dd".into(), 62_000);
        let segments = recorder.take();
        assert_eq!(segments.len(), 2);
        assert!(segments[0]
            .0
            .starts_with("_state/manifest/acme/0000000060000/"));
        let entries: Vec<Entry> = serde_json::from_str(&segments[0].1).unwrap();
        assert_eq!(entries[0].event_times, Some((7, 7)));
        assert_eq!(entries[1].sha256, "bb");
        assert!(recorder.take().is_empty());
        recorder.restore(segments);
        assert_eq!(recorder.take().len(), 2);
    }
}
