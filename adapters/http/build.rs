//! Links the C memory routines (`memcmp`, …) that a `no_std` wasm32 build
//! still calls from the wasi-libc shipped with the `wasm32-wasip2` target;
//! only import-free routines are pulled in.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-cdylib=-lc");
}
