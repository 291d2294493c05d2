//! Scenario 4: three hosts draining the same queues at once (SQS spreads the
//! messages over competing consumers). No duplicates, no loss.

use std::time::{Duration, Instant};

use audit_archiver_test_kit::{
    self as kit, audit, counter, daemon_args, stderr, summary_of, Host, Moto,
};

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_draining_the_same_queues_neither_lose_nor_duplicate() {
    let _serial = kit::serial().await;
    let name = "three-hosts";
    let scale = kit::scale();
    let moto = Moto::start().await;
    let (bucket, queues, sent) = kit::two_tenant_backlog(&moto, 150 * scale).await;
    let total = sent.len();
    // The seed layout: same-second logs share a key, so competing hosts also
    // race for names (resolved by If-None-Match and the alternate key).
    let args = daemon_args(
        &bucket,
        &queues,
        &moto.endpoint,
        &[
            "--drain",
            "--key-template",
            "seed",
            "--visibility-timeout-secs",
            "30",
            "--concurrency",
            "8",
        ],
    );
    let started = Instant::now();
    let hosts: Vec<Host> = (0..3)
        .map(|_| Host::spawn(moto.command(&args.iter().map(String::as_str).collect::<Vec<_>>())))
        .collect();
    let mut stored = Vec::new();
    let (mut already, mut collisions) = (0, 0);
    for (i, host) in hosts.into_iter().enumerate() {
        let output = host
            .wait(Duration::from_secs(180))
            .unwrap_or_else(|o| panic!("host {i} did not finish: {}", stderr(&o)));
        assert!(output.status.success(), "host {i}: {}", stderr(&output));
        let summary = summary_of(&output);
        stored.push(counter(&summary, "stored"));
        already += counter(&summary, "already_present");
        collisions += counter(&summary, "collisions");
    }
    println!(
        "[{name}] messages={total} hosts=3 stored per host={stored:?} already_present={already} same-second collisions resolved={collisions} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        stored.iter().sum::<u64>(),
        total as u64,
        "each message stored by exactly one host"
    );
    assert!(
        stored.iter().filter(|n| **n > 0).count() >= 2,
        "the hosts really competed: {stored:?}"
    );
    audit(&moto, &bucket, &sent, &queues)
        .await
        .assert_perfect(name);
}
