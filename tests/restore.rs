//! End to end: `kassette restore` as a process against the real 3-node
//! cluster (node 3 with two data directories), one real agent process per
//! node, on the real S3-compatible server, the GCS emulator, Azurite
//! (Azure Blob Storage) and a local directory. Rows are derived from their
//! keys and read back at consistency ALL.

mod common;

use bytes::Bytes;
use common::dataset::Dataset;
use common::dc::{Datacenter, StoreKind, assert_success, backup_name, text};
use common::{cql_cluster, setting};
use kassette::catalog::{Catalog, Layout};
use kassette::storage::PutMode;
use scylla::client::session::Session;
use scylla::statement::Consistency;

/// Rows 0..ROWS with PAYLOAD-byte payloads are written before the backup.
const ROWS: i32 = 300;
const PAYLOAD: usize = 256;

async fn backed_up(
    kind: StoreKind,
    agent_env: &[(&str, &str)],
) -> (Session, Dataset, Datacenter, String) {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, ROWS / 2, PAYLOAD).await;
    data.flush();
    data.write(&session, ROWS / 2, ROWS, PAYLOAD).await;
    let dc = Datacenter::start(kind, agent_env).await;
    let name = backup_name("rs-");
    dc.backup(&name, &data.keyspaces()).await;
    (session, data, dc, name)
}

async fn cql(session: &Session, statement: String) {
    let mut query = scylla::statement::unprepared::Statement::new(statement);
    query.set_consistency(Consistency::All);
    session.query_unpaged(query, ()).await.expect("cql");
}

/// After the backup: every 10th user deleted, every 10th (+5) updated, new
/// users inserted, and the items table dropped.
async fn damage(session: &Session, data: &Dataset) {
    for id in (0..ROWS).step_by(10) {
        cql(
            session,
            format!("DELETE FROM {}.users WHERE id = {id}", data.main),
        )
        .await;
        cql(
            session,
            format!(
                "UPDATE {}.users SET email = 'changed{}' WHERE id = {}",
                data.main,
                id + 5,
                id + 5
            ),
        )
        .await;
    }
    for id in ROWS..ROWS + 50 {
        cql(
            session,
            format!(
                "INSERT INTO {}.users (id, email) VALUES ({id}, 'new{id}')",
                data.main
            ),
        )
        .await;
    }
    cql(session, format!("DROP TABLE {}.items", data.other)).await;
}

async fn restore(dc: &Datacenter, name: &str, extra: &[(&str, &str)]) -> std::process::Output {
    let mut env = vec![("KASSETTE_BACKUP_NAME", name)];
    env.extend_from_slice(extra);
    dc.kassette(&["restore"], &env).await
}

/// Replace mode brings every table back exactly, the dropped one included,
/// with its secondary index answering; every node — the JBOD one too — got
/// its SSTables.
async fn replace_restores_exactly(kind: StoreKind) {
    let (session, data, dc, name) = backed_up(kind, &[]).await;
    damage(&session, &data).await;
    // The local run also asks for the truncate snapshots to be removed.
    let clear = if kind == StoreKind::Local {
        "true"
    } else {
        "false"
    };
    let out = restore(
        &dc,
        &name,
        &[
            ("KASSETTE_KEYSPACES", &data.keyspaces().join(",")),
            ("KASSETTE_CLEAR_TRUNCATE_SNAPSHOTS", clear),
        ],
    )
    .await;
    assert_success(&out, "restore (replace)");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("restore of {name} complete: 3 tables")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("recreated {}.items", data.other)),
        "{summary}"
    );

    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, ROWS, PAYLOAD)
    );
    assert_eq!(data.items(&session).await, Dataset::expected_items(0, ROWS));
    assert_eq!(
        data.events(&session).await,
        Dataset::expected_events(0, ROWS)
    );
    let mut by_email = scylla::statement::unprepared::Statement::new(format!(
        "SELECT id FROM {}.users WHERE email = 'user42@example.com'",
        data.main
    ));
    by_email.set_consistency(Consistency::All);
    let found: Vec<(i32,)> = session
        .query_unpaged(by_email, ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(i32,)>()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        found,
        [(42,)],
        "the secondary index does not see the restored rows"
    );

    for node in 1..=3 {
        let live_data: usize = common::cassandra_data_dirs(node)
            .iter()
            .map(|dir| count_data_files(&dir.join(&data.main)))
            .sum();
        assert!(
            live_data > 0,
            "node {node} has no SSTables of {} after the restore",
            data.main
        );
    }
    // Cassandra's truncate snapshots of the restored tables: kept by
    // default (they are the pre-restore data), removed when asked.
    let truncate_snapshots: usize = (1..=3)
        .flat_map(common::cassandra_data_dirs)
        .map(|dir| count_truncate_snapshots(&dir.join(&data.main)))
        .sum();
    if kind == StoreKind::Local {
        assert_eq!(truncate_snapshots, 0, "truncate snapshots were not removed");
    } else {
        assert!(
            truncate_snapshots > 0,
            "truncate snapshots were removed unasked"
        );
    }
    // Staging is gone from every agent.
    for node in 1..=3 {
        let staging = dc.dir.path().join(format!("agent{node}/staging"));
        let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "node {node} kept staging files");
    }
}

/// `truncated-*` snapshot directories under a keyspace directory.
fn count_truncate_snapshots(keyspace_dir: &std::path::Path) -> usize {
    let Ok(tables) = std::fs::read_dir(keyspace_dir) else {
        return 0;
    };
    tables
        .flatten()
        .filter_map(|t| std::fs::read_dir(t.path().join("snapshots")).ok())
        .flat_map(|snapshots| snapshots.flatten())
        .filter(|s| s.file_name().to_string_lossy().starts_with("truncated-"))
        .count()
}

/// `*-Data.db` files of live tables under a keyspace directory (not in
/// snapshots or backups subfolders).
fn count_data_files(keyspace_dir: &std::path::Path) -> usize {
    let Ok(tables) = std::fs::read_dir(keyspace_dir) else {
        return 0;
    };
    tables
        .flatten()
        .filter_map(|t| std::fs::read_dir(t.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with("-Data.db"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_replace_restores_every_table_exactly() {
    replace_restores_exactly(StoreKind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_replace_restores_every_table_exactly() {
    replace_restores_exactly(StoreKind::Gcs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_replace_restores_every_table_exactly() {
    replace_restores_exactly(StoreKind::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_replace_restores_every_table_exactly() {
    replace_restores_exactly(StoreKind::Local).await;
}

/// Merge mode: Cassandra's timestamps decide. Rows written after the backup
/// stay, rows deleted after it stay deleted, rows updated after it keep
/// their newer value; every other backup-time row is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_keeps_newer_writes_and_deletes() {
    let (session, data, dc, name) = backed_up(StoreKind::S3, &[]).await;
    damage(&session, &data).await;
    let out = restore(
        &dc,
        &name,
        &[
            ("KASSETTE_KEYSPACES", &data.keyspaces().join(",")),
            ("KASSETTE_RESTORE_MODE", "merge"),
        ],
    )
    .await;
    assert_success(&out, "restore (merge)");
    let users = data.users(&session).await;
    for id in 0..ROWS + 50 {
        let row = users.get(&id);
        if id >= ROWS {
            assert_eq!(
                row.map(|r| r.0.clone()),
                Some(format!("new{id}")),
                "new row {id}"
            );
        } else if id % 10 == 0 {
            assert_eq!(row, None, "row {id} deleted after the backup came back");
        } else if id % 10 == 5 {
            assert_eq!(
                row.map(|r| r.0.clone()),
                Some(format!("changed{id}")),
                "row {id}"
            );
        } else {
            assert_eq!(row, Some(&Dataset::user(id, PAYLOAD)), "row {id}");
        }
    }
    // The dropped table is recreated and filled.
    assert_eq!(data.items(&session).await, Dataset::expected_items(0, ROWS));
}

/// A table filter restores that table only; the others keep their
/// post-backup state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_filter_restores_only_that_table() {
    let (session, data, dc, name) = backed_up(StoreKind::S3, &[]).await;
    damage(&session, &data).await;
    cql(
        &session,
        format!("DELETE FROM {}.events WHERE day = 3", data.main),
    )
    .await;
    let after_damage = data.users(&session).await;
    let table = format!("{}.events", data.main);
    let out = restore(&dc, &name, &[("KASSETTE_TABLES", &table)]).await;
    assert_success(&out, "restore of one table");
    assert_eq!(
        data.events(&session).await,
        Dataset::expected_events(0, ROWS)
    );
    assert_eq!(
        data.users(&session).await,
        after_damage,
        "users was touched"
    );
    let items_exist = session
        .query_unpaged(format!("SELECT id FROM {}.items LIMIT 1", data.other), ())
        .await;
    assert!(items_exist.is_err(), "the dropped items table came back");
    let missing = restore(
        &dc,
        &name,
        &[("KASSETTE_TABLES", &format!("{}.nope", data.main))],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("KASSETTE_TABLES"),
        "{}",
        text(&missing)
    );
}

/// An incomplete backup and a backup with an altered object are refused
/// before anything live changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_incomplete_backups_are_refused_before_any_change() {
    let (session, data, dc, name) = backed_up(StoreKind::S3, &[]).await;
    damage(&session, &data).await;
    let before = data.users(&session).await;
    let store = dc.store().await;
    let layout = Layout::new(
        &setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        &setting("KASSETTE_TEST_CASSANDRA_DC"),
    )
    .unwrap();
    let catalog = Catalog::new(store.clone(), layout.clone());

    // Incomplete: a second backup whose manifest is removed.
    let partial = backup_name("partial-");
    dc.backup(&partial, &data.keyspaces()).await;
    store
        .delete_many(&[layout.backup_manifest(&partial).unwrap()])
        .await
        .unwrap();
    let out = restore(&dc, &partial, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is incomplete"), "{}", text(&out));

    // Altered: one byte of one users SSTable, size unchanged.
    let backup = catalog.backup_manifest(&name).await.unwrap();
    let nodes = catalog.node_manifests(&backup).await.unwrap();
    let victim = nodes[1]
        .files
        .iter()
        .find(|f| f.table == "users" && f.path.ends_with("-Data.db") && !f.path.starts_with('.'))
        .unwrap();
    let key = layout.content(victim).unwrap();
    let mut bytes = store.get_bytes(&key).await.unwrap().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    store
        .put_bytes(&key, Bytes::from(bytes), PutMode::Overwrite)
        .await
        .unwrap();
    let out = restore(
        &dc,
        &name,
        &[("KASSETTE_KEYSPACES", &data.keyspaces().join(","))],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("does not match its checksum"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains(key.as_str()), "{}", text(&out));

    assert_eq!(data.users(&session).await, before, "live data changed");
    let items_exist = session
        .query_unpaged(format!("SELECT id FROM {}.items LIMIT 1", data.other), ())
        .await;
    assert!(items_exist.is_err(), "the schema was changed");
}

/// A coordinator killed while the agents download leaves the live data as
/// it was; the re-run completes without downloading again what was staged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_download_changes_nothing_and_resumes() {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, 160, 64 * 1024).await;
    let dc = Datacenter::start(StoreKind::S3, &[("KASSETTE_MAX_BANDWIDTH", "2MiB/s")]).await;
    let name = backup_name("rs-kill-");
    dc.backup(&name, &data.keyspaces()).await;
    damage_big(&session, &data).await;
    let before = data.users(&session).await;

    let ks = data.keyspaces().join(",");
    let env = [
        ("KASSETTE_BACKUP_NAME", name.as_str()),
        ("KASSETTE_KEYSPACES", ks.as_str()),
    ];
    let mut first = dc
        .coordinator(&["restore"], &env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A third of some node's files in staging.
    dc.wait_for_progress("downloaded a third of its files", |p| {
        p.state == "downloading" && p.bytes_uploaded * 3 > p.bytes_total
    })
    .await;
    first.kill().await.unwrap();
    assert_eq!(data.users(&session).await, before, "live data changed");

    tokio::time::sleep(common::dc::after_lease_expiry()).await;
    let out = dc.kassette(&["restore"], &env).await;
    assert_success(&out, "re-run of the killed restore");
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    let amount = |after: &str, before: &str| -> u64 {
        let text = summary
            .split(after)
            .nth(1)
            .and_then(|r| r.split(before).next());
        text.and_then(|t| t.trim().parse::<bytesize::ByteSize>().ok())
            .map(|b| b.as_u64())
            .unwrap_or_else(|| panic!("no amount between {after:?} and {before:?} in {summary}"))
    };
    let imported = amount(" files, ", " imported");
    let downloaded = amount("imported (", " downloaded now");
    assert!(
        downloaded * 10 < imported * 9,
        "the re-run downloaded {downloaded} of {imported} bytes again: {summary}"
    );
    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, 160, 64 * 1024)
    );
}

async fn damage_big(session: &Session, data: &Dataset) {
    for id in (0..160).step_by(4) {
        cql(
            session,
            format!("DELETE FROM {}.users WHERE id = {id}", data.main),
        )
        .await;
    }
}
