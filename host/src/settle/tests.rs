//! The delivery rules, store then settle, against the in-memory ports of
//! `crate::testing`. The same rules are tested end to end in `host/tests/e2e`.

use std::sync::Mutex;
use std::time::Duration;

use audit_archiver_transform::{Placement, RouteError};
use tokio::sync::watch;

use super::*;
use crate::route::{RouteFailure, Routed};
use crate::source::ReceivedMessage;
use crate::store::{quarantine_key, Archived, Origin, StoreSettings, StoreStage};
use crate::testing::{MemoryQueue, MemoryStore};

fn message(id: &str, group: Option<&str>) -> Delivery {
    Delivery {
        receipt_handle: format!("receipt-{id}"),
        message: ReceivedMessage {
            message_id: id.into(),
            body: format!("{{\"id\":\"{id}\"}}"),
            first_receive_ms: Some(1),
            sent_ms: Some(1),
            group_id: group.map(str::to_string),
        },
    }
}

fn placed(key: &str) -> Result<Placement, RouteFailure> {
    Ok(Placement {
        tenant: "acme".into(),
        key: key.into(),
        time_ms: 1,
    })
}

fn queue(fifo: bool) -> QueueRef {
    QueueRef {
        url: "http://q".into(),
        name: "acme-q".into(),
        arn: "arn:aws:sqs:us-east-1:123456789012:acme-q".into(),
        fifo,
    }
}

/// How a test batch is run: from a standard queue, without a shutdown,
/// unless the test says otherwise.
#[derive(Debug, Clone, Copy, Default)]
struct RunAs {
    fifo: bool,
    stop: bool,
}

/// Settles a batch from a standard queue; its settlements.
async fn settle(
    store: &MemoryStore,
    queue_client: &MemoryQueue,
    messages: &[Delivery],
    routes: Vec<Result<Placement, RouteFailure>>,
) -> (Vec<Settlement>, Counters) {
    settle_as(RunAs::default(), store, queue_client, messages, routes).await
}

/// Settles a batch run as `run_as`; its settlements.
async fn settle_as(
    run_as: RunAs,
    store: &MemoryStore,
    queue_client: &MemoryQueue,
    messages: &[Delivery],
    routes: Vec<Result<Placement, RouteFailure>>,
) -> (Vec<Settlement>, Counters) {
    let (settled, counters) = settle_batch_as(run_as, store, queue_client, messages, routes).await;
    (
        settled.into_iter().map(|s| s.settlement).collect(),
        counters,
    )
}

/// Settles a batch from a standard queue; the whole outcome.
async fn settle_batch(
    store: &MemoryStore,
    queue_client: &MemoryQueue,
    messages: &[Delivery],
    routes: Vec<Result<Placement, RouteFailure>>,
) -> (Vec<Settled>, Counters) {
    settle_batch_as(RunAs::default(), store, queue_client, messages, routes).await
}

async fn settle_batch_as(
    RunAs { fifo, stop }: RunAs,
    store: &MemoryStore,
    queue_client: &MemoryQueue,
    messages: &[Delivery],
    routes: Vec<Result<Placement, RouteFailure>>,
) -> (Vec<Settled>, Counters) {
    let counters = Counters::default();
    let (_tx, shutdown) = watch::channel(stop);
    let queue = queue(fifo);
    let store_settings = StoreSettings {
        retry_initial: Duration::from_millis(1),
        retry_max: Duration::from_millis(4),
        ..StoreSettings::with_quarantine_prefix("_quarantine/".into())
    };
    let settle_settings = SettleSettings {
        retry_initial: Duration::from_millis(1),
        retry_max: Duration::from_millis(4),
        delete_retry_budget: Duration::from_millis(50),
    };
    let stored = StoreStage {
        store,
        settings: &store_settings,
        counters: &counters,
        shutdown: shutdown.clone(),
    }
    .store(
        &Origin::from(&queue),
        Routed::pair(messages.to_vec(), routes),
    )
    .await;
    let settled = SettleStage {
        queue_client,
        queue: &queue,
        settings: &settle_settings,
        counters: &counters,
        shutdown,
    }
    .settle(stored)
    .await;
    (settled, counters)
}

#[tokio::test]
async fn stores_then_deletes() {
    let (store, sqs) = (MemoryStore::default(), MemoryQueue::default());
    let messages = [message("m1", None), message("m2", None)];
    let (settled, counters) = settle(
        &store,
        &sqs,
        &messages,
        vec![placed("acme/a.json"), placed("acme/b.json")],
    )
    .await;
    assert_eq!(
        settled[0],
        Settlement::Archived(Archived::Stored("acme/a.json".into()))
    );
    assert_eq!(
        store.objects.lock().unwrap()["acme/b.json"],
        (messages[1].message.body.clone(), "m2".into())
    );
    assert_eq!(sqs.deleted_sorted(), ["receipt-m1", "receipt-m2"]);
    assert_eq!(counters.snapshot().stored, 2);
    assert_eq!(counters.snapshot().deleted, 2);
}

#[tokio::test]
async fn a_redelivery_is_recognised_by_message_id_and_nothing_is_rewritten() {
    let (store, sqs) = (
        MemoryStore::holding(&[("acme/a.json", "original", "m1")]),
        MemoryQueue::default(),
    );
    let (settled, counters) = settle(
        &store,
        &sqs,
        &[message("m1", None)],
        vec![placed("acme/a.json")],
    )
    .await;
    assert_eq!(
        settled[0],
        Settlement::Archived(Archived::AlreadyPresent("acme/a.json".into()))
    );
    assert_eq!(store.objects.lock().unwrap()["acme/a.json"].0, "original");
    assert_eq!(store.objects.lock().unwrap().len(), 1);
    assert_eq!(sqs.deleted.lock().unwrap().as_slice(), ["receipt-m1"]);
    assert_eq!(counters.snapshot().already_present, 1);
}

#[tokio::test]
async fn a_collision_stores_under_the_alternate_key_and_keeps_the_original() {
    let (store, sqs) = (
        MemoryStore::holding(&[("acme/a.json", "first", "m0")]),
        MemoryQueue::default(),
    );
    let (settled, counters) = settle(
        &store,
        &sqs,
        &[message("m1", None)],
        vec![placed("acme/a.json")],
    )
    .await;
    assert_eq!(
        settled[0],
        Settlement::Archived(Archived::StoredAlternate("acme/a-m1.json".into()))
    );
    let objects = store.objects.lock().unwrap();
    assert_eq!(objects["acme/a.json"].0, "first");
    assert_eq!(objects["acme/a-m1.json"].1, "m1");
    assert_eq!(counters.snapshot().collisions, 1);
    assert_eq!(sqs.deleted.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn when_both_names_hold_other_messages_the_message_stays_in_the_queue() {
    let (store, sqs) = (
        MemoryStore::holding(&[("acme/a.json", "x", "m0"), ("acme/a-m1.json", "y", "m9")]),
        MemoryQueue::default(),
    );
    let (settled, counters) = settle(
        &store,
        &sqs,
        &[message("m1", None)],
        vec![placed("acme/a.json")],
    )
    .await;
    assert!(
        matches!(&settled[0], Settlement::Kept { reason, .. } if reason.contains("m1")),
        "{settled:?}"
    );
    assert!(sqs.deleted.lock().unwrap().is_empty());
    assert_eq!(store.objects.lock().unwrap()["acme/a.json"].0, "x");
    assert_eq!(counters.snapshot().failed, 1);
}

#[tokio::test]
async fn rejected_messages_are_quarantined_then_deleted() {
    let (store, sqs) = (MemoryStore::default(), MemoryQueue::default());
    let rejected = Err(RouteFailure::Rejected(RouteError::InvalidBody(
        "not JSON".into(),
    )));
    let unsafe_key = Err(RouteFailure::UnsafePlacement("key ../x".into()));
    let messages = [message("m1", None), message("../../etc", None)];
    let (settled, counters) = settle(&store, &sqs, &messages, vec![rejected, unsafe_key]).await;
    assert_eq!(
        settled[0],
        Settlement::Quarantined {
            key: "_quarantine/acme-q/m1.json".into(),
            reason: "invalid-body: not JSON".into()
        }
    );
    let Settlement::Quarantined { key, .. } = &settled[1] else {
        panic!("{settled:?}")
    };
    assert_eq!(key, "_quarantine/acme-q/..%2F..%2Fetc.json");
    assert_eq!(sqs.deleted.lock().unwrap().len(), 2);
    assert_eq!(counters.snapshot().quarantined, 2);
}

#[tokio::test]
async fn a_failed_quarantine_or_a_trap_keeps_the_message() {
    let store = MemoryStore {
        permanent_failure_prefix: Some("_quarantine/".into()),
        ..MemoryStore::default()
    };
    let sqs = MemoryQueue::default();
    let rejected = Err(RouteFailure::Rejected(RouteError::InvalidBody(
        "not JSON".into(),
    )));
    let trapped = Err(RouteFailure::ComponentFailed("fuel".into()));
    let messages = [message("m1", None), message("m2", None)];
    let (settled, _) = settle(&store, &sqs, &messages, vec![rejected, trapped]).await;
    assert!(
        matches!(&settled[0], Settlement::Kept { reason: r, .. } if r.contains("quarantine failed")),
        "{settled:?}"
    );
    assert!(
        matches!(&settled[1], Settlement::Kept { reason: r, .. } if r.contains("component-trap")),
        "{settled:?}"
    );
    assert!(sqs.deleted.lock().unwrap().is_empty());
    assert!(
        sqs.visibility.lock().unwrap().is_empty(),
        "kept messages wait out their timeout"
    );
}

#[tokio::test]
async fn transient_errors_are_retried_until_stored() {
    let store = MemoryStore {
        transient_failures: Mutex::new(3),
        ..MemoryStore::default()
    };
    let sqs = MemoryQueue::default();
    let (settled, counters) = settle(
        &store,
        &sqs,
        &[message("m1", None)],
        vec![placed("acme/a.json")],
    )
    .await;
    assert_eq!(
        settled[0],
        Settlement::Archived(Archived::Stored("acme/a.json".into()))
    );
    assert_eq!(counters.snapshot().retries, 3);
    assert_eq!(*store.puts.lock().unwrap(), 4);
}

#[tokio::test]
async fn on_shutdown_unstored_messages_are_released_not_deleted() {
    let (store, sqs) = (MemoryStore::default(), MemoryQueue::default());
    let (settled, counters) = settle_as(
        RunAs {
            stop: true,
            ..RunAs::default()
        },
        &store,
        &sqs,
        &[message("m1", None)],
        vec![placed("acme/a.json")],
    )
    .await;
    assert_eq!(settled[0], Settlement::Released);
    assert!(store.objects.lock().unwrap().is_empty());
    assert!(sqs.deleted.lock().unwrap().is_empty());
    assert_eq!(
        sqs.visibility.lock().unwrap().as_slice(),
        [("receipt-m1".to_string(), 0)]
    );
    assert_eq!(counters.snapshot().released, 1);
}

#[tokio::test]
async fn a_fifo_group_stops_at_its_first_failure_and_other_groups_go_on() {
    let (store, sqs) = (MemoryStore::default(), MemoryQueue::default());
    let messages = [
        message("a1", Some("a")),
        message("a2", Some("a")),
        message("a3", Some("a")),
        message("b1", Some("b")),
    ];
    let routes = vec![
        placed("acme/a1.json"),
        Err(RouteFailure::ComponentFailed("limit".into())),
        placed("acme/a3.json"),
        placed("acme/b1.json"),
    ];
    let (settled, _) = settle_as(
        RunAs {
            fifo: true,
            ..RunAs::default()
        },
        &store,
        &sqs,
        &messages,
        routes,
    )
    .await;
    assert!(settled[0].deletable());
    assert!(matches!(settled[1], Settlement::Kept { .. }));
    assert_eq!(settled[2], Settlement::Released, "a3 must not overtake a2");
    assert!(settled[3].deletable());
    assert!(!store.objects.lock().unwrap().contains_key("acme/a3.json"));
    assert_eq!(sqs.deleted_sorted(), ["receipt-a1", "receipt-b1"]);
}

#[tokio::test]
async fn transient_delete_failures_are_retried_until_deleted() {
    let store = MemoryStore::default();
    let sqs = MemoryQueue {
        transient_delete_failures: Mutex::new(2),
        ..MemoryQueue::default()
    };
    let messages = [message("m1", None), message("m2", None)];
    let (outcome, counters) = settle_batch(
        &store,
        &sqs,
        &messages,
        vec![placed("acme/a.json"), placed("acme/b.json")],
    )
    .await;
    assert!(outcome.iter().all(Settled::deleted), "{outcome:?}");
    assert_eq!(*sqs.delete_calls.lock().unwrap(), 3);
    let snapshot = counters.snapshot();
    assert_eq!((snapshot.deleted, snapshot.delete_failures), (2, 0));
    assert_eq!(snapshot.delete_retries, 4);
}

#[tokio::test]
async fn transient_delete_failures_stop_at_the_budget() {
    let store = MemoryStore::default();
    let sqs = MemoryQueue {
        transient_delete_failures: Mutex::new(u32::MAX),
        ..MemoryQueue::default()
    };
    let (outcome, counters) = settle_batch(
        &store,
        &sqs,
        &[message("m1", None)],
        vec![placed("acme/a.json")],
    )
    .await;
    let undeleted: Vec<_> = outcome
        .iter()
        .filter_map(|s| s.undeleted.as_ref())
        .collect();
    assert_eq!(undeleted.len(), 1);
    assert_eq!(undeleted[0].kind, FailureKind::Transient);
    assert!(!outcome[0].deleted());
    assert!(
        *sqs.delete_calls.lock().unwrap() > 1,
        "retried before giving up"
    );
    assert_eq!(counters.snapshot().delete_failures, 1);
}

#[tokio::test]
async fn a_refused_delete_is_reported_once_not_retried() {
    let store = MemoryStore::default();
    let sqs = MemoryQueue {
        deletes_denied: true,
        ..MemoryQueue::default()
    };
    let messages = [message("m1", None), message("m2", None)];
    let (outcome, counters) = settle_batch(
        &store,
        &sqs,
        &messages,
        vec![placed("acme/a.json"), placed("acme/b.json")],
    )
    .await;
    assert_eq!(*sqs.delete_calls.lock().unwrap(), 1, "denied: no retry");
    let kinds: Vec<_> = outcome
        .iter()
        .map(|s| s.undeleted.as_ref().map(|f| f.kind))
        .collect();
    assert_eq!(
        kinds,
        [Some(FailureKind::Denied), Some(FailureKind::Denied)]
    );
    assert_eq!(
        store.objects.lock().unwrap().len(),
        2,
        "archived all the same"
    );
    let snapshot = counters.snapshot();
    assert_eq!(
        (snapshot.stored, snapshot.deleted, snapshot.delete_failures),
        (2, 0, 2)
    );
}

#[tokio::test]
async fn a_denied_put_is_reported_as_a_missing_permission() {
    let store = MemoryStore {
        permanent_failure_prefix: Some("acme/".into()),
        ..MemoryStore::default()
    };
    let sqs = MemoryQueue::default();
    let (outcome, _) = settle_batch(
        &store,
        &sqs,
        &[message("m1", None)],
        vec![placed("acme/a.json")],
    )
    .await;
    assert!(store_denied(&outcome).unwrap().0.contains("AccessDenied"));
    assert!(sqs.deleted.lock().unwrap().is_empty());
}

#[test]
fn quarantine_keys_cannot_escape_their_prefix() {
    assert_eq!(
        quarantine_key("_q/", "acme-q.fifo", "abc-123"),
        "_q/acme-q.fifo/abc-123.json"
    );
    assert_eq!(quarantine_key("_q/", "..", "."), "_q/%2E%2E/%2E.json");
    assert_eq!(quarantine_key("_q/", "a/b", "x\ny"), "_q/a%2Fb/x%0Ay.json");
    assert_eq!(quarantine_key("_q/", "", ""), "_q/%00/%00.json");
}
