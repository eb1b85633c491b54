//! Reading and writing the catalog's records through a [`Store`]: the one
//! place that applies the read and write rules of `docs/storage-format.md`
//! (backup manifest last, node manifests vouched for by their BLAKE3, the
//! index as a cache checked against the backup manifests on every read).
//! Reading never writes: only passes holding the lease write the index.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;

use super::manifest::{FormatError, Record};
use super::{BackupManifest, BackupStatus, Index, IndexEntry, Layout, NodeManifest, StartedRecord};
use crate::storage::{self, ObjectKey, PutMode, Store, digest_of};

/// Why the catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error("{key}: {source}")]
    Format {
        key: String,
        #[source]
        source: FormatError,
    },
    /// A record was damaged (from [`Catalog::index_of`]).
    #[error("{error}")]
    Damaged { error: String },
    #[error("backup {name:?} does not exist")]
    NoSuchBackup { name: String },
    #[error("backup {name:?} is incomplete (no backup manifest): it cannot be used")]
    Incomplete { name: String },
    #[error("there is no complete backup yet")]
    NoBackups,
    /// `latest` cannot be resolved: a committed backup's manifest is
    /// damaged and nothing trustworthy says it is older than the others.
    #[error(
        "cannot tell which backup is the latest: {damage}. It may be the newest; name the backup to use explicitly (`kassette list` shows them), or restore that object from a copy"
    )]
    LatestUnknown { damage: String },
    #[error(
        "node manifest {key} does not match the backup manifest (expected blake3 {expected}, got {actual})"
    )]
    ManifestMismatch {
        key: String,
        expected: String,
        actual: String,
    },
}

/// One datacenter's catalog in a store.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
    layout: Layout,
}

/// A committed backup whose backup manifest cannot be read (damaged: its
/// seal does not match, or it does not parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedBackup {
    pub name: String,
    /// What reading it said, naming the object.
    pub error: String,
}

/// The complete backups as [`Catalog::index_report`] found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexReport {
    /// Every complete backup known from a sound record: the (sealed) index
    /// or its own manifest.
    pub index: Index,
    /// Committed backups the index lacks whose manifest is damaged: their
    /// start time (their place in the order) is unknown.
    pub damaged: Vec<DamagedBackup>,
}

/// A backup name found under `backups/`, complete or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBackup {
    pub name: String,
    pub status: BackupStatus,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>, layout: Layout) -> Self {
        Self { store, layout }
    }

    /// Opens the configured store and the catalog of `cluster` in it.
    pub async fn open(
        storage: &crate::config::StorageConfig,
        cluster: &crate::config::ClusterConfig,
    ) -> Result<Self, storage::Error> {
        let store = storage::open(storage).await?;
        let layout = Layout::new(&cluster.cluster, &cluster.datacenter)?;
        Ok(Self::new(store, layout))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Records that a pass started backup `name` (overwriting the record of
    /// a killed earlier attempt with the same name).
    pub async fn mark_started(&self, record: &StartedRecord) -> Result<(), CatalogError> {
        let key = self.layout.backup_started(&record.name)?;
        let bytes = encode(record, &key)?;
        self.store
            .put_bytes(&key, bytes, PutMode::Overwrite)
            .await?;
        Ok(())
    }

    /// Writes a node manifest and returns the BLAKE3 of its exact bytes,
    /// which the backup manifest records.
    pub async fn put_node_manifest(&self, manifest: &NodeManifest) -> Result<String, CatalogError> {
        let key = self
            .layout
            .node_manifest(&manifest.backup, &manifest.host_id)?;
        let bytes = encode(manifest, &key)?;
        let blake3 = digest_of(&bytes).blake3_hex();
        self.store
            .put_bytes(&key, bytes, PutMode::Overwrite)
            .await?;
        Ok(blake3)
    }

    /// Writes the backup manifest: from now on the backup is complete.
    /// Create-if-absent, so two passes can never both commit one name; a
    /// retry that finds exactly these bytes (its first response was lost)
    /// committed.
    pub async fn commit(&self, manifest: &BackupManifest) -> Result<(), CatalogError> {
        let key = self.layout.backup_manifest(&manifest.name)?;
        let bytes = encode(manifest, &key)?;
        storage::create(self.store.as_ref(), &key, bytes).await?;
        Ok(())
    }

    /// Whether backup `name` has a backup manifest.
    pub async fn is_complete(&self, name: &str) -> Result<bool, CatalogError> {
        let key = self.layout.backup_manifest(name)?;
        Ok(self.store.head(&key).await?.is_some())
    }

    /// The backup manifest of `name`; `latest` means the newest complete
    /// backup. Names an incomplete backup as such. `latest` never silently
    /// means an older backup: when a committed backup's manifest is
    /// damaged and the index does not place it, it could be the newest, and
    /// `latest` is refused naming it ([`CatalogError::LatestUnknown`]);
    /// when the newest is damaged, reading it is refused naming it.
    pub async fn backup_manifest(&self, name: &str) -> Result<BackupManifest, CatalogError> {
        let name = if name == "latest" {
            let found = self.backups().await?;
            let report = self.index_report(&found).await?;
            if let Some(damaged) = report.damaged.first() {
                return Err(CatalogError::LatestUnknown {
                    damage: damaged.error.clone(),
                });
            }
            report
                .index
                .latest()
                .map(|e| e.name.clone())
                .ok_or(CatalogError::NoBackups)?
        } else {
            name.to_string()
        };
        self.read_backup_manifest(name).await
    }

    /// The backup manifest of exactly `name`.
    async fn read_backup_manifest(&self, name: String) -> Result<BackupManifest, CatalogError> {
        let key = self.layout.backup_manifest(&name)?;
        match self.store.get_bytes(&key).await {
            Ok(bytes) => decode(&bytes, &key),
            Err(storage::Error::NotFound { .. }) => {
                let prefix = self.layout.backup_prefix(&name);
                let mut under = self.store.list(&prefix);
                if under.try_next().await?.is_some() {
                    Err(CatalogError::Incomplete { name })
                } else {
                    Err(CatalogError::NoSuchBackup { name })
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The node manifests a backup manifest vouches for, each checked
    /// against the BLAKE3 recorded for it.
    pub async fn node_manifests(
        &self,
        backup: &BackupManifest,
    ) -> Result<Vec<NodeManifest>, CatalogError> {
        let mut manifests = Vec::with_capacity(backup.nodes.len());
        for node in &backup.nodes {
            let key = self.layout.node_manifest(&backup.name, &node.host_id)?;
            let bytes = self.store.get_bytes(&key).await?;
            let actual = digest_of(&bytes).blake3_hex();
            if actual != node.manifest_blake3 {
                return Err(CatalogError::ManifestMismatch {
                    key: key.to_string(),
                    expected: node.manifest_blake3.clone(),
                    actual,
                });
            }
            manifests.push(decode(&bytes, &key)?);
        }
        Ok(manifests)
    }

    /// The complete backups, oldest first, as the committed backup
    /// manifests say: the stored index, checked against one listing of
    /// `backups/` (entries without a backup manifest dropped, backup
    /// manifests the index lacks read and added). A missing or unreadable
    /// index is rebuilt in memory. Writes nothing.
    pub async fn index(&self) -> Result<Index, CatalogError> {
        let found = self.backups().await?;
        self.index_of(&found).await
    }

    /// As [`Catalog::index`], for a listing already made. A committed
    /// backup the index lacks whose manifest is damaged is an error naming
    /// it (see [`Catalog::index_report`] to go on without it).
    pub async fn index_of(&self, found: &[FoundBackup]) -> Result<Index, CatalogError> {
        let report = self.index_report(found).await?;
        match report.damaged.into_iter().next() {
            Some(damaged) => Err(CatalogError::Damaged {
                error: damaged.error,
            }),
            None => Ok(report.index),
        }
    }

    /// As [`Catalog::index_of`], setting aside the committed backups the
    /// index lacks whose manifest is damaged (named in the report) instead
    /// of failing.
    pub async fn index_report(&self, found: &[FoundBackup]) -> Result<IndexReport, CatalogError> {
        let complete: BTreeSet<&str> = found
            .iter()
            .filter(|b| b.status == BackupStatus::Complete)
            .map(|b| b.name.as_str())
            .collect();
        let stored = self.stored_index().await?;
        let mut entries: Vec<IndexEntry> = stored
            .into_iter()
            .filter(|e| complete.contains(e.name.as_str()))
            .collect();
        let indexed: BTreeSet<String> = entries.iter().map(|e| e.name.clone()).collect();
        let mut damaged = Vec::new();
        for name in complete {
            if !indexed.contains(name) {
                tracing::info!(
                    backup = name,
                    "the index lacks this committed backup (a pass died before updating it, or the index is damaged); reading its manifest"
                );
                match self.read_backup_manifest(name.to_string()).await {
                    Ok(manifest) => entries.push(IndexEntry::from(&manifest)),
                    Err(err @ CatalogError::Format { .. }) => damaged.push(DamagedBackup {
                        name: name.to_string(),
                        error: err.to_string(),
                    }),
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(IndexReport {
            index: Index::new(entries),
            damaged,
        })
    }

    /// The entries of `index.json` as stored; none when it is missing or
    /// unreadable (it is only a cache).
    async fn stored_index(&self) -> Result<Vec<IndexEntry>, CatalogError> {
        let key = self.layout.index()?;
        match self.store.get_bytes(&key).await {
            Ok(bytes) => match decode::<Index>(&bytes, &key) {
                Ok(index) => Ok(index.backups),
                Err(err) => {
                    tracing::warn!(error = %err, "the index is damaged or unreadable; ignoring it (it is a cache) and using the backup manifests");
                    Ok(Vec::new())
                }
            },
            Err(storage::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(err) => Err(err.into()),
        }
    }

    /// Adds one committed backup to the index and writes it (under the
    /// lease). A damaged or stale stored index is replaced by one rebuilt
    /// from the backup manifests; a backup whose manifest is damaged is
    /// left out (with a warning naming it): readers then find it missing
    /// from the index, read its manifest and report it.
    pub async fn add_to_index(&self, manifest: &BackupManifest) -> Result<Index, CatalogError> {
        let found = self.backups().await?;
        let report = self.index_report(&found).await?;
        for damaged in &report.damaged {
            tracing::warn!(backup = %damaged.name, error = %damaged.error, "a committed backup's manifest is damaged; the index is written without it");
        }
        let mut entries = report.index.backups;
        entries.retain(|e| e.name != manifest.name);
        entries.push(IndexEntry::from(manifest));
        let index = Index::new(entries);
        self.put_index(&index).await?;
        Ok(index)
    }

    /// The start record of backup `name`, if it has one.
    pub async fn started(&self, name: &str) -> Result<Option<StartedRecord>, CatalogError> {
        let key = self.layout.backup_started(name)?;
        match self.store.get_bytes(&key).await {
            Ok(bytes) => Ok(Some(decode(&bytes, &key)?)),
            Err(storage::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    pub async fn put_index(&self, index: &Index) -> Result<(), CatalogError> {
        let key = self.layout.index()?;
        let bytes = encode(index, &key)?;
        self.store
            .put_bytes(&key, bytes, PutMode::Overwrite)
            .await?;
        Ok(())
    }

    /// Every backup name present under `backups/`, complete or not, by one
    /// listing of the prefix.
    pub async fn backups(&self) -> Result<Vec<FoundBackup>, CatalogError> {
        Ok(self
            .backup_listing()
            .await?
            .into_iter()
            .map(|(name, (status, _))| FoundBackup { name, status })
            .collect())
    }

    /// Every backup under `backups/` with its status and the objects under
    /// its prefix, by one listing. Complete means: its backup manifest is
    /// among them.
    pub async fn backup_listing(
        &self,
    ) -> Result<BTreeMap<String, (BackupStatus, Vec<ObjectKey>)>, CatalogError> {
        let prefix = self.layout.backups_prefix();
        let mut backups: BTreeMap<String, (BackupStatus, Vec<ObjectKey>)> = BTreeMap::new();
        let mut listing = self.store.list(&prefix);
        while let Some(object) = listing.try_next().await? {
            let Some(rest) = object.key.as_str().strip_prefix(&prefix) else {
                continue;
            };
            let Some((name, tail)) = rest.split_once('/') else {
                continue;
            };
            let entry = backups
                .entry(name.to_string())
                .or_insert_with(|| (BackupStatus::Incomplete, Vec::new()));
            if tail == "backup.json" {
                entry.0 = BackupStatus::Complete;
            }
            entry.1.push(object.key);
        }
        Ok(backups)
    }

    /// Every object under backup `name`'s prefix.
    pub async fn backup_objects(&self, name: &str) -> Result<Vec<ObjectKey>, CatalogError> {
        Ok(self
            .store
            .list(&self.layout.backup_prefix(name))
            .map_ok(|o| o.key)
            .try_collect()
            .await?)
    }
}

fn encode<R: Record>(record: &R, key: &ObjectKey) -> Result<Bytes, CatalogError> {
    record
        .to_json()
        .map(Bytes::from)
        .map_err(|source| CatalogError::Format {
            key: key.to_string(),
            source,
        })
}

fn decode<R: Record>(bytes: &[u8], key: &ObjectKey) -> Result<R, CatalogError> {
    R::from_json(bytes).map_err(|source| CatalogError::Format {
        key: key.to_string(),
        source,
    })
}

impl From<storage::InvalidKey> for CatalogError {
    fn from(err: storage::InvalidKey) -> Self {
        CatalogError::Storage(err.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::FORMAT_VERSION;
    use crate::storage::memory::MemoryStore;

    fn catalog() -> Catalog {
        Catalog::new(
            Arc::new(MemoryStore::new()),
            Layout::new("prod", "dc1").unwrap(),
        )
    }

    fn manifest(name: &str, started: &str) -> BackupManifest {
        BackupManifest {
            format_version: FORMAT_VERSION,
            name: name.into(),
            cluster: "prod".into(),
            datacenter: "dc1".into(),
            kassette_version: "0.1.0".into(),
            started_at: started.parse().unwrap(),
            finished_at: started.parse().unwrap(),
            snapshot_skew_ms: 0,
            schema_cql: "CREATE KEYSPACE shop WITH replication = {};\n".into(),
            roles: None,
            keyspaces: vec!["shop".into()],
            nodes: vec![],
            files: 1,
            bytes: 1,
            uploaded_bytes: 0,
            uploaded_files: 0,
        }
    }

    /// Replaces the first `from` in the object by `to` (same length: the
    /// JSON stays valid).
    async fn damage(catalog: &Catalog, key: &ObjectKey, from: &str, to: &str) {
        let text =
            String::from_utf8(catalog.store().get_bytes(key).await.unwrap().to_vec()).unwrap();
        let damaged = text.replacen(from, to, 1);
        assert_ne!(damaged, text, "{from:?} not in {key}");
        serde_json::from_str::<serde_json::Value>(&damaged).expect("still valid JSON");
        catalog
            .store()
            .put_bytes(key, Bytes::from(damaged), PutMode::Overwrite)
            .await
            .unwrap();
    }

    async fn two_backups() -> Catalog {
        let catalog = catalog();
        for m in [
            manifest("old", "2026-11-24T02:00:00Z"),
            manifest("new", "2026-11-25T02:00:00Z"),
        ] {
            catalog.commit(&m).await.unwrap();
            catalog.add_to_index(&m).await.unwrap();
        }
        catalog
    }

    /// A damaged index that would make the older backup the latest (its
    /// year flipped from 2026 to 2027) is ignored: `latest` follows the
    /// backup manifests.
    #[tokio::test]
    async fn a_damaged_index_never_changes_what_latest_means() {
        let catalog = two_backups().await;
        assert_eq!(catalog.backup_manifest("latest").await.unwrap().name, "new");
        let index = catalog.layout().index().unwrap();
        damage(&catalog, &index, "2026-11-24", "2027-11-24").await;
        assert_eq!(catalog.backup_manifest("latest").await.unwrap().name, "new");
        assert_eq!(catalog.index().await.unwrap().backups.len(), 2);
    }

    /// A committed backup whose manifest is damaged and that the index does
    /// not place could be the newest: `latest` is refused naming it, never
    /// resolved to an older backup. `list`'s report names it; a backup by
    /// name other than it still reads.
    #[tokio::test]
    async fn latest_is_refused_when_a_damaged_manifest_may_be_the_newest() {
        let catalog = two_backups().await;
        let key = catalog.layout().backup_manifest("new").unwrap();
        // Damaged, and the index gone too (a cache: it may be missing).
        damage(&catalog, &key, "\"bytes\": 1", "\"bytes\": 3").await;
        catalog
            .store()
            .delete_many(&[catalog.layout().index().unwrap()])
            .await
            .unwrap();
        let err = catalog.backup_manifest("latest").await.unwrap_err();
        assert!(matches!(err, CatalogError::LatestUnknown { .. }), "{err}");
        assert!(err.to_string().contains(key.as_str()), "{err}");
        let report = catalog
            .index_report(&catalog.backups().await.unwrap())
            .await
            .unwrap();
        assert_eq!(report.damaged.len(), 1);
        assert!(report.damaged[0].error.contains(key.as_str()));
        assert_eq!(report.index.backups.len(), 1);
        assert_eq!(catalog.backup_manifest("old").await.unwrap().name, "old");
        let err = catalog.backup_manifest("new").await.unwrap_err();
        assert!(err.to_string().contains(key.as_str()), "{err}");
        // With a sound index that places it as the newest, `latest` is it,
        // and reading it is refused naming it.
        let catalog = two_backups().await;
        damage(&catalog, &key, "\"bytes\": 1", "\"bytes\": 3").await;
        let err = catalog.backup_manifest("latest").await.unwrap_err();
        assert!(matches!(err, CatalogError::Format { .. }), "{err}");
        assert!(err.to_string().contains(key.as_str()), "{err}");
    }

    /// A letter of the backed-up schema changed: a restore would create
    /// another schema. Refused naming the object.
    #[tokio::test]
    async fn a_schema_letter_changed_in_the_backup_manifest_is_refused() {
        let catalog = two_backups().await;
        let key = catalog.layout().backup_manifest("old").unwrap();
        damage(&catalog, &key, "KEYSPACE shop", "KEYSPACE shoq").await;
        let err = catalog.backup_manifest("old").await.unwrap_err();
        assert!(
            matches!(err, CatalogError::Format { ref source, .. } if source.is_damage()),
            "{err}"
        );
        assert!(err.to_string().contains(key.as_str()), "{err}");
    }

    /// Records of format version 1 (no seal) are still read.
    #[tokio::test]
    async fn version_1_records_are_still_read() {
        let catalog = catalog();
        let mut m = manifest("v1", "2026-11-24T02:00:00Z");
        m.format_version = 1;
        let key = catalog.layout().backup_manifest("v1").unwrap();
        let json = serde_json::to_vec_pretty(&m).unwrap();
        catalog
            .store()
            .put_bytes(&key, Bytes::from(json), PutMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(catalog.backup_manifest("latest").await.unwrap(), m);
    }
}
