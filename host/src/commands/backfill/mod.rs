//! `audit-archiver backfill`: reads the audit records the Prisma Cloud API
//! still holds, one day (in the key offset) at a time, and archives each
//! record through the same component and delivery rules as `run`; checkpoints
//! every completed window in the bucket so a rerun resumes; with `--follow`
//! keeps polling the most recent records until SIGINT/SIGTERM.
//!
//! A record has no id of its own: its message id is `api-` + the hex SHA-256
//! of its canonical JSON (keys sorted, no whitespace), so the same record
//! always gets the same key and a rerun stores nothing twice. Its body is
//! stored byte for byte as the API returned it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_archiver_transform::{Message, TimeSource};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{load_component, open_sink, CommandError, Exit};
use crate::config::{BackfillConfig, FollowSettings, TenantSource};
use crate::observe::metrics::Counters;
use crate::route::{component_input, Routed};
use crate::route::{RouterComponent, RouterInstance};
use crate::shutdown::stopped;
use crate::source::prisma::{ApiCounters, ApiError, PrismaClient};
use crate::source::ReceivedMessage;
use crate::store::s3::S3Archive;
use crate::store::{Origin, StoreSettings, StoreStage};

mod tenant;
mod windows;

use tenant::TenantRun;
pub use windows::{api_message_id, day_windows, Window};
use windows::{checkpoint_key, checkpoint_prefix, covered, parse_checkpoints};

/// Where records come from, in their objects' `source` metadata.
const SOURCE: &str = "prisma-api";

/// What `backfill` prints on stdout when it ends.
#[derive(Debug, Default, Serialize)]
struct BackfillSummary {
    /// Windows of the range (all tenants), follow polls included.
    windows: u64,
    /// Windows skipped because a checkpoint says they are done.
    windows_skipped: u64,
    /// Windows not completed (not checkpointed): rerun to finish them.
    windows_incomplete: u64,
    /// Records returned by the API.
    records: u64,
    /// Objects created.
    stored: u64,
    /// Records found already archived.
    already_present: u64,
    /// Records stored under their alternate key.
    collisions: u64,
    /// Records stored under the quarantine prefix.
    quarantined: u64,
    /// Records not archived.
    failed: u64,
    /// Prisma Cloud API requests sent.
    requests: u64,
    /// API responses 429.
    throttled: u64,
    /// Retried API requests and S3 stores.
    retries: u64,
    /// What sealing did, when a digest key is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed: Option<crate::seal::Sealed>,
}

/// Progress shared by the tenants, for the progress line and the summary.
#[derive(Debug, Default)]
struct Progress {
    windows_total: AtomicU64,
    windows_done: AtomicU64,
    windows_skipped: AtomicU64,
    windows_incomplete: AtomicU64,
    records: AtomicU64,
}

/// Everything the tenant tasks share.
struct Shared {
    archive: S3Archive,
    component: RouterComponent,
    counters: Counters,
    progress: Progress,
    store: StoreSettings,
    concurrency: usize,
    state_prefix: String,
    /// A log line per window (when stderr is not a terminal).
    log_windows: bool,
}

/// Runs `backfill`.
pub async fn backfill(config: BackfillConfig) -> Result<Exit, CommandError> {
    let component = load_component(&config.routing)?;
    let (clients, mut archive) = open_sink(&config.aws, &config.bucket, &config.objects).await?;
    let sealer = match &config.seal {
        Some(seal) => Some(super::open_sealer(&clients, &mut archive, seal)?),
        None => None,
    };

    // Log in to every tenant before anything is written: a refused key is a
    // start-up error (exit 2), an unreachable API a failure (exit 1).
    let api_counters = Arc::new(ApiCounters::default());
    let mut sources = Vec::new();
    for tenant in &config.tenants {
        let client = PrismaClient::new(
            &tenant.api_url,
            tenant.credentials.clone(),
            config.api,
            api_counters.clone(),
        )
        .map_err(|e| CommandError::Startup(format!("cannot set up TLS: {e}")))?;
        match client.login().await {
            Ok(()) => {}
            Err(error @ ApiError::LoginRefused { .. }) => {
                return Err(CommandError::Startup(format!(
                    "tenant {}: {error}",
                    tenant.tenant
                )))
            }
            Err(error) => {
                return Err(CommandError::Runtime(anyhow::anyhow!(
                    "tenant {}: cannot log in to Prisma Cloud: {error}",
                    tenant.tenant
                )))
            }
        }
        sources.push((tenant.clone(), client));
    }

    let to_ms = config
        .to_ms
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let windows = day_windows(
        config.from_ms,
        to_ms,
        config.routing.settings.utc_offset_minutes,
    );
    let terminal = std::io::stderr().is_terminal();
    let shared = Arc::new(Shared {
        archive,
        component,
        counters: Counters::default(),
        progress: Progress::default(),
        store: config.store.clone(),
        concurrency: config.concurrency,
        state_prefix: config.state_prefix.clone(),
        log_windows: !terminal,
    });
    shared
        .progress
        .windows_total
        .store((windows.len() * sources.len()) as u64, Ordering::Relaxed);
    tracing::info!(
        bucket = %config.bucket,
        tenants = ?config.tenants.iter().map(|t| t.tenant.as_str()).collect::<Vec<_>>(),
        from_ms = config.from_ms,
        to_ms,
        windows = windows.len(),
        follow = config.follow.is_some(),
        "backfill started"
    );

    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(super::stop_on_signal(
        stop,
        "stopping: no new requests; storing the records in hand (signal again to exit now)",
        "second signal: exiting now; the current windows are read again next time",
    ));
    let started = Instant::now();
    let progress_line = terminal.then(|| tokio::spawn(show_progress(shared.clone(), started)));

    let sealing = sealer.map(crate::seal::Sealing::start);
    let mut tasks = JoinSet::new();
    for (source, client) in sources {
        let task = TenantRun {
            shared: shared.clone(),
            source,
            client,
            shutdown: shutdown.clone(),
        };
        let windows = windows.clone();
        let follow = config.follow;
        tasks.spawn(async move { task.run(windows, to_ms, follow).await });
    }
    let mut failed_tenants = 0;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(true) => {}
            Ok(false) => failed_tenants += 1,
            Err(panic) => {
                tracing::error!(error = %panic, "a tenant task panicked");
                failed_tenants += 1;
            }
        }
    }
    if let Some(line) = progress_line {
        line.abort();
        eprintln!();
    }

    // Seal what is closed; later periods are sealed by `run`, `seal` or
    // the next backfill.
    let sealed = match sealing {
        Some(sealing) => Some(sealing.finish().await),
        None => None,
    };
    let counters = shared.counters.snapshot();
    let progress = &shared.progress;
    let summary = BackfillSummary {
        windows: progress.windows_total.load(Ordering::Relaxed),
        windows_skipped: progress.windows_skipped.load(Ordering::Relaxed),
        windows_incomplete: progress.windows_incomplete.load(Ordering::Relaxed),
        records: progress.records.load(Ordering::Relaxed),
        stored: counters.stored,
        already_present: counters.already_present,
        collisions: counters.collisions,
        quarantined: counters.quarantined,
        failed: counters.failed,
        requests: api_counters.requests.load(Ordering::Relaxed),
        throttled: api_counters.throttled.load(Ordering::Relaxed),
        retries: api_counters.retries.load(Ordering::Relaxed) + counters.retries,
        sealed,
    };
    tracing::info!(
        records = summary.records,
        stored = summary.stored,
        already_present = summary.already_present,
        windows_incomplete = summary.windows_incomplete,
        elapsed_secs = started.elapsed().as_secs(),
        "backfill finished"
    );
    println!(
        "{}",
        serde_json::to_string(&summary).expect("the summary serializes")
    );
    if failed_tenants > 0 || summary.windows_incomplete > 0 || summary.failed > 0 {
        tracing::error!(
            windows_incomplete = summary.windows_incomplete,
            failed = summary.failed,
            "backfill incomplete: {} window(s) not completed; run the same command again to finish them",
            summary.windows_incomplete
        );
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// A progress line on a terminal: windows, records, rate and ETA.
async fn show_progress(shared: Arc<Shared>, started: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        ticker.tick().await;
        let progress = &shared.progress;
        let done = progress.windows_done.load(Ordering::Relaxed);
        let total = progress.windows_total.load(Ordering::Relaxed);
        let records = progress.records.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        let rate = records as f64 / elapsed;
        let eta = if done > 0 && total > done {
            let secs = elapsed / done as f64 * (total - done) as f64;
            format!("{}m{:02}s", secs as u64 / 60, secs as u64 % 60)
        } else {
            "-".to_string()
        };
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r\x1b[2Kbackfill: {done}/{total} windows, {records} records, {rate:.0} records/s, ETA {eta}"
        );
        let _ = stderr.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::windows::DAY_MS;
    use super::*;

    #[test]
    fn the_id_ignores_spacing_and_key_order() {
        let a = api_message_id(r#"{"user":"a","timestamp":1,"x":{"b":1,"a":2}}"#).unwrap();
        let b = api_message_id(r#"{ "timestamp": 1, "x": {"a":2, "b":1}, "user": "a" }"#).unwrap();
        let c = api_message_id(r#"{"user":"b","timestamp":1,"x":{"b":1,"a":2}}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("api-") && a.len() == 4 + 64, "{a}");
    }

    #[test]
    fn windows_are_whole_days_of_the_offset() {
        // 2026-08-01T00:00+09:00 is 2026-07-31T15:00Z.
        let midnight = 1_785_510_000_000;
        let windows = day_windows(midnight - 3_600_000, midnight + DAY_MS + 5, 540);
        assert_eq!(
            windows,
            vec![
                Window {
                    start_ms: midnight - 3_600_000,
                    end_ms: midnight
                },
                Window {
                    start_ms: midnight,
                    end_ms: midnight + DAY_MS
                },
                Window {
                    start_ms: midnight + DAY_MS,
                    end_ms: midnight + DAY_MS + 5
                },
            ]
        );
        assert!(day_windows(5, 5, 540).is_empty());
    }

    #[test]
    fn checkpoints_round_trip_and_cover() {
        let window = Window {
            start_ms: 100,
            end_ms: 200,
        };
        let key = checkpoint_key("_state/", "acme", window);
        assert_eq!(key, "_state/backfill/acme/100-200.json");
        let prefix = checkpoint_prefix("_state/", "acme");
        let done = parse_checkpoints(&prefix, &[key, "_state/backfill/acme/junk".into()]);
        assert_eq!(done, vec![window]);
        assert!(covered(
            &done,
            Window {
                start_ms: 120,
                end_ms: 200
            }
        ));
        assert!(!covered(
            &done,
            Window {
                start_ms: 120,
                end_ms: 201
            }
        ));
    }
}
