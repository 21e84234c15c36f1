//! AWS as a Workload Identity Federation subject: the EC2 instance metadata service callouts
//! (IMDSv2 session token, availability zone, role, temporary credentials) and their answers, and
//! the subject token Google's STS takes from AWS — a SigV4-signed `GetCallerIdentity` request,
//! serialised as Google documents it. Pure: time comes in as `now`.

use crate::google::federation::sigv4::{self, Credentials};
use crate::host::shared::layout;
use crate::host::CalloutRequest;
use crate::http::url::HttpUrl;
use std::fmt;

/// Header of the IMDSv2 session-token request: how long the token lives (s).
pub const SESSION_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// Header carrying the IMDSv2 session token on metadata requests.
pub const SESSION_TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Session lifetime asked for: one mint needs it for seconds (Google's libraries ask 300).
const SESSION_TTL_SECS: &str = "300";
/// Largest metadata answer read.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// Header naming the workload identity pool provider inside the signed request.
const TARGET_RESOURCE_HEADER: &str = "x-goog-cloud-target-resource";

/// Temporary credentials of the instance role and when they expire (Unix seconds), with the
/// region they sign for. `Debug` never shows the secret or the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleCredentials {
    pub region: String,
    pub credentials: Credentials,
    pub expires_at: u64,
}

impl fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("region", &self.region)
            .field("access_key_id", &self.credentials.access_key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// `PUT <imdsv2_session_token_url>` with the TTL header.
pub fn session_request(url: &HttpUrl, timeout_ms: u32) -> CalloutRequest {
    let mut request = get(url, None, timeout_ms);
    if let Some((_, method)) = request.headers.iter_mut().find(|(n, _)| n == ":method") {
        *method = "PUT".to_string();
    }
    request
        .headers
        .push((SESSION_TTL_HEADER.to_string(), SESSION_TTL_SECS.to_string()));
    request
}

/// `GET url`, with the IMDSv2 session token when there is one.
pub fn get(url: &HttpUrl, session: Option<&str>, timeout_ms: u32) -> CalloutRequest {
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), url.path_and_query.clone()),
        (":authority".to_string(), url.authority()),
        (":scheme".to_string(), url.scheme.as_str().to_string()),
    ];
    if let Some(token) = session {
        headers.push((SESSION_TOKEN_HEADER.to_string(), token.to_string()));
    }
    CalloutRequest {
        upstream: url.dispatch_target(),
        headers,
        body: None,
        timeout_ms,
    }
}

/// `<url>/<role>`: where the role's credentials are.
pub fn role_credentials_url(base: &HttpUrl, role: &str) -> HttpUrl {
    let (path, query) = match base.path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base.path_and_query.as_str(), None),
    };
    let path = format!("{}/{role}", path.trim_end_matches('/'));
    match query {
        Some(q) => base.with_path_and_query(&format!("{path}?{q}")),
        None => base.with_path_and_query(&path),
    }
}

fn text(body: &[u8]) -> Result<&str, &'static str> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err("answer too large");
    }
    std::str::from_utf8(body)
        .map(str::trim)
        .map_err(|_| "answer is not UTF-8")
}

/// A printable token without spaces (session tokens, key ids, secrets).
fn printable(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

/// The IMDSv2 session token (the whole body).
pub fn read_session_token(body: &[u8]) -> Result<String, &'static str> {
    let token = text(body)?;
    if !printable(token) {
        return Err("not a session token");
    }
    Ok(token.to_string())
}

/// The region of the availability zone in the body (`us-east-1b` → `us-east-1`), as Google's
/// libraries read it.
pub fn read_region(body: &[u8]) -> Result<String, &'static str> {
    let zone = text(body)?;
    let valid = zone.len() >= 2
        && zone.len() <= 64
        && zone
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err("not an availability zone");
    }
    let region = zone.get(..zone.len() - 1).unwrap_or_default();
    if region.ends_with('-') || region.is_empty() {
        return Err("not an availability zone");
    }
    Ok(region.to_string())
}

/// The instance role's name: the first line of the listing.
pub fn read_role(body: &[u8]) -> Result<String, &'static str> {
    let role = text(body)?.lines().next().unwrap_or_default().trim();
    // IAM role names: letters, digits and +=,.@_- (at most 64).
    let valid = !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !valid {
        return Err("no instance role (attach an IAM role to the instance)");
    }
    Ok(role.to_string())
}

/// The role's temporary credentials (`AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`),
/// refused when already expired at `now`.
pub fn read_credentials(
    body: &[u8],
    region: &str,
    now: u64,
) -> Result<RoleCredentials, &'static str> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        code: Option<String>,
        access_key_id: String,
        secret_access_key: String,
        token: Option<String>,
        expiration: String,
    }
    let answer: Answer = serde_json::from_str(text(body)?).map_err(|_| {
        "not the credentials JSON (AccessKeyId, SecretAccessKey, Token, Expiration)"
    })?;
    if answer.code.as_deref().is_some_and(|c| c != "Success") {
        return Err("credentials Code is not Success");
    }
    if !printable(&answer.access_key_id)
        || !printable(&answer.secret_access_key)
        || !answer.token.as_deref().is_none_or(printable)
    {
        return Err("credentials hold unprintable values");
    }
    let expires_at = crate::google::federation::utc::parse_rfc3339_utc(&answer.expiration)
        .ok_or("Expiration is not a UTC time")?;
    if expires_at <= now {
        return Err("credentials already expired");
    }
    Ok(RoleCredentials {
        region: region.to_string(),
        credentials: Credentials {
            access_key_id: answer.access_key_id,
            secret_access_key: answer.secret_access_key,
            session_token: answer.token,
        },
        expires_at,
    })
}

#[derive(serde::Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: &'a str,
}

/// The serialised request, members in the order Google's libraries write them.
#[derive(serde::Serialize)]
struct SignedRequest<'a> {
    headers: Vec<KeyValue<'a>>,
    method: &'a str,
    url: &'a str,
}

/// The subject token: `POST <regional_cred_verification_url>` (`{region}` replaced), signed
/// for service `sts` in the role's region with `x-goog-cloud-target-resource: <pool provider>`
/// among the signed headers, serialised as URL-encoded JSON `{"headers": [{"key", "value"}…],
/// "method": "POST", "url"}` (headers sorted by name, `Authorization` first).
pub fn subject_token(
    role: &RoleCredentials,
    verification_url: &str,
    target_resource: &str,
    now: u64,
) -> Result<String, &'static str> {
    let url = verification_url.replace("{region}", &role.region);
    let parsed = HttpUrl::parse(&url).map_err(|_| "regional_cred_verification_url is invalid")?;
    let (path, query) = parsed
        .path_and_query
        .split_once('?')
        .unwrap_or((parsed.path_and_query.as_str(), ""));
    // `sts.us-east-1.amazonaws.com` → service `sts`, as Google's libraries derive it.
    let service = parsed.host.split('.').next().unwrap_or_default();
    let host = parsed.authority();
    let extra = [(TARGET_RESOURCE_HEADER, target_resource)];
    let request = sigv4::Request {
        method: "POST",
        path,
        query,
        headers: &extra,
        payload: b"",
    };
    let (signature, headers) = sigv4::sign(
        &role.credentials,
        &role.region,
        service,
        now,
        &host,
        &request,
    );
    let mut pairs = vec![KeyValue {
        key: "Authorization",
        value: &signature.authorization,
    }];
    pairs.extend(headers.iter().map(|(k, v)| KeyValue { key: k, value: v }));
    let json = serde_json::to_string(&SignedRequest {
        headers: pairs,
        method: "POST",
        url: &url,
    })
    .map_err(|_| "could not serialise the signed request")?;
    Ok(quote(&json))
}

/// Percent-encodes like Python's `urllib.parse.quote` (unreserved characters and `/` kept).
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RoleCredentials {
    /// Payload bytes for shared data (secrets stay in the host's memory zone, never on disk).
    pub fn encode(&self) -> Vec<u8> {
        let c = &self.credentials;
        let mut out = Vec::new();
        layout::put_u64(&mut out, self.expires_at);
        layout::put_bytes(&mut out, self.region.as_bytes());
        layout::put_bytes(&mut out, c.access_key_id.as_bytes());
        layout::put_bytes(&mut out, c.secret_access_key.as_bytes());
        layout::put_bytes(
            &mut out,
            c.session_token.as_deref().unwrap_or_default().as_bytes(),
        );
        out
    }

    /// Reads [`RoleCredentials::encode`]'s bytes.
    pub fn decode(payload: &[u8]) -> Option<RoleCredentials> {
        let mut input = payload;
        let expires_at = layout::take_u64(&mut input)?;
        let mut next =
            || layout::take_bytes(&mut input).and_then(|b| String::from_utf8(b.to_vec()).ok());
        let (region, key, secret, token) = (next()?, next()?, next()?, next()?);
        input.is_empty().then_some(RoleCredentials {
            region,
            credentials: Credentials {
                access_key_id: key,
                secret_access_key: secret,
                session_token: (!token.is_empty()).then_some(token),
            },
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_440_938_160; // 2015-08-30T12:36:00Z

    fn role() -> RoleCredentials {
        RoleCredentials {
            region: "us-east-1".into(),
            credentials: Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: Some("IQoJb3JpZ2luX2VjEXAMPLE/+=".into()),
            },
            expires_at: NOW + 3600,
        }
    }

    fn unquote(s: &str) -> String {
        let mut out = Vec::new();
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = [bytes.next().unwrap(), bytes.next().unwrap()]
                    .iter()
                    .map(|b| char::from(*b))
                    .collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                out.push(b);
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn header<'a>(r: &'a CalloutRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn metadata_requests_carry_the_session_token() {
        let url = HttpUrl::parse("http://169.254.169.254/latest/api/token").unwrap();
        let put = session_request(&url, 1000);
        assert_eq!(put.upstream, "169.254.169.254:80");
        assert_eq!(header(&put, ":method"), Some("PUT"));
        assert_eq!(header(&put, SESSION_TTL_HEADER), Some("300"));
        let url =
            HttpUrl::parse("http://169.254.169.254/latest/meta-data/iam/security-credentials")
                .unwrap();
        let with = get(&url, Some("sess"), 1000);
        assert_eq!(header(&with, SESSION_TOKEN_HEADER), Some("sess"));
        assert_eq!(header(&get(&url, None, 1000), SESSION_TOKEN_HEADER), None);
        assert_eq!(
            role_credentials_url(&url, "kong-role").path_and_query,
            "/latest/meta-data/iam/security-credentials/kong-role"
        );
        let slash = HttpUrl::parse("http://imds/creds/").unwrap();
        assert_eq!(role_credentials_url(&slash, "r").path_and_query, "/creds/r");
    }

    #[test]
    fn reads_metadata_answers() {
        assert_eq!(read_region(b"us-east-1b\n").unwrap(), "us-east-1");
        assert_eq!(read_region(b"eu-west-3a").unwrap(), "eu-west-3");
        for bad in [
            &b""[..],
            b"a",
            b"US-EAST-1A",
            b"us east 1a",
            b"-a",
            b"<html>",
        ] {
            assert!(read_region(bad).is_err(), "{bad:?}");
        }
        assert_eq!(read_role(b"kong-role\n").unwrap(), "kong-role");
        assert_eq!(read_role(b"first\nsecond").unwrap(), "first");
        assert!(read_role(b"").is_err());
        assert!(read_role(b"../../etc").is_err());
        assert_eq!(read_session_token(b"AQAEAN==\n").unwrap(), "AQAEAN==");
        assert!(read_session_token(b"a b").is_err());
    }

    #[test]
    fn reads_credentials_and_refuses_expired_ones() {
        let body = br#"{"Code":"Success","LastUpdated":"2015-08-30T12:00:00Z","Type":"AWS-HMAC",
            "AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"secret/+","Token":"tok==",
            "Expiration":"2015-08-30T18:36:00Z"}"#;
        let c = read_credentials(body, "us-east-1", NOW).unwrap();
        assert_eq!(c.expires_at, NOW + 6 * 3600);
        assert_eq!(c.credentials.session_token.as_deref(), Some("tok=="));
        assert!(!format!("{c:?}").contains("secret/+"));
        assert!(!format!("{c:?}").contains("tok=="));
        assert_eq!(
            read_credentials(body, "us-east-1", NOW + 6 * 3600),
            Err("credentials already expired")
        );
        let failed = br#"{"Code":"AssumeRoleUnauthorizedAccess","AccessKeyId":"A","SecretAccessKey":"s","Expiration":"2015-08-30T18:36:00Z"}"#;
        assert!(read_credentials(failed, "r", NOW).is_err());
        for bad in [&b"<html>"[..], b"{}", b"{\"AccessKeyId\":\"A\"}"] {
            assert!(read_credentials(bad, "r", NOW).is_err());
        }
    }

    #[test]
    fn credentials_round_trip_through_shared_data() {
        let c = role();
        assert_eq!(RoleCredentials::decode(&c.encode()), Some(c.clone()));
        let mut long_term = c.clone();
        long_term.credentials.session_token = None;
        assert_eq!(
            RoleCredentials::decode(&long_term.encode()),
            Some(long_term)
        );
        assert_eq!(RoleCredentials::decode(&c.encode()[..20]), None);
    }

    #[test]
    fn subject_token_is_the_serialised_signed_request_google_documents() {
        let pool = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws";
        let token = subject_token(
            &role(),
            "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            pool,
            NOW,
        )
        .unwrap();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%-._~/".contains(&b)));
        let json = unquote(&token);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["method"], "POST");
        assert_eq!(
            v["url"],
            "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        );
        let keys: Vec<&str> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "Authorization",
                "host",
                "x-amz-date",
                "x-amz-security-token",
                "x-goog-cloud-target-resource"
            ]
        );
        let value = |k: &str| {
            v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["key"] == k)
                .unwrap()["value"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(value("host"), "sts.us-east-1.amazonaws.com");
        assert_eq!(value("x-amz-date"), "20150830T123600Z");
        assert_eq!(value("x-goog-cloud-target-resource"), pool);
        let auth = value("Authorization");
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource, Signature="
        ), "{auth}");
        // Member order as Google's libraries serialise it (sorted keys).
        assert!(
            json.starts_with("{\"headers\":[{\"key\":\"Authorization\""),
            "{json}"
        );
        assert!(json.ends_with("\"method\":\"POST\",\"url\":\"https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15\"}"));
    }
}
