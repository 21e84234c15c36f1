//! Validation of `google_id_token`: the audience, where the token goes (`header`), how early it
//! is renewed, and its source: the metadata server, a service-account key, or Workload Identity
//! Federation (`external_account`), each refusing the other sources' fields.

use super::raw::RawGoogle;
use super::settings::{
    GOOGLE_HEADER, GOOGLE_METADATA_HOST, GOOGLE_REFRESH_BEFORE_EXPIRY_SECONDS, GOOGLE_SOURCE,
    GOOGLE_TOKEN_URL, MAX_DOCUMENT_BYTES, SERVERLESS_AUTHORIZATION,
};
use super::validate::{short_string, url};
use super::{ConfigError, GoogleHeader, GoogleIdTokenConfig, GoogleSource};
use crate::google::federation::external_account::ExternalAccount;
use crate::google::id_token::ServiceAccountKey;
use crate::http::url::parse_authority;
use serde::Deserialize;
use serde_json::Value;

/// `google_id_token`.
pub(super) fn google_id_token(mut raw: RawGoogle) -> Result<GoogleIdTokenConfig, ConfigError> {
    let audience = raw
        .audience
        .take()
        .ok_or_else(|| ConfigError::new("google_id_token.audience", "is required"))?;
    short_string(&audience, "google_id_token.audience")?;
    let refresh_before_expiry_secs =
        GOOGLE_REFRESH_BEFORE_EXPIRY_SECONDS.resolve(raw.refresh_before_expiry_seconds)?;
    let header = google_header(raw.header.take())?;
    let source = match raw.source.as_deref().unwrap_or(GOOGLE_SOURCE.default) {
        "metadata" => metadata(raw)?,
        "service_account" => service_account(raw)?,
        "external_account" => GoogleSource::ExternalAccount(Box::new(external_account(raw)?)),
        _ => {
            return Err(ConfigError::new(
                GOOGLE_SOURCE.path,
                "must be metadata, service_account or external_account",
            ))
        }
    };
    Ok(GoogleIdTokenConfig {
        audience,
        source,
        header,
        refresh_before_expiry_secs,
    })
}

/// `header`: `authorization` (the default) or `x-serverless-authorization`.
fn google_header(raw: Option<String>) -> Result<GoogleHeader, ConfigError> {
    match raw.as_deref().unwrap_or(GOOGLE_HEADER.default) {
        "authorization" => Ok(GoogleHeader::Authorization),
        SERVERLESS_AUTHORIZATION => Ok(GoogleHeader::XServerlessAuthorization),
        _ => Err(ConfigError::new(
            GOOGLE_HEADER.path,
            "must be authorization or x-serverless-authorization",
        )),
    }
}

/// `source: metadata`: `metadata_host`, and no key, token URL or credential configuration.
fn metadata(raw: RawGoogle) -> Result<GoogleSource, ConfigError> {
    // Name the setting that was given: the operator forgot `source`, or left a key behind.
    let given = match (&raw.service_account_key, &raw.token_url) {
        (Some(_), _) => Some("service_account_key"),
        (None, Some(_)) => Some("token_url"),
        (None, None) => None,
    };
    if let Some(given) = given {
        let default = if raw.source.is_none() {
            " (the default)"
        } else {
            ""
        };
        return Err(ConfigError::new(
            GOOGLE_SOURCE.path,
            format!("is metadata{default}, but {given} needs source: service_account"),
        ));
    }
    refuse_external_account(&raw.external_account)?;
    let host = raw
        .metadata_host
        .unwrap_or_else(|| GOOGLE_METADATA_HOST.default.to_string());
    parse_authority(&host).map_err(|e| {
        ConfigError::new(
            GOOGLE_METADATA_HOST.path,
            format!("must be host[:port]: {e}"),
        )
    })?;
    Ok(GoogleSource::Metadata { host })
}

/// `source: service_account`: the key and `token_url`, and no `metadata_host` or credential
/// configuration.
fn service_account(raw: RawGoogle) -> Result<GoogleSource, ConfigError> {
    refuse_metadata_host(&raw.metadata_host)?;
    refuse_external_account(&raw.external_account)?;
    let key = raw.service_account_key.ok_or_else(|| {
        ConfigError::new(
            "google_id_token.service_account_key",
            "is required with source: service_account",
        )
    })?;
    let key = service_account_key(key)?;
    let token_url = url(
        raw.token_url.as_deref().unwrap_or(GOOGLE_TOKEN_URL.default),
        GOOGLE_TOKEN_URL.path,
    )?;
    Ok(GoogleSource::ServiceAccount {
        key: Box::new(key),
        token_url,
    })
}

/// `metadata_host` belongs to `source: metadata` only.
fn refuse_metadata_host(metadata_host: &Option<String>) -> Result<(), ConfigError> {
    match metadata_host {
        Some(_) => Err(ConfigError::new(
            GOOGLE_METADATA_HOST.path,
            "is only used with source: metadata",
        )),
        None => Ok(()),
    }
}

/// `external_account` belongs to `source: external_account` only.
fn refuse_external_account(external_account: &Option<Value>) -> Result<(), ConfigError> {
    match external_account {
        Some(_) => Err(ConfigError::new(
            GOOGLE_SOURCE.path,
            "external_account needs source: external_account",
        )),
        None => Ok(()),
    }
}

/// `source: external_account`: the credential configuration, and none of the other sources'
/// fields.
fn external_account(raw: RawGoogle) -> Result<ExternalAccount, ConfigError> {
    const FIELD: &str = "google_id_token.external_account";
    refuse_metadata_host(&raw.metadata_host)?;
    if raw.service_account_key.is_some() {
        return Err(ConfigError::new(
            "google_id_token.service_account_key",
            "is only used with source: service_account (external_account needs no key)",
        ));
    }
    if raw.token_url.is_some() {
        return Err(ConfigError::new(
            GOOGLE_TOKEN_URL.path,
            "is only used with source: service_account (the STS URL is the credential configuration's token_url)",
        ));
    }
    let value = raw.external_account.ok_or_else(|| {
        ConfigError::new(
            FIELD,
            "is required with source: external_account (the credential configuration gcloud iam workload-identity-pools create-cred-config writes)",
        )
    })?;
    if value.as_str().is_some_and(|s| s.len() > MAX_DOCUMENT_BYTES) {
        return Err(ConfigError::new(FIELD, "is too large"));
    }
    ExternalAccount::parse(&value).map_err(|e| {
        let field = if e.field.is_empty() {
            FIELD.to_string()
        } else {
            format!("{FIELD}.{}", e.field)
        };
        ConfigError::new(field, e.message)
    })
}

/// Parses a Google service-account key file. Error messages never quote the input.
fn service_account_key(value: Value) -> Result<ServiceAccountKey, ConfigError> {
    const FIELD: &str = "google_id_token.service_account_key";
    #[derive(Deserialize)]
    struct KeyFile {
        #[serde(rename = "type")]
        kind: Option<String>,
        private_key_id: String,
        private_key: String,
        client_email: String,
    }
    let value = match value {
        Value::String(text) => {
            if text.len() > MAX_DOCUMENT_BYTES {
                return Err(ConfigError::new(FIELD, "is too large"));
            }
            serde_json::from_str::<Value>(&text)
                .map_err(|_| ConfigError::new(FIELD, "is not valid JSON"))?
        }
        other => other,
    };
    if !value.is_object() {
        return Err(ConfigError::new(
            FIELD,
            "must be the key file's JSON object (or a string holding it)",
        ));
    }
    let file: KeyFile = serde_json::from_value(value).map_err(|_| {
        ConfigError::new(
            FIELD,
            "needs string fields private_key_id, private_key and client_email",
        )
    })?;
    if file.kind.as_deref().is_some_and(|k| k != "service_account") {
        return Err(ConfigError::new(FIELD, "type must be service_account"));
    }
    if file.client_email.is_empty() || file.client_email.chars().any(char::is_control) {
        return Err(ConfigError::new(FIELD, "client_email is invalid"));
    }
    if file.private_key_id.chars().any(char::is_control) {
        return Err(ConfigError::new(FIELD, "private_key_id is invalid"));
    }
    ServiceAccountKey::new(&file.private_key_id, &file.client_email, &file.private_key)
        .map_err(|_| ConfigError::new(FIELD, "private_key is not a PKCS#8 RSA key in PEM"))
}
