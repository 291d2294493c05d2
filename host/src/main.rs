//! The `audit-archiver` binary: everything is in the library
//! (`commands::main`), so that this crate compiles in a moment; started as
//! `bootstrap` with no arguments (an AWS Lambda package), it runs `lambda`.

use std::process::ExitCode;

/// The AWS SDK allocates and frees dozens of small buffers per request;
/// mimalloc's per-thread free lists make those cheap (BENCHMARKS.md, section 3).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Lambda starts a custom runtime's `bootstrap` with no arguments.
    let started_as = argv.first().map(std::path::Path::new);
    if argv.len() == 1 && started_as.and_then(|p| p.file_name()) == Some("bootstrap".as_ref()) {
        argv.push("lambda".into());
    }
    ExitCode::from(audit_archiver::commands::main(argv) as u8)
}
