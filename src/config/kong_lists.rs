//! Kong's `{}` for `[]`: Kong DB-less encodes an empty array as `{}` (cjson cannot tell them
//! apart), so every list of the configuration is a [`List`], which also accepts `{}`, and every
//! map a [`Dict`], which also accepts `[]`. Both cap their entries at 64 (`MAX_LIST`).

use super::settings::MAX_LIST;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;

/// A JSON array, or `{}` (what Kong DB-less makes of an empty array).
#[derive(Debug, Clone, PartialEq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array (or {} for an empty one)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element()? {
            if out.len() >= MAX_LIST {
                return Err(de::Error::custom(format!("more than {MAX_LIST} entries")));
            }
            out.push(item);
        }
        Ok(List(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<List<T>, A::Error> {
        match map.next_key::<IgnoredAny>()? {
            None => Ok(List(Vec::new())),
            Some(_) => Err(de::Error::custom(
                "expected an array; only an empty object {} stands for an empty array",
            )),
        }
    }
}

/// A JSON object kept in document order (duplicate keys refused), or `[]` for an empty one.
///
/// Its keys are claim paths, not fields: a value of the wrong type is reported at the map
/// (`required_claims`), not at a path built from a key that may itself contain dots.
#[derive(Debug, Clone, PartialEq)]
pub struct Dict<T>(pub Vec<(String, T)>);

impl<T> Default for Dict<T> {
    fn default() -> Self {
        Dict(Vec::new())
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Dict<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DictVisitor(PhantomData))
    }
}

struct DictVisitor<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for DictVisitor<T> {
    type Value = Dict<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object (or [] for an empty one)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dict<T>, A::Error> {
        let mut out: Vec<(String, T)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            if out.len() >= MAX_LIST {
                return Err(de::Error::custom(format!("more than {MAX_LIST} entries")));
            }
            let value =
                serde_json::from_value(map.next_value::<Value>()?).map_err(de::Error::custom)?;
            out.push((key, value));
        }
        Ok(Dict(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dict<T>, A::Error> {
        match seq.next_element::<IgnoredAny>()? {
            None => Ok(Dict(Vec::new())),
            Some(_) => Err(de::Error::custom(
                "expected an object; only an empty array [] stands for an empty object",
            )),
        }
    }
}
