//! The storage conformance suite against a local directory, plus what only
//! a directory can show (atomic files, no temporary leftovers).

mod conformance;

use std::sync::Arc;

use kassette::config::{Backend, StorageConfig, TransferLimits};
use kassette::storage::{self, Store};

/// A store in a fresh directory, deleted with the fixture.
async fn open() -> conformance::Fixture {
    let dir = tempfile::tempdir().unwrap();
    conformance::Fixture {
        store: open_at(dir.path(), "team/prod").await,
        _guard: Some(dir),
    }
}

async fn open_at(dir: &std::path::Path, prefix: &str) -> Arc<dyn Store> {
    let config = StorageConfig {
        backend: Backend::Local {
            root: dir.to_path_buf(),
        },
        prefix: prefix.to_string(),
        limits: TransferLimits {
            concurrency: 4,
            max_bandwidth: None,
        },
    };
    storage::open(&config).await.expect("open local store")
}

conformance_tests!(open);

#[tokio::test]
async fn a_multi_gib_file_round_trips() {
    let fixture = open().await;
    conformance::round_trip(&fixture.store, (2 << 30) + 1).await;
}

#[tokio::test]
async fn detects_altered_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(dir.path(), "").await;
    let root = dir.path().to_path_buf();
    conformance::detects_altered_objects(store, |key| async move {
        let path = root.join(key);
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, conformance::flip_middle_byte(data)).unwrap();
    })
    .await;
}

#[tokio::test]
async fn objects_live_under_the_prefix_and_nothing_else_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(dir.path(), "team/prod").await;
    let file = dir.path().join("input");
    conformance::make_file(&file, 3 << 20);
    store
        .put_file(&conformance::key("a/b.db"), &file)
        .await
        .unwrap();
    let stored = dir.path().join("team/prod/a");
    let names: Vec<String> = std::fs::read_dir(&stored)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["b.db"], "only the object, no temporary file");
}
