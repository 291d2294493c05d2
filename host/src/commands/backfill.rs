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

use audit_archiver_transform::Message;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{load_component, open_sink, CommandError, Exit};
use crate::config::{BackfillConfig, FollowSettings, TenantSource};
use crate::engine::{RouterComponent, RouterInstance};
use crate::metrics::Counters;
use crate::pipeline::{stopped, BatchRun, PipelineSettings, QueueRef, ReceivedMessage, Settlement};
use crate::prisma::{ApiCounters, ApiError, PrismaClient};
use crate::s3::S3Archive;

/// Where records come from, in their objects' `source` metadata.
const SOURCE: &str = "prisma-api";

/// One day, the window size.
const DAY_MS: i64 = 86_400_000;

/// The message id of an API record: `api-` + hex SHA-256 of its canonical
/// JSON (object keys sorted recursively, no whitespace), so the same record
/// gets the same id whatever spacing or key order the API used.
pub fn api_message_id(record: &str) -> Result<String, serde_json::Error> {
    // serde_json's map is a BTreeMap (no `preserve_order`): keys come out sorted.
    let value: serde_json::Value = serde_json::from_str(record)?;
    let canonical = serde_json::to_vec(&value)?;
    Ok(format!("api-{:x}", Sha256::digest(&canonical)))
}

/// A time window `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// Start, epoch ms, included.
    pub start_ms: i64,
    /// End, epoch ms, excluded.
    pub end_ms: i64,
}

/// `[from, to)` cut at every midnight of the offset.
pub fn day_windows(from_ms: i64, to_ms: i64, offset_minutes: i16) -> Vec<Window> {
    let offset = i64::from(offset_minutes) * 60_000;
    let mut windows = Vec::new();
    let mut start = from_ms;
    while start < to_ms {
        let next_midnight = ((start + offset).div_euclid(DAY_MS) + 1) * DAY_MS - offset;
        let end = next_midnight.min(to_ms);
        windows.push(Window {
            start_ms: start,
            end_ms: end,
        });
        start = end;
    }
    windows
}

/// The checkpoint key of a completed window.
fn checkpoint_key(state_prefix: &str, tenant: &str, window: Window) -> String {
    format!(
        "{}{}-{}.json",
        checkpoint_prefix(state_prefix, tenant),
        window.start_ms,
        window.end_ms
    )
}

fn checkpoint_prefix(state_prefix: &str, tenant: &str) -> String {
    format!("{state_prefix}backfill/{tenant}/")
}

/// The windows named by checkpoint keys under `prefix` (others are ignored).
fn parse_checkpoints(prefix: &str, keys: &[String]) -> Vec<Window> {
    keys.iter()
        .filter_map(|key| {
            let name = key.strip_prefix(prefix)?.strip_suffix(".json")?;
            let (start, end) = name.split_once('-')?;
            Some(Window {
                start_ms: start.parse().ok()?,
                end_ms: end.parse().ok()?,
            })
        })
        .collect()
}

/// Whether a completed window covers `window`.
fn covered(done: &[Window], window: Window) -> bool {
    done.iter()
        .any(|d| d.start_ms <= window.start_ms && d.end_ms >= window.end_ms)
}

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
    pipeline: PipelineSettings,
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
        pipeline: config.pipeline.clone(),
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

/// How one window ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowEnd {
    /// Every record archived (or already there, or quarantined).
    Complete,
    /// Some record not archived, or the command is stopping.
    Incomplete,
}

/// One tenant's backfill.
struct TenantRun {
    shared: Arc<Shared>,
    source: TenantSource,
    client: PrismaClient,
    shutdown: watch::Receiver<bool>,
}

impl TenantRun {
    /// Archives every window of the range, then follows if asked. Returns
    /// whether the API could be read throughout the range.
    async fn run(
        mut self,
        windows: Vec<Window>,
        to_ms: i64,
        follow: Option<FollowSettings>,
    ) -> bool {
        let tenant = self.source.tenant.clone();
        let shared = self.shared.clone();
        let progress = &shared.progress;
        let mut router = match self.shared.component.instance() {
            Ok(router) => router,
            Err(error) => {
                tracing::error!(%tenant, %error, "cannot instantiate the routing component");
                return false;
            }
        };
        let prefix = checkpoint_prefix(&self.shared.state_prefix, &tenant);
        let done = match self.shared.archive.list_keys(&prefix).await {
            Ok(keys) => parse_checkpoints(&prefix, &keys),
            Err(error) => {
                tracing::error!(%tenant, error = %error.detail, "cannot read the checkpoints");
                progress
                    .windows_incomplete
                    .fetch_add(windows.len() as u64, Ordering::Relaxed);
                return false;
            }
        };
        let mut api_ok = true;
        for (index, window) in windows.iter().enumerate() {
            if *self.shutdown.borrow() {
                progress
                    .windows_incomplete
                    .fetch_add((windows.len() - index) as u64, Ordering::Relaxed);
                return api_ok;
            }
            if covered(&done, *window) {
                progress.windows_skipped.fetch_add(1, Ordering::Relaxed);
                progress.windows_done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.window(&mut router, *window).await {
                Ok((WindowEnd::Complete, records)) => {
                    let recorded = self.checkpoint(*window, records).await;
                    if !recorded {
                        progress.windows_incomplete.fetch_add(1, Ordering::Relaxed);
                    }
                    self.log_window(*window, records, recorded);
                }
                Ok((WindowEnd::Incomplete, records)) => {
                    progress.windows_incomplete.fetch_add(1, Ordering::Relaxed);
                    self.log_window(*window, records, false);
                }
                Err(error) => {
                    // The API is down or refusing: the later windows cannot
                    // be read either. Their checkpoints stay as they are.
                    tracing::error!(%tenant, %error, window_start_ms = window.start_ms, "cannot read the window from the API; stopping this tenant");
                    progress
                        .windows_incomplete
                        .fetch_add((windows.len() - index) as u64, Ordering::Relaxed);
                    api_ok = false;
                    break;
                }
            }
            progress.windows_done.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(follow), true) = (follow, api_ok) {
            self.follow(&mut router, to_ms, follow).await;
        }
        api_ok
    }

    /// Polls `[last end - overlap, now)` every interval until shutdown. A
    /// failed poll is retried by the next one, which starts at the same place.
    async fn follow(
        &mut self,
        router: &mut RouterInstance,
        mut since_ms: i64,
        follow: FollowSettings,
    ) {
        let overlap = follow.overlap.as_millis() as i64;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(follow.every) => {}
                _ = stopped(&mut self.shutdown) => return,
            }
            let now = chrono::Utc::now().timestamp_millis();
            let window = Window {
                start_ms: since_ms - overlap,
                end_ms: now,
            };
            self.shared
                .progress
                .windows_total
                .fetch_add(1, Ordering::Relaxed);
            match self.window(router, window).await {
                Ok((WindowEnd::Complete, records)) => {
                    since_ms = now;
                    tracing::info!(tenant = %self.source.tenant, records, "follow: polled the latest records");
                }
                Ok((WindowEnd::Incomplete, records)) => {
                    tracing::warn!(tenant = %self.source.tenant, records, "follow: some records not archived; the next poll tries again");
                }
                Err(error) => {
                    tracing::warn!(tenant = %self.source.tenant, %error, "follow: cannot read the API; the next poll tries again");
                }
            }
            self.shared
                .progress
                .windows_done
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn log_window(&self, window: Window, records: u64, checkpointed: bool) {
        if self.shared.log_windows {
            let progress = &self.shared.progress;
            tracing::info!(
                tenant = %self.source.tenant,
                window_start_ms = window.start_ms,
                window_end_ms = window.end_ms,
                records,
                checkpointed,
                done = progress.windows_done.load(Ordering::Relaxed) + 1,
                total = progress.windows_total.load(Ordering::Relaxed),
                "window archived"
            );
        }
    }

    /// Writes the checkpoint of a completed window; whether it is recorded.
    async fn checkpoint(&self, window: Window, records: u64) -> bool {
        let key = checkpoint_key(&self.shared.state_prefix, &self.source.tenant, window);
        let body = serde_json::json!({
            "tenant": self.source.tenant,
            "api_url": self.client.url(),
            "start_ms": window.start_ms,
            "end_ms": window.end_ms,
            "records": records,
            "completed_at_ms": chrono::Utc::now().timestamp_millis(),
        })
        .to_string();
        match self.shared.archive.put_state_if_absent(&key, &body).await {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(tenant = %self.source.tenant, error = %error.detail, "cannot write the checkpoint; the window is read again next time");
                false
            }
        }
    }

    /// Reads every page of `window` and archives its records; the next page
    /// is fetched while the current one is stored.
    async fn window(
        &self,
        router: &mut RouterInstance,
        window: Window,
    ) -> Result<(WindowEnd, u64), ApiError> {
        let (start, end) = (window.start_ms, window.end_ms - 1);
        let mut shutdown = self.shutdown.clone();
        let mut page = tokio::select! {
            page = self.client.audit_page(start, end, None) => page?,
            _ = stopped(&mut shutdown) => return Ok((WindowEnd::Incomplete, 0)),
        };
        let mut end_state = WindowEnd::Complete;
        let mut records = 0;
        loop {
            let fetched_at = chrono::Utc::now().timestamp_millis();
            records += page.records.len() as u64;
            self.shared
                .progress
                .records
                .fetch_add(page.records.len() as u64, Ordering::Relaxed);
            let next = page.next_page_token.clone();
            let store = self.store(router, &page.records, fetched_at);
            let (complete, next_page) = match &next {
                Some(token) => {
                    let fetch = self.client.audit_page(start, end, Some(token));
                    let (complete, next_page) = tokio::join!(store, fetch);
                    (complete, Some(next_page))
                }
                None => (store.await, None),
            };
            if !complete {
                end_state = WindowEnd::Incomplete;
            }
            match next_page {
                None => return Ok((end_state, records)),
                Some(next_page) => page = next_page?,
            }
            if *shutdown.borrow() {
                return Ok((WindowEnd::Incomplete, records));
            }
        }
    }

    /// Routes and stores records, `concurrency` at a time; whether every one
    /// was archived (or quarantined).
    async fn store(
        &self,
        router: &mut RouterInstance,
        records: &[String],
        fetched_at_ms: i64,
    ) -> bool {
        let queue_name = self.source.queue_name();
        let queue = QueueRef {
            url: queue_name.clone(),
            name: queue_name.clone(),
            arn: String::new(),
            fifo: false,
        };
        let url: String = self
            .client
            .url()
            .chars()
            .filter(|c| (' '..='~').contains(c))
            .take(512)
            .collect();
        let extra = [
            (crate::metadata::SOURCE, SOURCE.to_string()),
            (crate::metadata::PRISMA_API_URL, url),
            (crate::metadata::FETCHED_AT_MS, fetched_at_ms.to_string()),
        ];
        let run = BatchRun {
            store: &self.shared.archive,
            // No queue: records come from the API; `store` makes no queue call.
            queue_client: &(),
            queue: &queue,
            settings: &self.shared.pipeline,
            counters: &self.shared.counters,
            shutdown: self.shutdown.clone(),
            extra_metadata: &extra,
        };
        let mut complete = true;
        for chunk in records.chunks(self.shared.concurrency) {
            let messages: Vec<ReceivedMessage> = chunk
                .iter()
                .map(|record| ReceivedMessage {
                    // The API validated it as JSON already (RawValue).
                    message_id: api_message_id(record)
                        .unwrap_or_else(|_| format!("api-{:x}", Sha256::digest(record.as_bytes()))),
                    receipt_handle: String::new(),
                    body: record.clone(),
                    first_receive_ms: None,
                    sent_ms: None,
                    group_id: None,
                })
                .collect();
            let inputs: Vec<Message<'_>> = messages
                .iter()
                .map(|m| Message {
                    message_id: &m.message_id,
                    queue: &queue_name,
                    body: &m.body,
                    first_receive_ms: None,
                    sent_ms: None,
                })
                .collect();
            let routes = router.route_batch(&inputs);
            let settlements = run.store(&messages, &routes).await;
            complete &= settlements.iter().all(Settlement::deletable);
        }
        complete
    }
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
