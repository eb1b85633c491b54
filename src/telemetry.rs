//! Logging setup: `tracing` with human-readable text by default and one JSON
//! object per line when `KASSETTE_LOG_FORMAT=json`; the level comes from
//! `KASSETTE_LOG`, else `RUST_LOG`, else `info`. Logs go to stderr so that
//! stdout carries only a command's result (e.g. `kassette list --json`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Call once, first thing after the
/// configuration has been validated.
pub fn init(config: &LogConfig) {
    let filter = match &config.filter {
        Some(directive) => EnvFilter::new(directive),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
