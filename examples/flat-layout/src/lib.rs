//! An alternative routing component for audit-archiver: the same contract
//! (`wit/router.wit`, world `routing`), a different layout.
//!
//! ```text
//! {tenant}/{YYYY-MM-DD}/{message_id}.json        (date in UTC)
//! ```
//!
//! It ignores the settings' key template and UTC offset (the layout is fixed,
//! in UTC), honours the time source (`first-receive` or `sent`; it never
//! reads the body, so `event` is refused per message as `missing-time`) and
//! the tenant overrides. The tenant rule is the product's: the queue name up
//! to its first `-`, or the name without `.fifo`.
//!
//! It is an example of a team's own component (see `docs/embedding.md`):
//! `no_std`, no dependencies but the bindings and an allocator, imports
//! nothing, and is also a plain Rust library so its logic is tested natively.
//!
//! ```
//! use audit_archiver_flat_layout::{route, Message};
//!
//! let message = Message {
//!     message_id: "m-1",
//!     queue: "arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo",
//!     first_receive_ms: Some(1_750_991_540_913),
//!     sent_ms: None,
//! };
//! let (tenant, key) = route(&message, false, &[]).unwrap();
//! assert_eq!(tenant, "acme");
//! assert_eq!(key, "acme/2025-06-27/m-1.json");
//! ```
#![cfg_attr(target_arch = "wasm32", no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::String;

#[cfg(target_arch = "wasm32")]
mod component;

/// What the layout reads from one SQS message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The SQS message id: the object's file name.
    pub message_id: &'a str,
    /// The queue: an ARN, a URL or a bare name.
    pub queue: &'a str,
    /// `ApproximateFirstReceiveTimestamp`, epoch ms.
    pub first_receive_ms: Option<u64>,
    /// `SentTimestamp`, epoch ms.
    pub sent_ms: Option<u64>,
}

/// Why a message cannot be placed; each maps to the WIT `route-error` case
/// of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `invalid-queue`.
    InvalidQueue(String),
    /// `invalid-message-id`.
    InvalidMessageId(String),
    /// `missing-time`.
    MissingTime(String),
    /// `invalid-time`.
    InvalidTime(String),
}

/// Checks one tenant override (`invalid-tenant-override` when it fails).
pub fn check_override(queue: &str, tenant: &str) -> Result<(), String> {
    if queue.is_empty() {
        return Err(format!("tenant override {tenant:?}: the queue is empty"));
    }
    if !is_valid_tenant(tenant) {
        return Err(format!(
            "tenant override {queue:?} = {tenant:?}: a tenant is 1-63 ASCII letters, digits, '_' or '.'"
        ));
    }
    Ok(())
}

/// Places one message: `(tenant, key)`. `sent` selects `SentTimestamp`
/// instead of `ApproximateFirstReceiveTimestamp`; `overrides` are
/// `(bare queue name, tenant)` pairs.
pub fn route(
    message: &Message<'_>,
    sent: bool,
    overrides: &[(&str, &str)],
) -> Result<(String, String), Error> {
    let id = message.message_id;
    if id.is_empty()
        || id.len() > 128
        || id.contains(['/', '\\'])
        || id.chars().any(char::is_control)
        || id == "."
        || id == ".."
    {
        return Err(Error::InvalidMessageId(format!(
            "message {id:?}: the id cannot be a file name"
        )));
    }
    let name = queue_name(message.queue);
    let tenant = match overrides.iter().find(|(queue, _)| *queue == name) {
        Some((_, tenant)) => *tenant,
        None => match name.split_once('-') {
            Some((tenant, _)) => tenant,
            None => name.strip_suffix(".fifo").unwrap_or(name),
        },
    };
    if !is_valid_tenant(tenant) {
        return Err(Error::InvalidQueue(format!(
            "message {id:?}: queue {:?} gives no valid tenant",
            message.queue
        )));
    }
    let (attribute, ms) = if sent {
        ("SentTimestamp", message.sent_ms)
    } else {
        ("ApproximateFirstReceiveTimestamp", message.first_receive_ms)
    };
    let ms = ms.ok_or_else(|| Error::MissingTime(format!("message {id:?}: no {attribute}")))?;
    let (year, month, day) = utc_date(ms);
    if year > 9999 {
        return Err(Error::InvalidTime(format!(
            "message {id:?}: {attribute} {ms} is past year 9999"
        )));
    }
    let key = format!("{tenant}/{year:04}-{month:02}-{day:02}/{id}.json");
    Ok((String::from(tenant), key))
}

/// The bare queue name of an ARN, a queue URL or a name.
pub fn queue_name(queue: &str) -> &str {
    if queue.starts_with("arn:") {
        return queue.rsplit(':').next().unwrap_or(queue);
    }
    match queue.split_once("://") {
        Some((_, rest)) => {
            let path = rest.split('?').next().unwrap_or(rest);
            path.split('/').rfind(|s| !s.is_empty()).unwrap_or("")
        }
        None => queue,
    }
}

fn is_valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 63
        && tenant != "."
        && tenant != ".."
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
}

/// The UTC calendar date of epoch milliseconds (proleptic Gregorian).
pub fn utc_date(ms: u64) -> (u64, u64, u64) {
    // Howard Hinnant's civil_from_days, for days >= 0.
    let z = ms / 86_400_000 + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(queue: &str) -> Message<'_> {
        Message {
            message_id: "m-1",
            queue,
            first_receive_ms: Some(1_750_991_540_913),
            sent_ms: Some(0),
        }
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_date(951_782_400_000), (2000, 2, 29));
        assert_eq!(utc_date(253_402_300_799_999), (9999, 12, 31));
        assert_eq!(utc_date(253_402_300_800_000), (10000, 1, 1));
    }

    #[test]
    fn every_queue_spelling_gives_the_tenant() {
        for queue in [
            "arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo",
            "https://sqs.ap-northeast-1.amazonaws.com/123456789012/acme-audit",
            "http://127.0.0.1:5000/123456789012/acme-audit/?Action=ReceiveMessage",
            "acme.fifo",
        ] {
            let (tenant, key) = route(&message(queue), false, &[]).unwrap();
            assert_eq!(
                (tenant.as_str(), key.as_str()),
                ("acme", "acme/2025-06-27/m-1.json")
            );
        }
        let (_, key) = route(&message("acme-q"), true, &[("acme-q", "other")]).unwrap();
        assert_eq!(key, "other/1970-01-01/m-1.json");
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            route(&message("-q"), false, &[]),
            Err(Error::InvalidQueue(_))
        ));
        let mut bad = message("acme-q");
        bad.message_id = "..";
        assert!(matches!(
            route(&bad, false, &[]),
            Err(Error::InvalidMessageId(_))
        ));
        bad = message("acme-q");
        bad.first_receive_ms = None;
        assert!(matches!(
            route(&bad, false, &[]),
            Err(Error::MissingTime(_))
        ));
        assert!(check_override("", "acme").is_err());
        assert!(check_override("q", "a-b").is_err());
    }
}
