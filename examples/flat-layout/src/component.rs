//! The component: the `routing` world's `router` export, a thin adapter
//! between the generated WIT types and [`crate::FlatLayout`]. What a `no_std`
//! component needs to import nothing (allocator, panic handler,
//! `cabi_realloc`) comes from `audit-archiver-guest-support`.

use alloc::vec::Vec;

use crate::{transform as r, FlatLayout};

// The contract; or, for the host's tests only, contract 1.0.0 as released
// (`wit-1-0`, without `route-queue`), which the host must still run.
#[cfg(not(feature = "wit-1-0"))]
wit_bindgen::generate!({ path: "../../wit", world: "routing" });
#[cfg(feature = "wit-1-0")]
wit_bindgen::generate!({ path: "wit-1.0", world: "routing" });

use exports::audit_archiver::routing::router as wit;

// The allocator, the panic handler, `cabi_realloc` and the C memory routines.
use audit_archiver_guest_support as _;

struct Component;

export!(Component);

fn settings(s: &wit::Settings) -> r::Settings {
    r::Settings {
        key_template: s.key_template.clone(),
        time_source: match s.time_source {
            wit::TimeSource::FirstReceive => r::TimeSource::FirstReceive,
            wit::TimeSource::Sent => r::TimeSource::Sent,
            wit::TimeSource::Event => r::TimeSource::Event,
        },
        utc_offset_minutes: s.utc_offset_minutes,
        tenant_overrides: s
            .tenant_overrides
            .iter()
            .map(|o| r::TenantOverride {
                queue: o.queue.clone(),
                tenant: o.tenant.clone(),
            })
            .collect(),
    }
}

fn settings_error(e: r::SettingsError) -> wit::SettingsError {
    use r::SettingsError as E;
    use wit::SettingsError as W;
    match e {
        E::EmptyTemplate(d) => W::EmptyTemplate(d),
        E::UnknownField(d) => W::UnknownField(d),
        E::UnknownSpecifier(d) => W::UnknownSpecifier(d),
        E::UnsafeTemplate(d) => W::UnsafeTemplate(d),
        E::InvalidOffset(d) => W::InvalidOffset(d),
        E::InvalidTenantOverride(d) => W::InvalidTenantOverride(d),
    }
}

fn route(layout: &FlatLayout, m: &wit::Message) -> Result<wit::Placement, wit::RouteError> {
    use r::RouteError as E;
    use wit::RouteError as W;
    let message = r::Message {
        message_id: &m.message_id,
        queue: &m.queue,
        body: &m.body,
        first_receive_ms: m.first_receive_ms,
        sent_ms: m.sent_ms,
    };
    match layout.route(&message) {
        Ok(p) => Ok(wit::Placement {
            tenant: p.tenant,
            key: p.key,
            time_ms: p.time_ms,
        }),
        Err(e) => Err(match e {
            E::InvalidSettings(s) => W::InvalidSettings(settings_error(s)),
            E::InvalidQueue(d) => W::InvalidQueue(d),
            E::InvalidMessageId(d) => W::InvalidMessageId(d),
            E::MissingTime(d) => W::MissingTime(d),
            E::InvalidTime(d) => W::InvalidTime(d),
            E::InvalidBody(d) => W::InvalidBody(d),
            E::UnsafeKey(d) => W::UnsafeKey(d),
        }),
    }
}

fn layout(s: &wit::Settings) -> Result<FlatLayout, wit::SettingsError> {
    FlatLayout::new(&settings(s)).map_err(settings_error)
}

impl wit::Guest for Component {
    fn validate_settings(s: wit::Settings) -> Result<(), wit::SettingsError> {
        layout(&s).map(|_| ())
    }

    fn route(s: wit::Settings, m: wit::Message) -> Result<wit::Placement, wit::RouteError> {
        let layout = layout(&s).map_err(wit::RouteError::InvalidSettings)?;
        route(&layout, &m)
    }

    fn route_batch(
        s: wit::Settings,
        messages: Vec<wit::Message>,
    ) -> Vec<Result<wit::Placement, wit::RouteError>> {
        match layout(&s) {
            Ok(layout) => messages.iter().map(|m| route(&layout, m)).collect(),
            Err(e) => messages
                .iter()
                .map(|_| Err(wit::RouteError::InvalidSettings(e.clone())))
                .collect(),
        }
    }

    // Contract 1.1: the same routing, strings packed (see `wit/router.wit`).
    #[cfg(not(feature = "wit-1-0"))]
    fn route_queue(
        s: wit::Settings,
        queue: alloc::string::String,
        text: alloc::string::String,
        messages: Vec<wit::PackedMessage>,
    ) -> wit::PackedPlacements {
        // Lengths past the text, inside a character or short of its end: the
        // caller's bug.
        let mut unpacker = r::packed::Unpacker::new(&text);
        let mut take = |len: u32| match unpacker.take(len) {
            Ok(taken) => alloc::string::String::from(taken),
            Err(_) => core::arch::wasm32::unreachable(),
        };
        let unpacked: Vec<wit::Message> = messages
            .iter()
            .map(|m| wit::Message {
                message_id: take(m.message_id_len),
                queue: queue.clone(),
                body: take(m.body_len),
                first_receive_ms: m.first_receive_ms,
                sent_ms: m.sent_ms,
            })
            .collect();
        if unpacker.finish().is_err() {
            core::arch::wasm32::unreachable();
        }
        let layout = layout(&s).map_err(wit::RouteError::InvalidSettings);
        let mut placed = alloc::string::String::new();
        let results = unpacked
            .iter()
            .map(|m| {
                let layout = layout.as_ref().map_err(Clone::clone)?;
                route(layout, m).map(|p| {
                    let packed = r::packed::pack(&mut placed, &p.tenant, &p.key, p.time_ms);
                    wit::PackedPlacement {
                        tenant_len: packed.tenant_len as u32,
                        key_len: packed.key_len as u32,
                        time_ms: packed.time_ms,
                    }
                })
            })
            .collect();
        wit::PackedPlacements {
            text: placed,
            results,
        }
    }
}
