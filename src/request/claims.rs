//! Reading verified claims by dotted path and rendering them as header values.
//!
//! A [`ClaimPath`] is parsed once from configuration. Lookup is dot-aware but tolerant of keys
//! that themselves contain dots (Auth0/Okta namespaced claims such as
//! `https://example.com/roles`): every way of reading the path as keys is followed, so
//! `https://example.com/roles` finds that key whole, and `https://example.com/app.roles` finds
//! key `https://example.com/app` then `roles`. When two readings find different values — a
//! top-level key `realm_access.roles` next to the nested `realm_access` → `roles` — the claim is
//! [`Claim::Ambiguous`]: it satisfies no rule and fills no header (the request is refused, 403),
//! so whoever can add a claim spelled like a path cannot shadow the claim the path means. Each
//! JSON node is reached by at most one reading (its ancestry fixes the keys), so the walk is
//! linear in the token.
//!
//! Rendering (decisions where DESIGN.md is silent): strings as is; numbers and booleans as JSON
//! text; arrays of scalars comma-joined (`a,b`) unless an element is a string containing a comma,
//! in which case the whole array is rendered as compact JSON (lossless); objects and nested arrays
//! as compact JSON; `null`, `""` and `[]` render nothing (the header stays absent, like a missing
//! claim). Non-ASCII UTF-8 passes through (RFC 9110 §5.5 allows obs-text; users' names have
//! accents); bytes below 0x20 (including TAB), 0x7f, and values over 4096 bytes are refused with
//! [`AuthError::UnrepresentableClaim`].

use crate::http::header_name::HeaderName;
use crate::reject::AuthError;
use serde_json::{Map, Value};
use std::fmt;

/// Longest header value rendered from a claim.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;
/// Longest claim path accepted in configuration.
const MAX_PATH_BYTES: usize = 512;
/// Most segments in a claim path.
const MAX_SEGMENTS: usize = 16;

/// A dotted claim path such as `realm_access.roles`, parsed once.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClaimPath {
    text: String,
    /// Byte ranges of the segments in `text` (between dots).
    segments: Vec<(usize, usize)>,
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClaimPath({:?})", self.text)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl ClaimPath {
    /// Parses `a.b.c`. Refuses empty paths, empty segments (`a..b`, `.a`, `a.`), control
    /// characters, more than 16 segments or 512 bytes.
    pub fn parse(path: &str) -> Result<ClaimPath, String> {
        if path.is_empty() {
            return Err("claim path must not be empty".into());
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(format!("claim path is longer than {MAX_PATH_BYTES} bytes"));
        }
        if path.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("claim path contains control characters".into());
        }
        let mut segments = Vec::new();
        let mut start = 0;
        for part in path.split('.') {
            if part.is_empty() {
                return Err("claim path has an empty segment".into());
            }
            segments.push((start, start + part.len()));
            start += part.len() + 1;
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("claim path has more than {MAX_SEGMENTS} segments"));
        }
        Ok(ClaimPath {
            text: path.to_string(),
            segments,
        })
    }

    /// The path as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text spanning segments `from..=to`, dots included.
    fn span(&self, from: usize, to: usize) -> Option<&str> {
        let (start, _) = *self.segments.get(from)?;
        let (_, end) = *self.segments.get(to)?;
        self.text.get(start..end)
    }
}

/// What a claim path names in a payload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Claim<'v> {
    /// No reading of the path finds a value.
    Missing,
    /// Every reading that finds a value finds this one.
    Found(&'v Value),
    /// Two readings find different values (a dotted key shadowing a nested claim).
    Ambiguous,
}

/// Reads the claim at `path` every way its dots can be split (see the module doc).
pub fn resolve<'v>(claims: &'v Map<String, Value>, path: &ClaimPath) -> Claim<'v> {
    let mut found = Claim::Missing;
    walk(claims, path, 0, &mut found);
    found
}

/// The claim at `path` when it is found and unambiguous.
pub fn lookup<'v>(claims: &'v Map<String, Value>, path: &ClaimPath) -> Option<&'v Value> {
    match resolve(claims, path) {
        Claim::Found(value) => Some(value),
        Claim::Missing | Claim::Ambiguous => None,
    }
}

/// Follows every key at this level that spells segments `from..=to`; stops once ambiguous.
fn walk<'v>(object: &'v Map<String, Value>, path: &ClaimPath, from: usize, found: &mut Claim<'v>) {
    let n = path.segments.len();
    for to in from..n {
        if *found == Claim::Ambiguous {
            return;
        }
        let Some(value) = path.span(from, to).and_then(|key| object.get(key)) else {
            continue;
        };
        if to + 1 == n {
            *found = match *found {
                Claim::Missing => Claim::Found(value),
                Claim::Found(seen) if seen == value => Claim::Found(seen),
                Claim::Found(_) | Claim::Ambiguous => Claim::Ambiguous,
            };
        } else if let Some(inner) = value.as_object() {
            walk(inner, path, to + 1, found);
        }
    }
}

/// Renders a claim as a header value; `None` means "no header" (see the module doc).
pub fn header_value(v: &Value) -> Result<Option<String>, AuthError> {
    let text = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(items) => {
            let scalars = items
                .iter()
                .all(|i| matches!(i, Value::String(_) | Value::Number(_) | Value::Bool(_)));
            let comma_in_string = items
                .iter()
                .any(|i| i.as_str().is_some_and(|s| s.contains(',')));
            if scalars && !comma_in_string {
                let mut out = String::new();
                for (idx, item) in items.iter().enumerate() {
                    if idx > 0 {
                        out.push(',');
                    }
                    match item {
                        Value::String(s) => out.push_str(s),
                        other => out.push_str(&other.to_string()),
                    }
                    if out.len() > MAX_HEADER_VALUE_BYTES {
                        return Err(AuthError::UnrepresentableClaim);
                    }
                }
                out
            } else {
                v.to_string()
            }
        }
        Value::Object(_) => v.to_string(),
    };
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_HEADER_VALUE_BYTES || text.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(AuthError::UnrepresentableClaim);
    }
    Ok(Some(text))
}

/// The headers to add for a verified token, in configuration order. Missing claims (and claims
/// rendering nothing) leave their header absent; one unrepresentable claim refuses the request,
/// and so does one ambiguous claim ([`AuthError::AmbiguousClaim`]).
pub fn map_claims(
    claims: &Map<String, Value>,
    mapping: &[(ClaimPath, HeaderName)],
) -> Result<Vec<(String, String)>, AuthError> {
    let mut out = Vec::with_capacity(mapping.len());
    for (path, header) in mapping {
        let value = match resolve(claims, path) {
            Claim::Missing => continue,
            Claim::Found(value) => value,
            Claim::Ambiguous => return Err(AuthError::AmbiguousClaim),
        };
        if let Some(text) = header_value(value)? {
            out.push((header.as_str().to_string(), text));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::request::tests::obj;

    fn path(p: &str) -> ClaimPath {
        ClaimPath::parse(p).unwrap()
    }

    #[test]
    fn parses_paths_and_refuses_empty_segments() {
        assert_eq!(path("realm_access.roles").as_str(), "realm_access.roles");
        for bad in ["", ".", "a.", ".a", "a..b", "a\nb"] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?}");
        }
        let long = vec!["a"; 17].join(".");
        assert!(ClaimPath::parse(&long).is_err());
        assert!(ClaimPath::parse(&"x".repeat(513)).is_err());
    }

    #[test]
    fn looks_up_nested_claims() {
        let c = obj(json!({"sub": "u1", "realm_access": {"roles": ["a", "b"]}}));
        assert_eq!(lookup(&c, &path("sub")), Some(&json!("u1")));
        assert_eq!(
            lookup(&c, &path("realm_access.roles")),
            Some(&json!(["a", "b"]))
        );
        assert_eq!(lookup(&c, &path("realm_access.missing")), None);
        assert_eq!(lookup(&c, &path("sub.deeper")), None);
        assert_eq!(lookup(&c, &path("nope")), None);
    }

    #[test]
    fn looks_up_namespaced_keys_containing_dots() {
        let c = obj(json!({
            "https://example.com/roles": ["admin"],
            "https://example.com/app": {"tier": "gold"},
            "cognito:groups": ["g1"]
        }));
        assert_eq!(
            lookup(&c, &path("https://example.com/roles")),
            Some(&json!(["admin"]))
        );
        assert_eq!(
            lookup(&c, &path("https://example.com/app.tier")),
            Some(&json!("gold"))
        );
        assert_eq!(lookup(&c, &path("cognito:groups")), Some(&json!(["g1"])));
    }

    #[test]
    fn a_dotted_key_and_the_nested_claim_it_spells_must_agree() {
        // Until the review this read 1 (the longest key won); the two readings differ.
        let c = obj(json!({"a.b": 1, "a": {"b": 2}}));
        assert_eq!(resolve(&c, &path("a.b")), Claim::Ambiguous);
        assert_eq!(lookup(&c, &path("a.b")), None);
        let agree = obj(json!({"a.b": 1, "a": {"b": 1}}));
        assert_eq!(resolve(&agree, &path("a.b")), Claim::Found(&json!(1)));
        // Readings that lead nowhere do not count: the nested one is the claim.
        let partial = obj(json!({"a.b": {"x": 1}, "a": {"b": {"c": 2}}}));
        assert_eq!(resolve(&partial, &path("a.b.c")), Claim::Found(&json!(2)));
        // Three readings of a.b.c, two of which disagree.
        let three = obj(json!({"a.b.c": 1, "a": {"b.c": 1, "b": {"c": 3}}}));
        assert_eq!(resolve(&three, &path("a.b.c")), Claim::Ambiguous);
        assert_eq!(resolve(&three, &path("a.x")), Claim::Missing);
    }

    #[test]
    fn a_dotted_key_shadowing_a_nested_claim_maps_to_no_header() {
        let c = obj(json!({"realm_access": {"roles": ["user"]}, "realm_access.roles": ["admin"]}));
        let mapping = vec![(
            path("realm_access.roles"),
            HeaderName::parse("x-user-roles").unwrap(),
        )];
        let mapped = map_claims(&c, &mapping);
        assert!(mapped.is_err(), "{mapped:?}");
        assert_eq!(mapped, Err(AuthError::AmbiguousClaim));
        // Readings that agree are one claim.
        let same = obj(json!({"a": {"b": "x"}, "a.b": "x"}));
        let mapping = vec![(path("a.b"), HeaderName::parse("x-ab").unwrap())];
        assert_eq!(
            map_claims(&same, &mapping),
            Ok(vec![("x-ab".to_string(), "x".to_string())])
        );
    }

    #[test]
    fn renders_scalars_arrays_and_objects() {
        assert_eq!(header_value(&json!("x")), Ok(Some("x".into())));
        assert_eq!(header_value(&json!(42)), Ok(Some("42".into())));
        assert_eq!(header_value(&json!(1.5)), Ok(Some("1.5".into())));
        assert_eq!(header_value(&json!(true)), Ok(Some("true".into())));
        assert_eq!(header_value(&json!(["a", "b"])), Ok(Some("a,b".into())));
        assert_eq!(
            header_value(&json!(["a", 1, false])),
            Ok(Some("a,1,false".into()))
        );
        assert_eq!(
            header_value(&json!({"k": [1, 2]})),
            Ok(Some("{\"k\":[1,2]}".into()))
        );
        assert_eq!(
            header_value(&json!([["a"], "b"])),
            Ok(Some("[[\"a\"],\"b\"]".into()))
        );
        assert_eq!(
            header_value(&json!(["a,b", "c"])),
            Ok(Some("[\"a,b\",\"c\"]".into()))
        );
    }

    #[test]
    fn renders_nothing_for_null_and_empty_values() {
        assert_eq!(header_value(&Value::Null), Ok(None));
        assert_eq!(header_value(&json!("")), Ok(None));
        assert_eq!(header_value(&json!([])), Ok(None));
    }

    #[test]
    fn passes_non_ascii_through() {
        assert_eq!(header_value(&json!("José")), Ok(Some("José".into())));
    }

    #[test]
    fn refuses_control_characters_and_huge_values() {
        for bad in [
            json!("a\r\nX-Admin: 1"),
            json!("a\nb"),
            json!("tab\there"),
            json!("del\u{7f}"),
            json!(["ok", "bad\r"]),
            json!("x".repeat(MAX_HEADER_VALUE_BYTES + 1)),
            json!(vec!["abcdefgh"; 1000]),
        ] {
            assert_eq!(
                header_value(&bad),
                Err(AuthError::UnrepresentableClaim),
                "{bad}"
            );
        }
        // Inside objects, serde_json escapes controls, so the JSON text is safe.
        assert_eq!(
            header_value(&json!({"k": "a\nb"})),
            Ok(Some("{\"k\":\"a\\nb\"}".into()))
        );
        assert!(header_value(&json!("x".repeat(MAX_HEADER_VALUE_BYTES))).is_ok());
    }

    #[test]
    fn maps_claims_in_order_and_skips_missing_ones() {
        let c = obj(
            json!({"sub": "u1", "email": "u1@example.com", "realm_access": {"roles": ["a", "b"]}}),
        );
        let mapping = vec![
            (path("sub"), HeaderName::parse("X-User-Id").unwrap()),
            (path("missing"), HeaderName::parse("x-missing").unwrap()),
            (
                path("realm_access.roles"),
                HeaderName::parse("x-user-roles").unwrap(),
            ),
        ];
        assert_eq!(
            map_claims(&c, &mapping),
            Ok(vec![
                ("x-user-id".to_string(), "u1".to_string()),
                ("x-user-roles".to_string(), "a,b".to_string()),
            ])
        );
    }

    #[test]
    fn one_bad_claim_refuses_the_mapping() {
        let c = obj(json!({"sub": "u1", "name": "evil\r\nx-admin: true"}));
        let mapping = vec![
            (path("sub"), HeaderName::parse("x-user-id").unwrap()),
            (path("name"), HeaderName::parse("x-user-name").unwrap()),
        ];
        assert_eq!(
            map_claims(&c, &mapping),
            Err(AuthError::UnrepresentableClaim)
        );
    }
}
