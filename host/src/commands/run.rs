//! `audit-archiver run`: checks everything at start-up, then polls every
//! queue, routes each batch through the component, stores and settles it, and
//! stops cleanly on SIGINT/SIGTERM (or, with `--drain`, once every queue is
//! verified empty or cannot be emptied).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_archiver_transform::{Message, TimeSource};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::{load_component, CommandError, Exit};
use crate::aws::FailureKind;
use crate::config::{QueueSelection, RunConfig};
use crate::engine::{RouterComponent, RouterInstance};
use crate::health::{Action, QueueHealth};
use crate::metrics::{self, Counters, Snapshot};
use crate::pipeline::{
    stopped, BatchOutcome, BatchRun, MessageQueue, PipelineSettings, QueueRef, ReceivedMessage,
    Settlement,
};
use crate::s3::S3Archive;
use crate::sqs::{ReceiveError, SqsSource, MAX_BATCH};

/// How long an in-flight receive may finish after a shutdown signal.
const RECEIVE_GRACE: Duration = Duration::from_secs(2);

/// Consecutive failed receives after which `--drain` gives a queue up.
const DRAIN_RECEIVE_FAILURES: u32 = 10;

/// First and longest wait after a transient receive failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// First and longest pause of a queue that refused an action an operator
/// must fix (a missing permission): receiving more would only churn.
const FIRST_PAUSE: Duration = Duration::from_secs(30);
const MAX_PAUSE: Duration = Duration::from_secs(900);

/// How often `--drain` looks again at a queue whose messages are all in
/// flight elsewhere or delayed.
const DRAIN_RECHECK: Duration = Duration::from_secs(1);

/// How often each queue's depth is read for `/metrics`.
const DEPTH_EVERY: Duration = Duration::from_secs(60);

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
    /// Read each queue's depth this often (only when `/metrics` is served).
    depth_every: Option<Duration>,
}

/// What `run` prints on stdout when it ends: the counters, and with
/// `--drain` what was left in the queues.
#[derive(Debug, Serialize)]
struct RunSummary {
    #[serde(flatten)]
    counters: Snapshot,
    #[serde(skip_serializing_if = "Option::is_none")]
    left: Option<Left>,
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
    let health: Vec<Arc<QueueHealth>> = queues
        .iter()
        .map(|queue| QueueHealth::new(queue, &config.bucket))
        .collect();
    if let Some(addr) = config.metrics_addr {
        let listener = metrics::bind(addr).await.map_err(|e| {
            CommandError::Startup(format!("cannot listen on --metrics-addr {addr}: {e}"))
        })?;
        tokio::spawn(metrics::serve(listener, counters.clone(), health.clone()));
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
        depth_every: config.metrics_addr.map(|_| DEPTH_EVERY),
    });
    let mut workers = JoinSet::new();
    for (queue, health) in queues.into_iter().zip(health) {
        let worker = QueueWorker::new(shared.clone(), queue, health, shutdown.clone());
        workers.spawn(worker.run());
    }
    let mut left = Left::default();
    while let Some(result) = workers.join_next().await {
        match result {
            Ok(end) if end.verified_empty => {}
            Ok(end) => left.add(&end.left),
            Err(panic) => {
                tracing::error!(error = %panic, "a queue worker panicked");
                left.queues += 1;
            }
        }
    }
    if let Some(stats) = stats {
        stats.abort();
    }
    let snapshot = counters.snapshot();
    snapshot.log("audit-archiver finished");
    let summary = RunSummary {
        counters: snapshot,
        left: config.drain.then_some(left),
    };
    println!(
        "{}",
        serde_json::to_string(&summary).expect("the summary serializes")
    );
    if config.drain && left.queues > 0 {
        tracing::error!(
            queues = left.queues,
            left = left.messages,
            not_received = left.not_received,
            delete_failed = left.delete_failed,
            archive_failed = left.archive_failed,
            "drain incomplete: {} message(s) left in {} queue(s) ({} not received, {} not deleted, {} not archived)",
            left.messages, left.queues, left.not_received, left.delete_failed, left.archive_failed,
        );
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// Why a received message is still in its queue when a worker ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeftReason {
    /// Not stored (see the log for the reason).
    ArchiveFailed,
    /// Stored, but the delete failed.
    DeleteFailed,
}

/// What `--drain` left in the queues, and why; all zero when they were all
/// verified empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Left {
    /// Every message still in a queue.
    pub messages: u64,
    /// Never received: behind a stopped queue or a locked FIFO group, or
    /// arrived late.
    pub not_received: u64,
    /// Archived but not deleted (they come back and are recognised).
    pub delete_failed: u64,
    /// Received but not archived.
    pub archive_failed: u64,
    /// Queues not verified empty.
    pub queues: u64,
}

impl Left {
    fn add(&mut self, other: &Left) {
        self.messages += other.messages;
        self.not_received += other.not_received;
        self.delete_failed += other.delete_failed;
        self.archive_failed += other.archive_failed;
        self.queues += other.queues;
    }
}

/// How a queue's worker ended.
struct QueueEnd {
    /// `--drain` read the queue's depth as zero after its last receive, with
    /// nothing of its own left unsettled.
    verified_empty: bool,
    /// What is left, when not verified empty.
    left: Left,
}

/// One settled batch: its messages' ids and what became of them.
type SettledBatch = (Vec<String>, BatchOutcome);

/// Receives from one queue until shutdown (or, with `--drain`, until the
/// queue is verified empty or cannot be emptied), settling each batch in its
/// own task.
struct QueueWorker {
    shared: Arc<Shared>,
    queue: Arc<QueueRef>,
    health: Arc<QueueHealth>,
    shutdown: watch::Receiver<bool>,
    batches: JoinSet<SettledBatch>,
    /// Messages received and still in the queue, by id.
    left: HashMap<String, LeftReason>,
    /// How long receiving pauses after the queue refused an action.
    pause: Duration,
    paused_until: Option<Instant>,
}

impl QueueWorker {
    fn new(
        shared: Arc<Shared>,
        queue: QueueRef,
        health: Arc<QueueHealth>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            shared,
            queue: Arc::new(queue),
            health,
            shutdown,
            batches: JoinSet::new(),
            left: HashMap::new(),
            pause: FIRST_PAUSE,
            paused_until: None,
        }
    }

    async fn run(mut self) -> QueueEnd {
        let mut router = match self.shared.component.instance() {
            Ok(router) => router,
            Err(error) => {
                tracing::error!(queue = %self.queue.name, %error, "cannot instantiate the routing component");
                return self.end(false).await;
            }
        };
        let drain = self.shared.drain;
        let mut failures = 0u32;
        let mut backoff = FIRST_BACKOFF;
        // Whether the last receive came back empty, and whether the queue's
        // depth then said messages are there all the same.
        let mut last_empty = false;
        let mut long_poll = !drain;
        let mut next_depth_read = Instant::now();
        loop {
            self.reap();
            if *self.shutdown.borrow() {
                break;
            }
            if drain && !self.health.is_up() {
                // An operator must act: the queue cannot be emptied now.
                break;
            }
            if let Some(until) = self.paused_until.take() {
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = stopped(&mut self.shutdown) => break,
                }
            }
            if let Some(every) = self.shared.depth_every {
                if Instant::now() >= next_depth_read {
                    next_depth_read = Instant::now() + every;
                    match self.shared.sqs.depth(&self.queue).await {
                        Ok(depth) => self.health.set_depth(depth),
                        Err(error) => {
                            tracing::debug!(queue = %self.queue.name, %error, "cannot read the queue's depth")
                        }
                    }
                }
            }
            if drain && last_empty && self.batches.is_empty() {
                if !self.left.is_empty() {
                    // Our own failures hold messages in the queue.
                    break;
                }
                match self.shared.sqs.depth(&self.queue).await {
                    Ok(depth) => {
                        self.health.set_depth(depth);
                        if depth.total() == 0 {
                            return self.end(true).await;
                        }
                        if depth.visible == 0 {
                            // In flight with another consumer, or delayed:
                            // they are deleted or come back; look again.
                            tokio::select! {
                                _ = tokio::time::sleep(DRAIN_RECHECK) => {}
                                _ = stopped(&mut self.shutdown) => break,
                            }
                            continue;
                        }
                        // Visible but not returned (a short poll's sample, or
                        // a FIFO group another consumer holds): wait for them.
                        long_poll = true;
                    }
                    Err(error) => {
                        if !self
                            .receive_failed(&error, &mut failures, &mut backoff)
                            .await
                        {
                            break;
                        }
                        continue;
                    }
                }
            }
            // Receive only what can be stored now: back-pressure from S3.
            let permits = tokio::select! {
                permits = self.shared.permits.clone().acquire_many_owned(self.shared.batch_size as u32) => {
                    permits.expect("the semaphore is never closed")
                }
                _ = stopped(&mut self.shutdown) => break,
            };
            // A FIFO queue's groups stay locked while our own batches from it
            // settle: a long poll then waits its full time for nothing.
            let wait = if !long_poll || (self.queue.fifo && !self.batches.is_empty()) {
                0
            } else {
                self.shared.wait_secs
            };
            let Some(received) = self.receive(wait).await else {
                break;
            };
            let messages = match received {
                Ok(messages) => {
                    failures = 0;
                    backoff = FIRST_BACKOFF;
                    self.health.resolved(&[Action::Receive]);
                    messages
                }
                Err(error) => {
                    if !self
                        .receive_failed(&error, &mut failures, &mut backoff)
                        .await
                    {
                        break;
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                drop(permits);
                last_empty = true;
                if drain {
                    // Settle what is in flight, then read the depth.
                    self.settle_all().await;
                } else if self.queue.fifo {
                    // Wait for a batch to free its groups before polling again.
                    if let Some(result) = self.batches.join_next().await {
                        self.absorb(result);
                    }
                }
                continue;
            }
            last_empty = false;
            long_poll = !drain;
            let n = messages.len() as u64;
            self.shared
                .counters
                .received
                .fetch_add(n, Ordering::Relaxed);
            self.health.received.fetch_add(n, Ordering::Relaxed);
            let routes = route(&mut router, &self.queue, &messages, self.shared.time_source);
            let (shared, queue, health, shutdown) = (
                self.shared.clone(),
                self.queue.clone(),
                self.health.clone(),
                self.shutdown.clone(),
            );
            self.batches.spawn(async move {
                let _permits = permits;
                let ids = messages.iter().map(|m| m.message_id.clone()).collect();
                let outcome =
                    settle_batch(&shared, &queue, &health, messages, routes, shutdown).await;
                (ids, outcome)
            });
        }
        self.end(false).await
    }

    /// One receive; `None` when a shutdown abandoned an idle long poll.
    async fn receive(
        &mut self,
        wait_secs: i32,
    ) -> Option<Result<Vec<ReceivedMessage>, ReceiveError>> {
        let receive = self.shared.sqs.receive(
            &self.queue,
            self.shared.batch_size,
            wait_secs,
            self.shared.visibility_secs,
        );
        tokio::pin!(receive);
        tokio::select! {
            received = &mut receive => Some(received),
            // A receive on a non-empty queue answers at once: let it finish so
            // its messages are released now rather than hidden for the whole
            // visibility timeout. An idle long poll is abandoned (a message
            // arriving in that instant reappears after its timeout).
            _ = stopped(&mut self.shutdown) => {
                tokio::time::timeout(RECEIVE_GRACE, &mut receive).await.ok()
            }
        }
    }

    /// Handles a failed receive (or depth read); `false` when the worker
    /// should stop.
    async fn receive_failed(
        &mut self,
        error: &ReceiveError,
        failures: &mut u32,
        backoff: &mut Duration,
    ) -> bool {
        *failures += 1;
        if error.kind.is_transient() {
            tracing::warn!(queue = %self.queue.name, action = error.action, error = %error.detail, "receive failed; retrying");
            if self.shared.drain && *failures >= DRAIN_RECEIVE_FAILURES {
                tracing::error!(queue = %self.queue.name, "giving up on the queue after {failures} failed receives");
                return false;
            }
        } else {
            self.health
                .refused(Action::Receive, error.kind, &error.detail, 0);
            if self.shared.drain {
                return false;
            }
            *backoff = (*backoff).max(FIRST_PAUSE);
        }
        tokio::select! {
            _ = tokio::time::sleep(*backoff) => {}
            _ = stopped(&mut self.shutdown) => return false,
        }
        let most = if error.kind.is_transient() {
            MAX_BACKOFF
        } else {
            MAX_PAUSE
        };
        *backoff = (*backoff * 2).min(most);
        true
    }

    /// Takes in the batches that have finished.
    fn reap(&mut self) {
        while let Some(result) = self.batches.try_join_next() {
            self.absorb(result);
        }
    }

    async fn settle_all(&mut self) {
        while let Some(result) = self.batches.join_next().await {
            self.absorb(result);
        }
    }

    /// Records what a settled batch left in the queue, and stops receiving
    /// for a while when the queue refused an action that needs an operator.
    fn absorb(&mut self, result: Result<SettledBatch, tokio::task::JoinError>) {
        let (ids, outcome) = match result {
            Ok(settled) => settled,
            Err(error) => {
                tracing::error!(queue = %self.queue.name, %error, "a batch task failed; its messages come back after their visibility timeout");
                return;
            }
        };
        let mut archived = 0;
        for (index, id) in ids.into_iter().enumerate() {
            if outcome.deleted(index) {
                archived += 1;
                self.left.remove(&id);
            } else if outcome.settlements[index].deletable() {
                self.left.insert(id, LeftReason::DeleteFailed);
            } else if matches!(outcome.settlements[index], Settlement::Kept { .. }) {
                self.left.insert(id, LeftReason::ArchiveFailed);
            } else {
                // Released at shutdown: visible again, as if never received.
                self.left.remove(&id);
            }
        }
        self.health.archived.fetch_add(archived, Ordering::Relaxed);
        self.health
            .delete_failures
            .fetch_add(outcome.undeleted.len() as u64, Ordering::Relaxed);

        let mut refused = false;
        if let Some(reason) = outcome.store_denied() {
            let denied = outcome
                .settlements
                .iter()
                .filter(|s| {
                    matches!(
                        s,
                        Settlement::Kept {
                            kind: FailureKind::Denied,
                            ..
                        }
                    )
                })
                .count() as u64;
            self.health
                .refused(Action::Put, FailureKind::Denied, reason, denied);
            refused = true;
        }
        let permanent: Vec<_> = outcome
            .undeleted
            .iter()
            .filter(|(_, f)| !f.kind.is_transient())
            .collect();
        if let Some((_, failure)) = permanent.first() {
            self.health.refused(
                Action::Delete,
                failure.kind,
                &failure.detail,
                permanent.len() as u64,
            );
            refused = true;
        } else if let Some((_, failure)) = outcome.undeleted.first() {
            tracing::warn!(
                queue = %self.queue.name, messages = outcome.undeleted.len(), error = %failure.detail,
                "deletes still failing after retries; the messages come back and are recognised as archived"
            );
        }
        if refused {
            if !self.shared.drain {
                tracing::warn!(queue = %self.queue.name, pause_secs = self.pause.as_secs(), "receiving from the queue paused until it works again");
                self.paused_until = Some(Instant::now() + self.pause);
                self.pause = (self.pause * 2).min(MAX_PAUSE);
            }
        } else if archived > 0 && outcome.undeleted.is_empty() {
            self.health.resolved(&[Action::Put, Action::Delete]);
            self.pause = FIRST_PAUSE;
        }
    }

    /// Lets in-flight batches settle, then says what is left.
    async fn end(mut self, verified_empty: bool) -> QueueEnd {
        self.settle_all().await;
        if verified_empty || !self.shared.drain {
            return QueueEnd {
                verified_empty,
                left: Left::default(),
            };
        }
        let count = |reason| self.left.values().filter(|r| **r == reason).count() as u64;
        let (delete_failed, archive_failed) = (
            count(LeftReason::DeleteFailed),
            count(LeftReason::ArchiveFailed),
        );
        let ours = delete_failed + archive_failed;
        let in_queue = match self.shared.sqs.depth(&self.queue).await {
            Ok(depth) => depth.total(),
            Err(error) => {
                tracing::warn!(queue = %self.queue.name, %error, "cannot read what is left in the queue");
                ours
            }
        };
        let left = Left {
            messages: in_queue.max(ours),
            not_received: in_queue.saturating_sub(ours),
            delete_failed,
            archive_failed,
            queues: 1,
        };
        tracing::error!(
            queue = %self.queue.name,
            left = left.messages,
            not_received = left.not_received,
            delete_failed = left.delete_failed,
            archive_failed = left.archive_failed,
            "the queue is not empty"
        );
        QueueEnd {
            verified_empty: false,
            left,
        }
    }
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
    health: &QueueHealth,
    messages: Vec<ReceivedMessage>,
    routes: Vec<Result<audit_archiver_transform::Placement, crate::engine::RouteFailure>>,
    shutdown: watch::Receiver<bool>,
) -> BatchOutcome {
    let run = BatchRun {
        store: &shared.archive,
        queue_client: &shared.sqs,
        queue,
        settings: &shared.pipeline,
        counters: &shared.counters,
        shutdown,
        extra_metadata: &[],
    };
    let settle = run.settle(&messages, routes);
    tokio::pin!(settle);
    let half = Duration::from_secs((shared.visibility_secs as u64 / 2).max(1));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    let receipts: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
    loop {
        tokio::select! {
            outcome = &mut settle => return outcome,
            _ = heartbeat.tick() => {
                tracing::debug!(queue = %queue.name, messages = receipts.len(), "extending visibility");
                let failures = shared.sqs.set_visibility(queue, &receipts, shared.visibility_secs).await;
                // Not fatal: the messages may come back to another consumer,
                // which recognises them as archived.
                match failures.first() {
                    Some(failure) if !failure.kind.is_transient() => health.refused(
                        Action::ChangeVisibility,
                        failure.kind,
                        &failure.detail,
                        failures.len() as u64,
                    ),
                    Some(failure) => tracing::warn!(
                        queue = %queue.name, failed = failures.len(), error = %failure.detail,
                        "could not extend the visibility of messages being archived"
                    ),
                    None => health.resolved(&[Action::ChangeVisibility]),
                }
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
