//! Scenario 2: S3 unreachable for a while. The proxy resets, drops and stalls
//! every S3 request, then refuses all connections; no message may be deleted
//! meanwhile, all must be stored after recovery, and the host keeps running.

use std::sync::atomic::Ordering;
use std::time::Duration;

use audit_archiver_test_kit::proxy::{Plan, Proxy, S3Mode};
use audit_archiver_test_kit::{
    self as kit, audit, counter, daemon_args, stderr, summary_of, Host, Moto, Rng,
};

#[tokio::test(flavor = "multi_thread")]
async fn s3_outage_deletes_nothing_and_everything_is_stored_after_recovery() {
    let _serial = kit::serial().await;
    let name = "s3-outage";
    let scale = kit::scale();
    let mut rng = Rng::new(name);
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.endpoint, rng.next_u64(), false).await;
    proxy.set(Plan {
        latency: Duration::from_millis(10),
        ..Plan::default()
    });
    let (bucket, queues, sent) = kit::two_tenant_backlog(&moto, 100 * scale).await;
    let total = sent.len();
    let args = daemon_args(
        &bucket,
        &queues,
        &proxy.url,
        &[
            "--visibility-timeout-secs",
            "20",
            "--wait-time-secs",
            "1",
            "--concurrency",
            "8",
        ],
    );
    let mut host = Host::spawn(moto.command(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    kit::wait_for("a first part archived", Duration::from_secs(60), || async {
        moto.object_count(&bucket).await >= total / 5
    })
    .await;

    // The outage: every S3 request fails, in three ways, 4 s each.
    let phase = Duration::from_secs(4);
    proxy.set(Plan {
        s3: S3Mode::Reset,
        ..Plan::default()
    });
    let outage_started = std::time::Instant::now();
    // Work already past S3 (a PUT answered just before) may still delete.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let depth_before = moto.total_depth(&queues).await;
    let objects_before = moto.object_count(&bucket).await;
    let deletes_before = proxy.stats().sqs_deletes_forwarded.load(Ordering::Relaxed);
    tokio::time::sleep(phase - Duration::from_millis(1500)).await;
    for mode in [S3Mode::Drop, S3Mode::Stall] {
        proxy.set(Plan {
            s3: mode,
            ..Plan::default()
        });
        let counter = match mode {
            S3Mode::Drop => &proxy.stats().drops,
            _ => &proxy.stats().stalls,
        };
        let before = counter.load(Ordering::Relaxed);
        tokio::time::sleep(phase).await;
        // The host backs off between retries: hold the mode until it was hit.
        kit::wait_for(
            &format!("an S3 request during {mode:?}"),
            Duration::from_secs(40),
            || async { counter.load(Ordering::Relaxed) > before },
        )
        .await;
        assert!(
            host.running(),
            "the host must ride out the S3 outage ({mode:?})"
        );
    }
    assert!(
        proxy.stats().resets.load(Ordering::Relaxed) > 0,
        "the reset phase was hit"
    );
    let outage = outage_started.elapsed();
    let deletes_during =
        proxy.stats().sqs_deletes_forwarded.load(Ordering::Relaxed) - deletes_before;
    let depth_after = moto.total_depth(&queues).await;
    let objects_after = moto.object_count(&bucket).await;
    println!(
        "[{name}] during the outage: depth {depth_before} -> {depth_after}, objects {objects_before} -> \
         {objects_after}, DeleteMessage calls forwarded: {deletes_during}"
    );
    assert_eq!(
        deletes_during, 0,
        "no message may be deleted while S3 is down"
    );
    assert_eq!(
        depth_after, depth_before,
        "no message may leave the queues while S3 is down"
    );
    assert_eq!(objects_after, objects_before);

    // Then the whole endpoint is refused (no listener) for 3 s.
    proxy.set(Plan {
        refuse: true,
        ..Plan::default()
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(host.running(), "the host must ride out a refused endpoint");
    assert_eq!(moto.total_depth(&queues).await, depth_before);

    // Recovery.
    proxy.set(Plan::default());
    let recovered = std::time::Instant::now();
    kit::wait_settled(&moto, &bucket, &queues, total, Duration::from_secs(180)).await;
    let recovery = recovered.elapsed();
    assert!(host.running(), "the host keeps running after recovery");
    host.term();
    let output = host
        .wait(Duration::from_secs(60))
        .expect("exit after SIGTERM");
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = summary_of(&output);
    let result = audit(&moto, &bucket, &sent, &queues).await;
    println!(
        "[{name}] messages={total} S3 outage={:.1}s (reset, drop, stall) + 3s refused; recovered in {:.1}s; \
         host: stored={} retries={} already_present={}",
        outage.as_secs_f64(),
        recovery.as_secs_f64(),
        counter(&summary, "stored"),
        counter(&summary, "retries"),
        counter(&summary, "already_present"),
    );
    println!("[{name}] proxy: {}", proxy.stats().line());
    assert!(
        counter(&summary, "retries") > 0,
        "the outage must have been felt"
    );
    result.assert_perfect(name);
}
