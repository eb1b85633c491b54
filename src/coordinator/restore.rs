//! `kassette restore`: bring a datacenter's tables back to the state of a
//! backup, online, and exit 0 only when they are.
//!
//! Order (nothing live changes before step 6):
//!
//! 1. resolve the backup (`latest` = the newest complete one) and read its
//!    node manifests, each checked against the BLAKE3 the backup manifest
//!    records — an incomplete or unknown backup is refused;
//! 2. choose the tables (`KASSETTE_KEYSPACES`, `KASSETTE_TABLES`; system
//!    keyspaces never);
//! 3. reach every node, check the datacenter is whole, and map backup nodes
//!    to live nodes by host id, else by identical token sets — refusing a
//!    different topology;
//! 4. take the lease (a purge must not delete blobs being restored);
//! 5. every agent downloads its node's files into staging, verified;
//! 6. create the missing schema (never altering or dropping anything);
//! 7. replace mode: truncate each table once, cluster-wide;
//! 8. every agent imports its staged SSTables;
//! 9. remove the staging areas (and, when asked, the truncate snapshots).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use futures::future::{join_all, try_join_all};
use jiff::Timestamp;

use super::nodes::{self, Node};
use super::{PassError, progress, recovery, release_lease, take_lease, with_lease};
use crate::agent::api::{DownloadReport, DownloadRequest, ImportReport, ImportRequest, TableRef};
use crate::agent::is_restored;
use crate::cassandra::cql::{Cql, SYSTEM_KEYSPACES};
use crate::cassandra::schema::{self, Object, Statement};
use crate::catalog::{BackupManifest, Catalog, NodeManifest};
use crate::config::{RestoreConfig, RestoreMode, vars};

/// What a successful restore reports.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    pub backup: String,
    pub tables: Vec<(String, String)>,
    pub files: u64,
    pub bytes: u64,
    /// Fetched now; the rest were staged by an interrupted earlier run.
    pub downloaded_bytes: u64,
    pub created: Vec<String>,
    pub duration: std::time::Duration,
    /// Keyspaces whose replication was rewritten for the target datacenter.
    pub rewrites: Vec<String>,
    /// Keyspaces that exist with another replication, left as they are.
    pub replication_kept: Vec<String>,
    /// What was not restored (roles, views) and the consistency note.
    pub notes: Vec<String>,
    /// Only the plan was printed; nothing changed.
    pub dry_run: bool,
}

/// The files a backup node contributes to the chosen tables.
fn node_files<'a>(
    manifest: &'a NodeManifest,
    tables: &'a BTreeSet<(String, String)>,
) -> impl Iterator<Item = &'a crate::catalog::FileEntry> + 'a {
    manifest
        .files
        .iter()
        .filter(|f| is_restored(f))
        .filter(move |f| tables.contains(&(f.keyspace.clone(), f.table.clone())))
}

/// Keyspaces and tables of the choice that do not exist in the target
/// (read-only: what a run would create).
async fn missing_schema(
    statements: &[Statement],
    tables: &BTreeSet<(String, String)>,
    cql: &Cql,
    first: std::net::SocketAddr,
) -> Result<Vec<String>, PassError> {
    let keyspaces: BTreeSet<&String> = tables.iter().map(|(k, _)| k).collect();
    let mut missing = Vec::new();
    for keyspace in keyspaces {
        if cql.replication(first, keyspace).await?.is_none() {
            missing.push(format!("keyspace {keyspace}"));
        }
        let live: BTreeSet<String> = cql.tables(first, keyspace).await?.into_iter().collect();
        for statement in statements {
            if statement.object == Object::Table
                && &statement.keyspace == keyspace
                && tables.contains(&(statement.keyspace.clone(), statement.name.clone()))
                && !live.contains(&statement.name)
            {
                missing.push(format!("table {}.{}", statement.keyspace, statement.name));
            }
        }
    }
    Ok(missing)
}

/// The plan, as `--dry-run` prints it and a real run logs it: everything
/// the run does, decided before it does any of it.
fn plan_text(
    backup: &BackupManifest,
    plan: &Plan<'_>,
    tables: &BTreeSet<(String, String)>,
    missing: &[String],
    rewrites: &[schema::ReplicationRewrite],
    replication_kept: &[String],
    config: &RestoreConfig,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "restore plan{}: backup {} of {}/{} into {}/{}, {} mode",
        if config.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        },
        backup.name,
        backup.cluster,
        backup.datacenter,
        config.cluster.cluster,
        config.cluster.datacenter,
        match config.mode {
            RestoreMode::Replace => "replace (the tables are truncated first)",
            RestoreMode::Merge => "merge",
        }
    );
    for ((manifest, node), rule) in plan.pairs.iter().zip(&plan.rules) {
        let files: Vec<_> = node_files(manifest, tables).collect();
        let _ = writeln!(
            out,
            "  node: backup {} ({}, rack {}) -> {} (host id {}, rack {}) by {}: {} files, {}",
            manifest.host_id,
            manifest.address,
            manifest.rack,
            node.agent.name,
            node.topology.host_id,
            node.topology.rack,
            rule,
            files.len(),
            bytesize::ByteSize(files.iter().map(|f| f.digest.size).sum::<u64>())
        );
    }
    let _ = writeln!(
        out,
        "  tables ({}): {}",
        tables.len(),
        tables
            .iter()
            .map(|(k, t)| format!("{k}.{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "  to create: {}",
        if missing.is_empty() {
            "nothing".to_string()
        } else {
            missing.join(", ")
        }
    );
    for rewrite in rewrites {
        let _ = writeln!(out, "  replication rewrite: {rewrite}");
    }
    for kept in replication_kept {
        let _ = writeln!(out, "  {kept}");
    }
    if config.repair_after_restore {
        let _ = writeln!(out, "  then: repair of the restored tables, node by node");
    }
    out.trim_end().to_string()
}

pub async fn run(config: &RestoreConfig) -> Result<RestoreOutcome, PassError> {
    let start = Instant::now();
    // The source's catalog: the target's own unless KASSETTE_SOURCE_* say
    // otherwise. Its lease keeps a purge of the source from deleting blobs
    // being restored.
    let catalog = Catalog::open(&config.storage, &config.source).await?;
    let backup = catalog.backup_manifest(&config.backup).await?;
    let manifests = catalog.node_manifests(&backup).await?;
    let statements = schema::parse(&backup.schema_cql);
    let tables = select_tables(&backup, &statements, config)?;
    tracing::info!(backup = %backup.name, tables = tables.len(), mode = ?config.mode, "restore pass starting");

    let (live, cql) = nodes::whole_datacenter(&config.nodes, &config.cluster).await?;
    let plan = map_nodes(
        &manifests,
        &live,
        config.source.cluster == config.cluster.cluster,
    )?;
    let first = live[0].cql_address(config.nodes.cql.port);
    let (statements, rewrites) =
        recovery::adapt_schema(statements, &backup, &config.cluster.datacenter, &cql, first)
            .await?;
    let keyspaces: BTreeSet<&String> = tables.iter().map(|(k, _)| k).collect();
    let replication_kept = recovery::replication_kept(&statements, &keyspaces, &cql, first).await?;
    let views = recovery::skipped_views(&statements, &keyspaces);
    let missing = missing_schema(&statements, &tables, &cql, first).await?;
    let plan_text = plan_text(
        &backup,
        &plan,
        &tables,
        &missing,
        &rewrites,
        &replication_kept,
        config,
    );
    if config.dry_run {
        println!("{plan_text}");
        return Ok(RestoreOutcome {
            backup: backup.name.clone(),
            tables: tables.into_iter().collect(),
            files: 0,
            bytes: 0,
            downloaded_bytes: 0,
            created: Vec::new(),
            duration: start.elapsed(),
            rewrites: Vec::new(),
            replication_kept: Vec::new(),
            notes: recovery::notes(&backup, &views, config.repair_after_restore),
            dry_run: true,
        });
    }
    for line in plan_text.lines() {
        tracing::info!("{line}");
    }
    let mut lease = take_lease(&catalog, "restore", config.pass.lock_ttl).await?;
    let pass = Restore {
        config,
        backup: &backup,
        statements: &statements,
        tables: &tables,
        plan: &plan,
        cql: &cql,
        first,
    };
    let result = with_lease(&mut lease, pass.run()).await;
    release_lease(lease).await;
    let (downloads, imports, created) = result?;
    Ok(RestoreOutcome {
        backup: backup.name.clone(),
        tables: tables.into_iter().collect(),
        files: imports.iter().map(|r| r.files).sum(),
        bytes: imports.iter().map(|r| r.bytes).sum(),
        downloaded_bytes: downloads.iter().map(|r| r.downloaded_bytes).sum(),
        created,
        duration: start.elapsed(),
        rewrites: rewrites.iter().map(|r| r.to_string()).collect(),
        replication_kept,
        notes: recovery::notes(&backup, &views, config.repair_after_restore),
        dry_run: false,
    })
}

/// The tables to restore: every user table the backed-up schema defines,
/// narrowed by the filters, which must name things the backup has.
fn select_tables(
    backup: &BackupManifest,
    statements: &[Statement],
    config: &RestoreConfig,
) -> Result<BTreeSet<(String, String)>, PassError> {
    let defined: BTreeSet<(String, String)> = statements
        .iter()
        .filter(|s| s.object == Object::Table)
        .filter(|s| !SYSTEM_KEYSPACES.contains(&s.keyspace.as_str()))
        .map(|s| (s.keyspace.clone(), s.name.clone()))
        .collect();
    let mut chosen = defined.clone();
    if let Some(keyspaces) = &config.keyspaces {
        for keyspace in keyspaces {
            if !defined.iter().any(|(k, _)| k == keyspace) {
                return Err(PassError::Refused(format!(
                    "{}: backup {} has no keyspace {keyspace:?} (it has: {})",
                    vars::KEYSPACES,
                    backup.name,
                    backup.keyspaces.join(", ")
                )));
            }
        }
        chosen.retain(|(k, _)| keyspaces.contains(k));
    }
    if let Some(tables) = &config.tables {
        for table in tables {
            if !defined.contains(table) {
                return Err(PassError::Refused(format!(
                    "{}: backup {} has no table {}.{}",
                    vars::TABLES,
                    backup.name,
                    table.0,
                    table.1
                )));
            }
        }
        chosen.retain(|t| tables.contains(t));
    }
    if chosen.is_empty() {
        return Err(PassError::Refused(format!(
            "nothing to restore: backup {} has no user table matching the filters",
            backup.name
        )));
    }
    Ok(chosen)
}

/// Which live node receives which backup node's files.
struct Plan<'a> {
    pairs: Vec<(&'a NodeManifest, &'a Node)>,
    /// Per pair, the rule that matched: `host id`, `tokens` (a node of the
    /// same cluster rebuilt with its tokens) or `pinned tokens` (a node of
    /// another cluster or datacenter given the backed-up node's tokens by
    /// `kassette pin-tokens`).
    rules: Vec<&'static str>,
}

/// Maps every backup node to a live node: by host id, else (a rebuilt
/// cluster) by identical token set. Anything else is a different topology,
/// which this pass refuses rather than attempts.
fn map_nodes<'a>(
    manifests: &'a [NodeManifest],
    live: &'a [Node],
    same_cluster: bool,
) -> Result<Plan<'a>, PassError> {
    if manifests.len() != live.len() {
        return Err(PassError::Refused(format!(
            "the backup has {} nodes, the datacenter {}: restoring into another topology is not supported",
            manifests.len(),
            live.len()
        )));
    }
    let by_id: HashMap<uuid::Uuid, &Node> = live.iter().map(|n| (n.topology.host_id, n)).collect();
    let sorted = |tokens: &[String]| {
        let mut t = tokens.to_vec();
        t.sort();
        t
    };
    let by_tokens: HashMap<Vec<String>, &Node> = live
        .iter()
        .map(|n| (sorted(&n.topology.tokens), n))
        .collect();
    let mut pairs = Vec::with_capacity(manifests.len());
    let mut rules = Vec::with_capacity(manifests.len());
    let mut used = BTreeSet::new();
    for manifest in manifests {
        let (rule, node) = match by_id.get(&manifest.host_id) {
            Some(node) => ("host id", Some(*node)),
            None => {
                let same_place = live
                    .iter()
                    .all(|n| n.topology.datacenter == manifest.datacenter)
                    && same_cluster;
                let rule = if same_place {
                    "tokens"
                } else {
                    "pinned tokens"
                };
                (rule, by_tokens.get(&sorted(&manifest.tokens)).copied())
            }
        };
        let node = node
            .ok_or_else(|| {
                PassError::Refused(format!(
                    "backup node {} ({}, rack {}, {} tokens) matches no live node by host id or tokens; live nodes: {}. Restoring into another topology is not supported",
                    manifest.host_id,
                    manifest.address,
                    manifest.rack,
                    manifest.tokens.len(),
                    live.iter()
                        .map(|n| format!("{} ({}, rack {})", n.topology.host_id, n.agent.name, n.topology.rack))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if !used.insert(node.topology.host_id) {
            return Err(PassError::Refused(format!(
                "two backup nodes map to live node {}",
                node.agent.name
            )));
        }
        pairs.push((manifest, node));
        rules.push(rule);
    }
    Ok(Plan { pairs, rules })
}

struct Restore<'a> {
    config: &'a RestoreConfig,
    backup: &'a BackupManifest,
    /// The backed-up schema, statement by statement.
    statements: &'a [Statement],
    tables: &'a BTreeSet<(String, String)>,
    plan: &'a Plan<'a>,
    cql: &'a Cql,
    first: std::net::SocketAddr,
}

type Reports = (Vec<DownloadReport>, Vec<ImportReport>, Vec<String>);

impl Restore<'_> {
    async fn run(&self) -> Result<Reports, PassError> {
        let downloads = self.download_all().await?;
        tracing::info!(
            files = downloads.iter().map(|r| r.files).sum::<u64>(),
            bytes = downloads.iter().map(|r| r.bytes).sum::<u64>(),
            "every node has its files staged and verified; changing the live cluster now"
        );
        let created = self.create_missing_schema().await?;
        let truncated_at = Timestamp::now();
        if self.config.mode == RestoreMode::Replace {
            for (keyspace, table) in self.tables {
                self.cql.truncate(keyspace, table).await?;
                tracing::info!(%keyspace, %table, "truncated");
            }
        }
        let imports = self.import_all().await?;
        if self.config.repair_after_restore {
            self.repair_all().await?;
        }
        self.clean_up(truncated_at).await;
        Ok((downloads, imports, created))
    }

    /// The staging area's name on every node: the backup's, so a re-run
    /// with the same backup finds what an interrupted one staged.
    fn staging(&self) -> String {
        format!("restore-{}", self.backup.name)
    }

    async fn download_all(&self) -> Result<Vec<DownloadReport>, PassError> {
        let downloads = try_join_all(self.plan.pairs.iter().map(|(manifest, node)| {
            let request = DownloadRequest {
                cluster: self.backup.cluster.clone(),
                datacenter: self.backup.datacenter.clone(),
                staging: self.staging(),
                files: manifest
                    .files
                    .iter()
                    .filter(|f| is_restored(f))
                    .filter(|f| self.tables.contains(&(f.keyspace.clone(), f.table.clone())))
                    .cloned()
                    .collect(),
            };
            async move { node.client.download(&request).await.map_err(node.failed()) }
        }));
        let clients = self
            .plan
            .pairs
            .iter()
            .map(|(_, n)| n.client.clone())
            .collect();
        tokio::select! {
            reports = downloads => reports,
            () = progress::log_forever("download", clients, self.config.pass.progress_interval) => {
                Err(PassError::Failed("progress reporting stopped".into()))
            }
        }
    }

    /// Creates the keyspaces, types, tables and indexes of the selected
    /// tables that do not exist; returns what it created.
    async fn create_missing_schema(&self) -> Result<Vec<String>, PassError> {
        let keyspaces: BTreeSet<&String> = self.tables.iter().map(|(k, _)| k).collect();
        let mut existing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for keyspace in &keyspaces {
            let tables = self.cql.tables(self.first, keyspace).await?;
            existing.insert((*keyspace).clone(), tables.into_iter().collect());
        }
        let mut created = Vec::new();
        for statement in self.statements {
            if !keyspaces.contains(&statement.keyspace) {
                continue;
            }
            let wanted = match &statement.object {
                Object::Keyspace | Object::Type | Object::Function | Object::Aggregate => true,
                Object::Table => self
                    .tables
                    .contains(&(statement.keyspace.clone(), statement.name.clone())),
                Object::Index { table } => self
                    .tables
                    .contains(&(statement.keyspace.clone(), table.clone())),
                // Views are derived data, rebuilt by Cassandra from their
                // base table; importing SSTables does not feed them.
                Object::View { .. } => false,
            };
            if !wanted {
                continue;
            }
            let missing_table = statement.object == Object::Table
                && !existing
                    .get(&statement.keyspace)
                    .is_some_and(|t| t.contains(&statement.name));
            self.cql.ddl(&statement.if_not_exists()).await?;
            if missing_table {
                created.push(format!("{}.{}", statement.keyspace, statement.name));
                tracing::info!(keyspace = %statement.keyspace, table = %statement.name, "created the missing table from the backed-up schema");
            }
        }
        Ok(created)
    }

    async fn import_all(&self) -> Result<Vec<ImportReport>, PassError> {
        let request = ImportRequest {
            staging: self.staging(),
            tables: self
                .tables
                .iter()
                .map(|(keyspace, table)| TableRef {
                    keyspace: keyspace.clone(),
                    table: table.clone(),
                })
                .collect(),
        };
        try_join_all(self.plan.pairs.iter().map(|(_, node)| {
            let request = &request;
            async move { node.client.import(request).await.map_err(node.failed()) }
        }))
        .await
    }

    /// A full repair of the restored tables, primary ranges, one node at a
    /// time (so every range is repaired once and the cluster is never
    /// repairing on every node at once), each step logged.
    async fn repair_all(&self) -> Result<(), PassError> {
        let mut by_keyspace: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        for (keyspace, table) in self.tables {
            by_keyspace.entry(keyspace).or_default().push(table.clone());
        }
        let total = self.plan.pairs.len();
        for (i, (_, node)) in self.plan.pairs.iter().enumerate() {
            for (keyspace, tables) in &by_keyspace {
                let started = Instant::now();
                tracing::info!(
                    "repair {}/{total}: node {} keyspace {keyspace} ({} tables)",
                    i + 1,
                    node.agent.name,
                    tables.len()
                );
                let request = crate::agent::api::RepairRequest {
                    keyspace: (*keyspace).clone(),
                    tables: tables.clone(),
                };
                node.client.repair(&request).await.map_err(node.failed())?;
                tracing::info!(
                    "repair {}/{total}: node {} keyspace {keyspace} done in {:.1} s",
                    i + 1,
                    node.agent.name,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }

    /// Removes the staging areas and, when asked, the snapshots Cassandra
    /// took when it truncated; failures only warn (the data is restored).
    async fn clean_up(&self, truncated_at: Timestamp) {
        let staging = self.staging();
        let results = join_all(
            self.plan
                .pairs
                .iter()
                .map(|(_, n)| n.client.remove_staging(&staging)),
        )
        .await;
        for ((_, node), result) in self.plan.pairs.iter().zip(results) {
            if let Err(err) = result {
                tracing::warn!(node = %node.agent.name, error = %err, "could not remove the staging area");
            }
        }
        if self.config.mode == RestoreMode::Replace && self.config.clear_truncate_snapshots {
            for (_, node) in &self.plan.pairs {
                self.clear_truncate_snapshots(node, truncated_at).await;
            }
        }
    }

    /// Cassandra names them `truncated-<epoch millis>-<table>`.
    async fn clear_truncate_snapshots(&self, node: &Node, since: Timestamp) {
        let tags = match node.client.snapshot_tags().await {
            Ok(tags) => tags,
            Err(err) => {
                tracing::warn!(node = %node.agent.name, error = %err, "could not list snapshots");
                return;
            }
        };
        let since_ms = since.as_millisecond() - 1_000;
        for tag in tags {
            let Some(rest) = tag.strip_prefix("truncated-") else {
                continue;
            };
            let Some((millis, table)) = rest.split_once('-') else {
                continue;
            };
            let ours = millis.parse::<i64>().is_ok_and(|m| m >= since_ms)
                && self.tables.iter().any(|(_, t)| t == table);
            if ours && let Err(err) = node.client.clear_snapshot(&tag).await {
                tracing::warn!(node = %node.agent.name, %tag, error = %err, "could not clear a truncate snapshot");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassandra::cql::NodeTopology;
    use crate::coordinator::client::AgentClient;
    use crate::coordinator::discovery::AgentNode;

    fn live(host: u128, tokens: &[&str]) -> Node {
        Node {
            agent: AgentNode {
                name: format!("pod-{host}"),
                agent: "127.0.0.1:7300".into(),
                ip: "127.0.0.1".parse().unwrap(),
            },
            client: AgentClient::new("127.0.0.1:7300", "t"),
            data_dirs: vec![],
            topology: NodeTopology {
                host_id: uuid::Uuid::from_u128(host),
                datacenter: "dc1".into(),
                rack: "rack1".into(),
                tokens: tokens.iter().map(|t| t.to_string()).collect(),
                release_version: "5.0.9".into(),
            },
        }
    }

    fn backed_up(host: u128, tokens: &[&str]) -> NodeManifest {
        NodeManifest {
            format_version: 1,
            backup: "b".into(),
            cluster: "c".into(),
            datacenter: "dc1".into(),
            rack: "rack1".into(),
            host_id: uuid::Uuid::from_u128(host),
            address: "10.0.0.1".into(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            cassandra_version: "5.0.9".into(),
            snapshot_tag: "t".into(),
            snapshot_at: Timestamp::UNIX_EPOCH,
            data_dirs: vec![],
            files: vec![],
        }
    }

    #[test]
    fn nodes_map_by_host_id_then_by_tokens() {
        let nodes = [live(1, &["10", "20"]), live(2, &["30", "40"])];
        // Node 1 kept its host id; node 2 was rebuilt with the same tokens.
        let manifests = [backed_up(1, &["10", "20"]), backed_up(9, &["40", "30"])];
        let plan = map_nodes(&manifests, &nodes, true).unwrap();
        let hosts: Vec<u128> = plan
            .pairs
            .iter()
            .map(|(_, n)| n.topology.host_id.as_u128())
            .collect();
        assert_eq!(hosts, [1, 2]);
    }

    #[test]
    fn another_topology_is_refused_with_both_sides_named() {
        let nodes = [live(1, &["10"]), live(2, &["30"])];
        let other_tokens = [backed_up(7, &["11"]), backed_up(8, &["31"])];
        let err = map_nodes(&other_tokens, &nodes, true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("matches no live node by host id or tokens"),
            "{err}"
        );
        assert!(err.contains("pod-1"), "{err}");
        let fewer = [backed_up(1, &["10"])];
        let err = map_nodes(&fewer, &nodes, true).err().unwrap().to_string();
        assert!(
            err.contains("the backup has 1 nodes, the datacenter 2"),
            "{err}"
        );
    }
}
