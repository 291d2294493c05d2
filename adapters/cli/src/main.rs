//! `audit-archiver route` as a `wasi:cli/command` component: reads a
//! Lambda-shaped SQS event or NDJSON of records (a file or stdin), routes them
//! through the imported router, and prints exactly the host's lines, one per
//! record, in input order. Exit 0 done, 1 output failed, 2 invalid flags,
//! settings or input (the message names the flag). WASI 0.2's
//! `wasi:cli/exit` carries only success or failure, so today's hosts report
//! both failures as exit status 1.
//!
//! The router is imported (`wac plug` fills it with the routing component);
//! parsing of the input and of queue names is the host's own code, compiled in
//! by path, so both read the same input the same way.

mod flags;
mod route;

/// The host's input parser (`audit-archiver route --event`), the same file.
#[allow(dead_code)]
#[path = "../../../host/src/source/lambda_event.rs"]
mod lambda_event;

/// Queue references to bare names (for `--tenant-map` given a URL or ARN),
/// the same file the routing component is built from.
#[allow(dead_code)]
#[path = "../../../transform/src/queue.rs"]
mod queue;

use std::process::ExitCode;

fn main() -> ExitCode {
    let outcome = flags::Flags::parse(std::env::args().skip(1)).and_then(route::route);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(flags::CommandError::Help) => {
            print!("{}", flags::USAGE);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
