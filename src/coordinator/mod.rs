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
use client::ClientError;
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

/// Runs `work` while renewing `lease` every third of its lifetime; fails
/// (dropping `work`) as soon as the lease is lost.
pub async fn with_lease<T>(
    lease: &mut Lease,
    work: impl Future<Output = Result<T, PassError>>,
) -> Result<T, PassError> {
    let every = (lease.ttl() / 3).max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = ticker.tick() => lease.renew().await?,
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
