//! Google ID tokens at run time: the worker's copy, the copy in shared data, and minting one
//! (metadata server or service-account assertion: one callout; Workload Identity Federation: a
//! chain of single callouts, [`crate::google::federation`]). Token logic and request shapes live in
//! [`crate::google::id_token`]; this module decides where a token comes from.

pub mod federation;
pub mod id_token;

use crate::config::{GoogleIdTokenConfig, GoogleSource};
use crate::google::federation::{Chain, FederationSharedDataKeys, Next, Target};
use crate::google::id_token::GoogleToken;
use crate::host::shared::{self, Lease, Slot, Width};
use crate::host::{CalloutRequest, CalloutResponse, CalloutToken, Host};
use crate::metrics::Metric;
use std::collections::HashMap;
use std::rc::Rc;

/// Cold mints one worker may have in flight for one audience (one-callout sources).
const MAX_COLD_MINTS_PER_WORKER: usize = 4;
/// Cold federated mints per worker and audience: each is a chain of up to six callouts against
/// STS and IAM quotas, so a cold burst mints once per worker (the rest get 503 + Retry-After).
const MAX_COLD_FEDERATED_MINTS_PER_WORKER: usize = 1;

/// Shared-data keys for one (source, audience).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoogleSharedDataKeys {
    pub entry: String,
    pub lease: String,
    /// The external account's cached credentials (`source: external_account` only).
    pub federation: Option<FederationSharedDataKeys>,
}

impl GoogleSharedDataKeys {
    /// Keys by everything that decides the token besides the audience: the metadata server
    /// (`host[:port]`), the service account's key and `token_url`, or the whole external
    /// account. Routes that would mint elsewhere or as someone else never share a token. The
    /// source segment holds no `/`, so the audience after it is unambiguous; `sa#`/`wif#`
    /// differ from earlier versions' `sa:`/`wif:`, whose keys named less.
    pub fn new(namespace: &str, config: &GoogleIdTokenConfig) -> GoogleSharedDataKeys {
        let source = match &config.source {
            GoogleSource::Metadata { host } => format!("metadata:{host}"),
            GoogleSource::ServiceAccount { key, token_url } => {
                let fingerprint: String =
                    key.fingerprint.iter().map(|b| format!("{b:02x}")).collect();
                let identity = [
                    key.client_email.as_str(),
                    &key.private_key_id,
                    &fingerprint,
                    &token_url.to_string(),
                ];
                format!("sa#{}", federation::digest_fields(&identity))
            }
            GoogleSource::ExternalAccount(account) => {
                format!(
                    "wif#{}",
                    federation::digest_fields(&account.minting_identity())
                )
            }
        };
        let federation = match &config.source {
            GoogleSource::ExternalAccount(account) => {
                Some(FederationSharedDataKeys::new(namespace, account))
            }
            _ => None,
        };
        GoogleSharedDataKeys {
            entry: format!("{namespace}/google/{source}/{}", config.audience),
            lease: format!("{namespace}/google-lease/{source}/{}", config.audience),
            federation,
        }
    }
}

/// One route's Google ID token: its settings, shared-data key names and callout timeout.
#[derive(Debug)]
pub struct GoogleRoute {
    pub config: GoogleIdTokenConfig,
    pub keys: GoogleSharedDataKeys,
    /// Every callout's timeout.
    pub timeout_ms: u32,
}

impl GoogleRoute {
    pub fn new(namespace: &str, config: GoogleIdTokenConfig, timeout_ms: u32) -> GoogleRoute {
        GoogleRoute {
            keys: GoogleSharedDataKeys::new(namespace, &config),
            config,
            timeout_ms,
        }
    }

    /// How long a mint may take: each of its callouts may use the whole timeout.
    fn mint_lease_ms(&self) -> u64 {
        let steps = match &self.config.source {
            GoogleSource::ExternalAccount(account) => account.max_steps(),
            _ => 1,
        };
        u64::from(self.timeout_ms).saturating_mul(u64::from(steps) + 1)
    }
}

#[derive(Debug)]
struct WorkerToken {
    token: Option<Rc<GoogleToken>>,
    /// `Bearer <token>`, rendered once per token.
    bearer: Rc<str>,
    cold_started_ms: Vec<u64>,
}

impl WorkerToken {
    fn set(&mut self, token: Rc<GoogleToken>) {
        self.bearer = Rc::from(format!("Bearer {}", token.token));
        self.token = Some(token);
    }
}

/// The worker's Google tokens by shared-data key.
#[derive(Debug)]
pub struct GoogleTokens {
    tokens: HashMap<String, WorkerToken>,
    /// This worker as a holder of shared leases.
    holder: u64,
}

/// Who waits for a mint, which decides what may start it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MintFor {
    /// A paused request (no usable token yet): capped per worker, no shared lease needed.
    Request,
    /// The tick, ahead of expiry: only the worker holding the shared lease mints.
    Refresh,
}

/// A mint in flight.
#[derive(Debug)]
pub struct Mint {
    /// The callout the mint waits for (the current step's, for a chain).
    pub token: CalloutToken,
    /// The callout carries a request body (the service-account token exchange).
    pub carries_body: bool,
    purpose: MintFor,
    lease: bool,
    started_ms: u64,
    /// Where a federated mint is; `None` for one-callout sources.
    chain: Option<Chain>,
    /// The callout an answer chose for the next step, not started yet (see
    /// [`GoogleTokens::dispatch_next`]).
    next_call: Option<Box<CalloutRequest>>,
}

/// What an answer did to a mint.
#[derive(Debug, PartialEq, Eq)]
pub enum MintProgress {
    /// A federated mint's next step is chosen: start it with [`GoogleTokens::dispatch_next`] (at
    /// once in a request; at the next tick in a root context, which must not start a callout
    /// from a call answer).
    Next,
    /// The token, as the whole `Authorization` value (stored in the worker and shared data).
    Done(Rc<str>),
    /// Minting failed (logged and counted).
    Failed,
}

impl GoogleTokens {
    pub fn new(holder: u64) -> GoogleTokens {
        GoogleTokens {
            tokens: HashMap::new(),
            holder,
        }
    }

    fn slot(&mut self, keys: &GoogleSharedDataKeys) -> &mut WorkerToken {
        self.tokens
            .entry(keys.entry.clone())
            .or_insert_with(|| WorkerToken {
                token: None,
                bearer: Rc::from(""),
                cold_started_ms: Vec::new(),
            })
    }

    /// The `Authorization` value (`Bearer <token>`) for a token that may be forwarded now,
    /// from this worker or shared data.
    pub fn current(&mut self, host: &dyn Host, keys: &GoogleSharedDataKeys) -> Option<Rc<str>> {
        let now = host.now_secs();
        if let Some(slot) = self.tokens.get(&keys.entry) {
            if slot.token.as_ref().is_some_and(|t| t.usable(now)) {
                return Some(slot.bearer.clone());
            }
        }
        let slot = self.slot(keys);
        adopt_shared(slot, host, keys);
        slot.token
            .as_ref()
            .filter(|t| t.usable(now))
            .map(|_| slot.bearer.clone())
    }

    /// Whether a mint ahead of expiry is due (or there is no token yet). Looks at shared data
    /// first, so a token another worker refreshed is adopted instead of minted again.
    pub fn refresh_due(&mut self, host: &dyn Host, google: &GoogleRoute) -> bool {
        let (keys, refresh_before) = (&google.keys, google.config.refresh_before_expiry_secs);
        let now = host.now_secs();
        let slot = self.slot(keys);
        let due = |slot: &WorkerToken| {
            slot.token
                .as_ref()
                .is_none_or(|t| t.refresh_due(now, refresh_before))
        };
        if due(slot) {
            adopt_shared(slot, host, keys);
        }
        due(slot)
    }

    /// Starts a mint for `purpose` (see [`MintFor`]). `None` means no mint may start now (or
    /// the host refused it).
    pub fn begin(
        &mut self,
        host: &mut dyn Host,
        google: &GoogleRoute,
        purpose: MintFor,
    ) -> Option<Mint> {
        let (keys, config) = (&google.keys, &google.config);
        let now_ms = host.now_ms();
        let lease_ms = google.mint_lease_ms();
        let mut lease = false;
        if purpose == MintFor::Request {
            let cap = match config.source {
                GoogleSource::ExternalAccount(_) => MAX_COLD_FEDERATED_MINTS_PER_WORKER,
                _ => MAX_COLD_MINTS_PER_WORKER,
            };
            let slot = self.tokens.get_mut(&keys.entry)?;
            slot.cold_started_ms
                .retain(|s| now_ms.saturating_sub(*s) < lease_ms);
            if slot.cold_started_ms.len() >= cap {
                return None;
            }
        } else {
            match shared::try_lease(host, &keys.lease, self.holder, lease_ms) {
                Ok(Lease::Acquired) => lease = true,
                Ok(Lease::Uncoordinated) => {}
                Ok(Lease::Held) | Err(_) => return None,
            }
        }
        host.count(Metric::GoogleTokenMints);
        let (request, chain) = match mint_request(host, google) {
            Ok(started) => started,
            Err(reason) => {
                self.fail(host, &reason);
                return None;
            }
        };
        let token = match host.dispatch(&request) {
            Ok(token) => token,
            Err(e) => {
                self.fail(host, &format!("dispatch_http_call refused: {}", e.0));
                return None;
            }
        };
        if purpose == MintFor::Request {
            if let Some(slot) = self.tokens.get_mut(&keys.entry) {
                slot.cold_started_ms.push(now_ms);
            }
        }
        Some(Mint {
            token,
            carries_body: request.body.is_some(),
            purpose,
            lease,
            started_ms: now_ms,
            chain,
            next_call: None,
        })
    }

    /// Takes the answer to `mint`'s callout: the next step of a chain chosen
    /// ([`MintProgress::Next`]), the new token (stored in the worker and shared data), or a
    /// failure (logged and counted).
    pub fn advance(
        &mut self,
        host: &mut dyn Host,
        google: &GoogleRoute,
        mint: &mut Mint,
        response: &CalloutResponse,
    ) -> MintProgress {
        let (keys, config) = (&google.keys, &google.config);
        let now = host.now_secs();
        let parsed = match (
            &config.source,
            mint.chain.as_mut(),
            keys.federation.as_ref(),
        ) {
            (GoogleSource::Metadata { .. }, ..) => response
                .ok_body()
                .and_then(|body| GoogleToken::from_jwt(body, now).map_err(|e| e.to_string())),
            (GoogleSource::ServiceAccount { .. }, ..) => response.ok_body().and_then(|body| {
                GoogleToken::from_token_response(body, now).map_err(|e| e.to_string())
            }),
            (GoogleSource::ExternalAccount(account), Some(chain), Some(cache)) => {
                let target = Target {
                    account,
                    keys: cache,
                    audience: &config.audience,
                    timeout_ms: google.timeout_ms,
                };
                match chain.advance(host, &target, response) {
                    Ok(Next::Call(request)) => {
                        mint.next_call = Some(Box::new(request));
                        return MintProgress::Next;
                    }
                    Ok(Next::Token(token)) => Ok(token),
                    Err(failure) => Err(failure.to_string()),
                }
            }
            (GoogleSource::ExternalAccount(_), ..) => Err("federation state missing".to_string()),
        };
        self.end_cold(keys, mint);
        let token = match parsed {
            Ok(token) if token.usable(now) => Rc::new(token),
            Ok(_) => {
                self.fail(host, "token expires too soon");
                return MintProgress::Failed;
            }
            Err(reason) => {
                self.fail(host, &reason);
                return MintProgress::Failed;
            }
        };
        if let Err(e) = shared::overwrite(host, &keys.entry, &token.encode(), Width::Full) {
            log::warn!("could not share the Google ID token: {}", e.0);
        }
        if mint.lease {
            let _ = shared::release_lease(host, &keys.lease, self.holder);
        }
        log::info!(
            "minted a Google ID token for audience {} (expires at {})",
            config.audience,
            token.expires_at
        );
        let slot = self.slot(keys);
        slot.set(token);
        MintProgress::Done(slot.bearer.clone())
    }

    /// Starts the callout of a federated mint's next step (after [`MintProgress::Next`]).
    /// `false`: there was none, or the host refused it; the mint has failed (logged, counted).
    pub fn dispatch_next(
        &mut self,
        host: &mut dyn Host,
        google: &GoogleRoute,
        mint: &mut Mint,
    ) -> bool {
        let step = mint.chain.as_ref().map_or("", |c| c.step().describe());
        let refused = match mint.next_call.take() {
            Some(request) => match host.dispatch(&request) {
                Ok(token) => {
                    mint.token = token;
                    mint.carries_body |= request.body.is_some();
                    return true;
                }
                Err(e) => format!("dispatch_http_call refused: {}", e.0),
            },
            None => "no next step".to_string(),
        };
        self.end_cold(&google.keys, mint);
        self.fail(host, &format!("external_account step {step}: {refused}"));
        false
    }

    /// A finished cold mint frees its place under the per-worker cap.
    fn end_cold(&mut self, keys: &GoogleSharedDataKeys, mint: &Mint) {
        if mint.purpose != MintFor::Request {
            return;
        }
        if let Some(slot) = self.tokens.get_mut(&keys.entry) {
            if let Some(i) = slot
                .cold_started_ms
                .iter()
                .position(|s| *s == mint.started_ms)
            {
                slot.cold_started_ms.swap_remove(i);
            }
        }
    }

    /// Logs and counts a failed mint. A lease taken for it is left to run out, which spaces
    /// out background retries while Google is unreachable.
    fn fail(&mut self, host: &mut dyn Host, why: &str) {
        host.count(Metric::GoogleTokenMintFailures);
        log::warn!("minting a Google ID token failed: {why}");
    }
}

/// Replaces the worker's token by the one in shared data when that one lives longer.
fn adopt_shared(slot: &mut WorkerToken, host: &dyn Host, keys: &GoogleSharedDataKeys) {
    if let Ok(Slot::Ours(record)) = shared::read(host, &keys.entry) {
        if let Some(token) = GoogleToken::decode(&record.payload) {
            let ours = slot.token.as_ref().map_or(0, |t| t.expires_at);
            if token.expires_at > ours {
                slot.set(Rc::new(token));
            }
        }
    }
}

/// The (first) callout that mints a token for `config`, and the chain state of a federated mint.
fn mint_request(
    host: &mut dyn Host,
    google: &GoogleRoute,
) -> Result<(CalloutRequest, Option<Chain>), String> {
    let (keys, config, timeout_ms) = (&google.keys, &google.config, google.timeout_ms);
    let now = host.now_secs();
    Ok(match &config.source {
        GoogleSource::Metadata { host } => (
            id_token::metadata_request(host, &config.audience, timeout_ms),
            None,
        ),
        GoogleSource::ServiceAccount { key, token_url } => {
            let assertion = key
                .assertion(&token_url.to_string(), &config.audience, now)
                .map_err(|e| e.to_string())?;
            let request = id_token::token_request(
                token_url,
                &token_url.dispatch_target(),
                &assertion,
                timeout_ms,
            );
            (request, None)
        }
        GoogleSource::ExternalAccount(account) => {
            let cache = keys
                .federation
                .as_ref()
                .ok_or("federation cache keys missing")?;
            let target = Target {
                account,
                keys: cache,
                audience: &config.audience,
                timeout_ms,
            };
            let (chain, request) =
                Chain::start(host, &target).map_err(|f: federation::Failure| f.to_string())?;
            (request, Some(chain))
        }
    })
}
