//! `proxy_get_property` paths a request context can read, as Kong provides them
//! (`request.*`, `source.*`, `kong.*`). Outside a request (root contexts, ticks) they are errors.

use super::context::Exchange;

/// Result of a property lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Property {
    Value(Vec<u8>),
    /// Unknown path, or a known one without a value (e.g. no route name).
    NotFound,
    /// Not inside a request: Kong logs "cannot get ... properties outside of a request".
    OutsideRequest,
}

/// Splits a proxy-wasm property path (segments separated by NUL) into a dotted name.
pub fn dotted(path: &[u8]) -> String {
    path.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// Looks `path` up for the exchange of the running request context (`None` outside a request).
pub fn get(exchange: Option<&Exchange>, path: &str) -> Property {
    let known_prefix = [
        "request.",
        "source.",
        "destination.",
        "kong.",
        "ngx.",
        "upstream.",
        "connection.",
    ]
    .iter()
    .any(|p| path.starts_with(p));
    let Some(ex) = exchange else {
        return if known_prefix {
            Property::OutsideRequest
        } else {
            Property::NotFound
        };
    };
    let (url_path, query) = match ex.path.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (ex.path.clone(), String::new()),
    };
    let value = match path {
        "request.path" => Some(ex.path.clone()),
        "request.url_path" => Some(url_path),
        "request.query" => Some(query),
        "request.method" => Some(ex.method.clone()),
        "request.scheme" => Some(ex.scheme.clone()),
        "request.host" => Some(ex.authority.clone()),
        "request.protocol" => Some("HTTP/1.1".to_string()),
        "source.address" => Some(ex.info.source_address.clone()),
        "source.port" => Some(ex.info.source_port.to_string()),
        "connection.id" => Some(ex.info.connection_id.to_string()),
        "kong.route_name" => ex.info.route_name.clone(),
        "kong.route_id" => ex.info.route_id.clone(),
        "kong.service_name" => ex.info.service_name.clone(),
        p => match p.strip_prefix("request.headers.") {
            Some(name) => ex
                .req_headers
                .get(name)
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            None => None,
        },
    };
    value
        .map(|v| Property::Value(v.into_bytes()))
        .unwrap_or(Property::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_properties_only_inside_requests() {
        let ex = Exchange {
            path: "/a/b?x=1".into(),
            method: "GET".into(),
            req_headers: crate::host::context::RequestHeaders::from_pairs(vec![(
                "X-Thing".into(),
                b"v".to_vec(),
            )]),
            ..Exchange::default()
        };
        assert_eq!(
            get(Some(&ex), "request.path"),
            Property::Value(b"/a/b?x=1".to_vec())
        );
        assert_eq!(
            get(Some(&ex), "request.query"),
            Property::Value(b"x=1".to_vec())
        );
        assert_eq!(
            get(Some(&ex), "request.headers.x-thing"),
            Property::Value(b"v".to_vec())
        );
        assert_eq!(get(Some(&ex), "kong.route_name"), Property::NotFound);
        assert_eq!(get(None, "request.path"), Property::OutsideRequest);
        assert_eq!(dotted(b"request\0path\0"), "request.path");
    }
}
