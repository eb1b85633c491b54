//! `kassette restore`: bring a datacenter's tables back to the state of a
//! backup, online, and exit 0 only when they are.
//!
//! First a [`RestorePlan`] is computed — a plain value, printed at the start
//! and unit-tested without a cluster: which live node receives which backup
//! node's files, which tables, what each node downloads, what is truncated.
//! Then it is carried out, in this order (nothing live changes before step
//! 6, nothing is destroyed before step 7):
//!
//! 1. resolve the backup (`latest` = the newest complete one) and read its
//!    node manifests, each checked against the BLAKE3 the backup manifest
//!    records, and every blob they reference present with its size (one
//!    listing) — an incomplete, unknown or damaged backup is refused, even
//!    when an earlier attempt staged copies of what is now missing;
//! 2. reach every node, check each agent writes to this catalog's store and
//!    the datacenter is whole;
//! 3. plan: adapt the backed-up schema to the target datacenter (its
//!    replication rewritten when the backup is another datacenter's, see
//!    [`recovery`]); choose the tables (`KASSETTE_KEYSPACES`,
//!    `KASSETTE_TABLES`; system keyspaces never), map backup nodes to live
//!    nodes by host id, else by identical token sets (`tokens` in the same
//!    cluster and datacenter, `pinned tokens` in another) — refusing a
//!    different topology. A dry run prints the plan and stops here;
//! 4. take the lease (a purge must not delete blobs being restored); remove
//!    the staging areas earlier restores of other backups left;
//! 5. every agent downloads its node's files into staging, verified;
//! 6. create the missing schema (never altering or dropping anything);
//! 7. **the point of no return**: replace mode truncates each table once,
//!    cluster-wide; every agent imports its staged SSTables (linked from
//!    staging, which stays whole). From here the pass finishes even if its
//!    lease cannot be renewed (the blobs are all staged: no purge can hurt
//!    it), and if it cannot finish, a re-run with the same backup completes
//!    it from the staged files without downloading again;
//! 8. when asked, a full primary-range repair of the restored tables,
//!    node by node;
//! 9. remove the staging areas and, when asked, exactly the truncate
//!    snapshots this pass's truncates made.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use futures::future::{join_all, try_join_all};

use super::client::JobSpec;
use super::lease::Lease;
use super::nodes::{self, Node};
use super::{
    PassError, end_pass, new_pass, progress, recovery, release_lease, take_lease, with_lease,
};
use crate::agent::api::{
    DownloadReport, DownloadRequest, ImportReport, ImportRequest, TableRef, TableSnapshot,
};
use crate::agent::is_restored;
use crate::cassandra::cql::{Cql, SYSTEM_KEYSPACES};
use crate::cassandra::schema::{self, Object, Statement};
use crate::catalog::{BackupManifest, Catalog, FileEntry, NodeManifest};
use crate::config::{RestoreConfig, RestoreMode, vars};
use crate::k8s::{Events, Reason};

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
    /// This run completed an earlier one that stopped after its point of
    /// no return.
    pub completed_earlier_run: bool,
    /// The lease could not be renewed after the point of no return; the
    /// pass finished the import anyway.
    pub lease_lost_after_point_of_no_return: bool,
    /// Keyspaces whose replication was rewritten for the target datacenter.
    pub rewrites: Vec<String>,
    /// Keyspaces that exist with another replication, left as they are.
    pub replication_kept: Vec<String>,
    /// What was not restored (roles, views) and the consistency note.
    pub notes: Vec<String>,
    /// Only the plan was printed; nothing changed.
    pub dry_run: bool,
}

impl RestoreOutcome {
    /// The one-line summary a person reads (stdout, the `Completed` Event).
    pub fn summary(&self) -> String {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|(k, t)| format!("{k}.{t}"))
            .collect();
        format!(
            "restore of {} complete: {} tables ({}), {} files, {} imported ({} downloaded now){}, {:.1} s",
            self.backup,
            tables.len(),
            tables.join(", "),
            self.files,
            ByteSize(self.bytes),
            ByteSize(self.downloaded_bytes),
            if self.created.is_empty() {
                String::new()
            } else {
                format!("; recreated {}", self.created.join(", "))
            },
            self.duration.as_secs_f64()
        )
    }
}

/// Runs the pass, telling Kubernetes (Events on the Job, when running in
/// one) how it started, went and ended.
pub async fn run(config: &RestoreConfig) -> Result<RestoreOutcome, PassError> {
    let events = Events::connect(config.pod.as_ref()).await;
    events
        .post(
            Reason::Started,
            format!(
                "restore of backup {} into {}/{} ({} mode) starting",
                config.backup,
                config.cluster.cluster,
                config.cluster.datacenter,
                mode_name(config.mode)
            ),
        )
        .await;
    let result = pass(config, &events).await;
    match &result {
        Ok(outcome) => events.post(Reason::Completed, outcome.summary()).await,
        Err(err) => {
            let why = crate::storage::error_chain(err);
            let message = format!("restore of backup {}: {why}", config.backup);
            events.post(Reason::Failed, message).await;
        }
    }
    result
}

fn mode_name(mode: RestoreMode) -> &'static str {
    match mode {
        RestoreMode::Replace => "replace",
        RestoreMode::Merge => "merge",
    }
}

async fn pass(config: &RestoreConfig, events: &Events) -> Result<RestoreOutcome, PassError> {
    let start = Instant::now();
    // The source's catalog: the target's own unless KASSETTE_SOURCE_* say
    // otherwise. Its lease keeps a purge of the source from deleting blobs
    // being restored.
    let catalog = Catalog::open(&config.storage, &config.source).await?;
    let backup = catalog.backup_manifest(&config.backup).await?;
    let manifests = catalog.node_manifests(&backup).await?;
    super::inspect::check_complete(&catalog, &backup, &manifests).await?;
    let statements = schema::parse(&backup.schema_cql);
    let (live, cql) =
        nodes::whole_datacenter(&config.nodes, &config.cluster, &config.storage).await?;
    let first = live[0].cql_address(config.nodes.cql.port);
    let (statements, rewrites) =
        recovery::adapt_schema(statements, &backup, &config.cluster.datacenter, &cql, first)
            .await?;
    let plan = plan(&backup, &manifests, &statements, &Choice::of(config), &live)?;
    let keyspaces: BTreeSet<&String> = plan.tables.iter().map(|(k, _)| k).collect();
    let replication_kept = recovery::replication_kept(&statements, &keyspaces, &cql, first).await?;
    let views = recovery::skipped_views(&statements, &keyspaces);
    let notes = recovery::notes(&backup, &views, config.repair_after_restore);
    let missing = missing_schema(&statements, &plan.tables, &cql, first).await?;
    let rewrites: Vec<String> = rewrites.iter().map(|r| r.to_string()).collect();
    let text = plan_text(&plan, &missing, &rewrites, &replication_kept, config);
    if config.dry_run {
        println!("{text}");
        return Ok(RestoreOutcome {
            backup: backup.name.clone(),
            tables: plan.tables.iter().cloned().collect(),
            files: 0,
            bytes: 0,
            downloaded_bytes: 0,
            created: Vec::new(),
            duration: start.elapsed(),
            completed_earlier_run: false,
            lease_lost_after_point_of_no_return: false,
            rewrites: Vec::new(),
            replication_kept: Vec::new(),
            notes,
            dry_run: true,
        });
    }
    for line in text.lines() {
        tracing::info!("{line}");
    }
    let mut lease = take_lease(&catalog, "restore", config.pass.lock_ttl).await?;
    let job = new_pass("restore", config.pass.lock_ttl);
    events
        .post(
            Reason::LeaseTaken,
            format!(
                "lease of the catalog taken; backup {}, {} tables, {} nodes",
                backup.name,
                plan.tables.len(),
                live.len()
            ),
        )
        .await;
    let pass = Restore {
        config,
        plan: &plan,
        statements: &statements,
        live: &live,
        cql: &cql,
        job: &job,
        first,
        events,
    };
    let result = pass.run(&mut lease).await;
    // Whatever happened, no download or import of this pass outlives it.
    end_pass(&live, &job).await;
    release_lease(lease).await;
    let done = result?;
    Ok(RestoreOutcome {
        backup: backup.name.clone(),
        tables: plan.tables.iter().cloned().collect(),
        files: done.imports.iter().map(|r| r.files).sum(),
        bytes: done.imports.iter().map(|r| r.bytes).sum(),
        downloaded_bytes: done.downloads.iter().map(|r| r.downloaded_bytes).sum(),
        created: done.created,
        duration: start.elapsed(),
        completed_earlier_run: done.downloads.iter().any(|r| r.import_started_before),
        lease_lost_after_point_of_no_return: done.lease_lost,
        rewrites,
        replication_kept,
        notes,
        dry_run: false,
    })
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

/// The plan as `--dry-run` prints it and a real run logs it: the pure
/// [`RestorePlan`], then what depends on the target's live schema (what
/// is created, replication rewritten or kept) and the repair.
fn plan_text(
    plan: &RestorePlan,
    missing: &[String],
    rewrites: &[String],
    replication_kept: &[String],
    config: &RestoreConfig,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if config.dry_run {
        let _ = writeln!(out, "dry run: nothing changed");
    }
    let _ = write!(out, "{plan}");
    let _ = writeln!(
        out,
        "  into: {}/{}",
        config.cluster.cluster, config.cluster.datacenter
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

/// What the operator chose to restore, and how.
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a> {
    pub keyspaces: Option<&'a [String]>,
    pub tables: Option<&'a [(String, String)]>,
    pub mode: RestoreMode,
    pub clear_truncate_snapshots: bool,
    /// The backup is the target cluster's own (`KASSETTE_SOURCE_CLUSTER`
    /// unset or the same): a node matched by tokens was rebuilt with them
    /// rather than given them by `kassette pin-tokens`.
    pub same_cluster: bool,
}

impl<'a> Choice<'a> {
    pub fn of(config: &'a RestoreConfig) -> Self {
        Self {
            keyspaces: config.keyspaces.as_deref(),
            tables: config.tables.as_deref(),
            mode: config.mode,
            clear_truncate_snapshots: config.clear_truncate_snapshots,
            same_cluster: config.source.cluster == config.cluster.cluster,
        }
    }
}

/// Everything the restore will do, decided before it does any of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub backup: String,
    pub cluster: String,
    pub datacenter: String,
    pub mode: RestoreMode,
    /// The staging area's name on every node: the backup's, so a re-run
    /// with the same backup finds what an interrupted one staged.
    pub staging: String,
    pub tables: BTreeSet<(String, String)>,
    /// Truncated before the import (replace mode), in this order.
    pub truncate: Vec<(String, String)>,
    pub clear_truncate_snapshots: bool,
    pub nodes: Vec<NodePlan>,
}

/// One live node's share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    /// Index into the live nodes the plan was made from.
    pub live: usize,
    pub agent: String,
    pub live_host_id: uuid::Uuid,
    pub backup_host_id: uuid::Uuid,
    /// `host id`; `tokens` for a node of the same cluster and datacenter
    /// rebuilt with the same token set; `pinned tokens` for a node of
    /// another cluster or datacenter given the backed-up node's tokens by
    /// `kassette pin-tokens`.
    pub matched_by: &'static str,
    /// The SSTable components it downloads and imports.
    pub files: Vec<FileEntry>,
}

impl NodePlan {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.digest.size).sum()
    }
}

impl fmt::Display for RestorePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |tables: &mut dyn Iterator<Item = &(String, String)>| {
            tables
                .map(|(k, t)| format!("{k}.{t}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "restore plan: backup {} of {}/{}, {} mode, staging area {}",
            self.backup,
            self.cluster,
            self.datacenter,
            match self.mode {
                RestoreMode::Replace => "replace",
                RestoreMode::Merge => "merge",
            },
            self.staging
        )?;
        writeln!(
            f,
            "  tables ({}): {}",
            self.tables.len(),
            names(&mut self.tables.iter())
        )?;
        if self.truncate.is_empty() {
            writeln!(f, "  truncate: nothing")?;
        } else {
            writeln!(f, "  truncate: {}", names(&mut self.truncate.iter()))?;
        }
        for node in &self.nodes {
            writeln!(
                f,
                "  node {} (host id {}) receives backup node {} (matched by {}): {} files, {}",
                node.agent,
                node.live_host_id,
                node.backup_host_id,
                node.matched_by,
                node.files.len(),
                bytesize::ByteSize(node.bytes())
            )?;
        }
        Ok(())
    }
}

/// Computes the plan: tables, node mapping, each node's files, truncate
/// set. Pure: refuses (naming what) when the choice or topology does not
/// fit the backup.
pub fn plan(
    backup: &BackupManifest,
    manifests: &[NodeManifest],
    statements: &[Statement],
    choice: &Choice<'_>,
    live: &[Node],
) -> Result<RestorePlan, PassError> {
    let tables = select_tables(backup, statements, choice)?;
    let pairs = map_nodes(manifests, live, choice.same_cluster)?;
    let nodes = pairs
        .into_iter()
        .map(|(manifest, index, matched_by)| NodePlan {
            live: index,
            agent: live[index].agent.name.clone(),
            live_host_id: live[index].topology.host_id,
            backup_host_id: manifest.host_id,
            matched_by,
            files: manifest
                .files
                .iter()
                .filter(|f| is_restored(f))
                .filter(|f| tables.contains(&(f.keyspace.clone(), f.table.clone())))
                .cloned()
                .collect(),
        })
        .collect();
    let truncate = match choice.mode {
        RestoreMode::Replace => tables.iter().cloned().collect(),
        RestoreMode::Merge => Vec::new(),
    };
    Ok(RestorePlan {
        backup: backup.name.clone(),
        cluster: backup.cluster.clone(),
        datacenter: backup.datacenter.clone(),
        mode: choice.mode,
        staging: format!("restore-{}", backup.name),
        tables,
        truncate,
        clear_truncate_snapshots: choice.clear_truncate_snapshots
            && choice.mode == RestoreMode::Replace,
        nodes,
    })
}

/// The tables to restore: every user table the backed-up schema defines,
/// narrowed by the filters, which must name things the backup has.
fn select_tables(
    backup: &BackupManifest,
    statements: &[Statement],
    choice: &Choice<'_>,
) -> Result<BTreeSet<(String, String)>, PassError> {
    let defined: BTreeSet<(String, String)> = statements
        .iter()
        .filter(|s| s.object == Object::Table)
        .filter(|s| !SYSTEM_KEYSPACES.contains(&s.keyspace.as_str()))
        .map(|s| (s.keyspace.clone(), s.name.clone()))
        .collect();
    let mut chosen = defined.clone();
    if let Some(keyspaces) = choice.keyspaces {
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
    if let Some(tables) = choice.tables {
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

/// Maps every backup node to a live node (by index): by host id, else (a
/// rebuilt or pinned cluster) by identical token set. Anything else is a
/// different topology, which this pass refuses rather than attempts.
fn map_nodes<'a>(
    manifests: &'a [NodeManifest],
    live: &[Node],
    same_cluster: bool,
) -> Result<Vec<(&'a NodeManifest, usize, &'static str)>, PassError> {
    if manifests.len() != live.len() {
        return Err(PassError::Refused(format!(
            "the backup has {} nodes, the datacenter {}: restoring into another topology is not supported",
            manifests.len(),
            live.len()
        )));
    }
    let by_id: HashMap<uuid::Uuid, usize> = live
        .iter()
        .enumerate()
        .map(|(i, n)| (n.topology.host_id, i))
        .collect();
    let sorted = |tokens: &[String]| {
        let mut t = tokens.to_vec();
        t.sort();
        t
    };
    let by_tokens: HashMap<Vec<String>, usize> = live
        .iter()
        .enumerate()
        .map(|(i, n)| (sorted(&n.topology.tokens), i))
        .collect();
    let mut pairs = Vec::with_capacity(manifests.len());
    let mut used = BTreeSet::new();
    for manifest in manifests {
        let same_place = same_cluster
            && live
                .iter()
                .all(|n| n.topology.datacenter == manifest.datacenter);
        let by_tokens_rule = if same_place {
            "tokens"
        } else {
            "pinned tokens"
        };
        let found = by_id
            .get(&manifest.host_id)
            .map(|i| (*i, "host id"))
            .or_else(|| {
                by_tokens
                    .get(&sorted(&manifest.tokens))
                    .map(|i| (*i, by_tokens_rule))
            });
        let Some((index, matched_by)) = found else {
            return Err(PassError::Refused(format!(
                "backup node {} ({}, rack {}, {} tokens) matches no live node by host id or tokens; live nodes: {}. Restoring into another topology is not supported",
                manifest.host_id,
                manifest.address,
                manifest.rack,
                manifest.tokens.len(),
                live.iter()
                    .map(|n| format!(
                        "{} ({}, rack {})",
                        n.topology.host_id, n.agent.name, n.topology.rack
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if !used.insert(index) {
            return Err(PassError::Refused(format!(
                "two backup nodes map to live node {}",
                live[index].agent.name
            )));
        }
        pairs.push((manifest, index, matched_by));
    }
    Ok(pairs)
}

/// The truncate snapshots a restore's truncates made: present after them
/// and not before, of a truncated (keyspace, table), named as Cassandra
/// names them (`truncated-<millis>-<table>`). Nothing else — not another
/// keyspace's same-named table, not an earlier truncate's — so clearing
/// them removes no other safety net.
pub fn truncate_snapshots_made(
    before: &[TableSnapshot],
    after: &[TableSnapshot],
    truncated: &[(String, String)],
) -> Vec<TableSnapshot> {
    let before: BTreeSet<&TableSnapshot> = before.iter().collect();
    after
        .iter()
        .filter(|s| !before.contains(s))
        .filter(|s| truncated.contains(&(s.keyspace.clone(), s.table.clone())))
        .filter(|s| {
            s.tag
                .strip_prefix("truncated-")
                .and_then(|rest| rest.split_once('-'))
                .is_some_and(|(millis, table)| {
                    !millis.is_empty()
                        && millis.chars().all(|c| c.is_ascii_digit())
                        && table == s.table
                })
        })
        .cloned()
        .collect()
}

struct Restore<'a> {
    config: &'a RestoreConfig,
    plan: &'a RestorePlan,
    /// The backed-up schema, statement by statement.
    statements: &'a [Statement],
    live: &'a [Node],
    cql: &'a Cql,
    job: &'a JobSpec,
    first: std::net::SocketAddr,
    events: &'a Events,
}

/// What the carried-out plan reports.
struct Done {
    downloads: Vec<DownloadReport>,
    imports: Vec<ImportReport>,
    created: Vec<String>,
    lease_lost: bool,
}

impl Restore<'_> {
    async fn run(&self, lease: &mut Lease) -> Result<Done, PassError> {
        let (downloads, created) = with_lease(lease, self.prepare())
            .await
            .map_err(|e| self.before_point_of_no_return(e))?;
        if downloads.iter().any(|r| r.import_started_before) {
            tracing::warn!(backup = %self.plan.backup, "an earlier restore of this backup stopped after its point of no return; this run completes it from the staged files");
        }
        let (changed, lease_lost) =
            past_point_of_no_return(lease, self.truncate_and_import()).await;
        let (imports, ours) = changed.map_err(|e| self.after_point_of_no_return(e))?;
        // The data is restored: a repair that fails is reported, but the
        // staging areas are removed all the same.
        let repaired = if self.config.repair_after_restore {
            past_point_of_no_return(lease, self.repair_all()).await.0
        } else {
            Ok(())
        };
        self.clean_up(&ours).await;
        repaired.map_err(|e| {
            PassError::Failed(format!(
                "{e}. The tables are restored; the repair after the restore did not finish: repair them with `nodetool repair -full -pr` on each node"
            ))
        })?;
        Ok(Done {
            downloads,
            imports,
            created,
            lease_lost,
        })
    }

    /// Everything before the point of no return: stale staging removed,
    /// files staged and verified, missing schema created.
    async fn prepare(&self) -> Result<(Vec<DownloadReport>, Vec<String>), PassError> {
        self.remove_stale_staging().await;
        self.events
            .post(
                Reason::Download,
                format!(
                    "{} nodes downloading and verifying their files into staging",
                    self.plan.nodes.len()
                ),
            )
            .await;
        let downloads = self.download_all().await?;
        let files = downloads.iter().map(|r| r.files).sum::<u64>();
        let bytes = downloads.iter().map(|r| r.bytes).sum::<u64>();
        tracing::info!(
            files,
            bytes,
            "every node has its files staged and verified; changing the live cluster now"
        );
        self.events
            .post(
                Reason::Schema,
                format!(
                    "{files} files ({}) staged and verified on every node; creating the missing schema",
                    ByteSize(bytes)
                ),
            )
            .await;
        let created = self.create_missing_schema().await?;
        Ok((downloads, created))
    }

    /// The point of no return and after: truncate (replace), import.
    /// Returns the imports and the truncate snapshots the truncates made.
    async fn truncate_and_import(
        &self,
    ) -> Result<(Vec<ImportReport>, Vec<(usize, TableSnapshot)>), PassError> {
        let before = self.table_snapshots().await;
        if !self.plan.truncate.is_empty() {
            self.events
                .post(
                    Reason::Truncate,
                    format!("truncating {} tables", self.plan.truncate.len()),
                )
                .await;
        }
        for (keyspace, table) in &self.plan.truncate {
            self.cql.truncate(keyspace, table).await?;
            tracing::info!(%keyspace, %table, "truncated");
        }
        let ours = match before {
            Some(before) => self.truncate_snapshots_since(&before).await,
            None => Vec::new(),
        };
        self.events
            .post(
                Reason::Import,
                format!("importing on {} nodes", self.plan.nodes.len()),
            )
            .await;
        let imports = self.import_all().await?;
        Ok((imports, ours))
    }

    fn node(&self, index: usize) -> &Node {
        &self.live[self.plan.nodes[index].live]
    }

    /// A failure before the point of no return: the live tables are as
    /// they were; what was staged stays for a re-run.
    fn before_point_of_no_return(&self, err: PassError) -> PassError {
        PassError::Failed(format!(
            "{err}. Nothing live was truncated or imported. Files already staged stay in the agents' staging area {} for a re-run of this backup (see docs/restore.md, \"Staging\")",
            self.plan.staging
        ))
    }

    /// A failure after it: the tables may be partly restored; a re-run of
    /// the same backup completes them from the staged files.
    fn after_point_of_no_return(&self, err: PassError) -> PassError {
        PassError::Failed(format!(
            "{err}. The restore stopped after its point of no return (truncate or import begun), so the tables may be partly restored. The staged files are kept: run the restore again with {}={}; it completes the restore from them without downloading again",
            vars::BACKUP_NAME,
            self.plan.backup
        ))
    }

    /// Removes staging areas of other backups: under the lease no other
    /// restore runs, so they are leftovers of stopped ones (this restore's
    /// own area is kept: it resumes from it). Failures only warn.
    async fn remove_stale_staging(&self) {
        for node in self.live {
            let areas = match node.client.staging_areas().await {
                Ok(areas) => areas,
                Err(err) => {
                    tracing::warn!(node = %node.agent.name, error = %err, "could not list staging areas");
                    continue;
                }
            };
            for area in areas.iter().filter(|a| **a != self.plan.staging) {
                tracing::warn!(node = %node.agent.name, staging = %area, "removing the staging area an earlier restore left");
                if let Err(err) = node.client.remove_staging(area).await {
                    tracing::warn!(node = %node.agent.name, staging = %area, error = %err, "could not remove a staging area");
                }
            }
        }
    }

    async fn download_all(&self) -> Result<Vec<DownloadReport>, PassError> {
        let downloads = try_join_all(self.plan.nodes.iter().enumerate().map(|(i, share)| {
            let request = DownloadRequest {
                cluster: self.plan.cluster.clone(),
                datacenter: self.plan.datacenter.clone(),
                staging: self.plan.staging.clone(),
                files: share.files.clone(),
            };
            let node = self.node(i);
            async move {
                node.client
                    .download(self.job, &request)
                    .await
                    .map_err(node.failed())
            }
        }));
        let clients = self.live.iter().map(|n| n.client.clone()).collect();
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
        let tables = &self.plan.tables;
        let keyspaces: BTreeSet<&String> = tables.iter().map(|(k, _)| k).collect();
        let mut existing: HashMap<String, BTreeSet<String>> = HashMap::new();
        for keyspace in &keyspaces {
            let found = self.cql.tables(self.first, keyspace).await?;
            existing.insert((*keyspace).clone(), found.into_iter().collect());
        }
        let mut created = Vec::new();
        for statement in self.statements {
            if !keyspaces.contains(&statement.keyspace) {
                continue;
            }
            let wanted = match &statement.object {
                Object::Keyspace | Object::Type | Object::Function | Object::Aggregate => true,
                Object::Table => {
                    tables.contains(&(statement.keyspace.clone(), statement.name.clone()))
                }
                Object::Index { table } => {
                    tables.contains(&(statement.keyspace.clone(), table.clone()))
                }
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
            staging: self.plan.staging.clone(),
            tables: self
                .plan
                .tables
                .iter()
                .map(|(keyspace, table)| TableRef {
                    keyspace: keyspace.clone(),
                    table: table.clone(),
                })
                .collect(),
        };
        try_join_all((0..self.plan.nodes.len()).map(|i| {
            let (request, node) = (&request, self.node(i));
            async move {
                node.client
                    .import(self.job, request)
                    .await
                    .map_err(node.failed())
            }
        }))
        .await
    }

    /// A full repair of the restored tables, primary ranges, one node at a
    /// time (so every range is repaired once and the cluster is never
    /// repairing on every node at once), each step logged.
    async fn repair_all(&self) -> Result<(), PassError> {
        let mut by_keyspace: std::collections::BTreeMap<&String, Vec<String>> =
            std::collections::BTreeMap::new();
        for (keyspace, table) in &self.plan.tables {
            by_keyspace.entry(keyspace).or_default().push(table.clone());
        }
        let total = self.plan.nodes.len();
        for i in 0..total {
            let node = self.node(i);
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

    /// Every node's snapshots, when truncate snapshots are to be cleared
    /// (else `None`); a node that cannot list them turns clearing off —
    /// keeping a snapshot is safe, guessing is not.
    async fn table_snapshots(&self) -> Option<Vec<Vec<TableSnapshot>>> {
        if !self.plan.clear_truncate_snapshots || self.plan.truncate.is_empty() {
            return None;
        }
        let all = join_all(self.live.iter().map(|n| n.client.table_snapshots())).await;
        let mut lists = Vec::with_capacity(all.len());
        for (node, listed) in self.live.iter().zip(all) {
            match listed {
                Ok(list) => lists.push(list),
                Err(err) => {
                    tracing::warn!(node = %node.agent.name, error = %err, "could not list snapshots; the truncate snapshots will be kept");
                    return None;
                }
            }
        }
        Some(lists)
    }

    /// The truncate snapshots this pass's truncates made, by live node.
    async fn truncate_snapshots_since(
        &self,
        before: &[Vec<TableSnapshot>],
    ) -> Vec<(usize, TableSnapshot)> {
        let mut ours = Vec::new();
        for (index, (node, before)) in self.live.iter().zip(before).enumerate() {
            match node.client.table_snapshots().await {
                Ok(after) => ours.extend(
                    truncate_snapshots_made(before, &after, &self.plan.truncate)
                        .into_iter()
                        .map(|s| (index, s)),
                ),
                Err(err) => {
                    tracing::warn!(node = %node.agent.name, error = %err, "could not list snapshots; its truncate snapshots will be kept");
                }
            }
        }
        ours
    }

    /// Removes the staging areas and, when asked, the truncate snapshots
    /// this pass made; failures only warn (the data is restored).
    async fn clean_up(&self, truncate_snapshots: &[(usize, TableSnapshot)]) {
        let staging = &self.plan.staging;
        let results = join_all(self.live.iter().map(|n| n.client.remove_staging(staging))).await;
        for (node, result) in self.live.iter().zip(results) {
            if let Err(err) = result {
                tracing::warn!(node = %node.agent.name, error = %err, "could not remove the staging area");
            }
        }
        for (index, snapshot) in truncate_snapshots {
            let node = &self.live[*index];
            match node
                .client
                .clear_snapshot_in(&snapshot.tag, &snapshot.keyspace)
                .await
            {
                Ok(()) => {
                    tracing::info!(node = %node.agent.name, tag = %snapshot.tag, keyspace = %snapshot.keyspace, "cleared the truncate snapshot")
                }
                Err(err) => {
                    tracing::warn!(node = %node.agent.name, tag = %snapshot.tag, error = %err, "could not clear a truncate snapshot")
                }
            }
        }
    }
}

/// Runs `work` past the point of no return: the lease is still renewed,
/// but a failed renewal no longer stops the work — stopping half-way would
/// leave tables truncated and empty, and with every file staged no purge
/// can take anything the work needs. Returns the work's result and whether
/// the lease was lost.
async fn past_point_of_no_return<T>(
    lease: &mut Lease,
    work: impl std::future::Future<Output = Result<T, PassError>>,
) -> (Result<T, PassError>, bool) {
    let every = (lease.ttl() / 3).max(Duration::from_secs(1));
    let lost = std::sync::atomic::AtomicBool::new(false);
    let renewals = async {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticker.tick().await;
            if let Err(err) = lease.renew().await {
                tracing::warn!(error = %err, "the lease could not be renewed after the point of no return; finishing the import of the staged files anyway");
                lost.store(true, std::sync::atomic::Ordering::Relaxed);
                if matches!(err, super::lease::LeaseError::Lost { .. }) {
                    // Someone else holds it now: renewing again cannot help.
                    return std::future::pending::<()>().await;
                }
            }
        }
    };
    let result = tokio::select! {
        result = work => result,
        () = renewals => unreachable_renewals(),
    };
    (result, lost.load(std::sync::atomic::Ordering::Relaxed))
}

/// The renewal loop of [`past_point_of_no_return`] never ends on its own.
fn unreachable_renewals<T>() -> Result<T, PassError> {
    Err(PassError::Failed("the lease renewal loop ended".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassandra::cql::NodeTopology;
    use crate::coordinator::client::AgentClient;
    use crate::coordinator::discovery::AgentNode;
    use jiff::Timestamp;

    fn live(host: u128, tokens: &[&str]) -> Node {
        Node {
            agent: AgentNode {
                name: format!("pod-{host}"),
                agent: "127.0.0.1:7300".into(),
                ip: "127.0.0.1".parse().unwrap(),
            },
            client: AgentClient::new("127.0.0.1:7300", "t").unwrap(),
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
        let pairs = map_nodes(&manifests, &nodes, true).unwrap();
        let hosts: Vec<(u128, &str)> = pairs
            .iter()
            .map(|(_, i, by)| (nodes[*i].topology.host_id.as_u128(), *by))
            .collect();
        assert_eq!(hosts, [(1, "host id"), (2, "tokens")]);
        // The same tokens given by `kassette pin-tokens` to another
        // cluster's node.
        let pinned = map_nodes(&manifests, &nodes, false).unwrap();
        assert_eq!(pinned[1].2, "pinned tokens");
        assert_eq!(pinned[0].2, "host id");
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

    fn file(keyspace: &str, table: &str, path: &str, size: u64) -> FileEntry {
        FileEntry {
            keyspace: keyspace.into(),
            table: table.into(),
            table_id: "0123456789abcdef0123456789abcdef".into(),
            path: path.into(),
            data_dir: 0,
            digest: crate::storage::Digest {
                size,
                blake3: [size as u8; 32],
                crc32c: 0,
            },
            blob: None,
        }
    }

    fn manifest_with_schema() -> BackupManifest {
        BackupManifest {
            format_version: 1,
            name: "nightly".into(),
            cluster: "c".into(),
            datacenter: "dc1".into(),
            kassette_version: "0".into(),
            started_at: Timestamp::UNIX_EPOCH,
            finished_at: Timestamp::UNIX_EPOCH,
            snapshot_skew_ms: 0,
            schema_cql: "CREATE KEYSPACE shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3};\n\n\
CREATE TABLE shop.users (id int PRIMARY KEY, email text);\n\n\
CREATE TABLE shop.orders (id int PRIMARY KEY);\n\n\
CREATE KEYSPACE other WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3};\n\n\
CREATE TABLE other.users (id int PRIMARY KEY);\n"
                .into(),
            keyspaces: vec!["shop".into(), "other".into()],
            files: 0,
            bytes: 0,
            uploaded_bytes: 0,
            uploaded_files: 0,
            nodes: vec![],
            roles: None,
        }
    }

    fn choice(mode: RestoreMode, tables: Option<&[(String, String)]>) -> Choice<'_> {
        Choice {
            keyspaces: None,
            tables,
            mode,
            clear_truncate_snapshots: true,
            same_cluster: true,
        }
    }

    #[test]
    fn the_plan_says_what_each_node_downloads_and_what_is_truncated() {
        let backup = manifest_with_schema();
        let statements = schema::parse(&backup.schema_cql);
        let nodes = [live(1, &["10"]), live(2, &["20"])];
        let mut first = backed_up(1, &["10"]);
        first.files = vec![
            file("shop", "users", "nb-1-big-Data.db", 100),
            file("shop", "users", "manifest.json", 5),
            file("shop", "users", ".idx/nb-1-big-Data.db", 7),
            file("shop", "orders", "nb-1-big-Data.db", 50),
            file("other", "users", "nb-1-big-Data.db", 30),
        ];
        let mut second = backed_up(9, &["20"]);
        second.files = vec![file("shop", "users", "nb-2-big-Data.db", 200)];
        let manifests = [second, first];
        let only_users = [("shop".to_string(), "users".to_string())];
        let plan = plan(
            &backup,
            &manifests,
            &statements,
            &choice(RestoreMode::Replace, Some(&only_users)),
            &nodes,
        )
        .unwrap();
        assert_eq!(plan.staging, "restore-nightly");
        assert_eq!(plan.truncate, only_users.to_vec());
        assert!(plan.clear_truncate_snapshots);
        // Backup node 9 was rebuilt as live node 2 (same tokens).
        assert_eq!(plan.nodes[0].live, 1);
        assert_eq!(plan.nodes[0].matched_by, "tokens");
        assert_eq!(plan.nodes[1].live, 0);
        // Only the chosen table's SSTable components: not the snapshot's
        // manifest, not index files, not the same-named table elsewhere.
        let paths: Vec<(&str, &str)> = plan.nodes[1]
            .files
            .iter()
            .map(|f| (f.keyspace.as_str(), f.path.as_str()))
            .collect();
        assert_eq!(paths, [("shop", "nb-1-big-Data.db")]);
        assert_eq!(plan.nodes[0].bytes(), 200);
        let printed = plan.to_string();
        assert!(printed.contains("tables (1): shop.users"), "{printed}");
        assert!(printed.contains("truncate: shop.users"), "{printed}");
        assert!(printed.contains("node pod-2 (host id"), "{printed}");
        assert!(
            printed.contains("matched by tokens): 1 files, 200 B"),
            "{printed}"
        );

        let merge = plan_merge(&backup, &manifests, &statements, &nodes);
        assert!(merge.truncate.is_empty());
        assert!(!merge.clear_truncate_snapshots);
        assert_eq!(merge.tables.len(), 3);
        assert!(merge.to_string().contains("truncate: nothing"));
    }

    fn plan_merge(
        backup: &BackupManifest,
        manifests: &[NodeManifest],
        statements: &[Statement],
        nodes: &[Node],
    ) -> RestorePlan {
        plan(
            backup,
            manifests,
            statements,
            &choice(RestoreMode::Merge, None),
            nodes,
        )
        .unwrap()
    }

    #[test]
    fn a_filter_naming_what_the_backup_lacks_is_refused() {
        let backup = manifest_with_schema();
        let statements = schema::parse(&backup.schema_cql);
        let nodes = [live(1, &["10"])];
        let manifests = [backed_up(1, &["10"])];
        let nope = [("shop".to_string(), "nope".to_string())];
        let err = plan(
            &backup,
            &manifests,
            &statements,
            &choice(RestoreMode::Replace, Some(&nope)),
            &nodes,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("KASSETTE_TABLES"), "{err}");
    }

    fn snap(tag: &str, keyspace: &str, table: &str) -> TableSnapshot {
        TableSnapshot {
            tag: tag.into(),
            keyspace: keyspace.into(),
            table: table.into(),
        }
    }

    #[test]
    fn only_the_truncate_snapshots_this_restore_made_are_cleared() {
        let truncated = [("shop".to_string(), "users".to_string())];
        let before = [
            snap("truncated-1000-users", "shop", "users"),
            snap("kassette-x", "shop", "users"),
        ];
        let after = [
            // An earlier truncate's: kept.
            snap("truncated-1000-users", "shop", "users"),
            snap("kassette-x", "shop", "users"),
            // Ours.
            snap("truncated-2000-users", "shop", "users"),
            // Another keyspace's same-named table, truncated meanwhile: kept.
            snap("truncated-2000-users", "other", "users"),
            // Not a truncate snapshot, or not of this table: kept.
            snap("manual-2000", "shop", "users"),
            snap("truncated-2000-orders", "shop", "users"),
            snap("truncated-x-users", "shop", "users"),
        ];
        assert_eq!(
            truncate_snapshots_made(&before, &after, &truncated),
            [snap("truncated-2000-users", "shop", "users")]
        );
        assert!(truncate_snapshots_made(&before, &after, &[]).is_empty());
    }
}
