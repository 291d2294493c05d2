//! Routing of Prisma Cloud audit-log SQS messages to S3 archive placements.
//!
//! This crate implements the WIT contract `audit-archiver:routing@1.0.0`
//! (`wit/router.wit`) as a pure function: given [`Settings`] and a
//! [`Message`], it decides the tenant and the object key ([`Placement`]), or
//! says why it cannot ([`RouteError`]). No clock, no randomness, no I/O, no
//! floating point: the same input gives the same key everywhere, forever.
//!
//! It is built two ways from the same code:
//! - natively, as a plain `no_std` + `alloc` Rust library (tests, the host's
//!   re-validation with [`check_key`], benchmarks);
//! - for `wasm32-wasip2`, as a WebAssembly component exporting the `routing`
//!   world that imports nothing (its own allocator and panic handler, no
//!   std).
//!
//! ```
//! use audit_archiver_transform::{Message, Router, Settings};
//!
//! let router = Router::new(&Settings::default())?; // template `default`, JST
//! let placement = router.route(&Message {
//!     message_id: "m-1",
//!     queue: "arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo",
//!     body: "",
//!     first_receive_ms: Some(1_750_991_540_913),
//!     sent_ms: None,
//! })?;
//! assert_eq!(placement.tenant, "acme");
//! assert_eq!(
//!     placement.key,
//!     "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-m-1.json"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;
// The code uses only `core` and `alloc` (the wasm32 build, which has no std,
// enforces it). Native builds still link std, unused, because the native
// `cdylib` needs its allocator and panic handler; so does the wasm32 one with
// the `std` feature (a component that links std on purpose).
#[cfg(all(not(test), any(not(target_arch = "wasm32"), feature = "std")))]
extern crate std;

pub mod event;
pub mod key;
pub mod packed;
pub mod queue;
pub mod router;
pub mod template;
pub mod time;

#[cfg(all(target_arch = "wasm32", feature = "component", not(test)))]
mod component;
// The wasm32 build's allocator, panic handler, `cabi_realloc` and C memory
// routines (also when another component uses this crate as a library: the
// `cdylib` is linked then too).
#[cfg(target_arch = "wasm32")]
use audit_archiver_guest_support as _;

pub use key::{alternate_key, check_key, check_message_id, KeyError, MAX_KEY_LEN};
pub use router::{
    route, route_batch, validate_settings, Message, Placement, RouteError, Router, Settings,
    SettingsError, TenantOverride, TimeSource, UnknownTimeSource,
};
pub use template::{DEFAULT, SEED};
