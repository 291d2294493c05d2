//! The subcommands, each one function from validated settings to an outcome.

pub mod backfill;
pub mod completions;
pub mod lambda;
pub mod query;
pub mod route;
pub mod run;
pub mod seal;
pub mod verify;

/// Parses `argv`, validates, runs one command and maps the outcome to an exit
/// code (0 done, 1 work failed, 2 invalid settings).
pub fn main(argv: Vec<std::ffi::OsString>) -> Exit {
    use crate::config::{Cli, Command};
    use clap::{CommandFactory, FromArgMatches};
    let command = || Cli::command().long_version(long_version());
    let cli = Cli::from_arg_matches(&command().get_matches_from(argv))
        .unwrap_or_else(|error| error.exit());
    let outcome = match cli.command {
        Command::Route(args) => args.validate().map_err(startup).and_then(|config| {
            crate::observe::init_logging(config.routing.log_format);
            route::route(config)
        }),
        Command::Run(args) => args.validate().map_err(startup).and_then(|config| {
            crate::observe::init_logging(config.routing.log_format);
            block_on(run::run(config))
        }),
        Command::Verify(args) => args.validate().map_err(startup).and_then(|config| {
            crate::observe::init_logging(crate::config::LogFormat::Text);
            block_on(verify::verify(config))
        }),
        Command::Query(args) => args.validate().map_err(startup).and_then(|config| {
            crate::observe::init_logging(crate::config::LogFormat::Text);
            block_on(query::query(config))
        }),
        Command::Seal(args) => args.validate().map_err(startup).and_then(|config| {
            crate::observe::init_logging(crate::config::LogFormat::Text);
            block_on(seal::seal(config))
        }),
        Command::Lambda(args) => lambda::lambda(*args),
        Command::Backfill(args) => args.validate().map_err(startup).and_then(|config| {
            crate::observe::init_logging(config.routing.log_format);
            block_on(backfill::backfill(config))
        }),
        Command::Completions(args) => Ok(completions::completions(args.shell, command())),
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        error.exit()
    })
}

/// Invalid settings: exit 2 with the message that names the flag.
fn startup(error: crate::config::ConfigError) -> CommandError {
    CommandError::Startup(error.to_string())
}

/// Runs an async command on a new multi-threaded runtime.
fn block_on(
    command: impl std::future::Future<Output = Result<Exit, CommandError>>,
) -> Result<Exit, CommandError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::Runtime(e.into()))?
        .block_on(command)
}

/// What `--version` prints: the release, the routing contract the host
/// speaks, and the digest of the component it embeds, so that an archive's
/// keys can be traced to the exact routing code that chose them.
pub fn long_version() -> String {
    use sha2::{Digest, Sha256};
    let component = crate::route::EMBEDDED_COMPONENT;
    let digest: String = Sha256::digest(component)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!(
        "{}\nrouting contract: {} (also accepts {})\nembedded component: sha256:{digest} ({} bytes)",
        env!("CARGO_PKG_VERSION"),
        crate::route::ROUTER_INTERFACE,
        crate::route::ROUTER_INTERFACE_1_0,
        component.len(),
    )
}

/// How a command ended, as a process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything done.
    Success = 0,
    /// The command ran but work failed (e.g. `--drain` left messages unarchived).
    Failure = 1,
    /// Invalid settings, found at start-up.
    Usage = 2,
}

/// A command's failure, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A setting, the component, the bucket or a queue cannot be used: exit 2.
    #[error("{0}")]
    Startup(String),
    /// Anything else: exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl CommandError {
    /// The exit code.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Startup(_) => Exit::Usage,
            Self::Runtime(_) => Exit::Failure,
        }
    }
}

/// Loads the routing component; an unusable component or rejected settings
/// is a start-up error naming the setting.
pub fn load_component(
    routing: &crate::config::RoutingConfig,
) -> Result<crate::route::RouterComponent, CommandError> {
    use crate::route::{ComponentError, ComponentSource, RouterComponent};
    RouterComponent::load(
        ComponentSource::file_or_embedded(routing.component.as_deref()),
        &routing.settings,
        routing.limits,
        routing.cache_dir.as_deref(),
    )
    .map_err(|error| match error {
        ComponentError::Settings(e) => {
            CommandError::Startup(crate::config::settings_error_message(&e))
        }
        other => CommandError::Startup(format!("invalid --component: {other}")),
    })
}

/// The first SIGINT/SIGTERM sets `stop` (the command finishes the work in
/// hand and logs `stopping`); a second one logs `exiting` and exits at once
/// with status 130.
pub(crate) async fn stop_on_signal(
    stop: tokio::sync::watch::Sender<bool>,
    stopping: &'static str,
    exiting: &'static str,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            return;
        }
    };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        if round == 0 {
            tracing::info!("{stopping}");
            let _ = stop.send(true);
        } else {
            tracing::warn!("{exiting}");
            std::process::exit(130);
        }
    }
}

/// The AWS clients and the archive in `bucket`, its bucket checked: the
/// start-up of `run` and `backfill` (a failure is a start-up error).
pub(super) async fn open_sink(
    aws: &crate::aws::AwsSettings,
    bucket: &str,
    objects: &crate::store::s3::ObjectOptions,
) -> Result<(crate::aws::Clients, crate::store::s3::S3Archive), CommandError> {
    let clients = crate::aws::clients(aws)
        .await
        .map_err(|e| CommandError::Startup(e.to_string()))?;
    let archive =
        crate::store::s3::S3Archive::new(clients.s3.clone(), bucket.to_string(), objects.clone());
    archive
        .check_bucket()
        .await
        .map_err(|e| CommandError::Startup(e.to_string()))?;
    Ok((clients, archive))
}

/// The sealer of `archive`'s bucket with the configured key: `run`,
/// `lambda`, `backfill` and `seal`; from now on `archive` records what it
/// stores for it. An unusable key file is a start-up error.
pub(super) fn open_sealer(
    clients: &crate::aws::Clients,
    archive: &mut crate::store::s3::S3Archive,
    seal: &crate::seal::SealConfig,
) -> Result<crate::seal::Sealer<crate::seal::BucketDigests>, CommandError> {
    let signer = seal
        .signer(clients)
        .map_err(|e| CommandError::Startup(e.to_string()))?;
    let store = crate::seal::BucketDigests::new(
        crate::read::reader::ArchiveReader::of(archive),
        Some(archive.clone()),
    );
    let sealer = crate::seal::Sealer::new(store, signer, seal.settings.clone());
    if let Some(recorder) = sealer.recorder() {
        archive.record_into(recorder);
    }
    Ok(sealer)
}
