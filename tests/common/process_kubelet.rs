//! **A fake** kubelet: `FakeProcessKubelet`, the one piece of a Kubernetes
//! node that cannot run here (no kubelet, no container runtime). Everything
//! around it is real: the kube-apiserver, the job and cronjob controllers,
//! helm, the chart's RBAC, the image built by `make image`.
//!
//! What it does, as a kubelet and a scheduler would:
//! - registers a Node (Ready) and binds the Pending Pods of its namespace to
//!   it through the `binding` subresource (it watches one namespace only:
//!   other tests share the apiserver and play the kubelet themselves);
//! - runs each container of a bound Pod as a process from the image's
//!   unpacked root filesystem: its own mount and UTS namespaces, an overlay
//!   over the read-only image root (remounted read-only when
//!   `readOnlyRootFilesystem`), chrooted, host network, the container's
//!   `command`/`args` over the image's entrypoint/cmd, `env`/`envFrom`
//!   resolved as a kubelet does (`value` with `$(VAR)`, `secretKeyRef`,
//!   `configMapKeyRef`, `fieldRef`), `KUBERNETES_SERVICE_HOST/PORT` (the
//!   apiserver's loopback address: there is no Service network), volumes
//!   bind-mounted at their `mountPath`s (Secret and ConfigMap with `items`,
//!   `emptyDir`, `downwardAPI`, `projected` with ServiceAccount tokens from
//!   the TokenRequest API, bound to the Pod), `runAsUser`/`runAsGroup`/
//!   `fsGroup`, `runAsNonRoot` checked, `terminationMessagePath` and
//!   `FallbackToLogsOnError`;
//! - writes Pod status back: phase, conditions, `podIP`, `startTime`,
//!   container states with exit codes and restart counts; `restartPolicy`
//!   Never / OnFailure / Always;
//! - kills and reaps a Pod's processes when the Pod is deleted (then
//!   confirms the deletion, grace period 0) or the kubelet stops; every
//!   process also gets SIGKILL if the test process dies (PDEATHSIG).
//!
//! Cassandra pods: a Pod mapped with [`FakeProcessKubelet::map_cassandra_pod`]
//! stands for local test node N. Its `cassandra` container is not started
//! (the node already runs at 127.0.0.N); it is reported running, ready when
//! the node answers on its CQL port; the Pod's IP is 127.0.0.N, and its
//! `server-data` volume is the node's directory (whose data directories are
//! `data`, or `data1` and `data2` on the JBOD node). Its other containers
//! (the agent sidecar) run from the image as above.
//!
//! Not done (nothing in these tests needs it): probes, resource limits,
//! seccomp and capabilities (the processes run as the Pod's non-root user,
//! which holds none), image pulls (every container runs the one image),
//! init containers, a PID namespace, `kubectl logs` (logs are files: see
//! [`FakeProcessKubelet::logs`]).

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, KeyToPath, Node, NodeAddress, NodeCondition,
    NodeStatus, ObjectReference, Pod, PodCondition, PodStatus, Secret, ServiceAccount, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::{setting, unique};

/// The image every container runs: its unpacked root filesystem and the
/// parts of its OCI config a runtime uses.
#[derive(Debug, Clone)]
pub struct Image {
    pub rootfs: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `uid[:gid]` from the config's `User`.
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// The reference Pods name (`KASSETTE_TEST_IMAGE_REF`).
    pub reference: String,
}

impl Image {
    /// The image `make image` built (`$KASSETTE_RUN/image.env`).
    pub fn built() -> Self {
        let rootfs = PathBuf::from(setting("KASSETTE_TEST_IMAGE_ROOTFS"));
        let oci = PathBuf::from(setting("KASSETTE_TEST_IMAGE_OCI"));
        let config = oci_config(&oci)
            .unwrap_or_else(|e| panic!("read the image config from {}: {e:#}", oci.display()));
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let c = &config["config"];
        Self {
            rootfs,
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            env: strings(&c["Env"])
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            user: c["User"]
                .as_str()
                .filter(|u| !u.is_empty())
                .map(String::from),
            working_dir: c["WorkingDir"]
                .as_str()
                .filter(|w| !w.is_empty())
                .map(String::from),
            reference: setting("KASSETTE_TEST_IMAGE_REF"),
        }
    }
}

/// The image config of the OCI layout at `oci` (a directory or a tar of
/// one): index → manifest (through nested indexes) → config.
fn oci_config(oci: &Path) -> Result<serde_json::Value> {
    let read = |name: &str| -> Result<Vec<u8>> {
        if oci.is_dir() {
            std::fs::read(oci.join(name)).with_context(|| format!("read {name}"))
        } else {
            let out = std::process::Command::new("tar")
                .arg("-xOf")
                .arg(oci)
                .arg(name)
                .output()?;
            if !out.status.success() {
                bail!("{name} is not in {}", oci.display());
            }
            Ok(out.stdout)
        }
    };
    let blob = |digest: &str| -> Result<serde_json::Value> {
        let (algorithm, hex) = digest
            .split_once(':')
            .ok_or_else(|| anyhow!("bad digest {digest}"))?;
        Ok(serde_json::from_slice(&read(&format!(
            "blobs/{algorithm}/{hex}"
        ))?)?)
    };
    let mut doc: serde_json::Value = serde_json::from_slice(&read("index.json")?)?;
    // Follow indexes down to the first manifest.
    while let Some(first) = doc["manifests"].get(0) {
        let digest = first["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("manifest without a digest"))?;
        doc = blob(digest)?;
    }
    let config = doc["config"]["digest"]
        .as_str()
        .ok_or_else(|| anyhow!("manifest without a config"))?;
    blob(config)
}

/// One Pod's processes, cancelled on deletion or at stop.
struct PodHandle {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

struct Ctx {
    client: Client,
    namespace: String,
    node_name: String,
    image: Image,
    dir: PathBuf,
    apiserver: (String, String),
    /// Pod name → local Cassandra node (1-based).
    cassandra: Mutex<HashMap<String, usize>>,
    /// Pod uid → its processes.
    pods: Mutex<HashMap<String, PodHandle>>,
}

/// The fake kubelet (see the module documentation).
pub struct FakeProcessKubelet {
    ctx: Arc<Ctx>,
    watch: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    /// How long registering the Node and starting the watch took.
    pub startup: Duration,
}

impl FakeProcessKubelet {
    /// Registers a Node and starts running the Pods of `namespace` from
    /// `image`.
    pub async fn start(client: Client, namespace: &str, image: Image) -> Self {
        let t0 = std::time::Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("process-kubelet-")
            .tempdir()
            .expect("kubelet dir");
        let server = url::Url::parse(&setting("KASSETTE_TEST_K8S_SERVER")).expect("server URL");
        let ctx = Arc::new(Ctx {
            client: client.clone(),
            namespace: namespace.to_string(),
            node_name: unique("process-kubelet-"),
            image,
            dir: dir.path().to_path_buf(),
            apiserver: (
                server.host_str().unwrap_or("127.0.0.1").to_string(),
                server.port_or_known_default().unwrap_or(443).to_string(),
            ),
            cassandra: Mutex::new(HashMap::new()),
            pods: Mutex::new(HashMap::new()),
        });
        register_node(&ctx).await.expect("register the Node");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let watch = tokio::spawn(watch_pods(ctx.clone(), ready_tx));
        let _ = ready_rx.await;
        Self {
            ctx,
            watch,
            _dir: dir,
            startup: t0.elapsed(),
        }
    }

    pub fn node_name(&self) -> &str {
        &self.ctx.node_name
    }

    /// Makes Pod `pod` stand for local test node `node` (before it exists).
    pub fn map_cassandra_pod(&self, pod: &str, node: usize) {
        self.ctx
            .cassandra
            .lock()
            .unwrap()
            .insert(pod.to_string(), node);
    }

    /// Everything the containers of Pod `pod` wrote (what `kubectl logs`
    /// would show), every run of every container.
    pub fn logs(&self, pod: &str) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.ctx.dir.join("pods")) else {
            return out;
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{pod}_")))
            })
            .collect();
        dirs.sort();
        for dir in dirs {
            let Ok(logs) = std::fs::read_dir(dir.join("logs")) else {
                continue;
            };
            let mut files: Vec<PathBuf> = logs.flatten().map(|e| e.path()).collect();
            files.sort();
            for file in files {
                out.push_str(&format!("==> {} <==\n", file.display()));
                out.push_str(&std::fs::read_to_string(&file).unwrap_or_default());
            }
        }
        out
    }

    /// Logs of every Pod whose name starts with `prefix`.
    pub fn logs_matching(&self, prefix: &str) -> String {
        let Ok(entries) = std::fs::read_dir(self.ctx.dir.join("pods")) else {
            return String::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| n.starts_with(prefix))
            .filter_map(|n| n.rsplit_once('_').map(|(pod, _)| pod.to_string()))
            .collect();
        names.sort();
        names.dedup();
        names.iter().map(|n| self.logs(n)).collect()
    }

    /// Kills and reaps every process, then (as on drop) force-deletes the
    /// Pods bound here (nothing would confirm their deletion once this
    /// kubelet is gone) and deletes the Node.
    pub async fn stop(&self) {
        self.watch.abort();
        let handles: Vec<(String, PodHandle)> = self.ctx.pods.lock().unwrap().drain().collect();
        for (_, handle) in handles {
            handle.cancel.cancel();
            let _ = handle.task.await;
        }
    }
}

impl Drop for FakeProcessKubelet {
    /// Also on a failed test's unwinding: the processes are killed (the
    /// tasks kill on cancel, or on drop with the runtime, and PDEATHSIG
    /// covers a dying test process); the API objects are removed from a
    /// thread of its own, since the test's runtime may be going away.
    fn drop(&mut self) {
        self.watch.abort();
        for handle in self.ctx.pods.lock().unwrap().values() {
            handle.cancel.cancel();
        }
        let (namespace, node) = (self.ctx.namespace.clone(), self.ctx.node_name.clone());
        in_own_runtime(move |client| async move {
            let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
            if let Ok(list) = pods.list(&Default::default()).await {
                for pod in list.items {
                    if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node) {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                        if !matches!(phase, Some("Succeeded" | "Failed")) {
                            // Its processes are gone: terminal, as a node
                            // shutdown leaves it, so its Job lets go of it.
                            let failed = serde_json::json!({"status": {
                                "phase": "Failed",
                                "reason": "Terminated",
                                "message": "the process kubelet stopped",
                            }});
                            let _ = pods
                                .patch_status(&name, &PatchParams::default(), &Patch::Merge(failed))
                                .await;
                        }
                        let _ = pods
                            .delete(&name, &DeleteParams::default().grace_period(0))
                            .await;
                    }
                }
            }
            let _ = Api::<Node>::all(client)
                .delete(&node, &DeleteParams::default())
                .await;
        });
    }
}

/// Runs `work` to its end on a thread and runtime of its own, with a client
/// of its own (usable from `Drop`, even while a test's runtime unwinds).
pub fn in_own_runtime<F, Fut>(work: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let client = super::k8s::client().await;
            let _ = tokio::time::timeout(Duration::from_secs(30), work(client)).await;
        });
    });
    let _ = thread.join();
}

async fn register_node(ctx: &Ctx) -> Result<()> {
    let nodes = Api::<Node>::all(ctx.client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(ctx.node_name.clone()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".into(), ctx.node_name.clone()),
                ("kubernetes.io/os".into(), "linux".into()),
            ])),
            ..Default::default()
        },
        ..Default::default()
    };
    nodes.create(&PostParams::default(), &node).await?;
    let now = Time(jiff::Timestamp::now());
    let status = NodeStatus {
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: "127.0.0.1".into(),
        }]),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("process kubelet (a test fake) is posting ready status".into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        ..Default::default()
    };
    nodes
        .patch_status(
            &ctx.node_name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
    Ok(())
}

async fn watch_pods(ctx: Arc<Ctx>, ready: tokio::sync::oneshot::Sender<()>) {
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    let mut ready = Some(ready);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                on_pod(&ctx, pod);
            }
            Ok(watcher::Event::Delete(pod)) => stop_pod(&ctx, &pod),
            Ok(watcher::Event::InitDone) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            Ok(watcher::Event::Init) => {}
            Err(e) => {
                eprintln!("process kubelet: watch: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn on_pod(ctx: &Arc<Ctx>, pod: Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        if spec.node_name.as_deref() == Some(&ctx.node_name) {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                stop_pod(&ctx, &pod);
                let handle = ctx.pods.lock().unwrap().remove(&uid_of(&pod));
                if let Some(handle) = handle {
                    let _ = handle.task.await;
                }
                // Confirm the containers are gone, as a kubelet does.
                let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ctx.namespace);
                let _ = pods
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
            });
        }
        return;
    }
    match spec.node_name.as_deref() {
        None => {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                if let Err(e) = bind(&ctx, &name).await {
                    eprintln!("process kubelet: bind {name}: {e}");
                }
            });
        }
        Some(node) if node == ctx.node_name => {
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending");
            if matches!(phase, "Succeeded" | "Failed") {
                return;
            }
            let mut pods = ctx.pods.lock().unwrap();
            if pods.contains_key(&uid_of(&pod)) {
                return;
            }
            let cancel = CancellationToken::new();
            let task = tokio::spawn(run_pod(ctx.clone(), pod.clone(), cancel.clone()));
            pods.insert(uid_of(&pod), PodHandle { cancel, task });
        }
        Some(_) => {}
    }
}

fn stop_pod(ctx: &Ctx, pod: &Pod) {
    if let Some(handle) = ctx.pods.lock().unwrap().get(&uid_of(pod)) {
        handle.cancel.cancel();
    }
}

/// Binds Pod `name` to this node, as the scheduler would.
async fn bind(ctx: &Ctx, name: &str) -> Result<()> {
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ctx.namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(ctx.node_name.clone()),
            ..Default::default()
        },
    };
    let _: serde_json::Value = pods
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- one Pod

/// A container ready to run.
struct Plan {
    name: String,
    rootfs: PathBuf,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    binds: Vec<Bind>,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    read_only_root: bool,
    working_dir: String,
    termination_log: PathBuf,
    fallback_to_logs: bool,
}

struct Bind {
    source: PathBuf,
    target: String,
    read_only: bool,
}

/// What one container did last.
#[derive(Clone)]
struct Run {
    restarts: i32,
    ready: bool,
    state: ContainerState,
}

async fn run_pod(ctx: Arc<Ctx>, pod: Pod, cancel: CancellationToken) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ctx.namespace);
    let cassandra_node = ctx.cassandra.lock().unwrap().get(&name).copied();
    let pod_ip = cassandra_node.map_or_else(|| "127.0.0.1".to_string(), |n| format!("127.0.0.{n}"));
    let started = Time(jiff::Timestamp::now());
    let pod_dir = ctx
        .dir
        .join("pods")
        .join(format!("{name}_{}", uid_of(&pod)));
    // Like a kubelet, a Pod whose Secret or ConfigMap is missing waits.
    let plans = loop {
        match prepare(&ctx, &pod, &pod_dir, &pod_ip, cassandra_node).await {
            Ok(plans) => break plans,
            Err(e) => {
                let message = format!("{e:#}");
                let waiting = waiting_statuses(&pod, "CreateContainerConfigError", &message);
                let _ = write_status(&pods, &name, "Pending", &pod_ip, &started, waiting).await;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let runs: Arc<Mutex<BTreeMap<String, Run>>> = Arc::new(Mutex::new(BTreeMap::new()));
    if let Some(node) = cassandra_node {
        let ready = tokio::net::TcpStream::connect(format!("127.0.0.{node}:9042"))
            .await
            .is_ok();
        runs.lock().unwrap().insert(
            "cassandra".into(),
            Run {
                restarts: 0,
                ready,
                state: running_state(&started),
            },
        );
    }
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::new();
    for plan in plans {
        let runs = runs.clone();
        let cancel = cancel.clone();
        let policy = policy.clone();
        let changed = changed_tx.clone();
        let logs = pod_dir.join("logs");
        tasks.push(tokio::spawn(async move {
            run_container(plan, &logs, &policy, runs, cancel, changed).await;
        }));
    }
    drop(changed_tx);
    // Report every change until every container task has ended.
    loop {
        let snapshot = runs.lock().unwrap().clone();
        let (phase, statuses) = pod_phase(&pod, &snapshot, &policy);
        if let Err(e) = write_status(&pods, &name, &phase, &pod_ip, &started, statuses).await {
            if cancel.is_cancelled() {
                break;
            }
            eprintln!("process kubelet: status of {name}: {e}");
        }
        if changed_rx.recv().await.is_none() {
            break;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    // Deleted: like a kubelet, leave the Pod in a terminal phase, so the
    // Job controller accounts for it and releases its finalizer.
    if cancel.is_cancelled() {
        let snapshot = runs.lock().unwrap().clone();
        let (phase, statuses) = pod_phase(&pod, &snapshot, "Deleted");
        let _ = write_status(&pods, &name, &phase, &pod_ip, &started, statuses).await;
    }
}

fn running_state(since: &Time) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(since.clone()),
        }),
        ..Default::default()
    }
}

/// Runs one container until it ends for good (restartPolicy) or the Pod
/// is cancelled; records each state in `runs`.
async fn run_container(
    plan: Plan,
    logs: &Path,
    policy: &str,
    runs: Arc<Mutex<BTreeMap<String, Run>>>,
    cancel: CancellationToken,
    changed: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let mut restarts = 0;
    loop {
        let log = logs.join(format!("{}.{restarts}.log", plan.name));
        let started = Time(jiff::Timestamp::now());
        let set = |state: ContainerState| {
            runs.lock().unwrap().insert(
                plan.name.clone(),
                Run {
                    restarts,
                    ready: true,
                    state,
                },
            );
            let _ = changed.send(());
        };
        let _ = std::fs::write(&plan.termination_log, b"");
        let mut child = match spawn(&plan, &log) {
            Ok(child) => child,
            Err(e) => {
                set(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 128,
                        reason: Some("StartError".into()),
                        message: Some(format!("{e:#}")),
                        started_at: Some(started.clone()),
                        finished_at: Some(Time(jiff::Timestamp::now())),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                return;
            }
        };
        set(running_state(&started));
        let (status, killed) = tokio::select! {
            status = child.wait() => (status.ok(), false),
            _ = cancel.cancelled() => (terminate(&mut child).await, true),
        };
        let Some(status) = status else {
            return;
        };
        let code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        set(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                message: termination_message(&plan, &log, code),
                started_at: Some(started),
                finished_at: Some(Time(jiff::Timestamp::now())),
                ..Default::default()
            }),
            ..Default::default()
        });
        if killed {
            return;
        }
        let again = match policy {
            "Always" => true,
            "OnFailure" => code != 0,
            _ => false,
        };
        if !again {
            return;
        }
        // The kubelet's crash-loop back-off, shortened: 1 s, 2 s, 4 s, ...
        let backoff = Duration::from_secs(1 << restarts.min(4));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        restarts += 1;
    }
}

/// SIGTERM, then SIGKILL after a short grace period; always reaped.
async fn terminate(child: &mut tokio::process::Child) -> Option<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}

/// The kubelet's termination message: the container's
/// terminationMessagePath, else (FallbackToLogsOnError, failed) the log's
/// tail.
fn termination_message(plan: &Plan, log: &Path, code: i32) -> Option<String> {
    let written = std::fs::read_to_string(&plan.termination_log).unwrap_or_default();
    if !written.trim().is_empty() {
        return Some(written.chars().take(4096).collect());
    }
    if plan.fallback_to_logs && code != 0 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n");
        let start = tail.len().saturating_sub(2048);
        let start = (start..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(tail.len());
        return Some(tail[start..].to_string());
    }
    None
}

/// Phase and container statuses from what the containers did; `policy` is
/// the restartPolicy, or `Deleted` once the Pod's deletion stopped them.
fn pod_phase(
    pod: &Pod,
    runs: &BTreeMap<String, Run>,
    policy: &str,
) -> (String, Vec<ContainerStatus>) {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let mut statuses = Vec::new();
    let (mut all_ended, mut any_failed) = (true, false);
    for c in &containers {
        let run = runs.get(&c.name);
        let state = run
            .map(|r| r.state.clone())
            .unwrap_or_else(|| ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        let running = state.running.is_some();
        match &state.terminated {
            Some(t) => any_failed |= t.exit_code != 0,
            None => all_ended = false,
        }
        statuses.push(ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ready: running && run.is_some_and(|r| r.ready),
            started: Some(running),
            restart_count: run.map_or(0, |r| r.restarts),
            state: Some(state),
            ..Default::default()
        });
    }
    let phase = if policy == "Deleted" {
        if any_failed { "Failed" } else { "Succeeded" }
    } else if all_ended && !containers.is_empty() && policy != "Always" {
        // Under OnFailure a failed container is restarted, so only a
        // success ends it; under Never any exit does.
        if any_failed { "Failed" } else { "Succeeded" }
    } else {
        "Running"
    };
    (phase.to_string(), statuses)
}

fn waiting_statuses(pod: &Pod, reason: &str, message: &str) -> Vec<ContainerStatus> {
    pod.spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default()
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

async fn write_status(
    pods: &Api<Pod>,
    name: &str,
    phase: &str,
    pod_ip: &str,
    started: &Time,
    containers: Vec<ContainerStatus>,
) -> Result<()> {
    let now = Time(jiff::Timestamp::now());
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let condition = |type_: &str, ok: bool| PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    };
    let status = PodStatus {
        phase: Some(phase.into()),
        host_ip: Some("127.0.0.1".into()),
        pod_ip: Some(pod_ip.into()),
        pod_ips: Some(vec![k8s_openapi::api::core::v1::PodIP {
            ip: pod_ip.into(),
        }]),
        start_time: Some(started.clone()),
        conditions: Some(vec![
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", all_ready),
            condition("Ready", all_ready),
        ]),
        container_statuses: Some(containers),
        ..Default::default()
    };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- preparing

/// Volumes on disk and one plan per container to start.
async fn prepare(
    ctx: &Ctx,
    pod: &Pod,
    pod_dir: &Path,
    pod_ip: &str,
    cassandra_node: Option<usize>,
) -> Result<Vec<Plan>> {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        bail!("init containers are not supported by the process kubelet");
    }
    std::fs::create_dir_all(pod_dir.join("logs"))?;
    let mut volumes = HashMap::new();
    for volume in spec.volumes.iter().flatten() {
        let path = if volume.name == "server-data"
            && let Some(node) = cassandra_node
        {
            PathBuf::from(setting(&format!("KASSETTE_TEST_CASSANDRA_DIR_{node}")))
        } else {
            let path = pod_dir.join("volumes").join(&volume.name);
            materialize(ctx, pod, pod_ip, volume, &path)
                .await
                .with_context(|| format!("volume {}", volume.name))?;
            path
        };
        volumes.insert(volume.name.clone(), path);
    }
    let mut plans = Vec::new();
    for container in &spec.containers {
        if cassandra_node.is_some() && container.name == "cassandra" {
            continue;
        }
        plans.push(
            plan(ctx, pod, container, &volumes, pod_dir, pod_ip)
                .await
                .with_context(|| format!("container {}", container.name))?,
        );
    }
    Ok(plans)
}

/// Writes volume `volume` of `pod` under `path`.
async fn materialize(
    ctx: &Ctx,
    pod: &Pod,
    pod_ip: &str,
    volume: &Volume,
    path: &Path,
) -> Result<()> {
    std::fs::create_dir_all(path)?;
    if volume.empty_dir.is_some() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
        return Ok(());
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let optional = source.optional.unwrap_or(false);
        if let Some(data) = secret_data(ctx, &name, optional).await? {
            write_items(path, &data, source.items.as_deref(), source.default_mode)?;
        }
        return Ok(());
    }
    if let Some(source) = &volume.config_map {
        if let Some(data) =
            config_map_data(ctx, &source.name, source.optional.unwrap_or(false)).await?
        {
            write_items(path, &data, source.items.as_deref(), source.default_mode)?;
        }
        return Ok(());
    }
    if let Some(source) = &volume.downward_api {
        for item in source.items.iter().flatten() {
            let Some(field) = &item.field_ref else {
                bail!("downwardAPI {}: only fieldRef is supported", item.path);
            };
            let value = field_value(pod, &field.field_path, pod_ip)?;
            write_file(
                &path.join(&item.path),
                value.as_bytes(),
                item.mode.or(source.default_mode),
            )?;
        }
        return Ok(());
    }
    if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let jwt = request_token(
                    ctx,
                    pod,
                    token.audience.clone(),
                    token.expiration_seconds.unwrap_or(3600),
                )
                .await?;
                write_file(
                    &path.join(&token.path),
                    jwt.as_bytes(),
                    projected.default_mode,
                )?;
            }
            if let Some(cm) = &source.config_map
                && let Some(data) =
                    config_map_data(ctx, &cm.name, cm.optional.unwrap_or(false)).await?
            {
                write_items(path, &data, cm.items.as_deref(), projected.default_mode)?;
            }
            if let Some(secret) = &source.secret
                && let Some(data) =
                    secret_data(ctx, &secret.name, secret.optional.unwrap_or(false)).await?
            {
                write_items(path, &data, secret.items.as_deref(), projected.default_mode)?;
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    let Some(field) = &item.field_ref else {
                        bail!("downwardAPI {}: only fieldRef is supported", item.path);
                    };
                    let value = field_value(pod, &field.field_path, pod_ip)?;
                    write_file(
                        &path.join(&item.path),
                        value.as_bytes(),
                        item.mode.or(projected.default_mode),
                    )?;
                }
            }
        }
        return Ok(());
    }
    bail!("volume type not supported by the process kubelet")
}

/// A token for the Pod's ServiceAccount from the TokenRequest API, bound to
/// the Pod (as the kubelet's projected token volume does).
async fn request_token(
    ctx: &Ctx,
    pod: &Pod,
    audience: Option<String>,
    seconds: i64,
) -> Result<String> {
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.map(|a| vec![a]),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let response = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ctx.namespace)
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for ServiceAccount {account}"))?;
    response
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow!("TokenRequest returned no token"))
}

async fn secret_data(
    ctx: &Ctx,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ctx.namespace);
    match api.get_opt(name).await? {
        Some(secret) => {
            let mut data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in secret.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            Ok(Some(data))
        }
        None if optional => Ok(None),
        None => bail!("secret \"{name}\" not found"),
    }
}

async fn config_map_data(
    ctx: &Ctx,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.namespace);
    match api.get_opt(name).await? {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            Ok(Some(data))
        }
        None if optional => Ok(None),
        None => bail!("configmap \"{name}\" not found"),
    }
}

/// Writes `data` (all keys, or only `items` at their paths) under `dir`.
fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<()> {
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let value = data
                    .get(&item.key)
                    .ok_or_else(|| anyhow!("key {} not found", item.key))?;
                write_file(&dir.join(&item.path), value, item.mode.or(default_mode))?;
            }
        }
        _ => {
            for (key, value) in data {
                write_file(&dir.join(key), value, default_mode)?;
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, content: &[u8], mode: Option<i32>) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, content)?;
    let mode = mode.unwrap_or(0o644) as u32;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A `fieldRef` value, as the downward API resolves it.
fn field_value(pod: &Pod, path: &str, pod_ip: &str) -> Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key).cloned())
                .unwrap_or_default(),
        )
    };
    if let Some(v) = keyed("metadata.labels['", &meta.labels) {
        return Ok(v);
    }
    if let Some(v) = keyed("metadata.annotations['", &meta.annotations) {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => "127.0.0.1".to_string(),
        other => bail!("fieldRef {other} is not supported by the process kubelet"),
    })
}

/// `$(NAME)` references expanded from `env`; `$$` escapes, unknown
/// references stay as written (the kubelet's rules).
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn set_env(env: &mut Vec<(String, String)>, name: &str, value: String) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_string(), value));
}

/// The container's environment, in the kubelet's order: the image's, the
/// service variables, `envFrom`, then `env` (later wins).
async fn container_env(
    ctx: &Ctx,
    pod: &Pod,
    c: &Container,
    pod_ip: &str,
) -> Result<Vec<(String, String)>> {
    let mut env = ctx.image.env.clone();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    set_env(&mut env, "HOSTNAME", pod_name);
    // The `kubernetes` Service's variables; with no Service network here
    // they name the apiserver's own loopback address.
    set_env(&mut env, "KUBERNETES_SERVICE_HOST", ctx.apiserver.0.clone());
    set_env(&mut env, "KUBERNETES_SERVICE_PORT", ctx.apiserver.1.clone());
    set_env(
        &mut env,
        "KUBERNETES_SERVICE_PORT_HTTPS",
        ctx.apiserver.1.clone(),
    );
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &from.secret_ref {
            secret_data(ctx, &s.name, s.optional.unwrap_or(false)).await?
        } else if let Some(cm) = &from.config_map_ref {
            config_map_data(ctx, &cm.name, cm.optional.unwrap_or(false)).await?
        } else {
            None
        };
        for (k, v) in data.unwrap_or_default() {
            set_env(
                &mut env,
                &format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for var in c.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            expand(value, &env)
        } else if let Some(from) = &var.value_from {
            if let Some(s) = &from.secret_key_ref {
                let data = secret_data(ctx, &s.name, s.optional.unwrap_or(false)).await?;
                match data.and_then(|d| d.get(&s.key).cloned()) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if s.optional.unwrap_or(false) => continue,
                    None => bail!("couldn't find key {} in Secret {}", s.key, s.name),
                }
            } else if let Some(cm) = &from.config_map_key_ref {
                let data = config_map_data(ctx, &cm.name, cm.optional.unwrap_or(false)).await?;
                match data.and_then(|d| d.get(&cm.key).cloned()) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if cm.optional.unwrap_or(false) => continue,
                    None => bail!("couldn't find key {} in ConfigMap {}", cm.key, cm.name),
                }
            } else if let Some(field) = &from.field_ref {
                field_value(pod, &field.field_path, pod_ip)?
            } else {
                bail!(
                    "env {}: valueFrom not supported by the process kubelet",
                    var.name
                );
            }
        } else {
            String::new()
        };
        set_env(&mut env, &var.name, value);
    }
    Ok(env)
}

async fn plan(
    ctx: &Ctx,
    pod: &Pod,
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
    pod_dir: &Path,
    pod_ip: &str,
) -> Result<Plan> {
    let env = container_env(ctx, pod, c, pod_ip).await?;
    // Kubernetes' rule: command replaces the entrypoint (and drops the
    // image's cmd); args replace cmd.
    let (entry, cmd) = match (&c.command, &c.args) {
        (Some(command), Some(args)) => (command.clone(), args.clone()),
        (Some(command), None) => (command.clone(), Vec::new()),
        (None, Some(args)) => (ctx.image.entrypoint.clone(), args.clone()),
        (None, None) => (ctx.image.entrypoint.clone(), ctx.image.cmd.clone()),
    };
    let mut argv: Vec<String> = entry
        .iter()
        .chain(cmd.iter())
        .map(|a| expand(a, &env))
        .collect();
    if argv.is_empty() {
        bail!("no command: neither the container nor the image sets one");
    }
    let program = resolve_program(&ctx.image.rootfs, &argv.remove(0), &env)?;

    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let (image_uid, image_gid) = parse_user(ctx.image.user.as_deref())?;
    let uid = sc
        .run_as_user
        .or(pod_sc.run_as_user)
        .map_or(image_uid, |u| u as u32);
    let gid = sc
        .run_as_group
        .or(pod_sc.run_as_group)
        .map_or(image_gid, |g| g as u32);
    if sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true) && uid == 0 {
        bail!("container has runAsNonRoot and image will run as root");
    }
    let mut groups: Vec<u32> = pod_sc
        .supplemental_groups
        .iter()
        .flatten()
        .map(|g| *g as u32)
        .collect();
    if let Some(fs_group) = pod_sc.fs_group {
        groups.push(fs_group as u32);
    }

    let container_dir = pod_dir.join("containers").join(&c.name);
    std::fs::create_dir_all(&container_dir)?;
    let termination_log = container_dir.join("termination-log");
    std::fs::write(&termination_log, b"")?;
    std::fs::set_permissions(&termination_log, std::fs::Permissions::from_mode(0o666))?;
    let hosts = container_dir.join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{pod_ip}\t{}\n",
            pod.metadata.name.clone().unwrap_or_default()
        ),
    )?;
    let mut binds = vec![
        Bind {
            source: hosts,
            target: "/etc/hosts".into(),
            read_only: true,
        },
        Bind {
            source: termination_log.clone(),
            target: c
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            read_only: false,
        },
    ];
    for dev in ["null", "zero", "random", "urandom"] {
        binds.push(Bind {
            source: format!("/dev/{dev}").into(),
            target: format!("/dev/{dev}"),
            read_only: false,
        });
    }
    // The host's /proc (there is no PID namespace to give a fresh one).
    binds.push(Bind {
        source: "/proc".into(),
        target: "/proc".into(),
        read_only: false,
    });
    if Path::new("/etc/resolv.conf").exists() {
        binds.push(Bind {
            source: "/etc/resolv.conf".into(),
            target: "/etc/resolv.conf".into(),
            read_only: true,
        });
    }
    for mount in c.volume_mounts.iter().flatten() {
        let mut source = volumes
            .get(&mount.name)
            .ok_or_else(|| anyhow!("volume mount {}: no such volume", mount.name))?
            .clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(sub);
        }
        binds.push(Bind {
            source,
            target: mount.mount_path.clone(),
            read_only: mount.read_only.unwrap_or(false),
        });
    }
    Ok(Plan {
        name: c.name.clone(),
        rootfs: ctx.image.rootfs.clone(),
        program,
        args: argv,
        env,
        binds,
        uid,
        gid,
        groups,
        read_only_root: sc.read_only_root_filesystem.unwrap_or(false),
        working_dir: c
            .working_dir
            .clone()
            .or_else(|| ctx.image.working_dir.clone())
            .unwrap_or_else(|| "/".into()),
        termination_log,
        fallback_to_logs: c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"),
    })
}

/// `uid[:gid]` (numeric only: the image has no /etc/passwd to look up).
fn parse_user(user: Option<&str>) -> Result<(u32, u32)> {
    let Some(user) = user else { return Ok((0, 0)) };
    let (u, g) = user.split_once(':').unwrap_or((user, "0"));
    Ok((
        u.parse()
            .with_context(|| format!("image user {user} is not numeric"))?,
        g.parse()
            .with_context(|| format!("image group {user} is not numeric"))?,
    ))
}

/// `program` as a path inside the image: absolute as given, else looked up
/// in the container's PATH within the root filesystem.
fn resolve_program(rootfs: &Path, program: &str, env: &[(String, String)]) -> Result<String> {
    if program.contains('/') {
        return Ok(program.to_string());
    }
    let path = env.iter().rev().find(|(k, _)| k == "PATH").map_or(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        |(_, v)| v.as_str(),
    );
    for dir in path.split(':') {
        let candidate = format!("{}/{program}", dir.trim_end_matches('/'));
        if rootfs.join(candidate.trim_start_matches('/')).is_file() {
            return Ok(candidate);
        }
    }
    bail!("executable file {program} not found in $PATH of the image")
}

// ---------------------------------------------------------------- spawning

fn cstring(path: impl AsRef<std::ffi::OsStr>) -> Result<CString> {
    Ok(CString::new(path.as_ref().as_bytes())?)
}

/// Creates `target` (relative to `upper`) as the kind of `source`.
fn mount_point(upper: &Path, lower: &Path, source: &Path, target: &str) -> Result<()> {
    let rel = target.trim_start_matches('/');
    if lower.join(rel).exists() {
        return Ok(());
    }
    let at = upper.join(rel);
    if source.is_dir() {
        std::fs::create_dir_all(&at)?;
    } else {
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&at, b"")?;
    }
    Ok(())
}

/// Starts the container: overlay root, bind mounts, chroot, user, exec.
fn spawn(plan: &Plan, log: &Path) -> Result<tokio::process::Child> {
    let base = log
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("log path"))?
        .join("containers")
        .join(&plan.name);
    let (upper, work, root) = (base.join("upper"), base.join("work"), base.join("root"));
    // A fresh writable layer for each run, as a runtime gives a new container.
    let _ = std::fs::remove_dir_all(&upper);
    let _ = std::fs::remove_dir_all(&work);
    for d in [&upper, &work, &root] {
        std::fs::create_dir_all(d)?;
    }
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755))?;
    let image_root = &plan.rootfs;
    for bind in &plan.binds {
        mount_point(&upper, image_root, &bind.source, &bind.target)?;
    }
    if !image_root.join("tmp").exists() {
        std::fs::create_dir_all(upper.join("tmp"))?;
        std::fs::set_permissions(upper.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    }

    let overlay_opts = cstring(format!(
        "lowerdir={},upperdir={},workdir={}",
        image_root.display(),
        upper.display(),
        work.display()
    ))?;
    let root_c = cstring(&root)?;
    let overlay = cstring("overlay")?;
    let slash = cstring("/")?;
    let hostname = cstring(
        plan.env
            .iter()
            .find(|(k, _)| k == "HOSTNAME")
            .map_or("pod", |(_, v)| v.as_str()),
    )?;
    let binds: Vec<(CString, CString, bool)> = plan
        .binds
        .iter()
        .map(|b| {
            Ok((
                cstring(&b.source)?,
                cstring(root.join(b.target.trim_start_matches('/')))?,
                b.read_only,
            ))
        })
        .collect::<Result<_>>()?;
    let workdir = cstring(&plan.working_dir)?;
    let (uid, gid, groups, read_only_root) =
        (plan.uid, plan.gid, plan.groups.clone(), plan.read_only_root);

    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let mut command = std::process::Command::new(&plan.program);
    command
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: only async-signal-safe system calls on memory prepared
    // before fork; no allocation.
    unsafe {
        command.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
            ))?;
            check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
            check(libc::sethostname(
                hostname.as_ptr(),
                hostname.as_bytes().len(),
            ))?;
            let none = std::ptr::null();
            check(libc::mount(
                none,
                slash.as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                overlay.as_ptr(),
                root_c.as_ptr(),
                overlay.as_ptr(),
                0,
                overlay_opts.as_ptr().cast(),
            ))?;
            for (source, target, read_only) in &binds {
                check(libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                if *read_only {
                    check(libc::mount(
                        none,
                        target.as_ptr(),
                        none,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ))?;
                }
            }
            if read_only_root {
                check(libc::mount(
                    none,
                    root_c.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                ))?;
            }
            check(libc::chroot(root_c.as_ptr()))?;
            check(libc::chdir(workdir.as_ptr()))?;
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))?;
            Ok(())
        });
    }
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {} in the image", plan.program))?;
    Ok(child)
}
