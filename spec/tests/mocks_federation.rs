//! The Workload Identity Federation mocks over real HTTP: `mock-aws` (EC2 instance metadata,
//! IMDSv1/v2 rules and faults), mock-google's STS (AWS subject tokens checked by the mocks' own
//! SigV4 verifier — here fed by the filter's independent signer —, JWT subject tokens checked
//! against mock-idp's keys) and IAM Credentials `generateIdToken`, and mock-idp's workload token
//! endpoint.

use cloudrun_oidc::google::federation::aws::{subject_token, RoleCredentials};
use cloudrun_oidc::google::federation::sigv4::Credentials;
use cloudrun_spec::jose;
use cloudrun_spec::mocks::aws::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_REGION, DEFAULT_SECRET_ACCESS_KEY, DEFAULT_SESSION_TOKEN,
    ROLES_PATH, SESSION_PATH, ZONE_PATH,
};
use cloudrun_spec::testkit::http::{self, Response};
use cloudrun_spec::testkit::mocks::*;
use serde_json::{json, Value};
use std::time::Duration;

type R = anyhow::Result<()>;

const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const VERIFICATION_URL: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";

fn put(url: &str, headers: &[(&str, &str)]) -> Response {
    http::request("PUT", url, headers, b"", Duration::from_secs(10)).unwrap()
}

fn now() -> u64 {
    cloudrun_spec::mocks::common::now() as u64
}

#[test]
fn mock_aws_follows_imdsv2_rules() -> R {
    let aws = MockAws::start(AwsOptions::default())?;
    assert_eq!(
        put(&aws.url(SESSION_PATH), &[]).status,
        400,
        "no TTL header"
    );
    let forwarded = put(
        &aws.url(SESSION_PATH),
        &[(TTL_HEADER, "300"), ("X-Forwarded-For", "10.0.0.1")],
    );
    assert_eq!(forwarded.status, 403);
    let session = put(&aws.url(SESSION_PATH), &[(TTL_HEADER, "300")]);
    assert_eq!(session.status, 200);
    assert_eq!(
        session.header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("300")
    );
    let token = session.text();
    let with = [("X-aws-ec2-metadata-token", token.as_str())];
    assert_eq!(
        http::get(&aws.url(ZONE_PATH), &[])?.status,
        401,
        "IMDSv1 is off"
    );
    assert_eq!(
        http::get(
            &aws.url(ZONE_PATH),
            &[("X-aws-ec2-metadata-token", "forged")]
        )?
        .status,
        401
    );
    assert_eq!(http::get(&aws.url(ZONE_PATH), &with)?.text(), "us-east-1a");
    let role = http::get(&aws.url(ROLES_PATH), &with)?.text();
    assert_eq!(role, "kong-gateway-role");
    let creds = http::get(&aws.url(&format!("{ROLES_PATH}/{role}")), &with)?.json()?;
    assert_eq!(creds["AccessKeyId"], DEFAULT_ACCESS_KEY_ID);
    assert_eq!(creds["Code"], "Success");
    let exp = cloudrun_oidc::google::federation::utc::parse_rfc3339_utc(
        creds["Expiration"].as_str().unwrap(),
    )
    .unwrap();
    assert!(exp > now() + 3600);
    assert_eq!(
        http::get(&aws.url(&format!("{ROLES_PATH}/other-role")), &with)?.status,
        404
    );
    aws.fault_only("expired", &["credentials"])?;
    let creds = http::get(&aws.url(&format!("{ROLES_PATH}/{role}")), &with)?.json()?;
    let exp = cloudrun_oidc::google::federation::utc::parse_rfc3339_utc(
        creds["Expiration"].as_str().unwrap(),
    )
    .unwrap();
    assert!(exp < now());
    aws.fault("wrong_region")?;
    assert_eq!(http::get(&aws.url(ZONE_PATH), &with)?.text(), "eu-north-1a");
    aws.fault("wrong_secret")?;
    let creds = http::get(&aws.url(&format!("{ROLES_PATH}/{role}")), &with)?.json()?;
    assert_ne!(creds["SecretAccessKey"], DEFAULT_SECRET_ACCESS_KEY);
    aws.fault("no_role")?;
    assert_eq!(http::get(&aws.url(ROLES_PATH), &with)?.status, 404);
    aws.clear_fault()?;
    let counters = aws.counters()?;
    assert_eq!(counters["session"], 3);
    assert!(counters["credentials"] >= 4);

    let v1 = MockAws::start(AwsOptions {
        imdsv1: true,
        ..AwsOptions::default()
    })?;
    assert_eq!(http::get(&v1.url(ZONE_PATH), &[])?.status, 200);
    Ok(())
}

fn role(secret: &str, region: &str) -> RoleCredentials {
    RoleCredentials {
        region: region.into(),
        credentials: Credentials {
            access_key_id: DEFAULT_ACCESS_KEY_ID.into(),
            secret_access_key: secret.into(),
            session_token: Some(DEFAULT_SESSION_TOKEN.into()),
        },
        expires_at: now() + 3600,
    }
}

fn exchange(google: &MockGoogle, subject: &str, token_type: &str, audience: &str) -> Response {
    http::post_form(
        &google.sts_url(),
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", audience),
            ("scope", "https://www.googleapis.com/auth/cloud-platform"),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", subject),
            ("subject_token_type", token_type),
        ],
        &[],
    )
    .unwrap()
}

fn generate_id_token(url: &str, sts_token: &str) -> Response {
    let bearer = format!("Bearer {sts_token}");
    http::post_json(
        url,
        &json!({"audience": "https://orders.a.run.app", "includeEmail": true}),
        &[("Authorization", bearer.as_str())],
    )
    .unwrap()
}

const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";

#[test]
fn google_sts_checks_aws_subjects_as_aws_would_and_iam_mints_for_the_account() -> R {
    let google = MockGoogle::start(GoogleOptions::default())?;
    let pool = google.sts_audience().to_string();
    // The filter's signer and the mock's verifier are independent implementations of SigV4.
    let good = subject_token(
        &role(DEFAULT_SECRET_ACCESS_KEY, DEFAULT_REGION),
        VERIFICATION_URL,
        &pool,
        now(),
    )
    .unwrap();
    let resp = exchange(&google, &good, AWS_TYPE, &pool);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = resp.json()?;
    assert_eq!(answer["token_type"], "Bearer");
    let sts_token = answer["access_token"].as_str().unwrap().to_string();

    let refused: [(&str, String, &str); 5] = [
        (
            "wrong secret",
            subject_token(&role("other/secret", DEFAULT_REGION), VERIFICATION_URL, &pool, now())
                .unwrap(),
            "SignatureDoesNotMatch",
        ),
        (
            "wrong region",
            subject_token(
                &role(DEFAULT_SECRET_ACCESS_KEY, "eu-north-1"),
                VERIFICATION_URL,
                &pool,
                now(),
            )
            .unwrap(),
            "must be POST",
        ),
        (
            "another provider",
            subject_token(
                &role(DEFAULT_SECRET_ACCESS_KEY, DEFAULT_REGION),
                VERIFICATION_URL,
                "//iam.googleapis.com/projects/9/locations/global/workloadIdentityPools/x/providers/y",
                now(),
            )
            .unwrap(),
            "x-goog-cloud-target-resource",
        ),
        (
            "signed an hour ago",
            subject_token(
                &role(DEFAULT_SECRET_ACCESS_KEY, DEFAULT_REGION),
                VERIFICATION_URL,
                &pool,
                now() - 3600,
            )
            .unwrap(),
            "Signature expired",
        ),
        ("garbage", "%7Bnot json".to_string(), "serialised request"),
    ];
    for (what, subject, why) in refused {
        let resp = exchange(&google, &subject, AWS_TYPE, &pool);
        assert_eq!(resp.status, 400, "{what}");
        let body = resp.json()?;
        assert_eq!(body["error"], "invalid_grant", "{what}");
        assert!(
            body["error_description"].as_str().unwrap().contains(why),
            "{what}: {body}"
        );
    }
    assert_eq!(
        exchange(&google, &good, AWS_TYPE, "//elsewhere").status,
        400,
        "audience"
    );

    let iam = google
        .impersonation_url()
        .replace(":generateAccessToken", ":generateIdToken");
    let resp = generate_id_token(&iam, &sts_token);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let token = resp.json()?["token"].as_str().unwrap().to_string();
    let verified = jose::verify_rs256(&token, &google.certs()?)?;
    let claims = verified.claims()?;
    assert_eq!(claims["aud"], "https://orders.a.run.app");
    assert_eq!(claims["email"], json!(google.client_email()));
    assert_eq!(claims["iss"], "https://accounts.google.com");

    assert_eq!(generate_id_token(&iam, "ya29.forged").status, 401);
    let other = iam.replace(
        google.client_email(),
        "someone-else@p.iam.gserviceaccount.com",
    );
    let resp = generate_id_token(&other, &sts_token);
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()?["error"]["status"], "PERMISSION_DENIED");
    google.revoke_sts_tokens()?;
    assert_eq!(generate_id_token(&iam, &sts_token).status, 401);
    let counters = google.counters()?;
    assert_eq!((counters["sts"], counters["iam"]), (7, 4));
    Ok(())
}

#[test]
fn google_sts_checks_subject_jwts_against_the_issuers_keys() -> R {
    let idp = MockIdp::start(IdpOptions::default())?;
    let google = MockGoogle::start(GoogleOptions {
        extra_args: vec![
            "--sts-jwks-url".into(),
            idp.jwks_url(),
            "--sts-issuer".into(),
            idp.issuer().into(),
        ],
        ..GoogleOptions::default()
    })?;
    let pool = google.sts_audience().to_string();
    let aud = google.sts_jwt_audience().to_string();
    assert_eq!(aud, format!("https:{pool}"));
    let jwt = "urn:ietf:params:oauth:token-type:jwt";

    let served = http::get(&idp.identity_url(&aud, true), &[("Metadata", "true")])?;
    assert_eq!(served.status, 200);
    let body: Value = served.json()?;
    let subject = body["access_token"].as_str().unwrap();
    assert_eq!(jose::decode(subject)?.claims()?["aud"], json!(aud));
    assert_eq!(exchange(&google, subject, jwt, &pool).status, 200);
    let text = http::get(&idp.identity_url(&aud, false), &[("Metadata", "true")])?.text();
    assert_eq!(exchange(&google, &text, jwt, &pool).status, 200);
    assert_eq!(
        http::get(&idp.identity_url(&aud, false), &[])?.status,
        400,
        "Metadata header required"
    );

    let wrong_aud = http::get(
        &idp.identity_url("https://elsewhere", false),
        &[("Metadata", "true")],
    )?
    .text();
    let attacker = idp.mint(
        &MintRequest::new("RS256")
            .claim("aud", aud.as_str())
            .attacker(),
    )?;
    let expired = idp.mint(
        &MintRequest::new("RS256")
            .claim("aud", aud.as_str())
            .claim("exp", now() as i64 - 10),
    )?;
    for (what, subject) in [
        ("audience", wrong_aud),
        ("signature", attacker),
        ("expired", expired),
    ] {
        let resp = exchange(&google, &subject, jwt, &pool);
        assert_eq!(resp.status, 400, "{what}");
        assert_eq!(resp.json()?["error"], "invalid_grant", "{what}");
    }
    assert_eq!(idp.counter("identity")?, 4);
    Ok(())
}
