//! The one retry policy every backend uses.
//!
//! Retried: errors a store marks transient ([`Error::is_transient`]: 5xx,
//! 408, 429/503 throttling, timeouts, connection resets). Never retried:
//! everything else (AccessDenied, NoSuchBucket, not found, precondition
//! failures, checksum mismatches of a download), so a misconfiguration fails
//! at once instead of storming the store. Backoff is exponential from 200 ms,
//! doubling to at most 20 s between attempts, with full jitter, for at most
//! 10 attempts and about 2 minutes of waiting in all — enough to ride out a
//! store restart or a throttling episode.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::error::Error;

/// The retry policy's parameters (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub max_attempts: usize,
    pub max_total_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_attempts: 10,
            max_total_delay: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1))
            .with_total_delay(Some(self.max_total_delay))
    }

    /// Runs `operation` until it succeeds, fails permanently, or the policy
    /// gives up; each retry is logged with its cause.
    pub async fn run<T, F, Fut>(&self, what: &str, operation: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        operation
            .retry(self.backoff())
            .when(Error::is_transient)
            .notify(|err, delay| {
                tracing::warn!(operation = what, error = %err, retry_in = ?delay, "transient storage error; retrying");
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_attempts: 4,
            max_total_delay: Duration::from_secs(5),
        }
    }

    fn transient() -> Error {
        Error::Store {
            operation: "put",
            key: "k".into(),
            message: "503 SlowDown".into(),
            transient: true,
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicUsize::new(0);
        let result = fast()
            .run("put", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(transient())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let calls = AtomicUsize::new(0);
        let result: Result<(), _> = fast()
            .run("put", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(transient())
            })
            .await;
        assert!(result.unwrap_err().is_transient());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicUsize::new(0);
        let result: Result<(), _> = fast()
            .run("put", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::Denied {
                    operation: "put",
                    key: "k".into(),
                    message: "AccessDenied".into(),
                })
            })
            .await;
        assert!(matches!(result, Err(Error::Denied { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
