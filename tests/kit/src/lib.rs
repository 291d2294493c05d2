//! What the end-to-end suites of audit-archiver share (`host/tests/`: e2e,
//! reliability, readback, lambda, backfill): a real moto server on a free
//! loopback port reached through the real AWS SDK ([`Moto`]), the built
//! `audit-archiver` binary ([`binary`], [`Moto::command`], [`Host`]), what it
//! prints ([`summary`]), workloads of documented Prisma Cloud audit logs
//! ([`audit_log`], [`Moto::send_logs`]), a fault-injecting proxy ([`proxy`]),
//! polling with a deadline ([`wait_for`]), the final audit of a bucket
//! against what was sent ([`audit()`]), and digest keys ([`openssl_keys`]).
//!
//! There is no skipping: without moto (run `scripts/setup.sh`) every test
//! that starts one fails.

mod audit;
mod flags;
mod keys;
mod moto;
mod process;
pub mod proxy;
mod wait;
mod workload;

use std::path::PathBuf;

pub use audit::{audit, Audit};
pub use flags::{assert_refused, refusals, Refusal, REFUSALS};
pub use keys::{openssl_keys, temp_dir};
pub use moto::{documented_policy, free_port, Moto, StoredObject, IAM_PAGE};
pub use process::{
    collect_pipe, counter, exit_code, run_offline, run_with_limit, run_with_stdin, stderr,
    stdout_json, summary, summary_of, Host,
};
pub use wait::{wait_for, wait_for_every, wait_for_objects, wait_settled};
pub use workload::{audit_log, daemon_args, scale, serial, two_tenant_backlog, unique, Rng, Sent};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `audit-archiver` binary under test: `$AUDIT_ARCHIVER_BIN`, else the
/// one cargo built beside the running test (`target/<profile>/`; cargo
/// builds a package's binaries before its integration tests).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("AUDIT_ARCHIVER_BIN") {
        return PathBuf::from(path);
    }
    let test = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join(format!("audit-archiver{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} does not exist: run the suites with `cargo test -p audit-archiver`, \
         which builds it, or set AUDIT_ARCHIVER_BIN",
        binary.display()
    );
    binary
}
