//! Storage faults: backup, `verify --deep`, restore and purge against the
//! real 3-node cluster and the real S3-compatible server, with agents and
//! coordinator both going through a fault-injecting proxy (a test double of
//! a bad network and an overloaded server, `tests/common/fault_proxy.rs`)
//! that breaks 10 % of requests. Every pass must complete; afterwards every
//! stored object is checked directly against the real server.

mod common;

use common::dataset::Dataset;
use common::dc::{Datacenter, assert_success, backup_name, text};
use common::fault_proxy::{Fault, FaultProxy};
use common::{cql_cluster, setting};
use futures::StreamExt;
use kassette::catalog::Layout;

const ROWS: i32 = 200;
const PAYLOAD: usize = 2048;
/// Overridable to replay another sequence of faults.
const DEFAULT_SEED: u64 = 10;
/// Retries under faults stretch renewals: a lease TTL with room for them.
const TTL: (&str, &str) = ("KASSETTE_LOCK_TTL", "15s");

/// A backup through the proxy that must succeed.
async fn backup(dc: &Datacenter, name: &str, keyspaces: &str) {
    let out = dc
        .kassette(
            &["backup"],
            &[
                ("KASSETTE_BACKUP_NAME", name),
                ("KASSETTE_KEYSPACES", keyspaces),
                TTL,
            ],
        )
        .await;
    assert_success(&out, &format!("backup {name} through faults"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pass_completes_through_ten_percent_storage_faults() {
    let seed = std::env::var("KASSETTE_TEST_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let direct = setting("KASSETTE_TEST_S3_ENDPOINT");
    let proxy = FaultProxy::start(&direct, 0.10, seed).await;
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, ROWS / 2, PAYLOAD).await;
    data.flush();
    data.write(&session, ROWS / 2, ROWS, PAYLOAD).await;
    let dc = Datacenter::start_s3_through(&proxy.endpoint).await;
    let keyspaces = data.keyspaces().join(",");

    let first = backup_name("flt1-");
    backup(&dc, &first, &keyspaces).await;
    let verified = dc
        .kassette(
            &["verify", "--deep"],
            &[("KASSETTE_BACKUP_NAME", first.as_str()), TTL],
        )
        .await;
    assert_success(&verified, "verify --deep through faults");

    // Change the data, take a second backup, then restore the first.
    data.write(&session, 0, ROWS, PAYLOAD + 1).await;
    let second = backup_name("flt2-");
    backup(&dc, &second, &keyspaces).await;
    let restored = dc
        .kassette(
            &["restore"],
            &[
                ("KASSETTE_BACKUP_NAME", first.as_str()),
                ("KASSETTE_KEYSPACES", keyspaces.as_str()),
                TTL,
            ],
        )
        .await;
    assert_success(&restored, "restore through faults");
    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, ROWS, PAYLOAD),
        "restored rows differ from the first backup's"
    );

    // Purge keeps the newest: the first backup goes.
    let purged = dc
        .kassette(&["purge"], &[("KASSETTE_RETENTION_KEEP_LAST", "1"), TTL])
        .await;
    assert_success(&purged, "purge through faults");
    assert!(text(&purged).contains(&first), "{}", text(&purged));

    let counts = proxy.counts();
    eprintln!(
        "fault proxy (seed {seed}): {} requests, injected {counts:?}",
        proxy.requests()
    );
    for kind in [Fault::InternalError, Fault::SlowDown, Fault::Latency] {
        assert!(counts[&kind] > 0, "no {kind:?} injected: {counts:?}");
    }
    assert!(
        counts[&Fault::ResetMidBody] + counts[&Fault::TruncatedBody] > 0,
        "no body broken: {counts:?}"
    );

    // Afterwards, straight to the real server: the survivor verifies deeply,
    // the purged one is gone, and every blob's content hashes to its name.
    let direct_env = [
        ("KASSETTE_STORAGE_ENDPOINT", direct.as_str()),
        ("KASSETTE_BACKUP_NAME", second.as_str()),
    ];
    assert_success(
        &dc.kassette(&["verify", "--deep"], &direct_env).await,
        "verify --deep directly",
    );
    let listed = dc
        .kassette(
            &["list", "--json"],
            &[("KASSETTE_STORAGE_ENDPOINT", direct.as_str())],
        )
        .await;
    assert_success(&listed, "list directly");
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = entries.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, [second.as_str()], "{}", text(&listed));
    let store = dc.store().await;
    let layout = Layout::new(
        &setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        &setting("KASSETTE_TEST_CASSANDRA_DC"),
    )
    .unwrap();
    // What the survivor's node manifests say each object holds.
    let catalog = kassette::catalog::Catalog::new(store.clone(), layout.clone());
    let survivor = catalog.backup_manifest(&second).await.expect("survivor");
    let mut expected = std::collections::HashMap::new();
    for node in catalog
        .node_manifests(&survivor)
        .await
        .expect("node manifests")
    {
        for file in node.files {
            expected.insert(layout.content(&file).unwrap(), file.digest.blake3_hex());
        }
    }
    let mut checked = 0;
    for prefix in [layout.blobs_prefix(), layout.files_prefix()] {
        let mut objects = store.list(&prefix);
        while let Some(meta) = objects.next().await {
            let meta = meta.expect("list objects");
            let content = store.get_bytes(&meta.key).await.expect("read object");
            let hash = blake3::hash(&content).to_hex().to_string();
            // A content-addressed blob hashes to its name; a file under
            // files/ to what the manifest referencing it says.
            let want = if prefix == layout.blobs_prefix() {
                meta.key.as_str().rsplit('/').next().unwrap().to_string()
            } else if let Some(want) = expected.get(&meta.key) {
                want.clone()
            } else {
                continue;
            };
            assert_eq!(hash, want, "{} does not hold what names it", meta.key);
            checked += 1;
        }
    }
    assert!(checked > 0, "no objects stored");
    eprintln!("{checked} objects hold what their names or manifests say");
}
