//! The datacenter lease against a directory and the real S3-compatible
//! server: one holder at a time, exactly one winner among concurrent
//! contenders (also when they take over a stale lease together), and a
//! holder that learns it lost the lease.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::setting;
use kassette::catalog::Layout;
use kassette::config::{Backend, StorageConfig, TransferLimits};
use kassette::coordinator::lease::{Lease, LeaseError};
use kassette::storage::{self, Store};

/// A fresh local store and a fresh S3 bucket (the directory lives as long
/// as the returned guard).
async fn stores() -> (Vec<(&'static str, Arc<dyn Store>)>, tempfile::TempDir) {
    let limits = TransferLimits {
        concurrency: 8,
        max_bandwidth: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let local = StorageConfig {
        backend: Backend::Local {
            root: dir.path().to_path_buf(),
        },
        prefix: String::new(),
        limits,
    };
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = common::new_s3_bucket(&endpoint).await;
    let credentials = setting("KASSETTE_TEST_S3_CREDENTIALS_FILE");
    let s3 = common::s3_storage_config(&endpoint, &bucket, &credentials, "");
    let stores = vec![
        ("local", storage::open(&local).await.unwrap()),
        ("s3", storage::open(&s3).await.unwrap()),
    ];
    (stores, dir)
}

fn layout() -> Layout {
    Layout::new("prod", "dc1").unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn one_holder_at_a_time() {
    let (stores, _dir) = stores().await;
    for (name, store) in stores {
        let first = Lease::acquire(store.clone(), &layout(), "backup-job-a/1", "backup", HOUR)
            .await
            .unwrap();
        let err = Lease::acquire(store.clone(), &layout(), "backup-job-b/1", "backup", HOUR)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LeaseError::Held { ref owner, .. } if owner == "backup-job-a/1"),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("backup-job-a/1"), "{name}: {err}");
        first.release().await.unwrap();
        let second = Lease::acquire(store.clone(), &layout(), "backup-job-b/1", "backup", HOUR)
            .await
            .expect("free after release");
        second.release().await.unwrap();
    }
}

/// Runs 8 contenders at once; returns the winners' owner names.
async fn contend(store: &Arc<dyn Store>) -> Vec<String> {
    let attempts =
        futures::future::join_all((0..8).map(|i| {
            let store = store.clone();
            async move {
                Lease::acquire(store, &layout(), &format!("contender-{i}"), "backup", HOUR).await
            }
        }))
        .await;
    let mut winners = Vec::new();
    for attempt in attempts {
        match attempt {
            Ok(lease) => winners.push(lease.record().owner.clone()),
            Err(LeaseError::Held { .. }) => {}
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    winners
}

#[tokio::test]
async fn concurrent_contenders_have_one_winner() {
    let (stores, _dir) = stores().await;
    for (name, store) in stores {
        let winners = contend(&store).await;
        assert_eq!(winners.len(), 1, "{name}: winners {winners:?}");
    }
}

#[tokio::test]
async fn a_stale_lease_is_taken_over_once_and_its_holder_learns_it() {
    let (stores, _dir) = stores().await;
    for (name, store) in stores {
        // A holder that died: its lease expires at once.
        let mut dead = Lease::acquire(
            store.clone(),
            &layout(),
            "killed-job/1",
            "backup",
            Duration::ZERO,
        )
        .await
        .unwrap();
        let winners = contend(&store).await;
        assert_eq!(winners.len(), 1, "{name}: winners {winners:?}");
        let err = dead.check().await.unwrap_err();
        assert!(
            matches!(err, LeaseError::Lost { ref owner } if *owner == winners[0]),
            "{name}: {err}"
        );
        assert!(
            matches!(dead.renew().await, Err(LeaseError::Lost { .. })),
            "{name}"
        );
    }
}

#[tokio::test]
async fn renewal_extends_the_lease() {
    let (stores, _dir) = stores().await;
    for (name, store) in stores {
        let mut lease = Lease::acquire(store.clone(), &layout(), "job/1", "backup", HOUR)
            .await
            .unwrap();
        let before = lease.record().expires_at;
        tokio::time::sleep(Duration::from_millis(20)).await;
        lease.renew().await.unwrap();
        assert!(lease.record().expires_at > before, "{name}");
        let err = Lease::acquire(store.clone(), &layout(), "other/1", "purge", HOUR)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LeaseError::Held { ref expires_at, .. } if *expires_at == lease.record().expires_at),
            "{name}: {err}"
        );
        lease.release().await.unwrap();
    }
}
