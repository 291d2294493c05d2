//! SIGTERM while messages are in hand: the host settles what it holds,
//! releases the rest at once, exits 0, and nothing is lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use audit_archiver_test_kit::{audit_log, stderr, summary, unique, Host, Moto};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_run_loses_nothing_and_releases_messages_at_once() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue = moto.queue(&format!("acme-{}", unique("q"))).await;
    let mut ids = BTreeSet::new();
    for n in 0..200u64 {
        ids.insert(
            moto.send(
                &queue,
                &audit_log("alice@example.com", 1_750_991_540_913 + n, n as usize),
                None,
            )
            .await,
        );
    }
    // A long visibility timeout: anything not released would stay hidden.
    let host = Host::spawn(moto.command(&[
        "run",
        "--bucket",
        &bucket,
        "--queue",
        &queue,
        "--visibility-timeout-secs",
        "600",
        "--concurrency",
        "4",
    ]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while moto.objects(&bucket).await.len() < 20 {
        assert!(Instant::now() < deadline, "nothing archived within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signalled = Instant::now();
    host.term();
    let output = host
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|output| panic!("no exit within 30 s of SIGTERM:\n{}", stderr(&output)));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(signalled.elapsed() < Duration::from_secs(30));
    let first = summary(&output);
    let archived = moto.objects(&bucket).await.len() as u64;
    assert!(
        archived < 200,
        "the signal came mid-run ({archived} archived)"
    );

    // Everything not archived is visible again right away: a drain with a
    // short wait finds all of it although the visibility timeout was 600 s.
    let output = moto.run(&["run", "--drain", "--bucket", &bucket, "--queue", &queue]);
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = moto.objects(&bucket).await;
    let stored: BTreeSet<String> = objects
        .values()
        .map(|o| o.message_id().to_string())
        .collect();
    assert_eq!(stored, ids, "every message archived exactly once");
    assert_eq!(objects.len(), 200);
    assert_eq!(moto.depth(&queue).await, 0);
    let second = summary(&output);
    assert_eq!(
        first["stored"].as_u64().unwrap() + second["stored"].as_u64().unwrap(),
        200,
        "first {first}, second {second}"
    );
}
