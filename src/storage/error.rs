//! Storage errors, in terms of meaning rather than provider status codes.

use std::path::PathBuf;

use super::key::InvalidKey;

/// What a storage operation can fail with. Backends translate their SDK's
/// errors into these; callers decide on meaning (missing, exists, denied,
/// damaged) and [`Error::is_transient`] alone drives retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{key}: not found")]
    NotFound { key: String },

    /// A create-if-absent lost: somebody else created the object first.
    #[error("{key}: already exists")]
    AlreadyExists { key: String },

    /// The bytes do not match their recorded checksum: never a silently
    /// wrong file.
    #[error("{key}: content does not match its checksum (expected {expected}, got {actual})")]
    Corrupt {
        key: String,
        expected: String,
        actual: String,
    },

    /// Credentials were refused or lack a permission. Not retried.
    #[error("{operation} {key}: access denied: {message}")]
    Denied {
        operation: &'static str,
        key: String,
        message: String,
    },

    /// The bucket does not exist. Not retried.
    #[error("bucket {bucket:?} does not exist")]
    NoSuchBucket { bucket: String },

    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),

    /// Any other failure of the store or the network. `transient` says
    /// whether trying again may succeed (5xx, throttling, timeouts, resets).
    #[error("{operation} {key}: {message}")]
    Store {
        operation: &'static str,
        key: String,
        message: String,
        transient: bool,
    },
}

impl Error {
    /// Whether the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Store {
                transient: true,
                ..
            }
        )
    }

    /// A failure that trying again will not cure.
    pub(crate) fn permanent(operation: &'static str, key: &str, message: &str) -> Self {
        Error::Store {
            operation,
            key: key.to_string(),
            message: message.to_string(),
            transient: false,
        }
    }

    /// A backend that cannot be set up from its configuration.
    pub(crate) fn setup(message: &str) -> Self {
        Self::permanent("configure", "", message)
    }

    pub(crate) fn local(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Local {
            path: path.into(),
            source,
        }
    }

    /// Classifies an HTTP status the way every backend does.
    pub(crate) fn from_status(
        operation: &'static str,
        key: &str,
        status: u16,
        message: impl Into<String>,
    ) -> Self {
        let key = key.to_string();
        let message = message.into();
        match status {
            404 => Error::NotFound { key },
            401 | 403 => Error::Denied {
                operation,
                key,
                message,
            },
            412 => Error::AlreadyExists { key },
            _ => Error::Store {
                operation,
                key,
                message: format!("HTTP {status}: {message}"),
                transient: matches!(status, 408 | 429 | 500..=599),
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its chain of causes on one line ("a: b: c"), for messages
/// that must say why, not just what.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // Errors that print their source in their own message would
        // otherwise say it twice.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
