//! The catalog commands against the real S3-compatible server (and a
//! directory), with catalogs written directly through the library — no
//! Cassandra needed: what `list`, `status`, `verify` and `purge` read and
//! write, `latest` after a crash between commit and index, a commit whose
//! response was lost, and the clean-up of what killed uploads leave.

mod common;

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::dc::{kassette_command, text};
use common::proxy::{Action, StorageProxy};
use common::setting;
use jiff::Timestamp;
use kassette::catalog::{
    BackupManifest, Catalog, FORMAT_VERSION, FileEntry, Layout, NodeManifest, NodeSummary,
};
use kassette::coordinator::lease::Lease;
use kassette::storage::{self, ObjectKey, PutMode, Store, digest_of};

const CLUSTER: &str = "prod";
const DC: &str = "dc1";

/// A fresh bucket (or directory) holding one datacenter's catalog.
struct Fixture {
    catalog: Catalog,
    env: Vec<(String, String)>,
    bucket: String,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    async fn s3() -> Self {
        let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
        Self::s3_via(&endpoint, &common::new_s3_bucket(&endpoint).await).await
    }

    /// The catalog in `bucket`, reached at `endpoint` (the server or a
    /// proxy in front of it).
    async fn s3_via(endpoint: &str, bucket: &str) -> Self {
        let credentials = setting("KASSETTE_TEST_S3_CREDENTIALS_FILE");
        let config = common::s3_storage_config(endpoint, bucket, &credentials, "");
        let store = storage::open(&config).await.unwrap();
        let env = vec![
            ("KASSETTE_STORAGE_PROVIDER", "s3".to_string()),
            ("KASSETTE_STORAGE_BUCKET", bucket.to_string()),
            ("KASSETTE_STORAGE_ENDPOINT", endpoint.to_string()),
            (
                "KASSETTE_STORAGE_REGION",
                setting("KASSETTE_TEST_S3_REGION"),
            ),
            ("KASSETTE_STORAGE_CREDENTIALS_FILE", credentials),
            ("KASSETTE_STORAGE_ALLOW_HTTP", "true".to_string()),
        ];
        Self::new(store, env, bucket, None)
    }

    fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            storage::local::LocalStore::new(dir.path(), "", storage::Limits::unlimited_for_tests())
                .unwrap(),
        );
        let env = vec![
            ("KASSETTE_STORAGE_PROVIDER", "local".to_string()),
            ("KASSETTE_STORAGE_PATH", dir.path().display().to_string()),
        ];
        Self::new(store, env, "", Some(dir))
    }

    fn new(
        store: Arc<dyn Store>,
        env: Vec<(&str, String)>,
        bucket: &str,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let mut env: Vec<(String, String)> =
            env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for (k, v) in [
            ("KASSETTE_CLUSTER", CLUSTER),
            ("KASSETTE_DATACENTER", DC),
            ("KASSETTE_LOCK_TTL", "3s"),
        ] {
            env.push((k.to_string(), v.to_string()));
        }
        Self {
            catalog: Catalog::new(store, layout()),
            env,
            bucket: bucket.to_string(),
            _dir: dir,
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.catalog.store()
    }

    async fn kassette(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        kassette_command()
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .output()
            .await
            .expect("run kassette")
    }

    /// Stores `content` as a blob; returns the file entry naming it.
    async fn blob(&self, content: &[u8]) -> FileEntry {
        let digest = digest_of(content);
        let key = layout().blob(&digest).unwrap();
        self.store()
            .put_bytes(&key, content.to_vec().into(), PutMode::Overwrite)
            .await
            .unwrap();
        FileEntry {
            keyspace: "shop".into(),
            table: "orders".into(),
            table_id: "5a1c395e0b1d11eeb7a6f9e9b4d5c1a2".into(),
            path: format!("nb-{}-big-Data.db", digest.blake3_hex()),
            data_dir: 0,
            digest,
            blob: None,
        }
    }

    /// Writes a complete backup `name` of `contents` started `hours_ago`,
    /// as a pass does up to its commit; the index is left alone.
    async fn commit(&self, name: &str, hours_ago: i64, contents: &[&[u8]]) -> BackupManifest {
        let mut files = Vec::new();
        for content in contents {
            files.push(self.blob(content).await);
        }
        let at = Timestamp::now() - jiff::SignedDuration::from_hours(hours_ago);
        let node = node_manifest(name, at, files);
        let manifest_blake3 = self.catalog.put_node_manifest(&node).await.unwrap();
        let manifest = backup_manifest(name, at, &node, manifest_blake3);
        self.catalog.commit(&manifest).await.unwrap();
        manifest
    }

    /// A backup a killed pass left: started record and a node manifest,
    /// no backup manifest.
    async fn killed(&self, name: &str, contents: &[&[u8]], run_id: Option<uuid::Uuid>) {
        let mut files = Vec::new();
        for content in contents {
            files.push(self.blob(content).await);
        }
        let node = node_manifest(name, Timestamp::now(), files);
        self.catalog.put_node_manifest(&node).await.unwrap();
        // As a kassette before sealed records wrote it (format version 1,
        // no seal): still read.
        let mut started = serde_json::json!({
            "format_version": 1,
            "name": name,
            "owner": "backup-job/7",
            "started_at": Timestamp::now().to_string(),
        });
        if let Some(run_id) = run_id {
            started["run_id"] = run_id.to_string().into();
        }
        let key = ObjectKey::new(format!(
            "kassette/v1/{CLUSTER}/{DC}/backups/{name}/started.json"
        ))
        .unwrap();
        self.store()
            .put_bytes(
                &key,
                serde_json::to_vec(&started).unwrap().into(),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
    }

    /// Every object with its size and modification time (what a write,
    /// even of identical bytes, changes).
    async fn state(&self) -> Vec<(String, u64, Option<std::time::SystemTime>)> {
        use futures::TryStreamExt;
        let mut all: Vec<_> = self
            .store()
            .list("")
            .map_ok(|o| (o.key.to_string(), o.size, o.last_modified))
            .try_collect()
            .await
            .unwrap();
        all.sort();
        all
    }

    async fn exists(&self, key: &ObjectKey) -> bool {
        self.store().head(key).await.unwrap().is_some()
    }
}

fn layout() -> Layout {
    Layout::new(CLUSTER, DC).unwrap()
}

fn node_manifest(name: &str, at: Timestamp, files: Vec<FileEntry>) -> NodeManifest {
    NodeManifest {
        format_version: FORMAT_VERSION,
        backup: name.to_string(),
        cluster: CLUSTER.into(),
        datacenter: DC.into(),
        rack: "rack1".into(),
        host_id: uuid::Uuid::nil(),
        address: "10.0.0.1".into(),
        tokens: vec!["0".into()],
        cassandra_version: "5.0.6".into(),
        snapshot_tag: format!("kassette-{name}"),
        snapshot_at: at,
        data_dirs: vec!["/var/lib/cassandra/data".into()],
        files,
    }
}

fn backup_manifest(
    name: &str,
    at: Timestamp,
    node: &NodeManifest,
    manifest_blake3: String,
) -> BackupManifest {
    BackupManifest {
        format_version: FORMAT_VERSION,
        name: name.to_string(),
        cluster: CLUSTER.into(),
        datacenter: DC.into(),
        kassette_version: "test".into(),
        started_at: at,
        finished_at: at + jiff::SignedDuration::from_secs(60),
        snapshot_skew_ms: 0,
        schema_cql: String::new(),
        keyspaces: vec!["shop".into()],
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
    }
}

fn success(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed:\n{}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listed(out: &Output) -> Vec<serde_json::Value> {
    let stdout = success(out, "list --json");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Defect 3 of issue 10: a pass that crashed between its commit and the
/// index update left a stale index; `latest` and `list` still follow the
/// committed backup manifests.
#[tokio::test]
async fn latest_and_list_follow_the_manifests_when_the_index_is_stale() {
    let f = Fixture::s3().await;
    let older = f.commit("older", 2, &[b"one"]).await;
    f.catalog.add_to_index(&older).await.unwrap();
    f.commit("newer", 1, &[b"two"]).await; // crash: index not updated
    let latest = f.catalog.backup_manifest("latest").await.unwrap();
    assert_eq!(latest.name, "newer");
    let names: Vec<_> = listed(&f.kassette(&["list", "--json"], &[]).await)
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["older", "newer"]);
    let status = f.kassette(&["status", "--json", "latest"], &[]).await;
    assert!(success(&status, "status latest").contains("\"newer\""));
}

/// Defect 4 of issue 10: `list`, `status` and `verify` write nothing — not
/// even the missing index they had to rebuild in memory.
#[tokio::test]
async fn read_only_commands_write_nothing() {
    let f = Fixture::s3().await;
    f.commit("only", 1, &[b"one", b"two"]).await; // no index yet
    f.killed("killed", &[b"three"], None).await;
    let before = f.state().await;
    success(&f.kassette(&["list"], &[]).await, "list");
    success(&f.kassette(&["list", "--json"], &[]).await, "list --json");
    success(&f.kassette(&["status", "latest"], &[]).await, "status");
    success(&f.kassette(&["verify", "latest"], &[]).await, "verify");
    success(
        &f.kassette(&["verify", "--deep", "only"], &[]).await,
        "verify --deep",
    );
    assert!(!f.exists(&layout().index().unwrap()).await, "index written");
    assert_eq!(f.state().await, before, "a read-only command wrote");
}

/// Defect 4 of issue 10: `purge --dry-run` takes no lease (it runs while
/// another pass holds it) and changes nothing, and prints its plan.
#[tokio::test]
async fn a_dry_run_purge_changes_nothing_and_takes_no_lease() {
    let f = Fixture::s3().await;
    f.commit("first", 3, &[b"a", b"shared"]).await;
    f.commit("second", 2, &[b"b", b"shared"]).await;
    f.killed("killed", &[b"c"], None).await;
    let holder = Lease::acquire(
        f.store().clone(),
        &layout(),
        "running-backup/1",
        "backup",
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let before = f.state().await;
    let out = f
        .kassette(
            &["purge", "--dry-run"],
            &[("KASSETTE_RETENTION_KEEP_LAST", "1")],
        )
        .await;
    let printed = success(&out, "purge --dry-run");
    assert!(printed.contains("first"), "{printed}");
    assert_eq!(f.state().await, before, "the dry run changed the store");
    holder
        .check()
        .await
        .expect("the holder still holds the lease");
}

/// Defect 15 of issue 10: `list` shows every backup with its status —
/// complete, incomplete (a killed pass), being written (the pass holding
/// the lease).
#[tokio::test]
async fn list_shows_every_backup_with_its_status() {
    let f = Fixture::s3().await;
    f.commit("done", 2, &[b"a"]).await;
    f.killed("killed", &[b"b"], None).await;
    let running = Lease::acquire(
        f.store().clone(),
        &layout(),
        "backup-job/7",
        "backup",
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    f.killed("running", &[b"c"], Some(running.record().run_id))
        .await;
    let entries = listed(&f.kassette(&["list", "--json"], &[]).await);
    let status = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("{name} not listed: {entries:?}"))
    };
    assert_eq!(status("done"), "complete");
    assert_eq!(status("killed"), "incomplete");
    assert_eq!(status("running"), "being_written");
    let table = success(&f.kassette(&["list"], &[]).await, "list");
    assert!(table.contains("being written"), "{table}");
    assert!(table.contains("incomplete"), "{table}");
}

/// Defect 5 of issue 10: the response to the successful create of the
/// backup manifest is lost; the retry finds it present. It is
/// byte-identical to ours, so the commit succeeded. Someone else's
/// manifest under the name is still refused.
#[tokio::test]
async fn a_commit_whose_response_was_lost_is_still_committed() {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = common::new_s3_bucket(&endpoint).await;
    let proxy = StorageProxy::start(&endpoint).await;
    let mut lost = false;
    proxy.rule(move |seen| {
        (seen.is_conditional_put() && seen.uri.contains("/backup.json") && !lost).then(|| {
            lost = true;
            Action {
                lose_response: true,
                ..Action::default()
            }
        })
    });
    let f = Fixture::s3_via(&proxy.url, &bucket).await;
    let manifest = f.commit("nightly", 1, &[b"data"]).await;
    assert!(
        proxy
            .seen()
            .iter()
            .filter(|s| s.is_conditional_put() && s.uri.contains("/backup.json"))
            .count()
            >= 2,
        "the proxy did not make the store retry"
    );
    let mut other = manifest.clone();
    other.finished_at = Timestamp::now();
    assert!(f.catalog.commit(&other).await.is_err(), "a second commit");
}

/// Defect 9 of issue 10: purge cleans up what killed uploads leave under
/// its prefix, once older than the lease TTL: temporary files of a
/// directory store, multipart uploads of S3 (MinIO lists those only by
/// exact key, so against it the test checks purge asks for them by the
/// catalog's prefix).
#[tokio::test]
async fn purge_cleans_up_uploads_killed_passes_left() {
    let f = Fixture::local();
    f.commit("only", 1, &[b"a"]).await;
    let root = f
        ._dir
        .as_ref()
        .unwrap()
        .path()
        .join("kassette/v1/prod/dc1/blobs/ab");
    std::fs::create_dir_all(&root).unwrap();
    let stale = root.join(".abcd.kassette-tmp-00000000000000aa");
    let fresh = root.join(".abce.kassette-tmp-00000000000000bb");
    for path in [&stale, &fresh] {
        std::fs::write(path, b"partial").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    success(&f.kassette(&["purge"], &[]).await, "purge (local)");
    assert!(!stale.exists(), "a stale temporary file was left");
    assert!(
        fresh.exists(),
        "a fresh temporary file (a running upload?) went"
    );

    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = common::new_s3_bucket(&endpoint).await;
    let proxy = StorageProxy::start(&endpoint).await;
    let s3 = Fixture::s3_via(&proxy.url, &bucket).await;
    s3.commit("only", 1, &[b"a"]).await;
    success(&s3.kassette(&["purge"], &[]).await, "purge (s3)");
    let asked = proxy.seen().iter().any(|s| {
        s.method == "GET"
            && s.uri.contains("uploads")
            && (s.uri.contains("prefix=kassette%2Fv1%2Fprod%2Fdc1")
                || s.uri.contains("prefix=kassette/v1/prod/dc1"))
    });
    assert!(
        asked,
        "purge never listed the multipart uploads under its prefix"
    );
    let _ = &s3.bucket;
}
