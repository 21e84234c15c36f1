//! The proxy-wasm host: ABI 0.2.1 on wasmtime, behaving like Kong's ngx_wasm_module.
