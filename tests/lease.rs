//! The datacenter lease against a directory and the real S3-compatible
//! server: one holder at a time, exactly one winner among concurrent
//! contenders (also when they take over a stale lease together), and a
//! holder that learns it lost the lease.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::{Action, StorageProxy};
use common::setting;
use kassette::catalog::Layout;
use kassette::config::{Backend, StorageConfig, TransferLimits};
use kassette::coordinator::lease::{Lease, LeaseError, Timing};
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
        let dead = Lease::acquire(
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
        let lease = Lease::acquire(store.clone(), &layout(), "job/1", "backup", HOUR)
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

/// The bucket of a fresh S3 store, the store opened directly, and the same
/// bucket opened through a [`StorageProxy`] (a test double that delays,
/// reorders or loses responses of the real server).
async fn direct_and_proxied() -> (Arc<dyn Store>, Arc<dyn Store>, StorageProxy) {
    let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
    let bucket = common::new_s3_bucket(&endpoint).await;
    let credentials = setting("KASSETTE_TEST_S3_CREDENTIALS_FILE");
    let proxy = StorageProxy::start(&endpoint).await;
    let direct = storage::open(&common::s3_storage_config(
        &endpoint,
        &bucket,
        &credentials,
        "",
    ))
    .await
    .unwrap();
    let proxied = storage::open(&common::s3_storage_config(
        &proxy.url,
        &bucket,
        &credentials,
        "",
    ))
    .await
    .unwrap();
    (direct, proxied, proxy)
}

/// Defect 1 of issue 10: a contender whose create of sequence n+1 is
/// delayed in the network (it read sequence n as free) while another pass
/// takes n+1, releases it, and a third takes n+2 — the old winner deleted
/// n+1, so the delayed create succeeded and two passes held the lease.
/// Now lease numbers are never deleted and the creator re-reads: the
/// delayed contender is refused, naming the holder.
#[tokio::test]
async fn a_delayed_create_never_revives_a_superseded_sequence() {
    let (direct, proxied, proxy) = direct_and_proxied().await;
    Lease::acquire(direct.clone(), &layout(), "seed/1", "backup", HOUR)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let mut delayed = false;
    proxy.rule(move |seen| {
        (seen.is_conditional_put() && seen.uri.contains("/locks/") && !delayed).then(|| {
            delayed = true;
            Action {
                delay_before: Duration::from_millis(1500),
                ..Action::default()
            }
        })
    });
    let stale = tokio::spawn(async move {
        Lease::acquire(proxied, &layout(), "stale-contender/1", "backup", HOUR).await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    Lease::acquire(direct.clone(), &layout(), "quick/1", "purge", HOUR)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let winner = Lease::acquire(direct.clone(), &layout(), "winner/1", "backup", HOUR)
        .await
        .expect("the lease is free after quick/1 released it");
    let stale = stale.await.unwrap();
    match &stale {
        Err(LeaseError::Held { owner, .. }) => assert_eq!(owner, "winner/1"),
        Ok(lease) => panic!(
            "two holders at once: {} and {}",
            lease.record().owner,
            winner.record().owner
        ),
        Err(other) => panic!("unexpected: {other}"),
    }
    winner.check().await.expect("the winner still holds it");
}

/// Contenders racing through a proxy that delays every request and
/// response at random (so responses arrive reordered), taking, holding,
/// releasing and sometimes abandoning the lease (a killed pass): no two
/// ever pass `acquire` + `check` and hold at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contenders_behind_a_reordering_proxy_never_hold_together() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (_direct, proxied, proxy) = direct_and_proxied().await;
    proxy.rule(|_| {
        Some(Action {
            delay_before: common::proxy::jitter(Duration::from_millis(120)),
            delay_after: common::proxy::jitter(Duration::from_millis(120)),
            lose_response: false,
        })
    });
    let holding = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let (store, holding, overlaps, held) = (
                proxied.clone(),
                holding.clone(),
                overlaps.clone(),
                held.clone(),
            );
            tokio::spawn(async move {
                let mut round = 0;
                while tokio::time::Instant::now() < deadline {
                    round += 1;
                    let owner = format!("contender-{i}/{round}");
                    let ttl = Duration::from_secs(3);
                    match Lease::acquire(store.clone(), &layout(), &owner, "backup", ttl).await {
                        Ok(lease) if lease.check().await.is_ok() => {
                            if holding.fetch_add(1, Ordering::SeqCst) != 0 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            held.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            holding.fetch_sub(1, Ordering::SeqCst);
                            if round % 4 != 0 {
                                let _ = lease.release().await;
                            } else {
                                // Abandoned, as by a killed pass: it
                                // blocks the others until it expires.
                                drop(lease);
                            }
                        }
                        Ok(_) | Err(LeaseError::Held { .. }) | Err(LeaseError::Lost { .. }) => {
                            tokio::time::sleep(common::proxy::jitter(Duration::from_millis(50)))
                                .await
                        }
                        Err(other) => panic!("unexpected: {other}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(held.load(Ordering::SeqCst) >= 3, "too few rounds held");
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders at once");
}

/// Defect 5 of issue 10 (for the lease): the response to our successful
/// create is lost, the store layer retries and finds the object present.
/// It is byte-identical to ours, so it is our lease — not a lease held by
/// someone else (which was ourselves).
#[tokio::test]
async fn a_lost_response_to_our_create_is_still_our_lease() {
    let (_direct, proxied, proxy) = direct_and_proxied().await;
    let mut lost = false;
    proxy.rule(move |seen| {
        (seen.is_conditional_put() && !lost).then(|| {
            lost = true;
            Action {
                lose_response: true,
                ..Action::default()
            }
        })
    });
    let lease = Lease::acquire(proxied, &layout(), "job/1", "backup", HOUR)
        .await
        .expect("our own lease");
    lease.check().await.unwrap();
}

/// Defect 12 of issue 10: the refusal says when the lease expires and
/// how to release the lease of a dead holder.
#[tokio::test]
async fn the_refusal_says_when_the_lease_expires_and_how_to_release_it() {
    let (stores, _dir) = stores().await;
    let (_, store) = &stores[0];
    let held = Lease::acquire(store.clone(), &layout(), "job-a/1", "backup", HOUR)
        .await
        .unwrap();
    let err = Lease::acquire(store.clone(), &layout(), "job-b/1", "backup", HOUR)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("job-a/1"), "{message}");
    assert!(
        message.contains(&held.record().expires_at.to_string()),
        "{message}"
    );
    assert!(message.contains("expires in"), "{message}");
    assert!(message.contains("kassette unlock"), "{message}");
}

/// `kassette unlock` against a directory store: the catalog's settings.
async fn unlock_cli(dir: &std::path::Path) -> std::process::Output {
    common::dc::kassette_command()
        .arg("unlock")
        .env("KASSETTE_STORAGE_PROVIDER", "local")
        .env("KASSETTE_STORAGE_PATH", dir)
        .env("KASSETTE_CLUSTER", "prod")
        .env("KASSETTE_DATACENTER", "dc1")
        .output()
        .await
        .expect("run kassette unlock")
}

fn local_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(
        storage::local::LocalStore::new(dir, "", storage::Limits::unlimited_for_tests()).unwrap(),
    )
}

/// Defect 12 of issue 10: `kassette unlock` releases the lease of a pass
/// that died holding it — long before its TTL — after watching it
/// unrenewed for four heartbeats; the dead holder finds itself superseded.
#[tokio::test]
async fn unlock_releases_a_dead_holders_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let timing = Timing {
        ttl: HOUR,
        heartbeat: Duration::from_millis(500),
    };
    let dead = Lease::acquire_with(store.clone(), &layout(), "killed-job/1", "backup", timing)
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let out = unlock_cli(dir.path()).await;
    let message = common::dc::text(&out);
    assert!(out.status.success(), "{message}");
    assert!(
        message.contains("released the lease of killed-job/1"),
        "{message}"
    );
    assert!(
        start.elapsed() >= timing.unlock_watch(),
        "unlock did not watch the lease for four heartbeats"
    );
    let next = Lease::acquire(store.clone(), &layout(), "next-job/1", "backup", HOUR)
        .await
        .expect("the lease is free after unlock, long before its TTL");
    assert!(matches!(dead.check().await, Err(LeaseError::Lost { .. })));
    next.release().await.unwrap();
    let idle = unlock_cli(dir.path()).await;
    assert!(idle.status.success(), "{}", common::dc::text(&idle));
    assert!(common::dc::text(&idle).contains("nothing to unlock"));
}

/// `kassette unlock` refuses (exit 1, naming the holder) while the holder
/// is still renewing its lease; the holder keeps it.
#[tokio::test]
async fn unlock_refuses_while_the_holder_renews() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let timing = Timing {
        ttl: HOUR,
        heartbeat: Duration::from_millis(500),
    };
    let live = Arc::new(
        Lease::acquire_with(store.clone(), &layout(), "live-job/1", "backup", timing)
            .await
            .unwrap(),
    );
    let renewing = {
        let live = live.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(timing.heartbeat).await;
                live.heartbeat().await.expect("renewal");
            }
        })
    };
    let out = unlock_cli(dir.path()).await;
    let message = common::dc::text(&out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(message.contains("live-job/1"), "{message}");
    assert!(
        message.contains("still renewing") || message.contains("renewed its lease"),
        "{message}"
    );
    live.check().await.expect("the live holder keeps its lease");
    renewing.abort();
}
