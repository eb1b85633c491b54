//! Node-local Cassandra work against the real cluster: every control
//! operation the agent performs (snapshot, clear, clear in one keyspace,
//! import, repair) through nodetool, Jolokia (the real agent in the real
//! node) and the Management API (a test double carrying the requests out
//! on a real node); the snapshot inventory on the JBOD node (secondary
//! index included), and the digest cache reading an unchanged snapshot zero
//! times.

mod common;

use std::path::PathBuf;

use common::{setting, unique};
use kassette::cassandra::control::{Control, ControlError, Jolokia, ManagementApi, Nodetool};
use kassette::cassandra::digest_cache::DigestCache;
use kassette::cassandra::snapshot::inventory;
use kassette::cassandra::snapshot::snapshot_tags;

/// The JBOD node: node 3, with two data directories.
const JBOD_NODE: usize = 3;

fn nodetool(node: usize) -> Nodetool {
    Nodetool::new(&format!("{} -n {node}", setting("KASSETTE_TEST_NODETOOL")))
}

/// Node `node`'s Jolokia: `KASSETTE_TEST_JOLOKIA_URL_<node>` (node 1's is
/// `KASSETTE_TEST_JOLOKIA_URL`, from before every node carried one).
fn jolokia(node: usize) -> Control {
    let url = if node == 1 {
        setting("KASSETTE_TEST_JOLOKIA_URL")
    } else {
        setting(&format!("KASSETTE_TEST_JOLOKIA_URL_{node}"))
    };
    Control::Jolokia(Jolokia::new(url::Url::parse(&url).unwrap()).unwrap())
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
    // No explicit flush: the snapshot flushes each table first.
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
        .clear_snapshot("t")
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::Spawn { .. }), "{err}");
}

/// Snapshots a fresh keyspace with rows through `control` on `node`, checks
/// the files are on disk (flushed first), clears, checks they are gone.
async fn snapshot_and_clear_through(control: &Control, node: usize) {
    let session = common::cql_cluster().await;
    let ks = common::create_keyspace(&session, "ctl_").await;
    common::create_table_t(&session, &ks, 50).await;
    let tag = unique("kassette-ctl-");
    control
        .snapshot(&tag, std::slice::from_ref(&ks))
        .await
        .expect("snapshot");
    let dirs = data_dirs(node);
    let files = inventory(&dirs, &tag).unwrap();
    assert!(
        files
            .iter()
            .any(|f| f.keyspace == ks && f.path.ends_with("-Data.db")),
        "no flushed SSTable in the snapshot: {files:?}"
    );
    control.clear_snapshot(&tag).await.expect("clear snapshot");
    assert!(!snapshot_tags(&dirs).unwrap().contains(&tag));
}

#[tokio::test]
async fn jolokia_snapshots_and_clears_on_the_real_node() {
    let url = url::Url::parse(&setting("KASSETTE_TEST_JOLOKIA_URL")).unwrap();
    let control = Control::Jolokia(Jolokia::new(url).unwrap());
    // Jolokia is loaded into node 1.
    snapshot_and_clear_through(&control, 1).await;
    let err = control
        .snapshot("t", &["no_such_keyspace".to_string()])
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("takeSnapshot"), "{err}");
    assert!(err.to_string().contains("no_such_keyspace"), "{err}");
}

#[tokio::test]
async fn management_api_requests_follow_its_openapi_document() {
    use common::fake_management_api::{Call, FakeManagementApi};
    let fake = FakeManagementApi::start(2).await;
    let control =
        Control::ManagementApi(ManagementApi::new(url::Url::parse(&fake.url).unwrap()).unwrap());
    snapshot_and_clear_through(&control, 2).await;
    let calls = fake.calls();
    assert!(
        matches!(&calls[..], [Call::TakeSnapshot { keyspaces, .. }, Call::ClearSnapshot { .. }] if keyspaces.len() == 1),
        "{calls:?}"
    );
    let err = control
        .snapshot("t", &["no_such_keyspace".to_string()])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Management API take snapshot: 500"),
        "{err}"
    );
}

/// Snapshots a table on node 1 (RF 1: the node owns what it holds), copies
/// the snapshot's SSTables to a staging directory, truncates the table and
/// imports the copies through `control`: every row comes back.
async fn import_through(control: &Control) {
    let session = common::cql_cluster().await;
    let ks = common::create_keyspace_with_rf(&session, "imp_", 1).await;
    common::create_table_t(&session, &ks, 200).await;
    let count = || common::count_rows(&session, &ks, "t");
    let node1_rows_before = count().await;
    let tag = unique("kassette-imp-");
    control
        .snapshot(&tag, std::slice::from_ref(&ks))
        .await
        .unwrap();
    // Cassandra reads the keyspace and table from the last two directory
    // names of an imported file: the source must be `…/<keyspace>/<table>`.
    let scratch = tempfile::tempdir_in(common::repo().join(".run")).unwrap();
    let source = scratch.path().join("staging").join(&ks).join("t");
    std::fs::create_dir_all(&source).unwrap();
    for file in inventory(&data_dirs(1), &tag).unwrap() {
        if !file.path.contains('/') && file.path != "manifest.json" && file.path != "schema.cql" {
            std::fs::copy(&file.absolute, source.join(&file.path)).unwrap();
        }
    }
    control.clear_snapshot(&tag).await.unwrap();
    session
        .query_unpaged(format!("TRUNCATE {ks}.t"), ())
        .await
        .unwrap();
    let after_truncate = count().await;
    assert_eq!(after_truncate, 0);
    control.import(&ks, "t", &source).await.expect("import");
    // Node 1's share of the rows is back (the others held the rest).
    let restored = count().await;
    assert!(
        restored > 0 && restored <= node1_rows_before,
        "{restored} of {node1_rows_before}"
    );
    let left: Vec<_> = std::fs::read_dir(&source).unwrap().flatten().collect();
    assert!(left.is_empty(), "files left in staging: {left:?}");
}

#[tokio::test]
async fn nodetool_import_loads_staged_sstables() {
    import_through(&Control::Nodetool(nodetool(1))).await;
}

#[tokio::test]
async fn jolokia_import_loads_staged_sstables() {
    let url = url::Url::parse(&setting("KASSETTE_TEST_JOLOKIA_URL")).unwrap();
    import_through(&Control::Jolokia(Jolokia::new(url).unwrap())).await;
}

/// Two keyspaces snapshotted under one tag (as Cassandra's
/// `truncated-<millis>-<table>` tags can be); clearing the tag in one
/// keyspace through `control` leaves the other's snapshot in place.
async fn clear_in_one_keyspace_through(control: &Control, node: usize) {
    let session = common::cql_cluster().await;
    let (a, b) = (
        common::create_keyspace(&session, "clr_a_").await,
        common::create_keyspace(&session, "clr_b_").await,
    );
    common::create_table_t(&session, &a, 10).await;
    common::create_table_t(&session, &b, 10).await;
    let tag = unique("kassette-clr-");
    control
        .snapshot(&tag, &[a.clone(), b.clone()])
        .await
        .expect("snapshot");
    let keyspaces_with = |tag: &str| {
        let mut found: Vec<String> = inventory(&data_dirs(node), tag)
            .unwrap()
            .into_iter()
            .map(|f| f.keyspace)
            .collect();
        found.sort();
        found.dedup();
        found
    };
    assert_eq!(keyspaces_with(&tag), [a.clone(), b.clone()]);
    control
        .clear_snapshot_in(&tag, &a)
        .await
        .expect("clear in one keyspace");
    assert_eq!(
        keyspaces_with(&tag),
        std::slice::from_ref(&b),
        "{control:?}"
    );
    control.clear_snapshot(&tag).await.expect("clear");
    assert!(keyspaces_with(&tag).is_empty());
    for ks in [a, b] {
        session
            .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn nodetool_clears_a_tag_in_one_keyspace_only() {
    clear_in_one_keyspace_through(&Control::Nodetool(nodetool(2)), 2).await;
}

#[tokio::test]
async fn jolokia_clears_a_tag_in_one_keyspace_only() {
    clear_in_one_keyspace_through(&jolokia(2), 2).await;
}

#[tokio::test]
async fn management_api_clears_a_tag_in_one_keyspace_only() {
    use common::fake_management_api::{Call, FakeManagementApi};
    let fake = FakeManagementApi::start(3).await;
    let control =
        Control::ManagementApi(ManagementApi::new(url::Url::parse(&fake.url).unwrap()).unwrap());
    clear_in_one_keyspace_through(&control, 3).await;
    assert!(
        fake.calls().iter().any(|c| matches!(
            c,
            Call::ClearSnapshot {
                keyspaces: Some(_),
                ..
            }
        )),
        "{:?}",
        fake.calls()
    );
}

/// A full repair of one table through `control`; a keyspace that does not
/// exist is an error naming the operation.
async fn repair_through(control: &Control) {
    let session = common::cql_cluster().await;
    let ks = common::create_keyspace(&session, "rep_").await;
    common::create_table_t(&session, &ks, 20).await;
    control
        .repair(&ks, &["t".to_string()])
        .await
        .expect("repair");
    let err = control
        .repair("no_such_keyspace", &["t".to_string()])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ControlError::Refused { .. } | ControlError::Failed { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("no_such_keyspace"), "{err}");
    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
        .await
        .unwrap();
}

#[tokio::test]
async fn jolokia_repairs_on_the_real_node() {
    repair_through(&jolokia(3)).await;
}

#[tokio::test]
async fn management_api_repair_is_a_full_repair_job_waited_for() {
    use common::fake_management_api::{Call, FakeManagementApi};
    let fake = FakeManagementApi::start(1).await;
    let control =
        Control::ManagementApi(ManagementApi::new(url::Url::parse(&fake.url).unwrap()).unwrap());
    repair_through(&control).await;
    assert!(
        matches!(&fake.calls()[..], [Call::Repair { tables, full: true, .. }, ..] if tables == &["t"]),
        "{:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn each_node_is_driven_through_its_own_jolokia() {
    let control = jolokia(2);
    let session = common::cql_cluster().await;
    let ks = common::create_keyspace(&session, "own_").await;
    common::create_table_t(&session, &ks, 20).await;
    let tag = unique("kassette-own-");
    control
        .snapshot(&tag, std::slice::from_ref(&ks))
        .await
        .expect("snapshot through node 2's Jolokia");
    let on = |node| inventory(&data_dirs(node), &tag).unwrap();
    assert!(
        on(2)
            .iter()
            .any(|f| f.keyspace == ks && f.path.ends_with("-Data.db"))
    );
    assert!(on(1).is_empty(), "node 1 took the snapshot: {:?}", on(1));
    control.clear_snapshot(&tag).await.unwrap();
    assert!(on(2).is_empty());
    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
        .await
        .unwrap();
}
