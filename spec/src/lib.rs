//! The test world for cloudrun_oidc (see `spec/README.md`): a Kong stand-in (proxy-wasm host on
//! wasmtime plus an HTTP gateway reading `kong.yml`), a mock IdP, a mock Google and a Cloud Run
//! stand-in, and the kit the end-to-end tests drive them with.

pub mod gateway;
pub mod host;
pub mod http1;
pub mod jose;
pub mod mocks;
pub mod testkit;
