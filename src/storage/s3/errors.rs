//! Error classification of the S3 backend: what an SDK error means to the
//! retry policy and to the caller (not found, denied, missing bucket,
//! transient, an untrusted certificate), independent of provider codes.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::storage::PutMode;
use crate::storage::error::{Error, error_chain};

/// Translates an SDK error into the storage error's meaning.
pub(super) fn classify<E>(
    operation: &'static str,
    key: &str,
    err: SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or_default();
            let message = service.err().message().unwrap_or(code).to_string();
            match code {
                "NoSuchBucket" => Error::NoSuchBucket {
                    bucket: key.split('/').next().unwrap_or_default().to_string(),
                },
                "NoSuchKey" | "NotFound" | "NoSuchUpload" if status == 404 => Error::NotFound {
                    key: key.to_string(),
                },
                "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" => {
                    Error::Store {
                        operation,
                        key: key.to_string(),
                        message: format!("{code}: {message}"),
                        transient: true,
                    }
                }
                _ => Error::from_status(
                    operation,
                    key,
                    status,
                    format!("{code}: {message}")
                        .trim_start_matches(": ")
                        .to_string(),
                ),
            }
        }
        SdkError::ConstructionFailure(_) => Error::permanent(operation, key, &error_chain(&err)),
        // A certificate the client does not trust will not become trusted by
        // trying again: fail at once, saying what to configure.
        _ if is_certificate_failure(&error_chain(&err)) => Error::Store {
            operation,
            key: key.to_string(),
            message: format!(
                "TLS certificate not trusted ({}); set KASSETTE_STORAGE_CA_BUNDLE to the CA that issued it",
                error_chain(&err)
            ),
            transient: false,
        },
        // Dispatch failures, timeouts and broken responses: the request may
        // succeed when tried again.
        _ => Error::Store {
            operation,
            key: key.to_string(),
            message: error_chain(&err),
            transient: true,
        },
    }
}

/// Whether a connection failed because the server's certificate was refused
/// (rustls: "invalid peer certificate: UnknownIssuer" and the like).
fn is_certificate_failure(chain: &str) -> bool {
    [
        "invalid peer certificate",
        "InvalidCertificate",
        "certificate verify failed",
    ]
    .iter()
    .any(|marker| chain.contains(marker))
}

/// As [`classify`], but a 412 on a create-if-absent means another writer
/// won, and a 409 (S3's "conditional request conflict" while a concurrent
/// conditional write is in flight) is worth retrying to learn the outcome.
pub(super) fn classify_put<E>(name: &str, mode: PutMode, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if mode == PutMode::Create
        && let SdkError::ServiceError(service) = &err
        && service.raw().status().as_u16() == 409
    {
        return Error::Store {
            operation: "put",
            key: name.to_string(),
            message: "conditional write conflict".into(),
            transient: true,
        };
    }
    classify("put", name, err)
}

pub(super) fn transient(operation: &'static str, key: &str, err: impl std::error::Error) -> Error {
    Error::Store {
        operation,
        key: key.to_string(),
        message: error_chain(&err),
        transient: true,
    }
}
