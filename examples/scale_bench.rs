//! Scale benchmark driver for `scripts/bench-scale.sh`: what one node's
//! backup costs the agent — storage requests, bytes read, peak memory,
//! time — as the catalog grows and as the node's file count grows. No
//! Cassandra: the node is a fabricated data directory, snapshotted the way
//! Cassandra does it (hard links plus a fresh `manifest.json` and
//! `schema.cql` per table), and the real agent (its HTTP job API, upload
//! plan and storage layer) uploads it through a store wrapper that counts
//! every request. The coordinator's part of a pass (latest backup, node
//! manifest, presence check, commit) runs too, through its own counter.
//!
//!     scale_bench populate OBJECTS
//!         fills the catalog with OBJECTS objects of other nodes and of
//!         older backups (files/, blobs/, and 50 older complete backups)
//!     scale_bench node DIR TABLES GENERATIONS SIZE
//!         fabricates a node's live SSTables: TABLES tables × GENERATIONS
//!         SSTables × 8 components, Data.db of SIZE bytes (others small)
//!     scale_bench backup DIR STATE NAME
//!         snapshots DIR, runs the agent's upload job on it (digest cache
//!         in STATE), commits backup NAME as the coordinator does; prints
//!         one JSON line
//!
//! The store is configured by the usual `KASSETTE_STORAGE_*` variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use bytes::Bytes;
use clap::Parser;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kassette::agent::api::{PreviousManifest, UploadRequest};
use kassette::agent::{AgentState, serve};
use kassette::cassandra::control::{Control, Nodetool};
use kassette::catalog::{
    BackupManifest, Catalog, CatalogError, FORMAT_VERSION, Index, IndexEntry, Layout,
    NODE_MANIFEST_VERSION, NodeManifest, NodeSummary,
};
use kassette::cli::StorageArgs;
use kassette::config::StorageConfig;
use kassette::coordinator::client::{AgentClient, JobSpec};
use kassette::storage::{
    self, Digest, ObjectKey, ObjectMeta, PendingUpload, PutMode, Store, digest_of,
};

const CLUSTER: &str = "bench";
const DATACENTER: &str = "dc1";
const KEYSPACE: &str = "bench";
const TOKEN: &str = "scale-bench-token-0123456789";
/// The benchmarked node.
const HOST: uuid::Uuid = uuid::Uuid::from_u128(0x0005_ca1e_0000_0000_0000_0000_0000_0001);
const COMPONENTS: &[&str] = &[
    "Data.db",
    "Index.db",
    "Summary.db",
    "Filter.db",
    "Statistics.db",
    "CompressionInfo.db",
    "Digest.crc32",
    "TOC.txt",
];

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    Populate {
        objects: u64,
    },
    Node {
        dir: PathBuf,
        tables: u32,
        generations: u32,
        size: u64,
    },
    Backup {
        dir: PathBuf,
        state: PathBuf,
        name: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    match args.command {
        Command::Node {
            dir,
            tables,
            generations,
            size,
        } => fabricate_node(&dir, tables, generations, size),
        Command::Populate { objects } => {
            let config = StorageConfig::from_args(&args.storage)?;
            populate(&config, objects).await
        }
        Command::Backup { dir, state, name } => {
            let config = StorageConfig::from_args(&args.storage)?;
            backup(&config, &dir, &state, &name).await
        }
    }
}

fn table_dir(dir: &Path, table: u32) -> PathBuf {
    dir.join("data")
        .join(KEYSPACE)
        .join(format!("t{table}-{:032x}", table + 1))
}

/// Live SSTables of a fabricated node.
fn fabricate_node(dir: &Path, tables: u32, generations: u32, size: u64) -> Result<()> {
    for table in 0..tables {
        let live = table_dir(dir, table);
        std::fs::create_dir_all(&live)?;
        for generation in 1..=generations {
            for component in COMPONENTS {
                let len = if *component == "Data.db" { size } else { 64 };
                let seed = (u64::from(table) << 40) ^ (u64::from(generation) << 8) ^ len;
                let content = incompressible(seed ^ component.len() as u64, len as usize);
                std::fs::write(
                    live.join(format!("nb-{generation}-big-{component}")),
                    content,
                )?;
            }
        }
    }
    Ok(())
}

/// Bytes no compression shrinks (xorshift from `seed`).
fn incompressible(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Snapshot `tag` of every table, as Cassandra takes it: hard links to the
/// live files, and a fresh `manifest.json` (with its creation time) and
/// `schema.cql`.
fn snapshot(dir: &Path, tag: &str) -> Result<()> {
    let keyspace = dir.join("data").join(KEYSPACE);
    for table in std::fs::read_dir(&keyspace)? {
        let table = table?.path();
        let snap = table.join("snapshots").join(tag);
        std::fs::create_dir_all(&snap)?;
        let mut names = Vec::new();
        for file in std::fs::read_dir(&table)? {
            let file = file?;
            if file.file_type()?.is_file() {
                let name = file.file_name();
                std::fs::hard_link(file.path(), snap.join(&name))?;
                names.push(name.to_string_lossy().to_string());
            }
        }
        let manifest = serde_json::json!({
            "files": names,
            "created_at": jiff::Timestamp::now().to_string(),
        });
        std::fs::write(snap.join("manifest.json"), manifest.to_string())?;
        let name = table
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        std::fs::write(
            snap.join("schema.cql"),
            format!("CREATE TABLE IF NOT EXISTS {KEYSPACE}.{name} (id int PRIMARY KEY);\n"),
        )?;
    }
    Ok(())
}

fn remove_snapshot(dir: &Path, tag: &str) -> Result<()> {
    let keyspace = dir.join("data").join(KEYSPACE);
    for table in std::fs::read_dir(&keyspace)? {
        let snap = table?.path().join("snapshots").join(tag);
        if snap.exists() {
            std::fs::remove_dir_all(snap)?;
        }
    }
    Ok(())
}

fn layout() -> Layout {
    Layout::new(CLUSTER, DATACENTER).expect("valid names")
}

/// Fills the catalog with `objects` objects that are not the benchmarked
/// node's: 90 % files of other nodes' older backups under `files/`, 10 %
/// content-addressed blobs, plus 50 older complete backups (manifests and
/// the index) of 3 other nodes.
async fn populate(config: &StorageConfig, objects: u64) -> Result<()> {
    let store = storage::open(config).await?;
    let layout = layout();
    let catalog = Catalog::new(store.clone(), layout.clone());
    let mut entries = Vec::new();
    const BACKUPS: u64 = 50;
    for b in 0..BACKUPS {
        let name = format!("old-{b:03}");
        let at: jiff::Timestamp = jiff::Timestamp::from_second(1_600_000_000 + b as i64 * 86_400)?;
        let mut nodes = Vec::new();
        for n in 0..3u128 {
            let node = NodeManifest {
                format_version: NODE_MANIFEST_VERSION,
                backup: name.clone(),
                cluster: CLUSTER.into(),
                datacenter: DATACENTER.into(),
                rack: "r1".into(),
                host_id: uuid::Uuid::from_u128(0x000a_11ce_0000 + n),
                address: format!("10.0.0.{n}"),
                tokens: vec![],
                cassandra_version: "5.0.9".into(),
                snapshot_tag: name.clone(),
                snapshot_at: at,
                data_dirs: vec!["/data".into()],
                files: vec![],
            };
            let manifest_blake3 = catalog.put_node_manifest(&node).await?;
            nodes.push(NodeSummary {
                host_id: node.host_id,
                address: node.address,
                rack: node.rack,
                snapshot_at: at,
                files: 0,
                bytes: 0,
                manifest_blake3,
                uploaded_files: 0,
                uploaded_bytes: 0,
                read_bytes: 0,
            });
        }
        let manifest = BackupManifest {
            format_version: FORMAT_VERSION,
            name: name.clone(),
            cluster: CLUSTER.into(),
            datacenter: DATACENTER.into(),
            kassette_version: "bench".into(),
            started_at: at,
            finished_at: at,
            snapshot_skew_ms: 0,
            schema_cql: String::new(),
            roles: None,
            keyspaces: vec![KEYSPACE.into()],
            nodes,
            files: 0,
            bytes: 0,
            uploaded_bytes: 0,
            uploaded_files: 0,
        };
        catalog.commit(&manifest).await?;
        entries.push(IndexEntry::from(&manifest));
    }
    catalog.put_index(&Index::new(entries)).await?;
    let keys = (0..objects).map(|i| {
        if i % 10 == 9 {
            layout.blob(&digest_of(&i.to_le_bytes()))
        } else {
            let host = uuid::Uuid::from_u128(0x000a_11ce_0000 + u128::from(i % 3));
            let prefix = layout.new_files(
                &host,
                &format!("old-{:03}", (i / 3) % BACKUPS),
                "backup-00000000000000ff",
            )?;
            layout.relative_key(&format!(
                "{prefix}/0/{KEYSPACE}/t{}-{:032x}/nb-{i}-big-Data.db",
                i % 40,
                i % 40 + 1
            ))
        }
    });
    futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move {
                store
                    .put_bytes(&key?, Bytes::from_static(b"x"), PutMode::Overwrite)
                    .await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    println!("{{\"populated\": {}}}", objects + BACKUPS * 4 + 1);
    Ok(())
}

/// A store that counts the requests made through it (a measuring wrapper
/// around a real store, not a test double: every call goes to `inner`).
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Store>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    listed: AtomicU64,
}

impl Counting {
    fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            counts: Mutex::new(BTreeMap::new()),
            listed: AtomicU64::new(0),
        })
    }

    fn count(&self, what: &'static str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(what).or_default() += 1;
        }
    }

    /// Requests by kind; a listing counts one request per 1,000 keys (at
    /// least one), as S3 pages it.
    fn requests(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = self.counts.lock().map(|c| c.clone()).unwrap_or_default();
        if let Some(lists) = counts.get_mut("list") {
            *lists = (*lists).max(self.listed.load(Ordering::Relaxed).div_ceil(1000));
        }
        counts
    }

    fn total(&self) -> u64 {
        self.requests().values().sum()
    }
}

#[async_trait]
impl Store for Counting {
    async fn put_file(&self, key: &ObjectKey, path: &Path) -> storage::Result<Digest> {
        self.count("put");
        self.inner.put_file(key, path).await
    }

    async fn get_file(
        &self,
        key: &ObjectKey,
        dest: &Path,
        expected: &Digest,
    ) -> storage::Result<()> {
        self.count("get");
        self.inner.get_file(key, dest, expected).await
    }

    async fn put_bytes(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> storage::Result<()> {
        self.count("put");
        self.inner.put_bytes(key, data, mode).await
    }

    async fn get_bytes(&self, key: &ObjectKey) -> storage::Result<Bytes> {
        self.count("get");
        self.inner.get_bytes(key).await
    }

    async fn head(&self, key: &ObjectKey) -> storage::Result<Option<ObjectMeta>> {
        self.count("head");
        self.inner.head(key).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, storage::Result<ObjectMeta>> {
        self.count("list");
        self.inner
            .list(prefix)
            .inspect(|_| {
                self.listed.fetch_add(1, Ordering::Relaxed);
            })
            .boxed()
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> storage::Result<()> {
        self.count("delete");
        self.inner.delete_many(keys).await
    }

    async fn stale_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> storage::Result<Vec<PendingUpload>> {
        self.count("list");
        self.inner.stale_uploads(prefix, older_than).await
    }

    async fn abort_upload(&self, upload: &PendingUpload) -> storage::Result<()> {
        self.count("delete");
        self.inner.abort_upload(upload).await
    }
}

/// A line of `/proc/self/status` or `/proc/self/io`, as a number.
fn proc_value(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// One backup of the fabricated node: the agent's upload (counted), then
/// the coordinator's part for this node (counted apart).
async fn backup(config: &StorageConfig, dir: &Path, state: &Path, name: &str) -> Result<()> {
    let store = storage::open(config).await?;
    let layout = layout();
    let tag = format!("kassette-bench-{name}");
    snapshot(dir, &tag)?;
    let coordinator = Counting::new(store.clone());
    let catalog = Catalog::new(coordinator.clone(), layout.clone());
    let previous = match catalog.backup_manifest("latest").await {
        Ok(backup) => Some(backup),
        Err(CatalogError::NoBackups) => None,
        Err(err) => return Err(err.into()),
    };
    let previous_nodes = match &previous {
        Some(backup) => catalog.node_manifests(backup).await?,
        None => Vec::new(),
    };
    let previous_manifest = previous.as_ref().and_then(|b| {
        let summary = b.nodes.iter().find(|n| n.host_id == HOST)?;
        let key = layout.node_manifest(&b.name, &HOST).ok()?;
        Some(PreviousManifest {
            key: layout.relative(key.as_str())?.to_string(),
            manifest_blake3: summary.manifest_blake3.clone(),
        })
    });

    let agent_store = Counting::new(store.clone());
    std::fs::create_dir_all(state)?;
    let token_file = state.join("token");
    std::fs::write(&token_file, TOKEN)?;
    let agent = AgentState::new(
        TOKEN.as_bytes(),
        vec![dir.join("data")],
        Control::Nodetool(Nodetool::new("false")),
        agent_store.clone(),
        state.join("digests.json"),
        config.limits.concurrency as usize,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(serve(listener, agent, std::future::pending()));
    let client = AgentClient::new(&address, TOKEN)?;
    // A 1 s heartbeat: the client polls every 100 ms at most, so the job's
    // end is seen within 100 ms of it.
    let job = JobSpec::new_pass("backup", Duration::from_secs(1));
    let request = UploadRequest {
        tag: tag.clone(),
        cluster: CLUSTER.into(),
        datacenter: DATACENTER.into(),
        files_prefix: Some(layout.new_files(&HOST, name, &job.pass)?),
        previous: previous_manifest,
    };
    let rss_before_kib = proc_value("status", "VmRSS");
    let rchar_before = proc_value("io", "rchar");
    let start = Instant::now();
    let report = client.upload(&job, &request).await.context("upload")?;
    let agent_seconds = start.elapsed().as_secs_f64();
    let rchar = proc_value("io", "rchar") - rchar_before;
    let peak_rss_kib = proc_value("status", "VmHWM");
    let agent_requests = agent_store.requests();
    let agent_total = agent_store.total();

    // The coordinator's part for this node: node manifest, presence check,
    // commit, index.
    let node = NodeManifest {
        format_version: NODE_MANIFEST_VERSION,
        backup: name.into(),
        cluster: CLUSTER.into(),
        datacenter: DATACENTER.into(),
        rack: "r1".into(),
        host_id: HOST,
        address: "127.0.0.1".into(),
        tokens: vec![],
        cassandra_version: "5.0.9".into(),
        snapshot_tag: tag.clone(),
        snapshot_at: jiff::Timestamp::now(),
        data_dirs: vec![dir.join("data").display().to_string()],
        files: report.files.clone(),
    };
    let trusted = previous_nodes
        .iter()
        .flat_map(|n| &n.files)
        .map(|f| layout.content(f))
        .collect::<Result<_, _>>()?;
    kassette::coordinator::inspect::check_presence(&catalog, std::slice::from_ref(&node), &trusted)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let manifest_blake3 = catalog.put_node_manifest(&node).await?;
    let now = jiff::Timestamp::now();
    let manifest = BackupManifest {
        format_version: FORMAT_VERSION,
        name: name.into(),
        cluster: CLUSTER.into(),
        datacenter: DATACENTER.into(),
        kassette_version: "bench".into(),
        started_at: now,
        finished_at: now,
        snapshot_skew_ms: 0,
        schema_cql: String::new(),
        roles: None,
        keyspaces: vec![KEYSPACE.into()],
        nodes: vec![NodeSummary {
            host_id: HOST,
            address: node.address.clone(),
            rack: node.rack.clone(),
            snapshot_at: node.snapshot_at,
            files: node.files.len() as u64,
            bytes: node.bytes(),
            manifest_blake3,
            uploaded_files: report.uploaded_files,
            uploaded_bytes: report.uploaded_bytes,
            read_bytes: report.hashed_bytes,
        }],
        files: node.files.len() as u64,
        bytes: node.bytes(),
        uploaded_bytes: report.uploaded_bytes,
        uploaded_files: report.uploaded_files,
    };
    catalog.commit(&manifest).await?;
    catalog.add_to_index(&manifest).await?;
    let seconds = start.elapsed().as_secs_f64();
    remove_snapshot(dir, &tag)?;
    if report.files.is_empty() {
        bail!("the snapshot had no files");
    }
    let new_data_bytes: u64 = report
        .files
        .iter()
        .filter(|f| f.blob.as_deref().is_some_and(|b| b.contains(&job.pass)))
        .filter(|f| !matches!(f.path.as_str(), "manifest.json" | "schema.cql"))
        .map(|f| f.digest.size)
        .sum();
    let line = serde_json::json!({
        "name": name,
        "files": report.files.len(),
        "bytes": report.bytes,
        "reused_files": report.reused_files,
        "uploaded_files": report.uploaded_files,
        "uploaded_bytes": report.uploaded_bytes,
        "new_data_bytes": new_data_bytes,
        "read_bytes": report.hashed_bytes,
        "process_rchar": rchar,
        "agent_requests": agent_requests,
        "agent_requests_total": agent_total,
        "coordinator_requests": coordinator.requests(),
        "coordinator_requests_total": coordinator.total(),
        "agent_seconds": agent_seconds,
        "seconds": seconds,
        "rss_before_kib": rss_before_kib,
        "peak_rss_kib": peak_rss_kib,
    });
    println!("{line}");
    Ok(())
}
