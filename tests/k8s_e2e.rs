//! End to end on Kubernetes: `helm install` of the charts → Job (or
//! CronJob) → Pod → container → environment → binary → backup or restore
//! of the real 3-node cluster to the real MinIO.
//!
//! Real: the kube-apiserver, the job, cronjob and garbage-collector
//! controllers (scripts/k8s.sh), helm and kubectl, the charts and their
//! RBAC (the binary talks to the apiserver with its ServiceAccount's token),
//! the image `make image` built, Cassandra, MinIO. Fakes, named as such:
//! the process kubelet (tests/common/process_kubelet.rs), which runs the
//! containers as processes from the image, and the Management API
//! (tests/common/fake_management_api.rs), which the local nodes lack.
//!
//! The Cassandra pods are built from the documented sidecar,
//! `charts/kassette-agent/sidecar/cassandradatacenter-podtemplatespec.yaml`,
//! plus what cass-operator adds (its labels, a `cassandra` container, the
//! `server-data` claim). What differs on one machine is substituted, and
//! only that (see [`cassandra_pod`]): every pod shares the host's network,
//! so the agent's listen address and the Management API URL name the
//! node's own loopback address and a port free for this test; the JBOD
//! node lists its two data directories; and the agent runs as the local
//! nodes' file owner instead of cass-operator's uid 999.

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use common::fake_management_api::FakeManagementApi;
use common::process_kubelet::{FakeProcessKubelet, Image};
use common::{k8s, repo, setting};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

const NODES: usize = 3;
const SIDECAR: &str = "charts/kassette-agent/sidecar/cassandradatacenter-podtemplatespec.yaml";
/// The Secret holding the storage credentials, under K8ssandra's key name.
const STORAGE_SECRET: &str = "medusa-bucket-key";

/// One test's world: a namespace with the agent chart, three Cassandra
/// pods run by a process kubelet, a bucket and its credentials Secret.
struct World {
    client: Client,
    ns: String,
    kubelet: FakeProcessKubelet,
    bucket: String,
    prefix: String,
    agent_port: u16,
    _management: Vec<FakeManagementApi>,
    cluster: String,
    datacenter: String,
}

impl World {
    async fn start() -> Self {
        let client = k8s::client().await;
        let ns = k8s::namespace(&client).await;
        let kubelet = FakeProcessKubelet::start(client.clone(), &ns, Image::built()).await;
        eprintln!("process kubelet ready in {:?}", kubelet.startup);
        let bucket = common::new_s3_bucket(&setting("KASSETTE_TEST_S3_ENDPOINT")).await;
        let world = Self {
            client,
            ns,
            kubelet,
            bucket,
            prefix: "k8s/cassandra".into(),
            agent_port: free_port_on_every_node(),
            _management: Vec::new(),
            cluster: setting("KASSETTE_TEST_CASSANDRA_CLUSTER"),
            datacenter: setting("KASSETTE_TEST_CASSANDRA_DC"),
        };
        world
            .storage_secret(&s3_credentials_ini(
                &setting("KASSETTE_TEST_S3_ACCESS_KEY"),
                &setting("KASSETTE_TEST_S3_SECRET_KEY"),
            ))
            .await;
        world
    }

    /// [`World::start`] plus the agent chart and the three Cassandra pods,
    /// Ready.
    async fn with_datacenter() -> Self {
        let t0 = Instant::now();
        let mut world = Self::start().await;
        // The agents' token and TLS Secrets, as a user installs them.
        world.helm_install("agent", "charts/kassette-agent", &[]);
        let management_port = free_port_on_every_node();
        let pods = Api::<Pod>::namespaced(world.client.clone(), &world.ns);
        for node in 1..=NODES {
            let control = format!("127.0.0.{node}:{management_port}");
            world
                ._management
                .push(FakeManagementApi::start_at(node, &control).await);
            let pod = cassandra_pod(&world, node, &format!("http://{control}"));
            world
                .kubelet
                .map_cassandra_pod(pod.metadata.name.as_deref().unwrap(), node);
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("create Cassandra pod");
        }
        world.wait_cassandra_pods_ready().await;
        eprintln!("datacenter of 3 pods ready in {:?}", t0.elapsed());
        world
    }

    async fn storage_secret(&self, ini: &str) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(STORAGE_SECRET.into()),
                ..Default::default()
            },
            string_data: Some(BTreeMap::from([(
                "medusa_s3_credentials".to_string(),
                ini.to_string(),
            )])),
            ..Default::default()
        };
        let secrets = Api::<Secret>::namespaced(self.client.clone(), &self.ns);
        let _ = secrets.delete(STORAGE_SECRET, &Default::default()).await;
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create the storage Secret");
    }

    async fn wait_cassandra_pods_ready(&self) {
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.ns);
        let selector = format!(
            "cassandra.datastax.com/cluster={},cassandra.datastax.com/datacenter={}",
            label_value(&self.cluster),
            self.datacenter
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .expect("list pods");
            let ready = list.items.iter().filter(|p| is_ready(p)).count();
            if ready == NODES {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Cassandra pods not Ready after 60 s ({ready} of {NODES}):\n{}",
                self.kubelet.logs_matching("")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The values every kassette chart install here shares: the datacenter,
    /// the store, the image (the one `make image` built), short pass
    /// intervals.
    fn common_values(&self) -> Vec<(&'static str, String)> {
        let image = Image::built().reference;
        let (repository, tag) = image.rsplit_once(':').unwrap_or((&image, "latest"));
        vec![
            ("cluster", self.cluster.clone()),
            ("datacenter", self.datacenter.clone()),
            ("agent.port", self.agent_port.to_string()),
            ("storage.provider", "s3".into()),
            ("storage.bucket", self.bucket.clone()),
            ("storage.prefix", self.prefix.clone()),
            ("storage.endpoint", setting("KASSETTE_TEST_S3_ENDPOINT")),
            ("storage.region", setting("KASSETTE_TEST_S3_REGION")),
            ("storage.allowHttp", "true".into()),
            ("storage.existingSecret", STORAGE_SECRET.into()),
            ("image.repository", repository.into()),
            ("image.tag", tag.into()),
            ("pass.lockTtl", "5s".into()),
            ("pass.progressInterval", "1s".into()),
        ]
    }

    fn helm_install(&self, release: &str, chart: &str, values: &[(&str, String)]) {
        let chart = repo().join(chart);
        let mut args: Vec<String> = vec![
            "install".into(),
            release.into(),
            chart.display().to_string(),
            "--namespace".into(),
            self.ns.clone(),
            "--kubeconfig".into(),
            setting("KUBECONFIG"),
            "--wait=false".into(),
        ];
        for (k, v) in values {
            args.push("--set-string".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run(setting("KASSETTE_TEST_HELM"), &args);
    }

    /// `helm install` of the backup or restore chart with the shared values
    /// and `extra` (typed: `--set` so numbers and booleans stay so).
    fn install(&self, release: &str, chart: &str, extra: &[(&str, String)]) {
        let chart_path = repo().join(chart);
        let mut args: Vec<String> = vec![
            "install".into(),
            release.into(),
            chart_path.display().to_string(),
            "--namespace".into(),
            self.ns.clone(),
            "--kubeconfig".into(),
            setting("KUBECONFIG"),
            "--wait=false".into(),
        ];
        // helm applies --set-string after --set: a value `extra` overrides
        // must not be given twice.
        for (k, v) in self
            .common_values()
            .into_iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        {
            let typed = matches!(k, "agent.port" | "storage.allowHttp");
            args.push(if typed { "--set" } else { "--set-string" }.into());
            args.push(format!("{k}={v}"));
        }
        for (k, v) in extra {
            args.push("--set".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run(setting("KASSETTE_TEST_HELM"), &args);
    }

    /// The Jobs of helm release `release` (or of its CronJob).
    async fn jobs(&self, release: &str) -> Vec<Job> {
        Api::<Job>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
            .await
            .expect("list jobs")
            .items
    }

    async fn only_job(&self, release: &str) -> String {
        let jobs = self.jobs(release).await;
        assert_eq!(jobs.len(), 1, "release {release} has one Job");
        jobs[0].metadata.name.clone().unwrap()
    }

    /// `kubectl wait --for=condition=<condition> job/<job>`; on failure,
    /// panics with what the Job's pods wrote.
    async fn kubectl_wait(&self, job: &str, condition: &str, timeout: u64) {
        let out = kubectl(&[
            "wait",
            &format!("--for=condition={condition}"),
            &format!("job/{job}"),
            "--namespace",
            &self.ns,
            &format!("--timeout={timeout}s"),
        ])
        .await;
        assert!(
            out.status.success(),
            "kubectl wait --for=condition={condition} job/{job}: {}\n{}\n--- pods:\n{}\n--- events:\n{}",
            String::from_utf8_lossy(&out.stderr),
            kubectl_text(&["get", "pods,jobs", "-o", "wide", "--namespace", &self.ns]).await,
            self.kubelet.logs_matching(job),
            kubectl_text(&["get", "events", "--namespace", &self.ns]).await
        );
    }

    /// kassette's own Events about object `name` (source component
    /// `kassette`, not the Job controller's), as (type, reason, message),
    /// oldest first.
    async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let mut events: Vec<Event> = Api::<Event>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| {
                e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("kassette")
                    || e.reporting_component.as_deref() == Some("kassette")
            })
            .collect();
        events.sort_by_key(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0)
                .or(e.first_timestamp.as_ref().map(|t| t.0))
        });
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// `kassette <args>` on the host against this world's store (to read
    /// what the Jobs wrote, as an operator would).
    async fn kassette(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut command = common::dc::kassette_command();
        command
            .args(args)
            .env("KASSETTE_STORAGE_PROVIDER", "s3")
            .env("KASSETTE_STORAGE_BUCKET", &self.bucket)
            .env("KASSETTE_STORAGE_PREFIX", &self.prefix)
            .env(
                "KASSETTE_STORAGE_ENDPOINT",
                setting("KASSETTE_TEST_S3_ENDPOINT"),
            )
            .env(
                "KASSETTE_STORAGE_REGION",
                setting("KASSETTE_TEST_S3_REGION"),
            )
            .env(
                "KASSETTE_STORAGE_CREDENTIALS_FILE",
                setting("KASSETTE_TEST_S3_CREDENTIALS_FILE"),
            )
            .env("KASSETTE_STORAGE_ALLOW_HTTP", "true")
            .env("KASSETTE_CLUSTER", &self.cluster)
            .env("KASSETTE_DATACENTER", &self.datacenter)
            .envs(extra.iter().copied());
        command.output().await.expect("run kassette")
    }

    /// `kassette list --json`.
    async fn backups(&self) -> Vec<serde_json::Value> {
        let out = self.kassette(&["list", "--json"], &[]).await;
        common::dc::assert_success(&out, "kassette list");
        serde_json::from_slice(&out.stdout).expect("list --json is JSON")
    }

    /// Kills and reaps the pods' processes; the rest is cleaned on drop.
    async fn stop(self) {
        self.kubelet.stop().await;
    }
}

impl Drop for World {
    /// The namespace and the agents' state directories go, also when a
    /// test fails (the process kubelet removes its Node and Pods).
    fn drop(&mut self) {
        for node in 1..=NODES {
            let dir =
                std::path::PathBuf::from(setting(&format!("KASSETTE_TEST_CASSANDRA_DIR_{node}")))
                    .join(state_dir_name(&self.ns));
            let _ = std::fs::remove_dir_all(dir);
        }
        let ns = self.ns.clone();
        common::process_kubelet::in_own_runtime(move |client| async move {
            k8s::delete_namespace(&client, &ns).await;
        });
    }
}

/// An AWS credentials INI, as K8ssandra's `medusa_s3_credentials` holds.
fn s3_credentials_ini(access_key: &str, secret_key: &str) -> String {
    format!("[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n")
}

/// cass-operator's cleaned cluster name, as it labels pods.
fn label_value(cluster: &str) -> String {
    cluster.to_lowercase().replace([' ', '_'], "-")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The Pod cass-operator would make for node `node` (ordinal `node - 1` of
/// rack1's StatefulSet) from the documented `spec.podTemplateSpec`.
///
/// Filled in as the snippet tells a user to (the values `helm install` of
/// the agent chart prints): the image (the one `make image` built) and the
/// storage settings of this test's releases (bucket, prefix, endpoint,
/// plain http, region).
///
/// Substituted because every pod here shares one machine, and only that:
/// - `KASSETTE_AGENT_LISTEN`: `127.0.0.N:<port>` instead of `0.0.0.0:7300`
///   (host network: the pod's own IP, and a port free for this test);
/// - `KASSETTE_MANAGEMENT_API_URL`: node N's fake Management API at
///   `http://127.0.0.N:<port>` instead of `http://localhost:8080`;
/// - on the JBOD node, `KASSETTE_DATA_DIRS`: its two data directories
///   under `/var/lib/cassandra` (`data1`, `data2`) instead of `data`;
/// - `KASSETTE_AGENT_STATE_DIR`: `/var/lib/cassandra/.kassette-<namespace>`
///   instead of the default `/var/lib/cassandra/.kassette`, because the
///   test datacenters of concurrent tests share each node's volume;
/// - the agent's `runAsUser`/`runAsGroup`: the owner of the node's files
///   instead of cass-operator's 999 (`runAsNonRoot` dropped when that
///   owner is root, as it is here).
///
/// Added as cass-operator adds them: its labels, the `cassandra`
/// container's image (the process kubelet maps it to the running node) and
/// the `server-data` volume from the StatefulSet's claim template (mapped
/// to the node's directory).
fn cassandra_pod(world: &World, node: usize, management_url: &str) -> Pod {
    let text = std::fs::read_to_string(repo().join(SIDECAR))
        .unwrap_or_else(|e| panic!("read {SIDECAR}: {e}"));
    let mut template: serde_json::Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {SIDECAR}: {e}"));
    let cluster = label_value(&world.cluster);
    let dc = &world.datacenter;
    let name = format!("{cluster}-{dc}-rack1-sts-{}", node - 1);
    let data_dirs = common::cassandra_data_dirs(node);
    let node_dir = setting(&format!("KASSETTE_TEST_CASSANDRA_DIR_{node}"));
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(node_dir).expect("node dir"));
    let spec = template["spec"].as_object_mut().expect("template spec");
    let containers = spec
        .entry("containers")
        .or_insert_with(|| serde_json::json!([]))
        .as_array_mut()
        .unwrap();
    if !containers.iter().any(|c| c["name"] == "cassandra") {
        containers.insert(0, serde_json::json!({"name": "cassandra"}));
    }
    for container in containers.iter_mut() {
        if container["name"] == "cassandra" {
            // cass-operator merges its own container into this one.
            container["image"] = "cassandra:5.0".into();
            continue;
        }
        let env = container
            .as_object_mut()
            .unwrap()
            .entry("env")
            .or_insert_with(|| serde_json::json!([]))
            .as_array_mut()
            .unwrap();
        let mut substitute = |name: &str, value: String| {
            env.retain(|e| e["name"] != name);
            env.push(serde_json::json!({"name": name, "value": value}));
        };
        // The user's settings, as the snippet asks.
        substitute("KASSETTE_STORAGE_BUCKET", world.bucket.clone());
        substitute("KASSETTE_STORAGE_PREFIX", world.prefix.clone());
        substitute(
            "KASSETTE_STORAGE_ENDPOINT",
            setting("KASSETTE_TEST_S3_ENDPOINT"),
        );
        substitute("KASSETTE_STORAGE_ALLOW_HTTP", "true".into());
        substitute(
            "KASSETTE_STORAGE_REGION",
            setting("KASSETTE_TEST_S3_REGION"),
        );
        // One machine.
        substitute(
            "KASSETTE_AGENT_LISTEN",
            format!("127.0.0.{node}:{}", world.agent_port),
        );
        substitute("KASSETTE_MANAGEMENT_API_URL", management_url.to_string());
        substitute(
            "KASSETTE_AGENT_STATE_DIR",
            format!("/var/lib/cassandra/{}", state_dir_name(&world.ns)),
        );
        if data_dirs.len() > 1 {
            let dirs: Vec<String> = data_dirs
                .iter()
                .map(|d| {
                    format!(
                        "/var/lib/cassandra/{}",
                        d.file_name().unwrap().to_string_lossy()
                    )
                })
                .collect();
            substitute("KASSETTE_DATA_DIRS", dirs.join(","));
        }
        container["image"] = Image::built().reference.into();
        substitute_user(&mut container["securityContext"], owner);
    }
    if spec.contains_key("securityContext") {
        substitute_user(&mut spec["securityContext"], owner);
        if owner != 0 {
            spec["securityContext"]["fsGroup"] = owner.into();
        } else if let Some(sc) = spec["securityContext"].as_object_mut() {
            sc.remove("fsGroup");
        }
    }
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| serde_json::json!([]))
        .as_array_mut()
        .unwrap();
    volumes.retain(|v| v["name"] != "server-data");
    volumes.push(serde_json::json!({
        "name": "server-data",
        "persistentVolumeClaim": {"claimName": format!("server-data-{name}")}
    }));
    let labels = serde_json::json!({
        "app.kubernetes.io/managed-by": "cass-operator",
        "cassandra.datastax.com/cluster": cluster,
        "cassandra.datastax.com/datacenter": dc,
        "cassandra.datastax.com/rack": "rack1",
        "cassandra.datastax.com/node-state": "Started",
        "statefulset.kubernetes.io/pod-name": name,
    });
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": template["spec"],
    });
    serde_json::from_value(pod).expect("a Pod")
}

/// This test's agent state directory on each node's volume.
fn state_dir_name(ns: &str) -> String {
    format!(".kassette-{ns}")
}

/// The substituted user of a securityContext (see [`cassandra_pod`]).
fn substitute_user(sc: &mut serde_json::Value, owner: u32) {
    if !sc.is_object() {
        *sc = serde_json::json!({});
    }
    let sc = sc.as_object_mut().unwrap();
    sc.insert("runAsUser".into(), owner.into());
    sc.insert("runAsGroup".into(), owner.into());
    if owner == 0 {
        sc.remove("runAsNonRoot");
    }
}

/// A port free on 127.0.0.1, .2 and .3 alike.
fn free_port_on_every_node() -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().unwrap().port();
        if (2..=NODES).all(|n| std::net::TcpListener::bind(format!("127.0.0.{n}:{port}")).is_ok()) {
            return port;
        }
    }
    panic!("no port free on every node address");
}

async fn kubectl(args: &[&str]) -> Output {
    tokio::process::Command::new(setting("KASSETTE_TEST_KUBECTL"))
        .args(args)
        .arg("--kubeconfig")
        .arg(setting("KUBECONFIG"))
        .output()
        .await
        .expect("run kubectl")
}

async fn kubectl_text(args: &[&str]) -> String {
    let out = kubectl(args).await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A keyspace with table `t` of `rows` rows, flushed so a snapshot holds
/// them.
async fn keyspace_with_rows(rows: i32) -> String {
    let session = common::cql_cluster().await;
    let ks = common::create_keyspace(&session, "k8s_").await;
    common::create_table_t(&session, &ks, rows).await;
    common::dc::nodetool_everywhere(&["flush", &ks]);
    ks
}

fn reasons(events: &[(String, String, String)]) -> Vec<&str> {
    events.iter().map(|(_, r, _)| r.as_str()).collect()
}

// ---------------------------------------------------------------- tests

/// The main path: `helm install` of the backup chart, the Job runs through
/// the process kubelet, completes, the backup is listed complete, verifies
/// deeply, and the Job tells its story in Events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_backup_job_completes_and_the_backup_verifies() {
    let t0 = Instant::now();
    let world = World::with_datacenter().await;
    let ks = keyspace_with_rows(50).await;
    let name = common::unique("k8s-backup-");
    world.install(
        "nightly",
        "charts/kassette-backup",
        &[
            ("backupName", name.clone()),
            ("keyspaces", format!("{{{ks}}}")),
        ],
    );
    let job = world.only_job("nightly").await;
    world.kubectl_wait(&job, "complete", 180).await;

    // The index lists complete backups only; `status` exits 1 for any
    // other.
    let listed = world.backups().await;
    assert!(
        listed.iter().any(|b| b["name"] == name.as_str()),
        "backup {name} not listed: {listed:?}"
    );
    let status = world
        .kassette(&["status"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    common::dc::assert_success(&status, "status of the backup");
    let verified = world
        .kassette(&["verify", "--deep"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    common::dc::assert_success(&verified, "verify --deep");

    let events = world.events(&job).await;
    let seen = reasons(&events);
    for reason in ["Started", "Snapshot", "Upload", "Commit", "Completed"] {
        assert!(
            seen.contains(&reason),
            "no {reason} Event on job/{job}: {events:#?}"
        );
    }
    assert!(
        !events.iter().any(|(t, _, _)| t == "Warning"),
        "warnings on a good run: {events:#?}"
    );
    world.stop().await;
    eprintln!("backup e2e took {:?}", t0.elapsed());
}

/// `schedule: "*/1 * * * *"`: the real CronJob controller starts a Job at
/// the minute, the backup completes, and no second Job runs beside it
/// (`concurrencyPolicy: Forbid`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_scheduled_backup_runs_from_the_cronjob_controller() {
    let t0 = Instant::now();
    let world = World::with_datacenter().await;
    let ks = keyspace_with_rows(20).await;
    world.install(
        "hourly",
        "charts/kassette-backup",
        &[
            ("schedule", "*/1 * * * *".into()),
            ("keyspaces", format!("{{{ks}}}")),
        ],
    );
    // The first run starts at the next minute boundary (up to 60 s away);
    // meanwhile and until it completes, at most one Job is active.
    let jobs = Api::<Job>::namespaced(world.client.clone(), &world.ns);
    let deadline = Instant::now() + Duration::from_secs(200);
    let completed = loop {
        let list = world.jobs("hourly").await;
        let active = list
            .iter()
            .filter(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0)
            .count();
        assert!(active <= 1, "{active} Jobs of the CronJob run at once");
        let done = list.iter().find(|j| has_condition(j, "Complete"));
        if let Some(job) = done {
            break job.metadata.name.clone().unwrap();
        }
        if let Some(failed) = list.iter().find(|j| has_condition(j, "Failed")) {
            let name = failed.metadata.name.clone().unwrap();
            panic!(
                "scheduled Job {name} failed:\n{}\n{:#?}",
                world.kubelet.logs_matching(&name),
                world.events(&name).await
            );
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled Job completed within 200 s: {:?}\n{}",
            list.iter().map(|j| &j.metadata.name).collect::<Vec<_>>(),
            kubectl_text(&["get", "cronjobs,jobs,pods", "--namespace", &world.ns]).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let job = jobs.get(&completed).await.expect("the completed Job");
    let owner = job
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.kind == "CronJob")
        .expect("the Job is owned by the CronJob");
    assert_eq!(owner.name, "hourly-kassette-backup");
    // The scheduled run named its backup itself (no backupName with a
    // schedule) and the backup is complete.
    let listed = world.backups().await;
    assert!(!listed.is_empty(), "the scheduled run's backup is listed");
    let name = listed[0]["name"].as_str().unwrap().to_string();
    let status = world
        .kassette(&["status"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    common::dc::assert_success(&status, "status of the scheduled backup");
    world.stop().await;
    eprintln!("schedule e2e took {:?}", t0.elapsed());
}

fn has_condition(job: &Job, condition: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == condition && c.status == "True"))
}

/// Restore through the chart: back up a dataset, delete rows and drop a
/// table, `helm install` of the restore chart with `backupName: latest`;
/// the Job completes and every row is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_restore_job_brings_every_row_back() {
    use common::dataset::Dataset;
    let t0 = Instant::now();
    let world = World::with_datacenter().await;
    let session = common::cql_cluster().await;
    let data = Dataset::create(&session).await;
    data.write(&session, 0, 200, 64).await;
    data.flush();
    let keyspaces = format!("{{{},{}}}", data.main, data.other);
    world.install(
        "before",
        "charts/kassette-backup",
        &[
            ("backupName", common::unique("k8s-restore-")),
            ("keyspaces", keyspaces.clone()),
        ],
    );
    let job = world.only_job("before").await;
    world.kubectl_wait(&job, "complete", 180).await;
    eprintln!("restore e2e: backup Job complete at {:?}", t0.elapsed());

    // Damage: rows deleted from one table, another table dropped.
    for id in 0..100 {
        session
            .query_unpaged(
                format!("DELETE FROM {}.users WHERE id = {id}", data.main),
                (),
            )
            .await
            .expect("delete a row");
    }
    session
        .query_unpaged(format!("DROP TABLE {}.items", data.other), ())
        .await
        .expect("drop table");

    world.install(
        "restore",
        "charts/kassette-restore",
        &[("backupName", "latest".into()), ("keyspaces", keyspaces)],
    );
    let job = world.only_job("restore").await;
    world.kubectl_wait(&job, "complete", 240).await;
    eprintln!("restore e2e: restore Job complete at {:?}", t0.elapsed());

    assert_eq!(
        data.users(&session).await,
        Dataset::expected_users(0, 200, 64)
    );
    assert_eq!(data.items(&session).await, Dataset::expected_items(0, 200));
    assert_eq!(
        data.events(&session).await,
        Dataset::expected_events(0, 200)
    );
    let events = world.events(&job).await;
    assert!(
        reasons(&events).contains(&"Completed"),
        "no Completed Event on the restore Job: {events:#?}"
    );
    for keyspace in data.keyspaces() {
        let _ = session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
            .await;
    }
    world.stop().await;
    eprintln!("restore e2e took {:?}", t0.elapsed());
}

/// Wrong storage credentials: each pod exits 1, the Job controller retries
/// up to `backoffLimit` and marks the Job Failed, and the Job's Warning
/// Event says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_backup_with_wrong_credentials_fails_after_backoff_limit() {
    let t0 = Instant::now();
    let world = World::with_datacenter().await;
    world
        .storage_secret(&s3_credentials_ini("not-a-key", "not-a-secret"))
        .await;
    let ks = keyspace_with_rows(5).await;
    world.install(
        "badcreds",
        "charts/kassette-backup",
        &[
            ("backupName", common::unique("k8s-denied-")),
            ("keyspaces", format!("{{{ks}}}")),
            ("job.backoffLimit", "1".into()),
        ],
    );
    let job = world.only_job("badcreds").await;
    world.kubectl_wait(&job, "failed", 180).await;

    let job_object = Api::<Job>::namespaced(world.client.clone(), &world.ns)
        .get(&job)
        .await
        .expect("the Job");
    let failed = job_object
        .status
        .as_ref()
        .and_then(|s| s.failed)
        .unwrap_or(0);
    assert_eq!(failed, 2, "backoffLimit 1: two pods ran and failed");
    let pods = Api::<Pod>::namespaced(world.client.clone(), &world.ns)
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("list the Job's pods");
    assert_eq!(pods.items.len(), 2);
    for pod in &pods.items {
        let code = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        assert_eq!(code, Some(1), "pod {:?} exits 1", pod.metadata.name);
    }
    let events = world.events(&job).await;
    let warning = events
        .iter()
        .find(|(t, r, _)| t == "Warning" && r == "Failed")
        .unwrap_or_else(|| panic!("no Failed Warning on job/{job}: {events:#?}"));
    let message = warning.2.to_lowercase();
    assert!(
        message.contains("denied")
            || message.contains("credential")
            || message.contains("access key"),
        "the Event says why: {}",
        warning.2
    );
    world.stop().await;
    eprintln!("wrong-credentials e2e took {:?}", t0.elapsed());
}

/// One verb taken from the chart's Role after install (`list` on pods):
/// the Job fails, and what the binary reports names the verb and the
/// resource it could not use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_backup_without_a_role_verb_fails_naming_it() {
    use k8s_openapi::api::rbac::v1::Role;
    let t0 = Instant::now();
    let world = World::with_datacenter().await;
    let ks = keyspace_with_rows(5).await;
    // Rendered and applied in two steps so the Role is patched before the
    // Job exists: the chart with a schedule nobody reaches (suspended), then
    // the patch, then a manual run from the CronJob, as `kubectl create job
    // --from=cronjob/...` does.
    world.install(
        "noverb",
        "charts/kassette-backup",
        &[
            ("schedule", "0 0 1 1 *".into()),
            ("cronJob.suspend", "true".into()),
            ("keyspaces", format!("{{{ks}}}")),
            ("job.backoffLimit", "0".into()),
        ],
    );
    let roles = Api::<Role>::namespaced(world.client.clone(), &world.ns);
    let role_name = "noverb-kassette-backup";
    let mut role = roles.get(role_name).await.expect("the chart's Role");
    let rules = role.rules.as_mut().expect("rules");
    let pods_rule = rules
        .iter_mut()
        .find(|r| r.resources.iter().flatten().any(|r| r == "pods"))
        .expect("a pods rule");
    assert!(
        pods_rule.verbs.contains(&"list".to_string()),
        "{pods_rule:?}"
    );
    pods_rule.verbs.retain(|v| v != "list");
    roles
        .patch(
            role_name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"rules": role.rules})),
        )
        .await
        .expect("patch the Role");
    let out = kubectl(&[
        "create",
        "job",
        "noverb-run",
        "--from=cronjob/noverb-kassette-backup",
        "--namespace",
        &world.ns,
    ])
    .await;
    common::dc::assert_success(&out, "kubectl create job --from=cronjob");
    world.kubectl_wait("noverb-run", "failed", 120).await;

    let logs = world.kubelet.logs_matching("noverb-run");
    assert!(
        logs.contains("cannot list resource \"pods\""),
        "the failure names the verb and the resource:\n{logs}"
    );
    let events = world.events("noverb-run").await;
    let warning = events
        .iter()
        .find(|(t, r, _)| t == "Warning" && r == "Failed")
        .unwrap_or_else(|| panic!("no Failed Warning on the Job: {events:#?}"));
    assert!(
        warning.2.contains("list") && warning.2.contains("pods"),
        "the Event names what it could not do: {}",
        warning.2
    );
    world.stop().await;
    eprintln!("missing-verb e2e took {:?}", t0.elapsed());
}

/// The workload identity path: no credentials Secret, the ServiceAccount
/// annotated for IRSA, credentials in the container's environment.
///
/// Proven: with `storage.existingSecret` empty the chart mounts no
/// credentials and sets no credentials file, renders the annotation on the
/// ServiceAccount the pod runs as, and the binary takes its credentials from
/// the AWS SDK's default chain (here its environment step) and backs up.
/// Not proven: the web-identity step itself — EKS's pod identity webhook
/// injects `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` and the SDK
/// exchanges the projected token with STS; no webhook or STS runs here, and
/// MinIO's STS would need an OpenID provider. The same default chain reads
/// both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_backup_with_workload_identity_takes_credentials_from_the_environment() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let t0 = Instant::now();
    let world = World::with_datacenter().await;
    Api::<Secret>::namespaced(world.client.clone(), &world.ns)
        .delete(STORAGE_SECRET, &Default::default())
        .await
        .expect("no credentials Secret");
    let ks = keyspace_with_rows(10).await;
    let name = common::unique("k8s-irsa-");
    let role_arn = "arn:aws:iam::123456789012:role/kassette-backup";
    world.install(
        "irsa",
        "charts/kassette-backup",
        &[
            ("backupName", name.clone()),
            ("keyspaces", format!("{{{ks}}}")),
            ("storage.existingSecret", "".into()),
            (
                "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn",
                role_arn.into(),
            ),
            ("extraEnv[0].name", "AWS_ACCESS_KEY_ID".into()),
            ("extraEnv[0].value", setting("KASSETTE_TEST_S3_ACCESS_KEY")),
            ("extraEnv[1].name", "AWS_SECRET_ACCESS_KEY".into()),
            ("extraEnv[1].value", setting("KASSETTE_TEST_S3_SECRET_KEY")),
        ],
    );
    let job = world.only_job("irsa").await;
    let job_object = Api::<Job>::namespaced(world.client.clone(), &world.ns)
        .get(&job)
        .await
        .expect("the Job");
    let pod_spec = job_object.spec.unwrap().template.spec.unwrap();
    let env = pod_spec.containers[0].env.clone().unwrap_or_default();
    assert!(
        !env.iter()
            .any(|e| e.name == "KASSETTE_STORAGE_CREDENTIALS_FILE"),
        "no credentials file without a Secret"
    );
    let account = pod_spec.service_account_name.expect("a ServiceAccount");
    let sa = Api::<ServiceAccount>::namespaced(world.client.clone(), &world.ns)
        .get(&account)
        .await
        .expect("the chart's ServiceAccount");
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some(role_arn)
    );
    world.kubectl_wait(&job, "complete", 180).await;
    let status = world
        .kassette(&["status"], &[("KASSETTE_BACKUP_NAME", &name)])
        .await;
    common::dc::assert_success(&status, "status of the backup");
    world.stop().await;
    eprintln!("workload-identity e2e took {:?}", t0.elapsed());
}

/// The process kubelet itself: a Pod's container runs from the image with
/// its args, env (a Secret key, the downward API) and volumes, and its
/// exit code becomes the Pod's phase and container status, which the Job
/// controller reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_kubelet_runs_pods_from_the_image_and_reports_exit_codes() {
    let world = World::start().await;
    let pods = Api::<Pod>::namespaced(world.client.clone(), &world.ns);
    let pod = |name: &str, args: &[&str]| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": true},
                "containers": [{
                    "name": "kassette",
                    "image": Image::built().reference,
                    "args": args,
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "env": [
                        {"name": "KASSETTE_LOG", "value": "info"},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "KASSETTE_STORAGE_PROVIDER", "value": "s3"},
                        {"name": "KASSETTE_STORAGE_BUCKET", "value": "$(POD)-bucket"},
                    ],
                    "securityContext": {"readOnlyRootFilesystem": true},
                }],
            },
        }))
        .unwrap()
    };
    pods.create(&PostParams::default(), &pod("version", &["--version"]))
        .await
        .expect("create pod");
    // `backup` without a cluster name: a configuration error, exit 2.
    pods.create(&PostParams::default(), &pod("misconfigured", &["backup"]))
        .await
        .expect("create pod");
    let deadline = Instant::now() + Duration::from_secs(60);
    let terminal = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .filter(|phase| phase == "Succeeded" || phase == "Failed")
    };
    let (version, misconfigured) = loop {
        let a = pods.get("version").await.unwrap();
        let b = pods.get("misconfigured").await.unwrap();
        if terminal(&a).is_some() && terminal(&b).is_some() {
            break (a, b);
        }
        assert!(
            Instant::now() < deadline,
            "pods did not finish: {:?} {:?}\n{}",
            a.status,
            b.status,
            world.kubelet.logs_matching("")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let terminated = |p: &Pod| {
        p.status.clone().unwrap().container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap()
    };
    assert_eq!(
        terminal(&version).as_deref(),
        Some("Succeeded"),
        "{}",
        world.kubelet.logs("version")
    );
    assert_eq!(terminated(&version).exit_code, 0);
    assert_eq!(
        version.spec.as_ref().unwrap().node_name.as_deref(),
        Some(world.kubelet.node_name()),
        "bound to the process kubelet's Node"
    );
    assert!(
        world
            .kubelet
            .logs("version")
            .contains(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(terminal(&misconfigured).as_deref(), Some("Failed"));
    let failed = terminated(&misconfigured);
    assert_eq!(failed.exit_code, 2, "{failed:?}");
    let message = failed.message.unwrap_or_default();
    assert!(
        message.contains("KASSETTE_CLUSTER"),
        "termination message: {message}"
    );
    world.stop().await;
}
