//! The engine tier: `cfg(wasmx_engine)` is set when `WASMX_NGINX` is (it names an nginx built
//! with Kong's ngx_wasm_module, see the README). Without it every engine test of
//! [`engine_tests!`](crate::engine_tests) is compiled as ignored, so it is reported as skipped,
//! never as passed.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(wasmx_engine)");
    println!("cargo::rerun-if-env-changed=WASMX_NGINX");
    if std::env::var_os("WASMX_NGINX").is_some_and(|path| !path.is_empty()) {
        println!("cargo::rustc-cfg=wasmx_engine");
    }
}
