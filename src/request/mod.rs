//! One request's parts, in the order the flow ([`crate::authn`]) meets them: the header screen
//! and token candidates ([`headers`]), the token chosen from them ([`extractor`]), the
//! verified-token cache ([`token_cache`]), the route's rules on verified claims ([`policy`]),
//! and claims rendered as upstream header values ([`claims`]).

pub mod claims;
pub mod extractor;
pub mod headers;
pub mod policy;
pub mod token_cache;

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    /// The claims object of a `json!` literal.
    pub(super) fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }
}
