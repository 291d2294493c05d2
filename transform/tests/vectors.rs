//! Runs the shared routing vectors (`tests/vectors/routing.json` at the
//! repository root) against the native library. The same file is meant for
//! the component in every runtime (wasmtime, jco, wasmtime-py): it holds no
//! defaults, so a runner needs no routing logic of its own.

use audit_archiver_transform::{
    route, route_batch, validate_settings, Message, Router, Settings, TenantOverride, TimeSource,
};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/routing.json");

fn str_field<'a>(v: &'a Value, name: &str, case: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: `{name}` must be a string"))
}

fn opt_u64(v: &Value, name: &str, case: &str) -> Option<u64> {
    match &v[name] {
        Value::Null => None,
        n => Some(
            n.as_u64()
                .unwrap_or_else(|| panic!("{case}: `{name}` must be a u64 or null")),
        ),
    }
}

fn settings(v: &Value, case: &str) -> Settings {
    let obj = v.as_object().expect("settings is an object");
    for field in [
        "key_template",
        "time_source",
        "utc_offset_minutes",
        "tenant_overrides",
    ] {
        assert!(obj.contains_key(field), "{case}: settings lacks `{field}`");
    }
    Settings {
        key_template: str_field(v, "key_template", case).to_owned(),
        time_source: str_field(v, "time_source", case)
            .parse::<TimeSource>()
            .unwrap_or_else(|e| panic!("{case}: {e}")),
        utc_offset_minutes: v["utc_offset_minutes"]
            .as_i64()
            .and_then(|n| i16::try_from(n).ok())
            .unwrap_or_else(|| panic!("{case}: utc_offset_minutes must be an s16")),
        tenant_overrides: v["tenant_overrides"]
            .as_array()
            .unwrap_or_else(|| panic!("{case}: tenant_overrides must be an array"))
            .iter()
            .map(|o| TenantOverride {
                queue: str_field(o, "queue", case).to_owned(),
                tenant: str_field(o, "tenant", case).to_owned(),
            })
            .collect(),
    }
}

fn message<'a>(v: &'a Value, case: &str) -> Message<'a> {
    let obj = v.as_object().expect("message is an object");
    for field in ["message_id", "queue", "body", "first_receive_ms", "sent_ms"] {
        assert!(obj.contains_key(field), "{case}: message lacks `{field}`");
    }
    Message {
        message_id: str_field(v, "message_id", case),
        queue: str_field(v, "queue", case),
        body: str_field(v, "body", case),
        first_receive_ms: opt_u64(v, "first_receive_ms", case),
        sent_ms: opt_u64(v, "sent_ms", case),
    }
}

fn load() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("{VECTORS}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("routing.json is JSON");
    assert_eq!(doc["format"], 1, "unknown vector format");
    doc["cases"].as_array().expect("cases is an array").clone()
}

#[test]
fn every_vector_holds() {
    let cases = load();
    assert!(
        cases.len() >= 30,
        "only {} vectors; expected at least 30",
        cases.len()
    );
    let mut names = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        let name = str_field(case, "name", "?");
        assert!(names.insert(name), "duplicate vector name {name:?}");
        let s = settings(&case["settings"], name);
        let m = message(&case["message"], name);
        let got = route(&s, &m);
        // The batch entry point and a reused router agree with `route`.
        assert_eq!(
            route_batch(&s, &[m, m]),
            vec![got.clone(), got.clone()],
            "{name}"
        );
        if let Ok(router) = Router::new(&s) {
            assert_eq!(router.route(&m), got, "{name}");
        }
        let expect = &case["expect"];
        let outcome = match (&got, expect.get("ok"), expect.get("error")) {
            (Ok(p), Some(ok), None) => {
                let want = (
                    str_field(ok, "tenant", name),
                    str_field(ok, "key", name),
                    ok["time_ms"].as_u64().expect("time_ms"),
                );
                let have = (p.tenant.as_str(), p.key.as_str(), p.time_ms);
                assert_eq!(validate_settings(&s), Ok(()), "{name}");
                (have == want)
                    .then_some(())
                    .ok_or(format!("got {have:?}, want {want:?}"))
            }
            (Err(e), None, Some(error)) => {
                let want_case = error.as_str().expect("error is a string");
                let want_settings = expect.get("settings_error").and_then(Value::as_str);
                let have_settings = match e {
                    audit_archiver_transform::RouteError::InvalidSettings(se) => {
                        assert_eq!(validate_settings(&s).map_err(|e| e.case()), Err(se.case()));
                        Some(se.case())
                    }
                    _ => None,
                };
                assert!(!e.detail().is_empty(), "{name}: empty detail");
                (e.case() == want_case && have_settings == want_settings)
                    .then_some(())
                    .ok_or(format!(
                        "got {} / {have_settings:?} ({e}), want {want_case} / {want_settings:?}",
                        e.case()
                    ))
            }
            (got, _, _) => Err(format!("got {got:?}, want {expect}")),
        };
        if let Err(why) = outcome {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The reason `seed` is not the default: two messages of one tenant in the
/// same second share a seed key, and differ under `default`.
#[test]
fn same_second_pairs() {
    let cases = load();
    let key = |name: &str| -> String {
        let case = cases
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no vector {name:?}"));
        case["expect"]["ok"]["key"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        key("same second, seed, first message"),
        key("same second, seed, second message: same key (the reference's collision)")
    );
    assert_ne!(
        key("same second, default, first message"),
        key("same second, default, second message: different key")
    );
}
