//! The storage conformance suite against Azurite (the Azure Blob Storage
//! emulator), plus what is particular to Azure: every form of credentials
//! file, Content-MD5 checked by the service, wrong keys and missing
//! containers.

mod common;
mod conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::setting;
use kassette::cli::StorageArgs;
use kassette::config::{StorageConfig, vars};
use kassette::storage::azure::AzureStore;
use kassette::storage::{self, Error, Limits, PutMode, Store};
use reqwest::Method;

const PREFIX: &str = "team/prod";

async fn open_container(container: &str) -> Arc<dyn Store> {
    let config = common::azure_storage_config(container, PREFIX);
    storage::open(&config).await.expect("open azure store")
}

async fn raw(container: &str) -> AzureStore {
    let config = common::azure_storage_config(container, "");
    AzureStore::open(&config, Limits::new(&config.limits))
        .await
        .unwrap()
}

async fn open() -> conformance::Fixture {
    conformance::Fixture {
        store: open_container(&common::new_azure_container().await).await,
        _guard: None,
    }
}

conformance_tests!(open);

/// 2 GiB + 1 byte: 257 blocks, parallel within the memory bound.
#[tokio::test]
async fn a_multi_gib_file_round_trips() {
    let fixture = open().await;
    conformance::round_trip(&fixture.store, (2 << 30) + 1).await;
}

#[tokio::test]
async fn detects_altered_objects() {
    let container = common::new_azure_container().await;
    let store = open_container(&container).await;
    let raw = raw(&container).await;
    conformance::detects_altered_objects(store, |key| async move {
        let name = format!("{PREFIX}/{key}");
        let data = raw
            .send_raw(Method::GET, &name, &[], &[], None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        raw.send_raw(
            Method::PUT,
            &name,
            &[],
            &[("x-ms-blob-type", "BlockBlob")],
            Some(conformance::flip_middle_byte(data.to_vec()).into()),
        )
        .await
        .unwrap();
    })
    .await;
}

/// The service itself checks the Content-MD5 kassette sends with each
/// block, and the refusal is retried as damage in transit.
#[tokio::test]
async fn the_service_refuses_a_block_whose_md5_does_not_match() {
    let container = common::new_azure_container().await;
    let raw = raw(&container).await;
    let md5_of_other_bytes = "kAFQmDzST7DWlj99KOF/cg==";
    let err = raw
        .send_raw(
            Method::PUT,
            "damaged",
            &[("comp", "block"), ("blockid", "YmxvY2stMDAwMQ==")],
            &[("content-md5", md5_of_other_bytes)],
            Some(Bytes::from_static(b"these bytes were damaged on the way")),
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("damaged in transit"), "{err}");
}

fn args(container: &str, credentials_file: &str) -> StorageArgs {
    StorageArgs {
        storage_provider: Some("azure".into()),
        storage_bucket: Some(container.to_string()),
        storage_endpoint: Some(setting("KASSETTE_TEST_AZURE_ENDPOINT")),
        storage_allow_http: Some("true".into()),
        storage_credentials_file: Some(credentials_file.to_string()),
        ..Default::default()
    }
}

async fn round_trip(config: &StorageConfig) {
    let store = storage::open(config).await.unwrap();
    let key = conformance::key("form/probe");
    store
        .put_bytes(&key, Bytes::from_static(b"probe"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(store.get_bytes(&key).await.unwrap(), "probe");
}

/// K8ssandra's key file, a connection string (its BlobEndpoint naming the
/// emulator), a bare account key with KASSETTE_STORAGE_ACCOUNT, and an
/// account SAS token all reach the same container.
#[tokio::test]
async fn every_form_of_credentials_file_works() {
    let container = common::new_azure_container().await;
    let dir = tempfile::tempdir().unwrap();

    round_trip(
        &StorageConfig::from_args(&args(
            &container,
            &setting("KASSETTE_TEST_AZURE_CREDENTIALS_FILE"),
        ))
        .unwrap(),
    )
    .await;

    let mut from_connection_string = args(
        &container,
        &setting("KASSETTE_TEST_AZURE_CONNECTION_STRING_FILE"),
    );
    from_connection_string.storage_endpoint = None;
    round_trip(&StorageConfig::from_args(&from_connection_string).unwrap()).await;

    let key_file = dir.path().join("account-key");
    std::fs::write(&key_file, setting("KASSETTE_TEST_AZURE_KEY")).unwrap();
    let mut bare_key = args(&container, key_file.to_str().unwrap());
    bare_key.storage_account = Some(setting("KASSETTE_TEST_AZURE_ACCOUNT"));
    round_trip(&StorageConfig::from_args(&bare_key).unwrap()).await;

    let sas_file = dir.path().join("sas");
    std::fs::write(&sas_file, account_sas()).unwrap();
    let mut sas = args(&container, sas_file.to_str().unwrap());
    sas.storage_account = Some(setting("KASSETTE_TEST_AZURE_ACCOUNT"));
    let config = StorageConfig::from_args(&sas).unwrap();
    round_trip(&config).await;
    // Listing and deletes are authorised by the SAS too.
    let store = storage::open(&config).await.unwrap();
    let keys: Vec<_> = (0..3)
        .map(|i| conformance::key(&format!("sas/{i}")))
        .collect();
    for key in &keys {
        store
            .put_bytes(key, Bytes::from_static(b"x"), PutMode::Overwrite)
            .await
            .unwrap();
    }
    store.delete_many(&keys).await.unwrap();
    for key in &keys {
        assert!(store.head(key).await.unwrap().is_none(), "{key} survived");
    }
}

/// An account SAS (service b, all resource types, read/write/delete/list/
/// add/create, a day long) signed with the test account's key.
fn account_sas() -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let account = setting("KASSETTE_TEST_AZURE_ACCOUNT");
    let key = b64.decode(setting("KASSETTE_TEST_AZURE_KEY")).unwrap();
    let version = kassette::storage::azure::API_VERSION;
    let now = std::time::SystemTime::now();
    let iso = |t: std::time::SystemTime| {
        jiff::Timestamp::try_from(t)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let start = iso(now - Duration::from_secs(300));
    let expiry = iso(now + Duration::from_secs(86_400));
    let (permissions, services, types) = ("rwdlac", "b", "sco");
    let to_sign = format!(
        "{account}\n{permissions}\n{services}\n{types}\n{start}\n{expiry}\n\n\n{version}\n\n"
    );
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("sv", version)
        .append_pair("ss", services)
        .append_pair("srt", types)
        .append_pair("sp", permissions)
        .append_pair("st", &start)
        .append_pair("se", &expiry)
        .append_pair("sig", &sig);
    format!("?{}", query.finish())
}

fn wrong_key_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("medusa_azure_credentials.json");
    // A well-formed key of the right length that is not the account's.
    std::fs::write(
        &path,
        format!(
            r#"{{"storage_account": "{}", "key": "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="}}"#,
            setting("KASSETTE_TEST_AZURE_ACCOUNT")
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn a_wrong_account_key_fails_clearly_and_fast() {
    let container = common::new_azure_container().await;
    let dir = tempfile::tempdir().unwrap();
    let path = wrong_key_file(&dir);
    let config = StorageConfig::from_args(&args(&container, path.to_str().unwrap())).unwrap();
    let store = storage::open(&config).await.unwrap();
    let started = Instant::now();
    let err = store
        .put_bytes(
            &conformance::key("x"),
            Bytes::from_static(b"x"),
            PutMode::Overwrite,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    assert!(!err.is_transient());
    // Azure says AuthenticationFailed, Azurite AuthorizationFailure.
    assert!(
        err.to_string().contains("Failed") || err.to_string().contains("Failure"),
        "{err}"
    );
    assert!(!err.to_string().contains("d3Jvbmc"), "secret leaked: {err}");
    // One attempt, not the retry policy's two minutes.
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The binary: a wrong key is a clear error and exit code 1, at once.
#[tokio::test]
async fn the_cli_exits_1_on_a_wrong_account_key() {
    let container = common::new_azure_container().await;
    let dir = tempfile::tempdir().unwrap();
    let path = wrong_key_file(&dir);
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kassette"))
        .arg("list")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            (vars::STORAGE_PROVIDER, "azure"),
            (vars::STORAGE_BUCKET, container.as_str()),
            (
                vars::STORAGE_ENDPOINT,
                &setting("KASSETTE_TEST_AZURE_ENDPOINT"),
            ),
            (vars::STORAGE_ALLOW_HTTP, "true"),
            (vars::STORAGE_CREDENTIALS_FILE, path.to_str().unwrap()),
            (vars::CLUSTER, "prod"),
            (vars::DATACENTER, "dc1"),
            (vars::NODES, "127.0.0.1:7300"),
            (vars::AGENT_TOKEN_FILE, token.to_str().unwrap()),
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("access denied"), "{text}");
    assert!(text.contains("check the account key"), "{text}");
    assert!(!text.contains("d3Jvbmc"), "secret leaked: {text}");
    assert!(!text.contains("retrying"), "a denial was retried: {text}");
    assert!(started.elapsed() < Duration::from_secs(10), "{text}");
}

#[tokio::test]
async fn a_missing_container_is_named() {
    let store = open_container("kassette-no-such-container").await;
    let key = conformance::key("x");
    let err = store.get_bytes(&key).await.unwrap_err();
    assert!(matches!(err, Error::NoSuchBucket { .. }), "{err}");
    assert!(
        err.to_string().contains("kassette-no-such-container"),
        "{err}"
    );
    let err = store
        .put_bytes(&key, Bytes::from_static(b"x"), PutMode::Create)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchBucket { .. }), "{err}");
    // HEAD answers carry no body: the error code header still tells.
    let err = store.head(&key).await.unwrap_err();
    assert!(matches!(err, Error::NoSuchBucket { .. }), "{err}");
    let listed: Result<Vec<_>, _> = futures::TryStreamExt::try_collect(store.list("")).await;
    assert!(
        matches!(listed, Err(Error::NoSuchBucket { .. })),
        "{listed:?}"
    );
}
