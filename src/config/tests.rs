//! Unit tests of the configuration: parsing, defaults, Kong's `{}` for `[]`, and the field each
//! error names (moved unchanged from the single-file module).

use super::*;
use crate::jose::alg::Algorithm;
use serde_json::json;

fn parse(v: Value) -> Result<FilterConfig, ConfigError> {
    FilterConfig::from_json(v.to_string().as_bytes())
}

fn err(v: Value) -> ConfigError {
    parse(v).unwrap_err()
}

fn minimal() -> Value {
    json!({"issuers": [{"issuer": "https://idp.example.com/realms/prod", "audiences": ["orders-api"]}]})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base.as_object_mut().unwrap().insert(key.into(), value);
    base
}

fn issuer_with(key: &str, value: Value) -> Value {
    let mut base = minimal();
    base["issuers"][0]
        .as_object_mut()
        .unwrap()
        .insert(key.into(), value);
    base
}

fn sa_pem() -> String {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let pkey = openssl::pkey::PKey::from_rsa(rsa).unwrap();
    String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap()
}

#[test]
fn minimal_config_gets_every_default() {
    let c = parse(minimal()).unwrap();
    assert_eq!(c.issuers.len(), 1);
    let i = &c.issuers[0];
    assert_eq!(i.rule.issuer, "https://idp.example.com/realms/prod");
    assert_eq!(i.rule.audiences, vec!["orders-api"]);
    assert_eq!(i.rule.algorithms, Algorithm::ALL.to_vec());
    assert_eq!(
        i.keys,
        KeySource::Discovery(
            HttpUrl::parse("https://idp.example.com/realms/prod/.well-known/openid-configuration")
                .unwrap()
        )
    );
    assert_eq!(i.callout_upstream, None);
    assert!(i.rule.token_types.is_empty(), "typ is not checked");
    assert_eq!(c.token, TokenLocation::default());
    assert_eq!(c.token.header.as_deref(), Some("authorization"));
    assert_eq!(c.token.scheme.as_deref(), Some("Bearer"));
    assert_eq!(
        c.limits,
        Limits {
            max_token_bytes: 8192,
            clock_skew_secs: 60
        }
    );
    assert!(c.required_scopes.is_empty());
    assert!(c.required_claims.is_empty());
    assert!(c.claims_to_headers.is_empty());
    assert_eq!(c.claims_header, None);
    assert_eq!(
        c.original_token_header.as_ref().map(HeaderName::as_str),
        Some("x-forwarded-authorization")
    );
    assert!(c.google_id_token.is_none());
    assert_eq!(c.jwks_cache, CachePolicy::default());
    assert_eq!(c.callout_timeout_ms, 5000);
    assert_eq!(c.shm_namespace, "cloudrun_oidc");
    assert_eq!(c.owned_headers(), vec!["x-forwarded-authorization"]);
}

#[test]
fn token_types_are_normalised_and_checked() {
    let c = parse(issuer_with(
        "token_types",
        json!(["application/AT+JWT", "at+jwt", "JWT"]),
    ))
    .unwrap();
    assert_eq!(c.issuers[0].rule.token_types, vec!["at+jwt", "jwt"]);
    for (bad, field) in [
        (json!([]), "issuers[0].token_types"),
        (json!({}), "issuers[0].token_types"),
        (json!("at+jwt"), "issuers[0].token_types"),
        (json!(["at+jwt", "at jwt"]), "issuers[0].token_types[1]"),
        (json!(["application/"]), "issuers[0].token_types[0]"),
        (json!(["a/b"]), "issuers[0].token_types[0]"),
        (json!(["+jwt"]), "issuers[0].token_types[0]"),
        (json!([""]), "issuers[0].token_types[0]"),
    ] {
        assert_eq!(
            err(issuer_with("token_types", bad.clone())).field,
            field,
            "{bad}"
        );
    }
}

#[test]
fn google_source_errors_name_the_setting_given() {
    let e = err(with(
        minimal(),
        "google_id_token",
        json!({"audience": "a", "token_url": "https://t/token"}),
    ));
    assert_eq!(e.field, "google_id_token.source");
    assert!(e.message.contains("token_url"), "{e}");
    assert!(e.message.contains("default"), "{e}");
    let e = err(with(
        minimal(),
        "google_id_token",
        json!({"audience": "a", "source": "metadata", "service_account_key": "{}"}),
    ));
    assert!(e.message.contains("service_account_key"), "{e}");
    assert!(!e.message.contains("default"), "{e}");
}

/// RFC 8037 §A.2's Ed25519 public key.
fn ed25519_jwk() -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-1",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
}

/// RFC 7517 §A.1's P-256 public key.
fn p256_jwk() -> Value {
    json!({"kty": "EC", "crv": "P-256", "kid": "ec-1",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
}

/// The `kid`s of an inline key set.
fn inline_kids(keys: &KeySource) -> Vec<String> {
    match keys {
        KeySource::Inline(set) => set.kids().map(str::to_string).collect(),
        other => panic!("not inline: {other:?}"),
    }
}

#[test]
fn full_config_is_parsed_into_types() {
    let pem = sa_pem();
    let key = json!({"type": "service_account", "project_id": "p", "private_key_id": "k1",
        "private_key": pem, "client_email": "sa@p.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token"});
    let v = json!({
        "issuers": [
            {"issuer": "https://idp.example.com/", "audiences": ["a", "b"],
             "algorithms": ["RS256", "ES256", "RS256"], "callout_host": "idp:8080"},
            {"issuer": "https://other", "audiences": ["x"], "jwks_url": "http://mock:9000/jwks"},
            {"issuer": "inline", "audiences": ["x"], "jwks": {"keys": [ed25519_jwk()]}},
            {"issuer": "inline2", "audiences": ["x"], "jwks": json!({"keys": [p256_jwk()]}).to_string()},
            {"issuer": "https://d", "audiences": ["x"], "discovery_url": "https://d/custom"}
        ],
        "token": {"header": "X-Token", "scheme": null, "query_param": "access_token", "cookie": "session"},
        "clock_skew_seconds": 0,
        "max_token_bytes": 65536,
        "required_scopes": ["orders.read", "orders.write"],
        "required_claims": {"groups": ["admins", 7, true], "realm_access.roles": ["r"]},
        "claims_to_headers": {"sub": "X-User-Id", "email": "x-user-email", "https://example.com/roles": "x-roles"},
        "claims_header": "x-jwt-claims",
        "original_token_header": "x-original-token",
        "google_id_token": {"audience": "https://orders-abc-uc.a.run.app", "source": "service_account",
            "service_account_key": key.to_string(), "refresh_before_expiry_seconds": 120},
        "jwks_cache": {"ttl_seconds": 60, "max_stale_seconds": 0, "unknown_kid_cooldown_seconds": 5},
        "callout_timeout_ms": 100,
        "shm_namespace": "oidc_2"
    });
    let c = parse(v).unwrap();
    let i = &c.issuers;
    assert_eq!(
        i[0].rule.algorithms,
        vec![Algorithm::Rs256, Algorithm::Es256]
    );
    assert_eq!(
        i[0].keys,
        KeySource::Discovery(
            HttpUrl::parse("https://idp.example.com/.well-known/openid-configuration").unwrap()
        )
    );
    assert_eq!(i[0].callout_upstream.as_deref(), Some("idp:8080"));
    assert_eq!(
        i[1].keys,
        KeySource::JwksUrl(HttpUrl::parse("http://mock:9000/jwks").unwrap())
    );
    assert_eq!(inline_kids(&i[2].keys), vec!["ed-1"]);
    assert_eq!(inline_kids(&i[3].keys), vec!["ec-1"]);
    assert_eq!(
        i[4].keys,
        KeySource::Discovery(HttpUrl::parse("https://d/custom").unwrap())
    );
    assert_eq!(
        c.token,
        TokenLocation {
            header: Some("x-token".into()),
            scheme: None,
            query_param: Some("access_token".into()),
            cookie: Some("session".into())
        }
    );
    assert_eq!(c.limits.clock_skew_secs, 0);
    assert_eq!(c.limits.max_token_bytes, 65536);
    assert_eq!(c.required_scopes, vec!["orders.read", "orders.write"]);
    assert_eq!(c.required_claims.len(), 2);
    assert_eq!(c.required_claims[0].0.as_str(), "groups");
    assert_eq!(
        c.required_claims[0].1,
        vec![json!("admins"), json!(7), json!(true)]
    );
    let mapped: Vec<(&str, &str)> = c
        .claims_to_headers
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    assert_eq!(
        mapped,
        // json! sorts keys; document order is kept (see keeps_claims_to_headers_in_document_order).
        vec![
            ("email", "x-user-email"),
            ("https://example.com/roles", "x-roles"),
            ("sub", "x-user-id"),
        ]
    );
    let g = c.google_id_token.as_ref().unwrap();
    assert_eq!(g.audience, "https://orders-abc-uc.a.run.app");
    assert_eq!(g.refresh_before_expiry_secs, 120);
    match &g.source {
        GoogleSource::ServiceAccount { key, token_url } => {
            assert_eq!(key.private_key_id, "k1");
            assert_eq!(key.client_email, "sa@p.iam.gserviceaccount.com");
            assert_eq!(token_url.to_string(), DEFAULT_TOKEN_URL);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.jwks_cache,
        CachePolicy {
            ttl_secs: 60,
            max_stale_secs: 0,
            unknown_kid_cooldown_secs: 5
        }
    );
    assert_eq!(c.callout_timeout_ms, 100);
    assert_eq!(c.shm_namespace, "oidc_2");
    assert_eq!(
        c.owned_headers(),
        vec![
            "x-forwarded-authorization",
            "x-jwt-claims",
            "x-original-token",
            "x-roles",
            "x-serverless-authorization",
            "x-user-email",
            "x-user-id"
        ]
    );
    assert!(c.issuer("inline2").is_some());
    assert!(c.issuer("inline3").is_none());
}

#[test]
fn metadata_source_is_the_default() {
    let c = parse(with(
        minimal(),
        "google_id_token",
        json!({"audience": "https://svc.a.run.app"}),
    ))
    .unwrap();
    let g = c.google_id_token.unwrap();
    assert_eq!(g.refresh_before_expiry_secs, 300);
    assert!(
        matches!(g.source, GoogleSource::Metadata { ref host } if host == "metadata.google.internal")
    );
    let c = parse(with(
        minimal(),
        "google_id_token",
        json!({"audience": "a", "source": "metadata", "metadata_host": "mock-google:8081"}),
    ))
    .unwrap();
    assert!(
        matches!(c.google_id_token.unwrap().source, GoogleSource::Metadata { ref host } if host == "mock-google:8081")
    );
}

#[test]
fn kong_empty_object_stands_for_empty_arrays() {
    let v = with(
        with(minimal(), "required_scopes", json!({})),
        "claims_to_headers",
        json!([]),
    );
    let v = with(v, "required_claims", json!([]));
    let c = parse(v).unwrap();
    assert!(c.required_scopes.is_empty());
    assert!(c.claims_to_headers.is_empty());
    let e = err(with(minimal(), "required_scopes", json!({"a": 1})));
    assert_eq!(e.field, "required_scopes");
    let e = err(with(minimal(), "issuers", json!({})));
    assert_eq!(e.field, "issuers");
    assert!(e.message.contains("at least one"), "{e}");
}

#[test]
fn original_token_header_null_means_drop() {
    let c = parse(with(minimal(), "original_token_header", Value::Null)).unwrap();
    assert_eq!(c.original_token_header, None);
    assert!(c.owned_headers().is_empty());
    let c = parse(with(
        with(minimal(), "original_token_header", Value::Null),
        "google_id_token",
        json!({"audience": "a"}),
    ))
    .unwrap();
    assert_eq!(
        c.owned_headers(),
        vec!["x-forwarded-authorization", "x-serverless-authorization"]
    );
}

#[test]
fn google_token_header_is_authorization_or_x_serverless_authorization() {
    let google = |header: Value| {
        parse(with(
            minimal(),
            "google_id_token",
            json!({"audience": "a", "header": header}),
        ))
    };
    let header = |c: FilterConfig| c.google_id_token.map(|g| g.header);
    assert_eq!(
        header(google(Value::Null).unwrap()),
        Some(GoogleHeader::Authorization)
    );
    assert_eq!(
        header(google(json!("x-serverless-authorization")).unwrap()),
        Some(GoogleHeader::XServerlessAuthorization)
    );
    let e = google(json!("x-other")).unwrap_err();
    assert_eq!(e.field, "google_id_token.header");
    let e = parse(with(
        with(
            minimal(),
            "original_token_header",
            json!("X-Serverless-Authorization"),
        ),
        "google_id_token",
        json!({"audience": "a"}),
    ))
    .unwrap_err();
    assert_eq!(e.field, "original_token_header");
}

#[test]
fn owned_header_names_with_underscores_are_refused() {
    for (field, value) in [
        ("claims_to_headers", json!({"sub": "x_user_id"})),
        ("claims_header", json!("x_jwt_claims")),
        ("original_token_header", json!("x_original")),
    ] {
        let e = parse(with(minimal(), field, value)).unwrap_err();
        assert!(e.field.starts_with(field), "{field}: {}", e.field);
        assert!(e.message.contains('_'), "{}", e.message);
    }
}

#[test]
fn header_names_kong_sets_itself_are_refused_naming_the_field() {
    // Kong's proxy_set_header lines replace these on every proxied request, whatever the filter
    // set: a mapping to one of them would never reach the upstream.
    for name in [
        "Via",
        "X-Forwarded-For",
        "x-forwarded-proto",
        "X-FORWARDED-HOST",
        "x-forwarded-port",
        "x-forwarded-path",
        "x-forwarded-prefix",
        "X-Real-IP",
        "x-kong-request-id",
    ] {
        for (field, value, named) in [
            (
                "claims_to_headers",
                json!({"sub": name}),
                "claims_to_headers.sub",
            ),
            ("claims_header", json!(name), "claims_header"),
            (
                "original_token_header",
                json!(name),
                "original_token_header",
            ),
        ] {
            let e = parse(with(minimal(), field, value)).unwrap_err();
            assert_eq!(e.field, named, "{name}");
            assert!(e.message.contains("set by Kong"), "{name}: {}", e.message);
            assert!(
                e.to_string().contains(named),
                "the message names the field: {e}"
            );
        }
    }
    // The other names of Kong's list are reserved headers already.
    for name in ["Host", "Connection", "Upgrade", "TE"] {
        let e = parse(with(minimal(), "claims_header", json!(name))).unwrap_err();
        assert_eq!(e.field, "claims_header", "{name}");
    }
    // Look-alikes that are not Kong's pass.
    for name in ["x-forwarded-email", "x-forwarded-user", "x-real-ip-hint"] {
        assert!(
            parse(with(minimal(), "claims_header", json!(name))).is_ok(),
            "{name}"
        );
    }
}

#[test]
fn nulls_mean_absent_for_optional_settings() {
    let v = with(
        minimal(),
        "token",
        json!({"query_param": null, "cookie": null}),
    );
    let v = with(v, "claims_header", Value::Null);
    let v = with(v, "google_id_token", Value::Null);
    let c = parse(v).unwrap();
    assert_eq!(c.token, TokenLocation::default());
    assert!(c.google_id_token.is_none());
    // Numbers and lists are never null.
    assert_eq!(
        err(with(minimal(), "clock_skew_seconds", Value::Null)).field,
        "clock_skew_seconds"
    );
    assert_eq!(
        err(with(minimal(), "required_scopes", Value::Null)).field,
        "required_scopes"
    );
}

#[test]
fn errors_name_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "issuers"),
        (json!({"issuers": []}), "issuers"),
        (json!({"issuers": "x"}), "issuers"),
        (with(minimal(), "bogus", json!(1)), "bogus"),
        (issuer_with("bogus", json!(1)), "issuers[0].bogus"),
        (issuer_with("audiences", json!([])), "issuers[0].audiences"),
        (
            issuer_with("audiences", json!("orders")),
            "issuers[0].audiences",
        ),
        (
            issuer_with("audiences", json!([""])),
            "issuers[0].audiences[0]",
        ),
        (
            issuer_with("algorithms", json!(["RS256", "HS256"])),
            "issuers[0].algorithms[1]",
        ),
        (
            issuer_with("algorithms", json!(["none"])),
            "issuers[0].algorithms[0]",
        ),
        (
            issuer_with("algorithms", json!([])),
            "issuers[0].algorithms",
        ),
        (
            issuer_with("jwks_url", json!("ftp://x/")),
            "issuers[0].jwks_url",
        ),
        (
            issuer_with("discovery_url", json!("not a url")),
            "issuers[0].discovery_url",
        ),
        (
            issuer_with("callout_host", json!("idp:99999")),
            "issuers[0].callout_host",
        ),
        (issuer_with("jwks", json!({"keys": []})), "issuers[0].jwks"),
        (issuer_with("jwks", json!("not json")), "issuers[0].jwks"),
        (issuer_with("jwks", json!(5)), "issuers[0].jwks"),
        (
            json!({"issuers": [{"issuer": "not-a-url", "audiences": ["a"]}]}),
            "issuers[0].issuer",
        ),
        (
            json!({"issuers": [{"issuer": "https://a", "audiences": ["a"]}, {"issuer": "https://a", "audiences": ["b"]}]}),
            "issuers[1].issuer",
        ),
        (
            json!({"issuers": [{"audiences": ["a"]}]}),
            "issuers[0].issuer",
        ),
        (json!({"issuers": [5]}), "issuers[0]"),
        (
            with(minimal(), "token", json!({"header": "bad header"})),
            "token.header",
        ),
        (
            with(minimal(), "token", json!({"scheme": "Bea rer"})),
            "token.scheme",
        ),
        (
            with(minimal(), "token", json!({"scheme": ""})),
            "token.scheme",
        ),
        (
            with(minimal(), "token", json!({"query_param": "a&b"})),
            "token.query_param",
        ),
        (
            with(minimal(), "token", json!({"cookie": "a;b"})),
            "token.cookie",
        ),
        (with(minimal(), "token", json!({"header": null})), "token"),
        (with(minimal(), "token", json!({"extra": 1})), "token.extra"),
        (
            with(minimal(), "clock_skew_seconds", json!(601)),
            "clock_skew_seconds",
        ),
        (
            with(minimal(), "clock_skew_seconds", json!(-1)),
            "clock_skew_seconds",
        ),
        (
            with(minimal(), "clock_skew_seconds", json!("60")),
            "clock_skew_seconds",
        ),
        (
            with(minimal(), "max_token_bytes", json!(255)),
            "max_token_bytes",
        ),
        (
            with(minimal(), "max_token_bytes", json!(65537)),
            "max_token_bytes",
        ),
        (
            with(minimal(), "required_scopes", json!(["a b"])),
            "required_scopes[0]",
        ),
        (
            with(minimal(), "required_claims", json!({"groups": []})),
            "required_claims.groups",
        ),
        (
            with(minimal(), "required_claims", json!({"groups": [{"a": 1}]})),
            "required_claims.groups[0]",
        ),
        (
            with(minimal(), "required_claims", json!({"a..b": ["x"]})),
            "required_claims.a..b",
        ),
        (
            with(minimal(), "required_claims", json!({"groups": "admins"})),
            "required_claims",
        ),
        (
            with(minimal(), "claims_to_headers", json!({"sub": "host"})),
            "claims_to_headers.sub",
        ),
        (
            with(
                minimal(),
                "claims_to_headers",
                json!({"sub": "Authorization"}),
            ),
            "claims_to_headers.sub",
        ),
        (
            with(
                minimal(),
                "claims_to_headers",
                json!({"sub": "x-a", "email": "X-A"}),
            ),
            "claims_to_headers.sub",
        ),
        (
            with(minimal(), "claims_to_headers", json!({"sub": "connection"})),
            "claims_to_headers.sub",
        ),
        (
            with(minimal(), "claims_to_headers", json!({"sub": ":path"})),
            "claims_to_headers.sub",
        ),
        (
            with(
                minimal(),
                "claims_to_headers",
                json!({"sub": "x-forwarded-authorization"}),
            ),
            "claims_to_headers.sub",
        ),
        (
            with(minimal(), "claims_header", json!("transfer-encoding")),
            "claims_header",
        ),
        (
            with(
                minimal(),
                "claims_header",
                json!("x-forwarded-authorization"),
            ),
            "claims_header",
        ),
        (
            with(minimal(), "original_token_header", json!("authorization")),
            "original_token_header",
        ),
        (
            with(minimal(), "original_token_header", json!("content-length")),
            "original_token_header",
        ),
        (
            with(minimal(), "google_id_token", json!({})),
            "google_id_token.audience",
        ),
        (
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "source": "magic"}),
            ),
            "google_id_token.source",
        ),
        (
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "source": "service_account"}),
            ),
            "google_id_token.service_account_key",
        ),
        (
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "service_account_key": "{}"}),
            ),
            "google_id_token.source",
        ),
        (
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "metadata_host": "bad host"}),
            ),
            "google_id_token.metadata_host",
        ),
        (
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "refresh_before_expiry_seconds": 3001}),
            ),
            "google_id_token.refresh_before_expiry_seconds",
        ),
        (
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "extra": true}),
            ),
            "google_id_token.extra",
        ),
        (
            with(minimal(), "jwks_cache", json!({"ttl_seconds": 0})),
            "jwks_cache.ttl_seconds",
        ),
        (
            with(minimal(), "jwks_cache", json!({"ttl": 10})),
            "jwks_cache.ttl",
        ),
        (
            with(minimal(), "callout_timeout_ms", json!(99)),
            "callout_timeout_ms",
        ),
        (
            with(minimal(), "callout_timeout_ms", json!(60001)),
            "callout_timeout_ms",
        ),
        (
            with(minimal(), "shm_namespace", json!("Cloud-Run")),
            "shm_namespace",
        ),
        (with(minimal(), "shm_namespace", json!("")), "shm_namespace"),
    ];
    for (v, field) in cases {
        let e = err(v.clone());
        assert_eq!(e.field, field, "{v} → {e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn keeps_claims_to_headers_in_document_order() {
    let text = r#"{"issuers": [{"issuer": "https://a", "audiences": ["a"]}],
            "claims_to_headers": {"sub": "x-user-id", "email": "x-user-email", "acr": "x-acr"}}"#;
    let c = FilterConfig::from_json(text.as_bytes()).unwrap();
    let order: Vec<&str> = c
        .claims_to_headers
        .iter()
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(order, vec!["sub", "email", "acr"]);
    let dup = r#"{"issuers": [{"issuer": "https://a", "audiences": ["a"]}],
            "claims_to_headers": {"sub": "x-a", "sub": "x-b"}}"#;
    let e = FilterConfig::from_json(dup.as_bytes()).unwrap_err();
    assert!(e.message.contains("duplicate"), "{e}");
    let dup = r#"{"issuers": [{"issuer": "https://a", "audiences": ["a"]}], "max_token_bytes": 300, "max_token_bytes": 400}"#;
    assert!(FilterConfig::from_json(dup.as_bytes()).is_err());
}

#[test]
fn several_key_sources_are_refused() {
    let mut v = issuer_with("jwks_url", json!("https://x/jwks"));
    v["issuers"][0]["discovery_url"] = json!("https://x/d");
    assert_eq!(err(v).field, "issuers[0]");
    let mut v = issuer_with("jwks", json!({"keys": [{}]}));
    v["issuers"][0]["callout_host"] = json!("idp:80");
    assert_eq!(err(v).field, "issuers[0].callout_host");
}

#[test]
fn token_header_cannot_be_an_owned_header() {
    let v = with(minimal(), "token", json!({"header": "x-token"}));
    let e = err(with(
        v.clone(),
        "claims_to_headers",
        json!({"sub": "X-Token"}),
    ));
    assert_eq!(e.field, "claims_to_headers.sub");
    let e = err(with(v, "original_token_header", json!("x-token")));
    assert_eq!(e.field, "original_token_header");
    let v = with(
        minimal(),
        "token",
        json!({"header": "x-forwarded-authorization"}),
    );
    let v = with(v, "original_token_header", Value::Null);
    assert!(parse(v.clone()).is_ok());
    let e = err(with(v, "google_id_token", json!({"audience": "a"})));
    assert_eq!(e.field, "google_id_token");
}

#[test]
fn empty_or_null_config_names_issuers() {
    for bytes in [&b""[..], b"  \n", b"null", b"{}"] {
        let e = FilterConfig::from_json(bytes).unwrap_err();
        assert_eq!(e.field, "issuers", "{:?}", String::from_utf8_lossy(bytes));
    }
    let e = FilterConfig::from_json(b"{not json").unwrap_err();
    assert_eq!(e.field, "(root)");
    let e = FilterConfig::from_json(b"[1]").unwrap_err();
    assert_eq!(e.field, "(root)");
    assert_eq!(
        e.to_string(),
        "invalid configuration: (root): must be a JSON object"
    );
    let e = err(with(minimal(), "jwks_cache", json!("600")));
    assert_eq!(
        e.to_string(),
        "invalid configuration: jwks_cache: invalid type: string \"600\", expected an object"
    );
    let e = err(with(minimal(), "callout_timeout_ms", json!(-1)));
    assert_eq!(
        e.message,
        "invalid value: integer `-1`, expected a non-negative integer"
    );
}

#[test]
fn errors_never_contain_the_service_account_key() {
    let pem = sa_pem();
    let secret_line = pem.lines().nth(3).unwrap().to_string();
    let bad_keys = vec![
        json!({"private_key_id": "k", "private_key": pem.replace("MII", "XXX"), "client_email": "e"}),
        json!({"private_key_id": "k", "private_key": pem.clone()}),
        json!({"private_key_id": 5, "private_key": pem.clone(), "client_email": "e"}),
        json!({"type": "authorized_user", "private_key_id": "k", "private_key": pem.clone(), "client_email": "e"}),
        json!(format!("{{\"private_key\": {:?}", pem)),
        json!([pem.clone()]),
        json!(42),
    ];
    for key in bad_keys {
        let key = if key.is_object() {
            json!(key.to_string())
        } else {
            key
        };
        for v in [
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "source": "service_account", "service_account_key": key.clone()}),
            ),
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "source": "service_account", "service_account_key": key.clone(), "bogus": 1}),
            ),
        ] {
            let e = err(v);
            let text = format!("{e} {e:?}");
            assert!(e.field.starts_with("google_id_token"), "{text}");
            assert!(!text.contains(&secret_line), "{text}");
            assert!(!text.contains("PRIVATE KEY"), "{text}");
        }
    }
}

#[test]
fn service_account_key_may_be_an_object() {
    let pem = sa_pem();
    let v = with(
        minimal(),
        "google_id_token",
        json!({"audience": "a", "source": "service_account", "token_url": "http://mock-google:8082/token",
            "service_account_key": {"private_key_id": "k", "private_key": pem, "client_email": "e@x"}}),
    );
    let c = parse(v).unwrap();
    let text = format!("{c:?}");
    assert!(!text.contains("PRIVATE"), "{text}");
    match c.google_id_token.unwrap().source {
        GoogleSource::ServiceAccount { token_url, .. } => {
            assert_eq!(token_url.dispatch_target(), "mock-google:8082")
        }
        other => panic!("{other:?}"),
    }
}

fn credential_file() -> Value {
    json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws",
        "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
        "token_url": "https://sts.googleapis.com/v1/token",
        "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/kong@p.iam.gserviceaccount.com:generateAccessToken",
        "credential_source": {
            "environment_id": "aws1",
            "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
            "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        }
    })
}

#[test]
fn external_account_is_the_credential_file_as_object_or_string() {
    for file in [credential_file(), json!(credential_file().to_string())] {
        let v = with(
            minimal(),
            "google_id_token",
            json!({"audience": "https://run.example", "source": "external_account", "external_account": file}),
        );
        let c = parse(v).unwrap();
        match &c.google_id_token.as_ref().unwrap().source {
            GoogleSource::ExternalAccount(a) => {
                assert_eq!(a.service_account, "kong@p.iam.gserviceaccount.com")
            }
            other => panic!("{other:?}"),
        }
        assert!(c
            .owned_headers()
            .contains(&FORWARDED_AUTHORIZATION.to_string()));
    }
}

#[test]
fn external_account_errors_name_the_field_inside_the_file() {
    let google = |extra: Value| {
        let mut g = json!({"audience": "a", "source": "external_account", "external_account": credential_file()});
        for (k, v) in extra.as_object().unwrap() {
            g[k] = v.clone();
        }
        with(minimal(), "google_id_token", g)
    };
    let mut file_source = credential_file();
    file_source["credential_source"] = json!({"file": "/run/token"});
    let cases = [
        (
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "source": "external_account"}),
            ),
            "google_id_token.external_account",
        ),
        (
            with(
                minimal(),
                "google_id_token",
                json!({"audience": "a", "external_account": credential_file()}),
            ),
            "google_id_token.source",
        ),
        (
            google(json!({"token_url": "https://oauth2.googleapis.com/token"})),
            "google_id_token.token_url",
        ),
        (
            google(json!({"metadata_host": "metadata"})),
            "google_id_token.metadata_host",
        ),
        (
            google(json!({"service_account_key": "{}"})),
            "google_id_token.service_account_key",
        ),
        (
            google(json!({"external_account": file_source})),
            "google_id_token.external_account.credential_source.file",
        ),
        (
            google(json!({"external_account": "{"})),
            "google_id_token.external_account",
        ),
        (
            google(json!({"external_account": 7})),
            "google_id_token.external_account",
        ),
    ];
    for (v, field) in cases {
        let e = err(v);
        assert_eq!(e.field, field, "{e}");
    }
    let e = err(google(json!({"external_account": file_source})));
    assert!(e.message.contains("cannot read files"), "{e}");
}

#[test]
fn issuer_trailing_slash_is_not_doubled() {
    let v = json!({"issuers": [{"issuer": "https://accounts.google.com", "audiences": ["x"]},
        {"issuer": "https://dev.auth0.com/", "audiences": ["x"]}]});
    let c = parse(v).unwrap();
    let urls: Vec<String> = c
        .issuers
        .iter()
        .map(|i| match &i.keys {
            KeySource::Discovery(u) => u.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        urls,
        vec![
            "https://accounts.google.com/.well-known/openid-configuration",
            "https://dev.auth0.com/.well-known/openid-configuration"
        ]
    );
    // Issuers are still compared as written.
    assert_eq!(c.issuers[1].rule.issuer, "https://dev.auth0.com/");
}

#[test]
fn never_panics_on_truncated_or_mangled_input() {
    let text = r#"{"issuers": [{"issuer": "https://a/", "audiences": ["x"], "algorithms": ["RS256"],
            "jwks": {"keys": [{"kty": "RSA"}]}}], "token": {"header": "x-t", "scheme": null,
            "query_param": "t", "cookie": "c"}, "required_scopes": {}, "required_claims": {"a.b": [1, "x", true]},
            "claims_to_headers": {"sub": "x-sub"}, "original_token_header": null,
            "google_id_token": {"audience": "a", "source": "service_account", "service_account_key": "{}"},
            "jwks_cache": {"ttl_seconds": 5}, "callout_timeout_ms": 100, "shm_namespace": "n"}"#;
    for end in 0..text.len() {
        if let Some(prefix) = text.get(..end) {
            let _ = FilterConfig::from_json(prefix.as_bytes());
        }
    }
    let replacements = [
        "null",
        "{}",
        "[]",
        "-1",
        "1e400",
        "\"\"",
        "[null]",
        "{\"a\":{}}",
        "true",
    ];
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b':' {
            continue;
        }
        // Replace the value after each colon (up to the next , or }) with odd JSON.
        let rest = &text[i + 1..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        for r in replacements {
            let mangled = format!("{}{r}{}", &text[..=i], &rest[end..]);
            let _ = FilterConfig::from_json(mangled.as_bytes());
        }
    }
    let _ = FilterConfig::from_json(&[0xff, 0xfe, b'{']);
    let deep = "[".repeat(10_000);
    let e = FilterConfig::from_json(deep.as_bytes()).unwrap_err();
    assert_eq!(e.field, "(root)");
}

#[test]
fn at_most_sixteen_issuers() {
    let many: Vec<Value> = (0..17)
        .map(|i| json!({"issuer": format!("https://idp{i}"), "audiences": ["a"]}))
        .collect();
    assert_eq!(
        parse(json!({"issuers": many[..16]})).unwrap().issuers.len(),
        16
    );
    assert_eq!(err(json!({"issuers": many})).field, "issuers");
}

#[test]
fn type_errors_name_the_list_entry_and_the_map() {
    let e = err(issuer_with("audiences", json!(["a", 5])));
    assert_eq!(e.field, "issuers[0].audiences[1]");
    assert_eq!(e.message, "invalid type: integer `5`, expected a string");
    let e = err(with(minimal(), "claims_to_headers", json!({"sub": 5})));
    assert_eq!(e.field, "claims_to_headers");
    let dup = r#"{"issuers": [{"issuer": "https://a", "audiences": ["a"]}],
        "claims_to_headers": {"sub": "x-a", "sub": "x-b"}}"#;
    let e = FilterConfig::from_json(dup.as_bytes()).unwrap_err();
    assert_eq!(e.field, "claims_to_headers");
}

#[test]
fn an_array_of_the_fields_in_order_is_not_a_configuration() {
    let positional = json!([[{"issuer": "https://a", "audiences": ["a"]}]]);
    let e = err(positional);
    assert_eq!(
        e.to_string(),
        "invalid configuration: (root): must be a JSON object"
    );
}

#[test]
fn trailing_text_after_the_object_is_not_json() {
    let text = format!("{} x", minimal());
    let e = FilterConfig::from_json(text.as_bytes()).unwrap_err();
    assert_eq!(e.field, "(root)");
    assert!(e.message.starts_with("not valid JSON"), "{e}");
}

#[test]
fn inline_jwks_are_parsed_with_the_configuration() {
    let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]});
    let e = err(issuer_with("jwks", oct));
    assert_eq!(
        e.to_string(),
        "invalid configuration: issuers[0].jwks: JWKS has no usable signature key"
    );
    let c = parse(issuer_with(
        "jwks",
        json!({"keys": [ed25519_jwk(), {"kty": "oct", "k": "AA"}]}),
    ))
    .unwrap();
    match &c.issuers[0].keys {
        KeySource::Inline(set) => {
            assert_eq!(set.len(), 1);
            assert_eq!(set.skipped().len(), 1, "the oct key is skipped, not fatal");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dispatch_targets_the_engine_cannot_parse_are_config_errors_naming_the_field() {
    let google = |g: Value| with(minimal(), "google_id_token", g);
    let external = |edit: fn(&mut Value)| {
        let mut file = credential_file();
        edit(&mut file);
        google(json!({"audience": "a", "source": "external_account", "external_account": file}))
    };
    let sa_key = json!({"type": "service_account", "project_id": "p", "private_key_id": "k1",
        "private_key": sa_pem(), "client_email": "sa@p.iam.gserviceaccount.com"})
    .to_string();
    let mut cases: Vec<(Value, &str)> = Vec::new();
    for bad in [
        "[.]",
        "[:]",
        "[1.2.3.4]",
        "[12345::]",
        "[::1%eth0]",
        "unix",
        "UNIX",
    ] {
        cases.extend([
            (
                issuer_with("jwks_url", json!(format!("http://{bad}/keys"))),
                "issuers[0].jwks_url",
            ),
            (
                issuer_with("discovery_url", json!(format!("https://{bad}:8443/d"))),
                "issuers[0].discovery_url",
            ),
            (
                json!({"issuers": [{"issuer": format!("http://{bad}"), "audiences": ["a"]}]}),
                "issuers[0].issuer",
            ),
            (
                issuer_with("callout_host", json!(format!("{bad}:80"))),
                "issuers[0].callout_host",
            ),
            (
                google(json!({"audience": "a", "metadata_host": bad})),
                "google_id_token.metadata_host",
            ),
        ]);
    }
    cases.extend([
        (
            issuer_with("callout_host", json!("unix:/run/idp.sock")),
            "issuers[0].callout_host",
        ),
        (
            google(json!({"audience": "a", "source": "service_account",
                          "service_account_key": sa_key, "token_url": "http://[:]/token"})),
            "google_id_token.token_url",
        ),
        (
            external(|f| f["token_url"] = json!("https://[.]/v1/token")),
            "google_id_token.external_account.token_url",
        ),
        (
            external(|f| f["credential_source"]["url"] = json!("http://unix:80/creds")),
            "google_id_token.external_account.credential_source.url",
        ),
    ]);
    for (v, field) in cases {
        let e = err(v.clone());
        assert_eq!(e.field, field, "{v}: {e}");
    }
}
