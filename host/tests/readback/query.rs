//! `query`: each filter returns exactly the archived records that match, in
//! time order, each with the key of the object that holds it; a body that
//! is not JSON is reported with its key.

use std::collections::BTreeMap;

use crate::common::{archive, bucket, Record, DAY, HOUR, T};
use audit_archiver_test_kit::{exit_code, stderr, Moto, StoredObject};

fn record(
    timestamp: u64,
    user: &'static str,
    action_type: &'static str,
    result: &'static str,
    ip: &'static str,
    resource_type: &'static str,
    resource_name: &'static str,
) -> Record {
    Record {
        timestamp,
        user,
        ip,
        resource_type,
        resource_name,
        action_type,
        result,
    }
}

/// The messages of tenant `acme`, each one or more records. Sent in an
/// order that is not time order; one body is an array of two records
/// whose second is later than the next message's.
fn messages() -> Vec<Vec<Record>> {
    vec![
        vec![record(
            T + 3 * HOUR,
            "alice@example.com",
            "CREATE",
            "Successful",
            "203.0.113.7",
            "Account Group",
            "TEST-1",
        )],
        vec![record(
            T + HOUR,
            "bob@example.com",
            "UPDATE",
            "Failed",
            "198.51.100.2",
            "Policy",
            "prod-policy",
        )],
        vec![
            record(
                T + HOUR / 2,
                "alice@example.com",
                "DELETE",
                "Successful",
                "203.0.113.7",
                "Policy",
                "prod-policy",
            ),
            record(
                T + 5 * HOUR,
                "carol@example.com",
                "LOGIN",
                "Successful",
                "192.0.2.10",
                "Login",
                "carol",
            ),
        ],
        vec![record(
            T + 2 * DAY,
            "alice@example.com",
            "UPDATE",
            "Successful",
            "203.0.113.7",
            "Policy",
            "prod-policy",
        )],
        vec![record(
            T - DAY,
            "bob@example.com",
            "READ",
            "Successful",
            "198.51.100.2",
            "Policy",
            "prod-policy",
        )],
    ]
}

/// Which records a filter keeps, as the test itself decides it.
type Keep = Box<dyn Fn(&Record) -> bool>;

fn body(records: &[Record]) -> String {
    match records {
        [one] => one.json(),
        many => format!(
            "[{}]",
            many.iter().map(Record::json).collect::<Vec<_>>().join(",")
        ),
    }
}

/// Runs `query` and returns its NDJSON lines (exit 0 expected).
fn query(moto: &Moto, bucket: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "query",
        "--bucket",
        bucket,
        "--tenant",
        "acme",
        "--from",
        "2025-06-27",
        "--to",
        "2025-06-29",
    ];
    args.extend_from_slice(extra);
    let output = moto.run(&args);
    assert_eq!(exit_code(&output), 0, "{extra:?}: {}", stderr(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// The records archived on 06-27..=06-29 (JST, by archive time: the
/// earliest record of a message) that pass `keep`, in time order.
fn expected(keep: impl Fn(&Record) -> bool) -> Vec<Record> {
    let first = T - (T + 9 * HOUR) % DAY; // 2025-06-27 00:00 JST
    let end = first + 3 * DAY;
    let mut out: Vec<Record> = messages()
        .into_iter()
        .filter(|m| {
            let archived = m.iter().map(|r| r.timestamp).min().unwrap();
            (first..end).contains(&archived)
        })
        .flatten()
        .filter(|r| keep(r))
        .collect();
    out.sort_by_key(|r| r.timestamp);
    out
}

/// Checks the printed lines against the expected records, and that each
/// line's key holds its record and its archived time is the object's.
fn check(
    lines: &[serde_json::Value],
    expected: &[Record],
    objects: &BTreeMap<String, StoredObject>,
    what: &str,
) {
    let got: Vec<(u64, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["record"]["timestamp"].as_u64().unwrap(),
                l["record"]["user"].as_str().unwrap(),
                l["record"]["actionType"].as_str().unwrap(),
            )
        })
        .collect();
    let want: Vec<(u64, &str, &str)> = expected
        .iter()
        .map(|r| (r.timestamp, r.user, r.action_type))
        .collect();
    assert_eq!(got, want, "{what}");
    for line in lines {
        let key = line["key"].as_str().unwrap();
        let object = &objects[key];
        let record: serde_json::Value = line["record"].clone();
        let stored: serde_json::Value = serde_json::from_str(&object.body).unwrap();
        let holds = match &stored {
            serde_json::Value::Array(items) => items.contains(&record),
            one => *one == record,
        };
        assert!(holds, "{what}: {key} does not hold {record}");
        let archived: i64 = object.metadata["archive-time-ms"].parse().unwrap();
        let archived_at =
            chrono::DateTime::parse_from_rfc3339(line["archived_at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
        assert_eq!(archived_at, archived, "{what}: {line}");
        assert!(line["archived_at"].as_str().unwrap().ends_with("+09:00"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_filter_returns_exactly_the_matching_records_in_time_order() {
    let moto = Moto::start().await;
    let bucket = bucket(&moto, false, false).await;
    let bodies: Vec<(&str, String)> = messages().iter().map(|m| ("acme", body(m))).collect();
    let objects = archive(&moto, &bucket, &bodies, &["--time-source", "event"]).await;
    assert_eq!(objects.len(), 5);

    let all = query(&moto, &bucket, &[]);
    check(&all, &expected(|_| true), &objects, "no filter");
    assert_eq!(all.len(), 5, "the 06-26 log is outside the range");

    let cases: Vec<(Vec<&str>, Keep)> = vec![
        (
            vec!["--user", "alice@example.com"],
            Box::new(|r| r.user == "alice@example.com"),
        ),
        (
            vec!["--action-type", "UPDATE"],
            Box::new(|r| r.action_type == "UPDATE"),
        ),
        (
            vec!["--result", "Failed"],
            Box::new(|r| r.result == "Failed"),
        ),
        (
            vec!["--ip", "203.0.113.7"],
            Box::new(|r| r.ip == "203.0.113.7"),
        ),
        (
            vec!["--resource-type", "Policy"],
            Box::new(|r| r.resource_type == "Policy"),
        ),
        (
            vec!["--contains", "TEST-1"],
            Box::new(|r| r.resource_name == "TEST-1"),
        ),
        (
            vec!["--contains", "prod-pol"],
            Box::new(|r| r.resource_name.contains("prod-pol")),
        ),
        (
            vec!["--user", "alice@example.com", "--action-type", "UPDATE"],
            Box::new(|r| r.user == "alice@example.com" && r.action_type == "UPDATE"),
        ),
        (vec!["--user", "nobody@example.com"], Box::new(|_| false)),
    ];
    for (args, keep) in cases {
        let lines = query(&moto, &bucket, &args);
        let want = expected(keep);
        assert!(
            !want.is_empty() || args[1] == "nobody@example.com",
            "{args:?}"
        );
        check(&lines, &want, &objects, &format!("{args:?}"));
    }

    // An RFC 3339 bound selects by archive time: the two-record message was
    // archived at 12:02 JST, before 12:10.
    let output = moto.run(&[
        "query",
        "--bucket",
        &bucket,
        "--tenant",
        "acme",
        "--from",
        "2025-06-27T12:10:00+09:00",
        "--to",
        "2025-06-27",
    ]);
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let users: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["record"]["user"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(users, ["bob@example.com", "alice@example.com"]);

    // CSV and table print the same records.
    for (format, header) in [("csv", 1), ("table", 1)] {
        let output = moto.run(&[
            "query",
            "--bucket",
            &bucket,
            "--tenant",
            "acme",
            "--from",
            "2025-06-27",
            "--to",
            "2025-06-29",
            "--format",
            format,
            "--resource-type",
            "Policy",
        ]);
        assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
        let text = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), header + 3, "{format}:\n{text}");
        if format == "csv" {
            assert_eq!(
                lines[0],
                "time,user,ipAddress,resourceType,resourceName,actionType,action,result,archived_at,key"
            );
            assert!(
                lines[1].starts_with("2025-06-27T12:02:20.913+09:00,alice@example.com,"),
                "{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_json_is_reported_with_its_key() {
    let moto = Moto::start().await;
    let bucket = bucket(&moto, false, false).await;
    let good = record(
        T,
        "alice@example.com",
        "CREATE",
        "Successful",
        "203.0.113.7",
        "Policy",
        "p",
    );
    // The default time source archives any body, JSON or not, today.
    let objects = archive(
        &moto,
        &bucket,
        &[("acme", good.json()), ("acme", "<not json/>".to_string())],
        &[],
    )
    .await;
    let (bad_key, _) = objects
        .iter()
        .find(|(_, o)| o.body == "<not json/>")
        .unwrap();
    let today = chrono::Utc::now() + chrono::Duration::hours(9);
    let (from, to) = (
        (today - chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string(),
        (today + chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string(),
    );
    let output = moto.run(&[
        "query", "--bucket", &bucket, "--tenant", "acme", "--from", &from, "--to", &to,
    ]);
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(bad_key.as_str()) && err.contains("not JSON"),
        "{err}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("alice@example.com"));
}
