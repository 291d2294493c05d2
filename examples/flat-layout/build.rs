//! A `no_std` wasm32 build still calls `memcmp` and friends: link them from the
//! wasi-libc that ships with the `wasm32-wasip2` target (import-free routines
//! only, so the component still imports nothing). Same recipe as `transform/`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-lc");
    }
}
