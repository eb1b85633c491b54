//! The coordinator: the passes that span a whole datacenter, each planned
//! and then carried out against the agents and the store.
//!
//! - [`backup`] — discover, lock, snapshot every node, upload, commit,
//!   clear snapshots, apply retention.
//! - [`restore`] — resolve, map nodes, stage verified files, create the
//!   missing schema, truncate (replace mode), import.
//! - [`purge`] — retention and garbage collection under the lease.
//! - [`inspect`] — `list`, `status` and `verify`: reading the catalog.
//! - [`discovery`] — finding the agents (static list or Kubernetes).
//! - [`nodes`] — reaching them and checking the datacenter is whole.
//! - [`lease`] — the datacenter lease that keeps passes from overlapping.
//! - [`client`] — the typed agent client.
//! - [`metrics`] — Prometheus text pushed to a Pushgateway.

pub mod backup;
pub mod client;
pub mod discovery;
pub mod inspect;
pub mod lease;
pub mod metrics;
pub mod nodes;
mod progress;
pub mod purge;
pub mod recovery;
pub mod restore;

use std::future::Future;
use std::time::Duration;

use crate::cassandra::cql::CqlError;
use crate::catalog::{Catalog, CatalogError};
use crate::storage;
use client::{ClientError, JobSpec};
use discovery::DiscoveryError;
use lease::{Lease, LeaseError};

/// Why a pass failed. Every variant names what it is about (a node, an
/// object, a variable), because this is what the operator reads.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("node {node}: {source}")]
    Node {
        node: String,
        #[source]
        source: ClientError,
    },
    #[error(transparent)]
    Cql(#[from] CqlError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    /// A precondition does not hold; nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// Verification found problems.
    #[error("{0}")]
    Damaged(String),
    #[error("{0}")]
    Failed(String),
}

/// Runs `work` while renewing `lease` every heartbeat (each renewal
/// bounded by what is left of its validity, see [`lease::Timing`]); fails (dropping
/// `work`) as soon as the lease is lost or could not be renewed in time.
/// `work` may borrow the lease too, to [`Lease::check`] it before each
/// irreversible step.
pub async fn with_lease<T>(
    lease: &Lease,
    work: impl Future<Output = Result<T, PassError>>,
) -> Result<T, PassError> {
    let every = lease.timing().heartbeat.max(Duration::from_millis(50));
    // Renewals run beside the work, never pausing it: a slow renewal must
    // not starve the polls that keep the agents' jobs alive.
    let renewals = async {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = lease.heartbeat().await {
                return PassError::from(err);
            }
        }
    };
    tokio::select! {
        result = work => result,
        err = renewals => Err(err),
    }
}

/// How long an agent keeps a job of this pass without a poll: the lease's
/// TTL (a coordinator that cannot reach its agents for that long has lost
/// its lease too), within 10 s..60 s so that one slow poll never ends a job
/// and a killed coordinator's work stops within a minute.
pub fn heartbeat_timeout(lock_ttl: Duration) -> Duration {
    lock_ttl.clamp(Duration::from_secs(10), Duration::from_secs(60))
}

/// A new pass id for `operation`, with its jobs' heartbeat timeout.
pub fn new_pass(operation: &str, lock_ttl: Duration) -> JobSpec {
    JobSpec::new_pass(operation, heartbeat_timeout(lock_ttl))
}

/// Ends the pass's jobs on every node (waiting until they stopped); a node
/// that does not answer only warns — its jobs end on their own when the
/// polls stop.
pub async fn end_pass(nodes: &[nodes::Node], job: &JobSpec) {
    let results =
        futures::future::join_all(nodes.iter().map(|n| n.client.end_pass(&job.pass))).await;
    for (node, result) in nodes.iter().zip(results) {
        if let Err(err) = result {
            tracing::warn!(node = %node.agent.name, pass = %job.pass, error = %err, "could not end the pass's jobs; they stop when their heartbeat times out");
        }
    }
}

/// Runs `work` to completion while renewing `lease`: for steps that must
/// finish whatever happens to the lease (clearing snapshots). A failed
/// renewal is only logged; the next [`Lease::check`] decides.
pub async fn renewing<T>(lease: &Lease, work: impl Future<Output = T>) -> T {
    let every = lease.timing().heartbeat.max(Duration::from_millis(50));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    let mut failed = false;
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = ticker.tick(), if !failed => {
                if let Err(err) = lease.heartbeat().await {
                    tracing::warn!(error = %err, "the lease could not be renewed; finishing this step anyway");
                    failed = true;
                }
            }
        }
    }
}

/// Takes the catalog's lease for `operation` (see [`lease`]).
pub async fn take_lease(
    catalog: &Catalog,
    operation: &str,
    ttl: Duration,
) -> Result<Lease, PassError> {
    let store = catalog.store().clone();
    Ok(Lease::acquire(store, catalog.layout(), &lease_owner(), operation, ttl).await?)
}

/// Gives the lease up; a failure only warns, the lease expires on its own.
pub async fn release_lease(lease: Lease) {
    if let Err(err) = lease.release().await {
        tracing::warn!(error = %err, "could not release the lease; it expires on its own");
    }
}

/// Who holds a lease, for the message another pass prints: the pod (or
/// host) name and process id.
pub fn lease_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host}/{}", std::process::id())
}
