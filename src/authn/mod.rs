//! The per-request flow (token → verified grant → Google token → header edits) and the root
//! context's background work, over [`Host`]. The adapter only moves bytes in and out.
//!
//! - [`route`]: a route built from its configuration, and the worker's shared state;
//! - [`request`]: one request's state machine;
//! - [`jobs`]: the root context's background refreshes.
//!
//! A request either finishes at once or waits for exactly one callout at a time; every answer
//! ends in [`Step::Allow`], [`Step::Deny`] or another [`Step::Wait`], never in silence (Kong
//! resumes a paused request by itself after its last callout, which would fail open).
//!
//! # Example: a request through `FakeHost` (the `fake-host` feature)
//!
//! The adapter does exactly this with the real host: build the route once from its JSON
//! configuration, start each request on its headers, and feed it callout answers until it is
//! allowed or refused.
//!
//! ```
//! use cloudrun_oidc::authn::{Request, RouteState, Scope, Step, Worker};
//! use cloudrun_oidc::host::fake::FakeHost;
//! use cloudrun_oidc::host::CalloutResponse;
//! use cloudrun_oidc::jose::b64;
//! use cloudrun_oidc::reject::AuthError;
//! use ed25519_dalek::{Signer, SigningKey};
//!
//! // The IdP: an Ed25519 key (RFC 8037 §A.1) whose JWKS is served at `jwks_url`.
//! let seed = b64::decode(b"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
//! let idp_key = SigningKey::from_bytes(&seed.try_into().unwrap());
//! let jwks = br#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
//!                 "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
//! let header = b64::encode(br#"{"alg":"EdDSA","kid":"k1"}"#);
//! let claims = b64::encode(br#"{"iss":"https://idp.example","aud":"orders","sub":"ada","exp":2000000000}"#);
//! let input = format!("{header}.{claims}");
//! let token = format!("{input}.{}", b64::encode(&idp_key.sign(input.as_bytes()).to_bytes()));
//!
//! // The route, as Kong hands its configuration to the filter.
//! let config = br#"{
//!     "issuers": [{"issuer": "https://idp.example", "audiences": ["orders"],
//!                  "jwks_url": "https://idp.example/keys"}],
//!     "claims_to_headers": {"sub": "x-user-id"}
//! }"#;
//! let RouteState::Ready(route) = RouteState::from_config(config) else {
//!     panic!("invalid configuration");
//! };
//! let (mut host, mut worker) = (FakeHost::at(1_900_000_000), Worker::new(1));
//! let mut cx = Scope { host: &mut host, route: &route, worker: &mut worker };
//!
//! // No token: refused at once (the adapter answers 401 with a `WWW-Authenticate` challenge).
//! let (_, step) = Request::start(&mut cx, &[(b"accept", b"*/*")], None);
//! assert_eq!(step, Step::Deny(AuthError::MissingToken));
//!
//! // A client copy of a header the route sets: refused before the token is read.
//! let (_, step) = Request::start(&mut cx, &[(b"x-user-id", b"admin")], None);
//! assert_eq!(step, Step::Deny(AuthError::ForgedHeader));
//!
//! // A signed token: the worker has no keys yet, so the request waits for the JWKS callout.
//! let bearer = format!("Bearer {token}");
//! let headers = [(&b"authorization"[..], bearer.as_bytes())];
//! let (request, step) = Request::start(&mut cx, &headers, None);
//! assert_eq!(step, Step::Wait);
//! let mut request = request.unwrap();
//! let pending = request.pending().unwrap();
//!
//! // The JWKS arrives: the token verifies and the request goes upstream with `x-user-id`.
//! let answer = CalloutResponse { status: Some(200), dispatch_status: None, body: jwks.to_vec() };
//! let Step::Allow(edits) = request.on_callout(&mut cx, pending, &answer) else {
//!     panic!("not allowed");
//! };
//! assert_eq!(edits, [("x-user-id".into(), "ada".into())]);
//! ```

pub mod jobs;
pub mod limits;
pub mod request;
pub mod route;

pub use jobs::RootJobs;
pub use request::Request;
pub use route::{Route, RouteState, Worker};

use crate::host::Host;
use crate::reject::AuthError;
use std::rc::Rc;

/// What the adapter does next with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Set these request headers (name, value) and let the request go upstream.
    Allow(Vec<HeaderEdit>),
    /// Answer locally with this refusal; the request never goes upstream.
    Deny(AuthError),
    /// A callout is in flight; keep the request paused.
    Wait,
}

/// A request header to set: shared strings, so a cache hit copies pointers, not bytes.
pub type HeaderEdit = (Rc<str>, Rc<str>);

/// What one host callback works with: the host, the route it runs for, and the worker's state
/// shared by every route.
pub struct Scope<'a> {
    pub host: &'a mut dyn Host,
    pub route: &'a Route,
    pub worker: &'a mut Worker,
}

#[cfg(test)]
mod tests;
