//! The `audit-archiver` binary: parse flags, validate, run one command, map
//! the outcome to an exit code (0 done, 1 work failed, 2 invalid settings).
//! Started as `bootstrap` with no arguments (an AWS Lambda package), it runs
//! `lambda`.

use std::process::ExitCode;

use audit_archiver::commands::{self, CommandError};
use audit_archiver::config::{self, Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Lambda starts a custom runtime's `bootstrap` with no arguments.
    let started_as = argv.first().map(std::path::Path::new);
    if argv.len() == 1 && started_as.and_then(|p| p.file_name()) == Some("bootstrap".as_ref()) {
        argv.push("lambda".into());
    }
    let cli = Cli::parse_from(argv);
    let outcome = match cli.command {
        Command::Route(args) => args.validate().map_err(startup).and_then(|config| {
            audit_archiver::init_logging(config.routing.log_format);
            commands::route::route(config)
        }),
        Command::Run(args) => args.validate().map_err(startup).and_then(|config| {
            audit_archiver::init_logging(config.routing.log_format);
            block_on(commands::run::run(config))
        }),
        Command::Verify(args) => args.validate().map_err(startup).and_then(|config| {
            audit_archiver::init_logging(config::LogFormat::Text);
            block_on(commands::verify::verify(config))
        }),
        Command::Query(args) => args.validate().map_err(startup).and_then(|config| {
            audit_archiver::init_logging(config::LogFormat::Text);
            block_on(commands::query::query(config))
        }),
        Command::Seal(args) => args.validate().map_err(startup).and_then(|config| {
            audit_archiver::init_logging(config::LogFormat::Text);
            block_on(commands::seal::seal(config))
        }),
        Command::Lambda(args) => commands::lambda::lambda(*args),
        Command::Backfill(args) => args.validate().map_err(startup).and_then(|config| {
            audit_archiver::init_logging(config.routing.log_format);
            block_on(commands::backfill::backfill(config))
        }),
    };
    let exit = outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        error.exit()
    });
    ExitCode::from(exit as u8)
}

/// Invalid settings: exit 2 with the message that names the flag.
fn startup(error: config::ConfigError) -> CommandError {
    CommandError::Startup(error.to_string())
}

/// Runs an async command on a new multi-threaded runtime.
fn block_on(
    command: impl std::future::Future<Output = Result<commands::Exit, CommandError>>,
) -> Result<commands::Exit, CommandError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::Runtime(e.into()))?
        .block_on(command)
}
