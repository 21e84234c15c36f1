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

pub mod jobs;
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
