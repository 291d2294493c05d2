//! The command line, the environment and the TOML config file, merged (flags
//! win over environment, environment over file) and validated once into the
//! settings each command runs with. Every error names the setting and the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use audit_archiver_transform::{self as transform, SettingsError, TenantOverride, TimeSource};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::aws::AwsSettings;
use crate::engine::SandboxLimits;
use crate::pipeline::PipelineSettings;
use crate::prisma::{ClientSettings, Credentials, Secret};
use crate::s3::ObjectOptions;

mod read;
pub use read::{
    QueryArgs, QueryConfig, QueryFormat, ReadArgs, ReadConfig, RecordFilters, TimeRange,
    VerifyArgs, VerifyConfig, VerifyFormat,
};

/// An invalid setting: exit code 2, with a message naming the setting and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// Archives Prisma Cloud audit logs from Amazon SQS to S3, one object per
/// message, never losing or overwriting one.
#[derive(Debug, Parser)]
#[command(name = "audit-archiver", version, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll SQS queues and archive every message to S3; delete each message
    /// only once its object is stored.
    ///
    /// Example: audit-archiver run --bucket acme-audit-archive --queue acme-prismacloud-auditlog.fifo --region ap-northeast-1
    Run(Box<RunArgs>),
    /// Print where each message would be archived, without AWS: reads a
    /// Lambda-shaped SQS event ({"Records":[...]}) or NDJSON of records.
    ///
    /// Example: audit-archiver route --event event.json --key-template seed
    Route(RouteArgs),
    /// Check that the archive is whole and untouched: every object where its
    /// metadata says it belongs, its body matching its SHA-256 checksum, one
    /// version, no delete marker; report counts per tenant and day. Exit 0
    /// clean, 1 findings, 2 invalid settings or an unreadable bucket.
    ///
    /// Example: audit-archiver verify --bucket acme-audit-archive --from 2025-06-01 --to 2025-06-30
    Verify(Box<VerifyArgs>),
    /// Print the archived audit records of a tenant and time range that
    /// match the filters, in time order, with each record's object key.
    ///
    /// Example: audit-archiver query --bucket acme-audit-archive --tenant acme --from 2025-03-01 --to 2025-03-31 --action-type UPDATE
    Query(Box<QueryArgs>),
    /// Run as an SQS-triggered AWS Lambda function (the Runtime API loop):
    /// store each record of an event, return the ids not archived as
    /// `batchItemFailures`. Settings come from the same environment variables
    /// as `run`. The executable started as `bootstrap` with no arguments runs
    /// this.
    ///
    /// Example: audit-archiver lambda --precompile-to target/lambda/router.cwasm
    Lambda(Box<LambdaArgs>),
    /// Archive the audit records the Prisma Cloud API still holds (its last
    /// 120 days), one day at a time, into the same layout as `run`;
    /// resumable, and with --follow keeps polling for new records.
    ///
    /// Example: audit-archiver backfill --bucket acme-audit-archive --tenant acme --api-url https://api.prismacloud.io --from 2026-08-01
    Backfill(Box<BackfillArgs>),
}

/// Options shared by `run` and `route`.
#[derive(Debug, Args)]
pub struct RoutingArgs {
    /// TOML file with any option of this command, named in snake_case
    /// (e.g. `key_template = "seed"`); flags and environment win over it.
    #[arg(long, env = "AUDIT_ARCHIVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Object key layout: `default` (never collides), `seed` (the reference
    /// layout: {tenant}/%Y/%m/%d/prismacloud-auditlog-{tenant}-%Y%m%d-%H%M%S.json)
    /// or a template starting with `{tenant}/` using {tenant} {queue}
    /// {message_id} %Y %m %d %H %M %S %j %%. [default: default]
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_KEY_TEMPLATE",
        value_name = "seed|default|TEMPLATE"
    )]
    pub key_template: Option<String>,

    /// Which time names the object: the message's first receive, when it was
    /// sent, or the audit record's own `timestamp`. [default: first-receive]
    #[arg(long, env = "AUDIT_ARCHIVER_TIME_SOURCE", value_enum)]
    pub time_source: Option<TimeSourceArg>,

    /// The UTC offset of the dates in keys, e.g. +09:00 (JST), +00:00, -05:00.
    /// [default: +09:00]
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_UTC_OFFSET",
        value_name = "±HH:MM",
        allow_hyphen_values = true
    )]
    pub utc_offset: Option<String>,

    /// An explicit tenant for a queue, overriding "name up to its first -".
    /// Repeatable. Example: --tenant-map legacy-audit-queue=acme
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_TENANT_MAP",
        value_name = "QUEUE=TENANT",
        value_delimiter = ','
    )]
    pub tenant_map: Vec<String>,

    /// A routing component (.wasm) to use instead of the embedded one; it must
    /// implement wit/router.wit and import nothing.
    #[arg(long, env = "AUDIT_ARCHIVER_COMPONENT", value_name = "PATH")]
    pub component: Option<PathBuf>,

    /// Where the compiled component is cached between runs, so a start-up
    /// skips compiling it. [default: $XDG_CACHE_HOME/audit-archiver, else
    /// ~/.cache/audit-archiver]
    #[arg(long, env = "AUDIT_ARCHIVER_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component at every start-up; read and write no cache.
    #[arg(long, env = "AUDIT_ARCHIVER_NO_CACHE")]
    pub no_cache: bool,

    /// Log format on stderr. [default: text]
    #[arg(long, env = "AUDIT_ARCHIVER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// `--time-source` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeSourceArg {
    /// ApproximateFirstReceiveTimestamp (the reference layout).
    FirstReceive,
    /// SentTimestamp.
    Sent,
    /// The audit record's `timestamp` field (earliest, for an array body).
    Event,
}

impl From<TimeSourceArg> for TimeSource {
    fn from(arg: TimeSourceArg) -> Self {
        match arg {
            TimeSourceArg::FirstReceive => TimeSource::FirstReceive,
            TimeSourceArg::Sent => TimeSource::Sent,
            TimeSourceArg::Event => TimeSource::Event,
        }
    }
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub routing: RoutingArgs,

    /// The archive bucket. Example: --bucket acme-audit-archive
    #[arg(long, env = "S3_BUCKET_NAME", value_name = "NAME")]
    pub bucket: Option<String>,

    /// A queue to archive, by URL or name; repeatable.
    /// Example: --queue acme-prismacloud-auditlog.fifo
    #[arg(
        long = "queue",
        env = "AUDIT_ARCHIVER_QUEUES",
        value_name = "URL|NAME",
        value_delimiter = ','
    )]
    pub queues: Vec<String>,

    /// Archive every queue whose name starts with PREFIX (found with
    /// ListQueues at start-up). Example: --queue-prefix acme-
    #[arg(long, env = "AUDIT_ARCHIVER_QUEUE_PREFIX", value_name = "PREFIX")]
    pub queue_prefix: Option<String>,

    /// A custom S3/SQS endpoint, e.g. a local emulator: http://127.0.0.1:5000
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// The AWS region. Otherwise the SDK's chain (AWS_REGION, profile).
    #[arg(long, env = "AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Exit 0 once every queue is empty and all work is settled (a batch
    /// job); exit 1 if any message could not be archived.
    #[arg(long, env = "AUDIT_ARCHIVER_DRAIN")]
    pub drain: bool,

    /// Most messages being stored at once, across all queues. [default: 32]
    #[arg(long, env = "AUDIT_ARCHIVER_CONCURRENCY", value_name = "N")]
    pub concurrency: Option<usize>,

    /// Key prefix of messages that cannot be routed; each is stored as
    /// {prefix}{queue}/{message_id}.json with the reason in its metadata.
    /// [default: _quarantine/]
    #[arg(long, env = "AUDIT_ARCHIVER_QUARANTINE_PREFIX", value_name = "PREFIX")]
    pub quarantine_prefix: Option<String>,

    /// How long a received message stays hidden from other consumers; work
    /// that takes longer extends it. [default: 60]
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_VISIBILITY_TIMEOUT_SECS",
        value_name = "SECS"
    )]
    pub visibility_timeout_secs: Option<u32>,

    /// Long-poll wait of each receive, 0 to 20. [default: 20; 2 with --drain]
    #[arg(long, env = "AUDIT_ARCHIVER_WAIT_TIME_SECS", value_name = "SECS")]
    pub wait_time_secs: Option<u32>,

    /// Server-side encryption of stored objects: AES256 or aws:kms.
    #[arg(long, env = "AUDIT_ARCHIVER_SSE", value_name = "AES256|aws:kms")]
    pub sse: Option<String>,

    /// The KMS key for --sse aws:kms (ID, ARN or alias ARN).
    #[arg(long, env = "AUDIT_ARCHIVER_SSE_KMS_KEY_ID", value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,

    /// Refuse to write unless the bucket belongs to this account ID.
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_EXPECTED_BUCKET_OWNER",
        value_name = "ACCOUNT_ID"
    )]
    pub expected_bucket_owner: Option<String>,

    /// Storage class of stored objects, e.g. STANDARD_IA or GLACIER_IR.
    #[arg(long, env = "AUDIT_ARCHIVER_STORAGE_CLASS", value_name = "CLASS")]
    pub storage_class: Option<String>,

    /// Object Lock retention mode for each stored object (the bucket must have
    /// Object Lock enabled): GOVERNANCE or COMPLIANCE.
    #[arg(long, env = "AUDIT_ARCHIVER_OBJECT_LOCK_MODE", value_name = "MODE")]
    pub object_lock_mode: Option<String>,

    /// Days each object is locked, with --object-lock-mode. Example: 2555 (7 years)
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_OBJECT_LOCK_RETAIN_DAYS",
        value_name = "DAYS"
    )]
    pub object_lock_retain_days: Option<u32>,

    /// Serve Prometheus metrics at http://ADDR/metrics. Example: 127.0.0.1:9464
    #[arg(long, env = "AUDIT_ARCHIVER_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Log the counters every SECS seconds; 0 turns it off. [default: 60]
    #[arg(long, env = "AUDIT_ARCHIVER_STATS_INTERVAL_SECS", value_name = "SECS")]
    pub stats_interval_secs: Option<u64>,

    /// Attempts per AWS request (the SDK's retries with backoff), first
    /// included. Failed stores are retried again after that. [default: 5]
    #[arg(long, env = "AUDIT_ARCHIVER_MAX_ATTEMPTS", value_name = "N")]
    pub max_attempts: Option<u32>,

    /// Time limit of one call into the routing component. [default: 1000]
    #[arg(long, env = "AUDIT_ARCHIVER_COMPONENT_TIMEOUT_MS", value_name = "MS")]
    pub component_timeout_ms: Option<u64>,

    /// Memory limit of the routing component. [default: 64]
    #[arg(long, env = "AUDIT_ARCHIVER_COMPONENT_MEMORY_MIB", value_name = "MIB")]
    pub component_memory_mib: Option<usize>,
}

/// `route` options.
#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub routing: RoutingArgs,

    /// The event to route: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    pub event: PathBuf,
}

/// `lambda` options: `run`'s environment variables that apply to a function
/// (a Lambda function gets no flags; the flags exist for local use).
#[derive(Debug, Args)]
pub struct LambdaArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub routing: RoutingArgs,

    /// The archive bucket. Example: S3_BUCKET_NAME=acme-audit-archive
    #[arg(long, env = "S3_BUCKET_NAME", value_name = "NAME")]
    pub bucket: Option<String>,

    /// A custom S3 endpoint, e.g. a local emulator: http://127.0.0.1:5000
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// The AWS region (Lambda sets AWS_REGION).
    #[arg(long, env = "AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Key prefix of messages that cannot be routed. [default: _quarantine/]
    #[arg(long, env = "AUDIT_ARCHIVER_QUARANTINE_PREFIX", value_name = "PREFIX")]
    pub quarantine_prefix: Option<String>,

    /// Server-side encryption of stored objects: AES256 or aws:kms.
    #[arg(long, env = "AUDIT_ARCHIVER_SSE", value_name = "AES256|aws:kms")]
    pub sse: Option<String>,

    /// The KMS key for --sse aws:kms (ID, ARN or alias ARN).
    #[arg(long, env = "AUDIT_ARCHIVER_SSE_KMS_KEY_ID", value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,

    /// Refuse to write unless the bucket belongs to this account ID.
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_EXPECTED_BUCKET_OWNER",
        value_name = "ACCOUNT_ID"
    )]
    pub expected_bucket_owner: Option<String>,

    /// Storage class of stored objects, e.g. STANDARD_IA or GLACIER_IR.
    #[arg(long, env = "AUDIT_ARCHIVER_STORAGE_CLASS", value_name = "CLASS")]
    pub storage_class: Option<String>,

    /// Object Lock retention mode for each stored object: GOVERNANCE or COMPLIANCE.
    #[arg(long, env = "AUDIT_ARCHIVER_OBJECT_LOCK_MODE", value_name = "MODE")]
    pub object_lock_mode: Option<String>,

    /// Days each object is locked, with --object-lock-mode.
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_OBJECT_LOCK_RETAIN_DAYS",
        value_name = "DAYS"
    )]
    pub object_lock_retain_days: Option<u32>,

    /// Attempts per S3 request (the SDK's retries), first included. [default: 5]
    #[arg(long, env = "AUDIT_ARCHIVER_MAX_ATTEMPTS", value_name = "N")]
    pub max_attempts: Option<u32>,

    /// Time limit of one call into the routing component. [default: 1000]
    #[arg(long, env = "AUDIT_ARCHIVER_COMPONENT_TIMEOUT_MS", value_name = "MS")]
    pub component_timeout_ms: Option<u64>,

    /// Memory limit of the routing component. [default: 64]
    #[arg(long, env = "AUDIT_ARCHIVER_COMPONENT_MEMORY_MIB", value_name = "MIB")]
    pub component_memory_mib: Option<usize>,

    /// No new PUT starts when less than this remains before the invocation's
    /// deadline; the response is sent at the latest when a third of it
    /// remains. Unfinished records are reported as failures. [default: 3000]
    #[arg(long, env = "AUDIT_ARCHIVER_DEADLINE_MARGIN_MS", value_name = "MS")]
    pub deadline_margin_ms: Option<u64>,

    /// The precompiled component (written by --precompile-to). [default:
    /// router.cwasm in $LAMBDA_TASK_ROOT (else beside the executable) if
    /// present, else the component is compiled at init]
    #[arg(long, env = "AUDIT_ARCHIVER_PRECOMPILED", value_name = "PATH")]
    pub precompiled: Option<PathBuf>,

    /// Compile the embedded component to native code for this machine's
    /// wasmtime and configuration, write it to PATH and exit (packaging step).
    #[arg(long, value_name = "PATH")]
    pub precompile_to: Option<PathBuf>,
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
    pub pipeline: PipelineSettings,
    /// Per-object settings.
    pub objects: ObjectOptions,
    /// See [`LambdaArgs::deadline_margin_ms`].
    pub deadline_margin: Duration,
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
        let margin_ms = self.deadline_margin_ms.unwrap_or(3000);
        if !(100..=60_000).contains(&margin_ms) {
            return Err(name_env(bad(format!(
                "invalid --deadline-margin-ms {margin_ms}: use 100 to 60000, e.g. 3000"
            ))));
        }
        let explicit_precompiled = self.precompiled.clone();
        let mut routing = self.routing;
        // A function's logs are read by machines (CloudWatch Logs Insights).
        routing.log_format = routing.log_format.or(Some(LogFormat::Json));
        // An execution environment lives on between invocations: a disk cache
        // only helps when asked for.
        if routing.cache_dir.is_none() {
            routing.no_cache = true;
        }
        let component_given = routing.component.is_some();
        let run = RunArgs {
            routing,
            bucket: self.bucket,
            // `run` wants queues; the event source mapping names them here.
            queues: vec!["event-source-mapping".into()],
            queue_prefix: None,
            endpoint_url: self.endpoint_url,
            region: self.region,
            drain: false,
            concurrency: None,
            quarantine_prefix: self.quarantine_prefix,
            visibility_timeout_secs: None,
            wait_time_secs: None,
            sse: self.sse,
            sse_kms_key_id: self.sse_kms_key_id,
            expected_bucket_owner: self.expected_bucket_owner,
            storage_class: self.storage_class,
            object_lock_mode: self.object_lock_mode,
            object_lock_retain_days: self.object_lock_retain_days,
            metrics_addr: None,
            stats_interval_secs: None,
            max_attempts: self.max_attempts,
            component_timeout_ms: self.component_timeout_ms,
            component_memory_mib: self.component_memory_mib,
        };
        let run = run.validate().map_err(name_env)?;
        let precompiled = match explicit_precompiled {
            Some(path) if component_given => {
                return Err(name_env(bad(format!(
                    "--precompiled {} and --component exclude each other: the artifact is the embedded component's",
                    path.display()
                ))))
            }
            Some(path) => Some(path),
            None if component_given => None,
            // Lambda unpacks the zip in LAMBDA_TASK_ROOT (/var/task).
            None => std::env::var_os("LAMBDA_TASK_ROOT")
                .map(PathBuf::from)
                .or_else(|| Some(std::env::current_exe().ok()?.parent()?.to_path_buf()))
                .map(|dir| dir.join(PRECOMPILED_FILE))
                .filter(|path| path.is_file()),
        };
        Ok(LambdaConfig {
            routing: run.routing,
            bucket: run.bucket,
            aws: run.aws,
            pipeline: run.pipeline,
            objects: run.objects,
            deadline_margin: Duration::from_millis(margin_ms),
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

/// The config file: every option, snake_case. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    key_template: Option<String>,
    time_source: Option<TimeSourceArg>,
    utc_offset: Option<String>,
    tenant_map: Option<BTreeMap<String, String>>,
    component: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    no_cache: Option<bool>,
    log_format: Option<LogFormat>,
    bucket: Option<String>,
    queues: Option<Vec<String>>,
    queue_prefix: Option<String>,
    endpoint_url: Option<String>,
    region: Option<String>,
    drain: Option<bool>,
    concurrency: Option<usize>,
    quarantine_prefix: Option<String>,
    visibility_timeout_secs: Option<u32>,
    wait_time_secs: Option<u32>,
    sse: Option<String>,
    sse_kms_key_id: Option<String>,
    expected_bucket_owner: Option<String>,
    storage_class: Option<String>,
    object_lock_mode: Option<String>,
    object_lock_retain_days: Option<u32>,
    metrics_addr: Option<SocketAddr>,
    stats_interval_secs: Option<u64>,
    max_attempts: Option<u32>,
    component_timeout_ms: Option<u64>,
    component_memory_mib: Option<usize>,
    tenants: Option<Vec<TenantFileEntry>>,
    state_prefix: Option<String>,
    api_requests_per_sec: Option<f64>,
}

fn read_file(path: Option<&PathBuf>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read --config {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        bad(format!(
            "invalid --config {}: {e}(options are the long flag names in snake_case, e.g. key_template)",
            path.display()
        ))
    })
}

/// Validated routing settings, shared by both commands.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// What the component is given.
    pub settings: transform::Settings,
    /// `--component`, or `None` for the embedded one.
    pub component: Option<PathBuf>,
    /// The compile cache's directory; `None` compiles at every start-up.
    pub cache_dir: Option<PathBuf>,
    /// Sandbox bounds.
    pub limits: SandboxLimits,
    /// Log format.
    pub log_format: LogFormat,
}

/// Which queues `run` archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueSelection {
    /// `--queue` values (URLs or names).
    Listed(Vec<String>),
    /// `--queue-prefix`.
    Prefix(String),
}

/// Validated `run` settings.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Routing.
    pub routing: RoutingConfig,
    /// The bucket.
    pub bucket: String,
    /// The queues.
    pub queues: QueueSelection,
    /// Endpoint, region, retries.
    pub aws: AwsSettings,
    /// Exit when the queues are empty.
    pub drain: bool,
    /// Messages stored at once.
    pub concurrency: usize,
    /// Store-step settings.
    pub pipeline: PipelineSettings,
    /// Visibility timeout of received messages.
    pub visibility_timeout_secs: u32,
    /// Long-poll wait.
    pub wait_time_secs: u32,
    /// Per-object settings.
    pub objects: ObjectOptions,
    /// Prometheus endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// Period of the counters' log line.
    pub stats_interval: Option<Duration>,
}

/// Validated `route` settings.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Routing.
    pub routing: RoutingConfig,
    /// The input file, `None` for stdin.
    pub event: Option<PathBuf>,
}

impl RoutingArgs {
    fn validate(
        self,
        file: &FileConfig,
        limits: SandboxLimits,
    ) -> Result<RoutingConfig, ConfigError> {
        let utc_offset_minutes = match self.utc_offset.or_else(|| file.utc_offset.clone()) {
            Some(text) => parse_utc_offset(&text)?,
            None => 9 * 60,
        };
        let mut tenant_overrides = Vec::new();
        for pair in &self.tenant_map {
            let (queue, tenant) = pair.split_once('=').ok_or_else(|| {
                bad(format!(
                    "invalid --tenant-map {pair:?}: expected QUEUE=TENANT, e.g. --tenant-map legacy-audit-queue=acme"
                ))
            })?;
            tenant_overrides.push(override_for(queue, tenant));
        }
        if self.tenant_map.is_empty() {
            for (queue, tenant) in file.tenant_map.iter().flatten() {
                tenant_overrides.push(override_for(queue, tenant));
            }
        }
        Ok(RoutingConfig {
            settings: transform::Settings {
                key_template: self
                    .key_template
                    .or_else(|| file.key_template.clone())
                    .unwrap_or_else(|| "default".into()),
                time_source: self
                    .time_source
                    .or(file.time_source)
                    .map_or(TimeSource::FirstReceive, TimeSource::from),
                utc_offset_minutes,
                tenant_overrides,
            },
            component: self.component.or_else(|| file.component.clone()),
            cache_dir: if self.no_cache || file.no_cache == Some(true) {
                None
            } else {
                self.cache_dir
                    .or_else(|| file.cache_dir.clone())
                    .or_else(crate::engine::cache::default_dir)
            },
            limits,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
        })
    }
}

fn override_for(queue: &str, tenant: &str) -> TenantOverride {
    TenantOverride {
        queue: bare_queue_name(queue.trim()).to_string(),
        tenant: tenant.trim().to_string(),
    }
}

/// The bare name of a queue given as a URL, ARN or name (as given if unparseable:
/// the component then reports it).
pub fn bare_queue_name(queue: &str) -> &str {
    transform::queue::queue_name(queue).unwrap_or(queue)
}

/// Parses `+09:00`, `-05:30`, `+0900`, `+09`, `Z` or `UTC` into minutes.
pub fn parse_utc_offset(text: &str) -> Result<i16, ConfigError> {
    let error = || {
        bad(format!(
            "invalid --utc-offset {text:?}: expected ±HH:MM within ±14:00, e.g. +09:00 (JST) or -05:00"
        ))
    };
    let text = text.trim();
    if matches!(text, "Z" | "z" | "UTC" | "utc") {
        return Ok(0);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(error()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    let colon_ok = match rest.find(':') {
        None => true,
        Some(at) => at == 2 && rest.len() == 5,
    };
    if !colon_ok || !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return Err(error());
    }
    let hours: i16 = digits[..2].parse().map_err(|_| error())?;
    let minutes: i16 = if digits.len() == 4 {
        digits[2..].parse().map_err(|_| error())?
    } else {
        0
    };
    if minutes >= 60 || hours * 60 + minutes > 14 * 60 {
        return Err(error());
    }
    Ok(sign * (hours * 60 + minutes))
}

/// The message for settings the component rejected, naming the flag.
pub fn settings_error_message(error: &SettingsError) -> String {
    match error {
        SettingsError::InvalidOffset(_) => format!("invalid --utc-offset: {error}"),
        SettingsError::InvalidTenantOverride(_) => {
            format!("invalid --tenant-map: {error}; a tenant is 1-63 letters, digits, `_` or `.`")
        }
        _ => format!(
            "invalid --key-template: {error}; use `default`, `seed`, or a template such as \
             {{tenant}}/%Y/%m/%d/{{message_id}}.json (see the README)"
        ),
    }
}

fn sandbox_limits(
    timeout_ms: Option<u64>,
    memory_mib: Option<usize>,
) -> Result<SandboxLimits, ConfigError> {
    let defaults = SandboxLimits::default();
    let timeout_ms = timeout_ms.unwrap_or(defaults.call_timeout.as_millis() as u64);
    if !(10..=60_000).contains(&timeout_ms) {
        return Err(bad(format!(
            "invalid --component-timeout-ms {timeout_ms}: use 10 to 60000, e.g. 1000"
        )));
    }
    let memory_mib = memory_mib.unwrap_or(defaults.memory_bytes >> 20);
    if !(1..=4096).contains(&memory_mib) {
        return Err(bad(format!(
            "invalid --component-memory-mib {memory_mib}: use 1 to 4096, e.g. 64"
        )));
    }
    Ok(SandboxLimits {
        memory_bytes: memory_mib << 20,
        call_timeout: Duration::from_millis(timeout_ms),
    })
}

impl RouteArgs {
    /// Merges and validates `route` options.
    pub fn validate(self) -> Result<RouteConfig, ConfigError> {
        let file = read_file(self.routing.config.as_ref())?;
        let limits = sandbox_limits(file.component_timeout_ms, file.component_memory_mib)?;
        let routing = self.routing.validate(&file, limits)?;
        let event = (self.event.as_os_str() != "-").then_some(self.event);
        Ok(RouteConfig { routing, event })
    }
}

const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
];

impl RunArgs {
    /// Merges and validates `run` options.
    pub fn validate(self) -> Result<RunConfig, ConfigError> {
        let file = read_file(self.routing.config.as_ref())?;
        let limits = sandbox_limits(
            self.component_timeout_ms.or(file.component_timeout_ms),
            self.component_memory_mib.or(file.component_memory_mib),
        )?;
        let routing = self.routing.validate(&file, limits)?;

        let bucket = self.bucket.or(file.bucket.clone()).ok_or_else(|| {
            bad("no bucket: pass --bucket NAME or set S3_BUCKET_NAME (e.g. --bucket acme-audit-archive)")
        })?;
        check_bucket_name(&bucket)?;

        let listed = if self.queues.is_empty() {
            file.queues.clone().unwrap_or_default()
        } else {
            self.queues
        };
        let listed: Vec<String> = listed
            .into_iter()
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty())
            .collect();
        let prefix = self.queue_prefix.or(file.queue_prefix.clone());
        let queues = match (listed.is_empty(), prefix) {
            (false, None) => QueueSelection::Listed(listed),
            (true, Some(prefix)) if !prefix.is_empty() => QueueSelection::Prefix(prefix),
            (true, _) => {
                return Err(bad(
                    "no queues: pass --queue URL|NAME (repeatable) or --queue-prefix PREFIX, e.g. --queue-prefix acme-",
                ))
            }
            (false, Some(_)) => {
                return Err(bad("--queue and --queue-prefix exclude each other: pass one of them"))
            }
        };

        let drain = self.drain || file.drain.unwrap_or(false);
        let concurrency = self.concurrency.or(file.concurrency).unwrap_or(32);
        if !(1..=1024).contains(&concurrency) {
            return Err(bad(format!(
                "invalid --concurrency {concurrency}: use 1 to 1024, e.g. 32"
            )));
        }
        let quarantine_prefix = self
            .quarantine_prefix
            .or(file.quarantine_prefix.clone())
            .unwrap_or_else(|| "_quarantine/".into());
        check_quarantine_prefix(&quarantine_prefix)?;
        let visibility_timeout_secs = self
            .visibility_timeout_secs
            .or(file.visibility_timeout_secs)
            .unwrap_or(60);
        if !(10..=43_200).contains(&visibility_timeout_secs) {
            return Err(bad(format!(
                "invalid --visibility-timeout-secs {visibility_timeout_secs}: use 10 to 43200, e.g. 60"
            )));
        }
        let wait_time_secs = self
            .wait_time_secs
            .or(file.wait_time_secs)
            .unwrap_or(if drain { 2 } else { 20 });
        if wait_time_secs > 20 {
            return Err(bad(format!(
                "invalid --wait-time-secs {wait_time_secs}: use 0 to 20"
            )));
        }

        let (aws, objects) = validate_storage(
            StorageFlags {
                endpoint_url: self.endpoint_url,
                region: self.region,
                max_attempts: self.max_attempts,
                sse: self.sse,
                sse_kms_key_id: self.sse_kms_key_id,
                expected_bucket_owner: self.expected_bucket_owner,
                storage_class: self.storage_class,
                object_lock_mode: self.object_lock_mode,
                object_lock_retain_days: self.object_lock_retain_days,
            },
            &file,
        )?;
        let stats = self
            .stats_interval_secs
            .or(file.stats_interval_secs)
            .unwrap_or(60);
        Ok(RunConfig {
            routing,
            bucket,
            queues,
            aws,
            drain,
            concurrency,
            pipeline: PipelineSettings {
                quarantine_prefix,
                ..PipelineSettings::default()
            },
            visibility_timeout_secs,
            wait_time_secs,
            objects,
            metrics_addr: self.metrics_addr.or(file.metrics_addr),
            stats_interval: (stats > 0).then(|| Duration::from_secs(stats)),
        })
    }
}

/// The S3, object and AWS flags shared by `run` and `backfill`, as given.
#[derive(Debug, Default)]
pub struct StorageFlags {
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--max-attempts`.
    pub max_attempts: Option<u32>,
    /// `--sse`.
    pub sse: Option<String>,
    /// `--sse-kms-key-id`.
    pub sse_kms_key_id: Option<String>,
    /// `--expected-bucket-owner`.
    pub expected_bucket_owner: Option<String>,
    /// `--storage-class`.
    pub storage_class: Option<String>,
    /// `--object-lock-mode`.
    pub object_lock_mode: Option<String>,
    /// `--object-lock-retain-days`.
    pub object_lock_retain_days: Option<u32>,
}

/// Merges the S3/object/AWS flags with the file and validates them, naming
/// the flag of any invalid value.
fn validate_storage(
    flags: StorageFlags,
    file: &FileConfig,
) -> Result<(AwsSettings, ObjectOptions), ConfigError> {
    let sse = flags.sse.or(file.sse.clone());
    let sse_kms_key_id = flags.sse_kms_key_id.or(file.sse_kms_key_id.clone());
    match (sse.as_deref(), &sse_kms_key_id) {
        (None | Some("AES256") | Some("aws:kms"), None) | (Some("aws:kms"), Some(_)) => {}
        (None | Some("AES256"), Some(_)) => {
            return Err(bad("--sse-kms-key-id needs --sse aws:kms"))
        }
        (Some(other), _) => {
            return Err(bad(format!(
                "invalid --sse {other:?}: use AES256 or aws:kms"
            )))
        }
    }
    let expected_bucket_owner = flags
        .expected_bucket_owner
        .or(file.expected_bucket_owner.clone());
    if let Some(owner) = &expected_bucket_owner {
        check_account_id(owner)?;
    }
    let storage_class = flags.storage_class.or(file.storage_class.clone());
    if let Some(class) = &storage_class {
        if !STORAGE_CLASSES.contains(&class.as_str()) {
            return Err(bad(format!(
                "invalid --storage-class {class:?}: use one of {}",
                STORAGE_CLASSES.join(", ")
            )));
        }
    }
    let lock_mode = flags.object_lock_mode.or(file.object_lock_mode.clone());
    let lock_days = flags
        .object_lock_retain_days
        .or(file.object_lock_retain_days);
    let object_lock = match (lock_mode, lock_days) {
            (None, None) => None,
            (Some(mode), Some(days)) if matches!(mode.as_str(), "GOVERNANCE" | "COMPLIANCE") && (1..=36_500).contains(&days) => {
                Some((mode, days))
            }
            (Some(mode), Some(days)) => {
                return Err(bad(format!(
                    "invalid Object Lock settings {mode:?} for {days} days: --object-lock-mode is GOVERNANCE or \
                     COMPLIANCE and --object-lock-retain-days 1 to 36500"
                )))
            }
            _ => {
                return Err(bad(
                    "--object-lock-mode and --object-lock-retain-days go together, e.g. --object-lock-mode COMPLIANCE --object-lock-retain-days 2555",
                ))
            }
        };
    let max_attempts = flags.max_attempts.or(file.max_attempts).unwrap_or(5);
    if !(1..=20).contains(&max_attempts) {
        return Err(bad(format!(
            "invalid --max-attempts {max_attempts}: use 1 to 20, e.g. 5"
        )));
    }
    let endpoint_url = flags.endpoint_url.or(file.endpoint_url.clone());
    if let Some(url) = &endpoint_url {
        check_endpoint_url(url)?;
    }
    Ok((
        AwsSettings {
            endpoint_url,
            region: flags.region.or(file.region.clone()),
            max_attempts,
        },
        ObjectOptions {
            sse,
            sse_kms_key_id,
            expected_bucket_owner,
            storage_class,
            object_lock,
        },
    ))
}

/// `backfill` options.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub routing: RoutingArgs,

    /// The archive bucket. Example: --bucket acme-audit-archive
    #[arg(long, env = "S3_BUCKET_NAME", value_name = "NAME")]
    pub bucket: Option<String>,

    /// The tenant the records belong to (the first segment of their keys).
    /// Without it, the config file's [[tenants]] tables are used.
    #[arg(long, env = "PRISMA_TENANT", value_name = "TENANT")]
    pub tenant: Option<String>,

    /// The tenant's Prisma Cloud API host, e.g. https://api.prismacloud.io,
    /// https://api2.prismacloud.io, https://api.eu.prismacloud.io.
    #[arg(long, env = "PRISMA_API_URL", value_name = "URL")]
    pub api_url: Option<String>,

    /// A file with the access key as two lines, PRISMA_ACCESS_KEY_ID=… and
    /// PRISMA_SECRET_KEY=…. Otherwise the environment variables of those names.
    #[arg(long, env = "PRISMA_CREDENTIALS_FILE", value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,

    /// First day (YYYY-MM-DD, in --utc-offset) or instant (RFC 3339) to
    /// archive. Prisma Cloud keeps 120 days. Example: --from 2026-08-01
    #[arg(long, env = "AUDIT_ARCHIVER_FROM", value_name = "DATE")]
    pub from: Option<String>,

    /// Last day, included (YYYY-MM-DD), or an instant, excluded (RFC 3339).
    /// [default: now]
    #[arg(long, env = "AUDIT_ARCHIVER_TO", value_name = "DATE")]
    pub to: Option<String>,

    /// After the range, keep polling the most recent records until SIGTERM.
    #[arg(long, env = "AUDIT_ARCHIVER_FOLLOW")]
    pub follow: bool,

    /// With --follow, minutes between two polls. [default: 10]
    #[arg(long, env = "AUDIT_ARCHIVER_FOLLOW_INTERVAL_MINS", value_name = "MINS")]
    pub follow_interval_mins: Option<u64>,

    /// With --follow, how far back each poll reaches before the previous
    /// one's end, for records the API indexes late. [default: 30]
    #[arg(long, env = "AUDIT_ARCHIVER_FOLLOW_OVERLAP_MINS", value_name = "MINS")]
    pub follow_overlap_mins: Option<u64>,

    /// Key prefix of the progress checkpoints. [default: _state/]
    #[arg(long, env = "AUDIT_ARCHIVER_STATE_PREFIX", value_name = "PREFIX")]
    pub state_prefix: Option<String>,

    /// Most Prisma Cloud API requests per second, per tenant (the API allows
    /// 10). [default: 10]
    #[arg(long, env = "AUDIT_ARCHIVER_API_REQUESTS_PER_SEC", value_name = "N")]
    pub api_requests_per_sec: Option<f64>,

    /// Attempts per Prisma Cloud API request, the first included. [default: 8]
    #[arg(long, env = "AUDIT_ARCHIVER_API_MAX_ATTEMPTS", value_name = "N")]
    pub api_max_attempts: Option<u32>,

    /// Records asked for per page, 100 to 500. [default: 500]
    #[arg(long, env = "AUDIT_ARCHIVER_PAGE_SIZE", value_name = "N")]
    pub page_size: Option<u32>,

    /// Token age at which it is renewed (tokens live 600 s). [default: 480]
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_API_TOKEN_RENEW_SECS",
        value_name = "SECS",
        hide = true
    )]
    pub api_token_renew_secs: Option<u64>,

    /// Most records being stored at once. [default: 32]
    #[arg(long, env = "AUDIT_ARCHIVER_CONCURRENCY", value_name = "N")]
    pub concurrency: Option<usize>,

    /// Key prefix of records that cannot be routed. [default: _quarantine/]
    #[arg(long, env = "AUDIT_ARCHIVER_QUARANTINE_PREFIX", value_name = "PREFIX")]
    pub quarantine_prefix: Option<String>,

    /// A custom S3 endpoint, e.g. a local emulator: http://127.0.0.1:5000
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// The AWS region. Otherwise the SDK's chain (AWS_REGION, profile).
    #[arg(long, env = "AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Server-side encryption of stored objects: AES256 or aws:kms.
    #[arg(long, env = "AUDIT_ARCHIVER_SSE", value_name = "AES256|aws:kms")]
    pub sse: Option<String>,

    /// The KMS key for --sse aws:kms (ID, ARN or alias ARN).
    #[arg(long, env = "AUDIT_ARCHIVER_SSE_KMS_KEY_ID", value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,

    /// Refuse to write unless the bucket belongs to this account ID.
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_EXPECTED_BUCKET_OWNER",
        value_name = "ACCOUNT_ID"
    )]
    pub expected_bucket_owner: Option<String>,

    /// Storage class of stored objects, e.g. STANDARD_IA or GLACIER_IR.
    #[arg(long, env = "AUDIT_ARCHIVER_STORAGE_CLASS", value_name = "CLASS")]
    pub storage_class: Option<String>,

    /// Object Lock retention mode for each stored object: GOVERNANCE or COMPLIANCE.
    #[arg(long, env = "AUDIT_ARCHIVER_OBJECT_LOCK_MODE", value_name = "MODE")]
    pub object_lock_mode: Option<String>,

    /// Days each object is locked, with --object-lock-mode.
    #[arg(
        long,
        env = "AUDIT_ARCHIVER_OBJECT_LOCK_RETAIN_DAYS",
        value_name = "DAYS"
    )]
    pub object_lock_retain_days: Option<u32>,

    /// Attempts per AWS request, first included. [default: 5]
    #[arg(long, env = "AUDIT_ARCHIVER_MAX_ATTEMPTS", value_name = "N")]
    pub max_attempts: Option<u32>,
}

/// One `[[tenants]]` table of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFileEntry {
    tenant: String,
    api_url: String,
    credentials_file: Option<PathBuf>,
}

/// One Prisma Cloud account to backfill.
#[derive(Debug, Clone)]
pub struct TenantSource {
    /// The tenant (first key segment).
    pub tenant: String,
    /// The API host.
    pub api_url: String,
    /// Its access key.
    pub credentials: Credentials,
}

impl TenantSource {
    /// The queue name the component is given for this tenant's records; a
    /// tenant override maps it to the tenant.
    pub fn queue_name(&self) -> String {
        api_queue_name(&self.tenant)
    }
}

fn api_queue_name(tenant: &str) -> String {
    format!("prisma-api-{tenant}")
}

/// `--follow` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowSettings {
    /// Time between two polls.
    pub every: Duration,
    /// How far each poll reaches back before the previous one's end.
    pub overlap: Duration,
}

/// Validated `backfill` settings.
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    /// Routing (time source `event`, a tenant override per tenant).
    pub routing: RoutingConfig,
    /// The bucket.
    pub bucket: String,
    /// Endpoint, region, retries.
    pub aws: AwsSettings,
    /// Per-object settings.
    pub objects: ObjectOptions,
    /// Store-step settings.
    pub pipeline: PipelineSettings,
    /// Records stored at once.
    pub concurrency: usize,
    /// The accounts to read.
    pub tenants: Vec<TenantSource>,
    /// Start of the range, epoch ms.
    pub from_ms: i64,
    /// End of the range (excluded), epoch ms; `None` is the start time.
    pub to_ms: Option<i64>,
    /// `--follow`.
    pub follow: Option<FollowSettings>,
    /// Checkpoint key prefix.
    pub state_prefix: String,
    /// API pacing and retries.
    pub api: ClientSettings,
}

/// Reads an access key from `--credentials-file` or the environment. Errors
/// name the file and the variables, never a value.
fn read_credentials(file: Option<&PathBuf>) -> Result<Credentials, ConfigError> {
    const ID: &str = "PRISMA_ACCESS_KEY_ID";
    const SECRET: &str = "PRISMA_SECRET_KEY";
    let (id, secret, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                bad(format!(
                    "cannot read --credentials-file {}: {}",
                    path.display(),
                    e.kind()
                ))
            })?;
            let (mut id, mut secret) = (None, None);
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let line = line.strip_prefix("export ").unwrap_or(line);
                let Some((name, value)) = line.split_once('=') else {
                    return Err(bad(format!(
                        "invalid --credentials-file {}: line {} is not NAME=VALUE (expected {ID}=… and {SECRET}=…)",
                        path.display(),
                        number + 1
                    )));
                };
                let value = value
                    .trim()
                    .trim_matches('"')
                    .trim_matches('\'')
                    .to_string();
                match name.trim() {
                    ID => id = Some(value),
                    SECRET => secret = Some(value),
                    _ => {}
                }
            }
            (id, secret, format!("--credentials-file {}", path.display()))
        }
        None => (
            std::env::var(ID).ok(),
            std::env::var(SECRET).ok(),
            "the environment".to_string(),
        ),
    };
    match (id.filter(|v| !v.is_empty()), secret.filter(|v| !v.is_empty())) {
        (Some(id), Some(secret)) => Ok(Credentials {
            access_key_id: Secret::new(id),
            secret_key: Secret::new(secret),
        }),
        _ => Err(bad(format!(
            "no Prisma Cloud access key in {origin}: set {ID} and {SECRET}, or pass --credentials-file FILE \
             holding the lines {ID}=… and {SECRET}=…"
        ))),
    }
}

/// `YYYY-MM-DD` (a whole day in the offset; `end` takes the next midnight)
/// or an RFC 3339 instant, as epoch ms.
fn parse_instant(
    flag: &str,
    text: &str,
    offset_minutes: i16,
    end: bool,
) -> Result<i64, ConfigError> {
    let text = text.trim();
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let date = if end {
            date.succ_opt().unwrap_or(date)
        } else {
            date
        };
        let midnight = date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis();
        return Ok(midnight - i64::from(offset_minutes) * 60_000);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            bad(format!(
                "invalid {flag} {text:?}: expected YYYY-MM-DD (a day in --utc-offset) or an RFC 3339 time, \
                 e.g. 2026-08-01 or 2026-08-01T00:00:00+09:00"
            ))
        })
}

impl BackfillArgs {
    /// Merges and validates `backfill` options.
    pub fn validate(self) -> Result<BackfillConfig, ConfigError> {
        let file = read_file(self.routing.config.as_ref())?;
        let limits = sandbox_limits(file.component_timeout_ms, file.component_memory_mib)?;
        if let Some(source) = self.routing.time_source.or(file.time_source) {
            if source != TimeSourceArg::Event {
                return Err(bad(
                    "backfill names objects by the record's own timestamp: drop --time-source (or pass --time-source event)",
                ));
            }
        }
        let mut routing = self.routing.validate(&file, limits)?;
        routing.settings.time_source = TimeSource::Event;

        let bucket = self.bucket.or(file.bucket.clone()).ok_or_else(|| {
            bad("no bucket: pass --bucket NAME or set S3_BUCKET_NAME (e.g. --bucket acme-audit-archive)")
        })?;
        check_bucket_name(&bucket)?;

        let mut tenants = Vec::new();
        match (self.tenant, self.api_url) {
            (Some(tenant), Some(api_url)) => tenants.push(TenantSource {
                tenant,
                api_url,
                credentials: read_credentials(self.credentials_file.as_ref())?,
            }),
            (None, None) => {
                for entry in file.tenants.iter().flatten() {
                    let credentials_file =
                        entry.credentials_file.clone().or(self.credentials_file.clone());
                    tenants.push(TenantSource {
                        tenant: entry.tenant.clone(),
                        api_url: entry.api_url.clone(),
                        credentials: read_credentials(credentials_file.as_ref())?,
                    });
                }
                if tenants.is_empty() {
                    return Err(bad(
                        "no tenant: pass --tenant TENANT --api-url URL, or list [[tenants]] tables \
                         (tenant, api_url, credentials_file) in --config",
                    ));
                }
            }
            _ => return Err(bad("--tenant and --api-url go together, e.g. --tenant acme --api-url https://api.prismacloud.io")),
        }
        for source in &tenants {
            transform::queue::check_tenant(&source.tenant)
                .map_err(|why| bad(format!("invalid --tenant {:?}: {why}", source.tenant)))?;
            let url = &source.api_url;
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
                return Err(bad(format!(
                    "invalid --api-url {url:?}: expected the tenant's API host, e.g. https://api.prismacloud.io"
                )));
            }
            if tenants.iter().filter(|t| t.tenant == source.tenant).count() > 1 {
                return Err(bad(format!("tenant {:?} is listed twice", source.tenant)));
            }
            routing.settings.tenant_overrides.push(TenantOverride {
                queue: source.queue_name(),
                tenant: source.tenant.clone(),
            });
        }

        let offset = routing.settings.utc_offset_minutes;
        let from = self.from.ok_or_else(|| {
            bad("no start: pass --from DATE, e.g. --from 2026-08-01 (Prisma Cloud keeps 120 days)")
        })?;
        let from_ms = parse_instant("--from", &from, offset, false)?;
        let to_ms = self
            .to
            .map(|to| parse_instant("--to", &to, offset, true))
            .transpose()?;
        let now = chrono::Utc::now().timestamp_millis();
        if from_ms >= to_ms.unwrap_or(now).min(now) {
            return Err(bad(format!(
                "--from {from} is not before --to (or now): pass an earlier --from"
            )));
        }
        let to_ms = to_ms.filter(|&to| to < now);

        let concurrency = self.concurrency.or(file.concurrency).unwrap_or(32);
        if !(1..=1024).contains(&concurrency) {
            return Err(bad(format!(
                "invalid --concurrency {concurrency}: use 1 to 1024, e.g. 32"
            )));
        }
        let quarantine_prefix = self
            .quarantine_prefix
            .or(file.quarantine_prefix.clone())
            .unwrap_or_else(|| "_quarantine/".into());
        check_quarantine_prefix(&quarantine_prefix)?;
        let state_prefix = self
            .state_prefix
            .or(file.state_prefix.clone())
            .unwrap_or_else(|| "_state/".into());
        check_quarantine_prefix(&state_prefix).map_err(|e| {
            bad(e
                .0
                .replace("--quarantine-prefix", "--state-prefix")
                .replace("_quarantine/", "_state/"))
        })?;

        let follow = if self.follow {
            let every = self.follow_interval_mins.unwrap_or(10);
            let overlap = self.follow_overlap_mins.unwrap_or(30);
            if !(1..=1440).contains(&every) {
                return Err(bad(format!(
                    "invalid --follow-interval-mins {every}: use 1 to 1440, e.g. 10"
                )));
            }
            if overlap > 7 * 1440 {
                return Err(bad(format!(
                    "invalid --follow-overlap-mins {overlap}: use 0 to 10080, e.g. 30"
                )));
            }
            Some(FollowSettings {
                every: Duration::from_secs(every * 60),
                overlap: Duration::from_secs(overlap * 60),
            })
        } else {
            None
        };

        let requests_per_sec = self
            .api_requests_per_sec
            .or(file.api_requests_per_sec)
            .unwrap_or(10.0);
        if !(requests_per_sec > 0.0 && requests_per_sec <= 100.0) {
            return Err(bad(format!(
                "invalid --api-requests-per-sec {requests_per_sec}: use more than 0 and at most 100, e.g. 10 (the API's limit)"
            )));
        }
        let api_max_attempts = self.api_max_attempts.unwrap_or(8);
        if !(1..=20).contains(&api_max_attempts) {
            return Err(bad(format!(
                "invalid --api-max-attempts {api_max_attempts}: use 1 to 20, e.g. 8"
            )));
        }
        let page_size = self.page_size.unwrap_or(500);
        if !(100..=500).contains(&page_size) {
            return Err(bad(format!(
                "invalid --page-size {page_size}: the API takes 100 to 500"
            )));
        }
        let renew = self.api_token_renew_secs.unwrap_or(480);
        if !(1..=590).contains(&renew) {
            return Err(bad(format!(
                "invalid --api-token-renew-secs {renew}: use 1 to 590 (tokens live 600 s)"
            )));
        }

        let (aws, objects) = validate_storage(
            StorageFlags {
                endpoint_url: self.endpoint_url,
                region: self.region,
                max_attempts: self.max_attempts,
                sse: self.sse,
                sse_kms_key_id: self.sse_kms_key_id,
                expected_bucket_owner: self.expected_bucket_owner,
                storage_class: self.storage_class,
                object_lock_mode: self.object_lock_mode,
                object_lock_retain_days: self.object_lock_retain_days,
            },
            &file,
        )?;
        Ok(BackfillConfig {
            routing,
            bucket,
            aws,
            objects,
            pipeline: PipelineSettings {
                quarantine_prefix,
                ..PipelineSettings::default()
            },
            concurrency,
            tenants,
            from_ms,
            to_ms,
            follow,
            state_prefix,
            api: ClientSettings {
                requests_per_sec,
                max_attempts: api_max_attempts,
                token_renew_after: Duration::from_secs(renew),
                page_size,
            },
        })
    }
}

/// A quarantine prefix cannot escape into the tenants' keys.
fn check_quarantine_prefix(prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty()
        || prefix.starts_with('/')
        || !prefix.ends_with('/')
        || prefix.split('/').any(|s| s == "." || s == "..")
        || prefix.chars().any(char::is_control)
    {
        return Err(bad(format!(
            "invalid --quarantine-prefix {prefix:?}: it must end with `/`, not start with `/`, \
             and have no `.` or `..` segment, e.g. _quarantine/"
        )));
    }
    Ok(())
}

fn check_account_id(owner: &str) -> Result<(), ConfigError> {
    if owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!(
            "invalid --expected-bucket-owner {owner:?}: use a 12-digit AWS account ID"
        )));
    }
    Ok(())
}

fn check_endpoint_url(url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad(format!(
            "invalid --endpoint-url {url:?}: expected http:// or https://, e.g. http://127.0.0.1:5000"
        )));
    }
    Ok(())
}

/// S3's bucket naming rules, so a typo fails before any request.
fn check_bucket_name(bucket: &str) -> Result<(), ConfigError> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid --bucket {bucket:?}: S3 bucket names are 3-63 lowercase letters, digits, `-` or `.`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> Result<RunConfig, ConfigError> {
        let mut argv = vec!["audit-archiver", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Run(run) => run.validate(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn lambda_errors_start_with_the_environment_variable() {
        let lambda = |args: &[&str]| {
            let mut argv = vec!["audit-archiver", "lambda"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv).expect("flags parse").command {
                Command::Lambda(args) => args.validate(),
                _ => unreachable!(),
            }
        };
        let cases: &[(&[&str], &str)] = &[
            (
                &["--utc-offset", "+25:00"],
                "AUDIT_ARCHIVER_UTC_OFFSET (--utc-offset): ",
            ),
            (&["--bucket", "Bad_Bucket"], "S3_BUCKET_NAME (--bucket): "),
            (
                &["--bucket", "archive", "--deadline-margin-ms", "5"],
                "AUDIT_ARCHIVER_DEADLINE_MARGIN_MS (--deadline-margin-ms): ",
            ),
            (
                &["--bucket", "archive", "--quarantine-prefix", "q"],
                "AUDIT_ARCHIVER_QUARANTINE_PREFIX (--quarantine-prefix): ",
            ),
        ];
        for (args, start) in cases {
            let error = lambda(args).unwrap_err().to_string();
            assert!(error.starts_with(start), "{args:?}: {error}");
        }
        // A flag that is a prefix of another is not mistaken for it.
        let error = name_env(bad("invalid --sse-kms-key-id x")).0;
        assert!(
            error.starts_with("AUDIT_ARCHIVER_SSE_KMS_KEY_ID (--sse-kms-key-id)"),
            "{error}"
        );
        let config = lambda(&["--bucket", "archive"]).unwrap();
        assert_eq!(config.routing.log_format, LogFormat::Json);
        assert_eq!(config.deadline_margin, Duration::from_secs(3));
        assert!(config.routing.cache_dir.is_none());
    }

    #[test]
    fn utc_offsets_parse_in_every_usual_spelling() {
        assert_eq!(parse_utc_offset("+09:00").unwrap(), 540);
        assert_eq!(parse_utc_offset("+0900").unwrap(), 540);
        assert_eq!(parse_utc_offset("+09").unwrap(), 540);
        assert_eq!(parse_utc_offset("-05:30").unwrap(), -330);
        assert_eq!(parse_utc_offset("Z").unwrap(), 0);
        assert_eq!(parse_utc_offset("+14:00").unwrap(), 840);
        for bad in [
            "9", "+9", "+14:01", "+09:60", "+0:900", "JST", "", "+09:0", "+1a:00",
        ] {
            let error = parse_utc_offset(bad).unwrap_err().to_string();
            assert!(error.contains("--utc-offset"), "{bad}: {error}");
        }
    }

    #[test]
    fn missing_bucket_and_queues_name_their_flags() {
        let error = run_args(&["--queue", "q"]).unwrap_err().to_string();
        assert!(
            error.contains("--bucket") && error.contains("S3_BUCKET_NAME"),
            "{error}"
        );
        let error = run_args(&["--bucket", "archive"]).unwrap_err().to_string();
        assert!(
            error.contains("--queue") && error.contains("--queue-prefix"),
            "{error}"
        );
    }

    #[test]
    fn invalid_values_name_their_flags() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bucket", "Bad_Bucket", "--queue", "q"], "--bucket"),
            (
                &["--bucket", "archive", "--queue", "q", "--concurrency", "0"],
                "--concurrency",
            ),
            (
                &[
                    "--bucket",
                    "archive",
                    "--queue",
                    "q",
                    "--quarantine-prefix",
                    "q",
                ],
                "--quarantine-prefix",
            ),
            (
                &["--bucket", "archive", "--queue", "q", "--sse", "kms"],
                "--sse",
            ),
            (
                &[
                    "--bucket",
                    "archive",
                    "--queue",
                    "q",
                    "--sse-kms-key-id",
                    "k",
                ],
                "--sse-kms-key-id",
            ),
            (
                &[
                    "--bucket",
                    "archive",
                    "--queue",
                    "q",
                    "--object-lock-mode",
                    "COMPLIANCE",
                ],
                "--object-lock-retain-days",
            ),
            (
                &[
                    "--bucket",
                    "archive",
                    "--queue",
                    "q",
                    "--storage-class",
                    "COLD",
                ],
                "--storage-class",
            ),
            (
                &[
                    "--bucket",
                    "archive",
                    "--queue",
                    "q",
                    "--expected-bucket-owner",
                    "12",
                ],
                "--expected-bucket-owner",
            ),
            (
                &[
                    "--bucket",
                    "archive",
                    "--queue",
                    "q",
                    "--endpoint-url",
                    "localhost:5000",
                ],
                "--endpoint-url",
            ),
            (
                &["--bucket", "archive", "--queue", "q", "--queue-prefix", "p"],
                "--queue-prefix",
            ),
            (
                &[
                    "--bucket",
                    "archive",
                    "--queue",
                    "q",
                    "--tenant-map",
                    "nomapping",
                ],
                "--tenant-map",
            ),
            (
                &[
                    "--bucket",
                    "archive",
                    "--queue",
                    "q",
                    "--utc-offset",
                    "+25:00",
                ],
                "--utc-offset",
            ),
        ];
        for (args, flag) in cases {
            let error = run_args(args).unwrap_err().to_string();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = run_args(&["--bucket", "archive", "--queue", "a", "--queue", "b"]).unwrap();
        assert_eq!(
            config.queues,
            QueueSelection::Listed(vec!["a".into(), "b".into()])
        );
        assert_eq!(config.routing.settings.key_template, "default");
        assert_eq!(
            config.routing.settings.time_source,
            TimeSource::FirstReceive
        );
        assert_eq!(config.routing.settings.utc_offset_minutes, 540);
        assert_eq!(config.concurrency, 32);
        assert_eq!(config.pipeline.quarantine_prefix, "_quarantine/");
        assert_eq!(config.wait_time_secs, 20);
        let drain =
            run_args(&["--bucket", "archive", "--queue-prefix", "acme-", "--drain"]).unwrap();
        assert_eq!(drain.wait_time_secs, 2);
        assert_eq!(drain.queues, QueueSelection::Prefix("acme-".into()));
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("aa-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            "bucket = \"from-file\"\nqueues = [\"q1\"]\nkey_template = \"seed\"\nconcurrency = 8\n[tenant_map]\n\"legacy-queue\" = \"acme\"\n",
        )
        .unwrap();
        let path_arg = path.to_str().unwrap();
        let config = run_args(&["--config", path_arg, "--concurrency", "4"]).unwrap();
        assert_eq!(config.bucket, "from-file");
        assert_eq!(config.routing.settings.key_template, "seed");
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.routing.settings.tenant_overrides[0].tenant, "acme");

        std::fs::write(&path, "bucket = \"b\"\nqueue = [\"typo\"]\n").unwrap();
        let error = run_args(&["--config", path_arg]).unwrap_err().to_string();
        assert!(
            error.contains("--config") && error.contains("queue"),
            "{error}"
        );
    }

    fn backfill_args(args: &[&str]) -> Result<BackfillConfig, ConfigError> {
        let mut argv = vec!["audit-archiver", "backfill"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Backfill(backfill) => backfill.validate(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn backfill_flags_are_checked_and_name_their_flags() {
        let dir = std::env::temp_dir().join(format!("aa-backfill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys = dir.join("keys.env");
        std::fs::write(
            &keys,
            "# Prisma Cloud\nPRISMA_ACCESS_KEY_ID=id-123\nPRISMA_SECRET_KEY=\"s3cr3t\"\n",
        )
        .unwrap();
        let keys = keys.to_str().unwrap();
        let base = [
            "--bucket",
            "archive",
            "--tenant",
            "acme",
            "--api-url",
            "https://api.prismacloud.io",
            "--credentials-file",
            keys,
        ];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            backfill_args(&args)
        };
        let config = with(&["--from", "2026-01-01", "--to", "2026-01-31"]).unwrap();
        // Whole days of JST: 2026-01-01T00:00+09:00 to 2026-02-01T00:00+09:00.
        assert_eq!(config.from_ms, 1_767_193_200_000);
        assert_eq!(config.to_ms, Some(1_767_193_200_000 + 31 * 86_400_000));
        assert_eq!(config.routing.settings.time_source, TimeSource::Event);
        assert_eq!(
            config.tenants[0].credentials.secret_key,
            Secret::new("s3cr3t".into())
        );
        assert_eq!(config.state_prefix, "_state/");
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let cases: &[(&[&str], &str)] = &[
            (&[], "--from"),
            (&["--from", "yesterday"], "--from"),
            (&["--from", "2026-02-01", "--to", "2026-01-01"], "--from"),
            (
                &["--from", "2026-01-01", "--page-size", "50"],
                "--page-size",
            ),
            (
                &["--from", "2026-01-01", "--api-requests-per-sec", "0"],
                "--api-requests-per-sec",
            ),
            (
                &["--from", "2026-01-01", "--state-prefix", "state"],
                "--state-prefix",
            ),
            (
                &["--from", "2026-01-01", "--time-source", "sent"],
                "--time-source",
            ),
            (&["--from", "2026-01-01", "--sse", "kms"], "--sse"),
            (
                &[
                    "--from",
                    "2026-01-01",
                    "--follow",
                    "--follow-interval-mins",
                    "0",
                ],
                "--follow-interval-mins",
            ),
        ];
        for (args, flag) in cases {
            let error = with(args).unwrap_err().to_string();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
        std::fs::write(dir.join("bad.env"), "s3cr3t\n").unwrap();
        let bad = dir.join("bad.env");
        let error = backfill_args(&[
            "--bucket",
            "archive",
            "--tenant",
            "acme",
            "--api-url",
            "https://api.prismacloud.io",
            "--credentials-file",
            bad.to_str().unwrap(),
            "--from",
            "2026-01-01",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("--credentials-file") && !error.contains("s3cr3t"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
