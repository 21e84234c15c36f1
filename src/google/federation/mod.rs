//! Workload Identity Federation at run time (`google_id_token.source: external_account`): the
//! chain of callouts that turns where the gateway runs into a Google ID token, and the caches
//! that keep most mints down to its last step.
//!
//! The chain: subject token (`credential_source.url`, or EC2 metadata — IMDSv2 session token,
//! region, role, credentials — and a SigV4 signature) → STS token exchange (RFC 8693) at
//! `token_url` → IAM Credentials `generateIdToken` for the impersonated service account. Exactly
//! one callout is in flight at a time: each answer starts the next callout (Kong's engine can
//! crash a worker when one context has several callouts in flight and one fails).
//!
//! Cached in shared data (expiry and full key inside the value, see [`crate::host::shared`]): the
//! STS access token and the subject material (AWS role credentials, or a URL's subject token when it
//! is a JWT with an `exp`), each until [`CACHE_MARGIN_SECS`] before it expires. Subject material
//! is cached only once STS accepted it. A refusal of cached material (STS 400/401/403 for a
//! cached subject, IAM 401 for a cached STS token) drops it and retries once with fresh material.

pub mod aws;
pub mod external_account;
pub mod sigv4;
pub mod utc;

use crate::google::federation::aws::RoleCredentials;
use crate::google::federation::external_account::{
    AwsSource, ExternalAccount, SubjectFormat, SubjectSource, UrlSource,
};
use crate::google::id_token::GoogleToken;
use crate::host::shared::{self, layout, Slot, Width};
use crate::host::{CalloutRequest, CalloutResponse, Host};
use crate::http::url::{encode_query_component, HttpUrl};
use sha2::{Digest, Sha256};
use std::fmt;

/// Cached credentials are not reused when they expire within this many seconds.
pub const CACHE_MARGIN_SECS: u64 = 300;
/// Largest STS, IAM or metadata answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// Largest subject token accepted from a URL (SAML assertions can be long).
const MAX_SUBJECT_BYTES: usize = 64 * 1024;
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Shared-data keys of one external account's cached credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederationSharedDataKeys {
    /// The STS access token of the federated identity.
    pub sts: String,
    /// AWS role credentials, or a URL's subject token.
    pub subject: String,
}

impl FederationSharedDataKeys {
    /// Keys by everything that decides each cached value (see
    /// [`ExternalAccount::sts_identity`], [`ExternalAccount::subject_identity`]: pool, STS,
    /// subject URLs, `credential_source.headers` and format), hashed to a fixed length; the
    /// full key is still stored and checked (CRC32 collisions).
    pub fn new(namespace: &str, account: &ExternalAccount) -> FederationSharedDataKeys {
        FederationSharedDataKeys {
            sts: format!(
                "{namespace}/wif-sts/{}",
                digest_fields(&account.sts_identity())
            ),
            subject: format!(
                "{namespace}/wif-subject/{}",
                digest_fields(&account.subject_identity())
            ),
        }
    }
}

/// The first 16 bytes of SHA-256 over `fields`, each length-prefixed (no two lists hash the
/// same input), hex: cache keys built from configuration stay short, and secrets in it (header
/// values) stay out of them.
pub fn digest_fields<S: AsRef<str>>(fields: &[S]) -> String {
    let mut hash = Sha256::new();
    for field in fields {
        let field = field.as_ref().as_bytes();
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hash.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What one mint needs to know.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub account: &'a ExternalAccount,
    pub keys: &'a FederationSharedDataKeys,
    /// The Cloud Run audience of the ID token.
    pub audience: &'a str,
    pub timeout_ms: u32,
}

/// A step of the chain, named in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    AwsSession,
    AwsRegion,
    AwsRole,
    AwsCredentials,
    Subject,
    Exchange,
    IdToken,
}

impl Step {
    /// What the step does and which configured URL it calls.
    pub fn describe(self) -> &'static str {
        match self {
            Step::AwsSession => "AWS IMDSv2 session token (imdsv2_session_token_url)",
            Step::AwsRegion => "AWS region (region_url)",
            Step::AwsRole => "AWS instance role (url)",
            Step::AwsCredentials => "AWS role credentials (url/<role>)",
            Step::Subject => "subject token (credential_source.url)",
            Step::Exchange => "STS token exchange (token_url)",
            Step::IdToken => "IAM generateIdToken (service_account_impersonation_url)",
        }
    }
}

/// Why a mint failed: the step and a reason that never contains a token or a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub step: Step,
    pub why: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "external_account step {}: {}",
            self.step.describe(),
            self.why
        )
    }
}

/// What to do after an answer.
#[derive(Debug)]
pub enum Next {
    /// Start this callout (the chain waits for its answer).
    Call(CalloutRequest),
    /// Done: the Google ID token.
    Token(GoogleToken),
}

/// The subject the exchange presents.
#[derive(Clone, PartialEq, Eq)]
enum Subject {
    Aws(RoleCredentials),
    /// A URL's subject token and its own expiry (JWT `exp`), if it has one.
    Token {
        token: String,
        expires_at: Option<u64>,
    },
}

/// One mint in progress. `Debug` shows the step only (the rest are credentials).
pub struct Chain {
    step: Step,
    session: Option<String>,
    region: Option<String>,
    subject: Option<Subject>,
    sts_token: Option<String>,
    /// The subject (or the STS token) came from the cache: a refusal retries once fresh.
    cached_subject: bool,
    cached_sts: bool,
    retried: bool,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// Starts a mint: the first callout needed after looking at the caches.
    pub fn start(
        host: &mut dyn Host,
        target: &Target<'_>,
    ) -> Result<(Chain, CalloutRequest), Failure> {
        let mut chain = Chain {
            step: Step::IdToken,
            session: None,
            region: None,
            subject: None,
            sts_token: None,
            cached_subject: false,
            cached_sts: false,
            retried: false,
        };
        let now = host.now_secs();
        if let Some(token) = read_sts(host, target.keys, now) {
            chain.sts_token = Some(token);
            chain.cached_sts = true;
            let request = chain.id_token_request(target);
            return Ok((chain, request));
        }
        let request = chain.begin_subject(host, target)?;
        Ok((chain, request))
    }

    /// The step whose answer the chain waits for.
    pub fn step(&self) -> Step {
        self.step
    }

    /// Takes the answer to the pending callout.
    pub fn advance(
        &mut self,
        host: &mut dyn Host,
        target: &Target<'_>,
        response: &CalloutResponse,
    ) -> Result<Next, Failure> {
        let body = match response.ok_body() {
            Ok(body) => body,
            Err(reason) => {
                let reason = match error_code(&response.body) {
                    Some(code) if response.status.is_some() => format!("{reason} ({code})"),
                    _ => reason,
                };
                return self.refused(host, target, reason, response.status);
            }
        };
        let now = host.now_secs();
        let fail = |step: Step, why: &str| Failure {
            step,
            why: why.to_string(),
        };
        match (self.step, &target.account.source) {
            (Step::AwsSession, SubjectSource::Aws(aws)) => {
                self.session =
                    Some(aws::read_session_token(body).map_err(|w| fail(Step::AwsSession, w))?);
                Ok(Next::Call(self.metadata(
                    Step::AwsRegion,
                    &aws.region_url,
                    target,
                )))
            }
            (Step::AwsRegion, SubjectSource::Aws(aws)) => {
                self.region = Some(aws::read_region(body).map_err(|w| fail(Step::AwsRegion, w))?);
                Ok(Next::Call(self.metadata(
                    Step::AwsRole,
                    &aws.credentials_url,
                    target,
                )))
            }
            (Step::AwsRole, SubjectSource::Aws(aws)) => {
                let role = aws::read_role(body).map_err(|w| fail(Step::AwsRole, w))?;
                let url = aws::role_credentials_url(&aws.credentials_url, &role);
                Ok(Next::Call(self.metadata(
                    Step::AwsCredentials,
                    &url,
                    target,
                )))
            }
            (Step::AwsCredentials, SubjectSource::Aws(_)) => {
                let region = self.region.clone().unwrap_or_default();
                let role = aws::read_credentials(body, &region, now)
                    .map_err(|w| fail(Step::AwsCredentials, w))?;
                self.subject = Some(Subject::Aws(role));
                self.cached_subject = false;
                self.exchange_request(target, now).map(Next::Call)
            }
            (Step::Subject, SubjectSource::Url(source)) => {
                let token =
                    read_subject(body, &source.format).map_err(|w| fail(Step::Subject, w))?;
                let expires_at = jwt_expiry(&token);
                self.subject = Some(Subject::Token { token, expires_at });
                self.cached_subject = false;
                self.exchange_request(target, now).map(Next::Call)
            }
            (Step::Exchange, _) => {
                let (token, expires_at) =
                    read_exchange(body, now).map_err(|w| fail(Step::Exchange, w))?;
                self.remember(host, target, &token, expires_at, now);
                self.sts_token = Some(token);
                self.cached_sts = false;
                Ok(Next::Call(self.id_token_request(target)))
            }
            (Step::IdToken, _) => read_id_token(body, now)
                .map(Next::Token)
                .map_err(|w| fail(Step::IdToken, &w)),
            (step, _) => Err(fail(step, "answer to a step this source does not have")),
        }
    }

    /// A non-200 or failed callout: cached material refused by STS or IAM is dropped and the
    /// chain retries once with fresh material; anything else fails the mint.
    fn refused(
        &mut self,
        host: &mut dyn Host,
        target: &Target<'_>,
        reason: String,
        status: Option<u16>,
    ) -> Result<Next, Failure> {
        let step = self.step;
        let rejected_subject = step == Step::Exchange && matches!(status, Some(400 | 401 | 403));
        let rejected_sts = step == Step::IdToken && status == Some(401);
        if rejected_subject {
            drop_cached(host, &target.keys.subject);
        }
        if rejected_sts {
            drop_cached(host, &target.keys.sts);
        }
        let from_cache =
            (rejected_subject && self.cached_subject) || (rejected_sts && self.cached_sts);
        if from_cache && !self.retried {
            self.retried = true;
            log::warn!(
                "{} refused cached credentials ({reason}); retrying with fresh ones",
                step.describe()
            );
            self.sts_token = None;
            self.subject = None;
            return if rejected_sts {
                self.begin_subject(host, target).map(Next::Call)
            } else {
                Ok(Next::Call(self.begin_subject_fresh(target)))
            };
        }
        let metadata = matches!(step, Step::AwsRegion | Step::AwsRole | Step::AwsCredentials);
        let why = if metadata && status == Some(401) && self.session.is_none() {
            format!("{reason} (the instance requires IMDSv2: add imdsv2_session_token_url, gcloud's --enable-imdsv2)")
        } else {
            reason
        };
        Err(Failure { step, why })
    }

    /// The first callout towards a subject token, or the exchange when one is cached.
    fn begin_subject(
        &mut self,
        host: &mut dyn Host,
        target: &Target<'_>,
    ) -> Result<CalloutRequest, Failure> {
        let now = host.now_secs();
        if let Some(subject) = read_subject_cache(host, target, now) {
            self.subject = Some(subject);
            self.cached_subject = true;
            return self.exchange_request(target, now);
        }
        Ok(self.begin_subject_fresh(target))
    }

    /// The first callout towards a fresh subject token.
    fn begin_subject_fresh(&mut self, target: &Target<'_>) -> CalloutRequest {
        self.cached_subject = false;
        match &target.account.source {
            SubjectSource::Url(source) => {
                self.step = Step::Subject;
                subject_request(source, target.timeout_ms)
            }
            SubjectSource::Aws(AwsSource {
                session_token_url: Some(url),
                ..
            }) => {
                self.step = Step::AwsSession;
                aws::session_request(url, target.timeout_ms)
            }
            SubjectSource::Aws(aws) => self.metadata(Step::AwsRegion, &aws.region_url, target),
        }
    }

    fn metadata(&mut self, step: Step, url: &HttpUrl, target: &Target<'_>) -> CalloutRequest {
        self.step = step;
        aws::get(url, self.session.as_deref(), target.timeout_ms)
    }

    /// The RFC 8693 exchange of the subject at STS.
    fn exchange_request(
        &mut self,
        target: &Target<'_>,
        now: u64,
    ) -> Result<CalloutRequest, Failure> {
        self.step = Step::Exchange;
        let account = target.account;
        let subject = match &self.subject {
            Some(Subject::Token { token, .. }) => token.clone(),
            Some(Subject::Aws(role)) => {
                let SubjectSource::Aws(aws) = &account.source else {
                    return Err(Failure {
                        step: Step::Exchange,
                        why: "no AWS source".into(),
                    });
                };
                aws::subject_token(role, &aws.verification_url, &account.audience, now).map_err(
                    |w| Failure {
                        step: Step::AwsCredentials,
                        why: w.to_string(),
                    },
                )?
            }
            None => {
                return Err(Failure {
                    step: Step::Exchange,
                    why: "no subject token".into(),
                })
            }
        };
        let body = [
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("audience", account.audience.as_str()),
            ("scope", CLOUD_PLATFORM_SCOPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("subject_token", subject.as_str()),
            ("subject_token_type", account.subject_token_type.as_str()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_query_component(v)))
        .collect::<Vec<_>>()
        .join("&");
        Ok(post(
            &account.token_url,
            "application/x-www-form-urlencoded",
            vec![],
            body,
            target.timeout_ms,
        ))
    }

    /// `generateIdToken` for the Cloud Run audience, authorised by the STS token.
    fn id_token_request(&mut self, target: &Target<'_>) -> CalloutRequest {
        self.step = Step::IdToken;
        let body =
            serde_json::json!({"audience": target.audience, "includeEmail": true}).to_string();
        let bearer = format!("Bearer {}", self.sts_token.as_deref().unwrap_or_default());
        post(
            &target.account.id_token_url,
            "application/json",
            vec![("authorization".to_string(), bearer)],
            body,
            target.timeout_ms,
        )
    }

    /// Caches the STS token and, now that STS accepted it, the subject material.
    fn remember(
        &self,
        host: &mut dyn Host,
        target: &Target<'_>,
        token: &str,
        expires_at: u64,
        now: u64,
    ) {
        if expires_at > now.saturating_add(CACHE_MARGIN_SECS) {
            let mut payload = Vec::with_capacity(12 + token.len());
            layout::put_u64(&mut payload, expires_at);
            layout::put_bytes(&mut payload, token.as_bytes());
            store(host, &target.keys.sts, &payload);
        }
        if self.cached_subject {
            return;
        }
        let payload = match &self.subject {
            Some(Subject::Aws(role)) => Some(role.encode()),
            Some(Subject::Token {
                token,
                expires_at: Some(exp),
            }) => {
                let mut p = Vec::with_capacity(12 + token.len());
                layout::put_u64(&mut p, *exp);
                layout::put_bytes(&mut p, token.as_bytes());
                Some(p)
            }
            _ => None,
        };
        if let Some(payload) = payload {
            store(host, &target.keys.subject, &payload);
        }
    }
}

fn post(
    url: &HttpUrl,
    content_type: &str,
    mut extra: Vec<(String, String)>,
    body: String,
    timeout_ms: u32,
) -> CalloutRequest {
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), url.path_and_query.clone()),
        (":authority".to_string(), url.authority()),
        (":scheme".to_string(), url.scheme.as_str().to_string()),
        ("content-type".to_string(), content_type.to_string()),
        ("content-length".to_string(), body.len().to_string()),
    ];
    headers.append(&mut extra);
    CalloutRequest {
        upstream: url.dispatch_target(),
        headers,
        body: Some(body.into_bytes()),
        timeout_ms,
    }
}

/// `GET credential_source.url` with its configured headers.
fn subject_request(source: &UrlSource, timeout_ms: u32) -> CalloutRequest {
    let mut request = aws::get(&source.url, None, timeout_ms);
    request.headers.extend(
        source
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.clone())),
    );
    request
}

fn store(host: &mut dyn Host, key: &str, payload: &[u8]) {
    if let Err(e) = shared::overwrite(host, key, payload, Width::Full) {
        log::warn!("could not share federation credentials: {}", e.0);
    }
}

/// Makes a cached value unusable (an empty payload decodes to nothing).
fn drop_cached(host: &mut dyn Host, key: &str) {
    if let Ok(Slot::Ours(_)) = shared::read(host, key) {
        store(host, key, &[]);
    }
}

/// A cached `(expires_at, bytes)` payload that is still good for [`CACHE_MARGIN_SECS`].
fn read_timed(host: &dyn Host, key: &str, now: u64) -> Option<String> {
    let Ok(Slot::Ours(record)) = shared::read(host, key) else {
        return None;
    };
    let mut input = record.payload.as_slice();
    let expires_at = layout::take_u64(&mut input)?;
    let value = String::from_utf8(layout::take_bytes(&mut input)?.to_vec()).ok()?;
    (input.is_empty() && now.saturating_add(CACHE_MARGIN_SECS) < expires_at && !value.is_empty())
        .then_some(value)
}

fn read_sts(host: &dyn Host, keys: &FederationSharedDataKeys, now: u64) -> Option<String> {
    read_timed(host, &keys.sts, now)
}

fn read_subject_cache(host: &dyn Host, target: &Target<'_>, now: u64) -> Option<Subject> {
    match &target.account.source {
        SubjectSource::Url(_) => {
            read_timed(host, &target.keys.subject, now).map(|token| Subject::Token {
                expires_at: jwt_expiry(&token),
                token,
            })
        }
        SubjectSource::Aws(_) => {
            let Ok(Slot::Ours(record)) = shared::read(host, &target.keys.subject) else {
                return None;
            };
            RoleCredentials::decode(&record.payload)
                .filter(|role| now.saturating_add(CACHE_MARGIN_SECS) < role.expires_at)
                .map(Subject::Aws)
        }
    }
}

/// The subject token in a URL's answer.
fn read_subject(body: &[u8], format: &SubjectFormat) -> Result<String, &'static str> {
    if body.len() > MAX_SUBJECT_BYTES {
        return Err("answer too large");
    }
    let token = match format {
        SubjectFormat::Text => std::str::from_utf8(body)
            .map_err(|_| "answer is not UTF-8")?
            .trim()
            .to_string(),
        SubjectFormat::Json { field } => {
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|_| "answer is not JSON")?;
            value
                .get(field)
                .and_then(serde_json::Value::as_str)
                .ok_or("the subject_token_field_name member is missing or not a string")?
                .to_string()
        }
    };
    if token.is_empty() || token.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("no usable subject token in the answer");
    }
    Ok(token)
}

/// The `exp` of a JWT subject token (unverified: only to know how long to cache it; STS
/// verifies the token).
fn jwt_expiry(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = crate::jose::b64::decode(payload.as_bytes())?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

/// STS's answer: the access token and when it expires (`expires_in`; without one, now: used
/// once, never cached).
fn read_exchange(body: &[u8], now: u64) -> Result<(String, u64), &'static str> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: String,
        expires_in: Option<u64>,
        token_type: Option<String>,
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err("answer too large");
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|_| "no access_token in the answer")?;
    if answer
        .token_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err("token_type is not Bearer");
    }
    if answer.access_token.is_empty() || !answer.access_token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("access_token is not a bearer token");
    }
    Ok((
        answer.access_token,
        now.saturating_add(answer.expires_in.unwrap_or(0)),
    ))
}

/// IAM Credentials' answer `{"token": "<ID token>"}`.
fn read_id_token(body: &[u8], now: u64) -> Result<GoogleToken, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: String,
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err("answer too large".into());
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|_| "no token in the answer".to_string())?;
    GoogleToken::from_jwt(answer.token.as_bytes(), now).map_err(|e| e.to_string())
}

/// A Google or OAuth error code from an error answer (`{"error": "invalid_grant"}` or
/// `{"error": {"status": "PERMISSION_DENIED"}}`), only when it is a plain code.
fn error_code(body: &[u8]) -> Option<String> {
    if body.len() > MAX_ANSWER_BYTES {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let code = error
        .as_str()
        .or_else(|| error.get("status").and_then(serde_json::Value::as_str))?;
    let plain = !code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
    plain.then(|| code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use crate::host::CalloutToken;
    use serde_json::{json, Value};

    const NOW: u64 = 1_800_000_000;
    const POOL: &str =
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/kong/providers/p";
    const RUN: &str = "https://orders-abc-uc.a.run.app";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SESSION: &str = "imds-session-AAAA";
    const STS_TOKEN: &str = "ya29.federated-BBBB";

    fn account(source: Value, token_type: &str) -> ExternalAccount {
        ExternalAccount::parse(&json!({
            "type": "external_account",
            "audience": POOL,
            "subject_token_type": token_type,
            "token_url": "http://sts.test:8080/v1/token",
            "service_account_impersonation_url": "http://iam.test:8081/v1/projects/-/serviceAccounts/kong@p.iam.gserviceaccount.com:generateAccessToken",
            "credential_source": source,
        }))
        .unwrap()
    }

    fn aws(imdsv2: bool) -> ExternalAccount {
        let mut source = json!({
            "environment_id": "aws1",
            "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
            "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        });
        if imdsv2 {
            source["imdsv2_session_token_url"] = json!("http://169.254.169.254/latest/api/token");
        }
        account(
            source,
            crate::google::federation::external_account::AWS_TOKEN_TYPE,
        )
    }

    fn url_source(format: Value) -> ExternalAccount {
        account(
            json!({"url": "http://token.test:9000/token?audience=x", "headers": {"Metadata": "True"}, "format": format}),
            "urn:ietf:params:oauth:token-type:jwt",
        )
    }

    fn ok(body: impl AsRef<[u8]>) -> CalloutResponse {
        status(200, body)
    }

    fn status(code: u16, body: impl AsRef<[u8]>) -> CalloutResponse {
        CalloutResponse {
            status: Some(code),
            dispatch_status: None,
            body: body.as_ref().to_vec(),
        }
    }

    fn failed(why: &str) -> CalloutResponse {
        CalloutResponse {
            status: None,
            dispatch_status: Some(why.into()),
            body: vec![],
        }
    }

    fn header<'a>(r: &'a CalloutRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn form(r: &CalloutRequest) -> Vec<(String, String)> {
        let body = String::from_utf8(r.body.clone().unwrap()).unwrap();
        body.split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_string(), unquote(v))
            })
            .collect()
    }

    fn unquote(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn jwt(claims: Value) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            crate::jose::b64::encode(claims.to_string().as_bytes())
        )
    }

    fn creds(expires_at: u64) -> String {
        let exp = crate::google::federation::utc::DateTime::from_unix(expires_at);
        json!({
            "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAKONG", "SecretAccessKey": SECRET,
            "Token": "session-token-CCCC",
            "Expiration": format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", exp.year, exp.month, exp.day, exp.hour, exp.minute, exp.second),
        })
        .to_string()
    }

    fn sts_answer(expires_in: u64) -> String {
        json!({"access_token": STS_TOKEN, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer", "expires_in": expires_in}).to_string()
    }

    fn iam_answer(now: u64) -> String {
        json!({"token": jwt(json!({"aud": RUN, "exp": now + 3600}))}).to_string()
    }

    /// Runs one mint to its end, answering each step from `answer`; returns the callouts made and
    /// the outcome.
    fn run(
        host: &mut FakeHost,
        account: &ExternalAccount,
        mut answer: impl FnMut(Step, &CalloutRequest) -> CalloutResponse,
    ) -> (Vec<(Step, CalloutRequest)>, Result<GoogleToken, Failure>) {
        let keys = FederationSharedDataKeys::new("ns", account);
        let target = Target {
            account,
            keys: &keys,
            audience: RUN,
            timeout_ms: 1000,
        };
        let (mut chain, mut request) = match Chain::start(host, &target) {
            Ok(started) => started,
            Err(f) => return (vec![], Err(f)),
        };
        let mut calls = Vec::new();
        loop {
            let step = chain.step();
            let response = answer(step, &request);
            calls.push((step, request.clone()));
            assert!(calls.len() < 20, "runaway chain");
            match chain.advance(host, &target, &response) {
                Ok(Next::Call(next)) => request = next,
                Ok(Next::Token(token)) => return (calls, Ok(token)),
                Err(failure) => return (calls, Err(failure)),
            }
        }
    }

    /// Answers every step as a healthy AWS + Google would.
    fn healthy(now: u64) -> impl FnMut(Step, &CalloutRequest) -> CalloutResponse {
        move |step, _| match step {
            Step::AwsSession => ok(SESSION),
            Step::AwsRegion => ok("us-west-2c"),
            Step::AwsRole => ok("kong-role"),
            Step::AwsCredentials => ok(creds(now + 6 * 3600)),
            Step::Subject => {
                ok(json!({"access_token": jwt(json!({"exp": now + 3600}))}).to_string())
            }
            Step::Exchange => ok(sts_answer(3600)),
            Step::IdToken => ok(iam_answer(now)),
        }
    }

    fn steps(calls: &[(Step, CalloutRequest)]) -> Vec<Step> {
        calls.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn aws_chain_is_one_callout_after_another_as_google_documents() {
        let mut host = FakeHost::at(NOW);
        let (calls, token) = run(&mut host, &aws(true), healthy(NOW));
        assert_eq!(token.unwrap().expires_at, NOW + 3600);
        assert_eq!(
            steps(&calls),
            [
                Step::AwsSession,
                Step::AwsRegion,
                Step::AwsRole,
                Step::AwsCredentials,
                Step::Exchange,
                Step::IdToken
            ]
        );
        let (_, put) = &calls[0];
        assert_eq!(header(put, ":method"), Some("PUT"));
        assert_eq!(header(put, aws::SESSION_TTL_HEADER), Some("300"));
        for (_, get) in &calls[1..4] {
            assert_eq!(header(get, aws::SESSION_TOKEN_HEADER), Some(SESSION));
            assert_eq!(get.upstream, "169.254.169.254:80");
        }
        assert_eq!(
            header(&calls[3].1, ":path"),
            Some("/latest/meta-data/iam/security-credentials/kong-role")
        );
        let (_, exchange) = &calls[4];
        assert_eq!(exchange.upstream, "sts.test:8080");
        assert_eq!(header(exchange, ":path"), Some("/v1/token"));
        let fields = form(exchange);
        let field = |k: &str| fields.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(field("grant_type"), TOKEN_EXCHANGE_GRANT);
        assert_eq!(field("audience"), POOL);
        assert_eq!(field("scope"), CLOUD_PLATFORM_SCOPE);
        assert_eq!(field("requested_token_type"), ACCESS_TOKEN_TYPE);
        assert_eq!(
            field("subject_token_type"),
            crate::google::federation::external_account::AWS_TOKEN_TYPE
        );
        let signed: Value = serde_json::from_str(&unquote(&field("subject_token"))).unwrap();
        assert_eq!(
            signed["url"],
            "https://sts.us-west-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        );
        let auth = signed["headers"][0]["value"].as_str().unwrap();
        assert!(auth.contains("/us-west-2/sts/aws4_request"), "{auth}");
        let (_, iam) = &calls[5];
        assert_eq!(iam.upstream, "iam.test:8081");
        assert_eq!(
            header(iam, ":path"),
            Some("/v1/projects/-/serviceAccounts/kong@p.iam.gserviceaccount.com:generateIdToken")
        );
        assert_eq!(
            header(iam, "authorization"),
            Some(format!("Bearer {STS_TOKEN}").as_str())
        );
        let body: Value = serde_json::from_slice(iam.body.as_ref().unwrap()).unwrap();
        assert_eq!(body, json!({"audience": RUN, "includeEmail": true}));
    }

    #[test]
    fn imdsv1_asks_no_session_token() {
        let mut host = FakeHost::at(NOW);
        let (calls, token) = run(&mut host, &aws(false), healthy(NOW));
        assert!(token.is_ok());
        assert_eq!(steps(&calls)[0], Step::AwsRegion);
        assert!(calls
            .iter()
            .all(|(_, r)| header(r, aws::SESSION_TOKEN_HEADER).is_none()));
    }

    #[test]
    fn url_source_reads_json_or_text_with_its_headers() {
        let subject = jwt(json!({"iss": "https://idp", "exp": NOW + 600}));
        for (format, body) in [
            (
                json!({"type": "json", "subject_token_field_name": "access_token"}),
                json!({"access_token": subject, "expires_in": "600"}).to_string(),
            ),
            (json!({"type": "text"}), format!("{subject}\n")),
        ] {
            let mut host = FakeHost::at(NOW);
            let body = body.clone();
            let (calls, token) = run(&mut host, &url_source(format), |step, _| match step {
                Step::Subject => ok(&body),
                other => healthy(NOW)(
                    other,
                    &CalloutRequest {
                        upstream: String::new(),
                        headers: vec![],
                        body: None,
                        timeout_ms: 0,
                    },
                ),
            });
            assert!(token.is_ok());
            assert_eq!(
                steps(&calls),
                [Step::Subject, Step::Exchange, Step::IdToken]
            );
            let get = &calls[0].1;
            assert_eq!(get.upstream, "token.test:9000");
            assert_eq!(header(get, ":path"), Some("/token?audience=x"));
            assert_eq!(header(get, "metadata"), Some("True"));
            let fields = form(&calls[1].1);
            assert!(fields.contains(&("subject_token".to_string(), subject.clone())));
            assert!(fields.contains(&(
                "subject_token_type".to_string(),
                "urn:ietf:params:oauth:token-type:jwt".to_string()
            )));
        }
    }

    #[test]
    fn caches_the_sts_token_then_the_credentials_until_shortly_before_expiry() {
        let mut host = FakeHost::at(NOW);
        let account = aws(true);
        let (calls, _) = run(&mut host, &account, healthy(NOW));
        assert_eq!(calls.len(), 6);
        // The STS token is reused: only the ID token call.
        host.advance_secs(1000);
        let (calls, token) = run(&mut host, &account, healthy(NOW + 1000));
        assert!(token.is_ok());
        assert_eq!(steps(&calls), [Step::IdToken]);
        // Within 300 s of its expiry the STS token is exchanged again, with the cached
        // credentials: no metadata calls.
        host.advance_secs(2400);
        let (calls, _) = run(&mut host, &account, healthy(NOW + 3400));
        assert_eq!(steps(&calls), [Step::Exchange, Step::IdToken]);
        // Credentials (6 h) near their expiry: metadata again.
        host.advance_secs(5 * 3600 + 1700);
        let (calls, _) = run(&mut host, &account, healthy(NOW + 6 * 3600 - 100));
        assert_eq!(calls.len(), 6, "{:?}", steps(&calls));
    }

    #[test]
    fn url_subject_token_is_cached_by_its_own_exp() {
        let account =
            url_source(json!({"type": "json", "subject_token_field_name": "access_token"}));
        let mut host = FakeHost::at(NOW);
        let (calls, _) = run(&mut host, &account, healthy(NOW));
        assert_eq!(calls.len(), 3);
        // Its STS token (1 h) needs renewing, the subject token (exp now+3600) too: 3 calls.
        host.advance_secs(3400);
        let (calls, _) = run(&mut host, &account, healthy(NOW + 3400));
        assert_eq!(calls.len(), 3);
        // A subject token living a day is reused for the next exchange.
        let mut host = FakeHost::at(NOW);
        let long = jwt(json!({"exp": NOW + 86_400}));
        let mut answer = |step, r: &CalloutRequest| match step {
            Step::Subject => ok(json!({"access_token": long}).to_string()),
            other => healthy(NOW)(other, r),
        };
        assert!(run(&mut host, &account, &mut answer).1.is_ok());
        host.advance_secs(3400);
        let (calls, _) = run(&mut host, &account, &mut answer);
        assert_eq!(steps(&calls), [Step::Exchange, Step::IdToken]);
    }

    #[test]
    fn refused_subject_is_never_cached() {
        let account = aws(false);
        let mut host = FakeHost::at(NOW);
        let (_, result) = run(&mut host, &account, |step, r| match step {
            Step::Exchange => status(
                400,
                r#"{"error":"invalid_grant","error_description":"signature"}"#,
            ),
            other => healthy(NOW)(other, r),
        });
        let failure = result.unwrap_err();
        assert_eq!(failure.step, Step::Exchange);
        assert_eq!(
            failure.to_string(),
            "external_account step STS token exchange (token_url): HTTP status 400 (invalid_grant)"
        );
        let (calls, _) = run(&mut host, &account, healthy(NOW));
        assert_eq!(
            steps(&calls)[0],
            Step::AwsRegion,
            "credentials were refetched"
        );
    }

    #[test]
    fn cached_credentials_refused_by_sts_are_dropped_and_refetched_once() {
        let account = aws(false);
        let mut host = FakeHost::at(NOW);
        assert!(run(&mut host, &account, healthy(NOW)).1.is_ok());
        host.advance_secs(3400); // STS token due, credentials still cached
        let mut exchanges = 0;
        let (calls, token) = run(&mut host, &account, |step, r| match step {
            Step::Exchange => {
                exchanges += 1;
                if exchanges == 1 {
                    status(403, r#"{"error":"access_denied"}"#)
                } else {
                    ok(sts_answer(3600))
                }
            }
            other => healthy(NOW + 3400)(other, r),
        });
        assert!(token.is_ok(), "{token:?}");
        assert_eq!(
            steps(&calls),
            [
                Step::Exchange,
                Step::AwsRegion,
                Step::AwsRole,
                Step::AwsCredentials,
                Step::Exchange,
                Step::IdToken
            ]
        );
        assert!(host.logged("retrying with fresh ones"));
        // Refused twice: the mint fails, no third attempt.
        let mut host = FakeHost::at(NOW);
        assert!(run(&mut host, &account, healthy(NOW)).1.is_ok());
        host.advance_secs(3400);
        let (calls, token) = run(&mut host, &account, |step, r| match step {
            Step::Exchange => status(401, "{}"),
            other => healthy(NOW + 3400)(other, r),
        });
        assert_eq!(token.unwrap_err().step, Step::Exchange);
        assert_eq!(
            steps(&calls)
                .iter()
                .filter(|s| **s == Step::Exchange)
                .count(),
            2
        );
    }

    #[test]
    fn cached_sts_token_refused_by_iam_is_exchanged_again() {
        let account = aws(true);
        let mut host = FakeHost::at(NOW);
        assert!(run(&mut host, &account, healthy(NOW)).1.is_ok());
        let mut iam = 0;
        let (calls, token) = run(&mut host, &account, |step, r| match step {
            Step::IdToken => {
                iam += 1;
                if iam == 1 {
                    status(401, r#"{"error":{"code":401,"status":"UNAUTHENTICATED"}}"#)
                } else {
                    ok(iam_answer(NOW))
                }
            }
            other => healthy(NOW)(other, r),
        });
        assert!(token.is_ok());
        assert_eq!(
            steps(&calls),
            [Step::IdToken, Step::Exchange, Step::IdToken],
            "cached credentials reused"
        );
        // 403 (no permission on the service account) is not a stale token: no retry, token kept.
        let (calls, token) = run(&mut host, &account, |step, r| match step {
            Step::IdToken => status(
                403,
                r#"{"error":{"code":403,"status":"PERMISSION_DENIED"}}"#,
            ),
            other => healthy(NOW)(other, r),
        });
        let failure = token.unwrap_err();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            failure.to_string(),
            "external_account step IAM generateIdToken (service_account_impersonation_url): HTTP status 403 (PERMISSION_DENIED)"
        );
        let (calls, _) = run(&mut host, &account, healthy(NOW));
        assert_eq!(steps(&calls), [Step::IdToken]);
    }

    #[test]
    fn every_step_failure_names_the_step_and_never_a_secret() {
        let broken: [(&str, CalloutResponse); 6] = [
            ("timeout", failed("timeout")),
            ("broken connection", failed("broken connection")),
            ("HTTP status 500", status(500, "oops")),
            (
                "HTTP status 404",
                status(404, format!("{{\"error\":\"{SESSION}\"}}")),
            ),
            ("", ok("<html>\u{0}garbage")),
            ("", ok("")),
        ];
        for account in [
            aws(true),
            url_source(json!({"type": "json", "subject_token_field_name": "access_token"})),
        ] {
            let all_steps = match account.source {
                SubjectSource::Aws(_) => vec![
                    Step::AwsSession,
                    Step::AwsRegion,
                    Step::AwsRole,
                    Step::AwsCredentials,
                    Step::Exchange,
                    Step::IdToken,
                ],
                SubjectSource::Url(_) => vec![Step::Subject, Step::Exchange, Step::IdToken],
            };
            for failing in all_steps {
                for (needle, response) in &broken {
                    let mut host = FakeHost::at(NOW);
                    let (_, result) = run(&mut host, &account, |step, r| {
                        if step == failing {
                            response.clone()
                        } else {
                            healthy(NOW)(step, r)
                        }
                    });
                    let failure = result.expect_err("a broken step must fail the mint");
                    assert_eq!(failure.step, failing, "{needle}");
                    let text = failure.to_string();
                    assert!(
                        text.contains(failing.describe()) && text.contains(needle),
                        "{text}"
                    );
                    for secret in [SESSION, SECRET, STS_TOKEN, "session-token-CCCC"] {
                        assert!(!text.contains(secret), "{text}");
                    }
                    assert!(host.shared.keys().all(|k| !k.contains("/google/")));
                }
            }
        }
    }

    #[test]
    fn imdsv1_refused_by_an_imdsv2_instance_says_what_to_add() {
        let mut host = FakeHost::at(NOW);
        let (_, result) = run(&mut host, &aws(false), |step, r| match step {
            Step::AwsRegion => status(401, ""),
            other => healthy(NOW)(other, r),
        });
        let text = result.unwrap_err().to_string();
        assert!(
            text.contains("HTTP status 401") && text.contains("imdsv2_session_token_url"),
            "{text}"
        );
    }

    #[test]
    fn refuses_unusable_answers() {
        let account = aws(false);
        let cases: Vec<(Step, CalloutResponse)> = vec![
            (Step::AwsCredentials, ok(creds(NOW - 1))),
            (
                Step::AwsCredentials,
                ok(
                    r#"{"Code":"Failure","AccessKeyId":"A","SecretAccessKey":"s","Expiration":"2030-01-01T00:00:00Z"}"#,
                ),
            ),
            (Step::AwsRegion, ok("not a zone!")),
            (Step::AwsRole, ok("")),
            (
                Step::Exchange,
                ok(r#"{"access_token":"a b","expires_in":3600}"#),
            ),
            (
                Step::Exchange,
                ok(r#"{"access_token":"x","token_type":"MAC"}"#),
            ),
            (Step::IdToken, ok(r#"{"token":"not.a.jwt"}"#)),
            (
                Step::IdToken,
                ok(json!({"token": jwt(json!({"exp": NOW + 5}))}).to_string()),
            ),
            (Step::IdToken, ok(vec![b'{'; MAX_ANSWER_BYTES + 1])),
        ];
        for (failing, response) in cases {
            let mut host = FakeHost::at(NOW);
            let (_, result) = run(&mut host, &account, |step, r| {
                if step == failing {
                    response.clone()
                } else {
                    healthy(NOW)(step, r)
                }
            });
            assert_eq!(result.unwrap_err().step, failing, "{response:?}");
        }
    }

    #[test]
    fn cache_keys_depend_on_configuration_only() {
        let a = FederationSharedDataKeys::new("ns", &aws(true));
        assert_eq!(a, FederationSharedDataKeys::new("ns", &aws(true)));
        assert_ne!(
            a.sts,
            FederationSharedDataKeys::new("ns", &url_source(json!(null))).sts
        );
        assert!(a.sts.starts_with("ns/wif-sts/") && a.sts.len() < 64);
        assert_ne!(
            a.subject,
            FederationSharedDataKeys::new("other", &aws(true)).subject
        );
        let _: CalloutToken = 0;
    }
}
