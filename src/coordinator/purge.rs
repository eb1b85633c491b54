//! Retention and garbage collection: a plan computed first, then carried
//! out under the datacenter lease.
//!
//! [`gather`] reads the catalog (nothing is written); [`plan`] is a pure
//! function of what was read — which backups retention expires, which
//! incomplete backups are leftovers, which objects go, which blobs no kept
//! backup references, which unfinished uploads are stale — printed as is by
//! `purge --dry-run`, which takes no lease. [`carry_out`] deletes in the
//! order of `docs/storage-format.md` ("Garbage collection"): backup
//! manifests of the removed backups first (they stop being complete), then
//! the rest of their objects, then the index, then the blobs, then the
//! stale uploads — re-checking the lease before every batch.
//!
//! The lease is what makes collection safe: a backup pass holds it from
//! before its first upload until after its commit, so while purge holds it
//! no pass can be about to reference a blob purge is deleting — no time
//! grace period is involved.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use futures::TryStreamExt;
use jiff::Timestamp;

use super::PassError;
use super::lease::Lease;
use crate::catalog::{BackupStatus, Catalog, FoundBackup, Index, IndexEntry};
use crate::config::{PurgeConfig, Retention};
use crate::storage::{self, ObjectKey, PendingUpload};

/// Keys per delete request (the S3 maximum), and per lease check.
const DELETE_BATCH: usize = 1000;

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
    /// Unfinished uploads of killed passes aborted.
    pub stale_uploads: usize,
}

/// The catalog as a purge reads it: the input of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogState {
    /// Every backup under `backups/`, with the objects under its prefix.
    pub backups: BTreeMap<String, (BackupStatus, Vec<ObjectKey>)>,
    /// The complete backups (checked against their manifests).
    pub index: Index,
    /// For each complete backup, the objects its node manifests reference
    /// (content-addressed blobs and files under `files/`).
    pub references: BTreeMap<String, BTreeSet<ObjectKey>>,
    /// Every stored content object — under `blobs/` and under `files/` —
    /// with its size.
    pub blobs: Vec<(ObjectKey, u64)>,
    /// Unfinished uploads under the catalog older than the lease TTL.
    pub stale_uploads: Vec<PendingUpload>,
}

/// What a purge deletes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgePlan {
    /// Complete backups retention removes, oldest first.
    pub expired: Vec<String>,
    /// Incomplete backups: leftovers of killed passes.
    pub incomplete: Vec<String>,
    /// The complete backups that stay.
    pub kept: Vec<String>,
    /// Backup manifests of the expired backups: deleted first.
    pub manifests: Vec<ObjectKey>,
    /// Every other object of the removed backups.
    pub backup_objects: Vec<ObjectKey>,
    /// The index afterwards.
    pub index: Index,
    /// Blobs no kept backup references, with their sizes.
    pub blobs: Vec<(ObjectKey, u64)>,
    pub stale_uploads: Vec<PendingUpload>,
}

impl PurgePlan {
    pub fn report(&self) -> PurgeReport {
        PurgeReport {
            expired: self.expired.clone(),
            incomplete: self.incomplete.clone(),
            blobs: self.blobs.len() as u64,
            blob_bytes: self.blobs.iter().map(|(_, size)| size).sum(),
            kept: self.kept.len(),
            stale_uploads: self.stale_uploads.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty()
            && self.backup_objects.is_empty()
            && self.blobs.is_empty()
            && self.stale_uploads.is_empty()
    }
}

impl fmt::Display for PurgePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        let names = |names: &[String]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        writeln!(f, "expired by retention: {}", names(&self.expired))?;
        writeln!(f, "incomplete (killed passes): {}", names(&self.incomplete))?;
        writeln!(f, "kept: {}", names(&self.kept))?;
        writeln!(
            f,
            "objects of removed backups: {} ({} backup manifests first)",
            self.manifests.len() + self.backup_objects.len(),
            self.manifests.len()
        )?;
        let bytes: u64 = self.blobs.iter().map(|(_, size)| size).sum();
        writeln!(
            f,
            "unreferenced blobs: {} ({})",
            self.blobs.len(),
            bytesize::ByteSize(bytes)
        )?;
        for (key, size) in self.blobs.iter().take(SHOWN) {
            writeln!(f, "  {key} ({size} bytes)")?;
        }
        if self.blobs.len() > SHOWN {
            writeln!(f, "  … and {} more", self.blobs.len() - SHOWN)?;
        }
        write!(f, "stale unfinished uploads: {}", self.stale_uploads.len())?;
        for upload in self.stale_uploads.iter().take(SHOWN) {
            write!(f, "\n  {upload}")?;
        }
        Ok(())
    }
}

/// Reads what a purge decides on; writes nothing. Unfinished uploads
/// count as stale once older than `upload_age` (the lease TTL: no pass of
/// this catalog can still be writing them).
pub async fn gather(catalog: &Catalog, upload_age: Duration) -> Result<CatalogState, PassError> {
    let backups = catalog.backup_listing().await?;
    let found: Vec<FoundBackup> = backups
        .iter()
        .map(|(name, (status, _))| FoundBackup {
            name: name.clone(),
            status: *status,
        })
        .collect();
    let index = catalog.index_of(&found).await?;
    let mut references = BTreeMap::new();
    for entry in &index.backups {
        references.insert(
            entry.name.clone(),
            referenced_by(catalog, &entry.name).await?,
        );
    }
    let mut blobs: Vec<(ObjectKey, u64)> = Vec::new();
    for prefix in [
        catalog.layout().blobs_prefix(),
        catalog.layout().files_prefix(),
    ] {
        let mut listing = catalog.store().list(&prefix);
        while let Some(object) = listing.try_next().await? {
            blobs.push((object.key, object.size));
        }
    }
    let stale_uploads = catalog
        .store()
        .stale_uploads(&catalog.layout().root_prefix(), upload_age)
        .await?;
    Ok(CatalogState {
        backups,
        index,
        references,
        blobs,
        stale_uploads,
    })
}

/// The purge of `state` under `retention` at `now`. Pure: the one place
/// that decides what is deleted. A blob referenced by any kept backup is
/// never in the plan.
pub fn plan(state: &CatalogState, retention: &Retention, now: Timestamp) -> PurgePlan {
    let expired = expired(&state.index, retention, now);
    let incomplete: Vec<String> = state
        .backups
        .iter()
        .filter(|(_, (status, _))| *status == BackupStatus::Incomplete)
        .map(|(name, _)| name.clone())
        .collect();
    let doomed: BTreeSet<&str> = expired
        .iter()
        .chain(&incomplete)
        .map(String::as_str)
        .collect();
    let survivors: Vec<IndexEntry> = state
        .index
        .backups
        .iter()
        .filter(|e| !doomed.contains(e.name.as_str()))
        .cloned()
        .collect();
    let referenced: BTreeSet<&ObjectKey> = survivors
        .iter()
        .filter_map(|e| state.references.get(&e.name))
        .flatten()
        .collect();
    let mut manifests = Vec::new();
    let mut backup_objects = Vec::new();
    for name in &doomed {
        if let Some((_, objects)) = state.backups.get(*name) {
            for key in objects {
                if key.as_str().ends_with("/backup.json") {
                    manifests.push(key.clone());
                } else {
                    backup_objects.push(key.clone());
                }
            }
        }
    }
    PurgePlan {
        expired,
        incomplete,
        kept: survivors.iter().map(|e| e.name.clone()).collect(),
        manifests,
        backup_objects,
        index: Index::new(survivors),
        blobs: state
            .blobs
            .iter()
            .filter(|(key, _)| !referenced.contains(key))
            .cloned()
            .collect(),
        stale_uploads: state.stale_uploads.clone(),
    }
}

/// Deletes what `plan` says, in its order, checking the lease before
/// every batch.
pub async fn carry_out(
    catalog: &Catalog,
    lease: &Lease,
    plan: &PurgePlan,
) -> Result<(), PassError> {
    delete_in_batches(catalog, lease, &plan.manifests).await?;
    delete_in_batches(catalog, lease, &plan.backup_objects).await?;
    lease.check().await?;
    catalog.put_index(&plan.index).await?;
    let blobs: Vec<ObjectKey> = plan.blobs.iter().map(|(key, _)| key.clone()).collect();
    delete_in_batches(catalog, lease, &blobs).await?;
    if !plan.stale_uploads.is_empty() {
        lease.check().await?;
    }
    for upload in &plan.stale_uploads {
        match catalog.store().abort_upload(upload).await {
            Ok(()) => tracing::info!(%upload, "aborted an unfinished upload of a killed pass"),
            Err(err) => {
                tracing::warn!(%upload, error = %err, "could not abort an unfinished upload; the next purge tries again")
            }
        }
    }
    Ok(())
}

async fn delete_in_batches(
    catalog: &Catalog,
    lease: &Lease,
    keys: &[ObjectKey],
) -> Result<(), PassError> {
    for batch in keys.chunks(DELETE_BATCH) {
        lease.check().await?;
        catalog.store().delete_many(batch).await?;
    }
    Ok(())
}

/// `kassette purge`: takes the lease, plans, and carries the plan out.
pub async fn run(config: &PurgeConfig) -> Result<PurgeReport, PassError> {
    let catalog = Catalog::open(&config.storage, &config.cluster).await?;
    let lease = super::take_lease(&catalog, "purge", config.pass.lock_ttl).await?;
    let result = super::with_lease(
        &lease,
        purge(&catalog, &lease, &config.retention, config.pass.lock_ttl),
    )
    .await;
    super::release_lease(lease).await;
    result
}

/// `kassette purge --dry-run`: the plan, read without the lease; nothing
/// is written.
pub async fn dry_run(config: &PurgeConfig) -> Result<PurgePlan, PassError> {
    let catalog = Catalog::open(&config.storage, &config.cluster).await?;
    let state = gather(&catalog, config.pass.lock_ttl).await?;
    Ok(plan(&state, &config.retention, Timestamp::now()))
}

/// Applies `retention` and collects garbage; the caller holds `lease`.
/// Unfinished uploads older than `upload_age` are aborted.
pub async fn purge(
    catalog: &Catalog,
    lease: &Lease,
    retention: &Retention,
    upload_age: Duration,
) -> Result<PurgeReport, PassError> {
    let state = gather(catalog, upload_age).await?;
    let plan = plan(&state, retention, Timestamp::now());
    tracing::info!("purge plan:\n{plan}");
    carry_out(catalog, lease, &plan).await?;
    let report = plan.report();
    log_report(&report);
    Ok(report)
}

/// Every blob key the node manifests of complete backup `name` reference.
async fn referenced_by(catalog: &Catalog, name: &str) -> Result<BTreeSet<ObjectKey>, PassError> {
    let mut referenced = BTreeSet::new();
    let backup = catalog.backup_manifest(name).await?;
    for manifest in catalog.node_manifests(&backup).await? {
        for file in &manifest.files {
            referenced.insert(
                catalog
                    .layout()
                    .content(file)
                    .map_err(storage::Error::from)?,
            );
        }
    }
    Ok(referenced)
}

fn log_report(report: &PurgeReport) {
    tracing::info!(
        expired = ?report.expired,
        incomplete = ?report.incomplete,
        kept = report.kept,
        blobs = report.blobs,
        blob_bytes = %bytesize::ByteSize(report.blob_bytes),
        stale_uploads = report.stale_uploads,
        "purge done"
    );
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

    // --- The plan against an in-memory store (a test double, see
    // `storage::memory`): what is deleted, what survives, and that a lost
    // lease stops the deletes.

    use std::sync::Arc;

    use crate::catalog::{
        BackupManifest, FORMAT_VERSION, FileEntry, Layout, NODE_MANIFEST_VERSION, NodeManifest,
        NodeSummary,
    };

    /// Where a fixture backup's content is stored.
    #[derive(Clone, Copy)]
    enum At {
        /// Content-addressed, `blobs/<b3>` (version 1).
        Blob,
        /// Under `files/`, as sent by the named backup (version 2).
        Files(&'static str),
    }
    use crate::storage::memory::MemoryStore;
    use crate::storage::{PutMode, Store, digest_of};

    const HOUR: Duration = Duration::from_secs(3600);

    fn layout() -> Layout {
        Layout::new("prod", "dc1").unwrap()
    }

    struct Fixture {
        memory: Arc<MemoryStore>,
        catalog: Catalog,
    }

    impl Fixture {
        fn new() -> Self {
            let memory = Arc::new(MemoryStore::new());
            let store: Arc<dyn Store> = memory.clone();
            Self {
                memory,
                catalog: Catalog::new(store, layout()),
            }
        }

        fn blob_key(content: &[u8]) -> String {
            layout().blob(&digest_of(content)).unwrap().to_string()
        }

        /// The catalog-relative key backup `owner` stored `content` at
        /// under `files/` (node manifest version 2).
        fn file_blob(owner: &str, content: &[u8]) -> String {
            let host = uuid::Uuid::nil();
            let prefix = layout().new_files(&host, owner, "backup-01").unwrap();
            format!("{prefix}/0/ks/t-0/{}", digest_of(content).blake3_hex())
        }

        fn file_key(owner: &str, content: &[u8]) -> String {
            layout()
                .relative_key(&Self::file_blob(owner, content))
                .unwrap()
                .to_string()
        }

        /// Writes the objects and a node manifest for `name`; with
        /// `commit`, the backup manifest and the index too. A content with
        /// `At::Blob` is content-addressed (version 1); with
        /// `At::Files(owner)` it is the file backup `owner` sent (written
        /// now when `owner` is `name`, referenced otherwise).
        async fn backup(&self, name: &str, hours_ago: i64, contents: &[(&[u8], At)], commit: bool) {
            let at = Timestamp::now() - jiff::SignedDuration::from_hours(hours_ago);
            let mut files = Vec::new();
            let mut version = 1;
            for (content, place) in contents {
                let digest = digest_of(content);
                let (blob, write) = match place {
                    At::Blob => (None, Some(layout().blob(&digest).unwrap())),
                    At::Files(owner) => {
                        version = NODE_MANIFEST_VERSION;
                        let blob = Self::file_blob(owner, content);
                        let key = layout().relative_key(&blob).unwrap();
                        (Some(blob), (*owner == name).then_some(key))
                    }
                };
                if let Some(key) = write {
                    self.catalog
                        .store()
                        .put_bytes(&key, content.to_vec().into(), PutMode::Overwrite)
                        .await
                        .unwrap();
                }
                files.push(FileEntry {
                    keyspace: "ks".into(),
                    table: "t".into(),
                    table_id: "0".into(),
                    path: digest.blake3_hex(),
                    data_dir: 0,
                    digest,
                    blob,
                });
            }
            let node = NodeManifest {
                format_version: version,
                backup: name.into(),
                cluster: "prod".into(),
                datacenter: "dc1".into(),
                rack: "r1".into(),
                host_id: uuid::Uuid::nil(),
                address: "10.0.0.1".into(),
                tokens: vec![],
                cassandra_version: "5.0".into(),
                snapshot_tag: name.into(),
                snapshot_at: at,
                data_dirs: vec!["/data".into()],
                files,
            };
            let manifest_blake3 = self.catalog.put_node_manifest(&node).await.unwrap();
            if !commit {
                return;
            }
            let manifest = BackupManifest {
                format_version: FORMAT_VERSION,
                name: name.into(),
                cluster: "prod".into(),
                datacenter: "dc1".into(),
                kassette_version: "test".into(),
                started_at: at,
                finished_at: at,
                snapshot_skew_ms: 0,
                schema_cql: String::new(),
                keyspaces: vec!["ks".into()],
                roles: None,
                nodes: vec![NodeSummary {
                    host_id: node.host_id,
                    address: node.address.clone(),
                    rack: node.rack.clone(),
                    snapshot_at: at,
                    files: node.files.len() as u64,
                    bytes: node.bytes(),
                    manifest_blake3,
                    uploaded_files: 0,
                    uploaded_bytes: 0,
                    read_bytes: 0,
                }],
                files: node.files.len() as u64,
                bytes: node.bytes(),
                uploaded_bytes: 0,
                uploaded_files: 0,
            };
            self.catalog.commit(&manifest).await.unwrap();
            self.catalog.add_to_index(&manifest).await.unwrap();
        }

        /// Three complete backups — `a` of version 1, `b` and `c` of
        /// version 2 reusing `a`'s content-addressed blob and `b`'s file —
        /// one incomplete, an orphan blob, an orphan file, a stale and a
        /// fresh unfinished upload.
        async fn populated() -> Self {
            let f = Self::new();
            f.backup(
                "a",
                30,
                &[(b"a-only", At::Blob), (b"shared", At::Blob)],
                true,
            )
            .await;
            f.backup(
                "b",
                20,
                &[(b"b-only", At::Files("b")), (b"shared", At::Blob)],
                true,
            )
            .await;
            f.backup(
                "c",
                10,
                &[
                    (b"c-only", At::Files("c")),
                    (b"b-only", At::Files("b")),
                    (b"shared", At::Blob),
                ],
                true,
            )
            .await;
            f.backup(
                "killed",
                5,
                &[
                    (b"killed-only", At::Files("killed")),
                    (b"c-only", At::Files("c")),
                ],
                false,
            )
            .await;
            let orphan = layout().blob(&digest_of(b"orphan")).unwrap();
            f.catalog
                .store()
                .put_bytes(&orphan, "orphan".into(), PutMode::Overwrite)
                .await
                .unwrap();
            // A file a killed pass sent before writing any record.
            let orphan_file = ObjectKey::new(Self::file_key("gone", b"orphan-file")).unwrap();
            f.catalog
                .store()
                .put_bytes(&orphan_file, "orphan-file".into(), PutMode::Overwrite)
                .await
                .unwrap();
            for (id, age) in [("stale", HOUR * 2), ("fresh", Duration::ZERO)] {
                f.memory.add_pending_upload(PendingUpload {
                    name: format!("{}blobs/ff/{id}", layout().root_prefix()),
                    id: id.into(),
                    started: std::time::SystemTime::now().checked_sub(age),
                });
            }
            f
        }
    }

    fn keep_last(n: u32) -> Retention {
        Retention {
            keep_last: Some(n),
            max_age: None,
        }
    }

    #[tokio::test]
    async fn the_plan_names_what_goes_and_never_a_blob_a_kept_backup_references() {
        let f = Fixture::populated().await;
        let state = gather(&f.catalog, HOUR).await.unwrap();
        let plan = plan(&state, &keep_last(2), Timestamp::now());
        assert_eq!(plan.expired, ["a"]);
        assert_eq!(plan.incomplete, ["killed"]);
        assert_eq!(plan.kept, ["b", "c"]);
        assert_eq!(
            plan.manifests
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>(),
            [layout().backup_manifest("a").unwrap().to_string()]
        );
        let mut doomed: Vec<String> = plan.blobs.iter().map(|(k, _)| k.to_string()).collect();
        doomed.sort();
        let mut expected: Vec<String> = vec![
            Fixture::blob_key(b"a-only"),
            Fixture::blob_key(b"orphan"),
            Fixture::file_key("killed", b"killed-only"),
            Fixture::file_key("gone", b"orphan-file"),
        ];
        expected.sort();
        assert_eq!(doomed, expected);
        // Both kinds of key are referenced: the version 1 blob `b` and `c`
        // reuse, `b`'s file `c` reuses, `c`'s file the killed pass reused.
        let referenced = &state.references["c"];
        for key in [
            Fixture::blob_key(b"shared"),
            Fixture::file_key("b", b"b-only"),
            Fixture::file_key("c", b"c-only"),
        ] {
            assert!(referenced.iter().any(|k| k.as_str() == key), "{key}");
        }
        for kept in &plan.kept {
            for key in &state.references[kept] {
                assert!(!plan.blobs.iter().any(|(k, _)| k == key), "{key} of {kept}");
            }
        }
        assert_eq!(plan.stale_uploads.len(), 1);
        assert_eq!(plan.stale_uploads[0].id, "stale");
        assert_eq!(
            plan.index
                .backups
                .iter()
                .map(|e| &e.name)
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
        let printed = plan.to_string();
        assert!(printed.contains("expired by retention: a"), "{printed}");
        assert!(printed.contains("unreferenced blobs: 4"), "{printed}");

        // Keeping only `c`: `b`'s file and `a`'s blob stay while `c`
        // references them, whoever wrote them.
        let only_c = super::plan(&state, &keep_last(1), Timestamp::now());
        assert_eq!(only_c.expired, ["a", "b"]);
        for key in [
            Fixture::blob_key(b"shared"),
            Fixture::file_key("b", b"b-only"),
        ] {
            assert!(
                !only_c.blobs.iter().any(|(k, _)| k.as_str() == key),
                "{key} collected"
            );
        }
        assert!(
            only_c
                .blobs
                .iter()
                .any(|(k, _)| k.as_str() == Fixture::blob_key(b"a-only"))
        );
    }

    #[tokio::test]
    async fn planning_writes_nothing_and_carrying_out_deletes_exactly_the_plan() {
        let f = Fixture::populated().await;
        let before = f.memory.keys();
        let state = gather(&f.catalog, HOUR).await.unwrap();
        let plan = plan(&state, &keep_last(2), Timestamp::now());
        assert_eq!(f.memory.keys(), before, "planning wrote");
        let lease = Lease::acquire(f.catalog.store().clone(), &layout(), "t/1", "purge", HOUR)
            .await
            .unwrap();
        carry_out(&f.catalog, &lease, &plan).await.unwrap();
        let after: BTreeSet<String> = f.memory.keys().into_iter().collect();
        let deleted: BTreeSet<String> = plan
            .manifests
            .iter()
            .chain(&plan.backup_objects)
            .chain(plan.blobs.iter().map(|(k, _)| k))
            .map(|k| k.to_string())
            .collect();
        for key in &before {
            assert_eq!(
                after.contains(key),
                !deleted.contains(key) || key.ends_with("index.json"),
                "{key}"
            );
        }
        // Every kept backup is still whole.
        for name in ["b", "c"] {
            let backup = f.catalog.backup_manifest(name).await.unwrap();
            for node in f.catalog.node_manifests(&backup).await.unwrap() {
                for file in node.files {
                    let key = layout().content(&file).unwrap();
                    assert!(after.contains(key.as_str()), "{key} of {name} deleted");
                }
            }
        }
        assert_eq!(f.catalog.backup_manifest("latest").await.unwrap().name, "c");
        let pending: Vec<String> = f
            .memory
            .pending_uploads()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(pending, ["fresh"]);
        // A second purge finds nothing left to do.
        let again = plan_again(&f).await;
        assert!(again.is_empty(), "{again}");
    }

    async fn plan_again(f: &Fixture) -> PurgePlan {
        plan(
            &gather(&f.catalog, HOUR).await.unwrap(),
            &keep_last(2),
            Timestamp::now(),
        )
    }

    #[tokio::test]
    async fn a_lease_lost_before_a_batch_stops_the_deletes() {
        let f = Fixture::populated().await;
        let store = f.catalog.store().clone();
        let lease = Lease::acquire(store.clone(), &layout(), "t/1", "purge", Duration::ZERO)
            .await
            .unwrap();
        // Expired at once (TTL zero): another pass takes over.
        let _other = Lease::acquire(store, &layout(), "other/1", "backup", HOUR)
            .await
            .unwrap();
        let before = f.memory.keys();
        let plan = plan_again(&f).await;
        let err = carry_out(&f.catalog, &lease, &plan).await.unwrap_err();
        assert!(err.to_string().contains("other/1"), "{err}");
        assert_eq!(f.memory.keys(), before, "deleted without the lease");
    }
}
