//! The receive loop of one queue, the spine of `run`: receive → route →
//! store → delete, with back-pressure from the store, FIFO-aware polling, the
//! drain's end check, back-off on failures and pauses on refusals.
//!
//! It is written against three narrow traits — [`MessageSource`] (SQS),
//! [`ArchiveStore`] (S3) and [`BatchRouter`] (the component) — so its
//! decisions are unit-tested in memory below (virtual time, milliseconds per
//! test); `sqs.rs`, `s3.rs` and [`ComponentRouter`] implement them for real,
//! and the end-to-end tests run them against a real endpoint.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use audit_archiver_transform::{Message, Placement, TimeSource};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::aws::FailureKind;
use crate::engine::{RouteFailure, RouterInstance};
use crate::health::{Action, Depth, QueueHealth};
use crate::metrics::Counters;
use crate::pipeline::{
    stopped, ArchiveStore, BatchOutcome, BatchRun, MessageQueue, PipelineSettings, QueueRef,
    ReceivedMessage, Settlement,
};

/// How long an in-flight receive may finish after a shutdown signal.
const RECEIVE_GRACE: Duration = Duration::from_secs(2);

/// Consecutive failed receives after which a drain gives a queue up.
const DRAIN_RECEIVE_FAILURES: u32 = 10;

/// First and longest wait after a transient receive failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// First and longest pause of a queue that refused an action an operator
/// must fix (a missing permission): receiving more would only churn.
const FIRST_PAUSE: Duration = Duration::from_secs(30);
const MAX_PAUSE: Duration = Duration::from_secs(900);

/// How often a drain looks again at a queue whose messages are all in
/// flight elsewhere or delayed.
const DRAIN_RECHECK: Duration = Duration::from_secs(1);

/// A failed receive (or depth read).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action} on {queue}: {detail}")]
pub struct ReceiveError {
    /// The call.
    pub action: &'static str,
    /// The queue name.
    pub queue: String,
    /// What failed.
    pub detail: String,
    /// Whether retrying may help, or a permission is missing.
    pub kind: FailureKind,
}

/// Where messages come from, as the worker needs it; settling them goes
/// through [`MessageQueue`].
pub trait MessageSource: MessageQueue + 'static {
    /// One receive: up to `max` messages, waiting up to `wait_secs` for the
    /// first, hidden from other consumers for `visibility_secs`.
    fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait_secs: i32,
        visibility_secs: i32,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, ReceiveError>> + Send;

    /// The queue's message counts.
    fn depth(&self, queue: &QueueRef) -> impl Future<Output = Result<Depth, ReceiveError>> + Send;
}

/// The routing step: one result per message, in order.
pub trait BatchRouter: Send + 'static {
    /// Routes a batch received from `queue`.
    fn route(
        &mut self,
        queue: &QueueRef,
        messages: &[ReceivedMessage],
    ) -> Vec<Result<Placement, RouteFailure>>;
}

/// The sandboxed component as the worker's router.
pub struct ComponentRouter {
    /// One instance per worker (a `Store` is not shared between threads).
    pub instance: RouterInstance,
    /// Only the `event` time source reads the body.
    pub time_source: TimeSource,
}

impl BatchRouter for ComponentRouter {
    fn route(
        &mut self,
        queue: &QueueRef,
        messages: &[ReceivedMessage],
    ) -> Vec<Result<Placement, RouteFailure>> {
        let inputs: Vec<Message<'_>> = messages
            .iter()
            .map(|m| Message {
                message_id: &m.message_id,
                queue: &queue.url,
                // Only the `event` source reads the body: spare the copy otherwise.
                body: if self.time_source == TimeSource::Event {
                    &m.body
                } else {
                    ""
                },
                first_receive_ms: m.first_receive_ms,
                sent_ms: m.sent_ms,
            })
            .collect();
        self.instance.route_batch(&inputs)
    }
}

/// How the workers receive.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Messages per receive (at most 10).
    pub batch_size: usize,
    /// Long-poll wait.
    pub wait_secs: i32,
    /// Visibility timeout of received messages.
    pub visibility_secs: i32,
    /// Stop once the queue is verified empty (or cannot be emptied).
    pub drain: bool,
    /// Read the queue's depth this often for `/metrics`.
    pub depth_every: Option<Duration>,
    /// Store-step settings.
    pub pipeline: PipelineSettings,
}

/// Everything the workers of a run share.
pub struct Shared<Src, St> {
    /// The queues' source.
    pub source: Src,
    /// The archive.
    pub store: St,
    /// Counters of the run.
    pub counters: Arc<Counters>,
    /// Messages being stored at once, over all queues.
    pub permits: Arc<Semaphore>,
    /// How to receive.
    pub settings: WorkerSettings,
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
    /// Adds another queue's.
    pub fn add(&mut self, other: &Left) {
        self.messages += other.messages;
        self.not_received += other.not_received;
        self.delete_failed += other.delete_failed;
        self.archive_failed += other.archive_failed;
        self.queues += other.queues;
    }
}

/// How a queue's worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueEnd {
    /// `--drain` read the queue's depth as zero after its last receive, with
    /// nothing of its own left unsettled.
    pub verified_empty: bool,
    /// What is left, when not verified empty.
    pub left: Left,
    /// The queue no longer exists: a receive answered that it was deleted.
    pub gone: bool,
}

/// One settled batch: its messages' ids and what became of them.
type SettledBatch = (Vec<String>, BatchOutcome);

/// Receives from one queue until shutdown (or, with `--drain`, until the
/// queue is verified empty or cannot be emptied), settling each batch in its
/// own task.
pub struct QueueWorker<Src, St, R> {
    shared: Arc<Shared<Src, St>>,
    router: R,
    queue: Arc<QueueRef>,
    health: Arc<QueueHealth>,
    /// Stops the receiving.
    shutdown: watch::Receiver<bool>,
    /// Releases what batches have not stored yet (the run's shutdown).
    settle_shutdown: watch::Receiver<bool>,
    /// A receive said the queue no longer exists.
    gone: bool,
    batches: JoinSet<SettledBatch>,
    /// Messages received and still in the queue, by id.
    left: HashMap<String, LeftReason>,
    /// How long receiving pauses after the queue refused an action.
    pause: Duration,
    paused_until: Option<Instant>,
}

impl<Src: MessageSource, St: ArchiveStore + 'static, R: BatchRouter> QueueWorker<Src, St, R> {
    /// A worker for `queue`, routing with `router`.
    pub fn new(
        shared: Arc<Shared<Src, St>>,
        router: R,
        queue: QueueRef,
        health: Arc<QueueHealth>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            shared,
            router,
            queue: Arc::new(queue),
            health,
            settle_shutdown: shutdown.clone(),
            shutdown,
            gone: false,
            batches: JoinSet::new(),
            left: HashMap::new(),
            pause: FIRST_PAUSE,
            paused_until: None,
        }
    }

    /// Stops receiving when `stop_receiving` says so, while the batches in
    /// flight still settle in full (stored, then deleted) unless the run's
    /// shutdown comes first: how a queue is dropped (`discovery.rs`).
    /// `stop_receiving` must also say so on the run's shutdown.
    pub fn retirable(mut self, stop_receiving: watch::Receiver<bool>) -> Self {
        self.shutdown = stop_receiving;
        self
    }

    /// Receives until shutdown (or, with `drain`, until the queue is
    /// verified empty or cannot be emptied).
    pub async fn run(mut self) -> QueueEnd {
        let drain = self.shared.settings.drain;
        let mut failures = 0u32;
        let mut backoff = FIRST_BACKOFF;
        // Whether the last receive came back empty, and whether the queue's
        // depth then said messages are there all the same.
        let mut last_empty = false;
        let mut long_poll = !drain;
        let mut next_depth_read = Instant::now();
        loop {
            self.reap();
            if *self.shutdown.borrow() || self.gone {
                break;
            }
            if drain && !self.health.is_up() {
                // An operator must act: the queue cannot be emptied now.
                break;
            }
            if let Some(until) = self.paused_until.take() {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = stopped(&mut self.shutdown) => break,
                }
            }
            if let Some(every) = self.shared.settings.depth_every {
                if Instant::now() >= next_depth_read {
                    next_depth_read = Instant::now() + every;
                    match self.shared.source.depth(&self.queue).await {
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
                match self.shared.source.depth(&self.queue).await {
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
                permits = self.shared.permits.clone().acquire_many_owned(self.shared.settings.batch_size as u32) => {
                    permits.expect("the semaphore is never closed")
                }
                _ = stopped(&mut self.shutdown) => break,
            };
            // A FIFO queue's groups stay locked while our own batches from it
            // settle: a long poll then waits its full time for nothing.
            let wait = if !long_poll || (self.queue.fifo && !self.batches.is_empty()) {
                0
            } else {
                self.shared.settings.wait_secs
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
            let routes = self.router.route(&self.queue, &messages);
            let (shared, queue, health, shutdown) = (
                self.shared.clone(),
                self.queue.clone(),
                self.health.clone(),
                self.settle_shutdown.clone(),
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
        let receive = self.shared.source.receive(
            &self.queue,
            self.shared.settings.batch_size,
            wait_secs,
            self.shared.settings.visibility_secs,
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
        if error.kind == FailureKind::Gone {
            // Deleted: nothing to retry, nothing for an operator to fix.
            self.gone = true;
            return false;
        }
        if error.kind.is_transient() {
            tracing::warn!(queue = %self.queue.name, action = error.action, error = %error.detail, "receive failed; retrying");
            if self.shared.settings.drain && *failures >= DRAIN_RECEIVE_FAILURES {
                tracing::error!(queue = %self.queue.name, "giving up on the queue after {failures} failed receives");
                return false;
            }
        } else {
            self.health
                .refused(Action::Receive, error.kind, &error.detail, 0);
            if self.shared.settings.drain {
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
        // Archived, but the queue was deleted with them: nothing to fix.
        if outcome
            .undeleted
            .iter()
            .any(|(_, f)| f.kind == FailureKind::Gone)
        {
            self.gone = true;
        }
        let permanent: Vec<_> = outcome
            .undeleted
            .iter()
            .filter(|(_, f)| !f.kind.is_transient() && f.kind != FailureKind::Gone)
            .collect();
        if let Some((_, failure)) = permanent.first() {
            self.health.refused(
                Action::Delete,
                failure.kind,
                &failure.detail,
                permanent.len() as u64,
            );
            refused = true;
        } else if let Some((_, failure)) = outcome
            .undeleted
            .iter()
            .find(|(_, f)| f.kind.is_transient())
        {
            tracing::warn!(
                queue = %self.queue.name, messages = outcome.undeleted.len(), error = %failure.detail,
                "deletes still failing after retries; the messages come back and are recognised as archived"
            );
        }
        if refused {
            if !self.shared.settings.drain {
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
        if verified_empty || !self.shared.settings.drain {
            return QueueEnd {
                verified_empty,
                left: Left::default(),
                gone: self.gone,
            };
        }
        let count = |reason| self.left.values().filter(|r| **r == reason).count() as u64;
        let (delete_failed, archive_failed) = (
            count(LeftReason::DeleteFailed),
            count(LeftReason::ArchiveFailed),
        );
        let ours = delete_failed + archive_failed;
        let in_queue = match self.shared.source.depth(&self.queue).await {
            Ok(depth) => depth.total(),
            // Deleted with whatever it held: nothing to count.
            Err(_) if self.gone => ours,
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
            "{}",
            if self.gone {
                "the queue was deleted before it was verified empty"
            } else {
                "the queue is not empty"
            }
        );
        QueueEnd {
            verified_empty: false,
            left,
            gone: self.gone,
        }
    }
}

/// Settles one batch, extending its visibility while the work outlasts half
/// the timeout so no other consumer receives it meanwhile.
async fn settle_batch<Src: MessageSource, St: ArchiveStore>(
    shared: &Shared<Src, St>,
    queue: &QueueRef,
    health: &QueueHealth,
    messages: Vec<ReceivedMessage>,
    routes: Vec<Result<audit_archiver_transform::Placement, crate::engine::RouteFailure>>,
    shutdown: watch::Receiver<bool>,
) -> BatchOutcome {
    let run = BatchRun {
        store: &shared.store,
        queue_client: &shared.source,
        queue,
        settings: &shared.settings.pipeline,
        counters: &shared.counters,
        shutdown,
        extra_metadata: &[],
    };
    let settle = run.settle(&messages, routes);
    tokio::pin!(settle);
    let half = Duration::from_secs((shared.settings.visibility_secs as u64 / 2).max(1));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    let receipts: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
    loop {
        tokio::select! {
            outcome = &mut settle => return outcome,
            _ = heartbeat.tick() => {
                tracing::debug!(queue = %queue.name, messages = receipts.len(), "extending visibility");
                let failures = shared.source.set_visibility(queue, &receipts, shared.settings.visibility_secs).await;
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

#[cfg(test)]
mod tests {
    //! The loop's decisions against an in-memory queue that keeps SQS's
    //! rules that matter here (visibility timeouts, FIFO groups locked while
    //! a message of theirs is in flight, long polls that wait their whole
    //! time when nothing is available), on tokio's paused clock: a test's
    //! minutes of virtual time take milliseconds.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::pipeline::{PutOutcome, QueueFailure, StoreError};

    #[derive(Debug, Clone, PartialEq)]
    enum State {
        Visible,
        InFlight { receipt: String, until: Instant },
        Deleted,
    }

    #[derive(Debug)]
    struct Entry {
        id: String,
        group: Option<String>,
        state: State,
    }

    /// One in-memory queue.
    #[derive(Default)]
    struct MemorySource {
        entries: Mutex<Vec<Entry>>,
        /// (virtual time, wait asked, messages returned) of every receive.
        receives: Mutex<Vec<(Instant, i32, usize)>>,
        deletes_denied: bool,
        transient_receive_failures: Mutex<u32>,
        serial: Mutex<u64>,
    }

    impl MemorySource {
        fn with(n: usize, group: Option<&str>) -> Self {
            let source = Self::default();
            source.push(n, group);
            source
        }

        fn push(&self, n: usize, group: Option<&str>) {
            let mut entries = self.entries.lock().unwrap();
            let base = entries.len();
            entries.extend((0..n).map(|i| Entry {
                id: format!("m{}", base + i),
                group: group.map(str::to_string),
                state: State::Visible,
            }));
        }

        /// Another consumer takes the first message for `secs`.
        fn hold_first(&self, secs: u64) {
            let mut entries = self.entries.lock().unwrap();
            entries[0].state = State::InFlight {
                receipt: "elsewhere".into(),
                until: Instant::now() + Duration::from_secs(secs),
            };
        }

        fn expire(entries: &mut [Entry]) {
            for entry in entries.iter_mut() {
                if let State::InFlight { until, .. } = &entry.state {
                    if *until <= Instant::now() {
                        entry.state = State::Visible;
                    }
                }
            }
        }

        fn take(&self, max: usize, visibility_secs: i32) -> Vec<ReceivedMessage> {
            let mut entries = self.entries.lock().unwrap();
            MemorySource::expire(&mut entries);
            let locked: Vec<String> = entries
                .iter()
                .filter(|e| matches!(e.state, State::InFlight { .. }))
                .filter_map(|e| e.group.clone())
                .collect();
            let mut taken = Vec::new();
            let mut serial = self.serial.lock().unwrap();
            for entry in entries.iter_mut() {
                if taken.len() == max {
                    break;
                }
                let group_locked = entry.group.as_ref().is_some_and(|g| locked.contains(g));
                if entry.state != State::Visible || group_locked {
                    continue;
                }
                *serial += 1;
                let receipt = format!("{}#{serial}", entry.id);
                entry.state = State::InFlight {
                    receipt: receipt.clone(),
                    until: Instant::now() + Duration::from_secs(visibility_secs as u64),
                };
                taken.push(ReceivedMessage {
                    message_id: entry.id.clone(),
                    receipt_handle: receipt,
                    body: "{}".into(),
                    first_receive_ms: Some(1),
                    sent_ms: Some(1),
                    group_id: entry.group.clone(),
                });
            }
            taken
        }

        fn deleted(&self) -> usize {
            let entries = self.entries.lock().unwrap();
            entries.iter().filter(|e| e.state == State::Deleted).count()
        }

        fn waits(&self) -> Vec<i32> {
            self.receives.lock().unwrap().iter().map(|r| r.1).collect()
        }
    }

    impl MessageQueue for Arc<MemorySource> {
        async fn delete(&self, _queue: &QueueRef, receipts: &[String]) -> Vec<QueueFailure> {
            if self.deletes_denied {
                return receipts
                    .iter()
                    .map(|r| QueueFailure {
                        receipt: r.clone(),
                        kind: FailureKind::Denied,
                        detail: "HTTP 403 AccessDenied".into(),
                    })
                    .collect();
            }
            let mut entries = self.entries.lock().unwrap();
            for entry in entries.iter_mut() {
                if matches!(&entry.state, State::InFlight { receipt, .. } if receipts.contains(receipt))
                {
                    entry.state = State::Deleted;
                }
            }
            Vec::new()
        }

        async fn set_visibility(
            &self,
            _queue: &QueueRef,
            receipts: &[String],
            seconds: i32,
        ) -> Vec<QueueFailure> {
            let mut entries = self.entries.lock().unwrap();
            for entry in entries.iter_mut() {
                if let State::InFlight { receipt, until } = &mut entry.state {
                    if receipts.contains(receipt) {
                        *until = Instant::now() + Duration::from_secs(seconds as u64);
                    }
                }
            }
            MemorySource::expire(&mut entries);
            Vec::new()
        }
    }

    impl MessageSource for Arc<MemorySource> {
        async fn receive(
            &self,
            queue: &QueueRef,
            max: usize,
            wait_secs: i32,
            visibility_secs: i32,
        ) -> Result<Vec<ReceivedMessage>, ReceiveError> {
            {
                let mut failures = self.transient_receive_failures.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    return Err(ReceiveError {
                        action: "ReceiveMessage",
                        queue: queue.name.clone(),
                        detail: "HTTP 500 InternalError".into(),
                        kind: FailureKind::Transient,
                    });
                }
            }
            let started = Instant::now();
            let mut taken = self.take(max, visibility_secs);
            if taken.is_empty() && wait_secs > 0 {
                // Like moto: a long poll is not woken when a group unlocks.
                tokio::time::sleep(Duration::from_secs(wait_secs as u64)).await;
                taken = self.take(max, visibility_secs);
            }
            self.receives
                .lock()
                .unwrap()
                .push((started, wait_secs, taken.len()));
            Ok(taken)
        }

        async fn depth(&self, _queue: &QueueRef) -> Result<Depth, ReceiveError> {
            let mut entries = self.entries.lock().unwrap();
            MemorySource::expire(&mut entries);
            let count =
                |f: fn(&State) -> bool| entries.iter().filter(|e| f(&e.state)).count() as u64;
            Ok(Depth {
                visible: count(|s| *s == State::Visible),
                in_flight: count(|s| matches!(s, State::InFlight { .. })),
                delayed: 0,
            })
        }
    }

    /// A bucket honouring `If-None-Match: *`; each PUT takes 50 ms, and
    /// the first `transient_failures` fail with a 503.
    #[derive(Default)]
    struct MemoryStore {
        objects: Mutex<BTreeMap<String, String>>,
        transient_failures: Mutex<u32>,
    }

    impl ArchiveStore for Arc<MemoryStore> {
        async fn put_if_absent(
            &self,
            object: &crate::pipeline::ArchiveObject<'_>,
        ) -> Result<PutOutcome, StoreError> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            {
                let mut failures = self.transient_failures.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    return Err(StoreError {
                        kind: FailureKind::Transient,
                        detail: "HTTP 503 SlowDown".into(),
                    });
                }
            }
            let mut objects = self.objects.lock().unwrap();
            if objects.contains_key(&object.key) {
                return Ok(PutOutcome::AlreadyExists);
            }
            objects.insert(object.key.clone(), object.message_id.to_string());
            Ok(PutOutcome::Created)
        }

        async fn stored_message_id(&self, key: &str) -> Result<Option<String>, StoreError> {
            Ok(self.objects.lock().unwrap().get(key).cloned())
        }
    }

    /// Routes every message to `acme/{id}.json`.
    struct KeyById;

    impl BatchRouter for KeyById {
        fn route(
            &mut self,
            _queue: &QueueRef,
            messages: &[ReceivedMessage],
        ) -> Vec<Result<Placement, RouteFailure>> {
            messages
                .iter()
                .map(|m| {
                    Ok(Placement {
                        tenant: "acme".into(),
                        key: format!("acme/{}.json", m.message_id),
                        time_ms: 1,
                    })
                })
                .collect()
        }
    }

    struct Harness {
        source: Arc<MemorySource>,
        store: Arc<MemoryStore>,
        queue: QueueRef,
        health: Arc<QueueHealth>,
        stop: watch::Sender<bool>,
        worker: QueueWorker<Arc<MemorySource>, Arc<MemoryStore>, KeyById>,
    }

    fn harness(source: MemorySource, fifo: bool, drain: bool) -> Harness {
        let source = Arc::new(source);
        let store = Arc::new(MemoryStore::default());
        let queue = QueueRef {
            url: "http://sqs/acme-q".into(),
            name: if fifo { "acme-q.fifo" } else { "acme-q" }.into(),
            arn: "arn:aws:sqs:us-east-1:123456789012:acme-q".into(),
            fifo,
        };
        let shared = Arc::new(Shared {
            source: source.clone(),
            store: store.clone(),
            counters: Arc::new(Counters::default()),
            permits: Arc::new(Semaphore::new(32)),
            settings: WorkerSettings {
                batch_size: 10,
                wait_secs: if drain { 2 } else { 20 },
                visibility_secs: 10,
                drain,
                depth_every: None,
                pipeline: PipelineSettings::default(),
            },
        });
        let health = QueueHealth::new(&queue, "archive");
        let (stop, shutdown) = watch::channel(false);
        let worker = QueueWorker::new(shared, KeyById, queue.clone(), health.clone(), shutdown);
        Harness {
            source,
            store,
            queue,
            health,
            stop,
            worker,
        }
    }

    /// Runs a daemon worker until `until` holds (checked every 100 ms of
    /// virtual time) or `limit` passes, then stops it.
    async fn run_daemon_until(
        h: Harness,
        limit: Duration,
        until: impl Fn(&MemorySource) -> bool,
    ) -> (Harness, QueueEnd, Duration) {
        let Harness {
            source,
            store,
            queue,
            health,
            stop,
            worker,
        } = h;
        let started = Instant::now();
        let task = tokio::spawn(worker.run());
        while !until(&source) && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = started.elapsed();
        stop.send(true).unwrap();
        let end = task.await.unwrap();
        let (_, shutdown) = watch::channel(false);
        let worker = QueueWorker::new(
            Arc::new(Shared {
                source: source.clone(),
                store: store.clone(),
                counters: Arc::new(Counters::default()),
                permits: Arc::new(Semaphore::new(1)),
                settings: WorkerSettings {
                    batch_size: 1,
                    wait_secs: 0,
                    visibility_secs: 10,
                    drain: true,
                    depth_every: None,
                    pipeline: PipelineSettings::default(),
                },
            }),
            KeyById,
            queue.clone(),
            health.clone(),
            shutdown,
        );
        let h = Harness {
            source,
            store,
            queue,
            health,
            stop,
            worker,
        };
        (h, end, took)
    }

    #[tokio::test(start_paused = true)]
    async fn a_fifo_group_backlog_is_not_held_up_by_long_polls() {
        let h = harness(MemorySource::with(60, Some("prisma")), true, false);
        let (h, _, took) =
            run_daemon_until(h, Duration::from_secs(600), |s| s.deleted() == 60).await;
        assert_eq!(h.source.deleted(), 60);
        assert_eq!(h.store.objects.lock().unwrap().len(), 60);
        // Six batches of 50 ms PUTs; a long poll behind each would cost 20 s.
        assert!(took < Duration::from_secs(5), "took {took:?}");
        let receives = h.source.receives.lock().unwrap().clone();
        for (_, wait, got) in &receives {
            assert!(
                *wait == 0 || *got > 0,
                "a long poll came back empty while the group had messages: {receives:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_standard_queue_keeps_receiving_while_batches_settle() {
        let h = harness(MemorySource::with(40, None), false, false);
        let (h, _, took) =
            run_daemon_until(h, Duration::from_secs(600), |s| s.deleted() == 40).await;
        assert_eq!(h.source.deleted(), 40);
        // Three batches (30 of the 32 permits) were received before the first
        // settled, the fourth as soon as one did: the PUTs overlap.
        let receives = h.source.receives.lock().unwrap().clone();
        let sizes: Vec<_> = receives.iter().take(4).map(|r| r.2).collect();
        assert_eq!(sizes, [10, 10, 10, 10]);
        assert!(
            receives[..3].iter().all(|r| r.0 == receives[0].0),
            "{receives:?}"
        );
        assert!(
            receives[3].0 - receives[0].0 <= Duration::from_millis(60),
            "{receives:?}"
        );
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert!(
            h.source.waits().iter().all(|w| *w == 20),
            "daemon long-polls"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_when_the_depth_is_zero_without_a_final_long_poll() {
        let h = harness(MemorySource::with(25, Some("prisma")), true, true);
        let started = Instant::now();
        let end = h.worker.run().await;
        assert!(end.verified_empty, "{end:?}");
        assert_eq!(end.left, Left::default());
        assert_eq!(h.source.deleted(), 25);
        // Three batches of sequential 50 ms PUTs (one group); a 2 s long poll
        // per batch would add 6 s.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let receives = h.source.receives.lock().unwrap().clone();
        assert!(
            receives.iter().all(|(_, wait, got)| *wait == 0 || *got > 0),
            "no long poll waited in vain: {receives:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_waits_for_a_group_held_by_another_consumer() {
        let source = MemorySource::with(10, Some("prisma"));
        source.hold_first(7);
        let h = harness(source, true, true);
        let started = Instant::now();
        let end = h.worker.run().await;
        assert!(end.verified_empty, "{end:?}");
        assert_eq!(
            h.source.deleted(),
            10,
            "all archived once the group came back"
        );
        assert!(started.elapsed() >= Duration::from_secs(7));
        assert_eq!(h.store.objects.lock().unwrap().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_whose_deletes_are_refused_says_what_is_left_and_why() {
        let source = MemorySource {
            deletes_denied: true,
            ..MemorySource::with(20, Some("prisma"))
        };
        let h = harness(source, true, true);
        let end = h.worker.run().await;
        assert!(!end.verified_empty);
        assert_eq!(
            end.left,
            Left {
                messages: 20,
                not_received: 10,
                delete_failed: 10,
                archive_failed: 0,
                queues: 1,
            }
        );
        assert!(!h.health.is_up());
        assert_eq!(
            h.store.objects.lock().unwrap().len(),
            10,
            "archived, not deleted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_daemon_pauses_a_queue_whose_deletes_are_refused() {
        let source = MemorySource {
            deletes_denied: true,
            ..MemorySource::with(10, None)
        };
        let h = harness(source, false, false);
        let (h, _, _) = run_daemon_until(h, Duration::from_secs(100), |_| false).await;
        let receives = h.source.receives.lock().unwrap().clone();
        // At 0 s: one batch, and a long poll that returns the same messages
        // when their 10 s timeout ends (the refusal is not known yet). Once
        // it is (20 s), receiving pauses 30 s; the probe at 50 s is refused
        // again and the pause doubles. Without the pause the messages would
        // come back every 10-20 s.
        assert_eq!(receives.len(), 3, "{receives:?}");
        assert!(
            receives[2].0 - receives[1].0 >= Duration::from_secs(50),
            "{receives:?}"
        );
        assert!(!h.health.is_up());
    }

    #[tokio::test(start_paused = true)]
    async fn transient_receive_failures_back_off_and_recover() {
        let source = MemorySource {
            transient_receive_failures: Mutex::new(3),
            ..MemorySource::with(15, None)
        };
        let h = harness(source, false, true);
        let started = Instant::now();
        let end = h.worker.run().await;
        assert!(end.verified_empty, "{end:?}");
        assert_eq!(h.source.deleted(), 15);
        // 0.5 + 1 + 2 s of back-off before the first receive went through.
        assert!(
            started.elapsed() >= Duration::from_millis(3500),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retired_queue_stores_and_deletes_what_it_received_then_ends() {
        let h = harness(MemorySource::with(40, None), false, false);
        // A PUT to retry: a shutdown would release its message instead.
        *h.store.transient_failures.lock().unwrap() = 1;
        let (retire, stop_receiving) = watch::channel(false);
        let task = tokio::spawn(h.worker.retirable(stop_receiving).run());
        // Retired while its first batches are being stored (50 ms a PUT),
        // before the failed PUT is tried again (200 ms later).
        tokio::time::sleep(Duration::from_millis(10)).await;
        retire.send(true).unwrap();
        let end = task.await.unwrap();
        let received: usize = h.source.receives.lock().unwrap().iter().map(|r| r.2).sum();
        assert!(received > 0 && received < 40, "{received}");
        // Unlike a shutdown, nothing is released: all of it settles.
        assert_eq!(h.source.deleted(), received, "stored, then deleted");
        assert_eq!(h.store.objects.lock().unwrap().len(), received);
        assert!(!end.gone);
        drop(h.stop);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_settles_what_is_in_hand_and_stops_receiving() {
        let h = harness(MemorySource::with(30, None), false, false);
        let (h, end, _) = run_daemon_until(h, Duration::from_millis(10), |_| false).await;
        assert!(!end.verified_empty, "a daemon verifies nothing");
        let received: usize = h.source.receives.lock().unwrap().iter().map(|r| r.2).sum();
        assert_eq!(
            h.source.deleted(),
            received,
            "everything received was settled"
        );
        assert_eq!(h.store.objects.lock().unwrap().len(), received);
    }
}
