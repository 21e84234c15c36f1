//! Google ID tokens at run time: the worker's copy, the copy in shared data, and minting one
//! (metadata server or service-account assertion) through a callout. Token logic and request
//! shapes live in [`crate::id_token`]; this module decides where a token comes from.

use crate::config::{GoogleIdTokenConfig, GoogleSource};
use crate::host::{CalloutResponse, CalloutToken, Host, LogLevel};
use crate::id_token::{self, GoogleToken};
use crate::metrics::Metric;
use crate::shared::{self, Lease, Slot};
use std::collections::HashMap;
use std::rc::Rc;

/// Cold mints one worker may have in flight for one audience.
const MAX_COLD_MINTS_PER_WORKER: usize = 4;

/// Shared-data keys for one (source, audience).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenKeys {
    pub entry: String,
    pub lease: String,
}

impl TokenKeys {
    pub fn new(namespace: &str, config: &GoogleIdTokenConfig) -> TokenKeys {
        let source = match &config.source {
            GoogleSource::Metadata { host } => format!("metadata:{host}"),
            GoogleSource::ServiceAccount { key, .. } => format!("sa:{}", key.client_email),
        };
        TokenKeys {
            entry: format!("{namespace}/google/{source}/{}", config.audience),
            lease: format!("{namespace}/google-lease/{source}/{}", config.audience),
        }
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
#[derive(Debug, Default)]
pub struct GoogleTokens {
    tokens: HashMap<String, WorkerToken>,
}

/// A mint in flight.
#[derive(Debug)]
pub struct Mint {
    pub token: CalloutToken,
    /// The callout carries a request body (the service-account token exchange).
    pub carries_body: bool,
    cold: bool,
    lease: bool,
    started_ms: u64,
}

impl GoogleTokens {
    fn slot(&mut self, keys: &TokenKeys) -> &mut WorkerToken {
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
    pub fn current(&mut self, host: &dyn Host, keys: &TokenKeys) -> Option<Rc<str>> {
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
    pub fn refresh_due(&mut self, host: &dyn Host, keys: &TokenKeys, refresh_before: u64) -> bool {
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

    /// Starts a mint. `cold` mints (a request waits) are capped per worker; background mints
    /// need the shared lease. `None` means no mint may start now (or the host refused it).
    pub fn begin(
        &mut self,
        host: &mut dyn Host,
        keys: &TokenKeys,
        config: &GoogleIdTokenConfig,
        timeout_ms: u32,
        cold: bool,
        holder: u64,
    ) -> Option<Mint> {
        let now_ms = host.now_ms();
        let lease_ms = u64::from(timeout_ms).saturating_mul(2);
        let mut lease = false;
        if cold {
            let slot = self.tokens.get_mut(&keys.entry)?;
            slot.cold_started_ms
                .retain(|s| now_ms.saturating_sub(*s) < lease_ms);
            if slot.cold_started_ms.len() >= MAX_COLD_MINTS_PER_WORKER {
                return None;
            }
        } else {
            match shared::try_lease(host, &keys.lease, holder, lease_ms) {
                Ok(Lease::Acquired) => lease = true,
                Ok(Lease::Uncoordinated) => {}
                Ok(Lease::Held) | Err(_) => return None,
            }
        }
        host.count(Metric::GoogleTokenMints);
        let request = match mint_request(config, host.now_secs(), timeout_ms) {
            Ok(request) => request,
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
        if cold {
            if let Some(slot) = self.tokens.get_mut(&keys.entry) {
                slot.cold_started_ms.push(now_ms);
            }
        }
        Some(Mint {
            token,
            carries_body: request.body.is_some(),
            cold,
            lease,
            started_ms: now_ms,
        })
    }

    /// Takes the answer to `mint`: the new token (stored in the worker and shared data), or
    /// `None` when minting failed (logged and counted).
    pub fn finish(
        &mut self,
        host: &mut dyn Host,
        keys: &TokenKeys,
        config: &GoogleIdTokenConfig,
        mint: &Mint,
        response: &CalloutResponse,
        holder: u64,
    ) -> Option<Rc<str>> {
        if mint.cold {
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
        let now = host.now_secs();
        let parsed = response.ok_body().and_then(|body| {
            match config.source {
                GoogleSource::Metadata { .. } => GoogleToken::from_jwt(body, now),
                GoogleSource::ServiceAccount { .. } => GoogleToken::from_token_response(body, now),
            }
            .map_err(|e| e.to_string())
        });
        let token = match parsed {
            Ok(token) if token.usable(now) => Rc::new(token),
            Ok(_) => {
                self.fail(host, "token expires too soon");
                return None;
            }
            Err(reason) => {
                self.fail(host, &reason);
                return None;
            }
        };
        if let Err(e) = shared::overwrite(host, &keys.entry, &token.encode()) {
            host.log(
                LogLevel::Warn,
                &format!(
                    "cloudrun_oidc: could not share the Google ID token: {}",
                    e.0
                ),
            );
        }
        if mint.lease {
            let _ = shared::release_lease(host, &keys.lease, holder);
        }
        host.log(
            LogLevel::Info,
            &format!(
                "cloudrun_oidc: minted a Google ID token for audience {} (expires at {})",
                config.audience, token.expires_at
            ),
        );
        let slot = self.slot(keys);
        slot.set(token);
        Some(slot.bearer.clone())
    }

    /// Logs and counts a failed mint. A lease taken for it is left to run out, which spaces
    /// out background retries while Google is unreachable.
    fn fail(&mut self, host: &mut dyn Host, why: &str) {
        host.count(Metric::GoogleTokenMintFailures);
        host.log(
            LogLevel::Warn,
            &format!("cloudrun_oidc: minting a Google ID token failed: {why}"),
        );
    }
}

/// Replaces the worker's token by the one in shared data when that one lives longer.
fn adopt_shared(slot: &mut WorkerToken, host: &dyn Host, keys: &TokenKeys) {
    if let Ok(Slot::Ours(record)) = shared::read(host, &keys.entry) {
        if let Some(token) = GoogleToken::decode(&record.payload) {
            let ours = slot.token.as_ref().map_or(0, |t| t.expires_at);
            if token.expires_at > ours {
                slot.set(Rc::new(token));
            }
        }
    }
}

/// The callout that mints a token for `config`.
fn mint_request(
    config: &GoogleIdTokenConfig,
    now: u64,
    timeout_ms: u32,
) -> Result<crate::host::CalloutRequest, String> {
    Ok(match &config.source {
        GoogleSource::Metadata { host } => {
            id_token::metadata_request(host, &config.audience, timeout_ms)
        }
        GoogleSource::ServiceAccount { key, token_url } => {
            let assertion = key
                .assertion(&token_url.to_string(), &config.audience, now)
                .map_err(|e| e.to_string())?;
            id_token::token_request(
                token_url,
                &token_url.dispatch_target(),
                &assertion,
                timeout_ms,
            )
        }
    })
}
