//! Logging setup: `tracing` with human-readable text by default and one JSON
//! object per line when `KASSETTE_LOG_FORMAT=json`; the level comes from
//! `KASSETTE_LOG`, else `RUST_LOG`, else `info`. Logs go to stderr so that
//! stdout carries only a command's result (e.g. `kassette list --json`).

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Call once, first thing after the
/// configuration has been validated.
pub fn init(config: &LogConfig) {
    let directive = config
        .filter
        .clone()
        .or_else(|| std::env::var(EnvFilter::DEFAULT_ENV).ok())
        .unwrap_or_else(|| "info".into());
    // Whatever the filter says, what may carry a secret is never logged.
    let filter = EnvFilter::new(quiet_dependencies(&directive))
        .and(filter_fn(|meta| !may_carry_secrets(meta)));
    // Colours only on a terminal: a Job's logs go to files and collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

/// Events that can hold a secret: the AWS signer's (they print requests
/// with their headers, an SSE-C key among them), and every dependency's
/// `trace` level (where HTTP clients print whole requests). kassette's own
/// events never carry secret values, at any level.
fn may_carry_secrets(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let ours = target == "kassette" || target.starts_with("kassette::");
    target.starts_with("aws_sigv4") || (*meta.level() == Level::TRACE && !ours)
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
    fn what_may_carry_secrets_is_never_logged() {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;
        struct Site;
        impl tracing::callsite::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let meta = |target: &'static str, level: Level| {
            Metadata::new(
                "event",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&SITE)),
                Kind::EVENT,
            )
        };
        assert!(may_carry_secrets(&meta(
            "aws_sigv4::http_request::sign",
            Level::TRACE
        )));
        assert!(may_carry_secrets(&meta("aws_sigv4", Level::INFO)));
        assert!(may_carry_secrets(&meta(
            "aws_smithy_runtime::client::orchestrator",
            Level::TRACE
        )));
        assert!(!may_carry_secrets(&meta(
            "aws_smithy_runtime::client::orchestrator",
            Level::DEBUG
        )));
        assert!(!may_carry_secrets(&meta(
            "kassette::storage::s3",
            Level::TRACE
        )));
        assert!(may_carry_secrets(&meta("kassettex", Level::TRACE)));
    }

    #[test]
    fn bare_levels_quiet_the_sdks_but_explicit_filters_win() {
        assert!(quiet_dependencies("info").contains("aws_config=warn"));
        assert_eq!(quiet_dependencies("aws_config=debug"), "aws_config=debug");
    }
}
