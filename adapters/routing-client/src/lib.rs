//! The routing component as the adapters see it: bindings for the imported
//! `audit-archiver:routing/router` interface, generated from `wit/router.wit`
//! (read by path, never copied), the JSON shapes of settings and messages that
//! `tests/vectors/` use, and the output line of `audit-archiver route`,
//! rendered byte for byte as the host renders it.
//!
//! The router itself is not here: an adapter only imports it, and `wac plug`
//! fills that import with the routing component (scripts/build-adapters.sh).
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    // wit/router.wit, then the world that imports its router (build.rs writes
    // it with the version that file declares).
    path: ["../../wit", concat!(env!("OUT_DIR"), "/router-client")],
    world: "audit-archiver:adapters/router-client",
    generate_all,
});

pub use audit_archiver::routing::router::{
    route, route_batch, validate_settings, Message, Placement, RouteError, Settings, SettingsError,
    TenantOverride, TimeSource,
};

/// The WIT case name of a settings error, and its detail.
pub fn settings_error_parts(error: &SettingsError) -> (&'static str, &str) {
    match error {
        SettingsError::EmptyTemplate(d) => ("empty-template", d),
        SettingsError::UnknownField(d) => ("unknown-field", d),
        SettingsError::UnknownSpecifier(d) => ("unknown-specifier", d),
        SettingsError::UnsafeTemplate(d) => ("unsafe-template", d),
        SettingsError::InvalidOffset(d) => ("invalid-offset", d),
        SettingsError::InvalidTenantOverride(d) => ("invalid-tenant-override", d),
    }
}

/// The WIT case name of a route error, and its detail (for
/// `invalid-settings`, the settings error's detail, as the host reports it).
pub fn route_error_parts(error: &RouteError) -> (&'static str, &str) {
    match error {
        RouteError::InvalidSettings(e) => ("invalid-settings", settings_error_parts(e).1),
        RouteError::InvalidQueue(d) => ("invalid-queue", d),
        RouteError::InvalidMessageId(d) => ("invalid-message-id", d),
        RouteError::MissingTime(d) => ("missing-time", d),
        RouteError::InvalidTime(d) => ("invalid-time", d),
        RouteError::InvalidBody(d) => ("invalid-body", d),
        RouteError::UnsafeKey(d) => ("unsafe-key", d),
    }
}

/// A route error as `audit-archiver route` prints it: `case: detail`.
pub fn route_error_text(error: &RouteError) -> String {
    let (case, detail) = route_error_parts(error);
    format!("{case}: {detail}")
}

/// One output line of `audit-archiver route` (host/src/commands/route.rs,
/// `RouteLine`): the same fields in the same order, written by the same
/// serde_json, so the bytes are the same.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RouteLine<'a> {
    /// Where the message would be archived.
    Placed {
        /// The SQS message id.
        message_id: &'a str,
        /// The tenant.
        tenant: &'a str,
        /// The object key.
        key: &'a str,
    },
    /// Why it would not be.
    Failed {
        /// The SQS message id.
        message_id: &'a str,
        /// `case: detail`.
        error: &'a str,
    },
}

impl RouteLine<'_> {
    /// The line, with its `\n`, appended to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Serializing borrowed strings cannot fail.
        out.extend(serde_json::to_vec(self).expect("a route line serializes"));
        out.push(b'\n');
    }
}

/// The line for one routing result.
pub fn write_result(out: &mut Vec<u8>, message_id: &str, result: &Result<Placement, RouteError>) {
    match result {
        Ok(placement) => RouteLine::Placed {
            message_id,
            tenant: &placement.tenant,
            key: &placement.key,
        }
        .write_to(out),
        Err(error) => RouteLine::Failed {
            message_id,
            error: &route_error_text(error),
        }
        .write_to(out),
    }
}

/// Settings in the JSON shape of `tests/vectors/` (snake_case); every field
/// may be left out, and then takes `audit-archiver route`'s default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsJson {
    /// `default`, `seed` or a template.
    #[serde(default = "default_template")]
    pub key_template: String,
    /// `first-receive`, `sent` or `event`.
    #[serde(default)]
    pub time_source: TimeSourceJson,
    /// Minutes east of UTC; 540 is JST.
    #[serde(default = "default_offset")]
    pub utc_offset_minutes: i16,
    /// Bare queue name to tenant.
    #[serde(default)]
    pub tenant_overrides: Vec<TenantOverrideJson>,
}

impl Default for SettingsJson {
    fn default() -> Self {
        Self {
            key_template: default_template(),
            time_source: TimeSourceJson::default(),
            utc_offset_minutes: default_offset(),
            tenant_overrides: Vec::new(),
        }
    }
}

fn default_template() -> String {
    "default".into()
}

fn default_offset() -> i16 {
    9 * 60
}

/// `time_source` values.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeSourceJson {
    /// `ApproximateFirstReceiveTimestamp`.
    #[default]
    FirstReceive,
    /// `SentTimestamp`.
    Sent,
    /// The audit record's `timestamp`.
    Event,
}

impl From<TimeSourceJson> for TimeSource {
    fn from(source: TimeSourceJson) -> Self {
        match source {
            TimeSourceJson::FirstReceive => TimeSource::FirstReceive,
            TimeSourceJson::Sent => TimeSource::Sent,
            TimeSourceJson::Event => TimeSource::Event,
        }
    }
}

/// One `tenant_overrides` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOverrideJson {
    /// The bare queue name.
    pub queue: String,
    /// Its tenant.
    pub tenant: String,
}

impl From<SettingsJson> for Settings {
    fn from(s: SettingsJson) -> Self {
        Settings {
            key_template: s.key_template,
            time_source: s.time_source.into(),
            utc_offset_minutes: s.utc_offset_minutes,
            tenant_overrides: s
                .tenant_overrides
                .into_iter()
                .map(|o| TenantOverride {
                    queue: o.queue,
                    tenant: o.tenant,
                })
                .collect(),
        }
    }
}

/// A message in the JSON shape of `tests/vectors/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageJson {
    /// The SQS `MessageId`.
    pub message_id: String,
    /// ARN, URL or bare name.
    pub queue: String,
    /// The body (read only by the `event` time source).
    #[serde(default)]
    pub body: String,
    /// `ApproximateFirstReceiveTimestamp`, epoch ms.
    #[serde(default)]
    pub first_receive_ms: Option<u64>,
    /// `SentTimestamp`, epoch ms.
    #[serde(default)]
    pub sent_ms: Option<u64>,
}

impl From<MessageJson> for Message {
    fn from(m: MessageJson) -> Self {
        Message {
            message_id: m.message_id,
            queue: m.queue,
            body: m.body,
            first_receive_ms: m.first_receive_ms,
            sent_ms: m.sent_ms,
        }
    }
}
