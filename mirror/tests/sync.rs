//! One mirroring pass against a real API server (the shared test cluster
//! plays both the linked cluster and this one; mirrors are `<svc>-<link>`
//! beside the originals): exported Services get mirrors whose Endpoints are
//! the gateway, others do not; a second pass changes nothing; a dead
//! gateway makes the addresses not ready; an unexported Service loses its
//! mirror.

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use mesh_clusters::testing::shared_cluster;
use mesh_mirror::desired::Gateway;
use mesh_mirror::sync::{selector_string, sync};

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
    }
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
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": if exported {
                    serde_json::json!({"mirror.linkerd.io/exported": "true", "app": name})
                } else {
                    serde_json::json!({"app": name})
                },
            },
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        }))
        .expect("service");
        services
            .create(&PostParams::default(), &service)
            .await
            .expect("create service");
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "subsets": [{"addresses": [{"ip": "10.10.0.5"}], "ports": [{"name": "http", "port": 8080}]}],
        }))
        .expect("endpoints");
        Api::<Endpoints>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &endpoints)
            .await
            .expect("create endpoints");
    }
    let selector = format!("{},app in (web,private)", selector_string(None));

    let first = sync(&client, &client, &selector, &gateway(&link, true))
        .await
        .expect("first pass");
    assert_eq!(first.plan.create.len(), 1, "{:?}", first.plan);
    assert!(first.invalid.is_empty());
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

    let again = sync(&client, &client, &selector, &gateway(&link, true))
        .await
        .expect("second pass");
    assert!(
        again.plan.create.is_empty()
            && again.plan.update.is_empty()
            && again.plan.delete.is_empty(),
        "nothing changed, nothing to do: {:?}",
        again.plan
    );

    sync(&client, &client, &selector, &gateway(&link, false))
        .await
        .expect("gateway down");
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
    let last = sync(&client, &client, &selector, &gateway(&link, true))
        .await
        .expect("third pass");
    assert_eq!(last.plan.delete, vec![(ns.clone(), mirror_name.clone())]);
    assert!(services.get_opt(&mirror_name).await.expect("get").is_none());
}
