//! The storage conformance suite: the same cases run against every backend
//! (see `storage_local.rs`, `storage_s3.rs`, `storage_gcs.rs`), each on a
//! fresh bucket or directory.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use kassette::storage::{Digest, Error, MIN_PART_SIZE, ObjectKey, PutMode, Store, digest_of};

/// A fresh store for one test, with whatever must live as long as it (a
/// temporary directory is deleted when the fixture drops).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub _guard: Option<tempfile::TempDir>,
}

pub fn key(text: &str) -> ObjectKey {
    ObjectKey::new(text).expect("valid key")
}

/// Writes a file of `size` bytes whose every MiB differs (so swapped or
/// repeated parts are caught), returning its digest.
pub fn make_file(path: &Path, size: u64) -> Digest {
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut hasher = kassette::storage::Hasher::new();
    let mut block = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut index = 0u64;
    while written < size {
        for (i, b) in block.iter_mut().enumerate() {
            *b = (i as u64)
                .wrapping_mul(31)
                .wrapping_add(index.wrapping_mul(7919)) as u8;
        }
        block[..8].copy_from_slice(&index.to_le_bytes());
        let n = (size - written).min(block.len() as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        hasher.update(&block[..n]);
        written += n as u64;
        index += 1;
    }
    file.flush().unwrap();
    hasher.finish()
}

/// Uploads a file of `size` bytes, downloads it, and checks both digests.
pub async fn round_trip(store: &Arc<dyn Store>, size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let expected = make_file(&source, size);
    let k = key(&format!("round-trip/{size}"));
    let uploaded = store
        .put_file(&k, &source)
        .await
        .unwrap_or_else(|e| panic!("put {size}: {e}"));
    assert_eq!(
        uploaded, expected,
        "digest of the bytes sent ({size} bytes)"
    );
    let meta = store
        .head(&k)
        .await
        .unwrap()
        .expect("object exists after put");
    assert_eq!(meta.size, size);
    let dest = dir.path().join("nested/dest");
    store
        .get_file(&k, &dest, &expected)
        .await
        .unwrap_or_else(|e| panic!("get {size}: {e}"));
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), size);
    assert_eq!(
        kassette_digest_of_file(&dest),
        expected,
        "downloaded content ({size} bytes)"
    );
}

fn kassette_digest_of_file(path: &Path) -> Digest {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = kassette::storage::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return hasher.finish();
        }
        hasher.update(&buf[..n]);
    }
}

/// 0 B, 1 B, exactly one part, one part + 1 byte, three parts + 1 byte.
pub async fn round_trips_at_part_boundaries(store: Arc<dyn Store>) {
    for size in [
        0,
        1,
        MIN_PART_SIZE,
        MIN_PART_SIZE + 1,
        3 * MIN_PART_SIZE + 1,
    ] {
        round_trip(&store, size).await;
    }
}

/// More keys than one listing page (1,000) holds, streamed back in full.
pub async fn lists_more_than_one_page(store: Arc<dyn Store>) {
    let count = 1_050;
    futures::stream::iter(0..count)
        .map(|i| {
            let store = store.clone();
            async move {
                store
                    .put_bytes(
                        &key(&format!("many/{i:05}")),
                        Bytes::from(format!("{i}")),
                        PutMode::Overwrite,
                    )
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("put many");
    store
        .put_bytes(
            &key("other/x"),
            Bytes::from_static(b"x"),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    let mut listed: Vec<String> = store
        .list("many/")
        .map_ok(|m| m.key.to_string())
        .try_collect()
        .await
        .expect("list");
    listed.sort();
    let expected: Vec<String> = (0..count).map(|i| format!("many/{i:05}")).collect();
    assert_eq!(listed.len(), expected.len());
    assert_eq!(listed, expected);

    let doomed: Vec<ObjectKey> = (0..count).map(|i| key(&format!("many/{i:05}"))).collect();
    store.delete_many(&doomed).await.expect("delete many");
    let left: Vec<_> = store.list("many/").try_collect().await.unwrap();
    assert!(
        left.is_empty(),
        "{} objects left after delete_many",
        left.len()
    );
    assert!(
        store.head(&key("other/x")).await.unwrap().is_some(),
        "delete_many deleted too much"
    );
}

use futures::StreamExt;

/// Of several concurrent creators of one key, exactly one wins; the object
/// holds the winner's bytes.
pub async fn create_if_absent_has_one_winner(store: Arc<dyn Store>) {
    let k = key("locks/datacenter");
    let attempts = futures::future::join_all((0..8).map(|i| {
        let store = store.clone();
        let k = k.clone();
        async move {
            (
                i,
                store
                    .put_bytes(&k, Bytes::from(format!("owner-{i}")), PutMode::Create)
                    .await,
            )
        }
    }))
    .await;
    let winners: Vec<usize> = attempts
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "winners: {winners:?}; results: {attempts:?}"
    );
    for (_, result) in &attempts {
        if let Err(err) = result {
            assert!(
                matches!(err, Error::AlreadyExists { .. }),
                "loser got {err}"
            );
        }
    }
    let held = store.get_bytes(&k).await.unwrap();
    assert_eq!(held, Bytes::from(format!("owner-{}", winners[0])));
    // Overwrite still replaces it.
    store
        .put_bytes(&k, Bytes::from_static(b"released"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(
        store.get_bytes(&k).await.unwrap(),
        Bytes::from_static(b"released")
    );
}

/// Missing objects are reported as such, by every operation.
pub async fn missing_objects(store: Arc<dyn Store>) {
    let k = key("missing/object");
    assert!(store.head(&k).await.unwrap().is_none());
    assert!(matches!(
        store.get_bytes(&k).await,
        Err(Error::NotFound { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let result = store
        .get_file(&k, &dir.path().join("x"), &digest_of(b""))
        .await;
    assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
    store
        .delete_many(&[k])
        .await
        .expect("deleting a missing key is not an error");
}

/// A download whose content no longer matches the recorded digest fails,
/// naming the object, and leaves no file behind. `tamper` alters the stored
/// object directly in the store, behind kassette's back.
pub async fn detects_altered_objects<F, Fut>(store: Arc<dyn Store>, tamper: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let digest = make_file(&source, 100_000);
    let k = key("tamper/data.db");
    store.put_file(&k, &source).await.unwrap();
    tamper(k.to_string()).await;
    let dest = dir.path().join("restored");
    let err = store.get_file(&k, &dest, &digest).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("tamper/data.db"),
        "error does not name the object: {err}"
    );
    assert!(!dest.exists(), "a damaged download must not appear");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

/// Flips one byte in the middle of `data`, keeping its length.
pub fn flip_middle_byte(mut data: Vec<u8>) -> Vec<u8> {
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    data
}

/// Generates one `#[tokio::test]` per conformance case for a backend whose
/// fresh store comes from `$open` (an async fn returning a [`Fixture`]).
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        #[tokio::test]
        async fn round_trips_at_part_boundaries() {
            let fixture = $open().await;
            conformance::round_trips_at_part_boundaries(fixture.store.clone()).await;
        }
        #[tokio::test]
        async fn lists_more_than_one_page() {
            let fixture = $open().await;
            conformance::lists_more_than_one_page(fixture.store.clone()).await;
        }
        #[tokio::test]
        async fn create_if_absent_has_one_winner() {
            let fixture = $open().await;
            conformance::create_if_absent_has_one_winner(fixture.store.clone()).await;
        }
        #[tokio::test]
        async fn missing_objects() {
            let fixture = $open().await;
            conformance::missing_objects(fixture.store.clone()).await;
        }
    };
}
