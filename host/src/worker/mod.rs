//! The receive loop of one queue, the spine of `run`: each batch goes
//! source → route → store → settle (`batch.rs`), with back-pressure from the
//! store, FIFO-aware polling, the drain's end check (`end.rs`), back-off on
//! failures and pauses on refusals; `discovery.rs` keeps one loop per queue
//! as queues come and go.
//!
//! It is written against the stages' ports — [`MessageSource`],
//! [`BatchRouter`], [`ArchiveStore`] and [`MessageQueue`] — so its decisions
//! are unit-tested against the in-memory ports of `crate::testing` (virtual
//! time, milliseconds per test, `tests.rs`); SQS, the component and S3
//! implement them for real, and the end-to-end tests run them against a real
//! endpoint.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::aws::FailureKind;
use crate::observe::health::{Action, QueueHealth};
use crate::observe::metrics::Counters;
use crate::route::BatchRouter;
use crate::settle::{MessageQueue, SettleSettings, Settled};
use crate::shutdown::stopped;
use crate::source::{Delivery, MessageSource, QueueRef, ReceiveError};
use crate::store::{ArchiveStore, Settlement, StoreSettings};

mod batch;
pub mod discovery;
mod end;
#[cfg(test)]
mod tests;

use end::LeftReason;
pub use end::{Left, QueueEnd};

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
    /// The store stage's settings.
    pub store: StoreSettings,
    /// The settle stage's settings.
    pub settle: SettleSettings,
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

/// Permits to store `messages` at once, shared with every queue's batches.
async fn reserve(permits: &Arc<Semaphore>, messages: usize) -> OwnedSemaphorePermit {
    permits
        .clone()
        .acquire_many_owned(messages as u32)
        .await
        .expect("the semaphore is never closed")
}

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
    batches: JoinSet<Vec<Settled>>,
    /// Messages received and still in the queue, by id.
    left: HashMap<String, LeftReason>,
    /// How long receiving pauses after the queue refused an action.
    pause: Duration,
    paused_until: Option<Instant>,
}

impl<Src, St, R> QueueWorker<Src, St, R>
where
    Src: MessageSource + MessageQueue,
    St: ArchiveStore + 'static,
    R: BatchRouter,
{
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
            // A FIFO queue's groups stay locked while our own batches from it
            // settle: a long poll then waits its full time for nothing.
            let wait = if !long_poll || (self.queue.fifo && !self.batches.is_empty()) {
                0
            } else {
                self.shared.settings.wait_secs
            };
            // Receive only what can be stored now: back-pressure from S3.
            // A long poll does not reserve: an empty one holds its
            // reservation for its whole wait, so with `--concurrency 32`
            // only three of hundreds of queues were polled at a time. Its
            // batch reserves on arrival instead, and the loop receives no
            // more until it has, so at most one batch per queue waits so.
            let reserved = if wait == 0 {
                tokio::select! {
                    permits = reserve(&self.shared.permits, self.shared.settings.batch_size) => Some(permits),
                    _ = stopped(&mut self.shutdown) => break,
                }
            } else {
                None
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
                drop(reserved);
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
            let permits = match reserved {
                Some(permits) => permits,
                // Not raced with the shutdown: the batches that hold the
                // permits settle (or release) promptly then, and this batch
                // is released by its own settle stage.
                None => reserve(&self.shared.permits, messages.len()).await,
            };
            let n = messages.len() as u64;
            self.shared
                .counters
                .received
                .fetch_add(n, Ordering::Relaxed);
            self.health.received.fetch_add(n, Ordering::Relaxed);
            let routed = self.router.route(&self.queue, messages);
            let (shared, queue, health, shutdown) = (
                self.shared.clone(),
                self.queue.clone(),
                self.health.clone(),
                self.settle_shutdown.clone(),
            );
            self.batches.spawn(async move {
                let _permits = permits;
                batch::store_and_settle(&shared, &queue, &health, routed, shutdown).await
            });
        }
        self.end(false).await
    }

    /// One receive; `None` when a shutdown abandoned an idle long poll.
    async fn receive(&mut self, wait_secs: i32) -> Option<Result<Vec<Delivery>, ReceiveError>> {
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
    fn absorb(&mut self, result: Result<Vec<Settled>, tokio::task::JoinError>) {
        let settled = match result {
            Ok(settled) => settled,
            Err(error) => {
                tracing::error!(queue = %self.queue.name, %error, "a batch task failed; its messages come back after their visibility timeout");
                return;
            }
        };
        let mut archived = 0;
        for message in &settled {
            let id = &message.delivery.message.message_id;
            if message.deleted() {
                archived += 1;
                self.left.remove(id);
            } else if message.settlement.deletable() {
                self.left.insert(id.clone(), LeftReason::DeleteFailed);
            } else if matches!(message.settlement, Settlement::Kept { .. }) {
                self.left.insert(id.clone(), LeftReason::ArchiveFailed);
            } else {
                // Released at shutdown: visible again, as if never received.
                self.left.remove(id);
            }
        }
        let undeleted: Vec<_> = settled
            .iter()
            .filter_map(|s| s.undeleted.as_ref())
            .collect();
        self.health.archived.fetch_add(archived, Ordering::Relaxed);
        self.health
            .delete_failures
            .fetch_add(undeleted.len() as u64, Ordering::Relaxed);

        let mut refused = false;
        if let Some((reason, denied)) = crate::settle::store_denied(&settled) {
            self.health
                .refused(Action::Put, FailureKind::Denied, reason, denied);
            refused = true;
        }
        // Archived, but the queue was deleted with them: nothing to fix.
        if undeleted.iter().any(|f| f.kind == FailureKind::Gone) {
            self.gone = true;
        }
        let permanent: Vec<_> = undeleted
            .iter()
            .filter(|f| !f.kind.is_transient() && f.kind != FailureKind::Gone)
            .collect();
        if let Some(failure) = permanent.first() {
            self.health.refused(
                Action::Delete,
                failure.kind,
                &failure.detail,
                permanent.len() as u64,
            );
            refused = true;
        } else if let Some(failure) = undeleted.iter().find(|f| f.kind.is_transient()) {
            tracing::warn!(
                queue = %self.queue.name, messages = undeleted.len(), error = %failure.detail,
                "deletes still failing after retries; the messages come back and are recognised as archived"
            );
        }
        if refused {
            if !self.shared.settings.drain {
                tracing::warn!(queue = %self.queue.name, pause_secs = self.pause.as_secs(), "receiving from the queue paused until it works again");
                self.paused_until = Some(Instant::now() + self.pause);
                self.pause = (self.pause * 2).min(MAX_PAUSE);
            }
        } else if archived > 0 && undeleted.is_empty() {
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
