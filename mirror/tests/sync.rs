//! Mirroring passes over watched views against a real API server (the
//! shared test cluster plays both the linked cluster and this one; mirrors
//! are `<svc>-<link>` beside the originals): exported Services get mirrors
//! whose Endpoints are the gateway, others do not; once settled, a pass
//! writes nothing; a dead gateway makes the addresses not ready; an
//! unexported Service loses its mirror.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use mesh_clusters::testing::shared_cluster;
use mesh_mirror::desired::Gateway;
use mesh_mirror::sync::{LocalViews, Outcome, RemoteViews, pass};
use tokio::sync::Notify;

fn gateway(cluster: &str, alive: bool) -> Gateway {
    Gateway {
        cluster: cluster.into(),
        cluster_domain: "cluster.local".into(),
        addresses: vec!["172.31.0.129".parse().expect("ip")],
        port: 4143,
        identity:
            "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                .into(),
        alive,
        transport: Some("tcp".into()),
    }
}

/// What passes did in total until `done` says so.
#[derive(Debug, Default)]
struct Total {
    created: usize,
    deleted: Vec<(String, String)>,
    endpoints_written: usize,
    invalid: usize,
}

impl Total {
    fn add(&mut self, outcome: &Outcome) {
        self.created += outcome.plan.create.len();
        self.deleted.extend(outcome.plan.delete.iter().cloned());
        self.endpoints_written += outcome.endpoints_written;
        self.invalid = outcome.invalid.len();
    }
}

/// Runs passes (as the mirror's loop does when its watches report) until
/// `done` holds for what they did, within 10 s.
async fn passes_until(
    views: &(RemoteViews, LocalViews),
    client: &kube::Client,
    gateway: &Gateway,
    done: impl Fn(&Total) -> bool,
) -> Total {
    let mut total = Total::default();
    for _ in 0..100 {
        if let Ok(outcome) = pass(&views.0, &views.1, client, gateway, 100).await {
            total.add(&outcome);
            if done(&total) {
                return total;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("passes did not get there within 10 s: {total:?}");
}

#[tokio::test]
async fn exported_services_are_mirrored_and_unexported_ones_removed() {
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    let ns = cluster.namespace("mirror").await;
    // A link name of this test's own, so other tests' objects never match.
    let link = format!("l{}", &ns[ns.len() - 5..]);
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    for (name, exported) in [("web", true), ("private", false)] {
        // Kubernetes' endpoints controller gives Endpoints the Service's
        // labels; the mirror's watch of them relies on it.
        let labels = if exported {
            serde_json::json!({"mirror.linkerd.io/exported": "true", "app": name})
        } else {
            serde_json::json!({"app": name})
        };
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        }))
        .expect("service");
        services
            .create(&PostParams::default(), &service)
            .await
            .expect("create service");
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "subsets": [{"addresses": [{"ip": "10.10.0.5"}], "ports": [{"name": "http", "port": 8080}]}],
        }))
        .expect("endpoints");
        Api::<Endpoints>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &endpoints)
            .await
            .expect("create endpoints");
    }
    let selector = format!(
        "{}=true,app in (web,private)",
        mesh_api::labels::MIRROR_EXPORTED
    );

    let changed = Arc::new(Notify::new());
    let views = (
        RemoteViews::start(&client, &selector, "linkerd", None, &changed),
        LocalViews::start(&client, &link, &changed),
    );
    let first = passes_until(&views, &client, &gateway(&link, true), |t| t.created > 0).await;
    assert_eq!(first.created, 1, "{first:?}");
    assert_eq!(first.invalid, 0);
    let mirror_name = format!("web-{link}");
    let mirror = services.get(&mirror_name).await.expect("the mirror exists");
    let labels = mirror.metadata.labels.expect("labels");
    assert_eq!(labels["mirror.linkerd.io/mirrored-service"], "true");
    assert_eq!(labels["mirror.linkerd.io/cluster-name"], link);
    assert_eq!(
        mirror.metadata.annotations.expect("annotations")["mirror.linkerd.io/remote-svc-fq-name"],
        format!("web.{ns}.svc.cluster.local")
    );
    assert!(
        services
            .get_opt(&format!("private-{link}"))
            .await
            .expect("get")
            .is_none(),
        "an unexported Service is not mirrored"
    );
    let endpoints_api = Api::<Endpoints>::namespaced(client.clone(), &ns);
    let endpoints = endpoints_api
        .get(&mirror_name)
        .await
        .expect("mirror endpoints");
    let subset = &endpoints.subsets.expect("subsets")[0];
    assert_eq!(
        subset.addresses.as_ref().expect("ready")[0].ip,
        "172.31.0.129"
    );
    assert_eq!(subset.ports.as_ref().expect("ports")[0].port, 4143);
    assert_eq!(
        endpoints
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("mesh.dev/transport"))
            .map(String::as_str),
        Some("tcp"),
        "the Link's transport is on the mirror's Endpoints"
    );

    // Once this cluster's watches have seen the writes, a pass writes nothing.
    let mut quiet = false;
    for _ in 0..50 {
        let outcome = pass(&views.0, &views.1, &client, &gateway(&link, true), 100)
            .await
            .expect("listed");
        if outcome.plan.create.is_empty()
            && outcome.plan.update.is_empty()
            && outcome.plan.delete.is_empty()
            && outcome.endpoints_written == 0
        {
            quiet = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(quiet, "settled mirrors are not written again");

    passes_until(&views, &client, &gateway(&link, false), |t| {
        t.endpoints_written > 0
    })
    .await;
    let subset = &endpoints_api
        .get(&mirror_name)
        .await
        .expect("endpoints")
        .subsets
        .expect("subsets")[0];
    assert!(subset.addresses.as_ref().is_none_or(Vec::is_empty));
    assert_eq!(
        subset
            .not_ready_addresses
            .as_ref()
            .expect("not ready")
            .len(),
        1
    );

    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {"mirror.linkerd.io/exported": null}}}),
            ),
        )
        .await
        .expect("unexport");
    let last = passes_until(&views, &client, &gateway(&link, true), |t| {
        !t.deleted.is_empty()
    })
    .await;
    assert_eq!(last.deleted, vec![(ns.clone(), mirror_name.clone())]);
    assert!(services.get_opt(&mirror_name).await.expect("get").is_none());
}

/// A StatefulSet's headless Service: a headless mirror whose Endpoints name
/// each pod's endpoint mirror (`<hostname>-<link>`, pointing at the
/// gateway) by cluster IP and host name; a pod gone in the linked cluster
/// takes its endpoint mirror with it.
#[tokio::test]
async fn a_headless_service_is_mirrored_per_pod() {
    let cluster = shared_cluster().await;
    let client = cluster.client.clone();
    let ns = cluster.namespace("mirror-headless").await;
    let link = format!("h{}", &ns[ns.len() - 5..]);
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let endpoints_api = Api::<Endpoints>::namespaced(client.clone(), &ns);
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db", "labels": {"mirror.linkerd.io/exported": "true", "app": "db"}},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");
    let pods = |hosts: &[&str]| -> Endpoints {
        let addresses: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| serde_json::json!({"ip": format!("10.10.0.{}", i + 10), "hostname": host}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "labels": {"mirror.linkerd.io/exported": "true", "app": "db"}},
            "subsets": [{"addresses": addresses, "ports": [{"name": "pg", "port": 5432}]}],
        }))
        .expect("endpoints")
    };
    endpoints_api
        .create(&PostParams::default(), &pods(&["db-0", "db-1"]))
        .await
        .expect("create endpoints");
    let selector = format!("{}=true,app=db", mesh_api::labels::MIRROR_EXPORTED);
    let changed = Arc::new(Notify::new());
    let views = (
        RemoteViews::start(&client, &selector, "linkerd", None, &changed),
        LocalViews::start(&client, &link, &changed),
    );
    let headless = format!("db-{link}");
    let gateway = gateway(&link, true);
    // The headless mirror's Endpoints fill in once the endpoint mirrors have
    // cluster IPs (a later pass, after this cluster's watch sees them).
    let mut named = Vec::new();
    for _ in 0..100 {
        pass(&views.0, &views.1, &client, &gateway, 100).await.ok();
        let written = endpoints_api.get_opt(&headless).await.expect("get");
        named = written
            .and_then(|e| e.subsets)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| s.addresses.unwrap_or_default())
            .map(|a| (a.hostname.unwrap_or_default(), a.ip))
            .collect();
        if named.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    named.sort();
    assert_eq!(named.len(), 2, "both pods are named: {named:?}");
    let mirror = services.get(&headless).await.expect("headless mirror");
    assert_eq!(
        mirror.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("None")
    );
    for (host, ip) in &named {
        let endpoint_mirror = services
            .get(&format!("{host}-{link}"))
            .await
            .expect("endpoint mirror");
        assert_eq!(
            endpoint_mirror.spec.and_then(|s| s.cluster_ip).as_ref(),
            Some(ip),
            "{host} is named by its endpoint mirror's cluster IP"
        );
        let annotations = endpoint_mirror.metadata.annotations.expect("annotations");
        assert_eq!(
            annotations["mirror.linkerd.io/remote-svc-fq-name"],
            format!("{host}.db.{ns}.svc.cluster.local")
        );
        let through = endpoints_api
            .get(&format!("{host}-{link}"))
            .await
            .expect("endpoint mirror's endpoints");
        let subset = &through.subsets.expect("subsets")[0];
        assert_eq!(
            subset.addresses.as_ref().expect("ready")[0].ip,
            "172.31.0.129",
            "{host}'s endpoint mirror points at the gateway"
        );
    }

    // db-1 goes away in the linked cluster: its endpoint mirror goes too.
    endpoints_api
        .replace("db", &PostParams::default(), &{
            let mut only = pods(&["db-0"]);
            only.metadata.resource_version = endpoints_api
                .get("db")
                .await
                .expect("get")
                .metadata
                .resource_version;
            only
        })
        .await
        .expect("replace endpoints");
    let gone = passes_until(&views, &client, &gateway, |t| !t.deleted.is_empty()).await;
    assert_eq!(gone.deleted, vec![(ns.clone(), format!("db-1-{link}"))]);
}
