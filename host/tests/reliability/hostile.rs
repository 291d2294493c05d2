//! Scenario 6: hostile components (built from `tests/fixtures/hostile-router`,
//! the one fixture for every refusal, one cargo feature per behaviour). Each
//! is contained: refused at start-up (exit 2, naming --component), or the
//! hostile messages are kept in SQS (a trap or a broken limit) or quarantined
//! (an unsafe placement), with the reason logged, while the well-behaved queue
//! is archived.

use std::path::PathBuf;

use audit_archiver::route::ROUTER_INTERFACE;

use audit_archiver_test_kit::{self as kit, repo_root, stderr, Moto, Sent};

/// Builds one variant of the fixture and returns its `.wasm`.
fn fixture(variant: &str) -> PathBuf {
    audit_archiver_guest_build::hostile_router(&repo_root(), variant)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What the host must do with a variant.
enum Contained {
    /// Refused at start-up; stderr holds these words.
    Refused(&'static [&'static str]),
    /// Hostile messages stay in SQS; stderr holds one of these reasons.
    Kept(&'static [&'static str]),
    /// Hostile messages are quarantined with an `unsafe-placement` reason.
    Quarantined,
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_components_are_contained() {
    let _serial = kit::serial().await;
    let name = "hostile";
    let moto = Moto::start().await;
    let variants: Vec<(&str, Contained)> = vec![
        (
            "infinite-loop",
            Contained::Kept(&["ran longer than its 100 ms limit"]),
        ),
        // wasmtime reports the StoreLimits refusal as "forcing trap when growing
        // memory to N bytes" (not Trap::AllocationTooLarge).
        (
            "memory-bomb",
            Contained::Kept(&["memory to", "exceeded its memory limit"]),
        ),
        ("trap", Contained::Kept(&["component-trap"])),
        ("key-dotdot", Contained::Quarantined),
        ("key-abs", Contained::Quarantined),
        ("key-other-tenant", Contained::Quarantined),
        ("key-control", Contained::Quarantined),
        (
            "wasi-std",
            Contained::Refused(&["--component", "imports", "wasi:"]),
        ),
        (
            "wrong-world",
            Contained::Refused(&["--component", "does not implement", ROUTER_INTERFACE]),
        ),
        (
            "imports-function",
            Contained::Refused(&["--component", "imports [\"log\"]", "must import nothing"]),
        ),
        (
            "settings-loop",
            Contained::Refused(&["--component", "validating settings"]),
        ),
    ];
    let (good_n, evil_n) = (6, 3);
    for (variant, contained) in &variants {
        let wasm = fixture(variant);
        let bucket = moto.versioned_bucket().await;
        let good = moto.tenant_queue("acme", false).await;
        let evil = moto.queue(&format!("acme-evil-{}", kit::unique("q"))).await;
        let mut good_sent = Sent::new();
        let mut evil_sent = Sent::new();
        moto.send_logs(&good, good_n, &mut good_sent).await;
        moto.send_logs(&evil, evil_n, &mut evil_sent).await;
        let started = std::time::Instant::now();
        let output = moto.run(&[
            "run",
            "--drain",
            "--bucket",
            &bucket,
            "--queue",
            &good,
            "--queue",
            &evil,
            "--component",
            wasm.to_str().unwrap(),
            "--component-timeout-ms",
            "100",
            "--component-memory-mib",
            "16",
            "--visibility-timeout-secs",
            "30",
            "--stats-interval-secs",
            "0",
        ]);
        let elapsed = started.elapsed();
        let log = stderr(&output);
        let objects = moto.objects(&bucket).await;
        let evil_depth = moto.depth(&evil).await;
        match contained {
            Contained::Refused(words) => {
                assert_eq!(output.status.code(), Some(2), "{variant}: {log}");
                for word in *words {
                    assert!(
                        log.contains(word),
                        "{variant}: stderr must mention {word:?}: {log}"
                    );
                }
                assert!(objects.is_empty(), "{variant}: nothing stored");
                assert_eq!(
                    moto.depth(&good).await,
                    good_n as u64,
                    "{variant}: nothing consumed"
                );
                assert_eq!(evil_depth, evil_n as u64, "{variant}: nothing consumed");
                let line = log
                    .lines()
                    .find(|l| l.contains("--component"))
                    .unwrap_or("");
                println!("[{name}] {variant}: refused at start-up (exit 2): {line}");
            }
            Contained::Kept(reasons) => {
                let reason = reasons
                    .iter()
                    .find(|r| log.contains(**r))
                    .copied()
                    .unwrap_or("");
                // Exit 1: --drain reports messages it could not archive.
                assert_eq!(output.status.code(), Some(1), "{variant}: {log}");
                assert!(
                    log.contains(reason),
                    "{variant}: the reason {reason:?} is logged: {log}"
                );
                for id in evil_sent.keys() {
                    assert!(
                        log.contains(id.as_str()),
                        "{variant}: the log names message {id}"
                    );
                }
                assert_eq!(
                    evil_depth, evil_n as u64,
                    "{variant}: hostile messages stay in SQS"
                );
                assert_eq!(objects.len(), good_n, "{variant}: {:#?}", objects.keys());
                println!(
                    "[{name}] {variant}: {evil_n} messages kept in SQS, {good_n} others archived, in {:.1}s; reason: {reason}",
                    elapsed.as_secs_f64()
                );
            }
            Contained::Quarantined => {
                assert_eq!(output.status.code(), Some(0), "{variant}: {log}");
                assert!(log.contains("unsafe-placement"), "{variant}: {log}");
                assert_eq!(evil_depth, 0, "{variant}");
                assert_eq!(
                    objects.len(),
                    good_n + evil_n,
                    "{variant}: {:#?}",
                    objects.keys()
                );
                let mut reason = String::new();
                for id in evil_sent.keys() {
                    let (key, object) = objects
                        .iter()
                        .find(|(_, o)| o.message_id() == id)
                        .unwrap_or_else(|| panic!("{variant}: message {id} lost"));
                    assert!(key.starts_with("_quarantine/"), "{variant}: {key}");
                    reason = object.metadata["quarantine-reason"].clone();
                    assert!(
                        reason.starts_with("unsafe-placement"),
                        "{variant}: {reason}"
                    );
                }
                for key in objects.keys() {
                    assert!(
                        key.starts_with("acme/") || key.starts_with("_quarantine/"),
                        "{variant}: nothing outside the tenant or quarantine: {key:?}"
                    );
                }
                println!(
                    "[{name}] {variant}: {evil_n} quarantined, {good_n} archived; reason: {reason}"
                );
            }
        }
        if !matches!(contained, Contained::Refused(_)) {
            for (id, (_, body)) in &good_sent {
                let object = objects
                    .values()
                    .find(|o| o.message_id() == id)
                    .unwrap_or_else(|| panic!("{variant}: well-behaved message {id} lost"));
                assert_eq!(&object.body, body);
            }
            assert_eq!(
                moto.depth(&good).await,
                0,
                "{variant}: the good queue is drained"
            );
        }
    }
    println!(
        "[{name}] {} hostile components, all contained",
        variants.len()
    );
}
