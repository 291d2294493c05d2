//! The options of the read commands, `verify` and `query`: the bucket, AWS
//! and layout options they share with `run` (same flags, same environment
//! variables, same config file), the date range, and their own filters,
//! validated once into [`VerifyConfig`] and [`QueryConfig`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::file::ConfigFile;
use super::seal::{DigestCheck, DigestCheckArgs, DigestLocationArgs};
use super::shared::{
    BucketArgs, ConcurrencyArgs, LayoutArgs, StateArgs, READ_CONCURRENCY_ENV_ALIAS,
};
use super::validate::{check_tenant, settings_error_message};
use super::{bad, ConfigError};
use crate::aws::AwsSettings;
use crate::read::layout::{Day, Layout};

/// Options `verify` and `query` share with `run` (same flags, environment
/// variables and config file keys), and how many objects they read at once
/// (`--concurrency`, as `run`'s; their former variable
/// `AUDIT_ARCHIVER_READ_CONCURRENCY` is still read).
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// TOML file with any option, named in snake_case (the same file `run`
    /// reads; options the command does not use are ignored).
    #[arg(long, env = "AUDIT_ARCHIVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub bucket: BucketArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub layout: LayoutArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub concurrency: ConcurrencyArgs,
}

/// `verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub read: ReadArgs,

    /// A tenant to verify; repeatable. [default: every top-level prefix but
    /// the quarantine prefix]
    #[arg(long = "tenant", value_name = "TENANT", value_delimiter = ',')]
    pub tenants: Vec<String>,

    /// First day (YYYY-MM-DD, a whole day in --utc-offset) or instant
    /// (RFC 3339). [default: the tenant's first object]
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,

    /// Last day or instant, inclusive. [default: the tenant's last object]
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,

    /// Output: a readable report, or one JSON document. [default: table]
    #[arg(long, value_enum)]
    pub format: Option<VerifyFormat>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub digest: DigestLocationArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub digest_check: DigestCheckArgs,
}

/// `query` options.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub read: ReadArgs,

    /// The tenant whose records to read.
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,

    /// First day (YYYY-MM-DD, a whole day in --utc-offset) or instant (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub from: String,

    /// Last day or instant, inclusive.
    #[arg(long, value_name = "DATE")]
    pub to: String,

    /// Only records whose `user` is exactly this.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Only records whose `actionType` is exactly this (CREATE, READ, UPDATE,
    /// DELETE, LOGIN, ...).
    #[arg(long, value_name = "TYPE")]
    pub action_type: Option<String>,

    /// Only records whose `result` is exactly this (Successful, Failed, ...).
    #[arg(long, value_name = "RESULT")]
    pub result: Option<String>,

    /// Only records whose `ipAddress` is exactly this.
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<String>,

    /// Only records whose `resourceType` is exactly this.
    #[arg(long, value_name = "TYPE")]
    pub resource_type: Option<String>,

    /// Only records with a text field containing TEXT (case-sensitive).
    #[arg(long, value_name = "TEXT")]
    pub contains: Option<String>,

    /// Output: one JSON object per line, CSV with a header, or aligned
    /// columns. [default: ndjson]
    #[arg(long, value_enum)]
    pub format: Option<QueryFormat>,
}

/// `verify --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum VerifyFormat {
    /// A readable report.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

/// `query --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum QueryFormat {
    /// One JSON object per line: key, archived time, record.
    #[default]
    Ndjson,
    /// CSV with a header line.
    Csv,
    /// Aligned columns for a terminal.
    Table,
}

/// Validated settings both read commands use.
#[derive(Debug, Clone)]
pub struct ReadConfig {
    /// The bucket.
    pub bucket: String,
    /// Endpoint, region, retries.
    pub aws: AwsSettings,
    /// `--expected-bucket-owner`.
    pub expected_bucket_owner: Option<String>,
    /// Key template, offset, quarantine prefix.
    pub layout: Layout,
    /// Objects read at once.
    pub concurrency: usize,
    /// `backfill`'s checkpoints: not part of the archive.
    pub state_prefix: String,
}

/// An inclusive range of archive times, epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First millisecond.
    pub from_ms: i64,
    /// Last millisecond.
    pub to_ms: i64,
}

impl TimeRange {
    /// Whether `ms` is inside.
    pub fn contains(&self, ms: i64) -> bool {
        (self.from_ms..=self.to_ms).contains(&ms)
    }

    /// The local days it touches.
    pub fn days(&self, offset_minutes: i16) -> (Day, Day) {
        (
            Day::of_ms(self.from_ms, offset_minutes),
            Day::of_ms(self.to_ms, offset_minutes),
        )
    }
}

/// Validated `verify` settings.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// Shared settings.
    pub read: ReadConfig,
    /// `--tenant` values; empty means every tenant.
    pub tenants: Vec<String>,
    /// `--from`, epoch ms.
    pub from_ms: Option<i64>,
    /// `--to`, epoch ms.
    pub to_ms: Option<i64>,
    /// Output format.
    pub format: VerifyFormat,
    /// What to prove of the signed digests.
    pub digests: DigestCheck,
}

/// Exact-match and substring filters of `query`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilters {
    /// `--user`.
    pub user: Option<String>,
    /// `--action-type`.
    pub action_type: Option<String>,
    /// `--result`.
    pub result: Option<String>,
    /// `--ip`.
    pub ip: Option<String>,
    /// `--resource-type`.
    pub resource_type: Option<String>,
    /// `--contains`.
    pub contains: Option<String>,
}

/// Validated `query` settings.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Shared settings.
    pub read: ReadConfig,
    /// The tenant.
    pub tenant: String,
    /// Archive times to read.
    pub range: TimeRange,
    /// Which records to print.
    pub filters: RecordFilters,
    /// Output format.
    pub format: QueryFormat,
}

impl ReadArgs {
    fn validate(self) -> Result<ReadConfig, ConfigError> {
        let file = ConfigFile::read(self.config.as_deref())?;
        let bucket = file.under(self.bucket)?.validate()?;
        let (key_template, utc_offset_minutes) = file.under(self.layout)?.validate()?;
        let state_prefix = file.under(self.state)?.validate()?;
        let layout = Layout::new(&key_template, utc_offset_minutes, bucket.quarantine_prefix)
            .map_err(|e| bad(settings_error_message(&e)))?;
        let concurrency = file
            .under(self.concurrency.or_env_alias(READ_CONCURRENCY_ENV_ALIAS)?)?
            .validate()?;
        Ok(ReadConfig {
            bucket: bucket.bucket,
            aws: bucket.aws,
            expected_bucket_owner: bucket.expected_bucket_owner,
            layout,
            concurrency,
            state_prefix,
        })
    }
}

/// Parses a DATE argument: `YYYY-MM-DD` is the whole day at `offset_minutes`
/// (its first millisecond, or its last with `end`); anything else must be
/// an RFC 3339 timestamp.
pub fn parse_date(
    flag: &str,
    text: &str,
    offset_minutes: i16,
    end: bool,
) -> Result<i64, ConfigError> {
    let text = text.trim();
    let invalid = |why: &str| {
        bad(format!(
            "invalid {flag} {text:?}: {why}; use a day such as 2025-06-27 (a whole day at --utc-offset) \
             or an RFC 3339 time such as 2025-06-27T11:32:20+09:00"
        ))
    };
    let ms = if text.len() == 10 {
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|e| invalid(&e.to_string()))?;
        let day = Day::from_ymd(
            i64::from(chrono::Datelike::year(&date)),
            chrono::Datelike::month(&date),
            chrono::Datelike::day(&date),
        );
        if end {
            day.end_ms(offset_minutes)
        } else {
            day.start_ms(offset_minutes)
        }
    } else {
        chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| invalid(&e.to_string()))?
            .timestamp_millis()
    };
    if !(0..253_402_300_800_000).contains(&ms) {
        return Err(invalid("it is outside 1970-01-01 to 9999-12-31"));
    }
    Ok(ms)
}

fn check_order(from_ms: i64, to_ms: i64, from: &str, to: &str) -> Result<(), ConfigError> {
    if from_ms > to_ms {
        return Err(bad(format!(
            "invalid --from {from:?}: it is after --to {to:?}; both ends are inclusive, so --from must not be later"
        )));
    }
    Ok(())
}

impl VerifyArgs {
    /// Merges and validates `verify` options.
    pub fn validate(self) -> Result<VerifyConfig, ConfigError> {
        let file = ConfigFile::read(self.read.config.as_deref())?;
        let digests = file
            .under(self.digest_check)?
            .validate(file.under(self.digest)?)?;
        let read = self.read.validate()?;
        let offset = read.layout.utc_offset_minutes();
        let from_ms = self
            .from
            .as_deref()
            .map(|text| parse_date("--from", text, offset, false))
            .transpose()?;
        let to_ms = self
            .to
            .as_deref()
            .map(|text| parse_date("--to", text, offset, true))
            .transpose()?;
        if let (Some(from_ms), Some(to_ms)) = (from_ms, to_ms) {
            check_order(
                from_ms,
                to_ms,
                self.from.as_deref().unwrap_or(""),
                self.to.as_deref().unwrap_or(""),
            )?;
        }
        let mut tenants: Vec<String> = self
            .tenants
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        for tenant in &tenants {
            check_tenant(tenant)?;
        }
        tenants.sort();
        tenants.dedup();
        Ok(VerifyConfig {
            read,
            tenants,
            from_ms,
            to_ms,
            format: self.format.unwrap_or_default(),
            digests,
        })
    }
}

impl QueryArgs {
    /// Merges and validates `query` options.
    pub fn validate(self) -> Result<QueryConfig, ConfigError> {
        let read = self.read.validate()?;
        let offset = read.layout.utc_offset_minutes();
        let tenant = self.tenant.trim().to_string();
        check_tenant(&tenant)?;
        let from_ms = parse_date("--from", &self.from, offset, false)?;
        let to_ms = parse_date("--to", &self.to, offset, true)?;
        check_order(from_ms, to_ms, &self.from, &self.to)?;
        let non_empty = |flag: &str, value: Option<String>| match value {
            Some(v) if v.is_empty() => Err(bad(format!(
                "invalid {flag} \"\": give a value, or leave the flag out"
            ))),
            other => Ok(other),
        };
        Ok(QueryConfig {
            read,
            tenant,
            range: TimeRange { from_ms, to_ms },
            filters: RecordFilters {
                user: non_empty("--user", self.user)?,
                action_type: non_empty("--action-type", self.action_type)?,
                result: non_empty("--result", self.result)?,
                ip: non_empty("--ip", self.ip)?,
                resource_type: non_empty("--resource-type", self.resource_type)?,
                contains: non_empty("--contains", self.contains)?,
            },
            format: self.format.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn verify(args: &[&str]) -> Result<VerifyConfig, ConfigError> {
        let mut argv = vec!["audit-archiver", "verify"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Verify(verify) => verify.validate(),
            _ => unreachable!(),
        }
    }

    fn query(args: &[&str]) -> Result<QueryConfig, ConfigError> {
        let mut argv = vec!["audit-archiver", "query"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Query(query) => query.validate(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn days_are_whole_days_in_the_offset_and_instants_are_exact() {
        // 2025-06-27 in JST starts at 2025-06-26T15:00Z.
        assert_eq!(
            parse_date("--from", "2025-06-27", 540, false).unwrap(),
            1_750_950_000_000
        );
        assert_eq!(
            parse_date("--to", "2025-06-27", 540, true).unwrap(),
            1_750_950_000_000 + 86_400_000 - 1
        );
        assert_eq!(
            parse_date("--from", "2025-06-27", 0, false).unwrap(),
            1_750_982_400_000
        );
        assert_eq!(
            parse_date("--from", "2025-06-27T11:32:20.913+09:00", 0, false).unwrap(),
            1_750_991_540_913
        );
        for text in [
            "2025-13-01",
            "2025-02-30",
            "27/06/2025",
            "yesterday",
            "2025-06-27T25:00:00Z",
            "1969-12-31",
        ] {
            let error = parse_date("--from", text, 540, false)
                .unwrap_err()
                .to_string();
            assert!(error.contains("--from"), "{text}: {error}");
        }
    }

    #[test]
    fn defaults_and_shared_options() {
        let config = verify(&["--bucket", "archive"]).unwrap();
        assert!(config.tenants.is_empty());
        assert_eq!((config.from_ms, config.to_ms), (None, None));
        assert_eq!(config.format, VerifyFormat::Table);
        assert_eq!(config.read.layout.utc_offset_minutes(), 540);
        assert_eq!(config.read.layout.quarantine_prefix(), "_quarantine/");
        assert_eq!(config.read.concurrency, 32);
        let config = query(&[
            "--bucket",
            "archive",
            "--tenant",
            "acme",
            "--from",
            "2025-06-27",
            "--to",
            "2025-06-27",
        ])
        .unwrap();
        assert_eq!(config.range.to_ms - config.range.from_ms, 86_400_000 - 1);
        assert_eq!(config.format, QueryFormat::Ndjson);
    }

    #[test]
    fn concurrency_is_runs_option_and_the_readers_former_variable_still_counts() {
        let dir = std::env::temp_dir().join(format!("aa-read-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "bucket = \"archive\"\nconcurrency = 8\n").unwrap();
        let path_arg = path.to_str().unwrap();
        // The file's `concurrency` is the same option as `run`'s.
        assert_eq!(verify(&["--config", path_arg]).unwrap().read.concurrency, 8);
        let config = query(&[
            "--config",
            path_arg,
            "--concurrency",
            "4",
            "--tenant",
            "acme",
            "--from",
            "2025-06-27",
            "--to",
            "2025-06-27",
        ])
        .unwrap();
        assert_eq!(config.read.concurrency, 4);
        // The range is `run`'s too.
        assert_eq!(
            verify(&["--bucket", "archive", "--concurrency", "1024"])
                .unwrap()
                .read
                .concurrency,
            1024
        );
        let _ = std::fs::remove_dir_all(&dir);

        // AUDIT_ARCHIVER_READ_CONCURRENCY counts when neither the flag nor
        // AUDIT_ARCHIVER_CONCURRENCY is given, and before the file.
        let alias = |given: Option<usize>, value: &str| {
            ConcurrencyArgs { concurrency: given }
                .or_alias(READ_CONCURRENCY_ENV_ALIAS, Some(value.into()))
                .map(|args| args.concurrency)
        };
        assert_eq!(alias(None, "16").unwrap(), Some(16));
        assert_eq!(alias(Some(4), "16").unwrap(), Some(4));
        assert_eq!(alias(None, "").unwrap(), None);
        for bad in ["many", "0", "1025"] {
            let error = alias(None, bad).unwrap_err().0;
            assert!(
                error.contains("--concurrency") && error.contains(READ_CONCURRENCY_ENV_ALIAS),
                "{error}"
            );
        }
    }

    #[test]
    fn invalid_values_name_their_flags() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--bucket"),
            (&["--bucket", "Bad_Bucket"], "--bucket"),
            (&["--bucket", "archive", "--from", "2025-6-x"], "--from"),
            (&["--bucket", "archive", "--to", "soon"], "--to"),
            (
                &[
                    "--bucket",
                    "archive",
                    "--from",
                    "2025-06-28",
                    "--to",
                    "2025-06-27",
                ],
                "--from",
            ),
            (&["--bucket", "archive", "--tenant", "a/b"], "--tenant"),
            (
                &["--bucket", "archive", "--key-template", "{tenant}/%Q"],
                "--key-template",
            ),
            (
                &["--bucket", "archive", "--utc-offset", "+15:00"],
                "--utc-offset",
            ),
            (
                &["--bucket", "archive", "--quarantine-prefix", "q"],
                "--quarantine-prefix",
            ),
            (
                &["--bucket", "archive", "--endpoint-url", "localhost"],
                "--endpoint-url",
            ),
            (
                &["--bucket", "archive", "--expected-bucket-owner", "1"],
                "--expected-bucket-owner",
            ),
            (
                &["--bucket", "archive", "--concurrency", "0"],
                "--concurrency",
            ),
        ];
        for (args, flag) in cases {
            let error = verify(args).unwrap_err().to_string();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
        let error = query(&[
            "--bucket",
            "archive",
            "--tenant",
            "acme",
            "--from",
            "2025-06-28",
            "--to",
            "2025-06-27T00:00:00+09:00",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("--from") && error.contains("--to"),
            "{error}"
        );
        let error = query(&[
            "--bucket",
            "archive",
            "--tenant",
            "acme",
            "--from",
            "2025-06-27",
            "--to",
            "2025-06-27",
            "--user",
            "",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("--user"), "{error}");
    }
}
