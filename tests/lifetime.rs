//! The lifetime of a pass's work and the safety of a restore when things
//! die: kill -9 of the coordinator at the upload, download, truncate and
//! import phases, and of one agent; a lease lost after a restore's point of
//! no return; child processes of a stopped job; truncate snapshots and
//! staging areas left behind; an agent writing to another store. Real
//! 3-node cluster, real agent processes, real S3-compatible server.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::dataset::Dataset;
use common::dc::{Datacenter, StoreKind, assert_success, backup_name, text};
use common::{cql_cluster, setting};
use kassette::catalog::Layout;
use kassette::storage::PutMode;
use scylla::client::session::Session;
use tokio::io::AsyncBufReadExt;

/// How long an agent keeps a job without a poll, in these tests (the
/// coordinators' short test lease TTL, raised to the 10 s minimum).
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

fn layout() -> Layout {
    Layout::new(
        &setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        &setting("KASSETTE_TEST_CASSANDRA_DC"),
    )
    .unwrap()
}

/// Waits until one agent's log has a line containing `marker`.
async fn wait_for_agent_log(dc: &Datacenter, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        for agent in &dc.agents {
            if std::fs::read_to_string(&agent.log).is_ok_and(|l| l.contains(marker)) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no agent logged {marker:?}");
}

/// How many lines of agent `node`'s log contain `marker`.
fn agent_log_count(dc: &Datacenter, node: usize, marker: &str) -> usize {
    std::fs::read_to_string(&dc.agents[node - 1].log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(marker))
        .count()
}

fn staging_areas(dc: &Datacenter, node: usize) -> Vec<String> {
    let dir: PathBuf = dc.dir.path().join(format!("agent{node}/staging"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Bytes between `after` and `before` in a restore's summary line.
fn amount(summary: &str, after: &str, before: &str) -> u64 {
    summary
        .split(after)
        .nth(1)
        .and_then(|r| r.split(before).next())
        .and_then(|t| t.trim().parse::<bytesize::ByteSize>().ok())
        .map(|b| b.as_u64())
        .unwrap_or_else(|| panic!("no amount between {after:?} and {before:?} in {summary}"))
}

async fn big_dataset(session: &Session) -> Dataset {
    let data = Dataset::create(session).await;
    data.write(session, 0, 160, 64 * 1024).await;
    data
}

/// Defect 16: a coordinator killed mid-upload leaves no work behind. Each
/// agent's upload ends within the heartbeat timeout and says so
/// (`abandoned`), its progress logger stops with it, and the next pass
/// neither waits for nor collides with it; the re-run completes and
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_coordinators_uploads_end_and_say_so() {
    let session = cql_cluster().await;
    let data = big_dataset(&session).await;
    // About 10 MiB a node at 384 KiB/s: still uploading when the 10 s
    // heartbeat timeout ends the killed pass's jobs (at 1 MiB/s a node
    // could finish first and the test saw only "done").
    let dc = Datacenter::start(StoreKind::S3, &[("KASSETTE_MAX_BANDWIDTH", "384KiB/s")]).await;
    let name = backup_name("ghost-");
    let ks = data.keyspaces().join(",");
    let env = [
        ("KASSETTE_BACKUP_NAME", name.as_str()),
        ("KASSETTE_KEYSPACES", ks.as_str()),
    ];
    let mut first = dc
        .coordinator(&["backup"], &env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    dc.wait_for_progress("started uploading", |p| {
        p.state == "uploading" && p.bytes_uploaded > 0
    })
    .await;
    first.kill().await.unwrap();

    // Within the heartbeat timeout every agent's upload has ended, and the
    // state says why.
    let deadline = Instant::now() + HEARTBEAT_TIMEOUT + Duration::from_secs(10);
    let clients: Vec<_> = dc.agents.iter().map(|a| dc.client(&a.address)).collect();
    loop {
        let states: Vec<String> = futures::future::join_all(clients.iter().map(|c| c.progress()))
            .await
            .into_iter()
            .map(|p| p.map(|p| p.state).unwrap_or_default())
            .collect();
        if states.iter().all(|s| s == "abandoned" || s == "done") {
            assert!(states.iter().any(|s| s == "abandoned"), "{states:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed coordinator's uploads are still running: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No progress logger outlives its upload (it logs every 10 s).
    let logged: Vec<usize> = (1..=3)
        .map(|n| agent_log_count(&dc, n, "upload progress"))
        .collect();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let later: Vec<usize> = (1..=3)
        .map(|n| agent_log_count(&dc, n, "upload progress"))
        .collect();
    assert_eq!(logged, later, "a progress logger outlived its upload");

    let rerun = dc.kassette(&["backup"], &env).await;
    assert_success(&rerun, "re-run of the killed backup");
    assert_success(
        &dc.kassette(&["verify", "--deep"], &[("KASSETTE_BACKUP_NAME", &name)])
            .await,
        "verify --deep of the resumed backup",
    );
    for node in 1..=3 {
        let left: Vec<String> = common::dc::snapshot_tags(node)
            .into_iter()
            .filter(|t| t.contains(&name))
            .collect();
        assert!(left.is_empty(), "node {node} kept {left:?}");
    }
}

/// Defect 16: a job of a new pass takes over a still-running job of
/// another (dead) pass at once — it neither waits for the heartbeat
/// timeout nor runs beside it — and the old job's state says so. Driven
/// through the real agents' API, so no timing decides the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pass_takes_over_a_dead_ones_work() {
    use kassette::agent::api::{JobState, SnapshotRequest, UploadRequest, Work};
    use kassette::coordinator::client::JobSpec;
    let session = cql_cluster().await;
    let data = big_dataset(&session).await;
    let dc = Datacenter::start(StoreKind::S3, &[("KASSETTE_MAX_BANDWIDTH", "1MiB/s")]).await;
    let client = dc.client(&dc.agents[0].address);
    let tag = common::unique("kassette-takeover-");
    client
        .snapshot(&SnapshotRequest {
            tag: tag.clone(),
            keyspaces: data.keyspaces().iter().map(|k| k.to_string()).collect(),
        })
        .await
        .unwrap();
    let upload = Work::Upload(UploadRequest {
        tag: tag.clone(),
        cluster: setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        datacenter: setting("KASSETTE_TEST_CASSANDRA_DC"),
        files_prefix: Some(format!("files/{}/takeover/backup-0", uuid::Uuid::new_v4())),
        previous: None,
    });
    // A dead pass's upload: started, then never polled again (an hour's
    // heartbeat timeout, so only a take-over can end it here).
    let dead = JobSpec::new_pass("backup", Duration::from_secs(3600));
    let http = reqwest::Client::new();
    let base = format!("http://{}", dc.agents[0].address);
    let started: serde_json::Value = http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(common::dc::TOKEN)
        .json(&serde_json::json!({
            "pass": dead.pass,
            "heartbeat_timeout_ms": 3_600_000,
            "work": upload,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dead_job = started["id"].as_str().unwrap().to_string();
    dc.wait_for_progress("uploading", |p| {
        p.state == "uploading" && p.bytes_uploaded > 0
    })
    .await;

    // The next pass's job starts at once and runs to the end.
    let next = JobSpec::new_pass("backup", Duration::from_secs(30));
    let begun = Instant::now();
    let report: kassette::agent::api::UploadReport =
        client.run_job(&next, upload.clone()).await.unwrap();
    assert!(report.files.len() > 1);
    let old: kassette::agent::api::JobStatus = http
        .get(format!("{base}/v1/jobs/{dead_job}"))
        .bearer_auth(common::dc::TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the dead pass's job is gone ({e}) after {:?}",
                begun.elapsed()
            )
        });
    assert_eq!(old.state, JobState::TakenOver, "{old:?}");
    assert_eq!(agent_log_count(&dc, 1, "taking over"), 1);
    client.clear_snapshot(&tag).await.unwrap();
}

/// Defect 16: a stopped `nodetool` takes its whole process group with it —
/// `nodetool` is a script starting a JVM, and killing the script alone
/// leaves the JVM. Here a script double (a fake: `sh` starting `sleep`)
/// stands in for nodetool, since the point is the process tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_nodetool_leaves_no_child_process() {
    use kassette::cassandra::control::Nodetool;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = dir.path().join("fake-nodetool");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nwait\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let nodetool = Nodetool::new(&format!("sh {}", script.display()));
    let run = tokio::time::timeout(Duration::from_secs(2), nodetool.snapshot("t", &[])).await;
    assert!(run.is_err(), "the fake nodetool returned");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    // /proc/<pid> goes once the orphan is reaped by init; a zombie has
    // state Z.
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
    };
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let survived = alive(pid);
    if survived {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(
        !survived,
        "nodetool's child {pid} outlived the cancelled call"
    );
}

/// Defect 2 and the kill matrix: a restore whose coordinator is killed
/// after imports began (tables truncated, some imported) is completed by
/// a re-run of the same backup from the staged files — nothing downloaded
/// again — which says so, and leaves no staging area.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_during_import_is_completed_by_the_rerun() {
    let (session, data, dc, name) = backed_up_then_damaged("rs-imp-").await;
    let ks = data.keyspaces().join(",");
    let env = [
        ("KASSETTE_BACKUP_NAME", name.as_str()),
        ("KASSETTE_KEYSPACES", ks.as_str()),
    ];
    let mut first = dc
        .coordinator(&["restore"], &env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Past the point of no return: truncated, and a first table imported.
    wait_for_agent_log(&dc, "imported keyspace=").await;
    first.kill().await.unwrap();
    tokio::time::sleep(common::dc::after_lease_expiry()).await;
    let out = dc.kassette(&["restore"], &env).await;
    assert_success(&out, "re-run of the restore killed during import");
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        amount(&summary, "imported (", " downloaded now"),
        0,
        "the re-run downloaded again: {summary}"
    );
    assert!(
        summary.contains("completed an earlier restore"),
        "the re-run does not say it completed the killed one: {summary}"
    );
    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, 300, 1024)
    );
    assert_eq!(data.items(&session).await, Dataset::expected_items(0, 300));
    for node in 1..=3 {
        assert_eq!(
            staging_areas(&dc, node),
            Vec::<String>::new(),
            "node {node}"
        );
    }
}

/// Kill matrix: an agent killed during a restore's import fails the pass
/// naming its node, saying a re-run completes it; with the agent back, the
/// re-run does, from the staged files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_during_import_is_completed_by_the_rerun() {
    let (session, data, mut dc, name) = backed_up_then_damaged("rs-agent-").await;
    let ks = data.keyspaces().join(",");
    let env = [
        ("KASSETTE_BACKUP_NAME", name.as_str()),
        ("KASSETTE_KEYSPACES", ks.as_str()),
    ];
    let pass = tokio::spawn(dc.coordinator(&["restore"], &env).output());
    wait_for_agent_log(&dc, "imported keyspace=").await;
    dc.kill_agent(2).await;
    let out = pass.await.unwrap().unwrap();
    let message = text(&out);
    if out.status.success() {
        // Node 2 had finished before it died: nothing to complete.
        assert_eq!(
            data.users(&session).await,
            Dataset::expected_users(0, 300, 1024)
        );
        return;
    }
    assert!(
        message.contains(&format!("node {}", dc.agents[1].address)),
        "{message}"
    );
    assert!(message.contains("point of no return"), "{message}");
    dc.restart_agent(2).await;
    tokio::time::sleep(common::dc::after_lease_expiry()).await;
    let out = dc.kassette(&["restore"], &env).await;
    assert_success(&out, "re-run after the agent came back");
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        amount(&summary, "imported (", " downloaded now"),
        0,
        "the re-run downloaded again: {summary}"
    );
    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, 300, 1024)
    );
    assert_eq!(data.items(&session).await, Dataset::expected_items(0, 300));
}

/// Defect 2: a restore whose lease is taken away after it truncated
/// finishes the import anyway and says so (before, the pass was dropped
/// and left the tables truncated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_loses_its_lease_after_truncating_finishes() {
    let (session, data, dc, name) = backed_up_then_damaged("rs-lease-").await;
    let ks = data.keyspaces().join(",");
    let mut pass = dc
        .coordinator(
            &["restore"],
            &[("KASSETTE_BACKUP_NAME", &name), ("KASSETTE_KEYSPACES", &ks)],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(pass.stderr.take().unwrap()).lines();
    let mut log = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        log.push_str(&line);
        log.push('\n');
        if line.contains("truncated") {
            break;
        }
    }
    take_the_lease(&dc).await;
    while let Ok(Some(line)) = lines.next_line().await {
        log.push_str(&line);
        log.push('\n');
    }
    let out = pass.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{log}");
    assert!(
        stdout.contains("the lease could not be renewed after the point of no return"),
        "{stdout}\n{log}"
    );
    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, 300, 1024)
    );
}

/// Another pass takes the lease: a record one sequence above the current
/// one, owned by someone else.
async fn take_the_lease(dc: &Datacenter) {
    use futures::TryStreamExt;
    let store = dc.store().await;
    let layout = layout();
    let locks: Vec<_> = store
        .list(&layout.locks_prefix())
        .try_collect()
        .await
        .unwrap();
    let (sequence, key) = locks
        .iter()
        .filter_map(|o| Some((layout.lock_sequence(&o.key)?, o.key.clone())))
        .max_by_key(|(s, _)| *s)
        .expect("a lease object");
    // Written as kassette writes it (sealed), so it reads as a sound lease.
    use kassette::catalog::manifest::Record;
    let mut record =
        kassette::catalog::LockRecord::from_json(&store.get_bytes(&key).await.unwrap()).unwrap();
    record.owner = "another-pass/1".into();
    record.run_id = uuid::Uuid::from_u128(1);
    store
        .put_bytes(
            &layout.lock(sequence + 1).unwrap(),
            record.to_json().unwrap().into(),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
}

/// Defect 10: clearing truncate snapshots removes exactly the ones this
/// restore's truncates made — not a same-named table's in another keyspace,
/// not an earlier truncate's of the restored table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_truncate_snapshots_spares_other_keyspaces() {
    let session = cql_cluster().await;
    let restored = common::create_keyspace(&session, "trs_").await;
    let bystander = common::create_keyspace(&session, "trb_").await;
    common::create_table_t(&session, &restored, 30).await;
    common::create_table_t(&session, &bystander, 30).await;
    let dc = Datacenter::start(StoreKind::S3, &[]).await;
    let name = backup_name("trunc-");
    dc.backup(&name, &[&restored]).await;
    // Safety nets that must survive: the bystander's table `t` truncated
    // (a snapshot named as Cassandra names it, dated in the future so no
    // time window can tell it apart), and an earlier one of the restored
    // table.
    let net = "truncated-9999999999999-t";
    common::dc::nodetool_everywhere(&["snapshot", "-t", net, "--", &bystander]);
    common::dc::nodetool_everywhere(&["snapshot", "-t", net, "--", &restored]);

    let out = dc
        .kassette(
            &["restore"],
            &[
                ("KASSETTE_BACKUP_NAME", &name),
                ("KASSETTE_KEYSPACES", &restored),
                ("KASSETTE_CLEAR_TRUNCATE_SNAPSHOTS", "true"),
            ],
        )
        .await;
    assert_success(&out, "restore clearing truncate snapshots");
    assert_eq!(common::count_rows(&session, &restored, "t").await, 30);
    for node in 1..=3 {
        assert_eq!(
            truncate_snapshots(node, &bystander),
            [net],
            "node {node}: the bystander's"
        );
        assert_eq!(
            truncate_snapshots(node, &restored),
            [net],
            "node {node}: the restored table's"
        );
    }
    common::dc::nodetool_everywhere(&["clearsnapshot", "-t", net, "--", &bystander]);
    common::dc::nodetool_everywhere(&["clearsnapshot", "-t", net, "--", &restored]);
}

/// `truncated-*` snapshot tags of table `t` of `keyspace` on `node`.
fn truncate_snapshots(node: usize, keyspace: &str) -> Vec<String> {
    let mut tags = std::collections::BTreeSet::new();
    for dir in common::cassandra_data_dirs(node) {
        let Ok(tables) = std::fs::read_dir(dir.join(keyspace)) else {
            continue;
        };
        for table in tables.flatten() {
            if !table.file_name().to_string_lossy().starts_with("t-") {
                continue;
            }
            let Ok(snapshots) = std::fs::read_dir(table.path().join("snapshots")) else {
                continue;
            };
            tags.extend(
                snapshots
                    .flatten()
                    .map(|s| s.file_name().to_string_lossy().into_owned())
                    .filter(|s| s.starts_with("truncated-")),
            );
        }
    }
    tags.into_iter().collect()
}

/// Defect 11: agents writing to another prefix are refused before any
/// snapshot, naming the agent and both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_writing_elsewhere_are_refused_before_any_snapshot() {
    let session = cql_cluster().await;
    let ks = common::create_keyspace(&session, "store_").await;
    common::create_table_t(&session, &ks, 10).await;
    let dc = Datacenter::start(StoreKind::S3, &[("KASSETTE_STORAGE_PREFIX", "elsewhere")]).await;
    let name = backup_name("elsewhere-");
    let out = dc
        .kassette(
            &["backup"],
            &[("KASSETTE_BACKUP_NAME", &name), ("KASSETTE_KEYSPACES", &ks)],
        )
        .await;
    let message = text(&out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!("agent {} writes to", dc.agents[0].address))
            || dc
                .agents
                .iter()
                .any(|a| message.contains(&format!("agent {} writes to", a.address))),
        "{message}"
    );
    assert!(message.contains("\"elsewhere\""), "{message}");
    for node in 1..=3 {
        assert_eq!(
            agent_log_count(&dc, node, "snapshot taken"),
            0,
            "node {node} took a snapshot"
        );
    }
}

/// Defect 14: a failed restore's staged files stay for a re-run (the
/// message says where), and the next restore — of another backup — removes
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restores_staging_is_removed_by_the_next_restore() {
    let session = cql_cluster().await;
    let first_ks = common::create_keyspace(&session, "stg1_").await;
    let second_ks = common::create_keyspace(&session, "stg2_").await;
    common::create_table_t(&session, &first_ks, 50).await;
    common::create_table_t(&session, &second_ks, 50).await;
    let dc = Datacenter::start(StoreKind::S3, &[]).await;
    let damaged = backup_name("stg-bad-");
    dc.backup(&damaged, &[&first_ks]).await;
    let good = backup_name("stg-good-");
    dc.backup(&good, &[&second_ks]).await;

    // Damage one blob only the first backup has.
    let store = dc.store().await;
    let layout = layout();
    let catalog = kassette::catalog::Catalog::new(store.clone(), layout.clone());
    let manifest = catalog.backup_manifest(&damaged).await.unwrap();
    let nodes = catalog.node_manifests(&manifest).await.unwrap();
    let victim = nodes[0]
        .files
        .iter()
        .filter(|f| f.path.ends_with("-Data.db") && !f.path.contains('/'))
        .max_by_key(|f| f.digest.size)
        .unwrap();
    let key = layout.content(victim).unwrap();
    let mut bytes = store.get_bytes(&key).await.unwrap().to_vec();
    bytes[0] ^= 0xff;
    store
        .put_bytes(&key, bytes.into(), PutMode::Overwrite)
        .await
        .unwrap();

    let failed = dc
        .kassette(&["restore"], &[("KASSETTE_BACKUP_NAME", &damaged)])
        .await;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(text(&failed).contains("staging"), "{}", text(&failed));
    let left: usize = (1..=3).map(|n| staging_areas(&dc, n).len()).sum();
    assert!(left > 0, "nothing was staged: the test proves nothing");

    let out = dc
        .kassette(&["restore"], &[("KASSETTE_BACKUP_NAME", &good)])
        .await;
    assert_success(&out, "restore of another backup");
    for node in 1..=3 {
        assert_eq!(
            staging_areas(&dc, node),
            Vec::<String>::new(),
            "node {node}"
        );
    }
}

/// A dataset of 300 rows backed up on a fresh S3 datacenter as
/// `<prefix>…`, then every third row of its main table deleted: the state
/// the restore-lifetime tests start from.
async fn backed_up_then_damaged(prefix: &str) -> (Session, Dataset, Datacenter, String) {
    let session = cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, 300, 1024).await;
    let dc = Datacenter::start(StoreKind::S3, &[]).await;
    let name = backup_name(prefix);
    dc.backup(&name, &data.keyspaces()).await;
    for id in (0..300).step_by(3) {
        session
            .query_unpaged(
                format!("DELETE FROM {}.users WHERE id = {id}", data.main),
                (),
            )
            .await
            .unwrap();
    }
    (session, data, dc, name)
}
