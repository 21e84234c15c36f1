//! The verified-token cache is bounded by the bytes its entries really hold (SECURITY.md
//! threat 8): tokens whose large claims are mapped to many headers, accounted here from the
//! cached grants themselves, never from the cache's own counter.

use super::route::Grant;
use super::*;
use crate::request::token_cache::{DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRY_BYTES};

/// Claim paths the configuration may name (16 segments at most): `c`, `c.x`, … `c.x.….x`.
const DEPTH: usize = 16;

/// Claims `c0`, `c1`, … each an object nested `DEPTH - 1` deep around a string of `len` bytes,
/// so every one of a claim's `DEPTH` paths renders almost the whole claim (a header of some
/// `len` bytes each: one large claim filling `DEPTH` headers).
fn nested_claims(chains: usize, len: usize, sub: &str) -> Value {
    let mut claims = json!({"sub": sub});
    for c in 0..chains {
        let mut value = json!("v".repeat(len));
        for _ in 1..DEPTH {
            value = json!({ "x": value });
        }
        claims[format!("c{c}")] = value;
    }
    claims
}

/// A route with inline keys mapping every path of `chains` nested claims to its own header
/// (`sub` is not mapped: four chains are the 64 mappings a route may have).
fn mapping_route(idp: &Idp, chains: usize, extra: Value) -> Route {
    let jwks: Value = serde_json::from_slice(&idp.jwks("k1")).unwrap();
    let mut mapping = json!({});
    for c in 0..chains {
        for depth in 0..DEPTH {
            let path = format!("c{c}{}", ".x".repeat(depth));
            mapping[path] = json!(format!("x-c{c}-{depth:02}"));
        }
    }
    let mut config = json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["orders-api"], "jwks": jwks}],
        "claims_to_headers": mapping,
        "max_token_bytes": 65536,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    route(config)
}

/// The bytes a cached entry holds: the token, every header name and value of its grant, and
/// the grant's `Bearer` copy of the token.
fn held(token: &[u8], grant: &Grant) -> usize {
    let edits: usize = grant.edits.iter().map(|(n, v)| n.len() + v.len()).sum();
    token.len() + edits + grant.forwarded_token.as_ref().map_or(0, |t| t.len())
}

#[test]
fn token_cache_bytes_stay_within_budget_with_large_mapped_claims() {
    let idp = Idp::new();
    let route = mapping_route(&idp, 2, json!({"claims_header": "x-jwt-claims"}));
    let (mut worker, mut host) = (Worker::new(1), FakeHost::at(NOW));
    let mut largest = 0;
    for i in 0..60 {
        let token = idp.token("k1", nested_claims(2, 3000, &format!("user-{i}")));
        let (_, step) = start(&mut host, &route, &mut worker, &token);
        let Step::Allow(edits) = step else {
            panic!("{step:?}")
        };
        assert_eq!(
            edits.len(),
            2 * DEPTH + 1,
            "every mapped header and the claims header"
        );
        let total: usize = route
            .cached_grants()
            .iter()
            .map(|(token, grant)| held(token, grant))
            .sum();
        assert!(
            total <= DEFAULT_MAX_BYTES,
            "{total} bytes held after {} tokens",
            i + 1
        );
        largest = largest.max(total);
    }
    // Each entry holds some 110 KiB: the cache kept many of them, and no more than fit.
    let kept = route.cached_grants().len();
    assert!((16..=40).contains(&kept), "{kept} entries cached");
    assert!(largest > DEFAULT_MAX_BYTES / 2, "the budget was reached");
    // The cache still serves: the last token is a hit.
    let last = idp.token("k1", nested_claims(2, 3000, "user-59"));
    start(&mut host, &route, &mut worker, &last);
    assert_eq!(host.metric(Metric::TokenCacheHits), 1);
}

#[test]
fn worst_case_entry_is_not_cached_but_the_request_passes() {
    // 64 headers of ~4 KiB from four claims, the claims header and the `Bearer` copy.
    let idp = Idp::new();
    let route = mapping_route(
        &idp,
        4,
        json!({
            "claims_header": "x-jwt-claims",
            "google_id_token": {"audience": "https://run.example", "metadata_host": "metadata:8080"},
        }),
    );
    assert_eq!(
        route.config.claims_to_headers.len(),
        64,
        "the most a route may map"
    );
    let (mut worker, mut host) = (Worker::new(1), FakeHost::at(NOW));
    let caller = idp.token("k1", nested_claims(4, 3990, "ada"));
    let value = format!("Bearer {caller}");
    let pairs: Vec<(&[u8], &[u8])> = vec![(b"authorization", value.as_bytes())];
    let (request, step) = Request::start(&mut cx(&mut host, &route, &mut worker), &pairs, None);
    assert_eq!(step, Step::Wait, "verified; minting the Google token");
    let (t, _) = last_callout(&host);
    let step = request.unwrap().on_callout(
        &mut cx(&mut host, &route, &mut worker),
        t,
        &ok(&google_jwt(NOW + 3600)),
    );
    let Step::Allow(edits) = step else {
        panic!("{step:?}")
    };
    let header_bytes: usize = edits.iter().map(|(n, v)| n.len() + v.len()).sum();
    assert!(header_bytes > DEFAULT_MAX_ENTRY_BYTES, "{header_bytes}");
    assert!(edits.contains(&("x-forwarded-authorization".into(), value.as_str().into())));
    assert!(edits
        .iter()
        .any(|(n, v)| &**n == "x-c3-15" && v.len() == 3990));
    assert!(route.cached_grants().is_empty(), "too large to cache");
    // The next request verifies again, and passes again.
    let (_, step) = Request::start(&mut cx(&mut host, &route, &mut worker), &pairs, None);
    assert!(matches!(step, Step::Allow(ref again) if again.len() == edits.len()));
    assert_eq!(host.metric(Metric::TokenCacheHits), 0);
}
