//! Server-side encryption settings of the S3 backend: the bucket's default,
//! SSE-KMS under a key id, or SSE-C with a customer key (sent, with its
//! MD5, on every request that writes or reads object data; never logged —
//! `Debug` redacts it), and the macros that add them to a request.

use aws_sdk_s3::types::ServerSideEncryption;

use crate::config::S3Encryption;

/// Encryption headers, ready to send.
#[derive(Clone)]
pub(super) enum Encryption {
    BucketDefault,
    Kms {
        key_id: String,
    },
    /// SSE-C: the key and its MD5, both base64, sent with every request
    /// that writes or reads object data.
    CustomerKey {
        key: String,
        key_md5: String,
    },
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BucketDefault => f.write_str("BucketDefault"),
            Self::Kms { key_id } => write!(f, "Kms({key_id})"),
            Self::CustomerKey { .. } => f.write_str("CustomerKey(<redacted>)"),
        }
    }
}

impl Encryption {
    pub(super) fn from_config(config: &S3Encryption) -> Self {
        use base64::Engine;
        use md5::Digest as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        match config {
            S3Encryption::BucketDefault => Self::BucketDefault,
            S3Encryption::Kms { key_id } => Self::Kms {
                key_id: key_id.clone(),
            },
            S3Encryption::CustomerKey { key } => Self::CustomerKey {
                key: b64.encode(key),
                key_md5: b64.encode(md5::Md5::digest(key)),
            },
        }
    }

    /// The SSE-C triple (algorithm, key, key MD5), when SSE-C is on.
    pub(super) fn customer(&self) -> (Option<String>, Option<String>, Option<String>) {
        match self {
            Self::CustomerKey { key, key_md5 } => (
                Some("AES256".into()),
                Some(key.clone()),
                Some(key_md5.clone()),
            ),
            _ => (None, None, None),
        }
    }

    /// The SSE-KMS pair (algorithm, key id), when SSE-KMS is on.
    pub(super) fn kms(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match self {
            Self::Kms { key_id } => (Some(ServerSideEncryption::AwsKms), Some(key_id.clone())),
            _ => (None, None),
        }
    }
}

/// Adds the SSE-C headers (if any) to any request builder that takes them.
macro_rules! with_customer_key {
    ($request:expr, $encryption:expr) => {{
        let (algorithm, key, key_md5) = $encryption.customer();
        $request
            .set_sse_customer_algorithm(algorithm)
            .set_sse_customer_key(key)
            .set_sse_customer_key_md5(key_md5)
    }};
}

/// Adds everything a request creating an object carries: SSE-KMS or SSE-C,
/// and the storage class.
macro_rules! with_object_settings {
    ($request:expr, $store:expr) => {{
        let (sse, kms_key) = $store.encryption.kms();
        with_customer_key!($request, $store.encryption)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .set_storage_class($store.storage_class.clone())
    }};
}
