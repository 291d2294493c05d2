//! An alternative routing component for audit-archiver: the same contract
//! (`wit/router.wit`, world `routing`), a different layout.
//!
//! ```text
//! {tenant}/{YYYY-MM-DD}/{message_id}.json        (date in UTC)
//! ```
//!
//! **What it changes is the layout only** ([`FlatLayout::key`]): the key's
//! shape, and UTC dates. It ignores the settings' key template and UTC offset
//! (the layout is fixed, in UTC) and honours the time source (`first-receive`
//! or `sent`; it never reads the body, so `event` is refused per message as
//! `missing-time`) and the tenant overrides.
//!
//! Everything else is the product's own rules, called from
//! `audit-archiver-transform` rather than copied, so the two components
//! cannot drift apart: the queue reference and the tenant (bare queue name,
//! its validation, the overrides and their validation, the naming rule:
//! [`transform::Router::tenant`]), the message-id check
//! ([`transform::check_message_id`]), the calendar arithmetic
//! ([`transform::time::local_time`]) and the key safety check
//! ([`transform::check_key`]).
//!
//! It is an example of a team's own component (see `docs/embedding.md`):
//! `no_std`, imports nothing, and is also a plain Rust library so its logic is
//! tested natively.
//!
//! ```
//! use audit_archiver_flat_layout::{FlatLayout, Message, Settings};
//!
//! let layout = FlatLayout::new(&Settings::default()).unwrap();
//! let placement = layout
//!     .route(&Message {
//!         message_id: "m-1",
//!         queue: "arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo",
//!         body: "",
//!         first_receive_ms: Some(1_750_991_540_913),
//!         sent_ms: None,
//!     })
//!     .unwrap();
//! assert_eq!(placement.tenant, "acme");
//! assert_eq!(placement.key, "acme/2025-06-27/m-1.json");
//! ```
#![cfg_attr(target_arch = "wasm32", no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::String;

pub use audit_archiver_transform as transform;
pub use transform::{
    Message, Placement, RouteError, Settings, SettingsError, TenantOverride, TimeSource,
};

#[cfg(target_arch = "wasm32")]
mod component;

/// The flat layout for one set of settings.
#[derive(Debug, Clone)]
pub struct FlatLayout {
    /// The product's router, used for its tenant rule and override checks
    /// only (its template and offset are not this layout's).
    tenants: transform::Router,
    time_source: TimeSource,
}

impl FlatLayout {
    /// Checks `settings` with the product's rules: the tenant overrides (bare
    /// queue names, valid tenants, no queue mapped twice). The key template
    /// and the UTC offset are ignored.
    pub fn new(settings: &Settings) -> Result<Self, SettingsError> {
        let tenants = transform::Router::new(&Settings {
            key_template: String::from(transform::DEFAULT),
            time_source: settings.time_source,
            utc_offset_minutes: 0,
            tenant_overrides: settings.tenant_overrides.clone(),
        })?;
        Ok(Self {
            tenants,
            time_source: settings.time_source,
        })
    }

    /// Places one message, checking in the product's order: the queue and
    /// tenant, the message id, the time, then the key.
    pub fn route(&self, message: &Message<'_>) -> Result<Placement, RouteError> {
        let id = message.message_id;
        let tenant = self.tenants.tenant(message.queue).map_err(|e| match e {
            RouteError::InvalidQueue(detail) => {
                RouteError::InvalidQueue(format!("message {id:?}: {detail}"))
            }
            other => other,
        })?;
        transform::check_message_id(id)
            .map_err(|why| RouteError::InvalidMessageId(format!("message {id:?}: {why}")))?;
        let (attribute, time_ms) = match self.time_source {
            TimeSource::FirstReceive => ("ApproximateFirstReceiveTimestamp", message.first_receive_ms),
            TimeSource::Sent => ("SentTimestamp", message.sent_ms),
            TimeSource::Event => {
                return Err(RouteError::MissingTime(format!(
                    "message {id:?}: the flat layout never reads the body; use --time-source first-receive or sent"
                )))
            }
        };
        let time_ms = time_ms
            .ok_or_else(|| RouteError::MissingTime(format!("message {id:?}: no {attribute}")))?;
        let key = Self::key(&tenant, id, time_ms).ok_or_else(|| {
            RouteError::InvalidTime(format!(
                "message {id:?}: {attribute} {time_ms} is past year 9999"
            ))
        })?;
        transform::check_key(&key, &tenant)
            .map_err(|e| RouteError::UnsafeKey(format!("message {id:?}: {e}")))?;
        Ok(Placement {
            tenant,
            key,
            time_ms,
        })
    }

    /// The layout, the one part this component changes:
    /// `{tenant}/{YYYY-MM-DD}/{message_id}.json`, the date in UTC. `None`
    /// past year 9999.
    pub fn key(tenant: &str, message_id: &str, time_ms: u64) -> Option<String> {
        let date = transform::time::local_time(time_ms, 0)?;
        Some(format!(
            "{tenant}/{:04}-{:02}-{:02}/{message_id}.json",
            date.year, date.month, date.day
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(queue: &str) -> Message<'_> {
        Message {
            message_id: "m-1",
            queue,
            body: "",
            first_receive_ms: Some(1_750_991_540_913),
            sent_ms: Some(0),
        }
    }

    fn layout(time_source: TimeSource, overrides: &[(&str, &str)]) -> FlatLayout {
        FlatLayout::new(&Settings {
            time_source,
            tenant_overrides: overrides
                .iter()
                .map(|(queue, tenant)| TenantOverride {
                    queue: String::from(*queue),
                    tenant: String::from(*tenant),
                })
                .collect(),
            ..Settings::default()
        })
        .unwrap()
    }

    #[test]
    fn dates_are_utc() {
        let key = |ms| FlatLayout::key("t", "m", ms);
        assert_eq!(key(0).as_deref(), Some("t/1970-01-01/m.json"));
        assert_eq!(key(951_782_400_000).as_deref(), Some("t/2000-02-29/m.json"));
        // 2025-06-30T23:59:59.999Z: still June 30 in UTC (July 1 in JST).
        assert_eq!(
            key(1_751_327_999_999).as_deref(),
            Some("t/2025-06-30/m.json")
        );
        assert_eq!(
            key(253_402_300_799_999).as_deref(),
            Some("t/9999-12-31/m.json")
        );
        assert_eq!(key(253_402_300_800_000), None);
    }

    #[test]
    fn every_queue_spelling_gives_the_tenant() {
        let flat = layout(TimeSource::FirstReceive, &[]);
        for queue in [
            "arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo",
            "https://sqs.ap-northeast-1.amazonaws.com/123456789012/acme-audit",
            "http://127.0.0.1:5000/123456789012/acme-audit/?Action=ReceiveMessage",
            "acme.fifo",
        ] {
            let placement = flat.route(&message(queue)).unwrap();
            assert_eq!(
                (placement.tenant.as_str(), placement.key.as_str()),
                ("acme", "acme/2025-06-27/m-1.json")
            );
        }
        let sent = layout(TimeSource::Sent, &[("acme-q", "other")]);
        let placement = sent.route(&message("acme-q")).unwrap();
        assert_eq!(placement.key, "other/1970-01-01/m-1.json");
    }

    #[test]
    fn queue_names_are_validated_as_the_product_does() {
        let flat = layout(TimeSource::FirstReceive, &[]);
        for queue in [
            "-q",
            "acme q",
            "arn:aws:s3:::acme-bucket",
            "https://h/1/a%2Fb",
        ] {
            assert!(
                matches!(
                    flat.route(&message(queue)),
                    Err(RouteError::InvalidQueue(_))
                ),
                "{queue}"
            );
        }
    }

    #[test]
    fn refusals() {
        let flat = layout(TimeSource::FirstReceive, &[]);
        let mut bad = message("acme-q");
        bad.message_id = "..";
        assert!(matches!(
            flat.route(&bad),
            Err(RouteError::InvalidMessageId(_))
        ));
        bad = message("acme-q");
        bad.first_receive_ms = None;
        assert!(matches!(flat.route(&bad), Err(RouteError::MissingTime(_))));
        assert!(matches!(
            layout(TimeSource::Event, &[]).route(&message("acme-q")),
            Err(RouteError::MissingTime(_))
        ));
        let overrides = |queue: &str, tenant: &str| Settings {
            tenant_overrides: alloc::vec![TenantOverride {
                queue: String::from(queue),
                tenant: String::from(tenant),
            }],
            ..Settings::default()
        };
        for (queue, tenant) in [("", "acme"), ("q", "a-b"), ("https://h/1/q", "acme")] {
            assert!(
                matches!(
                    FlatLayout::new(&overrides(queue, tenant)),
                    Err(SettingsError::InvalidTenantOverride(_))
                ),
                "{queue} -> {tenant}"
            );
        }
    }
}
