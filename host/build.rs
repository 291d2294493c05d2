//! Builds the routing component that the binary embeds.
//!
//! The component (`transform/` compiled for `wasm32-wasip2`) is built by a
//! nested `cargo build` (`audit-archiver-guest-build`) into its own target
//! directory, so it never contends for the outer build's lock. Set
//! `AUDIT_ARCHIVER_EMBED_COMPONENT=/path/to/x.wasm` to embed a prebuilt
//! component instead.

use std::env;
use std::path::{Path, PathBuf};

use audit_archiver_guest_build::GuestBuild;

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
    // The root manifest holds the component's release profile; the lock file
    // its dependencies' versions.
    for watched in [
        "transform/src",
        "transform/Cargo.toml",
        "crates/guest-support",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    // Always release: the embedded component is the product, whatever the
    // host's profile.
    GuestBuild::new(
        &workspace.join("transform"),
        "audit-archiver-transform",
        &workspace.join("target").join("component"),
    )
    .build()
    .unwrap_or_else(|e| panic!("the routing component: {e}"))
}
