//! Workload Identity Federation's credential configuration: the `type: external_account` file
//! that `gcloud iam workload-identity-pools create-cred-config` writes, pasted unchanged into
//! `google_id_token.external_account`, parsed once into what a proxy filter can do with HTTP
//! callouts alone.
//!
//! Supported subject-token sources: `credential_source.url` (with `headers` and `format`: an
//! Azure instance-metadata token, or any local token service) and `environment_id: aws1` (EC2
//! instance metadata, IMDSv2 when `imdsv2_session_token_url` is set). Refused, with the reason:
//! `file` and `executable` (a filter cannot read files or run programs), `certificate` (mTLS
//! callouts are impossible), workforce pools and STS client credentials. Errors name the field
//! relative to the file (`credential_source.file`) and never quote header values.

use crate::http::header_name::HeaderName;
use crate::http::url::HttpUrl;
use serde_json::{Map, Value};
use std::fmt;

/// `subject_token_type` of an AWS `GetCallerIdentity` subject token.
pub const AWS_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
/// `subject_token_type`s a URL source may serve.
const URL_TOKEN_TYPES: [&str; 3] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:saml2",
];
/// The suffix of `service_account_impersonation_url` as gcloud writes it.
const ACCESS_TOKEN_METHOD: &str = ":generateAccessToken";
/// What the filter calls instead: an ID token for the same service account.
const ID_TOKEN_METHOD: &str = ":generateIdToken";
const MAX_HEADERS: usize = 16;
const MAX_STRING: usize = 2048;

/// A refused credential configuration: the field inside it and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountError {
    /// Relative to the credential configuration, e.g. `credential_source.url`; empty for the
    /// whole document.
    pub field: String,
    pub message: String,
}

impl AccountError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> AccountError {
        AccountError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The parsed credential configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalAccount {
    /// The workload identity pool provider, sent to STS as `audience` (and signed into the AWS
    /// subject token as `x-goog-cloud-target-resource`).
    pub audience: String,
    pub subject_token_type: String,
    /// Google's STS token endpoint (`https://sts.googleapis.com/v1/token`).
    pub token_url: HttpUrl,
    /// `service_account_impersonation_url` with `:generateAccessToken` replaced by
    /// `:generateIdToken`: `…/v1/projects/-/serviceAccounts/<email>:generateIdToken`.
    pub id_token_url: HttpUrl,
    /// The impersonated service account's email, from that URL.
    pub service_account: String,
    pub source: SubjectSource,
}

/// Where the gateway's own credential comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectSource {
    /// `credential_source.url`.
    Url(UrlSource),
    /// `credential_source.environment_id: aws1`.
    Aws(AwsSource),
}

/// A subject token served over HTTP.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlSource {
    pub url: HttpUrl,
    /// Sent with the request (`Metadata: True` for Azure). Values are not logged.
    pub headers: Vec<(HeaderName, String)>,
    pub format: SubjectFormat,
}

impl fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("UrlSource")
            .field("url", &self.url)
            .field("headers", &names)
            .field("format", &self.format)
            .finish()
    }
}

/// How the subject token sits in the URL's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectFormat {
    /// The whole body (trimmed). The default.
    Text,
    /// A JSON object; the token is this member's string value.
    Json { field: String },
}

/// EC2 instance metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSource {
    /// `region_url`: answers the availability zone (`us-east-1b`).
    pub region_url: HttpUrl,
    /// `url`: answers the role name; `<url>/<role>` its temporary credentials.
    pub credentials_url: HttpUrl,
    /// `regional_cred_verification_url`, `{region}` not yet replaced.
    pub verification_url: String,
    /// `imdsv2_session_token_url`: IMDSv2 when set, else IMDSv1.
    pub session_token_url: Option<HttpUrl>,
}

impl ExternalAccount {
    /// Parses the credential configuration: a JSON object, or a string holding one.
    pub fn parse(value: &Value) -> Result<ExternalAccount, AccountError> {
        let parsed;
        let value = match value {
            Value::String(text) => {
                parsed = serde_json::from_str::<Value>(text)
                    .map_err(|_| AccountError::new("", "is not valid JSON"))?;
                &parsed
            }
            other => other,
        };
        let map = object(value, "")?;
        check_members(map, "", &TOP_LEVEL)?;
        let kind = string(map, "type", "")?;
        if kind != Some("external_account") {
            return Err(AccountError::new(
                "type",
                "must be external_account (the file gcloud iam workload-identity-pools create-cred-config writes)",
            ));
        }
        let audience = required(map, "audience", "")?.to_string();
        let subject_token_type = required(map, "subject_token_type", "")?.to_string();
        let token_url = url(map, "token_url", "")?
            .ok_or_else(|| AccountError::new("token_url", "is required"))?;
        let (id_token_url, service_account) = impersonation(map)?;
        if let Some(v) = map.get("service_account_impersonation") {
            check_members(
                object(v, "service_account_impersonation")?,
                "service_account_impersonation",
                &IMPERSONATION,
            )?;
        }
        for optional in ["universe_domain", "quota_project_id"] {
            string(map, optional, "")?;
        }
        url(map, "token_info_url", "")?;
        let source = credential_source(
            map.get("credential_source")
                .ok_or_else(|| AccountError::new("credential_source", "is required"))?,
        )?;
        match &source {
            SubjectSource::Aws(_) if subject_token_type != AWS_TOKEN_TYPE => {
                return Err(AccountError::new(
                    "subject_token_type",
                    format!("must be {AWS_TOKEN_TYPE} with environment_id aws1"),
                ));
            }
            SubjectSource::Url(_) if !URL_TOKEN_TYPES.contains(&subject_token_type.as_str()) => {
                return Err(AccountError::new(
                    "subject_token_type",
                    format!(
                        "must be one of {} with credential_source.url",
                        URL_TOKEN_TYPES.join(", ")
                    ),
                ));
            }
            _ => {}
        }
        Ok(ExternalAccount {
            audience,
            subject_token_type,
            token_url,
            id_token_url,
            service_account,
            source,
        })
    }

    /// Everything that decides the subject material (the key of the cached subject): where
    /// it is fetched from, with which headers, and how the answer is read.
    pub fn subject_identity(&self) -> Vec<String> {
        match &self.source {
            SubjectSource::Url(u) => {
                let format = match &u.format {
                    SubjectFormat::Text => "text".to_string(),
                    SubjectFormat::Json { field } => format!("json {field}"),
                };
                let mut fields = vec!["url".to_string(), u.url.to_string(), format];
                for (name, value) in &u.headers {
                    fields.push(format!("{name}: {value}"));
                }
                fields
            }
            SubjectSource::Aws(a) => vec![
                "aws".to_string(),
                a.credentials_url.to_string(),
                a.region_url.to_string(),
                a.verification_url.clone(),
                a.session_token_url
                    .as_ref()
                    .map_or_else(String::new, |u| u.to_string()),
            ],
        }
    }

    /// Everything that decides the STS access token (the key of the cached one): the pool,
    /// the subject token type, STS itself, and the subject's [`Self::subject_identity`].
    pub fn sts_identity(&self) -> Vec<String> {
        let mut fields = vec![
            "sts".to_string(),
            self.audience.clone(),
            self.subject_token_type.clone(),
            self.token_url.to_string(),
        ];
        fields.extend(self.subject_identity());
        fields
    }

    /// Everything that decides an ID token besides its audience: the STS token's identity
    /// and the IAM endpoint (which names the impersonated service account).
    pub fn minting_identity(&self) -> Vec<String> {
        let mut fields = self.sts_identity();
        fields.push(self.id_token_url.to_string());
        fields
    }

    /// How many callouts one mint may take at most (subject token, exchange, ID token).
    pub fn max_steps(&self) -> u32 {
        match &self.source {
            SubjectSource::Url(_) => 3,
            SubjectSource::Aws(a) => 5 + u32::from(a.session_token_url.is_some()),
        }
    }
}

/// A member the file may carry: its name, and why it is refused if it is.
struct Member {
    name: &'static str,
    refused: Option<&'static str>,
}

const fn ok(name: &'static str) -> Member {
    Member {
        name,
        refused: None,
    }
}

const fn refused(name: &'static str, why: &'static str) -> Member {
    Member {
        name,
        refused: Some(why),
    }
}

const TOP_LEVEL: [Member; 13] = [
    ok("type"),
    ok("audience"),
    ok("subject_token_type"),
    ok("token_url"),
    ok("service_account_impersonation_url"),
    ok("service_account_impersonation"),
    ok("credential_source"),
    ok("universe_domain"),
    ok("token_info_url"),
    ok("quota_project_id"),
    refused(
        "workforce_pool_user_project",
        "is for workforce pools, which federate people; a gateway federates as a workload: use a workload identity pool",
    ),
    refused(
        "client_id",
        "STS client authentication is not supported (workload identity pools do not need it): remove client_id and client_secret",
    ),
    refused(
        "client_secret",
        "STS client authentication is not supported (workload identity pools do not need it): remove client_id and client_secret",
    ),
];

const IMPERSONATION: [Member; 1] = [ok("token_lifetime_seconds")];

const SOURCE: [Member; 10] = [
    ok("url"),
    ok("headers"),
    ok("format"),
    ok("environment_id"),
    ok("region_url"),
    ok("regional_cred_verification_url"),
    ok("imdsv2_session_token_url"),
    refused(
        "file",
        "is not supported: a proxy filter cannot read files (it reaches the outside only through HTTP callouts); serve the token over HTTP and use credential_source.url, or use environment_id aws1 on EC2",
    ),
    refused(
        "executable",
        "is not supported: a proxy filter cannot run programs; have a local token service serve the token over HTTP and use credential_source.url",
    ),
    refused(
        "certificate",
        "is not supported: X.509 federation needs mTLS client certificates, which proxy-wasm callouts cannot present; use credential_source.url or environment_id aws1",
    ),
];

const FORMAT: [Member; 2] = [ok("type"), ok("subject_token_field_name")];

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Refuses members that are unknown or not supported, naming them.
fn check_members(
    map: &Map<String, Value>,
    prefix: &str,
    known: &[Member],
) -> Result<(), AccountError> {
    for name in map.keys() {
        match known.iter().find(|m| m.name == name) {
            Some(Member {
                refused: Some(why), ..
            }) => return Err(AccountError::new(join(prefix, name), *why)),
            Some(_) => {}
            None => {
                let shown: String = name.chars().take(64).collect();
                return Err(AccountError::new(
                    join(prefix, &shown),
                    "is not a member of an external_account credential configuration",
                ));
            }
        }
    }
    Ok(())
}

fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, AccountError> {
    value.as_object().ok_or_else(|| {
        AccountError::new(
            field,
            if field.is_empty() {
                "must be the credential configuration's JSON object (or a string holding it)"
            } else {
                "must be an object"
            },
        )
    })
}

/// An optional string member: printable, bounded, not empty.
fn string<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    prefix: &str,
) -> Result<Option<&'a str>, AccountError> {
    let field = || join(prefix, name);
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if s.is_empty() {
                Err(AccountError::new(field(), "must not be empty"))
            } else if s.len() > MAX_STRING {
                Err(AccountError::new(
                    field(),
                    format!("is longer than {MAX_STRING} bytes"),
                ))
            } else if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
                Err(AccountError::new(field(), "contains control characters"))
            } else {
                Ok(Some(s))
            }
        }
        Some(_) => Err(AccountError::new(field(), "must be a string")),
    }
}

fn required<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    prefix: &str,
) -> Result<&'a str, AccountError> {
    string(map, name, prefix)?.ok_or_else(|| AccountError::new(join(prefix, name), "is required"))
}

fn url(
    map: &Map<String, Value>,
    name: &str,
    prefix: &str,
) -> Result<Option<HttpUrl>, AccountError> {
    string(map, name, prefix)?
        .map(|s| {
            HttpUrl::parse(s).map_err(|e| {
                AccountError::new(join(prefix, name), format!("is not an http(s) URL: {e}"))
            })
        })
        .transpose()
}

/// The ID-token URL and the service account, from `service_account_impersonation_url`.
fn impersonation(map: &Map<String, Value>) -> Result<(HttpUrl, String), AccountError> {
    const FIELD: &str = "service_account_impersonation_url";
    let url = url(map, FIELD, "")?.ok_or_else(|| {
        AccountError::new(
            FIELD,
            "is required: Cloud Run needs an ID token, which only an impersonated service account can get (create the configuration with --service-account)",
        )
    })?;
    let shape = "must end with /serviceAccounts/<email>:generateAccessToken, as gcloud writes it";
    let path = url.path_and_query.as_str();
    let Some(head) = path.strip_suffix(ACCESS_TOKEN_METHOD) else {
        return Err(AccountError::new(FIELD, shape));
    };
    let Some((_, email)) = head.rsplit_once("/serviceAccounts/") else {
        return Err(AccountError::new(FIELD, shape));
    };
    let email = email.replace("%40", "@");
    let valid = email.contains('@')
        && email
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'-' | b'_' | b'+'));
    if !valid {
        return Err(AccountError::new(
            FIELD,
            "does not name a service account email",
        ));
    }
    let id_token_url = url.with_path_and_query(&format!("{head}{ID_TOKEN_METHOD}"));
    Ok((id_token_url, email))
}

fn credential_source(value: &Value) -> Result<SubjectSource, AccountError> {
    const P: &str = "credential_source";
    let map = object(value, P)?;
    check_members(map, P, &SOURCE)?;
    if map.contains_key("environment_id") {
        aws_source(map)
    } else {
        url_source(map)
    }
}

fn aws_source(map: &Map<String, Value>) -> Result<SubjectSource, AccountError> {
    const P: &str = "credential_source";
    let id = required(map, "environment_id", P)?;
    if id != "aws1" {
        return Err(AccountError::new(
            "credential_source.environment_id",
            "must be aws1 (the only AWS credential source version)",
        ));
    }
    for name in ["headers", "format"] {
        if map.contains_key(name) {
            return Err(AccountError::new(
                join(P, name),
                "is only used with a URL source, not with environment_id aws1",
            ));
        }
    }
    let needed = |name: &str, what: &str| -> Result<HttpUrl, AccountError> {
        url(map, name, P)?.ok_or_else(|| {
            AccountError::new(
                join(P, name),
                format!("is required with environment_id aws1 ({what}; a proxy filter cannot read AWS_* environment variables)"),
            )
        })
    };
    let region_url = needed("region_url", "the instance's availability zone")?;
    let credentials_url = needed("url", "the instance role's credentials")?;
    let verification_url = required(map, "regional_cred_verification_url", P)?.to_string();
    let sample = verification_url.replace("{region}", "us-east-1");
    match HttpUrl::parse(&sample) {
        Ok(u) if u.scheme == crate::http::url::Scheme::Https => {}
        _ => {
            return Err(AccountError::new(
                "credential_source.regional_cred_verification_url",
                "must be an https URL, with {region} where the region goes",
            ))
        }
    }
    let session_token_url = url(map, "imdsv2_session_token_url", P)?;
    Ok(SubjectSource::Aws(AwsSource {
        region_url,
        credentials_url,
        verification_url,
        session_token_url,
    }))
}

fn url_source(map: &Map<String, Value>) -> Result<SubjectSource, AccountError> {
    const P: &str = "credential_source";
    for name in [
        "region_url",
        "regional_cred_verification_url",
        "imdsv2_session_token_url",
    ] {
        if map.contains_key(name) {
            return Err(AccountError::new(
                join(P, name),
                "is only used with environment_id aws1",
            ));
        }
    }
    let url = url(map, "url", P)?.ok_or_else(|| {
        AccountError::new(
            "credential_source",
            "needs url (a URL serving the subject token) or environment_id aws1",
        )
    })?;
    Ok(SubjectSource::Url(UrlSource {
        url,
        headers: headers(map.get("headers"))?,
        format: format(map.get("format"))?,
    }))
}

fn headers(value: Option<&Value>) -> Result<Vec<(HeaderName, String)>, AccountError> {
    const F: &str = "credential_source.headers";
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let map = object(value, F)?;
    if map.len() > MAX_HEADERS {
        return Err(AccountError::new(
            F,
            format!("has more than {MAX_HEADERS} headers"),
        ));
    }
    let mut out: Vec<(HeaderName, String)> = Vec::with_capacity(map.len());
    for (name, value) in map {
        let shown: String = name.chars().take(64).collect();
        let field = format!("{F}.{shown}");
        let header = HeaderName::parse(name).map_err(|m| AccountError::new(&field, m))?;
        // Values may be secrets: checked, never quoted.
        let valid = value.as_str().is_some_and(|v| {
            v.len() <= MAX_STRING && v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        });
        if !valid {
            return Err(AccountError::new(
                field,
                "must be a string of printable characters",
            ));
        }
        if out.iter().any(|(h, _)| *h == header) {
            return Err(AccountError::new(field, "is given twice"));
        }
        out.push((header, value.as_str().unwrap_or_default().to_string()));
    }
    Ok(out)
}

fn format(value: Option<&Value>) -> Result<SubjectFormat, AccountError> {
    const F: &str = "credential_source.format";
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(SubjectFormat::Text);
    };
    let map = object(value, F)?;
    check_members(map, F, &FORMAT)?;
    match string(map, "type", F)?.unwrap_or("text") {
        "text" => Ok(SubjectFormat::Text),
        "json" => {
            let field = string(map, "subject_token_field_name", F)?.ok_or_else(|| {
                AccountError::new(
                    "credential_source.format.subject_token_field_name",
                    "is required with type json",
                )
            })?;
            Ok(SubjectFormat::Json {
                field: field.to_string(),
            })
        }
        _ => Err(AccountError::new(
            "credential_source.format.type",
            "must be text or json",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POOL: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/kong/providers/aws";
    const IMPERSONATE: &str = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/kong-gateway@my-project.iam.gserviceaccount.com:generateAccessToken";

    /// What `gcloud iam workload-identity-pools create-cred-config … --aws --enable-imdsv2` writes.
    fn aws_file() -> Value {
        json!({
            "universe_domain": "googleapis.com",
            "type": "external_account",
            "audience": POOL,
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {
                "environment_id": "aws1",
                "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
                "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
                "imdsv2_session_token_url": "http://169.254.169.254/latest/api/token"
            },
            "service_account_impersonation_url": IMPERSONATE,
        })
    }

    /// What it writes for Azure (`--azure --app-id-uri …`).
    fn azure_file() -> Value {
        json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/kong/providers/azure",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {
                "url": "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://kong-gateway",
                "headers": {"Metadata": "True"},
                "format": {"type": "json", "subject_token_field_name": "access_token"}
            },
            "service_account_impersonation_url": IMPERSONATE,
            "service_account_impersonation": {"token_lifetime_seconds": 3600}
        })
    }

    /// An edit of a credential file and the field its refusal must name.
    type Case = (Box<dyn FnOnce(&mut Value)>, &'static str);

    fn refusal(mut file: Value, edit: impl FnOnce(&mut Value)) -> AccountError {
        edit(&mut file);
        ExternalAccount::parse(&file).unwrap_err()
    }

    #[test]
    fn reads_what_gcloud_writes_for_aws() {
        let a = ExternalAccount::parse(&aws_file()).unwrap();
        assert_eq!(a.audience, POOL);
        assert_eq!(
            a.service_account,
            "kong-gateway@my-project.iam.gserviceaccount.com"
        );
        assert_eq!(
            a.id_token_url.to_string(),
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/kong-gateway@my-project.iam.gserviceaccount.com:generateIdToken"
        );
        let SubjectSource::Aws(aws) = &a.source else {
            panic!("{a:?}")
        };
        assert_eq!(aws.credentials_url.dispatch_target(), "169.254.169.254:80");
        assert!(aws.session_token_url.is_some());
        assert_eq!(a.max_steps(), 6);
    }

    #[test]
    fn reads_what_gcloud_writes_for_azure_also_as_a_string() {
        let text = Value::String(azure_file().to_string());
        let a = ExternalAccount::parse(&text).unwrap();
        let SubjectSource::Url(source) = &a.source else {
            panic!("{a:?}")
        };
        assert_eq!(
            source.headers,
            vec![(HeaderName::parse("metadata").unwrap(), "True".to_string())]
        );
        assert_eq!(
            source.format,
            SubjectFormat::Json {
                field: "access_token".into()
            }
        );
        assert_eq!(a.max_steps(), 3);
    }

    #[test]
    fn imdsv1_and_text_format_are_the_defaults() {
        let mut file = aws_file();
        file["credential_source"]
            .as_object_mut()
            .unwrap()
            .remove("imdsv2_session_token_url");
        let a = ExternalAccount::parse(&file).unwrap();
        assert_eq!(a.max_steps(), 5);
        let mut file = azure_file();
        file["credential_source"]
            .as_object_mut()
            .unwrap()
            .remove("format");
        let SubjectSource::Url(source) = ExternalAccount::parse(&file).unwrap().source else {
            panic!()
        };
        assert_eq!(source.format, SubjectFormat::Text);
    }

    #[test]
    fn refuses_what_a_filter_cannot_do_and_says_what_to_use() {
        let e = refusal(azure_file(), |f| {
            f["credential_source"] = json!({"file": "/var/run/token", "format": {"type": "text"}})
        });
        assert_eq!(e.field, "credential_source.file");
        assert!(
            e.message.contains("cannot read files") && e.message.contains("credential_source.url"),
            "{}",
            e.message
        );
        let e =
            refusal(
                azure_file(),
                |f| {
                    f["credential_source"] =
                        json!({"executable": {"command": "/bin/token", "timeout_millis": 5000}})
                },
            );
        assert_eq!(e.field, "credential_source.executable");
        assert!(e.message.contains("cannot run programs"), "{}", e.message);
        let e = refusal(azure_file(), |f| {
            f["credential_source"] =
                json!({"certificate": {"use_default_certificate_config": true}})
        });
        assert_eq!(e.field, "credential_source.certificate");
        let e = refusal(azure_file(), |f| {
            f["workforce_pool_user_project"] = json!("p")
        });
        assert_eq!(e.field, "workforce_pool_user_project");
        let e = refusal(azure_file(), |f| f["client_secret"] = json!("s3cr3t"));
        assert_eq!(e.field, "client_secret");
        assert!(!e.message.contains("s3cr3t"));
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases: Vec<Case> = vec![
            (Box::new(|f| f["type"] = json!("service_account")), "type"),
            (
                Box::new(|f| {
                    f.as_object_mut().unwrap().remove("audience");
                }),
                "audience",
            ),
            (
                Box::new(|f| f["token_url"] = json!("sts.googleapis.com/v1/token")),
                "token_url",
            ),
            (
                Box::new(|f| {
                    f.as_object_mut()
                        .unwrap()
                        .remove("service_account_impersonation_url");
                }),
                "service_account_impersonation_url",
            ),
            (
                Box::new(|f| {
                    f["service_account_impersonation_url"] = json!("https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/x@y:signJwt")
                }),
                "service_account_impersonation_url",
            ),
            (
                Box::new(|f| {
                    f["service_account_impersonation_url"] = json!("https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/not an email:generateAccessToken")
                }),
                "service_account_impersonation_url",
            ),
            (
                Box::new(|f| {
                    f["subject_token_type"] = json!("urn:ietf:params:oauth:token-type:jwt")
                }),
                "subject_token_type",
            ),
            (
                Box::new(|f| f["credential_source"]["environment_id"] = json!("aws2")),
                "credential_source.environment_id",
            ),
            (
                Box::new(|f| {
                    f["credential_source"]
                        .as_object_mut()
                        .unwrap()
                        .remove("region_url");
                }),
                "credential_source.region_url",
            ),
            (
                Box::new(|f| {
                    f["credential_source"]
                        .as_object_mut()
                        .unwrap()
                        .remove("url");
                }),
                "credential_source.url",
            ),
            (
                Box::new(|f| {
                    f["credential_source"]["regional_cred_verification_url"] =
                        json!("http://sts.{region}.amazonaws.com")
                }),
                "credential_source.regional_cred_verification_url",
            ),
            (
                Box::new(|f| f["credential_source"]["format"] = json!({"type": "json"})),
                "credential_source.format",
            ),
            (
                Box::new(|f| f["credential_source"]["surprise"] = json!(1)),
                "credential_source.surprise",
            ),
            (Box::new(|f| f["extra"] = json!(1)), "extra"),
            (
                Box::new(|f| {
                    f.as_object_mut().unwrap().remove("credential_source");
                }),
                "credential_source",
            ),
            (
                Box::new(|f| f["service_account_impersonation"] = json!({"lifetime": 1})),
                "service_account_impersonation.lifetime",
            ),
        ];
        for (edit, field) in cases {
            let e = refusal(aws_file(), edit);
            assert_eq!(e.field, field, "{e:?}");
        }
        let url_cases: Vec<Case> = vec![
            (
                Box::new(|f| f["subject_token_type"] = json!(AWS_TOKEN_TYPE)),
                "subject_token_type",
            ),
            (
                Box::new(|f| f["credential_source"]["format"] = json!({"type": "json"})),
                "credential_source.format.subject_token_field_name",
            ),
            (
                Box::new(|f| f["credential_source"]["format"] = json!({"type": "xml"})),
                "credential_source.format.type",
            ),
            (
                Box::new(|f| f["credential_source"]["headers"] = json!({"Bad Name": "x"})),
                "credential_source.headers.Bad Name",
            ),
            (
                Box::new(|f| f["credential_source"]["headers"] = json!({"host": "x"})),
                "credential_source.headers.host",
            ),
            (
                Box::new(|f| f["credential_source"]["headers"] = json!({"x-secret": "a\r\nb"})),
                "credential_source.headers.x-secret",
            ),
            (
                Box::new(|f| f["credential_source"]["region_url"] = json!("http://x/")),
                "credential_source.region_url",
            ),
            (
                Box::new(|f| f["credential_source"] = json!({})),
                "credential_source",
            ),
        ];
        for (edit, field) in url_cases {
            let e = refusal(azure_file(), edit);
            assert_eq!(e.field, field, "{e:?}");
            assert!(!e.message.contains("a\r\nb"));
        }
        assert_eq!(
            ExternalAccount::parse(&json!("{not json"))
                .unwrap_err()
                .field,
            ""
        );
        assert_eq!(ExternalAccount::parse(&json!([1])).unwrap_err().field, "");
    }

    #[test]
    fn identity_differs_by_pool_and_source() {
        let aws = ExternalAccount::parse(&aws_file()).unwrap();
        let azure = ExternalAccount::parse(&azure_file()).unwrap();
        assert_ne!(aws.sts_identity(), azure.sts_identity());
        assert!(aws.sts_identity().iter().any(|f| f == POOL));
    }

    #[test]
    fn debug_never_shows_header_values() {
        let mut file = azure_file();
        file["credential_source"]["headers"] = json!({"x-api-key": "top-secret"});
        let a = ExternalAccount::parse(&file).unwrap();
        assert!(!format!("{a:?}").contains("top-secret"));
    }
}
