//! Events on the coordinator's Job, against the real kube-apiserver, posted
//! with the credentials a Job's pod has: a ServiceAccount token (from the
//! TokenRequest API) bound to a Role granting exactly what the charts grant
//! — pods get/list, events create.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use common::k8s;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, Event, Pod, PodSpec, PodTemplateSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kassette::config::PodIdentity;
use kassette::k8s::{Events, Reason};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn rule(resource: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

/// A ServiceAccount `name` bound to a Role of `rules`; returns a client
/// authenticated with a token the TokenRequest API issued for it.
async fn service_account_client(
    admin: &Client,
    ns: &str,
    name: &str,
    rules: Vec<PolicyRule>,
) -> Client {
    let pp = PostParams::default();
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), ns);
    accounts
        .create(
            &pp,
            &ServiceAccount {
                metadata: meta(name),
                ..Default::default()
            },
        )
        .await
        .expect("create service account");
    if !rules.is_empty() {
        Api::<Role>::namespaced(admin.clone(), ns)
            .create(
                &pp,
                &Role {
                    metadata: meta(name),
                    rules: Some(rules),
                },
            )
            .await
            .expect("create role");
        Api::<RoleBinding>::namespaced(admin.clone(), ns)
            .create(
                &pp,
                &RoleBinding {
                    metadata: meta(name),
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "Role".into(),
                        name: name.into(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: name.into(),
                        namespace: Some(ns.into()),
                        ..Default::default()
                    }]),
                },
            )
            .await
            .expect("create role binding");
    }
    let issued = accounts
        .create_token_request(
            name,
            &pp,
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("token request");
    let token = issued
        .status
        .and_then(|s| s.token)
        .expect("an issued token");

    // The test cluster's address and CA, with the token as the only
    // credential (no admin certificate).
    let kubeconfig = Kubeconfig::read_from(common::setting("KUBECONFIG")).expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config");
    config.auth_info = AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    Client::try_from(config).expect("client")
}

/// A suspended Job (no controller makes pods for it) and a Pod it owns, as
/// the Job controller would have made it.
async fn job_and_pod(admin: &Client, ns: &str) -> (Job, PodIdentity) {
    let container = Container {
        name: "kassette".into(),
        image: Some("kassette:test".into()),
        args: Some(vec!["backup".into()]),
        ..Default::default()
    };
    let job = Api::<Job>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &Job {
                metadata: meta("nightly-29012345"),
                spec: Some(JobSpec {
                    suspend: Some(true),
                    template: PodTemplateSpec {
                        metadata: None,
                        spec: Some(PodSpec {
                            containers: vec![container.clone()],
                            restart_policy: Some("Never".into()),
                            ..Default::default()
                        }),
                    },
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create job");
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.metadata.name.clone().expect("job name"),
        uid: job.metadata.uid.clone().expect("job uid"),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let pod_name = "nightly-29012345-x7k2p";
    Api::<Pod>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &Pod {
                metadata: ObjectMeta {
                    name: Some(pod_name.into()),
                    owner_references: Some(vec![owner]),
                    labels: Some(BTreeMap::from([(
                        "job-name".to_string(),
                        "nightly-29012345".to_string(),
                    )])),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers: vec![container],
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create pod");
    let pod = PodIdentity {
        name: pod_name.into(),
        namespace: ns.into(),
    };
    (job, pod)
}

/// kassette's Events whose involvedObject is `job` (by uid), oldest first.
async fn events_on(admin: &Client, ns: &str, job: &Job) -> Vec<Event> {
    let uid = job.metadata.uid.clone().expect("uid");
    let mut events: Vec<Event> = Api::<Event>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.uid.as_deref() == Some(uid.as_str()))
        // Not the job controller's (`Suspended`, when it runs).
        .filter(|e| e.reporting_component.as_deref() == Some("kassette"))
        .collect();
    events.sort_by_key(|e| e.metadata.name.clone());
    events
}

/// Captures this thread's log lines (the test runtime is single-threaded).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

fn logged(buffer: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buffer.lock().expect("log buffer")).into_owned()
}

#[tokio::test]
async fn events_appear_on_the_job_with_the_charts_rbac() {
    let admin = k8s::client().await;
    let ns = k8s::namespace(&admin).await;
    let (job, pod) = job_and_pod(&admin, &ns).await;
    let client = service_account_client(
        &admin,
        &ns,
        "kassette-backup",
        vec![rule("pods", &["get", "list"]), rule("events", &["create"])],
    )
    .await;

    let (logs, _guard) = capture_logs();
    let events = Events::for_pod(client, &pod).await;
    assert!(events.is_active(), "logs:\n{}", logged(&logs));
    let posted = [
        (Reason::Started, "backup b1 of c/dc1 starting"),
        (Reason::LeaseTaken, "lease of the catalog taken"),
        (Reason::Snapshot, "flushing and snapshotting 3 nodes"),
        (Reason::Upload, "uploading what the store lacks"),
        (Reason::Commit, "writing the manifests"),
        (Reason::Retention, "applying retention (keep last 7)"),
        (Reason::Completed, "backup b1 complete: 3 nodes"),
        (Reason::Failed, "storage: access denied"),
    ];
    for (reason, message) in posted {
        events.post(reason, message).await;
    }
    assert!(events.is_active(), "logs:\n{}", logged(&logs));
    assert!(!logged(&logs).contains("WARN"), "{}", logged(&logs));

    let found = events_on(&admin, &ns, &job).await;
    let reasons: Vec<&str> = found.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert_eq!(
        reasons,
        [
            "Started",
            "LeaseTaken",
            "Snapshot",
            "Upload",
            "Commit",
            "Retention",
            "Completed",
            "Failed"
        ]
    );
    for (event, (reason, message)) in found.iter().zip(posted) {
        let involved = &event.involved_object;
        assert_eq!(involved.kind.as_deref(), Some("Job"));
        assert_eq!(involved.api_version.as_deref(), Some("batch/v1"));
        assert_eq!(involved.name, job.metadata.name);
        assert_eq!(involved.namespace.as_deref(), Some(ns.as_str()));
        assert_eq!(event.message.as_deref(), Some(message));
        assert_eq!(event.type_.as_deref(), Some(reason.event_type()));
        assert_eq!(
            event.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("kassette")
        );
        assert_eq!(event.reporting_instance.as_deref(), Some(pod.name.as_str()));
    }
    assert_eq!(
        found.last().and_then(|e| e.type_.as_deref()),
        Some("Warning")
    );

    k8s::delete_namespace(&admin, &ns).await;
}

#[tokio::test]
async fn without_events_create_the_pass_is_warned_once_and_goes_on() {
    let admin = k8s::client().await;
    let ns = k8s::namespace(&admin).await;
    let (job, pod) = job_and_pod(&admin, &ns).await;
    let client = service_account_client(
        &admin,
        &ns,
        "no-events",
        vec![rule("pods", &["get", "list"])],
    )
    .await;

    let (logs, _guard) = capture_logs();
    let events = Events::for_pod(client, &pod).await;
    assert!(events.is_active(), "the Pod is readable: {}", logged(&logs));
    events.post(Reason::Started, "starting").await;
    assert!(!events.is_active());
    events.post(Reason::Completed, "done").await;
    events.post(Reason::Failed, "failed").await;

    let text = logged(&logs);
    let warning = format!("cannot create events in namespace {ns}: forbidden");
    assert_eq!(text.matches(&warning).count(), 1, "logs:\n{text}");
    assert!(text.contains("WARN"), "{text}");
    assert!(events_on(&admin, &ns, &job).await.is_empty());

    k8s::delete_namespace(&admin, &ns).await;
}

#[tokio::test]
async fn without_pods_get_no_event_is_attempted() {
    let admin = k8s::client().await;
    let ns = k8s::namespace(&admin).await;
    let (job, pod) = job_and_pod(&admin, &ns).await;
    let client = service_account_client(
        &admin,
        &ns,
        "events-only",
        vec![rule("events", &["create"])],
    )
    .await;

    let (logs, _guard) = capture_logs();
    let events = Events::for_pod(client, &pod).await;
    assert!(!events.is_active());
    events.post(Reason::Started, "starting").await;

    let text = logged(&logs);
    let warning = format!("cannot get pods in namespace {ns}: forbidden");
    assert_eq!(text.matches(&warning).count(), 1, "logs:\n{text}");
    assert!(events_on(&admin, &ns, &job).await.is_empty());

    k8s::delete_namespace(&admin, &ns).await;
}
