//! The controllers without a server of their own, as processes: the
//! failover controller and a service mirror say ready only once what they
//! watch has been listed (a mirror whose Link does not exist yet is not
//! ready), and both stop within their grace period on SIGTERM. Of two
//! replicas one holds the Lease; the standby takes it over when the active
//! one is killed, and at its next try when it stops (and releases it).

mod support;

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;
use mesh_api::crds::link::Link;
use mesh_clusters::testing::{ensure_crds, shared_cluster};
use support::{admin_get, free_addr, stop_with_sigterm, wait_ready};

/// `mesh-controller failover` on the shared cluster, for the splits
/// labelled `controlled_by`, its Lease in `ns`, its admin server on `admin`.
fn failover(
    cluster: &mesh_clusters::testing::TestCluster,
    admin: std::net::SocketAddr,
    ns: &str,
    controlled_by: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-controller"));
    command
        .arg("failover")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg(format!("--admin-listen={admin}"))
        .arg(format!("--namespace={ns}"))
        .arg(format!("--controlled-by={controlled_by}"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn the_failover_controller_is_ready_once_its_watches_listed_and_stops_on_sigterm() {
    let cluster = shared_cluster().await;
    ensure_crds(&cluster.client, mesh_api::crds::all()).await;
    let ns = cluster.namespace("failover-life").await;
    let admin = free_addr();
    let mut child = failover(&cluster, admin, &ns, "lifecycle-test")
        .arg("--pod-name=failover-lifecycle-test")
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

/// The holder of Lease `name`, without the random suffix of its identity.
async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    let lease = leases.get_opt(name).await.ok()??;
    let identity = lease.spec?.holder_identity?;
    Some(identity.split('_').next().unwrap_or_default().to_owned())
}

/// Polls `holder` until it is `expected`, within 30 s; how long it took.
async fn until_held_by(leases: &Api<Lease>, expected: Option<&str>) -> Duration {
    let started = tokio::time::Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(30) {
        last = holder(leases, "linkerd-failover").await;
        if last.as_deref() == expected {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Lease not held by {expected:?} within 30 s; held by {last:?}");
}

#[tokio::test]
async fn of_two_failover_replicas_one_is_active_and_the_standby_takes_over() {
    let cluster = shared_cluster().await;
    ensure_crds(&cluster.client, mesh_api::crds::all()).await;
    let ns = cluster.namespace("failover-ha").await;
    let leases = Api::<Lease>::namespaced(cluster.client.clone(), &ns);
    let replica = |name: &str, admin: std::net::SocketAddr| {
        failover(&cluster, admin, &ns, "ha-test")
            .args([
                "--lease-duration=3s",
                "--lease-renew-deadline=2s",
                "--lease-retry-period=500ms",
            ])
            .env("POD_NAME", name)
            .spawn()
            .expect("spawn")
    };
    let (admin_a, admin_b) = (free_addr(), free_addr());
    let mut a = replica("replica-a", admin_a);
    until_held_by(&leases, Some("replica-a")).await;
    let mut b = replica("replica-b", admin_b);
    for admin in [admin_a, admin_b] {
        assert!(
            wait_ready(admin, Duration::from_secs(30)).await,
            "both replicas say ready, the standby too (it can take over)"
        );
    }
    // Longer than the Lease lasts: the active one keeps renewing it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        holder(&leases, "linkerd-failover").await.as_deref(),
        Some("replica-a"),
        "the standby took a Lease that was being renewed"
    );

    // Killed, the active replica releases nothing: the standby takes the
    // Lease once it has seen it unrenewed for its duration.
    a.kill().await.expect("kill the active replica");
    let took = until_held_by(&leases, Some("replica-b")).await;
    eprintln!("the standby took over {took:?} after the active replica was killed");
    let transitions = leases
        .get("linkerd-failover")
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.lease_transitions);
    assert_eq!(transitions, Some(1), "one change of holder");

    // Asked to stop, the active replica gives the Lease up.
    stop_with_sigterm(&mut b).await;
    until_held_by(&leases, None).await;
}
