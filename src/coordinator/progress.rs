//! The pass's progress line: every agent's counters summed and logged at a
//! steady interval with rate and ETA, while the transfers run.

use std::time::{Duration, Instant};

use bytesize::ByteSize;

use super::client::AgentClient;
use crate::agent::api::Progress;

/// Polls `agents` every `interval` and logs the sum; never returns (drop
/// it when the transfers finish). `what` names the phase (`upload`).
pub async fn log_forever(what: &'static str, agents: Vec<AgentClient>, interval: Duration) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let all = futures::future::join_all(agents.iter().map(AgentClient::progress)).await;
        let answering = all.iter().filter(|p| p.is_ok()).count();
        let total = all.into_iter().flatten().fold(Progress::default(), sum);
        log_line(what, &total, start.elapsed(), answering, agents.len());
    }
}

fn sum(mut a: Progress, b: Progress) -> Progress {
    a.files_total += b.files_total;
    a.files_done += b.files_done;
    a.bytes_total += b.bytes_total;
    a.bytes_done += b.bytes_done;
    a.bytes_uploaded += b.bytes_uploaded;
    a
}

fn log_line(what: &str, p: &Progress, elapsed: Duration, answering: usize, nodes: usize) {
    let rate = p.bytes_done as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = eta(p.bytes_total.saturating_sub(p.bytes_done), rate);
    tracing::info!(
        phase = what,
        files = format!("{}/{}", p.files_done, p.files_total),
        bytes = format!("{}/{}", ByteSize(p.bytes_done), ByteSize(p.bytes_total)),
        sent = %ByteSize(p.bytes_uploaded),
        rate = format!("{}/s", ByteSize(rate as u64)),
        eta = eta.as_deref().unwrap_or("unknown"),
        nodes = format!("{answering}/{nodes}"),
        "progress"
    );
}

/// Remaining time at `rate` bytes per second, rounded to seconds.
fn eta(remaining: u64, rate: f64) -> Option<String> {
    (rate > 0.0).then(|| {
        let secs = (remaining as f64 / rate).round() as u64;
        humantime::format_duration(Duration::from_secs(secs)).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_remaining_over_rate() {
        assert_eq!(eta(100, 10.0).as_deref(), Some("10s"));
        assert_eq!(eta(0, 10.0).as_deref(), Some("0s"));
        assert_eq!(eta(100, 0.0), None);
    }
}
