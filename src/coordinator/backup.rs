//! `kassette backup`: one coordinated pass over a datacenter.
//!
//! Order (see `docs/storage-format.md`, "Write order"):
//!
//! 1. discover the agents and check every node: agent answering, node in
//!    the configured datacenter, every ring member of the datacenter
//!    covered by an agent — refuse, naming the node, otherwise;
//! 2. take the datacenter lease (renewed while the pass runs);
//! 3. clear snapshots a killed pass left behind, then snapshot every node
//!    concurrently with one tag and record the skew;
//! 4. read the schema; every agent uploads the files its node's manifest
//!    in the latest complete backup does not hold (told where that
//!    manifest is: agents never list the catalog), with progress logged
//!    at a steady interval;
//! 5. check every object this pass wrote or took from a killed pass is
//!    present (what the latest complete backup references is), write the
//!    node manifests,
//!    re-check the lease, then write the backup manifest — the commit —
//!    then the index;
//! 6. clear the snapshots on every node, whatever happened;
//! 7. apply retention and collect garbage (or, without retention, abort
//!    the unfinished uploads of killed passes), still under the lease.

use std::net::SocketAddr;
use std::time::Instant;

use bytesize::ByteSize;
use futures::future::{join_all, try_join_all};
use jiff::Timestamp;

use super::client::JobSpec;
use super::lease::Lease;
use super::nodes::{self, Node};
use super::{
    PassError, end_pass, lease_owner, new_pass, progress, purge, release_lease, take_lease,
    with_lease,
};
use crate::agent::api::{
    PreviousManifest, SnapshotRequest, SnapshotTaken, UploadReport, UploadRequest,
};
use crate::cassandra::cql::Cql;
use crate::catalog::{
    BackupManifest, Catalog, CatalogError, FORMAT_VERSION, NODE_MANIFEST_VERSION, NodeManifest,
    NodeSummary, StartedRecord,
};
use crate::config::{Backend, BackupConfig, ClusterConfig, StorageConfig, vars};
use crate::k8s::{Events, Reason};

/// Prefix of every snapshot tag kassette takes.
pub const TAG_PREFIX: &str = "kassette-";

/// The snapshot tag of backup `name`: `kassette-<catalog id>-<name>`. The
/// catalog id (8 hex digits of a hash of the store location, prefix,
/// cluster and datacenter) ties a snapshot to one catalog: under that
/// catalog's lease no other pass of it runs, so its tags found on a node
/// are leftovers of a killed pass — while a pass of another catalog (a
/// second schedule to another bucket) keeps its snapshots.
pub fn snapshot_tag(storage: &StorageConfig, cluster: &ClusterConfig, name: &str) -> String {
    format!("{}{name}", catalog_tag_prefix(storage, cluster))
}

fn catalog_tag_prefix(storage: &StorageConfig, cluster: &ClusterConfig) -> String {
    let location = match &storage.backend {
        Backend::S3 {
            bucket, endpoint, ..
        } => format!(
            "s3|{}|{bucket}",
            endpoint.as_ref().map(url::Url::as_str).unwrap_or_default()
        ),
        Backend::Gcs { bucket, .. } => format!("gcs|{bucket}"),
        Backend::Azure(azure) => format!("azure|{}|{}", azure.endpoint, azure.container),
        Backend::Local { root } => format!("local|{}", root.display()),
    };
    let identity = format!(
        "{location}|{}|{}|{}",
        storage.prefix, cluster.cluster, cluster.datacenter
    );
    let hash = blake3::hash(identity.as_bytes()).to_hex();
    format!("{TAG_PREFIX}{}-", &hash[..8])
}

/// What a successful pass reports.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub manifest: BackupManifest,
    /// Data bytes the agents read from disk to hash.
    pub read_bytes: u64,
    pub duration: std::time::Duration,
    pub purge: Option<purge::PurgeReport>,
}

impl BackupOutcome {
    /// The one-line summary a person reads (stdout, the `Completed` Event).
    pub fn summary(&self) -> String {
        let m = &self.manifest;
        format!(
            "backup {} complete: {} nodes, {} files, {} (uploaded {} files, {}; read {} from disk), snapshot skew {} ms, {:.1} s",
            m.name,
            m.nodes.len(),
            m.files,
            ByteSize(m.bytes),
            m.uploaded_files,
            ByteSize(m.uploaded_bytes),
            ByteSize(self.read_bytes),
            m.snapshot_skew_ms,
            self.duration.as_secs_f64()
        )
    }
}

/// Runs the pass, telling Kubernetes (Events on the Job, when running in
/// one) how it started, went and ended. Exits with an error naming what
/// failed; on success the backup is complete.
pub async fn run(config: &BackupConfig) -> Result<BackupOutcome, PassError> {
    let start = Instant::now();
    let started_at = Timestamp::now();
    let name = config
        .name
        .clone()
        .unwrap_or_else(|| default_name(started_at));
    let events = Events::connect(config.pod.as_ref()).await;
    events
        .post(
            Reason::Started,
            format!(
                "backup {name} of {}/{} starting",
                config.cluster.cluster, config.cluster.datacenter
            ),
        )
        .await;
    let result = pass(config, &name, started_at, start, &events).await;
    match &result {
        Ok(outcome) => events.post(Reason::Completed, outcome.summary()).await,
        Err(err) => {
            let why = crate::storage::error_chain(err);
            events
                .post(Reason::Failed, format!("backup {name}: {why}"))
                .await;
        }
    }
    result
}

async fn pass(
    config: &BackupConfig,
    name: &str,
    started_at: Timestamp,
    start: Instant,
    events: &Events,
) -> Result<BackupOutcome, PassError> {
    let tag = snapshot_tag(&config.storage, &config.cluster, name);
    tracing::info!(backup = %name, cluster = %config.cluster.cluster, datacenter = %config.cluster.datacenter, "backup pass starting");

    let (nodes, cql) =
        nodes::whole_datacenter(&config.nodes, &config.cluster, &config.storage).await?;
    let first = nodes[0].cql_address(config.nodes.cql.port);
    let keyspaces = backup_keyspaces(&cql, first, config.keyspaces.as_deref()).await?;

    let catalog = Catalog::open(&config.storage, &config.cluster).await?;
    let lease = take_lease(&catalog, "backup", config.pass.lock_ttl).await?;
    events
        .post(
            Reason::LeaseTaken,
            format!(
                "lease of the catalog taken; {} nodes, keyspaces {}",
                nodes.len(),
                keyspaces.join(", ")
            ),
        )
        .await;

    let job = new_pass("backup", config.pass.lock_ttl);
    let pass = Pass {
        config,
        job: &job,
        name,
        tag: &tag,
        started_at,
        nodes: &nodes,
        cql: &cql,
        first,
        keyspaces: &keyspaces,
        catalog: &catalog,
        lease: &lease,
        events,
    };
    let committed = with_lease(&lease, pass.snapshot_upload_commit()).await;
    // Whatever happened, no upload of this pass outlives it; still
    // renewing: the index and retention after it need a valid lease.
    super::renewing(&lease, async {
        end_pass(&nodes, &job).await;
        clear_snapshots(&nodes, &tag).await;
    })
    .await;
    let result = match committed {
        Ok((manifest, read_bytes)) => with_lease(&lease, pass.finish(manifest, read_bytes))
            .await
            .map_err(|err| after_commit(name, err))
            .map(|(manifest, read_bytes, purge)| BackupOutcome {
                manifest,
                read_bytes,
                duration: start.elapsed(),
                purge,
            }),
        Err(err) => Err(err),
    };
    release_lease(lease).await;
    result
}

/// A failure after the commit (of the index update, retention, or the
/// clean-up of unfinished uploads): the backup is complete whatever
/// happened, and the message says so — a killed or failing store during
/// retention used to fail the pass with the storage error alone, which
/// reads as a failed backup.
fn after_commit(name: &str, err: PassError) -> PassError {
    PassError::Failed(format!(
        "{err}. Backup {name} is complete (its manifest was committed); what did not finish is the index update or retention after it, which the next backup or `kassette purge` finishes"
    ))
}

/// The default backup name: the pass's UTC start time, usable as a key
/// segment and a snapshot tag (`2026-11-25T02-00-00Z`).
pub fn default_name(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H-%M-%SZ").to_string()
}

/// The keyspaces the backup covers: the configured ones (which must
/// exist), or every user keyspace.
async fn backup_keyspaces(
    cql: &Cql,
    node: SocketAddr,
    wanted: Option<&[String]>,
) -> Result<Vec<String>, PassError> {
    let existing = cql.user_keyspaces(node).await?;
    let Some(wanted) = wanted else {
        return Ok(existing);
    };
    if let Some(missing) = wanted.iter().find(|k| !existing.contains(k)) {
        return Err(PassError::Refused(format!(
            "{}: keyspace {missing:?} does not exist (user keyspaces: {})",
            vars::KEYSPACES,
            existing.join(", ")
        )));
    }
    Ok(wanted.to_vec())
}

/// Asks every node to remove snapshot `tag`; failures are logged, not
/// fatal (the next pass clears leftovers).
async fn clear_snapshots(nodes: &[Node], tag: &str) {
    let results = join_all(nodes.iter().map(|n| n.client.clear_snapshot(tag))).await;
    for (node, result) in nodes.iter().zip(results) {
        match result {
            Ok(()) => tracing::info!(node = %node.agent.name, %tag, "snapshot cleared"),
            Err(err) => {
                tracing::warn!(node = %node.agent.name, %tag, error = %err, "could not clear the snapshot; the next pass will")
            }
        }
    }
}

/// Clears every snapshot of this catalog present on the nodes: under the
/// lease no other pass of it is running, so they are leftovers of a killed
/// one.
async fn clear_stale_snapshots(nodes: &[Node], prefix: &str) -> Result<(), PassError> {
    for node in nodes {
        let tags = node.client.snapshot_tags().await.map_err(node.failed())?;
        for tag in tags.iter().filter(|t| t.starts_with(prefix)) {
            tracing::warn!(node = %node.agent.name, %tag, "clearing a snapshot left by an earlier pass");
            node.client
                .clear_snapshot(tag)
                .await
                .map_err(node.failed())?;
        }
    }
    Ok(())
}

/// The steps that run under the lease.
struct Pass<'a> {
    config: &'a BackupConfig,
    /// The pass id the agents' jobs run under.
    job: &'a JobSpec,
    name: &'a str,
    tag: &'a str,
    started_at: Timestamp,
    nodes: &'a [Node],
    cql: &'a Cql,
    first: SocketAddr,
    keyspaces: &'a [String],
    catalog: &'a Catalog,
    lease: &'a Lease,
    events: &'a Events,
}

impl Pass<'_> {
    /// Snapshot, upload and commit; returns the committed manifest and
    /// the bytes the agents read to hash.
    async fn snapshot_upload_commit(&self) -> Result<(BackupManifest, u64), PassError> {
        if self.catalog.is_complete(self.name).await? {
            return Err(PassError::Refused(format!(
                "backup {:?} already exists and is complete; choose another {}",
                self.name,
                vars::BACKUP_NAME
            )));
        }
        self.catalog
            .mark_started(&StartedRecord {
                format_version: FORMAT_VERSION,
                name: self.name.to_string(),
                owner: lease_owner(),
                started_at: self.started_at,
                run_id: Some(self.lease.record().run_id),
            })
            .await?;
        let prefix = catalog_tag_prefix(&self.config.storage, &self.config.cluster);
        clear_stale_snapshots(self.nodes, &prefix).await?;
        self.events
            .post(
                Reason::Snapshot,
                format!(
                    "flushing and snapshotting {} nodes (tag {})",
                    self.nodes.len(),
                    self.tag
                ),
            )
            .await;
        let taken = self.snapshot_all().await?;
        let schema_cql = self.cql.describe(self.first, self.keyspaces).await?;
        self.events
            .post(
                Reason::Upload,
                format!(
                    "every node snapshotted (skew {} ms, {} files, {}); uploading what the store lacks",
                    skew_ms(&taken),
                    taken.iter().map(|t| t.files).sum::<u64>(),
                    ByteSize(taken.iter().map(|t| t.bytes).sum::<u64>())
                ),
            )
            .await;
        let roles = match self.cql.role_names(self.first).await {
            Ok(roles) => Some(roles),
            Err(err) => {
                tracing::warn!(error = %err, "could not read the role names; the backup will not list them");
                None
            }
        };
        let previous = self.previous_backup().await?;
        let reports = self.upload_all(previous.as_ref().map(|(m, _)| m)).await?;
        self.events
            .post(
                Reason::Commit,
                format!(
                    "uploaded {} files, {}; checking every blob and writing the manifests",
                    reports.iter().map(|r| r.uploaded_files).sum::<u64>(),
                    ByteSize(reports.iter().map(|r| r.uploaded_bytes).sum::<u64>())
                ),
            )
            .await;
        let manifests: Vec<NodeManifest> = self
            .nodes
            .iter()
            .zip(&taken)
            .zip(&reports)
            .map(|((node, taken), report)| self.node_manifest(node, taken, report))
            .collect();
        let trusted = previous
            .as_ref()
            .map(|(_, nodes)| super::inspect::referenced_keys(self.catalog, nodes))
            .transpose()?
            .unwrap_or_default();
        super::inspect::check_presence(self.catalog, &manifests, &trusted).await?;
        let mut summaries = Vec::with_capacity(manifests.len());
        for ((manifest, report), node) in manifests.iter().zip(&reports).zip(self.nodes) {
            let manifest_blake3 = self.catalog.put_node_manifest(manifest).await?;
            summaries.push(NodeSummary {
                host_id: manifest.host_id,
                address: node.agent.ip.to_string(),
                rack: manifest.rack.clone(),
                snapshot_at: manifest.snapshot_at,
                files: manifest.files.len() as u64,
                bytes: manifest.bytes(),
                manifest_blake3,
                uploaded_files: report.uploaded_files,
                uploaded_bytes: report.uploaded_bytes,
                read_bytes: report.hashed_bytes,
            });
        }
        let manifest = BackupManifest {
            format_version: FORMAT_VERSION,
            name: self.name.to_string(),
            cluster: self.config.cluster.cluster.clone(),
            datacenter: self.config.cluster.datacenter.clone(),
            kassette_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            finished_at: Timestamp::now(),
            snapshot_skew_ms: skew_ms(&taken),
            schema_cql,
            roles,
            keyspaces: self.keyspaces.to_vec(),
            files: summaries.iter().map(|s| s.files).sum(),
            bytes: summaries.iter().map(|s| s.bytes).sum(),
            uploaded_bytes: summaries.iter().map(|s| s.uploaded_bytes).sum(),
            uploaded_files: summaries.iter().map(|s| s.uploaded_files).sum(),
            nodes: summaries,
        };
        // The last moment another pass's purge could have taken over: the
        // commit makes these blobs referenced, so it happens only while the
        // lease is certainly ours.
        self.lease.check().await?;
        self.catalog.commit(&manifest).await?;
        tracing::info!(backup = %self.name, "backup manifest written: the backup is complete");
        let read_bytes = reports.iter().map(|r| r.hashed_bytes).sum();
        Ok((manifest, read_bytes))
    }

    /// Flush + snapshot on every node at once, as close together as the
    /// nodes allow.
    async fn snapshot_all(&self) -> Result<Vec<SnapshotTaken>, PassError> {
        let request = SnapshotRequest {
            tag: self.tag.to_string(),
            keyspaces: self.config.keyspaces.clone().unwrap_or_default(),
        };
        let taken = try_join_all(self.nodes.iter().map(|node| {
            let request = &request;
            async move { node.client.snapshot(request).await.map_err(node.failed()) }
        }))
        .await?;
        for (node, snapshot) in self.nodes.iter().zip(&taken) {
            tracing::info!(node = %node.agent.name, at = %snapshot.snapshot_at, files = snapshot.files, bytes = snapshot.bytes, "snapshot taken");
        }
        tracing::info!(tag = %self.tag, skew_ms = skew_ms(&taken), "every node snapshotted");
        Ok(taken)
    }

    /// The latest complete backup and its node manifests, if there is
    /// one: what the agents reference instead of sending again. Node
    /// manifests that cannot be read only cost the presence check more
    /// requests (the agents then send every file).
    async fn previous_backup(
        &self,
    ) -> Result<Option<(BackupManifest, Vec<NodeManifest>)>, PassError> {
        let backup = match self.catalog.backup_manifest("latest").await {
            Ok(backup) => backup,
            Err(CatalogError::NoBackups) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let nodes = match self.catalog.node_manifests(&backup).await {
            Ok(nodes) => nodes,
            Err(err) => {
                tracing::warn!(backup = %backup.name, error = %err, "the latest backup's node manifests are unreadable; every file is sent again");
                Vec::new()
            }
        };
        tracing::info!(backup = %backup.name, "files the latest complete backup holds are referenced, not sent");
        Ok(Some((backup, nodes)))
    }

    /// The upload request of `node`: its own prefix for new files
    /// (`files/<host-id>/<backup>/<pass>`), and where its manifest in the
    /// latest complete backup is.
    fn upload_request(
        &self,
        node: &Node,
        previous: Option<&BackupManifest>,
    ) -> Result<UploadRequest, PassError> {
        let layout = self.catalog.layout();
        let host = node.topology.host_id;
        let files_prefix = layout
            .new_files(&host, self.name, &self.job.pass)
            .map_err(crate::storage::Error::from)?;
        let previous = match previous
            .and_then(|b| b.nodes.iter().find(|n| n.host_id == host).map(|n| (b, n)))
        {
            Some((backup, summary)) => {
                let key = layout
                    .node_manifest(&backup.name, &host)
                    .map_err(crate::storage::Error::from)?;
                layout.relative(key.as_str()).map(|key| PreviousManifest {
                    key: key.to_string(),
                    manifest_blake3: summary.manifest_blake3.clone(),
                })
            }
            None => None,
        };
        Ok(UploadRequest {
            tag: self.tag.to_string(),
            cluster: self.config.cluster.cluster.clone(),
            datacenter: self.config.cluster.datacenter.clone(),
            files_prefix: Some(files_prefix),
            previous,
        })
    }

    /// Every agent uploads what its previous manifest lacks, all at once,
    /// as jobs of this pass; on the first failure the others are no longer
    /// polled and the pass ends them (see [`end_pass`]).
    async fn upload_all(
        &self,
        previous: Option<&BackupManifest>,
    ) -> Result<Vec<UploadReport>, PassError> {
        let requests = self
            .nodes
            .iter()
            .map(|node| self.upload_request(node, previous))
            .collect::<Result<Vec<_>, _>>()?;
        let uploads = try_join_all(self.nodes.iter().zip(&requests).map(
            |(node, request)| async move {
                node.client
                    .upload(self.job, request)
                    .await
                    .map_err(node.failed())
            },
        ));
        let clients = self.nodes.iter().map(|n| n.client.clone()).collect();
        tokio::select! {
            reports = uploads => reports,
            () = progress::log_forever("upload", clients, self.config.pass.progress_interval) => {
                Err(PassError::Failed("progress reporting stopped".into()))
            }
        }
    }

    fn node_manifest(
        &self,
        node: &Node,
        taken: &SnapshotTaken,
        report: &UploadReport,
    ) -> NodeManifest {
        NodeManifest {
            format_version: NODE_MANIFEST_VERSION,
            backup: self.name.to_string(),
            cluster: self.config.cluster.cluster.clone(),
            datacenter: self.config.cluster.datacenter.clone(),
            rack: node.topology.rack.clone(),
            host_id: node.topology.host_id,
            address: node.agent.ip.to_string(),
            tokens: node.topology.tokens.clone(),
            cassandra_version: node.topology.release_version.clone(),
            snapshot_tag: self.tag.to_string(),
            snapshot_at: taken.snapshot_at,
            data_dirs: node.data_dirs.clone(),
            files: report.files.clone(),
        }
    }

    /// After the commit: the index, then retention.
    async fn finish(
        &self,
        manifest: BackupManifest,
        read_bytes: u64,
    ) -> Result<(BackupManifest, u64, Option<purge::PurgeReport>), PassError> {
        if let Err(err) = self.lease.check().await {
            // The backup is complete whatever happens now; only the index
            // (a cache) and retention need the lease. The next pass does them.
            tracing::warn!(error = %err, "the lease was lost after the commit; leaving the index and retention to the next pass");
            return Ok((manifest, read_bytes, None));
        }
        self.catalog.add_to_index(&manifest).await?;
        let retention = self.config.retention;
        let upload_age = self.config.pass.lock_ttl;
        let purged = if retention.keep_last.is_some() || retention.max_age.is_some() {
            self.events
                .post(
                    Reason::Retention,
                    format!(
                        "backup {} committed; applying retention ({})",
                        self.name,
                        retention_text(&retention)
                    ),
                )
                .await;
            Some(purge::purge(self.catalog, self.lease, &retention, upload_age).await?)
        } else {
            abort_stale_uploads(self.catalog, self.lease, upload_age).await?;
            None
        };
        Ok((manifest, read_bytes, purged))
    }
}

/// Aborts the unfinished uploads killed passes left under the catalog
/// (older than the lease TTL, so no running pass of this catalog owns
/// them); failures only warn.
async fn abort_stale_uploads(
    catalog: &Catalog,
    lease: &Lease,
    older_than: std::time::Duration,
) -> Result<(), PassError> {
    let stale = catalog
        .store()
        .stale_uploads(&catalog.layout().root_prefix(), older_than)
        .await?;
    if stale.is_empty() {
        return Ok(());
    }
    lease.check().await?;
    for upload in &stale {
        match catalog.store().abort_upload(upload).await {
            Ok(()) => tracing::info!(%upload, "aborted an unfinished upload of a killed pass"),
            Err(err) => {
                tracing::warn!(%upload, error = %err, "could not abort an unfinished upload")
            }
        }
    }
    Ok(())
}

/// `keep last 7, max age 30days` — the configured retention, for people.
fn retention_text(retention: &crate::config::Retention) -> String {
    let mut parts = Vec::new();
    if let Some(n) = retention.keep_last {
        parts.push(format!("keep last {n}"));
    }
    if let Some(age) = retention.max_age {
        parts.push(format!("max age {}", humantime::format_duration(age)));
    }
    parts.join(", ")
}

/// Latest minus earliest snapshot time, in milliseconds.
fn skew_ms(taken: &[SnapshotTaken]) -> u64 {
    let times = taken.iter().map(|t| t.snapshot_at);
    match (times.clone().min(), times.max()) {
        (Some(first), Some(last)) => last
            .duration_since(first)
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_after_the_commit_says_the_backup_is_complete() {
        let err = after_commit(
            "nightly",
            PassError::Failed("storage: connection refused".into()),
        );
        let text = err.to_string();
        assert!(text.starts_with("storage: connection refused. "), "{text}");
        assert!(text.contains("Backup nightly is complete"), "{text}");
    }

    #[test]
    fn default_names_are_valid_backup_names_and_tags() {
        let name = default_name("2026-11-25T02:00:07.5Z".parse().unwrap());
        assert_eq!(name, "2026-11-25T02-00-07Z");
        assert!(crate::config::parse::backup_name(&name).is_ok());
    }

    #[test]
    fn skew_is_latest_minus_earliest() {
        let at = |t: &str| SnapshotTaken {
            tag: "t".into(),
            snapshot_at: t.parse().unwrap(),
            files: 0,
            bytes: 0,
        };
        let taken = [
            at("2026-11-25T02:00:01.200Z"),
            at("2026-11-25T02:00:01.000Z"),
            at("2026-11-25T02:00:01.450Z"),
        ];
        assert_eq!(skew_ms(&taken), 450);
        assert_eq!(skew_ms(&[]), 0);
    }
}
