//! cloudrun_oidc: a proxy-wasm filter for Kong Gateway that verifies OIDC JWTs against the
//! issuer's JWKS, enforces per-route rules, maps verified claims to upstream headers and swaps
//! the caller's token for a Google-signed identity token for Cloud Run.
//!
//! Pure logic lives in the modules below and never touches `proxy_wasm`; it reaches the proxy
//! through [`host::Host`]. The `host::adapter` module (wasm32 only) is the thin glue to the host.

pub mod authn;
pub mod config;
pub mod google;
pub mod host;
pub mod http;
pub mod jose;
pub mod keys;
pub mod metrics;
pub mod ratelimit;
pub mod reject;
pub mod request;

/// The crate version, logged when the VM starts.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
