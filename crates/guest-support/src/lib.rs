//! What a `no_std` routing component needs to import nothing, written once
//! for every component in the repository (`transform/`, `examples/flat-layout`,
//! `tests/fixtures/hostile-router`).
//!
//! Linking this crate into a `wasm32` component gives it:
//! - a global allocator (dlmalloc on linear memory: no WASI import);
//! - a panic handler that traps (there is no unwinding across the component
//!   boundary, and nothing to print to);
//! - `cabi_realloc`, the canonical ABI's allocation entry point, which std (or
//!   wit-bindgen's `realloc` feature) would otherwise provide;
//! - `memcmp` and the other C memory routines a `no_std` build still calls,
//!   linked from the wasi-libc that ships with the `wasm32-wasip2` target
//!   (only referenced, import-free routines are pulled in). Declared here with
//!   `#[link]` rather than with a `-lc` link argument so that neither a
//!   `RUSTFLAGS` variable nor a missing build script can drop it.
//!
//! A component only names the crate (`use audit_archiver_guest_support as _;`)
//! so that it is linked. With the `std` feature (a guest that links std on
//! purpose) only `cabi_realloc` is provided. On any other target the crate is
//! empty, so native builds and tests of the components are unaffected.
#![no_std]

#[cfg(target_arch = "wasm32")]
extern crate alloc;

#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[link(name = "c")]
extern "C" {}

/// The canonical ABI's allocation entry point (std would provide it).
///
/// # Safety
/// Called by the component runtime with a valid previous allocation (or
/// `old_len == 0`) and a power-of-two `align`.
#[cfg(target_arch = "wasm32")]
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
