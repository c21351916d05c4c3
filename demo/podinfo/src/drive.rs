//! Driving a podinfo workload (Deployment `podinfo`, container
//! `podinfod`, port 9898) from outside the cluster, through the API
//! server: the failover demo's, the e2e scenarios' and the benchmark's
//! one copy of each operation.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use mesh_api::crds::traffic_split::TrafficSplit;

use crate::report::LoadSecond;

/// The Deployment's name.
pub const DEPLOYMENT: &str = "podinfo";
/// Its container.
pub const CONTAINER: &str = "podinfod";
/// Its HTTP port.
pub const PORT: u16 = 9898;

/// Rolls out the Deployment with every pod answering `rate` (0–1) of
/// requests with 500 (`MESH_DEMO_ERROR_RATE`).
pub async fn set_error_rate(client: &kube::Client, ns: &str, rate: &str) -> anyhow::Result<()> {
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": CONTAINER, "env": [{"name": "MESH_DEMO_ERROR_RATE", "value": rate}]}
    ]}}}});
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            DEPLOYMENT,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await?;
    Ok(())
}

/// Scales the Deployment.
pub async fn scale(client: &kube::Client, ns: &str, replicas: i32) -> anyhow::Result<()> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            DEPLOYMENT,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
        )
        .await?;
    Ok(())
}

/// Makes every ready pod matching `selector` answer `share` (0–1) of
/// requests with 500 from this instant on (`POST /chaos/errors/{share}`
/// through the API server's pod proxy; no rollout, so every pod breaks at
/// once).
pub async fn break_pods(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    share: f64,
) -> anyhow::Result<()> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await?;
    for pod in pods.items.iter().filter(|p| mesh_api::pod::is_ready(p)) {
        let Some(name) = pod.metadata.name.as_deref() else {
            continue;
        };
        mesh_api::kube_client::pod_request(
            client,
            http::Method::POST,
            ns,
            name,
            PORT,
            &format!("/chaos/errors/{share}"),
        )
        .await?;
    }
    Ok(())
}

/// The weights of TrafficSplit `name`, in percent of their sum.
pub async fn split_weights(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Vec<u32>> {
    let split = Api::<TrafficSplit>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    Ok(split.spec.percentages())
}

/// The weights of HTTPRoute `name`'s first rule with backends, as
/// percentages (a backend without a weight has 1).
pub async fn route_weights(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Vec<u32>> {
    let route = Api::<mesh_api::crds::http_route::HttpRoute>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    let weights: Vec<u32> = route
        .spec
        .rules
        .iter()
        .find(|rule| !rule.backend_refs.is_empty())
        .into_iter()
        .flat_map(|rule| &rule.backend_refs)
        .map(|backend| {
            backend["weight"]
                .as_u64()
                .map_or(1, |w| u32::try_from(w).unwrap_or(u32::MAX))
        })
        .collect();
    Ok(mesh_api::crds::traffic_split::percentages(&weights))
}

/// The lines a `mesh-podinfo load` container has printed so far (none
/// while its logs cannot be read).
pub async fn load_seconds(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    container: &str,
) -> Vec<LoadSecond> {
    let logs = Api::<Pod>::namespaced(client.clone(), ns)
        .logs(
            pod,
            &LogParams {
                container: Some(container.into()),
                ..LogParams::default()
            },
        )
        .await
        .unwrap_or_default();
    LoadSecond::parse_lines(&logs)
}
