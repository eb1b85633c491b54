//! Typed, validated configuration for every role.
//!
//! This module owns the step between raw text (environment variables and
//! flags, gathered by [`crate::cli`]) and the settings the rest of the crate
//! uses. All checks happen here, before any side effect: a bad or missing value
//! becomes a [`ConfigError`] naming the variable and what is accepted, and the
//! process exits with code 2. Values that may be secret (credentials files,
//! tokens, passwords) are only ever checked for presence and shape; their
//! contents never appear in an error.

mod agent;
mod azure;
mod coordinator;
pub mod parse;
mod pin;
mod storage;
pub mod vars;

pub use agent::{AgentConfig, CassandraControl};
pub use azure::{AzureCredentials, AzureSettings};
pub use coordinator::{
    BackupConfig, ClusterConfig, CqlConfig, DEFAULT_LOCK_TTL, DEFAULT_PROGRESS_INTERVAL, Discovery,
    NodesConfig, PassConfig, PodIdentity, PurgeConfig, RestoreConfig, RestoreMode, Retention,
};
pub use pin::{IfBootstrapped, NodePlace, PinConfig, source_cluster};
pub use storage::{Backend, S3Encryption, StorageConfig, TransferLimits};

use crate::cli::LogArgs;

/// A setting that is missing or malformed, named by its environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    /// The environment variable (the flag overriding it has the same meaning).
    pub var: &'static str,
    /// What is wrong and what is accepted. Never contains a secret value.
    pub problem: String,
}

impl ConfigError {
    pub fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

/// Parses an optional setting: absent stays `None`, present must parse.
pub(crate) fn optional<T>(
    var: &'static str,
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    raw.map(|text| parse(text).map_err(|problem| ConfigError::new(var, problem)))
        .transpose()
}

/// Parses a required setting; `what` says what to set when it is missing.
pub fn required<T>(
    var: &'static str,
    raw: Option<&str>,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    optional(var, raw, parse)?.ok_or_else(|| ConfigError::new(var, format!("is required: {what}")))
}

/// Refuses a setting that has no meaning in the current context, so a typo in
/// the provider (or a leftover variable) is caught instead of ignored.
pub(crate) fn unused(var: &'static str, raw: Option<&str>, why: &str) -> Result<(), ConfigError> {
    match raw {
        Some(_) => Err(ConfigError::new(
            var,
            format!("is not used {why}; unset it"),
        )),
        None => Ok(()),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive; `None` means RUST_LOG, else `info`.
    pub filter: Option<String>,
}

impl LogConfig {
    pub fn from_args(args: &LogArgs) -> Result<Self, ConfigError> {
        let format = optional(vars::LOG_FORMAT, args.format.as_deref(), |raw| {
            parse::one_of(raw, &[("text", LogFormat::Text), ("json", LogFormat::Json)])
        })?
        .unwrap_or(LogFormat::Text);
        let filter = optional(vars::LOG, args.filter.as_deref(), |raw| {
            tracing_subscriber::EnvFilter::try_new(raw)
                .map(|_| raw.to_string())
                .map_err(|e| {
                    format!("{raw:?} is not a log filter ({e}); e.g. info, kassette=debug")
                })
        })?;
        Ok(Self { format, filter })
    }
}
