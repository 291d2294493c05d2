//! The WebAssembly component: the `routing` world's `router` export, as a
//! thin adapter between the generated WIT types and [`crate::router`]. What a
//! `no_std` component needs to import nothing (allocator, panic handler,
//! `cabi_realloc`) comes from `audit-archiver-guest-support`.

use alloc::vec::Vec;
use core::cell::RefCell;

use crate::packed::{BadLengths, Unpacker};
use crate::router as r;

wit_bindgen::generate!({
    path: "../wit",
    world: "routing",
});

use exports::audit_archiver::routing::router as wit;

struct Component;

export!(Component);

fn settings(s: wit::Settings) -> r::Settings {
    r::Settings {
        key_template: s.key_template,
        time_source: match s.time_source {
            wit::TimeSource::FirstReceive => r::TimeSource::FirstReceive,
            wit::TimeSource::Sent => r::TimeSource::Sent,
            wit::TimeSource::Event => r::TimeSource::Event,
        },
        utc_offset_minutes: s.utc_offset_minutes,
        tenant_overrides: s
            .tenant_overrides
            .into_iter()
            .map(|o| r::TenantOverride {
                queue: o.queue,
                tenant: o.tenant,
            })
            .collect(),
    }
}

fn message(m: &wit::Message) -> r::Message<'_> {
    r::Message {
        message_id: &m.message_id,
        queue: &m.queue,
        body: &m.body,
        first_receive_ms: m.first_receive_ms,
        sent_ms: m.sent_ms,
    }
}

/// The route error of the WIT contract for `e`.
fn route_error(e: r::RouteError) -> wit::RouteError {
    match result(Err(e)) {
        Err(e) => e,
        Ok(_) => unreachable!("an error maps to an error"),
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

fn result(r: Result<r::Placement, r::RouteError>) -> Result<wit::Placement, wit::RouteError> {
    use r::RouteError as E;
    use wit::RouteError as W;
    match r {
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

/// The router built for the last settings seen, with those settings.
///
/// Hosts pass the same settings on every call, and parsing the template
/// would be most of the fixed cost of a call. Routing is pure, so reusing
/// the router is invisible to callers, and one entry keeps memory bounded.
struct LastRouter(RefCell<Option<(r::Settings, Result<r::Router, r::SettingsError>)>>);

// SAFETY: a component instance runs on a single thread (this wasm32 build has
// no threads), so the cell is never reached concurrently.
unsafe impl Sync for LastRouter {}

static LAST_ROUTER: LastRouter = LastRouter(RefCell::new(None));

/// Runs `f` with the router for `s`, building it only when the settings changed.
fn with_router<T>(
    s: wit::Settings,
    f: impl FnOnce(&Result<r::Router, r::SettingsError>) -> T,
) -> T {
    let settings = settings(s);
    let mut last = LAST_ROUTER.0.borrow_mut();
    let (_, router) = match last.take() {
        Some((cached, router)) if cached == settings => last.insert((cached, router)),
        _ => {
            let router = r::Router::new(&settings);
            last.insert((settings, router))
        }
    };
    f(router)
}

impl wit::Guest for Component {
    fn validate_settings(s: wit::Settings) -> Result<(), wit::SettingsError> {
        with_router(s, |router| {
            router
                .as_ref()
                .map(|_| ())
                .map_err(|e| settings_error(e.clone()))
        })
    }

    fn route(s: wit::Settings, m: wit::Message) -> Result<wit::Placement, wit::RouteError> {
        with_router(s, |router| match router {
            Ok(router) => result(router.route(&message(&m))),
            Err(e) => result(Err(r::RouteError::InvalidSettings(e.clone()))),
        })
    }

    fn route_batch(
        s: wit::Settings,
        messages: Vec<wit::Message>,
    ) -> Vec<Result<wit::Placement, wit::RouteError>> {
        with_router(s, |router| match router {
            Ok(router) => router
                .route_all(messages.iter().map(message))
                .map(result)
                .collect(),
            Err(e) => messages
                .iter()
                .map(|_| result(Err(r::RouteError::InvalidSettings(e.clone()))))
                .collect(),
        })
    }

    fn route_queue(
        s: wit::Settings,
        queue: alloc::string::String,
        text: alloc::string::String,
        messages: Vec<wit::PackedMessage>,
    ) -> wit::PackedPlacements {
        // Cut `text` into each message's id and body; lengths that do not
        // add up, or split a character, are the caller's bug: trap.
        let mut unpacker = Unpacker::new(&text);
        let mut take = |len: u32| {
            unpacker
                .take(len)
                .unwrap_or_else(|BadLengths| core::arch::wasm32::unreachable())
        };
        let unpacked: Vec<r::Message<'_>> = messages
            .iter()
            .map(|m| r::Message {
                message_id: take(m.message_id_len),
                queue: "",
                body: take(m.body_len),
                first_receive_ms: m.first_receive_ms,
                sent_ms: m.sent_ms,
            })
            .collect();
        if unpacker.finish().is_err() {
            core::arch::wasm32::unreachable();
        }
        let mut results = Vec::with_capacity(unpacked.len());
        let mut placed = alloc::string::String::new();
        with_router(s, |router| match router {
            Ok(router) => router.route_packed(&queue, unpacked, &mut placed, |result| {
                results.push(match result {
                    Ok(p) => Ok(wit::PackedPlacement {
                        tenant_len: p.tenant_len as u32,
                        key_len: p.key_len as u32,
                        time_ms: p.time_ms,
                    }),
                    Err(e) => Err(route_error(e)),
                })
            }),
            Err(e) => results.extend(
                unpacked
                    .iter()
                    .map(|_| Err(route_error(r::RouteError::InvalidSettings(e.clone())))),
            ),
        });
        wit::PackedPlacements {
            text: placed,
            results,
        }
    }
}
