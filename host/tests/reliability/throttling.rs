//! Scenario 3: throttling and server errors. The proxy answers a fraction of
//! S3 requests 503 SlowDown (not forwarded) or 500 after the request took
//! effect (so the host retries a PUT that already happened), and a fraction of
//! SQS requests 500 (not forwarded) or 503 after taking effect (a receive whose
//! messages are then hidden, a delete that did happen). All stored, once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use audit_archiver_test_kit::proxy::{Plan, Proxy};
use audit_archiver_test_kit::{
    self as kit, audit, counter, daemon_args, stderr, summary_of, Host, Moto, Rng,
};

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_server_errors_store_everything_once() {
    let _serial = kit::serial().await;
    let name = "throttling";
    let scale = kit::scale();
    let mut rng = Rng::new(name);
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.endpoint, rng.next_u64(), false).await;
    let (bucket, queues, sent) = kit::two_tenant_backlog(&moto, 150 * scale).await;
    let total = sent.len();
    let plan = Plan {
        s3_503_permille: 150,
        s3_500_after_permille: 100,
        sqs_500_permille: 100,
        sqs_503_after_permille: 200,
        ..Plan::default()
    };
    proxy.set(plan);
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
            "16",
        ],
    );
    let mut host = Host::spawn(moto.command(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    kit::wait_settled(&moto, &bucket, &queues, total, Duration::from_secs(240)).await;
    assert!(host.running(), "the host keeps running through the errors");
    host.term();
    let output = host
        .wait(Duration::from_secs(60))
        .expect("exit after SIGTERM");
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = summary_of(&output);
    let stats = proxy.stats();
    println!(
        "[{name}] messages={total} faults injected={} (S3: {}‰ 503 SlowDown + {}‰ 500 after effect; \
         SQS: {}‰ 500 + {}‰ 503 after effect); host: stored={} already_present={} retries={} delete_failures={}",
        stats.faults(),
        plan.s3_503_permille,
        plan.s3_500_after_permille,
        plan.sqs_500_permille,
        plan.sqs_503_after_permille,
        counter(&summary, "stored"),
        counter(&summary, "already_present"),
        counter(&summary, "retries"),
        counter(&summary, "delete_failures"),
    );
    println!("[{name}] proxy: {}", stats.line());
    assert!(
        stats.s3_503.load(Ordering::Relaxed) > 0 && stats.s3_500_after.load(Ordering::Relaxed) > 0
    );
    assert!(
        stats.sqs_500.load(Ordering::Relaxed) > 0
            && stats.sqs_503_after.load(Ordering::Relaxed) > 0
    );
    audit(&moto, &bucket, &sent, &queues)
        .await
        .assert_perfect(name);
}
