//! Smoke tests of the real Cassandra test cluster: CQL on every node,
//! nodetool status, snapshots on disk. They prove the environment later
//! tests stand on is real, and how kassette's tests reach it.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{run, setting, unique};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::host_filter::AllowListHostFilter;

fn nodes() -> Vec<String> {
    setting("KASSETTE_TEST_CASSANDRA_NODES")
        .split(',')
        .map(String::from)
        .collect()
}

/// A session that talks to `node` only, so a query proves that node serves CQL.
async fn session_on(node: &str) -> Session {
    let addr: SocketAddr = format!("{node}:9042").parse().expect("node address");
    let filter = AllowListHostFilter::new([addr]).expect("host filter");
    SessionBuilder::new()
        .known_node_addr(addr)
        .host_filter(Arc::new(filter))
        .build()
        .await
        .unwrap_or_else(|e| panic!("CQL connect to {node}: {e}"))
}

async fn cluster_session() -> Session {
    common::cql_cluster().await
}

fn nodetool(node: usize, args: &[&str]) -> String {
    let n = node.to_string();
    let mut all = vec!["-n", n.as_str()];
    all.extend_from_slice(args);
    run(setting("KASSETTE_TEST_NODETOOL"), &all)
}

/// Data directories of node `i` (1-based); several when it is the JBOD node.
fn data_dirs(node: usize) -> Vec<PathBuf> {
    common::cassandra_data_dirs(node)
}

#[tokio::test]
async fn cql_round_trip_on_each_node() {
    let nodes = nodes();
    assert_eq!(nodes.len(), 3, "the test cluster has three nodes");
    let first = cluster_session().await;
    let ks = common::create_keyspace(&first, "smoke_cql_").await;
    first
        .query_unpaged(
            format!("CREATE TABLE {ks}.kv (k text PRIMARY KEY, v int)"),
            (),
        )
        .await
        .expect("create table");
    first
        .await_schema_agreement()
        .await
        .expect("schema agreement");

    for (i, node) in nodes.iter().enumerate() {
        let session = session_on(node).await;
        let local = session
            .query_unpaged("SELECT broadcast_address FROM system.local", ())
            .await
            .expect("system.local")
            .into_rows_result()
            .expect("rows");
        let (address,): (std::net::IpAddr,) = local.single_row().expect("one row");
        assert_eq!(
            address.to_string(),
            *node,
            "session reached the node it targets"
        );

        let key = format!("from-{node}");
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.kv (k, v) VALUES (?, ?)"),
                (&key, i as i32),
            )
            .await
            .expect("insert");
        let rows = session
            .query_unpaged(format!("SELECT v FROM {ks}.kv WHERE k = ?"), (&key,))
            .await
            .expect("select")
            .into_rows_result()
            .expect("rows");
        let (v,): (i32,) = rows.single_row().expect("the row just written");
        assert_eq!(v, i as i32);
    }
    first
        .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
        .await
        .expect("drop keyspace");
}

#[test]
fn nodetool_status_shows_every_node_up_and_normal() {
    let status = nodetool(1, &["status"]);
    for node in nodes() {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("UN") && l.split_whitespace().nth(1) == Some(&node)),
            "{node} is not UN in:\n{status}"
        );
    }
}

/// Files of snapshot `tag` of keyspace `ks` under one data directory.
fn snapshot_files(data_dir: &Path, ks: &str, tag: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(tables) = std::fs::read_dir(data_dir.join(ks)) else {
        return files;
    };
    for table in tables.flatten() {
        let dir = table.path().join("snapshots").join(tag);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
    }
    files
}

#[tokio::test]
async fn nodetool_snapshot_writes_files_on_every_node() {
    let nodes = nodes();
    let session = cluster_session().await;
    let ks = common::create_keyspace(&session, "smoke_snap_").await;
    session
        .query_unpaged(
            format!("CREATE TABLE {ks}.t (k int PRIMARY KEY, v text)"),
            (),
        )
        .await
        .expect("create table");
    session
        .await_schema_agreement()
        .await
        .expect("schema agreement");
    let insert = session
        .prepare(format!("INSERT INTO {ks}.t (k, v) VALUES (?, ?)"))
        .await
        .expect("prepare");
    for k in 0..200 {
        session
            .execute_unpaged(&insert, (k, "x".repeat(100)))
            .await
            .expect("insert");
    }

    let tag = unique("t");
    for node in 1..=nodes.len() {
        nodetool(node, &["flush", &ks]);
        nodetool(node, &["snapshot", "-t", &tag, &ks]);
        let files: Vec<PathBuf> = data_dirs(node)
            .iter()
            .flat_map(|dir| snapshot_files(dir, &ks, &tag))
            .collect();
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert!(
            names.iter().any(|n| n.ends_with("-Data.db")),
            "node {node}: no SSTable in snapshot {tag}: {names:?}"
        );
        assert!(
            names.iter().any(|n| n == "manifest.json"),
            "node {node}: no manifest.json in snapshot {tag}: {names:?}"
        );
        let listed = nodetool(node, &["listsnapshots"]);
        assert!(
            listed.contains(&tag),
            "node {node}: listsnapshots lacks {tag}:\n{listed}"
        );
        nodetool(node, &["clearsnapshot", "-t", &tag, "--", &ks]);
        let left: Vec<PathBuf> = data_dirs(node)
            .iter()
            .flat_map(|dir| snapshot_files(dir, &ks, &tag))
            .collect();
        assert!(left.is_empty(), "node {node}: clearsnapshot left {left:?}");
    }
    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
        .await
        .expect("drop keyspace");
}

#[test]
fn jbod_node_has_two_data_directories() {
    let dirs: Vec<Vec<PathBuf>> = (1..=3).map(data_dirs).collect();
    assert!(
        dirs.iter().any(|d| d.len() == 2),
        "one node must be configured with two data directories: {dirs:?}"
    );
    for dir in dirs.iter().flatten() {
        assert!(dir.is_dir(), "{} is not a directory", dir.display());
    }
}
