//! The loop's decisions against an in-memory queue that keeps SQS's
//! rules that matter here (visibility timeouts, FIFO groups locked while
//! a message of theirs is in flight, long polls that wait their whole
//! time when nothing is available), on tokio's paused clock: a test's
//! minutes of virtual time take milliseconds.

use std::sync::Mutex;

use audit_archiver_transform::Placement;

use super::*;
use crate::route::Routed;
use crate::source::ReceivedMessage;
use crate::testing::{MemoryQueue, MemoryStore};

/// Routes every message to `acme/{id}.json`.
struct KeyById;

impl BatchRouter for KeyById {
    fn route<M: AsRef<ReceivedMessage>>(
        &mut self,
        _queue: &QueueRef,
        batch: Vec<M>,
    ) -> Vec<Routed<M>> {
        batch
            .into_iter()
            .map(|message| {
                let key = format!("acme/{}.json", message.as_ref().message_id);
                Routed {
                    message,
                    route: Ok(Placement {
                        tenant: "acme".into(),
                        key,
                        time_ms: 1,
                    }),
                }
            })
            .collect()
    }
}

/// Batches of 10, 20-s long polls (2 s when draining).
fn settings(drain: bool) -> WorkerSettings {
    WorkerSettings {
        batch_size: 10,
        wait_secs: if drain { 2 } else { 20 },
        visibility_secs: 10,
        drain,
        depth_every: None,
        store: StoreSettings::default(),
        settle: SettleSettings::default(),
    }
}

struct Harness {
    source: Arc<MemoryQueue>,
    store: Arc<MemoryStore>,
    queue: QueueRef,
    health: Arc<QueueHealth>,
    stop: watch::Sender<bool>,
    worker: QueueWorker<Arc<MemoryQueue>, Arc<MemoryStore>, KeyById>,
}

fn harness(source: MemoryQueue, fifo: bool, drain: bool) -> Harness {
    let source = Arc::new(source);
    // Each PUT takes 50 ms.
    let store = Arc::new(MemoryStore {
        put_latency: Duration::from_millis(50),
        ..MemoryStore::default()
    });
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
        settings: settings(drain),
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
    until: impl Fn(&MemoryQueue) -> bool,
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
                store: StoreSettings::default(),
                settle: SettleSettings::default(),
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
    let h = harness(MemoryQueue::with(60, Some("prisma")), true, false);
    let (h, _, took) =
        run_daemon_until(h, Duration::from_secs(600), |s| s.deleted_count() == 60).await;
    assert_eq!(h.source.deleted_count(), 60);
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
async fn idle_long_polls_do_not_hold_the_store_permits() {
    // Twelve idle queues and permits for three batches of ten: were the
    // permits taken before each long poll, three queues would be polled at
    // a time, each for 20 s, and a message on the others would wait minutes.
    let source = Arc::new(MemoryQueue::default());
    let shared = Arc::new(Shared {
        source: source.clone(),
        store: Arc::new(MemoryStore::default()),
        counters: Arc::new(Counters::default()),
        permits: Arc::new(Semaphore::new(32)),
        settings: settings(false),
    });
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for q in 0..12 {
        let queue = QueueRef {
            url: format!("http://sqs/q{q}"),
            name: format!("q{q}"),
            arn: format!("arn:aws:sqs:us-east-1:123456789012:q{q}"),
            fifo: false,
        };
        let health = QueueHealth::new(&queue, "archive");
        let worker = QueueWorker::new(shared.clone(), KeyById, queue, health, shutdown.clone());
        workers.spawn(worker.run());
    }
    tokio::time::sleep(Duration::from_secs(21)).await;
    let receives = source.receives.lock().unwrap().clone();
    let at_once = receives.iter().filter(|r| r.0 == started).count();
    assert_eq!(at_once, 12, "long polls begun at start: {receives:?}");
    // A batch that arrives on such a poll reserves on arrival and is stored.
    source.push(25, None);
    tokio::time::sleep(Duration::from_secs(21)).await;
    assert_eq!(source.deleted_count(), 25);
    assert_eq!(shared.permits.available_permits(), 32);
    stop.send(true).unwrap();
    while let Some(end) = workers.join_next().await {
        end.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_standard_queue_keeps_receiving_while_batches_settle() {
    let h = harness(MemoryQueue::with(40, None), false, false);
    let (h, _, took) =
        run_daemon_until(h, Duration::from_secs(600), |s| s.deleted_count() == 40).await;
    assert_eq!(h.source.deleted_count(), 40);
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
    let h = harness(MemoryQueue::with(25, Some("prisma")), true, true);
    let started = Instant::now();
    let end = h.worker.run().await;
    assert!(end.verified_empty, "{end:?}");
    assert_eq!(end.left, Left::default());
    assert_eq!(h.source.deleted_count(), 25);
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
    let source = MemoryQueue::with(10, Some("prisma"));
    source.hold_first(7);
    let h = harness(source, true, true);
    let started = Instant::now();
    let end = h.worker.run().await;
    assert!(end.verified_empty, "{end:?}");
    assert_eq!(
        h.source.deleted_count(),
        10,
        "all archived once the group came back"
    );
    assert!(started.elapsed() >= Duration::from_secs(7));
    assert_eq!(h.store.objects.lock().unwrap().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_drain_whose_deletes_are_refused_says_what_is_left_and_why() {
    let source = MemoryQueue {
        deletes_denied: true,
        ..MemoryQueue::with(20, Some("prisma"))
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
    let source = MemoryQueue {
        deletes_denied: true,
        ..MemoryQueue::with(10, None)
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
    let source = MemoryQueue {
        transient_receive_failures: Mutex::new(3),
        ..MemoryQueue::with(15, None)
    };
    let h = harness(source, false, true);
    let started = Instant::now();
    let end = h.worker.run().await;
    assert!(end.verified_empty, "{end:?}");
    assert_eq!(h.source.deleted_count(), 15);
    // 0.5 + 1 + 2 s of back-off before the first receive went through.
    assert!(
        started.elapsed() >= Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_retired_queue_stores_and_deletes_what_it_received_then_ends() {
    // 32 permits: three batches are being stored and a fourth waits in hand
    // for permits when the queue is retired; the fifth is never received.
    let h = harness(MemoryQueue::with(50, None), false, false);
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
    assert!(received > 0 && received < 50, "{received}");
    // Unlike a shutdown, nothing is released: all of it settles.
    assert_eq!(h.source.deleted_count(), received, "stored, then deleted");
    assert_eq!(h.store.objects.lock().unwrap().len(), received);
    assert!(!end.gone);
    drop(h.stop);
}

#[tokio::test(start_paused = true)]
async fn shutdown_settles_what_is_in_hand_and_stops_receiving() {
    let h = harness(MemoryQueue::with(30, None), false, false);
    let (h, end, _) = run_daemon_until(h, Duration::from_millis(10), |_| false).await;
    assert!(!end.verified_empty, "a daemon verifies nothing");
    let received: usize = h.source.receives.lock().unwrap().iter().map(|r| r.2).sum();
    // Stopped with batches in hand, not before the first receive.
    assert!(received > 0, "nothing was received before the shutdown");
    assert_eq!(
        h.source.deleted_count(),
        received,
        "everything received was settled"
    );
    assert_eq!(h.store.objects.lock().unwrap().len(), received);
}
