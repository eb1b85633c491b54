//! Events on the coordinator's own Job: started, each phase, completed or
//! failed with the reason.
//!
//! When `KASSETTE_POD_NAME` and `KASSETTE_POD_NAMESPACE` are set (the charts
//! set them from the downward API), [`Events::connect`] reads that Pod once
//! and takes its controlling Job from `ownerReferences` (a Pod no Job owns
//! gets the Events itself). Each [`Events::post`] then creates one core/v1
//! Event whose `involvedObject` is the Job, uid included — what
//! `kubectl describe job` lists.
//!
//! The RBAC this needs, and all it needs: `pods: get` and `events: create`
//! (core group) in the pod's namespace. Events are only ever created, never
//! patched or aggregated: a pass posts a dozen, each one distinct.
//!
//! Posting never fails the pass: the first failure (forbidden, unreachable,
//! slow) is logged once as a warning naming what could not be done, and
//! every later post is skipped. Without the two variables nothing is sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::config::PodIdentity;

/// `source.component` and `reportingComponent` of every Event.
pub const COMPONENT: &str = "kassette";

/// How long one API request may take before reporting gives up for good.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest Event message; longer ones (an error chain) are cut, marked `…`.
const MAX_MESSAGE: usize = 1024;

/// What an Event says happened; its `reason` field. A pass posts `Started`,
/// its phases in order, then `Completed` or `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Started,
    /// The catalog's lease is held: no other pass of it runs now.
    LeaseTaken,
    /// Backup: every node flushes and snapshots.
    Snapshot,
    /// Backup: the agents upload what the store lacks.
    Upload,
    /// Backup: manifests written, the backup is committed.
    Commit,
    /// Backup: retention and garbage collection (only when configured).
    Retention,
    /// Restore: the agents download and verify the files into staging.
    Download,
    /// Restore: missing keyspaces, types and tables are created.
    Schema,
    /// Restore, replace mode: the selected tables are truncated.
    Truncate,
    /// Restore: the agents import the staged SSTables.
    Import,
    /// Done, with the summary.
    Completed,
    /// Failed, with the reason (a `Warning` Event).
    Failed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Started => "Started",
            Reason::LeaseTaken => "LeaseTaken",
            Reason::Snapshot => "Snapshot",
            Reason::Upload => "Upload",
            Reason::Commit => "Commit",
            Reason::Retention => "Retention",
            Reason::Download => "Download",
            Reason::Schema => "Schema",
            Reason::Truncate => "Truncate",
            Reason::Import => "Import",
            Reason::Completed => "Completed",
            Reason::Failed => "Failed",
        }
    }

    /// The Event `type`: `Warning` for a failure, else `Normal`.
    pub fn event_type(self) -> &'static str {
        match self {
            Reason::Failed => "Warning",
            _ => "Normal",
        }
    }
}

/// Posts a pass's Events; cheap to clone. Inert outside Kubernetes or once
/// a post has failed.
#[derive(Clone, Default)]
pub struct Events {
    target: Option<Arc<Target>>,
}

struct Target {
    events: Api<Event>,
    namespace: String,
    involved: ObjectReference,
    /// The pod's name: `reportingInstance`.
    instance: String,
    /// Set by the first failure; later posts are skipped.
    broken: AtomicBool,
    sequence: AtomicU32,
}

impl Events {
    /// Events that go nowhere.
    pub fn none() -> Self {
        Self::default()
    }

    /// Events for the Job running `pod`, through the in-cluster (or
    /// KUBECONFIG) client; inert when `pod` is `None` or the Job cannot be
    /// found (which is logged once).
    pub async fn connect(pod: Option<&PodIdentity>) -> Self {
        let Some(pod) = pod else {
            return Self::none();
        };
        match Client::try_default().await {
            Ok(client) => Self::for_pod(client, pod).await,
            Err(err) => {
                tracing::warn!(error = %crate::storage::error_chain(&err), "cannot reach the Kubernetes API; no Events will be posted");
                Self::none()
            }
        }
    }

    /// Events for the Job running `pod`, through `client`.
    pub async fn for_pod(client: Client, pod: &PodIdentity) -> Self {
        let pods = Api::<Pod>::namespaced(client.clone(), &pod.namespace);
        let found = match tokio::time::timeout(REQUEST_TIMEOUT, pods.get(&pod.name)).await {
            Ok(Ok(found)) => found,
            Ok(Err(err)) => {
                warn_once("get", "pods", &pod.namespace, &api_error(&err));
                return Self::none();
            }
            Err(_) => {
                warn_once("get", "pods", &pod.namespace, "timed out");
                return Self::none();
            }
        };
        let involved = involved_object(&found, &pod.namespace);
        tracing::debug!(kind = ?involved.kind, name = ?involved.name, "posting Events on the pass's owner");
        Self {
            target: Some(Arc::new(Target {
                events: Api::namespaced(client, &pod.namespace),
                namespace: pod.namespace.clone(),
                involved,
                instance: pod.name.clone(),
                broken: AtomicBool::new(false),
                sequence: AtomicU32::new(0),
            })),
        }
    }

    /// Whether posts are still being sent.
    pub fn is_active(&self) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| !t.broken.load(Ordering::Relaxed))
    }

    /// Posts one Event; never fails (see the module documentation).
    pub async fn post(&self, reason: Reason, message: impl Into<String>) {
        let Some(target) = &self.target else {
            return;
        };
        if target.broken.load(Ordering::Relaxed) {
            return;
        }
        let sequence = target.sequence.fetch_add(1, Ordering::Relaxed);
        let event = event(
            &target.involved,
            &target.instance,
            reason,
            &message.into(),
            k8s_openapi::jiff::Timestamp::now(),
            sequence,
        );
        let problem = match tokio::time::timeout(
            REQUEST_TIMEOUT,
            target.events.create(&PostParams::default(), &event),
        )
        .await
        {
            Ok(Ok(_)) => return,
            Ok(Err(err)) => api_error(&err),
            Err(_) => "timed out".to_string(),
        };
        // Only the first failure is logged: the rest would say the same.
        if !target.broken.swap(true, Ordering::Relaxed) {
            warn_once("create", "events", &target.namespace, &problem);
        }
    }
}

fn warn_once(verb: &str, resource: &str, namespace: &str, problem: &str) {
    tracing::warn!(
        "cannot {verb} {resource} in namespace {namespace}: {problem}; no Kubernetes Events will be posted for this pass"
    );
}

/// `forbidden (…the apiserver's message…)` for an API refusal, else the
/// error chain.
fn api_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                format!("HTTP {}", status.code)
            } else {
                status.reason.to_lowercase()
            };
            format!("{reason} ({})", status.message)
        }
        other => crate::storage::error_chain(other),
    }
}

/// What the Events are about: the Job controlling `pod`, else the Pod.
pub fn involved_object(pod: &Pod, namespace: &str) -> ObjectReference {
    let job = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "Job" && o.api_version.starts_with("batch/"))
        // The controller first: a Job adopted by another is still its Job.
        .max_by_key(|o| o.controller == Some(true));
    match job {
        Some(owner) => ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: Some(namespace.to_string()),
            uid: Some(owner.uid.clone()),
            ..Default::default()
        },
        None => ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: Some(namespace.to_string()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
    }
}

/// The core/v1 Event for `reason` about `involved`, named like client-go's
/// (`<object>.<hex time>`, plus the sequence so two posts in the same
/// nanosecond cannot collide).
pub fn event(
    involved: &ObjectReference,
    instance: &str,
    reason: Reason,
    message: &str,
    now: k8s_openapi::jiff::Timestamp,
    sequence: u32,
) -> Event {
    let object = involved.name.as_deref().unwrap_or("kassette");
    let nanos = u64::try_from(now.as_nanosecond()).unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{object}.{nanos:x}.{sequence}")),
            namespace: involved.namespace.clone(),
            ..Default::default()
        },
        involved_object: involved.clone(),
        reason: Some(reason.as_str().into()),
        message: Some(truncate(message, MAX_MESSAGE)),
        type_: Some(reason.event_type().into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(instance.to_string()),
        ..Default::default()
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked `…`.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod(owners: Vec<OwnerReference>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("backup-x7k2p".into()),
                uid: Some("pod-uid".into()),
                owner_references: Some(owners),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn owner(kind: &str, api_version: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("{name}-uid"),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn events_are_about_the_controlling_job() {
        let p = pod(vec![
            owner("Job", "batch/v1", "adopter", false),
            owner("Job", "batch/v1", "nightly-29012345", true),
        ]);
        let r = involved_object(&p, "cassandra");
        assert_eq!(r.kind.as_deref(), Some("Job"));
        assert_eq!(r.api_version.as_deref(), Some("batch/v1"));
        assert_eq!(r.name.as_deref(), Some("nightly-29012345"));
        assert_eq!(r.uid.as_deref(), Some("nightly-29012345-uid"));
        assert_eq!(r.namespace.as_deref(), Some("cassandra"));
    }

    #[test]
    fn a_pod_no_job_owns_gets_the_events_itself() {
        let p = pod(vec![owner("ReplicaSet", "apps/v1", "rs", true)]);
        let r = involved_object(&p, "ns");
        assert_eq!(r.kind.as_deref(), Some("Pod"));
        assert_eq!(r.name.as_deref(), Some("backup-x7k2p"));
        assert_eq!(r.uid.as_deref(), Some("pod-uid"));
    }

    #[test]
    fn an_event_names_its_object_reason_and_type() {
        let job = involved_object(&pod(vec![owner("Job", "batch/v1", "j", true)]), "ns");
        let now: k8s_openapi::jiff::Timestamp = "2026-12-02T03:00:00Z".parse().unwrap();
        let e = event(
            &job,
            "backup-x7k2p",
            Reason::Failed,
            "storage: denied",
            now,
            3,
        );
        assert_eq!(e.involved_object, job);
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("j."));
        assert_eq!(e.reason.as_deref(), Some("Failed"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.message.as_deref(), Some("storage: denied"));
        assert_eq!(e.reporting_instance.as_deref(), Some("backup-x7k2p"));
        assert_eq!(e.count, Some(1));
        let other = event(&job, "p", Reason::Started, "", now, 4);
        assert_ne!(other.metadata.name, e.metadata.name);
        assert_eq!(other.type_.as_deref(), Some("Normal"));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(20), 11);
        assert!(cut.len() <= 11, "{cut}");
        assert!(cut.ends_with('…'));
    }

    #[tokio::test]
    async fn without_a_pod_nothing_is_posted() {
        let events = Events::connect(None).await;
        assert!(!events.is_active());
        events.post(Reason::Started, "nothing").await;
    }
}
