//! Workload Identity Federation end to end (`google_id_token.source: external_account`): the
//! filter proves the gateway's identity from where it runs — EC2 instance metadata (mock-aws,
//! IMDSv2 or v1) or a token URL (mock-idp's workload token endpoint) —, exchanges it at mock
//! Google's STS, asks IAM Credentials for an ID token of the impersonated service account, and
//! the Cloud Run stand-in accepts it. Every step failing gives 503 with `Retry-After`, nothing
//! upstream, a log line naming the step, and a 200 once the fault ends; STS, IAM and metadata
//! call counts under load show the caching.

use anyhow::{Context, Result};
use cloudrun_spec::engine_tests;
use cloudrun_spec::jose;
use cloudrun_spec::testkit::engine::Engine;
use cloudrun_spec::testkit::http::{self, Response};
use cloudrun_spec::testkit::mocks::{
    AwsOptions, CloudRun, CloudRunOptions, GoogleOptions, IdpOptions, MockAws, MockGoogle, MockIdp,
};
use cloudrun_spec::testkit::stack::{eventually, start_gateway, Stack, AUDIENCE};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Every client call is bounded: a hang is a failure, not a stuck test.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a fault may take to heal, generous for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(45);

/// Where the gateway's own identity comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    Aws { imdsv2: bool },
    Url { json: bool },
}

/// The mocks, before the gateway starts (so a fault is in place before the first tick).
struct Mocks<'a> {
    idp: &'a MockIdp,
    google: &'a MockGoogle,
    aws: Option<&'a MockAws>,
}

struct World {
    stack: Stack,
    aws: Option<MockAws>,
}

impl World {
    fn google(&self) -> &MockGoogle {
        self.stack.google.as_ref().expect("mock google")
    }

    fn aws(&self) -> &MockAws {
        self.aws.as_ref().expect("mock aws")
    }

    fn call(&self) -> Result<Response> {
        let token = self.stack.valid_token()?;
        let auth = format!("Bearer {token}");
        let started = Instant::now();
        http::get_timeout(
            &self.stack.gateway.url("/orders"),
            &[("authorization", auth.as_str())],
            CLIENT_TIMEOUT,
        )
        .with_context(|| format!("GET /orders after {:?} (a hang?)", started.elapsed()))
    }

    /// (sts, iam) calls seen by mock Google.
    fn google_calls(&self) -> Result<(u64, u64)> {
        Ok((self.google().counter("sts")?, self.google().counter("iam")?))
    }

    /// Every metadata call mock-aws saw.
    fn metadata_calls(&self) -> Result<u64> {
        let Some(aws) = &self.aws else { return Ok(0) };
        Ok(aws.counters()?.values().sum())
    }

    fn recovers(&self, what: &str) -> Result<()> {
        let healed = eventually(RECOVERY, || Ok(self.call()?.status == 200))?;
        assert!(healed, "{what}: no recovery after the fault ended");
        Ok(())
    }
}

fn start(
    engine: Engine,
    subject: Subject,
    workers: usize,
    before: impl FnOnce(&Mocks<'_>) -> Result<()>,
) -> Result<World> {
    start_with(engine, subject, workers, before, |_| {})
}

/// [`start`] with a last edit of the filter configuration.
fn start_with(
    engine: Engine,
    subject: Subject,
    workers: usize,
    before: impl FnOnce(&Mocks<'_>) -> Result<()>,
    tweak: impl FnOnce(&mut Value),
) -> Result<World> {
    let idp = MockIdp::start(IdpOptions::with_audience(AUDIENCE))?;
    let google = MockGoogle::start(GoogleOptions {
        extra_args: vec![
            "--sts-jwks-url".into(),
            idp.jwks_url(),
            "--sts-issuer".into(),
            idp.issuer().into(),
        ],
        ..GoogleOptions::default()
    })?;
    let aws = match subject {
        Subject::Aws { imdsv2 } => Some(MockAws::start(AwsOptions {
            imdsv1: !imdsv2,
            ..AwsOptions::default()
        })?),
        Subject::Url { .. } => None,
    };
    let cloudrun = CloudRun::start(CloudRunOptions {
        google_jwks: Some(google.certs_url()),
        ..CloudRunOptions::default()
    })?;
    let (token_type, source) = match (subject, &aws) {
        (Subject::Aws { imdsv2 }, Some(aws)) => (
            "urn:ietf:params:aws:token-type:aws4_request",
            aws.credential_source(imdsv2),
        ),
        (Subject::Url { json }, _) => {
            let format = if json {
                json!({"type": "json", "subject_token_field_name": "access_token"})
            } else {
                json!({"type": "text"})
            };
            (
                "urn:ietf:params:oauth:token-type:jwt",
                json!({
                    "url": idp.identity_url(google.sts_jwt_audience(), json),
                    "headers": {"Metadata": "True"},
                    "format": format,
                }),
            )
        }
        _ => unreachable!(),
    };
    // What `gcloud iam workload-identity-pools create-cred-config` writes, pointed at the mocks.
    let credential_configuration = json!({
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": google.sts_audience(),
        "subject_token_type": token_type,
        "token_url": google.sts_url(),
        "credential_source": source,
        "service_account_impersonation_url": google.impersonation_url(),
    });
    let mut config = json!({
        "issuers": [{"issuer": idp.issuer(), "audiences": [AUDIENCE]}],
        "claims_to_headers": {"sub": "x-user-id"},
        "callout_timeout_ms": 1000,
        "google_id_token": {
            "audience": cloudrun.audience(),
            "source": "external_account",
            "external_account": credential_configuration,
        },
    });
    tweak(&mut config);
    before(&Mocks {
        idp: &idp,
        google: &google,
        aws: aws.as_ref(),
    })?;
    let gateway = start_gateway(&config, cloudrun.http_addr(), workers, engine)?;
    Ok(World {
        stack: Stack {
            idp,
            google: Some(google),
            cloudrun,
            gateway,
            config,
        },
        aws,
    })
}

fn assert_unavailable(resp: &Response, what: &str) {
    assert_eq!(resp.status, 503, "{what}: {}", resp.text());
    assert!(
        resp.header("retry-after").is_some(),
        "{what}: no Retry-After"
    );
}

/// What Cloud Run received: a Google ID token for its URL and the impersonated account.
fn check_cloud_run_saw_a_google_token(world: &World) -> Result<()> {
    let last = world
        .stack
        .upstream_last()?
        .context("Cloud Run saw nothing")?;
    assert_eq!(last["status"], json!(200), "{last}");
    let auth = last["headers"]["authorization"][0]
        .as_str()
        .unwrap_or_default();
    let token = auth.strip_prefix("Bearer ").context("no bearer")?;
    let claims = jose::decode(token)?.claims()?;
    assert_eq!(claims["iss"], json!("https://accounts.google.com"));
    assert_eq!(claims["aud"], json!(world.stack.cloudrun.audience()));
    assert_eq!(claims["email"], json!(world.google().client_email()));
    assert!(
        last["headers"]["x-forwarded-authorization"][0]
            .as_str()
            .is_some_and(|v| v.starts_with("Bearer ")),
        "{last}"
    );
    Ok(())
}

fn aws_imdsv2_identity_reaches_cloud_run_with_a_google_token(engine: Engine) -> Result<()> {
    let world = start(engine, Subject::Aws { imdsv2: true }, 2, |_| Ok(()))?;
    let resp = world.call()?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    check_cloud_run_saw_a_google_token(&world)?;
    let aws = world.aws().counters()?;
    for endpoint in ["session", "region", "role", "credentials"] {
        assert!(aws[endpoint] >= 1, "{endpoint}: {aws:?}");
    }
    let (sts, iam) = world.google_calls()?;
    assert!(sts >= 1 && iam >= 1, "sts {sts} iam {iam}");
    Ok(())
}

fn aws_imdsv1_identity_needs_no_session_token(engine: Engine) -> Result<()> {
    let world = start(engine, Subject::Aws { imdsv2: false }, 1, |_| Ok(()))?;
    assert_eq!(world.call()?.status, 200);
    check_cloud_run_saw_a_google_token(&world)?;
    assert_eq!(world.aws().counter("session")?, 0);
    Ok(())
}

fn url_identity_in_json_and_text_reaches_cloud_run(engine: Engine) -> Result<()> {
    for json in [true, false] {
        let world = start(engine, Subject::Url { json }, 1, |_| Ok(()))?;
        let resp = world.call()?;
        assert_eq!(resp.status, 200, "json {json}: {}", resp.text());
        check_cloud_run_saw_a_google_token(&world)?;
        assert!(world.stack.idp.counter("identity")? >= 1);
    }
    Ok(())
}

/// `requests` requests over 4 client threads; every status.
fn load(world: &World, requests: usize) -> Vec<u16> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| -> Vec<u16> {
                    (0..requests / 4)
                        .map(|_| world.call().map(|r| r.status).unwrap_or(0))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn two_hundred_requests_over_two_workers_federate_at_most_twice(engine: Engine) -> Result<()> {
    for subject in [Subject::Aws { imdsv2: true }, Subject::Url { json: true }] {
        let world = start(engine, subject, 2, |_| Ok(()))?;
        assert_eq!(world.call()?.status, 200);
        let statuses = load(&world, 200);
        assert_eq!(statuses.len(), 200);
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        let (sts, iam) = world.google_calls()?;
        let metadata = world.metadata_calls()?;
        let subject_calls = world.stack.idp.counter("identity")?;
        eprintln!(
            "{subject:?}: 201 requests over 2 workers: STS {sts}, IAM {iam}, AWS metadata {metadata}, subject URL {subject_calls}, mints {}",
            world.stack.metric("google_token_mints")?
        );
        assert!((1..=2).contains(&sts), "{subject:?}: {sts} STS exchanges");
        assert!(
            (1..=2).contains(&iam),
            "{subject:?}: {iam} generateIdToken calls"
        );
        if world.aws.is_some() {
            let credentials = world.aws().counter("credentials")?;
            assert!(
                (1..=2).contains(&credentials),
                "{credentials} credential fetches"
            );
            assert!(metadata <= 8, "{metadata} metadata calls");
        } else {
            assert!((1..=2).contains(&subject_calls), "{subject_calls}");
        }
        assert_eq!(world.stack.metric("google_token_mints")?, iam);
    }
    Ok(())
}

fn cold_burst_mints_once_per_worker_at_most(engine: Engine) -> Result<()> {
    // No first request: 80 concurrent callers meet an empty cache on both workers. Each worker
    // runs one cold chain (its other callers get 503 + Retry-After meanwhile), the tick at most
    // one more under the shared lease.
    let world = start(engine, Subject::Aws { imdsv2: true }, 2, |_| Ok(()))?;
    let statuses = load(&world, 80);
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    let (sts, iam) = world.google_calls()?;
    let credentials = world.aws().counter("credentials")?;
    eprintln!(
        "cold burst of 80: {} x 200, {} x 503; STS {sts}, IAM {iam}, AWS credentials {credentials}",
        statuses.iter().filter(|s| **s == 200).count(),
        statuses.iter().filter(|s| **s == 503).count()
    );
    assert!(iam <= 3, "{iam} generateIdToken calls");
    assert!(sts <= 3, "{sts} STS exchanges");
    assert!(credentials <= 3, "{credentials} credential fetches");
    world.recovers("cold burst")?;
    Ok(())
}

/// One failing step: the fault is set before the gateway starts; valid callers get 503 with
/// `Retry-After`, nothing reaches Cloud Run, the log names the step; clearing heals it.
fn fails_then_recovers(
    engine: Engine,
    what: &str,
    subject: Subject,
    step_log: &str,
    fault: impl FnOnce(&Mocks<'_>) -> Result<()>,
    clear: impl FnOnce(&World) -> Result<()>,
) -> Result<()> {
    let world = start(engine, subject, 2, fault)?;
    for _ in 0..3 {
        assert_unavailable(&world.call()?, what);
    }
    assert_eq!(
        world.stack.upstream_requests()?,
        0,
        "{what}: reached Cloud Run"
    );
    assert!(
        world
            .stack
            .gateway
            .wait_for_log(step_log, Duration::from_secs(10)),
        "{what}: the log never named {step_log:?}"
    );
    assert!(
        world.stack.metric("google_token_mint_failures")? >= 1,
        "{what}"
    );
    clear(&world)?;
    world.recovers(what)?;
    check_cloud_run_saw_a_google_token(&world)
}

fn aws_metadata_faults_give_503_then_recover(engine: Engine) -> Result<()> {
    let cases: [(&str, &str, &str); 11] = [
        (
            "session",
            "status500",
            "AWS IMDSv2 session token (imdsv2_session_token_url): HTTP status 500",
        ),
        (
            "session",
            "hang",
            "AWS IMDSv2 session token (imdsv2_session_token_url): callout failed: timeout",
        ),
        (
            "region",
            "garbage",
            "AWS region (region_url): answer is not UTF-8",
        ),
        (
            "role",
            "status500",
            "AWS instance role (url): HTTP status 500",
        ),
        (
            "role",
            "no_role",
            "AWS instance role (url): HTTP status 404",
        ),
        (
            "credentials",
            "garbage",
            "AWS role credentials (url/<role>): answer is not UTF-8",
        ),
        (
            "credentials",
            "truncated",
            "AWS role credentials (url/<role>): not the credentials JSON",
        ),
        (
            "credentials",
            "expired",
            "AWS role credentials (url/<role>): credentials already expired",
        ),
        (
            "credentials",
            "hang",
            "AWS role credentials (url/<role>): callout failed: timeout",
        ),
        // Answers that look fine but STS refuses: another region's zone, a wrong secret.
        (
            "region",
            "wrong_region",
            "STS token exchange (token_url): HTTP status 400 (invalid_grant)",
        ),
        (
            "credentials",
            "wrong_secret",
            "STS token exchange (token_url): HTTP status 400 (invalid_grant)",
        ),
    ];
    for (endpoint, fault, log) in cases {
        let what = format!("mock-aws {endpoint} {fault}");
        fails_then_recovers(
            engine,
            &what,
            Subject::Aws { imdsv2: true },
            log,
            |m| m.aws.context("aws")?.fault_only(fault, &[endpoint]),
            |w| w.aws().clear_fault(),
        )?;
    }
    fails_then_recovers(
        engine,
        "mock-aws refuse",
        Subject::Aws { imdsv2: true },
        "callout failed: broken connection",
        |m| m.aws.context("aws")?.fault("refuse"),
        |w| w.aws().clear_fault(),
    )
}

fn sts_iam_and_subject_url_faults_give_503_then_recover(engine: Engine) -> Result<()> {
    let google_cases: [(&str, &str, &str); 8] = [
        ("sts", "status500", "STS token exchange (token_url): HTTP status 500"),
        ("sts", "denied", "STS token exchange (token_url): HTTP status 400 (invalid_grant)"),
        ("sts", "garbage", "STS token exchange (token_url): no access_token in the answer"),
        ("sts", "hang", "STS token exchange (token_url): callout failed: timeout"),
        ("iam", "status500", "IAM generateIdToken (service_account_impersonation_url): HTTP status 500"),
        ("iam", "denied", "IAM generateIdToken (service_account_impersonation_url): HTTP status 403 (PERMISSION_DENIED)"),
        ("iam", "truncated", "IAM generateIdToken (service_account_impersonation_url): no token in the answer"),
        ("iam", "reset", "IAM generateIdToken (service_account_impersonation_url): callout failed"),
    ];
    for (endpoint, fault, log) in google_cases {
        let what = format!("mock-google {endpoint} {fault}");
        fails_then_recovers(
            engine,
            &what,
            Subject::Url { json: true },
            log,
            |m| m.google.fault_only(fault, &[endpoint]),
            |w| w.google().clear_fault(),
        )?;
    }
    for (fault, log) in [
        (
            "status500",
            "subject token (credential_source.url): HTTP status 500",
        ),
        (
            "garbage",
            "subject token (credential_source.url): answer is not JSON",
        ),
    ] {
        let what = format!("subject URL {fault}");
        fails_then_recovers(
            engine,
            &what,
            Subject::Url { json: true },
            log,
            |m| m.idp.fault_only(fault, &["identity"]),
            |w| w.stack.idp.clear_fault(),
        )?;
    }
    Ok(())
}

fn cached_token_keeps_forwarding_while_federation_is_down(engine: Engine) -> Result<()> {
    let world = start(engine, Subject::Aws { imdsv2: true }, 2, |_| Ok(()))?;
    assert_eq!(world.call()?.status, 200);
    world.aws().fault("refuse")?;
    world.google().fault_only("status500", &["sts", "iam"])?;
    for _ in 0..6 {
        let resp = world.call()?;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    Ok(())
}

fn revoked_sts_token_is_exchanged_again_with_the_cached_credentials(engine: Engine) -> Result<()> {
    // ID tokens live 40 s and are refreshed 30 s ahead, i.e. about 10 s after each mint. The
    // background refresh meets IAM refusing the cached STS token (revoked): the filter drops it,
    // exchanges the still-cached AWS credentials again (no metadata call) and mints.
    let world = start_with(
        engine,
        Subject::Aws { imdsv2: true },
        2,
        |m| m.google.set_token_ttl(40),
        |c| c["google_id_token"]["refresh_before_expiry_seconds"] = json!(30),
    )?;
    assert_eq!(world.call()?.status, 200);
    let before_token =
        world.stack.upstream_last()?.context("upstream")?["headers"]["authorization"][0].clone();
    let credentials = world.aws().counter("credentials")?;
    let (sts, _) = world.google_calls()?;
    world.google().revoke_sts_tokens()?;
    let refreshed = eventually(Duration::from_secs(30), || {
        Ok(world
            .stack
            .gateway
            .stderr_lines()
            .iter()
            .any(|l| l.contains("refused cached credentials")))
    })?;
    assert!(refreshed, "IAM never refused the revoked STS token");
    assert!(
        eventually(
            Duration::from_secs(10),
            || Ok(world.google_calls()?.0 > sts)
        )?,
        "no new exchange"
    );
    let mut seen_new = false;
    for _ in 0..20 {
        assert_eq!(world.call()?.status, 200);
        seen_new |= world.stack.upstream_last()?.context("upstream")?["headers"]["authorization"]
            [0]
            != before_token;
        if seen_new {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(seen_new, "requests still carry the first token");
    assert_eq!(
        world.aws().counter("credentials")?,
        credentials,
        "the cached AWS credentials were reused"
    );
    Ok(())
}

engine_tests!(
    aws_imdsv2_identity_reaches_cloud_run_with_a_google_token,
    aws_imdsv1_identity_needs_no_session_token,
    url_identity_in_json_and_text_reaches_cloud_run,
    two_hundred_requests_over_two_workers_federate_at_most_twice,
    cold_burst_mints_once_per_worker_at_most,
    aws_metadata_faults_give_503_then_recover,
    sts_iam_and_subject_url_faults_give_503_then_recover,
    cached_token_keeps_forwarding_while_federation_is_down,
    revoked_sts_token_is_exchanged_again_with_the_cached_credentials,
);
