//! The storage conformance suite against the GCS emulator
//! (fake-gcs-server), plus an object altered behind kassette's back.

mod common;
mod conformance;

use std::sync::Arc;

use common::setting;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::upload::{Media, UploadObjectRequest, UploadType};
use kassette::config::{Backend, StorageConfig, TransferLimits};
use kassette::storage::{self, Store};
use url::Url;

async fn new_bucket() -> String {
    common::new_gcs_bucket().await
}

async fn open_bucket(bucket: &str) -> Arc<dyn Store> {
    let config = StorageConfig {
        backend: Backend::Gcs {
            bucket: bucket.to_string(),
            endpoint: Some(Url::parse(&setting("KASSETTE_TEST_GCS_ENDPOINT")).unwrap()),
            credentials_file: None,
        },
        prefix: "team/prod".into(),
        limits: TransferLimits {
            concurrency: 8,
            max_bandwidth: None,
        },
    };
    storage::open(&config).await.expect("open gcs store")
}

async fn open() -> conformance::Fixture {
    conformance::Fixture {
        store: open_bucket(&new_bucket().await).await,
        _guard: None,
    }
}

conformance_tests!(open);

#[tokio::test]
async fn detects_altered_objects() {
    let bucket = new_bucket().await;
    let store = open_bucket(&bucket).await;
    conformance::detects_altered_objects(store, |key| async move {
        let raw = common::gcs_client();
        let name = format!("team/prod/{key}");
        let data = raw
            .download_object(
                &GetObjectRequest {
                    bucket: bucket.clone(),
                    object: name.clone(),
                    ..Default::default()
                },
                &Range::default(),
            )
            .await
            .unwrap();
        let request = UploadObjectRequest {
            bucket: bucket.clone(),
            ..Default::default()
        };
        raw.upload_object(
            &request,
            conformance::flip_middle_byte(data),
            &UploadType::Simple(Media::new(name)),
        )
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_missing_object_and_a_missing_bucket_are_told_apart_by_the_response() {
    use futures::TryStreamExt;
    use kassette::storage::Error;
    let bucket = new_bucket().await;
    let store = open_bucket(&bucket).await;
    // A missing object whose name (and so the server's message) says
    // "bucket" is still a missing object.
    for name in [
        "backups/bucket/backup.json",
        "no-such-bucket/index.json",
        "The specified bucket does not exist",
    ] {
        let key = conformance::key(name);
        assert_eq!(store.head(&key).await.unwrap(), None, "{name}");
        let err = store.get_bytes(&key).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{name}: {err}");
    }
    // A missing bucket is named as such, by its name, whatever the call.
    let missing = "kassette-no-such-bucket";
    let store = open_bucket(missing).await;
    let key = conformance::key("index.json");
    let listed = store.list("").try_collect::<Vec<_>>().await;
    for err in [
        store.get_bytes(&key).await.unwrap_err(),
        store.head(&key).await.unwrap_err(),
        listed.unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::NoSuchBucket { bucket } if bucket == missing),
            "{err}"
        );
    }
}
