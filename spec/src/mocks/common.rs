//! Pieces shared by the mocks: counters, the clock, and token minting with header/claim overrides.

use crate::jose::{b64url, hmac, Alg, SigningKey};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Named request counters.
pub struct Counters(Mutex<BTreeMap<String, u64>>);

impl Counters {
    pub fn new(names: &[&str]) -> Counters {
        Counters(Mutex::new(
            names.iter().map(|n| (n.to_string(), 0)).collect(),
        ))
    }
    pub fn inc(&self, name: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(name.to_string()).or_default() += 1;
        }
    }
    /// The count of `name` so far (0 if never counted).
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .map(|m| m.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }
    pub fn snapshot(&self) -> Value {
        let m = self.0.lock().map(|m| m.clone()).unwrap_or_default();
        Value::Object(m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
    }
    pub fn reset(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.values_mut().for_each(|v| *v = 0);
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Applies `{"name": value | null}` overrides: a value replaces, `null` removes.
pub fn apply_overrides(
    base: &mut Map<String, Value>,
    overrides: Option<&Value>,
) -> Result<(), String> {
    match overrides {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), v.clone());
                }
            }
            Ok(())
        }
        Some(_) => Err("header/claims overrides must be JSON objects".into()),
    }
}

/// Builds and signs a token. `alg` is the signing algorithm: a JWS one (signed with `key`), `none`
/// (empty signature) or `HS256/384/512` (HMAC keyed with `hmac_key` from `req`, default: `key`'s
/// public PEM — the classic key-confusion attack). Header and claims get `req`'s overrides.
pub fn mint_token(
    key: &SigningKey,
    alg: &str,
    mut header: Map<String, Value>,
    mut claims: Map<String, Value>,
    req: &Value,
) -> Result<String, String> {
    apply_overrides(&mut header, req.get("header"))?;
    apply_overrides(&mut claims, req.get("claims"))?;
    let h = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let p = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
    let input = format!("{}.{}", b64url(&h), b64url(&p));
    let sig = if alg == "none" {
        Vec::new()
    } else if let Some(bits) = alg.strip_prefix("HS").and_then(|b| b.parse::<u32>().ok()) {
        let secret = match req.get("hmac_key").and_then(Value::as_str) {
            Some(s) => s.as_bytes().to_vec(),
            None => key.public_pem().map_err(|e| e.to_string())?.into_bytes(),
        };
        hmac(bits, &secret, input.as_bytes()).map_err(|e| e.to_string())?
    } else {
        let a = Alg::parse(alg).ok_or_else(|| format!("unknown alg {alg:?}"))?;
        key.sign(a, input.as_bytes()).map_err(|e| e.to_string())?
    };
    Ok(format!("{input}.{}", b64url(&sig)))
}

/// The signing algorithm a key can use for `alg` when minting: HS*/none are allowed with any key.
pub fn key_fits(key: &SigningKey, alg: &str) -> bool {
    alg == "none" || alg.starts_with("HS") || Alg::parse(alg).is_some_and(|a| key.supports(a))
}

/// A JSON object from pairs.
pub fn obj(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
