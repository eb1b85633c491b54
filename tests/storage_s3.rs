//! The storage conformance suite against the real S3-compatible server
//! (MinIO), plus faults: altered objects, a server killed and restarted
//! mid-transfer, wrong credentials, a missing bucket, orphaned uploads.

mod common;
mod conformance;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::{setting, unique};
use kassette::config::{Backend, S3Encryption, StorageConfig, TransferLimits};
use kassette::storage::{self, Error};

/// A raw SDK client, to act on the store behind kassette's back.
fn raw_client(endpoint: &str) -> aws_sdk_s3::Client {
    common::s3_client(endpoint, None)
}

async fn new_bucket(endpoint: &str) -> String {
    common::new_s3_bucket(endpoint).await
}

fn config(endpoint: &str, bucket: &str, credentials: &str) -> StorageConfig {
    common::s3_storage_config(endpoint, bucket, credentials, "team/prod")
}

async fn open() -> conformance::Fixture {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = new_bucket(&endpoint).await;
    let config = config(
        &endpoint,
        &bucket,
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
    );
    conformance::Fixture {
        store: storage::open(&config).await.expect("open s3 store"),
        _guard: None,
    }
}

conformance_tests!(open);

#[tokio::test]
async fn a_multi_gib_file_round_trips() {
    conformance::round_trip(&open().await.store, (2 << 30) + 1).await;
}

/// A part whose first attempt fails is sent again from the file: the
/// proxy fails part 2 of a 3-part upload once (after reading its body) and
/// records every part's body; the retry must carry exactly that part's
/// bytes, and the stored object and the returned digest must be the file's.
#[tokio::test]
async fn a_failed_part_is_read_again_from_the_file() {
    let direct = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = new_bucket(&direct).await;
    let proxy = common::fault_proxy::FaultProxy::failing_once(&direct, "partNumber", "2").await;
    let config = config(
        &proxy.endpoint,
        &bucket,
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
    );
    let store = storage::open(&config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let part = storage::MIN_PART_SIZE;
    let size = 2 * part + 12_345;
    let expected = conformance::make_file(&source, size);
    let file = std::fs::read(&source).unwrap();
    let key = conformance::key("retried/part");

    let digest = store.put_file(&key, &source).await.unwrap();
    assert_eq!(digest, expected, "digest returned by put_file");

    let recorded = proxy.recorded();
    let attempts: Vec<_> = recorded.iter().filter(|r| r.value == "2").collect();
    assert_eq!(attempts.len(), 2, "part 2: one failed attempt, one retry");
    assert!(attempts[0].failed && !attempts[1].failed);
    let range = part as usize..2 * part as usize;
    for attempt in &attempts {
        assert!(
            attempt.body[..] == file[range.clone()],
            "part 2 attempt (failed: {}) carried other bytes than the file's",
            attempt.failed
        );
    }
    let mut numbers: Vec<_> = recorded.iter().map(|r| r.value.as_str()).collect();
    numbers.sort();
    assert_eq!(numbers, ["1", "2", "2", "3"]);

    // What the store holds, read directly: the file, byte for byte.
    let direct_config = self::config(
        &direct,
        &bucket,
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
    );
    let direct_store = storage::open(&direct_config).await.unwrap();
    let back = dir.path().join("back");
    direct_store.get_file(&key, &back, &digest).await.unwrap();
    assert!(
        std::fs::read(&back).unwrap() == file,
        "stored object differs from the file"
    );
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
    /// With TLS: the directory holding `public.crt` and `private.key`.
    certs: Option<tempfile::TempDir>,
    child: Option<std::process::Child>,
}

impl OwnMinio {
    fn start() -> Self {
        Self::start_with(None)
    }

    /// A MinIO serving HTTPS with a certificate for 127.0.0.1 issued by a
    /// fresh private CA (whose certificate is the CA bundle to trust).
    fn start_tls() -> Self {
        let certs = tempfile::tempdir().unwrap();
        common::tls::issue(certs.path(), &["127.0.0.1"]);
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<tempfile::TempDir>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut minio = Self {
            bin: setting("KASSETTE_TEST_MINIO_BIN"),
            port,
            data: tempfile::tempdir().unwrap(),
            certs,
            child: None,
        };
        minio.spawn();
        minio
    }

    fn endpoint(&self) -> String {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn ca_bundle(&self) -> Option<std::path::PathBuf> {
        self.certs.as_ref().map(|c| c.path().join("ca.pem"))
    }

    fn spawn(&mut self) {
        let mut command = std::process::Command::new(&self.bin);
        command
            .args(["server", "--quiet", "--address"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--console-address", "127.0.0.1:0"]);
        if let Some(certs) = &self.certs {
            command.arg("--certs-dir").arg(certs.path());
        }
        let child = command
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
    let bucket = unique("kassette-restart-");
    create_bucket_when_ready(&raw_client(&endpoint), &bucket).await;
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

/// Creates `bucket` on a server that may still be starting.
async fn create_bucket_when_ready(raw: &aws_sdk_s3::Client, bucket: &str) {
    for attempt in 0.. {
        match raw.create_bucket().bucket(bucket).send().await {
            Ok(_) => return,
            Err(_) if attempt < 50 => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("create bucket: {e:?}"),
        }
    }
}

#[tokio::test]
async fn sse_kms_and_storage_class_are_applied() {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = new_bucket(&endpoint).await;
    let mut config = config(
        &endpoint,
        &bucket,
        &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
    );
    let Backend::S3 {
        encryption,
        storage_class,
        ..
    } = &mut config.backend
    else {
        unreachable!()
    };
    *encryption = S3Encryption::Kms {
        key_id: setting("KASSETTE_TEST_S3_KMS_KEY_ID"),
    };
    *storage_class = Some("REDUCED_REDUNDANCY".into());
    let store = storage::open(&config).await.unwrap();
    // A single-request object and a multipart one.
    for size in [1_000, conformance_part_plus_one()] {
        conformance::round_trip(&store, size).await;
        let head = raw_client(&endpoint)
            .head_object()
            .bucket(&bucket)
            .key(format!("team/prod/round-trip/{size}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption().map(|s| s.as_str()),
            Some("aws:kms"),
            "size {size}"
        );
        assert_eq!(
            head.ssekms_key_id()
                .map(|k| k.ends_with(&setting("KASSETTE_TEST_S3_KMS_KEY_ID"))),
            Some(true)
        );
        assert_eq!(
            head.storage_class().map(|c| c.as_str()),
            Some("REDUCED_REDUNDANCY"),
            "size {size}"
        );
    }
}

fn conformance_part_plus_one() -> u64 {
    storage::MIN_PART_SIZE + 1
}

#[tokio::test]
async fn sse_c_over_tls_with_a_private_ca() {
    let minio = OwnMinio::start_tls();
    let endpoint = minio.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sse-c.key");
    std::fs::write(&key_file, [42u8; 32]).unwrap();
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, [7u8; 32]).unwrap();

    let credentials = setting("KASSETTE_TEST_S3_CREDENTIALS_FILE");
    let configure = |sse_c: Option<&std::path::Path>| {
        let mut config = config(&endpoint, "sse-c", &credentials);
        let Backend::S3 {
            ca_bundle,
            encryption,
            ..
        } = &mut config.backend
        else {
            unreachable!()
        };
        *ca_bundle = minio.ca_bundle();
        *encryption = match sse_c {
            Some(path) => S3Encryption::CustomerKey {
                key: std::fs::read(path).unwrap().try_into().unwrap(),
            },
            None => S3Encryption::BucketDefault,
        };
        config
    };
    let store = storage::open(&configure(Some(&key_file))).await.unwrap();
    // Trusting the private CA is what lets kassette talk to this server at all.
    let admin = storage::open(&configure(None)).await.unwrap();
    // The bucket, created through a plain S3 client that trusts the CA.
    create_bucket_over_tls(&endpoint, &minio).await;

    // Without the CA bundle the server's certificate is refused at once,
    // not retried for minutes.
    let mut untrusting = configure(None);
    let Backend::S3 { ca_bundle, .. } = &mut untrusting.backend else {
        unreachable!()
    };
    *ca_bundle = None;
    let err = storage::open(&untrusting)
        .await
        .unwrap()
        .head(&conformance::key("x"))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("KASSETTE_STORAGE_CA_BUNDLE"),
        "{err}"
    );

    for size in [1_000, conformance_part_plus_one()] {
        conformance::round_trip(&store, size).await;
        // Without the customer key, or with another one, the data cannot be read.
        let key = conformance::key(&format!("round-trip/{size}"));
        let dest = dir.path().join("stolen");
        let expected = storage::digest_of(b"");
        for reader in [
            &admin,
            &storage::open(&configure(Some(&other_key))).await.unwrap(),
        ] {
            let err = reader.get_file(&key, &dest, &expected).await.unwrap_err();
            assert!(
                !matches!(err, Error::Corrupt { .. }),
                "read without the right key: {err}"
            );
            assert!(!dest.exists());
        }
    }
}

/// Creates the `sse-c` bucket on the TLS server through an SDK client whose
/// HTTP client trusts the server's self-signed certificate.
async fn create_bucket_over_tls(endpoint: &str, minio: &OwnMinio) {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let pem = std::fs::read(minio.ca_bundle().unwrap()).unwrap();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
                .build()
                .unwrap(),
        )
        .build_https();
    let client = common::s3_client(endpoint, Some(http));
    create_bucket_when_ready(&client, "sse-c").await;
}
