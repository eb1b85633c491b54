//! Reading the catalog: `kassette list` (the index: one request however
//! many backups), `kassette status NAME` and `kassette verify NAME`
//! (every referenced blob present with its size; `--deep` downloads each
//! and checks its BLAKE3).

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt};

use super::PassError;
use crate::catalog::manifest::Record;
use crate::catalog::{BackupManifest, BackupStatus, Catalog, Index, LockRecord, NodeManifest};
use crate::storage::{self, Digest, ObjectKey};

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub files: u64,
    pub blobs: u64,
    pub bytes: u64,
    /// Bytes downloaded and re-hashed (`--deep`).
    pub checked_bytes: u64,
    /// One line per problem, each naming the object.
    pub problems: Vec<String>,
}

/// The blobs `manifests` reference, keyed by object key.
fn referenced_blobs(
    catalog: &Catalog,
    manifests: &[NodeManifest],
) -> Result<BTreeMap<ObjectKey, Digest>, PassError> {
    let mut blobs = BTreeMap::new();
    for manifest in manifests {
        for file in &manifest.files {
            let key = catalog
                .layout()
                .blob(&file.digest)
                .map_err(storage::Error::from)?;
            blobs.insert(key, file.digest);
        }
    }
    Ok(blobs)
}

/// Sizes of every stored blob, by one listing of `blobs/`.
async fn stored_blobs(catalog: &Catalog) -> Result<HashMap<ObjectKey, u64>, PassError> {
    let prefix = catalog.layout().blobs_prefix();
    Ok(catalog
        .store()
        .list(&prefix)
        .map_ok(|o| (o.key, o.size))
        .try_collect()
        .await?)
}

/// Problems with the presence of `blobs`: missing, or of the wrong size.
async fn presence_problems(
    catalog: &Catalog,
    blobs: &BTreeMap<ObjectKey, Digest>,
) -> Result<Vec<String>, PassError> {
    let stored = stored_blobs(catalog).await?;
    Ok(blobs
        .iter()
        .filter_map(|(key, digest)| match stored.get(key) {
            None => Some(format!("{key}: missing")),
            Some(&size) if size != digest.size => {
                Some(format!("{key}: {size} bytes, expected {}", digest.size))
            }
            Some(_) => None,
        })
        .collect())
}

/// Fails unless every blob `manifests` reference is stored with its size:
/// checked before a commit, so a backup whose agents wrote elsewhere (a
/// different bucket or prefix) is never called complete.
pub async fn check_presence(
    catalog: &Catalog,
    manifests: &[NodeManifest],
) -> Result<(), PassError> {
    let blobs = referenced_blobs(catalog, manifests)?;
    let problems = presence_problems(catalog, &blobs).await?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(PassError::Damaged(format!(
        "{} of {} blobs are not in the store after the upload (do the agents use the same storage settings?): {}",
        problems.len(),
        blobs.len(),
        first_lines(&problems)
    )))
}

/// Fails unless every blob `manifests` reference is stored with its size:
/// checked by a restore before anything else, so a damaged backup is
/// refused, naming the objects, even when an earlier attempt staged copies
/// of the missing blobs on the nodes.
pub async fn check_complete(
    catalog: &Catalog,
    backup: &BackupManifest,
    manifests: &[NodeManifest],
) -> Result<(), PassError> {
    let blobs = referenced_blobs(catalog, manifests)?;
    let problems = presence_problems(catalog, &blobs).await?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(PassError::Damaged(format!(
        "backup {} is damaged: {} of {} blobs missing or of the wrong size: {}",
        backup.name,
        problems.len(),
        blobs.len(),
        first_lines(&problems)
    )))
}

/// Verifies backup `name` (or `latest`): its manifests, every blob's
/// presence and size, and with `deep` every blob's content.
pub async fn verify(
    catalog: &Catalog,
    name: &str,
    deep: bool,
    concurrency: usize,
) -> Result<(BackupManifest, VerifyReport), PassError> {
    let backup = catalog.backup_manifest(name).await?;
    let manifests = catalog.node_manifests(&backup).await?;
    let blobs = referenced_blobs(catalog, &manifests)?;
    let mut report = VerifyReport {
        files: manifests.iter().map(|m| m.files.len() as u64).sum(),
        blobs: blobs.len() as u64,
        bytes: blobs.values().map(|d| d.size).sum(),
        ..VerifyReport::default()
    };
    report.problems = catalog_problems(catalog).await?;
    report
        .problems
        .extend(presence_problems(catalog, &blobs).await?);
    if deep {
        let (checked, damaged) = check_contents(catalog, &blobs, concurrency).await?;
        report.checked_bytes = checked;
        report.problems.extend(damaged);
    }
    Ok((backup, report))
}

/// Problems with the datacenter's shared records: the index (unreadable;
/// merely stale is a warning) and the current lease
/// (unreadable: no pass could take the lease). Read only; nothing is
/// repaired here — the next pass under the lease rewrites the index.
async fn catalog_problems(catalog: &Catalog) -> Result<Vec<String>, PassError> {
    let mut problems = Vec::new();
    let store = catalog.store();
    let index_key = catalog.layout().index().map_err(storage::Error::from)?;
    let complete: Vec<String> = catalog
        .backups()
        .await?
        .into_iter()
        .filter(|b| b.status == BackupStatus::Complete)
        .map(|b| b.name)
        .collect();
    match store.get_bytes(&index_key).await {
        Ok(bytes) => match Index::from_json(&bytes) {
            Ok(index) => {
                let mut listed: Vec<String> =
                    index.backups.iter().map(|e| e.name.clone()).collect();
                listed.sort();
                // A stale index is a state a crash between commit and index
                // update leaves (docs/storage-format.md, rule 6), not damage.
                if listed != complete {
                    tracing::warn!(index = %index_key, "the index does not list exactly the complete backups; the next backup or purge rebuilds it from the backup manifests");
                }
            }
            Err(e) => problems.push(format!(
                "{index_key}: unreadable ({e}); the next backup or purge rebuilds it from the backup manifests"
            )),
        },
        Err(storage::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let locks: Vec<ObjectKey> = store
        .list(&catalog.layout().locks_prefix())
        .map_ok(|o| o.key)
        .try_collect()
        .await?;
    let current = locks
        .into_iter()
        .filter_map(|k| catalog.layout().lock_sequence(&k).map(|s| (s, k)))
        .max_by_key(|(s, _)| *s);
    if let Some((_, key)) = current {
        match store.get_bytes(&key).await {
            Ok(bytes) => {
                if let Err(e) = LockRecord::from_json(&bytes) {
                    problems.push(format!(
                        "{key}: unreadable lease ({e}); every pass refuses to start until it is repaired or removed"
                    ));
                }
            }
            Err(storage::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(problems)
}

/// Downloads every blob into a scratch directory (the store checks size
/// and BLAKE3 on the way) and deletes it again.
async fn check_contents(
    catalog: &Catalog,
    blobs: &BTreeMap<ObjectKey, Digest>,
    concurrency: usize,
) -> Result<(u64, Vec<String>), PassError> {
    let scratch = tempfile::tempdir()
        .map_err(|e| PassError::Failed(format!("cannot create a scratch directory: {e}")))?;
    let results: Vec<Result<u64, String>> = futures::stream::iter(blobs.iter().enumerate())
        .map(|(i, (key, digest))| {
            let dest = scratch.path().join(format!("blob-{i}"));
            async move {
                let result = catalog.store().get_file(key, &dest, digest).await;
                let _ = tokio::fs::remove_file(&dest).await;
                match result {
                    Ok(()) => Ok(digest.size),
                    Err(storage::Error::NotFound { .. }) => Ok(0), // reported by presence
                    Err(err) => Err(err.to_string()),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut checked = 0;
    let mut problems = Vec::new();
    for result in results {
        match result {
            Ok(bytes) => checked += bytes,
            Err(problem) => problems.push(problem),
        }
    }
    Ok((checked, problems))
}

/// The first few problems, and how many more there are.
pub fn first_lines(problems: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    text
}
