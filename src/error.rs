//! The crate's error type and how errors map to exit codes.
//!
//! Policy: modules return small `thiserror` enums describing what went wrong
//! in their own terms; this type gathers them at the public surface and
//! decides the exit code. `0` done, `1` the operation failed, `2` bad
//! configuration or usage — the latter always before any side effect.

use std::process::ExitCode;

use crate::config::ConfigError;

/// Exit code of a pass whose operation failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of bad configuration or usage.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The operation failed at run time.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process exit code this error ends a run with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::from(EXIT_USAGE),
            Error::Failed(_) => ExitCode::from(EXIT_FAILED),
        }
    }
}
