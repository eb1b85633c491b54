//! End to end: `kassette backup` (and list / status / verify / purge) as
//! processes, against the real 3-node cluster with one real agent process
//! per node, on the real S3-compatible server, the GCS emulator, Azurite
//! (Azure Blob Storage) and a local directory.

mod common;

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use common::dataset::Dataset;
use common::dc::{Datacenter, StoreKind, assert_success, backup_name, text};
use common::{cql_cluster, setting};
use kassette::catalog::{BackupManifest, Catalog, Layout, NodeManifest};
use kassette::storage::PutMode;
use scylla::client::session::Session;

fn catalog_of(dc: &Datacenter, store: std::sync::Arc<dyn kassette::storage::Store>) -> Catalog {
    let layout = Layout::new(
        &setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        &setting("KASSETTE_TEST_CASSANDRA_DC"),
    )
    .unwrap();
    let _ = dc;
    Catalog::new(store, layout)
}

async fn manifests(dc: &Datacenter, name: &str) -> (BackupManifest, Vec<NodeManifest>) {
    let catalog = catalog_of(dc, dc.store().await);
    let backup = catalog
        .backup_manifest(name)
        .await
        .expect("backup manifest");
    let nodes = catalog
        .node_manifests(&backup)
        .await
        .expect("node manifests");
    (backup, nodes)
}

fn is_metadata(path: &str) -> bool {
    path == "manifest.json" || path == "schema.cql"
}

/// The main path on one store: full backup, `verify --deep`, an unchanged
/// re-run that sends and reads no data, then a differential backup that
/// sends only the new SSTables.
async fn full_then_differential(kind: StoreKind) {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, 300, 512).await;
    data.flush();
    data.write(&session, 300, 600, 512).await;
    // The local-store run also has the agents serve HTTPS (private CA).
    let dc = if kind == StoreKind::Local {
        Datacenter::start_tls(kind).await
    } else {
        Datacenter::start(kind, &[]).await
    };

    let first = backup_name("full-");
    let out = dc.backup(&first, &data.keyspaces()).await;
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("backup {first} complete: 3 nodes")),
        "{summary}"
    );
    let verified = dc
        .kassette(&["verify", "--deep"], &[("KASSETTE_BACKUP_NAME", &first)])
        .await;
    assert_success(&verified, "verify --deep");
    assert!(
        text(&verified).contains("verified (deep)"),
        "{}",
        text(&verified)
    );

    let (backup, nodes) = manifests(&dc, &first).await;
    assert_eq!(backup.nodes.len(), 3);
    let mut keyspaces = backup.keyspaces.clone();
    keyspaces.sort();
    let mut expected: Vec<String> = data.keyspaces().iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(keyspaces, expected);
    assert!(
        backup.schema_cql.contains("CREATE INDEX users_by_email"),
        "{}",
        backup.schema_cql
    );
    assert!(
        backup
            .schema_cql
            .contains(&format!("CREATE TABLE {}.items", data.other))
    );
    for node in &nodes {
        assert!(!node.tokens.is_empty(), "{} has no tokens", node.address);
        let tables: BTreeSet<&str> = node.files.iter().map(|f| f.table.as_str()).collect();
        assert_eq!(
            tables,
            BTreeSet::from(["events", "items", "users"]),
            "{}",
            node.address
        );
        // Several SSTables per table: the test flushed once, the pass again.
        let users_data = node
            .files
            .iter()
            .filter(|f| {
                f.table == "users" && f.path.ends_with("Data.db") && !f.path.starts_with('.')
            })
            .count();
        assert!(
            users_data >= 2,
            "{} has {users_data} users SSTables",
            node.address
        );
        assert!(
            node.files
                .iter()
                .any(|f| f.path.starts_with(".users_by_email/")),
            "{}: no secondary index files",
            node.address
        );
    }
    let tokens: HashSet<&String> = nodes.iter().flat_map(|n| &n.tokens).collect();
    assert_eq!(
        tokens.len(),
        nodes.iter().map(|n| n.tokens.len()).sum::<usize>(),
        "tokens are per node"
    );
    // The JBOD node: both data directories contributed files.
    let jbod = nodes
        .iter()
        .find(|n| n.data_dirs.len() == 2)
        .expect("the JBOD node");
    let dirs: BTreeSet<u32> = jbod.files.iter().map(|f| f.data_dir).collect();
    assert_eq!(dirs, BTreeSet::from([0, 1]), "JBOD node files by data dir");

    // Unchanged: nothing read, only Cassandra's fresh snapshot metadata sent.
    let second = backup_name("same-");
    dc.backup(&second, &data.keyspaces()).await;
    let (again, again_nodes) = manifests(&dc, &second).await;
    for node in &again.nodes {
        assert_eq!(
            node.read_bytes, 0,
            "unchanged node {} re-read data",
            node.address
        );
    }
    let known: HashSet<[u8; 32]> = nodes
        .iter()
        .flat_map(|n| n.files.iter().map(|f| f.digest.blake3))
        .collect();
    for node in &again_nodes {
        for file in node
            .files
            .iter()
            .filter(|f| !known.contains(&f.digest.blake3))
        {
            assert!(
                is_metadata(&file.path),
                "unchanged {} changed: {}",
                node.address,
                file.path
            );
        }
    }

    // Differential: new rows, flushed; only new files go up.
    data.write(&session, 600, 900, 512).await;
    let third = backup_name("diff-");
    dc.backup(&third, &data.keyspaces()).await;
    let (diff, diff_nodes) = manifests(&dc, &third).await;
    let known: HashSet<[u8; 32]> = known
        .into_iter()
        .chain(
            again_nodes
                .iter()
                .flat_map(|n| n.files.iter().map(|f| f.digest.blake3)),
        )
        .collect();
    let new_bytes: u64 = diff_nodes
        .iter()
        .flat_map(|n| &n.files)
        .filter(|f| !known.contains(&f.digest.blake3))
        .map(|f| f.digest.size)
        .sum();
    let new_data_bytes: u64 = diff_nodes
        .iter()
        .flat_map(|n| &n.files)
        .filter(|f| !known.contains(&f.digest.blake3) && !is_metadata(&f.path))
        .map(|f| f.digest.size)
        .sum();
    assert!(new_data_bytes > 0, "the writes made no new SSTables");
    assert!(new_bytes > 0);
    assert!(diff.uploaded_bytes > 0);
    assert!(
        diff.uploaded_bytes < diff.bytes,
        "{} of {}",
        diff.uploaded_bytes,
        diff.bytes
    );
    // Data read to hash: exactly the SSTable files that did not exist at the
    // previous backup (by node and path; some new files repeat old content,
    // like TOC.txt, and are still read once).
    let old_files: HashSet<_> = again_nodes
        .iter()
        .flat_map(|n| {
            n.files
                .iter()
                .map(move |f| (n.host_id, f.data_dir, &f.table_id, &f.path))
        })
        .collect();
    let new_file_bytes: u64 = diff_nodes
        .iter()
        .flat_map(|n| n.files.iter().map(move |f| (n.host_id, f)))
        .filter(|(host, f)| {
            !is_metadata(&f.path) && !old_files.contains(&(*host, f.data_dir, &f.table_id, &f.path))
        })
        .map(|(_, f)| f.digest.size)
        .sum();
    let read: u64 = diff.nodes.iter().map(|n| n.read_bytes).sum();
    assert_eq!(
        read, new_file_bytes,
        "data read should be exactly the new SSTables, each once"
    );
    // Sent: the new files — the new SSTables (even those whose content an
    // older file has, like TOC.txt: node manifest version 2 stores each
    // file once under its own key) and the snapshot's fresh metadata —
    // and nothing the previous backup holds.
    let new_files_with_metadata: u64 = diff_nodes
        .iter()
        .flat_map(|n| n.files.iter().map(move |f| (n.host_id, f)))
        .filter(|(host, f)| {
            // Cassandra writes manifest.json and schema.cql afresh into
            // every snapshot, under the same paths.
            is_metadata(&f.path) || !old_files.contains(&(*host, f.data_dir, &f.table_id, &f.path))
        })
        .map(|(_, f)| f.digest.size)
        .sum();
    assert!(
        (new_file_bytes..=new_files_with_metadata).contains(&diff.uploaded_bytes),
        "uploaded {} bytes; the new SSTables are {new_file_bytes}, with metadata {new_files_with_metadata}",
        diff.uploaded_bytes
    );
    let previous: HashSet<_> = again_nodes
        .iter()
        .flat_map(|n| n.files.iter().filter_map(|f| f.blob.clone()))
        .collect();
    for file in diff_nodes.iter().flat_map(|n| &n.files) {
        if let Some(blob) = &file.blob
            && !previous.contains(blob)
        {
            assert!(
                blob.contains(&format!("/{third}/")),
                "{blob} is not this backup's"
            );
        }
    }
    assert_success(
        &dc.kassette(&["verify", "--deep"], &[("KASSETTE_BACKUP_NAME", &third)])
            .await,
        "verify --deep of the differential backup",
    );

    // The index lists the three, oldest first; `latest` is the last.
    let listed = dc.kassette(&["list", "--json"], &[]).await;
    assert_success(&listed, "list");
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [first.as_str(), second.as_str(), third.as_str()]);
    let latest = dc.manifest("latest").await;
    assert_eq!(latest["name"], third.as_str());

    // Snapshots are cleared on every node.
    for node in 1..=3 {
        let left: Vec<String> = common::dc::snapshot_tags(node)
            .into_iter()
            .filter(|t| t.contains(&first) || t.contains(&second) || t.contains(&third))
            .collect();
        assert!(left.is_empty(), "node {node} kept snapshots {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_full_and_differential_backups() {
    full_then_differential(StoreKind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_full_and_differential_backups() {
    full_then_differential(StoreKind::Gcs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_full_and_differential_backups() {
    full_then_differential(StoreKind::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_full_and_differential_backups() {
    full_then_differential(StoreKind::Local).await;
}

/// A damaged store is caught: a deleted blob by `verify`, an altered one
/// (same size) by `verify --deep`, each naming the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_missing_and_altered_blobs() {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, 100, 256).await;
    let dc = Datacenter::start(StoreKind::S3, &[]).await;
    let name = backup_name("dmg-");
    dc.backup(&name, &data.keyspaces()).await;
    let (_, nodes) = manifests(&dc, &name).await;
    let store = dc.store().await;
    let catalog = catalog_of(&dc, store.clone());
    let data_files: Vec<_> = nodes[0]
        .files
        .iter()
        .filter(|f| f.path.ends_with("Data.db") && f.digest.size > 16)
        .collect();
    let (gone, altered) = (data_files[0], data_files[1]);
    let gone_key = catalog.layout().content(gone).unwrap();
    let altered_key = catalog.layout().content(altered).unwrap();

    store
        .delete_many(std::slice::from_ref(&gone_key))
        .await
        .unwrap();
    let out = dc
        .kassette(&["verify"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{gone_key}: missing")),
        "{}",
        text(&out)
    );

    // Put zeros of the right size back, and flip one byte of another blob:
    // sizes match, so only a deep verify can tell.
    let bytes = store.get_bytes(&altered_key).await.unwrap();
    let mut flipped = bytes.to_vec();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    store
        .put_bytes(&altered_key, Bytes::from(flipped), PutMode::Overwrite)
        .await
        .unwrap();
    let same_size = Bytes::from(vec![0u8; gone.digest.size as usize]);
    store
        .put_bytes(&gone_key, same_size, PutMode::Overwrite)
        .await
        .unwrap();
    let shallow = dc
        .kassette(&["verify"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    assert_success(&shallow, "verify (sizes match)");
    let deep = dc
        .kassette(&["verify", "--deep"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    assert_eq!(deep.status.code(), Some(1), "{}", text(&deep));
    let report = text(&deep);
    assert!(report.contains(altered_key.as_str()), "{report}");
    assert!(report.contains(gone_key.as_str()), "{report}");
    assert!(report.contains("does not match its checksum"), "{report}");
}

/// Loads enough data that an upload throttled to 2 MiB/s per agent takes
/// several seconds.
async fn big_dataset(session: &Session) -> Dataset {
    let data = Dataset::create(session).await;
    data.write(session, 0, 160, 64 * 1024).await;
    data
}

/// A second pass while one runs is refused naming the holder; a killed
/// coordinator leaves no complete backup, and a re-run with the same name
/// completes, sending only what was missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_coordinator_resumes_and_concurrent_pass_is_refused() {
    let session = cql_cluster().await;
    let data = big_dataset(&session).await;
    let dc = Datacenter::start(StoreKind::S3, &[("KASSETTE_MAX_BANDWIDTH", "2MiB/s")]).await;
    let name = backup_name("killed-");
    let ks = data.keyspaces().join(",");
    let env = [
        ("KASSETTE_BACKUP_NAME", name.as_str()),
        ("KASSETTE_KEYSPACES", ks.as_str()),
    ];
    let mut first = dc
        .coordinator(&["backup"], &env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first_pid = first.id().unwrap();
    dc.wait_for_progress("started uploading", |p| {
        p.state == "uploading" && p.bytes_uploaded > 0
    })
    .await;

    let other = backup_name("second-");
    let refused = dc
        .kassette(
            &["backup"],
            &[
                ("KASSETTE_BACKUP_NAME", &other),
                ("KASSETTE_KEYSPACES", &ks),
            ],
        )
        .await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let message = text(&refused);
    assert!(message.contains("locked by"), "{message}");
    assert!(
        message.contains(&format!("/{first_pid}")),
        "holder not named: {message}"
    );

    first.kill().await.unwrap();
    let status = dc
        .kassette(&["status"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    assert_eq!(status.status.code(), Some(1));
    assert!(text(&status).contains("incomplete"), "{}", text(&status));
    let listed = dc.kassette(&["list", "--json"], &[]).await;
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["name"], name.as_str());
    // Its lease has not expired yet: the killed pass still looks like the
    // writer (or, once expired, a leftover) — never complete.
    assert!(
        entries[0]["status"] == "being_written" || entries[0]["status"] == "incomplete",
        "{entries:?}"
    );

    // The killed pass's lease expires (LEASE_TTL in tests); the re-run takes over,
    // clears the stale snapshot and completes.
    tokio::time::sleep(common::dc::after_lease_expiry()).await;
    let rerun = dc.kassette(&["backup"], &env).await;
    assert_success(&rerun, "re-run of the killed backup");
    let manifest = dc.manifest(&name).await;
    let (uploaded, total) = (
        manifest["uploaded_bytes"].as_u64().unwrap(),
        manifest["bytes"].as_u64().unwrap(),
    );
    assert!(
        uploaded < total,
        "the re-run sent everything again ({uploaded} of {total})"
    );
    assert_success(
        &dc.kassette(&["verify", "--deep"], &[("KASSETTE_BACKUP_NAME", &name)])
            .await,
        "verify --deep of the resumed backup",
    );
}

/// An agent killed mid-upload fails the pass naming its node; the other
/// nodes' snapshots are cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_fails_the_pass_naming_the_node() {
    let session = cql_cluster().await;
    let data = big_dataset(&session).await;
    let mut dc = Datacenter::start(StoreKind::S3, &[("KASSETTE_MAX_BANDWIDTH", "2MiB/s")]).await;
    let name = backup_name("agentdown-");
    let ks = data.keyspaces().join(",");
    let pass = dc
        .coordinator(
            &["backup"],
            &[("KASSETTE_BACKUP_NAME", &name), ("KASSETTE_KEYSPACES", &ks)],
        )
        .output();
    let pass = tokio::spawn(pass);
    dc.wait_for_progress("started uploading", |p| {
        p.state == "uploading" && p.bytes_uploaded > 0
    })
    .await;
    dc.kill_agent(2).await;
    let out = pass.await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    let victim = dc.agents[1].address.clone();
    assert!(message.contains(&format!("node {victim}")), "{message}");

    for node in [1, 3] {
        let left: Vec<String> = common::dc::snapshot_tags(node)
            .into_iter()
            .filter(|t| t.contains(&name))
            .collect();
        assert!(left.is_empty(), "node {node} kept {left:?}");
    }
    let status = dc
        .kassette(&["status"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    assert_eq!(status.status.code(), Some(1));
    // The dead agent could not clear its node's snapshot; do it here.
    for tag in common::dc::snapshot_tags(2)
        .into_iter()
        .filter(|t| t.contains(&name))
    {
        common::run(
            setting("KASSETTE_TEST_NODETOOL"),
            &["-n", "2", "clearsnapshot", "-t", &tag],
        );
    }
}

/// Retention keeps the newest N; the survivors still verify deeply, and
/// blobs only the deleted backups used are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_last_n_and_collects_garbage() {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    let dc = Datacenter::start(StoreKind::Local, &[]).await;
    let mut names = Vec::new();
    for round in 0..3 {
        // Overwrite the same rows: older SSTables become garbage once
        // compaction or retention drops them.
        data.write(&session, 0, 100, 128 + round).await;
        let name = backup_name(&format!("ret{round}-"));
        dc.backup(&name, &data.keyspaces()).await;
        names.push(name);
    }
    let store = dc.store().await;
    let catalog = catalog_of(&dc, store.clone());
    let (_, oldest_nodes) = manifests(&dc, &names[0]).await;

    let dry = dc
        .kassette(
            &["purge", "--dry-run"],
            &[("KASSETTE_RETENTION_KEEP_LAST", "2")],
        )
        .await;
    assert_success(&dry, "purge --dry-run");
    assert!(
        text(&dry).contains(&format!("would delete 1 expired backup(s) [{}]", names[0])),
        "{}",
        text(&dry)
    );
    assert!(
        catalog.is_complete(&names[0]).await.unwrap(),
        "dry run deleted a backup"
    );

    data.write(&session, 0, 100, 200).await;
    let last = backup_name("ret3-");
    let out = dc
        .kassette(
            &["backup"],
            &[
                ("KASSETTE_BACKUP_NAME", last.as_str()),
                ("KASSETTE_KEYSPACES", &data.keyspaces().join(",")),
                ("KASSETTE_RETENTION_KEEP_LAST", "2"),
            ],
        )
        .await;
    assert_success(&out, "backup with retention");
    names.push(last);

    let listed = dc.kassette(&["list", "--json"], &[]).await;
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let kept: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [names[2].as_str(), names[3].as_str()]);
    for name in &kept {
        assert_success(
            &dc.kassette(&["verify", "--deep"], &[("KASSETTE_BACKUP_NAME", name)])
                .await,
            "verify --deep of a survivor",
        );
    }
    assert!(!catalog.is_complete(&names[0]).await.unwrap());
    // Blobs only the deleted backups referenced were collected.
    let mut survivors = HashSet::new();
    for name in &kept {
        let (_, nodes) = manifests(&dc, name).await;
        survivors.extend(
            nodes
                .iter()
                .flat_map(|n| n.files.iter().map(|f| catalog.layout().content(f).unwrap())),
        );
    }
    // Every object a survivor references is still there.
    for key in &survivors {
        assert!(
            store.head(key).await.unwrap().is_some(),
            "{key} was collected"
        );
    }
    let orphan = oldest_nodes
        .iter()
        .flat_map(|n| &n.files)
        .find(|f| !survivors.contains(&catalog.layout().content(f).unwrap()))
        .expect("the oldest backup had files no survivor shares");
    let key = catalog.layout().content(orphan).unwrap();
    assert!(
        store.head(&key).await.unwrap().is_none(),
        "{key} was not collected"
    );
}

/// Discovery through the real kube-apiserver: the datacenter's pods (by
/// cass-operator labels, whose pod IPs are the agents' addresses) and not
/// another datacenter's; a pod that is not Ready stops the pass, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_discovery_finds_exactly_the_datacenter() {
    use common::k8s;
    use k8s_openapi::api::core::v1::Pod;
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, 50, 64).await;
    let dc = Datacenter::start(StoreKind::S3, &[]).await;
    let client = k8s::client().await;
    let ns = k8s::namespace(&client).await;
    let pods = kube::Api::<Pod>::namespaced(client.clone(), &ns);
    let cluster = setting("KASSETTE_TEST_CASSANDRA_CLUSTER");
    for node in 1..=3 {
        let name = format!("{cluster}-dc1-rack1-sts-{}", node - 1);
        k8s::create_cassandra_pod(&pods, &name, &cluster, "dc1").await;
        k8s::set_pod_status(&pods, &name, &format!("127.0.0.{node}"), true).await;
    }
    // Another datacenter of the same cluster, and a "dc1" of another
    // cluster: both Ready, both at addresses where no agent listens.
    k8s::create_cassandra_pod(&pods, "other-dc-pod", &cluster, "dc1-east").await;
    k8s::set_pod_status(&pods, "other-dc-pod", "127.0.0.9", true).await;
    k8s::create_cassandra_pod(&pods, "other-cluster-pod", "other", "dc1").await;
    k8s::set_pod_status(&pods, "other-cluster-pod", "127.0.0.10", true).await;

    let ks = data.keyspaces().join(",");
    let name = backup_name("k8s-");
    let out = backup_discovering(&dc, &ns, &name, &ks).await;
    assert_success(&out, "backup with Kubernetes discovery");
    let manifest = dc.manifest(&name).await;
    let mut addresses: Vec<&str> = manifest["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    addresses.sort();
    assert_eq!(addresses, ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);

    let down = format!("{cluster}-dc1-rack1-sts-1");
    k8s::set_pod_status(&pods, &down, "127.0.0.2", false).await;
    let out = backup_discovering(&dc, &ns, &backup_name("k8s-down-"), &ks).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("pod {down} is not ready")),
        "{}",
        text(&out)
    );
    k8s::delete_namespace(&client, &ns).await;
}

/// `kassette backup` finding its agents through the kube-apiserver (no
/// `KASSETTE_NODES`): pods of `namespace`, agent port of the test agents.
async fn backup_discovering(
    dc: &Datacenter,
    namespace: &str,
    name: &str,
    keyspaces: &str,
) -> std::process::Output {
    let port = dc.port.to_string();
    let mut command = dc.coordinator(&["backup"], &[]);
    command
        .env_remove("KASSETTE_NODES")
        .env("KASSETTE_NAMESPACE", namespace)
        .env("KASSETTE_AGENT_PORT", &port)
        .env("KUBECONFIG", setting("KUBECONFIG"))
        .env("KASSETTE_BACKUP_NAME", name)
        .env("KASSETTE_KEYSPACES", keyspaces);
    command.output().await.expect("run kassette backup")
}

/// What the fake Pushgateway received: (path, body) per push.
type Pushes = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// **A fake** Pushgateway (the real one is not served by the Go module
/// proxy here): it accepts what the real one accepts at
/// `/metrics/job/<job>/<label>/<value>…` and records path and body.
async fn fake_pushgateway() -> (String, Pushes) {
    use axum::extract::{Request, State};
    let pushes = Pushes::default();
    let app = axum::Router::new()
        .fallback(
            |State(pushes): State<Pushes>, request: Request| async move {
                let path = request.uri().path().to_string();
                let method = request.method().clone();
                let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap();
                if method != axum::http::Method::POST || !path.starts_with("/metrics/job/") {
                    return axum::http::StatusCode::METHOD_NOT_ALLOWED;
                }
                pushes
                    .lock()
                    .unwrap()
                    .push((path, String::from_utf8_lossy(&body).into_owned()));
                axum::http::StatusCode::OK
            },
        )
        .with_state(pushes.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, pushes)
}

/// Metrics reach the Pushgateway after a successful and a failed pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_pushed_after_every_pass() {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, 20, 64).await;
    let dc = Datacenter::start(StoreKind::Local, &[]).await;
    let (url, pushes) = fake_pushgateway().await;
    let name = backup_name("metrics-");
    let ks = data.keyspaces().join(",");
    let out = dc
        .kassette(
            &["backup"],
            &[
                ("KASSETTE_BACKUP_NAME", name.as_str()),
                ("KASSETTE_KEYSPACES", &ks),
                ("KASSETTE_PUSHGATEWAY_URL", &url),
            ],
        )
        .await;
    assert_success(&out, "backup with metrics");
    let failed = dc
        .kassette(
            &["backup"],
            &[
                ("KASSETTE_KEYSPACES", "no_such_keyspace"),
                ("KASSETTE_PUSHGATEWAY_URL", &url),
            ],
        )
        .await;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(
        text(&failed).contains("KASSETTE_KEYSPACES: keyspace \"no_such_keyspace\" does not exist"),
        "{}",
        text(&failed)
    );

    let pushes = pushes.lock().unwrap().clone();
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    let group = format!(
        "/metrics/job/kassette_backup/cluster/{}/datacenter/{}",
        setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        setting("KASSETTE_TEST_CASSANDRA_DC")
    );
    let manifest = dc.manifest(&name).await;
    let (path, body) = &pushes[0];
    assert_eq!(path, &group);
    assert!(body.contains("kassette_backup_success 1\n"), "{body}");
    assert!(
        body.contains(&format!("kassette_backup_bytes {}\n", manifest["bytes"])),
        "{body}"
    );
    assert!(
        body.contains(&format!("kassette_backup_files {}\n", manifest["files"])),
        "{body}"
    );
    assert!(
        body.contains("kassette_backup_last_success_timestamp_seconds "),
        "{body}"
    );
    assert!(
        body.contains("# TYPE kassette_backup_duration_seconds gauge\n"),
        "{body}"
    );
    let (path, body) = &pushes[1];
    assert_eq!(path, &group);
    assert!(body.contains("kassette_backup_success 0\n"), "{body}");
    assert!(
        !body.contains("last_success"),
        "a failure must not move the success time: {body}"
    );
}

/// One certificate for the DNS name `kassette-agent` and no address, as
/// the kassette-agent chart issues it for every agent pod: with
/// `KASSETTE_AGENT_TLS_SERVER_NAME` the coordinator connects to each
/// agent's IP, verifies that name, and the backup completes. Without the
/// name (the addresses are checked) or with another one, the pass fails
/// before any snapshot, naming the node and the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_behind_one_certificate_name_are_verified_by_that_name() {
    let session = cql_cluster().await;
    let ks = common::create_keyspace_with_rf(&session, "tlsname_", 3).await;
    common::create_table_t(&session, &ks, 100).await;
    let dc = Datacenter::start_tls_named(StoreKind::Local, "kassette-agent").await;

    let name = backup_name("tlsname-");
    let out = dc.backup(&name, &[&ks]).await;
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("backup {name} complete: 3 nodes")),
        "{summary}"
    );

    for server_name in [None, Some("someone-else")] {
        let refused = backup_name("tlsrefused-");
        let mut pass = dc.coordinator(
            &["backup"],
            &[
                ("KASSETTE_BACKUP_NAME", &refused),
                ("KASSETTE_KEYSPACES", &ks),
            ],
        );
        match server_name {
            None => pass.env_remove("KASSETTE_AGENT_TLS_SERVER_NAME"),
            Some(other) => pass.env("KASSETTE_AGENT_TLS_SERVER_NAME", other),
        };
        let out = pass.output().await.expect("run kassette");
        let message = text(&out);
        assert_eq!(out.status.code(), Some(1), "{server_name:?}: {message}");
        assert!(
            dc.agents.iter().any(|a| message.contains(&a.address))
                && message.to_lowercase().contains("certificate"),
            "{server_name:?}: {message}"
        );
        let nothing_left = (1..=3).all(|node| {
            common::dc::snapshot_tags(node)
                .iter()
                .all(|t| !t.contains(&refused))
        });
        assert!(nothing_left, "a refused pass left a snapshot");
    }
}

/// K8ssandra's storage Secret mounted whole, as the charts and the
/// documented sidecar mount it: `KASSETTE_STORAGE_CREDENTIALS_FILE` names
/// the directory and kassette reads `medusa_s3_credentials` from it (a
/// symlink into `..data`, as the kubelet lays keys out) to reach the real
/// S3 server. A directory without a known key is refused (exit 2), naming
/// the file names looked for.
#[tokio::test]
async fn a_k8ssandra_storage_secret_directory_is_read_as_it_is() {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = common::new_s3_bucket(&endpoint).await;
    let secret = tempfile::tempdir().unwrap();
    let data = secret.path().join("..2026_12_02_03_00_00.000000001");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(
        setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
        data.join("medusa_s3_credentials"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        data.join("medusa_s3_credentials"),
        secret.path().join("medusa_s3_credentials"),
    )
    .unwrap();
    let list = |credentials: &std::path::Path| {
        let mut command = common::dc::kassette_command();
        command
            .args(["list", "--json"])
            .env("KASSETTE_STORAGE_PROVIDER", "s3")
            .env("KASSETTE_STORAGE_BUCKET", &bucket)
            .env("KASSETTE_STORAGE_ENDPOINT", &endpoint)
            .env("KASSETTE_STORAGE_ALLOW_HTTP", "true")
            .env(
                "KASSETTE_STORAGE_REGION",
                setting("KASSETTE_TEST_S3_REGION"),
            )
            .env("KASSETTE_STORAGE_CREDENTIALS_FILE", credentials)
            .env("KASSETTE_CLUSTER", "k8ssandra")
            .env("KASSETTE_DATACENTER", "dc1");
        command.output()
    };
    let out = list(secret.path()).await.unwrap();
    assert_success(&out, "list with a K8ssandra Secret directory");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );

    let empty = tempfile::tempdir().unwrap();
    let out = list(empty.path()).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("KASSETTE_STORAGE_CREDENTIALS_FILE")
            && text(&out).contains("none of credentials, medusa_s3_credentials"),
        "{}",
        text(&out)
    );
}
