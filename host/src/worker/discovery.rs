//! The set of queues `run` polls, and `--queue-prefix` following the account.
//!
//! [`Fleet`] owns one [`QueueWorker`] per queue: it starts them, drops a
//! queue once its worker has ended (its batches settled: stored, then
//! deleted), and keeps `/metrics`' [`PolledQueues`] (the
//! `audit_archiver_queues` gauge and the per-queue series) in step. With
//! `--queue-prefix` and `--discovery-interval-secs` above 0, [`poll`] lists
//! the queues again every interval and applies the difference ([`changes`]):
//! a new queue is polled from that listing on; a queue absent from it was
//! deleted and stops receiving, and is dropped once what it holds is settled.
//! A queue whose receive answers that it does not exist
//! ([`FailureKind::Gone`]) ends the same way, at once, whatever the mode.
//! Each change is one log line (`queue added url=… queues=N`, `queue removed
//! url=… queues=N reason=deleted|gone`); a failed listing changes nothing.
//!
//! Nothing is lost or duplicated across a change: a dropped queue's batches
//! settle in full before it is forgotten (or are released by the run's
//! shutdown, as any batch), and a queue is never polled by two workers: one
//! that reappears while its old worker still settles is added back by the
//! listing after that worker has ended.
//!
//! [`FailureKind::Gone`]: crate::aws::FailureKind::Gone

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::{Id, JoinError, JoinSet};

use super::{Left, QueueEnd, QueueWorker, Shared};
use crate::observe::health::{PolledQueues, QueueHealth};
use crate::route::BatchRouter;
use crate::settle::MessageQueue;
use crate::shutdown::stopped;
use crate::source::sqs::{QueueError, SqsSource};
use crate::source::{MessageSource, QueueRef};
use crate::store::ArchiveStore;

/// What one listing changes in the polled set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Listed, and polled by no worker: start polling them.
    pub added: Vec<String>,
    /// Polled, and not listed: deleted; stop receiving, drop once settled.
    pub removed: Vec<String>,
}

/// The difference between the queues polled and a listing, by URL.
/// `polling` are the queues receiving now; `settling` those already being
/// dropped, whose workers have not ended yet: they are neither removed again
/// nor added back until their worker has ended (a queue has at most one
/// worker).
pub fn changes(polling: &BTreeSet<&str>, settling: &BTreeSet<&str>, listed: &[String]) -> Changes {
    let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    Changes {
        added: listed
            .iter()
            .filter(|url| !polling.contains(*url) && !settling.contains(*url))
            .map(|url| url.to_string())
            .collect(),
        removed: polling
            .iter()
            .filter(|url| !listed.contains(*url))
            .map(|url| url.to_string())
            .collect(),
    }
}

/// Why a queue was dropped, as its log line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Absent from a listing.
    Deleted,
    /// A receive answered that it does not exist.
    Gone,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Gone => "gone",
        }
    }
}

/// One polled queue.
struct Polled {
    /// Tells its worker to stop receiving (`None` once told).
    retire: Option<oneshot::Sender<()>>,
    /// Set once it is being dropped.
    dropping: Option<Reason>,
}

/// Makes the router of a queue's worker.
pub type RouterFactory<R> = Box<dyn FnMut(&QueueRef) -> Result<R, String> + Send>;

/// The queues `run` polls: one worker each.
pub struct Fleet<Src, St, R> {
    shared: Arc<Shared<Src, St>>,
    shutdown: watch::Receiver<bool>,
    bucket: String,
    router: RouterFactory<R>,
    /// What `/metrics` reports.
    reported: PolledQueues,
    /// By URL.
    queues: BTreeMap<String, Polled>,
    workers: JoinSet<QueueEnd>,
    urls: HashMap<Id, String>,
    /// What the ended workers left (`--drain`).
    left: Left,
}

impl<Src: MessageSource + MessageQueue, St: ArchiveStore + 'static, R: BatchRouter>
    Fleet<Src, St, R>
{
    /// An empty fleet: its workers share `shared`, stop on `shutdown`, and
    /// are reported in `reported`.
    pub fn new(
        shared: Arc<Shared<Src, St>>,
        shutdown: watch::Receiver<bool>,
        bucket: &str,
        reported: PolledQueues,
        router: RouterFactory<R>,
    ) -> Self {
        Self {
            shared,
            shutdown,
            bucket: bucket.to_string(),
            router,
            reported,
            queues: BTreeMap::new(),
            workers: JoinSet::new(),
            urls: HashMap::new(),
            left: Left::default(),
        }
    }

    /// How many queues have a worker (those being dropped included).
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether no queue has a worker.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Starts polling `queue`; `false` (logged) when its router cannot be
    /// made.
    pub fn add(&mut self, queue: QueueRef) -> bool {
        if self.queues.contains_key(&queue.url) {
            return true;
        }
        let router = match (self.router)(&queue) {
            Ok(router) => router,
            Err(error) => {
                tracing::error!(queue = %queue.name, %error, "cannot instantiate the routing component");
                return false;
            }
        };
        let health = QueueHealth::new(&queue, &self.bucket);
        // The worker stops receiving on the run's shutdown or when the queue
        // is dropped; its batches still settle until the run's shutdown.
        let (stop_tx, stop_rx) = watch::channel(false);
        let (retire_tx, retire_rx) = oneshot::channel();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stopped(&mut shutdown) => {}
                _ = retire_rx => {}
                // The worker ended by itself.
                _ = stop_tx.closed() => return,
            }
            let _ = stop_tx.send(true);
        });
        let url = queue.url.clone();
        let worker = QueueWorker::new(
            self.shared.clone(),
            router,
            queue,
            health.clone(),
            self.shutdown.clone(),
        )
        .retirable(stop_rx);
        let id = self.workers.spawn(worker.run()).id();
        self.urls.insert(id, url.clone());
        self.reported.insert(health);
        self.queues.insert(
            url,
            Polled {
                retire: Some(retire_tx),
                dropping: None,
            },
        );
        true
    }

    /// Stops receiving from the queue at `url`, which a listing no longer
    /// has; it is dropped once its worker has settled what it holds.
    fn retire(&mut self, url: &str) {
        if let Some(polled) = self.queues.get_mut(url) {
            polled.dropping.get_or_insert(Reason::Deleted);
            if let Some(retire) = polled.retire.take() {
                let _ = retire.send(());
            }
        }
    }

    /// Applies a listing: adds the new queues (`describe` gives each one's
    /// name, ARN and type) and retires the absent ones, one log line each.
    async fn apply<D, F>(&mut self, listed: &[String], mut describe: D)
    where
        D: FnMut(String) -> F,
        F: std::future::Future<Output = Result<QueueRef, QueueError>>,
    {
        let (polling, settling): (BTreeSet<&str>, BTreeSet<&str>) = {
            let (polling, settling): (Vec<_>, Vec<_>) = self
                .queues
                .iter()
                .partition(|(_, polled)| polled.dropping.is_none());
            (
                polling.into_iter().map(|(url, _)| url.as_str()).collect(),
                settling.into_iter().map(|(url, _)| url.as_str()).collect(),
            )
        };
        let Changes { added, removed } = changes(&polling, &settling, listed);
        for url in removed {
            // Logged once dropped, when its worker has ended.
            tracing::debug!(url = %url, "queue deleted; settling what it holds before it is dropped");
            self.retire(&url);
        }
        for url in added {
            match describe(url.clone()).await {
                Ok(queue) => {
                    if self.add(queue) {
                        tracing::info!(url = %url, queues = self.len(), "queue added");
                    }
                }
                // Deleted again since the listing.
                Err(QueueError::NotFound(_)) => {}
                Err(error) => tracing::warn!(
                    url = %url, %error,
                    "cannot read a new queue's attributes; trying again at the next listing"
                ),
            }
        }
    }

    /// Waits for the next worker to end and drops its queue; `None` when no
    /// worker runs.
    pub async fn next_end(&mut self) -> Option<()> {
        let result = self.workers.join_next_with_id().await?;
        self.ended(result);
        Some(())
    }

    fn ended(&mut self, result: Result<(Id, QueueEnd), JoinError>) {
        let (id, end) = match result {
            Ok((id, end)) => (id, Ok(end)),
            Err(error) => (error.id(), Err(error)),
        };
        let url = self.urls.remove(&id).unwrap_or_default();
        let polled = self.queues.remove(&url);
        self.reported.remove(&url);
        let end = match end {
            Ok(end) => end,
            Err(panic) => {
                tracing::error!(url = %url, error = %panic, "a queue worker panicked");
                self.left.queues += 1;
                return;
            }
        };
        if !end.verified_empty {
            self.left.add(&end.left);
        }
        let reason = match polled.and_then(|p| p.dropping) {
            Some(reason) => Some(reason),
            None if end.gone => Some(Reason::Gone),
            None => None,
        };
        if let Some(reason) = reason {
            tracing::info!(
                url = %url,
                queues = self.len(),
                reason = %reason.as_str(),
                "queue removed"
            );
        }
    }

    /// Waits for every worker to end.
    pub async fn settle(&mut self) {
        while self.next_end().await.is_some() {}
    }

    /// What `--drain` left in the queues, over every ended worker.
    pub fn left(&self) -> Left {
        self.left
    }
}

/// How `run` follows `--queue-prefix`.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The prefix.
    pub prefix: String,
    /// How often the queues are listed again.
    pub every: Duration,
}

/// How polling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shut down by a signal (or, with `--drain`, every queue settled).
    Stopped,
    /// Without discovery, every queue was deleted: nothing is left to poll.
    NoQueueLeft,
}

/// Runs `fleet` until the run's shutdown (or, with `--drain`, until every
/// worker has ended), listing the queues again every `discovery.every`
/// when given. Every worker has ended when it returns.
pub async fn poll<St: ArchiveStore + 'static, R: BatchRouter>(
    fleet: &mut Fleet<SqsSource, St, R>,
    discovery: Option<Discovery>,
) -> Ended {
    let mut shutdown = fleet.shutdown.clone();
    let mut ticker = discovery.as_ref().map(|d| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + d.every, d.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let ended = loop {
        if ticker.is_none() && fleet.workers.is_empty() {
            break Ended::Stopped;
        }
        tokio::select! {
            _ = stopped(&mut shutdown) => break Ended::Stopped,
            Some(result) = fleet.workers.join_next_with_id(), if !fleet.workers.is_empty() => {
                fleet.ended(result);
                if ticker.is_none() && fleet.workers.is_empty() && !fleet.shared.settings.drain && !*shutdown.borrow() {
                    break Ended::NoQueueLeft;
                }
            }
            _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => {
                let prefix = &discovery.as_ref().expect("a ticker comes with discovery").prefix;
                tokio::select! {
                    _ = relist(fleet, prefix) => {}
                    _ = stopped(&mut shutdown) => break Ended::Stopped,
                }
            }
        }
    };
    fleet.settle().await;
    ended
}

/// Lists the queues again and applies the difference; a failed listing
/// changes nothing.
async fn relist<St: ArchiveStore + 'static, R: BatchRouter>(
    fleet: &mut Fleet<SqsSource, St, R>,
    prefix: &str,
) {
    let source = fleet.shared.source.clone();
    match source.list(prefix).await {
        Ok(listed) => {
            fleet
                .apply(&listed, |url| {
                    let source = source.clone();
                    async move { source.describe(url).await }
                })
                .await
        }
        Err(error) => tracing::warn!(
            %error,
            "listing the queues failed; polling the same queues until the next listing"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set<'a>(urls: &[&'a str]) -> BTreeSet<&'a str> {
        urls.iter().copied().collect()
    }

    fn listing(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn a_new_queue_is_added_and_an_absent_one_removed() {
        let changed = changes(&set(&["q/a", "q/b"]), &set(&[]), &listing(&["q/b", "q/c"]));
        assert_eq!(
            changed,
            Changes {
                added: vec!["q/c".into()],
                removed: vec!["q/a".into()],
            }
        );
    }

    #[test]
    fn the_same_listing_changes_nothing() {
        let polled = set(&["q/a", "q/b"]);
        assert_eq!(
            changes(&polled, &set(&[]), &listing(&["q/b", "q/a"])),
            Changes::default()
        );
    }

    #[test]
    fn an_empty_listing_removes_every_queue_and_the_first_adds_every_one() {
        let all = changes(&set(&["q/a", "q/b"]), &set(&[]), &[]);
        assert_eq!(all.removed, ["q/a", "q/b"]);
        assert!(all.added.is_empty());
        let first = changes(&set(&[]), &set(&[]), &listing(&["q/b", "q/a"]));
        assert_eq!(first.added, ["q/a", "q/b"], "in order, once each");
    }

    #[test]
    fn a_queue_still_settling_is_neither_removed_again_nor_polled_twice() {
        // q/a is being dropped: absent again, it is not retired twice; back
        // in the listing, it waits until its old worker has ended.
        let absent = changes(&set(&["q/b"]), &set(&["q/a"]), &listing(&["q/b"]));
        assert_eq!(absent, Changes::default());
        let back = changes(&set(&["q/b"]), &set(&["q/a"]), &listing(&["q/a", "q/b"]));
        assert_eq!(back, Changes::default());
        // Once it has ended, the next listing adds it back.
        let later = changes(&set(&["q/b"]), &set(&[]), &listing(&["q/a", "q/b"]));
        assert_eq!(later.added, ["q/a"]);
    }

    #[test]
    fn a_listing_with_duplicates_adds_a_queue_once() {
        let changed = changes(&set(&[]), &set(&[]), &listing(&["q/a", "q/a"]));
        assert_eq!(changed.added, ["q/a"]);
    }
}
