//! Smoke tests of the real kube-apiserver (envtest style: no kubelet, the
//! test plays its part by writing pod status), of `helm` and of `kubectl`.

mod common;

use common::{k8s, repo, run, setting};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

#[tokio::test]
async fn kube_lists_pods_created_in_the_apiserver() {
    let client = k8s::client().await;
    let ns = k8s::namespace(&client).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    for (name, dc) in [
        ("dc1-rack1-sts-0", "dc1"),
        ("dc1-rack2-sts-0", "dc1"),
        ("dc2-rack1-sts-0", "dc2"),
    ] {
        k8s::create_cassandra_pod(&pods, name, "smoke", dc).await;
    }

    // Play the kubelet: report one pod running and ready at a loopback IP.
    k8s::set_pod_status(&pods, "dc1-rack1-sts-0", "127.0.0.1", true).await;

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

    k8s::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn helm_installs_a_chart_that_kubectl_sees() {
    let client = k8s::client().await;
    let ns = k8s::namespace(&client).await;
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
    k8s::delete_namespace(&client, &ns).await;
}
