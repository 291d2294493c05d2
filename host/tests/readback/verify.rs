//! `verify`: a drained archive is clean, with the right count per day; each
//! kind of tampering, really done to the bucket, is reported once by key.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{archive, bucket, put_raw, Record, DAY, HOUR, T};
use audit_archiver_test_kit::{audit_log, exit_code, stderr, stdout_json, Moto, StoredObject};

/// Tenant `acme`: 3 logs on 06-27, none on 06-28, 2 on 06-29; `beta`: 2 on
/// 06-27; and one body that is not JSON, which `--time-source event`
/// cannot date, so `run` quarantines it.
fn messages() -> Vec<(&'static str, String)> {
    vec![
        ("acme", audit_log("alice@example.com", T, 1)),
        ("acme", audit_log("alice@example.com", T + HOUR, 2)),
        ("acme", audit_log("bob@example.com", T + 2 * HOUR, 3)),
        ("acme", audit_log("bob@example.com", T + 2 * DAY, 4)),
        (
            "acme",
            audit_log("carol@example.com", T + 2 * DAY + HOUR, 5),
        ),
        ("beta", audit_log("dave@example.com", T + 5 * HOUR, 6)),
        ("beta", audit_log("erin@example.com", T + 6 * HOUR, 7)),
        ("acme", "this is not JSON".to_string()),
    ]
}

fn days(report: &serde_json::Value) -> BTreeMap<(String, String), u64> {
    report["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                (
                    d["tenant"].as_str().unwrap().to_string(),
                    d["day"].as_str().unwrap().to_string(),
                ),
                d["objects"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn empty_days(report: &serde_json::Value) -> BTreeSet<(String, String)> {
    report["empty_days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["tenant"].as_str().unwrap().to_string(),
                d["day"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(tenant: &str, day: &str) -> (String, String) {
    (tenant.to_string(), day.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_archive_verifies_clean_with_its_count_per_day() {
    let moto = Moto::start().await;
    let bucket = bucket(&moto, true, false).await;
    let objects = archive(&moto, &bucket, &messages(), &["--time-source", "event"]).await;
    assert_eq!(objects.len(), 8, "{:#?}", objects.keys());
    // A checkpoint of `backfill` beside the tenants is not part of the archive.
    moto.s3
        .put_object()
        .bucket(&bucket)
        .key("_state/backfill/acme/1750950000000-1751036400000.json")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"{}"))
        .send()
        .await
        .unwrap();

    let output = moto.run(&[
        "verify",
        "--bucket",
        &bucket,
        "--from",
        "2025-06-27",
        "--to",
        "2025-06-29",
        "--format",
        "json",
    ]);
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let report = stdout_json(&output);
    assert_eq!(report["findings"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["versioned"], true);
    assert_eq!(report["object_lock"], false);
    assert_eq!(report["objects"], 7);
    assert_eq!(
        days(&report),
        BTreeMap::from([
            (pair("acme", "2025-06-27"), 3),
            (pair("acme", "2025-06-29"), 2),
            (pair("beta", "2025-06-27"), 2),
        ])
    );
    assert_eq!(
        empty_days(&report),
        BTreeSet::from([
            pair("acme", "2025-06-28"),
            pair("beta", "2025-06-28"),
            pair("beta", "2025-06-29"),
        ])
    );
    let acme_27 = &report["days"][0];
    assert_eq!(acme_27["first"], "2025-06-27T11:32:20.913+09:00");
    assert_eq!(acme_27["last"], "2025-06-27T13:32:20.913+09:00");
    // The poison message was received today, not in June 2025.
    assert_eq!(report["quarantined"], serde_json::json!([]));

    // The readable report says the same.
    let output = moto.run(&[
        "verify",
        "--bucket",
        &bucket,
        "--from",
        "2025-06-27",
        "--to",
        "2025-06-29",
    ]);
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("acme") && l.contains("2025-06-27") && l.contains(" 3 ")),
        "{table}"
    );
    assert!(
        table.contains("OK: 7 object(s) checked, 0 finding(s)"),
        "{table}"
    );

    // No range: the whole of each tenant; empty days only between its first
    // and last object. One tenant only: the other is not read.
    let output = moto.run(&["verify", "--bucket", &bucket, "--format", "json"]);
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let report = stdout_json(&output);
    assert_eq!(days(&report).len(), 3);
    assert_eq!(
        empty_days(&report),
        BTreeSet::from([pair("acme", "2025-06-28")])
    );
    let quarantined = report["quarantined"].as_array().unwrap();
    assert_eq!(quarantined.len(), 1, "{report:#}");
    let reason = quarantined[0]["reason"].as_str().unwrap();
    assert!(reason.contains("body"), "{reason}");
    let (odd_key, _) = objects
        .iter()
        .find(|(_, o)| o.body == "this is not JSON")
        .unwrap();
    assert_eq!(quarantined[0]["key"], odd_key.as_str());

    let output = moto.run(&[
        "verify", "--bucket", &bucket, "--tenant", "beta", "--format", "json",
    ]);
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let report = stdout_json(&output);
    assert_eq!(
        days(&report),
        BTreeMap::from([(pair("beta", "2025-06-27"), 2)])
    );
    assert_eq!(
        report["quarantined"],
        serde_json::json!([]),
        "acme's poison message is not beta's"
    );

    // An RFC 3339 bound cuts inside a day: only 12:00 JST onwards of 06-27.
    let output = moto.run(&[
        "verify",
        "--bucket",
        &bucket,
        "--tenant",
        "acme",
        "--from",
        "2025-06-27T12:00:00+09:00",
        "--to",
        "2025-06-27",
        "--format",
        "json",
    ]);
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        days(&stdout_json(&output)),
        BTreeMap::from([(pair("acme", "2025-06-27"), 2)])
    );
}

/// The archived object holding the log with `resourceName` `TEST-{n}`.
fn object_of(objects: &BTreeMap<String, StoredObject>, n: usize) -> (String, StoredObject) {
    objects
        .iter()
        .find(|(_, o)| o.body.contains(&format!("\"TEST-{n}\"")))
        .map(|(k, o)| (k.clone(), o.clone()))
        .unwrap_or_else(|| panic!("log {n} not archived"))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tampering_is_reported_once_by_key() {
    let moto = Moto::start().await;
    let bucket = bucket(&moto, true, false).await;
    let objects = archive(&moto, &bucket, &messages(), &["--time-source", "event"]).await;
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();

    // An unconditional PUT over an archived key, even of the same bytes:
    // a second version.
    let (key, object) = object_of(&objects, 1);
    put_raw(
        &moto,
        &bucket,
        &key,
        &object.body,
        &object.metadata,
        Some(&object.body),
    )
    .await;
    expected.insert(key, "overwritten");

    // A DELETE: a delete marker.
    let (key, _) = object_of(&objects, 2);
    moto.s3
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    expected.insert(key, "deleted");

    // A body that does not match its stored checksum: moto stores the
    // checksum a PUT claims without checking it, the closest thing to bit
    // rot that can be done to a bucket here.
    let (key, object) = object_of(&objects, 3);
    let id = object.message_id().to_string();
    let forged_key = key.replace(&id, "forged-checksum");
    let mut metadata = object.metadata.clone();
    metadata.insert("sqs-message-id".into(), "forged-checksum".into());
    let forged_body = object
        .body
        .replace("bob@example.com", "mallory@example.com");
    put_raw(
        &moto,
        &bucket,
        &forged_key,
        &forged_body,
        &metadata,
        Some(&object.body),
    )
    .await;
    expected.insert(forged_key, "checksum-mismatch");

    // A faithful copy in another day's folder.
    let (key, object) = object_of(&objects, 6);
    let moved = key.replace("/2025/06/27/", "/2025/06/29/");
    assert_ne!(moved, key);
    put_raw(
        &moto,
        &bucket,
        &moved,
        &object.body,
        &object.metadata,
        Some(&object.body),
    )
    .await;
    expected.insert(moved, "misplaced");

    // A key that is not the layout's.
    let stray = "acme/2025/06/28/notes.txt".to_string();
    put_raw(
        &moto,
        &bucket,
        &stray,
        "hello",
        &BTreeMap::new(),
        Some("hello"),
    )
    .await;
    expected.insert(stray, "stray");

    // A well-named object without the queue's name in its metadata.
    let (key, object) = object_of(&objects, 4);
    let id = object.message_id().to_string();
    let bare_key = key.replace(&id, "no-queue");
    let mut metadata = object.metadata.clone();
    metadata.insert("sqs-message-id".into(), "no-queue".into());
    metadata.remove("sqs-queue");
    put_raw(
        &moto,
        &bucket,
        &bare_key,
        &object.body,
        &metadata,
        Some(&object.body),
    )
    .await;
    expected.insert(bare_key, "missing-metadata");

    let output = moto.run(&[
        "verify",
        "--bucket",
        &bucket,
        "--from",
        "2025-06-27",
        "--to",
        "2025-06-29",
        "--format",
        "json",
    ]);
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let report = stdout_json(&output);
    let findings = report["findings"].as_array().unwrap();
    let found: BTreeMap<String, String> = findings
        .iter()
        .map(|f| {
            let kinds: Vec<&str> = f["kinds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap())
                .collect();
            (f["key"].as_str().unwrap().to_string(), kinds.join(","))
        })
        .collect();
    assert_eq!(
        findings.len(),
        found.len(),
        "one finding per key: {report:#}"
    );
    let expected: BTreeMap<String, String> = expected
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    assert_eq!(found, expected, "{report:#}");

    // The table names each key once too.
    let output = moto.run(&[
        "verify",
        "--bucket",
        &bucket,
        "--from",
        "2025-06-27",
        "--to",
        "2025-06-29",
    ]);
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let table = String::from_utf8(output.stdout).unwrap();
    for key in expected.keys() {
        assert_eq!(table.matches(key.as_str()).count(), 1, "{key} in\n{table}");
    }
    assert!(table.contains("FINDINGS (6)"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_object_lock_every_object_needs_a_retention() {
    let moto = Moto::start().await;
    let bucket = bucket(&moto, true, true).await;
    let record = Record {
        timestamp: T,
        user: "alice@example.com",
        ip: "203.0.113.7",
        resource_type: "Policy",
        resource_name: "prod",
        action_type: "UPDATE",
        result: "Successful",
    };
    let objects = archive(
        &moto,
        &bucket,
        &[("acme", record.json())],
        &[
            "--time-source",
            "event",
            "--object-lock-mode",
            "GOVERNANCE",
            "--object-lock-retain-days",
            "1",
        ],
    )
    .await;
    let args = [
        "verify",
        "--bucket",
        &bucket,
        "--from",
        "2025-06-27",
        "--to",
        "2025-06-27",
        "--format",
        "json",
    ];
    let output = moto.run(&args);
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let report = stdout_json(&output);
    assert_eq!(report["object_lock"], true);
    assert_eq!(report["objects"], 1);

    // The same log stored again under another id, without a retention.
    let (key, object) = objects.iter().next().unwrap();
    let unlocked = key.replace(object.message_id(), "unlocked");
    let mut metadata = object.metadata.clone();
    metadata.insert("sqs-message-id".into(), "unlocked".into());
    put_raw(
        &moto,
        &bucket,
        &unlocked,
        &object.body,
        &metadata,
        Some(&object.body),
    )
    .await;
    let output = moto.run(&args);
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let report = stdout_json(&output);
    assert_eq!(
        report["findings"],
        serde_json::json!([{
            "key": unlocked,
            "kinds": ["no-retention"],
            "detail": "Object Lock is enabled on the bucket but the object has no retention",
        }]),
        "{report:#}"
    );
}
