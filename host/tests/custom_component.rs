//! A team's own routing component, run by the unchanged host with
//! `--component`: `examples/flat-layout` (same WIT world, another layout) is
//! built for wasm32-wasip2 and its placements checked through
//! `audit-archiver route`. Components the host must refuse at start-up (built
//! from the one hostile fixture, `tests/fixtures/hostile-router`: against the
//! next major version of the contract, or with a world that imports a
//! function) and a file that is not a component exit with code 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use audit_archiver::engine::ROUTER_INTERFACE;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The example component, built once.
fn flat_layout() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| audit_archiver_guest_build::flat_layout(&workspace()).unwrap())
}

/// A start-up refusal variant of the hostile fixture.
fn hostile(variant: &str) -> PathBuf {
    audit_archiver_guest_build::hostile_router(&workspace(), variant).unwrap()
}

fn route(component: &Path, extra: &[&str], event: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_audit-archiver"))
        .args(["route", "--event", "-", "--component"])
        .arg(component)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const EVENT: &str = r#"{"Records":[
 {"messageId":"m-1","body":"{}","eventSourceARN":"arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo","attributes":{"ApproximateFirstReceiveTimestamp":"1750991540913","SentTimestamp":"1750950000000"}},
 {"messageId":"m-2","body":"{}","eventSourceARN":"arn:aws:sqs:ap-northeast-1:123456789012:legacy-audit","attributes":{"ApproximateFirstReceiveTimestamp":"1751327999999","SentTimestamp":"1751327999999"}},
 {"messageId":"a/b","body":"{}","eventSourceARN":"arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo","attributes":{"ApproximateFirstReceiveTimestamp":"1750991540913"}},
 {"messageId":"m-4","body":"{}","eventSourceARN":"arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo","attributes":{}}
]}"#;

#[test]
fn the_host_runs_a_component_with_another_layout() {
    let flat = flat_layout();
    // The template and offset are the flat layout's to ignore: UTC dates,
    // `{tenant}/{YYYY-MM-DD}/{message_id}.json`.
    let output = route(
        flat,
        &[
            "--key-template",
            "seed",
            "--utc-offset",
            "+09:00",
            "--tenant-map",
            "legacy-audit=acme_legacy",
        ],
        EVENT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(
        lines[0],
        r#"{"message_id":"m-1","tenant":"acme","key":"acme/2025-06-27/m-1.json"}"#
    );
    // 2025-06-30T23:59:59.999Z: still June 30 in UTC (July 1 in JST).
    assert_eq!(
        lines[1],
        r#"{"message_id":"m-2","tenant":"acme_legacy","key":"acme_legacy/2025-06-30/m-2.json"}"#
    );
    assert!(
        lines[2].starts_with(r#"{"message_id":"a/b","error":"invalid-message-id: "#),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with(r#"{"message_id":"m-4","error":"missing-time: "#),
        "{}",
        lines[3]
    );

    // The time source is honoured: SentTimestamp 2025-06-26T04:20:00Z.
    let sent = route(flat, &["--time-source", "sent"], EVENT);
    let stdout = String::from_utf8(sent.stdout).unwrap();
    assert_eq!(
        stdout.lines().next(),
        Some(r#"{"message_id":"m-1","tenant":"acme","key":"acme/2025-06-26/m-1.json"}"#)
    );
    // Its settings check runs at start-up, like the embedded component's.
    let bad = route(flat, &["--tenant-map", "acme-q=not-a-tenant"], EVENT);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--tenant-map"), "{stderr}");
}

#[test]
fn the_host_refuses_a_component_of_another_contract_version() {
    let v2 = hostile("wrong-world");
    let output = route(&v2, &[], EVENT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "no placement may be printed");
    for needed in [
        "--component",
        ROUTER_INTERFACE,
        "audit-archiver:routing/router@2.0.0",
        "wrong-world.wasm",
    ] {
        assert!(stderr.contains(needed), "{needed:?} not in: {stderr}");
    }
}

#[test]
fn the_host_refuses_a_component_that_imports_anything() {
    let importing = hostile("imports-function");
    let output = route(&importing, &[], EVENT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "no placement may be printed");
    for needed in [
        "--component",
        "imports-function.wasm",
        "imports [\"log\"]",
        "must import nothing",
    ] {
        assert!(stderr.contains(needed), "{needed:?} not in: {stderr}");
    }
}

#[test]
fn the_host_refuses_a_file_that_is_not_a_component() {
    let dir = workspace().join("target").join("examples");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("not-a-component.wasm");
    // A core module (empty), not a component.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let output = route(&path, &[], EVENT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("--component"), "{stderr}");
    assert!(stderr.contains("not-a-component.wasm"), "{stderr}");
}
