//! Retention and garbage collection, always under the datacenter lease.
//!
//! The lease is what makes collection safe: a backup pass holds it from
//! before its first upload until after its commit, so while purge holds it
//! no pass can be about to reference a blob purge is deleting — no time
//! grace period is involved. Order (`docs/storage-format.md`, "Garbage
//! collection"): backup manifests of the expired backups first (they stop
//! being complete), then the rest of their objects, then the index, then
//! every blob no remaining complete backup references.

use std::collections::HashSet;
use std::time::Duration;

use futures::TryStreamExt;
use jiff::Timestamp;

use super::PassError;
use crate::catalog::{BackupStatus, Catalog, Index, IndexEntry};
use crate::config::{PurgeConfig, Retention};
use crate::storage::{self, ObjectKey};

/// What a purge deleted (or, dry, would delete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Complete backups removed by retention.
    pub expired: Vec<String>,
    /// Incomplete backups (leftovers of killed passes) removed.
    pub incomplete: Vec<String>,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub kept: usize,
}

/// The complete backups retention removes, oldest first. The newest
/// backup is never removed.
///
/// - keep-last N alone: all but the newest N;
/// - max-age alone: those started longer ago than max-age;
/// - both: those that are outside the newest N *and* older than max-age
///   (keep-last is a floor: at least N backups survive).
pub fn expired(index: &Index, retention: &Retention, now: Timestamp) -> Vec<String> {
    let count = index.backups.len();
    let outside_newest = |position: usize, n: u32| position + (n as usize) < count;
    let too_old = |entry: &IndexEntry, age: Duration| {
        jiff::SignedDuration::try_from(age)
            .ok()
            .and_then(|age| now.checked_sub(age).ok())
            .is_some_and(|limit| entry.started_at < limit)
    };
    index
        .backups
        .iter()
        .enumerate()
        .filter(|(position, _)| position + 1 < count)
        .filter(
            |(position, entry)| match (retention.keep_last, retention.max_age) {
                (Some(n), Some(age)) => outside_newest(*position, n) && too_old(entry, age),
                (Some(n), None) => outside_newest(*position, n),
                (None, Some(age)) => too_old(entry, age),
                (None, None) => false,
            },
        )
        .map(|(_, entry)| entry.name.clone())
        .collect()
}

/// `kassette purge`: takes the lease and purges.
pub async fn run(config: &PurgeConfig) -> Result<PurgeReport, PassError> {
    let catalog = Catalog::open(&config.storage, &config.cluster).await?;
    let mut lease = super::take_lease(&catalog, "purge", config.pass.lock_ttl).await?;
    let result = super::with_lease(
        &mut lease,
        purge(&catalog, &config.retention, config.dry_run),
    )
    .await;
    super::release_lease(lease).await;
    result
}

/// Applies `retention` and collects garbage; the caller holds the lease.
pub async fn purge(
    catalog: &Catalog,
    retention: &Retention,
    dry_run: bool,
) -> Result<PurgeReport, PassError> {
    let found = catalog.backups().await?;
    let mut index = catalog.index().await?;
    let complete: HashSet<&str> = found
        .iter()
        .filter(|b| b.status == BackupStatus::Complete)
        .map(|b| b.name.as_str())
        .collect();
    let indexed: HashSet<&str> = index.backups.iter().map(|e| e.name.as_str()).collect();
    if complete != indexed {
        tracing::warn!("the index does not match the stored backups; rebuilding it");
        index = catalog.rebuild_index().await?;
    }
    let mut report = PurgeReport {
        expired: expired(&index, retention, Timestamp::now()),
        incomplete: found
            .iter()
            .filter(|b| b.status == BackupStatus::Incomplete)
            .map(|b| b.name.clone())
            .collect(),
        ..PurgeReport::default()
    };
    let doomed: HashSet<&str> = report.expired.iter().map(String::as_str).collect();
    let survivors: Vec<IndexEntry> = index
        .backups
        .iter()
        .filter(|e| !doomed.contains(e.name.as_str()))
        .cloned()
        .collect();
    report.kept = survivors.len();
    let referenced = referenced_by(catalog, &survivors).await?;
    let garbage = unreferenced_blobs(catalog, &referenced).await?;
    report.blobs = garbage.len() as u64;
    report.blob_bytes = garbage.iter().map(|(_, size)| size).sum();
    if dry_run {
        log_report(&report, true);
        return Ok(report);
    }
    for name in report.expired.iter().chain(&report.incomplete) {
        catalog.delete_backup(name).await?;
    }
    catalog.put_index(&Index::new(survivors)).await?;
    let keys: Vec<ObjectKey> = garbage.into_iter().map(|(key, _)| key).collect();
    for batch in keys.chunks(1000) {
        catalog.store().delete_many(batch).await?;
    }
    log_report(&report, false);
    Ok(report)
}

/// Every blob key the node manifests of `backups` reference.
async fn referenced_by(
    catalog: &Catalog,
    backups: &[IndexEntry],
) -> Result<HashSet<ObjectKey>, PassError> {
    let mut referenced = HashSet::new();
    for entry in backups {
        let backup = catalog.backup_manifest(&entry.name).await?;
        for manifest in catalog.node_manifests(&backup).await? {
            for file in &manifest.files {
                referenced.insert(
                    catalog
                        .layout()
                        .blob(&file.digest)
                        .map_err(storage::Error::from)?,
                );
            }
        }
    }
    Ok(referenced)
}

/// Stored blobs not in `referenced`, with their sizes.
async fn unreferenced_blobs(
    catalog: &Catalog,
    referenced: &HashSet<ObjectKey>,
) -> Result<Vec<(ObjectKey, u64)>, PassError> {
    let prefix = catalog.layout().blobs_prefix();
    Ok(catalog
        .store()
        .list(&prefix)
        .try_filter(|o| std::future::ready(!referenced.contains(&o.key)))
        .map_ok(|o| (o.key, o.size))
        .try_collect()
        .await?)
}

fn log_report(report: &PurgeReport, dry_run: bool) {
    tracing::info!(
        dry_run,
        expired = ?report.expired,
        incomplete = ?report.incomplete,
        kept = report.kept,
        blobs = report.blobs,
        blob_bytes = %bytesize::ByteSize(report.blob_bytes),
        "{}",
        if dry_run { "purge plan (nothing deleted)" } else { "purge done" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(days_ago: &[i64], now: Timestamp) -> Index {
        Index::new(
            days_ago
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let at = now - jiff::SignedDuration::from_hours(24 * d);
                    IndexEntry {
                        name: format!("b{i}"),
                        started_at: at,
                        finished_at: at,
                        nodes: 3,
                        files: 1,
                        bytes: 1,
                    }
                })
                .collect(),
        )
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let now = Timestamp::now();
        let idx = index(&[5, 4, 3, 2, 1], now);
        let r = Retention {
            keep_last: Some(2),
            max_age: None,
        };
        assert_eq!(expired(&idx, &r, now), ["b0", "b1", "b2"]);
    }

    #[test]
    fn max_age_never_removes_the_newest() {
        let now = Timestamp::now();
        let idx = index(&[40, 35, 31], now);
        let r = Retention {
            keep_last: None,
            max_age: Some(Duration::from_secs(30 * 86_400)),
        };
        assert_eq!(expired(&idx, &r, now), ["b0", "b1"]);
    }

    #[test]
    fn keep_last_is_a_floor_under_max_age() {
        let now = Timestamp::now();
        let idx = index(&[40, 35, 10, 2], now);
        let r = Retention {
            keep_last: Some(3),
            max_age: Some(Duration::from_secs(30 * 86_400)),
        };
        // b1 is old but among the newest three; b2 is outside none.
        assert_eq!(expired(&idx, &r, now), ["b0"]);
        let none = Retention::default();
        assert!(expired(&idx, &none, now).is_empty());
    }
}
