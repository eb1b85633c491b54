//! Test harness: finds the real services of the test environment.
//!
//! `make test` starts them (scripts/env.sh up) before cargo runs; each service
//! script writes `.run/<component>.env` with `export NAME=value` lines. A
//! test reads a setting from its environment variable, else from those files,
//! and fails loudly when neither has it: a missing service is an error, never
//! a silent skip.
#![allow(dead_code)]

pub mod dataset;
pub mod dc;
pub mod fake_management_api;
pub mod fault_proxy;
pub mod k8s;
pub mod process_kubelet;
pub mod proxy;
pub mod tls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_files() -> &'static HashMap<String, String> {
    static FILES: OnceLock<HashMap<String, String>> = OnceLock::new();
    FILES.get_or_init(|| {
        let run = std::env::var("KASSETTE_RUN").map_or_else(|_| repo().join(".run"), PathBuf::from);
        let mut vars = HashMap::new();
        let Ok(entries) = std::fs::read_dir(&run) else {
            return vars;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "env") {
                read_env_file(&path, &mut vars);
            }
        }
        vars
    })
}

fn read_env_file(path: &Path, vars: &mut HashMap<String, String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        let line = line.trim().trim_start_matches("export ").trim();
        if let Some((name, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"').trim_matches('\'');
            vars.insert(name.trim().to_string(), value.to_string());
        }
    }
}

/// A setting of the test environment, e.g. `KASSETTE_TEST_S3_ENDPOINT`.
pub fn setting(name: &str) -> String {
    std::env::var(name)
        .ok()
        .or_else(|| env_files().get(name).cloned())
        .unwrap_or_else(|| {
            panic!("{name} is not set: start the test environment first (`make env`, or run `make test`)")
        })
}

/// A name no other test (or earlier run) uses: tests share one cluster and
/// one storage server, so each works in its own keyspace / bucket / prefix.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}x{n}x{nanos:x}", std::process::id())
}

/// Runs a command, returning stdout; panics with stderr when it fails.
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let program = program.as_ref();
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    assert!(
        out.status.success(),
        "{program:?} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A plain `aws-sdk-s3` client for the test S3 server at `endpoint`, to act
/// on the store directly (behind kassette's back). `http` replaces the HTTP
/// client, e.g. to trust a test CA.
pub fn s3_client(
    endpoint: &str,
    http: Option<aws_sdk_s3::config::SharedHttpClient>,
) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
    let credentials = Credentials::new(
        setting("KASSETTE_TEST_S3_ACCESS_KEY"),
        setting("KASSETTE_TEST_S3_SECRET_KEY"),
        None,
        None,
        "kassette-test",
    );
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(setting("KASSETTE_TEST_S3_REGION")))
        .credentials_provider(credentials)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    if let Some(http) = http {
        config = config.http_client(http);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// A plain client for the GCS emulator (anonymous).
pub fn gcs_client() -> gcloud_storage::client::Client {
    use gcloud_storage::client::{Client, ClientConfig};
    let config = ClientConfig {
        storage_endpoint: setting("KASSETTE_TEST_GCS_ENDPOINT"),
        ..ClientConfig::default()
    }
    .anonymous();
    Client::new(config)
}

/// A CQL session over the whole test cluster (DDL goes through it, so
/// schema agreement is awaited across every node).
pub async fn cql_cluster() -> scylla::client::session::Session {
    let mut builder = scylla::client::session_builder::SessionBuilder::new();
    for node in setting("KASSETTE_TEST_CASSANDRA_NODES").split(',') {
        builder = builder.known_node(format!("{node}:9042"));
    }
    builder.build().await.expect("CQL connect to the cluster")
}

/// A new, empty bucket on the test S3 server.
pub async fn new_s3_bucket(endpoint: &str) -> String {
    let bucket = unique("kassette-s3-");
    s3_client(endpoint, None)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
    bucket
}

/// kassette's settings for `bucket` on the test S3 server at `endpoint`.
pub fn s3_storage_config(
    endpoint: &str,
    bucket: &str,
    credentials_file: &str,
    prefix: &str,
) -> kassette::config::StorageConfig {
    use kassette::config::{Backend, S3Encryption, StorageConfig, TransferLimits};
    StorageConfig {
        backend: Backend::S3 {
            bucket: bucket.to_string(),
            endpoint: Some(url::Url::parse(endpoint).expect("endpoint URL")),
            region: Some(setting("KASSETTE_TEST_S3_REGION")),
            credentials_file: Some(credentials_file.into()),
            ca_bundle: None,
            storage_class: None,
            encryption: S3Encryption::BucketDefault,
        },
        prefix: prefix.to_string(),
        limits: TransferLimits {
            concurrency: 8,
            max_bandwidth: None,
        },
    }
}

/// A new, empty bucket on the GCS emulator.
pub async fn new_gcs_bucket() -> String {
    use gcloud_storage::http::buckets::insert::{InsertBucketParam, InsertBucketRequest};
    let bucket = unique("kassette-gcs-");
    gcs_client()
        .insert_bucket(&InsertBucketRequest {
            name: bucket.clone(),
            param: InsertBucketParam {
                project: "kassette-test".into(),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("create bucket");
    bucket
}

/// Data directories of test node `node` (1-based); two on the JBOD node.
pub fn cassandra_data_dirs(node: usize) -> Vec<PathBuf> {
    setting(&format!("KASSETTE_TEST_CASSANDRA_DATA_{node}"))
        .split(':')
        .map(PathBuf::from)
        .collect()
}

/// Creates a fresh keyspace replicated to every node (RF 3 in dc1) and
/// returns its name.
pub async fn create_keyspace(session: &scylla::client::session::Session, prefix: &str) -> String {
    create_keyspace_with_rf(session, prefix, 3).await
}

/// Creates a fresh keyspace with `rf` replicas in dc1 (RF 1: each row on
/// exactly one node) and returns its name.
pub async fn create_keyspace_with_rf(
    session: &scylla::client::session::Session,
    prefix: &str,
    rf: u32,
) -> String {
    let ks = unique(prefix);
    session
        .query_unpaged(
            format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'NetworkTopologyStrategy', 'dc1': {rf}}}"),
            (),
        )
        .await
        .expect("create keyspace");
    ks
}

/// Creates table `<ks>.t (id int PRIMARY KEY, v text)` holding rows
/// `0..rows` with `v = 'v<id>'`.
pub async fn create_table_t(session: &scylla::client::session::Session, ks: &str, rows: i32) {
    session
        .query_unpaged(
            format!("CREATE TABLE {ks}.t (id int PRIMARY KEY, v text)"),
            (),
        )
        .await
        .expect("create table");
    for id in 0..rows {
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.t (id, v) VALUES ({id}, 'v{id}')"),
                (),
            )
            .await
            .expect("insert");
    }
}

/// `count(*)` of `<ks>.<table>` read at consistency ALL.
pub async fn count_rows(session: &scylla::client::session::Session, ks: &str, table: &str) -> i64 {
    let mut count =
        scylla::statement::unprepared::Statement::new(format!("SELECT count(*) FROM {ks}.{table}"));
    count.set_consistency(scylla::statement::Consistency::All);
    let (rows,): (i64,) = session
        .query_unpaged(count, ())
        .await
        .expect("count")
        .into_rows_result()
        .expect("rows")
        .single_row()
        .expect("one row");
    rows
}
