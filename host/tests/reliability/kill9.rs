//! Scenario 1: `kill -9` of the host at random moments while it drains,
//! restarted each time; then a last host finishes. Nothing lost, nothing
//! duplicated, nothing overwritten.

use std::time::Duration;

use audit_archiver_test_kit::proxy::{Plan, Proxy};
use audit_archiver_test_kit::{
    self as kit, audit, counter, daemon_args, stderr, summary_of, Host, Moto, Rng,
};

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let _serial = kit::serial().await;
    let name = "kill-9";
    let scale = kit::scale();
    let mut rng = Rng::new(name);
    let moto = Moto::start().await;
    // Some latency stretches the drain over several seconds, so the kills
    // land mid-flight (receives, PUTs and deletes all in progress).
    let proxy = Proxy::start(&moto.endpoint, rng.next_u64(), false).await;
    proxy.set(Plan {
        latency: Duration::from_millis(15),
        ..Plan::default()
    });
    let (bucket, queues, sent) = kit::two_tenant_backlog(&moto, 150 * scale).await;
    let total = sent.len();
    let args = daemon_args(
        &bucket,
        &queues,
        &proxy.url,
        &[
            "--visibility-timeout-secs",
            "10",
            "--wait-time-secs",
            "1",
            "--concurrency",
            "8",
        ],
    );
    let kills = 6 * scale;
    let mut at_kill = Vec::new();
    // Kill moments follow progress, not the clock, so every kill lands
    // mid-drain however fast this machine happens to be: round r waits until
    // about (r+1)/(kills+2) of the messages are stored (plus jitter), then a
    // random extra 0-300 ms with work in flight, then SIGKILL.
    let step = total / (kills + 2);
    for round in 0..kills {
        let host = Host::spawn(moto.command(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        let started = std::time::Instant::now();
        let target = step * (round + 1) + rng.range(0, (step / 2).max(1) as u64) as usize;
        kit::wait_for_objects(&moto, &bucket, target).await;
        tokio::time::sleep(Duration::from_millis(rng.range(0, 300))).await;
        let delay = started.elapsed();
        let output = host.kill9();
        assert!(
            output.status.code().is_none(),
            "round {round}: the host ended before the kill: {}",
            stderr(&output)
        );
        let stored = moto.object_count(&bucket).await;
        println!(
            "[{name}] kill {} after {delay:?}: {stored}/{total} objects",
            round + 1
        );
        at_kill.push(stored);
    }
    assert!(
        at_kill.iter().filter(|n| **n < total).count() >= 5,
        "at least five kills must land mid-drain: {at_kill:?}"
    );
    // A last host, left to finish; messages hidden by the killed hosts come
    // back after their 10 s visibility timeout.
    let host = Host::spawn(moto.command(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    kit::wait_settled(&moto, &bucket, &queues, total, Duration::from_secs(180)).await;
    host.term();
    let output = host
        .wait(Duration::from_secs(60))
        .expect("exit after SIGTERM");
    assert!(output.status.success(), "{}", stderr(&output));
    let last = summary_of(&output);
    let result = audit(&moto, &bucket, &sent, &queues).await;
    println!(
        "[{name}] messages={total} kills={kills} objects_at_each_kill={at_kill:?} \
         last_host: stored={} already_present={} (redeliveries recognised by sqs-message-id)",
        counter(&last, "stored"),
        counter(&last, "already_present"),
    );
    println!("[{name}] proxy: {}", proxy.stats().line());
    result.assert_perfect(name);
}
