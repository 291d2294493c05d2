//! Links the component: a `no_std` wasm32 build still calls `memcmp` (and may
//! call other C memory routines); they come from the wasi-libc that ships
//! with the `wasm32-wasip2` target. Only referenced, import-free routines are
//! pulled in, so the component still imports nothing. Done here rather than in
//! `.cargo/config.toml` so that a `RUSTFLAGS` environment variable (which
//! replaces config rustflags) cannot break the build.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-lc");
    }
}
