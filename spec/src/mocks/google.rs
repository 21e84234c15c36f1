//! `mock-google`: the GCE metadata identity endpoint, Google's OAuth token endpoint for the
//! service-account JWT-bearer flow, Google's JWKS, Workload Identity Federation's STS token
//! exchange and IAM Credentials `generateIdToken`, controls and counters (see spec/README.md).

use super::common::{mint_token, now, obj, Counters};
use super::server::{self, common_control, generic_fault, Faults, Outcome, Reply, Req};
use crate::jose::{self, Alg, KeyKind, SigningKey};
use anyhow::{Context, Result};
use clap::Parser;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const TAG: &str = "mock-google";
/// Google's ID token issuer.
pub const ISSUER: &str = "https://accounts.google.com";
/// The metadata server's identity path.
pub const IDENTITY_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/identity";
/// The JWT-bearer grant type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// STS's token endpoint path (`https://sts.googleapis.com/v1/token`).
pub const STS_PATH: &str = "/v1/token";
/// IAM Credentials' service-account paths (`…/serviceAccounts/<email>:generateIdToken`).
pub const IAM_PREFIX: &str = "/v1/projects/-/serviceAccounts/";
/// The workload identity pool provider STS accepts by default.
pub const DEFAULT_POOL: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/spec-pool/providers/spec-provider";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const AWS_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

/// Command line of `mock-google`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "mock-google",
    about = "Mock GCE metadata server + Google OAuth token endpoint + Google JWKS (see spec/README.md)"
)]
pub struct Args {
    /// Main listener (metadata identity, /token, /oauth2/v3/certs), e.g. 127.0.0.1:0.
    #[arg(long)]
    pub listen: String,
    /// Control listener (`/__control/...`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control_listen: String,
    /// Lifetime in seconds of the ID tokens it issues.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: i64,
    /// Write the service-account key (Google JSON key file) here.
    #[arg(long)]
    pub sa_key_out: Option<PathBuf>,
    /// The token URL assertions must name as `aud` (and the key file's `token_uri`). Default:
    /// http://<listen address>/token. Compared as a string, exactly as configured.
    #[arg(long)]
    pub token_url: Option<String>,
    /// The service account's `client_email`.
    #[arg(
        long,
        default_value = "cloudrun-invoker@spec-project.iam.gserviceaccount.com"
    )]
    pub client_email: String,
    /// The key file's `project_id`.
    #[arg(long, default_value = "spec-project")]
    pub project_id: String,
    /// The workload identity pool provider STS accepts as `audience` (and AWS subject tokens
    /// must carry as `x-goog-cloud-target-resource`).
    #[arg(long, default_value = DEFAULT_POOL)]
    pub sts_audience: String,
    /// JWKS of the issuer whose JWTs STS accepts as subject tokens (e.g. mock-idp's `/jwks`).
    #[arg(long)]
    pub sts_jwks_url: Option<String>,
    /// That issuer (`iss` of subject JWTs).
    #[arg(long)]
    pub sts_issuer: Option<String>,
    /// The `aud` subject JWTs must carry. Default: the pool provider as an https URL
    /// (Google's default allowed audience).
    #[arg(long)]
    pub sts_jwt_audience: Option<String>,
    /// Lifetime of the STS access tokens (s).
    #[arg(long, default_value_t = 3600)]
    pub sts_token_ttl: i64,
    /// The AWS access key id AWS subject tokens must be signed with (mock-aws's).
    #[arg(long, default_value = super::aws::DEFAULT_ACCESS_KEY_ID)]
    pub aws_access_key_id: String,
    #[arg(long, default_value = super::aws::DEFAULT_SECRET_ACCESS_KEY)]
    pub aws_secret_access_key: String,
    #[arg(long, default_value = super::aws::DEFAULT_SESSION_TOKEN)]
    pub aws_session_token: String,
    /// The region AWS subject tokens must be signed for.
    #[arg(long, default_value = super::aws::DEFAULT_REGION)]
    pub aws_region: String,
}

struct Google {
    args: Args,
    token_url: String,
    token_path: String,
    client_id: String,
    signing: Mutex<Vec<(SigningKey, bool)>>,
    attackers: Mutex<Vec<SigningKey>>,
    sa_key: SigningKey,
    sa_json: Value,
    ttl: AtomicI64,
    /// STS access tokens issued: token → (expiry, principal).
    sts_tokens: Mutex<HashMap<String, (i64, String)>>,
    faults: Arc<Faults>,
    counters: Counters,
}

/// Google's error shape for IAM APIs.
fn google_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"code": status, "message": message, "status": code}}),
    )
}

/// Percent-decoding (no `+` rule: the AWS subject token is `quote()`d, not form-encoded).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `20150830T123600Z` → seconds since the epoch.
fn amz_date_secs(date: &str) -> Option<i64> {
    let field = |r: std::ops::Range<usize>| date.get(r).and_then(|s| s.parse::<i64>().ok());
    if date.len() != 16 || date.get(8..9) != Some("T") || !date.ends_with('Z') {
        return None;
    }
    let (y, m, d) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (hh, mm, ss) = (field(9..11)?, field(11..13)?, field(13..15)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if openssl::rand::rand_bytes(&mut buf).is_err() {
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_digits(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let _ = openssl::rand::rand_bytes(&mut buf);
    buf.iter()
        .enumerate()
        .map(|(i, b)| {
            if i == 0 {
                char::from(b'1' + b % 9)
            } else {
                char::from(b'0' + b % 10)
            }
        })
        .collect()
}

impl Google {
    fn signing(&self) -> Result<MutexGuard<'_, Vec<(SigningKey, bool)>>, Reply> {
        self.signing
            .lock()
            .map_err(|_| Reply::error(500, "server_error", "key store poisoned"))
    }

    fn current_key(&self) -> Result<SigningKey, Reply> {
        let keys = self.signing()?;
        keys.iter()
            .find(|(_, published)| *published)
            .or(keys.first())
            .map(|(k, _)| k.clone())
            .ok_or_else(|| Reply::error(500, "server_error", "no signing key"))
    }

    fn certs(&self) -> Result<Value, Reply> {
        let keys = self.signing()?;
        let list: Vec<Value> = keys
            .iter()
            .filter(|(_, p)| *p)
            .map(|(k, _)| k.public_jwk_for(Some(Alg::RS256)))
            .collect();
        Ok(json!({ "keys": list }))
    }

    /// Signs an ID token with the current Google key.
    fn id_token(&self, claims: Map<String, Value>) -> Result<String, Reply> {
        let key = self.current_key()?;
        let header = obj(vec![
            ("alg", json!("RS256")),
            ("kid", json!(key.kid)),
            ("typ", json!("JWT")),
        ]);
        mint_token(&key, "RS256", header, claims, &json!({}))
            .map_err(|e| Reply::error(500, "server_error", &e))
    }

    fn identity(&self, req: &Req) -> Reply {
        let forbidden = |why: &str| {
            Reply::bytes(
                403,
                "text/html; charset=UTF-8",
                format!("<html><body>403 Forbidden: {why}</body></html>"),
            )
        };
        if req.method != "GET" {
            return Reply::bytes(405, "text/html; charset=UTF-8", "Method not allowed");
        }
        if req.headers.contains_key("x-forwarded-for") {
            return forbidden("Request had an X-Forwarded-For header and was rejected");
        }
        if req.header("metadata-flavor") != Some("Google") {
            return forbidden("Missing Metadata-Flavor:Google header");
        }
        let audience = req.query_param("audience").unwrap_or_default();
        if audience.is_empty() {
            return Reply::bytes(
                400,
                "text/html; charset=UTF-8",
                "non-empty audience parameter required",
            );
        }
        let iat = now();
        let mut claims = obj(vec![
            ("iss", json!(ISSUER)),
            ("aud", json!(audience)),
            ("azp", json!(self.client_id)),
            ("sub", json!(self.client_id)),
            ("iat", json!(iat)),
            ("exp", json!(iat + self.ttl.load(Ordering::Relaxed))),
        ]);
        if req.query_param("format").as_deref() == Some("full") {
            claims.insert("email".into(), json!(self.args.client_email));
            claims.insert("email_verified".into(), json!(true));
        }
        match self.id_token(claims) {
            Ok(token) => Reply::bytes(200, "text/html; charset=utf-8", token)
                .with_header("metadata-flavor", "Google"),
            Err(r) => r,
        }
    }

    /// The JWT-bearer flow: checks the assertion, answers `{"id_token"}`.
    fn token(&self, req: &Req) -> Reply {
        let grant = |why: &str| Reply::error(400, "invalid_grant", why);
        if req.method != "POST" {
            return Reply::error(405, "invalid_request", "the token endpoint takes POST");
        }
        let form = req.form();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if field("grant_type") != Some(JWT_BEARER) {
            return Reply::error(400, "unsupported_grant_type", "Invalid grant_type");
        }
        let Some(assertion) = field("assertion") else {
            return Reply::error(
                400,
                "invalid_request",
                "Missing required parameter: assertion",
            );
        };
        let public = match self.sa_key.public() {
            Ok(p) => p,
            Err(e) => return Reply::error(500, "server_error", &e.to_string()),
        };
        let decoded = match jose::verify_with_key(assertion, &public, Alg::RS256) {
            Ok(d) => d,
            Err(e) => return grant(&format!("Invalid JWT Signature. ({e})")),
        };
        if decoded.kid().is_some_and(|kid| kid != self.sa_key.kid) {
            return grant("Invalid JWT Signature. (kid is not this key's private_key_id)");
        }
        let Ok(claims) = decoded.claims() else {
            return grant("Invalid JWT: claims are not a JSON object");
        };
        let claim_str = |name: &str| claims.get(name).and_then(Value::as_str);
        if claim_str("iss") != Some(self.args.client_email.as_str()) {
            return grant("Invalid email or User ID");
        }
        if claim_str("aud") != Some(self.token_url.as_str()) {
            return grant("Invalid JWT: Failed audience check.");
        }
        let (Some(iat), Some(exp)) = (
            claims.get("iat").and_then(Value::as_i64),
            claims.get("exp").and_then(Value::as_i64),
        ) else {
            return grant("Invalid JWT: iat and exp must be integers");
        };
        let t = now();
        if exp - iat > 3600 || exp <= iat || exp <= t || iat > t + 60 {
            return grant(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            );
        }
        let Some(audience) = claim_str("target_audience").filter(|a| !a.is_empty()) else {
            return Reply::error(
                400,
                "invalid_request",
                "this mock only issues ID tokens: target_audience is required",
            );
        };
        let id_claims = obj(vec![
            ("iss", json!(ISSUER)),
            ("aud", json!(audience)),
            ("azp", json!(self.args.client_email)),
            ("sub", json!(self.client_id)),
            ("email", json!(self.args.client_email)),
            ("email_verified", json!(true)),
            ("iat", json!(t)),
            ("exp", json!(t + self.ttl.load(Ordering::Relaxed))),
        ]);
        match self.id_token(id_claims) {
            Ok(token) => Reply::json(200, &json!({ "id_token": token })),
            Err(r) => r,
        }
    }

    /// RFC 8693 token exchange as Google's STS does it for workload identity pools: the subject
    /// (a JWT of `--sts-issuer`, or an AWS `GetCallerIdentity` request signed with mock-aws's
    /// credentials) for a short-lived access token.
    async fn sts(&self, req: &Req) -> Reply {
        if req.method != "POST" {
            return Reply::error(405, "invalid_request", "the token endpoint takes POST");
        }
        let form = req.form();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if field("grant_type") != Some(TOKEN_EXCHANGE) {
            return Reply::error(400, "unsupported_grant_type", "Invalid grant_type");
        }
        if field("audience") != Some(self.args.sts_audience.as_str()) {
            return Reply::error(
                400,
                "invalid_target",
                "The target service indicated by the \"audience\" parameters is invalid.",
            );
        }
        if field("requested_token_type") != Some(ACCESS_TOKEN_TYPE) {
            return Reply::error(400, "invalid_request", "Invalid requested_token_type");
        }
        if !field("scope").is_some_and(|s| {
            s.split(' ')
                .any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
        }) {
            return Reply::error(400, "invalid_scope", "cloud-platform scope required");
        }
        let Some(subject) = field("subject_token") else {
            return Reply::error(400, "invalid_request", "subject_token is required");
        };
        let principal = match field("subject_token_type") {
            Some(AWS_TOKEN_TYPE) => self.check_aws_subject(subject),
            Some(
                "urn:ietf:params:oauth:token-type:jwt"
                | "urn:ietf:params:oauth:token-type:id_token",
            ) => self.check_jwt_subject(subject).await,
            _ => Err("unsupported subject_token_type".to_string()),
        };
        let principal = match principal {
            Ok(p) => p,
            Err(why) => return Reply::error(400, "invalid_grant", &why),
        };
        let token = format!("ya29.d.mock-sts-{}", random_hex(24));
        let ttl = self.args.sts_token_ttl;
        if let Ok(mut tokens) = self.sts_tokens.lock() {
            tokens.retain(|_, (exp, _)| *exp > now());
            tokens.insert(token.clone(), (now() + ttl, principal));
        }
        Reply::json(
            200,
            &json!({"access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer", "expires_in": ttl}),
        )
    }

    async fn check_jwt_subject(&self, token: &str) -> Result<String, String> {
        let url = self
            .args
            .sts_jwks_url
            .as_deref()
            .ok_or("no OIDC provider configured (--sts-jwks-url)")?;
        let (status, body) = super::client::get(url, JWKS_TIMEOUT)
            .await
            .map_err(|e| format!("provider keys unavailable: {e}"))?;
        if status != 200 {
            return Err(format!("provider keys unavailable: {status}"));
        }
        let jwks: Value =
            serde_json::from_slice(&body).map_err(|_| "provider keys are not JSON")?;
        let decoded = jose::verify_compact(token, &jwks, &[Alg::RS256, Alg::ES256])
            .map_err(|e| format!("Invalid JWT signature ({e})"))?;
        let claims = decoded.claims().map_err(|e| e.to_string())?;
        if claims.get("iss").and_then(Value::as_str) != self.args.sts_issuer.as_deref() {
            return Err("The issuer in ID Token does not match the expected ones".into());
        }
        let want = self
            .args
            .sts_jwt_audience
            .clone()
            .unwrap_or_else(|| format!("https:{}", self.args.sts_audience));
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == want,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err("The audience in ID Token does not match the expected audience".into());
        }
        if claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_none_or(|exp| exp <= now())
        {
            return Err("ID Token has expired".into());
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(format!("principal://pool/subject/{sub}"))
    }

    /// What AWS STS would say about the replayed `GetCallerIdentity` request.
    fn check_aws_subject(&self, token: &str) -> Result<String, String> {
        let json = percent_decode(token).ok_or("subject token is not URL-encoded")?;
        let signed: Value = serde_json::from_str(&json)
            .map_err(|_| "subject token is not the serialised request")?;
        let method = signed["method"].as_str().unwrap_or_default();
        let url = signed["url"].as_str().unwrap_or_default();
        let expected_url = format!(
            "https://sts.{}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            self.args.aws_region
        );
        if method != "POST" || url != expected_url {
            return Err(format!(
                "the AWS request must be POST {expected_url} (got {method} {url})"
            ));
        }
        let headers: Vec<(String, String)> = signed["headers"]
            .as_array()
            .ok_or("no headers")?
            .iter()
            .map(|h| {
                (
                    h["key"].as_str().unwrap_or_default().to_string(),
                    h["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if header("x-goog-cloud-target-resource") != Some(self.args.sts_audience.as_str()) {
            return Err("x-goog-cloud-target-resource is not this provider".into());
        }
        if header("x-amz-security-token") != Some(self.args.aws_session_token.as_str()) {
            return Err(
                "InvalidClientTokenId: the security token included in the request is invalid"
                    .into(),
            );
        }
        let date = header("x-amz-date")
            .and_then(amz_date_secs)
            .ok_or("no valid x-amz-date")?;
        if (date - now()).abs() > 15 * 60 {
            return Err("Signature expired".into());
        }
        super::sigv4::verify(
            method,
            url,
            &headers,
            &super::sigv4::Expected {
                access_key_id: &self.args.aws_access_key_id,
                secret_access_key: &self.args.aws_secret_access_key,
                region: &self.args.aws_region,
                service: "sts",
                must_sign: &[
                    "host",
                    "x-amz-date",
                    "x-amz-security-token",
                    "x-goog-cloud-target-resource",
                ],
            },
        )?;
        Ok(format!(
            "arn:aws:sts::123456789012:assumed-role/{}",
            "kong-gateway-role"
        ))
    }

    /// IAM Credentials `generateIdToken`: an STS token of this mock for the service account.
    fn iam(&self, req: &Req) -> Reply {
        if req.method != "POST" {
            return google_error(405, "METHOD_NOT_ALLOWED", "generateIdToken takes POST");
        }
        let Some(account) = req
            .path
            .strip_prefix(IAM_PREFIX)
            .and_then(|rest| rest.strip_suffix(":generateIdToken"))
        else {
            return google_error(404, "NOT_FOUND", "no such method");
        };
        let bearer = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "));
        let known = bearer.and_then(|b| {
            self.sts_tokens
                .lock()
                .ok()
                .and_then(|t| t.get(b).filter(|(exp, _)| *exp > now()).cloned())
        });
        if known.is_none() {
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
        if account != self.args.client_email {
            return google_error(403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist).");
        }
        let body = req.json().unwrap_or_default();
        let Some(audience) = body
            .get("audience")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            return google_error(400, "INVALID_ARGUMENT", "audience is required");
        };
        let t = now();
        let mut claims = obj(vec![
            ("iss", json!(ISSUER)),
            ("aud", json!(audience)),
            ("azp", json!(self.client_id)),
            ("sub", json!(self.client_id)),
            ("iat", json!(t)),
            ("exp", json!(t + self.ttl.load(Ordering::Relaxed))),
        ]);
        if body.get("includeEmail").and_then(Value::as_bool) == Some(true) {
            claims.insert("email".into(), json!(self.args.client_email));
            claims.insert("email_verified".into(), json!(true));
        }
        match self.id_token(claims) {
            Ok(token) => Reply::json(200, &json!({ "token": token })),
            Err(r) => r,
        }
    }

    /// Forgets every STS token issued (IAM then answers 401 to them).
    fn revoke_sts(&self) -> Reply {
        let n = self.sts_tokens.lock().map(|mut t| {
            let n = t.len();
            t.clear();
            n
        });
        Reply::json(200, &json!({ "revoked": n.unwrap_or(0) }))
    }

    fn mint(&self, body: &Value) -> Reply {
        let key = match self.current_key() {
            Ok(k) => k,
            Err(r) => return r,
        };
        let signer = if body
            .get("attacker")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            match self.attacker_for(&key) {
                Ok(k) => k,
                Err(r) => return r,
            }
        } else {
            key
        };
        let alg = body.get("alg").and_then(Value::as_str).unwrap_or("RS256");
        let iat = now();
        let header = obj(vec![
            ("alg", json!(alg)),
            ("kid", json!(signer.kid)),
            ("typ", json!("JWT")),
        ]);
        let claims = obj(vec![
            ("iss", json!(ISSUER)),
            ("aud", json!("")),
            ("azp", json!(self.args.client_email)),
            ("sub", json!(self.client_id)),
            ("email", json!(self.args.client_email)),
            ("email_verified", json!(true)),
            ("iat", json!(iat)),
            ("exp", json!(iat + self.ttl.load(Ordering::Relaxed))),
        ]);
        match mint_token(&signer, alg, header, claims, body) {
            Ok(token) => Reply::json(200, &json!({"token": token, "kid": signer.kid})),
            Err(e) => Reply::error(400, "bad_request", &e),
        }
    }

    fn attacker_for(&self, key: &SigningKey) -> Result<SigningKey, Reply> {
        let mut attackers = self
            .attackers
            .lock()
            .map_err(|_| Reply::error(500, "server_error", "poisoned"))?;
        if let Some(k) = attackers.iter().find(|k| k.kid == key.kid) {
            return Ok(k.clone());
        }
        let k = SigningKey::generate(KeyKind::Rsa(2048), &key.kid)
            .map_err(|e| Reply::error(500, "server_error", &e.to_string()))?;
        attackers.push(k.clone());
        Ok(k)
    }

    fn rotate(&self, body: &Value) -> Reply {
        let retire = body
            .get("retire_old")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let key = match SigningKey::generate(KeyKind::Rsa(2048), &random_hex(20)) {
            Ok(k) => k,
            Err(e) => return Reply::error(500, "server_error", &e.to_string()),
        };
        let kid = key.kid.clone();
        let mut keys = match self.signing() {
            Ok(k) => k,
            Err(r) => return r,
        };
        if retire {
            keys.iter_mut().for_each(|(_, p)| *p = false);
        }
        keys.insert(0, (key, true));
        let published: Vec<&str> = keys
            .iter()
            .filter(|(_, p)| *p)
            .map(|(k, _)| k.kid.as_str())
            .collect();
        Reply::json(200, &json!({"kids": [kid], "published": published}))
    }
}

async fn handle_main(g: Arc<Google>, req: Req) -> Outcome {
    let path = req.path.as_str();
    let endpoint = if path == IDENTITY_PATH
        || (path.starts_with("/computeMetadata/v1/instance/service-accounts/")
            && path.ends_with("/identity"))
    {
        "identity"
    } else if path == "/token" || path == g.token_path {
        "token"
    } else if path == "/oauth2/v3/certs" {
        "certs"
    } else if path == STS_PATH {
        "sts"
    } else if path.starts_with(IAM_PREFIX) {
        "iam"
    } else {
        return Reply::error(404, "not_found", &format!("no endpoint at {path}")).into();
    };
    g.counters.inc(endpoint);
    let fault = g.faults.active(endpoint);
    eprintln!(
        "[{TAG}] {} {path} ({endpoint}, fault {fault:?})",
        req.method
    );
    let f = fault.as_deref().unwrap_or("none");
    match endpoint {
        "identity" => generic_fault(f, || g.identity(&req)),
        "token" => generic_fault(f, || g.token(&req)),
        "sts" if f == "denied" => Reply::error(
            400,
            "invalid_grant",
            "fault denied: the subject is not allowed",
        )
        .into(),
        "sts" if matches!(f, "none" | "truncated" | "huge") => {
            let reply = g.sts(&req).await;
            generic_fault(f, || reply)
        }
        "sts" => generic_fault(f, || Reply::error(500, "server_error", "unreachable")),
        "iam" if f == "denied" => google_error(
            403,
            "PERMISSION_DENIED",
            "fault denied: Permission 'iam.serviceAccounts.getOpenIdToken' denied",
        )
        .into(),
        "iam" => generic_fault(f, || g.iam(&req)),
        _ => match g.certs() {
            Ok(jwks) => generic_fault(f, || {
                Reply::json(200, &jwks).with_header(
                    "cache-control",
                    "public, max-age=21600, must-revalidate, no-transform",
                )
            }),
            Err(r) => r.into(),
        },
    }
}

async fn handle_control(g: Arc<Google>, req: Req) -> Outcome {
    if let Some(reply) = common_control(&req, &g.faults, &g.counters).await {
        return reply.into();
    }
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return Reply::error(400, "bad_json", &e.to_string()).into(),
    };
    let reply = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/__control/sa-key") => Reply::json(200, &g.sa_json),
        ("POST", "/__control/token-ttl") => match body.get("seconds").and_then(Value::as_i64) {
            Some(s) => {
                g.ttl.store(s, Ordering::Relaxed);
                Reply::json(200, &json!({ "seconds": s }))
            }
            None => Reply::error(400, "bad_request", "body needs integer \"seconds\""),
        },
        ("POST", "/__control/mint") => g.mint(&body),
        ("POST", "/__control/rotate") => g.rotate(&body),
        ("POST", "/__control/revoke-sts") => g.revoke_sts(),
        ("GET", "/__control/info") => Reply::json(
            200,
            &json!({"token_url": g.token_url, "client_email": g.args.client_email, "client_id": g.client_id,
                    "identity_path": IDENTITY_PATH, "certs_path": "/oauth2/v3/certs", "issuer": ISSUER,
                    "sts_path": STS_PATH, "sts_audience": g.args.sts_audience,
                    "sts_jwt_audience": g.args.sts_jwt_audience.clone().unwrap_or_else(|| format!("https:{}", g.args.sts_audience)),
                    "iam_path": format!("{IAM_PREFIX}{}:generateIdToken", g.args.client_email)}),
        ),
        _ => Reply::no_control(&req),
    };
    reply.into()
}

fn sa_key_json(args: &Args, key: &SigningKey, client_id: &str, token_url: &str) -> Result<Value> {
    Ok(json!({
        "type": "service_account",
        "project_id": args.project_id,
        "private_key_id": key.kid,
        "private_key": key.pkcs8_pem()?,
        "client_email": args.client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_url,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", args.client_email.replace('@', "%40")),
        "universe_domain": "googleapis.com",
    }))
}

/// Runs `mock-google` until killed.
pub async fn serve(args: Args) -> Result<()> {
    let main = server::bind(&args.listen).await?;
    let control = server::bind(&args.control_listen).await?;
    let http_addr = main.local_addr()?;
    let token_url = args
        .token_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}/token"));
    let token_path = crate::testkit::http::parse_url(&token_url)
        .map(|u| u.target.split('?').next().unwrap_or("/token").to_string())
        .unwrap_or_else(|_| "/token".to_string());
    let client_id = random_digits(21);
    let sa_key = SigningKey::generate(KeyKind::Rsa(2048), &random_hex(20))?;
    let sa_json = sa_key_json(&args, &sa_key, &client_id, &token_url)?;
    if let Some(path) = &args.sa_key_out {
        let text = serde_json::to_string_pretty(&sa_json)?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    let g = Arc::new(Google {
        token_url,
        token_path,
        client_id,
        signing: Mutex::new(vec![(
            SigningKey::generate(KeyKind::Rsa(2048), &random_hex(20))?,
            true,
        )]),
        attackers: Mutex::new(Vec::new()),
        sa_key,
        sa_json,
        ttl: AtomicI64::new(args.token_ttl),
        sts_tokens: Mutex::new(HashMap::new()),
        faults: Faults::new(&["denied"], &["identity", "token", "certs", "sts", "iam"]),
        counters: Counters::new(&["identity", "token", "certs", "sts", "iam"]),
        args,
    });
    let banner = Some(format!("token url {}", g.token_url));
    let faults = Arc::clone(&g.faults);
    server::serve_until_ctrl_c(
        TAG,
        (main, control),
        g,
        faults,
        (handle_main, handle_control),
        banner,
    )
    .await
}

/// `main` of the binary.
pub fn main() -> std::process::ExitCode {
    server::run(TAG, serve(Args::parse()))
}
