//! Runs a WASI command module (e.g. the filter crate's `examples/verify_bench.rs` built for
//! wasm32-wasip1) in wasmtime with the default engine configuration (Cranelift, SIMD on), as the
//! Kong stand-in does. Arguments after the module path go to the guest; stdio is inherited.
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 --example verify_bench
//! cargo run --profile spec -p cloudrun-spec --bin wasm-microbench -- \
//!     target/wasm32-wasip1/release/examples/verify_bench.wasm [rs256 es256 ...]
//! ```

use anyhow::{Context, Result};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::preview1::{self, WasiP1Ctx};
use wasmtime_wasi::WasiCtxBuilder;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: wasm-microbench MODULE.wasm [ARGS...]")?;
    let guest_args: Vec<String> = std::iter::once(path.clone()).chain(args).collect();
    let engine = Engine::default();
    let module = Module::from_file(&engine, &path).with_context(|| format!("loading {path}"))?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    preview1::add_to_linker_sync(&mut linker, |ctx| ctx)?;
    // The filter crate's rlib brings its proxy-wasm exports and their `env` imports along;
    // the benchmark never calls them.
    linker.define_unknown_imports_as_traps(&module)?;
    let mut builder = WasiCtxBuilder::new();
    builder.inherit_stdio().args(&guest_args);
    if let Ok(ms) = std::env::var("BENCH_MS") {
        builder.env("BENCH_MS", &ms);
    }
    let mut store = Store::new(&engine, builder.build_p1());
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    start.call(&mut store, ())?;
    Ok(())
}
