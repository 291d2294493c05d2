//! The settings path as a user meets it: flags, environment and file
//! parsed by clap and validated, for every command.

use std::time::Duration;

use audit_archiver_transform::TimeSource;
use clap::{CommandFactory, Parser};

use super::*;
use crate::source::prisma::Secret;

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

fn lambda_args(args: &[&str]) -> Result<LambdaConfig, ConfigError> {
    let mut argv = vec!["audit-archiver", "lambda"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv).expect("flags parse").command {
        Command::Lambda(args) => args.validate(),
        _ => unreachable!(),
    }
}

#[test]
fn lambda_layers_flags_then_file_then_its_defaults() {
    let dir = std::env::temp_dir().join(format!("aa-lambda-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    let cache = dir.join("cache");
    std::fs::write(
        &path,
        format!(
            "bucket = \"archive\"\nlog_format = \"text\"\ncache_dir = \"{}\"\n",
            cache.display()
        ),
    )
    .unwrap();
    let path_arg = path.to_str().unwrap();
    // The file's values are taken, as by every other command.
    let config = lambda_args(&["--config", path_arg]).unwrap();
    assert_eq!(config.routing.log_format, LogFormat::Text);
    assert_eq!(config.routing.cache_dir.as_deref(), Some(cache.as_path()));
    // Flags (and so the environment, which clap reads into the same
    // values) win over the file.
    let config = lambda_args(&[
        "--config",
        path_arg,
        "--log-format",
        "json",
        "--cache-dir",
        "/elsewhere",
    ])
    .unwrap();
    assert_eq!(config.routing.log_format, LogFormat::Json);
    assert_eq!(
        config.routing.cache_dir.as_deref(),
        Some(std::path::Path::new("/elsewhere"))
    );
    let config = lambda_args(&["--config", path_arg, "--no-cache"]).unwrap();
    assert!(config.routing.cache_dir.is_none());
    // A component set in the file excludes the precompiled artifact as
    // one given by flag does.
    std::fs::write(
        &path,
        "bucket = \"archive\"\ncomponent = \"/router.wasm\"\n",
    )
    .unwrap();
    let error = lambda_args(&["--config", path_arg, "--precompiled", "/router.cwasm"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("--component"), "{error}");
    // Set nowhere: a function's defaults, JSON logs and no disk cache.
    let config = lambda_args(&["--bucket", "archive"]).unwrap();
    assert_eq!(config.routing.log_format, LogFormat::Json);
    assert!(config.routing.cache_dir.is_none());
    let _ = std::fs::remove_dir_all(&dir);
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
        (
            &[
                "--bucket",
                "archive",
                "--queue-prefix",
                "acme-",
                "--discovery-interval-secs",
                "86401",
            ],
            "invalid --discovery-interval-secs 86401: use 0 to 86400, e.g. 300",
        ),
        (
            &[
                "--bucket",
                "archive",
                "--queue",
                "q",
                "--discovery-interval-secs",
                "60",
            ],
            "--discovery-interval-secs needs --queue-prefix",
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
    assert_eq!(config.store.quarantine_prefix, "_quarantine/");
    assert_eq!(config.wait_time_secs, 20);
    let drain = run_args(&["--bucket", "archive", "--queue-prefix", "acme-", "--drain"]).unwrap();
    assert_eq!(drain.wait_time_secs, 2);
    assert_eq!(drain.queues, QueueSelection::Prefix("acme-".into()));
    assert_eq!(config.discovery_interval, None, "--queue lists nothing");
    assert_eq!(drain.discovery_interval, None, "a drain lists once");
}

#[test]
fn queue_prefix_lists_again_every_discovery_interval() {
    let daemon = run_args(&["--bucket", "archive", "--queue-prefix", "acme-"]).unwrap();
    assert_eq!(
        daemon.discovery_interval,
        Some(Duration::from_secs(defaults::DISCOVERY_INTERVAL_SECS))
    );
    assert_eq!(defaults::DISCOVERY_INTERVAL_SECS, 300);
    let quick = run_args(&[
        "--bucket",
        "archive",
        "--queue-prefix",
        "acme-",
        "--discovery-interval-secs",
        "2",
    ])
    .unwrap();
    assert_eq!(quick.discovery_interval, Some(Duration::from_secs(2)));
    let once = run_args(&[
        "--bucket",
        "archive",
        "--queue-prefix",
        "acme-",
        "--discovery-interval-secs",
        "0",
    ])
    .unwrap();
    assert_eq!(once.discovery_interval, None, "0 lists only at start-up");
    let dir = std::env::temp_dir().join(format!("aa-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        "bucket = \"archive\"\nqueue_prefix = \"acme-\"\ndiscovery_interval_secs = 60\n",
    )
    .unwrap();
    let path_arg = path.to_str().unwrap();
    let file = run_args(&["--config", path_arg]).unwrap();
    assert_eq!(file.discovery_interval, Some(Duration::from_secs(60)));
    let flag = run_args(&["--config", path_arg, "--discovery-interval-secs", "5"]).unwrap();
    assert_eq!(flag.discovery_interval, Some(Duration::from_secs(5)));
    let _ = std::fs::remove_dir_all(&dir);
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

#[test]
fn help_quotes_the_defaults_the_code_uses() {
    let cli = Cli::command();
    let help = |command: &str, flag: &str| {
        let sub = cli.find_subcommand(command).expect("a command");
        let arg = sub
            .get_arguments()
            .find(|arg| arg.get_long() == Some(flag))
            .unwrap_or_else(|| panic!("{command} --{flag}"));
        arg.get_help().map(ToString::to_string).unwrap_or_default()
    };
    let cases = [
        ("run", "concurrency", defaults::CONCURRENCY.to_string()),
        (
            "run",
            "quarantine-prefix",
            defaults::QUARANTINE_PREFIX.into(),
        ),
        (
            "run",
            "visibility-timeout-secs",
            defaults::VISIBILITY_TIMEOUT_SECS.to_string(),
        ),
        ("run", "max-attempts", defaults::MAX_ATTEMPTS.to_string()),
        (
            "run",
            "discovery-interval-secs",
            defaults::DISCOVERY_INTERVAL_SECS.to_string(),
        ),
        ("run", "utc-offset", "+09:00".into()),
        ("run", "key-template", defaults::KEY_TEMPLATE.into()),
        ("run", "time-source", "first-receive".into()),
        ("run", "log-format", "text".into()),
        (
            "run",
            "component-timeout-ms",
            defaults::COMPONENT_TIMEOUT_MS.to_string(),
        ),
        (
            "lambda",
            "deadline-margin-ms",
            defaults::DEADLINE_MARGIN_MS.to_string(),
        ),
        ("backfill", "state-prefix", defaults::STATE_PREFIX.into()),
        ("backfill", "page-size", defaults::PAGE_SIZE.to_string()),
        ("verify", "concurrency", defaults::CONCURRENCY.to_string()),
    ];
    for (command, flag, default) in cases {
        let text = help(command, flag);
        assert!(
            text.ends_with(&format!("[default: {default}]")),
            "{command} --{flag}: {text}"
        );
    }
    let wait = help("run", "wait-time-secs");
    assert!(wait.ends_with("[default: 20; 2 with --drain]"), "{wait}");
}
