//! The whole example topology of `kong/kong.yml` on loopback: two mock IdPs, mock Google (the
//! metadata server, Google's JWKS, STS and IAM Credentials), mock AWS instance metadata, three
//! Cloud Run stand-ins and a gateway (the Kong stand-in
//! or Kong's real engine) running the real `dist/cloudrun_oidc.wasm` with `kong/kong.yml` as is.
//! Every host name kong.yml uses (`mock-idp:9000`, `cloudrun-orders:9201`, …) gets its own
//! loopback address in a block picked for this world (`127.X.Y.1`, `.2`, …), where the process
//! that plays it listens on the port kong.yml names; the gateway resolves the names to those
//! addresses (`--resolve NAME=IP` on the stand-in, a DNS server on the real engine, whose
//! resolvers cannot remap ports), so the file needs no edits.
//!
//! `make demo` and the end-to-end tests use it; everything stops when the [`World`] is dropped.

use super::engine::Engine;
use super::gateway::{Gateway, GatewayOpts};
use super::http::{self, Response};
use super::mocks::{
    AwsOptions, CloudRun, CloudRunOptions, GoogleOptions, IdpOptions, MintRequest, MockAws,
    MockGoogle, MockIdp,
};
use super::process::repo_root;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Issuer of the Keycloak-style IdP (`mock-idp:9000`, realm `demo`).
pub const IDP_ISSUER: &str = "http://mock-idp:9000/realms/demo";
/// Issuer of the partner's IdP (`partner-idp:9001`).
pub const PARTNER_ISSUER: &str = "http://partner-idp:9001/partner";
/// `(client_id, client_secret)` the IdP's token endpoint requires (as in docker-compose.yml).
pub const IDP_CLIENT: (&str, &str) = ("demo-client", "demo-secret");
/// Realm roles of the IdP's client_credentials tokens (as in docker-compose.yml).
pub const IDP_ROLES: &str = "user,orders-admin";
/// `aud` of the IdP's client_credentials tokens (as in docker-compose.yml).
pub const IDP_TOKEN_AUDIENCE: &str = "orders-api";
/// `aud` of the partner IdP's client_credentials tokens.
pub const PARTNER_TOKEN_AUDIENCE: &str = "demo-gateway";
/// The Cloud Run stand-ins: compose service name = host name in kong.yml, and port.
pub const CLOUDRUNS: [(&str, u16); 3] = [
    ("cloudrun-orders", 9201),
    ("cloudrun-reports", 9202),
    ("cloudrun-partners", 9203),
];
/// Every `host:port` kong.yml names, and who plays it.
pub const TOPOLOGY: [(&str, u16); 7] = [
    ("mock-idp", 9000),
    ("partner-idp", 9001),
    ("mock-google", 9100),
    ("mock-aws", 9400),
    ("cloudrun-orders", 9201),
    ("cloudrun-reports", 9202),
    ("cloudrun-partners", 9203),
];
/// The filter's name (file `cloudrun_oidc.wasm`) and its shared-data zone.
pub const FILTER: &str = "cloudrun_oidc";

/// A caller kong.yml expects, with the claims a valid token for it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// `/orders`: IdP token, `aud` orders-api, realm roles `user`, `orders-admin`, an email.
    Orders,
    /// `/reports`: IdP token, `aud` reports-api, scope `openid reports.read`.
    Reports,
    /// `/partners` as one of our users: IdP token, `aud` partners-api.
    Partners,
    /// `/partners` as the partner: partner-idp ES256 token, `aud` demo-gateway.
    Partner,
}

impl Caller {
    /// The route path the caller uses.
    pub fn path(self) -> &'static str {
        match self {
            Caller::Orders => "/orders",
            Caller::Reports => "/reports",
            Caller::Partners | Caller::Partner => "/partners",
        }
    }

    /// The Cloud Run stand-in behind that route.
    pub fn cloudrun(self) -> &'static str {
        match self {
            Caller::Orders => "cloudrun-orders",
            Caller::Reports => "cloudrun-reports",
            Caller::Partners | Caller::Partner => "cloudrun-partners",
        }
    }

    /// The mint request for a valid token (claims not named here keep mock defaults: `iss`,
    /// `iat`, `exp` = now + 300).
    pub fn mint_request(self) -> MintRequest {
        match self {
            Caller::Orders => MintRequest::new("RS256")
                .claim("sub", "alice")
                .claim("aud", "orders-api")
                .claim("email", "alice@example.com")
                .claim("azp", "orders-web")
                .claim("realm_access", json!({"roles": ["user", "orders-admin"]})),
            Caller::Reports => MintRequest::new("RS256")
                .claim("sub", "bob")
                .claim("aud", "reports-api")
                .claim("scope", "openid reports.read"),
            Caller::Partners => MintRequest::new("RS256")
                .claim("sub", "carol")
                .claim("aud", "partners-api"),
            Caller::Partner => MintRequest::new("ES256")
                .claim("sub", "acme-batch")
                .claim("aud", "demo-gateway"),
        }
    }
}

/// How to start a [`World`].
#[derive(Clone, Debug)]
pub struct WorldOptions {
    /// The filter `.wasm` (default `dist/cloudrun_oidc.wasm`).
    pub wasm: PathBuf,
    /// Its meta.json (default `dist/cloudrun_oidc.meta.json`).
    pub meta: PathBuf,
    /// The declarative config (default `kong/kong.yml`).
    pub kong_yml: PathBuf,
    /// Gateway workers (default 2).
    pub workers: usize,
    /// The gateway's engine (default: the stand-in).
    pub engine: Engine,
}

impl Default for WorldOptions {
    fn default() -> Self {
        let root = repo_root();
        WorldOptions {
            wasm: root.join("dist").join(format!("{FILTER}.wasm")),
            meta: root.join("dist").join(format!("{FILTER}.meta.json")),
            kong_yml: root.join("kong").join("kong.yml"),
            workers: 2,
            engine: Engine::StandIn,
        }
    }
}

/// The running topology. Dropping it stops every process.
pub struct World {
    /// The Kong stand-in (declared first so that it stops first).
    pub gateway: Gateway,
    /// `mock-idp:9000`, issuer [`IDP_ISSUER`].
    pub idp: MockIdp,
    /// `partner-idp:9001`, issuer [`PARTNER_ISSUER`].
    pub partner_idp: MockIdp,
    /// `mock-google:9100`: metadata server, Google's JWKS, STS and IAM Credentials.
    pub google: MockGoogle,
    /// `mock-aws:9400`: EC2 instance metadata (the `/reports` route federates from it).
    pub aws: MockAws,
    /// Cloud Run stand-ins by host name (`cloudrun-orders`, …).
    pub cloudruns: BTreeMap<String, CloudRun>,
    /// `NAME=IP` entries given to the gateway (the processes listen on `IP:<kong.yml's port>`).
    pub resolve: Vec<String>,
}

/// Reads a file the world needs, or says how to make it.
fn required_file(path: &Path, what: &str) -> Result<()> {
    if !path.is_file() {
        bail!(
            "{what} not found at {}: run `make build` first (it writes dist/{FILTER}.wasm and \
             dist/{FILTER}.meta.json)",
            path.display()
        );
    }
    Ok(())
}

/// A loopback block for one world, `127.X.Y.0/24`, different for every world this process
/// starts and unlikely to meet another process's.
fn loopback_block() -> (u8, u8) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919));
    // 127.16.0.0 – 127.239.255.255: clear of 127.0.0.x, which everything else uses.
    (16 + (seed % 224) as u8, (seed >> 8) as u8)
}

impl World {
    /// Starts everything with the defaults (`dist/` filter, `kong/kong.yml`, 2 workers).
    pub fn start() -> Result<World> {
        World::start_with(WorldOptions::default())
    }

    /// Starts everything (in another loopback block if one of the fixed ports is taken).
    pub fn start_with(opts: WorldOptions) -> Result<World> {
        let mut last = None;
        for _ in 0..5 {
            match World::start_in(&opts, loopback_block()) {
                Ok(world) => return Ok(world),
                Err(e) if format!("{e:#}").contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no free loopback block")))
    }

    fn start_in(opts: &WorldOptions, (x, y): (u8, u8)) -> Result<World> {
        let ip_of = |name: &str| -> String {
            let k = TOPOLOGY.iter().position(|(n, _)| *n == name).unwrap_or(0) + 1;
            format!("127.{x}.{y}.{k}")
        };
        let listen = |name: &str, port: u16| Some(format!("{}:{port}", ip_of(name)));
        required_file(&opts.wasm, "the filter")?;
        required_file(&opts.meta, "the filter's meta.json")?;
        let kong_yml = std::fs::read_to_string(&opts.kong_yml)
            .with_context(|| format!("reading {}", opts.kong_yml.display()))?;
        let meta = std::fs::read_to_string(&opts.meta)
            .with_context(|| format!("reading {}", opts.meta.display()))?;

        let idp = MockIdp::start(IdpOptions {
            listen: listen("mock-idp", 9000),
            issuer: Some(IDP_ISSUER.into()),
            client: Some((IDP_CLIENT.0.into(), IDP_CLIENT.1.into())),
            token_audience: Some(IDP_TOKEN_AUDIENCE.into()),
            extra_args: vec!["--roles".into(), IDP_ROLES.into()],
        })
        .context("starting mock-idp")?;
        let partner_idp = MockIdp::start(IdpOptions {
            listen: listen("partner-idp", 9001),
            issuer: Some(PARTNER_ISSUER.into()),
            token_audience: Some(PARTNER_TOKEN_AUDIENCE.into()),
            ..IdpOptions::default()
        })
        .context("starting partner-idp")?;
        let google = MockGoogle::start(GoogleOptions {
            listen: listen("mock-google", 9100),
            ..GoogleOptions::default()
        })
        .context("starting mock-google")?;
        let aws = MockAws::start(AwsOptions {
            listen: listen("mock-aws", 9400),
            ..AwsOptions::default()
        })
        .context("starting mock-aws")?;
        let mut cloudruns = BTreeMap::new();
        for (name, port) in CLOUDRUNS {
            let cloudrun = CloudRun::start(CloudRunOptions {
                listen: listen(name, port),
                audience: Some(format!("http://{name}:{port}")),
                // Cloud Run fetches Google's keys itself, not through the gateway.
                google_jwks: Some(google.certs_url()),
                ..CloudRunOptions::default()
            })
            .with_context(|| format!("starting {name}"))?;
            cloudruns.insert(name.to_string(), cloudrun);
        }

        let resolve: Vec<String> = TOPOLOGY
            .iter()
            .map(|(name, _)| format!("{name}={}", ip_of(name)))
            .collect();

        let mut gw = GatewayOpts {
            kong_yml,
            filters: vec![(FILTER.into(), opts.wasm.clone(), Some(meta))],
            workers: opts.workers,
            engine: opts.engine,
            ..GatewayOpts::default()
        }
        .shm_kv(&format!("{FILTER}=12m"))
        .lua_resolver();
        for entry in &resolve {
            gw = gw.resolve(entry);
        }
        let gateway = Gateway::start(&gw).context("starting the gateway with kong.yml")?;
        Ok(World {
            gateway,
            idp,
            partner_idp,
            google,
            aws,
            cloudruns,
            resolve,
        })
    }

    /// A Cloud Run stand-in by host name (`cloudrun-orders`, `cloudrun-reports`,
    /// `cloudrun-partners`).
    pub fn cloudrun(&self, name: &str) -> Result<&CloudRun> {
        self.cloudruns
            .get(name)
            .with_context(|| format!("no Cloud Run stand-in named {name}"))
    }

    /// The IdP that signs `caller`'s tokens.
    pub fn idp_of(&self, caller: Caller) -> &MockIdp {
        match caller {
            Caller::Partner => &self.partner_idp,
            _ => &self.idp,
        }
    }

    /// Mints a token for `caller` with claim overrides on top of the valid ones (`null` removes a
    /// claim, e.g. `{"exp": 1}` for an expired token).
    pub fn mint(&self, caller: Caller, overrides: &Value) -> Result<String> {
        let mut req = caller.mint_request();
        if let Some(extra) = overrides.as_object() {
            for (k, v) in extra {
                req = req.claim(k, v.clone());
            }
        } else if !overrides.is_null() {
            bail!("claim overrides must be a JSON object or null");
        }
        self.idp_of(caller).mint(&req)
    }

    /// A valid token for `caller`.
    pub fn token(&self, caller: Caller) -> Result<String> {
        self.mint(caller, &Value::Null)
    }

    /// `GET path` through the gateway, with `Authorization: Bearer <token>` when given and any
    /// extra headers.
    pub fn call(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = &bearer {
            all.push(("Authorization", b.as_str()));
        }
        Ok(http::get(&self.gateway.url(path), &all)?)
    }

    /// `GET caller.path()` with a fresh valid token for `caller`.
    pub fn call_as(&self, caller: Caller) -> Result<Response> {
        let token = self.token(caller)?;
        self.call(caller.path(), Some(&token), &[])
    }

    /// The filter metrics (`pw_cloudrun_oidc_*` → value).
    pub fn metrics(&self) -> Result<Map<String, Value>> {
        match self.gateway.metrics()? {
            Value::Object(m) => Ok(m),
            other => bail!("metrics are not an object: {other}"),
        }
    }
}

/// What Cloud Run saw, from its echo (the 200 body of a forwarded request).
#[derive(Clone, Debug)]
pub struct Echo(pub Value);

impl Echo {
    /// Parses a forwarded response's body.
    pub fn from_response(resp: &Response) -> Result<Echo> {
        Ok(Echo(resp.json()?))
    }

    /// Every value Cloud Run received for `name` (lower-case).
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.0["headers"][name.to_ascii_lowercase()]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }

    /// The bearer token of a header (`Bearer <token>`).
    pub fn bearer(&self, name: &str) -> Option<String> {
        self.header(name).and_then(|v| {
            v.split_once(' ')
                .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim().to_string())
        })
    }
}

/// The unverified claims of a compact JWT (for display and checks on tokens already verified
/// by someone else).
pub fn claims_of(token: &str) -> Result<Value> {
    crate::jose::decode(token)?.claims()
}
