//! Route rules on verified claims: required scopes and required claim values.
//!
//! Scopes are the union of `scope` (RFC 8693 §4.2: space-separated string; Keycloak, Okta,
//! Auth0, Cognito) and `scp` (Entra ID: space-separated string; Okta: array of strings). Every
//! required scope must be granted, compared exactly (case-sensitive, RFC 6749 §3.3).
//!
//! A `required_claims` rule holds when the claim equals one of the configured values, or is an
//! array containing one of them. Numbers compare by value (`1` equals `1.0`); strings, numbers
//! and booleans never equal each other (`"1"` is not `1`, `"true"` is not `true`). A missing
//! claim fails the rule; an ambiguous one (a top-level key spelled like the dotted path next to
//! the nested claim, with different values, see [`crate::request::claims`]) fails it too, as
//! [`AuthError::AmbiguousClaim`].

use crate::reject::AuthError;
use crate::request::claims::{resolve, Claim, ClaimPath};
use serde_json::{Map, Value};

/// Checks the route's rules on verified claims: [`AuthError::InsufficientScope`] first, then
/// [`AuthError::ClaimMismatch`] (both are 403 `insufficient_scope`).
pub fn check(
    claims: &Map<String, Value>,
    required_scopes: &[String],
    required_claims: &[(ClaimPath, Vec<Value>)],
) -> Result<(), AuthError> {
    if !required_scopes.is_empty() {
        let granted = granted_scopes(claims);
        if !required_scopes
            .iter()
            .all(|r| granted.contains(&r.as_str()))
        {
            return Err(AuthError::InsufficientScope);
        }
    }
    for (path, allowed) in required_claims {
        let ok = match resolve(claims, path) {
            Claim::Missing => false,
            Claim::Ambiguous => return Err(AuthError::AmbiguousClaim),
            Claim::Found(Value::Array(items)) => items
                .iter()
                .any(|item| allowed.iter().any(|a| scalar_eq(item, a))),
            Claim::Found(value) => allowed.iter().any(|a| scalar_eq(value, a)),
        };
        if !ok {
            return Err(AuthError::ClaimMismatch);
        }
    }
    Ok(())
}

/// Every scope granted by `scope` and `scp`.
fn granted_scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for key in ["scope", "scp"] {
        match claims.get(key) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) if key == "scp" => {
                out.extend(items.iter().filter_map(Value::as_str))
            }
            _ => {}
        }
    }
    out
}

/// Equality of a claim value with a configured scalar.
fn scalar_eq(claim: &Value, wanted: &Value) -> bool {
    match (claim, wanted) {
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => {
            if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
                x == y
            } else {
                matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::request::tests::obj;

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn rule(path: &str, values: Value) -> (ClaimPath, Vec<Value>) {
        (
            ClaimPath::parse(path).unwrap(),
            values.as_array().unwrap().clone(),
        )
    }

    #[test]
    fn no_rules_accept_anything() {
        assert_eq!(check(&Map::new(), &[], &[]), Ok(()));
    }

    #[test]
    fn scopes_from_space_separated_scope() {
        let c = obj(json!({"scope": "openid  orders.read profile"}));
        assert_eq!(check(&c, &scopes(&["orders.read"]), &[]), Ok(()));
        assert_eq!(check(&c, &scopes(&["orders.read", "openid"]), &[]), Ok(()));
        assert_eq!(
            check(&c, &scopes(&["orders.write"]), &[]),
            Err(AuthError::InsufficientScope)
        );
        assert_eq!(
            check(&c, &scopes(&["orders"]), &[]),
            Err(AuthError::InsufficientScope)
        );
        assert_eq!(
            check(&c, &scopes(&["Orders.Read"]), &[]),
            Err(AuthError::InsufficientScope)
        );
    }

    #[test]
    fn scopes_from_scp_string_or_array() {
        let entra = obj(json!({"scp": "Orders.Read User.Read"}));
        assert_eq!(check(&entra, &scopes(&["Orders.Read"]), &[]), Ok(()));
        let okta = obj(json!({"scp": ["orders.read", "openid"]}));
        assert_eq!(
            check(&okta, &scopes(&["orders.read", "openid"]), &[]),
            Ok(())
        );
        let both = obj(json!({"scope": "a", "scp": ["b"]}));
        assert_eq!(check(&both, &scopes(&["a", "b"]), &[]), Ok(()));
    }

    #[test]
    fn missing_or_odd_scope_claims_grant_nothing() {
        for c in [
            json!({}),
            json!({"scope": ["orders.read"]}),
            json!({"scope": 5}),
            json!({"scp": [5, null]}),
            json!({"scopes": "orders.read"}),
        ] {
            assert_eq!(
                check(&obj(c.clone()), &scopes(&["orders.read"]), &[]),
                Err(AuthError::InsufficientScope),
                "{c}"
            );
        }
    }

    #[test]
    fn claim_equals_one_of_the_values() {
        let c = obj(json!({"tier": "gold", "level": 3, "verified": true, "ratio": 1.0}));
        assert_eq!(
            check(&c, &[], &[rule("tier", json!(["silver", "gold"]))]),
            Ok(())
        );
        assert_eq!(check(&c, &[], &[rule("level", json!([3]))]), Ok(()));
        assert_eq!(check(&c, &[], &[rule("ratio", json!([1]))]), Ok(()));
        assert_eq!(check(&c, &[], &[rule("verified", json!([true]))]), Ok(()));
        for r in [
            rule("tier", json!(["silver"])),
            rule("level", json!(["3"])),
            rule("verified", json!(["true"])),
            rule("missing", json!(["x"])),
        ] {
            assert_eq!(
                check(&c, &[], std::slice::from_ref(&r)),
                Err(AuthError::ClaimMismatch),
                "{r:?}"
            );
        }
    }

    #[test]
    fn array_claim_contains_one_of_the_values() {
        let c = obj(json!({"realm_access": {"roles": ["user", "orders-admin"]}, "groups": []}));
        assert_eq!(
            check(
                &c,
                &[],
                &[rule("realm_access.roles", json!(["orders-admin"]))]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &c,
                &[],
                &[rule("realm_access.roles", json!(["root", "user"]))]
            ),
            Ok(())
        );
        assert_eq!(
            check(&c, &[], &[rule("realm_access.roles", json!(["root"]))]),
            Err(AuthError::ClaimMismatch)
        );
        assert_eq!(
            check(&c, &[], &[rule("groups", json!(["admins"]))]),
            Err(AuthError::ClaimMismatch)
        );
        // An object claim never matches a scalar.
        assert_eq!(
            check(&c, &[], &[rule("realm_access", json!(["user"]))]),
            Err(AuthError::ClaimMismatch)
        );
    }

    #[test]
    fn every_rule_must_hold_and_scopes_are_checked_first() {
        let c = obj(json!({"scope": "a", "groups": ["g1"], "tier": "gold"}));
        let rules = [
            rule("groups", json!(["g1"])),
            rule("tier", json!(["silver"])),
        ];
        assert_eq!(check(&c, &[], &rules), Err(AuthError::ClaimMismatch));
        assert_eq!(
            check(&c, &scopes(&["b"]), &rules),
            Err(AuthError::InsufficientScope)
        );
        assert_eq!(check(&c, &scopes(&["a"]), &rules[..1]), Ok(()));
    }

    #[test]
    fn a_dotted_key_shadowing_a_nested_claim_passes_no_rule() {
        // The nested claim says "user"; a top-level key spelled like the path says "admin".
        let c = obj(json!({"realm_access": {"roles": ["user"]}, "realm_access.roles": ["admin"]}));
        for wanted in [json!(["admin"]), json!(["user"])] {
            let result = check(&c, &[], &[rule("realm_access.roles", wanted.clone())]);
            assert_eq!(result, Err(AuthError::AmbiguousClaim), "{wanted}");
            assert_eq!(
                result.map_err(|e| e.rejection().status),
                Err(403),
                "{wanted}"
            );
        }
        // Deeper: `a.b` + `c` versus `a` + `b.c`, and `a.b.c` whole.
        let c = obj(json!({"a.b": {"c": "x"}, "a": {"b.c": "y"}}));
        assert!(check(&c, &[], &[rule("a.b.c", json!(["x"]))]).is_err());
        assert!(check(&c, &[], &[rule("a.b.c", json!(["y"]))]).is_err());
    }

    #[test]
    fn namespaced_claims_are_found() {
        let c = obj(json!({"https://example.com/roles": ["admin"]}));
        assert_eq!(
            check(
                &c,
                &[],
                &[rule("https://example.com/roles", json!(["admin"]))]
            ),
            Ok(())
        );
    }
}
