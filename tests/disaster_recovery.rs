//! Disaster recovery end to end (issue 11), on a SECOND local cluster: three
//! fresh Cassandra nodes on 127.0.0.4-6 (cluster `kassette-dr`, datacenter
//! `dr1`, racks r1-r3, the third node JBOD) started by this test through
//! scripts/cassandra.sh, beside the shared cluster on 127.0.0.1-3, which
//! other tests use and this one only reads from and backs up.
//!
//! One test, in order, because starting a cluster is the expensive part:
//!
//! 1. clone: a dataset of the shared cluster (RF 3 and RF 1 keyspaces) is
//!    backed up; the new cluster's nodes are pinned to its tokens by
//!    `kassette pin-tokens` before they first start; a dry run prints the
//!    plan and changes nothing; the restore (another cluster and
//!    datacenter name, no filter) brings every row back at consistency
//!    ALL, with the replication rewritten to `dr1` and the source
//!    catalog's backups unchanged;
//! 2. refusals: pinning a bootstrapped node; a target of another shape;
//! 3. catastrophe: the new cluster is backed up, all three nodes stopped
//!    and their data, commitlog and saved caches deleted, pinned again
//!    from that backup, started (new host ids) and restored with no
//!    filter: every row back, every node owning the tokens it had;
//! 4. repair after restore: a row written to one replica only (two nodes
//!    stopped, hints off) before a backup is, after a restore with
//!    `KASSETTE_REPAIR_AFTER_RESTORE=true`, read at ONE from every node.
//!
//! `#[ignore]`d for plain `cargo test`: scripts/test.sh (`make test`) runs
//! it after the shared-cluster suite, and `make test-dr` runs it alone
//! (three cluster starts: 6 minutes on a quiet two-core machine, 21 with
//! seven engineers building and testing on it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::dataset::Dataset;
use common::dc::{Datacenter, StoreKind, TOKEN, assert_success, kassette_command, text};
use common::{create_keyspace_with_rf, create_table_t, repo, setting, unique};
use scylla::client::session::Session;
use scylla::statement::Consistency;

const DR_CLUSTER: &str = "kassette-dr";
const DR_DC: &str = "dr1";
/// Node i of the second cluster is 127.0.0.<i + OFFSET>.
const OFFSET: usize = 3;
const ROWS: i32 = 300;
const PAYLOAD: usize = 512;

/// The second cluster: its run directory, and the settings that make
/// scripts/cassandra.sh (and nodetool) address it instead of the shared one.
struct DrCluster {
    dir: PathBuf,
}

impl DrCluster {
    fn env(&self) -> Vec<(String, String)> {
        [
            ("KASSETTE_CASSANDRA_OFFSET", OFFSET.to_string()),
            ("KASSETTE_CASSANDRA_DIR", self.dir.display().to_string()),
            (
                "KASSETTE_CASSANDRA_ENV_FILE",
                self.dir.join("cluster.env").display().to_string(),
            ),
            ("KASSETTE_CASSANDRA_CLUSTER_NAME", DR_CLUSTER.into()),
            ("KASSETTE_CASSANDRA_DC", DR_DC.into()),
            ("KASSETTE_CASSANDRA_RACK_PREFIX", "r".into()),
            ("KASSETTE_CASSANDRA_HEAP", "512M".into()),
            ("KASSETTE_CASSANDRA_START_TIMEOUT", "900".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn script(&self, args: &[&str], extra: &[(String, String)]) -> Output {
        Command::new(repo().join("scripts/cassandra.sh"))
            .args(args)
            .envs(self.env())
            .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/cassandra.sh")
    }

    /// Starts the three nodes, each pinned by `hook` before it starts.
    fn start_pinned(&self, hook: &Path, pin_env: &[(String, String)]) -> Duration {
        let t0 = Instant::now();
        let mut env = pin_env.to_vec();
        env.push((
            "KASSETTE_CASSANDRA_PIN_HOOK".into(),
            hook.display().to_string(),
        ));
        let out = self.script(&["start", "3"], &env);
        assert_success(&out, "second cluster start");
        t0.elapsed()
    }

    fn node_dir(&self, node: usize) -> PathBuf {
        self.dir.join(format!("node{node}"))
    }

    fn data_dirs(&self, node: usize) -> Vec<PathBuf> {
        let d = self.node_dir(node);
        if node == 3 {
            vec![d.join("data1"), d.join("data2")]
        } else {
            vec![d.join("data")]
        }
    }

    fn yaml(&self, node: usize) -> PathBuf {
        self.node_dir(node).join("conf/cassandra.yaml")
    }
}

impl Drop for DrCluster {
    fn drop(&mut self) {
        // Never leave the second cluster running, whatever happened.
        let _ = self.script(&["clean"], &[]);
    }
}

fn ip(node: usize) -> String {
    format!("127.0.0.{}", node + OFFSET)
}

async fn dr_session() -> Session {
    let mut builder = scylla::client::session_builder::SessionBuilder::new();
    for node in 1..=3 {
        builder = builder.known_node(format!("{}:9042", ip(node)));
    }
    builder
        .build()
        .await
        .expect("CQL connect to the second cluster")
}

/// One agent per node of the second cluster.
struct DrAgents {
    addresses: Vec<String>,
    children: Vec<tokio::process::Child>,
}

impl DrAgents {
    fn start(dr: &DrCluster, src: &Datacenter, state: &Path) -> Self {
        let port = free_port();
        let mut addresses = Vec::new();
        let mut children = Vec::new();
        for node in 1..=3 {
            let address = format!("{}:{port}", ip(node));
            let dirs: Vec<String> = dr
                .data_dirs(node)
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            let log = std::fs::File::create(state.join(format!("dr-agent{node}.log"))).unwrap();
            let child = kassette_command()
                .arg("agent")
                .envs(src.storage_env())
                .envs(dr.env())
                .env("KASSETTE_AGENT_LISTEN", &address)
                .env("KASSETTE_AGENT_TOKEN_FILE", state.join("token"))
                .env("KASSETTE_DATA_DIRS", dirs.join(","))
                .env(
                    "KASSETTE_AGENT_STATE_DIR",
                    state.join(format!("dr-agent{node}")),
                )
                .env("KASSETTE_CASSANDRA_CONTROL", "nodetool")
                .env(
                    "KASSETTE_NODETOOL",
                    format!("{} -n {node}", repo().join("scripts/nodetool").display()),
                )
                .envs(std::env::var("KASSETTE_RUN").map(|r| ("KASSETTE_RUN", r)))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start a second-cluster agent");
            addresses.push(address);
            children.push(child);
        }
        Self {
            addresses,
            children,
        }
    }
}

impl Drop for DrAgents {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
}

fn free_port() -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind(format!("{}:0", ip(1))).expect("bind");
        let port = first.local_addr().unwrap().port();
        if (2..=3).all(|n| std::net::TcpListener::bind(format!("{}:{port}", ip(n))).is_ok()) {
            return port;
        }
    }
    panic!("no port free on 127.0.0.4-6");
}

/// The coordinator settings for the second cluster, reading `source`'s
/// catalog.
fn dr_env(
    src: &Datacenter,
    agents: &DrAgents,
    state: &Path,
    source: (&str, &str),
) -> Vec<(String, String)> {
    let mut env = src.storage_env();
    for (k, v) in [
        ("KASSETTE_CLUSTER", DR_CLUSTER.to_string()),
        ("KASSETTE_DATACENTER", DR_DC.to_string()),
        ("KASSETTE_SOURCE_CLUSTER", source.0.to_string()),
        ("KASSETTE_SOURCE_DATACENTER", source.1.to_string()),
        ("KASSETTE_NODES", agents.addresses.join(",")),
        (
            "KASSETTE_AGENT_TOKEN_FILE",
            state.join("token").display().to_string(),
        ),
        ("KASSETTE_PROGRESS_INTERVAL", "2s".to_string()),
    ] {
        env.push((k.to_string(), v));
    }
    env
}

async fn kassette(args: &[&str], env: &[(String, String)], extra: &[(&str, &str)]) -> Output {
    kassette_command()
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra.iter().copied())
        .output()
        .await
        .expect("run kassette")
}

/// The pin hook scripts/cassandra.sh runs per node: keeps a copy of the
/// generated cassandra.yaml, then runs `kassette pin-tokens`.
fn write_hook(dir: &Path) -> PathBuf {
    let hook = dir.join("pin-hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n# $1 node, $2 cassandra.yaml, $3 rack, $4 data dirs\nset -e\ncp \"$2\" \"$2.before-pin\"\nexec '{}' pin-tokens --cassandra-yaml \"$2\" --rack \"$3\" --node-ordinal 0 --data-dirs \"$4\" >>\"$2.pin.log\" 2>&1\n",
            env!("CARGO_BIN_EXE_kassette")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

fn pin_env(src: &Datacenter, backup: &str, source: (&str, &str)) -> Vec<(String, String)> {
    let mut env = src.storage_env();
    env.push(("KASSETTE_BACKUP_NAME".into(), backup.into()));
    env.push(("KASSETTE_SOURCE_CLUSTER".into(), source.0.into()));
    env.push(("KASSETTE_SOURCE_DATACENTER".into(), source.1.into()));
    env.push(("KASSETTE_RACKS".into(), "r1,r2,r3".into()));
    env.push(("KASSETTE_LOG".into(), "info".into()));
    env
}

/// Every node's (rack, host id, sorted tokens), from its own system.local.
async fn ring(session: &Session) -> BTreeMap<String, (uuid::Uuid, Vec<String>)> {
    let mut out = BTreeMap::new();
    for node in 1..=3 {
        let mut q = scylla::statement::unprepared::Statement::new(
            "SELECT rack, host_id, tokens FROM system.local",
        );
        q.set_load_balancing_policy(Some(
            scylla::policies::load_balancing::SingleTargetLoadBalancingPolicy::new(
                scylla::policies::load_balancing::NodeIdentifier::NodeAddress(
                    format!("{}:9042", ip(node)).parse().unwrap(),
                ),
                None,
            ),
        ));
        let (rack, host, tokens): (String, uuid::Uuid, Vec<String>) = session
            .query_unpaged(q, ())
            .await
            .expect("system.local")
            .into_rows_result()
            .unwrap()
            .single_row()
            .unwrap();
        let mut tokens = tokens;
        tokens.sort();
        out.insert(rack, (host, tokens));
    }
    out
}

async fn replication(session: &Session, keyspace: &str) -> BTreeMap<String, String> {
    let (map,): (BTreeMap<String, String>,) = session
        .query_unpaged(
            format!(
                "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = '{keyspace}'"
            ),
            (),
        )
        .await
        .expect("replication")
        .into_rows_result()
        .unwrap()
        .single_row()
        .expect("keyspace exists");
    map
}

async fn keyspace_exists(session: &Session, keyspace: &str) -> bool {
    session
        .query_unpaged(
            format!(
                "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = '{keyspace}'"
            ),
            (),
        )
        .await
        .expect("keyspaces")
        .into_rows_result()
        .unwrap()
        .rows_num()
        > 0
}

async fn count_all(session: &Session, ks: &str, table: &str) -> i64 {
    let mut q =
        scylla::statement::unprepared::Statement::new(format!("SELECT count(*) FROM {ks}.{table}"));
    q.set_consistency(Consistency::All);
    let (n,): (i64,) = session
        .query_unpaged(q, ())
        .await
        .expect("count at ALL")
        .into_rows_result()
        .unwrap()
        .single_row()
        .unwrap();
    n
}

/// Every object key in the store (to show a dry run writes nothing).
async fn all_keys(src: &Datacenter) -> BTreeSet<String> {
    use futures::TryStreamExt;
    let store = src.store().await;
    store
        .list("")
        .map_ok(|o| o.key.to_string())
        .try_collect()
        .await
        .expect("list the store")
}

/// The `node … receives backup node …` lines of a restore plan (printed
/// by a dry run, logged by a real run).
fn plan_nodes(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output
        .lines()
        .filter_map(|l| {
            let at = l.find(" receives backup node ")?;
            let start = l[..at].rfind("node ")?;
            Some(l[start..].trim_end_matches('"').to_string())
        })
        .collect();
    lines.sort();
    lines
}

/// Every row of the dataset, read at ALL through `session`.
async fn assert_dataset(session: &Session, data: &Dataset, rf1: &str, what: &str) {
    assert!(
        data.users(session).await == Dataset::expected_users(0, ROWS, PAYLOAD),
        "{what}: users differ"
    );
    assert_eq!(
        data.events(session).await,
        Dataset::expected_events(0, ROWS),
        "{what}: events"
    );
    assert_eq!(
        data.items(session).await,
        Dataset::expected_items(0, ROWS),
        "{what}: items"
    );
    assert_eq!(
        count_all(session, rf1, "t").await,
        200,
        "{what}: RF 1 table"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "starts a second 3-node cluster (minutes): run with make test-dr"]
async fn clone_into_another_cluster_then_recover_from_losing_every_node() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("token"), TOKEN).unwrap();
    let dr = DrCluster {
        dir: state.path().join("cassandra"),
    };
    let hook = write_hook(state.path());

    // --- the source: a dataset of the shared cluster, backed up.
    let src = Datacenter::start(StoreKind::S3, &[]).await;
    let session = common::cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, ROWS, PAYLOAD).await;
    let rf1 = create_keyspace_with_rf(&session, "dr_rf1_", 1).await;
    create_table_t(&session, &rf1, 200).await;
    let b1 = unique("dr-src-");
    src.backup(&b1, &[&data.main, &data.other, &rf1]).await;
    let source = (
        setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
        setting("KASSETTE_TEST_CASSANDRA_DC"),
    );
    let source = (source.0.as_str(), source.1.as_str());
    let manifest = src.manifest(&b1).await;

    // --- refused before anything: a target of another shape (two racks).
    let probe = state.path().join("probe.yaml");
    std::fs::write(&probe, "cluster_name: 'x'\nnum_tokens: 16\n").unwrap();
    let empty = tempfile::tempdir().unwrap();
    let mut env = pin_env(&src, &b1, source);
    env.push(("KASSETTE_RACKS".into(), "r1,r2".into()));
    let out = kassette(
        &[
            "pin-tokens",
            "--cassandra-yaml",
            probe.to_str().unwrap(),
            "--rack",
            "r1",
            "--node-ordinal",
            "0",
            "--data-dirs",
            empty.path().to_str().unwrap(),
        ],
        &env,
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("backup: rack rack1 (1 nodes")
            && text(&out).contains("target: rack r1 (1 nodes: r1/0), rack r2 (1 nodes: r2/0)"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&probe).unwrap(),
        "cluster_name: 'x'\nnum_tokens: 16\n"
    );

    // --- clone: fresh nodes pinned before their first start.
    let _ = dr.script(&["clean"], &[]);
    let took = dr.start_pinned(&hook, &pin_env(&src, &b1, source));
    eprintln!("second cluster (pinned from {b1}) up in {took:.0?}");
    for node in 1..=3 {
        let before = std::fs::read_to_string(dr.yaml(node).with_extension("yaml.before-pin"))
            .expect("hook kept the generated yaml");
        let after = std::fs::read_to_string(dr.yaml(node)).unwrap();
        let pinned = |l: &&str| {
            ["initial_token:", "num_tokens:", "auto_bootstrap:"]
                .iter()
                .any(|k| l.starts_with(k))
        };
        let other = |t: &str| {
            t.lines()
                .filter(|l| !pinned(l))
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            other(&before),
            other(&after),
            "node {node}: other lines changed"
        );
        assert!(after.contains("auto_bootstrap: false"), "{after}");
    }
    let dr_cql = dr_session().await;
    let dr_ring = ring(&dr_cql).await;
    // Each new node owns the tokens of the backed-up node of the same
    // position: r<i> <- rack<i>.
    let nodes = manifest["nodes"].as_array().unwrap();
    for (i, (rack, (_, tokens))) in dr_ring.iter().enumerate() {
        assert_eq!(rack, &format!("r{}", i + 1));
        let host = nodes
            .iter()
            .find(|n| n["rack"] == format!("rack{}", i + 1))
            .unwrap()["host_id"]
            .as_str()
            .unwrap()
            .to_string();
        let node_manifest = read_node_manifest(&src, &b1, &host).await;
        let mut want: Vec<String> = node_manifest["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        want.sort();
        assert_eq!(tokens, &want, "{rack} owns rack{}'s tokens", i + 1);
    }

    // --- refused: pinning a node that has bootstrapped.
    let copy = state.path().join("bootstrapped.yaml");
    std::fs::copy(dr.yaml(1), &copy).unwrap();
    let out = kassette(
        &[
            "pin-tokens",
            "--cassandra-yaml",
            copy.to_str().unwrap(),
            "--rack",
            "r1",
            "--node-ordinal",
            "0",
            "--data-dirs",
            dr.data_dirs(1)[0].to_str().unwrap(),
        ],
        &pin_env(&src, &b1, source),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("already bootstrapped"),
        "{}",
        text(&out)
    );
    // ...and pinning again where it has not is a no-op: same bytes.
    let before = std::fs::read(&copy).unwrap();
    let out = kassette(
        &[
            "pin-tokens",
            "--cassandra-yaml",
            copy.to_str().unwrap(),
            "--rack",
            "r1",
            "--node-ordinal",
            "0",
            "--data-dirs",
            empty.path().to_str().unwrap(),
        ],
        &pin_env(&src, &b1, source),
        &[],
    )
    .await;
    assert_success(&out, "pin-tokens again");
    assert!(text(&out).contains("already"), "{}", text(&out));
    assert_eq!(std::fs::read(&copy).unwrap(), before);

    // --- dry run: the plan, and nothing changed.
    let agents = DrAgents::start(&dr, &src, state.path());
    wait_agents(&agents).await;
    let env = dr_env(&src, &agents, state.path(), source);
    let keys_before = all_keys(&src).await;
    let list_before = kassette(
        &["list", "--json"],
        &src.storage_env(),
        &[
            ("KASSETTE_CLUSTER", source.0),
            ("KASSETTE_DATACENTER", source.1),
        ],
    )
    .await;
    let dry = kassette(
        &["restore", "--dry-run"],
        &env,
        &[("KASSETTE_BACKUP_NAME", &b1)],
    )
    .await;
    assert_success(&dry, "restore --dry-run");
    let dry_text = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(dry_text.contains("dry run: nothing changed"), "{dry_text}");
    assert_eq!(
        dry_text.matches("(matched by pinned tokens): ").count(),
        3,
        "{dry_text}"
    );
    assert!(
        dry_text.contains(&format!("'{DR_DC}': '3'")),
        "replication rewrite shown: {dry_text}"
    );
    assert!(
        dry_text.contains(&format!("keyspace {}", data.main)),
        "{dry_text}"
    );
    assert_eq!(
        all_keys(&src).await,
        keys_before,
        "the dry run wrote to the store"
    );
    assert!(
        !keyspace_exists(&dr_cql, &data.main).await,
        "the dry run created schema"
    );
    for node in 1..=3 {
        let staging = state.path().join(format!("dr-agent{node}/staging"));
        let staged = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
        assert_eq!(staged, 0, "the dry run staged files on node {node}");
    }

    // --- the restore: another cluster and datacenter name, no filter.
    let t0 = Instant::now();
    let out = kassette(&["restore"], &env, &[("KASSETTE_BACKUP_NAME", &b1)]).await;
    let clone_took = t0.elapsed();
    assert_success(&out, "restore into the second cluster");
    eprintln!("clone restore of {b1}: {clone_took:.1?}\n{}", text(&out));
    assert_eq!(
        plan_nodes(&text(&out)),
        plan_nodes(&dry_text),
        "dry run and run differ"
    );
    let restored = text(&out);
    for table in ["users", "events"] {
        assert!(
            restored.contains(&format!("{}.{table}", data.main)),
            "{restored}"
        );
    }
    assert!(
        restored.contains("roles and permissions (system_auth) are not restored"),
        "{restored}"
    );
    assert_dataset(&dr_cql, &data, &rf1, "clone").await;
    let repl = replication(&dr_cql, &data.main).await;
    assert_eq!(repl.get(DR_DC).map(String::as_str), Some("3"), "{repl:?}");
    assert!(!repl.contains_key("dc1"), "{repl:?}");
    assert_eq!(
        replication(&dr_cql, &rf1)
            .await
            .get(DR_DC)
            .map(String::as_str),
        Some("1")
    );
    let list_after = kassette(
        &["list", "--json"],
        &src.storage_env(),
        &[
            ("KASSETTE_CLUSTER", source.0),
            ("KASSETTE_DATACENTER", source.1),
        ],
    )
    .await;
    assert_eq!(
        list_before.stdout, list_after.stdout,
        "the source catalog changed"
    );

    // --- catastrophe: back up the second cluster, lose every node.
    let b2 = unique("dr-own-");
    let own = (DR_CLUSTER, DR_DC);
    let own_env = dr_env(&src, &agents, state.path(), own);
    let out = kassette(&["backup"], &own_env, &[("KASSETTE_BACKUP_NAME", &b2)]).await;
    assert_success(&out, "backup of the second cluster");
    let ring_before = ring(&dr_cql).await;
    drop(dr_cql);
    let out = dr.script(&["wipe"], &[]);
    assert_success(&out, "wipe");
    for node in 1..=3 {
        for d in dr.data_dirs(node) {
            assert!(!d.exists(), "{} survived the wipe", d.display());
        }
    }
    let took = dr.start_pinned(&hook, &pin_env(&src, &b2, own));
    eprintln!("second cluster rebuilt (pinned from {b2}) in {took:.0?}");
    let dr_cql = dr_session().await;
    let ring_after = ring(&dr_cql).await;
    for (rack, (host, tokens)) in &ring_after {
        let (old_host, old_tokens) = &ring_before[rack];
        assert_ne!(host, old_host, "{rack} kept its host id: not a new node");
        assert_eq!(tokens, old_tokens, "{rack} owns other tokens");
    }
    assert!(
        !keyspace_exists(&dr_cql, &data.main).await,
        "the wipe left schema"
    );
    let t0 = Instant::now();
    let out = kassette(&["restore"], &own_env, &[("KASSETTE_BACKUP_NAME", &b2)]).await;
    let took = t0.elapsed();
    assert_success(&out, "restore after the catastrophe");
    eprintln!("catastrophe restore of {b2}: {took:.1?}\n{}", text(&out));
    assert_eq!(
        text(&out).matches("(matched by tokens): ").count(),
        3,
        "{}",
        text(&out)
    );
    assert_dataset(&dr_cql, &data, &rf1, "catastrophe").await;
    assert_eq!(
        replication(&dr_cql, &data.main)
            .await
            .get(DR_DC)
            .map(String::as_str),
        Some("3")
    );

    // --- repair after restore: a row written while two of three replicas
    // were down (hints off) is in one node's snapshot only; a restore with
    // KASSETTE_REPAIR_AFTER_RESTORE=true puts it on every replica.
    let lone = unique("dr_repair_");
    dr_cql
        .query_unpaged(
            format!("CREATE KEYSPACE {lone} WITH replication = {{'class': 'NetworkTopologyStrategy', '{DR_DC}': 3}}"),
            (),
        )
        .await
        .unwrap();
    dr_cql
        .query_unpaged(
            format!("CREATE TABLE {lone}.t (id int PRIMARY KEY, v text)"),
            (),
        )
        .await
        .unwrap();
    nodetool(&dr, 1, &["disablehandoff"]);
    for node in [2, 3] {
        assert_success(
            &dr.script(&["stop-node", &node.to_string()], &[]),
            "stop-node",
        );
    }
    let mut insert = scylla::statement::unprepared::Statement::new(format!(
        "INSERT INTO {lone}.t (id, v) VALUES (1, 'only on node 1')"
    ));
    insert.set_consistency(Consistency::One);
    insert.set_load_balancing_policy(Some(single_node(1)));
    dr_cql
        .query_unpaged(insert, ())
        .await
        .expect("write at ONE to node 1");
    // Bring nodes 2 and 3 back; the pin hook skips them (bootstrapped).
    let mut again = pin_env(&src, &b2, own);
    again.push(("KASSETTE_PIN_IF_BOOTSTRAPPED".into(), "skip".into()));
    dr.start_pinned(&hook, &again);
    nodetool(&dr, 1, &["enablehandoff"]);
    let b3 = unique("dr-lone-");
    let out = kassette(
        &["backup"],
        &own_env,
        &[("KASSETTE_BACKUP_NAME", &b3), ("KASSETTE_KEYSPACES", &lone)],
    )
    .await;
    assert_success(&out, "backup with a row on one replica");
    let out = kassette(
        &["restore"],
        &own_env,
        &[
            ("KASSETTE_BACKUP_NAME", &b3),
            ("KASSETTE_REPAIR_AFTER_RESTORE", "true"),
        ],
    )
    .await;
    assert_success(&out, "restore with repair");
    assert!(text(&out).contains("repair 3/3"), "{}", text(&out));
    let dr_cql = dr_session().await;
    for node in 1..=3 {
        let mut read = scylla::statement::unprepared::Statement::new(format!(
            "SELECT v FROM {lone}.t WHERE id = 1"
        ));
        read.set_consistency(Consistency::One);
        read.set_load_balancing_policy(Some(single_node(node)));
        let rows = dr_cql
            .query_unpaged(read, ())
            .await
            .expect("read at ONE")
            .into_rows_result()
            .unwrap()
            .rows_num();
        assert_eq!(rows, 1, "node {node} lacks the row after the repair");
    }

    for ks in [&data.main, &data.other, &rf1] {
        let _ = session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
            .await;
    }
}

async fn wait_agents(agents: &DrAgents) {
    for address in &agents.addresses {
        let client = kassette::coordinator::client::AgentClient::new(address, TOKEN)
            .expect("an agent client");
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.node_info().await.is_err() {
            assert!(Instant::now() < deadline, "agent {address} never served");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A node manifest of `backup`, read from the store.
async fn read_node_manifest(src: &Datacenter, backup: &str, host: &str) -> serde_json::Value {
    use futures::TryStreamExt;
    let store = src.store().await;
    let keys: Vec<String> = store
        .list("")
        .map_ok(|o| o.key.to_string())
        .try_collect()
        .await
        .unwrap();
    let key = keys
        .iter()
        .find(|k| k.contains(backup) && k.contains(host))
        .unwrap_or_else(|| panic!("no node manifest of {host} in {backup}: {keys:?}"));
    let key = kassette::storage::ObjectKey::new(key).unwrap();
    serde_json::from_slice(&store.get_bytes(&key).await.unwrap()).unwrap()
}

/// Runs nodetool against node `node` of the second cluster.
fn nodetool(dr: &DrCluster, node: usize, args: &[&str]) {
    let out = Command::new(repo().join("scripts/nodetool"))
        .arg("-n")
        .arg(node.to_string())
        .args(args)
        .envs(dr.env())
        .output()
        .expect("nodetool");
    assert_success(&out, &format!("nodetool {args:?}"));
}

fn single_node(
    node: usize,
) -> std::sync::Arc<dyn scylla::policies::load_balancing::LoadBalancingPolicy> {
    scylla::policies::load_balancing::SingleTargetLoadBalancingPolicy::new(
        scylla::policies::load_balancing::NodeIdentifier::NodeAddress(
            format!("{}:9042", ip(node)).parse().unwrap(),
        ),
        None,
    )
}
