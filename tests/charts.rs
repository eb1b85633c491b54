//! The Helm charts, with the real `helm` and the test kube-apiserver: `helm
//! lint --strict` with typical and edge values, `helm template` read back
//! as Kubernetes objects (through `kubectl`, which also checks them against
//! the apiserver's schema) and asserted field by field, the agent chart's
//! Secrets kept across an upgrade, and one `helm install` per
//! `values.schema.json` rule showing the bad value refused before anything
//! is created.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::{k8s, repo, setting};
use serde_json::{Value, json};

const BACKUP: &str = "kassette-backup";
const RESTORE: &str = "kassette-restore";
const AGENT: &str = "kassette-agent";

fn chart(name: &str) -> String {
    repo().join("charts").join(name).display().to_string()
}

/// A values file of a chart's `ci/` directory.
fn ci(chart_name: &str, file: &str) -> String {
    let path = repo().join("charts").join(chart_name).join("ci").join(file);
    assert!(path.is_file(), "{} is missing", path.display());
    path.display().to_string()
}

/// `helm <args>` against the test apiserver, with the environment's helm
/// directories; returns the output, successful or not.
fn helm(args: &[&str]) -> Output {
    let mut command = Command::new(setting("KASSETTE_TEST_HELM"));
    command.args(args).env("KUBECONFIG", setting("KUBECONFIG"));
    for var in ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"] {
        command.env(var, setting(var));
    }
    command.output().expect("run helm")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Turns rendered YAML into JSON objects with `kubectl create
/// --dry-run=client`, which also validates them against the apiserver's
/// OpenAPI schema (an unknown or mistyped field fails here).
fn objects(yaml: &str) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new(setting("KASSETTE_TEST_KUBECTL"))
        .args([
            "create",
            "--dry-run=client",
            "--validate=strict",
            "-o",
            "json",
            "-f",
            "-",
        ])
        .env("KUBECONFIG", setting("KUBECONFIG"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl refused the rendered objects:\n{}\n{yaml}",
        text(&out)
    );
    // One JSON document per object (or a List).
    let mut objects = Vec::new();
    for value in serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>() {
        let value = value.expect("kubectl prints JSON");
        match value["kind"].as_str() {
            Some("List") => objects.extend(value["items"].as_array().unwrap().iter().cloned()),
            _ => objects.push(value),
        }
    }
    objects
}

/// `helm template` of `chart_name` as release `release` in namespace
/// `ns`, with values files and `--set` arguments.
fn render(chart_name: &str, files: &[String], sets: &[&str]) -> Vec<Value> {
    let chart = chart(chart_name);
    let mut args = vec!["template", "rel", &chart, "--namespace", "backups"];
    for file in files {
        args.extend(["-f", file.as_str()]);
    }
    for set in sets {
        args.extend(["--set", set]);
    }
    objects(&helm_ok(&args))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected, got {}", found.len());
    found[0]
}

/// The pod spec of a Job or of a CronJob's job template.
fn pod_spec(workload: &Value) -> &Value {
    match workload["kind"].as_str() {
        Some("CronJob") => &workload["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &workload["spec"]["template"]["spec"],
    }
}

fn container(workload: &Value) -> &Value {
    let containers = pod_spec(workload)["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

/// The container's environment, by variable name.
fn env(workload: &Value) -> BTreeMap<String, Value> {
    container(workload)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

fn env_value<'a>(env: &'a BTreeMap<String, Value>, name: &str) -> &'a str {
    env.get(name)
        .unwrap_or_else(|| panic!("{name} is not set"))
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{name} has no plain value"))
}

fn mounts(workload: &Value) -> BTreeMap<String, Value> {
    container(workload)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m.clone()))
        .collect()
}

fn volumes(workload: &Value) -> BTreeMap<String, Value> {
    pod_spec(workload)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect()
}

/// Every chart, linted strictly with each of its `ci/` values files (the
/// agent chart also with its defaults and with TLS off).
#[test]
fn lint_is_strictly_clean_with_typical_and_edge_values() {
    for name in [BACKUP, RESTORE, AGENT] {
        let dir = repo().join("charts").join(name).join("ci");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        if name != AGENT {
            assert!(files.len() >= 4, "{name}: {files:?}");
        }
        for file in &files {
            let file = file.display().to_string();
            let out = helm_ok(&["lint", "--strict", &chart(name), "-f", &file]);
            assert!(out.contains("0 chart(s) failed"), "{file}: {out}");
        }
    }
    helm_ok(&["lint", "--strict", &chart(AGENT)]);
    helm_ok(&[
        "lint",
        "--strict",
        &chart(AGENT),
        "--set",
        "tls.enabled=false,sidecar.storage.existingSecret=,sidecar.concurrency=4",
    ]);
    // Required values are required: a bare lint names them.
    let bare = helm(&["lint", "--strict", &chart(BACKUP)]);
    assert!(!bare.status.success());
    assert!(text(&bare).contains("cluster"), "{}", text(&bare));
}

/// The two coordinator charts share one template file and the common part
/// of their schema, so they cannot drift apart.
#[test]
fn backup_and_restore_share_their_templates_and_schema() {
    let read = |chart: &str, path: &str| {
        std::fs::read_to_string(repo().join("charts").join(chart).join(path)).unwrap()
    };
    assert!(
        read(BACKUP, "templates/_kassette.tpl") == read(RESTORE, "templates/_kassette.tpl"),
        "templates/_kassette.tpl differs between the charts: copy one over the other"
    );
    let schema = |chart: &str| -> Value {
        serde_json::from_str(&read(chart, "values.schema.json")).unwrap()
    };
    let (backup, restore) = (schema(BACKUP), schema(RESTORE));
    let own = [
        "backupName",
        "keyspaces",
        "schedule",
        "cronJob",
        "retention",
        "metrics",
    ];
    let restore_own = [
        "backupName",
        "keyspaces",
        "tables",
        "mode",
        "clearTruncateSnapshots",
        "source",
        "repairAfterRestore",
        "dryRun",
    ];
    let backup_props = backup["properties"].as_object().unwrap();
    let restore_props = restore["properties"].as_object().unwrap();
    for (key, value) in backup_props {
        if !own.contains(&key.as_str()) {
            assert_eq!(
                Some(value),
                restore_props.get(key),
                "schema of {key} differs"
            );
        }
    }
    for key in restore_props.keys() {
        assert!(
            backup_props.contains_key(key) || restore_own.contains(&key.as_str()),
            "{key} only in the restore schema"
        );
    }
    assert_eq!(backup_props["keyspaces"], restore_props["keyspaces"]);
}

/// Without a schedule: a Job running `kassette backup` with every setting
/// of the typical values mapped to its variable, the Secrets mounted, the
/// security defaults, the standard labels, and a Role with exactly the
/// verbs the coordinator uses.
#[test]
fn backup_without_a_schedule_renders_a_job() {
    let objects = render(BACKUP, &[ci(BACKUP, "typical-values.yaml")], &["schedule="]);
    assert_eq!(
        kinds(&objects),
        ["Job", "Role", "RoleBinding", "ServiceAccount"]
    );
    let job = one(&objects, "Job");
    assert_eq!(job["metadata"]["name"], "rel-kassette-backup");
    assert_eq!(job["spec"]["backoffLimit"], 2);
    assert_eq!(
        job["spec"]["podFailurePolicy"]["rules"][0],
        json!({"action": "FailJob", "onExitCodes": {"containerName": "kassette", "operator": "In", "values": [2]}})
    );
    let pod = pod_spec(job);
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["serviceAccountName"], "rel-kassette-backup");
    let c = container(job);
    assert_eq!(
        c["image"],
        format!("ghcr.io/kassette/kassette:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(c["args"], json!(["backup"]));

    let env = env(job);
    for (name, value) in [
        ("KASSETTE_CLUSTER", "demo"),
        ("KASSETTE_DATACENTER", "dc1"),
        ("KASSETTE_NAMESPACE", "backups"),
        ("KASSETTE_AGENT_PORT", "7300"),
        (
            "KASSETTE_AGENT_TOKEN_FILE",
            "/etc/kassette/agent-token/token",
        ),
        ("KASSETTE_AGENT_CA_FILE", "/etc/kassette/agent-tls/ca.crt"),
        ("KASSETTE_AGENT_TLS_SERVER_NAME", "kassette-agent"),
        ("KASSETTE_CQL_PORT", "9042"),
        ("KASSETTE_CQL_PASSWORD_FILE", "/etc/kassette/cql/password"),
        ("KASSETTE_STORAGE_PROVIDER", "s3"),
        ("KASSETTE_STORAGE_BUCKET", "cassandra-backups"),
        ("KASSETTE_STORAGE_PREFIX", "prod"),
        ("KASSETTE_STORAGE_REGION", "eu-west-1"),
        ("KASSETTE_STORAGE_CREDENTIALS_FILE", "/etc/kassette/storage"),
        ("KASSETTE_CONCURRENCY", "8"),
        ("KASSETTE_RETENTION_KEEP_LAST", "7"),
        ("KASSETTE_RETENTION_MAX_AGE", "30d"),
        ("KASSETTE_LOG", "info"),
        ("KASSETTE_LOG_FORMAT", "text"),
    ] {
        assert_eq!(env_value(&env, name), value, "{name}");
    }
    for (name, field) in [
        ("KASSETTE_POD_NAME", "metadata.name"),
        ("KASSETTE_POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(env[name]["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    assert_eq!(
        env["KASSETTE_CQL_USERNAME"]["valueFrom"]["secretKeyRef"],
        json!({"name": "demo-superuser", "key": "username"})
    );
    for absent in [
        "KASSETTE_BACKUP_NAME",
        "KASSETTE_STORAGE_ENDPOINT",
        "KASSETTE_STORAGE_ALLOW_HTTP",
        "KASSETTE_POD_SELECTOR",
        "KASSETTE_NODES",
    ] {
        assert!(!env.contains_key(absent), "{absent} set");
    }
    // Every variable the chart sets is one the binary reads (the pod's
    // name and namespace are for the Events reporter).
    for name in env.keys().filter(|n| n.starts_with("KASSETTE_")) {
        assert!(
            kassette::config::vars::ALL.contains(&name.as_str())
                || ["KASSETTE_POD_NAME", "KASSETTE_POD_NAMESPACE"].contains(&name.as_str()),
            "{name} is not a kassette variable"
        );
    }

    let mounts = mounts(job);
    let volumes = volumes(job);
    for (volume, path) in [
        ("agent-token", "/etc/kassette/agent-token"),
        ("agent-tls", "/etc/kassette/agent-tls"),
        ("cql", "/etc/kassette/cql"),
        ("storage-credentials", "/etc/kassette/storage"),
    ] {
        assert_eq!(mounts[volume]["mountPath"], path);
        assert_eq!(mounts[volume]["readOnly"], true, "{volume}");
    }
    assert_eq!(mounts["tmp"]["mountPath"], "/tmp");
    // The storage Secret whole (kassette picks K8ssandra's key), the agent
    // TLS Secret's CA only (never the agents' private key).
    assert_eq!(
        volumes["storage-credentials"]["secret"],
        json!({"secretName": "medusa-bucket-key", "defaultMode": 292})
    );
    assert_eq!(
        volumes["agent-tls"]["secret"]["items"],
        json!([{"key": "ca.crt", "path": "ca.crt"}])
    );
    assert_eq!(
        volumes["agent-tls"]["secret"]["secretName"],
        "kassette-agent-tls"
    );
    assert_eq!(
        volumes["agent-token"]["secret"]["secretName"],
        "kassette-agent-token"
    );
    assert_eq!(
        volumes["cql"]["secret"]["items"],
        json!([{"key": "password", "path": "password"}])
    );

    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let security = &c["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(
        security["seccompProfile"],
        json!({"type": "RuntimeDefault"})
    );

    for object in &objects {
        let labels = &object["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/name"], BACKUP,
            "{}",
            object["kind"]
        );
        assert_eq!(labels["app.kubernetes.io/instance"], "rel");
        assert_eq!(
            labels["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
        assert_eq!(labels["app.kubernetes.io/component"], "backup");
        assert_eq!(labels["helm.sh/chart"], "kassette-backup-0.1.0");
        assert_eq!(object["metadata"]["namespace"], "backups");
    }
    let pod_labels = &job["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod_labels["app.kubernetes.io/instance"], "rel");

    assert_eq!(
        one(&objects, "Role")["rules"],
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ])
    );
    let binding = one(&objects, "RoleBinding");
    assert_eq!(binding["roleRef"]["name"], "rel-kassette-backup");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "rel-kassette-backup", "namespace": "backups"}])
    );
}

/// With a schedule: a CronJob (never two runs at once), its knobs, and
/// the same pod; a fixed backup name is refused with a schedule.
#[test]
fn backup_with_a_schedule_renders_a_cronjob_that_never_overlaps() {
    let objects = render(BACKUP, &[ci(BACKUP, "typical-values.yaml")], &[]);
    assert_eq!(
        kinds(&objects),
        ["CronJob", "Role", "RoleBinding", "ServiceAccount"]
    );
    let cron = one(&objects, "CronJob");
    let spec = &cron["spec"];
    assert_eq!(spec["schedule"], "0 2 * * *");
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    assert_eq!(spec["startingDeadlineSeconds"], 600);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 3);
    assert_eq!(spec["suspend"], false);
    assert!(spec.get("timeZone").is_none());
    assert_eq!(spec["jobTemplate"]["spec"]["backoffLimit"], 2);
    assert_eq!(
        spec["jobTemplate"]["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"],
        json!([2])
    );
    assert_eq!(container(cron)["args"], json!(["backup"]));
    assert_eq!(env_value(&env(cron), "KASSETTE_CLUSTER"), "demo");
    assert!(!env(cron).contains_key("KASSETTE_BACKUP_NAME"));

    let edge = render(
        BACKUP,
        &[ci(BACKUP, "gcs-workload-identity-values.yaml")],
        &[],
    );
    let spec = &one(&edge, "CronJob")["spec"];
    assert_eq!(spec["schedule"], "*/30 1-5 * * MON-FRI");
    assert_eq!(spec["timeZone"], "Europe/Paris");
    assert_eq!(spec["suspend"], true);
    assert!(spec.get("startingDeadlineSeconds").is_none());
    assert_eq!(spec["successfulJobsHistoryLimit"], 1);
    assert_eq!(spec["failedJobsHistoryLimit"], 5);
    assert_eq!(spec["jobTemplate"]["spec"]["activeDeadlineSeconds"], 7200);
    assert_eq!(spec["jobTemplate"]["spec"]["ttlSecondsAfterFinished"], 0);

    let chart = chart(BACKUP);
    let typical = ci(BACKUP, "typical-values.yaml");
    let named = helm(&[
        "template",
        "rel",
        &chart,
        "-f",
        &typical,
        "--set",
        "backupName=nightly",
    ]);
    assert!(!named.status.success());
    assert!(
        text(&named).contains("backupName cannot be set with a schedule"),
        "{}",
        text(&named)
    );
}

/// The restore chart's disaster-recovery values: another cluster's and
/// datacenter's backups, repair after restore, dry run; all absent by
/// default.
#[test]
fn restore_renders_the_disaster_recovery_values() {
    let typical = render(RESTORE, &[ci(RESTORE, "typical-values.yaml")], &[]);
    let env_typical = env(one(&typical, "Job"));
    for absent in [
        "KASSETTE_SOURCE_CLUSTER",
        "KASSETTE_SOURCE_DATACENTER",
        "KASSETTE_REPAIR_AFTER_RESTORE",
        "KASSETTE_DRY_RUN",
    ] {
        assert!(!env_typical.contains_key(absent), "{absent} set");
    }
    let objects = render(
        RESTORE,
        &[ci(RESTORE, "typical-values.yaml")],
        &[
            "source.cluster=prod",
            "source.datacenter=dc1",
            "repairAfterRestore=true",
            "dryRun=true",
        ],
    );
    let env = env(one(&objects, "Job"));
    assert_eq!(env_value(&env, "KASSETTE_SOURCE_CLUSTER"), "prod");
    assert_eq!(env_value(&env, "KASSETTE_SOURCE_DATACENTER"), "dc1");
    assert_eq!(env_value(&env, "KASSETTE_REPAIR_AFTER_RESTORE"), "true");
    assert_eq!(env_value(&env, "KASSETTE_DRY_RUN"), "true");
}

/// The restore chart: a Job running `kassette restore` with its own
/// settings (lists and comma-separated strings alike) and the shared ones.
#[test]
fn restore_renders_a_job_with_the_restore_settings() {
    let objects = render(RESTORE, &[ci(RESTORE, "typical-values.yaml")], &[]);
    assert_eq!(
        kinds(&objects),
        ["Job", "Role", "RoleBinding", "ServiceAccount"]
    );
    let job = one(&objects, "Job");
    assert_eq!(job["metadata"]["name"], "rel-kassette-restore");
    assert_eq!(job["spec"]["backoffLimit"], 1);
    assert_eq!(container(job)["args"], json!(["restore"]));
    let env = env(job);
    assert_eq!(env_value(&env, "KASSETTE_BACKUP_NAME"), "latest");
    assert_eq!(env_value(&env, "KASSETTE_RESTORE_MODE"), "replace");
    assert_eq!(
        env_value(&env, "KASSETTE_STORAGE_CREDENTIALS_FILE"),
        "/etc/kassette/storage"
    );
    assert_eq!(
        env_value(&env, "KASSETTE_AGENT_TLS_SERVER_NAME"),
        "kassette-agent"
    );
    for absent in [
        "KASSETTE_KEYSPACES",
        "KASSETTE_TABLES",
        "KASSETTE_CLEAR_TRUNCATE_SNAPSHOTS",
    ] {
        assert!(!env.contains_key(absent), "{absent} set");
    }
    assert_eq!(
        job["metadata"]["labels"]["app.kubernetes.io/component"],
        "restore"
    );

    let merge = render(RESTORE, &[ci(RESTORE, "s3-compatible-values.yaml")], &[]);
    let env_merge = self::env(one(&merge, "Job"));
    assert_eq!(env_value(&env_merge, "KASSETTE_RESTORE_MODE"), "merge");
    assert_eq!(
        env_value(&env_merge, "KASSETTE_TABLES"),
        "shop.orders,shop.users"
    );
    assert_eq!(
        env_value(&env_merge, "KASSETTE_BACKUP_NAME"),
        "nightly-2026-12-01"
    );

    let gcs = render(
        RESTORE,
        &[ci(RESTORE, "gcs-workload-identity-values.yaml")],
        &[],
    );
    let env_gcs = self::env(one(&gcs, "Job"));
    assert_eq!(env_value(&env_gcs, "KASSETTE_KEYSPACES"), "shop,ledger");
    assert_eq!(
        env_value(&env_gcs, "KASSETTE_CLEAR_TRUNCATE_SNAPSHOTS"),
        "true"
    );
}

/// Edge values reach the pod: workload identity (no credentials file, the
/// ServiceAccount annotated), Cassandra in another namespace (a second
/// Role there), an image digest and pull Secrets, scheduling knobs, extra
/// env and volumes; plain HTTP to the agents only when asked, a chosen
/// Secret key, CA bundle and SSE-C key, no RBAC objects when disabled.
#[test]
fn edge_values_reach_the_pod() {
    let objects = render(
        BACKUP,
        &[ci(BACKUP, "gcs-workload-identity-values.yaml")],
        &[],
    );
    let cron = one(&objects, "CronJob");
    let env = env(cron);
    assert_eq!(env_value(&env, "KASSETTE_STORAGE_PROVIDER"), "gcs");
    assert_eq!(env_value(&env, "KASSETTE_NAMESPACE"), "cassandra");
    assert_eq!(
        env_value(&env, "KASSETTE_POD_SELECTOR"),
        "app=cassandra,tier!=batch"
    );
    assert_eq!(env_value(&env, "KASSETTE_CONCURRENCY"), "32");
    assert_eq!(env_value(&env, "KASSETTE_MAX_BANDWIDTH"), "200MiB/s");
    assert_eq!(env_value(&env, "KASSETTE_LOG_FORMAT"), "json");
    assert_eq!(env_value(&env, "KASSETTE_LOCK_TTL"), "10m");
    assert_eq!(
        env_value(&env, "HTTPS_PROXY"),
        "http://proxy.example.com:3128"
    );
    assert!(!env.contains_key("KASSETTE_STORAGE_CREDENTIALS_FILE"));
    assert!(!env.contains_key("KASSETTE_CQL_USERNAME"));
    assert!(!volumes(cron).contains_key("storage-credentials"));
    assert_eq!(mounts(cron)["extra"]["mountPath"], "/extra");
    let sa = one(&objects, "ServiceAccount");
    assert_eq!(sa["metadata"]["name"], "kassette");
    assert_eq!(
        sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "kassette@my-project.iam.gserviceaccount.com"
    );
    let pod = pod_spec(cron);
    assert_eq!(pod["serviceAccountName"], "kassette");
    assert_eq!(pod["priorityClassName"], "batch-low");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["value"], "backups");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "regcred"}, {"name": "other"}])
    );
    let c = container(cron);
    assert_eq!(
        c["image"],
        "registry.example.com/kassette@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    let template = &cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"];
    assert_eq!(template["labels"]["team"], "data");
    assert_eq!(template["annotations"]["example.com/team"], "data");
    // Discovery in another namespace: pods get/list there too.
    let roles: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Role").collect();
    let mut namespaces: Vec<&str> = roles
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    namespaces.sort();
    assert_eq!(namespaces, ["backups", "cassandra"]);
    let there = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "cassandra")
        .unwrap();
    assert_eq!(
        there["rules"],
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    );

    let objects = render(BACKUP, &[ci(BACKUP, "s3-compatible-values.yaml")], &[]);
    assert_eq!(kinds(&objects), ["Job"]);
    let job = one(&objects, "Job");
    assert_eq!(job["metadata"]["name"], "kassette");
    assert_eq!(pod_spec(job)["serviceAccountName"], "existing-sa");
    let env = self::env(job);
    for absent in ["KASSETTE_AGENT_CA_FILE", "KASSETTE_AGENT_TLS_SERVER_NAME"] {
        assert!(!env.contains_key(absent), "{absent} set with TLS off");
    }
    assert!(!volumes(job).contains_key("agent-tls"));
    for (name, value) in [
        ("KASSETTE_AGENT_PORT", "7400"),
        (
            "KASSETTE_AGENT_TOKEN_FILE",
            "/etc/kassette/agent-token/token",
        ),
        ("KASSETTE_STORAGE_ENDPOINT", "http://minio.storage.svc:9000"),
        ("KASSETTE_STORAGE_ALLOW_HTTP", "true"),
        (
            "KASSETTE_STORAGE_CREDENTIALS_FILE",
            "/etc/kassette/storage/medusa_s3_credentials",
        ),
        (
            "KASSETTE_STORAGE_CA_BUNDLE",
            "/etc/kassette/storage-ca/ca.crt",
        ),
        ("KASSETTE_STORAGE_CLASS", "STANDARD_IA"),
        ("KASSETTE_STORAGE_SSE_C_KEY_FILE", "/etc/kassette/sse-c/key"),
        ("KASSETTE_BACKUP_NAME", "before-upgrade"),
        ("KASSETTE_KEYSPACES", "shop,ledger"),
        (
            "KASSETTE_PUSHGATEWAY_URL",
            "http://pushgateway.monitoring.svc:9091",
        ),
    ] {
        assert_eq!(env_value(&env, name), value, "{name}");
    }
    let volumes = volumes(job);
    assert_eq!(volumes["agent-token"]["secret"]["secretName"], "my-token");
    assert_eq!(volumes["storage-ca"]["configMap"]["name"], "minio-ca");
    assert_eq!(volumes["sse-c"]["secret"]["secretName"], "sse-key");

    let local = render(BACKUP, &[ci(BACKUP, "local-values.yaml")], &[]);
    let job = one(&local, "Job");
    assert_eq!(
        env_value(&self::env(job), "KASSETTE_STORAGE_PATH"),
        "/backups"
    );
    assert_eq!(mounts(job)["backups"]["mountPath"], "/backups");
    assert_eq!(
        volumes_of(job, "backups")["persistentVolumeClaim"]["claimName"],
        "cassandra-backups"
    );
}

fn volumes_of(workload: &Value, name: &str) -> Value {
    volumes(workload)
        .remove(name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// The agent chart's Secrets: a 48-character token, and a CA with one
/// server certificate for the DNS name `kassette-agent` (checked with
/// openssl: issued by that CA, for that name, for serving).
#[test]
fn agent_chart_renders_the_token_and_a_certificate_for_one_name() {
    let objects = render(AGENT, &[], &[]);
    assert_eq!(kinds(&objects), ["Secret", "Secret"]);
    let secret = |name: &str| {
        objects
            .iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Secret {name}"))
            .clone()
    };
    let decode = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let token = secret("kassette-agent-token");
    assert_eq!(decode(&token["data"]["token"]).len(), 48);
    assert_eq!(
        token["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let tls = secret("kassette-agent-tls");
    assert_eq!(tls["type"], "kubernetes.io/tls");
    let dir = tempfile::tempdir().unwrap();
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        std::fs::write(dir.path().join(key), decode(&tls["data"][key])).unwrap();
    }
    let path = |key: &str| dir.path().join(key).display().to_string();
    let verified = common::run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            &path("ca.crt"),
            "-purpose",
            "sslserver",
            &path("tls.crt"),
        ],
    );
    assert!(verified.contains(": OK"), "{verified}");
    let names = common::run(
        "openssl",
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            &path("tls.crt"),
        ],
    );
    assert!(names.contains("DNS:kassette-agent"), "{names}");
    assert!(!names.contains("IP"), "{names}");

    let custom = render(
        AGENT,
        &[],
        &["tls.serverName=agents.cassandra.svc,token.value=s3cret-token"],
    );
    let tls = custom
        .iter()
        .find(|o| o["type"] == "kubernetes.io/tls")
        .unwrap();
    std::fs::write(dir.path().join("tls.crt"), decode(&tls["data"]["tls.crt"])).unwrap();
    let names = common::run(
        "openssl",
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            &path("tls.crt"),
        ],
    );
    assert!(names.contains("DNS:agents.cassandra.svc"), "{names}");
    let token = custom.iter().find(|o| o["type"] == "Opaque").unwrap();
    assert_eq!(decode(&token["data"]["token"]), b"s3cret-token");

    let plain = render(AGENT, &[], &["tls.enabled=false,keepOnUninstall=false"]);
    assert_eq!(kinds(&plain), ["Secret"]);
    assert!(plain[0]["metadata"].get("annotations").is_none());
}

/// The sidecar file the end-to-end tests build their Cassandra pods from
/// is a valid pod spec with the documented settings; docs/kubernetes.md
/// shows it line for line; the agent chart's notes print it with the
/// release's values put in.
#[test]
fn the_documented_sidecar_is_the_file_and_the_notes_print_it() {
    let file =
        repo().join("charts/kassette-agent/sidecar/cassandradatacenter-podtemplatespec.yaml");
    let sidecar = std::fs::read_to_string(&file).unwrap();
    let pod = objects(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sidecar-check\n{sidecar}"
    ));
    let spec = &pod[0]["spec"];
    let names: Vec<&str> = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cassandra", "kassette-agent"]);
    let agent = &spec["containers"][1];
    assert_eq!(agent["args"], json!(["agent"]));
    assert_eq!(
        agent["image"],
        format!("ghcr.io/kassette/kassette:{}", env!("CARGO_PKG_VERSION"))
    );
    let env: BTreeMap<&str, &str> = agent["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    for (name, value) in [
        ("KASSETTE_DATA_DIRS", "/var/lib/cassandra/data"),
        ("KASSETTE_CASSANDRA_CONTROL", "management-api"),
        ("KASSETTE_MANAGEMENT_API_URL", "http://localhost:8080"),
        (
            "KASSETTE_AGENT_TOKEN_FILE",
            "/etc/kassette/agent-token/token",
        ),
        ("KASSETTE_AGENT_TLS_CERT", "/etc/kassette/agent-tls/tls.crt"),
        ("KASSETTE_AGENT_TLS_KEY", "/etc/kassette/agent-tls/tls.key"),
        ("KASSETTE_STORAGE_CREDENTIALS_FILE", "/etc/kassette/storage"),
    ] {
        assert_eq!(env.get(name).copied(), Some(value), "{name}");
    }
    for name in env.keys() {
        assert!(
            kassette::config::vars::ALL.contains(name),
            "{name} is not a kassette variable"
        );
    }
    let mounts: BTreeMap<&str, &str> = agent["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(mounts["server-data"], "/var/lib/cassandra");
    assert_eq!(agent["securityContext"]["runAsUser"], 999);
    assert_eq!(agent["securityContext"]["readOnlyRootFilesystem"], true);
    let secret_of = |volume: &str| {
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == volume)
            .unwrap_or_else(|| panic!("no volume {volume}"))["secret"]["secretName"]
            .clone()
    };
    assert_eq!(secret_of("kassette-agent-token"), "kassette-agent-token");
    assert_eq!(secret_of("kassette-agent-tls"), "kassette-agent-tls");
    assert_eq!(secret_of("kassette-storage"), "medusa-bucket-key");

    let doc = std::fs::read_to_string(repo().join("docs/kubernetes.md")).unwrap();
    let block: Vec<String> = sidecar
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("    {l}")
            }
        })
        .collect();
    assert!(
        doc.contains(&block.join("\n")),
        "docs/kubernetes.md does not show the sidecar file as it is"
    );

    // A namespace nobody uses: the dry run checks for existing Secrets.
    let ns = common::unique("notes-");
    let out = helm_ok(&[
        "install",
        "agent",
        &chart(AGENT),
        "--dry-run",
        "--namespace",
        &ns,
        "--set",
        "sidecar.storage.bucket=my-backups,sidecar.storage.region=eu-west-1,sidecar.port=7400",
        "--set",
        "sidecar.maxBandwidth=100MiB/s,sidecar.image.tag=9.9.9",
    ]);
    let notes = out.split("NOTES:").nth(1).expect("notes printed");
    for expected in [
        "name: kassette-agent",
        "image: ghcr.io/kassette/kassette:9.9.9",
        "value: my-backups",
        "value: eu-west-1",
        "value: 0.0.0.0:7400",
        "containerPort: 7400",
        "name: KASSETTE_MAX_BANDWIDTH",
        "value: management-api",
        "mountPath: /var/lib/cassandra",
        "secretName: medusa-bucket-key",
        "DNS name kassette-agent",
    ] {
        assert!(
            notes.contains(expected),
            "notes lack {expected:?}:\n{notes}"
        );
    }
    assert!(!notes.contains("value: cassandra-backups"), "{notes}");

    // Without TLS or a storage Secret, the snippet has neither.
    let out = helm_ok(&[
        "install",
        "agent",
        &chart(AGENT),
        "--dry-run",
        "--namespace",
        &ns,
        "--set",
        "tls.enabled=false,sidecar.storage.existingSecret=,sidecar.storage.provider=gcs",
    ]);
    let notes = out.split("NOTES:").nth(1).expect("notes printed");
    for absent in [
        "KASSETTE_AGENT_TLS_CERT",
        "kassette-agent-tls",
        "KASSETTE_STORAGE_CREDENTIALS_FILE",
        "kassette-storage",
        "KASSETTE_STORAGE_REGION",
    ] {
        assert!(!notes.contains(absent), "notes keep {absent}:\n{notes}");
    }
    assert!(notes.contains("WARNING: tls.enabled=false"), "{notes}");
}

/// Installed into the real apiserver, the agent chart's token and
/// certificates are read back on upgrade (`lookup`), not made anew.
#[tokio::test]
async fn agent_secrets_survive_an_upgrade() {
    let client = k8s::client().await;
    let ns = k8s::namespace(&client).await;
    let chart = chart(AGENT);
    let secret = |name: &str| -> Value {
        let out = common::run(
            setting("KASSETTE_TEST_KUBECTL"),
            &[
                "get",
                "secret",
                name,
                "-n",
                &ns,
                "-o",
                "json",
                "--kubeconfig",
                &setting("KUBECONFIG"),
            ],
        );
        serde_json::from_str::<Value>(&out).unwrap()["data"].clone()
    };
    helm_ok(&["install", "agent", &chart, "--namespace", &ns]);
    let (token, tls) = (secret("kassette-agent-token"), secret("kassette-agent-tls"));
    helm_ok(&[
        "upgrade",
        "agent",
        &chart,
        "--namespace",
        &ns,
        "--set",
        "tls.validityDays=30",
    ]);
    assert_eq!(secret("kassette-agent-token"), token, "the token changed");
    assert_eq!(
        secret("kassette-agent-tls"),
        tls,
        "the certificates changed"
    );
    helm_ok(&["uninstall", "agent", "--namespace", &ns]);
    // keepOnUninstall: running agents still need them.
    assert_eq!(secret("kassette-agent-token"), token);
    k8s::delete_namespace(&client, &ns).await;
}

/// One `helm install` per schema rule, into the real apiserver: each bad
/// value is refused with helm's schema error naming the field, and nothing
/// is installed. Every `ci/` values file passes the server's dry run (the
/// apiserver's own validation), so each refusal is the bad value's doing.
#[tokio::test]
async fn helm_install_refuses_what_the_schema_rejects() {
    let client = k8s::client().await;
    let ns = k8s::namespace(&client).await;
    let backup = ci(BACKUP, "typical-values.yaml");
    let restore = ci(RESTORE, "typical-values.yaml");
    let install = |chart_name: &str, values: &str, sets: &[&str], dry_run: bool| {
        let chart = chart(chart_name);
        let mut args = vec![
            "install",
            "refused",
            &chart,
            "--namespace",
            &ns,
            "-f",
            values,
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        if dry_run {
            args.push("--dry-run=server");
        }
        helm(&args)
    };
    // Every ci values file, as the apiserver itself would take it (its
    // validation and admission, nothing stored).
    for chart_name in [BACKUP, RESTORE] {
        for file in [
            "typical-values.yaml",
            "s3-compatible-values.yaml",
            "local-values.yaml",
            "gcs-workload-identity-values.yaml",
        ] {
            let discovery = format!("discovery.namespace={ns}");
            let out = install(chart_name, &ci(chart_name, file), &[&discovery], true);
            assert!(out.status.success(), "{chart_name} {file}: {}", text(&out));
        }
    }
    let cases: &[(&str, &str, &[&str], &str)] = &[
        // (what, chart, --set, the field the error names)
        ("wrong type", BACKUP, &["agent.port=http"], "agent.port"),
        (
            "wrong type",
            RESTORE,
            &["agent.tls.enabled=maybe"],
            "agent.tls.enabled",
        ),
        (
            "wrong type",
            BACKUP,
            &["retention.keepLast=seven"],
            "retention.keepLast",
        ),
        (
            "unknown provider",
            BACKUP,
            &["storage.provider=azure_blobs"],
            "storage.provider",
        ),
        (
            "unknown provider",
            RESTORE,
            &["storage.provider=s4"],
            "storage.provider",
        ),
        (
            "missing bucket (s3)",
            BACKUP,
            &["storage.bucket="],
            "storage.bucket",
        ),
        (
            "missing bucket (gcs)",
            RESTORE,
            &["storage.provider=gcs", "storage.bucket="],
            "storage.bucket",
        ),
        (
            "malformed schedule",
            BACKUP,
            &["schedule=every night"],
            "schedule",
        ),
        (
            "malformed schedule",
            BACKUP,
            &["schedule=0 2 * *"],
            "schedule",
        ),
        (
            "malformed schedule",
            BACKUP,
            &["schedule=0 2 * * * *"],
            "schedule",
        ),
        ("unknown restore mode", RESTORE, &["mode=overwrite"], "mode"),
        (
            "missing backup name",
            RESTORE,
            &["backupName="],
            "backupName",
        ),
        (
            "latest is not a backup's name",
            BACKUP,
            &["schedule=", "backupName=latest"],
            "backupName",
        ),
        (
            "unknown top-level key",
            BACKUP,
            &["storag.bucket=typo"],
            "storag",
        ),
        (
            "unknown top-level key",
            RESTORE,
            &["schedule=0 2 * * *"],
            "schedule",
        ),
        (
            "unknown nested key",
            BACKUP,
            &["storage.bukcet=typo"],
            "bukcet",
        ),
    ];
    for (what, chart_name, sets, field) in cases {
        let values = if *chart_name == BACKUP {
            &backup
        } else {
            &restore
        };
        let out = install(chart_name, values, sets, false);
        let message = text(&out);
        assert!(!out.status.success(), "{what} {sets:?} was installed");
        assert!(
            message.contains("values don't meet the specifications of the schema"),
            "{what} {sets:?}: not a schema error:\n{message}"
        );
        assert!(
            message.contains(field),
            "{what} {sets:?}: {field} not named:\n{message}"
        );
    }
    let releases = helm_ok(&["list", "--all", "--short", "--namespace", &ns]);
    assert_eq!(releases.trim(), "", "a refused install left a release");
    k8s::delete_namespace(&client, &ns).await;
}

/// The agent chart's certificate works as issued: a real `kassette agent`
/// process serves it, and a client connecting to the agent's IP verifies
/// it against the name `kassette-agent` (as the Jobs do with
/// `agent.tls.serverName`) and presents the chart's token; checked
/// against the address instead, it is refused.
#[tokio::test]
async fn the_agent_charts_certificate_is_served_and_verified_by_name() {
    use kassette::coordinator::client::AgentClient;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let objects = render(AGENT, &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, data: &Value| {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let token_secret = objects.iter().find(|o| o["type"] == "Opaque").unwrap();
    let tls_secret = objects
        .iter()
        .find(|o| o["type"] == "kubernetes.io/tls")
        .unwrap();
    let token = write("token", &token_secret["data"]["token"]);
    let ca = write("ca.crt", &tls_secret["data"]["ca.crt"]);
    let cert = write("tls.crt", &tls_secret["data"]["tls.crt"]);
    let key = write("tls.key", &tls_secret["data"]["tls.key"]);
    let data = dir.path().join("data");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let socket: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_kassette"))
        .arg("agent")
        .env_clear()
        .env("KASSETTE_AGENT_LISTEN", socket.to_string())
        .env("KASSETTE_AGENT_TOKEN_FILE", &token)
        .env("KASSETTE_AGENT_TLS_CERT", &cert)
        .env("KASSETTE_AGENT_TLS_KEY", &key)
        .env("KASSETTE_DATA_DIRS", &data)
        .env("KASSETTE_STORAGE_PROVIDER", "local")
        .env("KASSETTE_STORAGE_PATH", &store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start kassette agent");
    let token_text = std::fs::read_to_string(&token).unwrap();
    let ca_pem = std::fs::read(&ca).unwrap();
    let by_name =
        AgentClient::with_tls_server_name(socket, "kassette-agent", &token_text, &ca_pem).unwrap();
    let mut answer = by_name.node_info().await;
    for _ in 0..100 {
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer = by_name.node_info().await;
    }
    let info = answer.expect("the agent answers over TLS, verified by name");
    assert_eq!(info.data_dirs, [data.display().to_string()]);
    let by_address = AgentClient::with_tls(&socket.to_string(), &token_text, &ca_pem).unwrap();
    let err = by_address.node_info().await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    agent.kill().await.unwrap();
}

/// The dotted names of `values.yaml`'s leaf values (a key with a value on
/// its line), found by indentation: enough for these files, which keep
/// one key per line.
fn value_names(values_yaml: &str) -> Vec<String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut names = Vec::new();
    for line in values_yaml.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            continue;
        }
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let mut path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
        path.push(key);
        if rest.trim().is_empty() {
            stack.push((indent, key.to_string()));
        } else {
            names.push(path.join("."));
        }
    }
    names
}

/// Each chart's README has a row for every value of its values.yaml.
#[test]
fn readme_tables_name_every_value() {
    for name in [BACKUP, RESTORE, AGENT] {
        let dir = repo().join("charts").join(name);
        let values = std::fs::read_to_string(dir.join("values.yaml")).unwrap();
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let names = value_names(&values);
        assert!(names.len() > 15, "{name}: {names:?}");
        for value in names {
            assert!(
                readme.contains(&format!("| `{value}` |")),
                "charts/{name}/README.md has no row for {value}"
            );
        }
    }
}
