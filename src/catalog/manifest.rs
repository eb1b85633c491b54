//! The stored records, as plain serde types: node manifests, the backup
//! manifest, the index and the lock. Field meanings are specified in
//! `docs/storage-format.md`; JSON field names are part of the format.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::FORMAT_VERSION;
use crate::storage::Digest;

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "written by a newer kassette (format version {found}; this build reads up to {FORMAT_VERSION})"
    )]
    NewerVersion { found: u32 },
    #[error("not a valid record: {0}")]
    Json(#[from] serde_json::Error),
}

/// A record with a format version, read and written as JSON.
pub trait Record: Serialize + for<'de> Deserialize<'de> {
    fn format_version(&self) -> u32;

    fn to_json(&self) -> Result<Vec<u8>, FormatError> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    /// Parses a record, refusing one from a newer format.
    fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        // Check the version first, so a newer layout is reported as such
        // rather than as whatever field it no longer has.
        #[derive(Deserialize)]
        struct Versioned {
            format_version: u32,
        }
        let versioned: Versioned = serde_json::from_slice(bytes)?;
        if versioned.format_version > FORMAT_VERSION {
            return Err(FormatError::NewerVersion {
                found: versioned.format_version,
            });
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// One file of a node's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub keyspace: String,
    pub table: String,
    /// The table's id, as in its directory name `<table>-<id>`.
    pub table_id: String,
    /// Path inside the table's snapshot directory, e.g. `nb-3-big-Data.db`,
    /// or `.idx_by_email/nb-1-big-Data.db` for a secondary index.
    pub path: String,
    /// Which of the node's data directories (JBOD) held it.
    pub data_dir: u32,
    /// Size, BLAKE3 (the blob's name) and CRC32C of the content.
    #[serde(flatten)]
    pub digest: Digest,
}

/// Everything one node contributed to a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeManifest {
    pub format_version: u32,
    pub backup: String,
    pub cluster: String,
    pub datacenter: String,
    pub rack: String,
    pub host_id: Uuid,
    pub address: String,
    /// The node's tokens, as Cassandra prints them.
    pub tokens: Vec<String>,
    pub cassandra_version: String,
    pub snapshot_tag: String,
    pub snapshot_at: Timestamp,
    pub data_dirs: Vec<String>,
    pub files: Vec<FileEntry>,
}

impl Record for NodeManifest {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

impl NodeManifest {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.digest.size).sum()
    }
}

/// The backup manifest's line about one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub host_id: Uuid,
    pub address: String,
    pub rack: String,
    pub snapshot_at: Timestamp,
    pub files: u64,
    pub bytes: u64,
    /// BLAKE3 of the node manifest's bytes: the backup manifest vouches for
    /// exactly that node manifest.
    pub manifest_blake3: String,
    /// Files and bytes this node sent in this backup (the rest were
    /// already stored).
    #[serde(default)]
    pub uploaded_files: u64,
    #[serde(default)]
    pub uploaded_bytes: u64,
    /// Data bytes the agent read from disk to hash; 0 for a node whose
    /// files were all known to its digest cache.
    #[serde(default)]
    pub read_bytes: u64,
}

/// The object whose presence makes a backup complete. Written last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format_version: u32,
    pub name: String,
    pub cluster: String,
    pub datacenter: String,
    pub kassette_version: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// Latest minus earliest node snapshot time, in milliseconds.
    pub snapshot_skew_ms: u64,
    /// `DESCRIBE SCHEMA` output at backup time.
    pub schema_cql: String,
    /// Names of the roles in `system_auth.roles` at backup time (names
    /// only; roles are not restored, the names tell an operator what to
    /// recreate). Absent in backups written before it was recorded, or
    /// when the coordinator could not read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    pub keyspaces: Vec<String>,
    pub nodes: Vec<NodeSummary>,
    pub files: u64,
    pub bytes: u64,
    /// Bytes this backup uploaded (the rest was already stored).
    pub uploaded_bytes: u64,
    #[serde(default)]
    pub uploaded_files: u64,
}

impl Record for BackupManifest {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

/// `backups/<name>/started.json`: which pass started a backup, and when.
/// Informational; only the backup manifest makes a backup complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedRecord {
    pub format_version: u32,
    pub name: String,
    pub owner: String,
    pub started_at: Timestamp,
}

impl Record for StartedRecord {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

/// Whether a backup can be restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupStatus {
    /// Its backup manifest exists.
    Complete,
    /// Objects exist under its prefix but no backup manifest: a pass died
    /// or is still running. Never restorable.
    Incomplete,
}

/// One complete backup, as `kassette list` shows it without reading its
/// manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub name: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub nodes: u32,
    pub files: u64,
    pub bytes: u64,
}

impl From<&BackupManifest> for IndexEntry {
    fn from(m: &BackupManifest) -> Self {
        Self {
            name: m.name.clone(),
            started_at: m.started_at,
            finished_at: m.finished_at,
            nodes: m.nodes.len() as u32,
            files: m.files,
            bytes: m.bytes,
        }
    }
}

/// Summary of every complete backup of a datacenter, oldest first. A
/// cache: rewritten under the lock after each commit and purge, and
/// rebuilt from the backup manifests when missing or damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub format_version: u32,
    pub backups: Vec<IndexEntry>,
}

impl Record for Index {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

impl Index {
    pub fn new(mut backups: Vec<IndexEntry>) -> Self {
        backups.sort_by(|a, b| (a.started_at, &a.name).cmp(&(b.started_at, &b.name)));
        Self {
            format_version: FORMAT_VERSION,
            backups,
        }
    }

    /// The newest complete backup (what `latest` means).
    pub fn latest(&self) -> Option<&IndexEntry> {
        self.backups.last()
    }
}

/// The datacenter lease: who holds it and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub format_version: u32,
    /// Human-readable holder: pod or host name and process id.
    pub owner: String,
    /// Unique per pass, so a holder recognises its own lease.
    pub run_id: Uuid,
    /// `backup` or `purge`.
    pub operation: String,
    pub acquired_at: Timestamp,
    /// After this instant the lease is stale and may be taken over.
    pub expires_at: Timestamp,
    /// Set when the holder gave the lease up (rather than dying with it).
    #[serde(default)]
    pub released: bool,
}

impl Record for LockRecord {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

impl LockRecord {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::digest_of;

    fn node() -> NodeManifest {
        NodeManifest {
            format_version: FORMAT_VERSION,
            backup: "nightly".into(),
            cluster: "prod".into(),
            datacenter: "dc1".into(),
            rack: "rack1".into(),
            host_id: Uuid::nil(),
            address: "10.0.0.1".into(),
            tokens: vec!["-9223372036854775808".into()],
            cassandra_version: "5.0.9".into(),
            snapshot_tag: "kassette-nightly".into(),
            snapshot_at: "2026-11-25T02:00:00Z".parse().unwrap(),
            data_dirs: vec!["/var/lib/cassandra/data".into()],
            files: vec![FileEntry {
                keyspace: "shop".into(),
                table: "orders".into(),
                table_id: "5a1c395e0b1d11eeb7a6f9e9b4d5c1a2".into(),
                path: "nb-1-big-Data.db".into(),
                data_dir: 0,
                digest: digest_of(b"sstable"),
            }],
        }
    }

    #[test]
    fn records_round_trip_as_json() {
        let manifest = node();
        let json = manifest.to_json().unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        // The digest is flattened into the file entry.
        assert!(text.contains("\"blake3\""), "{text}");
        assert!(text.contains("\"size\": 7"), "{text}");
        assert_eq!(NodeManifest::from_json(&json).unwrap(), manifest);
        assert_eq!(manifest.bytes(), 7);
    }

    #[test]
    fn newer_formats_are_refused_by_name() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&node().to_json().unwrap()).unwrap();
        value["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
        let err = NodeManifest::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, FormatError::NewerVersion { .. }), "{err}");
    }

    #[test]
    fn index_orders_backups_and_knows_the_latest() {
        let entry = |name: &str, at: &str| IndexEntry {
            name: name.into(),
            started_at: at.parse().unwrap(),
            finished_at: at.parse().unwrap(),
            nodes: 3,
            files: 1,
            bytes: 1,
        };
        let index = Index::new(vec![
            entry("b", "2026-11-25T02:00:00Z"),
            entry("a", "2026-11-24T02:00:00Z"),
        ]);
        assert_eq!(index.latest().unwrap().name, "b");
        assert_eq!(index.backups[0].name, "a");
    }

    #[test]
    fn leases_expire() {
        let lock = LockRecord {
            format_version: FORMAT_VERSION,
            owner: "kassette-backup-x/1".into(),
            run_id: Uuid::nil(),
            operation: "backup".into(),
            acquired_at: "2026-11-25T02:00:00Z".parse().unwrap(),
            expires_at: "2026-11-25T02:10:00Z".parse().unwrap(),
            released: false,
        };
        assert!(!lock.is_expired("2026-11-25T02:05:00Z".parse().unwrap()));
        assert!(lock.is_expired("2026-11-25T02:10:00Z".parse().unwrap()));
    }
}
