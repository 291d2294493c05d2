//! `audit-archiver run`: checks everything at start-up, then long-polls every
//! queue, routes each batch through the component, stores and settles it, and
//! stops cleanly on SIGINT/SIGTERM (or, with `--drain`, once the queues are empty).

use std::sync::Arc;
use std::time::Duration;

use audit_archiver_transform::{Message, TimeSource};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::{load_component, CommandError, Exit};
use crate::config::{QueueSelection, RunConfig};
use crate::engine::{RouterComponent, RouterInstance};
use crate::metrics::{self, Counters};
use crate::pipeline::{
    stopped, BatchRun, MessageQueue, PipelineSettings, QueueRef, ReceivedMessage,
};
use crate::s3::S3Archive;
use crate::sqs::{SqsSource, MAX_BATCH};

/// How long an in-flight receive may finish after a shutdown signal.
const RECEIVE_GRACE: Duration = Duration::from_secs(2);

/// Consecutive failed receives after which `--drain` gives a queue up.
const DRAIN_RECEIVE_FAILURES: u32 = 10;

/// Everything a queue worker shares with the others.
struct Shared {
    sqs: SqsSource,
    archive: S3Archive,
    component: RouterComponent,
    counters: Arc<Counters>,
    permits: Arc<Semaphore>,
    pipeline: PipelineSettings,
    time_source: TimeSource,
    batch_size: usize,
    wait_secs: i32,
    visibility_secs: i32,
    drain: bool,
}

/// Runs `run`.
pub async fn run(config: RunConfig) -> Result<Exit, CommandError> {
    let component = load_component(&config.routing)?;
    let clients = crate::aws::clients(&config.aws)
        .await
        .map_err(|e| CommandError::Startup(e.to_string()))?;
    let archive = S3Archive::new(clients.s3, config.bucket.clone(), config.objects.clone());
    archive
        .check_bucket()
        .await
        .map_err(|e| CommandError::Startup(e.to_string()))?;
    let sqs = SqsSource::new(clients.sqs);
    let queues = match &config.queues {
        QueueSelection::Listed(names) => {
            let mut queues = Vec::new();
            for name in names {
                queues.push(
                    sqs.resolve(name)
                        .await
                        .map_err(|e| CommandError::Startup(e.to_string()))?,
                );
            }
            queues
        }
        QueueSelection::Prefix(prefix) => sqs
            .discover(prefix)
            .await
            .map_err(|e| CommandError::Startup(e.to_string()))?,
    };
    let counters = Arc::new(Counters::default());
    if let Some(addr) = config.metrics_addr {
        let listener = metrics::bind(addr).await.map_err(|e| {
            CommandError::Startup(format!("cannot listen on --metrics-addr {addr}: {e}"))
        })?;
        tokio::spawn(metrics::serve(listener, counters.clone()));
    }
    tracing::info!(
        bucket = %config.bucket,
        queues = ?queues.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(),
        component = component.origin(),
        key_template = %config.routing.settings.key_template,
        drain = config.drain,
        "audit-archiver started"
    );

    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(stop_on_signal(stop));
    let stats = config
        .stats_interval
        .map(|every| tokio::spawn(log_stats(counters.clone(), every)));

    let shared = Arc::new(Shared {
        sqs,
        archive,
        component,
        counters: counters.clone(),
        permits: Arc::new(Semaphore::new(config.concurrency)),
        pipeline: config.pipeline.clone(),
        time_source: config.routing.settings.time_source,
        batch_size: config.concurrency.min(MAX_BATCH),
        wait_secs: config.wait_time_secs as i32,
        visibility_secs: config.visibility_timeout_secs as i32,
        drain: config.drain,
    });
    let mut workers = JoinSet::new();
    for queue in queues {
        workers.spawn(poll_queue(shared.clone(), queue, shutdown.clone()));
    }
    let mut gave_up = false;
    while let Some(result) = workers.join_next().await {
        match result {
            Ok(QueueEnd::Settled) => {}
            Ok(QueueEnd::GaveUp) => gave_up = true,
            Err(panic) => {
                tracing::error!(error = %panic, "a queue worker panicked");
                gave_up = true;
            }
        }
    }
    if let Some(stats) = stats {
        stats.abort();
    }
    let summary = counters.snapshot();
    summary.log("audit-archiver finished");
    println!(
        "{}",
        serde_json::to_string(&summary).expect("counters serialize")
    );
    if config.drain && (summary.failed > 0 || gave_up) {
        tracing::error!(
            failed = summary.failed,
            "some messages were not archived; they remain in their queues"
        );
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// How a queue's worker ended.
enum QueueEnd {
    /// Stopped by a signal, or drained.
    Settled,
    /// `--drain` could not receive from the queue.
    GaveUp,
}

/// Receives from one queue until shutdown (or until empty, with `--drain`),
/// settling each batch in its own task so receiving continues meanwhile.
async fn poll_queue(
    shared: Arc<Shared>,
    queue: QueueRef,
    mut shutdown: watch::Receiver<bool>,
) -> QueueEnd {
    let queue = Arc::new(queue);
    let mut router = match shared.component.instance() {
        Ok(router) => router,
        Err(error) => {
            tracing::error!(queue = %queue.name, %error, "cannot instantiate the routing component");
            return QueueEnd::GaveUp;
        }
    };
    let mut batches = JoinSet::new();
    let mut failures = 0u32;
    let mut backoff = Duration::from_millis(500);
    loop {
        // Reap finished batches so the set does not grow without bound.
        while batches.try_join_next().is_some() {}
        if *shutdown.borrow() {
            break;
        }
        // Receive only what can be stored now: back-pressure from S3.
        let permits = tokio::select! {
            permits = shared.permits.clone().acquire_many_owned(shared.batch_size as u32) => {
                permits.expect("the semaphore is never closed")
            }
            _ = stopped(&mut shutdown) => break,
        };
        let receive = shared.sqs.receive(
            &queue,
            shared.batch_size,
            shared.wait_secs,
            shared.visibility_secs,
        );
        tokio::pin!(receive);
        let received = tokio::select! {
            received = &mut receive => received,
            // A receive on a non-empty queue answers at once: let it finish so
            // its messages are released now rather than hidden for the whole
            // visibility timeout. An idle long poll is abandoned (a message
            // arriving in that instant reappears after its timeout).
            _ = stopped(&mut shutdown) => {
                match tokio::time::timeout(RECEIVE_GRACE, &mut receive).await {
                    Ok(received) => received,
                    Err(_) => break,
                }
            }
        };
        let messages = match received {
            Ok(messages) => {
                failures = 0;
                backoff = Duration::from_millis(500);
                messages
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(queue = %queue.name, error = %error.detail, transient = error.transient, "receive failed");
                if shared.drain && failures >= DRAIN_RECEIVE_FAILURES {
                    tracing::error!(queue = %queue.name, "giving up on the queue after {failures} failed receives");
                    while batches.join_next().await.is_some() {}
                    return QueueEnd::GaveUp;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut shutdown) => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if messages.is_empty() {
            drop(permits);
            if shared.drain {
                if batches.is_empty() {
                    break;
                }
                // Settle what is in flight, then look once more.
                while batches.join_next().await.is_some() {}
            }
            continue;
        }
        shared
            .counters
            .received
            .fetch_add(messages.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let routes = route(&mut router, &queue, &messages, shared.time_source);
        let (shared, queue, shutdown) = (shared.clone(), queue.clone(), shutdown.clone());
        batches.spawn(async move {
            let _permits = permits;
            settle_batch(&shared, &queue, messages, routes, shutdown).await;
        });
    }
    // Let in-flight batches finish their current PUTs and settle.
    while batches.join_next().await.is_some() {}
    QueueEnd::Settled
}

fn route(
    router: &mut RouterInstance,
    queue: &QueueRef,
    messages: &[ReceivedMessage],
    time_source: TimeSource,
) -> Vec<Result<audit_archiver_transform::Placement, crate::engine::RouteFailure>> {
    let inputs: Vec<Message<'_>> = messages
        .iter()
        .map(|m| Message {
            message_id: &m.message_id,
            queue: &queue.url,
            // Only the `event` source reads the body: spare the copy otherwise.
            body: if time_source == TimeSource::Event {
                &m.body
            } else {
                ""
            },
            first_receive_ms: m.first_receive_ms,
            sent_ms: m.sent_ms,
        })
        .collect();
    router.route_batch(&inputs)
}

/// Settles one batch, extending its visibility while the work outlasts half
/// the timeout so no other consumer receives it meanwhile.
async fn settle_batch(
    shared: &Shared,
    queue: &QueueRef,
    messages: Vec<ReceivedMessage>,
    routes: Vec<Result<audit_archiver_transform::Placement, crate::engine::RouteFailure>>,
    shutdown: watch::Receiver<bool>,
) {
    let run = BatchRun {
        store: &shared.archive,
        queue_client: &shared.sqs,
        queue,
        settings: &shared.pipeline,
        counters: &shared.counters,
        shutdown,
    };
    let settle = run.settle(&messages, routes);
    tokio::pin!(settle);
    let half = Duration::from_secs((shared.visibility_secs as u64 / 2).max(1));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    let receipts: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
    loop {
        tokio::select! {
            _ = &mut settle => break,
            _ = heartbeat.tick() => {
                tracing::debug!(queue = %queue.name, messages = receipts.len(), "extending visibility");
                shared.sqs.set_visibility(queue, &receipts, shared.visibility_secs).await;
            }
        }
    }
}

/// The first SIGINT/SIGTERM stops receiving and settles what is in hand; a
/// second one exits at once (unsettled messages reappear after their timeout).
async fn stop_on_signal(stop: watch::Sender<bool>) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        if round == 0 {
            tracing::info!(
                "stopping: no new receives; settling messages in hand (signal again to exit now)"
            );
            let _ = stop.send(true);
        } else {
            tracing::warn!("second signal: exiting now; unsettled messages reappear after their visibility timeout");
            std::process::exit(130);
        }
    }
}

async fn log_stats(counters: Arc<Counters>, every: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticker.tick().await;
        counters.snapshot().log("progress");
    }
}
