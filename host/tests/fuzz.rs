//! Bounded fuzzing (proptest) of the routing logic and of `route`'s input
//! parsing. 256 cases per property by default; a longer run:
//!
//!     PROPTEST_CASES=100000 cargo test --release -p audit-archiver --test fuzz
//!
//! - `lambda_event::parse` never panics on arbitrary input, and reads back
//!   exactly what a generated Lambda event or NDJSON holds;
//! - the component (through `audit_archiver::route`, sandboxed as in
//!   production) and the native `audit_archiver_transform` give identical
//!   results on random messages and settings, one by one and in batches
//!   (contract 1.0's `route-batch`, and 1.1's `route-queue` for batches from
//!   one queue);
//! - every placement either of them returns passes the host's key check.

use std::cell::RefCell;
use std::collections::HashMap;

use audit_archiver::route::{
    ComponentSource, RouteFailure, RouterComponent, RouterInstance, SandboxLimits,
};
use audit_archiver::source::lambda_event;
use audit_archiver_transform::{check_key, Message, Router, Settings, TenantOverride, TimeSource};
use proptest::prelude::*;

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_text(input in "\\PC{0,400}") {
        let _ = lambda_event::parse(&input);
    }

    #[test]
    fn parse_never_panics_on_json_shaped_text(
        input in r#"[\[\]{}",:0-9a-zA-Z \n\\.-]{0,300}"#
    ) {
        let _ = lambda_event::parse(&input);
        let _ = lambda_event::parse(&format!("{{\"Records\":[{input}]}}"));
    }

    #[test]
    fn parse_reads_back_generated_events(
        records in prop::collection::vec(record(), 0..8),
        ndjson in any::<bool>(),
    ) {
        let values: Vec<serde_json::Value> = records.iter().map(|r| r.json()).collect();
        let input = if ndjson {
            values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
        } else {
            serde_json::json!({ "Records": values }).to_string()
        };
        let parsed = lambda_event::parse(&input).expect("a generated event parses");
        prop_assert_eq!(parsed.len(), records.len());
        for (got, want) in parsed.iter().zip(&records) {
            prop_assert_eq!(&got.message_id, &want.message_id);
            prop_assert_eq!(&got.body, &want.body);
            prop_assert_eq!(&got.queue, &want.queue);
            prop_assert_eq!(&got.first_receive_ms, &Ok(want.first_receive_ms));
            prop_assert_eq!(&got.sent_ms, &Ok(want.sent_ms));
            prop_assert_eq!(&got.problem, &None);
        }
    }

    #[test]
    fn component_and_native_route_identically(
        settings_index in 0..SETTINGS.len(),
        messages in prop::collection::vec(message(), 1..12),
    ) {
        let settings = settings(settings_index);
        let native = Router::new(&settings).expect("the fixed settings are valid");
        let inputs: Vec<Message<'_>> = messages.iter().map(OwnedMessage::borrow).collect();
        // The same messages all from the first one's queue: what `run`
        // batches, and what goes through 1.1's `route-queue`.
        let one_queue: Vec<Message<'_>> = inputs
            .iter()
            .map(|m| Message { queue: inputs[0].queue, ..*m })
            .collect();
        with_component(settings_index, |component| {
            prop_assert!(component.has_route_queue(), "the embedded component exports route-queue");
            let batch = component.route_batch(&inputs);
            let batch_1_0 = component.route_batch_1_0(&inputs);
            prop_assert_eq!(&batch, &batch_1_0, "route_batch vs route-batch");
            let queue_batch = component.route_batch(&one_queue);
            let queue_batch_1_0 = component.route_batch_1_0(&one_queue);
            prop_assert_eq!(queue_batch.len(), one_queue.len());
            for (input, (packed, unpacked)) in one_queue.iter().zip(queue_batch.iter().zip(&queue_batch_1_0)) {
                prop_assert_eq!(packed, unpacked, "route-queue vs route-batch for {:?}", input);
                match (native.route(input), packed) {
                    (Ok(want), Ok(got)) => prop_assert_eq!(&want, got),
                    (Err(want), Err(RouteFailure::Rejected(got))) => prop_assert_eq!(&want, got),
                    (want, got) => prop_assert!(false, "native {:?} vs route-queue {:?} for {:?}", want, got, input),
                }
            }
            prop_assert_eq!(batch.len(), inputs.len());
            for (input, batched) in inputs.iter().zip(batch) {
                let expected = native.route(input);
                let single = component.route(input);
                prop_assert_eq!(&batched, &single, "route-batch vs route for {:?}", input);
                match (&expected, &single) {
                    (Ok(want), Ok(got)) => {
                        prop_assert_eq!(want, got);
                        prop_assert!(check_key(&got.key, &got.tenant).is_ok(), "unsafe key {:?}", got.key);
                    }
                    (Err(want), Err(RouteFailure::Rejected(got))) => prop_assert_eq!(want, got),
                    _ => prop_assert!(false, "native {:?} vs component {:?} for {:?}", expected, single, input),
                }
            }
            Ok(())
        })?;
    }
}

/// Settings the routing property draws from (one compiled component each).
const SETTINGS: &[(&str, TimeSource, i16, bool)] = &[
    ("default", TimeSource::FirstReceive, 540, false),
    ("seed", TimeSource::Sent, 0, false),
    ("seed", TimeSource::Event, 540, true),
    (
        "{tenant}/%Y/%j/{queue}/%H%M%S-{message_id}.json",
        TimeSource::Event,
        -840,
        false,
    ),
    (
        "{tenant}/%%/%Y-%m-%d/{message_id}",
        TimeSource::FirstReceive,
        840,
        true,
    ),
];

fn settings(index: usize) -> Settings {
    let (template, time_source, offset, overrides) = SETTINGS[index];
    Settings {
        key_template: template.into(),
        time_source,
        utc_offset_minutes: offset,
        tenant_overrides: if overrides {
            vec![TenantOverride {
                queue: "legacy-audit".into(),
                tenant: "acme".into(),
            }]
        } else {
            Vec::new()
        },
    }
}

fn with_component<T>(index: usize, f: impl FnOnce(&mut RouterInstance) -> T) -> T {
    thread_local! {
        static CACHE: RefCell<HashMap<usize, RouterInstance>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let instance = cache.entry(index).or_insert_with(|| {
            RouterComponent::load(
                ComponentSource::Embedded,
                &settings(index),
                SandboxLimits::default(),
                None,
            )
            .expect("the embedded component loads")
            .instance()
            .expect("instantiates")
        });
        f(instance)
    })
}

#[derive(Debug, Clone)]
struct OwnedMessage {
    message_id: String,
    queue: String,
    body: String,
    first_receive_ms: Option<u64>,
    sent_ms: Option<u64>,
}

impl OwnedMessage {
    fn borrow(&self) -> Message<'_> {
        Message {
            message_id: &self.message_id,
            queue: &self.queue,
            body: &self.body,
            first_receive_ms: self.first_receive_ms,
            sent_ms: self.sent_ms,
        }
    }
}

/// Times around the interesting edges: 1970, today, year 9999, u64::MAX.
fn millis() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..100_000,
        1_700_000_000_000u64..1_800_000_000_000,
        253_402_000_000_000u64..253_403_000_000_000,
        any::<u64>(),
    ]
}

fn queue() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        "[a-z]{1,8}-[a-z0-9_-]{0,20}(\\.fifo)?",
        "[A-Za-z0-9_.]{0,70}",
        Just("legacy-audit".to_string()),
        "-[a-z]{0,5}",
        "[a-z$/é ]{1,10}-q",
    ];
    (name, 0..4u8).prop_map(|(name, form)| match form {
        0 => name,
        1 => format!("arn:aws:sqs:ap-northeast-1:123456789012:{name}"),
        2 => format!("https://sqs.ap-northeast-1.amazonaws.com/123456789012/{name}"),
        _ => format!("http://127.0.0.1:5000/123456789012/{name}"),
    })
}

fn body() -> impl Strategy<Value = String> {
    let timestamp = prop_oneof![
        millis().prop_map(|t| t.to_string()),
        any::<i64>().prop_map(|t| t.to_string()),
        any::<f64>().prop_map(|t| format!("{t:?}")),
        "\"[0-9a-z]{0,15}\"",
        Just("null".to_string()),
        Just("1e300".to_string()),
        Just("[1]".to_string()),
    ];
    prop_oneof![
        timestamp
            .clone()
            .prop_map(|t| format!("{{\"timestamp\":{t},\"user\":\"a@example.com\"}}")),
        prop::collection::vec(timestamp, 0..4).prop_map(|ts| {
            let items: Vec<String> = ts
                .iter()
                .map(|t| format!("{{\"timestamp\":{t}}}"))
                .collect();
            format!("[{}]", items.join(","))
        }),
        "\\PC{0,60}",
        Just(String::new()),
        Just("{\"timestamp\":1750991540913,\"timestamp\":5}".to_string()),
    ]
}

fn message() -> impl Strategy<Value = OwnedMessage> {
    let id = prop_oneof![
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[A-Za-z0-9./\\\\\n -]{0,20}",
        "[a-z]{120,140}",
        Just("..".to_string()),
    ];
    (
        id,
        queue(),
        body(),
        prop::option::of(millis()),
        prop::option::of(millis()),
    )
        .prop_map(
            |(message_id, queue, body, first_receive_ms, sent_ms)| OwnedMessage {
                message_id,
                queue,
                body,
                first_receive_ms,
                sent_ms,
            },
        )
}

/// A Lambda SQS record, as generated.
#[derive(Debug, Clone)]
struct Record {
    message_id: String,
    body: String,
    queue: String,
    first_receive_ms: Option<u64>,
    sent_ms: Option<u64>,
}

impl Record {
    fn json(&self) -> serde_json::Value {
        let mut attributes = serde_json::Map::new();
        if let Some(ms) = self.first_receive_ms {
            attributes.insert(
                "ApproximateFirstReceiveTimestamp".into(),
                ms.to_string().into(),
            );
        }
        if let Some(ms) = self.sent_ms {
            attributes.insert("SentTimestamp".into(), ms.to_string().into());
        }
        serde_json::json!({
            "messageId": self.message_id,
            "receiptHandle": "AQEB",
            "body": self.body,
            "attributes": attributes,
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue,
            "awsRegion": "ap-northeast-1",
        })
    }
}

fn record() -> impl Strategy<Value = Record> {
    (
        "[0-9a-f-]{1,36}",
        "\\PC{0,80}",
        queue(),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(message_id, body, queue, first_receive_ms, sent_ms)| Record {
                message_id,
                body,
                queue,
                first_receive_ms,
                sent_ms,
            },
        )
}
