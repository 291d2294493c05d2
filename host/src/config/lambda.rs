//! `lambda`'s options: `run`'s groups that apply to a function (a function
//! gets no flags: its settings are the environment variables; the flags
//! exist for local use), the deadline margin and the precompiled artifact;
//! validated into [`LambdaConfig`], each error naming the variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::defaults::{self, with_default};
use super::file::ConfigFile;
use super::seal::{DigestLocationArgs, SealArgs};
use super::shared::{
    BucketArgs, LayoutArgs, ObjectArgs, RoutingArgs, RoutingConfig, SandboxArgs, StateArgs,
};
use super::validate::check_range;
use super::{bad, Cli, ConfigError, LogFormat};
use crate::aws::AwsSettings;
use crate::store::s3::ObjectOptions;
use crate::store::StoreSettings;

/// `lambda` options.
#[derive(Debug, Args)]
#[command(mut_args(lambda_help))]
pub struct LambdaArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub bucket: BucketArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub objects: ObjectArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub digest: DigestLocationArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub seal: SealArgs,

    #[allow(missing_docs)]
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_DEADLINE_MARGIN_MS",
        value_name = "MS",
        help = with_default!(
            "No new PUT starts when less than this remains before the invocation's deadline; \
             the response is sent at the latest when a third of it remains. Unfinished records \
             are reported as failures.",
            defaults::DEADLINE_MARGIN_MS
        )
    )]
    pub deadline_margin_ms: Option<u64>,

    /// The precompiled component (written by --precompile-to). [default:
    /// router.cwasm in $LAMBDA_TASK_ROOT, else beside the executable, if
    /// present; else the component is compiled at init, with a warning]
    #[arg(long, env = "AUDIT_ARCHIVER_PRECOMPILED", value_name = "PATH")]
    pub precompiled: Option<PathBuf>,

    /// Compile the embedded component to native code for this machine's
    /// wasmtime and configuration, write it to PATH and exit (packaging step).
    #[arg(long, value_name = "PATH")]
    pub precompile_to: Option<PathBuf>,
}

/// A function's own defaults (applied in [`LambdaArgs::validate`]) in the
/// help of the shared options, changed in place so the options keep their order.
fn lambda_help(arg: clap::Arg) -> clap::Arg {
    match arg.get_id().as_str() {
        "log_format" => arg.help(with_default!(
            "Log format on stderr (CloudWatch Logs).",
            "json"
        )),
        "cache_dir" => arg.help(with_default!(
            "Where the compiled component is cached between runs, so a start-up skips \
             compiling it.",
            "none: no disk cache"
        )),
        _ => arg,
    }
}

/// Validated `lambda` settings.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// Routing.
    pub routing: RoutingConfig,
    /// The bucket.
    pub bucket: String,
    /// Endpoint, region, retries.
    pub aws: AwsSettings,
    /// Store-step settings.
    pub store: StoreSettings,
    /// Per-object settings.
    pub objects: ObjectOptions,
    /// See [`LambdaArgs::deadline_margin_ms`].
    pub deadline_margin: Duration,
    /// Sealing on scheduled invocations, when a digest key is given.
    pub seal: Option<crate::seal::SealConfig>,
    /// The precompiled component to load, if any.
    pub precompiled: Option<PathBuf>,
}

/// The artifact `lambda` loads by default from `$LAMBDA_TASK_ROOT` (else the
/// executable's directory): the package's `router.cwasm`.
pub const PRECOMPILED_FILE: &str = "router.cwasm";

impl LambdaArgs {
    /// Merges and validates `lambda` options with `run`'s rules. Errors name
    /// the environment variable (a function has no flags) and the flag.
    pub fn validate(self) -> Result<LambdaConfig, ConfigError> {
        self.validate_named().map_err(name_env)
    }

    fn validate_named(self) -> Result<LambdaConfig, ConfigError> {
        let margin_ms = self
            .deadline_margin_ms
            .unwrap_or(defaults::DEADLINE_MARGIN_MS);
        check_range(
            "--deadline-margin-ms",
            margin_ms,
            100..=60_000,
            defaults::DEADLINE_MARGIN_MS,
        )?;
        let file = ConfigFile::read(self.routing.config.as_deref())?;
        let limits = file.under(self.sandbox)?.validate()?;
        // A function's own defaults apply like every default: after the
        // flags, the environment and the file.
        let mut routing = file.under(self.routing)?;
        // A function's logs are read by machines (CloudWatch Logs Insights).
        routing.log_format = routing.log_format.or(Some(LogFormat::Json));
        // An execution environment lives on between invocations: a disk cache
        // only helps when asked for.
        if routing.cache_dir.is_none() {
            routing.no_cache = true;
        }
        let component_given = routing.component.is_some();
        let routing = routing.validate(file.under(self.layout)?, limits)?;
        let bucket = file.under(self.bucket)?.validate()?;
        let objects = file
            .under(self.objects)?
            .validate(bucket.expected_bucket_owner)?;
        let state_prefix = file.under(self.state)?.validate()?;
        let seal = file
            .under(self.seal)?
            .validate(file.under(self.digest)?, &state_prefix)?;

        let precompiled = match self.precompiled {
            Some(path) if component_given => {
                return Err(bad(format!(
                    "--precompiled {} and --component exclude each other: the artifact is the embedded component's",
                    path.display()
                )))
            }
            Some(path) => Some(path),
            None if component_given => None,
            // Lambda unpacks the zip in LAMBDA_TASK_ROOT (/var/task); an
            // emulator may set that to a directory without the package, so
            // the executable's own directory is looked in too.
            None => [
                std::env::var_os("LAMBDA_TASK_ROOT").map(PathBuf::from),
                std::env::current_exe()
                    .ok()
                    .and_then(|exe| Some(exe.parent()?.to_path_buf())),
            ]
            .into_iter()
            .flatten()
            .map(|dir| dir.join(PRECOMPILED_FILE))
            .find(|path| path.is_file()),
        };
        Ok(LambdaConfig {
            routing,
            bucket: bucket.bucket,
            aws: bucket.aws,
            store: StoreSettings::with_quarantine_prefix(bucket.quarantine_prefix),
            objects,
            deadline_margin: Duration::from_millis(margin_ms),
            seal,
            precompiled,
        })
    }
}

/// Prefixes a message naming a `lambda` flag with that flag's environment
/// variable, the only way to set it in a function: `S3_BUCKET_NAME (--bucket): …`.
pub fn name_env(error: ConfigError) -> ConfigError {
    use clap::CommandFactory;
    let message = error.0;
    let cli = Cli::command();
    let Some(lambda) = cli.find_subcommand("lambda") else {
        return ConfigError(message);
    };
    // The flag named first in the message is the setting at fault.
    let named = lambda
        .get_arguments()
        .filter_map(|arg| {
            let long = format!("--{}", arg.get_long()?);
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let at = message
                .match_indices(&long)
                .find(|(at, _)| {
                    let next = message.as_bytes().get(at + long.len());
                    !matches!(next, Some(b) if b.is_ascii_alphanumeric() || *b == b'-')
                })?
                .0;
            Some((at, env, long))
        })
        .min();
    match named {
        Some((_, env, long)) => ConfigError(format!("{env} ({long}): {message}")),
        None => ConfigError(message),
    }
}
