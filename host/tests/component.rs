//! The embedded component, loaded through the host's sandbox exactly as `run`
//! and `route` load it: it imports nothing, exports the router, and gives the
//! shared vectors' expected placements through both entry points.

use audit_archiver::route::{
    ComponentSource, RouteFailure, RouterComponent, SandboxLimits, EMBEDDED_COMPONENT,
    ROUTER_INTERFACE,
};
use audit_archiver_transform::{Message, Settings, TenantOverride, TimeSource};
use serde_json::Value;
use wasmtime::component::Component;
use wasmtime::Engine;

#[test]
fn the_embedded_component_imports_nothing_and_exports_only_the_router() {
    let engine = Engine::default();
    let component = Component::from_binary(&engine, EMBEDDED_COMPONENT).expect("a valid component");
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert!(imports.is_empty(), "imports: {imports:?}");
    let exports: Vec<String> = ty
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(exports, [ROUTER_INTERFACE]);
    println!(
        "embedded component: {} bytes, imports: none, exports: {exports:?}",
        EMBEDDED_COMPONENT.len()
    );
}

fn settings(value: &Value) -> Settings {
    Settings {
        key_template: value["key_template"].as_str().unwrap().to_string(),
        time_source: value["time_source"]
            .as_str()
            .unwrap()
            .parse::<TimeSource>()
            .unwrap(),
        utc_offset_minutes: value["utc_offset_minutes"].as_i64().unwrap() as i16,
        tenant_overrides: value["tenant_overrides"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| TenantOverride {
                queue: o["queue"].as_str().unwrap().to_string(),
                tenant: o["tenant"].as_str().unwrap().to_string(),
            })
            .collect(),
    }
}

#[test]
fn the_component_meets_every_shared_vector_through_route_and_route_batch() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/routing.json");
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "only {} vectors", cases.len());
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let settings = settings(&case["settings"]);
        let expect = &case["expect"];
        let loaded = RouterComponent::load(
            ComponentSource::Bytes {
                origin: "embedded",
                bytes: EMBEDDED_COMPONENT,
            },
            &settings,
            SandboxLimits::default(),
            None,
        );
        let component = match (loaded, expect["error"].as_str()) {
            (Ok(component), _) => component,
            (Err(audit_archiver::route::ComponentError::Settings(e)), Some("invalid-settings")) => {
                assert_eq!(Some(e.case()), expect["settings_error"].as_str(), "{name}");
                checked += 1;
                continue;
            }
            (Err(e), _) => panic!("{name}: settings refused: {e}"),
        };
        let m = &case["message"];
        let message = Message {
            message_id: m["message_id"].as_str().unwrap(),
            queue: m["queue"].as_str().unwrap(),
            body: m["body"].as_str().unwrap(),
            first_receive_ms: m["first_receive_ms"].as_u64(),
            sent_ms: m["sent_ms"].as_u64(),
        };
        let mut instance = component.instance().unwrap();
        let single = instance.route(&message);
        let batch = instance
            .route_batch(std::slice::from_ref(&message))
            .remove(0);
        assert_eq!(single, batch, "{name}: route and route-batch disagree");
        match (single, expect) {
            (Ok(placement), expect) if expect.get("ok").is_some() => {
                let ok = &expect["ok"];
                assert_eq!(placement.tenant, ok["tenant"].as_str().unwrap(), "{name}");
                assert_eq!(placement.key, ok["key"].as_str().unwrap(), "{name}");
                assert_eq!(placement.time_ms, ok["time_ms"].as_u64().unwrap(), "{name}");
            }
            (Err(RouteFailure::Rejected(error)), expect) => {
                assert_eq!(
                    Some(error.case()),
                    expect["error"].as_str(),
                    "{name}: {error}"
                );
            }
            (other, expect) => panic!("{name}: got {other:?}, expected {expect}"),
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len());
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_its_origin() {
    let error = RouterComponent::load(
        ComponentSource::Bytes {
            origin: "component /tmp/x.wasm",
            bytes: b"\0asm\x01\0\0\0",
        },
        &Settings::default(),
        SandboxLimits::default(),
        None,
    )
    .err()
    .expect("a core module is not a component");
    assert!(error.to_string().contains("/tmp/x.wasm"), "{error}");
}
