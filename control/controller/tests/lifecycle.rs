//! The controllers without a server of their own, as processes: the
//! failover controller and a service mirror say ready only once what they
//! watch has been listed (a mirror whose Link does not exist yet is not
//! ready), and both stop within their grace period on SIGTERM.

mod support;

use std::process::Stdio;
use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use mesh_api::crds::link::Link;
use mesh_clusters::testing::{ensure_crds, shared_cluster};
use support::{admin_get, free_addr, stop_with_sigterm, wait_ready};

#[tokio::test]
async fn the_failover_controller_is_ready_once_its_watches_listed_and_stops_on_sigterm() {
    let cluster = shared_cluster().await;
    ensure_crds(&cluster.client, mesh_api::crds::all()).await;
    let admin = free_addr();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-controller"))
        .arg("failover")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg(format!("--admin-listen={admin}"))
        .arg("--controlled-by=lifecycle-test")
        .arg("--pod-name=failover-lifecycle-test")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    assert!(
        wait_ready(admin, Duration::from_secs(30)).await,
        "the failover controller never said ready"
    );
    let (status, metrics) = admin_get(admin, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("# EOF"), "{metrics}");
    stop_with_sigterm(&mut child).await;
}

#[tokio::test]
async fn a_mirror_is_not_ready_until_its_link_is_read_and_stops_on_sigterm() {
    let cluster = shared_cluster().await;
    ensure_crds(&cluster.client, vec![mesh_api::crds::link::crd()]).await;
    let ns = cluster.namespace("mirror-life").await;
    let admin = free_addr();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-controller"))
        .arg("mirror")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg("--link=east")
        .arg(format!("--namespace={ns}"))
        .arg(format!("--admin-listen={admin}"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    // Alive, but not ready: the Link it mirrors does not exist.
    let mut answered = None;
    for _ in 0..50 {
        answered = admin_get(admin, "/ready").await;
        if answered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answered,
        Some((503, "not ready\n".to_owned())),
        "a mirror without its Link"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        admin_get(admin, "/ready").await.map(|(status, _)| status),
        Some(503),
        "still not ready while the Link is missing"
    );

    // A Link whose credentials are not there yet: this cluster's side is
    // listed, so the mirror is ready (and reports the missing credentials
    // on the Link's status).
    let link: Link = serde_json::from_value(serde_json::json!({
        "apiVersion": "multicluster.linkerd.io/v1alpha3",
        "kind": "Link",
        "metadata": {"name": "east"},
        "spec": {
            "targetClusterName": "east",
            "targetClusterDomain": "cluster.local",
            "clusterCredentialsSecret": "cluster-credentials-east",
            "gatewayAddress": "192.0.2.10",
            "gatewayPort": "4143",
            "gatewayIdentity": "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
            "probeSpec": {"path": "/ready", "port": "4191", "period": "1s"},
            "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true"}},
        },
    }))
    .expect("link");
    Api::<Link>::namespaced(cluster.client.clone(), &ns)
        .create(&PostParams::default(), &link)
        .await
        .expect("create the Link");
    assert!(
        wait_ready(admin, Duration::from_secs(30)).await,
        "the mirror never said ready after its Link appeared"
    );
    stop_with_sigterm(&mut child).await;
}
