//! Smoke tests of the real kube-apiserver (envtest style: no kubelet, the
//! test plays its part by writing pod status), of `helm` and of `kubectl`.

mod common;

use std::collections::BTreeMap;

use common::{repo, run, setting, unique};
use k8s_openapi::api::core::v1::{
    Container, Namespace, Pod, PodCondition, PodSpec, PodStatus, ServiceAccount,
};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(setting("KUBECONFIG")).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// A fresh namespace with its `default` service account. The controller
/// manager creates that account asynchronously; creating it here too closes
/// the race with the first Pod (ServiceAccount admission is on).
async fn namespace(client: &Client) -> String {
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

fn cassandra_pod(name: &str, datacenter: &str) -> Pod {
    let labels = BTreeMap::from([
        (
            "cassandra.datastax.com/cluster".to_string(),
            "smoke".to_string(),
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

#[tokio::test]
async fn kube_lists_pods_created_in_the_apiserver() {
    let client = client().await;
    let ns = namespace(&client).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    for (name, dc) in [
        ("dc1-rack1-sts-0", "dc1"),
        ("dc1-rack2-sts-0", "dc1"),
        ("dc2-rack1-sts-0", "dc2"),
    ] {
        pods.create(&PostParams::default(), &cassandra_pod(name, dc))
            .await
            .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
    }

    // Play the kubelet: report one pod running and ready at a loopback IP.
    let status = Pod {
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("127.0.0.1".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    pods.patch_status(
        "dc1-rack1-sts-0",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .expect("patch pod status");

    let selected = pods
        .list(
            &ListParams::default().labels(
                "cassandra.datastax.com/cluster=smoke,cassandra.datastax.com/datacenter=dc1",
            ),
        )
        .await
        .expect("list pods");
    let mut names: Vec<String> = selected
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["dc1-rack1-sts-0", "dc1-rack2-sts-0"]);
    let ready = selected
        .items
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("dc1-rack1-sts-0"))
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.pod_ip.clone());
    assert_eq!(ready.as_deref(), Some("127.0.0.1"));

    Api::<Namespace>::all(client)
        .delete(&ns, &Default::default())
        .await
        .expect("delete namespace");
}

#[tokio::test]
async fn helm_installs_a_chart_that_kubectl_sees() {
    let client = client().await;
    let ns = namespace(&client).await;
    let kubeconfig = setting("KUBECONFIG");
    let chart = repo().join("tests/fixtures/charts/smoke");
    let chart = chart.to_str().expect("utf-8 path");
    run(
        setting("KASSETTE_TEST_HELM"),
        &[
            "install",
            "smoke",
            chart,
            "--namespace",
            &ns,
            "--kubeconfig",
            &kubeconfig,
            "--set",
            "greeting=hi-from-helm",
            "--wait=false",
        ],
    );
    let greeting = run(
        setting("KASSETTE_TEST_KUBECTL"),
        &[
            "get",
            "configmap",
            "smoke-config",
            "--namespace",
            &ns,
            "--kubeconfig",
            &kubeconfig,
            "-o",
            "jsonpath={.data.greeting}",
        ],
    );
    assert_eq!(greeting, "hi-from-helm");
    let releases = run(
        setting("KASSETTE_TEST_HELM"),
        &[
            "list",
            "--namespace",
            &ns,
            "--kubeconfig",
            &kubeconfig,
            "-q",
        ],
    );
    assert_eq!(releases.trim(), "smoke");
    run(
        setting("KASSETTE_TEST_HELM"),
        &[
            "uninstall",
            "smoke",
            "--namespace",
            &ns,
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    Api::<Namespace>::all(client)
        .delete(&ns, &Default::default())
        .await
        .expect("delete namespace");
}
