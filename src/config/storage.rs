//! Storage settings: which backend, where, with which credentials and limits.

use std::path::PathBuf;

use url::Url;

use super::{ConfigError, optional, parse, required, unused, vars};
use crate::cli::StorageArgs;

/// Transfers in flight per process when `KASSETTE_CONCURRENCY` is unset.
pub const DEFAULT_CONCURRENCY: u32 = 8;
const MAX_CONCURRENCY: u32 = 256;

/// Validated storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub backend: Backend,
    /// Key prefix, normalised: no leading or trailing `/`, no empty or `..`
    /// segments. Empty when unset.
    pub prefix: String,
    pub limits: TransferLimits,
}

/// The backend and its provider-specific settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    S3 {
        bucket: String,
        endpoint: Option<Url>,
        region: Option<String>,
        credentials_file: Option<PathBuf>,
        ca_bundle: Option<PathBuf>,
        storage_class: Option<String>,
        encryption: S3Encryption,
    },
    Gcs {
        bucket: String,
        endpoint: Option<Url>,
        credentials_file: Option<PathBuf>,
    },
    Local {
        root: PathBuf,
    },
}

/// Server-side encryption of S3 objects.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum S3Encryption {
    /// The bucket's default.
    #[default]
    BucketDefault,
    /// SSE-KMS under this key id or ARN.
    Kms { key_id: String },
    /// SSE-C with a customer key (256 bits), sent with every request.
    CustomerKey { key: [u8; 32] },
}

impl std::fmt::Debug for S3Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BucketDefault => f.write_str("BucketDefault"),
            Self::Kms { key_id } => f.debug_struct("Kms").field("key_id", key_id).finish(),
            // The key is a secret: never printed, not even in debug logs.
            Self::CustomerKey { .. } => f.write_str("CustomerKey { key: <redacted> }"),
        }
    }
}

/// Process-wide transfer limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferLimits {
    /// Transfers in flight at once (at least 1).
    pub concurrency: u32,
    /// Bytes per second shared by all transfers; `None` is unlimited.
    pub max_bandwidth: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    S3,
    Gcs,
    Local,
}

impl StorageConfig {
    pub fn from_args(args: &StorageArgs) -> Result<Self, ConfigError> {
        let provider = required(
            vars::STORAGE_PROVIDER,
            args.storage_provider.as_deref(),
            "one of s3, gcs, local",
            |raw| {
                parse::one_of(
                    raw,
                    &[
                        ("s3", Provider::S3),
                        ("gcs", Provider::Gcs),
                        ("local", Provider::Local),
                    ],
                )
            },
        )?;
        let backend = match provider {
            Provider::S3 => s3_backend(args)?,
            Provider::Gcs => gcs_backend(args)?,
            Provider::Local => local_backend(args)?,
        };
        let prefix = optional(
            vars::STORAGE_PREFIX,
            args.storage_prefix.as_deref(),
            key_prefix,
        )?
        .unwrap_or_default();
        let limits = TransferLimits {
            concurrency: optional(vars::CONCURRENCY, args.concurrency.as_deref(), |raw| {
                parse::positive(raw, MAX_CONCURRENCY).map(|n| n.get())
            })?
            .unwrap_or(DEFAULT_CONCURRENCY),
            max_bandwidth: optional(
                vars::MAX_BANDWIDTH,
                args.max_bandwidth.as_deref(),
                parse::bandwidth,
            )?,
        };
        Ok(Self {
            backend,
            prefix,
            limits,
        })
    }
}

fn s3_backend(args: &StorageArgs) -> Result<Backend, ConfigError> {
    unused(
        vars::STORAGE_PATH,
        args.storage_path.as_deref(),
        "with s3 (it is for local)",
    )?;
    let bucket = required(
        vars::STORAGE_BUCKET,
        args.storage_bucket.as_deref(),
        "the S3 bucket name",
        s3_bucket_name,
    )?;
    let endpoint = endpoint(args)?;
    let region = optional(
        vars::STORAGE_REGION,
        args.storage_region.as_deref(),
        |raw| {
            let ok = (1..=64).contains(&raw.len())
                && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            ok.then(|| raw.to_string())
                .ok_or_else(|| format!("{raw:?} is not a region name (e.g. eu-west-1)"))
        },
    )?;
    let credentials_file = optional(
        vars::STORAGE_CREDENTIALS_FILE,
        args.storage_credentials_file.as_deref(),
        aws_credentials_file,
    )?;
    let ca_bundle = optional(
        vars::STORAGE_CA_BUNDLE,
        args.storage_ca_bundle.as_deref(),
        parse::readable_file,
    )?;
    let storage_class = optional(vars::STORAGE_CLASS, args.storage_class.as_deref(), |raw| {
        let ok = (1..=64).contains(&raw.len())
            && raw.chars().all(|c| c.is_ascii_uppercase() || c == '_');
        ok.then(|| raw.to_string())
            .ok_or_else(|| format!("{raw:?} is not an S3 storage class (e.g. STANDARD_IA)"))
    })?;
    Ok(Backend::S3 {
        bucket,
        endpoint,
        region,
        credentials_file,
        ca_bundle,
        storage_class,
        encryption: s3_encryption(args)?,
    })
}

/// SSE-KMS or SSE-C (not both); the SSE-C key file holds 32 bytes, raw or
/// base64, and its contents are never echoed.
fn s3_encryption(args: &StorageArgs) -> Result<S3Encryption, ConfigError> {
    let kms = args.storage_sse_kms_key_id.as_deref().map(str::trim);
    let customer = optional(
        vars::STORAGE_SSE_C_KEY_FILE,
        args.storage_sse_c_key_file.as_deref(),
        sse_c_key,
    )?;
    match (kms, customer) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            vars::STORAGE_SSE_C_KEY_FILE,
            format!(
                "cannot be combined with {}; choose one",
                vars::STORAGE_SSE_KMS_KEY_ID
            ),
        )),
        (Some(""), None) => Err(ConfigError::new(vars::STORAGE_SSE_KMS_KEY_ID, "is empty")),
        (Some(key_id), None) => Ok(S3Encryption::Kms {
            key_id: key_id.to_string(),
        }),
        (None, Some(key)) => Ok(S3Encryption::CustomerKey { key }),
        (None, None) => Ok(S3Encryption::BucketDefault),
    }
}

fn sse_c_key(raw: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let path = parse::readable_file(raw)?;
    let bytes = parse::read_small_file(&path, parse::MAX_SECRET_FILE)?;
    if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return Ok(key);
    }
    let text = String::from_utf8_lossy(&bytes);
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|decoded| <[u8; 32]>::try_from(decoded.as_slice()).ok())
        .ok_or_else(|| {
            format!(
                "{} does not hold a 256-bit key (32 bytes, raw or base64)",
                path.display()
            )
        })
}

fn gcs_backend(args: &StorageArgs) -> Result<Backend, ConfigError> {
    let why = "with gcs (S3 only)";
    unused(vars::STORAGE_CLASS, args.storage_class.as_deref(), why)?;
    unused(
        vars::STORAGE_SSE_KMS_KEY_ID,
        args.storage_sse_kms_key_id.as_deref(),
        why,
    )?;
    unused(
        vars::STORAGE_SSE_C_KEY_FILE,
        args.storage_sse_c_key_file.as_deref(),
        why,
    )?;
    unused(
        vars::STORAGE_PATH,
        args.storage_path.as_deref(),
        "with gcs (it is for local)",
    )?;
    unused(
        vars::STORAGE_REGION,
        args.storage_region.as_deref(),
        "with gcs",
    )?;
    unused(
        vars::STORAGE_CA_BUNDLE,
        args.storage_ca_bundle.as_deref(),
        "with gcs",
    )?;
    let bucket = required(
        vars::STORAGE_BUCKET,
        args.storage_bucket.as_deref(),
        "the GCS bucket name",
        gcs_bucket_name,
    )?;
    let endpoint = endpoint(args)?;
    let credentials_file = optional(
        vars::STORAGE_CREDENTIALS_FILE,
        args.storage_credentials_file.as_deref(),
        gcs_credentials_file,
    )?;
    Ok(Backend::Gcs {
        bucket,
        endpoint,
        credentials_file,
    })
}

fn local_backend(args: &StorageArgs) -> Result<Backend, ConfigError> {
    let object_store_only = [
        (vars::STORAGE_BUCKET, &args.storage_bucket),
        (vars::STORAGE_ENDPOINT, &args.storage_endpoint),
        (vars::STORAGE_ALLOW_HTTP, &args.storage_allow_http),
        (vars::STORAGE_REGION, &args.storage_region),
        (
            vars::STORAGE_CREDENTIALS_FILE,
            &args.storage_credentials_file,
        ),
        (vars::STORAGE_CA_BUNDLE, &args.storage_ca_bundle),
        (vars::STORAGE_CLASS, &args.storage_class),
        (vars::STORAGE_SSE_KMS_KEY_ID, &args.storage_sse_kms_key_id),
        (vars::STORAGE_SSE_C_KEY_FILE, &args.storage_sse_c_key_file),
    ];
    for (var, value) in object_store_only {
        unused(var, value.as_deref(), "with local storage")?;
    }
    let root = required(
        vars::STORAGE_PATH,
        args.storage_path.as_deref(),
        "the directory backups are stored in",
        parse::existing_dir,
    )?;
    Ok(Backend::Local { root })
}

/// The endpoint, refusing plain HTTP unless explicitly allowed: credentials
/// and data would otherwise cross the network in the clear by accident.
fn endpoint(args: &StorageArgs) -> Result<Option<Url>, ConfigError> {
    let allow_http = optional(
        vars::STORAGE_ALLOW_HTTP,
        args.storage_allow_http.as_deref(),
        parse::boolean,
    )?
    .unwrap_or(false);
    let endpoint = optional(
        vars::STORAGE_ENDPOINT,
        args.storage_endpoint.as_deref(),
        parse::http_url,
    )?;
    if let Some(url) = &endpoint
        && url.scheme() == "http"
        && !allow_http
    {
        return Err(ConfigError::new(
            vars::STORAGE_ENDPOINT,
            format!(
                "is plain http; use https, or set {}=true to allow it",
                vars::STORAGE_ALLOW_HTTP
            ),
        ));
    }
    Ok(endpoint)
}

/// S3 bucket naming rules (the subset that matters for addressing).
fn s3_bucket_name(raw: &str) -> Result<String, String> {
    let ok = (3..=63).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
        && raw.ends_with(|c: char| c.is_ascii_alphanumeric());
    ok.then(|| raw.to_string())
        .ok_or_else(|| format!("{raw:?} is not a bucket name (3-63 of a-z, 0-9, '.', '-')"))
}

/// GCS bucket naming rules: like S3, plus `_`, and up to 222 with dots.
fn gcs_bucket_name(raw: &str) -> Result<String, String> {
    let max = if raw.contains('.') { 222 } else { 63 };
    let ok = (3..=max).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
        && raw.ends_with(|c: char| c.is_ascii_alphanumeric());
    ok.then(|| raw.to_string())
        .ok_or_else(|| format!("{raw:?} is not a bucket name (3-63 of a-z, 0-9, '.', '-', '_')"))
}

/// The longest key prefix: kassette's own keys take up to about 350 bytes
/// (`kassette/v1/<cluster>/<datacenter>/backups/<name>/nodes/<id>.json`),
/// and S3 and GCS keys are limited to 1,024.
pub const MAX_PREFIX_BYTES: usize = 512;

/// Normalises a key prefix and refuses one that could escape the root.
fn key_prefix(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.len() > MAX_PREFIX_BYTES {
        return Err(format!(
            "is {} bytes long; at most {MAX_PREFIX_BYTES} leave room for kassette's keys within the 1024-byte key limit",
            trimmed.len()
        ));
    }
    for segment in trimmed.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("{raw:?} has an empty, '.' or '..' path segment"));
        }
        if segment.chars().any(char::is_control) {
            return Err("contains control characters".into());
        }
    }
    Ok(trimmed.to_string())
}

/// k8ssandra-operator's key in a storage Secret, for every provider.
pub const OPERATOR_CREDENTIALS_KEY: &str = "credentials";
/// Medusa's (K8ssandra v1) key for S3 and S3-compatible stores.
pub const MEDUSA_S3_CREDENTIALS_KEY: &str = "medusa_s3_credentials";
/// Medusa's (K8ssandra v1) key for Google Cloud Storage.
pub const MEDUSA_GCS_CREDENTIALS_KEY: &str = "medusa_gcp_key.json";

/// The credentials file named by `KASSETTE_STORAGE_CREDENTIALS_FILE`. A
/// directory (a storage Secret mounted whole, as the charts do) stands for
/// the first file present in it of k8ssandra-operator's `credentials`, then
/// the provider's Medusa key (`provider_key`), so a K8ssandra user's
/// existing Secret works as it is.
fn credentials_path(raw: &str, provider_key: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw.trim());
    if !path.is_dir() {
        return parse::readable_file(raw);
    }
    let names = [OPERATOR_CREDENTIALS_KEY, provider_key];
    names
        .iter()
        .map(|name| path.join(name))
        // is_file follows the symlinks of a mounted Secret's keys.
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "{} is a directory holding none of {} (the credentials file names looked for)",
                path.display(),
                names.join(", ")
            )
        })
}

/// An AWS credentials INI file (the form of K8ssandra's
/// `medusa_s3_credentials` secret) must name a key id and a secret key.
/// Only key names are inspected; no value is ever returned or echoed.
fn aws_credentials_file(raw: &str) -> Result<PathBuf, String> {
    let path = credentials_path(raw, MEDUSA_S3_CREDENTIALS_KEY)?;
    let bytes = parse::read_small_file(&path, parse::MAX_SECRET_FILE)?;
    let text = String::from_utf8_lossy(&bytes);
    let has_key = |name: &str| {
        text.lines().any(|line| {
            line.split_once('=')
                .is_some_and(|(k, v)| k.trim() == name && !v.trim().is_empty())
        })
    };
    if has_key("aws_access_key_id") && has_key("aws_secret_access_key") {
        Ok(path)
    } else {
        Err(format!(
            "{} is not an AWS credentials file (needs aws_access_key_id and aws_secret_access_key)",
            path.display()
        ))
    }
}

/// A GCS credentials file must be a JSON key of a known type.
fn gcs_credentials_file(raw: &str) -> Result<PathBuf, String> {
    let path = credentials_path(raw, MEDUSA_GCS_CREDENTIALS_KEY)?;
    let not_a_key = || {
        format!(
            "{} is not a Google credentials JSON (service_account, authorized_user or external_account)",
            path.display()
        )
    };
    let bytes = parse::read_small_file(&path, parse::MAX_SECRET_FILE)?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| not_a_key())?;
    match json.get("type").and_then(|t| t.as_str()) {
        Some("service_account" | "authorized_user" | "external_account") => Ok(path),
        _ => Err(not_a_key()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_args() -> StorageArgs {
        StorageArgs {
            storage_provider: Some("s3".into()),
            storage_bucket: Some("backups".into()),
            ..Default::default()
        }
    }

    #[test]
    fn provider_is_required_and_named() {
        let err = StorageConfig::from_args(&StorageArgs::default()).unwrap_err();
        assert_eq!(err.var, vars::STORAGE_PROVIDER);
        let args = StorageArgs {
            storage_provider: Some("s4".into()),
            ..Default::default()
        };
        let err = StorageConfig::from_args(&args).unwrap_err();
        assert_eq!(
            err.to_string(),
            "KASSETTE_STORAGE_PROVIDER: \"s4\" is not one of s3, gcs, local"
        );
    }

    #[test]
    fn s3_defaults() {
        let config = StorageConfig::from_args(&s3_args()).unwrap();
        assert_eq!(config.prefix, "");
        assert_eq!(config.limits.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(config.limits.max_bandwidth, None);
        assert!(matches!(config.backend, Backend::S3 { ref bucket, .. } if bucket == "backups"));
    }

    #[test]
    fn plain_http_needs_consent() {
        let mut args = s3_args();
        args.storage_endpoint = Some("http://127.0.0.1:9000".into());
        assert_eq!(
            StorageConfig::from_args(&args).unwrap_err().var,
            vars::STORAGE_ENDPOINT
        );
        args.storage_allow_http = Some("true".into());
        assert!(StorageConfig::from_args(&args).is_ok());
    }

    #[test]
    fn settings_of_another_provider_are_refused() {
        let mut args = s3_args();
        args.storage_path = Some("/tmp".into());
        assert_eq!(
            StorageConfig::from_args(&args).unwrap_err().var,
            vars::STORAGE_PATH
        );
        let args = StorageArgs {
            storage_provider: Some("local".into()),
            storage_path: Some("/tmp".into()),
            storage_bucket: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(
            StorageConfig::from_args(&args).unwrap_err().var,
            vars::STORAGE_BUCKET
        );
    }

    #[test]
    fn prefixes_are_normalised_and_cannot_escape() {
        assert_eq!(key_prefix("/team/prod/").unwrap(), "team/prod");
        assert_eq!(key_prefix("").unwrap(), "");
        assert!(key_prefix("a/../b").is_err());
        assert!(key_prefix("a//b").is_err());
        assert!(key_prefix(&"p".repeat(512)).is_ok());
        let long = "p".repeat(20_000);
        let err = key_prefix(&long).unwrap_err();
        assert!(err.contains("1024"), "{err}");
        assert!(!err.contains(&long), "{err}");
    }

    #[test]
    fn sse_c_key_files_hold_32_bytes_and_are_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [7u8; 32]).unwrap();
        let mut args = s3_args();
        args.storage_sse_c_key_file = Some(raw.to_string_lossy().into_owned());
        let config = StorageConfig::from_args(&args).unwrap();
        let Backend::S3 { encryption, .. } = &config.backend else {
            panic!()
        };
        assert_eq!(*encryption, S3Encryption::CustomerKey { key: [7u8; 32] });
        assert!(
            !format!("{config:?}").contains("7, 7"),
            "key in debug output"
        );

        let short = dir.path().join("short");
        std::fs::write(&short, "c2VjcmV0LWtleS10b28tc2hvcnQ=").unwrap();
        args.storage_sse_c_key_file = Some(short.to_string_lossy().into_owned());
        let err = StorageConfig::from_args(&args).unwrap_err();
        assert_eq!(err.var, vars::STORAGE_SSE_C_KEY_FILE);
        assert!(!err.problem.contains("c2VjcmV0"), "{err}");

        args.storage_sse_kms_key_id = Some("alias/backups".into());
        args.storage_sse_c_key_file = Some(raw.to_string_lossy().into_owned());
        assert_eq!(
            StorageConfig::from_args(&args).unwrap_err().var,
            vars::STORAGE_SSE_C_KEY_FILE
        );
    }

    #[test]
    fn bucket_names() {
        assert!(s3_bucket_name("my-backups.eu").is_ok());
        assert!(s3_bucket_name("My_Bucket").is_err());
        assert!(s3_bucket_name("ab").is_err());
        assert!(gcs_bucket_name("my_backups").is_ok());
    }

    #[test]
    fn credential_files_are_checked_without_echoing_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(
            &good,
            "[default]\naws_access_key_id = AKIA\naws_secret_access_key = s3cr3t\n",
        )
        .unwrap();
        assert!(aws_credentials_file(good.to_str().unwrap()).is_ok());

        let bad = dir.path().join("bad");
        std::fs::write(&bad, "aws_secret_access_key = hunter2-very-secret\n").unwrap();
        let err = aws_credentials_file(bad.to_str().unwrap()).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let err = gcs_credentials_file(bad.to_str().unwrap()).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");

        let key = dir.path().join("key.json");
        std::fs::write(&key, r#"{"type":"service_account","private_key":"x"}"#).unwrap();
        assert!(gcs_credentials_file(key.to_str().unwrap()).is_ok());
    }

    /// A mounted Secret: the key files are symlinks into a `..data`
    /// directory, as the kubelet lays them out.
    fn secret_dir(keys: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2026_12_02_00_00_00.1");
        std::fs::create_dir(&data).unwrap();
        for (name, content) in keys {
            std::fs::write(data.join(name), content).unwrap();
            std::os::unix::fs::symlink(data.join(name), dir.path().join(name)).unwrap();
        }
        dir
    }

    const AWS_INI: &str = "[default]\naws_access_key_id = AKIA\naws_secret_access_key = s3cr3t\n";
    const GCP_KEY: &str = r#"{"type":"service_account","private_key":"x"}"#;

    #[test]
    fn a_directory_stands_for_k8ssandras_key_names() {
        let medusa_s3 = secret_dir(&[(MEDUSA_S3_CREDENTIALS_KEY, AWS_INI)]);
        let found = aws_credentials_file(medusa_s3.path().to_str().unwrap()).unwrap();
        assert_eq!(found, medusa_s3.path().join(MEDUSA_S3_CREDENTIALS_KEY));

        let medusa_gcs = secret_dir(&[(MEDUSA_GCS_CREDENTIALS_KEY, GCP_KEY)]);
        let found = gcs_credentials_file(medusa_gcs.path().to_str().unwrap()).unwrap();
        assert_eq!(found, medusa_gcs.path().join(MEDUSA_GCS_CREDENTIALS_KEY));

        // k8ssandra-operator's `credentials` comes first when both exist.
        let both = secret_dir(&[
            (OPERATOR_CREDENTIALS_KEY, AWS_INI),
            (MEDUSA_S3_CREDENTIALS_KEY, "not read"),
        ]);
        let found = aws_credentials_file(both.path().to_str().unwrap()).unwrap();
        assert_eq!(found, both.path().join(OPERATOR_CREDENTIALS_KEY));
    }

    #[test]
    fn a_directory_without_a_known_key_names_the_keys_looked_for() {
        // The GCS key name does not count for S3, nor the other way round.
        let dir = secret_dir(&[(MEDUSA_GCS_CREDENTIALS_KEY, GCP_KEY)]);
        let mut args = s3_args();
        args.storage_credentials_file = Some(dir.path().to_string_lossy().into_owned());
        let err = StorageConfig::from_args(&args).unwrap_err();
        assert_eq!(err.var, vars::STORAGE_CREDENTIALS_FILE);
        assert!(
            err.problem
                .contains("none of credentials, medusa_s3_credentials"),
            "{err}"
        );
        let dir = secret_dir(&[(MEDUSA_S3_CREDENTIALS_KEY, AWS_INI)]);
        let err = gcs_credentials_file(dir.path().to_str().unwrap()).unwrap_err();
        assert!(
            err.contains("none of credentials, medusa_gcp_key.json"),
            "{err}"
        );
    }
}
