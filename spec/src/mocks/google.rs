//! `mock-google`: the GCE metadata identity endpoint, Google's OAuth token endpoint for the
//! service-account JWT-bearer flow, Google's JWKS, controls and counters (see spec/README.md).

use super::common::{mint_token, now, obj, Counters};
use super::server::{self, common_control, generic_fault, Faults, Outcome, Reply, Req};
use crate::jose::{self, Alg, KeyKind, SigningKey};
use anyhow::{Context, Result};
use clap::Parser;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

const TAG: &str = "mock-google";
/// Google's ID token issuer.
pub const ISSUER: &str = "https://accounts.google.com";
/// The metadata server's identity path.
pub const IDENTITY_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/identity";
/// The JWT-bearer grant type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

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
    faults: Arc<Faults>,
    counters: Counters,
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
        ("GET", "/__control/info") => Reply::json(
            200,
            &json!({"token_url": g.token_url, "client_email": g.args.client_email, "client_id": g.client_id,
                    "identity_path": IDENTITY_PATH, "certs_path": "/oauth2/v3/certs", "issuer": ISSUER}),
        ),
        _ => Reply::error(
            404,
            "not_found",
            &format!("no control {} {}", req.method, req.path),
        ),
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
        faults: Faults::new(&[], &["identity", "token", "certs"]),
        counters: Counters::new(&["identity", "token", "certs"]),
        args,
    });
    let faults = Arc::clone(&g.faults);
    let http = server::spawn_main(
        main,
        faults,
        server::handler(Arc::clone(&g), handle_main),
        TAG,
    )?;
    let control = server::spawn_control(
        control,
        server::handler(Arc::clone(&g), handle_control),
        TAG,
    )?;
    eprintln!("[{TAG}] token url {}", g.token_url);
    server::announce(http, control);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    Ok(())
}

/// `main` of the binary.
pub fn main() -> std::process::ExitCode {
    server::run(TAG, serve(Args::parse()))
}
