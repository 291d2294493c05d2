//! FIFO tenant queues, the deployed shape, with default settings: a backlog
//! in one message group is archived at the endpoint's pace, not one batch per
//! long poll (our own in-flight batches lock the group, so a long poll then
//! waits its whole time for nothing); and `--drain` claims success only when
//! the queue is verified empty.
//!
//! The time bounds below are not performance figures: they sit an order of
//! magnitude below what the stall costs (100 messages, 10 per 20 s long poll:
//! ≥ 180 s; 150 messages with the drain's 2 s wait: ≥ 28 s).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use audit_archiver_test_kit::{audit_log, stderr, summary, unique, Host, Moto};

/// Fills `queue` with `n` audit logs in one message group; returns their ids.
async fn one_group(moto: &Moto, queue: &str, n: u64) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let body = audit_log("alice@example.com", 1_750_991_540_913 + i, i as usize);
        ids.insert(moto.send(queue, &body, Some("prisma")).await);
    }
    ids
}

async fn archived_ids(moto: &Moto, bucket: &str) -> BTreeSet<String> {
    moto.objects(bucket)
        .await
        .values()
        .map(|o| o.message_id().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_archives_a_fifo_group_backlog_without_waiting_out_long_polls() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue = moto
        .queue(&format!("acme-{}-prismacloud-auditlog.fifo", unique("q")))
        .await;
    let ids = one_group(&moto, &queue, 100).await;

    // All defaults: 20 s long polls.
    let started = Instant::now();
    let host = Host::spawn(moto.command(&["run", "--bucket", &bucket, "--queue", &queue]));
    let limit = Duration::from_secs(30);
    loop {
        let stored = moto.objects(&bucket).await.len();
        if stored == ids.len() {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "{stored} of {} stored after {limit:?}: the FIFO group stalls",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    host.term();
    let output = host
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|output| panic!("no exit after SIGTERM:\n{}", stderr(&output)));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(archived_ids(&moto, &bucket).await, ids);
    assert_eq!(moto.depth(&queue).await, 0);
    println!("100 messages in one FIFO group archived in {took:?} (daemon, default wait)");
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_empties_a_fifo_group_backlog_at_the_endpoints_pace() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue = moto
        .queue(&format!("acme-{}-prismacloud-auditlog.fifo", unique("q")))
        .await;
    let ids = one_group(&moto, &queue, 150).await;

    let started = Instant::now();
    let output = moto.run(&["run", "--drain", "--bucket", &bucket, "--queue", &queue]);
    let took = started.elapsed();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(archived_ids(&moto, &bucket).await, ids);
    assert_eq!(moto.depth(&queue).await, 0);
    let summary = summary(&output);
    assert_eq!(summary["left"]["messages"], 0, "{summary}");
    assert!(
        took < Duration::from_secs(14),
        "150 messages in one FIFO group took {took:?} to drain: the group stalls"
    );
    println!("150 messages in one FIFO group drained in {took:?} (default wait)");
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_does_not_claim_empty_while_another_consumer_holds_the_group() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue = moto
        .queue(&format!("acme-{}-prismacloud-auditlog.fifo", unique("q")))
        .await;
    let ids = one_group(&moto, &queue, 10).await;
    // Another consumer holds the group's first message for 4 s: until then a
    // receive finds nothing although ten messages are there.
    let held = moto
        .sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(1)
        .visibility_timeout(4)
        .send()
        .await
        .unwrap();
    assert_eq!(held.messages().len(), 1);

    let output = moto.run(&["run", "--drain", "--bucket", &bucket, "--queue", &queue]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        moto.depth(&queue).await,
        0,
        "exit 0 means the queue is empty"
    );
    assert_eq!(archived_ids(&moto, &bucket).await, ids);
}
