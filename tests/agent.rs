//! The node agent, in-process on a loopback port, driving the real JBOD
//! Cassandra node and uploading to the real S3-compatible server.

mod common;

use std::sync::Arc;

use common::{setting, unique};
use kassette::agent::api::{
    NodeInfo, PreviousManifest, Progress, SnapshotRequest, SnapshotTaken, UploadReport,
    UploadRequest,
};
use kassette::agent::{AgentState, serve};
use kassette::cassandra::control::{Control, Nodetool};
use kassette::catalog::Layout;
use kassette::coordinator::client::{AgentClient, ClientError, JobSpec};
use kassette::storage::{self, Store};

const TOKEN: &str = "test-token-0123456789";
const NODE: usize = 3;

struct Agent {
    url: String,
    client: AgentClient,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    _state_dir: tempfile::TempDir,
}

impl Agent {
    async fn start() -> Self {
        let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
        let bucket = common::new_s3_bucket(&endpoint).await;
        let credentials = setting("KASSETTE_TEST_S3_CREDENTIALS_FILE");
        let config = common::s3_storage_config(&endpoint, &bucket, &credentials, "");
        let store = storage::open(&config).await.expect("open store");
        let data_dirs = common::cassandra_data_dirs(NODE);
        let state_dir = tempfile::tempdir().unwrap();
        let nodetool = Nodetool::new(&format!("{} -n {NODE}", setting("KASSETTE_TEST_NODETOOL")));
        let state = AgentState::new(
            TOKEN.as_bytes(),
            data_dirs,
            Control::Nodetool(nodetool),
            store.clone(),
            state_dir.path().join("digests.json"),
            4,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let url = format!("http://{address}");
        let client = AgentClient::new(&address, TOKEN).unwrap();
        tokio::spawn(serve(listener, state, std::future::pending()));
        Self {
            url,
            client,
            http: reqwest::Client::new(),
            store,
            _state_dir: state_dir,
        }
    }
}

#[tokio::test]
async fn requests_need_the_token() {
    let agent = Agent::start().await;
    let url = format!("{}/v1/node", agent.url);
    let none = agent.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = agent
        .http
        .get(&url)
        .bearer_auth("test-token-0123456780")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let info: NodeInfo = agent.client.node_info().await.unwrap();
    assert_eq!(info.data_dirs.len(), 2);
}

async fn write_rows(ks: &str, from: i32, to: i32) {
    let session = common::cql_cluster().await;
    let insert = session
        .prepare(format!("INSERT INTO {ks}.events (id, body) VALUES (?, ?)"))
        .await
        .unwrap();
    for id in from..to {
        session
            .execute_unpaged(&insert, (id, "x".repeat(200)))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn uploads_only_what_the_store_lacks() {
    let agent = Agent::start().await;
    let session = common::cql_cluster().await;
    let ks = common::create_keyspace(&session, "agent_").await;
    session
        .query_unpaged(
            format!("CREATE TABLE {ks}.events (id int PRIMARY KEY, body text)"),
            (),
        )
        .await
        .unwrap();
    session.await_schema_agreement().await.unwrap();
    write_rows(&ks, 0, 500).await;

    let snapshot = |tag: &str| SnapshotRequest {
        tag: tag.into(),
        keyspaces: vec![ks.clone()],
    };
    let layout = Layout::new("kassette-test", "dc1").unwrap();
    let host = uuid::Uuid::new_v4();
    let upload = |tag: &str, previous: Option<PreviousManifest>| UploadRequest {
        tag: tag.into(),
        cluster: "kassette-test".into(),
        datacenter: "dc1".into(),
        files_prefix: Some(layout.new_files(&host, tag, "backup-0001").unwrap()),
        previous,
    };

    let job = JobSpec::new_pass("test", std::time::Duration::from_secs(30));
    let first_tag = unique("kassette-a");
    let taken: SnapshotTaken = agent.client.snapshot(&snapshot(&first_tag)).await.unwrap();
    assert!(taken.files > 0);
    let first: UploadReport = agent
        .client
        .upload(&job, &upload(&first_tag, None))
        .await
        .unwrap();
    assert_eq!(first.files.len() as u64, taken.files);
    // A new store receives every file once, each to a key of its own
    // under the pass's prefix (node manifest version 2).
    assert_eq!(first.uploaded_bytes, first.bytes);
    assert_eq!(first.uploaded_files, first.files.len() as u64);
    assert_eq!(first.reused_files, 0);
    // Every data file was read once, while it was sent; Cassandra's own
    // snapshot manifest.json and schema.cql are not counted as data.
    assert_eq!(first.hashed_bytes, data_bytes(&first));
    let prefix = layout.new_files(&host, &first_tag, "backup-0001").unwrap();
    for file in &first.files {
        let blob = file
            .blob
            .as_deref()
            .expect("a version 2 entry names its object");
        assert!(blob.starts_with(&format!("{prefix}/")), "{blob}");
        let content = agent
            .store
            .get_bytes(&layout.content(file).unwrap())
            .await
            .unwrap();
        assert_eq!(
            storage::digest_of(&content),
            file.digest,
            "{}: the recorded digest is the stored content's",
            file.path
        );
        let meta = agent
            .store
            .head(&layout.content(file).unwrap())
            .await
            .unwrap();
        assert_eq!(
            meta.map(|m| m.size),
            Some(file.digest.size),
            "{}",
            file.path
        );
    }
    let progress: Progress = agent.client.progress().await.unwrap();
    assert_eq!(progress.state, "done");
    assert_eq!(progress.bytes_done, first.bytes);

    // The same snapshot again, as a pass following a killed one (no
    // complete backup yet): what the killed pass sent is confirmed by a
    // head, nothing sent, nothing read.
    let again: UploadReport = agent
        .client
        .upload(&job, &upload(&first_tag, None))
        .await
        .unwrap();
    assert_eq!(
        (
            again.uploaded_files,
            again.uploaded_bytes,
            again.hashed_bytes
        ),
        (0, 0, 0)
    );

    // More writes, a new snapshot: only the new SSTables go up.
    write_rows(&ks, 500, 1_000).await;
    let second_tag = unique("kassette-b");
    let _: SnapshotTaken = agent.client.snapshot(&snapshot(&second_tag)).await.unwrap();
    // The first upload as a complete backup's node manifest: the next
    // upload references what it holds without reading or sending it.
    let manifest_key = layout.node_manifest(&first_tag, &host).unwrap();
    let manifest = serde_json::json!({
        "format_version": 2, "backup": first_tag, "cluster": "kassette-test",
        "datacenter": "dc1", "rack": "rack1", "host_id": host, "address": "127.0.0.3",
        "tokens": [], "cassandra_version": "5.0", "snapshot_tag": first_tag,
        "snapshot_at": "2026-11-25T02:00:00Z", "data_dirs": [], "files": first.files,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_blake3 = storage::digest_of(&manifest).blake3_hex();
    agent
        .store
        .put_bytes(&manifest_key, manifest.into(), storage::PutMode::Overwrite)
        .await
        .unwrap();
    let previous = PreviousManifest {
        key: layout.relative(manifest_key.as_str()).unwrap().to_string(),
        manifest_blake3,
    };
    let second: UploadReport = agent
        .client
        .upload(&job, &upload(&second_tag, Some(previous)))
        .await
        .unwrap();
    assert!(second.reused_files > 0, "{second:?}");
    // Files the first upload sent (the same SSTables, hard-linked into the
    // new snapshot) are referenced, not sent again; the snapshot's own
    // manifest.json and schema.cql are new files.
    let mut referenced = 0;
    for file in &second.files {
        let Some(old) = first.files.iter().find(|f| {
            (&f.keyspace, &f.table, &f.path, f.data_dir)
                == (&file.keyspace, &file.table, &file.path, file.data_dir)
        }) else {
            continue;
        };
        if matches!(file.path.as_str(), "manifest.json" | "schema.cql") {
            continue;
        }
        // Its object, or one the first upload stored with equal content
        // (SSTables' TOC.txt files are often identical).
        assert!(
            first
                .files
                .iter()
                .any(|f| f.digest == old.digest && f.blob == file.blob),
            "{} was sent again: {:?}",
            file.path,
            file.blob
        );
        referenced += 1;
    }
    assert_eq!(
        referenced,
        second.reused_files - reused_metadata(&second, &first)
    );

    assert!(
        second.uploaded_files > 0,
        "the new SSTables were not uploaded"
    );
    assert!(
        second.uploaded_files < second.files.len() as u64,
        "unchanged SSTables were uploaded again: {second:?}"
    );
    assert!(
        second.hashed_bytes < second.bytes,
        "unchanged files were re-read: {second:?}"
    );
    assert!(
        second.uploaded_bytes <= second.hashed_bytes + (second.bytes - data_bytes(&second)),
        "{second:?}"
    );

    for tag in [&first_tag, &second_tag] {
        agent
            .client
            .clear_snapshot(tag)
            .await
            .expect("clear snapshot");
    }
    let gone = agent
        .client
        .upload(&job, &upload(&first_tag, None))
        .await
        .unwrap_err();
    assert!(
        matches!(gone, ClientError::Refused { status: 400, .. }),
        "a cleared snapshot cannot be uploaded: {gone}"
    );
    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_client_names_the_agent_in_every_failure() {
    let agent = Agent::start().await;
    let info = agent.client.node_info().await.expect("node info");
    assert_eq!(info.data_dirs.len(), 2);

    let address = agent.url.trim_start_matches("http://");
    let wrong = AgentClient::new(address, "not-the-token").unwrap();
    let err = wrong.node_info().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(address), "{err}");

    let err = agent
        .client
        .snapshot(&SnapshotRequest {
            tag: "../escape".into(),
            keyspaces: vec![],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { status: 400, .. }),
        "{err}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let err = AgentClient::new(&dead_address, TOKEN)
        .unwrap()
        .progress()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&dead_address), "{err}");
    assert!(
        !format!("{:?}", agent.client).contains(TOKEN),
        "token in Debug output"
    );
}

/// Bytes of the report's files that are SSTable data, not the snapshot's
/// own metadata.
/// Snapshot metadata files of `second` referenced by content from `first`
/// (an unchanged `schema.cql`).
fn reused_metadata(second: &UploadReport, first: &UploadReport) -> u64 {
    second
        .files
        .iter()
        .filter(|f| matches!(f.path.as_str(), "manifest.json" | "schema.cql"))
        .filter(|f| first.files.iter().any(|o| o.blob == f.blob))
        .count() as u64
}

fn data_bytes(report: &UploadReport) -> u64 {
    report
        .files
        .iter()
        .filter(|f| f.path != "manifest.json" && f.path != "schema.cql")
        .map(|f| f.digest.size)
        .sum()
}

/// The API over TLS: a client trusting the agent's CA gets through; one
/// trusting another CA, or speaking plain HTTP, does not.
#[tokio::test]
async fn the_api_is_served_over_tls_to_clients_that_trust_its_ca() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = common::tls::issue(certs_dir.path(), &["127.0.0.1"]);
    let other_dir = tempfile::tempdir().unwrap();
    let other = common::tls::issue(other_dir.path(), &["127.0.0.1"]);
    let state_dir = tempfile::tempdir().unwrap();
    let config = common::s3_storage_config(
        &setting("KASSETTE_TEST_S3_ENDPOINT"),
        "unused-bucket",
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
        "",
    );
    let state = AgentState::new(
        TOKEN.as_bytes(),
        common::cassandra_data_dirs(NODE),
        Control::Nodetool(Nodetool::new("nodetool")),
        storage::open(&config).await.unwrap(),
        state_dir.path().join("digests.json"),
        1,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (cert, key) = (certs.cert.clone(), certs.key.clone());
    tokio::spawn(async move {
        kassette::agent::serve_tls(listener, state, &cert, &key, std::future::pending()).await
    });
    let trusted =
        AgentClient::with_tls(&address, TOKEN, &std::fs::read(&certs.ca).unwrap()).unwrap();
    let mut info = Err(None);
    for _ in 0..50 {
        match trusted.node_info().await {
            Ok(i) => {
                info = Ok(i);
                break;
            }
            Err(e) => {
                info = Err(Some(e));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(info.expect("node info over TLS").data_dirs.len(), 2);
    let stranger =
        AgentClient::with_tls(&address, TOKEN, &std::fs::read(&other.ca).unwrap()).unwrap();
    let err = stranger.node_info().await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let plain = AgentClient::new(&address, TOKEN).unwrap();
    assert!(
        plain.node_info().await.is_err(),
        "plain HTTP must not be answered"
    );
}

/// The Management API can only `refresh` a table from its own directory:
/// the agent links the staged SSTables there under unused generation
/// numbers, then asks the (fake) API, which runs the real refresh.
#[tokio::test]
async fn management_api_import_moves_staged_files_into_the_table() {
    use common::fake_management_api::{Call, FakeManagementApi};
    use kassette::agent::api::{ImportRequest, TableRef};
    use kassette::cassandra::control::ManagementApi;
    let node = 1;
    let session = common::cql_cluster().await;
    let ks = common::create_keyspace_with_rf(&session, "mimp_", 1).await;
    common::create_table_t(&session, &ks, 200).await;
    let nodetool = Nodetool::new(&format!("{} -n {node}", setting("KASSETTE_TEST_NODETOOL")));
    let tag = unique("kassette-mimp-");
    nodetool
        .snapshot(&tag, std::slice::from_ref(&ks))
        .await
        .unwrap();

    // Stage node 1's snapshot as a restore would, then empty the table.
    let state_dir = tempfile::tempdir_in(common::repo().join(".run")).unwrap();
    let staged = state_dir
        .path()
        .join("staging/restore-x")
        .join(&ks)
        .join("t");
    std::fs::create_dir_all(&staged).unwrap();
    let files =
        kassette::cassandra::snapshot::inventory(&common::cassandra_data_dirs(node), &tag).unwrap();
    for file in files
        .iter()
        .filter(|f| !f.path.contains('/') && f.path.contains("-big-"))
    {
        std::fs::copy(&file.absolute, staged.join(&file.path)).unwrap();
    }
    nodetool.clear_snapshot(&tag).await.unwrap();
    session
        .query_unpaged(format!("TRUNCATE {ks}.t"), ())
        .await
        .unwrap();

    let fake = FakeManagementApi::start(node).await;
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let config = common::s3_storage_config(
        &endpoint,
        "unused-bucket",
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
        "",
    );
    let state = AgentState::new(
        TOKEN.as_bytes(),
        common::cassandra_data_dirs(node),
        Control::ManagementApi(ManagementApi::new(url::Url::parse(&fake.url).unwrap()).unwrap()),
        storage::open(&config).await.unwrap(),
        state_dir.path().join("digests.json"),
        2,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = AgentClient::new(&listener.local_addr().unwrap().to_string(), TOKEN).unwrap();
    tokio::spawn(serve(listener, state, std::future::pending()));
    let job = JobSpec::new_pass("test", std::time::Duration::from_secs(30));
    let staged_files = std::fs::read_dir(&staged).unwrap().count();
    let report = client
        .import(
            &job,
            &ImportRequest {
                staging: "restore-x".into(),
                tables: vec![TableRef {
                    keyspace: ks.clone(),
                    table: "t".into(),
                }],
            },
        )
        .await
        .expect("import through the Management API");
    assert_eq!(report.tables, 1);
    assert!(fake.calls().contains(&Call::Refresh {
        keyspace: ks.clone(),
        table: "t".into()
    }));
    let rows = common::count_rows(&session, &ks, "t").await;
    assert!(rows > 0, "no row came back through refresh");
    // Linked into the table, not moved: the staging area stays whole, so
    // a restore stopped after its import began can be completed from it.
    assert_eq!(
        std::fs::read_dir(&staged).unwrap().count(),
        staged_files,
        "staged files were consumed"
    );
}
