//! Node-local Cassandra work against the real cluster: nodetool control,
//! the snapshot inventory on the JBOD node (secondary index included), and
//! the digest cache reading an unchanged snapshot zero times.

mod common;

use std::path::PathBuf;

use common::{setting, unique};
use kassette::cassandra::control::{ControlError, Nodetool};
use kassette::cassandra::digest_cache::DigestCache;
use kassette::cassandra::snapshot::inventory;

/// The JBOD node: node 3, with two data directories.
const JBOD_NODE: usize = 3;

fn nodetool(node: usize) -> Nodetool {
    Nodetool::new(&format!("{} -n {node}", setting("KASSETTE_TEST_NODETOOL")))
}

fn data_dirs(node: usize) -> Vec<PathBuf> {
    common::cassandra_data_dirs(node)
}

#[tokio::test]
async fn snapshot_inventory_and_digest_cache_on_the_jbod_node() {
    let dirs = data_dirs(JBOD_NODE);
    assert_eq!(dirs.len(), 2, "node {JBOD_NODE} is the JBOD node");
    let session = common::cql_cluster().await;
    let ks = common::create_keyspace(&session, "node_inv_").await;
    session
        .query_unpaged(
            format!("CREATE TABLE {ks}.users (id int PRIMARY KEY, email text)"),
            (),
        )
        .await
        .expect("create table");
    session
        .query_unpaged(
            format!("CREATE INDEX users_by_email ON {ks}.users (email)"),
            (),
        )
        .await
        .expect("create index");
    session
        .await_schema_agreement()
        .await
        .expect("schema agreement");
    let insert = session
        .prepare(format!("INSERT INTO {ks}.users (id, email) VALUES (?, ?)"))
        .await
        .unwrap();
    for id in 0..1_000 {
        session
            .execute_unpaged(&insert, (id, format!("user{id}@example.com")))
            .await
            .unwrap();
    }

    let control = nodetool(JBOD_NODE);
    let tag = unique("kassette-");
    control
        .flush(std::slice::from_ref(&ks))
        .await
        .expect("flush");
    control
        .snapshot(&tag, std::slice::from_ref(&ks))
        .await
        .expect("snapshot");
    assert!(control.snapshot_tags().await.unwrap().contains(&tag));

    let files: Vec<_> = inventory(&dirs, &tag)
        .unwrap()
        .into_iter()
        .filter(|f| f.keyspace == ks)
        .collect();
    let data_files: Vec<_> = files
        .iter()
        .filter(|f| f.path.ends_with("-Data.db"))
        .collect();
    assert!(
        data_files.iter().any(|f| !f.path.contains('/')),
        "no table SSTable in {files:#?}"
    );
    assert!(
        data_files
            .iter()
            .any(|f| f.path.starts_with(".users_by_email/")),
        "no secondary-index SSTable in {files:#?}"
    );
    for dir in 0..2 {
        assert!(
            data_files.iter().any(|f| f.data_dir == dir),
            "data directory {dir} holds no SSTable of the snapshot: {files:#?}"
        );
    }
    assert!(files.iter().all(|f| f.table == "users"));

    // First pass reads every byte; an unchanged snapshot is then free.
    let total: u64 = files.iter().map(|f| f.identity.size).sum();
    let cache_file = tempfile::tempdir().unwrap();
    let cache_path = cache_file.path().join("digests.json");
    let mut cache = DigestCache::open(&cache_path);
    for f in &files {
        cache.digest(&f.absolute, f.identity).unwrap();
    }
    assert_eq!(cache.bytes_read, total);
    let identities: Vec<_> = files.iter().map(|f| f.identity).collect();
    cache.save(&identities).unwrap();
    let mut again = DigestCache::open(&cache_path);
    for f in &files {
        again.digest(&f.absolute, f.identity).unwrap();
    }
    assert_eq!(again.bytes_read, 0, "an unchanged snapshot was read again");

    control.clear_snapshot(&tag).await.expect("clear snapshot");
    assert!(inventory(&dirs, &tag).unwrap().is_empty());
    assert!(!control.snapshot_tags().await.unwrap().contains(&tag));
    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
        .await
        .unwrap();
}

#[tokio::test]
async fn nodetool_failures_name_the_command() {
    let err = nodetool(1)
        .snapshot("t", &["no_such_keyspace".to_string()])
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("snapshot -t t"), "{err}");

    let err = Nodetool::new("/no/such/nodetool")
        .flush(&[])
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::Spawn { .. }), "{err}");
}
