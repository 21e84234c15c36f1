//! AWS Signature Version 4: canonical request, string to sign, signing key and the
//! `Authorization` value, as AWS specifies them (checked against AWS's own test suite in
//! `../shared/vectors/aws-sigv4`, see `tests/vectors_sigv4.rs`). Pure: the time comes in as a parameter.
//!
//! Only header-based signing of requests whose path needs no normalisation is implemented;
//! that is all Workload Identity Federation's `GetCallerIdentity` subject token needs.

use crate::google::federation::utc::DateTime;
use crate::http::url::encode_query_component;
use sha2::{Digest, Sha256};

/// The one algorithm SigV4 signs with.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last element of every credential scope.
const TERMINATOR: &str = "aws4_request";
const HMAC_BLOCK: usize = 64;

/// Long-term or temporary AWS credentials. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The session token of temporary credentials (`X-Amz-Security-Token`, signed).
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A request to sign. Header names may be in any case; `host` and `x-amz-date` must be among
/// the headers (see [`sign`], which adds them).
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded or not; it is encoded once more, as AWS requires for
    /// every service but S3). No normalisation.
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// The parts of a signature, kept for tests and for building the signed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub canonical_request: String,
    pub string_to_sign: String,
    /// `date/region/service/aws4_request`.
    pub scope: String,
    /// `host;x-amz-date;...`.
    pub signed_headers: String,
    /// Lower-case hex.
    pub signature: String,
    /// The whole `Authorization` header value.
    pub authorization: String,
}

/// Signs `request` (whose headers already carry `host` and `x-amz-date`) for `region` and
/// `service` at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn sign_prepared(
    credentials: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    request: &Request<'_>,
) -> Signature {
    let day = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{day}/{region}/{service}/{TERMINATOR}");
    let (canonical_request, signed_headers) = canonical_request(request);
    let string_to_sign = string_to_sign(amz_date, &scope, &canonical_request);
    let key = signing_key(&credentials.secret_access_key, day, region, service);
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    Signature {
        canonical_request,
        string_to_sign,
        scope,
        signed_headers,
        signature,
        authorization,
    }
}

/// Signs `request` to `host` at `now` (Unix seconds): adds `host`, `x-amz-date` and, for
/// temporary credentials, `x-amz-security-token` to its headers, all signed. Returns the
/// signature and every header the request must carry except `Authorization`, sorted by name.
pub fn sign(
    credentials: &Credentials,
    region: &str,
    service: &str,
    now: u64,
    host: &str,
    request: &Request<'_>,
) -> (Signature, Vec<(String, String)>) {
    let amz_date = DateTime::from_unix(now).amz_date();
    let mut headers: Vec<(String, String)> = vec![
        ("host".to_string(), host.to_string()),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".to_string(), token.clone()));
    }
    headers.extend(
        request
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_string())),
    );
    headers.sort();
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let prepared = Request {
        headers: &borrowed,
        ..request.clone()
    };
    let signature = sign_prepared(credentials, region, service, &amz_date, &prepared);
    (signature, headers)
}

/// The canonical request and the signed-headers list (SigV4 task 1).
pub fn canonical_request(request: &Request<'_>) -> (String, String) {
    let (headers, signed) = canonical_headers(request.headers);
    let creq = format!(
        "{}\n{}\n{}\n{headers}\n{signed}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query),
        hex(&Sha256::digest(request.payload)),
    );
    (creq, signed)
}

/// The string to sign (SigV4 task 2).
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The signing key for one day, region and service (SigV4 task 3).
pub fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

/// `/`-separated segments, each URI-encoded (unreserved characters kept); `""` becomes `/`.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    path.split('/')
        .map(encode_query_component)
        .collect::<Vec<_>>()
        .join("/")
}

/// Parameters decoded, re-encoded and sorted by name, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (
                encode_query_component(&percent_decode(name)),
                encode_query_component(&percent_decode(value)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `name:value\n` lines (names lower-cased and sorted, values trimmed with inner runs of spaces
/// collapsed, repeated names joined with `,`) and the `;`-joined names.
fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => merged.push((name, value)),
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let lines: String = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed = merged
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (lines, signed)
}

/// Decodes `%XX` escapes (malformed ones are kept as written); `+` stays `+`.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; HMAC_BLOCK];
    if key.len() > HMAC_BLOCK {
        let digest = Sha256::digest(key);
        block
            .iter_mut()
            .zip(digest.iter())
            .for_each(|(b, d)| *b = *d);
    } else {
        block.iter_mut().zip(key.iter()).for_each(|(b, k)| *b = *k);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1, 2 and 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn derives_the_signing_key_of_aws_documentation() {
        // AWS General Reference, "Examples of how to derive a signing key for Signature Version 4".
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn signs_get_vanilla_of_the_aws_test_suite() {
        let headers = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let request = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            payload: b"",
        };
        let s = sign_prepared(
            &example(),
            "us-east-1",
            "service",
            "20150830T123600Z",
            &request,
        );
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn sign_adds_and_signs_host_date_and_session_token() {
        let mut creds = example();
        creds.session_token = Some("session/token+=".into());
        let extra = [("X-Goog-Cloud-Target-Resource", "//iam.googleapis.com/x")];
        let request = Request {
            method: "POST",
            path: "/",
            query: "Action=GetCallerIdentity&Version=2011-06-15",
            headers: &extra,
            payload: b"",
        };
        let (s, headers) = sign(
            &creds,
            "eu-west-1",
            "sts",
            1_440_938_160,
            "sts.eu-west-1.amazonaws.com",
            &request,
        );
        assert_eq!(
            s.signed_headers,
            "host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource"
        );
        assert_eq!(s.scope, "20150830/eu-west-1/sts/aws4_request");
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "host",
                "x-amz-date",
                "x-amz-security-token",
                "x-goog-cloud-target-resource"
            ]
        );
        assert!(s
            .canonical_request
            .contains("\nAction=GetCallerIdentity&Version=2011-06-15\n"));
        assert!(!format!("{creds:?}").contains("wJalr"));
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1&c"), "a=1&a=x%20y&b=2&c=");
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("k=%zz"), "k=%25zz");
    }
}
