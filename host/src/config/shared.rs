//! The option groups several commands share — key layout, routing, sandbox
//! bounds, the bucket and how to reach it, object settings, concurrency,
//! the checkpoint prefix — each with the validation that turns it into
//! settings. A command flattens the groups it takes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use audit_archiver_transform::{self as transform, TenantOverride, TimeSource};
use serde::{Deserialize, Deserializer};

use super::defaults::{self, value_name, with_default};
use super::file::option_group;
use super::validate::{self, check_range};
use super::{bad, ConfigError, LogFormat, TimeSourceArg};
use crate::aws::AwsSettings;
use crate::route::SandboxLimits;
use crate::store::s3::ObjectOptions;

option_group! {
    /// Where keys put each object: the template and the offset of its dates.
    pub struct LayoutArgs {
        #[arg(
            long,
            env = "AUDIT_ARCHIVER_KEY_TEMPLATE",
            value_name = "seed|default|TEMPLATE",
            help = with_default!(
                "Object key layout: `default` (never collides), `seed` (the reference layout: \
                 {{tenant}}/%Y/%m/%d/prismacloud-auditlog-{{tenant}}-%Y%m%d-%H%M%S.json) or a \
                 template starting with `{{tenant}}/` using {{tenant}} {{queue}} {{message_id}} %Y \
                 %m %d %H %M %S %j %%; for `verify` and `query`, the layout the archive was written with.",
                defaults::KEY_TEMPLATE
            )
        )]
        pub key_template: Option<String>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_UTC_OFFSET",
            value_name = "±HH:MM",
            allow_hyphen_values = true,
            help = with_default!(
                "The UTC offset of the dates in keys (and of DATE arguments), e.g. +09:00 (JST), \
                 +00:00, -05:00.",
                transform::time::format_offset(defaults::UTC_OFFSET_MINUTES)
            )
        )]
        pub utc_offset: Option<String>,
    }
}

impl LayoutArgs {
    /// The key template (unchecked: the component or [`crate::read::layout`]
    /// checks it) and the offset in minutes.
    pub fn validate(self) -> Result<(String, i16), ConfigError> {
        let offset = match self.utc_offset {
            Some(text) => parse_utc_offset(&text)?,
            None => defaults::UTC_OFFSET_MINUTES,
        };
        let template = self
            .key_template
            .unwrap_or_else(|| defaults::KEY_TEMPLATE.into());
        Ok((template, offset))
    }
}

/// Parses `--utc-offset` into minutes, naming the flag when it cannot.
pub fn parse_utc_offset(text: &str) -> Result<i16, ConfigError> {
    transform::time::parse_offset(text).ok_or_else(|| {
        bad(format!(
            "invalid --utc-offset {text:?}: expected ±HH:MM within ±14:00, e.g. +09:00 (JST) or -05:00"
        ))
    })
}

option_group! {
    /// How messages are routed (besides the layout), the component that
    /// routes them, and the log format; `--config` names the file.
    pub struct RoutingArgs {
        /// TOML file with any option of this command, named in snake_case
        /// (e.g. `key_template = "seed"`); flags and environment win over it.
        #[arg(long, env = "AUDIT_ARCHIVER_CONFIG", value_name = "FILE")]
        #[serde(skip)]
        pub config: Option<PathBuf>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_TIME_SOURCE",
            value_enum,
            help = with_default!(
                "Which time names the object: the message's first receive, when it was sent, \
                 or the audit record's own `timestamp`.",
                value_name::<TimeSourceArg>()
            )
        )]
        pub time_source: Option<TimeSourceArg>,

        /// An explicit tenant for a queue, overriding "name up to its first -".
        /// Repeatable. Example: --tenant-map legacy-audit-queue=acme
        #[arg(
            long,
            env = "AUDIT_ARCHIVER_TENANT_MAP",
            value_name = "QUEUE=TENANT",
            value_delimiter = ','
        )]
        #[serde(deserialize_with = "tenant_map_table")]
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

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_LOG_FORMAT",
            value_enum,
            help = with_default!("Log format on stderr.", value_name::<LogFormat>())
        )]
        pub log_format: Option<LogFormat>,
    }
}

/// The file's `[tenant_map]` table, as the flag's `QUEUE=TENANT` values.
fn tenant_map_table<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let table = BTreeMap::<String, String>::deserialize(deserializer)?;
    Ok(table
        .into_iter()
        .map(|(queue, tenant)| format!("{queue}={tenant}"))
        .collect())
}

/// Validated routing settings.
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

impl RoutingArgs {
    /// Checks the routing options (both groups already completed from the file).
    pub fn validate(
        self,
        layout: LayoutArgs,
        limits: SandboxLimits,
    ) -> Result<RoutingConfig, ConfigError> {
        let (key_template, utc_offset_minutes) = layout.validate()?;
        let tenant_overrides = self
            .tenant_map
            .iter()
            .map(|pair| {
                let (queue, tenant) = pair.split_once('=').ok_or_else(|| {
                    bad(format!(
                        "invalid --tenant-map {pair:?}: expected QUEUE=TENANT, e.g. --tenant-map legacy-audit-queue=acme"
                    ))
                })?;
                Ok(TenantOverride {
                    queue: transform::queue::bare_queue_name(queue.trim()).to_string(),
                    tenant: tenant.trim().to_string(),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(RoutingConfig {
            settings: transform::Settings {
                key_template,
                time_source: self.time_source.unwrap_or_default().into(),
                utc_offset_minutes,
                tenant_overrides,
            },
            component: self.component,
            cache_dir: if self.no_cache {
                None
            } else {
                self.cache_dir.or_else(crate::route::cache::default_dir)
            },
            limits,
            log_format: self.log_format.unwrap_or_default(),
        })
    }
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

option_group! {
    /// The routing component's resource bounds.
    pub struct SandboxArgs {
        #[arg(
            long,
            env = "AUDIT_ARCHIVER_COMPONENT_TIMEOUT_MS",
            value_name = "MS",
            help = with_default!("Time limit of one call into the routing component.", defaults::COMPONENT_TIMEOUT_MS)
        )]
        pub component_timeout_ms: Option<u64>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_COMPONENT_MEMORY_MIB",
            value_name = "MIB",
            help = with_default!("Memory limit of the routing component.", defaults::COMPONENT_MEMORY_MIB)
        )]
        pub component_memory_mib: Option<usize>,
    }
}

impl SandboxArgs {
    /// The sandbox bounds.
    pub fn validate(self) -> Result<SandboxLimits, ConfigError> {
        let timeout_ms = self
            .component_timeout_ms
            .unwrap_or(defaults::COMPONENT_TIMEOUT_MS);
        check_range(
            "--component-timeout-ms",
            timeout_ms,
            10..=60_000,
            defaults::COMPONENT_TIMEOUT_MS,
        )?;
        let memory_mib = self
            .component_memory_mib
            .unwrap_or(defaults::COMPONENT_MEMORY_MIB);
        check_range(
            "--component-memory-mib",
            memory_mib,
            1..=4096,
            defaults::COMPONENT_MEMORY_MIB,
        )?;
        Ok(SandboxLimits {
            memory_bytes: memory_mib << 20,
            call_timeout: std::time::Duration::from_millis(timeout_ms),
        })
    }
}

option_group! {
    /// The archive bucket, how to reach it, and its quarantine prefix.
    pub struct BucketArgs {
        /// The archive bucket. Example: --bucket acme-audit-archive
        #[arg(long, env = "S3_BUCKET_NAME", value_name = "NAME")]
        pub bucket: Option<String>,

        /// A custom S3/SQS endpoint, e.g. a local emulator: http://127.0.0.1:5000
        #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
        pub endpoint_url: Option<String>,

        /// The AWS region. Otherwise the SDK's chain (AWS_REGION, profile).
        #[arg(long, env = "AWS_REGION", value_name = "REGION")]
        pub region: Option<String>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_MAX_ATTEMPTS",
            value_name = "N",
            help = with_default!(
                "Attempts per AWS request (the SDK's retries with backoff), the first included.",
                defaults::MAX_ATTEMPTS
            )
        )]
        pub max_attempts: Option<u32>,

        /// Refuse to use the bucket unless it belongs to this account ID.
        #[arg(
            long,
            env = "AUDIT_ARCHIVER_EXPECTED_BUCKET_OWNER",
            value_name = "ACCOUNT_ID"
        )]
        pub expected_bucket_owner: Option<String>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_QUARANTINE_PREFIX",
            value_name = "PREFIX",
            help = with_default!(
                "Key prefix of messages that cannot be routed; each is stored as \
                 {{prefix}}{{queue}}/{{message_id}}.json with the reason in its metadata.",
                defaults::QUARANTINE_PREFIX
            )
        )]
        pub quarantine_prefix: Option<String>,
    }
}

/// The validated bucket options.
#[derive(Debug, Clone)]
pub struct BucketConfig {
    /// The bucket.
    pub bucket: String,
    /// Endpoint, region, retries.
    pub aws: AwsSettings,
    /// `--expected-bucket-owner`.
    pub expected_bucket_owner: Option<String>,
    /// `--quarantine-prefix`.
    pub quarantine_prefix: String,
}

impl BucketArgs {
    /// Checks the bucket options; the bucket is required.
    pub fn validate(self) -> Result<BucketConfig, ConfigError> {
        let bucket = self.bucket.ok_or_else(|| {
            bad("no bucket: pass --bucket NAME or set S3_BUCKET_NAME (e.g. --bucket acme-audit-archive)")
        })?;
        validate::check_bucket_name(&bucket)?;
        if let Some(url) = &self.endpoint_url {
            validate::check_endpoint_url(url)?;
        }
        if let Some(owner) = &self.expected_bucket_owner {
            validate::check_account_id(owner)?;
        }
        let quarantine_prefix = self
            .quarantine_prefix
            .unwrap_or_else(|| defaults::QUARANTINE_PREFIX.into());
        validate::check_prefix(
            "--quarantine-prefix",
            &quarantine_prefix,
            defaults::QUARANTINE_PREFIX,
        )?;
        let max_attempts = self.max_attempts.unwrap_or(defaults::MAX_ATTEMPTS);
        check_range(
            "--max-attempts",
            max_attempts,
            1..=20,
            defaults::MAX_ATTEMPTS,
        )?;
        Ok(BucketConfig {
            bucket,
            aws: AwsSettings {
                endpoint_url: self.endpoint_url,
                region: self.region,
                max_attempts,
            },
            expected_bucket_owner: self.expected_bucket_owner,
            quarantine_prefix,
        })
    }
}

option_group! {
    /// How each stored object is written: encryption, storage class, Object Lock.
    pub struct ObjectArgs {
        /// Server-side encryption of stored objects: AES256 or aws:kms.
        #[arg(long, env = "AUDIT_ARCHIVER_SSE", value_name = "AES256|aws:kms")]
        pub sse: Option<String>,

        /// The KMS key for --sse aws:kms (ID, ARN or alias ARN).
        #[arg(long, env = "AUDIT_ARCHIVER_SSE_KMS_KEY_ID", value_name = "KEY")]
        pub sse_kms_key_id: Option<String>,

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
    }
}

impl ObjectArgs {
    /// Checks the object options; the bucket owner comes from [`BucketArgs`].
    pub fn validate(
        self,
        expected_bucket_owner: Option<String>,
    ) -> Result<ObjectOptions, ConfigError> {
        match (self.sse.as_deref(), &self.sse_kms_key_id) {
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
        if let Some(class) = &self.storage_class {
            validate::check_storage_class(class)?;
        }
        let object_lock = match (self.object_lock_mode, self.object_lock_retain_days) {
            (None, None) => None,
            (Some(mode), Some(days))
                if matches!(mode.as_str(), "GOVERNANCE" | "COMPLIANCE")
                    && (1..=36_500).contains(&days) =>
            {
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
        Ok(ObjectOptions {
            sse: self.sse,
            sse_kms_key_id: self.sse_kms_key_id,
            expected_bucket_owner,
            storage_class: self.storage_class,
            object_lock,
        })
    }
}

option_group! {
    /// How much is done at once: messages or records stored (`run`,
    /// `backfill`), objects read (`verify`, `query`). One flag, variable,
    /// file key, default and range for every command that takes it.
    pub struct ConcurrencyArgs {
        #[arg(
            long,
            env = "AUDIT_ARCHIVER_CONCURRENCY",
            value_name = "N",
            help = with_default!(
                "Most messages or records being stored at once (`run`, `backfill`), or objects \
                 being read at once (`verify`, `query`).",
                defaults::CONCURRENCY
            )
        )]
        pub concurrency: Option<usize>,
    }
}

/// The name `verify` and `query` read `--concurrency` from before it was one
/// option: still read by them when neither `--concurrency` nor
/// `AUDIT_ARCHIVER_CONCURRENCY` is given (then the file, then the default).
pub const READ_CONCURRENCY_ENV_ALIAS: &str = "AUDIT_ARCHIVER_READ_CONCURRENCY";

impl ConcurrencyArgs {
    /// The values every command accepts.
    const RANGE: std::ops::RangeInclusive<usize> = 1..=1024;

    /// `--concurrency` from the environment variable `alias` (an older name,
    /// whose value is `value`), when neither the flag nor its own variable
    /// gives it; an invalid value names the variable.
    pub fn or_alias(self, alias: &str, value: Option<String>) -> Result<Self, ConfigError> {
        match value {
            Some(text) if self.concurrency.is_none() && !text.is_empty() => {
                let concurrency = text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| Self::RANGE.contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "invalid {alias} {text:?} (the former name of --concurrency's \
                             AUDIT_ARCHIVER_CONCURRENCY): use {} to {}, e.g. {}",
                            Self::RANGE.start(),
                            Self::RANGE.end(),
                            defaults::CONCURRENCY
                        ))
                    })?;
                Ok(Self {
                    concurrency: Some(concurrency),
                })
            }
            _ => Ok(self),
        }
    }

    /// [`Self::or_alias`] with the alias read from the environment.
    pub fn or_env_alias(self, alias: &str) -> Result<Self, ConfigError> {
        let value = std::env::var_os(alias).map(|v| v.to_string_lossy().into_owned());
        self.or_alias(alias, value)
    }

    /// How many at once.
    pub fn validate(self) -> Result<usize, ConfigError> {
        let concurrency = self.concurrency.unwrap_or(defaults::CONCURRENCY);
        check_range(
            "--concurrency",
            concurrency,
            Self::RANGE,
            defaults::CONCURRENCY,
        )?;
        Ok(concurrency)
    }
}

option_group! {
    /// Where `backfill` keeps its checkpoints and the writers their digest
    /// manifest (which `verify` and `query` skip).
    pub struct StateArgs {
        #[arg(
            long,
            env = "AUDIT_ARCHIVER_STATE_PREFIX",
            value_name = "PREFIX",
            help = with_default!(
                "Key prefix of what is not audit logs: `backfill`'s progress checkpoints and \
                 the digest manifest the writers (`run`, `lambda`, `backfill`) keep for the \
                 sealer, under {{prefix}}manifest/.",
                defaults::STATE_PREFIX
            )
        )]
        pub state_prefix: Option<String>,
    }
}

impl StateArgs {
    /// The checkpoint prefix.
    pub fn validate(self) -> Result<String, ConfigError> {
        let prefix = self
            .state_prefix
            .unwrap_or_else(|| defaults::STATE_PREFIX.into());
        validate::check_prefix("--state-prefix", &prefix, defaults::STATE_PREFIX)?;
        Ok(prefix)
    }
}
