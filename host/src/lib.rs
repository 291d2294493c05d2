//! audit-archiver: archives Prisma Cloud audit logs from Amazon SQS (and from
//! the Prisma Cloud API, `backfill`) to S3.
//!
//! A sandboxed WebAssembly component (`wit/router.wit`, built from
//! `transform/`) decides where each message is stored; this crate runs it
//! between an SQS source and an S3 sink and keeps the delivery rules: nothing
//! is lost, nothing is overwritten. `main.rs` only parses flags and maps the
//! outcome to an exit code.
#![deny(missing_docs)]

// The stages a message goes through, in order, each owning its port (the
// trait the loop calls) and its types; `docs/architecture.md` draws them.
pub mod read;
pub mod route;
pub mod seal;
pub mod settle;
pub mod source;
pub mod store;

// The loop that drives them, the configuration that builds them, and what
// they report.
pub mod config;
pub mod observe;
pub mod worker;

// The commands, and what the stages share.
pub mod aws;
pub mod commands;
pub mod permissions;
pub mod shutdown;
#[cfg(test)]
mod testing;
