//! `run`'s options: the shared groups, which queues to archive and how to
//! poll them, and the metrics endpoint; validated into [`RunConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::defaults::{self, with_default};
use super::file::{option_group, ConfigFile};
use super::seal::{DigestLocationArgs, SealArgs};
use super::shared::{
    BucketArgs, ConcurrencyArgs, LayoutArgs, ObjectArgs, RoutingArgs, RoutingConfig, SandboxArgs,
    StateArgs,
};
use super::validate::check_range;
use super::{bad, ConfigError};
use crate::aws::AwsSettings;
use crate::source::sqs::MAX_BATCH;
use crate::store::s3::ObjectOptions;
use crate::store::StoreSettings;

/// `run` options.
#[derive(Debug, Args)]
#[allow(missing_docs)]
pub struct RunArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub bucket: BucketArgs,
    #[command(flatten)]
    pub queues: QueueArgs,
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
    #[command(flatten)]
    pub objects: ObjectArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub digest: DigestLocationArgs,
    #[command(flatten)]
    pub seal: SealArgs,
}

option_group! {
    /// Which queues `run` archives and how it polls them.
    pub struct QueueArgs {
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
        /// ListQueues at start-up, and again every --discovery-interval-secs).
        /// Example: --queue-prefix acme-
        #[arg(long, env = "AUDIT_ARCHIVER_QUEUE_PREFIX", value_name = "PREFIX")]
        pub queue_prefix: Option<String>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_DISCOVERY_INTERVAL_SECS",
            value_name = "SECS",
            help = with_default!(
                "With --queue-prefix, list the queues again every SECS seconds: a new queue \
                 is polled from the next listing, a deleted one dropped once its messages in \
                 hand are settled; 0 to 86400, 0 lists only at start-up.",
                defaults::DISCOVERY_INTERVAL_SECS
            )
        )]
        pub discovery_interval_secs: Option<u64>,

        /// Exit 0 once every queue is empty and all work is settled (a batch
        /// job); exit 1 if any message could not be archived.
        #[arg(long, env = "AUDIT_ARCHIVER_DRAIN")]
        pub drain: bool,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_VISIBILITY_TIMEOUT_SECS",
            value_name = "SECS",
            help = with_default!(
                "How long a received message stays hidden from other consumers; work that \
                 takes longer extends it.",
                defaults::VISIBILITY_TIMEOUT_SECS
            )
        )]
        pub visibility_timeout_secs: Option<u32>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_WAIT_TIME_SECS",
            value_name = "SECS",
            help = format!(
                "Long-poll wait of each receive, 0 to 20. [default: {}; {} with --drain]",
                defaults::WAIT_TIME_SECS,
                defaults::DRAIN_WAIT_TIME_SECS
            )
        )]
        pub wait_time_secs: Option<u32>,
    }
}

option_group! {
    /// How `run` reports its counters.
    pub struct MetricsArgs {
        /// Serve Prometheus metrics at http://ADDR/metrics. Example: 127.0.0.1:9464
        #[arg(long, env = "AUDIT_ARCHIVER_METRICS_ADDR", value_name = "ADDR")]
        pub metrics_addr: Option<SocketAddr>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_STATS_INTERVAL_SECS",
            value_name = "SECS",
            help = with_default!(
                "Log the counters every SECS seconds; 0 turns it off.",
                defaults::STATS_INTERVAL_SECS
            )
        )]
        pub stats_interval_secs: Option<u64>,
    }
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
    /// Messages stored at once, over all queues (`--concurrency`).
    pub concurrency: usize,
    /// Messages asked for per receive: `--concurrency`, at most SQS's
    /// [`MAX_BATCH`]. A worker holds a store permit for each message of a
    /// receive before making it, so a batch never exceeds what may be
    /// stored at once (docs/commands/run.md).
    pub receive_batch: usize,
    /// Store-step settings.
    pub store: StoreSettings,
    /// Visibility timeout of received messages.
    pub visibility_timeout_secs: u32,
    /// Long-poll wait.
    pub wait_time_secs: u32,
    /// With `--queue-prefix`, how often the queues are listed again; `None`
    /// lists them only at start-up (`--discovery-interval-secs 0`, `--queue`,
    /// or `--drain`, which archives the queues found at start-up).
    pub discovery_interval: Option<Duration>,
    /// Per-object settings.
    pub objects: ObjectOptions,
    /// Prometheus endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// Period of the counters' log line.
    pub stats_interval: Option<Duration>,
    /// Sealing, when a digest key is given.
    pub seal: Option<crate::seal::SealConfig>,
}

impl RunArgs {
    /// Merges and validates `run` options.
    pub fn validate(self) -> Result<RunConfig, ConfigError> {
        let file = ConfigFile::read(self.routing.config.as_deref())?;
        let limits = file.under(self.sandbox)?.validate()?;
        let routing = file
            .under(self.routing)?
            .validate(file.under(self.layout)?, limits)?;
        let bucket = file.under(self.bucket)?.validate()?;
        let queues = file.under(self.queues)?;
        let drain = queues.drain;
        let (selection, visibility_timeout_secs, wait_time_secs, discovery_interval) =
            queues.validate()?;
        let concurrency = file.under(self.concurrency)?.validate()?;
        let objects = file
            .under(self.objects)?
            .validate(bucket.expected_bucket_owner)?;
        let metrics = file.under(self.metrics)?;
        let state_prefix = file.under(self.state)?.validate()?;
        let seal = file
            .under(self.seal)?
            .validate(file.under(self.digest)?, &state_prefix)?;
        let stats = metrics
            .stats_interval_secs
            .unwrap_or(defaults::STATS_INTERVAL_SECS);
        Ok(RunConfig {
            routing,
            bucket: bucket.bucket,
            queues: selection,
            aws: bucket.aws,
            drain,
            concurrency,
            receive_batch: concurrency.min(MAX_BATCH),
            store: StoreSettings::with_quarantine_prefix(bucket.quarantine_prefix),
            visibility_timeout_secs,
            wait_time_secs,
            discovery_interval,
            objects,
            metrics_addr: metrics.metrics_addr,
            stats_interval: (stats > 0).then(|| Duration::from_secs(stats)),
            seal,
        })
    }
}

impl QueueArgs {
    /// The queues, the visibility timeout, the long-poll wait and how often
    /// the queues are listed again.
    #[allow(clippy::type_complexity)]
    fn validate(self) -> Result<(QueueSelection, u32, u32, Option<Duration>), ConfigError> {
        let listed: Vec<String> = self
            .queues
            .into_iter()
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty())
            .collect();
        let selection = match (listed.is_empty(), self.queue_prefix) {
            (false, None) => QueueSelection::Listed(listed),
            (true, Some(prefix)) if !prefix.is_empty() => QueueSelection::Prefix(prefix),
            (true, _) => {
                return Err(bad(
                    "no queues: pass --queue URL|NAME (repeatable) or --queue-prefix PREFIX, e.g. --queue-prefix acme-",
                ))
            }
            (false, Some(_)) => {
                return Err(bad(
                    "--queue and --queue-prefix exclude each other: pass one of them",
                ))
            }
        };
        let visibility = self
            .visibility_timeout_secs
            .unwrap_or(defaults::VISIBILITY_TIMEOUT_SECS);
        check_range(
            "--visibility-timeout-secs",
            visibility,
            10..=43_200,
            defaults::VISIBILITY_TIMEOUT_SECS,
        )?;
        let wait = self.wait_time_secs.unwrap_or(if self.drain {
            defaults::DRAIN_WAIT_TIME_SECS
        } else {
            defaults::WAIT_TIME_SECS
        });
        if wait > 20 {
            return Err(bad(format!("invalid --wait-time-secs {wait}: use 0 to 20")));
        }
        let interval = self
            .discovery_interval_secs
            .unwrap_or(defaults::DISCOVERY_INTERVAL_SECS);
        check_range(
            "--discovery-interval-secs",
            interval,
            0..=86_400,
            defaults::DISCOVERY_INTERVAL_SECS,
        )?;
        let discovery_interval = match &selection {
            QueueSelection::Prefix(_) if interval > 0 && !self.drain => {
                Some(Duration::from_secs(interval))
            }
            QueueSelection::Prefix(_) => None,
            QueueSelection::Listed(_) if self.discovery_interval_secs.is_some() => {
                return Err(bad(
                    "--discovery-interval-secs needs --queue-prefix: with --queue the host polls \
                     the queues named, and lists none",
                ))
            }
            QueueSelection::Listed(_) => None,
        };
        Ok((selection, visibility, wait, discovery_interval))
    }
}

/// `route` options.
#[derive(Debug, Args)]
#[allow(missing_docs)]
pub struct RouteArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    pub layout: LayoutArgs,

    /// The event to route: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    pub event: std::path::PathBuf,
}

/// Validated `route` settings.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Routing.
    pub routing: RoutingConfig,
    /// The input file, `None` for stdin.
    pub event: Option<std::path::PathBuf>,
}

impl RouteArgs {
    /// Merges and validates `route` options; the sandbox bounds come from
    /// the file only (`route` has no flags for them).
    pub fn validate(self) -> Result<RouteConfig, ConfigError> {
        let file = ConfigFile::read(self.routing.config.as_deref())?;
        let limits = file.section::<SandboxArgs>()?.validate()?;
        let routing = file
            .under(self.routing)?
            .validate(file.under(self.layout)?, limits)?;
        let event = (self.event.as_os_str() != "-").then_some(self.event);
        Ok(RouteConfig { routing, event })
    }
}
