//! The component: the `routing` world's `router` export over [`crate::route`],
//! plus what a `no_std` component needs to import nothing (an allocator, a
//! panic handler that traps, and the canonical ABI's `cabi_realloc`).

use alloc::vec::Vec;

// The contract; or, for the host's tests only, an incompatible version of it
// (`wit-v2`), a world that imports a function (`with-import`), or contract
// 1.0.0 as released (`wit-1-0`, without `route-queue`).
#[cfg(not(any(feature = "wit-v2", feature = "with-import", feature = "wit-1-0")))]
wit_bindgen::generate!({ path: "../../wit", world: "routing" });
#[cfg(feature = "wit-v2")]
wit_bindgen::generate!({ path: "wit-v2", world: "routing" });
#[cfg(all(feature = "with-import", not(feature = "wit-v2")))]
wit_bindgen::generate!({ path: "wit-import", world: "routing" });
#[cfg(all(
    feature = "wit-1-0",
    not(any(feature = "wit-v2", feature = "with-import"))
))]
wit_bindgen::generate!({ path: "wit-1.0", world: "routing" });

use exports::audit_archiver::routing::router as wit;

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocation entry point (std would provide it).
///
/// # Safety
/// Called by the component runtime with a valid previous allocation (or
/// `old_len == 0`) and a power-of-two `align`.
#[no_mangle]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{alloc, realloc, Layout};
    if new_len == 0 {
        return align as *mut u8;
    }
    let ptr = if old_len == 0 {
        alloc(Layout::from_size_align_unchecked(new_len, align))
    } else {
        realloc(
            old_ptr,
            Layout::from_size_align_unchecked(old_len, align),
            new_len,
        )
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable();
    }
    ptr
}

struct Component;

export!(Component);

fn check(s: &wit::Settings) -> Result<(), wit::SettingsError> {
    for o in &s.tenant_overrides {
        crate::check_override(&o.queue, &o.tenant)
            .map_err(wit::SettingsError::InvalidTenantOverride)?;
    }
    Ok(())
}

fn route(s: &wit::Settings, m: &wit::Message) -> Result<wit::Placement, wit::RouteError> {
    use crate::Error as E;
    use wit::RouteError as W;
    check(s).map_err(W::InvalidSettings)?;
    if s.time_source == wit::TimeSource::Event {
        return Err(W::MissingTime(alloc::format!(
            "message {:?}: the flat layout never reads the body; use --time-source first-receive or sent",
            m.message_id
        )));
    }
    let overrides: Vec<(&str, &str)> = s
        .tenant_overrides
        .iter()
        .map(|o| (o.queue.as_str(), o.tenant.as_str()))
        .collect();
    let sent = s.time_source == wit::TimeSource::Sent;
    let message = crate::Message {
        message_id: &m.message_id,
        queue: &m.queue,
        first_receive_ms: m.first_receive_ms,
        sent_ms: m.sent_ms,
    };
    let time_ms = if sent { m.sent_ms } else { m.first_receive_ms };
    match crate::route(&message, sent, &overrides) {
        Ok((tenant, key)) => Ok(wit::Placement {
            tenant,
            key,
            time_ms: time_ms.unwrap_or_default(),
        }),
        Err(E::InvalidQueue(d)) => Err(W::InvalidQueue(d)),
        Err(E::InvalidMessageId(d)) => Err(W::InvalidMessageId(d)),
        Err(E::MissingTime(d)) => Err(W::MissingTime(d)),
        Err(E::InvalidTime(d)) => Err(W::InvalidTime(d)),
    }
}

impl wit::Guest for Component {
    fn validate_settings(s: wit::Settings) -> Result<(), wit::SettingsError> {
        #[cfg(all(feature = "with-import", not(feature = "wit-v2")))]
        log("validating settings");
        check(&s)
    }

    fn route(s: wit::Settings, m: wit::Message) -> Result<wit::Placement, wit::RouteError> {
        route(&s, &m)
    }

    fn route_batch(
        s: wit::Settings,
        messages: Vec<wit::Message>,
    ) -> Vec<Result<wit::Placement, wit::RouteError>> {
        messages.iter().map(|m| route(&s, m)).collect()
    }

    // Contract 1.1: the same routing, strings packed (see `wit/router.wit`).
    #[cfg(not(feature = "wit-1-0"))]
    fn route_queue(
        s: wit::Settings,
        queue: alloc::string::String,
        text: alloc::string::String,
        messages: Vec<wit::PackedMessage>,
    ) -> wit::PackedPlacements {
        let mut at = 0;
        let mut take = |len: u32| {
            let start = at;
            at += len as usize;
            // Lengths past the text or inside a character: the caller's bug.
            match text.get(start..at) {
                Some(taken) => alloc::string::String::from(taken),
                None => core::arch::wasm32::unreachable(),
            }
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
        if at != text.len() {
            core::arch::wasm32::unreachable();
        }
        let mut placed = alloc::string::String::new();
        let results = unpacked
            .iter()
            .map(|m| {
                route(&s, m).map(|p| {
                    placed.push_str(&p.tenant);
                    placed.push_str(&p.key);
                    wit::PackedPlacement {
                        tenant_len: p.tenant.len() as u32,
                        key_len: p.key.len() as u32,
                        time_ms: p.time_ms,
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
