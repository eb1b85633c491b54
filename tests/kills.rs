//! The kill matrix of docs/guarantees.md: `kill -9` of the coordinator, of
//! one agent and of the storage server at each phase of a backup (lease,
//! snapshot, upload, commit, retention/GC) and of a restore (lease,
//! download, schema creation, truncate, import). After each kill:
//!
//! - a backup whose pass did not succeed is never listed as complete, and
//!   one whose pass succeeded is;
//! - every complete backup in the catalog passes `verify --deep`;
//! - a restore that stopped before its first live change left the live
//!   rows exactly as they were; one that stopped after it is completed by
//!   the re-run;
//! - the next run completes, and afterwards no snapshot of this walk's
//!   backups is left on any node and no staging area on any agent.
//!
//! One test per victim walks the phases on one shared setup (one keyspace
//! of two small tables, one base backup every restore cell restores, one
//! datacenter), so the whole matrix costs a few backups and restores per
//! cell. A phase is reached without any hook in kassette: the coordinator's
//! log line of the phase, the snapshot appearing on a node's disk, an
//! agent's log line, or the storage request of the phase held by a proxy
//! (a test double in front of the real server, `tests/common/proxy.rs`)
//! until the victim is killed; the held request is then dropped, as a dead
//! server or client would. The storage server is a MinIO of this test's
//! own, killed with SIGKILL and started again on the same data and port —
//! never the shared one.

mod common;

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::dc::{Datacenter, assert_success, text};
use common::proxy::{Hold, Seen, StorageProxy};
use common::{cql_cluster, setting, unique};
use scylla::client::session::Session;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// The tables of the walk's keyspace: restore cells damage `t` (and the
/// schema cell drops `u`); backup cells add rows to `u`. Each table costs
/// a `nodetool import` per node and restore, so there are two.
const TABLES: [&str; 2] = ["t", "u"];
/// Rows of each table in the base backup.
const ROWS: i32 = 40;
/// The agent killed in agent cells.
const VICTIM_NODE: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Coordinator,
    Agent,
    Storage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    BackupLease,
    Snapshot,
    Upload,
    Commit,
    Gc,
    RestoreLease,
    Download,
    Schema,
    Truncate,
    Import,
}

use Phase::*;

impl Phase {
    fn is_restore(self) -> bool {
        matches!(self, RestoreLease | Download | Schema | Truncate | Import)
    }

    /// Whether a restore killed in this phase is still before its first
    /// live change (truncate).
    fn before_live_change(self) -> bool {
        matches!(self, RestoreLease | Download | Schema)
    }

    fn word(self) -> &'static str {
        match self {
            BackupLease => "blease",
            Snapshot => "snapshot",
            Upload => "upload",
            Commit => "commit",
            Gc => "gc",
            RestoreLease => "rlease",
            Download => "download",
            Schema => "schema",
            Truncate => "truncate",
            Import => "import",
        }
    }
}

/// Restore phases first (they restore the base backup, which the GC cell
/// removes), then backup phases, GC last.
const WALK: [Phase; 10] = [
    RestoreLease,
    Download,
    Schema,
    Truncate,
    Import,
    BackupLease,
    Snapshot,
    Upload,
    Commit,
    Gc,
];

/// The phases an agent takes part in. Not the leases, schema creation or
/// GC: the coordinator alone does those (a dead agent is met at the next
/// phase that needs it: the snapshot, the download, the import — the
/// truncate cell kills it right after the first truncate).
const AGENT_WALK: [Phase; 6] = [Download, Truncate, Import, Snapshot, Upload, Commit];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_killed_at_every_phase() {
    walk(Victim::Coordinator, &WALK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_killed_at_every_phase() {
    walk(Victim::Agent, &AGENT_WALK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_server_killed_at_every_phase() {
    walk(Victim::Storage, &WALK).await;
}

async fn walk(victim: Victim, phases: &[Phase]) {
    let mut fixture = Fixture::new(victim).await;
    let started = Instant::now();
    for &phase in phases {
        let at = Instant::now();
        let outcome = fixture.cell(victim, phase).await;
        eprintln!(
            "kill matrix: {victim:?} at {phase:?}: {outcome} ({:.0} s)",
            at.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "kill matrix: {victim:?}: {} cells in {:.0} s",
        phases.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A MinIO of this test's own: the storage server a cell may kill.
struct Minio {
    port: u16,
    data: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Minio {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut minio = Self {
            port,
            data: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        minio.launch();
        minio
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server on the same port and data, and waits until it
    /// accepts connections.
    fn launch(&mut self) {
        let child = std::process::Command::new(setting("KASSETTE_TEST_MINIO_BIN"))
            .args(["server", "--quiet", "--address"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--console-address", "127.0.0.1:0"])
            .arg(self.data.path())
            .env("MINIO_ROOT_USER", setting("KASSETTE_TEST_S3_ACCESS_KEY"))
            .env(
                "MINIO_ROOT_PASSWORD",
                setting("KASSETTE_TEST_S3_SECRET_KEY"),
            )
            .env("MINIO_UPDATE", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start minio");
        self.child = Some(child);
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("minio did not start on port {}", self.port);
    }

    /// `kill -9`, and waits for it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Minio {
    fn drop(&mut self) {
        self.kill();
    }
}

type Rows = BTreeMap<i32, String>;

/// The live content of the walk's tables (`None`: the table does not
/// exist), read at consistency ALL.
type Live = BTreeMap<&'static str, Option<Rows>>;

/// A coordinator pass running as a process, its output collected as it
/// comes.
struct Running {
    child: tokio::process::Child,
    log: Arc<Mutex<String>>,
    stdout: tokio::task::JoinHandle<String>,
    stderr: tokio::task::JoinHandle<()>,
}

/// How a pass ended.
struct Ended {
    /// `None`: killed.
    status: Option<ExitStatus>,
    output: String,
}

impl Ended {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            None => write!(f, "pass killed"),
            Some(s) if s.success() => write!(f, "pass succeeded"),
            Some(s) => write!(f, "pass failed ({s})"),
        }
    }
}

impl Running {
    fn spawn(mut command: tokio::process::Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kassette");
        let log = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().expect("stdout");
        let stdout = tokio::spawn(async move {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text).await;
            text
        });
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let sink = log.clone();
        let stderr = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self {
            child,
            log,
            stdout,
            stderr,
        }
    }

    fn logged(&self, marker: &str) -> bool {
        self.log.lock().unwrap().contains(marker)
    }

    /// Panics (with everything the pass said) when it has ended.
    fn assert_running(&mut self, waiting_for: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the pass ended ({status}) before {waiting_for}:\n{}",
                self.log.lock().unwrap()
            );
        }
    }

    async fn kill(mut self) -> Ended {
        self.child.kill().await.expect("kill the coordinator");
        self.collect(None).await
    }

    async fn wait(mut self) -> Ended {
        let status = tokio::time::timeout(Duration::from_secs(600), self.child.wait())
            .await
            .expect("the pass never ended")
            .expect("wait for the pass");
        self.collect(Some(status)).await
    }

    async fn collect(self, status: Option<ExitStatus>) -> Ended {
        let stdout = self.stdout.await.unwrap_or_default();
        let _ = self.stderr.await;
        let log = self.log.lock().unwrap().clone();
        Ended {
            status,
            output: format!("{stdout}{log}"),
        }
    }
}

/// How a cell knows its pass reached the phase.
enum Trigger {
    /// The storage request of the phase, held by the proxy.
    Held(Hold),
    /// A line of the coordinator's log.
    Logged(&'static str),
    /// A new line of any agent's log (their logs span the walk: the
    /// count of earlier such lines, by agent, when the trigger was armed).
    AgentLogged(&'static str, Vec<usize>),
    /// The backup's snapshot on some node's disk.
    SnapshotOnDisk(String),
}

struct Fixture {
    minio: Minio,
    proxy: StorageProxy,
    dc: Datacenter,
    session: Session,
    ks: String,
    /// Every backup name of this walk starts with it (and so does every
    /// snapshot tag's tail).
    prefix: String,
    base: String,
    /// Next id written to `u` by a backup cell.
    next_row: i32,
}

impl Fixture {
    async fn new(victim: Victim) -> Self {
        let minio = Minio::start();
        let bucket = unique("kassette-kills-");
        create_bucket(&minio.endpoint(), &bucket).await;
        let proxy = StorageProxy::start(&minio.endpoint()).await;
        let credentials = setting("KASSETTE_TEST_S3_CREDENTIALS_FILE");
        let prefix_in_bucket = "team/cassandra";
        let storage =
            common::s3_storage_config(&minio.endpoint(), &bucket, &credentials, prefix_in_bucket);
        let settings: Vec<(String, String)> = [
            ("KASSETTE_STORAGE_PROVIDER", "s3".to_string()),
            ("KASSETTE_STORAGE_BUCKET", bucket.clone()),
            ("KASSETTE_STORAGE_ENDPOINT", proxy.url.clone()),
            (
                "KASSETTE_STORAGE_REGION",
                setting("KASSETTE_TEST_S3_REGION"),
            ),
            ("KASSETTE_STORAGE_CREDENTIALS_FILE", credentials.clone()),
            ("KASSETTE_STORAGE_ALLOW_HTTP", "true".to_string()),
            ("KASSETTE_STORAGE_PREFIX", prefix_in_bucket.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let dc = Datacenter::start_on(storage, settings, &[]).await;
        let session = cql_cluster().await;
        let ks = common::create_keyspace(&session, "kills_").await;
        for table in TABLES {
            create_table(&session, &ks, table).await;
            write_rows(&session, &ks, table, 0..ROWS).await;
        }
        let prefix = unique(match victim {
            Victim::Coordinator => "kc",
            Victim::Agent => "ka",
            Victim::Storage => "ks",
        });
        let base = format!("{prefix}-base");
        dc.backup(&base, &[&ks]).await;
        Self {
            minio,
            proxy,
            dc,
            session,
            ks,
            prefix,
            base,
            next_row: 1000,
        }
    }

    /// One cell: the pass of `phase`, `victim` killed there, the checks,
    /// the next run, the checks again. Returns what happened, in words.
    async fn cell(&mut self, victim: Victim, phase: Phase) -> String {
        let name = if phase.is_restore() {
            self.base.clone()
        } else {
            format!("{}-{}", self.prefix, phase.word())
        };
        // The state the pass starts from.
        let before: Option<Live> = if phase.is_restore() {
            self.damage(phase == Schema).await;
            Some(self.live().await)
        } else {
            // New rows, so the backup has new SSTables to upload.
            let rows = self.next_row..self.next_row + 5;
            self.next_row += 5;
            write_rows(&self.session, &self.ks, "u", rows).await;
            None
        };
        let complete_before = self.complete_backups().await;
        let keep_last = complete_before.len().to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("KASSETTE_BACKUP_NAME", &name),
            ("KASSETTE_KEYSPACES", &self.ks),
        ];
        if phase == Gc {
            // One more complete backup than kept: the oldest goes.
            env.push(("KASSETTE_RETENTION_KEEP_LAST", &keep_last));
        }
        let command = if phase.is_restore() {
            "restore"
        } else {
            "backup"
        };

        let trigger = self.trigger(phase, &name);
        let mut pass = Running::spawn(self.dc.coordinator(&[command], &env));
        self.reach(&mut pass, &trigger, phase).await;

        // The kill.
        let ended = match victim {
            Victim::Coordinator => {
                let ended = pass.kill().await;
                release(&trigger);
                ended
            }
            Victim::Agent => {
                self.dc.kill_agent(VICTIM_NODE).await;
                release(&trigger);
                let ended = pass.wait().await;
                self.dc.restart_agent(VICTIM_NODE).await;
                ended
            }
            Victim::Storage => {
                self.minio.kill();
                release(&trigger);
                let minio = &mut self.minio;
                tokio::task::block_in_place(|| minio.launch());
                pass.wait().await
            }
        };
        let outcome = match ended.output.lines().rev().find(|l| l.contains("ERROR")) {
            Some(error) if ended.status.is_some() => {
                let error: String = error.chars().take(240).collect();
                format!("{ended}: {error}")
            }
            _ => format!("{ended}"),
        };

        // What the kill left.
        if phase.is_restore() {
            let before = before.expect("restore cells record the live rows");
            self.check_restore_left(phase, victim, &ended, &before)
                .await;
        } else {
            let status = self.status_of(&name).await;
            if phase == Gc {
                // Retention runs after the commit.
                assert_eq!(
                    status.as_deref(),
                    Some("complete"),
                    "{victim:?} at GC: {name} was committed before its retention, yet is not complete"
                );
            }
            if ended.succeeded() {
                assert_eq!(
                    status.as_deref(),
                    Some("complete"),
                    "{victim:?} at {phase:?}: the pass succeeded but {name} is not complete:\n{}",
                    ended.output
                );
            } else if status.as_deref() == Some("complete") {
                // Complete although the pass did not succeed: only a pass
                // past its commit may leave that (a coordinator killed at
                // retention), and one that ends by itself must say so.
                match ended.status {
                    None => assert_eq!(
                        phase, Gc,
                        "{victim:?} at {phase:?}: a coordinator killed before its commit left {name} listed complete"
                    ),
                    Some(_) => assert!(
                        ended.output.contains(&format!("Backup {name} is complete")),
                        "{victim:?} at {phase:?}: the pass failed ({ended}) without saying that {name} is complete:\n{}",
                        ended.output
                    ),
                }
            }
        }
        let verified = self
            .verify_complete_backups(&format!("after {victim:?} killed at {phase:?}"), &[])
            .await;

        // The next run.
        let rerun = if phase == Gc {
            // The backup is committed; what was killed is its retention.
            // The next purge of the same retention finishes it.
            let keep = (complete_before.len()).to_string();
            Some(
                self.rerun("purge", &[("KASSETTE_RETENTION_KEEP_LAST", &keep)])
                    .await,
            )
        } else if phase.is_restore() {
            if ended.succeeded() {
                None
            } else {
                Some(
                    self.rerun(
                        "restore",
                        &[
                            ("KASSETTE_BACKUP_NAME", &name),
                            ("KASSETTE_KEYSPACES", &self.ks),
                        ],
                    )
                    .await,
                )
            }
        } else {
            // A re-run of the same backup, or when it is complete (the
            // kill came after its commit), the next backup.
            let next = if self.status_of(&name).await.as_deref() == Some("complete") {
                format!("{name}-next")
            } else {
                name.clone()
            };
            let out = self
                .rerun(
                    "backup",
                    &[
                        ("KASSETTE_BACKUP_NAME", &next),
                        ("KASSETTE_KEYSPACES", &self.ks),
                    ],
                )
                .await;
            assert_eq!(
                self.status_of(&next).await.as_deref(),
                Some("complete"),
                "{victim:?} at {phase:?}: the re-run did not complete {next}"
            );
            Some(out)
        };
        let outcome = match rerun {
            Some(_) => format!("{outcome}; next run completed"),
            None => outcome,
        };

        // What the next run leaves.
        if phase.is_restore() {
            assert_eq!(
                self.live().await,
                full(),
                "{victim:?} at {phase:?}: the live tables are not the backup's after the restore"
            );
        }
        if phase == Gc {
            let complete = self.complete_backups().await;
            assert_eq!(
                complete.len(),
                complete_before.len(),
                "{victim:?} at GC: retention kept {complete:?}"
            );
            assert!(
                !complete.contains(&complete_before[0]),
                "{victim:?} at GC: the oldest backup survived retention: {complete:?}"
            );
        }
        // The ones verified above are unchanged since (a purge only
        // removes backups): the next run's own is verified now.
        self.verify_complete_backups(
            &format!("after the run following {victim:?} killed at {phase:?}"),
            &verified,
        )
        .await;
        for node in 1..=common::dc::NODES {
            let left: Vec<String> = common::dc::snapshot_tags(node)
                .into_iter()
                .filter(|t| t.contains(&self.prefix))
                .collect();
            assert!(
                left.is_empty(),
                "{victim:?} at {phase:?}: node {node} keeps snapshots {left:?} after the next run"
            );
            let staged = self.staging_areas(node);
            assert!(
                staged.is_empty(),
                "{victim:?} at {phase:?}: agent {node} keeps staging areas {staged:?} after the next run"
            );
        }
        outcome
    }

    /// The trigger of `phase`, armed before the pass starts.
    ///
    /// File contents live under `files/` (node manifests of version 2)
    /// or `blobs/` (content-addressed, version 1).
    fn trigger(&self, phase: Phase, name: &str) -> Trigger {
        let hold = |f: fn(&Seen) -> bool| Trigger::Held(self.proxy.hold(f));
        match phase {
            BackupLease | RestoreLease => {
                hold(|s| s.method == "PUT" && s.path().contains("/locks/"))
            }
            Upload => hold(|s| s.method == "PUT" && holds_content(s.path())),
            Commit => hold(|s| s.method == "PUT" && s.path().ends_with("/backup.json")),
            Gc => hold(|s| {
                !s.path().contains("/locks/")
                    && (s.method == "DELETE" || (s.method == "POST" && s.uri.contains("?delete")))
            }),
            Download => hold(|s| s.method == "GET" && holds_content(s.path())),
            Snapshot => Trigger::SnapshotOnDisk(name.to_string()),
            Schema => Trigger::Logged("changing the live cluster now"),
            Truncate => Trigger::Logged("truncated keyspace="),
            Import => {
                let marker = "imported keyspace=";
                let counts = self
                    .dc
                    .agents
                    .iter()
                    .map(|a| lines_with(&a.log, marker))
                    .collect();
                Trigger::AgentLogged(marker, counts)
            }
        }
    }

    /// Waits until `pass` is at the phase of `trigger`.
    async fn reach(&self, pass: &mut Running, trigger: &Trigger, phase: Phase) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let what = format!("reaching {phase:?}");
        loop {
            let reached = match trigger {
                Trigger::Held(hold) => hold.is_held(),
                Trigger::Logged(marker) => pass.logged(marker),
                Trigger::AgentLogged(marker, earlier) => self
                    .dc
                    .agents
                    .iter()
                    .zip(earlier)
                    .any(|(a, earlier)| lines_with(&a.log, marker) > *earlier),
                Trigger::SnapshotOnDisk(name) => {
                    pass.logged("lease acquired")
                        && (1..=common::dc::NODES).any(|n| {
                            common::dc::snapshot_tags(n)
                                .iter()
                                .any(|t| t.ends_with(name.as_str()))
                        })
                }
            };
            if reached {
                return;
            }
            pass.assert_running(&what);
            assert!(Instant::now() < deadline, "the pass never got to {phase:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Checks what a restore cell's kill left: a pass that succeeded
    /// restored everything; one that stopped before its first live change
    /// (killed there, or saying so) changed no live row.
    async fn check_restore_left(&self, phase: Phase, victim: Victim, ended: &Ended, before: &Live) {
        let live = self.live().await;
        if ended.succeeded() {
            assert_eq!(live, full(), "{victim:?} at {phase:?}: restored wrongly");
            return;
        }
        let said_untouched = ended.output.contains("Nothing live was truncated");
        let said_partial = ended.output.contains("point of no return");
        if ended.status.is_some() {
            assert!(
                said_untouched || said_partial,
                "{victim:?} at {phase:?}: a failed restore must say whether live data changed:\n{}",
                ended.output
            );
        }
        let untouched_expected =
            said_untouched || (ended.status.is_none() && phase.before_live_change());
        if untouched_expected {
            // The schema cell's dropped table may have been created: that
            // is schema, not data; every existing table's rows are as they
            // were.
            for (table, rows) in before {
                if rows.is_some() {
                    assert_eq!(
                        live.get(table),
                        Some(rows),
                        "{victim:?} at {phase:?}: table {table} changed though the restore stopped before its first live change:\n{}",
                        ended.output
                    );
                }
            }
        }
    }

    /// Runs `command` again until the dead pass's lease no longer refuses
    /// it; it must then succeed.
    async fn rerun(&self, command: &str, env: &[(&str, &str)]) -> String {
        for _ in 0..120 {
            let out = self.dc.kassette(&[command], env).await;
            let said = text(&out);
            if out.status.code() == Some(1) && said.contains("kassette unlock") {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            assert_success(&out, &format!("the next {command}"));
            return said;
        }
        panic!("the next {command} was refused for a minute by a dead pass's lease");
    }

    /// Deletes a third of `t`'s rows, adds one a restore must remove, and
    /// drops `u` when the restore is to create it.
    async fn damage(&self, drop_u: bool) {
        for id in (0..ROWS).step_by(3) {
            self.cql(format!("DELETE FROM {}.t WHERE id = {id}", self.ks))
                .await;
        }
        self.cql(format!(
            "INSERT INTO {}.t (id, v) VALUES (9999, 'after the backup')",
            self.ks
        ))
        .await;
        if drop_u {
            self.cql(format!("DROP TABLE {}.u", self.ks)).await;
        }
    }

    async fn cql(&self, statement: String) {
        self.session
            .query_unpaged(statement.clone(), ())
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    async fn live(&self) -> Live {
        let mut live = Live::new();
        for table in TABLES {
            live.insert(table, rows(&self.session, &self.ks, table).await);
        }
        live
    }

    /// `kassette list --json`: name → status.
    async fn listed(&self) -> BTreeMap<String, String> {
        let out = self.dc.kassette(&["list", "--json"], &[]).await;
        assert_success(&out, "list");
        let entries: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("list --json is JSON");
        entries
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().expect("name").to_string(),
                    e["status"].as_str().expect("status").to_string(),
                )
            })
            .collect()
    }

    async fn status_of(&self, name: &str) -> Option<String> {
        self.listed().await.remove(name)
    }

    /// Complete backups, oldest first.
    async fn complete_backups(&self) -> Vec<String> {
        let out = self.dc.kassette(&["list", "--json"], &[]).await;
        assert_success(&out, "list");
        let entries: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("list --json is JSON");
        entries
            .iter()
            .filter(|e| e["status"] == "complete")
            .map(|e| e["name"].as_str().expect("name").to_string())
            .collect()
    }

    /// `verify --deep` of every complete backup but those in `skip`;
    /// returns the complete ones.
    async fn verify_complete_backups(&self, when: &str, skip: &[String]) -> Vec<String> {
        let complete = self.complete_backups().await;
        assert!(!complete.is_empty(), "{when}: no complete backup at all");
        for name in complete.iter().filter(|n| !skip.contains(n)) {
            let out = self
                .dc
                .kassette(&["verify", "--deep"], &[("KASSETTE_BACKUP_NAME", name)])
                .await;
            assert_success(&out, &format!("{when}: verify --deep {name}"));
        }
        complete
    }

    fn staging_areas(&self, node: usize) -> Vec<String> {
        let dir = self.dc.dir.path().join(format!("agent{node}/staging"));
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// How many lines of the file at `path` contain `marker`.
fn lines_with(path: &std::path::Path, marker: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(marker))
        .count()
}

fn release(trigger: &Trigger) {
    if let Trigger::Held(hold) = trigger {
        hold.release();
    }
}

/// What every table holds in the base backup.
fn full() -> Live {
    TABLES
        .iter()
        .map(|t| {
            (
                *t,
                Some((0..ROWS).map(|id| (id, format!("v{id}"))).collect()),
            )
        })
        .collect()
}

async fn create_bucket(endpoint: &str, bucket: &str) {
    let client = common::s3_client(endpoint, None);
    for attempt in 0.. {
        match client.create_bucket().bucket(bucket).send().await {
            Ok(_) => return,
            Err(_) if attempt < 100 => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("create bucket {bucket}: {e:?}"),
        }
    }
}

async fn create_table(session: &Session, ks: &str, table: &str) {
    session
        .query_unpaged(
            format!("CREATE TABLE {ks}.{table} (id int PRIMARY KEY, v text)"),
            (),
        )
        .await
        .expect("create table");
}

async fn write_rows(session: &Session, ks: &str, table: &str, ids: std::ops::Range<i32>) {
    let insert = session
        .prepare(format!("INSERT INTO {ks}.{table} (id, v) VALUES (?, ?)"))
        .await
        .expect("prepare insert");
    for id in ids {
        session
            .execute_unpaged(&insert, (id, format!("v{id}")))
            .await
            .expect("insert");
    }
}

/// Rows of `<ks>.<table>` at consistency ALL; `None` when the table does
/// not exist.
async fn rows(session: &Session, ks: &str, table: &str) -> Option<Rows> {
    let mut select =
        scylla::statement::unprepared::Statement::new(format!("SELECT id, v FROM {ks}.{table}"));
    select.set_consistency(scylla::statement::Consistency::All);
    let result = match session.query_unpaged(select, ()).await {
        Ok(result) => result,
        Err(e)
            if e.to_string().contains("does not exist")
                || e.to_string().contains("unconfigured table") =>
        {
            return None;
        }
        Err(e) => panic!("select from {ks}.{table}: {e}"),
    };
    Some(
        result
            .into_rows_result()
            .expect("rows")
            .rows::<(i32, String)>()
            .expect("typed rows")
            .map(|r| r.expect("row"))
            .collect(),
    )
}

/// Whether a request path is a file's content object (`files/…` or
/// `blobs/…` of a catalog), not a manifest, lease or index.
fn holds_content(path: &str) -> bool {
    path.contains("/files/") || path.contains("/blobs/")
}
