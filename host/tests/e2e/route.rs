//! `route`: the offline dry run over a Lambda-shaped SQS event.

use audit_archiver_test_kit::{self as kit, stderr};

const EVENT: &str = r#"{"Records":[
 {"messageId":"059f36b4-87a3-44ab-83d2-661975830a7d","receiptHandle":"r1","body":"{\"timestamp\":1750991540913,\"user\":\"alice@example.com\",\"actionType\":\"CREATE\",\"result\":\"Successful\"}","attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"1750991540000","SenderId":"AIDA","ApproximateFirstReceiveTimestamp":"1750991541000"},"messageAttributes":{},"md5OfBody":"x","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo","awsRegion":"ap-northeast-1"},
 {"messageId":"2e1424d4-f796-459a-8184-9c92662be6da","receiptHandle":"r2","body":"{}","attributes":{"SentTimestamp":"1750991540000"},"eventSourceARN":"arn:aws:sqs:ap-northeast-1:123456789012:globex-prismacloud-auditlog"},
 {"messageId":"m3","body":"{}","attributes":{"ApproximateFirstReceiveTimestamp":"1750949999999"},"eventSourceARN":"arn:aws:sqs:ap-northeast-1:123456789012:initech-prismacloud-auditlog"},
 {"messageId":"m4","body":"{}","attributes":{"ApproximateFirstReceiveTimestamp":"soon"},"eventSourceARN":"arn:aws:sqs:ap-northeast-1:123456789012:initech-prismacloud-auditlog"}
]}"#;

fn route(args: &[&str], stdin: &str) -> std::process::Output {
    let args: Vec<&str> = ["route"].iter().chain(args).copied().collect();
    kit::run_with_stdin(&args, stdin)
}

#[test]
fn routes_a_lambda_event_in_input_order() {
    let output = route(&["--event", "-", "--key-template", "seed"], EVENT);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"message_id":"059f36b4-87a3-44ab-83d2-661975830a7d","tenant":"acme","key":"acme/2025/06/27/prismacloud-auditlog-acme-20250627-113221.json"}"#
    );
    // No first-receive timestamp: an error, never a guess.
    assert!(
        lines[1].starts_with(
            r#"{"message_id":"2e1424d4-f796-459a-8184-9c92662be6da","error":"missing-time: "#
        ),
        "{}",
        lines[1]
    );
    // 2025-06-26T14:59:59.999Z is still the 26th in JST.
    assert_eq!(
        lines[2],
        r#"{"message_id":"m3","tenant":"initech","key":"initech/2025/06/26/prismacloud-auditlog-initech-20250626-235959.json"}"#
    );
    assert!(
        lines[3].starts_with(r#"{"message_id":"m4","error":"invalid-time: "#),
        "{}",
        lines[3]
    );
    assert_eq!(lines.len(), 4);
}

#[test]
fn routes_ndjson_from_a_file_with_other_settings() {
    let dir = std::env::temp_dir().join(kit::unique("route"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("records.ndjson");
    let records: serde_json::Value = serde_json::from_str(EVENT).unwrap();
    let ndjson: String = records["Records"].as_array().unwrap()[..2]
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    std::fs::write(&path, ndjson).unwrap();
    let output = route(
        &[
            "--event",
            path.to_str().unwrap(),
            "--time-source",
            "sent",
            "--utc-offset",
            "+00:00",
            "--key-template",
            "{tenant}/%Y-%m-%d/%H%M%S-{message_id}.json",
        ],
        "",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout,
        concat!(
            r#"{"message_id":"059f36b4-87a3-44ab-83d2-661975830a7d","tenant":"acme","key":"acme/2025-06-27/023220-059f36b4-87a3-44ab-83d2-661975830a7d.json"}"#,
            "\n",
            r#"{"message_id":"2e1424d4-f796-459a-8184-9c92662be6da","tenant":"globex","key":"globex/2025-06-27/023220-2e1424d4-f796-459a-8184-9c92662be6da.json"}"#,
            "\n",
        )
    );
}

#[test]
fn bad_route_input_exits_2() {
    let output = route(&["--event", "-"], "{not json");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--event"), "{}", stderr(&output));
    let output = route(&["--event", "/nonexistent/event.json"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--event"), "{}", stderr(&output));
}
