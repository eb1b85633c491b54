//! Process-wide transfer limits shared by every transfer of every backend:
//! how many requests carry data at once, and how many bytes per second
//! cross the network.
//!
//! Memory needs no budget of its own: uploads stream every part from its
//! file (`transfer::SourceFile`), so what a request in flight holds is a
//! read chunk or two, and requests in flight are bounded by the slots.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::TransferLimits;

/// Unit of the bandwidth limiter: one cell per KiB keeps byte counts of
/// large parts within the limiter's `u32`.
const CELL: u64 = 1024;

/// Shared limits; clone freely (all clones share the same budget).
#[derive(Clone, Debug)]
pub struct Limits {
    slots: Arc<Semaphore>,
    /// The limiter and its burst in cells (one second's worth): no single
    /// wait may ask for more, or the limiter refuses instead of waiting.
    bandwidth: Option<(Arc<DefaultDirectRateLimiter>, u32)>,
}

impl Limits {
    pub fn new(config: &TransferLimits) -> Self {
        let concurrency = config.concurrency.max(1);
        Self {
            slots: Arc::new(Semaphore::new(concurrency as usize)),
            bandwidth: config
                .max_bandwidth
                .map(|rate| (Arc::new(limiter(rate)), cells_per_second(rate).get())),
        }
    }

    pub fn unlimited_for_tests() -> Self {
        Self::new(&TransferLimits {
            concurrency: 8,
            max_bandwidth: None,
        })
    }

    /// Waits for one of the concurrency slots; hold it for the request (an
    /// upload takes it before hashing a part and hands it to the part's
    /// first attempt, so parts are not hashed far ahead of their sending).
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed.
            Err(_) => unreachable!("transfer semaphore closed"),
        }
    }

    /// Waits until `bytes` may cross the network under the bandwidth limit.
    pub async fn bandwidth(&self, bytes: u64) {
        let Some((limiter, burst)) = &self.bandwidth else {
            return;
        };
        // Asking for at most 64 KiB at a time keeps waits short and fair
        // between concurrent transfers; asking for at most the burst keeps
        // a limit under 64 KiB/s applied (a larger ask is refused, not
        // waited for).
        let step = u64::from((*burst).clamp(1, 64));
        let mut cells = bytes.div_ceil(CELL);
        while cells > 0 {
            let take = cells.min(step) as u32;
            if let Some(n) = NonZeroU32::new(take)
                && limiter.until_n_ready(n).await.is_err()
            {
                // Cannot happen (take <= burst); never let it mean "unlimited".
                tracing::warn!(cells = take, "bandwidth limiter refused a wait");
            }
            cells -= u64::from(take);
        }
    }
}

/// `rate` bytes/s in limiter cells (KiB, rounded up; at least one).
fn cells_per_second(rate: u64) -> NonZeroU32 {
    let per_second = rate.div_ceil(CELL).clamp(1, u64::from(u32::MAX)) as u32;
    NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN)
}

/// A GCRA limiter of `rate` bytes/s allowing a burst of one second.
fn limiter(rate: u64) -> DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(cells_per_second(rate)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bandwidth_limit_paces_transfers() {
        let limits = Limits::new(&TransferLimits {
            concurrency: 2,
            max_bandwidth: Some(1 << 20),
        });
        // One second's worth (the burst) passes at once; the next 64 KiB
        // must wait for the bucket to refill.
        limits.bandwidth(1 << 20).await;
        let (limiter, _) = limits.bandwidth.as_ref().unwrap();
        let next = limiter.check_n(NonZeroU32::new(64).unwrap()).unwrap();
        assert!(next.is_err(), "bytes beyond the rate were not held back");
    }

    #[tokio::test]
    async fn limits_under_64_kib_per_second_are_applied() {
        let limits = Limits::new(&TransferLimits {
            concurrency: 1,
            max_bandwidth: Some(32 << 10),
        });
        // The burst (32 KiB) passes at once, the other 32 KiB take a second.
        let start = std::time::Instant::now();
        limits.bandwidth(64 << 10).await;
        let took = start.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(900),
            "64 KiB at 32 KiB/s took {took:?}"
        );
    }
}
