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
    #[error("backup {name:?} does not exist")]
    NoSuchBackup { name: String },
    #[error("backup {name:?} is incomplete (no backup manifest): it cannot be used")]
    Incomplete { name: String },
    #[error("there is no complete backup yet")]
    NoBackups,
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
    /// backup. Names an incomplete backup as such.
    pub async fn backup_manifest(&self, name: &str) -> Result<BackupManifest, CatalogError> {
        let name = if name == "latest" {
            self.index()
                .await?
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

    /// As [`Catalog::index`], for a listing already made.
    pub async fn index_of(&self, found: &[FoundBackup]) -> Result<Index, CatalogError> {
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
        for name in complete {
            if !indexed.contains(name) {
                tracing::info!(
                    backup = name,
                    "the index lacks this committed backup (a pass died before updating it); reading its manifest"
                );
                let manifest = self.read_backup_manifest(name.to_string()).await?;
                entries.push(IndexEntry::from(&manifest));
            }
        }
        Ok(Index::new(entries))
    }

    /// The entries of `index.json` as stored; none when it is missing or
    /// unreadable (it is only a cache).
    async fn stored_index(&self) -> Result<Vec<IndexEntry>, CatalogError> {
        let key = self.layout.index()?;
        match self.store.get_bytes(&key).await {
            Ok(bytes) => match decode::<Index>(&bytes, &key) {
                Ok(index) => Ok(index.backups),
                Err(err) => {
                    tracing::warn!(error = %err, "the index is unreadable; using the backup manifests");
                    Ok(Vec::new())
                }
            },
            Err(storage::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(err) => Err(err.into()),
        }
    }

    /// Adds one committed backup to the index and writes it (under the
    /// lease).
    pub async fn add_to_index(&self, manifest: &BackupManifest) -> Result<Index, CatalogError> {
        let mut entries = self.index().await?.backups;
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
