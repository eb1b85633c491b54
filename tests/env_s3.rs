//! Smoke tests of the real S3-compatible server (MinIO) through `aws-sdk-s3`:
//! put, get, list, multipart, and the conditional create the lock relies on.

mod common;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::setting;

fn client() -> Client {
    common::s3_client(&setting("KASSETTE_TEST_S3_ENDPOINT"), None)
}

async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    object.body.collect().await.expect("read body").to_vec()
}

#[tokio::test]
async fn put_get_list_round_trip() {
    let client = client();
    let bucket = common::new_s3_bucket(&setting("KASSETTE_TEST_S3_ENDPOINT")).await;
    for i in 0..3 {
        client
            .put_object()
            .bucket(&bucket)
            .key(format!("dir/object-{i}"))
            .body(ByteStream::from(format!("payload {i}").into_bytes()))
            .send()
            .await
            .expect("put");
    }
    assert_eq!(get(&client, &bucket, "dir/object-1").await, b"payload 1");
    let listed = client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("dir/")
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/object-0", "dir/object-1", "dir/object-2"]);
}

#[tokio::test]
async fn multipart_upload_round_trip() {
    let client = client();
    let bucket = common::new_s3_bucket(&setting("KASSETTE_TEST_S3_ENDPOINT")).await;
    let key = "big/object";
    // S3's minimum part size is 5 MiB for every part but the last.
    let part1: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let part2 = b"tail".to_vec();
    let upload = client
        .create_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .expect("create multipart upload");
    let upload_id = upload.upload_id().expect("upload id");
    let mut parts = Vec::new();
    for (number, body) in [(1, part1.clone()), (2, part2.clone())] {
        let done = client
            .upload_part()
            .bucket(&bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("upload part");
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(done.e_tag().map(String::from))
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("complete multipart upload");
    let mut expected = part1;
    expected.extend_from_slice(&part2);
    let got = get(&client, &bucket, key).await;
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "multipart object differs from what was sent"
    );
}

#[tokio::test]
async fn create_if_absent_refuses_a_second_writer() {
    let client = client();
    let bucket = common::new_s3_bucket(&setting("KASSETTE_TEST_S3_ENDPOINT")).await;
    let put = |body: &'static str| {
        client
            .put_object()
            .bucket(&bucket)
            .key("lock")
            .if_none_match("*")
            .body(ByteStream::from_static(body.as_bytes()))
            .send()
    };
    put("first").await.expect("first create succeeds");
    let second = put("second").await;
    let status = second
        .as_ref()
        .err()
        .and_then(|e| e.raw_response())
        .map(|r| r.status().as_u16());
    assert_eq!(
        status,
        Some(412),
        "second create must fail with 412: {second:?}"
    );
    assert_eq!(get(&client, &bucket, "lock").await, b"first");
}
