//! Scenario 8: SIGTERM under load, several times at random moments. Each time
//! the host exits well within the visibility timeout, and every message it
//! held but had not archived is visible again at once (none in flight once it
//! has exited). A final drain finds everything; nothing lost or duplicated.

use std::time::{Duration, Instant};

use audit_archiver_test_kit::proxy::{Plan, Proxy};
use audit_archiver_test_kit::{
    self as kit, audit, counter, daemon_args, stderr, summary_of, Host, Moto, Rng,
};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_exits_in_time_and_releases_at_once() {
    let _serial = kit::serial().await;
    let name = "sigterm";
    let scale = kit::scale();
    let mut rng = Rng::new(name);
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.endpoint, rng.next_u64(), false).await;
    // Load: slow S3 and SQS, some throttling, so work is always in flight.
    proxy.set(Plan {
        latency: Duration::from_millis(40),
        s3_503_permille: 100,
        ..Plan::default()
    });
    let (bucket, queues, sent) = kit::two_tenant_backlog(&moto, 150 * scale).await;
    let total = sent.len();
    let visibility = 60u64;
    let args = daemon_args(
        &bucket,
        &queues,
        &proxy.url,
        &[
            "--visibility-timeout-secs",
            &visibility.to_string(),
            "--wait-time-secs",
            "1",
            "--concurrency",
            "32",
        ],
    );
    let rounds = 3 * scale;
    let mut exits = Vec::new();
    let mut released = 0;
    // Signal moments follow progress, not the clock, so each lands mid-run
    // however fast this machine is: round r waits until about (r+1)/(rounds+2)
    // of the messages are stored (plus jitter), then 0-300 ms more.
    let step = total / (rounds + 2);
    for round in 0..rounds {
        let host = Host::spawn(moto.command(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        let target = step * (round + 1) + rng.range(0, (step / 2).max(1) as u64) as usize;
        kit::wait_for_objects(&moto, &bucket, target).await;
        // The earlier rounds may already have stored `target`: wait until
        // this host holds messages too. A signal during start-up, before the
        // host holds anything, ends it by the signal's default action; that
        // is not the case under test.
        kit::wait_for_every(
            &format!("round {round}: the host to hold messages"),
            Duration::from_secs(60),
            Duration::from_millis(10),
            || async { moto.total_in_flight(&queues).await > 0 },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.range(0, 300))).await;
        let in_flight_before = moto.total_in_flight(&queues).await;
        let signalled = Instant::now();
        host.term();
        let output = host
            .wait(Duration::from_secs(visibility))
            .unwrap_or_else(|o| {
                panic!(
                    "round {round}: no exit within the visibility timeout: {}",
                    stderr(&o)
                )
            });
        let took = signalled.elapsed();
        assert!(
            output.status.success(),
            "round {round}: {}",
            stderr(&output)
        );
        let hidden = moto.total_in_flight(&queues).await;
        let summary = summary_of(&output);
        released += counter(&summary, "released");
        let stored = moto.object_count(&bucket).await;
        println!(
            "[{name}] round {}: {in_flight_before} in flight at SIGTERM, exit 0 after {:.2}s, released={} \
             still hidden after exit={hidden}, {stored}/{total} archived",
            round + 1,
            took.as_secs_f64(),
            counter(&summary, "released"),
        );
        assert!(stored < total, "round {round}: the signal came mid-run");
        assert_eq!(
            hidden, 0,
            "round {round}: messages the host held must be visible again at once"
        );
        exits.push(took);
    }
    // Everything left is visible: a drain with a short wait finds all of it
    // although the visibility timeout was 60 s.
    proxy.set(Plan::default());
    let mut drain_args = args.clone();
    drain_args.push("--drain".into());
    let drain_started = Instant::now();
    let output = kit::run_with_limit(
        moto.command(&drain_args.iter().map(String::as_str).collect::<Vec<_>>()),
        Duration::from_secs(120),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let hidden_now = moto.total_in_flight(&queues).await;
    println!(
        "[{name}] final drain took {:.1}s: {}; hidden now {hidden_now}",
        drain_started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&output.stdout).trim()
    );
    if std::env::var_os("RELIABILITY_DEBUG").is_some() {
        println!("{}", stderr(&output));
    }
    let slowest = exits.iter().max().unwrap();
    println!(
        "[{name}] messages={total} SIGTERMs={rounds} slowest exit={:.2}s (visibility timeout {visibility}s) released in total={released}",
        slowest.as_secs_f64()
    );
    println!("[{name}] proxy: {}", proxy.stats().line());
    audit(&moto, &bucket, &sent, &queues)
        .await
        .assert_perfect(name);
}
