//! Corruption of every kind of stored object, against the real 3-node
//! cluster, real agents and the real S3-compatible server: one byte flipped
//! in a data blob, a node manifest, the backup manifest, the index and a
//! lease object — also flips that leave the JSON valid (a digit of a
//! count, a letter of the backed-up schema, of the lease's owner), which
//! only the records' seal finds; a blob truncated; a blob deleted. Each is
//! found by `verify` and refused by `restore` before anything live changes,
//! with a message naming the object. After each case the object is put
//! back and the backup verifies again (so the next case starts from a
//! sound store); the damaged lease is cleared by `kassette unlock`.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::dataset::Dataset;
use common::dc::{Datacenter, StoreKind, assert_success, backup_name, text};
use common::{cql_cluster, setting};
use kassette::catalog::{Catalog, Layout};
use kassette::storage::{ObjectKey, PutMode, Store};
use scylla::client::session::Session;

const ROWS: i32 = 120;
const PAYLOAD: usize = 512;

/// How an object is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// One byte at this offset (negative: from the end, -1 the last) XOR 0x01.
    Flip(isize),
    /// The byte at this offset into the first occurrence of the text, XOR
    /// 0x01: a digit stays a digit, a letter a letter — the JSON stays
    /// valid, only the seal tells.
    FlipIn(&'static str, usize),
    /// Cut to half its size.
    Truncate,
    Delete,
}

struct Case {
    what: &'static str,
    key: ObjectKey,
    damage: Damage,
    /// `verify --deep` is needed (sizes are unchanged).
    deep: bool,
}

async fn apply(store: &Arc<dyn Store>, key: &ObjectKey, damage: Damage) -> Bytes {
    let original = store.get_bytes(key).await.expect("read the object");
    match damage {
        Damage::Flip(_) | Damage::FlipIn(..) => {
            let mut bytes = original.to_vec();
            let i = match damage {
                Damage::Flip(at) if at < 0 => bytes.len() - at.unsigned_abs(),
                Damage::Flip(at) => at as usize,
                Damage::FlipIn(text, offset) => {
                    bytes
                        .windows(text.len())
                        .position(|w| w == text.as_bytes())
                        .unwrap_or_else(|| panic!("{text:?} not in {key}"))
                        + offset
                }
                _ => unreachable!(),
            };
            bytes[i] ^= 0x01;
            if let Damage::FlipIn(..) = damage {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .expect("the flip leaves valid JSON");
            }
            store
                .put_bytes(key, Bytes::from(bytes), PutMode::Overwrite)
                .await
                .unwrap();
        }
        Damage::Truncate => {
            let half = original.slice(..original.len() / 2);
            store
                .put_bytes(key, half, PutMode::Overwrite)
                .await
                .unwrap();
        }
        Damage::Delete => store.delete_many(std::slice::from_ref(key)).await.unwrap(),
    }
    original
}

/// Refused, exit 1, naming `key`.
fn assert_refused(out: &std::process::Output, what: &str, key: &ObjectKey) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} was not refused:\n{}",
        text(out)
    );
    assert!(
        text(out).contains(key.as_str()),
        "{what}: the message does not name {key}:\n{}",
        text(out)
    );
}

/// The live rows of the users and items tables, compared between steps.
async fn live(session: &Session, data: &Dataset) -> String {
    format!(
        "{:?}",
        (data.users(session).await, data.items(session).await)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_corruption_is_found_and_refused_before_any_change() {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, ROWS, PAYLOAD).await;
    let dc = Datacenter::start(StoreKind::S3, &[]).await;
    let name = backup_name("cor-");
    dc.backup(&name, &data.keyspaces()).await;
    // Rows written after the backup: a restore that went ahead would lose
    // them (replace mode truncates first).
    data.write(&session, ROWS, ROWS + 30, PAYLOAD).await;
    let before = live(&session, &data).await;

    let store = dc.store().await;
    let layout = Layout::new(
        &setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        &setting("KASSETTE_TEST_CASSANDRA_DC"),
    )
    .unwrap();
    let catalog = Catalog::new(store.clone(), layout.clone());
    let backup = catalog.backup_manifest(&name).await.unwrap();
    let nodes = catalog.node_manifests(&backup).await.unwrap();
    let data_blobs: Vec<ObjectKey> = nodes[0]
        .files
        .iter()
        .filter(|f| f.path.ends_with("-Data.db") && f.digest.size > 16)
        .map(|f| layout.content(f).unwrap())
        .collect();
    assert!(data_blobs.len() >= 3, "{data_blobs:?}");
    let node_manifest = layout.node_manifest(&name, &nodes[1].host_id).unwrap();
    let backup_manifest = layout.backup_manifest(&name).unwrap();
    let index = layout.index().unwrap();
    let cases = [
        Case {
            what: "a data blob with one byte flipped",
            key: data_blobs[0].clone(),
            damage: Damage::Flip(-1),
            deep: true,
        },
        Case {
            what: "a truncated data blob",
            key: data_blobs[1].clone(),
            damage: Damage::Truncate,
            deep: false,
        },
        Case {
            what: "a deleted data blob",
            key: data_blobs[2].clone(),
            damage: Damage::Delete,
            deep: false,
        },
        Case {
            what: "a node manifest with one byte flipped",
            key: node_manifest.clone(),
            damage: Damage::Flip(40),
            deep: false,
        },
        Case {
            what: "a truncated node manifest",
            key: node_manifest,
            damage: Damage::Truncate,
            deep: false,
        },
        Case {
            what: "a backup manifest with one byte flipped",
            key: backup_manifest.clone(),
            damage: Damage::Flip(0),
            deep: false,
        },
        Case {
            what: "a truncated backup manifest",
            key: backup_manifest.clone(),
            damage: Damage::Truncate,
            deep: false,
        },
        Case {
            what: "a backup manifest with a digit of a byte count changed (valid JSON)",
            key: backup_manifest.clone(),
            damage: Damage::FlipIn("\"bytes\": ", 9),
            deep: false,
        },
        Case {
            what: "a backup manifest with a letter of a keyspace name in the schema changed (valid JSON)",
            key: backup_manifest.clone(),
            damage: Damage::FlipIn("CREATE KEYSPACE ", 16),
            deep: false,
        },
    ];
    let keyspaces = data.keyspaces().join(",");
    for case in &cases {
        check_case(
            &dc, &store, case, &name, &keyspaces, &session, &data, &before,
        )
        .await;
    }
    // The current lease (passes replace it, so it is found last): nobody can
    // tell whether a live pass holds an unreadable lease, so every pass
    // refuses to start, naming it.
    let lease = Case {
        what: "the current lease object with one byte flipped",
        key: current_lease(&store, &layout).await,
        damage: Damage::Flip(0),
        deep: false,
    };
    check_case(
        &dc, &store, &lease, &name, &keyspaces, &session, &data, &before,
    )
    .await;
    // A letter of the owner changed (valid JSON): only the seal tells. It
    // stays damaged; `kassette unlock` watches it (nobody rewrites it) and
    // supersedes it, and passes can run again.
    let lease_key = current_lease(&store, &layout).await;
    let lease = Case {
        what: "the current lease object with a letter of its owner changed (valid JSON)",
        key: lease_key.clone(),
        damage: Damage::FlipIn("\"owner\": \"", 10),
        deep: false,
    };
    refused_by_verify_and_restore(
        &dc, &store, &lease, &name, &keyspaces, &session, &data, &before,
    )
    .await;
    let unlocked = dc.kassette(&["unlock"], &[]).await;
    assert_success(&unlocked, "unlock of a damaged lease");
    assert!(
        text(&unlocked).contains(lease_key.as_str()),
        "unlock does not name the damaged lease:\n{}",
        text(&unlocked)
    );
    assert_ne!(current_lease(&store, &layout).await, lease_key);
    assert_success(
        &dc.kassette(&["verify"], &[("KASSETTE_BACKUP_NAME", &name)])
            .await,
        "verify after unlock superseded the damaged lease",
    );

    // The index is a cache of the backup manifests: `verify` reports it
    // damaged, naming it; readers ignore it and use the backup manifests, so
    // a restore of `latest` restores the right backup, saying the index is
    // damaged. Damage that leaves valid JSON (a digit of a byte count) is
    // found by its seal.
    apply(&store, &index, Damage::FlipIn("\"bytes\": ", 9)).await;
    let verified = dc
        .kassette(&["verify"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    assert_refused(&verified, "verify with a damaged index", &index);
    let listed = dc.kassette(&["list"], &[]).await;
    assert_success(&listed, "list with a damaged index");
    assert!(
        text(&listed).contains(&name) && text(&listed).contains(index.as_str()),
        "list does not show the backup and name the damaged index:\n{}",
        text(&listed)
    );
    let restored = dc
        .kassette(
            &["restore"],
            &[
                ("KASSETTE_BACKUP_NAME", "latest"),
                ("KASSETTE_KEYSPACES", keyspaces.as_str()),
            ],
        )
        .await;
    assert_success(&restored, "restore of latest with a damaged index");
    assert!(
        text(&restored).contains(&name) && text(&restored).contains(index.as_str()),
        "restore of latest does not name the backup and the damaged index:\n{}",
        text(&restored)
    );
    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, ROWS, PAYLOAD),
        "restore of latest with a damaged index restored something else"
    );
}

/// Damages `case.key`, checks `verify` and `restore` refuse naming it with
/// live data unchanged, then puts the object back and verifies again.
#[allow(clippy::too_many_arguments)]
async fn check_case(
    dc: &Datacenter,
    store: &Arc<dyn Store>,
    case: &Case,
    name: &str,
    keyspaces: &str,
    session: &Session,
    data: &Dataset,
    before: &str,
) {
    let original =
        refused_by_verify_and_restore(dc, store, case, name, keyspaces, session, data, before)
            .await;
    store
        .put_bytes(&case.key, original, PutMode::Overwrite)
        .await
        .unwrap();
    assert_success(
        &dc.kassette(&["verify"], &[("KASSETTE_BACKUP_NAME", name)])
            .await,
        &format!("verify after repairing {}", case.what),
    );
}

/// Damages `case.key` and checks `verify` and `restore` refuse naming it
/// with live data unchanged (and `status`, for the backup manifest).
/// Returns the original bytes.
#[allow(clippy::too_many_arguments)]
async fn refused_by_verify_and_restore(
    dc: &Datacenter,
    store: &Arc<dyn Store>,
    case: &Case,
    name: &str,
    keyspaces: &str,
    session: &Session,
    data: &Dataset,
    before: &str,
) -> Bytes {
    let original = apply(store, &case.key, case.damage).await;
    let verify_args: &[&str] = if case.deep {
        &["verify", "--deep"]
    } else {
        &["verify"]
    };
    let verified = dc
        .kassette(verify_args, &[("KASSETTE_BACKUP_NAME", name)])
        .await;
    assert_refused(&verified, &format!("verify of {}", case.what), &case.key);
    let restored = dc
        .kassette(
            &["restore"],
            &[
                ("KASSETTE_BACKUP_NAME", name),
                ("KASSETTE_KEYSPACES", keyspaces),
            ],
        )
        .await;
    assert_refused(&restored, &format!("restore of {}", case.what), &case.key);
    assert!(
        live(session, data).await == before,
        "restore of {} changed live data",
        case.what
    );
    if case.key.as_str().ends_with("/backup.json") {
        let status = dc
            .kassette(&["status"], &[("KASSETTE_BACKUP_NAME", name)])
            .await;
        assert_refused(&status, &format!("status of {}", case.what), &case.key);
    }
    eprintln!("{}: found by verify and refused by restore", case.what);
    original
}

/// The current lease object: the highest sequence under `locks/`.
async fn current_lease(store: &Arc<dyn Store>, layout: &Layout) -> ObjectKey {
    use futures::TryStreamExt;
    let locks: Vec<_> = store
        .list(&layout.locks_prefix())
        .try_collect()
        .await
        .unwrap();
    locks
        .into_iter()
        .filter_map(|o| layout.lock_sequence(&o.key).map(|s| (s, o.key)))
        .max_by_key(|(s, _)| *s)
        .expect("a lease object")
        .1
}
