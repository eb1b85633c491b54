//! Prometheus metrics of a backup pass, in the text exposition format,
//! pushed to a Pushgateway (`KASSETTE_PUSHGATEWAY_URL`) at the end of the
//! pass. A Job has no scrape endpoint that lives long enough, hence the
//! push. POST rather than PUT: a failed pass replaces only the metrics it
//! sends, so `kassette_backup_last_success_timestamp_seconds` survives it.

use std::fmt::Write;
use std::time::Duration;

use url::Url;

use super::backup::BackupOutcome;
use crate::config::ClusterConfig;

/// The metric lines for a pass that ended with `outcome`.
pub fn render(outcome: Result<&BackupOutcome, ()>, duration: Duration, now_secs: f64) -> String {
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        let _ = writeln!(text, "{name} {value}");
    };
    gauge(
        "kassette_backup_success",
        "1 if the last backup pass succeeded, 0 if it failed.",
        if outcome.is_ok() { 1.0 } else { 0.0 },
    );
    gauge(
        "kassette_backup_duration_seconds",
        "Duration of the last backup pass.",
        duration.as_secs_f64(),
    );
    match outcome {
        Ok(outcome) => {
            let m = &outcome.manifest;
            gauge(
                "kassette_backup_last_success_timestamp_seconds",
                "When the last successful backup pass finished (Unix time).",
                now_secs,
            );
            gauge(
                "kassette_backup_bytes",
                "Bytes in the last complete backup.",
                m.bytes as f64,
            );
            gauge(
                "kassette_backup_files",
                "Files in the last complete backup.",
                m.files as f64,
            );
            gauge(
                "kassette_backup_uploaded_bytes",
                "Bytes the last complete backup uploaded.",
                m.uploaded_bytes as f64,
            );
            gauge(
                "kassette_backup_uploaded_files",
                "Files the last complete backup uploaded.",
                m.uploaded_files as f64,
            );
            gauge(
                "kassette_backup_snapshot_skew_seconds",
                "Spread of the nodes' snapshot times in the last complete backup.",
                m.snapshot_skew_ms as f64 / 1000.0,
            );
        }
        Err(()) => gauge(
            "kassette_backup_last_failure_timestamp_seconds",
            "When the last failed backup pass ended (Unix time).",
            now_secs,
        ),
    }
    text
}

/// The Pushgateway group URL of this datacenter's backups.
pub fn group_url(base: &Url, cluster: &ClusterConfig) -> Result<Url, url::ParseError> {
    let path = format!(
        "metrics/job/kassette_backup/cluster/{}/datacenter/{}",
        cluster.cluster, cluster.datacenter
    );
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join(&path)
}

/// Pushes `text`; a failure is reported, never fatal to the pass.
pub async fn push(base: &Url, cluster: &ClusterConfig, text: String) {
    let url = match group_url(base, cluster) {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the Pushgateway URL");
            return;
        }
    };
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    let client = match crate::http::build("the Pushgateway", builder) {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "metrics not pushed");
            return;
        }
    };
    let result = client
        .post(url.clone())
        .header("content-type", "text/plain; version=0.0.4")
        .body(text)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    match result {
        Ok(_) => tracing::info!(%url, "metrics pushed"),
        Err(e) => {
            tracing::warn!(%url, error = %crate::storage::error_chain(&e), "could not push metrics")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_url_appends_job_and_labels() {
        let cluster = ClusterConfig {
            cluster: "prod".into(),
            datacenter: "dc1".into(),
        };
        let base = Url::parse("http://pushgateway:9091").unwrap();
        assert_eq!(
            group_url(&base, &cluster).unwrap().as_str(),
            "http://pushgateway:9091/metrics/job/kassette_backup/cluster/prod/datacenter/dc1"
        );
    }

    #[test]
    fn failure_keeps_the_success_time_out_of_the_push() {
        let text = render(Err(()), Duration::from_secs(3), 1_700_000_000.0);
        assert!(text.contains("kassette_backup_success 0\n"), "{text}");
        assert!(!text.contains("last_success"), "{text}");
        assert!(text.contains("kassette_backup_last_failure_timestamp_seconds 1700000000\n"));
    }
}
