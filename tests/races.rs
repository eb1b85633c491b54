//! Races between passes on one datacenter, as processes against the real
//! 3-node cluster, real agents and the real S3-compatible server: backup +
//! backup, backup + purge, purge + backup, purge + purge. The lease decides;
//! the loser exits 1 naming the holder; nothing a complete backup
//! references is deleted (every complete backup still verifies deeply).

mod common;

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::cql_cluster;
use common::dataset::Dataset;
use common::dc::{Datacenter, StoreKind, assert_success, backup_name, text};
use common::proxy::{Action, StorageProxy};
use common::setting;
use kassette::catalog::{Catalog, Layout};
use kassette::coordinator::lease;

fn catalog(store: Arc<dyn kassette::storage::Store>) -> Catalog {
    let layout = Layout::new(
        &setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        &setting("KASSETTE_TEST_CASSANDRA_DC"),
    )
    .unwrap();
    Catalog::new(store, layout)
}

/// The passes racing here get a TTL long enough that a loaded test
/// machine, or the slowing proxy, never makes a holder miss its renewals.
const TTL: (&str, &str) = ("KASSETTE_LOCK_TTL", "15s");

/// Waits until a live lease for `operation` is held; returns its owner.
async fn wait_for_lease(dc: &Datacenter, operation: &str) -> String {
    let catalog = catalog(dc.store().await);
    for _ in 0..600 {
        if let Ok(Some(holder)) = lease::current_holder(catalog.store(), catalog.layout()).await
            && holder.operation == operation
            && holder.is_live(jiff::Timestamp::now())
        {
            return holder.owner;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {operation} pass took the lease");
}

/// Exit 1 with the lease refusal naming process `pid`.
fn assert_refused_by(out: &Output, pid: u32, what: &str) {
    let message = text(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {message}");
    assert!(message.contains("locked by"), "{what}: {message}");
    assert!(
        message.contains(&format!("/{pid} ")),
        "{what}: holder (pid {pid}) not named: {message}"
    );
}

/// Every complete backup passes `verify --deep`.
async fn all_complete_backups_verify(dc: &Datacenter) {
    let listed = dc.kassette(&["list", "--json"], &[]).await;
    assert_success(&listed, "list");
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let complete: Vec<&str> = entries
        .iter()
        .filter(|e| e["status"] == "complete")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(!complete.is_empty(), "no complete backup: {entries:?}");
    for name in complete {
        assert_success(
            &dc.kassette(&["verify", "--deep"], &[("KASSETTE_BACKUP_NAME", name)])
                .await,
            &format!("verify --deep {name}"),
        );
    }
}

/// Two backups started at the same moment (uploads throttled, so each
/// takes seconds): one commits, the other exits 1 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_backup() {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, 120, 64 * 1024).await;
    let dc = Datacenter::start(StoreKind::S3, &[("KASSETTE_MAX_BANDWIDTH", "2MiB/s")]).await;
    let ks = data.keyspaces().join(",");
    let names = [backup_name("race-a-"), backup_name("race-b-")];
    let mut children = Vec::new();
    for name in &names {
        children.push(
            dc.coordinator(
                &["backup"],
                &[
                    ("KASSETTE_BACKUP_NAME", name.as_str()),
                    ("KASSETTE_KEYSPACES", ks.as_str()),
                    TTL,
                ],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        );
    }
    let pids: Vec<u32> = children.iter().map(|c| c.id().unwrap()).collect();
    let mut outputs = Vec::new();
    for child in children {
        outputs.push(child.wait_with_output().await.unwrap());
    }
    let winners: Vec<usize> = (0..2).filter(|&i| outputs[i].status.success()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one backup must win:\n{}\n---\n{}",
        text(&outputs[0]),
        text(&outputs[1])
    );
    let (winner, loser) = (winners[0], 1 - winners[0]);
    assert_refused_by(&outputs[loser], pids[winner], "the losing backup");
    let status = dc
        .kassette(&["status"], &[("KASSETTE_BACKUP_NAME", &names[loser])])
        .await;
    assert_eq!(status.status.code(), Some(1), "the loser left a backup");
    all_complete_backups_verify(&dc).await;
}

/// A purge (with retention that would delete) started while a backup
/// uploads is refused naming the backup; then a backup started while a
/// slow purge holds the lease is refused naming the purge. Afterwards every
/// complete backup verifies deeply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_purge_either_way() {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, 20, 1024).await;
    let dc = Datacenter::start(StoreKind::S3, &[("KASSETTE_MAX_BANDWIDTH", "2MiB/s")]).await;
    let ks = data.keyspaces().join(",");
    let first = backup_name("race-first-");
    dc.backup(&first, &data.keyspaces()).await;
    data.write(&session, 20, 140, 64 * 1024).await;

    let second = backup_name("race-second-");
    let backup = dc
        .coordinator(
            &["backup"],
            &[
                ("KASSETTE_BACKUP_NAME", second.as_str()),
                ("KASSETTE_KEYSPACES", ks.as_str()),
                TTL,
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let backup_pid = backup.id().unwrap();
    wait_for_lease(&dc, "backup").await;
    let purge = dc
        .kassette(&["purge"], &[("KASSETTE_RETENTION_KEEP_LAST", "1"), TTL])
        .await;
    assert_refused_by(&purge, backup_pid, "purge during a backup");
    let out = backup.wait_with_output().await.unwrap();
    assert_success(&out, "the backup a purge raced");

    // A purge slowed by a proxy delaying every request holds the lease
    // long enough for a backup to try.
    let (purge, purge_pid, _proxy) = slow_purge_holding_the_lease(&dc).await;
    let third = backup_name("race-third-");
    let refused = dc
        .kassette(
            &["backup"],
            &[
                ("KASSETTE_BACKUP_NAME", third.as_str()),
                ("KASSETTE_KEYSPACES", ks.as_str()),
                TTL,
            ],
        )
        .await;
    assert_refused_by(&refused, purge_pid, "backup during a purge");
    let out = purge.wait_with_output().await.unwrap();
    assert_success(&out, "the purge a backup raced");
    assert!(
        text(&out).contains(&format!("[{first}]")),
        "retention did not remove the oldest: {}",
        text(&out)
    );
    all_complete_backups_verify(&dc).await;
}

/// Starts a purge (retention keep-last 1) whose every storage request a
/// proxy delays by 150 ms, and returns once it holds the lease: the child,
/// its pid, and the proxy (which must live as long as the purge).
async fn slow_purge_holding_the_lease(
    dc: &Datacenter,
) -> (tokio::process::Child, u32, StorageProxy) {
    let proxy = StorageProxy::start(&setting("KASSETTE_TEST_S3_ENDPOINT")).await;
    proxy.rule(|_| {
        Some(Action {
            delay_before: Duration::from_millis(150),
            ..Action::default()
        })
    });
    let purge = dc
        .coordinator(
            &["purge"],
            &[
                ("KASSETTE_STORAGE_ENDPOINT", proxy.url.as_str()),
                ("KASSETTE_RETENTION_KEEP_LAST", "1"),
                TTL,
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = purge.id().unwrap();
    wait_for_lease(dc, "purge").await;
    (purge, pid, proxy)
}

/// Two purges: one slowed by a proxy holds the lease, the other is refused
/// naming it; the survivor of retention still verifies deeply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_and_purge() {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    let dc = Datacenter::start(StoreKind::S3, &[]).await;
    for round in 0..2 {
        data.write(&session, 0, 30, 256 + round).await;
        dc.backup(&backup_name("race-p-"), &data.keyspaces()).await;
    }
    let (slow, slow_pid, _proxy) = slow_purge_holding_the_lease(&dc).await;
    let other = dc
        .kassette(&["purge"], &[("KASSETTE_RETENTION_KEEP_LAST", "1"), TTL])
        .await;
    assert_refused_by(&other, slow_pid, "the second purge");
    assert_success(&slow.wait_with_output().await.unwrap(), "the first purge");
    all_complete_backups_verify(&dc).await;
}
