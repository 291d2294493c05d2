//! The precompiled embedded component shipped beside the binary (the Lambda
//! package's `router.cwasm`): wasmtime's `precompile_component` output behind a
//! header naming what it was built from — the same digest as a [`cache`] entry
//! name (the embedded component's bytes, this host's version, and the engine's
//! compatibility hash: wasmtime version, target, CPU features, configuration).
//! A header for anything else is refused with both names, before wasmtime
//! reads a byte of native code.

use std::path::Path;

use wasmtime::component::Component;
use wasmtime::Engine;

use super::{cache, new_engine, EMBEDDED_COMPONENT};

const MAGIC: &[u8] = b"audit-archiver precompiled component\n";

/// The header line this binary writes and accepts.
fn expected(engine: &Engine) -> String {
    cache::entry_name(engine, EMBEDDED_COMPONENT)
}

/// Compiles the embedded component for this binary's engine and writes it
/// to `path`.
pub fn write(path: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let engine = new_engine();
    let native = engine
        .precompile_component(EMBEDDED_COMPONENT)
        .map_err(anyhow::Error::from)
        .context("compiling the embedded component")?;
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(expected(&engine).as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(&native);
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The component in `bytes`, if its header is this binary's.
pub fn load(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or("it is not an audit-archiver precompiled component")?;
    let end = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("its header is truncated")?;
    let found = String::from_utf8_lossy(&rest[..end]);
    let wanted = expected(engine);
    if found != wanted {
        return Err(format!(
            "it was built by another audit-archiver build, wasmtime version or engine \
             configuration (it is {found}, this binary needs {wanted})"
        ));
    }
    // SAFETY: `deserialize` runs the native code in these bytes as is.
    // They come from the deployment package (read-only in Lambda), written
    // by `write` above for exactly this component, host version and engine
    // (checked just now), and wasmtime checks its own version and
    // configuration header again.
    unsafe { Component::deserialize(engine, &rest[end + 1..]) }.map_err(|e| format!("{e:#}"))
}
