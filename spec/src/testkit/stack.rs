//! A small world for one filter behaviour: mock IdP, optional mock Google, a Cloud Run stand-in
//! and the gateway running the release `cloudrun_oidc.wasm` on one route (`/orders`), with a
//! filter configuration the test shapes.

use super::engine::Engine;
use super::gateway::{Gateway, GatewayOpts};
use super::http::{self, Response};
use super::mocks::{
    CloudRun, CloudRunOptions, GoogleOptions, IdpOptions, MintRequest, MockGoogle, MockIdp,
};
use super::process::repo_root;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The audience every test token carries unless a test says otherwise.
pub const AUDIENCE: &str = "orders-api";

/// The release filter built by `make build`, or the build `CLOUDRUN_OIDC_WASM` names (to run
/// the same tests against another commit's filter).
pub fn filter_wasm() -> Result<PathBuf> {
    let path = std::env::var_os("CLOUDRUN_OIDC_WASM")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("dist/cloudrun_oidc.wasm"));
    if !path.is_file() {
        bail!("{} is missing: run `make build` first", path.display());
    }
    Ok(path)
}

/// The filter's schema, when built.
pub fn filter_meta() -> Option<String> {
    std::fs::read_to_string(repo_root().join("kong/cloudrun_oidc.meta.json")).ok()
}

/// Where the Google ID token comes from, if anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoogleMode {
    /// No `google_id_token`: Cloud Run stand-in runs with `--no-auth`.
    Off,
    Metadata,
    ServiceAccount,
}

/// Shapes the filter config once the mocks' addresses are known.
pub type ConfigEdit = Box<dyn FnOnce(&mut Value, &StackInfo)>;

/// How to build a [`Stack`].
pub struct StackOptions {
    pub workers: usize,
    pub google: GoogleMode,
    pub google_token_ttl: Option<i64>,
    /// Applied to the default filter config (issuer = the mock IdP, audience [`AUDIENCE`]).
    pub config: ConfigEdit,
    /// Extra mock-idp arguments.
    pub idp_args: Vec<String>,
    /// The gateway's engine.
    pub engine: Engine,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            engine: Engine::StandIn,
            workers: 2,
            google: GoogleMode::Off,
            google_token_ttl: None,
            config: Box::new(|_, _| {}),
            idp_args: Vec::new(),
        }
    }
}

/// Addresses a config closure may need.
pub struct StackInfo {
    pub issuer: String,
    pub idp_http: String,
    pub google_http: Option<String>,
    pub cloudrun_audience: String,
}

/// The running world.
pub struct Stack {
    pub idp: MockIdp,
    pub google: Option<MockGoogle>,
    pub cloudrun: CloudRun,
    pub gateway: Gateway,
    /// The filter config as given to the gateway.
    pub config: Value,
}

impl Stack {
    /// A default stack on `engine` whose filter config `config` edits.
    pub fn with_config(engine: Engine, config: impl FnOnce(&mut Value) + 'static) -> Result<Stack> {
        Stack::start(StackOptions {
            engine,
            config: Box::new(move |c, _| config(c)),
            ..StackOptions::default()
        })
    }

    pub fn start(opts: StackOptions) -> Result<Stack> {
        let idp = MockIdp::start(IdpOptions {
            token_audience: Some(AUDIENCE.into()),
            extra_args: opts.idp_args.clone(),
            ..IdpOptions::default()
        })?;
        let google = match opts.google {
            GoogleMode::Off => None,
            _ => Some(MockGoogle::start(GoogleOptions {
                token_ttl: opts.google_token_ttl,
                ..GoogleOptions::default()
            })?),
        };
        let cloudrun = CloudRun::start(CloudRunOptions {
            google_jwks: google.as_ref().map(|g| g.certs_url()),
            no_auth: google.is_none(),
            ..CloudRunOptions::default()
        })?;
        let info = StackInfo {
            issuer: idp.issuer().to_string(),
            idp_http: idp.http_addr().to_string(),
            google_http: google.as_ref().map(|g| g.http_addr().to_string()),
            cloudrun_audience: cloudrun.audience().to_string(),
        };
        let mut config = json!({
            "issuers": [{"issuer": info.issuer, "audiences": [AUDIENCE]}],
            "claims_to_headers": {"sub": "x-user-id", "email": "x-user-email"},
        });
        if let Some(g) = &google {
            config["google_id_token"] = match opts.google {
                GoogleMode::Metadata => json!({
                    "audience": info.cloudrun_audience,
                    "source": "metadata",
                    "metadata_host": g.http_addr(),
                }),
                _ => json!({
                    "audience": info.cloudrun_audience,
                    "source": "service_account",
                    "service_account_key": g.sa_key_json()?.to_string(),
                    "token_url": g.token_url(),
                }),
            };
        }
        (opts.config)(&mut config, &info);
        let gateway = start_gateway(&config, cloudrun.http_addr(), opts.workers, opts.engine)?;
        Ok(Stack {
            idp,
            google,
            cloudrun,
            gateway,
            config,
        })
    }

    /// A token from the mock IdP with the default audience, as `req` shapes it.
    pub fn mint(&self, req: MintRequest) -> Result<String> {
        let req = if req.claims.contains_key("aud") {
            req
        } else {
            req.claim("aud", AUDIENCE)
        };
        self.idp.mint(&req)
    }

    /// A valid RS256 token.
    pub fn valid_token(&self) -> Result<String> {
        self.mint(MintRequest::new("RS256"))
    }

    /// `GET /orders` with `Authorization: Bearer <token>` when given.
    pub fn call(&self, token: Option<&str>) -> Result<Response> {
        self.call_with(token, &[])
    }

    /// `GET /orders` with extra headers.
    pub fn call_with(&self, token: Option<&str>, headers: &[(&str, &str)]) -> Result<Response> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            all.push(("authorization", auth));
        }
        Ok(http::get(&self.gateway.url("/orders"), &all)?)
    }

    /// A filter metric summed over workers (`pw_cloudrun_oidc_<name>`), 0 when absent.
    pub fn metric(&self, name: &str) -> Result<u64> {
        let metrics = self.gateway.metrics()?;
        Ok(metrics[format!("pw_cloudrun_oidc_{name}")]
            .as_u64()
            .unwrap_or(0))
    }

    /// What the Cloud Run stand-in saw last (`None` before any request reached it).
    pub fn upstream_last(&self) -> Result<Option<Value>> {
        self.cloudrun.last()
    }

    /// How many requests reached the Cloud Run stand-in.
    pub fn upstream_requests(&self) -> Result<u64> {
        self.cloudrun.counter("requests")
    }
}

/// Starts the gateway on `engine` with one service/route `/orders` running the filter with
/// `config`.
pub fn start_gateway(
    config: &Value,
    upstream: &str,
    workers: usize,
    engine: Engine,
) -> Result<Gateway> {
    Gateway::start(&orders_gateway(config, upstream, workers, engine)?)
        .context("starting the gateway")
}

/// The options of [`start_gateway`]: one service/route `/orders` to `upstream` running the filter
/// with `config`, its zone `cloudrun_oidc=12m` (tests may change what they need).
pub fn orders_gateway(
    config: &Value,
    upstream: &str,
    workers: usize,
    engine: Engine,
) -> Result<GatewayOpts> {
    let meta = filter_meta();
    let config_yaml = match &meta {
        Some(_) => config.to_string(),
        None => serde_json::to_string(&config.to_string())?,
    };
    let kong_yml = format!(
        r#"_format_version: "3.0"
services:
  - name: orders
    url: http://{upstream}
    routes:
      - name: orders
        paths: ["/orders"]
        strip_path: false
        filter_chains:
          - filters:
              - name: cloudrun_oidc
                config: {config_yaml}
"#
    );
    Ok(GatewayOpts {
        kong_yml,
        filters: vec![("cloudrun_oidc".into(), filter_wasm()?, meta)],
        workers,
        shm_kv: vec!["cloudrun_oidc=12m".into()],
        lua_resolver: true,
        engine,
        ..GatewayOpts::default()
    })
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Stack {
    /// A failing test shows the gateway's error log: the filter's reasons are there.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = self.gateway.stderr_lines();
            let start = lines.len().saturating_sub(60);
            for line in lines.get(start..).unwrap_or_default() {
                eprintln!("gateway| {line}");
            }
        }
    }
}
