//! Builds the routing component that the binary embeds.
//!
//! The component (`transform/` compiled for `wasm32-wasip2`) is built by a
//! nested `cargo build` into its own target directory, so it never contends for
//! the outer build's lock. Set `AUDIT_ARCHIVER_EMBED_COMPONENT=/path/to/x.wasm` to
//! embed a prebuilt component instead.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    println!("cargo:rerun-if-env-changed=AUDIT_ARCHIVER_EMBED_COMPONENT");
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();

    let component = match env::var_os("AUDIT_ARCHIVER_EMBED_COMPONENT") {
        Some(path) => PathBuf::from(path),
        None => build_component(&workspace),
    };
    if !component.is_file() {
        panic!("routing component {} does not exist", component.display());
    }
    println!(
        "cargo:rustc-env=AUDIT_ARCHIVER_EMBEDDED_COMPONENT={}",
        component.display()
    );
}

fn build_component(workspace: &Path) -> PathBuf {
    for watched in [
        "transform/src",
        "transform/Cargo.toml",
        "transform/build.rs",
        "wit",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    // Always release: the embedded component is the product, whatever the
    // host's profile. A separate target dir avoids deadlocking on the outer lock.
    let target_dir = workspace.join("target").join("component");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--release", "--target", TARGET])
        .args(["-p", "audit-archiver-transform"])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags and jobserver are for the host, not the guest.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the routing component: {e}"));
    if !status.success() {
        panic!(
            "building the routing component for {TARGET} failed; is the target installed? \
             Run `rustup target add {TARGET}` (or `scripts/setup.sh`)."
        );
    }
    target_dir
        .join(TARGET)
        .join("release")
        .join("audit_archiver_transform.wasm")
}
