//! Storage-format compatibility: a backup written in format version 1 —
//! content-addressed blobs `blobs/<b3[0..2]>/<b3>` from a real snapshot of
//! the real 3-node cluster, version 1 node manifests without `blob`, a
//! version 1 backup manifest — is restored by this build, and a backup
//! taken after it references its blobs (node manifest version 2 mixing
//! both key kinds) and survives a purge of it.
//!
//! The version 1 backup is made from a real pass: its objects are moved to
//! their content-addressed keys and its records rewritten with exactly the
//! version 1 fields (a whitelist, so nothing a newer build adds slips in),
//! serialised as the version 1 writer did (`serde_json` pretty).

mod common;

use common::dataset::Dataset;
use common::dc::{Datacenter, StoreKind, assert_success, backup_name, text};
use common::{cql_cluster, setting};
use futures::TryStreamExt;
use kassette::catalog::{Catalog, Layout};
use kassette::storage::{self, PutMode, Store};
use serde_json::{Map, Value};

const ROWS: i32 = 200;
/// A lease TTL that a loaded machine's slow renewals do not run out (the
/// shared default of 3 s is meant for the lease tests).
const TTL: (&str, &str) = ("KASSETTE_LOCK_TTL", "30s");

/// `kassette ARGS` with `env` and [`TTL`], which must succeed.
async fn kassette(dc: &Datacenter, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut env = env.to_vec();
    env.push(TTL);
    let out = dc.kassette(args, &env).await;
    assert_success(&out, &args.join(" "));
    out
}

async fn backup(dc: &Datacenter, name: &str, data: &Dataset) {
    let keyspaces = data.keyspaces().join(",");
    kassette(
        dc,
        &["backup"],
        &[
            ("KASSETTE_BACKUP_NAME", name),
            ("KASSETTE_KEYSPACES", &keyspaces),
        ],
    )
    .await;
}
const PAYLOAD: usize = 256;

fn layout() -> Layout {
    Layout::new(
        &setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        &setting("KASSETTE_TEST_CASSANDRA_DC"),
    )
    .unwrap()
}

/// `value` with only the `fields` named (those present).
fn only(value: &Value, fields: &[&str]) -> Value {
    let mut kept = Map::new();
    for field in fields {
        if let Some(v) = value.get(*field) {
            kept.insert((*field).to_string(), v.clone());
        }
    }
    Value::Object(kept)
}

const V1_FILE: &[&str] = &[
    "keyspace", "table", "table_id", "path", "data_dir", "size", "blake3", "crc32c",
];
const V1_NODE: &[&str] = &[
    "format_version",
    "backup",
    "cluster",
    "datacenter",
    "rack",
    "host_id",
    "address",
    "tokens",
    "cassandra_version",
    "snapshot_tag",
    "snapshot_at",
    "data_dirs",
    "files",
];
const V1_SUMMARY: &[&str] = &[
    "host_id",
    "address",
    "rack",
    "snapshot_at",
    "files",
    "bytes",
    "manifest_blake3",
    "uploaded_files",
    "uploaded_bytes",
    "read_bytes",
];
const V1_BACKUP: &[&str] = &[
    "format_version",
    "name",
    "cluster",
    "datacenter",
    "kassette_version",
    "started_at",
    "finished_at",
    "snapshot_skew_ms",
    "schema_cql",
    "roles",
    "keyspaces",
    "nodes",
    "files",
    "bytes",
    "uploaded_bytes",
    "uploaded_files",
];

/// Rewrites backup `name` as the version 1 writer stored it: every file's
/// content at its content-addressed key (and nowhere else), version 1 node
/// manifests and backup manifest; the index (a cache) removed.
async fn rewrite_as_version_1(store: &std::sync::Arc<dyn Store>, name: &str) {
    let layout = layout();
    let catalog = Catalog::new(store.clone(), layout.clone());
    let backup = catalog
        .backup_manifest(name)
        .await
        .expect("backup manifest");
    let nodes = catalog
        .node_manifests(&backup)
        .await
        .expect("node manifests");
    let scratch = tempfile::tempdir().unwrap();
    let mut blake3_by_host = std::collections::HashMap::new();
    let mut moved = Vec::new();
    for node in &nodes {
        let mut files = Vec::new();
        for (i, file) in node.files.iter().enumerate() {
            let from = layout.content(file).unwrap();
            let local = scratch.path().join(format!("{}-{i}", node.host_id));
            store
                .get_file(&from, &local, &file.digest)
                .await
                .expect("download");
            let sent = store
                .put_file(&layout.blob(&file.digest).unwrap(), &local)
                .await
                .expect("upload blob");
            assert_eq!(sent, file.digest);
            if file.blob.is_some() {
                moved.push(from);
            }
            files.push(only(&serde_json::to_value(file).unwrap(), V1_FILE));
        }
        let mut value = only(&serde_json::to_value(node).unwrap(), V1_NODE);
        value["format_version"] = 1.into();
        value["files"] = Value::Array(files);
        let bytes = serde_json::to_vec_pretty(&value).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("\"blob\""));
        blake3_by_host.insert(node.host_id, storage::digest_of(&bytes).blake3_hex());
        store
            .put_bytes(
                &layout.node_manifest(name, &node.host_id).unwrap(),
                bytes.into(),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
    }
    store.delete_many(&moved).await.unwrap();
    let stored = store
        .get_bytes(&layout.backup_manifest(name).unwrap())
        .await
        .unwrap();
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    let mut value = only(&stored, V1_BACKUP);
    value["format_version"] = 1.into();
    let summaries: Vec<Value> = stored["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|summary| {
            let mut summary = only(summary, V1_SUMMARY);
            let host: uuid::Uuid = serde_json::from_value(summary["host_id"].clone()).unwrap();
            summary["manifest_blake3"] = blake3_by_host[&host].clone().into();
            summary
        })
        .collect();
    value["nodes"] = Value::Array(summaries);
    store
        .put_bytes(
            &layout.backup_manifest(name).unwrap(),
            serde_json::to_vec_pretty(&value).unwrap().into(),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    store.delete_many(&[layout.index().unwrap()]).await.unwrap();
}

async fn objects_under(store: &std::sync::Arc<dyn Store>, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .map_ok(|o| o.key.as_str().to_string())
        .try_collect()
        .await
        .unwrap()
}

async fn restore(dc: &Datacenter, name: &str, data: &Dataset) {
    let keyspaces = data.keyspaces().join(",");
    kassette(
        dc,
        &["restore"],
        &[
            ("KASSETTE_BACKUP_NAME", name),
            ("KASSETTE_KEYSPACES", &keyspaces),
        ],
    )
    .await;
}

/// Deletes rows, changes others, drops a table: what a restore undoes.
async fn damage(session: &scylla::client::session::Session, data: &Dataset) {
    for id in (0..ROWS).step_by(7) {
        session
            .query_unpaged(
                format!("DELETE FROM {}.users WHERE id = {id}", data.main),
                (),
            )
            .await
            .unwrap();
    }
    session
        .query_unpaged(format!("DROP TABLE {}.items", data.other), ())
        .await
        .unwrap();
    session.await_schema_agreement().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_backup_is_restored_and_its_blobs_are_reused() {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, ROWS / 2, PAYLOAD).await;
    data.flush();
    data.write(&session, ROWS / 2, ROWS, PAYLOAD).await;
    let dc = Datacenter::start(StoreKind::S3, &[]).await;
    let store = dc.store().await;
    let layout = layout();

    let old = backup_name("v1-");
    backup(&dc, &old, &data).await;
    rewrite_as_version_1(&store, &old).await;
    assert!(
        objects_under(&store, &layout.files_prefix())
            .await
            .is_empty(),
        "a version 1 backup has nothing under files/"
    );
    assert!(
        !objects_under(&store, &layout.blobs_prefix())
            .await
            .is_empty()
    );
    let raw = store
        .get_bytes(&layout.backup_manifest(&old).unwrap())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&raw).unwrap()["format_version"],
        1
    );

    // Listed, verified deeply and restored by this build.
    kassette(
        &dc,
        &["verify", "--deep"],
        &[("KASSETTE_BACKUP_NAME", &old)],
    )
    .await;
    damage(&session, &data).await;
    restore(&dc, &old, &data).await;
    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, ROWS, PAYLOAD)
    );
    assert_eq!(data.items(&session).await, Dataset::expected_items(0, ROWS));

    // A backup after it: version 2 node manifests; the files the version 1
    // backup holds are referenced at their content-addressed keys (no
    // `blob`), the new ones stored under files/.
    data.write(&session, ROWS, ROWS + 100, PAYLOAD).await;
    let new = backup_name("v2-");
    backup(&dc, &new, &data).await;
    let catalog = Catalog::new(store.clone(), layout.clone());
    let manifest = catalog.backup_manifest(&new).await.unwrap();
    let nodes = catalog.node_manifests(&manifest).await.unwrap();
    let (mut reused, mut sent) = (0, 0);
    for node in &nodes {
        assert_eq!(node.format_version, 2);
        for file in &node.files {
            match &file.blob {
                None => reused += 1,
                Some(_) => sent += 1,
            }
        }
    }
    assert!(reused > 0, "no version 1 blob was reused");
    assert!(sent > 0, "the new SSTables were not sent");

    // Purging the version 1 backup keeps every blob the new one uses.
    let purged = kassette(&dc, &["purge"], &[("KASSETTE_RETENTION_KEEP_LAST", "1")]).await;
    assert!(
        !catalog.is_complete(&old).await.unwrap(),
        "{}",
        text(&purged)
    );
    for node in &nodes {
        for file in &node.files {
            let key = layout.content(file).unwrap();
            assert!(store.head(&key).await.unwrap().is_some(), "{key} collected");
        }
    }
    damage(&session, &data).await;
    restore(&dc, &new, &data).await;
    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, ROWS + 100, PAYLOAD)
    );
    assert_eq!(
        data.items(&session).await,
        Dataset::expected_items(0, ROWS + 100)
    );
}
