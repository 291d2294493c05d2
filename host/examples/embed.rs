//! Calls the routing component from Rust with wasmtime: load, validate the
//! settings once, route a batch. See docs/embedding.md.
//!
//! cargo run --release -p audit-archiver --example embed -- target/component/wasm32-wasip2/release/audit_archiver_transform.wasm

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

// Typed bindings for the `routing` world of wit/router.wit (path relative to
// the crate's Cargo.toml).
wasmtime::component::bindgen!({ path: "../wit", world: "routing" });

use exports::audit_archiver::routing::router::{Message, Settings, TimeSource};

/// One line per message: `tenant key`, or `error: …`.
pub fn route_examples(wasm: &[u8]) -> wasmtime::Result<Vec<String>> {
    let engine = Engine::default();
    let component = Component::from_binary(&engine, wasm)?;
    // The component imports nothing, so an empty linker instantiates it.
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let routing = Routing::instantiate(&mut store, &component, &linker)?;
    let router = routing.audit_archiver_routing_router();

    let settings = Settings {
        key_template: "default".into(), // or "seed", or a template
        time_source: TimeSource::FirstReceive,
        utc_offset_minutes: 9 * 60, // JST
        tenant_overrides: vec![],
    };
    if let Err(e) = router.call_validate_settings(&mut store, &settings)? {
        wasmtime::bail!("invalid settings: {e:?}");
    }

    let queue = "arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo";
    let messages = vec![
        Message {
            message_id: "m-1".into(),
            queue: queue.into(),
            body: String::new(), // read only by the `event` time source
            first_receive_ms: Some(1_750_991_540_913),
            sent_ms: None,
        },
        Message {
            message_id: "m-2".into(),
            queue: queue.into(),
            body: String::new(),
            first_receive_ms: None, // the chosen time is missing
            sent_ms: None,
        },
    ];
    let mut lines = Vec::new();
    for result in router.call_route_batch(&mut store, &settings, &messages)? {
        lines.push(match result {
            Ok(placement) => format!("{} {}", placement.tenant, placement.key),
            Err(error) => format!("error: {error:?}"),
        });
    }
    Ok(lines)
}

fn main() -> wasmtime::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        "target/component/wasm32-wasip2/release/audit_archiver_transform.wasm".into()
    });
    for line in route_examples(&std::fs::read(&path)?)? {
        println!("{line}");
    }
    Ok(())
}
