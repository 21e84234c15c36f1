//! `mock-aws`: the EC2 instance metadata service as Workload Identity Federation reads it —
//! IMDSv2 session tokens, the availability zone, the instance role and its temporary
//! credentials — with faults and counters (see spec/README.md). mock-google's STS checks the
//! credentials' signatures with the same key id, secret, session token and region.

use super::common::{now, Counters};
use super::server::{self, common_control, generic_fault, Faults, Outcome, Reply, Req};
use anyhow::Result;
use clap::Parser;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const TAG: &str = "mock-aws";
pub const SESSION_PATH: &str = "/latest/api/token";
pub const ZONE_PATH: &str = "/latest/meta-data/placement/availability-zone";
pub const ROLES_PATH: &str = "/latest/meta-data/iam/security-credentials";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Defaults shared with mock-google's `--aws-*` options.
pub const DEFAULT_ACCESS_KEY_ID: &str = "ASIAMOCKKONGGATEWAY1";
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "mock/Secret+Access/Key/For/The/Spec/World0";
pub const DEFAULT_SESSION_TOKEN: &str =
    "IQoJb3JpZ2luX2VjEMOCK//////////session/token+for/the/spec/world==";
pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_ROLE: &str = "kong-gateway-role";

/// Command line of `mock-aws`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "mock-aws",
    about = "Mock EC2 instance metadata service (IMDSv1/v2: zone, role, credentials; see spec/README.md)"
)]
pub struct Args {
    /// Main listener (the metadata paths), e.g. 127.0.0.1:0.
    #[arg(long)]
    pub listen: String,
    /// Control listener (`/__control/...`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control_listen: String,
    /// The instance's region (its availability zone is `<region>a`).
    #[arg(long, default_value = DEFAULT_REGION)]
    pub region: String,
    /// The instance role's name.
    #[arg(long, default_value = DEFAULT_ROLE)]
    pub role: String,
    #[arg(long, default_value = DEFAULT_ACCESS_KEY_ID)]
    pub access_key_id: String,
    #[arg(long, default_value = DEFAULT_SECRET_ACCESS_KEY)]
    pub secret_access_key: String,
    #[arg(long, default_value = DEFAULT_SESSION_TOKEN)]
    pub session_token: String,
    /// Lifetime of the credentials it hands out (s).
    #[arg(long, default_value_t = 21_600)]
    pub credentials_ttl: i64,
    /// Also answer requests without an IMDSv2 session token (IMDSv1).
    #[arg(long)]
    pub imdsv1: bool,
}

struct Aws {
    args: Args,
    /// IMDSv2 session tokens and when they expire.
    sessions: Mutex<HashMap<String, i64>>,
    faults: Arc<Faults>,
    counters: Counters,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let _ = openssl::rand::rand_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(status: u16, body: impl Into<String>) -> Reply {
    Reply::bytes(status, "text/plain", body.into())
}

/// Seconds since the epoch as IMDS writes times: `2015-08-30T12:36:00Z`.
fn iso8601(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = crate::gateway::log::civil_time(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

impl Aws {
    /// IMDSv2: a valid session token, or IMDSv1 allowed.
    fn authorised(&self, req: &Req) -> Result<(), Reply> {
        let Some(token) = req.header(TOKEN_HEADER) else {
            return if self.args.imdsv1 {
                Ok(())
            } else {
                Err(text(401, "Unauthorized"))
            };
        };
        let valid = self
            .sessions
            .lock()
            .map(|s| s.get(token).is_some_and(|exp| *exp > now()))
            .unwrap_or(false);
        if valid {
            Ok(())
        } else {
            Err(text(401, "Unauthorized"))
        }
    }

    fn session(&self, req: &Req) -> Reply {
        if req.method != "PUT" {
            return text(405, "Method Not Allowed");
        }
        if req.headers.contains_key("x-forwarded-for") {
            return text(403, "Forbidden");
        }
        let ttl = req
            .header(TTL_HEADER)
            .and_then(|v| v.trim().parse::<i64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=21_600).contains(t)) else {
            return text(400, "Bad Request");
        };
        let token = format!("AQAEA{}==", random_hex(24));
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, exp| *exp > now());
            sessions.insert(token.clone(), now() + ttl);
        }
        text(200, token).with_header(TTL_HEADER, &ttl.to_string())
    }

    fn zone(&self, fault: &str) -> Reply {
        let region = if fault == "wrong_region" {
            if self.args.region == "eu-north-1" {
                "us-west-2"
            } else {
                "eu-north-1"
            }
        } else {
            self.args.region.as_str()
        };
        text(200, format!("{region}a"))
    }

    fn roles(&self, fault: &str) -> Reply {
        if fault == "no_role" {
            return text(404, "Not Found");
        }
        text(200, self.args.role.clone())
    }

    fn credentials(&self, role: &str, fault: &str) -> Reply {
        if role != self.args.role || fault == "no_role" {
            return text(404, "Not Found");
        }
        let t = now();
        let expiration = if fault == "expired" {
            t - 60
        } else {
            t + self.args.credentials_ttl
        };
        let secret = if fault == "wrong_secret" {
            "not/the/secret/AWS/knows/for/this/key/id00"
        } else {
            self.args.secret_access_key.as_str()
        };
        Reply::json(
            200,
            &json!({
                "Code": "Success",
                "LastUpdated": iso8601(t),
                "Type": "AWS-HMAC",
                "AccessKeyId": self.args.access_key_id,
                "SecretAccessKey": secret,
                "Token": self.args.session_token,
                "Expiration": iso8601(expiration),
            }),
        )
    }
}

async fn handle_main(aws: Arc<Aws>, req: Req) -> Outcome {
    let path = req.path.as_str();
    let role_path = path
        .strip_prefix(ROLES_PATH)
        .map(|rest| rest.trim_start_matches('/'));
    let endpoint = match (path, role_path) {
        (SESSION_PATH, _) => "session",
        (ZONE_PATH, _) => "region",
        (_, Some("")) => "role",
        (_, Some(_)) => "credentials",
        _ => return text(404, "Not Found").into(),
    };
    aws.counters.inc(endpoint);
    let fault = aws.faults.active(endpoint);
    eprintln!(
        "[{TAG}] {} {path} ({endpoint}, fault {fault:?})",
        req.method
    );
    let f = fault.as_deref().unwrap_or("none");
    if endpoint != "session" {
        if req.method != "GET" {
            return text(405, "Method Not Allowed").into();
        }
        if let Err(reply) = aws.authorised(&req) {
            return reply.into();
        }
    }
    generic_fault(f, || match endpoint {
        "session" => aws.session(&req),
        "region" => aws.zone(f),
        "role" => aws.roles(f),
        _ => aws.credentials(role_path.unwrap_or_default(), f),
    })
}

async fn handle_control(aws: Arc<Aws>, req: Req) -> Outcome {
    if let Some(reply) = common_control(&req, &aws.faults, &aws.counters).await {
        return reply.into();
    }
    let reply = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/__control/info") => Reply::json(
            200,
            &json!({
                "region": aws.args.region,
                "role": aws.args.role,
                "access_key_id": aws.args.access_key_id,
                "imdsv1": aws.args.imdsv1,
                "session_path": SESSION_PATH,
                "zone_path": ZONE_PATH,
                "roles_path": ROLES_PATH,
            }),
        ),
        _ => Reply::no_control(&req),
    };
    reply.into()
}

/// Runs `mock-aws` until killed.
pub async fn serve(args: Args) -> Result<()> {
    let main = server::bind(&args.listen).await?;
    let control = server::bind(&args.control_listen).await?;
    let endpoints = ["session", "region", "role", "credentials"];
    let aws = Arc::new(Aws {
        sessions: Mutex::new(HashMap::new()),
        faults: Faults::new(
            &["expired", "wrong_region", "wrong_secret", "no_role"],
            &endpoints,
        ),
        counters: Counters::new(&endpoints),
        args,
    });
    let faults = Arc::clone(&aws.faults);
    server::serve_until_ctrl_c(
        TAG,
        (main, control),
        aws,
        faults,
        (handle_main, handle_control),
        None,
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
    fn writes_imds_times() {
        assert_eq!(iso8601(1_440_938_160), "2015-08-30T12:36:00Z");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }
}
