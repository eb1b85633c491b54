//! Azure Blob Storage settings: the account, the container, the blob
//! service endpoint and the credentials, from `KASSETTE_STORAGE_*` and the
//! credentials file.
//!
//! One variable, `KASSETTE_STORAGE_CREDENTIALS_FILE`, takes every form an
//! operator is likely to hold, recognised by its content:
//!
//! - K8ssandra's `medusa_azure_credentials.json` as it is:
//!   `{"storage_account": …, "key": …}`, optionally with `host` and
//!   `connection_string` (sovereign clouds);
//! - a connection string (`AccountName=…;AccountKey=…` or
//!   `…;SharedAccessSignature=…`, with `BlobEndpoint` or `EndpointSuffix`);
//! - a SAS token (`sv=…&sig=…`, with or without the leading `?`);
//! - an account key alone (base64).
//!
//! Without a file, the Entra ID chain (workload identity, managed identity,
//! client secret from the environment) provides tokens at run time.
//! Secrets are held only in [`AzureCredentials`], whose `Debug` redacts
//! them, and never appear in an error.

use std::path::{Path, PathBuf};

use base64::Engine;
use url::Url;

use super::{ConfigError, optional, parse, vars};
use crate::cli::StorageArgs;

/// How requests to the storage account are authorised.
#[derive(Clone, PartialEq, Eq)]
pub enum AzureCredentials {
    /// Shared Key: every request signed with the account key (HMAC-SHA256).
    SharedKey { key: Vec<u8> },
    /// A shared access signature appended to every request's query.
    Sas { token: String },
    /// Entra ID bearer tokens from the identity chain (no file).
    Identity,
}

impl std::fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and the signature are secrets: never printed.
        match self {
            Self::SharedKey { .. } => f.write_str("SharedKey(<redacted>)"),
            Self::Sas { .. } => f.write_str("Sas(<redacted>)"),
            Self::Identity => f.write_str("Identity"),
        }
    }
}

/// Validated Azure settings (see [`super::Backend::Azure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    pub account: String,
    pub container: String,
    /// The account's blob service URL, e.g.
    /// `https://acct.blob.core.windows.net` or, for Azurite,
    /// `http://127.0.0.1:10000/acct`.
    pub endpoint: Url,
    pub credentials: AzureCredentials,
    /// Extra CA certificates (PEM) trusted for the endpoint.
    pub ca_bundle: Option<PathBuf>,
}

/// What the credentials file said: a credential, and possibly the account
/// and the endpoint.
#[derive(Debug, Default, PartialEq, Eq)]
struct FileSettings {
    account: Option<String>,
    endpoint: Option<Url>,
    credentials: Option<AzureCredentials>,
}

/// Reads the Azure settings; `endpoint` is the already validated
/// `KASSETTE_STORAGE_ENDPOINT`, and `allow_http` its consent to plain HTTP.
pub fn settings(
    args: &StorageArgs,
    endpoint: Option<Url>,
    allow_http: bool,
) -> Result<AzureSettings, ConfigError> {
    let container = super::required(
        vars::STORAGE_BUCKET,
        args.storage_bucket.as_deref(),
        "the Azure container name",
        container_name,
    )?;
    let file = optional(
        vars::STORAGE_CREDENTIALS_FILE,
        args.storage_credentials_file.as_deref(),
        credentials_file,
    )?
    .unwrap_or_default();
    let named = optional(
        vars::STORAGE_ACCOUNT,
        args.storage_account.as_deref(),
        account_name,
    )?;
    let account = match (named, file.account) {
        (Some(a), Some(b)) if a != b => {
            return Err(ConfigError::new(
                vars::STORAGE_ACCOUNT,
                format!(
                    "is {a:?} but the credentials file ({}) is for account {b:?}",
                    vars::STORAGE_CREDENTIALS_FILE
                ),
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(ConfigError::new(
                vars::STORAGE_ACCOUNT,
                "is required: the Azure storage account name (or a credentials file naming it)",
            ));
        }
    };
    let (endpoint, var) = match (endpoint, file.endpoint) {
        (Some(url), _) => (url, vars::STORAGE_ENDPOINT),
        (None, Some(url)) => (url, vars::STORAGE_CREDENTIALS_FILE),
        (None, None) => (
            default_endpoint(&account, "core.windows.net")?,
            vars::STORAGE_ACCOUNT,
        ),
    };
    if endpoint.scheme() == "http" && !allow_http {
        return Err(ConfigError::new(
            var,
            format!(
                "names a plain-http endpoint; use https, or set {}=true to allow it",
                vars::STORAGE_ALLOW_HTTP
            ),
        ));
    }
    let ca_bundle = optional(
        vars::STORAGE_CA_BUNDLE,
        args.storage_ca_bundle.as_deref(),
        parse::readable_file,
    )?;
    Ok(AzureSettings {
        account,
        container,
        endpoint,
        credentials: file.credentials.unwrap_or(AzureCredentials::Identity),
        ca_bundle,
    })
}

fn default_endpoint(account: &str, suffix: &str) -> Result<Url, ConfigError> {
    Url::parse(&format!("https://{account}.blob.{suffix}")).map_err(|e| {
        ConfigError::new(
            vars::STORAGE_ACCOUNT,
            format!("does not make an endpoint URL: {e}"),
        )
    })
}

/// Azure container names: 3-63 of a-z, 0-9 and single `-`, starting and
/// ending with a letter or digit.
fn container_name(raw: &str) -> Result<String, String> {
    let ok = (3..=63).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
        && raw.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !raw.contains("--");
    ok.then(|| raw.to_string())
        .ok_or_else(|| format!("{raw:?} is not an Azure container name (3-63 of a-z, 0-9, '-')"))
}

/// Storage account names: 3-24 lowercase letters and digits.
fn account_name(raw: &str) -> Result<String, String> {
    let ok = (3..=24).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok.then(|| raw.to_string())
        .ok_or_else(|| format!("{raw:?} is not a storage account name (3-24 of a-z, 0-9)"))
}

fn credentials_file(raw: &str) -> Result<FileSettings, String> {
    let path = super::storage::credentials_path(raw, super::storage::MEDUSA_AZURE_CREDENTIALS_KEY)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_credentials(&text).map_err(|problem| format!("{}: {problem}", path_text(&path)))
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// Recognises the form of a credentials file (see the module docs). Errors
/// describe the form expected, never the content.
fn parse_credentials(text: &str) -> Result<FileSettings, String> {
    let text = text.trim();
    if text.starts_with('{') {
        return medusa_json(text);
    }
    if text.contains(';') || text.contains("AccountName=") || text.contains("BlobEndpoint=") {
        return connection_string(text);
    }
    if text.contains("sig=") {
        return sas(text);
    }
    let key = account_key(text).ok_or(
        "is neither a medusa_azure_credentials.json, a connection string, a SAS token nor a base64 account key",
    )?;
    Ok(FileSettings {
        credentials: Some(AzureCredentials::SharedKey { key }),
        ..Default::default()
    })
}

fn account_key(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .filter(|key| !key.is_empty())
}

fn sas(text: &str) -> Result<FileSettings, String> {
    let token = text.trim().trim_start_matches('?');
    if !token.split('&').any(|pair| pair.starts_with("sig=")) || token.contains(char::is_whitespace)
    {
        return Err("is not a SAS token (a query string with sig=…)".into());
    }
    Ok(FileSettings {
        credentials: Some(AzureCredentials::Sas {
            token: token.to_string(),
        }),
        ..Default::default()
    })
}

/// K8ssandra's `medusa_azure_credentials.json`.
fn medusa_json(text: &str) -> Result<FileSettings, String> {
    let form = "is not a medusa_azure_credentials.json (needs storage_account and key, or connection_string)";
    let json: serde_json::Value = serde_json::from_str(text).map_err(|_| form.to_string())?;
    let field = |name: &str| {
        json.get(name)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut settings = match field("connection_string") {
        Some(conn) => connection_string(conn)?,
        None => FileSettings::default(),
    };
    if let Some(account) = field("storage_account") {
        let account = account_name(account)?;
        if settings.account.as_ref().is_some_and(|a| *a != account) {
            return Err(
                "names one account in storage_account and another in connection_string".into(),
            );
        }
        settings.account = Some(account);
    }
    if settings.credentials.is_none() {
        let key = field("key").ok_or(form)?;
        let key = account_key(key).ok_or("has a key that is not base64")?;
        settings.credentials = Some(AzureCredentials::SharedKey { key });
    }
    if settings.endpoint.is_none()
        && let Some(host) = field("host")
    {
        let url = Url::parse(&format!("https://{host}"))
            .map_err(|_| "has a host that is not a host name".to_string())?;
        settings.endpoint = Some(url);
    }
    if settings.account.is_none() {
        return Err(form.into());
    }
    Ok(settings)
}

/// An Azure Storage connection string.
fn connection_string(text: &str) -> Result<FileSettings, String> {
    let mut account = None;
    let mut key = None;
    let mut sas_token = None;
    let mut blob_endpoint = None;
    let mut suffix = None;
    let mut protocol = "https".to_string();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or("is not a connection string (Name=value;… pairs)")?;
        match name.trim() {
            "AccountName" => account = Some(account_name(value.trim())?),
            "AccountKey" => {
                key = Some(account_key(value).ok_or("has an AccountKey that is not base64")?)
            }
            "SharedAccessSignature" => sas_token = Some(value.trim().to_string()),
            "BlobEndpoint" => {
                blob_endpoint = Some(
                    Url::parse(value.trim())
                        .map_err(|_| "has a BlobEndpoint that is not a URL".to_string())?,
                )
            }
            "EndpointSuffix" => suffix = Some(value.trim().to_string()),
            "DefaultEndpointsProtocol" => protocol = value.trim().to_string(),
            "UseDevelopmentStorage" => {
                return Err(
                    "UseDevelopmentStorage is not supported; give AccountName, AccountKey and BlobEndpoint".into(),
                );
            }
            _ => {}
        }
    }
    let credentials = match (key, sas_token) {
        (Some(key), _) => AzureCredentials::SharedKey { key },
        (None, Some(token)) => sas(&token)?
            .credentials
            .ok_or("has an empty SharedAccessSignature")?,
        (None, None) => {
            return Err(
                "is a connection string without AccountKey or SharedAccessSignature".into(),
            );
        }
    };
    let endpoint = match (blob_endpoint, &account, suffix) {
        (Some(url), _, _) => Some(url),
        (None, Some(account), Some(suffix)) => Some(
            Url::parse(&format!("{protocol}://{account}.blob.{suffix}"))
                .map_err(|_| "has an EndpointSuffix that makes no URL".to_string())?,
        ),
        _ => None,
    };
    Ok(FileSettings {
        account,
        endpoint,
        credentials: Some(credentials),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWFjY291bnQta2V5";

    #[test]
    fn medusa_key_file_as_k8ssandra_writes_it() {
        let file = parse_credentials(&format!(
            "{{\n  \"storage_account\": \"medusabackups\",\n  \"key\": \"{KEY}\"\n}}\n"
        ))
        .unwrap();
        assert_eq!(file.account.as_deref(), Some("medusabackups"));
        assert_eq!(
            file.credentials,
            Some(AzureCredentials::SharedKey {
                key: b"secret-account-key".to_vec()
            })
        );
        assert_eq!(file.endpoint, None);

        let gov = parse_credentials(&format!(
            r#"{{"storage_account":"gov1","key":"{KEY}","host":"gov1.blob.core.usgovcloudapi.net"}}"#
        ))
        .unwrap();
        assert_eq!(
            gov.endpoint.unwrap().as_str(),
            "https://gov1.blob.core.usgovcloudapi.net/"
        );
    }

    #[test]
    fn connection_strings_sas_tokens_and_bare_keys() {
        let conn = parse_credentials(&format!(
            "DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
        ))
        .unwrap();
        assert_eq!(conn.account.as_deref(), Some("acct1"));
        assert_eq!(
            conn.endpoint.unwrap().as_str(),
            "https://acct1.blob.core.chinacloudapi.cn/"
        );

        let azurite = parse_credentials(&format!(
            "AccountName=kassette;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:10000/kassette;"
        ))
        .unwrap();
        assert_eq!(
            azurite.endpoint.unwrap().as_str(),
            "http://127.0.0.1:10000/kassette"
        );

        let sas = parse_credentials("?sv=2025-11-05&ss=b&sig=abc%3D\n").unwrap();
        assert_eq!(
            sas.credentials,
            Some(AzureCredentials::Sas {
                token: "sv=2025-11-05&ss=b&sig=abc%3D".into()
            })
        );
        assert_eq!(sas.account, None);

        let bare = parse_credentials(KEY).unwrap();
        assert!(matches!(
            bare.credentials,
            Some(AzureCredentials::SharedKey { .. })
        ));
    }

    #[test]
    fn malformed_files_are_refused_without_echoing_them() {
        for text in [
            r#"{"storage_account":"acct1"}"#,
            r#"{"key":"hunter2-not-base64!"}"#,
            "AccountName=acct1;Password=hunter2",
            "hunter2 is not a key!",
        ] {
            let err = parse_credentials(text).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
        assert!(
            !format!(
                "{:?}",
                AzureCredentials::SharedKey {
                    key: b"hunter2".to_vec()
                }
            )
            .contains("104")
        );
    }

    #[test]
    fn a_mounted_k8ssandra_secret_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("medusa_azure_credentials.json"),
            format!(r#"{{"storage_account": "medusabackups", "key": "{KEY}"}}"#),
        )
        .unwrap();
        let file = credentials_file(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(file.account.as_deref(), Some("medusabackups"));
        let empty = tempfile::tempdir().unwrap();
        let err = credentials_file(empty.path().to_str().unwrap()).unwrap_err();
        assert!(err.contains("medusa_azure_credentials.json"), "{err}");
    }

    #[test]
    fn names() {
        assert!(container_name("k8ssandra-backups").is_ok());
        assert!(container_name("Backups").is_err());
        assert!(container_name("a--b").is_err());
        assert!(account_name("medusabackups").is_ok());
        assert!(account_name("medusa-backups").is_err());
    }
}
