//! Glue between proxy-wasm and the filter logic (wasm32 only).
