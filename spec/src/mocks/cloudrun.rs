//! `cloudrun`: a Cloud Run stand-in upstream. Accepts only Google-signed RS256 ID tokens for its
//! audience (403 with the reason otherwise) and echoes the request as JSON (see spec/README.md).

use super::common::{now, Counters};
use super::server::{self, common_control, generic_fault, Faults, Outcome, Reply, Req};
use crate::jose;
use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TAG: &str = "cloudrun";
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

/// Command line of `cloudrun`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "cloudrun",
    about = "Cloud Run stand-in: IAM invoker check on Google ID tokens, then echo (see spec/README.md)"
)]
pub struct Args {
    /// Main listener, e.g. 127.0.0.1:0.
    #[arg(long)]
    pub listen: String,
    /// Control listener (`/__control/...`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control_listen: String,
    /// The `aud` tokens must carry. Default: http://<listen address>.
    #[arg(long)]
    pub audience: Option<String>,
    /// URL of Google's JWKS (e.g. mock-google's /oauth2/v3/certs).
    #[arg(long, required_unless_present = "no_auth")]
    pub google_jwks: Option<String>,
    /// Accept every request without checking a token.
    #[arg(long)]
    pub no_auth: bool,
}

struct CloudRun {
    args: Args,
    audience: String,
    jwks: Mutex<Option<Value>>,
    last: Mutex<Option<Value>>,
    faults: Arc<Faults>,
    counters: Counters,
}

/// Why a request was refused: status and reason.
struct Refusal(u16, String);

fn refuse(why: impl Into<String>) -> Refusal {
    Refusal(403, why.into())
}

impl CloudRun {
    async fn fetch_jwks(&self) -> Result<Value> {
        let url = self
            .args
            .google_jwks
            .as_deref()
            .context("no --google-jwks")?;
        let (status, body) = super::client::get(url, JWKS_TIMEOUT).await?;
        if status != 200 {
            bail!("{url} answered {status}");
        }
        let jwks: Value = serde_json::from_slice(&body).context("JWKS is not JSON")?;
        if !jwks.get("keys").is_some_and(Value::is_array) {
            bail!("JWKS has no keys array");
        }
        if let Ok(mut cache) = self.jwks.lock() {
            *cache = Some(jwks.clone());
        }
        Ok(jwks)
    }

    fn cached_jwks_with(&self, kid: Option<&str>) -> Option<Value> {
        let cache = self.jwks.lock().ok()?.clone()?;
        let keys = cache.get("keys").and_then(Value::as_array)?;
        let known = keys
            .iter()
            .any(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid);
        known.then_some(cache)
    }

    /// The IAM invoker check. Like Cloud Run, it reads `X-Serverless-Authorization` when present
    /// and `Authorization` otherwise (the other header then reaches the service untouched).
    async fn check(&self, req: &Req) -> Result<(), Refusal> {
        let Some(auth) = req
            .header("x-serverless-authorization")
            .or_else(|| req.header("authorization"))
        else {
            return Err(refuse("no Authorization header"));
        };
        let token = match auth.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
                t.trim()
            }
            _ => return Err(refuse("Authorization is not a Bearer token")),
        };
        let decoded = jose::decode(token).map_err(|e| refuse(format!("malformed token: {e}")))?;
        if decoded.alg() != Some("RS256") {
            return Err(refuse(format!("alg {:?} is not RS256", decoded.alg())));
        }
        let jwks = match self.cached_jwks_with(decoded.kid()) {
            Some(j) => j,
            None => self
                .fetch_jwks()
                .await
                .map_err(|e| Refusal(503, format!("google JWKS unavailable: {e:#}")))?,
        };
        let verified =
            jose::verify_rs256(token, &jwks).map_err(|e| refuse(format!("signature: {e}")))?;
        let claims = verified
            .claims()
            .map_err(|e| refuse(format!("claims: {e}")))?;
        let iss = claims.get("iss").and_then(Value::as_str);
        if !matches!(
            iss,
            Some("https://accounts.google.com" | "accounts.google.com")
        ) {
            return Err(refuse(format!("iss {iss:?} is not Google")));
        }
        let aud = claims.get("aud").and_then(Value::as_str);
        if aud != Some(self.audience.as_str()) {
            return Err(refuse(format!("aud {aud:?} is not {:?}", self.audience)));
        }
        match claims.get("exp").and_then(Value::as_i64) {
            Some(exp) if exp > now() => Ok(()),
            Some(exp) => Err(refuse(format!("token expired at {exp}"))),
            None => Err(refuse("no integer exp")),
        }
    }
}

/// The echo body: method, path, query, uri, headers (lower-case name → values), body.
pub fn echo(req: &Req) -> Value {
    let mut headers: Map<String, Value> = Map::new();
    for (name, value) in &req.headers {
        let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            Some(Value::Array(list)) => list.push(v),
            _ => {
                headers.insert(name.as_str().to_string(), Value::Array(vec![v]));
            }
        }
    }
    let uri = if req.query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.query)
    };
    json!({
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "uri": uri,
        "headers": headers,
        "body": String::from_utf8_lossy(&req.body),
    })
}

async fn handle_main(cr: Arc<CloudRun>, req: Req) -> Outcome {
    cr.counters.inc("requests");
    let mut seen = echo(&req);
    let verdict = if cr.args.no_auth {
        Ok(())
    } else {
        cr.check(&req).await
    };
    let reply = match &verdict {
        Ok(()) => {
            cr.counters.inc("accepted");
            seen["status"] = json!(200);
            Reply::json(200, &echo(&req))
        }
        Err(Refusal(status, why)) => {
            eprintln!("[{TAG}] refused {} {}: {why}", req.method, req.path);
            seen["status"] = json!(status);
            seen["reason"] = json!(why);
            Reply::json(
                *status,
                &json!({"error": if *status == 403 { "forbidden" } else { "unavailable" }, "reason": why}),
            )
        }
    };
    if let Ok(mut last) = cr.last.lock() {
        *last = Some(seen);
    }
    match cr.faults.active("upstream") {
        Some(f) => generic_fault(&f, || reply),
        None => reply.into(),
    }
}

async fn handle_control(cr: Arc<CloudRun>, req: Req) -> Outcome {
    if let Some(reply) = common_control(&req, &cr.faults, &cr.counters).await {
        return reply.into();
    }
    let reply = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/__control/last") => match cr.last.lock().ok().and_then(|l| l.clone()) {
            Some(last) => Reply::json(200, &last),
            None => Reply::error(404, "not_found", "no request yet"),
        },
        ("GET", "/__control/info") => Reply::json(
            200,
            &json!({"audience": cr.audience, "google_jwks": cr.args.google_jwks, "no_auth": cr.args.no_auth}),
        ),
        _ => Reply::no_control(&req),
    };
    reply.into()
}

/// Runs `cloudrun` until killed.
pub async fn serve(args: Args) -> Result<()> {
    let main = server::bind(&args.listen).await?;
    let control = server::bind(&args.control_listen).await?;
    let http_addr = main.local_addr()?;
    let cr = Arc::new(CloudRun {
        audience: args
            .audience
            .clone()
            .unwrap_or_else(|| format!("http://{http_addr}")),
        jwks: Mutex::new(None),
        last: Mutex::new(None),
        faults: Faults::new(&[], &["upstream"]),
        counters: Counters::new(&["requests", "accepted"]),
        args,
    });
    let banner = Some(format!("audience {}", cr.audience));
    let faults = Arc::clone(&cr.faults);
    server::serve_until_ctrl_c(
        TAG,
        (main, control),
        cr,
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
