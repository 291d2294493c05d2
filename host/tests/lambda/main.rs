//! `audit-archiver lambda` end to end: the real binary, started as
//! `bootstrap`, driven through a Lambda Runtime API served on loopback
//! (`runtime_api.rs`, following AWS's documented interface), storing into a
//! real moto server. Events are built from messages really received from
//! moto, as an event source mapping does (`function.rs`).
//!
//!     cargo test --release -p audit-archiver --test lambda

mod function;
mod runtime_api;

use audit_archiver_test_kit::{self as kit, audit_log, Moto};
use std::collections::BTreeMap;
use std::time::Duration;

use audit_archiver_transform::alternate_key;
use function::{archived, ids, package_dir, Function, Mapping};
use runtime_api::{now_ms, RuntimeApi};

/// A deadline no test reaches.
const ROOMY: Duration = Duration::from_secs(60);

/// Routes `event` offline with the same settings (`audit-archiver route`):
/// message id → key.
fn keys_of(moto: &Moto, event: &serde_json::Value, args: &[&str]) -> BTreeMap<String, String> {
    let path = std::env::temp_dir().join(kit::unique("event"));
    std::fs::write(&path, event.to_string()).unwrap();
    let mut all = vec!["route", "--event", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = moto.run(&all);
    assert!(output.status.success(), "{}", kit::stderr(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                line["message_id"].as_str().unwrap().to_string(),
                line["key"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_queues_standard_and_fifo_are_archived_exactly_once() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let api = RuntimeApi::start().await;
    let function = Function::start(
        &package_dir(),
        &api,
        &moto.endpoint,
        Some(&bucket),
        &[
            ("AUDIT_ARCHIVER_KEY_TEMPLATE", "seed"),
            ("AUDIT_ARCHIVER_TIME_SOURCE", "event"),
        ],
    );
    let acme = Mapping::new(&moto, &kit::unique("acme")).await;
    let globex = Mapping::new(&moto, &format!("{}.fifo", kit::unique("globex"))).await;
    let initech = Mapping::new(&moto, &kit::unique("initech")).await;
    // Same second: the `seed` layout gives these the same key.
    let second = 1_750_991_540_000;
    let mut sent = BTreeMap::new();
    for n in 0..4 {
        let body = audit_log("alice@example.com", second + n * 100, n as usize);
        sent.insert(moto.send(&acme.url, &body, None).await, body);
    }
    let poison = moto.send(&acme.url, "not an audit log", None).await;
    for n in 0..3 {
        let body = audit_log("bob@example.com", second + 7, n);
        sent.insert(moto.send(&globex.url, &body, Some("g1")).await, body);
    }
    for n in 0..2 {
        let body = audit_log("carol@example.com", second + 86_400_000 * n as u64, n);
        sent.insert(moto.send(&initech.url, &body, None).await, body);
    }

    let acme_messages = acme.receive_all(&moto, 5, 30).await;
    let acme_event = acme.event(&acme_messages);
    for (mapping, count) in [(&acme, 5), (&globex, 3), (&initech, 2)] {
        let messages = if count == 5 {
            acme_messages.clone()
        } else {
            mapping.receive_all(&moto, count, 30).await
        };
        let outcome = api.invoke(&mapping.event(&messages), ROOMY).await;
        assert_eq!(outcome.failures(), Vec::<String>::new(), "{}", mapping.url);
        mapping.apply(&moto, &messages, &outcome).await;
        assert_eq!(moto.depth(&mapping.url).await, 0);
    }
    // At-least-once delivery: the same event again changes nothing.
    let again = api.invoke(&acme_event, ROOMY).await;
    assert_eq!(again.failures(), Vec::<String>::new());

    let objects = moto.objects(&bucket).await;
    for (id, body) in &sent {
        let holding: Vec<_> = objects
            .iter()
            .filter(|(_, o)| o.message_id() == id)
            .collect();
        assert_eq!(holding.len(), 1, "message {id}: {holding:?}");
        assert_eq!(&holding[0].1.body, body);
    }
    let acme_name = acme.arn.rsplit(':').next().unwrap();
    let quarantined = objects
        .get(&format!("_quarantine/{acme_name}/{poison}.json"))
        .expect("the poison record is quarantined");
    assert_eq!(quarantined.body, "not an audit log");
    assert_eq!(objects.len(), sent.len() + 1);
    // Four logs in one second: one under the seed key, three beside it.
    let acme_tenant = acme_name.split('-').next().unwrap();
    let seed_key =
        format!("{acme_tenant}/2025/06/27/prismacloud-auditlog-{acme_tenant}-20250627-113220.json");
    assert!(objects.contains_key(&seed_key), "{:?}", objects.keys());
    let beside = objects
        .keys()
        .filter(|k| k.starts_with(seed_key.trim_end_matches(".json")) && **k != seed_key)
        .count();
    assert_eq!(beside, 3, "{:?}", objects.keys());

    let logs = function.logs();
    let summaries: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "invocation settled")
        .collect();
    assert_eq!(summaries.len(), 4, "{logs}");
    assert!(
        summaries.iter().all(|s| s["request_id"].is_string()),
        "{logs}"
    );
    assert_eq!(summaries[0]["collisions"], 3, "{logs}");
    assert_eq!(summaries[0]["quarantined"], 1, "{logs}");
    assert_eq!(summaries[3]["already_present"], 4, "{logs}");
    assert_eq!(summaries[3]["quarantined"], 1, "{logs}");
    assert!(api.init_errors().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_s3_refuses_are_exactly_the_failures_and_a_fifo_group_stops_at_its_first() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let api = RuntimeApi::start().await;
    let _function = Function::start(&package_dir(), &api, &moto.endpoint, Some(&bucket), &[]);

    // Standard queue: two records whose key and alternate key both hold other
    // messages' objects (a real S3 state the delivery rules refuse to touch).
    let acme = Mapping::new(&moto, &kit::unique("acme")).await;
    for n in 0..6 {
        moto.send(&acme.url, &audit_log("a@example.com", 1, n), None)
            .await;
    }
    let messages = acme.receive_all(&moto, 6, 30).await;
    let event = acme.event(&messages);
    let keys = keys_of(&moto, &event, &[]);
    let blocked = [ids(&messages)[1].clone(), ids(&messages)[4].clone()];
    for id in &blocked {
        moto.put(&bucket, &keys[id], "held", "someone-else").await;
        moto.put(
            &bucket,
            &alternate_key(&keys[id], id),
            "held",
            "someone-else-too",
        )
        .await;
    }
    let outcome = api.invoke(&event, ROOMY).await;
    let mut failures = outcome.failures();
    failures.sort();
    let mut expected = blocked.to_vec();
    expected.sort();
    assert_eq!(failures, expected);
    let stored = archived(&moto, &bucket).await;
    for id in ids(&messages) {
        assert_eq!(
            stored.get(&id).copied(),
            (!blocked.contains(&id)).then_some(1),
            "{id}"
        );
    }
    assert_eq!(moto.objects(&bucket).await[&keys[&blocked[0]]].body, "held");

    // FIFO: g1 = a1 a2 a3 a4 with a2 blocked; g2 = b1 b2.
    let globex = Mapping::new(&moto, &format!("{}.fifo", kit::unique("globex"))).await;
    for n in 0..4 {
        moto.send(&globex.url, &audit_log("g1@example.com", 1, n), Some("g1"))
            .await;
    }
    for n in 0..2 {
        moto.send(&globex.url, &audit_log("g2@example.com", 1, n), Some("g2"))
            .await;
    }
    let messages = globex.receive_all(&moto, 6, 30).await;
    let by_group = |group: &str| -> Vec<String> {
        messages
            .iter()
            .filter(|m| {
                m.attributes().unwrap()
                    [&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId]
                    == group
            })
            .map(|m| m.message_id().unwrap().to_string())
            .collect()
    };
    let (g1, g2) = (by_group("g1"), by_group("g2"));
    assert_eq!((g1.len(), g2.len()), (4, 2));
    let event = globex.event(&messages);
    let keys = keys_of(&moto, &event, &[]);
    moto.put(&bucket, &keys[&g1[1]], "held", "x").await;
    moto.put(&bucket, &alternate_key(&keys[&g1[1]], &g1[1]), "held", "y")
        .await;
    let outcome = api.invoke(&event, ROOMY).await;
    let mut failures = outcome.failures();
    failures.sort();
    let mut expected = g1[1..].to_vec();
    expected.sort();
    assert_eq!(failures, expected, "a2 and everything after it in g1");
    let stored = archived(&moto, &bucket).await;
    assert_eq!(stored.get(&g1[0]), Some(&1));
    for later in &g1[1..] {
        assert_eq!(stored.get(later), None, "{later} must not overtake a2");
    }
    assert_eq!(
        (stored.get(&g2[0]), stored.get(&g2[1])),
        (Some(&1), Some(&1))
    );

    // Lambda deletes the rest; once the operator frees the names, the
    // redelivered group is stored in order and the queue empties.
    globex.apply(&moto, &messages, &outcome).await;
    moto.s3
        .delete_object()
        .bucket(&bucket)
        .key(&keys[&g1[1]])
        .send()
        .await
        .unwrap();
    moto.s3
        .delete_object()
        .bucket(&bucket)
        .key(alternate_key(&keys[&g1[1]], &g1[1]))
        .send()
        .await
        .unwrap();
    let failed: Vec<_> = messages
        .iter()
        .filter(|m| g1[1..].contains(&m.message_id().unwrap().to_string()))
        .cloned()
        .collect();
    globex.time_out(&moto, &failed).await;
    let again = globex.receive_all(&moto, 3, 30).await;
    assert_eq!(ids(&again), g1[1..].to_vec(), "redelivered in group order");
    let outcome = api.invoke(&globex.event(&again), ROOMY).await;
    assert_eq!(outcome.failures(), Vec::<String>::new());
    globex.apply(&moto, &again, &outcome).await;
    assert_eq!(moto.depth(&globex.url).await, 0);
    let stored = archived(&moto, &bucket).await;
    for id in g1.iter().chain(&g2) {
        assert_eq!(stored.get(id), Some(&1), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_deadline_unfinished_records_are_reported_before_it() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let proxy = kit::proxy::Proxy::start(&moto.endpoint, 7, false).await;
    let api = RuntimeApi::start().await;
    let _function = Function::start(
        &package_dir(),
        &api,
        &proxy.url,
        Some(&bucket),
        &[("AUDIT_ARCHIVER_DEADLINE_MARGIN_MS", "2000")],
    );
    let acme = Mapping::new(&moto, &kit::unique("acme")).await;
    for n in 0..5 {
        moto.send(&acme.url, &audit_log("a@example.com", 1, n), None)
            .await;
    }
    let messages = acme.receive_all(&moto, 5, 30).await;
    let event = acme.event(&messages);
    let mut all = ids(&messages);
    all.sort();

    // The deadline counts from submission: submit once the function waits
    // for work, or a slow init (a loaded machine) eats the 1.2 s.
    kit::wait_for_every(
        "the function to ask for work",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || async { !api.next_requests().is_empty() },
    )
    .await;
    // Less time left than the margin: nothing is started, all is reported.
    let id = api.submit(&event, Duration::from_millis(1200));
    let outcome = api.outcome(&id, Duration::from_secs(30)).await.unwrap();
    let mut failures = outcome.failures();
    failures.sort();
    assert_eq!(failures, all);
    assert!(
        outcome.at_ms() < api.deadline_of(&id),
        "answered before the deadline"
    );
    assert!(archived(&moto, &bucket).await.is_empty());

    // S3 unreachable (connections refused): retried until the margin, then
    // every record is reported, still before the deadline.
    proxy.set(kit::proxy::Plan {
        refuse: true,
        ..kit::proxy::Plan::default()
    });
    while proxy
        .stats()
        .refused_periods
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let submitted = now_ms();
    let id = api.submit(&event, Duration::from_millis(4000));
    let outcome = api.outcome(&id, Duration::from_secs(30)).await.unwrap();
    let mut failures = outcome.failures();
    failures.sort();
    assert_eq!(failures, all);
    let (at, deadline) = (outcome.at_ms(), api.deadline_of(&id));
    assert!(
        at < deadline,
        "answered {} ms after the deadline",
        at - deadline
    );
    assert!(
        at >= submitted + 1500,
        "it kept retrying until the margin (answered after {} ms)",
        at - submitted
    );
    assert!(archived(&moto, &bucket).await.is_empty());

    // S3 back: the redelivery stores everything, once.
    proxy.set(kit::proxy::Plan::default());
    let outcome = api.invoke(&event, ROOMY).await;
    assert_eq!(outcome.failures(), Vec::<String>::new());
    let stored = archived(&moto, &bucket).await;
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), all);
    assert!(stored.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_invocation_then_redelivery_to_a_new_process_loses_and_duplicates_nothing() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    // Every S3 request takes 300 ms, so a FIFO group of 8 (stored in order)
    // is mid-way for over a second.
    let proxy = kit::proxy::Proxy::start(&moto.endpoint, 9, false).await;
    proxy.set(kit::proxy::Plan {
        latency: Duration::from_millis(300),
        ..kit::proxy::Plan::default()
    });
    let api = RuntimeApi::start().await;
    let dir = package_dir();
    let function = Function::start(&dir, &api, &proxy.url, Some(&bucket), &[]);
    let globex = Mapping::new(&moto, &format!("{}.fifo", kit::unique("globex"))).await;
    let mut sent = BTreeMap::new();
    for n in 0..8 {
        let body = audit_log("k@example.com", 1, n);
        sent.insert(moto.send(&globex.url, &body, Some("g1")).await, body);
    }
    let messages = globex.receive_all(&moto, 8, 30).await;
    let id = api.submit(&globex.event(&messages), ROOMY);
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while archived(&moto, &bucket).await.len() < 2 {
        assert!(
            std::time::Instant::now() < until,
            "nothing stored within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    function.kill9();
    assert!(api.handed_out(&id));
    assert!(
        api.outcome(&id, Duration::ZERO).await.is_none(),
        "killed before answering"
    );
    let before = archived(&moto, &bucket).await.len();
    assert!(before < 8, "killed mid-invocation ({before} of 8 stored)");

    // The visibility timeout passes; Lambda receives them again and a new
    // execution environment (straight to S3) gets the batch.
    let api = RuntimeApi::start().await;
    let _function = Function::start(&dir, &api, &moto.endpoint, Some(&bucket), &[]);
    globex.time_out(&moto, &messages).await;
    let again = globex.receive_all(&moto, 8, 30).await;
    let outcome = api.invoke(&globex.event(&again), ROOMY).await;
    assert_eq!(outcome.failures(), Vec::<String>::new());
    globex.apply(&moto, &again, &outcome).await;
    assert_eq!(moto.depth(&globex.url).await, 0);
    let objects = moto.objects(&bucket).await;
    assert_eq!(objects.len(), 8, "{:?}", objects.keys());
    for (id, body) in &sent {
        let holding: Vec<_> = objects.values().filter(|o| o.message_id() == id).collect();
        assert_eq!(holding.len(), 1, "{id}");
        assert_eq!(&holding[0].body, body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_settings_are_reported_to_init_error_naming_the_variable() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let dir = package_dir();
    let foreign = dir.join("foreign.cwasm");
    std::fs::write(
        &foreign,
        b"audit-archiver precompiled component\nrouter-0000\n\0asm",
    )
    .unwrap();
    let missing_bucket = kit::unique("missing");
    /// The bucket setting, other settings, the variable the error must name.
    type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (None, vec![], "S3_BUCKET_NAME"),
        (
            Some(&bucket),
            vec![("AUDIT_ARCHIVER_KEY_TEMPLATE", "{tenant}/{nope}.json")],
            "AUDIT_ARCHIVER_KEY_TEMPLATE",
        ),
        (
            Some(&bucket),
            vec![("AUDIT_ARCHIVER_UTC_OFFSET", "+25:00")],
            "AUDIT_ARCHIVER_UTC_OFFSET",
        ),
        (
            Some(&bucket),
            vec![("AUDIT_ARCHIVER_DEADLINE_MARGIN_MS", "5")],
            "AUDIT_ARCHIVER_DEADLINE_MARGIN_MS",
        ),
        (Some(&missing_bucket), vec![], "S3_BUCKET_NAME"),
        (
            Some(&bucket),
            vec![("AUDIT_ARCHIVER_PRECOMPILED", foreign.to_str().unwrap())],
            "AUDIT_ARCHIVER_PRECOMPILED",
        ),
    ];
    for (bucket, env, variable) in cases {
        let api = RuntimeApi::start().await;
        let function = Function::start(&dir, &api, &moto.endpoint, bucket, &env);
        let (code, stderr) = function.exit(Duration::from_secs(30));
        assert_eq!(code, Some(2), "{variable}: {stderr}");
        let errors = api.init_errors();
        assert_eq!(errors.len(), 1, "{variable}: {stderr}");
        let message = errors[0].body["errorMessage"].as_str().unwrap();
        assert!(message.contains(variable), "{variable}: {message}");
        assert!(errors[0].body["errorType"]
            .as_str()
            .unwrap()
            .starts_with("Runtime."));
        assert_eq!(
            errors[0].error_type,
            errors[0].body["errorType"].as_str().map(String::from)
        );
        assert!(
            api.next_requests().is_empty(),
            "{variable}: no event may be taken"
        );
    }
}

/// Starts the function with `env` and waits until it asks for its first
/// event; its stderr.
async fn logs_once_ready(moto: &Moto, bucket: &str, env: &[(&str, &str)]) -> String {
    let api = RuntimeApi::start().await;
    let function = Function::start(&package_dir(), &api, &moto.endpoint, Some(bucket), env);
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while api.next_requests().is_empty() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = function.logs();
    assert!(!api.next_requests().is_empty(), "not ready: {logs}");
    logs
}

/// Whether `dir` holds a compiled component.
fn cached_in(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_log_format_and_cache_dir_under_the_environment() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let dir = std::env::temp_dir().join(kit::unique("lambda-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let (file_cache, env_cache) = (dir.join("file-cache"), dir.join("env-cache"));
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "log_format = \"text\"\ncache_dir = \"{}\"\n",
            file_cache.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let ready = |logs: &str| {
        logs.lines()
            .find(|l| l.contains("audit-archiver function ready"))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .unwrap_or_else(|| panic!("no ready line: {logs}"))
    };

    // The file's values are taken.
    let logs = logs_once_ready(&moto, &bucket, &[("AUDIT_ARCHIVER_CONFIG", config)]).await;
    assert!(!ready(&logs), "text logs, as the file says: {logs}");
    assert!(cached_in(&file_cache), "{logs}");

    // The environment wins over the file.
    let logs = logs_once_ready(
        &moto,
        &bucket,
        &[
            ("AUDIT_ARCHIVER_CONFIG", config),
            ("AUDIT_ARCHIVER_LOG_FORMAT", "json"),
            ("AUDIT_ARCHIVER_CACHE_DIR", env_cache.to_str().unwrap()),
        ],
    )
    .await;
    assert!(ready(&logs), "JSON logs, as the environment says: {logs}");
    assert!(cached_in(&env_cache), "{logs}");

    // Set nowhere: a function's default, JSON logs.
    let logs = logs_once_ready(&moto, &bucket, &[]).await;
    assert!(ready(&logs), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precompiled_package_starts_without_compiling_and_archives() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let dir = package_dir();
    let artifact = dir.join("router.cwasm");
    let output = moto.run(&["lambda", "--precompile-to", artifact.to_str().unwrap()]);
    assert!(output.status.success(), "{}", kit::stderr(&output));
    // `router.cwasm` in LAMBDA_TASK_ROOT is found without any setting.
    let api = RuntimeApi::start().await;
    let function = Function::start(&dir, &api, &moto.endpoint, Some(&bucket), &[]);
    let acme = Mapping::new(&moto, &kit::unique("acme")).await;
    moto.send(&acme.url, &audit_log("p@example.com", 1, 0), None)
        .await;
    let messages = acme.receive_all(&moto, 1, 30).await;
    let started = now_ms();
    let outcome = api.invoke(&acme.event(&messages), ROOMY).await;
    assert_eq!(outcome.failures(), Vec::<String>::new());
    assert!(outcome.at_ms() >= started);
    assert_eq!(archived(&moto, &bucket).await.len(), 1);
    // Only an event that cannot be answered record by record fails whole.
    for (event, error_type) in [
        (
            serde_json::json!({"Records": [{"body": "no id"}]}),
            "InvalidEvent",
        ),
        (serde_json::json!({"Records": "not a list"}), ""),
    ] {
        match api.invoke(&event, ROOMY).await {
            runtime_api::Outcome::Error { body, .. } => assert!(
                body["errorType"].as_str().unwrap().contains(error_type),
                "{body}"
            ),
            other => panic!("{event} was answered: {other:?}"),
        }
    }
    let logs = function.logs();
    let ready = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "audit-archiver function ready")
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        ready["component"]
            .as_str()
            .unwrap()
            .contains("router.cwasm"),
        "{ready}"
    );
    assert!(!logs.contains("compiling the component at init"), "{logs}");

    // No artifact where LAMBDA_TASK_ROOT says (an emulator pointing it
    // elsewhere): the function still starts, and says why its init is slow.
    let elsewhere = std::env::temp_dir().join(kit::unique("task-root"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let root = ("LAMBDA_TASK_ROOT", elsewhere.to_str().unwrap());
    let logs = logs_once_ready(&moto, &bucket, &[root]).await;
    assert!(logs.contains("compiling the component at init"), "{logs}");
    let _ = std::fs::remove_dir_all(&elsewhere);
}

/// provided.al2023 ships glibc 2.34: the binary `scripts/package-lambda.sh`
/// zips as `bootstrap` (this one, stripped) must need no newer symbol.
#[test]
fn the_packaged_binary_needs_no_glibc_newer_than_al2023s() {
    let output = std::process::Command::new("objdump")
        .arg("-T")
        .arg(kit::binary())
        .output()
        .expect("objdump (binutils) is installed by scripts/setup.sh");
    assert!(output.status.success(), "{}", kit::stderr(&output));
    let table = String::from_utf8_lossy(&output.stdout);
    let mut versions: Vec<Vec<u32>> = table
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|token| token.strip_prefix("GLIBC_"))
        .filter_map(|v| v.split('.').map(|n| n.parse().ok()).collect())
        .collect();
    versions.sort();
    let newest = versions
        .last()
        .expect("a dynamically linked binary uses glibc");
    assert!(
        *newest <= vec![2, 34],
        "bootstrap needs GLIBC_{newest:?}; Amazon Linux 2023 has 2.34"
    );
    assert!(!table.contains("GLIBC_PRIVATE"), "no private glibc symbol");
}

/// An EventBridge scheduled event, as AWS documents it ("Amazon EventBridge
/// events": `source` aws.events, `detail-type` Scheduled Event).
fn scheduled_event() -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": kit::unique("event"),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-04T09:15:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/audit-archiver-seal"],
        "detail": {}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_invocation_seals_and_its_retry_in_a_new_environment_forks_nothing() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let api = RuntimeApi::start().await;
    let dir = kit::temp_dir("lambda-digests");
    let (key, public) = kit::openssl_keys(&dir, "digest");
    let period = (1.0f64 / 60.0).to_string();
    let env = [
        ("AUDIT_ARCHIVER_DIGEST_KEY_FILE", key.to_str().unwrap()),
        ("AUDIT_ARCHIVER_DIGEST_PERIOD_MINS", period.as_str()),
        ("AUDIT_ARCHIVER_DIGEST_DELAY_MINS", "0"),
    ];
    let function = Function::start(&package_dir(), &api, &moto.endpoint, Some(&bucket), &env);
    let acme = Mapping::new(&moto, &kit::unique("acme")).await;
    for n in 0..6 {
        moto.send(
            &acme.url,
            &audit_log("alice@example.com", now_ms(), n),
            None,
        )
        .await;
    }
    let messages = acme.receive_all(&moto, 6, 30).await;
    let outcome = api.invoke(&acme.event(&messages), ROOMY).await;
    assert_eq!(acme.apply(&moto, &messages, &outcome).await.len(), 6);
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    let sealed = |outcome: &runtime_api::Outcome| match outcome {
        runtime_api::Outcome::Response { body, .. } => body["sealed"].clone(),
        other => panic!("the scheduled invocation failed: {other:?}"),
    };
    let event = scheduled_event();
    let first = sealed(&api.invoke(&event, ROOMY).await);
    assert!(first["digests_written"].as_u64().unwrap() >= 1, "{first}");
    assert_eq!(first["objects_listed"], 6, "{first}");
    // The same event again, to a new execution environment (Lambda retries
    // a failed asynchronous invocation, possibly elsewhere): it continues
    // from the chain in the bucket.
    // Each environment has a Runtime API of its own: the killed one's
    // pending `next` must not take the retry.
    function.kill9();
    let api = RuntimeApi::start().await;
    let retry_env = Function::start(&package_dir(), &api, &moto.endpoint, Some(&bucket), &env);
    let retried = sealed(&api.invoke(&event, ROOMY).await);
    assert_eq!(retried["objects_listed"], 0, "{retried}");
    retry_env.kill9();

    let output = moto.run(&[
        "verify",
        "--bucket",
        &bucket,
        "--public-key",
        public.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(kit::exit_code(&output), 0, "{}", kit::stderr(&output));
    let proof = &kit::stdout_json(&output)["digests"];
    assert_eq!(proof["valid_log_files"], 6, "{proof:#}");
    assert_eq!(proof["digest_files"], proof["valid_digest_files"]);

    // Without a key, a scheduled invocation fails and says which variable.
    let api = RuntimeApi::start().await;
    let keyless = Function::start(&package_dir(), &api, &moto.endpoint, Some(&bucket), &[]);
    match api.invoke(&event, ROOMY).await {
        runtime_api::Outcome::Error { body, .. } => assert!(
            body.to_string()
                .contains("AUDIT_ARCHIVER_DIGEST_KMS_KEY_ID"),
            "{body}"
        ),
        other => panic!("a keyless scheduled invocation succeeded: {other:?}"),
    }
    keyless.kill9();
}
