//! `backfill`'s options: the shared groups, the Prisma Cloud accounts and
//! how to call their API, the time range and `--follow`; validated into
//! [`BackfillConfig`].

use std::path::PathBuf;
use std::time::Duration;

use audit_archiver_transform::{self as transform, TenantOverride, TimeSource};
use clap::Args;
use serde::Deserialize;

use super::defaults::{self, with_default};
use super::file::{option_group, ConfigFile};
use super::seal::{DigestLocationArgs, SealArgs};
use super::shared::{
    BucketArgs, ConcurrencyArgs, LayoutArgs, ObjectArgs, RoutingArgs, RoutingConfig, SandboxArgs,
    StateArgs,
};
use super::validate::check_range;
use super::{bad, ConfigError, TimeSourceArg};
use crate::aws::AwsSettings;
use crate::source::prisma::{ClientSettings, Credentials, Secret};
use crate::store::s3::ObjectOptions;
use crate::store::StoreSettings;

/// `backfill` options.
#[derive(Debug, Args)]
#[allow(missing_docs)]
#[command(mut_args(backfill_help))]
pub struct BackfillArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub bucket: BucketArgs,
    #[command(flatten)]
    pub api: PrismaApiArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
    #[command(flatten)]
    pub objects: ObjectArgs,
    #[command(flatten)]
    pub digest: DigestLocationArgs,
    #[command(flatten)]
    pub seal: SealArgs,
}

/// `backfill`'s own help for a shared option (changed in place, so `--help`
/// and the docs keep the options' order): records come from the API, not a
/// queue, so only the record's own time names them.
fn backfill_help(arg: clap::Arg) -> clap::Arg {
    match arg.get_id().as_str() {
        "time_source" => arg.help(with_default!(
            "Which time names the object: `backfill` takes only `event`, the audit record's \
             own `timestamp` (its records were never in a queue).",
            "event"
        )),
        _ => arg,
    }
}

option_group! {
    /// The Prisma Cloud accounts to read and how to call their API.
    pub struct PrismaApiArgs {
        /// The tenant the records belong to (the first segment of their keys).
        /// Without it, the config file's [[tenants]] tables are used.
        #[arg(long, env = "PRISMA_TENANT", value_name = "TENANT")]
        #[serde(skip)]
        pub tenant: Option<String>,

        /// The tenant's Prisma Cloud API host, e.g. https://api.prismacloud.io,
        /// https://api2.prismacloud.io, https://api.eu.prismacloud.io.
        #[arg(long, env = "PRISMA_API_URL", value_name = "URL")]
        #[serde(skip)]
        pub api_url: Option<String>,

        /// A file with the access key as two lines, PRISMA_ACCESS_KEY_ID=… and
        /// PRISMA_SECRET_KEY=…. Otherwise the environment variables of those names.
        #[arg(long, env = "PRISMA_CREDENTIALS_FILE", value_name = "FILE")]
        #[serde(skip)]
        pub credentials_file: Option<PathBuf>,

        /// The config file's `[[tenants]]` tables, used without --tenant.
        #[arg(skip)]
        pub tenants: Vec<TenantFileEntry>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_API_REQUESTS_PER_SEC",
            value_name = "N",
            help = with_default!(
                "Most Prisma Cloud API requests per second, per tenant (the API allows 10).",
                defaults::API_REQUESTS_PER_SEC
            )
        )]
        pub api_requests_per_sec: Option<f64>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_API_MAX_ATTEMPTS",
            value_name = "N",
            help = with_default!(
                "Attempts per Prisma Cloud API request, the first included.",
                defaults::API_MAX_ATTEMPTS
            )
        )]
        #[serde(skip)]
        pub api_max_attempts: Option<u32>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_PAGE_SIZE",
            value_name = "N",
            help = with_default!("Records asked for per page, 100 to 500.", defaults::PAGE_SIZE)
        )]
        #[serde(skip)]
        pub page_size: Option<u32>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_API_TOKEN_RENEW_SECS",
            value_name = "SECS",
            hide = true,
            help = with_default!(
                "Token age at which it is renewed (tokens live 600 s).",
                defaults::API_TOKEN_RENEW_SECS
            )
        )]
        #[serde(skip)]
        pub api_token_renew_secs: Option<u64>,
    }
}

/// The days to archive and whether to keep following (flags only).
#[derive(Debug, Args)]
#[allow(missing_docs)]
pub struct RangeArgs {
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

    #[arg(
        long,
        env = "AUDIT_ARCHIVER_FOLLOW_INTERVAL_MINS",
        value_name = "MINS",
        help = with_default!("With --follow, minutes between two polls.", defaults::FOLLOW_INTERVAL_MINS)
    )]
    pub follow_interval_mins: Option<u64>,

    #[arg(
        long,
        env = "AUDIT_ARCHIVER_FOLLOW_OVERLAP_MINS",
        value_name = "MINS",
        help = with_default!(
            "With --follow, how far back each poll reaches before the previous one's end, for \
             records the API indexes late.",
            defaults::FOLLOW_OVERLAP_MINS
        )
    )]
    pub follow_overlap_mins: Option<u64>,
}

/// One `[[tenants]]` table of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFileEntry {
    /// The tenant.
    pub tenant: String,
    /// Its API host.
    pub api_url: String,
    /// Its access key's file; otherwise --credentials-file or the environment.
    pub credentials_file: Option<PathBuf>,
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
    pub store: StoreSettings,
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
    /// Sealing what was written, when a digest key is given.
    pub seal: Option<crate::seal::SealConfig>,
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
    /// Merges and validates `backfill` options; the sandbox bounds come from
    /// the file only (`backfill` has no flags for them).
    pub fn validate(self) -> Result<BackfillConfig, ConfigError> {
        let file = ConfigFile::read(self.routing.config.as_deref())?;
        let limits = file.section::<SandboxArgs>()?.validate()?;
        let routing = file.under(self.routing)?;
        if let Some(source) = routing.time_source {
            if source != TimeSourceArg::Event {
                return Err(bad(
                    "backfill names objects by the record's own timestamp: drop --time-source (or pass --time-source event)",
                ));
            }
        }
        let mut routing = routing.validate(file.under(self.layout)?, limits)?;
        routing.settings.time_source = TimeSource::Event;
        let bucket = file.under(self.bucket)?.validate()?;
        let api = file.under(self.api)?;
        let tenants = api.tenants()?;
        for source in &tenants {
            routing.settings.tenant_overrides.push(TenantOverride {
                queue: source.queue_name(),
                tenant: source.tenant.clone(),
            });
        }
        let (from_ms, to_ms, follow) = self.range.validate(routing.settings.utc_offset_minutes)?;
        let concurrency = file.under(self.concurrency)?.validate()?;
        let state_prefix = file.under(self.state)?.validate()?;
        let seal = file
            .under(self.seal)?
            .validate(file.under(self.digest)?, &state_prefix)?;
        let api = api.validate()?;
        let objects = file
            .under(self.objects)?
            .validate(bucket.expected_bucket_owner)?;
        Ok(BackfillConfig {
            routing,
            bucket: bucket.bucket,
            aws: bucket.aws,
            objects,
            store: StoreSettings::with_quarantine_prefix(bucket.quarantine_prefix),
            concurrency,
            tenants,
            from_ms,
            to_ms,
            follow,
            state_prefix,
            api,
            seal,
        })
    }
}

impl PrismaApiArgs {
    /// The accounts: `--tenant` with `--api-url`, else the file's tables.
    fn tenants(&self) -> Result<Vec<TenantSource>, ConfigError> {
        let mut tenants = Vec::new();
        match (&self.tenant, &self.api_url) {
            (Some(tenant), Some(api_url)) => tenants.push(TenantSource {
                tenant: tenant.clone(),
                api_url: api_url.clone(),
                credentials: read_credentials(self.credentials_file.as_ref())?,
            }),
            (None, None) => {
                for entry in &self.tenants {
                    let credentials_file = entry
                        .credentials_file
                        .clone()
                        .or(self.credentials_file.clone());
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
        }
        Ok(tenants)
    }

    /// API pacing and retries.
    fn validate(self) -> Result<ClientSettings, ConfigError> {
        let requests_per_sec = self
            .api_requests_per_sec
            .unwrap_or(defaults::API_REQUESTS_PER_SEC);
        if !(requests_per_sec > 0.0 && requests_per_sec <= 100.0) {
            return Err(bad(format!(
                "invalid --api-requests-per-sec {requests_per_sec}: use more than 0 and at most 100, e.g. 10 (the API's limit)"
            )));
        }
        let max_attempts = self.api_max_attempts.unwrap_or(defaults::API_MAX_ATTEMPTS);
        check_range(
            "--api-max-attempts",
            max_attempts,
            1..=20,
            defaults::API_MAX_ATTEMPTS,
        )?;
        let page_size = self.page_size.unwrap_or(defaults::PAGE_SIZE);
        if !(100..=500).contains(&page_size) {
            return Err(bad(format!(
                "invalid --page-size {page_size}: the API takes 100 to 500"
            )));
        }
        let renew = self
            .api_token_renew_secs
            .unwrap_or(defaults::API_TOKEN_RENEW_SECS);
        if !(1..=590).contains(&renew) {
            return Err(bad(format!(
                "invalid --api-token-renew-secs {renew}: use 1 to 590 (tokens live 600 s)"
            )));
        }
        Ok(ClientSettings {
            requests_per_sec,
            max_attempts,
            token_renew_after: Duration::from_secs(renew),
            page_size,
        })
    }
}

impl RangeArgs {
    /// The range in epoch ms (`to` excluded, `None` for now) and `--follow`.
    fn validate(
        self,
        offset: i16,
    ) -> Result<(i64, Option<i64>, Option<FollowSettings>), ConfigError> {
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
        let follow = if self.follow {
            let every = self
                .follow_interval_mins
                .unwrap_or(defaults::FOLLOW_INTERVAL_MINS);
            let overlap = self
                .follow_overlap_mins
                .unwrap_or(defaults::FOLLOW_OVERLAP_MINS);
            check_range(
                "--follow-interval-mins",
                every,
                1..=1440,
                defaults::FOLLOW_INTERVAL_MINS,
            )?;
            check_range(
                "--follow-overlap-mins",
                overlap,
                0..=7 * 1440,
                defaults::FOLLOW_OVERLAP_MINS,
            )?;
            Some(FollowSettings {
                every: Duration::from_secs(every * 60),
                overlap: Duration::from_secs(overlap * 60),
            })
        } else {
            None
        };
        Ok((from_ms, to_ms, follow))
    }
}
