//! A root context's background work for its route, on every tick: refresh keys before they go
//! stale, and Google tokens before they expire. It starts once a request of the instance has
//! proven the route's shared-data zone (the adapter skips ticks until then: a missing zone traps).

use super::Scope;
use crate::google::{Mint, MintFor, MintProgress};
use crate::host::shared::{self, Lease};
use crate::host::{CalloutResponse, CalloutToken};
use crate::keys::{Fetch, Progress, Source};
use std::collections::HashMap;

/// The background jobs of one root context.
///
/// A root context never starts a callout from a call answer: on Kong's engine
/// (ngx_wasm_module), a callout dispatched from a root context's `on_http_call_response` gets
/// the connection the finished call just released, which the engine then tears down under it,
/// and the worker dies (SIGSEGV). A fetch's next step (discovery → JWKS) waits for the next tick.
#[derive(Debug, Default)]
pub struct RootJobs {
    jobs: HashMap<CalloutToken, Job>,
    /// Jobs whose next callout (chosen by a call answer) is due at the next tick.
    next_steps: Vec<Job>,
}

#[derive(Debug)]
enum Job {
    Keys { issuer: usize, fetch: Fetch },
    Google(Mint),
}

impl RootJobs {
    /// Starts whatever is due. Ticks do not wait for earlier ticks' callouts, so sources with a
    /// job in flight are skipped, and leases keep workers and routes from fetching together.
    pub fn tick(&mut self, cx: &mut Scope<'_>) {
        self.start_next_steps(cx);
        self.refresh_keys(cx);
        self.refresh_google_token(cx);
    }

    fn refresh_keys(&mut self, cx: &mut Scope<'_>) {
        let route = cx.route;
        for (issuer, source) in route.sources.iter().enumerate() {
            if self.fetching(cx, source)
                || !cx.worker.keys.needs_refresh(cx.host, source, &route.fetch)
            {
                continue;
            }
            let lease = &source.shared.fetch_lease;
            let leased = shared::try_lease(cx.host, lease, cx.worker.holder, route.fetch.lease_ms);
            if !matches!(leased, Ok(Lease::Acquired | Lease::Uncoordinated)) {
                continue;
            }
            let keys = cx.worker.keys.background_fetch(source);
            if let Some(fetch) = cx.worker.keys.begin(cx.host, source, &keys, &route.fetch) {
                self.jobs.insert(fetch.token, Job::Keys { issuer, fetch });
            }
        }
    }

    fn refresh_google_token(&mut self, cx: &mut Scope<'_>) {
        let route = cx.route;
        let Some(google) = &route.google else {
            return;
        };
        let busy = self
            .jobs
            .values()
            .chain(&self.next_steps)
            .any(|job| matches!(job, Job::Google(_)));
        if busy || !cx.worker.google.refresh_due(cx.host, google) {
            return;
        }
        if let Some(mint) = cx.worker.google.begin(cx.host, google, MintFor::Refresh) {
            self.jobs.insert(mint.token, Job::Google(mint));
        }
    }

    /// Whether a fetch for `source` (the same URL, whichever issuer entry) is under way.
    fn fetching(&self, cx: &Scope<'_>, source: &Source) -> bool {
        let same = |i: &usize| cx.route.sources.get(*i).is_some_and(|s| s.id == source.id);
        self.jobs
            .values()
            .chain(&self.next_steps)
            .any(|job| match job {
                Job::Keys { issuer, .. } => same(issuer),
                Job::Google(_) => false,
            })
    }

    /// Starts the callouts that call answers left for this tick.
    fn start_next_steps(&mut self, cx: &mut Scope<'_>) {
        let route = cx.route;
        for job in std::mem::take(&mut self.next_steps) {
            match job {
                Job::Keys { issuer, mut fetch } => {
                    let Some(source) = route.sources.get(issuer) else {
                        continue;
                    };
                    let keys = &mut cx.worker.keys;
                    if keys.dispatch_next(cx.host, source, &mut fetch, &route.fetch) {
                        self.jobs.insert(fetch.token, Job::Keys { issuer, fetch });
                    }
                }
                Job::Google(mut mint) => {
                    let Some(google) = &route.google else {
                        continue;
                    };
                    if cx.worker.google.dispatch_next(cx.host, google, &mut mint) {
                        self.jobs.insert(mint.token, Job::Google(mint));
                    }
                }
            }
        }
    }

    /// Takes the answer to a tick callout. Starts no callout (see [`RootJobs`]).
    pub fn on_callout(
        &mut self,
        cx: &mut Scope<'_>,
        token: CalloutToken,
        response: &CalloutResponse,
    ) {
        let route = cx.route;
        match self.jobs.remove(&token) {
            Some(Job::Keys { issuer, mut fetch }) => {
                let Some(source) = route.sources.get(issuer) else {
                    return;
                };
                let keys = &mut cx.worker.keys;
                if let Progress::Next = keys.advance(cx.host, source, &mut fetch, response) {
                    self.next_steps.push(Job::Keys { issuer, fetch });
                }
            }
            Some(Job::Google(mut mint)) => {
                if let Some(google) = &route.google {
                    let progress = cx
                        .worker
                        .google
                        .advance(cx.host, google, &mut mint, response);
                    // A federated mint is a chain: its next callout waits for the next tick.
                    if progress == MintProgress::Next {
                        self.next_steps.push(Job::Google(mint));
                    }
                }
            }
            None => log::warn!("answer to unknown tick callout {token}"),
        }
    }
}
