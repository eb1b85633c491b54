//! The datacenter lease: at most one pass changes a catalog at a time.
//!
//! Leases are numbered objects `locks/<sequence>.json`; the highest present
//! sequence is the current lease. The scheme (specified, with the argument
//! for why it holds, in `docs/storage-format.md`, "Lease"):
//!
//! - **Acquire** reads the current lease and, when it is free (none,
//!   released or expired), creates sequence *current + 1* with
//!   create-if-absent, then re-reads: if *its + 1* exists, a contender got
//!   there first and acquiring starts over (and is refused, naming them).
//! - **Lease objects are never deleted** (the history is kept), so a
//!   contender acting on a stale read can never re-create a number and
//!   believe it holds the lease; and because every new number is *some
//!   existing number + 1*, "has someone superseded sequence n?" is one
//!   `head` of n + 1.
//! - **Renewal** happens every heartbeat (a sixth of the TTL, at most
//!   15 s), each bounded by what is left of the holder's validity; a holder
//!   whose last successful renewal *started* four heartbeats ago (two
//!   thirds of the TTL, by its monotonic clock) no longer acts, and never
//!   renews such a lease back to life.
//! - **Check** before every irreversible step (the commit, every batch of
//!   deletes): not superseded, and renewed recently enough.
//! - **Unlock** (`kassette unlock`) supersedes the lease of a holder that
//!   stopped renewing: it watches the record unchanged for six heartbeats
//!   first, longer than a live holder can go without renewing or stopping.
//! - **A damaged current lease** (its seal does not match, or it does not
//!   parse) is treated as held: nobody can tell whether a live pass holds
//!   it. Acquiring is refused naming the object; `unlock` watches it for six
//!   of the longest heartbeat ([`MAX_HEARTBEAT`]) and supersedes it if no
//!   holder rewrote it meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use jiff::Timestamp;
use tokio::time::Instant;
use uuid::Uuid;

use crate::catalog::manifest::Record;
use crate::catalog::{FORMAT_VERSION, Layout, LockRecord};
use crate::storage::{self, ObjectKey, Store};

/// How long a lease lasts without renewal.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// The longest interval between two renewals, whatever the TTL: it also
/// bounds how long `kassette unlock` must watch a lease.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(15);

/// The lease's clocks, all derived from the TTL and the heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// After this long without renewal another pass may take the lease.
    pub ttl: Duration,
    /// How often the holder renews.
    pub heartbeat: Duration,
}

impl Timing {
    /// Renew every sixth of `ttl`, but at least every [`MAX_HEARTBEAT`].
    pub fn for_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            heartbeat: (ttl / 6).min(MAX_HEARTBEAT),
        }
    }

    /// The timing a stored record declares. Records of older writers
    /// (which never stopped by themselves) get a sixth of their TTL, so
    /// `unlock` watches them for the whole TTL.
    fn of_record(record: &LockRecord) -> Self {
        let ttl = record
            .expires_at
            .duration_since(record.renewed_at.unwrap_or(record.acquired_at));
        let ttl = Duration::try_from(ttl).unwrap_or(Duration::ZERO);
        match record.heartbeat_ms {
            Some(ms) => Self {
                ttl,
                heartbeat: Duration::from_millis(ms),
            },
            None => Self {
                ttl,
                heartbeat: ttl / 6,
            },
        }
    }

    /// How long after the start of its last successful renewal a holder
    /// may still act. Four heartbeats: at most two thirds of the TTL, so
    /// the holder stops before anyone may take over, and three renewals
    /// may fail or be slow before it must.
    pub fn validity(&self) -> Duration {
        self.heartbeat * 4
    }

    /// How long `unlock` watches a lease unchanged before it calls the
    /// holder dead: the holder's validity plus two heartbeats of room for
    /// the step it may have begun just before its validity ended.
    pub fn unlock_watch(&self) -> Duration {
        self.heartbeat * 6
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "the datacenter is locked by {owner} ({operation}, since {acquired_at}); its lease expires at {expires_at} (expires in {expires_in}). If that pass is dead (killed), `kassette unlock` releases its lease now; unlock refuses while the holder is still renewing it"
    )]
    Held {
        owner: String,
        operation: String,
        acquired_at: Timestamp,
        expires_at: Timestamp,
        expires_in: String,
    },
    #[error("the lease was taken over by {owner}; stopping")]
    Lost { owner: String },
    #[error(
        "the lease was last renewed {elapsed:?} ago (a holder stops acting after {validity:?} without renewal, before anyone may take over); stopping"
    )]
    NotRenewed {
        elapsed: Duration,
        validity: Duration,
    },
    #[error(
        "{owner} renewed its lease while unlock watched it: the holder is alive. Stop it first (it exits 1 when its pass fails, or delete its pod/process), then run unlock again"
    )]
    StillRenewing { owner: String },
    #[error("the lease changed hands while unlock watched it (now {owner}); nothing was released")]
    ChangedHands { owner: String },
    #[error(
        "lease object {key} is damaged ({source}): it is treated as held, since nobody can tell whether a live pass holds it. `kassette unlock` watches it and, if no holder rewrites it, releases it"
    )]
    Damaged {
        key: String,
        #[source]
        source: crate::catalog::manifest::FormatError,
    },
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
/// it expires after its TTL (or `kassette unlock` supersedes it).
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn Store>,
    layout: Layout,
    sequence: u64,
    timing: Timing,
    state: Mutex<HeldState>,
}

#[derive(Debug, Clone)]
struct HeldState {
    record: LockRecord,
    /// When the last successful write of the record started (monotonic).
    renewed: Instant,
}

impl Lease {
    /// Takes the lease for `operation` with the [`Timing::for_ttl`] of
    /// `ttl`, or fails with [`LeaseError::Held`] naming the current holder.
    pub async fn acquire(
        store: Arc<dyn Store>,
        layout: &Layout,
        owner: &str,
        operation: &str,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        Self::acquire_with(store, layout, owner, operation, Timing::for_ttl(ttl)).await
    }

    /// As [`Lease::acquire`], with an explicit timing.
    pub async fn acquire_with(
        store: Arc<dyn Store>,
        layout: &Layout,
        owner: &str,
        operation: &str,
        timing: Timing,
    ) -> Result<Lease, LeaseError> {
        loop {
            let read_at = Timestamp::now();
            let next = match current(&store, layout)
                .await?
                .map(Current::readable)
                .transpose()?
            {
                Some((_, record)) if record.is_live(read_at) => {
                    return Err(held(record, read_at));
                }
                Some((sequence, previous)) => {
                    if !previous.released {
                        tracing::warn!(owner = %previous.owner, expired = %previous.expires_at, "taking over a stale lease (its holder died without releasing it)");
                    }
                    sequence + 1
                }
                None => 0,
            };
            // Validity and expiry count from here, before the create.
            let started = Instant::now();
            let now = Timestamp::now();
            let record = LockRecord {
                format_version: FORMAT_VERSION,
                owner: owner.to_string(),
                run_id: Uuid::new_v4(),
                operation: operation.to_string(),
                acquired_at: now,
                expires_at: expiry(now, timing.ttl),
                released: false,
                renewed_at: Some(now),
                heartbeat_ms: Some(timing.heartbeat.as_millis().try_into().unwrap_or(u64::MAX)),
            };
            let key = key(layout, next)?;
            match storage::create(store.as_ref(), &key, encode(&record, &key)?).await {
                Ok(()) => {}
                // Someone created this sequence first: look again (they
                // hold it now, unless it was already released or stale).
                Err(storage::Error::AlreadyExists { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
            let lease = Lease {
                store: store.clone(),
                layout: layout.clone(),
                sequence: next,
                timing,
                state: Mutex::new(HeldState {
                    record,
                    renewed: started,
                }),
            };
            // The re-read: a contender that read an older state may have
            // created the number after ours meanwhile; then theirs decides.
            if let Some(winner) = lease.superseded().await? {
                tracing::info!(%winner, sequence = next, "lease superseded right after it was created; looking again");
                continue;
            }
            tracing::info!(owner, operation, sequence = next, "lease acquired");
            return Ok(lease);
        }
    }

    /// The lease's TTL and heartbeat.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// How long the lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.timing.ttl
    }

    /// The record as last written.
    pub fn record(&self) -> LockRecord {
        self.lock().record.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HeldState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Extends the lease by its TTL, after checking it is still ours and
    /// still valid (a lease that may already have been taken over is never
    /// renewed back to life).
    pub async fn renew(&self) -> Result<(), LeaseError> {
        let started = Instant::now();
        let now = Timestamp::now();
        self.not_superseded().await?;
        self.still_valid()?;
        let mut record = self.record();
        record.expires_at = expiry(now, self.timing.ttl);
        record.renewed_at = Some(now);
        let key = key(&self.layout, self.sequence)?;
        self.store
            .put_bytes(&key, encode(&record, &key)?, storage::PutMode::Overwrite)
            .await?;
        self.not_superseded().await?;
        let mut state = self.lock();
        state.record = record;
        state.renewed = started;
        Ok(())
    }

    /// One heartbeat: a renewal bounded by what is left of the lease's
    /// validity (at most a heartbeat). A renewal that fails or is slow is
    /// tolerated while the lease is still valid (the next heartbeat tries
    /// again); losing the lease, or its validity, is not.
    pub async fn heartbeat(&self) -> Result<(), LeaseError> {
        let bound = self.remaining_validity().min(self.timing.heartbeat);
        let outcome = tokio::time::timeout(bound, self.renew()).await;
        let failure = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err @ (LeaseError::Lost { .. } | LeaseError::NotRenewed { .. }))) => {
                return Err(err);
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("the renewal took longer than {bound:?}"),
        };
        self.still_valid()?;
        tracing::warn!(error = %failure, "could not renew the lease; trying again at the next heartbeat");
        Ok(())
    }

    /// Fails unless the lease is still ours — no higher sequence — and was
    /// renewed recently enough to act on. Called immediately before every
    /// irreversible step.
    pub async fn check(&self) -> Result<(), LeaseError> {
        self.not_superseded().await?;
        self.still_valid()
    }

    fn remaining_validity(&self) -> Duration {
        self.timing
            .validity()
            .saturating_sub(self.lock().renewed.elapsed())
    }

    /// [`LeaseError::NotRenewed`] when the last successful renewal started
    /// more than [`Timing::validity`] ago.
    fn still_valid(&self) -> Result<(), LeaseError> {
        let elapsed = self.lock().renewed.elapsed();
        if elapsed >= self.timing.validity() {
            return Err(LeaseError::NotRenewed {
                elapsed,
                validity: self.timing.validity(),
            });
        }
        Ok(())
    }

    async fn not_superseded(&self) -> Result<(), LeaseError> {
        match self.superseded().await? {
            Some(owner) => Err(LeaseError::Lost { owner }),
            None => Ok(()),
        }
    }

    /// The owner of the lease that superseded ours, if any. Sequence
    /// numbers are never deleted and each is created as an existing one
    /// plus one, so ours is superseded exactly when ours + 1 exists.
    async fn superseded(&self) -> Result<Option<String>, LeaseError> {
        let next = key(&self.layout, self.sequence + 1)?;
        if self.store.head(&next).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(match current(&self.store, &self.layout).await? {
            Some(Current {
                record: Ok(record), ..
            }) => record.owner,
            Some(Current {
                key,
                record: Err(_),
                ..
            }) => format!("an unknown holder (lease object {key} is damaged)"),
            None => "an unknown holder".into(),
        }))
    }

    /// Gives the lease up: marks it released and expired now (kept, so
    /// the next holder takes the next sequence number).
    pub async fn release(self) -> Result<(), LeaseError> {
        let mut record = self.record();
        record.expires_at = Timestamp::now();
        record.released = true;
        let key = key(&self.layout, self.sequence)?;
        self.store
            .put_bytes(&key, encode(&record, &key)?, storage::PutMode::Overwrite)
            .await?;
        tracing::info!(owner = %record.owner, "lease released");
        Ok(())
    }
}

/// What `kassette unlock` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocked {
    /// No live lease: the next pass takes it by itself.
    NotHeld { previous: Option<LockRecord> },
    /// The dead holder's lease was superseded by a released one.
    Released { holder: LockRecord, sequence: u64 },
    /// The current lease object was damaged and nobody rewrote it while
    /// unlock watched: it was superseded by a released one.
    ReleasedDamaged { key: String, sequence: u64 },
}

/// Releases the lease of a holder that stopped renewing: watches the
/// current lease for [`Timing::unlock_watch`] (six heartbeats of its
/// holder), and if it stayed byte-for-byte unchanged and unsuperseded,
/// creates the next sequence as a released lease — the dead holder, if it
/// ever wakes, finds it superseded at its next check. A live holder
/// renews within the watch: [`LeaseError::StillRenewing`].
pub async fn unlock(
    store: Arc<dyn Store>,
    layout: &Layout,
    by: &str,
) -> Result<Unlocked, LeaseError> {
    unlock_with(store, layout, by, Timing::for_ttl(Duration::MAX)).await
}

/// As [`unlock`]; a damaged lease is watched with the timing `damaged`
/// (the longest heartbeat of this format, except in tests).
async fn unlock_with(
    store: Arc<dyn Store>,
    layout: &Layout,
    by: &str,
    damaged: Timing,
) -> Result<Unlocked, LeaseError> {
    let Some(Current {
        sequence,
        key,
        record,
        bytes,
    }) = current(&store, layout).await?
    else {
        return Ok(Unlocked::NotHeld { previous: None });
    };
    let (holder, timing) = match record {
        Ok(holder) if !holder.is_live(Timestamp::now()) => {
            return Ok(Unlocked::NotHeld {
                previous: Some(holder),
            });
        }
        Ok(holder) => {
            let timing = Timing::of_record(&holder);
            (Some(holder), timing)
        }
        // Its own heartbeat cannot be trusted: watch for the longest any
        // holder of this format renews within.
        Err(err) => {
            tracing::warn!(lease = %key, error = %err, "the current lease object is damaged; watching it as if a holder with the longest heartbeat held it");
            (None, damaged)
        }
    };
    let owner = holder
        .as_ref()
        .map_or_else(|| format!("the holder of {key}"), |h| h.owner.clone());
    let watch = timing.unlock_watch();
    tracing::info!(%owner, sequence, ?watch, heartbeat = ?timing.heartbeat, "watching the lease: a live holder renews it within this time");
    let next = self::key(layout, sequence + 1)?;
    let deadline = Instant::now() + watch;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let pause = (timing.heartbeat / 4)
            .max(Duration::from_millis(50))
            .min(deadline - now);
        tokio::time::sleep(pause).await;
        if store.head(&next).await?.is_some() {
            return Err(changed_hands(&store, layout).await);
        }
        match store.get_bytes(&key).await {
            Ok(now_bytes) if now_bytes == bytes => {}
            Ok(_) => return Err(LeaseError::StillRenewing { owner }),
            Err(err) => return Err(err.into()),
        }
    }
    let now = Timestamp::now();
    let record = LockRecord {
        format_version: FORMAT_VERSION,
        owner: format!("unlock by {by}"),
        run_id: Uuid::new_v4(),
        operation: "unlock".into(),
        acquired_at: now,
        expires_at: now,
        released: true,
        renewed_at: Some(now),
        heartbeat_ms: None,
    };
    match storage::create(store.as_ref(), &next, encode(&record, &next)?).await {
        Ok(()) => {
            tracing::info!(%owner, sequence, "released the lease of a dead holder");
            Ok(match holder {
                Some(holder) => Unlocked::Released { holder, sequence },
                None => Unlocked::ReleasedDamaged {
                    key: key.to_string(),
                    sequence,
                },
            })
        }
        Err(storage::Error::AlreadyExists { .. }) => Err(changed_hands(&store, layout).await),
        Err(err) => Err(err.into()),
    }
}

async fn changed_hands(store: &Arc<dyn Store>, layout: &Layout) -> LeaseError {
    match current(store, layout).await {
        Ok(Some(Current {
            record: Ok(record), ..
        })) => LeaseError::ChangedHands {
            owner: record.owner,
        },
        Ok(Some(Current { key, .. })) => LeaseError::ChangedHands {
            owner: format!("the holder of {key}, which is damaged"),
        },
        Ok(None) => LeaseError::ChangedHands {
            owner: "nobody".into(),
        },
        Err(err) => err,
    }
}

/// The current lease, if any, without taking it (for `list`); a damaged
/// one is [`LeaseError::Damaged`].
pub async fn current_holder(
    store: &Arc<dyn Store>,
    layout: &Layout,
) -> Result<Option<LockRecord>, LeaseError> {
    Ok(current(store, layout)
        .await?
        .map(Current::readable)
        .transpose()?
        .map(|(_, record)| record))
}

fn held(record: LockRecord, now: Timestamp) -> LeaseError {
    let remaining = record
        .expires_at
        .duration_since(now)
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::SignedDuration::ZERO);
    LeaseError::Held {
        owner: record.owner,
        operation: record.operation,
        acquired_at: record.acquired_at,
        expires_at: record.expires_at,
        expires_in: format!("{remaining:#}"),
    }
}

/// The highest-numbered lease object present.
struct Current {
    sequence: u64,
    key: ObjectKey,
    /// Its record, or why it is damaged (its seal does not match, or it
    /// does not parse).
    record: Result<LockRecord, crate::catalog::manifest::FormatError>,
    /// Its exact bytes.
    bytes: Bytes,
}

impl Current {
    /// The sequence and record, or [`LeaseError::Damaged`] naming it.
    fn readable(self) -> Result<(u64, LockRecord), LeaseError> {
        match self.record {
            Ok(record) => Ok((self.sequence, record)),
            Err(source) => Err(LeaseError::Damaged {
                key: self.key.to_string(),
                source,
            }),
        }
    }
}

/// The current lease object, if any. One that vanished between listing
/// and reading (deleted by an older kassette, which compacted the history)
/// means: look again.
async fn current(store: &Arc<dyn Store>, layout: &Layout) -> Result<Option<Current>, LeaseError> {
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
        let record = LockRecord::from_json(&bytes);
        return Ok(Some(Current {
            sequence,
            key,
            record,
            bytes,
        }));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStore;

    fn layout() -> Layout {
        Layout::new("prod", "dc1").unwrap()
    }

    #[test]
    fn timings_keep_the_holder_inside_its_ttl() {
        for ttl in [3, 60, 900, 86_400].map(Duration::from_secs) {
            let t = Timing::for_ttl(ttl);
            assert!(t.heartbeat <= MAX_HEARTBEAT);
            // A holder stops acting at least a third of the TTL before
            // anyone may take over.
            assert!(t.validity() <= ttl * 2 / 3, "{ttl:?}");
            assert!(t.unlock_watch() > t.validity() + t.heartbeat);
        }
        assert_eq!(
            Timing::for_ttl(DEFAULT_TTL).unlock_watch(),
            Duration::from_secs(90)
        );
        // A record of an older writer is watched for its whole TTL.
        let now = Timestamp::now();
        let old = LockRecord {
            format_version: FORMAT_VERSION,
            owner: "o".into(),
            run_id: Uuid::nil(),
            operation: "backup".into(),
            acquired_at: now,
            expires_at: now + jiff::SignedDuration::from_secs(600),
            released: false,
            renewed_at: None,
            heartbeat_ms: None,
        };
        assert_eq!(
            Timing::of_record(&old).unlock_watch(),
            Duration::from_secs(600)
        );
    }

    #[tokio::test]
    async fn history_is_kept_and_superseding_is_seen() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let hour = Duration::from_secs(3600);
        let first = Lease::acquire(store.clone(), &layout(), "a/1", "backup", hour)
            .await
            .unwrap();
        first.release().await.unwrap();
        let second = Lease::acquire(store.clone(), &layout(), "b/1", "purge", hour)
            .await
            .unwrap();
        let keys: Vec<_> = store
            .list(&layout().locks_prefix())
            .map_ok(|o| o.key.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(keys.len(), 2, "lease history deleted: {keys:?}");
        second.check().await.unwrap();
        assert!(matches!(
            Lease::acquire(store.clone(), &layout(), "c/1", "backup", hour).await,
            Err(LeaseError::Held { ref owner, .. }) if owner == "b/1"
        ));
    }

    /// A short timing, so the tests run in real time.
    fn quick() -> Timing {
        Timing {
            ttl: Duration::from_secs(3600),
            heartbeat: Duration::from_millis(100),
        }
    }

    #[tokio::test]
    async fn a_holder_that_was_not_renewed_stops_and_is_not_revived() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let lease = Lease::acquire_with(store.clone(), &layout(), "a/1", "backup", quick())
            .await
            .unwrap();
        lease.check().await.unwrap();
        // Stalled (a stopped process) for four heartbeats: no longer acts.
        tokio::time::sleep(quick().validity() + Duration::from_millis(20)).await;
        assert!(matches!(
            lease.check().await,
            Err(LeaseError::NotRenewed { .. })
        ));
        assert!(matches!(
            lease.renew().await,
            Err(LeaseError::NotRenewed { .. })
        ));
        assert!(matches!(
            lease.heartbeat().await,
            Err(LeaseError::NotRenewed { .. })
        ));
    }

    #[tokio::test]
    async fn unlock_refuses_a_renewing_holder_and_releases_a_dead_one() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let live = Arc::new(
            Lease::acquire_with(store.clone(), &layout(), "live/1", "backup", quick())
                .await
                .unwrap(),
        );
        let renewing = {
            let live = live.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(live.timing().heartbeat).await;
                    let _ = live.heartbeat().await;
                }
            })
        };
        let refused = unlock(store.clone(), &layout(), "op").await;
        assert!(
            matches!(refused, Err(LeaseError::StillRenewing { ref owner }) if owner == "live/1"),
            "{refused:?}"
        );
        renewing.abort(); // the holder dies
        let released = unlock(store.clone(), &layout(), "op").await.unwrap();
        assert!(
            matches!(released, Unlocked::Released { ref holder, .. } if holder.owner == "live/1")
        );
        assert!(matches!(live.check().await, Err(LeaseError::Lost { .. })));
        let next = Lease::acquire(store.clone(), &layout(), "next/1", "backup", quick().ttl)
            .await
            .expect("free after unlock, long before the TTL");
        next.check().await.unwrap();
    }

    /// Flips one byte of the object so that it stays valid JSON: a letter
    /// of the owner's name.
    async fn damage(store: &Arc<dyn Store>, key: &ObjectKey) {
        let bytes = store.get_bytes(key).await.unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let damaged = text.replacen("\"owner\": \"a", "\"owner\": \"b", 1);
        assert_ne!(damaged, text);
        serde_json::from_str::<serde_json::Value>(&damaged).expect("still valid JSON");
        store
            .put_bytes(key, Bytes::from(damaged), storage::PutMode::Overwrite)
            .await
            .unwrap();
    }

    /// A damaged current lease is held until proven otherwise: nobody
    /// acquires it, `unlock` refuses while a holder rewrites it, and
    /// supersedes it once nobody did for six of the longest heartbeat (a
    /// short one here; `unlock` uses [`MAX_HEARTBEAT`], checked below).
    #[tokio::test]
    async fn a_damaged_lease_is_held_until_unlock_supersedes_it() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let live = Arc::new(
            Lease::acquire_with(store.clone(), &layout(), "a/1", "backup", quick())
                .await
                .unwrap(),
        );
        let key0 = key(&layout(), 0).unwrap();
        damage(&store, &key0).await;
        let refused = Lease::acquire(store.clone(), &layout(), "c/1", "backup", quick().ttl).await;
        assert!(
            matches!(refused, Err(LeaseError::Damaged { ref key, .. }) if *key == key0.to_string()),
            "{refused:?}"
        );
        assert!(refused.unwrap_err().to_string().contains(key0.as_str()));
        assert!(matches!(
            current_holder(&store, &layout()).await,
            Err(LeaseError::Damaged { .. })
        ));
        // The holder is alive: it goes on, and its renewal rewrites the
        // object, so unlock refuses.
        live.check().await.unwrap();
        let renewing = {
            let live = live.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(live.timing().heartbeat).await;
                    let _ = live.heartbeat().await;
                }
            })
        };
        let unlocked = unlock_with(store.clone(), &layout(), "op", quick()).await;
        assert!(
            matches!(unlocked, Err(LeaseError::StillRenewing { .. })),
            "{unlocked:?}"
        );
        renewing.abort();
        // Damaged again, and nobody rewrites it: the watch is six of the
        // longest heartbeat, whatever the damaged record says.
        damage(&store, &key0).await;
        let started = Instant::now();
        let unlocked = unlock_with(store.clone(), &layout(), "op", quick())
            .await
            .unwrap();
        assert_eq!(
            unlocked,
            Unlocked::ReleasedDamaged {
                key: key0.to_string(),
                sequence: 0
            }
        );
        assert!(started.elapsed() >= quick().unlock_watch());
        assert_eq!(
            Timing::for_ttl(Duration::MAX).unlock_watch(),
            MAX_HEARTBEAT * 6
        );
        assert!(matches!(live.check().await, Err(LeaseError::Lost { .. })));
        let next = Lease::acquire(store.clone(), &layout(), "c/1", "backup", quick().ttl)
            .await
            .unwrap();
        assert_eq!(next.sequence, 2);
    }
}
