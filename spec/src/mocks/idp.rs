//! `mock-idp`: an OpenID Provider with discovery, JWKS, a client_credentials token endpoint, a
//! test-only minting endpoint, key rotation/removal, faults and counters (see spec/README.md).

use super::common::{key_fits, mint_token, now, obj, Counters};
use super::server::{self, common_control, generic_fault, Faults, Outcome, Reply, Req};
use crate::jose::{Alg, KeyKind, SigningKey};
use anyhow::Result;
use base64::Engine;
use clap::Parser;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

const TAG: &str = "mock-idp";
/// Number of keys the `many_keys` fault serves.
pub const MANY_KEYS: usize = 10_000;
/// `jwks_uri`s the `unparseable_jwks_uri` fault serves in turn: targets nginx's `ngx_parse_url`
/// refuses (the engine traps on them) or reads as a local Unix socket.
pub const UNPARSEABLE_JWKS_URIS: [&str; 5] = [
    "http://[.]/keys",
    "http://[:]/keys",
    "http://[1.2.3.4]/keys",
    "http://[12345::]/keys",
    "http://unix:80/keys",
];

/// Command line of `mock-idp`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "mock-idp",
    about = "Mock OpenID Provider for the cloudrun_oidc test world (see spec/README.md)"
)]
pub struct Args {
    /// Main listener (discovery, JWKS, token), e.g. 127.0.0.1:0.
    #[arg(long)]
    pub listen: String,
    /// Control listener (`/__control/...`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control_listen: String,
    /// Issuer URL; its path prefixes every endpoint. Default: http://<listen address>.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Client id the token endpoint requires (any client is accepted when absent).
    #[arg(long, requires = "client_secret")]
    pub client_id: Option<String>,
    /// Client secret the token endpoint requires.
    #[arg(long, requires = "client_id")]
    pub client_secret: Option<String>,
    /// `aud` of access tokens from the token endpoint.
    #[arg(long, default_value = "account")]
    pub token_audience: String,
    /// Comma-separated `realm_access.roles` of access tokens from the token endpoint.
    #[arg(long, default_value = "user")]
    pub roles: String,
    /// Lifetime in seconds of access tokens from the token endpoint.
    #[arg(long, default_value_t = 300)]
    pub token_ttl: i64,
}

struct Entry {
    key: SigningKey,
    published: bool,
}

struct Keys {
    entries: Vec<Entry>,
    attackers: HashMap<String, SigningKey>,
    generation: u32,
}

struct Idp {
    args: Args,
    issuer: String,
    base_path: String,
    keys: Mutex<Keys>,
    filler: Value,
    faults: Arc<Faults>,
    counters: Counters,
}

fn generate_set(generation: u32) -> Result<Vec<SigningKey>> {
    Ok(vec![
        SigningKey::generate(KeyKind::Rsa(2048), &format!("rsa-{generation}"))?,
        SigningKey::generate(KeyKind::P256, &format!("ec256-{generation}"))?,
        SigningKey::generate(KeyKind::P384, &format!("ec384-{generation}"))?,
        SigningKey::generate(KeyKind::Ed25519, &format!("ed25519-{generation}"))?,
    ])
}

/// The public JWK the IdP publishes: RSA keys carry no `alg` (one key serves RS* and PS*).
fn published_jwk(key: &SigningKey) -> Value {
    match key.kind() {
        KeyKind::Rsa(_) => key.public_jwk_for(None),
        _ => key.public_jwk(),
    }
}

/// The path part of an issuer URL, without a trailing `/`.
fn issuer_path(issuer: &str) -> String {
    let rest = issuer.split_once("://").map_or(issuer, |(_, r)| r);
    rest.find('/')
        .map_or("", |i| rest.get(i..).unwrap_or_default())
        .trim_end_matches('/')
        .to_string()
}

impl Idp {
    fn keys(&self) -> Result<MutexGuard<'_, Keys>, Reply> {
        self.keys
            .lock()
            .map_err(|_| Reply::error(500, "server_error", "key store poisoned"))
    }

    fn base_url(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }

    /// The discovery document; `elsewhere` names another issuer and host, `moved` names the
    /// moved JWKS (`<issuer>/jwks-moved`, fault `jwks_moved`).
    fn discovery(&self, elsewhere: bool, moved: bool) -> Value {
        let (issuer, base) = if elsewhere {
            (
                "http://elsewhere.invalid/realms/other".to_string(),
                "http://elsewhere.invalid/realms/other",
            )
        } else {
            (self.issuer.clone(), self.base_url())
        };
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{base}/{}", if moved { "jwks-moved" } else { "jwks" }),
            "token_endpoint": format!("{base}/token"),
            "authorization_endpoint": format!("{base}/auth"),
            "response_types_supported": ["code", "token", "id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": Alg::ALL.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        })
    }

    fn jwks(&self, fault: Option<&str>) -> Result<Value, Reply> {
        let keys = self.keys()?;
        let published: Vec<&SigningKey> = keys
            .entries
            .iter()
            .filter(|e| e.published)
            .map(|e| &e.key)
            .collect();
        let list: Vec<Value> = match fault {
            Some("many_keys") => {
                let mut list: Vec<Value> = published.iter().map(|k| published_jwk(k)).collect();
                let start = list.len();
                for i in start..MANY_KEYS {
                    let mut jwk = self.filler.clone();
                    jwk["kid"] = json!(format!("many-{i:05}"));
                    list.push(jwk);
                }
                list
            }
            Some("wrong_type_keys") => wrong_type_keys(&published),
            _ => published.iter().map(|k| published_jwk(k)).collect(),
        };
        Ok(json!({ "keys": list }))
    }

    fn token(&self, req: &Req) -> Reply {
        let form = req.form();
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if req.method != "POST" {
            return Reply::error(405, "invalid_request", "the token endpoint takes POST");
        }
        if field("grant_type").as_deref() != Some("client_credentials") {
            return Reply::error(
                400,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        let (id, secret) = match basic_auth(req) {
            Some(pair) => (Some(pair.0), Some(pair.1)),
            None => (field("client_id"), field("client_secret")),
        };
        if let (Some(want_id), Some(want_secret)) = (&self.args.client_id, &self.args.client_secret)
        {
            if id.as_ref() != Some(want_id) || secret.as_ref() != Some(want_secret) {
                return Reply::error(401, "invalid_client", "client authentication failed")
                    .with_header("www-authenticate", "Basic realm=\"mock-idp\"");
            }
        }
        let client = id.unwrap_or_else(|| "client".to_string());
        let scope = field("scope").unwrap_or_else(|| "openid".to_string());
        let roles: Vec<&str> = self
            .args
            .roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .collect();
        let iat = now();
        let claims = obj(vec![
            ("iss", json!(self.issuer)),
            ("sub", json!(client)),
            ("aud", json!(self.args.token_audience)),
            ("azp", json!(client)),
            ("scope", json!(scope)),
            ("iat", json!(iat)),
            ("exp", json!(iat + self.args.token_ttl)),
            ("typ", json!("Bearer")),
            ("realm_access", json!({ "roles": roles })),
        ]);
        let signed = self.keys().and_then(|keys| {
            let key = first_key(&keys, "RS256")
                .ok_or_else(|| Reply::error(500, "server_error", "no RSA key"))?;
            let header = obj(vec![
                ("alg", json!("RS256")),
                ("kid", json!(key.kid)),
                ("typ", json!("JWT")),
            ]);
            mint_token(key, "RS256", header, claims, &json!({}))
                .map_err(|e| Reply::error(500, "server_error", &e))
        });
        match signed {
            Ok(token) => Reply::json(
                200,
                &json!({"access_token": token, "token_type": "Bearer", "expires_in": self.args.token_ttl, "scope": scope}),
            ),
            Err(reply) => reply,
        }
    }

    /// A workload token service in the style of Azure's instance metadata
    /// (`GET <issuer>/identity?audience=AUD[&format=json]`, `Metadata: true` required): the raw
    /// token, or `{"access_token", "token_type", "expires_in", "expires_on", "resource"}`.
    /// Claims: `iss`, `sub` (`workload`), `aud` = AUD, `iat`, `exp` (`--token-ttl`).
    fn identity(&self, req: &Req) -> Reply {
        if req.method != "GET" {
            return Reply::error(405, "invalid_request", "the identity endpoint takes GET");
        }
        if !req
            .header("metadata")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Reply::error(400, "bad_request", "Required metadata header not specified");
        }
        let Some(audience) = req.query_param("audience").filter(|a| !a.is_empty()) else {
            return Reply::error(400, "invalid_request", "audience is required");
        };
        let iat = now();
        let exp = iat + self.args.token_ttl;
        let claims = obj(vec![
            ("iss", json!(self.issuer)),
            ("sub", json!("workload")),
            ("aud", json!(audience)),
            ("iat", json!(iat)),
            ("exp", json!(exp)),
        ]);
        let signed = self.keys().and_then(|keys| {
            let key = first_key(&keys, "RS256")
                .ok_or_else(|| Reply::error(500, "server_error", "no RSA key"))?;
            let header = obj(vec![
                ("alg", json!("RS256")),
                ("kid", json!(key.kid)),
                ("typ", json!("JWT")),
            ]);
            mint_token(key, "RS256", header, claims, &json!({}))
                .map_err(|e| Reply::error(500, "server_error", &e))
        });
        match (signed, req.query_param("format").as_deref()) {
            (Ok(token), Some("json")) => Reply::json(
                200,
                &json!({"access_token": token, "token_type": "Bearer", "resource": audience,
                        "expires_in": self.args.token_ttl.to_string(), "expires_on": exp.to_string()}),
            ),
            (Ok(token), _) => Reply::bytes(200, "text/plain", token),
            (Err(reply), _) => reply,
        }
    }

    fn mint(&self, body: &Value) -> Reply {
        let alg = body.get("alg").and_then(Value::as_str).unwrap_or("RS256");
        let attacker = body
            .get("attacker")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut keys = match self.keys() {
            Ok(k) => k,
            Err(r) => return r,
        };
        let key = match body.get("kid").and_then(Value::as_str) {
            Some(kid) => match keys.entries.iter().find(|e| e.key.kid == kid) {
                Some(e) if key_fits(&e.key, alg) => e.key.clone(),
                Some(_) => {
                    return Reply::error(
                        400,
                        "bad_request",
                        &format!("key {kid} cannot sign {alg}"),
                    )
                }
                None => return Reply::error(404, "unknown_kid", &format!("no key {kid}")),
            },
            None => match first_key(&keys, alg) {
                Some(k) => k.clone(),
                None => {
                    return Reply::error(400, "bad_request", &format!("no key can sign {alg:?}"))
                }
            },
        };
        let signer = if attacker {
            match keys.attackers.get(&key.kid) {
                Some(k) => k.clone(),
                None => match SigningKey::generate(key.kind(), &key.kid) {
                    Ok(k) => {
                        keys.attackers.insert(key.kid.clone(), k.clone());
                        k
                    }
                    Err(e) => return Reply::error(500, "server_error", &e.to_string()),
                },
            }
        } else {
            key
        };
        drop(keys);
        let iat = now();
        let header = obj(vec![
            ("alg", json!(alg)),
            ("kid", json!(signer.kid)),
            ("typ", json!("JWT")),
        ]);
        let claims = obj(vec![
            ("iss", json!(self.issuer)),
            ("sub", json!("mock-user")),
            ("iat", json!(iat)),
            ("exp", json!(iat + 300)),
        ]);
        match mint_token(&signer, alg, header, claims, body) {
            Ok(token) => Reply::json(200, &json!({"token": token, "kid": signer.kid})),
            Err(e) => Reply::error(400, "bad_request", &e),
        }
    }

    fn rotate(&self, body: &Value) -> Reply {
        let retire = body
            .get("retire_old")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut keys = match self.keys() {
            Ok(k) => k,
            Err(r) => return r,
        };
        keys.generation += 1;
        let fresh = match generate_set(keys.generation) {
            Ok(f) => f,
            Err(e) => return Reply::error(500, "server_error", &e.to_string()),
        };
        if retire {
            keys.entries.iter_mut().for_each(|e| e.published = false);
        }
        let kids: Vec<String> = fresh.iter().map(|k| k.kid.clone()).collect();
        let old = std::mem::take(&mut keys.entries);
        keys.entries = fresh
            .into_iter()
            .map(|key| Entry {
                key,
                published: true,
            })
            .chain(old)
            .collect();
        eprintln!("[{TAG}] rotated: new {kids:?}, retire_old={retire}");
        Reply::json(
            200,
            &json!({"kids": kids, "published": published_kids(&keys)}),
        )
    }

    fn remove_key(&self, body: &Value) -> Reply {
        let Some(kid) = body.get("kid").and_then(Value::as_str) else {
            return Reply::error(400, "bad_request", "body needs a \"kid\"");
        };
        let mut keys = match self.keys() {
            Ok(k) => k,
            Err(r) => return r,
        };
        match keys
            .entries
            .iter_mut()
            .find(|e| e.key.kid == kid && e.published)
        {
            Some(e) => e.published = false,
            None => return Reply::error(404, "unknown_kid", &format!("no published key {kid}")),
        }
        Reply::json(
            200,
            &json!({"removed": kid, "published": published_kids(&keys)}),
        )
    }

    fn key_list(&self) -> Reply {
        match self.keys() {
            Ok(keys) => {
                let list: Vec<Value> = keys
                    .entries
                    .iter()
                    .map(|e| json!({"kid": e.key.kid, "kind": format!("{:?}", e.key.kind()), "published": e.published}))
                    .collect();
                Reply::json(200, &json!({ "keys": list }))
            }
            Err(r) => r,
        }
    }
}

fn first_key<'a>(keys: &'a Keys, alg: &str) -> Option<&'a SigningKey> {
    let fits = |e: &&Entry| key_fits(&e.key, alg);
    let published = keys.entries.iter().filter(|e| e.published).find(fits);
    published
        .or_else(|| keys.entries.iter().find(fits))
        .map(|e| &e.key)
}

fn published_kids(keys: &Keys) -> Vec<String> {
    keys.entries
        .iter()
        .filter(|e| e.published)
        .map(|e| e.key.kid.clone())
        .collect()
}

/// `Authorization: Basic` client credentials (each part form-urlencoded, RFC 6749 §2.3.1).
fn basic_auth(req: &Req) -> Option<(String, String)> {
    let value = req.header("authorization")?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        crate::testkit::http::form_decode(&format!("x={s}"))
            .pop()
            .map(|(_, v)| v)
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// Only keys a JWS verifier must not use: `oct` and `use: enc` copies under the real kids, plus
/// curves and key types JWS does not define.
fn wrong_type_keys(published: &[&SigningKey]) -> Vec<Value> {
    let mut list = Vec::new();
    for key in published {
        let mut enc = key.public_jwk_for(None);
        enc["use"] = json!("enc");
        enc["alg"] = json!(if matches!(key.kind(), KeyKind::Rsa(_)) {
            "RSA-OAEP-256"
        } else {
            "ECDH-ES"
        });
        list.push(enc);
        list.push(json!({"kty": "oct", "kid": key.kid, "alg": "HS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}));
    }
    list.push(json!({"kty": "EC", "kid": "k256", "crv": "secp256k1",
        "x": "Fn8C6IDtd1ZvJ9GSW0QXC3MDOR7OkBqTXJuIx9-8jNk", "y": "n8FSlPVHafXGjDxWCRCWUT5wNmfprJ5VlBFNmEm0YlI"}));
    list.push(json!({"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}));
    list.push(json!({"kty": "OKP", "kid": "ed448", "crv": "Ed448", "x": "X9dEm1m0Yf0s54fsYWrUah2hNCSFpw4fig6nXYDpZ3jt8SR2m0bHBhvWeD3x5Q9s0foavq_oJWGA"}));
    list.push(json!({"kty": "unknown", "kid": "mystery"}));
    list
}

async fn handle_main(idp: Arc<Idp>, req: Req) -> Outcome {
    let rel = req.path.strip_prefix(idp.base_path.as_str()).unwrap_or("");
    let endpoint = match rel {
        "/.well-known/openid-configuration" => "discovery",
        "/jwks" | "/jwks-moved" => "jwks",
        "/token" => "token",
        "/identity" => "identity",
        _ => return Reply::error(404, "not_found", &format!("no endpoint at {}", req.path)).into(),
    };
    idp.counters.inc(endpoint);
    let fault = idp.faults.active(endpoint);
    eprintln!(
        "[{TAG}] {} {} ({endpoint}, fault {fault:?})",
        req.method, req.path
    );
    let f = fault.as_deref().unwrap_or("none");
    match endpoint {
        "discovery" if f == "unparseable_jwks_uri" => {
            let mut doc = idp.discovery(false, false);
            let pick = idp.counters.get("discovery") as usize % UNPARSEABLE_JWKS_URIS.len();
            doc["jwks_uri"] = json!(UNPARSEABLE_JWKS_URIS.get(pick).copied().unwrap_or_default());
            Reply::json(200, &doc).into()
        }
        "discovery" => generic_fault(f, || {
            Reply::json(
                200,
                &idp.discovery(f == "discovery_elsewhere", f == "jwks_moved"),
            )
        }),
        // `jwks_moved`: the keys live at `/jwks-moved` and the old `/jwks` is gone (404).
        "jwks" if (f == "jwks_moved") != (rel == "/jwks-moved") => {
            Reply::error(404, "not_found", &format!("no endpoint at {}", req.path)).into()
        }
        "jwks" => {
            let fault_keys = matches!(f, "many_keys" | "wrong_type_keys").then_some(f);
            match idp.jwks(fault_keys) {
                Ok(jwks) => generic_fault(f, || Reply::json(200, &jwks)),
                Err(reply) => reply.into(),
            }
        }
        "identity" => generic_fault(f, || idp.identity(&req)),
        _ => generic_fault(f, || idp.token(&req)),
    }
}

async fn handle_control(idp: Arc<Idp>, req: Req) -> Outcome {
    if let Some(reply) = common_control(&req, &idp.faults, &idp.counters).await {
        return reply.into();
    }
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return Reply::error(400, "bad_json", &e.to_string()).into(),
    };
    let reply = match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/__control/mint") => idp.mint(&body),
        ("POST", "/__control/rotate") => idp.rotate(&body),
        ("POST", "/__control/remove-key") => idp.remove_key(&body),
        ("GET", "/__control/keys") => idp.key_list(),
        ("GET", "/__control/info") => Reply::json(
            200,
            &json!({
                "issuer": idp.issuer,
                "discovery_path": format!("{}/.well-known/openid-configuration", idp.base_path),
                "jwks_path": format!("{}/jwks", idp.base_path),
                "token_path": format!("{}/token", idp.base_path),
                "identity_path": format!("{}/identity", idp.base_path),
            }),
        ),
        _ => Reply::no_control(&req),
    };
    reply.into()
}

/// Runs `mock-idp` until killed.
pub async fn serve(args: Args) -> Result<()> {
    let main = server::bind(&args.listen).await?;
    let control = server::bind(&args.control_listen).await?;
    let http_addr = main.local_addr()?;
    let issuer = args
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let filler =
        SigningKey::generate(KeyKind::Rsa(2048), "filler")?.public_jwk_for(Some(Alg::RS256));
    let idp = Arc::new(Idp {
        base_path: issuer_path(&issuer),
        issuer,
        keys: Mutex::new(Keys {
            entries: generate_set(1)?
                .into_iter()
                .map(|key| Entry {
                    key,
                    published: true,
                })
                .collect(),
            attackers: HashMap::new(),
            generation: 1,
        }),
        filler,
        faults: Faults::new(
            &[
                "many_keys",
                "wrong_type_keys",
                "discovery_elsewhere",
                "jwks_moved",
                "unparseable_jwks_uri",
            ],
            &["discovery", "jwks", "token", "identity"],
        ),
        counters: Counters::new(&["discovery", "jwks", "token", "identity"]),
        args,
    });
    let banner = Some(format!("issuer {}", idp.issuer));
    let faults = Arc::clone(&idp.faults);
    server::serve_until_ctrl_c(
        TAG,
        (main, control),
        idp,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_paths() {
        assert_eq!(
            issuer_path("http://mock-idp:9000/realms/demo"),
            "/realms/demo"
        );
        assert_eq!(
            issuer_path("http://mock-idp:9000/realms/demo/"),
            "/realms/demo"
        );
        assert_eq!(issuer_path("http://127.0.0.1:1"), "");
        assert_eq!(issuer_path("http://127.0.0.1:1/"), "");
    }
}
