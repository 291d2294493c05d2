//! A team's own routing component, run by the unchanged host with
//! `--component`: `examples/flat-layout` (same WIT world, another layout) is
//! built for wasm32-wasip2 and its placements checked through
//! `audit-archiver route`; the same crate built against contract 1.0.0 (no
//! `route-queue`) still runs, through `route-batch`, with the same results.
//! Components the host must refuse at start-up (built from the one hostile
//! fixture, `tests/fixtures/hostile-router`: against the next major version
//! of the contract, or with a world that imports a function) and a file that
//! is not a component exit with code 2.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use audit_archiver::route::ROUTER_INTERFACE;

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

/// The example component built against contract 1.0.0 as released, once.
fn flat_layout_1_0() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| audit_archiver_guest_build::flat_layout_1_0(&workspace()).unwrap())
}

/// A start-up refusal variant of the hostile fixture.
fn hostile(variant: &str) -> PathBuf {
    audit_archiver_guest_build::hostile_router(&workspace(), variant).unwrap()
}

fn route(component: &Path, extra: &[&str], event: &str) -> Output {
    let component = component.to_str().expect("a UTF-8 path");
    let mut args = vec!["route", "--event", "-", "--component", component];
    args.extend_from_slice(extra);
    audit_archiver_test_kit::run_with_stdin(&args, event)
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
fn a_component_built_against_contract_1_0_still_runs_through_route_batch() {
    use audit_archiver::route::{ComponentSource, RouterComponent, SandboxLimits};
    use audit_archiver_transform::{Message, Settings, TimeSource};

    // The same placements and errors through `audit-archiver route`.
    let args = ["--tenant-map", "legacy-audit=acme_legacy"];
    let flat = route(flat_layout(), &args, EVENT);
    let flat_1_0 = route(flat_layout_1_0(), &args, EVENT);
    assert_eq!(
        flat_1_0.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&flat_1_0.stderr)
    );
    assert_eq!(flat.stdout, flat_1_0.stdout);
    assert_eq!(String::from_utf8_lossy(&flat.stdout).lines().count(), 4);

    // In process: 1.1 goes through `route-queue` for a batch from one
    // queue, 1.0 through `route-batch`; the results are the same.
    let settings = Settings {
        time_source: TimeSource::Sent,
        ..Settings::default()
    };
    let load = |path: &Path| {
        RouterComponent::load(
            ComponentSource::File(path),
            &settings,
            SandboxLimits::default(),
            None,
        )
        .unwrap()
    };
    let (new, old) = (load(flat_layout()), load(flat_layout_1_0()));
    assert!(new.has_route_queue());
    assert!(!old.has_route_queue());
    let queue =
        "https://sqs.ap-northeast-1.amazonaws.com/123456789012/acme-prismacloud-auditlog.fifo";
    let ids = ["m-1", "a/b", "m-é", "m-4"];
    let messages: Vec<Message<'_>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Message {
            message_id: id,
            queue,
            body: "{}",
            first_receive_ms: None,
            sent_ms: (i != 3).then_some(1_750_950_000_000 + i as u64 * 86_400_000),
        })
        .collect();
    let (mut new, mut old) = (new.instance().unwrap(), old.instance().unwrap());
    let packed = new.route_batch(&messages);
    assert_eq!(packed, new.route_batch_1_0(&messages));
    assert_eq!(packed, old.route_batch(&messages));
    let keys: Vec<Option<&str>> = packed
        .iter()
        .map(|r| r.as_ref().ok().map(|p| p.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            Some("acme/2025-06-26/m-1.json"),
            None,
            Some("acme/2025-06-28/m-é.json"),
            None
        ]
    );
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
