//! An independent AWS Signature Version 4 check for the mocks (what AWS STS does with the
//! `GetCallerIdentity` request Google's STS replays): written from AWS's documentation on
//! OpenSSL's HMAC and SHA-256, sharing no code with the filter's signer (`src/google/federation/sigv4.rs`).

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// What the verifier needs to know about the caller's credentials and the expected scope.
pub struct Expected<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// Headers that must be among the signed ones (lower case).
    pub must_sign: &'a [&'a str],
}

fn hmac(key: &[u8], data: &str) -> Result<Vec<u8>, String> {
    let pkey = PKey::hmac(key).map_err(|e| e.to_string())?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).map_err(|e| e.to_string())?;
    signer.update(data.as_bytes()).map_err(|e| e.to_string())?;
    signer.sign_to_vec().map_err(|e| e.to_string())
}

fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `%XX` for everything but `A-Za-z0-9-_.~`.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Checks the `Authorization` SigV4 signature of `method url` with `headers` (an empty body).
/// `Ok(())` when it is valid for `expected`, else why not (AWS STS would say
/// `SignatureDoesNotMatch`, `InvalidClientTokenId`, ...).
pub fn verify(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    expected: &Expected<'_>,
) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let auth = header("authorization").ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization is not AWS4-HMAC-SHA256")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or("malformed Authorization")?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(format!("unknown Authorization part {k}")),
        }
    }
    let (credential, signed_headers, signature) = (
        credential.ok_or("no Credential")?,
        signed_headers.ok_or("no SignedHeaders")?,
        signature.ok_or("no Signature")?,
    );
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, day, region, service, terminator] = scope.as_slice() else {
        return Err("Credential is not key/date/region/service/aws4_request".into());
    };
    if *key_id != expected.access_key_id {
        return Err("InvalidClientTokenId: unknown access key".into());
    }
    if *region != expected.region {
        return Err(format!(
            "SignatureDoesNotMatch: credential scope region {region}, expected {}",
            expected.region
        ));
    }
    if *service != expected.service || *terminator != "aws4_request" {
        return Err("SignatureDoesNotMatch: credential scope service".into());
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for needed in expected.must_sign {
        if !names.contains(needed) {
            return Err(format!("header {needed} is not signed"));
        }
    }
    let amz_date = header("x-amz-date").ok_or("no x-amz-date")?;
    if !amz_date.starts_with(day) {
        return Err("x-amz-date does not match the credential scope date".into());
    }
    // The URL: scheme://host[:port][/path][?query].
    let after_scheme = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or("url has no scheme")?;
    let (authority, path_query) = match after_scheme.find(['/', '?']) {
        Some(i) => after_scheme.split_at(i),
        None => (after_scheme, ""),
    };
    if header("host") != Some(authority) {
        return Err("host header is not the URL's host".into());
    }
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let path = if path.is_empty() { "/" } else { path };
    let canonical_path: Vec<String> = path.split('/').map(encode).collect();
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(k), encode(v))
        })
        .collect();
    params.sort();
    let canonical_query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut canonical_headers = String::new();
    for name in &names {
        let value = header(name).ok_or_else(|| format!("signed header {name} is missing"))?;
        let value: Vec<&str> = value.split_whitespace().collect();
        canonical_headers.push_str(&format!("{name}:{}\n", value.join(" ")));
    }
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        canonical_path.join("/"),
        canonical_query.join("&"),
        sha256_hex(b"")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{day}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(
        format!("AWS4{}", expected.secret_access_key).as_bytes(),
        day,
    )?;
    for part in [*region, *service, "aws4_request"] {
        key = hmac(&key, part)?;
    }
    let computed: String = hmac(&key, &string_to_sign)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if computed != signature {
        return Err("SignatureDoesNotMatch: the request signature we calculated does not match the signature you provided".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `get-vanilla` of the AWS SigV4 test suite (../shared/vectors/aws-sigv4).
    #[test]
    fn accepts_the_aws_test_suite_example_and_refuses_changes() {
        let headers = vec![
            ("host".to_string(), "example.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
            ("Authorization".to_string(), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".to_string()),
        ];
        let expected = Expected {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "service",
            must_sign: &["host"],
        };
        verify("GET", "https://example.amazonaws.com/", &headers, &expected).unwrap();
        assert!(verify(
            "POST",
            "https://example.amazonaws.com/",
            &headers,
            &expected
        )
        .is_err());
        let wrong = Expected {
            secret_access_key: "other",
            ..expected
        };
        assert!(
            verify("GET", "https://example.amazonaws.com/", &headers, &wrong)
                .unwrap_err()
                .contains("SignatureDoesNotMatch")
        );
    }
}
