//! The stored records, as plain serde types: node manifests, the backup
//! manifest, the index and the lock. Field meanings are specified in
//! `docs/storage-format.md`; JSON field names are part of the format.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::names::{self, NameError};
use super::seal::{self, SealError, Sealed};
use super::{FORMAT_VERSION, NODE_MANIFEST_VERSION};
use crate::storage::Digest;

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "written by a newer kassette (format version {found}; this build reads up to {newest})"
    )]
    NewerVersion { found: u32, newest: u32 },
    #[error("not a valid record: {0}")]
    Json(#[from] serde_json::Error),
    /// A name that Cassandra would not have allowed: the record was not
    /// written by kassette from a real cluster, and is not used.
    #[error("not a valid record: {0}")]
    Name(#[from] NameError),
    #[error("not a valid record: {0} bytes, more than the {MAX_RECORD_BYTES} a record may have")]
    TooLarge(usize),
    /// Its seal does not match, or a record that must be sealed is not:
    /// it was damaged after it was written (see [`super::seal`]).
    #[error("{0}")]
    Seal(#[from] SealError),
}

impl FormatError {
    /// Whether the record was damaged after it was written, though it may
    /// still be valid JSON (its seal says so).
    pub fn is_damage(&self) -> bool {
        matches!(self, FormatError::Seal(_))
    }
}

/// The first format version whose sealed record kinds always carry a seal.
pub const SEALED_SINCE: u32 = 2;

/// The largest record kassette reads (a node manifest of a million files is
/// about 300 MB): anything larger is refused before it is parsed.
pub const MAX_RECORD_BYTES: usize = 512 << 20;

/// A record with a format version, read and written as JSON.
pub trait Record: Serialize + for<'de> Deserialize<'de> {
    /// The newest `format_version` of this record this build reads.
    const NEWEST: u32 = FORMAT_VERSION;

    /// Whether records of this kind carry a seal (from format version
    /// [`SEALED_SINCE`]): the backup manifest, the index, the lease and the
    /// start record. Node manifests are vouched for by the backup
    /// manifest's `manifest_blake3` instead.
    const SEALED: bool = false;

    fn format_version(&self) -> u32;

    /// Checks every name the record carries (see [`super::names`]); a
    /// record that fails is refused as a whole, before any name is used.
    fn check_names(&self) -> Result<(), NameError> {
        Ok(())
    }

    /// The record's bytes as stored: pretty JSON, sealed if its kind is
    /// sealed and its version has seals.
    fn to_json(&self) -> Result<Vec<u8>, FormatError> {
        let json = serde_json::to_vec_pretty(self)?;
        if Self::SEALED && self.format_version() >= SEALED_SINCE {
            Ok(seal::seal(&json)?)
        } else {
            Ok(json)
        }
    }

    /// Parses a record, refusing one from a newer format and, for sealed
    /// kinds, one whose seal does not match or that lacks the seal its
    /// version requires. A seal present is checked before anything else
    /// (also the version: a damaged version number is damage, not a newer
    /// format).
    fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(FormatError::TooLarge(bytes.len()));
        }
        let sealed = if Self::SEALED {
            seal::check(bytes)?
        } else {
            Sealed::Absent
        };
        // Check the version first, so a newer layout is reported as such
        // rather than as whatever field it no longer has.
        #[derive(Deserialize)]
        struct Versioned {
            format_version: u32,
        }
        let versioned: Versioned = serde_json::from_slice(bytes)?;
        if versioned.format_version > Self::NEWEST {
            return Err(FormatError::NewerVersion {
                found: versioned.format_version,
                newest: Self::NEWEST,
            });
        }
        if Self::SEALED && sealed == Sealed::Absent && versioned.format_version >= SEALED_SINCE {
            return Err(SealError::Missing {
                version: versioned.format_version,
            }
            .into());
        }
        let record: Self = serde_json::from_slice(bytes)?;
        record.check_names()?;
        Ok(record)
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
    /// Size, BLAKE3 and CRC32C of the content.
    #[serde(flatten)]
    pub digest: Digest,
    /// The catalog-relative key of the object holding the content, under
    /// `files/` (node manifest version 2). Absent: the content-addressed
    /// blob `blobs/<b3[0..2]>/<b3>` (every entry of version 1, and entries
    /// of version 2 that reuse such a blob). See [`super::Layout::content`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
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
    const NEWEST: u32 = NODE_MANIFEST_VERSION;

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn check_names(&self) -> Result<(), NameError> {
        names::check_backup_name(&self.backup)?;
        names::check_segment("cluster", &self.cluster, 63)?;
        names::check_segment("datacenter", &self.datacenter, 63)?;
        for file in &self.files {
            names::check_file(&file.keyspace, &file.table, &file.path)?;
            if let Some(blob) = &file.blob {
                names::check_blob_key(blob)?;
            }
        }
        Ok(())
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
    const SEALED: bool = true;

    fn format_version(&self) -> u32 {
        self.format_version
    }

    /// The backup's own names, its keyspaces, and every keyspace, table,
    /// index and view name of the backed-up schema (a restore creates and
    /// imports by those names).
    fn check_names(&self) -> Result<(), NameError> {
        use crate::cassandra::schema::{self, Object};
        names::check_backup_name(&self.name)?;
        names::check_segment("cluster", &self.cluster, 63)?;
        names::check_segment("datacenter", &self.datacenter, 63)?;
        for keyspace in &self.keyspaces {
            names::check_keyspace(keyspace)?;
        }
        for statement in schema::parse(&self.schema_cql) {
            names::check_keyspace(&statement.keyspace)?;
            match &statement.object {
                Object::Keyspace => {}
                Object::Table => names::check_table(&statement.name)?,
                Object::View { table } => {
                    names::check_table(&statement.name)?;
                    names::check_table(table)?;
                }
                Object::Index { table } => {
                    names::check_index(&statement.name)?;
                    names::check_table(table)?;
                }
                // Neither reaches a path or an object name: only CQL,
                // which quotes them as the backed-up schema does.
                Object::Type | Object::Function | Object::Aggregate => {}
            }
        }
        Ok(())
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
    /// The `run_id` of the lease the pass holds: while that lease is live,
    /// the backup is being written (added within version 1; absent in
    /// records of older writers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
}

impl Record for StartedRecord {
    const SEALED: bool = true;

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn check_names(&self) -> Result<(), NameError> {
        names::check_backup_name(&self.name)
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
    const SEALED: bool = true;

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn check_names(&self) -> Result<(), NameError> {
        self.backups
            .iter()
            .try_for_each(|entry| names::check_backup_name(&entry.name))
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
    /// When the holder last renewed (its clock; informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<Timestamp>,
    /// How often the holder renews, in milliseconds: `kassette unlock`
    /// calls a holder dead only after watching its lease unchanged for
    /// four of these. Absent in records of older writers (they renewed
    /// every third of the TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
}

impl Record for LockRecord {
    const SEALED: bool = true;

    fn format_version(&self) -> u32 {
        self.format_version
    }
}

impl LockRecord {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Whether the lease still excludes other passes at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        !self.released && !self.is_expired(now)
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
                blob: None,
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
        value["format_version"] = serde_json::json!(NODE_MANIFEST_VERSION + 1);
        let err = NodeManifest::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, FormatError::NewerVersion { .. }), "{err}");
        // The other records are still at their own newest version.
        let mut index = serde_json::to_value(Index::new(vec![])).unwrap();
        index["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
        let err = Index::from_json(&serde_json::to_vec(&index).unwrap()).unwrap_err();
        assert!(matches!(err, FormatError::NewerVersion { .. }), "{err}");
    }

    #[test]
    fn node_manifests_of_both_versions_read() {
        // Version 1: no `blob`, the content-addressed blob.
        let mut v1 = node();
        v1.format_version = 1;
        let parsed = NodeManifest::from_json(&v1.to_json().unwrap()).unwrap();
        assert_eq!(parsed.files[0].blob, None);
        // Version 2: an entry names its object under files/.
        let mut v2 = node();
        v2.format_version = NODE_MANIFEST_VERSION;
        v2.files[0].blob =
            Some("files/h/nightly/backup-01/0/shop/orders-5a1c/nb-1-big-Data.db".into());
        let json = v2.to_json().unwrap();
        assert!(String::from_utf8_lossy(&json).contains("\"blob\""));
        assert_eq!(NodeManifest::from_json(&json).unwrap(), v2);
        // A blob key outside files/, or one that climbs, is refused whole.
        for bad in [
            "blobs/af/af13",
            "files/../index.json",
            "files//x",
            "/files/x",
            "files/a\\b",
            "locks/0.json",
            "",
        ] {
            let mut crafted = v2.clone();
            crafted.files[0].blob = Some(bad.into());
            let err = NodeManifest::from_json(&crafted.to_json().unwrap()).unwrap_err();
            assert!(matches!(err, FormatError::Name(_)), "{bad:?}: {err}");
        }
    }

    /// Names a crafted manifest could carry to reach a path or an MBean.
    const CRAFTED: &[&str] = &["..", "../../etc", "/etc", "", "a\0b", "ks,type=x", "k s"];

    #[test]
    fn crafted_node_manifests_are_refused_whole() {
        let long = "x".repeat(5_000);
        let mut names: Vec<&str> = CRAFTED.to_vec();
        names.push(&long);
        for bad in names {
            for field in ["keyspace", "table", "path"] {
                // A file name is one path component: only what could move
                // a path (or is too long for one) is wrong for it.
                let moves_a_path =
                    bad.is_empty() || bad.contains(['/', '\0', '.']) || bad.len() > 255;
                if field == "path" && !moves_a_path {
                    continue;
                }
                let mut manifest = node();
                let file = &mut manifest.files[0];
                match field {
                    "keyspace" => file.keyspace = bad.into(),
                    "table" => file.table = bad.into(),
                    _ => file.path = bad.into(),
                }
                let json = serde_json::to_vec(&manifest).unwrap();
                let err = NodeManifest::from_json(&json).unwrap_err();
                assert!(
                    matches!(err, FormatError::Name(_)),
                    "{field} {bad:?}: {err}"
                );
            }
        }
        // A path that climbs out of an index directory, or an absolute one.
        for path in ["/etc/passwd", ".idx/../../x", "../nb-1-big-Data.db"] {
            let mut manifest = node();
            manifest.files[0].path = path.into();
            let json = serde_json::to_vec(&manifest).unwrap();
            assert!(NodeManifest::from_json(&json).is_err(), "{path:?} accepted");
        }
        let mut manifest = node();
        manifest.backup = "../x".into();
        let json = serde_json::to_vec(&manifest).unwrap();
        assert!(NodeManifest::from_json(&json).is_err());
    }

    fn backup(schema: &str) -> BackupManifest {
        BackupManifest {
            format_version: FORMAT_VERSION,
            name: "nightly".into(),
            cluster: "prod".into(),
            datacenter: "dc1".into(),
            kassette_version: "0.1.0".into(),
            started_at: "2026-11-25T02:00:00Z".parse().unwrap(),
            finished_at: "2026-11-25T02:10:00Z".parse().unwrap(),
            snapshot_skew_ms: 0,
            schema_cql: schema.into(),
            keyspaces: vec!["shop".into()],
            roles: None,
            nodes: vec![],
            files: 0,
            bytes: 0,
            uploaded_bytes: 0,
            uploaded_files: 0,
        }
    }

    #[test]
    fn crafted_schemas_are_refused_whole() {
        let good = "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};\n\n\
CREATE TABLE shop.\"Orders\" (id int PRIMARY KEY);\n\n\
CREATE INDEX by_id ON shop.\"Orders\" (id);\n";
        let json = backup(good).to_json().unwrap();
        assert!(BackupManifest::from_json(&json).is_ok());
        for bad in [
            "CREATE TABLE shop.\"../../etc\" (id int PRIMARY KEY);\n",
            "CREATE TABLE \"/abs\".t (id int PRIMARY KEY);\n",
            "CREATE KEYSPACE \"a,type=Tables\" WITH replication = {};\n",
            "CREATE INDEX \"../x\" ON shop.t (id);\n",
            "CREATE TABLE shop.\"t\u{0}x\" (id int PRIMARY KEY);\n",
        ] {
            let json = backup(bad).to_json().unwrap();
            let err = BackupManifest::from_json(&json).unwrap_err();
            assert!(matches!(err, FormatError::Name(_)), "{bad:?}: {err}");
        }
        let mut crafted = backup(good);
        crafted.keyspaces = vec!["../x".into()];
        let json = crafted.to_json().unwrap();
        assert!(BackupManifest::from_json(&json).is_err());
        let long_table = format!(
            "CREATE TABLE shop.{} (id int PRIMARY KEY);\n",
            "t".repeat(300)
        );
        let json = backup(&long_table).to_json().unwrap();
        assert!(BackupManifest::from_json(&json).is_err());
    }

    #[test]
    fn crafted_index_entries_are_refused() {
        let json = br#"{"format_version":1,"backups":[{"name":"../../x","started_at":"2026-11-24T02:00:00Z","finished_at":"2026-11-24T02:05:00Z","nodes":3,"files":1,"bytes":1}]}"#;
        assert!(matches!(
            Index::from_json(json).unwrap_err(),
            FormatError::Name(_)
        ));
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"{\"format_version\": -1}",
            b"{\"format_version\": 99999999999}",
            b"{\"format_version\": 1}",
            &[0xff, 0xfe, 0x00],
        ] {
            assert!(NodeManifest::from_json(bytes).is_err());
            assert!(BackupManifest::from_json(bytes).is_err());
            assert!(Index::from_json(bytes).is_err());
            assert!(LockRecord::from_json(bytes).is_err());
        }
        // Deep nesting is refused by the parser's recursion limit.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Index::from_json(deep.as_bytes()).is_err());
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

    fn lock() -> LockRecord {
        LockRecord {
            format_version: FORMAT_VERSION,
            owner: "a/1".into(),
            run_id: Uuid::nil(),
            operation: "backup".into(),
            acquired_at: "2026-11-25T02:00:00Z".parse().unwrap(),
            expires_at: "2026-11-25T02:15:00Z".parse().unwrap(),
            released: false,
            renewed_at: None,
            heartbeat_ms: Some(15_000),
        }
    }

    /// Every single-byte change of a sealed record, to every other value,
    /// is refused as a whole record (not only by the seal module): the
    /// version rules cannot be used to skip the seal.
    fn every_change_is_refused<R: Record + std::fmt::Debug>(record: &R) {
        let sealed = record.to_json().unwrap();
        assert!(R::from_json(&sealed).is_ok());
        let mut changed = sealed.clone();
        for i in 0..sealed.len() {
            for x in 1..=255u8 {
                changed[i] = sealed[i] ^ x;
                if let Ok(parsed) = R::from_json(&changed) {
                    panic!("byte {i} xor {x:#04x} accepted: {parsed:?}");
                }
            }
            changed[i] = sealed[i];
        }
    }

    #[test]
    fn every_single_byte_change_of_a_sealed_record_is_refused() {
        every_change_is_refused(&lock());
        every_change_is_refused(&Index::new(vec![IndexEntry::from(&backup("x"))]));
        every_change_is_refused(&StartedRecord {
            format_version: FORMAT_VERSION,
            name: "n".into(),
            owner: "o/1".into(),
            started_at: "2026-11-25T02:00:00Z".parse().unwrap(),
            run_id: Some(Uuid::nil()),
        });
        let mut manifest = backup("CREATE KEYSPACE shop WITH replication = {};\n");
        manifest.bytes = 42;
        every_change_is_refused(&manifest);
    }

    #[test]
    fn sealed_kinds_are_sealed_and_node_manifests_are_not() {
        let text = String::from_utf8(lock().to_json().unwrap()).unwrap();
        assert!(text.contains("\"seal\": \""), "{text}");
        let text = String::from_utf8(backup("").to_json().unwrap()).unwrap();
        assert!(text.contains("\"seal\": \""), "{text}");
        let text = String::from_utf8(node().to_json().unwrap()).unwrap();
        assert!(!text.contains("\"seal\""), "{text}");
    }

    #[test]
    fn version_1_records_are_read_without_a_seal_and_later_ones_are_not() {
        let v1 = LockRecord {
            format_version: 1,
            ..lock()
        };
        let unsealed = serde_json::to_vec_pretty(&v1).unwrap();
        assert_eq!(LockRecord::from_json(&unsealed).unwrap(), v1);
        // A version 2 record with its seal removed (or never written).
        let v2 = serde_json::to_vec_pretty(&lock()).unwrap();
        let err = LockRecord::from_json(&v2).unwrap_err();
        assert!(
            matches!(err, FormatError::Seal(SealError::Missing { version: 2 })),
            "{err}"
        );
        assert!(err.is_damage());
        // A sealed record whose version digit was damaged is damage, not a
        // newer format.
        let sealed = lock().to_json().unwrap();
        let text = String::from_utf8(sealed).unwrap();
        let damaged = text.replacen("\"format_version\": 2", "\"format_version\": 3", 1);
        let err = LockRecord::from_json(damaged.as_bytes()).unwrap_err();
        assert!(
            matches!(err, FormatError::Seal(SealError::Mismatch { .. })),
            "{err}"
        );
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
            renewed_at: None,
            heartbeat_ms: None,
        };
        assert!(!lock.is_expired("2026-11-25T02:05:00Z".parse().unwrap()));
        assert!(lock.is_expired("2026-11-25T02:10:00Z".parse().unwrap()));
        assert!(lock.is_live("2026-11-25T02:05:00Z".parse().unwrap()));
        let released = LockRecord {
            released: true,
            ..lock.clone()
        };
        assert!(!released.is_live("2026-11-25T02:05:00Z".parse().unwrap()));
        // Records of older writers (no renewal fields) still parse.
        let old = br#"{"format_version":1,"owner":"o","run_id":"00000000-0000-0000-0000-000000000000","operation":"backup","acquired_at":"2026-11-25T02:00:00Z","expires_at":"2026-11-25T02:10:00Z"}"#;
        let parsed = LockRecord::from_json(old).unwrap();
        assert_eq!(parsed.heartbeat_ms, None);
        assert!(!parsed.released);
    }
}
