//! Logging setup: `tracing` with human-readable text by default and one JSON
//! object per line when `KASSETTE_LOG_FORMAT=json`; the level comes from
//! `KASSETTE_LOG`, else `RUST_LOG`, else `info`. Logs go to stderr so that
//! stdout carries only a command's result (e.g. `kassette list --json`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Call once, first thing after the
/// configuration has been validated.
pub fn init(config: &LogConfig) {
    let directive = config
        .filter
        .clone()
        .or_else(|| std::env::var(EnvFilter::DEFAULT_ENV).ok())
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::new(quiet_dependencies(&directive));
    // Colours only on a terminal: a Job's logs go to files and collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
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

/// A bare level (`info`, `debug`) applies to kassette; the SDKs' own chatter
/// (credential-chain notes, connection pools) stays at `warn` unless the
/// operator names those targets explicitly.
fn quiet_dependencies(directive: &str) -> String {
    let bare_level = !directive.contains(['=', ',']);
    if bare_level {
        format!(
            "{directive},aws_config=warn,aws_smithy_runtime=warn,aws_sdk_s3=warn,hyper_util=warn,scylla=warn,kube_client=warn"
        )
    } else {
        directive.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_levels_quiet_the_sdks_but_explicit_filters_win() {
        assert!(quiet_dependencies("info").contains("aws_config=warn"));
        assert_eq!(quiet_dependencies("aws_config=debug"), "aws_config=debug");
    }
}
