//! The controllers without a server of their own, as processes: the
//! failover controller and a service mirror say ready only once what they
//! watch has been listed (a mirror whose Link does not exist yet is not
//! ready), and both stop within their grace period on SIGTERM. Of two
//! replicas one holds the Lease; the standby takes it over when the active
//! one is killed, and at its next try when it stops (and releases it). A
//! mirror replica killed mid-resync leaves its standby nothing lost and
//! nothing to write twice.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use kube::Api;
use kube::api::{ListParams, PostParams};
use mesh_api::crds::link::Link;
use mesh_clusters::testing::{ensure_crds, shared_cluster};
use support::{admin_get, first_ready_answer, free_addr, stop_with_sigterm, wait_ready};

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
    let answered = first_ready_answer(admin).await;
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

/// Polls the holder of the failover controller's Lease until it is
/// `expected`, within 30 s; how long it took.
async fn until_held_by(leases: &Api<Lease>, expected: Option<&str>) -> Duration {
    until_lease_held_by(leases, "linkerd-failover", expected).await
}

/// Polls the holder of Lease `name` until it is `expected`, within 30 s;
/// how long it took.
async fn until_lease_held_by(leases: &Api<Lease>, name: &str, expected: Option<&str>) -> Duration {
    let started = tokio::time::Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(30) {
        last = holder(leases, name).await;
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

/// A Link in `ns` named `link`, mirroring the Services of the shared
/// cluster labelled `test-link: <link>` (the credentials reach the same
/// cluster), its gateway's probe on `probe_port`.
async fn link_to_self(
    cluster: &mesh_clusters::testing::TestCluster,
    ns: &str,
    link: &str,
    probe_port: u16,
) {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("cluster-credentials-{link}")},
        "type": "mirror.linkerd.io/remote-kubeconfig",
        "stringData": {"kubeconfig": std::fs::read_to_string(cluster.kubeconfig()).expect("kubeconfig")},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(cluster.client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the credentials");
    let resource: Link = serde_json::from_value(serde_json::json!({
        "apiVersion": "multicluster.linkerd.io/v1alpha3",
        "kind": "Link",
        "metadata": {"name": link},
        "spec": {
            "targetClusterName": link,
            "targetClusterDomain": "cluster.local",
            "clusterCredentialsSecret": format!("cluster-credentials-{link}"),
            "gatewayAddress": "192.0.2.10",
            "gatewayPort": "4143",
            "gatewayIdentity": "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
            "probeSpec": {"path": "/ready", "port": probe_port.to_string(), "period": "1s"},
            "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true", "test-link": link}},
        },
    }))
    .expect("link");
    Api::<Link>::namespaced(cluster.client.clone(), ns)
        .create(&PostParams::default(), &resource)
        .await
        .expect("create the Link");
}

/// Exports `count` Services `svc-<n>` of `ns` to `link`, each with an
/// endpoint, a few at a time.
async fn export_services(client: &kube::Client, ns: &str, link: &str, count: usize) {
    let labels = serde_json::json!({"mirror.linkerd.io/exported": "true", "test-link": link});
    let services = Api::<Service>::namespaced(client.clone(), ns);
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), ns);
    let names: Vec<String> = (0..count).map(|n| format!("svc-{n}")).collect();
    for batch in names.chunks(20) {
        let mut creating = tokio::task::JoinSet::new();
        for name in batch {
            let (services, endpoints) = (services.clone(), endpoints.clone());
            let metadata = serde_json::json!({"name": name, "labels": labels});
            creating.spawn(async move {
                let service: Service = serde_json::from_value(serde_json::json!({
                    "metadata": metadata,
                    "spec": {"ports": [{"name": "http", "port": 80}]},
                }))
                .expect("service");
                services
                    .create(&PostParams::default(), &service)
                    .await
                    .expect("create service");
                let ready: Endpoints = serde_json::from_value(serde_json::json!({
                    "metadata": metadata,
                    "subsets": [{"addresses": [{"ip": "10.10.0.9"}], "ports": [{"name": "http", "port": 8080}]}],
                }))
                .expect("endpoints");
                endpoints
                    .create(&PostParams::default(), &ready)
                    .await
                    .expect("create endpoints");
            });
        }
        creating.join_all().await;
    }
}

/// The mirror Services of `link` in `ns`: name → (uid, resourceVersion).
async fn mirrors_of(
    client: &kube::Client,
    ns: &str,
    link: &str,
) -> BTreeMap<String, (String, String)> {
    let list = Api::<Service>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("mirror.linkerd.io/cluster-name={link}")))
        .await
        .expect("list the mirrors");
    list.items
        .into_iter()
        .map(|s| {
            let meta = s.metadata;
            (
                meta.name.unwrap_or_default(),
                (
                    meta.uid.unwrap_or_default(),
                    meta.resource_version.unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// The active mirror replica is killed while it mirrors a Link's exports
/// for the first time: the standby takes the Lease and finishes the job,
/// with nothing lost (every export has its mirror Service and Endpoints)
/// and nothing written twice (each mirror written before the kill keeps
/// its uid and resourceVersion: not deleted, recreated or rewritten).
#[tokio::test]
async fn a_mirror_replica_killed_mid_resync_leaves_the_standby_nothing_to_redo() {
    const EXPORTS: usize = 400;
    let cluster = shared_cluster().await;
    ensure_crds(&cluster.client, vec![mesh_api::crds::link::crd()]).await;
    let ns = cluster.namespace("mirror-ha").await;
    let link = format!("k{}", &ns[ns.len() - 5..]);
    link_to_self(&cluster, &ns, &link, free_addr().port()).await;
    export_services(&cluster.client, &ns, &link, EXPORTS).await;

    let leases = Api::<Lease>::namespaced(cluster.client.clone(), &ns);
    let lease = format!("linkerd-service-mirror-{link}");
    let replica = |name: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-controller"))
            .arg("mirror")
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .arg(format!("--link={link}"))
            .arg(format!("--namespace={ns}"))
            .arg(format!("--admin-listen={}", free_addr()))
            .args([
                "--lease-duration=3s",
                "--lease-renew-deadline=2s",
                "--lease-retry-period=500ms",
            ])
            .env("POD_NAME", name)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn")
    };
    let mut a = replica("mirror-a");
    until_lease_held_by(&leases, &lease, Some("mirror-a")).await;
    let _b = replica("mirror-b");

    // Killed mid-way: some mirrors written, not all.
    let mut written = BTreeMap::new();
    for _ in 0..600 {
        written = mirrors_of(&cluster.client, &ns, &link).await;
        if written.len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill().await.expect("kill the active replica");
    let at_kill = mirrors_of(&cluster.client, &ns, &link).await;
    assert!(
        !written.is_empty() && at_kill.len() < EXPORTS,
        "the kill came mid-resync: {} of {EXPORTS} mirrors written",
        at_kill.len()
    );

    until_lease_held_by(&leases, &lease, Some("mirror-b")).await;
    let endpoints = Api::<Endpoints>::namespaced(cluster.client.clone(), &ns);
    let mirror_endpoints = || async {
        endpoints
            .list(&ListParams::default().labels(&format!("mirror.linkerd.io/cluster-name={link}")))
            .await
            .expect("list the mirrors' Endpoints")
            .items
            .into_iter()
            .filter_map(|e| e.metadata.name)
            .collect::<BTreeSet<String>>()
    };
    let (mut mirrors, mut with_endpoints) = (BTreeMap::new(), BTreeSet::new());
    for _ in 0..300 {
        mirrors = mirrors_of(&cluster.client, &ns, &link).await;
        with_endpoints = mirror_endpoints().await;
        if mirrors.len() == EXPORTS && with_endpoints.len() == EXPORTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected: BTreeSet<String> = (0..EXPORTS).map(|n| format!("svc-{n}-{link}")).collect();
    assert_eq!(
        mirrors.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "after the takeover, every export has its mirror and nothing else is mirrored"
    );
    assert_eq!(
        with_endpoints, expected,
        "after the takeover, every mirror has its Endpoints"
    );
    let rewritten: Vec<&String> = at_kill
        .iter()
        .filter(|(name, before)| mirrors.get(*name) != Some(before))
        .map(|(name, _)| name)
        .collect();
    assert!(
        rewritten.is_empty(),
        "mirrors written before the kill were recreated or rewritten by the standby: {rewritten:?}"
    );
}
