//! The storage conformance suite against the real S3-compatible server
//! (MinIO), plus faults: altered objects, a server killed and restarted
//! mid-transfer, wrong credentials, a missing bucket, orphaned uploads.

mod common;
mod conformance;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::primitives::ByteStream;
use common::{setting, unique};
use kassette::config::{Backend, StorageConfig, TransferLimits};
use kassette::storage::{self, Error, Store};
use url::Url;

/// A raw SDK client, to act on the store behind kassette's back.
fn raw_client(endpoint: &str) -> aws_sdk_s3::Client {
    let credentials = Credentials::new(
        setting("KASSETTE_TEST_S3_ACCESS_KEY"),
        setting("KASSETTE_TEST_S3_SECRET_KEY"),
        None,
        None,
        "test",
    );
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(setting("KASSETTE_TEST_S3_REGION")))
            .credentials_provider(credentials)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build(),
    )
}

async fn new_bucket(endpoint: &str) -> String {
    let bucket = unique("kassette-s3-");
    raw_client(endpoint)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket: {e:?}"));
    bucket
}

fn config(endpoint: &str, bucket: &str, credentials: &str) -> StorageConfig {
    StorageConfig {
        backend: Backend::S3 {
            bucket: bucket.to_string(),
            endpoint: Some(Url::parse(endpoint).unwrap()),
            region: Some(setting("KASSETTE_TEST_S3_REGION")),
            credentials_file: Some(credentials.into()),
            ca_bundle: None,
        },
        prefix: "team/prod".into(),
        limits: TransferLimits {
            concurrency: 8,
            max_bandwidth: None,
        },
    }
}

async fn open() -> Arc<dyn Store> {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = new_bucket(&endpoint).await;
    let config = config(
        &endpoint,
        &bucket,
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
    );
    storage::open(&config).await.expect("open s3 store")
}

conformance_tests!(open);

#[tokio::test]
async fn a_multi_gib_file_round_trips() {
    conformance::round_trip(&open().await, (2 << 30) + 1).await;
}

#[tokio::test]
async fn detects_altered_objects() {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = new_bucket(&endpoint).await;
    let config = config(
        &endpoint,
        &bucket,
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
    );
    let store = storage::open(&config).await.unwrap();
    let raw = raw_client(&endpoint);
    conformance::detects_altered_objects(store, |key| async move {
        let name = format!("team/prod/{key}");
        let object = raw
            .get_object()
            .bucket(&bucket)
            .key(&name)
            .send()
            .await
            .unwrap();
        let data = object.body.collect().await.unwrap().to_vec();
        raw.put_object()
            .bucket(&bucket)
            .key(&name)
            .body(ByteStream::from(conformance::flip_middle_byte(data)))
            .send()
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn wrong_credentials_fail_clearly_and_fast() {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = new_bucket(&endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = kassette\naws_secret_access_key = wrong-secret\n",
    )
    .unwrap();
    let store = storage::open(&config(&endpoint, &bucket, creds.to_str().unwrap()))
        .await
        .unwrap();
    let err = store
        .put_bytes(
            &conformance::key("x"),
            bytes::Bytes::from_static(b"x"),
            storage::PutMode::Overwrite,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(
        !err.to_string().contains("wrong-secret"),
        "secret leaked: {err}"
    );
}

#[tokio::test]
async fn a_missing_bucket_is_named() {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let config = config(
        &endpoint,
        "kassette-no-such-bucket",
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
    );
    let store = storage::open(&config).await.unwrap();
    let err = store.get_bytes(&conformance::key("x")).await.unwrap_err();
    assert!(matches!(err, Error::NoSuchBucket { .. }), "{err}");
}

#[tokio::test]
async fn orphaned_multipart_uploads_are_aborted() {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = new_bucket(&endpoint).await;
    let raw = raw_client(&endpoint);
    // What a killed process leaves behind: an upload never completed.
    raw.create_multipart_upload()
        .bucket(&bucket)
        .key("team/prod/data/orphan")
        .send()
        .await
        .unwrap();
    let store = storage::s3::S3Store::open(
        &config(
            &endpoint,
            &bucket,
            &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
        ),
        storage::Limits::unlimited_for_tests(),
    )
    .await
    .unwrap();
    // Younger than the cutoff: kept (it may belong to a running backup).
    // (MinIO lists uploads by exact key only, hence the full key here.)
    let hour = Duration::from_secs(3600);
    assert_eq!(
        store
            .abort_stale_uploads("data/orphan", hour)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .abort_stale_uploads("data/orphan", Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    let left = raw
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(left.uploads().is_empty(), "{:?}", left.uploads());
}

/// A MinIO of the test's own (the shared one must not be disturbed),
/// restartable on the same port and data directory.
struct OwnMinio {
    bin: String,
    port: u16,
    data: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnMinio {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut minio = Self {
            bin: setting("KASSETTE_TEST_MINIO_BIN"),
            port,
            data: tempfile::tempdir().unwrap(),
            child: None,
        };
        minio.spawn();
        minio
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new(&self.bin)
            .args([
                "server",
                "--quiet",
                "--address",
                &format!("127.0.0.1:{}", self.port),
            ])
            .args(["--console-address", "127.0.0.1:0"])
            .arg(self.data.path())
            .env("MINIO_ROOT_USER", setting("KASSETTE_TEST_S3_ACCESS_KEY"))
            .env(
                "MINIO_ROOT_PASSWORD",
                setting("KASSETTE_TEST_S3_SECRET_KEY"),
            )
            .env("MINIO_UPDATE", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start minio");
        self.child = Some(child);
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("own minio did not start on port {}", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnMinio {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn a_transfer_interrupted_by_a_server_restart_is_retried_to_success() {
    let mut minio = OwnMinio::start();
    let endpoint = minio.endpoint();
    // The fresh server may take a moment to accept requests.
    let bucket = unique("kassette-restart-");
    let raw = raw_client(&endpoint);
    for attempt in 0.. {
        match raw.create_bucket().bucket(&bucket).send().await {
            Ok(_) => break,
            Err(e) if attempt < 50 => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create bucket: {e:?}"),
        }
    }
    let mut config = config(
        &endpoint,
        &bucket,
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
    );
    // Slow enough that the upload is surely in flight when the server dies.
    config.limits = TransferLimits {
        concurrency: 2,
        max_bandwidth: Some(16 << 20),
    };
    let store = storage::open(&config).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.db");
    let expected = conformance::make_file(&source, 96 << 20);
    let key = conformance::key("data/big.db");
    let upload = {
        let (store, key, source) = (store.clone(), key.clone(), source.clone());
        tokio::spawn(async move { store.put_file(&key, &source).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !upload.is_finished(),
        "upload finished before the interruption"
    );
    minio.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    minio.spawn();

    let digest = upload
        .await
        .unwrap()
        .expect("upload survives a server restart");
    assert_eq!(digest, expected);
    let restored = dir.path().join("restored.db");
    store
        .get_file(&key, &restored, &expected)
        .await
        .expect("download after restart");
}
