//! The component: the `routing` world's `router` export over [`crate::route`],
//! plus what a `no_std` component needs to import nothing (an allocator, a
//! panic handler that traps, and the canonical ABI's `cabi_realloc`).

use alloc::vec::Vec;

// The contract; or, for the host's refusal tests only, an incompatible
// version of it (`wit-v2`) or a world that imports a function (`with-import`).
#[cfg(not(any(feature = "wit-v2", feature = "with-import")))]
wit_bindgen::generate!({ path: "../../wit", world: "routing" });
#[cfg(feature = "wit-v2")]
wit_bindgen::generate!({ path: "wit-v2", world: "routing" });
#[cfg(all(feature = "with-import", not(feature = "wit-v2")))]
wit_bindgen::generate!({ path: "wit-import", world: "routing" });

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
}
