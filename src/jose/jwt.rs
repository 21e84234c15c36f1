//! Compact JWS parsing (RFC 7515 §7.1) without trusting anything: three segments, the
//! unverified header and unverified claims.
//!
//! Nothing here checks a signature or a claim's value; the names say so. Decisions:
//! - Only the compact serialization (`header.payload.signature`) is accepted; a JWS JSON
//!   serialization (it starts with `{`) is `Malformed`.
//! - Each segment is strict base64url ([`crate::jose::b64`]).
//! - Header and payload must be JSON objects (UTF-8, RFC 8259). **Duplicate member names are
//!   refused at every depth** (`Malformed`), in the header and in the payload: serde_json
//!   keeps the last duplicate while other parsers keep the first, and the verified payload is
//!   forwarded upstream (`claims_header`), so a duplicate would let two parties read two
//!   different tokens out of the same bytes (RFC 7515 §5.2 allows refusing them).
//! - Registered members of the wrong JSON type are `Malformed`: header `alg`, `kid`, `typ`,
//!   `x5t` must be strings; claims `iss`, `sub` strings; `aud` a string or an array of
//!   strings; `exp`, `nbf`, `iat` numbers. A missing `alg` is kept as the empty string, which
//!   the verifier refuses as `AlgorithmNotAllowed`.
//! - NumericDates (`exp`, `nbf`, `iat`) may be fractional (RFC 7519 §2). They are kept as `i64`
//!   seconds, rounded toward refusal: `exp` down (floor), `nbf` up (ceil), `iat` down. A value
//!   outside ±2^62 seconds is `Malformed`.

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::jose::b64;
use crate::jose::TokenError;

/// The JOSE header, as sent. Never trusted: `jwk`, `jku`, `x5u` and `x5c` are noted and never
/// used to find a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnverifiedHeader {
    /// `alg`, exactly as sent; the empty string when absent.
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// `x5t` (SHA-1 certificate thumbprint, base64url): Azure AD v1 tokens carry it instead of
    /// `kid`; it may select among keys that publish the same `x5t`.
    pub x5t: Option<String>,
    /// `crit` is present (whatever its value): no extension is understood, so it is refused.
    pub has_crit: bool,
    /// `jwk`, `jku`, `x5u` or `x5c` is present: noted for logs, never used.
    pub has_key_injection: bool,
}

/// The registered claims, read from the unverified payload for early refusal only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnverifiedClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    /// `aud` as a list: a single string becomes one element; absent is empty.
    pub aud: Vec<String>,
    /// `exp` in whole seconds, rounded down.
    pub exp: Option<i64>,
    /// `nbf` in whole seconds, rounded up.
    pub nbf: Option<i64>,
    /// `iat` in whole seconds, rounded down. Never checked by the verifier.
    pub iat: Option<i64>,
}

/// A compact JWS split and decoded, payload not interpreted. What [`parse`] builds on; the
/// vector tests use it for JWS whose payload is not a JSON object.
#[derive(Clone, Debug)]
pub struct UnverifiedJws<'t> {
    /// `header.payload` exactly as received: the bytes the signature covers.
    pub signing_input: &'t [u8],
    pub unverified_header: UnverifiedHeader,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A compact JWS whose payload is a JSON object of claims. Nothing in it has been verified.
#[derive(Clone, Debug)]
pub struct UnverifiedToken<'t> {
    /// `header.payload` exactly as received: the bytes the signature covers.
    pub signing_input: &'t [u8],
    pub unverified_header: UnverifiedHeader,
    pub unverified_claims: UnverifiedClaims,
    /// The whole payload object.
    pub payload: Map<String, Value>,
    /// The decoded payload bytes (the JSON text the issuer signed).
    pub payload_json: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS: exactly three `.`-separated strict base64url segments and
/// a JSON-object header. The payload is decoded but not parsed.
pub fn parse_jws(token: &str) -> Result<UnverifiedJws<'_>, TokenError> {
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let signing_len = h64
        .len()
        .checked_add(1)
        .and_then(|n| n.checked_add(p64.len()))
        .ok_or(TokenError::Malformed)?;
    let signing_input = token
        .as_bytes()
        .get(..signing_len)
        .ok_or(TokenError::Malformed)?;
    let header_json = b64::decode(h64.as_bytes()).ok_or(TokenError::Malformed)?;
    let payload = b64::decode(p64.as_bytes()).ok_or(TokenError::Malformed)?;
    let signature = b64::decode(s64.as_bytes()).ok_or(TokenError::Malformed)?;
    let header = strict_object(&header_json)?;
    Ok(UnverifiedJws {
        signing_input,
        unverified_header: header_fields(&header)?,
        payload,
        signature,
    })
}

/// Parses a compact JWT: [`parse_jws`], then the payload as a JSON object with registered
/// claims of the right types. Every failure is [`TokenError::Malformed`].
pub fn parse(token: &str) -> Result<UnverifiedToken<'_>, TokenError> {
    let jws = parse_jws(token)?;
    let payload = strict_object(&jws.payload)?;
    let unverified_claims = claim_fields(&payload)?;
    Ok(UnverifiedToken {
        signing_input: jws.signing_input,
        unverified_header: jws.unverified_header,
        unverified_claims,
        payload,
        payload_json: jws.payload,
        signature: jws.signature,
    })
}

fn header_fields(header: &Map<String, Value>) -> Result<UnverifiedHeader, TokenError> {
    Ok(UnverifiedHeader {
        alg: opt_string(header, "alg")?.unwrap_or_default(),
        kid: opt_string(header, "kid")?,
        typ: opt_string(header, "typ")?,
        x5t: opt_string(header, "x5t")?,
        has_crit: header.contains_key("crit"),
        has_key_injection: ["jwk", "jku", "x5u", "x5c"]
            .iter()
            .any(|name| header.contains_key(*name)),
    })
}

fn claim_fields(claims: &Map<String, Value>) -> Result<UnverifiedClaims, TokenError> {
    let aud = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(TokenError::Malformed))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(TokenError::Malformed),
    };
    Ok(UnverifiedClaims {
        iss: opt_string(claims, "iss")?,
        sub: opt_string(claims, "sub")?,
        aud,
        exp: numeric_date(claims, "exp", f64::floor)?,
        nbf: numeric_date(claims, "nbf", f64::ceil)?,
        iat: numeric_date(claims, "iat", f64::floor)?,
    })
}

fn opt_string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// Largest NumericDate magnitude accepted (about 146 billion years): keeps `exp + skew`
/// arithmetic far from overflow.
const MAX_NUMERIC_DATE: i64 = 1 << 62;

fn numeric_date(
    obj: &Map<String, Value>,
    name: &str,
    round: fn(f64) -> f64,
) -> Result<Option<i64>, TokenError> {
    let Some(value) = obj.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = value else {
        return Err(TokenError::Malformed);
    };
    let secs = if let Some(i) = n.as_i64() {
        i
    } else if let Some(f) = n.as_f64() {
        let r = round(f);
        // `MAX_NUMERIC_DATE` is a power of two, exact in f64; the cast below cannot saturate.
        if !r.is_finite() || r.abs() > MAX_NUMERIC_DATE as f64 {
            return Err(TokenError::Malformed);
        }
        r as i64
    } else {
        return Err(TokenError::Malformed);
    };
    if secs.checked_abs().is_none_or(|a| a > MAX_NUMERIC_DATE) {
        return Err(TokenError::Malformed);
    }
    Ok(Some(secs))
}

/// Parses a JSON object, refusing duplicate member names at every depth.
pub(crate) fn strict_object(json: &[u8]) -> Result<Map<String, Value>, TokenError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = StrictValue::deserialize(&mut de).map_err(|_| TokenError::Malformed)?;
    de.end().map_err(|_| TokenError::Malformed)?;
    match value.0 {
        Value::Object(map) => Ok(map),
        _ => Err(TokenError::Malformed),
    }
}

/// A `serde_json::Value` whose objects had no duplicate member names.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value without duplicate object keys")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom("duplicate object key"));
            }
            let StrictValue(v) = access.next_value_seed(StrictSeed)?;
            map.insert(key, v);
        }
        Ok(Value::Object(map))
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = StrictValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<StrictValue, D::Error> {
        StrictValue::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(json: &str) -> String {
        b64::encode(json.as_bytes())
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", seg(header), seg(payload), b64::encode(b"sig"))
    }

    /// Tests keep tokens alive for the borrowed result.
    fn leak(t: String) -> &'static str {
        Box::leak(t.into_boxed_str())
    }

    const H: &str = r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#;

    #[test]
    fn parses_header_claims_and_signing_input() {
        let t = token(
            H,
            r#"{"iss":"https://idp","sub":"alice","aud":"api","exp":2000,"nbf":1000,"iat":999,"x":{"y":1}}"#,
        );
        let p = parse(&t).unwrap();
        assert_eq!(p.unverified_header.alg, "RS256");
        assert_eq!(p.unverified_header.kid.as_deref(), Some("k1"));
        assert_eq!(p.unverified_header.typ.as_deref(), Some("JWT"));
        assert!(!p.unverified_header.has_crit && !p.unverified_header.has_key_injection);
        assert_eq!(p.unverified_claims.iss.as_deref(), Some("https://idp"));
        assert_eq!(p.unverified_claims.sub.as_deref(), Some("alice"));
        assert_eq!(p.unverified_claims.aud, vec!["api".to_string()]);
        assert_eq!(p.unverified_claims.exp, Some(2000));
        assert_eq!(p.unverified_claims.nbf, Some(1000));
        assert_eq!(p.unverified_claims.iat, Some(999));
        assert_eq!(p.signature, b"sig");
        let dot = t.rfind('.').unwrap();
        assert_eq!(p.signing_input, &t.as_bytes()[..dot]);
        assert_eq!(p.payload.get("x").unwrap()["y"], 1);
        assert!(p.payload_json.starts_with(b"{\"iss\""));
    }

    #[test]
    fn accepts_audience_array() {
        let p = parse(leak(token(H, r#"{"aud":["a","b"]}"#))).unwrap();
        assert_eq!(
            p.unverified_claims.aud,
            vec!["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn rejects_audience_of_wrong_type() {
        for payload in [
            r#"{"aud":1}"#,
            r#"{"aud":["a",1]}"#,
            r#"{"aud":{"a":1}}"#,
            r#"{"aud":null}"#,
        ] {
            assert_eq!(
                parse(&token(H, payload)).err(),
                Some(TokenError::Malformed),
                "{payload}"
            );
        }
    }

    #[test]
    fn rounds_fractional_dates_toward_refusal() {
        let p = parse(leak(token(H, r#"{"exp":1000.9,"nbf":1000.1,"iat":5.5}"#))).unwrap();
        assert_eq!(p.unverified_claims.exp, Some(1000));
        assert_eq!(p.unverified_claims.nbf, Some(1001));
        assert_eq!(p.unverified_claims.iat, Some(5));
        let p = parse(leak(token(H, r#"{"exp":-1}"#))).unwrap();
        assert_eq!(p.unverified_claims.exp, Some(-1));
    }

    #[test]
    fn rejects_non_numeric_or_huge_dates() {
        for payload in [
            r#"{"exp":"2000"}"#,
            r#"{"exp":null}"#,
            r#"{"nbf":true}"#,
            r#"{"iat":[1]}"#,
            r#"{"exp":1e300}"#,
            r#"{"exp":-1e300}"#,
            r#"{"exp":18446744073709551615}"#,
        ] {
            assert_eq!(
                parse(&token(H, payload)).err(),
                Some(TokenError::Malformed),
                "{payload}"
            );
        }
    }

    #[test]
    fn rejects_wrong_segment_counts() {
        let good = token(H, "{}");
        assert!(parse(&good).is_ok());
        for bad in [
            String::new(),
            ".".to_string(),
            "a.b".to_string(),
            format!("{good}."),
            format!("{good}.x"),
            format!(".{good}"),
            good.replace('.', ""),
        ] {
            assert_eq!(parse(&bad).err(), Some(TokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn rejects_json_serialization() {
        let json = format!(
            r#"{{"payload":"{}","protected":"{}","signature":"c2ln"}}"#,
            seg("{}"),
            seg(H)
        );
        assert_eq!(parse(&json).err(), Some(TokenError::Malformed));
        assert_eq!(parse_jws(&json).err(), Some(TokenError::Malformed));
    }

    #[test]
    fn rejects_padding_in_any_segment() {
        let h = format!("{}=", seg(r#"{"alg":"RS256"}"#)); // 15 bytes → 20 chars, so '=' is extra
        let bad = format!("{h}.{}.{}", seg("{}"), b64::encode(b"sig"));
        assert_eq!(parse(&bad).err(), Some(TokenError::Malformed));
        let bad = format!("{}.{}.c2ln=", seg(H), seg("{}"));
        assert_eq!(parse(&bad).err(), Some(TokenError::Malformed));
    }

    #[test]
    fn rejects_non_object_header_or_payload() {
        for (h, p) in [
            ("[]", "{}"),
            (H, "[]"),
            (H, "\"x\""),
            ("null", "{}"),
            (H, "foo"),
            (H, ""),
        ] {
            assert_eq!(
                parse(&token(h, p)).err(),
                Some(TokenError::Malformed),
                "{h} {p}"
            );
        }
    }

    #[test]
    fn parse_jws_accepts_any_payload_bytes() {
        let t = format!("{}.Zm9v.{}", seg(H), b64::encode(b"sig"));
        let jws = parse_jws(&t).unwrap();
        assert_eq!(jws.payload, b"foo");
        assert_eq!(parse(&t).err(), Some(TokenError::Malformed));
    }

    #[test]
    fn rejects_duplicate_header_members() {
        let t = token(r#"{"alg":"RS256","alg":"none"}"#, "{}");
        assert_eq!(parse(&t).err(), Some(TokenError::Malformed));
    }

    #[test]
    fn rejects_duplicate_claims_at_any_depth() {
        for payload in [
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"x":{"role":"u","role":"admin"}}"#,
            r#"{"x":[{"a":1,"a":2}]}"#,
        ] {
            assert_eq!(
                parse(&token(H, payload)).err(),
                Some(TokenError::Malformed),
                "{payload}"
            );
        }
    }

    #[test]
    fn rejects_trailing_garbage_after_json() {
        assert_eq!(parse(&token(H, "{} {}")).err(), Some(TokenError::Malformed));
        assert!(parse(&token(H, " {} ")).is_ok());
    }

    #[test]
    fn rejects_invalid_utf8_json() {
        let t = format!("{}.{}.c2ln", seg(H), b64::encode(b"{\"sub\":\"\xff\"}"));
        assert_eq!(parse(&t).err(), Some(TokenError::Malformed));
    }

    #[test]
    fn rejects_header_members_of_wrong_type() {
        for h in [
            r#"{"alg":1}"#,
            r#"{"alg":"RS256","kid":1}"#,
            r#"{"alg":"RS256","typ":{}}"#,
            r#"{"alg":"RS256","x5t":[]}"#,
        ] {
            assert_eq!(
                parse(&token(h, "{}")).err(),
                Some(TokenError::Malformed),
                "{h}"
            );
        }
    }

    #[test]
    fn notes_crit_and_key_injection_headers() {
        let p = parse(leak(token(
            r#"{"alg":"RS256","crit":["b64"],"b64":false}"#,
            "{}",
        )))
        .unwrap();
        assert!(p.unverified_header.has_crit);
        for member in ["jwk", "jku", "x5u", "x5c"] {
            let h = format!(r#"{{"alg":"RS256","{member}":{{}}}}"#);
            let p = parse(leak(token(&h, "{}"))).unwrap();
            assert!(p.unverified_header.has_key_injection, "{member}");
        }
    }

    #[test]
    fn missing_alg_is_empty() {
        let p = parse(leak(token("{}", "{}"))).unwrap();
        assert_eq!(p.unverified_header.alg, "");
    }

    #[test]
    fn rejects_deeply_nested_json() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse(&token(H, &deep)).err(), Some(TokenError::Malformed));
    }
}
