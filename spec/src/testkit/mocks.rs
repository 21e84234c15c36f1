//! Typed wrappers around the running mock binaries (`mock-idp`, `mock-google`, `mock-aws`,
//! `cloudrun`): start them, build their URLs and drive their control APIs (spec/README.md).

use super::http::{self, HttpError, Response};
use super::process::SpecProcess;
use crate::jose::{self, Alg, SigningKey};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;

/// A `POST /__control/mint` request (mock-idp and mock-google).
#[derive(Clone, Debug)]
pub struct MintRequest {
    pub alg: String,
    pub kid: Option<String>,
    /// Claim overrides (`null` removes a default claim).
    pub claims: Map<String, Value>,
    /// Header overrides (`null` removes a default member).
    pub header: Map<String, Value>,
    pub attacker: bool,
    /// HMAC secret for `HS*` algorithms (default: the key's public PEM).
    pub hmac_key: Option<String>,
}

impl MintRequest {
    pub fn new(alg: &str) -> MintRequest {
        MintRequest {
            alg: alg.to_string(),
            kid: None,
            claims: Map::new(),
            header: Map::new(),
            attacker: false,
            hmac_key: None,
        }
    }
    /// Sign with this key (any key the IdP ever had, published or not).
    pub fn kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_string());
        self
    }
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_string(), value.into());
        self
    }
    /// Drops a default claim (`iss`, `sub`, `iat`, `exp`, ...).
    pub fn without_claim(self, name: &str) -> Self {
        self.claim(name, Value::Null)
    }
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.to_string(), value.into());
        self
    }
    /// Sign with a key that is not in the JWKS (same kid and type).
    pub fn attacker(mut self) -> Self {
        self.attacker = true;
        self
    }
    pub fn to_json(&self) -> Value {
        let mut v = json!({"alg": self.alg, "claims": self.claims, "header": self.header, "attacker": self.attacker});
        if let Some(kid) = &self.kid {
            v["kid"] = json!(kid);
        }
        if let Some(key) = &self.hmac_key {
            v["hmac_key"] = json!(key);
        }
        v
    }
}

/// A control listener client.
#[derive(Clone, Debug)]
pub struct Controls {
    base: String,
}

impl Controls {
    fn check(resp: Response, what: &str) -> Result<Value> {
        if !(200..300).contains(&resp.status) {
            bail!("{what}: status {}: {}", resp.status, resp.text());
        }
        resp.json()
    }
    pub fn get(&self, path: &str) -> Result<Value> {
        Self::check(http::get(&format!("{}{path}", self.base), &[])?, path)
    }
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        Self::check(
            http::post_json(&format!("{}{path}", self.base), body, &[])?,
            path,
        )
    }
    /// Sets a fault on every endpoint (`"none"` clears).
    pub fn fault(&self, name: &str) -> Result<()> {
        self.post("/__control/fault", &json!({ "fault": name }))
            .map(drop)
    }
    /// Sets a fault on some endpoints only.
    pub fn fault_only(&self, name: &str, endpoints: &[&str]) -> Result<()> {
        self.post(
            "/__control/fault",
            &json!({"fault": name, "only": endpoints}),
        )
        .map(drop)
    }
    pub fn counters(&self) -> Result<HashMap<String, u64>> {
        let v = self.get("/__control/counters")?;
        let obj = v.as_object().context("counters are not an object")?;
        Ok(obj
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_default()))
            .collect())
    }
    pub fn reset_counters(&self) -> Result<()> {
        self.post("/__control/counters/reset", &json!({})).map(drop)
    }
}

fn controls_of(p: &SpecProcess) -> Result<Controls> {
    Ok(Controls {
        base: format!("http://{}", p.addr("control")?),
    })
}

macro_rules! common_methods {
    ($t:ty) => {
        impl $t {
            /// The main listener's address (`127.0.0.1:PORT`).
            pub fn http_addr(&self) -> &str {
                self.process
                    .addrs
                    .get("http")
                    .map(String::as_str)
                    .unwrap_or_default()
            }
            /// The control listener's address.
            pub fn control_addr(&self) -> &str {
                self.process
                    .addrs
                    .get("control")
                    .map(String::as_str)
                    .unwrap_or_default()
            }
            pub fn controls(&self) -> &Controls {
                &self.ctl
            }
            /// Sets a fault (`refuse`, `reset`, `hang`, ...; `none` clears).
            pub fn fault(&self, name: &str) -> Result<()> {
                self.ctl.fault(name)
            }
            pub fn fault_only(&self, name: &str, endpoints: &[&str]) -> Result<()> {
                self.ctl.fault_only(name, endpoints)
            }
            pub fn clear_fault(&self) -> Result<()> {
                self.ctl.fault("none")
            }
            pub fn counters(&self) -> Result<HashMap<String, u64>> {
                self.ctl.counters()
            }
            /// One counter (0 when absent).
            pub fn counter(&self, name: &str) -> Result<u64> {
                Ok(self.ctl.counters()?.get(name).copied().unwrap_or_default())
            }
            pub fn reset_counters(&self) -> Result<()> {
                self.ctl.reset_counters()
            }
        }
    };
}

/// Options of [`MockIdp::start`].
#[derive(Clone, Debug, Default)]
pub struct IdpOptions {
    /// Default `127.0.0.1:0`.
    pub listen: Option<String>,
    pub issuer: Option<String>,
    /// `(client_id, client_secret)` the token endpoint requires.
    pub client: Option<(String, String)>,
    pub token_audience: Option<String>,
    pub extra_args: Vec<String>,
}

/// A running `mock-idp`.
pub struct MockIdp {
    pub process: SpecProcess,
    ctl: Controls,
    issuer: String,
    base_path: String,
}

impl IdpOptions {
    /// The defaults, with access tokens for `audience` (`--token-audience`).
    pub fn with_audience(audience: &str) -> IdpOptions {
        IdpOptions {
            token_audience: Some(audience.into()),
            ..IdpOptions::default()
        }
    }
}

impl MockIdp {
    pub fn start(opts: IdpOptions) -> Result<MockIdp> {
        let mut args = vec![
            "--listen".into(),
            opts.listen.unwrap_or_else(|| "127.0.0.1:0".into()),
        ];
        if let Some(issuer) = &opts.issuer {
            args.extend(["--issuer".into(), issuer.clone()]);
        }
        if let Some((id, secret)) = &opts.client {
            args.extend([
                "--client-id".into(),
                id.clone(),
                "--client-secret".into(),
                secret.clone(),
            ]);
        }
        if let Some(aud) = &opts.token_audience {
            args.extend(["--token-audience".into(), aud.clone()]);
        }
        args.extend(opts.extra_args);
        let process = SpecProcess::start("mock-idp", &args)?;
        let ctl = controls_of(&process)?;
        let info = ctl.get("/__control/info")?;
        let issuer = info["issuer"]
            .as_str()
            .context("info has no issuer")?
            .to_string();
        let discovery_path = info["discovery_path"].as_str().unwrap_or_default();
        let base_path = discovery_path
            .trim_end_matches("/.well-known/openid-configuration")
            .to_string();
        Ok(MockIdp {
            process,
            ctl,
            issuer,
            base_path,
        })
    }

    /// The issuer (as configured; its host need not be the listen address).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// `http://<listen address><issuer path><rel>`: reachable from tests.
    pub fn url(&self, rel: &str) -> String {
        format!("http://{}{}{rel}", self.http_addr(), self.base_path)
    }
    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }
    pub fn jwks_url(&self) -> String {
        self.url("/jwks")
    }
    pub fn token_url(&self) -> String {
        self.url("/token")
    }
    pub fn discovery(&self) -> Result<Value> {
        http::get(&self.discovery_url(), &[])?.json()
    }
    pub fn jwks(&self) -> Result<Value> {
        http::get(&self.jwks_url(), &[])?.json()
    }
    /// The kids currently in the JWKS.
    pub fn kids(&self) -> Result<Vec<String>> {
        let jwks = self.jwks()?;
        let keys = jwks["keys"].as_array().context("no keys")?;
        Ok(keys
            .iter()
            .filter_map(|k| k["kid"].as_str().map(str::to_string))
            .collect())
    }
    /// Mints a token (`POST /__control/mint`).
    pub fn mint(&self, req: &MintRequest) -> Result<String> {
        let v = self.ctl.post("/__control/mint", &req.to_json())?;
        Ok(v["token"].as_str().context("no token")?.to_string())
    }
    /// Rotates the keys; returns the new kids.
    pub fn rotate(&self, retire_old: bool) -> Result<Vec<String>> {
        let v = self
            .ctl
            .post("/__control/rotate", &json!({ "retire_old": retire_old }))?;
        let kids = v["kids"].as_array().context("no kids")?;
        Ok(kids
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect())
    }
    /// Removes a key from the JWKS (it can still be used to mint with an explicit kid).
    pub fn remove_key(&self, kid: &str) -> Result<()> {
        self.ctl
            .post("/__control/remove-key", &json!({ "kid": kid }))
            .map(drop)
    }
    /// The workload token endpoint (`<issuer>/identity?audience=…`, `&format=json` when `json`).
    pub fn identity_url(&self, audience: &str, json: bool) -> String {
        let mut q = vec![("audience", audience)];
        if json {
            q.push(("format", "json"));
        }
        self.url(&format!("/identity?{}", http::form_encode(&q)))
    }
    /// `client_credentials` at the token endpoint with Basic authentication.
    pub fn client_credentials(
        &self,
        id: &str,
        secret: &str,
        scope: Option<&str>,
    ) -> Result<Response, HttpError> {
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{id}:{secret}"),
        );
        let auth = format!("Basic {basic}");
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        http::post_form(
            &self.token_url(),
            &form,
            &[("Authorization", auth.as_str())],
        )
    }
}
common_methods!(MockIdp);

/// Options of [`MockGoogle::start`].
#[derive(Clone, Debug, Default)]
pub struct GoogleOptions {
    pub listen: Option<String>,
    pub token_ttl: Option<i64>,
    pub sa_key_out: Option<PathBuf>,
    pub token_url: Option<String>,
    pub extra_args: Vec<String>,
}

/// A running `mock-google`.
pub struct MockGoogle {
    pub process: SpecProcess,
    ctl: Controls,
    info: Value,
}

impl MockGoogle {
    pub fn start(opts: GoogleOptions) -> Result<MockGoogle> {
        let mut args = vec![
            "--listen".into(),
            opts.listen.unwrap_or_else(|| "127.0.0.1:0".into()),
        ];
        if let Some(ttl) = opts.token_ttl {
            args.extend(["--token-ttl".into(), ttl.to_string()]);
        }
        if let Some(path) = &opts.sa_key_out {
            args.extend(["--sa-key-out".into(), path.display().to_string()]);
        }
        if let Some(url) = &opts.token_url {
            args.extend(["--token-url".into(), url.clone()]);
        }
        args.extend(opts.extra_args);
        let process = SpecProcess::start("mock-google", &args)?;
        let ctl = controls_of(&process)?;
        let info = ctl.get("/__control/info")?;
        Ok(MockGoogle { process, ctl, info })
    }

    /// `http://<listen address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr())
    }
    /// The metadata identity URL for `audience` (`format=full` when `full`).
    pub fn identity_url(&self, audience: &str, full: bool) -> String {
        let mut q = vec![("audience", audience)];
        if full {
            q.push(("format", "full"));
        }
        self.url(&format!(
            "{}?{}",
            crate::mocks::google::IDENTITY_PATH,
            http::form_encode(&q)
        ))
    }
    /// GET the identity endpoint with `Metadata-Flavor: Google`.
    pub fn identity(&self, audience: &str, full: bool) -> Result<Response, HttpError> {
        http::get(
            &self.identity_url(audience, full),
            &[("Metadata-Flavor", "Google")],
        )
    }
    /// The token URL assertions must use as `aud` (as configured).
    pub fn token_url(&self) -> &str {
        self.info["token_url"].as_str().unwrap_or_default()
    }
    /// The URL tests can POST to (listen address + `/token`).
    pub fn token_endpoint(&self) -> String {
        self.url("/token")
    }
    pub fn certs_url(&self) -> String {
        self.url("/oauth2/v3/certs")
    }
    pub fn certs(&self) -> Result<Value> {
        http::get(&self.certs_url(), &[])?.json()
    }
    pub fn client_email(&self) -> &str {
        self.info["client_email"].as_str().unwrap_or_default()
    }
    /// The service-account key file (Google JSON).
    pub fn sa_key_json(&self) -> Result<Value> {
        self.ctl.get("/__control/sa-key")
    }
    /// The service-account private key, for signing assertions in tests.
    pub fn sa_signing_key(&self) -> Result<SigningKey> {
        let sa = self.sa_key_json()?;
        let pem = sa["private_key"].as_str().context("no private_key")?;
        SigningKey::from_pem(pem, sa["private_key_id"].as_str().unwrap_or_default())
    }
    /// A correctly signed JWT-bearer assertion for `target_audience`, with claim overrides
    /// (`null` removes one).
    pub fn sa_assertion(&self, target_audience: &str, overrides: &Value) -> Result<String> {
        let key = self.sa_signing_key()?;
        let now = crate::mocks::common::now();
        let mut claims = crate::mocks::common::obj(vec![
            ("iss", json!(self.client_email())),
            ("aud", json!(self.token_url())),
            ("target_audience", json!(target_audience)),
            ("iat", json!(now)),
            ("exp", json!(now + 3600)),
        ]);
        crate::mocks::common::apply_overrides(&mut claims, Some(overrides))
            .map_err(anyhow::Error::msg)?;
        jose::sign_jwt(&key, Alg::RS256, &Value::Object(claims))
    }
    /// POSTs an assertion to the token endpoint.
    pub fn exchange(&self, assertion: &str) -> Result<Response, HttpError> {
        let form = [
            ("grant_type", crate::mocks::google::JWT_BEARER),
            ("assertion", assertion),
        ];
        http::post_form(&self.token_endpoint(), &form, &[])
    }
    /// STS's token endpoint (`token_url` of a credential configuration).
    pub fn sts_url(&self) -> String {
        self.url(crate::mocks::google::STS_PATH)
    }
    /// `service_account_impersonation_url` for the mock's service account, as gcloud writes it.
    pub fn impersonation_url(&self) -> String {
        self.url(&format!(
            "{}{}:generateAccessToken",
            crate::mocks::google::IAM_PREFIX,
            self.client_email()
        ))
    }
    /// The workload identity pool provider STS accepts.
    pub fn sts_audience(&self) -> &str {
        self.info["sts_audience"].as_str().unwrap_or_default()
    }
    /// The `aud` STS wants in subject JWTs.
    pub fn sts_jwt_audience(&self) -> &str {
        self.info["sts_jwt_audience"].as_str().unwrap_or_default()
    }
    /// Forgets every STS token issued: IAM answers 401 to them.
    pub fn revoke_sts_tokens(&self) -> Result<()> {
        self.ctl.post("/__control/revoke-sts", &json!({})).map(drop)
    }
    pub fn set_token_ttl(&self, seconds: i64) -> Result<()> {
        self.ctl
            .post("/__control/token-ttl", &json!({ "seconds": seconds }))
            .map(drop)
    }
    /// A Google-signed ID token with claim/header overrides (`aud` defaults to "").
    pub fn mint(&self, req: &MintRequest) -> Result<String> {
        let v = self.ctl.post("/__control/mint", &req.to_json())?;
        Ok(v["token"].as_str().context("no token")?.to_string())
    }
    /// Adds a new Google signing key (first in the JWKS); returns its kid.
    pub fn rotate(&self, retire_old: bool) -> Result<String> {
        let v = self
            .ctl
            .post("/__control/rotate", &json!({ "retire_old": retire_old }))?;
        Ok(v["kids"][0].as_str().context("no kid")?.to_string())
    }
}
common_methods!(MockGoogle);

/// Options of [`MockAws::start`].
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    pub listen: Option<String>,
    /// Also answer without an IMDSv2 session token.
    pub imdsv1: bool,
    pub extra_args: Vec<String>,
}

/// A running `mock-aws` (EC2 instance metadata).
pub struct MockAws {
    pub process: SpecProcess,
    ctl: Controls,
}

impl MockAws {
    pub fn start(opts: AwsOptions) -> Result<MockAws> {
        let mut args = vec![
            "--listen".into(),
            opts.listen.unwrap_or_else(|| "127.0.0.1:0".into()),
        ];
        if opts.imdsv1 {
            args.push("--imdsv1".into());
        }
        args.extend(opts.extra_args);
        let process = SpecProcess::start("mock-aws", &args)?;
        let ctl = controls_of(&process)?;
        Ok(MockAws { process, ctl })
    }
    /// `http://<listen address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr())
    }
    /// `credential_source` as gcloud writes it for EC2, pointing at this mock (IMDSv2 when
    /// `imdsv2`).
    pub fn credential_source(&self, imdsv2: bool) -> Value {
        use crate::mocks::aws::{ROLES_PATH, SESSION_PATH, ZONE_PATH};
        let mut source = json!({
            "environment_id": "aws1",
            "region_url": self.url(ZONE_PATH),
            "url": self.url(ROLES_PATH),
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        });
        if imdsv2 {
            source["imdsv2_session_token_url"] = json!(self.url(SESSION_PATH));
        }
        source
    }
}
common_methods!(MockAws);

/// Options of [`CloudRun::start`].
#[derive(Clone, Debug, Default)]
pub struct CloudRunOptions {
    pub listen: Option<String>,
    /// Default: `http://<its listen address>`.
    pub audience: Option<String>,
    /// Required unless `no_auth`.
    pub google_jwks: Option<String>,
    pub no_auth: bool,
}

/// A running `cloudrun`.
pub struct CloudRun {
    pub process: SpecProcess,
    ctl: Controls,
    audience: String,
}

impl CloudRunOptions {
    /// The defaults with `--no-auth`: an upstream that accepts every request and echoes it.
    pub fn no_auth() -> CloudRunOptions {
        CloudRunOptions {
            no_auth: true,
            ..CloudRunOptions::default()
        }
    }
}

impl CloudRun {
    pub fn start(opts: CloudRunOptions) -> Result<CloudRun> {
        let mut args = vec![
            "--listen".into(),
            opts.listen.unwrap_or_else(|| "127.0.0.1:0".into()),
        ];
        if let Some(aud) = &opts.audience {
            args.extend(["--audience".into(), aud.clone()]);
        }
        if let Some(jwks) = &opts.google_jwks {
            args.extend(["--google-jwks".into(), jwks.clone()]);
        }
        if opts.no_auth {
            args.push("--no-auth".into());
        }
        let process = SpecProcess::start("cloudrun", &args)?;
        let ctl = controls_of(&process)?;
        let audience = ctl.get("/__control/info")?["audience"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(CloudRun {
            process,
            ctl,
            audience,
        })
    }

    /// The audience tokens must carry.
    pub fn audience(&self) -> &str {
        &self.audience
    }
    /// `http://<listen address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr())
    }
    /// The last request's echo plus `status` (and `reason` when refused); `None` before any request.
    pub fn last(&self) -> Result<Option<Value>> {
        let resp = http::get(
            &format!("http://{}/__control/last", self.control_addr()),
            &[],
        )?;
        match resp.status {
            404 => Ok(None),
            200 => Ok(Some(resp.json()?)),
            s => bail!("/__control/last: status {s}"),
        }
    }
}
common_methods!(CloudRun);
