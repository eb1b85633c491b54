//! Smoke tests of the GCS emulator (fake-gcs-server) over the JSON API:
//! write, read, list.

mod common;

use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::upload::{Media, UploadObjectRequest, UploadType};

#[tokio::test]
async fn write_read_list_round_trip() {
    let client = common::gcs_client();
    let bucket = common::new_gcs_bucket().await;
    for i in 0..3 {
        let request = UploadObjectRequest {
            bucket: bucket.clone(),
            ..Default::default()
        };
        let media = Media::new(format!("dir/object-{i}"));
        client
            .upload_object(
                &request,
                format!("payload {i}").into_bytes(),
                &UploadType::Simple(media),
            )
            .await
            .expect("upload");
    }
    let body = client
        .download_object(
            &GetObjectRequest {
                bucket: bucket.clone(),
                object: "dir/object-2".into(),
                ..Default::default()
            },
            &Range::default(),
        )
        .await
        .expect("download");
    assert_eq!(body, b"payload 2");
    let listed = client
        .list_objects(&ListObjectsRequest {
            bucket: bucket.clone(),
            prefix: Some("dir/".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    let names: Vec<String> = listed
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["dir/object-0", "dir/object-1", "dir/object-2"]);
}
