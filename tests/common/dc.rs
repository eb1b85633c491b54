//! A whole test datacenter for end-to-end passes: the real 3-node cluster,
//! one real `kassette agent` process per node (bound to the node's own
//! loopback address, as a sidecar shares its pod's IP), a fresh bucket (or
//! directory) and the settings to run the `kassette` coordinator roles as
//! processes, exactly as a Job would.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassette::config::{Backend, StorageConfig, TransferLimits};
use kassette::storage::{self, Store};

use super::{cassandra_data_dirs, setting, unique};

pub const TOKEN: &str = "dc-test-token-0123456789abcdef";
pub const NODES: usize = 3;
/// The coordinators' lease TTL in tests: short, so a killed pass's lease
/// expires soon, yet long enough that a renewal (bounded by a sixth of it)
/// completes on a loaded 2-core machine.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How long to wait for a killed holder's lease to expire.
pub fn after_lease_expiry() -> Duration {
    LEASE_TTL + Duration::from_secs(1)
}

/// Which store a test datacenter backs up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    S3,
    Gcs,
    Azure,
    Local,
}

/// One agent process.
pub struct Agent {
    pub node: usize,
    pub address: String,
    pub log: PathBuf,
    child: Option<tokio::process::Child>,
}

/// The datacenter: agents, store, settings.
pub struct Datacenter {
    pub dir: tempfile::TempDir,
    pub kind: StoreKind,
    pub storage: StorageConfig,
    pub port: u16,
    pub agents: Vec<Agent>,
    token_file: PathBuf,
    /// Set when the agents serve HTTPS: the CA that issued their certificate.
    pub ca: Option<PathBuf>,
    /// Set when that certificate names a DNS name rather than the agents'
    /// addresses (`KASSETTE_AGENT_TLS_SERVER_NAME`).
    pub tls_server_name: Option<String>,
    /// Storage settings given as they are (a store this module does not
    /// set up itself), instead of those derived from `storage`.
    storage_settings: Option<Vec<(String, String)>>,
    /// Set when agents and coordinator reach the S3 server through another
    /// endpoint (a fault proxy); [`Datacenter::store`] still goes direct.
    pub s3_endpoint: Option<String>,
}

/// How the agents of a test datacenter serve their API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serving {
    Http,
    /// HTTPS, one certificate for the three loopback addresses.
    TlsByAddress,
    /// HTTPS, one certificate for this DNS name only.
    TlsByName(&'static str),
}

impl Datacenter {
    /// Starts one agent per node on a fresh store; `agent_env` adds
    /// settings to every agent (e.g. a bandwidth limit).
    pub async fn start(kind: StoreKind, agent_env: &[(&str, &str)]) -> Self {
        Self::start_with(kind, agent_env, Serving::Http, None).await
    }

    /// Like [`Datacenter::start`] on S3, with agents and coordinator
    /// talking to the S3 server through `endpoint` (e.g. a fault proxy).
    pub async fn start_s3_through(endpoint: &str) -> Self {
        Self::start_with(StoreKind::S3, &[], Serving::Http, Some(endpoint)).await
    }

    /// Like [`Datacenter::start`], with agents serving HTTPS (a private CA
    /// the coordinator trusts through `KASSETTE_AGENT_CA_FILE`).
    pub async fn start_tls(kind: StoreKind) -> Self {
        Self::start_with(kind, &[], Serving::TlsByAddress, None).await
    }

    /// Like [`Datacenter::start_tls`], with one certificate for the DNS
    /// name `name` only, as the kassette-agent chart issues it; the
    /// coordinator is given `KASSETTE_AGENT_TLS_SERVER_NAME=name`.
    pub async fn start_tls_named(kind: StoreKind, name: &'static str) -> Self {
        Self::start_with(kind, &[], Serving::TlsByName(name), None).await
    }

    /// Like [`Datacenter::start`], on a store the caller set up: `storage`
    /// to open it directly, `settings` (the `KASSETTE_STORAGE_*` variables)
    /// for every role.
    pub async fn start_on(
        storage: StorageConfig,
        settings: Vec<(String, String)>,
        agent_env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::launch(
            dir,
            StoreKind::S3,
            storage,
            Some(settings),
            agent_env,
            Serving::Http,
            None,
        )
        .await
    }

    async fn start_with(
        kind: StoreKind,
        agent_env: &[(&str, &str)],
        serving: Serving,
        s3_endpoint: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = new_storage(kind, dir.path()).await;
        Self::launch(dir, kind, storage, None, agent_env, serving, s3_endpoint).await
    }

    async fn launch(
        dir: tempfile::TempDir,
        kind: StoreKind,
        storage: StorageConfig,
        storage_settings: Option<Vec<(String, String)>>,
        agent_env: &[(&str, &str)],
        serving: Serving,
        s3_endpoint: Option<&str>,
    ) -> Self {
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let port = free_port_on_every_node();
        let certs_dir = dir.path().join("certs");
        let certs = match serving {
            Serving::Http => None,
            Serving::TlsByAddress => {
                std::fs::create_dir_all(&certs_dir).unwrap();
                Some(super::tls::issue(
                    &certs_dir,
                    &["127.0.0.1", "127.0.0.2", "127.0.0.3"],
                ))
            }
            Serving::TlsByName(name) => {
                std::fs::create_dir_all(&certs_dir).unwrap();
                Some(super::tls::issue_for_dns_name(&certs_dir, name))
            }
        };
        let mut dc = Self {
            dir,
            kind,
            storage,
            port,
            agents: Vec::new(),
            token_file,
            ca: certs.as_ref().map(|c| c.ca.clone()),
            tls_server_name: match serving {
                Serving::TlsByName(name) => Some(name.to_string()),
                _ => None,
            },
            storage_settings,
            s3_endpoint: s3_endpoint.map(str::to_string),
        };
        let mut env: Vec<(String, String)> = agent_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(certs) = &certs {
            env.push((
                "KASSETTE_AGENT_TLS_CERT".into(),
                certs.cert.display().to_string(),
            ));
            env.push((
                "KASSETTE_AGENT_TLS_KEY".into(),
                certs.key.display().to_string(),
            ));
        }
        for node in 1..=NODES {
            let agent = dc.spawn_agent(node, &env);
            dc.agents.push(agent);
        }
        for agent in &dc.agents {
            wait_until_serving(&dc.client(&agent.address)).await;
        }
        dc
    }

    /// A client for the agent at `address`, over HTTPS when the agents
    /// serve it.
    pub fn client(&self, address: &str) -> kassette::coordinator::client::AgentClient {
        use kassette::coordinator::client::AgentClient;
        match (&self.ca, &self.tls_server_name) {
            (None, _) => AgentClient::new(address, TOKEN).unwrap(),
            (Some(ca), None) => {
                AgentClient::with_tls(address, TOKEN, &std::fs::read(ca).unwrap()).unwrap()
            }
            (Some(ca), Some(name)) => AgentClient::with_tls_server_name(
                address.parse().expect("agent address is ip:port"),
                name,
                TOKEN,
                &std::fs::read(ca).unwrap(),
            )
            .unwrap(),
        }
    }

    fn spawn_agent(&self, node: usize, extra: &[(String, String)]) -> Agent {
        let address = format!("127.0.0.{node}:{}", self.port);
        let dirs: Vec<String> = cassandra_data_dirs(node)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let state = self.dir.path().join(format!("agent{node}"));
        let log = self.dir.path().join(format!("agent{node}.log"));
        let nodetool = format!("{} -n {node}", setting("KASSETTE_TEST_NODETOOL"));
        let mut command = kassette_command();
        command
            .arg("agent")
            .envs(self.storage_env())
            .env("KASSETTE_AGENT_LISTEN", &address)
            .env("KASSETTE_AGENT_TOKEN_FILE", &self.token_file)
            .env("KASSETTE_DATA_DIRS", dirs.join(","))
            .env("KASSETTE_AGENT_STATE_DIR", &state)
            .env("KASSETTE_CASSANDRA_CONTROL", "nodetool")
            .env("KASSETTE_NODETOOL", nodetool)
            .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("agent log"));
        let child = command.spawn().expect("start kassette agent");
        Agent {
            node,
            address,
            log,
            child: Some(child),
        }
    }

    /// Settings that point any role at this datacenter's store.
    pub fn storage_env(&self) -> Vec<(String, String)> {
        if let Some(settings) = &self.storage_settings {
            return settings.clone();
        }
        let mut env = Vec::new();
        let mut set = |k: &str, v: &str| env.push((k.to_string(), v.to_string()));
        match &self.storage.backend {
            Backend::S3 { bucket, .. } => {
                set("KASSETTE_STORAGE_PROVIDER", "s3");
                set("KASSETTE_STORAGE_BUCKET", bucket);
                let endpoint = self
                    .s3_endpoint
                    .clone()
                    .unwrap_or_else(|| setting("KASSETTE_TEST_S3_ENDPOINT"));
                set("KASSETTE_STORAGE_ENDPOINT", &endpoint);
                set(
                    "KASSETTE_STORAGE_REGION",
                    &setting("KASSETTE_TEST_S3_REGION"),
                );
                set(
                    "KASSETTE_STORAGE_CREDENTIALS_FILE",
                    &setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
                );
                set("KASSETTE_STORAGE_ALLOW_HTTP", "true");
            }
            Backend::Gcs { bucket, .. } => {
                set("KASSETTE_STORAGE_PROVIDER", "gcs");
                set("KASSETTE_STORAGE_BUCKET", bucket);
                set(
                    "KASSETTE_STORAGE_ENDPOINT",
                    &setting("KASSETTE_TEST_GCS_ENDPOINT"),
                );
                set("KASSETTE_STORAGE_ALLOW_HTTP", "true");
            }
            Backend::Azure(azure) => {
                set("KASSETTE_STORAGE_PROVIDER", "azure");
                set("KASSETTE_STORAGE_BUCKET", &azure.container);
                set(
                    "KASSETTE_STORAGE_ENDPOINT",
                    &setting("KASSETTE_TEST_AZURE_ENDPOINT"),
                );
                // K8ssandra's medusa_azure_credentials.json, as it is.
                set(
                    "KASSETTE_STORAGE_CREDENTIALS_FILE",
                    &setting("KASSETTE_TEST_AZURE_CREDENTIALS_FILE"),
                );
                set("KASSETTE_STORAGE_ALLOW_HTTP", "true");
            }
            Backend::Local { root } => {
                set("KASSETTE_STORAGE_PROVIDER", "local");
                set("KASSETTE_STORAGE_PATH", &root.display().to_string());
            }
        }
        if !self.storage.prefix.is_empty() {
            set("KASSETTE_STORAGE_PREFIX", &self.storage.prefix);
        }
        env
    }

    /// Settings of the coordinator roles: store, cluster, static nodes,
    /// token, and short lease / progress intervals so tests need not wait.
    pub fn coordinator_env(&self) -> Vec<(String, String)> {
        let mut env = self.storage_env();
        let nodes: Vec<&str> = self.agents.iter().map(|a| a.address.as_str()).collect();
        for (k, v) in [
            (
                "KASSETTE_CLUSTER",
                setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
            ),
            ("KASSETTE_DATACENTER", setting("KASSETTE_TEST_CASSANDRA_DC")),
            ("KASSETTE_NODES", nodes.join(",")),
            (
                "KASSETTE_AGENT_TOKEN_FILE",
                self.token_file.display().to_string(),
            ),
            ("KASSETTE_LOCK_TTL", format!("{}s", LEASE_TTL.as_secs())),
            ("KASSETTE_PROGRESS_INTERVAL", "1s".to_string()),
        ] {
            env.push((k.to_string(), v));
        }
        if let Some(ca) = &self.ca {
            env.push(("KASSETTE_AGENT_CA_FILE".into(), ca.display().to_string()));
        }
        if let Some(name) = &self.tls_server_name {
            env.push(("KASSETTE_AGENT_TLS_SERVER_NAME".into(), name.clone()));
        }
        env
    }

    /// Runs `kassette <args>` with the coordinator settings plus `extra`
    /// (which override them) and waits for it.
    pub async fn kassette(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        self.coordinator(args, extra)
            .output()
            .await
            .expect("run kassette")
    }

    /// The coordinator command, to spawn and control.
    pub fn coordinator(&self, args: &[&str], extra: &[(&str, &str)]) -> tokio::process::Command {
        let mut command = kassette_command();
        command
            .args(args)
            .envs(self.coordinator_env())
            .envs(extra.iter().copied());
        command
    }

    /// A backup of `keyspaces` named `name` that must succeed.
    pub async fn backup(&self, name: &str, keyspaces: &[&str]) -> Output {
        let ks = keyspaces.join(",");
        let out = self
            .kassette(
                &["backup"],
                &[("KASSETTE_BACKUP_NAME", name), ("KASSETTE_KEYSPACES", &ks)],
            )
            .await;
        assert_success(&out, &format!("backup {name}"));
        out
    }

    /// `kassette status NAME --json`, parsed.
    pub async fn manifest(&self, name: &str) -> serde_json::Value {
        let out = self
            .kassette(&["status", "--json"], &[("KASSETTE_BACKUP_NAME", name)])
            .await;
        assert_success(&out, &format!("status {name}"));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// The store, opened directly (to act behind kassette's back).
    pub async fn store(&self) -> Arc<dyn Store> {
        storage::open(&self.storage).await.expect("open store")
    }

    /// Polls every agent's progress until one satisfies `reached`; panics
    /// after 30 s saying `what` never happened.
    pub async fn wait_for_progress(
        &self,
        what: &str,
        reached: impl Fn(&kassette::agent::api::Progress) -> bool,
    ) {
        let clients: Vec<_> = self
            .agents
            .iter()
            .map(|a| self.client(&a.address))
            .collect();
        for _ in 0..600 {
            for client in &clients {
                if let Ok(progress) = client.progress().await
                    && reached(&progress)
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no agent {what}");
    }

    /// Starts agent `node` again (after [`Datacenter::kill_agent`]), with
    /// the same state directory, and waits until it serves.
    pub async fn restart_agent(&mut self, node: usize) {
        let agent = self.spawn_agent(node, &[]);
        wait_until_serving(&self.client(&agent.address)).await;
        self.agents[node - 1] = agent;
    }

    /// Kills agent of `node` (SIGKILL).
    pub async fn kill_agent(&mut self, node: usize) {
        let agent = &mut self.agents[node - 1];
        if let Some(mut child) = agent.child.take() {
            child.kill().await.expect("kill agent");
        }
    }
}

impl Drop for Datacenter {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            if let Some(child) = agent.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}

/// The `kassette` binary with a clean environment (PATH and HOME only).
pub fn kassette_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kassette"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("KASSETTE_LOG", "info")
        .kill_on_drop(true);
    command
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        text(out)
    );
}

/// A new, empty store of `kind`, with a prefix (as users share buckets).
async fn new_storage(kind: StoreKind, dir: &Path) -> StorageConfig {
    let limits = TransferLimits {
        concurrency: 8,
        max_bandwidth: None,
    };
    let prefix = "team/cassandra".to_string();
    match kind {
        StoreKind::S3 => {
            let endpoint = setting("KASSETTE_TEST_S3_ENDPOINT");
            let bucket = super::new_s3_bucket(&endpoint).await;
            let credentials = setting("KASSETTE_TEST_S3_CREDENTIALS_FILE");
            super::s3_storage_config(&endpoint, &bucket, &credentials, &prefix)
        }
        StoreKind::Gcs => StorageConfig {
            backend: Backend::Gcs {
                bucket: super::new_gcs_bucket().await,
                endpoint: Some(url::Url::parse(&setting("KASSETTE_TEST_GCS_ENDPOINT")).unwrap()),
                credentials_file: None,
            },
            prefix,
            limits,
        },
        StoreKind::Azure => {
            let container = super::new_azure_container().await;
            super::azure_storage_config(&container, &prefix)
        }
        StoreKind::Local => {
            let root = dir.join("store");
            std::fs::create_dir_all(&root).unwrap();
            StorageConfig {
                backend: Backend::Local { root },
                prefix,
                limits,
            }
        }
    }
}

/// A port free on 127.0.0.1, .2 and .3 alike (agents of one datacenter
/// share a port, as pods of a StatefulSet do).
fn free_port_on_every_node() -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().unwrap().port();
        let others_free =
            (2..=NODES).all(|n| std::net::TcpListener::bind(format!("127.0.0.{n}:{port}")).is_ok());
        if others_free {
            return port;
        }
    }
    panic!("no port free on every node address");
}

async fn wait_until_serving(client: &kassette::coordinator::client::AgentClient) {
    let address = client.address().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.node_info().await {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => panic!("agent {address} never served: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Snapshot tags present on `node`'s disks.
pub fn snapshot_tags(node: usize) -> Vec<String> {
    kassette::cassandra::snapshot::snapshot_tags(&cassandra_data_dirs(node))
        .expect("list snapshots")
}

/// Runs `nodetool -n <node> <args>` on every node at once.
pub fn nodetool_everywhere(args: &[&str]) {
    std::thread::scope(|scope| {
        for node in 1..=NODES {
            scope.spawn(move || {
                let n = node.to_string();
                let mut all = vec!["-n", n.as_str()];
                all.extend_from_slice(args);
                super::run(setting("KASSETTE_TEST_NODETOOL"), &all);
            });
        }
    });
}

/// A unique backup name for a test.
pub fn backup_name(prefix: &str) -> String {
    unique(prefix)
}
