//! Reliability and security suite: the real `audit-archiver` binary against
//! moto's server on loopback, under kills, outages, injected faults, bad
//! input, hostile components, signals and competing hosts. Every scenario
//! audits the bucket at the end: each sent body in exactly one object
//! (matched by `sqs-message-id`), no key with a second version (the buckets are
//! versioned, so an overwrite would show), the queues empty. Figures are
//! printed: run with `--nocapture` (see RELIABILITY.md).
//!
//!     cargo test --release -p audit-archiver --test reliability -- --nocapture --test-threads 1
//!
//! `RELIABILITY_SCALE=10` multiplies messages, kills and rounds (a soak);
//! `RELIABILITY_SEED=N` replays the random choices of a run.

mod bad_input;
mod competing;
mod hostile;
mod kill9;
mod outage;
mod refused;
mod secrets;
mod sigterm;
mod throttling;
