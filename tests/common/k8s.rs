//! Kubernetes helpers for tests against the real kube-apiserver of the
//! test environment (envtest style: no kubelet, so tests write pod status
//! themselves, playing its part).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Namespace, Pod, PodCondition, PodSpec, PodStatus, ServiceAccount,
};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

use super::{setting, unique};

pub async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(setting("KUBECONFIG")).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// A fresh namespace with its `default` service account. The controller
/// manager creates that account asynchronously; creating it here too closes
/// the race with the first Pod (ServiceAccount admission is on).
pub async fn namespace(client: &Client) -> String {
    let name = unique("smoke-k8s-");
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    // The controller may have been first; either way it must exist.
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &name);
    if let Err(e) = accounts.create(&PostParams::default(), &sa).await {
        assert!(
            matches!(&e, kube::Error::Api(s) if s.code == 409),
            "create service account: {e}"
        );
    }
    name
}

pub fn cassandra_pod(name: &str, cluster: &str, datacenter: &str) -> Pod {
    let labels = BTreeMap::from([
        (
            "cassandra.datastax.com/cluster".to_string(),
            cluster.to_string(),
        ),
        (
            "cassandra.datastax.com/datacenter".to_string(),
            datacenter.to_string(),
        ),
    ]);
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "cassandra".into(),
                image: Some("cassandra:5.0".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Plays the kubelet: reports pod `name` Running at `ip`, Ready or not.
pub async fn set_pod_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = Pod {
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("patch status of pod {name}: {e}"));
}

/// Deletes namespace `name` (and everything in it).
pub async fn delete_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(name, &Default::default())
        .await
        .expect("delete namespace");
}

/// Creates pod `name` with cass-operator's labels.
pub async fn create_cassandra_pod(pods: &Api<Pod>, name: &str, cluster: &str, datacenter: &str) {
    pods.create(
        &PostParams::default(),
        &cassandra_pod(name, cluster, datacenter),
    )
    .await
    .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
}
