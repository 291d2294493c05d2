//! Scenario 5: bad input. Bodies and queue names through the real pipeline
//! (stored, or quarantined with the reason in `quarantine-reason`), attributes
//! and message ids SQS would never produce through `route` (one line per
//! record, each with its reason), and bad settings (refused at start-up, exit
//! 2, naming the flag). None lost.

use std::collections::BTreeMap;

use audit_archiver_test_kit::{self as kit, audit, stderr, Moto, Sent};

/// What must become of a message.
#[derive(Debug, Clone)]
enum Expect {
    /// Stored under `{tenant}/`.
    Stored(&'static str),
    /// Quarantined; the reason starts with one of these cases.
    Quarantined(&'static [&'static str]),
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_stored_quarantined_or_refused_never_lost() {
    let _serial = kit::serial().await;
    let name = "bad-input";
    let moto = Moto::start().await;
    let bucket = moto.versioned_bucket().await;
    let acme = moto.tenant_queue("acme", false).await;
    let acme_fifo = moto.tenant_queue("acme", true).await;
    // A name starting with `-` has no tenant; a 64-byte tenant is too long.
    let no_tenant = moto.queue("-no-tenant").await;
    let long_tenant = moto.queue(&format!("{}-q", "t".repeat(64))).await;
    let queues = vec![
        acme.clone(),
        acme_fifo.clone(),
        no_tenant.clone(),
        long_tenant.clone(),
    ];

    let ts = 1_750_991_540_913u64;
    let mut mib = format!(r#"{{"timestamp":{ts},"pad":""#);
    mib.push_str(&"x".repeat((1 << 20) - mib.len() - 2));
    mib.push_str("\"}");
    assert_eq!(mib.len(), 1 << 20);
    const BODY: &[&str] = &["invalid-body", "missing-time", "invalid-time"];
    let cases: Vec<(&str, String, Expect)> = vec![
        ("empty body", String::new(), Expect::Quarantined(BODY)),
        (
            "whitespace body",
            " \n\t ".into(),
            Expect::Quarantined(BODY),
        ),
        (
            "non-JSON body",
            "not json at all {".into(),
            Expect::Quarantined(&["invalid-body"]),
        ),
        ("1 MiB body", mib, Expect::Stored("acme")),
        (
            "JSON array of records",
            format!(r#"[{{"timestamp":{ts}}},{{"timestamp":{}}}]"#, ts - 5),
            Expect::Stored("acme"),
        ),
        ("empty JSON array", "[]".into(), Expect::Quarantined(BODY)),
        (
            "array of numbers",
            "[1,2,3]".into(),
            Expect::Quarantined(BODY),
        ),
        ("JSON null", "null".into(), Expect::Quarantined(BODY)),
        ("JSON number", "42".into(), Expect::Quarantined(BODY)),
        (
            "object without timestamp",
            r#"{"user":"a"}"#.into(),
            Expect::Quarantined(&["missing-time"]),
        ),
        (
            "garbage timestamp",
            r#"{"timestamp":"yesterday"}"#.into(),
            Expect::Quarantined(&["invalid-time"]),
        ),
        (
            "negative timestamp",
            r#"{"timestamp":-5}"#.into(),
            Expect::Quarantined(&["invalid-time"]),
        ),
        (
            "huge timestamp",
            r#"{"timestamp":1e300}"#.into(),
            Expect::Quarantined(&["invalid-time"]),
        ),
        (
            "timestamp past year 9999",
            r#"{"timestamp":999999999999999999}"#.into(),
            Expect::Quarantined(&["invalid-time"]),
        ),
        (
            "non-ASCII body",
            format!(r#"{{"timestamp":{ts},"user":"山田","emoji":"🔐"}}"#),
            Expect::Stored("acme"),
        ),
    ];
    let mut sent = Sent::new();
    let mut expected: BTreeMap<String, (String, Expect)> = BTreeMap::new();
    for (fifo, queue) in [(false, &acme), (true, &acme_fifo)] {
        for (what, body, expect) in &cases {
            let before: Vec<String> = sent.keys().cloned().collect();
            moto.send_bodies(queue, std::slice::from_ref(body), fifo, &mut sent)
                .await;
            let id = sent.keys().find(|k| !before.contains(k)).unwrap().clone();
            expected.insert(id, (format!("{what} (fifo={fifo})"), expect.clone()));
        }
    }
    let valid = kit::audit_log("alice@example.com", ts, 1);
    for (what, queue) in [
        ("queue with no tenant", &no_tenant),
        ("64-byte tenant", &long_tenant),
    ] {
        let before: Vec<String> = sent.keys().cloned().collect();
        moto.send_bodies(queue, std::slice::from_ref(&valid), false, &mut sent)
            .await;
        let id = sent.keys().find(|k| !before.contains(k)).unwrap().clone();
        expected.insert(
            id,
            (what.to_string(), Expect::Quarantined(&["invalid-queue"])),
        );
    }

    let output = moto.run(&[
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--queue",
        &acme,
        "--queue",
        &acme_fifo,
        "--queue",
        &no_tenant,
        "--queue",
        &long_tenant,
        "--time-source",
        "event",
        "--stats-interval-secs",
        "0",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = moto.objects(&bucket).await;
    let (mut stored, mut quarantined) = (0, 0);
    for (id, (what, expect)) in &expected {
        let (key, object) = objects
            .iter()
            .find(|(_, o)| o.message_id() == id)
            .unwrap_or_else(|| panic!("{what}: message {id} lost"));
        assert_eq!(&object.body, &sent[id].1, "{what}: body byte for byte");
        match expect {
            Expect::Stored(tenant) => {
                assert!(
                    key.starts_with(&format!("{tenant}/")),
                    "{what}: stored under {key}"
                );
                stored += 1;
            }
            Expect::Quarantined(cases) => {
                assert!(
                    key.starts_with("_quarantine/"),
                    "{what}: expected quarantine, got {key}"
                );
                let reason = object
                    .metadata
                    .get("quarantine-reason")
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    cases.iter().any(|c| reason.starts_with(c)),
                    "{what}: reason {reason:?} is none of {cases:?}"
                );
                assert!(
                    stderr(&output).contains(id.as_str()),
                    "{what}: the log names message {id}"
                );
                quarantined += 1;
                println!("[{name}] {what}: quarantined: {reason}");
            }
        }
    }
    let result = audit(&moto, &bucket, &sent, &queues).await;
    println!(
        "[{name}] through SQS: {} messages ({} kinds x standard+FIFO + 2 bad queues): stored={stored} quarantined={quarantined}",
        expected.len(),
        cases.len()
    );
    result.assert_perfect(name);

    // What SQS never delivers but a Lambda event or a caller of `route` may
    // hold: one output line per record, in order, each with its reason.
    let arn = "arn:aws:sqs:us-east-1:123456789012:acme-q";
    let record = |id: &str, queue: &str, attributes: &str, body: &str| {
        format!(
            r#"{{"messageId":{},"eventSourceARN":{},"attributes":{attributes},"body":{body}}}"#,
            serde_json::to_string(id).unwrap(),
            serde_json::to_string(queue).unwrap()
        )
    };
    let ok_attrs = r#"{"ApproximateFirstReceiveTimestamp":"1750991540913"}"#;
    let route_cases: Vec<(&str, String, Option<&str>)> = vec![
        ("valid", record("m-ok", arn, ok_attrs, r#""{}""#), None),
        (
            "missing attributes",
            record("m1", arn, "{}", r#""{}""#),
            Some("missing-time"),
        ),
        (
            "garbage timestamp attribute",
            record(
                "m2",
                arn,
                r#"{"ApproximateFirstReceiveTimestamp":"yesterday"}"#,
                r#""{}""#,
            ),
            Some("time"),
        ),
        (
            "negative timestamp attribute",
            record(
                "m3",
                arn,
                r#"{"ApproximateFirstReceiveTimestamp":"-5"}"#,
                r#""{}""#,
            ),
            Some("time"),
        ),
        (
            "overflowing timestamp attribute",
            record(
                "m4",
                arn,
                r#"{"ApproximateFirstReceiveTimestamp":"99999999999999999999"}"#,
                r#""{}""#,
            ),
            Some("range"),
        ),
        (
            "message id with /",
            record("a/b", arn, ok_attrs, r#""{}""#),
            Some("invalid-message-id"),
        ),
        (
            "message id ..",
            record("..", arn, ok_attrs, r#""{}""#),
            Some("invalid-message-id"),
        ),
        (
            "message id .",
            record(".", arn, ok_attrs, r#""{}""#),
            Some("invalid-message-id"),
        ),
        (
            "empty message id",
            record("", arn, ok_attrs, r#""{}""#),
            Some("invalid-message-id"),
        ),
        (
            "message id with newline",
            record("a\nb", arn, ok_attrs, r#""{}""#),
            Some("invalid-message-id"),
        ),
        (
            "200-byte message id",
            record(&"i".repeat(200), arn, ok_attrs, r#""{}""#),
            Some("invalid-message-id"),
        ),
        (
            "tenant with $",
            record(
                "m5",
                "arn:aws:sqs:us-east-1:123456789012:ac$me-q",
                ok_attrs,
                r#""{}""#,
            ),
            Some("invalid-queue"),
        ),
        (
            "tenant with /",
            record(
                "m6",
                "arn:aws:sqs:us-east-1:123456789012:a/b-q",
                ok_attrs,
                r#""{}""#,
            ),
            Some("invalid-queue"),
        ),
        (
            "non-ASCII tenant",
            record(
                "m7",
                "arn:aws:sqs:us-east-1:123456789012:acmé-q",
                ok_attrs,
                r#""{}""#,
            ),
            Some("invalid-queue"),
        ),
        (
            "queue with no tenant",
            record(
                "m8",
                "arn:aws:sqs:us-east-1:123456789012:-q",
                ok_attrs,
                r#""{}""#,
            ),
            Some("invalid-queue"),
        ),
        (
            "empty queue",
            record("m9", "", ok_attrs, r#""{}""#),
            Some("invalid-queue"),
        ),
        (
            "body not a string",
            record("m10", arn, ok_attrs, "5"),
            Some("invalid-record"),
        ),
    ];
    let dir = std::env::temp_dir().join(kit::unique("bad-input"));
    std::fs::create_dir_all(&dir).unwrap();
    let event = dir.join("event.json");
    let lines: Vec<&str> = route_cases.iter().map(|(_, r, _)| r.as_str()).collect();
    std::fs::write(&event, format!("{{\"Records\":[{}]}}", lines.join(","))).unwrap();
    let output = moto.run(&["route", "--event", event.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let results: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        results.len(),
        route_cases.len(),
        "one line per record: {out}"
    );
    for ((what, _, expect), line) in route_cases.iter().zip(&results) {
        match expect {
            None => assert!(line["key"].is_string(), "{what}: {line}"),
            Some(word) => {
                let error = line["error"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: {line}"));
                assert!(
                    error.contains(word),
                    "{what}: {error:?} should mention {word}"
                );
                println!("[{name}] route: {what}: {error}");
            }
        }
    }

    // Bad settings: refused at start-up, exit 2, naming the flag; nothing consumed.
    let probe = moto.tenant_queue("acme", false).await;
    moto.send(&probe, &valid, None).await;
    let bad_settings: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--key-template", "{tenant}/{nope}.json"],
            "--key-template",
        ),
        (vec!["--key-template", "/{tenant}/x.json"], "--key-template"),
        (vec!["--key-template", ""], "--key-template"),
        (vec!["--utc-offset", "+25:00"], "--utc-offset"),
        (vec!["--utc-offset", "JST"], "--utc-offset"),
        (vec!["--tenant-map", "q=ac$me"], "--tenant-map"),
        (vec!["--tenant-map", "no-equals-sign"], "--tenant-map"),
        (vec!["--quarantine-prefix", "../q/"], "--quarantine-prefix"),
        (vec!["--quarantine-prefix", "/abs/"], "--quarantine-prefix"),
        (
            vec!["--visibility-timeout-secs", "5"],
            "--visibility-timeout-secs",
        ),
        (vec!["--wait-time-secs", "30"], "--wait-time-secs"),
        (
            vec!["--discovery-interval-secs", "86401"],
            "--discovery-interval-secs",
        ),
        (vec!["--concurrency", "0"], "--concurrency"),
        (vec!["--max-attempts", "0"], "--max-attempts"),
        (
            vec!["--component-timeout-ms", "1"],
            "--component-timeout-ms",
        ),
        (
            vec!["--component-memory-mib", "0"],
            "--component-memory-mib",
        ),
        (vec!["--sse", "rot13"], "--sse"),
        (vec!["--storage-class", "CHEAP"], "--storage-class"),
        (vec!["--endpoint-url", "ftp://127.0.0.1"], "--endpoint-url"),
        (vec!["--object-lock-mode", "COMPLIANCE"], "--object-lock"),
    ];
    for (extra, flag) in &bad_settings {
        let mut args = vec!["run", "--drain", "--bucket", &bucket, "--queue", &probe];
        args.extend(extra.iter().copied());
        let output = moto.run(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(flag),
            "{extra:?} must name {flag}: {}",
            stderr(&output)
        );
    }
    assert_eq!(moto.depth(&probe).await, 1, "bad settings consumed nothing");
    println!(
        "[{name}] route: {} records, {} rejected with a reason, 0 lost; settings: {} refused at start-up (exit 2, flag named), 0 messages consumed",
        route_cases.len(),
        route_cases.len() - 1,
        bad_settings.len()
    );
}
