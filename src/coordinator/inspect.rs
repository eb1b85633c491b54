//! Reading the catalog: `kassette list` (every backup with its status:
//! one listing of `backups/`, the index, and the start record of each
//! incomplete backup), `kassette status NAME` and `kassette verify NAME`
//! (every referenced blob present with its size; `--deep` downloads each
//! and checks its BLAKE3). Nothing here writes to the store.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use serde::Serialize;

use super::PassError;
use super::lease;
use crate::catalog::manifest::Record;
use crate::catalog::{BackupManifest, BackupStatus, Catalog, Index, LockRecord, NodeManifest};
use crate::storage::{self, Digest, ObjectKey};

/// A backup's state as `list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListedStatus {
    /// Its backup manifest exists: restorable.
    Complete,
    /// No backup manifest and no live pass writing it: a killed pass's
    /// leftover (the next purge removes it; a re-run with its name reuses
    /// what was uploaded).
    Incomplete,
    /// No backup manifest yet, and the pass that started it holds the
    /// lease now.
    BeingWritten,
    /// Its backup manifest exists but is damaged (its seal does not match,
    /// or it does not parse): not restorable until the object is repaired.
    Damaged,
}

impl ListedStatus {
    pub fn label(self) -> &'static str {
        match self {
            ListedStatus::Complete => "complete",
            ListedStatus::Incomplete => "incomplete",
            ListedStatus::BeingWritten => "being written",
            ListedStatus::Damaged => "DAMAGED",
        }
    }
}

/// One line of `kassette list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedBackup {
    pub name: String,
    pub status: ListedStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The pass that started an incomplete backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What is wrong with a damaged backup, naming the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
}

/// Every backup under `backups/`, oldest first, with its status. A
/// committed backup whose manifest is damaged is listed as such (its start
/// time unknown: first); a damaged lease is reported (a warning naming it)
/// and no backup is then shown as being written.
pub async fn list(catalog: &Catalog) -> Result<Vec<ListedBackup>, PassError> {
    let found = catalog.backups().await?;
    let report = catalog.index_report(&found).await?;
    let index = report.index;
    let holder = match lease::current_holder(catalog.store(), catalog.layout()).await {
        Ok(holder) => holder.filter(|h| h.is_live(Timestamp::now())),
        Err(err @ lease::LeaseError::Damaged { .. }) => {
            tracing::warn!(error = %err, "the current lease is damaged");
            None
        }
        Err(err) => return Err(err.into()),
    };
    let mut listed: Vec<ListedBackup> = index
        .backups
        .iter()
        .map(|e| ListedBackup {
            name: e.name.clone(),
            status: ListedStatus::Complete,
            started_at: Some(e.started_at),
            finished_at: Some(e.finished_at),
            nodes: Some(e.nodes),
            files: Some(e.files),
            bytes: Some(e.bytes),
            owner: None,
            damage: None,
        })
        .collect();
    for damaged in report.damaged {
        tracing::warn!(backup = %damaged.name, error = %damaged.error, "a committed backup's manifest is damaged");
        listed.push(ListedBackup {
            name: damaged.name,
            status: ListedStatus::Damaged,
            started_at: None,
            finished_at: None,
            nodes: None,
            files: None,
            bytes: None,
            owner: None,
            damage: Some(damaged.error),
        });
    }
    for backup in found
        .iter()
        .filter(|b| b.status == BackupStatus::Incomplete)
    {
        let started = match catalog.started(&backup.name).await {
            Ok(started) => started,
            Err(err) => {
                tracing::warn!(backup = %backup.name, error = %err, "unreadable start record");
                None
            }
        };
        let being_written = matches!(
            (&holder, started.as_ref().and_then(|s| s.run_id)),
            (Some(h), Some(run)) if h.run_id == run
        );
        listed.push(ListedBackup {
            name: backup.name.clone(),
            status: if being_written {
                ListedStatus::BeingWritten
            } else {
                ListedStatus::Incomplete
            },
            started_at: started.as_ref().map(|s| s.started_at),
            finished_at: None,
            nodes: None,
            files: None,
            bytes: None,
            owner: started.map(|s| s.owner),
            damage: None,
        });
    }
    listed.sort_by(|a, b| (a.started_at, &a.name).cmp(&(b.started_at, &b.name)));
    Ok(listed)
}

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

/// The objects `manifests` reference (content-addressed blobs and files
/// under `files/`), keyed by object key.
fn referenced_blobs(
    catalog: &Catalog,
    manifests: &[NodeManifest],
) -> Result<BTreeMap<ObjectKey, Digest>, PassError> {
    let mut blobs = BTreeMap::new();
    for manifest in manifests {
        for file in &manifest.files {
            let key = catalog
                .layout()
                .content(file)
                .map_err(storage::Error::from)?;
            blobs.insert(key, file.digest);
        }
    }
    Ok(blobs)
}

/// The keys of every object `manifests` reference.
pub fn referenced_keys(
    catalog: &Catalog,
    manifests: &[NodeManifest],
) -> Result<HashSet<ObjectKey>, PassError> {
    Ok(referenced_blobs(catalog, manifests)?.into_keys().collect())
}

/// Below this many content-addressed blobs to check, each gets a `head`;
/// from it on, one listing of `blobs/` is fewer requests.
const LIST_BLOBS_FROM: usize = 64;

/// Sizes of the stored objects among `blobs`: one listing per listing
/// group (`files/<host-id>/<backup>/<pass>/` — one pass's files of one
/// node, nothing of other nodes or passes), and for content-addressed
/// blobs a `head` each, or one listing of `blobs/` when there are at least
/// `list_blobs_from` of them.
async fn stored_sizes(
    catalog: &Catalog,
    blobs: &BTreeMap<ObjectKey, Digest>,
    list_blobs_from: usize,
) -> Result<HashMap<ObjectKey, u64>, PassError> {
    let layout = catalog.layout();
    let mut groups: BTreeMap<String, Vec<&ObjectKey>> = BTreeMap::new();
    for key in blobs.keys() {
        let group = layout
            .relative(key.as_str())
            .and_then(crate::catalog::Layout::listing_group)
            .unwrap_or_default();
        groups.entry(group).or_default().push(key);
    }
    let mut stored = HashMap::new();
    let mut heads = Vec::new();
    for (group, keys) in groups {
        if group.is_empty() || (group == "blobs/" && keys.len() < list_blobs_from) {
            heads.extend(keys);
            continue;
        }
        let prefix = format!("{}{group}", layout.root_prefix());
        let listed: Vec<(ObjectKey, u64)> = catalog
            .store()
            .list(&prefix)
            .map_ok(|o| (o.key, o.size))
            .try_collect()
            .await?;
        stored.extend(listed);
    }
    let found: Vec<Option<(ObjectKey, u64)>> = futures::stream::iter(heads)
        .map(|key| async move {
            let meta = catalog.store().head(key).await?;
            Ok::<_, storage::Error>(meta.map(|m| (key.clone(), m.size)))
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    stored.extend(found.into_iter().flatten());
    Ok(stored)
}

/// Problems with the presence of `blobs`: missing, or of the wrong size.
async fn presence_problems(
    catalog: &Catalog,
    blobs: &BTreeMap<ObjectKey, Digest>,
    list_blobs_from: usize,
) -> Result<Vec<String>, PassError> {
    let stored = stored_sizes(catalog, blobs, list_blobs_from).await?;
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

/// Fails unless every object `manifests` reference, except the `trusted`
/// ones (referenced by the latest complete backup: a complete backup's
/// objects are never deleted), is stored with its size: checked before a
/// commit, so a backup whose agents wrote elsewhere (a different bucket or
/// prefix) is never called complete. Costs one listing per node for the
/// files this pass sent, and a `head` per object taken from a killed
/// pass — nothing that grows with the catalog.
pub async fn check_presence(
    catalog: &Catalog,
    manifests: &[NodeManifest],
    trusted: &HashSet<ObjectKey>,
) -> Result<(), PassError> {
    let mut blobs = referenced_blobs(catalog, manifests)?;
    blobs.retain(|key, _| !trusted.contains(key));
    let problems = presence_problems(catalog, &blobs, usize::MAX).await?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(PassError::Damaged(format!(
        "{} of {} objects are not in the store after the upload (do the agents use the same storage settings?): {}",
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
    let problems = presence_problems(catalog, &blobs, LIST_BLOBS_FROM).await?;
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
        .extend(presence_problems(catalog, &blobs, LIST_BLOBS_FROM).await?);
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
                "{index_key}: damaged or unreadable ({e}); readers ignore it (it is a cache of the backup manifests) and the next backup or purge rewrites it"
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
                        "{key}: damaged or unreadable lease ({e}); every pass refuses to start while it is the current lease: `kassette unlock` releases it if no holder rewrites it"
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
