//! `--queue-prefix` follows the account: the host lists the queues again
//! every `--discovery-interval-secs`, polls a queue created while it runs
//! from the next listing, and drops a deleted one (logged, the gauge
//! updated) while it keeps archiving the others; every message sent to a
//! surviving queue is archived exactly once.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use audit_archiver_test_kit::proxy::{Plan, Proxy};
use audit_archiver_test_kit::{audit, free_port, stderr, unique, wait_for, Host, Moto, Sent};

/// `audit_archiver_queues` as `/metrics` reports it; `None` while the
/// endpoint does not answer.
fn queues_gauge(port: u16) -> Option<u64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .lines()
        .find_map(|line| line.strip_prefix("audit_archiver_queues "))
        .and_then(|value| value.trim().parse().ok())
}

/// The message ids archived in `bucket`.
async fn archived(moto: &Moto, bucket: &str) -> BTreeSet<String> {
    moto.objects(bucket)
        .await
        .values()
        .map(|o| o.message_id().to_string())
        .collect()
}

/// Whether every message of `sent` is archived.
async fn all_archived(moto: &Moto, bucket: &str, sent: &Sent) -> bool {
    let archived = archived(moto, bucket).await;
    sent.keys().all(|id| archived.contains(id))
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_prefix_follows_queues_created_and_deleted_while_it_runs() {
    let moto = Moto::start().await;
    let bucket = moto.versioned_bucket().await;
    // No `-` in the prefix: each queue's tenant is its name up to the first.
    let prefix = unique("follow").replace('-', "");
    let standard = moto.queue(&format!("{prefix}a-prismacloud-auditlog")).await;
    let fifo = moto
        .queue(&format!("{prefix}b-prismacloud-auditlog.fifo"))
        .await;
    let doomed = moto.queue(&format!("{prefix}c-prismacloud-auditlog")).await;
    let outside = moto.queue(&format!("other{}", unique("q"))).await;
    // `sent`: the surviving queues' messages, each to be archived once.
    let mut sent = Sent::new();
    moto.send_logs(&standard, 40, &mut sent).await;
    moto.send_logs(&fifo, 40, &mut sent).await;
    let mut doomed_sent = Sent::new();
    moto.send_logs(&doomed, 20, &mut doomed_sent).await;
    moto.send_logs(&outside, 5, &mut Sent::new()).await;

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut host = Host::spawn(moto.command(&[
        "run",
        "--bucket",
        &bucket,
        "--queue-prefix",
        &prefix,
        "--discovery-interval-secs",
        "1",
        "--stats-interval-secs",
        "0",
        "--metrics-addr",
        &addr,
    ]));
    let limit = Duration::from_secs(60);
    wait_for("the three queues polled", limit, || async {
        queues_gauge(port) == Some(3)
    })
    .await;

    // A tenant onboarded while the host runs, with messages waiting, while
    // more arrive on the others: polled from the next listing.
    let added = moto
        .queue(&format!("{prefix}d-prismacloud-auditlog.fifo"))
        .await;
    let mut added_sent = Sent::new();
    moto.send_logs(&added, 30, &mut added_sent).await;
    moto.send_logs(&standard, 20, &mut sent).await;
    moto.send_logs(&fifo, 20, &mut sent).await;
    wait_for("the new queue's messages archived", limit, || async {
        all_archived(&moto, &bucket, &added_sent).await
    })
    .await;
    assert_eq!(queues_gauge(port), Some(4));
    sent.extend(added_sent);

    // A tenant offboarded: its first messages are archived, then more are
    // sent and the queue is deleted at once, some perhaps in hand.
    wait_for(
        "the doomed queue's first messages archived",
        limit,
        || async { all_archived(&moto, &bucket, &doomed_sent).await },
    )
    .await;
    let mut late = Sent::new();
    moto.send_logs(&doomed, 10, &mut late).await;
    moto.sqs
        .delete_queue()
        .queue_url(&doomed)
        .send()
        .await
        .expect("delete the queue");
    wait_for("the deleted queue dropped", limit, || async {
        queues_gauge(port) == Some(3)
    })
    .await;

    // The host keeps running and archiving the others.
    moto.send_logs(&standard, 20, &mut sent).await;
    moto.send_logs(&fifo, 20, &mut sent).await;
    moto.send_logs(&added, 20, &mut sent).await;
    let surviving = [standard.clone(), fifo.clone(), added.clone()];
    wait_for(
        "every surviving queue's message archived",
        limit,
        || async {
            all_archived(&moto, &bucket, &sent).await && moto.total_depth(&surviving).await == 0
        },
    )
    .await;
    assert!(host.running(), "the host keeps running");
    assert_eq!(queues_gauge(port), Some(3));

    host.term();
    let output = host
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|output| panic!("no exit after SIGTERM: {}", stderr(&output)));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");

    // One line per change, with the number of queues after it.
    let lines = |what: &str, url: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(what) && l.contains(&format!("url={url} ")))
            .map(str::to_string)
            .collect()
    };
    let added_lines = lines("queue added", &added);
    assert_eq!(added_lines.len(), 1, "{log}");
    assert!(added_lines[0].contains("queues=4"), "{log}");
    let removed_lines = lines("queue removed", &doomed);
    assert_eq!(removed_lines.len(), 1, "{log}");
    assert!(
        removed_lines[0].contains("queues=3")
            && (removed_lines[0].contains("reason=deleted")
                || removed_lines[0].contains("reason=gone")),
        "{log}"
    );
    assert!(!log.contains("receive failed; retrying"), "{log}");
    for queue in [&standard, &fifo, &outside] {
        assert!(
            lines("queue removed", queue).is_empty() && lines("queue added", queue).is_empty(),
            "{log}"
        );
    }

    // The final audit: every message of a surviving queue archived once,
    // byte for byte, no key overwritten, the surviving queues empty; of
    // the deleted queue, those archived before it went, each once (the
    // late ones still in it were deleted with it).
    let archived_ids = archived(&moto, &bucket).await;
    let mut expected = sent.clone();
    expected.extend(doomed_sent.clone());
    expected.extend(late.into_iter().filter(|(id, _)| archived_ids.contains(id)));
    let result = audit(&moto, &bucket, &expected, &surviving).await;
    result.assert_perfect("queue discovery");
    assert_eq!(
        moto.depth(&outside).await,
        5,
        "a queue outside the prefix is not touched"
    );
}

/// ListQueues requests the proxy has seen.
fn listings(proxy: &Proxy) -> usize {
    proxy
        .heads()
        .iter()
        .filter(|head| head.to_ascii_lowercase().contains("amazonsqs.listqueues"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_listing_keeps_polling_the_same_queues() {
    let moto = Moto::start().await;
    let bucket = moto.versioned_bucket().await;
    let prefix = unique("listfail").replace('-', "");
    let queue = moto.queue(&format!("{prefix}a-prismacloud-auditlog")).await;
    let mut sent = Sent::new();
    moto.send_logs(&queue, 10, &mut sent).await;
    let proxy = Proxy::start(&moto.endpoint, 11, true).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut host = Host::spawn(moto.command(&[
        "run",
        "--bucket",
        &bucket,
        "--queue-prefix",
        &prefix,
        "--discovery-interval-secs",
        "1",
        "--endpoint-url",
        &proxy.url,
        "--max-attempts",
        "1",
        "--wait-time-secs",
        "1",
        "--stats-interval-secs",
        "0",
        "--metrics-addr",
        &addr,
    ]));
    let limit = Duration::from_secs(60);
    wait_for("the first messages archived", limit, || async {
        all_archived(&moto, &bucket, &sent).await
    })
    .await;

    // SQS answers 500 to everything for two listings.
    let before = listings(&proxy);
    proxy.set(Plan {
        sqs_500_permille: 1000,
        ..Plan::default()
    });
    wait_for("two listings refused", limit, || async {
        listings(&proxy) >= before + 2
    })
    .await;
    proxy.set(Plan::default());
    assert_eq!(queues_gauge(port), Some(1), "the queue is still polled");

    moto.send_logs(&queue, 10, &mut sent).await;
    wait_for("the later messages archived", limit, || async {
        all_archived(&moto, &bucket, &sent).await && moto.depth(&queue).await == 0
    })
    .await;
    assert!(host.running());
    host.term();
    let output = host
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|output| panic!("no exit after SIGTERM: {}", stderr(&output)));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.lines().any(|l| l
            .contains("listing the queues failed; polling the same queues until the next listing")
            && l.contains("error=")),
        "{log}"
    );
    assert!(!log.contains("queue removed"), "{log}");
    assert!(!log.contains("queue added"), "{log}");
    let result = audit(&moto, &bucket, &sent, std::slice::from_ref(&queue)).await;
    result.assert_perfect("failed listing");
}

/// Every queue long-polls at once, however many there are: a message sent
/// to any of a dozen idle queues is archived within seconds. (When each
/// long poll held its batch's store permits, `--concurrency 10` let one
/// queue poll at a time, and the last queue's message waited for the
/// others' 20-s polls: minutes.)
#[tokio::test(flavor = "multi_thread")]
async fn a_message_on_any_of_many_idle_queues_is_archived_at_once() {
    let moto = Moto::start().await;
    let bucket = moto.versioned_bucket().await;
    let prefix = unique("many").replace('-', "");
    let mut queues = Vec::new();
    for q in 0..12 {
        queues.push(
            moto.queue(&format!("{prefix}{q:02}-prismacloud-auditlog"))
                .await,
        );
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let host = Host::spawn(moto.command(&[
        "run",
        "--bucket",
        &bucket,
        "--queue-prefix",
        &prefix,
        "--concurrency",
        "10",
        "--stats-interval-secs",
        "0",
        "--metrics-addr",
        &addr,
    ]));
    wait_for(
        "the twelve queues listed",
        Duration::from_secs(60),
        || async { queues_gauge(port) == Some(12) },
    )
    .await;
    // The first receives find the queues empty and settle into their polls;
    // then the queues listed last get a message each (the first six stay
    // idle: a message behind their polls in turn would wait two minutes).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut sent = Sent::new();
    for queue in &queues[6..] {
        moto.send_logs(queue, 1, &mut sent).await;
    }
    wait_for(
        "one message per queue archived",
        Duration::from_secs(15),
        || async { all_archived(&moto, &bucket, &sent).await },
    )
    .await;
    host.term();
    let output = host
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|output| panic!("no exit after SIGTERM: {}", stderr(&output)));
    assert!(output.status.success(), "{}", stderr(&output));
    audit(&moto, &bucket, &sent, &queues)
        .await
        .assert_perfect("many idle queues");
}
