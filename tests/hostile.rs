//! Hostile input to the agent and the catalog: requests without the right
//! token, names crafted to reach a path or an MBean (traversal, absolute
//! paths, NUL, very long names), in a request or in a stored manifest.
//! Each is refused, and nothing is done: no Cassandra operation runs, no
//! file is written, no node is contacted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kassette::agent::{AgentState, serve};
use kassette::cassandra::control::{Control, Nodetool};
use kassette::catalog::Layout;
use kassette::config::{Backend, StorageConfig, TransferLimits, vars};
use kassette::storage::{self, PutMode, Store, digest_of};
use serde_json::json;

const TOKEN: &str = "hostile-test-token-0123456789";

/// An agent in process on loopback, over a local store, whose nodetool is
/// a fake: a script that only records its arguments (so a test can see
/// that no Cassandra operation was attempted).
struct Agent {
    url: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Agent {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let data = dir.path().join("data");
        let state = dir.path().join("state");
        for d in [&store_dir, &data, &state] {
            std::fs::create_dir_all(d).unwrap();
        }
        let calls = dir.path().join("nodetool-calls");
        let fake = dir.path().join("fake-nodetool");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = local_store(&store_dir).await;
        let agent_state = AgentState::new(
            TOKEN.as_bytes(),
            vec![data],
            Control::Nodetool(Nodetool::new(fake.to_str().unwrap())),
            store,
            state.join("digests.json"),
            2,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, agent_state, std::future::pending()));
        Self {
            url,
            http: reqwest::Client::new(),
            dir,
        }
    }

    /// What the fake nodetool was asked to do.
    fn nodetool_calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nodetool-calls")).unwrap_or_default()
    }

    /// Every file and directory under the test directory, but the fake's
    /// own record.
    fn tree(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        walk(self.dir.path(), &mut found);
        found.retain(|p| !p.ends_with("nodetool-calls"));
        found.sort();
        found
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> u16 {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().status().as_u16()
    }
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        found.push(path.clone());
        if path.is_dir() {
            walk(&path, found);
        }
    }
}

async fn local_store(root: &Path) -> Arc<dyn Store> {
    storage::open(&local_config(root)).await.unwrap()
}

fn local_config(root: &Path) -> StorageConfig {
    StorageConfig {
        backend: Backend::Local {
            root: root.to_path_buf(),
        },
        prefix: String::new(),
        limits: TransferLimits {
            concurrency: 2,
            max_bandwidth: None,
        },
    }
}

fn file(keyspace: &str, table: &str, path: &str) -> serde_json::Value {
    json!({
        "keyspace": keyspace,
        "table": table,
        "table_id": "5a1c395e0b1d11eeb7a6f9e9b4d5c1a2",
        "path": path,
        "data_dir": 0,
        "size": 7,
        "blake3": digest_of(b"sstable").blake3_hex(),
        "crc32c": 0,
    })
}

/// Names that must never reach a path, an MBean or a command line.
fn crafted() -> Vec<String> {
    vec![
        "..".into(),
        "../../../../tmp".into(),
        "/etc".into(),
        "".into(),
        "a\0b".into(),
        "ks,type=Tables".into(),
        "x".repeat(5_000),
    ]
}

/// A `POST /v1/jobs` body carrying `work` for a made-up pass.
fn job(work: serde_json::Value) -> serde_json::Value {
    json!({"pass": "p1", "heartbeat_timeout_ms": 30_000, "work": work})
}

#[tokio::test]
async fn crafted_names_in_requests_are_refused_and_nothing_is_done() {
    use reqwest::Method;
    let agent = Agent::start().await;
    let before = agent.tree();
    let auth = Some(format!("Bearer {TOKEN}"));
    let auth = auth.as_deref();
    let mut tried = 0;
    for bad in crafted() {
        let snapshot = json!({"tag": "kassette-x", "keyspaces": [bad]});
        let status = agent
            .send(Method::POST, "/v1/snapshots", auth, Some(snapshot))
            .await;
        assert_eq!(status, 400, "snapshot of keyspace {bad:?}");
        for table in [
            json!({"keyspace": bad, "table": "t"}),
            json!({"keyspace": "ks", "table": bad}),
        ] {
            let import = job(json!({"kind": "import", "staging": "restore-x", "tables": [table]}));
            let status = agent
                .send(Method::POST, "/v1/jobs", auth, Some(import))
                .await;
            assert_eq!(status, 400, "import of {table}");
        }
        let mut entries = vec![
            file(&bad, "t", "nb-1-big-Data.db"),
            file("ks", &bad, "nb-1-big-Data.db"),
        ];
        // A file name is one path component: only what could move a path
        // (or is too long for one) is wrong for it.
        if bad.is_empty() || bad.contains(['/', '\0', '.']) || bad.len() > 255 {
            entries.push(file("ks", "t", &bad));
            entries.push(file("ks", "t", &format!(".idx/{bad}")));
        }
        tried += 3 + entries.len();
        for entry in entries {
            let download = job(json!({
                "kind": "download", "cluster": "prod", "datacenter": "dc1",
                "staging": "restore-x", "files": [entry],
            }));
            let status = agent
                .send(Method::POST, "/v1/jobs", auth, Some(download))
                .await;
            assert_eq!(status, 400, "download of {entry}");
        }
    }
    for path in ["/etc/passwd", "../nb-1-big-Data.db", ".idx/../../x"] {
        let download = job(json!({
            "kind": "download", "cluster": "prod", "datacenter": "dc1",
            "staging": "restore-x", "files": [file("ks", "t", path)],
        }));
        let status = agent
            .send(Method::POST, "/v1/jobs", auth, Some(download))
            .await;
        assert_eq!(status, 400, "download of {path:?}");
        tried += 1;
    }
    assert_eq!(agent.nodetool_calls(), "", "a Cassandra operation ran");
    assert_eq!(agent.tree(), before, "files were written");
    println!("crafted names: {tried} requests refused, nothing done");
}

#[tokio::test]
async fn requests_without_the_right_token_get_401_and_nothing_is_done() {
    use reqwest::Method;
    let agent = Agent::start().await;
    let before = agent.tree();
    let bodies = [
        (Method::GET, "/v1/node", None),
        (
            Method::POST,
            "/v1/snapshots",
            Some(json!({"tag": "kassette-x", "keyspaces": []})),
        ),
        (Method::GET, "/v1/snapshots", None),
        (Method::DELETE, "/v1/snapshots/kassette-x", None),
        (
            Method::POST,
            "/v1/jobs",
            Some(job(
                json!({"kind": "upload", "tag": "kassette-x", "cluster": "prod", "datacenter": "dc1", "files_prefix": "files/h/b/backup-01"}),
            )),
        ),
        (Method::GET, "/v1/progress", None),
        (
            Method::POST,
            "/v1/jobs",
            Some(job(
                json!({"kind": "download", "cluster": "prod", "datacenter": "dc1", "staging": "restore-x", "files": [file("ks", "t", "nb-1-big-Data.db")]}),
            )),
        ),
        (
            Method::POST,
            "/v1/jobs",
            Some(job(
                json!({"kind": "import", "staging": "restore-x", "tables": [{"keyspace": "ks", "table": "t"}]}),
            )),
        ),
        (Method::GET, "/v1/jobs/upload-0000000000000000", None),
        (Method::DELETE, "/v1/passes/p1", None),
        (Method::DELETE, "/v1/staging/restore-x", None),
    ];
    let other_cluster = "another-clusters-token-0123456789".to_string();
    let wrong = [
        None,
        Some(String::new()),
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer {other_cluster}")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {TOKEN} {TOKEN}")),
        Some(TOKEN.to_string()),
    ];
    let mut tried = 0;
    for (method, path, body) in &bodies {
        for auth in &wrong {
            let status = agent
                .send(method.clone(), path, auth.as_deref(), body.clone())
                .await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
            tried += 1;
        }
    }
    assert_eq!(agent.nodetool_calls(), "", "a Cassandra operation ran");
    assert_eq!(agent.tree(), before, "files were written");
    println!("unauthorised requests: {tried}, every one 401 with nothing done");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_as_on_the_coordinator() {
    use reqwest::Method;
    let agent = Agent::start().await;
    for auth in [
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("Bearer  {TOKEN} "),
    ] {
        let status = agent.send(Method::GET, "/v1/node", Some(&auth), None).await;
        assert_eq!(status, 200, "{auth:?}");
    }
}

/// Writes a complete-looking backup `name` whose backup manifest and node
/// manifest are exactly the given JSON (the node manifest vouched for by
/// its BLAKE3, as a real one is).
async fn plant_backup(
    store: &Arc<dyn Store>,
    name: &str,
    schema: &str,
    node_files: serde_json::Value,
) {
    let layout = Layout::new("prod", "dc1").unwrap();
    let host = uuid_nil();
    let node = json!({
        "format_version": 1, "backup": name, "cluster": "prod", "datacenter": "dc1",
        "rack": "rack1", "host_id": host, "address": "127.0.0.1",
        "tokens": ["0"], "cassandra_version": "5.0.9", "snapshot_tag": "kassette-x",
        "snapshot_at": "2026-11-25T02:00:00Z", "data_dirs": ["/d"], "files": node_files,
    });
    let node_bytes = serde_json::to_vec(&node).unwrap();
    let backup = json!({
        "format_version": 1, "name": name, "cluster": "prod", "datacenter": "dc1",
        "kassette_version": "0.1.0", "started_at": "2026-11-25T02:00:00Z",
        "finished_at": "2026-11-25T02:10:00Z", "snapshot_skew_ms": 0,
        "schema_cql": schema, "keyspaces": ["shop"],
        "nodes": [{
            "host_id": host, "address": "127.0.0.1", "rack": "rack1",
            "snapshot_at": "2026-11-25T02:00:00Z", "files": 1, "bytes": 7,
            "manifest_blake3": digest_of(&node_bytes).blake3_hex(),
        }],
        "files": 1, "bytes": 7, "uploaded_bytes": 7,
    });
    let node_key = layout.node_manifest(name, &uuid::Uuid::nil()).unwrap();
    store
        .put_bytes(&node_key, node_bytes.into(), PutMode::Overwrite)
        .await
        .unwrap();
    let backup_key = layout.backup_manifest(name).unwrap();
    store
        .put_bytes(
            &backup_key,
            serde_json::to_vec(&backup).unwrap().into(),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
}

fn uuid_nil() -> String {
    "00000000-0000-0000-0000-000000000000".into()
}

#[tokio::test]
async fn a_restore_of_a_crafted_backup_is_refused_before_any_node_is_contacted() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store = local_store(&store_dir).await;
    let good_schema = "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};\n\nCREATE TABLE shop.t (id int PRIMARY KEY);\n";
    let good_file = json!([file("shop", "t", "nb-1-big-Data.db")]);
    let cases = [
        (
            "schema-traversal",
            "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};\n\nCREATE TABLE shop.\"../../../tmp/x\" (id int PRIMARY KEY);\n".to_string(),
            good_file.clone(),
            "backup.json",
        ),
        (
            "schema-mbean",
            "CREATE KEYSPACE \"shop,type=StorageService\" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};\n".to_string(),
            good_file.clone(),
            "backup.json",
        ),
        (
            "file-absolute",
            good_schema.to_string(),
            json!([file("/etc", "t", "nb-1-big-Data.db")]),
            "nodes/",
        ),
        (
            "file-nul",
            good_schema.to_string(),
            json!([file("shop", "t\0x", "nb-1-big-Data.db")]),
            "nodes/",
        ),
        (
            "file-long",
            good_schema.to_string(),
            json!([file("shop", &"t".repeat(5_000), "nb-1-big-Data.db")]),
            "nodes/",
        ),
        (
            "file-path",
            good_schema.to_string(),
            json!([file("shop", "t", "../../../../tmp/x-Data.db")]),
            "nodes/",
        ),
    ];
    // Stands in for the agents: a restore that got past the catalog would
    // connect here first.
    let agent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    agent.set_nonblocking(true).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    for (name, schema, files, object) in cases {
        plant_backup(&store, name, &schema, files).await;
        let before = tree_of(&store_dir);
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kassette"))
            .arg("restore")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs([
                (vars::STORAGE_PROVIDER, "local"),
                (vars::STORAGE_PATH, store_dir.to_str().unwrap()),
                (vars::CLUSTER, "prod"),
                (vars::DATACENTER, "dc1"),
                (vars::NODES, &agent.local_addr().unwrap().to_string()),
                (vars::AGENT_TOKEN_FILE, token.to_str().unwrap()),
                (vars::BACKUP_NAME, name),
            ])
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{name}: {text}");
        assert!(
            text.contains(&format!("backups/{name}/{object}"))
                && text.contains("not a valid record"),
            "{name}: the refusal does not name the object: {text}"
        );
        assert!(!text.contains("panicked"), "{text}");
        assert!(agent.accept().is_err(), "{name}: a node was contacted");
        assert_eq!(tree_of(&store_dir), before, "{name}: the store changed");
    }
}

fn tree_of(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(dir, &mut found);
    found.sort();
    found
}

#[tokio::test]
async fn a_token_file_the_agent_would_read_differently_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // A no-break space the coordinator used to trim and the agent kept.
    let token = dir.path().join("token");
    std::fs::write(&token, "token-0123456789\u{a0}\n").unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for role in ["backup", "agent"] {
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_kassette"))
            .arg(role)
            .kill_on_drop(true)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs([
                (vars::STORAGE_PROVIDER, "local"),
                (vars::STORAGE_PATH, data.to_str().unwrap()),
                (vars::CLUSTER, "prod"),
                (vars::DATACENTER, "dc1"),
                (vars::NODES, "127.0.0.1:9"),
                (vars::DATA_DIRS, data.to_str().unwrap()),
                (vars::AGENT_LISTEN, "127.0.0.1:0"),
                (vars::AGENT_TOKEN_FILE, token.to_str().unwrap()),
            ])
            .output();
        // An agent that accepted the file would serve until stopped.
        let out = tokio::time::timeout(std::time::Duration::from_secs(20), run)
            .await
            .unwrap_or_else(|_| panic!("{role} accepted the token file and kept running"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{role}: {stderr}");
        assert!(stderr.contains(vars::AGENT_TOKEN_FILE), "{role}: {stderr}");
        assert!(!stderr.contains("token-0123"), "{role}: {stderr}");
    }
}
