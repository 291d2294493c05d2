//! The command line, the environment and the TOML config file, merged (flags
//! win over environment, environment over file) and validated once into the
//! settings each command runs with. Every error names the setting and the fix.
//!
//! Options come in groups ([`shared`] for those several commands take, one
//! module per command for the rest); a group is one struct whose fields are
//! both the flags and the config file's keys ([`file`]). Defaults are
//! written once, in [`defaults`]; the checks settings share are in
//! [`validate`]. Adding an option is one field in its group and one line in
//! the group's `validate`.

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;

mod backfill;
pub mod defaults;
pub mod file;
mod lambda;
mod read;
mod run;
mod seal;
mod shared;
pub mod validate;

pub use backfill::{
    BackfillArgs, BackfillConfig, FollowSettings, PrismaApiArgs, RangeArgs, TenantFileEntry,
    TenantSource,
};
pub use lambda::{name_env, LambdaArgs, LambdaConfig, PRECOMPILED_FILE};
pub use read::{
    QueryArgs, QueryConfig, QueryFormat, ReadArgs, ReadConfig, RecordFilters, TimeRange,
    VerifyArgs, VerifyConfig, VerifyFormat,
};
pub use run::{MetricsArgs, QueueArgs, QueueSelection, RouteArgs, RouteConfig, RunArgs, RunConfig};
pub use seal::{
    DigestCheck, DigestCheckArgs, DigestLocationArgs, SealArgs, SealCommandArgs, SealCommandConfig,
};
pub use shared::{
    parse_utc_offset, BucketArgs, BucketConfig, ConcurrencyArgs, LayoutArgs, ObjectArgs,
    RoutingArgs, RoutingConfig, SandboxArgs, StateArgs,
};
pub use validate::settings_error_message;

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
    /// Write the signed digest of every closed period of every tenant's
    /// chain (and the quarantine's) up to now, idempotently: for an
    /// operator, a cron job, or after `backfill`. `run`, `lambda` and
    /// `backfill` seal by themselves when given a digest key.
    ///
    /// Example: audit-archiver seal --bucket acme-audit-archive --digest-kms-key-id alias/audit-digest
    Seal(Box<SealCommandArgs>),
    /// Print a shell completion script for audit-archiver on stdout.
    ///
    /// Example: audit-archiver completions bash > ~/.local/share/bash-completion/completions/audit-archiver
    Completions(CompletionsArgs),
}

/// `audit-archiver completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `--time-source` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeSourceArg {
    /// ApproximateFirstReceiveTimestamp (the reference layout).
    #[default]
    FirstReceive,
    /// SentTimestamp.
    Sent,
    /// The audit record's `timestamp` field (earliest, for an array body).
    Event,
}

pub use crate::observe::logging::LogFormat;

#[cfg(test)]
mod tests;
