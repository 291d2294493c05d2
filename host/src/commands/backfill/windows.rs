//! `backfill`'s windows and checkpoints: the range cut at each midnight,
//! and the marker stored once a window is archived whole (how records from
//! the API are settled: there is no queue to delete them from).

use super::*;

/// One day, the window size.
pub(super) const DAY_MS: i64 = 86_400_000;

/// The message id of an API record: `api-` + hex SHA-256 of its canonical
/// JSON (object keys sorted recursively, no whitespace), so the same record
/// gets the same id whatever spacing or key order the API used.
pub fn api_message_id(record: &str) -> Result<String, serde_json::Error> {
    // serde_json's map is a BTreeMap (no `preserve_order`): keys come out sorted.
    let value: serde_json::Value = serde_json::from_str(record)?;
    let canonical = serde_json::to_vec(&value)?;
    Ok(format!("api-{:x}", Sha256::digest(&canonical)))
}

/// A time window `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// Start, epoch ms, included.
    pub start_ms: i64,
    /// End, epoch ms, excluded.
    pub end_ms: i64,
}

/// `[from, to)` cut at every midnight of the offset.
pub fn day_windows(from_ms: i64, to_ms: i64, offset_minutes: i16) -> Vec<Window> {
    let offset = i64::from(offset_minutes) * 60_000;
    let mut windows = Vec::new();
    let mut start = from_ms;
    while start < to_ms {
        let next_midnight = ((start + offset).div_euclid(DAY_MS) + 1) * DAY_MS - offset;
        let end = next_midnight.min(to_ms);
        windows.push(Window {
            start_ms: start,
            end_ms: end,
        });
        start = end;
    }
    windows
}

/// The checkpoint key of a completed window.
pub(super) fn checkpoint_key(state_prefix: &str, tenant: &str, window: Window) -> String {
    format!(
        "{}{}-{}.json",
        checkpoint_prefix(state_prefix, tenant),
        window.start_ms,
        window.end_ms
    )
}

pub(super) fn checkpoint_prefix(state_prefix: &str, tenant: &str) -> String {
    format!("{state_prefix}backfill/{tenant}/")
}

/// The windows named by checkpoint keys under `prefix` (others are ignored).
pub(super) fn parse_checkpoints(prefix: &str, keys: &[String]) -> Vec<Window> {
    keys.iter()
        .filter_map(|key| {
            let name = key.strip_prefix(prefix)?.strip_suffix(".json")?;
            let (start, end) = name.split_once('-')?;
            Some(Window {
                start_ms: start.parse().ok()?,
                end_ms: end.parse().ok()?,
            })
        })
        .collect()
}

/// Whether a completed window covers `window`.
pub(super) fn covered(done: &[Window], window: Window) -> bool {
    done.iter()
        .any(|d| d.start_ms <= window.start_ms && d.end_ms >= window.end_ms)
}
