//! `mesh multicluster gateways`: for each Link of this cluster, whether its
//! gateway is alive, how many Services are mirrored from it and the last
//! probe's latency, as the Link's service mirror sees them (its metrics,
//! read through the API server) — `CLUSTER ALIVE NUM_SVC LATENCY`.

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use mesh_api::crds::link::Link;
use mesh_api::labels::{
    MIRROR_CLUSTER_NAME, MIRROR_HEADLESS_MIRROR_SVC_NAME, MIRROR_MIRRORED_SERVICE,
    MULTICLUSTER_NAMESPACE as NS,
};
use mesh_mirror::status::{condition, last_remote_error};
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// One Link's gateway.
#[derive(Debug, Serialize)]
pub struct GatewayRow {
    /// The linked cluster.
    pub cluster: String,
    /// Whether its gateway answers probes (`None`: no running mirror to ask).
    pub alive: Option<bool>,
    /// Mirror Services from it.
    pub num_svc: usize,
    /// The last probe's latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// Whether the service mirror's view of the linked cluster is complete
    /// and current (its `RemoteReachable` condition); `None` before it
    /// reported.
    pub synced: Option<bool>,
    /// The service mirror's last error reaching the linked API, if any.
    pub last_error: Option<String>,
}

/// A sample of `metric` labelled with `target_cluster_name="<cluster>"`.
fn sample(metrics: &str, metric: &str, cluster: &str) -> Option<f64> {
    let labels = format!("target_cluster_name=\"{cluster}\"");
    mesh_api::metrics_text::samples(metrics, metric)
        .find(|(series, _)| *series == labels)
        .map(|(_, value)| value)
}

/// Reads every Link's gateway.
pub async fn rows(client: &kube::Client) -> anyhow::Result<Vec<GatewayRow>> {
    let links = Api::<Link>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            anyhow::anyhow!("listing Links in {NS}: {e} (is the multicluster extension installed?)")
        })?;
    let mut rows = Vec::new();
    for link in links.items {
        let cluster = link.spec.target_cluster_name.clone();
        let synced = condition(&link, "RemoteReachable").map(|(status, _)| status == "True");
        let last_error = last_remote_error(&link).map(|(message, _)| message);
        let num_svc = Api::<Service>::all(client.clone())
            .list(&ListParams::default().labels(&format!(
                "{MIRROR_MIRRORED_SERVICE}=true,{MIRROR_CLUSTER_NAME}={cluster},!{MIRROR_HEADLESS_MIRROR_SVC_NAME}"
            )))
            .await?
            .items
            .len();
        // Of the mirror's replicas only the one holding its Lease mirrors
        // and probes: the page that has the cluster's gateway samples.
        let replicas = Api::<Pod>::namespaced(client.clone(), NS)
            .list(&ListParams::default().labels(&format!(
                "component=linkerd-service-mirror,{MIRROR_CLUSTER_NAME}={cluster}"
            )))
            .await?
            .items
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.metadata.name);
        let mut metrics = None;
        for pod in replicas {
            let page = mesh_api::kube_client::pod_get(
                client,
                NS,
                &pod,
                mesh_api::ports::MIRROR_ADMIN,
                "/metrics",
            )
            .await
            .unwrap_or_default();
            if sample(&page, "gateway_alive", &cluster).is_some() {
                metrics = Some(page);
                break;
            }
        }
        let metrics = metrics.unwrap_or_default();
        rows.push(GatewayRow {
            alive: sample(&metrics, "gateway_alive", &cluster).map(|v| v > 0.0),
            latency_ms: sample(&metrics, "gateway_latency", &cluster),
            cluster,
            num_svc,
            synced,
            last_error,
        });
    }
    Ok(rows)
}

/// Prints the table (or JSON).
pub async fn run(global: &GlobalArgs, format: OutputFormat) -> anyhow::Result<()> {
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    let rows = rows(&client).await?;
    if format == OutputFormat::Json {
        return output::print_json(&rows);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.cluster.clone(),
                match r.alive {
                    Some(true) => console::style("True").green().to_string(),
                    Some(false) => console::style("False").red().to_string(),
                    None => console::style("unknown").yellow().to_string(),
                },
                r.num_svc.to_string(),
                r.latency_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{}ms", ms.round())),
                match r.synced {
                    Some(true) => console::style("True").green().to_string(),
                    Some(false) => console::style("False").red().to_string(),
                    None => console::style("never").red().to_string(),
                },
            ]
        })
        .collect();
    output::print_table(
        &["CLUSTER", "ALIVE", "NUM_SVC", "LATENCY", "SYNCED"],
        &table,
    );
    for row in rows.iter().filter(|r| r.synced != Some(true)) {
        eprintln!(
            "{}: the service mirror {} the linked API server{}; its mirrors may be missing or stale \
             (`mesh multicluster check` says more)",
            row.cluster,
            if row.synced.is_none() {
                "has never reached"
            } else {
                "cannot reach"
            },
            row.last_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_per_cluster() {
        let page = "gateway_alive{target_cluster_name=\"east\"} 1\ngateway_alive{target_cluster_name=\"north\"} 0\ngateway_latency{target_cluster_name=\"east\"} 2.5\n";
        assert_eq!(sample(page, "gateway_alive", "east"), Some(1.0));
        assert_eq!(sample(page, "gateway_alive", "north"), Some(0.0));
        assert_eq!(sample(page, "gateway_latency", "east"), Some(2.5));
        assert_eq!(sample(page, "gateway_latency", "west"), None);
    }
}
