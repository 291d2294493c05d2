//! The `audit-archiver` binary: parse flags, validate, run one command, map
//! the outcome to an exit code (0 done, 1 work failed, 2 invalid settings).

use std::process::ExitCode;

use audit_archiver::commands::{self, CommandError};
use audit_archiver::config::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Route(args) => args
            .validate()
            .map_err(|e| CommandError::Startup(e.to_string()))
            .and_then(|config| {
                audit_archiver::init_logging(config.routing.log_format);
                commands::route::route(config)
            }),
        Command::Run(args) => args
            .validate()
            .map_err(|e| CommandError::Startup(e.to_string()))
            .and_then(|config| {
                audit_archiver::init_logging(config.routing.log_format);
                tokio::runtime::Runtime::new()
                    .map_err(|e| CommandError::Runtime(e.into()))?
                    .block_on(commands::run::run(config))
            }),
        Command::Backfill(args) => args
            .validate()
            .map_err(|e| CommandError::Startup(e.to_string()))
            .and_then(|config| {
                audit_archiver::init_logging(config.routing.log_format);
                tokio::runtime::Runtime::new()
                    .map_err(|e| CommandError::Runtime(e.into()))?
                    .block_on(commands::backfill::backfill(config))
            }),
    };
    let exit = outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        error.exit()
    });
    ExitCode::from(exit as u8)
}
