//! The WIT contract as the host calls it: the one `bindgen!` against
//! `wit/`, the exported functions' types, and the conversions between its
//! types and `transform`'s.

use audit_archiver_transform::{self as transform, Message, RouteError, SettingsError};
use wasmtime::component::TypedFunc;

/// The one place that runs `bindgen!` against `wit/`. Its types are what
/// crosses the boundary; its `Routing` world wrapper is not used, because it
/// insists on every function of 1.1 and the host also runs 1.0 components
/// ([`RouterExports`]).
#[allow(dead_code)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "routing",
        // Messages cross into the guest by reference: no host-side copy of
        // bodies, ids or queue names before the canonical ABI copies them in.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

pub(super) use bindings::exports::audit_archiver::routing::router as wit;

/// The functions' types, as `bindgen!` maps them (parameters borrowed).
pub(super) type ValidateCall<'a> =
    TypedFunc<(wit::Settings<'a>,), (Result<(), wit::SettingsError>,)>;
pub(super) type RouteCall<'a> =
    TypedFunc<(wit::Settings<'a>, wit::Message<'a>), (Result<wit::Placement, wit::RouteError>,)>;
pub(super) type RouteBatchCall<'a> = TypedFunc<
    (wit::Settings<'a>, &'a [wit::Message<'a>]),
    (Vec<Result<wit::Placement, wit::RouteError>>,),
>;
pub(super) type RouteQueueCall<'a> = TypedFunc<
    (
        wit::Settings<'a>,
        &'a str,
        &'a str,
        &'a [wit::PackedMessage],
    ),
    (wit::PackedPlacements,),
>;

/// The overrides, borrowed, for [`to_wit_settings`].
pub(super) fn wit_overrides(settings: &transform::Settings) -> Vec<wit::TenantOverride<'_>> {
    settings
        .tenant_overrides
        .iter()
        .map(|o| wit::TenantOverride {
            queue: &o.queue,
            tenant: &o.tenant,
        })
        .collect()
}

/// The settings as the component takes them, borrowed: nothing is copied on
/// the host side before the canonical ABI copies the strings in.
pub(super) fn to_wit_settings<'a>(
    settings: &'a transform::Settings,
    overrides: &'a [wit::TenantOverride<'a>],
) -> wit::Settings<'a> {
    wit::Settings {
        key_template: &settings.key_template,
        time_source: match settings.time_source {
            transform::TimeSource::FirstReceive => wit::TimeSource::FirstReceive,
            transform::TimeSource::Sent => wit::TimeSource::Sent,
            transform::TimeSource::Event => wit::TimeSource::Event,
        },
        utc_offset_minutes: settings.utc_offset_minutes,
        tenant_overrides: overrides,
    }
}

pub(super) fn to_wit_message<'a>(message: &Message<'a>) -> wit::Message<'a> {
    wit::Message {
        message_id: message.message_id,
        queue: message.queue,
        body: message.body,
        first_receive_ms: message.first_receive_ms,
        sent_ms: message.sent_ms,
    }
}

pub(super) fn from_wit_settings_error(e: wit::SettingsError) -> SettingsError {
    use wit::SettingsError as W;
    match e {
        W::EmptyTemplate(d) => SettingsError::EmptyTemplate(d),
        W::UnknownField(d) => SettingsError::UnknownField(d),
        W::UnknownSpecifier(d) => SettingsError::UnknownSpecifier(d),
        W::UnsafeTemplate(d) => SettingsError::UnsafeTemplate(d),
        W::InvalidOffset(d) => SettingsError::InvalidOffset(d),
        W::InvalidTenantOverride(d) => SettingsError::InvalidTenantOverride(d),
    }
}

pub(super) fn from_wit_route_error(e: wit::RouteError) -> RouteError {
    use wit::RouteError as W;
    match e {
        W::InvalidSettings(s) => RouteError::InvalidSettings(from_wit_settings_error(s)),
        W::InvalidQueue(d) => RouteError::InvalidQueue(d),
        W::InvalidMessageId(d) => RouteError::InvalidMessageId(d),
        W::MissingTime(d) => RouteError::MissingTime(d),
        W::InvalidTime(d) => RouteError::InvalidTime(d),
        W::InvalidBody(d) => RouteError::InvalidBody(d),
        W::UnsafeKey(d) => RouteError::UnsafeKey(d),
    }
}
