//! The datacenter lease: at most one pass changes a catalog at a time.
//!
//! Leases are numbered objects `locks/<sequence>.json`; the highest present
//! sequence is the current lease. Acquiring is a create-if-absent of the
//! next sequence, so of several contenders exactly one wins — also when
//! they take over a stale lease together, which a delete-then-create
//! scheme cannot promise without conditional deletes (MinIO ignores
//! `If-Match` on DELETE). Releasing marks the lease expired rather than
//! deleting it, so sequence numbers only grow. A holder renews by rewriting
//! its own object and checks that no higher sequence exists: if one does,
//! it has lost the lease and must stop. See `docs/storage-format.md`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use jiff::Timestamp;
use uuid::Uuid;

use crate::catalog::manifest::Record;
use crate::catalog::{FORMAT_VERSION, Layout, LockRecord};
use crate::storage::{self, ObjectKey, PutMode, Store};

/// How long a lease lasts without renewal.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "the datacenter is locked by {owner} ({operation}, since {acquired_at}, until {expires_at})"
    )]
    Held {
        owner: String,
        operation: String,
        acquired_at: Timestamp,
        expires_at: Timestamp,
    },
    #[error("the lease was taken over by {owner}; stopping")]
    Lost { owner: String },
    #[error("lease: {0}")]
    Storage(#[from] storage::Error),
    #[error("lease record {key}: {source}")]
    Format {
        key: String,
        #[source]
        source: crate::catalog::manifest::FormatError,
    },
}

/// A held lease. Release it at the end of the pass; if the process dies,
/// it expires after its TTL.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn Store>,
    layout: Layout,
    sequence: u64,
    record: LockRecord,
    ttl: Duration,
}

impl Lease {
    /// Takes the lease for `operation`, or fails with [`LeaseError::Held`]
    /// naming the current holder.
    pub async fn acquire(
        store: Arc<dyn Store>,
        layout: &Layout,
        owner: &str,
        operation: &str,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        loop {
            let now = Timestamp::now();
            let next = match current(&store, layout).await? {
                Some((_, record)) if !record.is_expired(now) => {
                    return Err(LeaseError::Held {
                        owner: record.owner,
                        operation: record.operation,
                        acquired_at: record.acquired_at,
                        expires_at: record.expires_at,
                    });
                }
                Some((sequence, previous)) => {
                    if !previous.released {
                        tracing::warn!(owner = %previous.owner, expired = %previous.expires_at, "taking over a stale lease (its holder died without releasing it)");
                    }
                    sequence + 1
                }
                None => 0,
            };
            let record = LockRecord {
                format_version: FORMAT_VERSION,
                owner: owner.to_string(),
                run_id: Uuid::new_v4(),
                operation: operation.to_string(),
                acquired_at: now,
                expires_at: expiry(now, ttl),
                released: false,
            };
            let key = key(layout, next)?;
            match store
                .put_bytes(&key, encode(&record, &key)?, PutMode::Create)
                .await
            {
                Ok(()) => {
                    let lease = Lease {
                        store,
                        layout: layout.clone(),
                        sequence: next,
                        record,
                        ttl,
                    };
                    lease.remove_older().await;
                    tracing::info!(owner, operation, sequence = next, "lease acquired");
                    return Ok(lease);
                }
                // Someone created this sequence first: look again (they
                // hold it now, unless it was already released or stale).
                Err(storage::Error::AlreadyExists { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// How long the lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    /// Extends the lease by its TTL, after checking it is still ours.
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        self.check().await?;
        let mut record = self.record.clone();
        record.expires_at = expiry(Timestamp::now(), self.ttl);
        let key = key(&self.layout, self.sequence)?;
        self.store
            .put_bytes(&key, encode(&record, &key)?, PutMode::Overwrite)
            .await?;
        self.record = record;
        Ok(())
    }

    /// Fails with [`LeaseError::Lost`] when a higher sequence exists.
    pub async fn check(&self) -> Result<(), LeaseError> {
        match current(&self.store, &self.layout).await? {
            Some((sequence, record)) if sequence > self.sequence => Err(LeaseError::Lost {
                owner: record.owner,
            }),
            _ => Ok(()),
        }
    }

    /// Gives the lease up: marks it expired now (kept, so the next holder
    /// takes the next sequence number).
    pub async fn release(self) -> Result<(), LeaseError> {
        let mut record = self.record.clone();
        record.expires_at = Timestamp::now();
        record.released = true;
        let key = key(&self.layout, self.sequence)?;
        self.store
            .put_bytes(&key, encode(&record, &key)?, PutMode::Overwrite)
            .await?;
        tracing::info!(owner = %self.record.owner, "lease released");
        Ok(())
    }

    /// Deletes lease objects below ours (stale ones we took over); best
    /// effort, they are ignored anyway.
    async fn remove_older(&self) {
        let older: Vec<ObjectKey> = match self
            .store
            .list(&self.layout.locks_prefix())
            .try_collect::<Vec<_>>()
            .await
        {
            Ok(objects) => objects
                .into_iter()
                .filter(|o| {
                    self.layout
                        .lock_sequence(&o.key)
                        .is_some_and(|s| s < self.sequence)
                })
                .map(|o| o.key)
                .collect(),
            Err(_) => return,
        };
        if !older.is_empty() {
            let _ = self.store.delete_many(&older).await;
        }
    }
}

/// The highest-numbered lease present, with its record. A lease deleted
/// between listing and reading (superseded) means: look again.
async fn current(
    store: &Arc<dyn Store>,
    layout: &Layout,
) -> Result<Option<(u64, LockRecord)>, LeaseError> {
    loop {
        let objects: Vec<_> = store.list(&layout.locks_prefix()).try_collect().await?;
        let Some((sequence, key)) = objects
            .into_iter()
            .filter_map(|o| layout.lock_sequence(&o.key).map(|s| (s, o.key)))
            .max_by_key(|(s, _)| *s)
        else {
            return Ok(None);
        };
        let bytes = match store.get_bytes(&key).await {
            Ok(bytes) => bytes,
            Err(storage::Error::NotFound { .. }) => continue,
            Err(err) => return Err(err.into()),
        };
        let record = LockRecord::from_json(&bytes).map_err(|source| LeaseError::Format {
            key: key.to_string(),
            source,
        })?;
        return Ok(Some((sequence, record)));
    }
}

fn key(layout: &Layout, sequence: u64) -> Result<ObjectKey, LeaseError> {
    layout
        .lock(sequence)
        .map_err(|e| LeaseError::Storage(storage::Error::InvalidKey(e)))
}

fn encode(record: &LockRecord, key: &ObjectKey) -> Result<Bytes, LeaseError> {
    record
        .to_json()
        .map(Bytes::from)
        .map_err(|source| LeaseError::Format {
            key: key.to_string(),
            source,
        })
}

fn expiry(now: Timestamp, ttl: Duration) -> Timestamp {
    let ttl = jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
    now.checked_add(ttl).unwrap_or(Timestamp::MAX)
}
