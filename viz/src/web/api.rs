//! The dashboard's JSON API (`/api/…`): what the page shows, read with the
//! web component's own read-only ServiceAccount and from viz's Prometheus.
//!
//! - `namespaces`: golden metrics per namespace (what each one served);
//! - `workloads?namespace=NS`: per Deployment, StatefulSet and DaemonSet;
//! - `edges?namespace=NS`: who calls whom among Deployments, whether both
//!   sides presented identities, and what each caller saw;
//! - `routes?namespace=NS&kind=deployment&name=NAME`: for each Service
//!   selecting the workload's pods, its golden metrics per ServiceProfile
//!   route as every client saw them;
//! - `clusters`: each Link with its gateway's liveness and probe latency
//!   (as the mirror serving it measured them), the Services mirrored from
//!   it with what their clients here saw, and every TrafficSplit with its
//!   backends' weights and the failover phase;
//! - `trafficsplit?namespace=NS&name=NAME`: the split's backend weights,
//!   success rates and request rates, and its phase, over the last 15
//!   minutes (from the failover controller's series).
//!
//! An unknown figure is `null`, never a guess: a gateway whose liveness
//! Prometheus does not know is not shown alive.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ListParams;
use mesh_api::crds::link::Link;
use mesh_api::crds::traffic_split::TrafficSplit;
use serde_json::{Value, json};

use super::Dashboard;
use crate::metrics::prometheus::{Prometheus, duration_seconds};
use crate::metrics::resource::{Kind, Target};
use crate::metrics::stat::{Request, Row, stat};

/// Why an endpoint gave no answer.
#[derive(Debug)]
pub enum Failure {
    /// A parameter is missing or not what it should be (named).
    BadRequest(String),
    /// No such endpoint.
    NotFound,
    /// Kubernetes or Prometheus failed.
    Upstream(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Upstream(e)
    }
}

/// A request's query parameters.
#[derive(Debug, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// The parameters of `query` (`a=b&c=d`); a repeated one keeps its
    /// first value.
    pub fn parse(query: &str) -> Self {
        let mut params = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            params
                .entry(key.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        Self(params)
    }

    /// A Kubernetes object name (`namespace`, `name`): required, and a
    /// DNS subdomain.
    pub fn object_name(&self, key: &str) -> Result<&str, Failure> {
        let value = self
            .0
            .get(key)
            .ok_or_else(|| Failure::BadRequest(format!("parameter {key:?} is missing")))?;
        if crate::metrics::resource::is_object_name(value) {
            Ok(value)
        } else {
            Err(Failure::BadRequest(format!(
                "parameter {key}={value:?} is not a Kubernetes object name"
            )))
        }
    }

    /// The parameters as one text, in a fixed order (a cache key).
    pub fn canonical(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.0)
            .finish()
    }

    /// The value of `key`, when given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The `window` (`1m` unless given), at most an hour.
    fn window(&self) -> Result<&str, Failure> {
        let window = self.0.get("window").map_or("1m", String::as_str);
        match duration_seconds(window) {
            Ok(seconds) if seconds <= 3_600.0 => Ok(window),
            Ok(_) => Err(Failure::BadRequest(format!(
                "parameter window={window:?} is longer than 1h"
            ))),
            Err(e) => Err(Failure::BadRequest(format!("parameter window: {e}"))),
        }
    }
}

/// The answer of `endpoint` (the path after `/api/`).
pub async fn answer(
    dashboard: &Dashboard,
    endpoint: &str,
    params: &Params,
) -> Result<Value, Failure> {
    match endpoint {
        "namespaces" => {
            let rows = rows(dashboard, Kind::Namespace, None, params.window()?).await?;
            Ok(json!({ "rows": rows }))
        }
        "workloads" => {
            let namespace = params.object_name("namespace")?;
            let window = params.window()?;
            let mut all = Vec::new();
            for kind in [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet] {
                all.extend(rows(dashboard, kind, Some(namespace), window).await?);
            }
            Ok(json!({ "namespace": namespace, "rows": all }))
        }
        "edges" => {
            let namespace = params.object_name("namespace")?;
            edges(dashboard, namespace, params.window()?).await
        }
        "routes" => {
            let namespace = params.object_name("namespace")?;
            let name = params.object_name("name")?;
            let kind = params.get("kind").unwrap_or_default();
            workload_routes(dashboard, namespace, kind, name, params.window()?).await
        }
        "httproutes" => {
            let namespace = params.object_name("namespace")?;
            let window = params.window()?;
            let seconds =
                duration_seconds(window).map_err(|e| Failure::BadRequest(e.to_string()))?;
            let rows = crate::metrics::http_route::stat(
                &dashboard.client,
                &dashboard.prometheus,
                Some(namespace),
                None,
                (window, seconds),
            )
            .await?;
            Ok(json!({ "namespace": namespace, "rows": rows }))
        }
        "clusters" => clusters(dashboard).await,
        "trafficsplit" => {
            let namespace = params.object_name("namespace")?;
            let name = params.object_name("name")?;
            split_history(&dashboard.prometheus, namespace, name).await
        }
        _ => Err(Failure::NotFound),
    }
}

async fn rows(
    dashboard: &Dashboard,
    kind: Kind,
    namespace: Option<&str>,
    window: &str,
) -> anyhow::Result<Vec<Row>> {
    let target = Target { kind, name: None };
    let request = Request {
        target: &target,
        namespace,
        from: None,
        to: None,
        window,
    };
    let (rows, warnings) = stat(&dashboard.client, &dashboard.prometheus, request).await?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok(rows)
}

/// The edges between Deployments into or out of `namespace`, each with
/// what its caller saw (success rate, requests per second).
async fn edges(dashboard: &Dashboard, namespace: &str, window: &str) -> Result<Value, Failure> {
    let found = crate::metrics::edges::of(
        &dashboard.client,
        &dashboard.prometheus,
        Kind::Deployment,
        Some(namespace),
        window,
    )
    .await?;
    for warning in &found.warnings {
        tracing::warn!("{warning}");
    }
    let edges: Vec<Value> = found
        .edges
        .iter()
        .map(|edge| {
            let key = (
                edge.src_namespace.clone(),
                edge.src.clone(),
                edge.dst_namespace.clone(),
                edge.dst.clone(),
            );
            let golden = found.golden.get(&key);
            let mut json = serde_json::to_value(edge).unwrap_or_default();
            json["success"] = json!(golden.and_then(|g| g.success));
            json["rps"] = json!(golden.and_then(|g| g.rps));
            json
        })
        .collect();
    Ok(json!({ "namespace": namespace, "edges": edges }))
}

/// The Services that select a workload's pods, at most this many.
const MAX_WORKLOAD_SERVICES: usize = 10;

/// The route rows of each Service that selects the pods of workload
/// `kind`/`name` (by its pod template's labels), as every client saw
/// them over `window`.
async fn workload_routes(
    dashboard: &Dashboard,
    namespace: &str,
    kind: &str,
    name: &str,
    window: &str,
) -> Result<Value, Failure> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    /// The pod template of workload `name`, when it exists.
    async fn template_of<K>(
        client: &kube::Client,
        namespace: &str,
        name: &str,
        template: fn(K) -> Option<PodTemplateSpec>,
    ) -> Result<Option<PodTemplateSpec>, Failure>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let workload = Api::<K>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| {
                Failure::Upstream(anyhow::anyhow!(
                    "reading {} {namespace}/{name}: {e}",
                    K::kind(&Default::default())
                ))
            })?;
        Ok(workload.and_then(template))
    }
    let client = &dashboard.client;
    let template = match kind {
        "deployment" => {
            template_of::<Deployment>(client, namespace, name, |w| w.spec.map(|s| s.template))
                .await?
        }
        "statefulset" => {
            template_of::<StatefulSet>(client, namespace, name, |w| w.spec.map(|s| s.template))
                .await?
        }
        "daemonset" => {
            template_of::<DaemonSet>(client, namespace, name, |w| w.spec.map(|s| s.template))
                .await?
        }
        other => {
            return Err(Failure::BadRequest(format!(
                "parameter kind={other:?}: routes are shown for a deployment, statefulset or daemonset"
            )));
        }
    };
    let labels = template
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let services: Vec<String> = Api::<Service>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| Failure::Upstream(anyhow::anyhow!("listing Services in {namespace}: {e}")))?
        .items
        .into_iter()
        .filter(|service| {
            let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref());
            selector.is_some_and(|selector| {
                !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
        })
        .filter_map(|service| service.metadata.name)
        .take(MAX_WORKLOAD_SERVICES)
        .collect();
    let mut out = Vec::new();
    for service in services {
        let (rows, profiled) = crate::metrics::routes::of(
            client,
            &dashboard.prometheus,
            &service,
            namespace,
            None,
            window,
        )
        .await?;
        out.push(json!({ "service": service, "profiled": profiled, "rows": rows }));
    }
    Ok(json!({ "namespace": namespace, "kind": kind, "name": name, "services": out }))
}

async fn clusters(dashboard: &Dashboard) -> Result<Value, Failure> {
    let client = &dashboard.client;
    let links = crate::metrics::installed(
        Api::<Link>::all(client.clone())
            .list(&ListParams::default())
            .await,
        "Links",
    )?;
    let mirrored = Api::<Service>::all(client.clone())
        .list(&ListParams::default().labels(&format!(
            "{}=true",
            mesh_api::labels::MIRROR_MIRRORED_SERVICE
        )))
        .await
        .map_err(|e| anyhow::anyhow!("listing mirrored Services: {e}"))?
        .items;
    let splits = crate::metrics::installed(
        Api::<TrafficSplit>::all(client.clone())
            .list(&ListParams::default())
            .await,
        "TrafficSplits",
    )?;
    // What Prometheus knows; when it cannot be asked, every figure stays
    // unknown and the page says why.
    let prometheus = &dashboard.prometheus;
    let asked = futures::try_join!(
        prometheus.query("max by (target_cluster_name) (gateway_alive)"),
        prometheus.query("max by (target_cluster_name) (gateway_latency)"),
        prometheus.query("max by (namespace, trafficsplit) (failover_state)"),
    );
    let (alive, latency, phases, prometheus_error) = match asked {
        Ok((a, l, p)) => (a, l, p, None),
        Err(e) => (Vec::new(), Vec::new(), Vec::new(), Some(format!("{e:#}"))),
    };
    let by_cluster = |samples: &[mesh_api::prometheus::Sample], cluster: &str| {
        samples
            .iter()
            .find(|s| s.label("target_cluster_name") == cluster)
            .map(|s| s.value)
            .filter(|v| v.is_finite())
    };
    let service_target = Target {
        kind: Kind::Service,
        name: None,
    };
    let service_rows: Vec<Row> = if mirrored.is_empty() || prometheus_error.is_some() {
        Vec::new()
    } else {
        let request = Request {
            target: &service_target,
            namespace: None,
            from: None,
            to: None,
            window: "1m",
        };
        stat(client, prometheus, request).await?.0
    };
    let links: Vec<Value> = links
        .iter()
        .map(|link| {
            let cluster = &link.spec.target_cluster_name;
            let services: Vec<Value> = mirrored
                .iter()
                .filter(|s| {
                    s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(mesh_api::labels::MIRROR_CLUSTER_NAME))
                        == Some(cluster)
                })
                .map(|s| {
                    let (ns, name) = (
                        s.metadata.namespace.clone().unwrap_or_default(),
                        s.metadata.name.clone().unwrap_or_default(),
                    );
                    let row = service_rows
                        .iter()
                        .find(|r| r.namespace == ns && r.name == name);
                    json!({ "namespace": ns, "name": name, "stat": row })
                })
                .collect();
            json!({
                "name": link.metadata.name,
                "namespace": link.metadata.namespace,
                "targetClusterName": cluster,
                "gatewayAddress": link.spec.gateway_address,
                "gatewayIdentity": link.spec.gateway_identity,
                "alive": by_cluster(&alive, cluster).map(|v| v >= 1.0),
                "latencyMs": by_cluster(&latency, cluster),
                "services": services,
            })
        })
        .collect();
    let splits: Vec<Value> = splits
        .iter()
        .map(|split| {
            let (ns, name) = (
                split.metadata.namespace.clone().unwrap_or_default(),
                split.metadata.name.clone().unwrap_or_default(),
            );
            let phase = phases
                .iter()
                .find(|s| s.label("namespace") == ns && s.label("trafficsplit") == name)
                .map(|s| mesh_api::failover_state::name(s.value));
            let weights = split.spec.percentages();
            let backends: Vec<Value> = split
                .spec
                .backends
                .iter()
                .zip(weights)
                .map(|(b, w)| json!({ "service": b.service, "weight": w }))
                .collect();
            let labels = split.metadata.labels.clone().unwrap_or_default();
            json!({
                "namespace": ns,
                "name": name,
                "service": split.spec.service,
                "managedBy": labels.get(mesh_api::labels::FAILOVER_CONTROLLED_BY),
                "phase": phase,
                "backends": backends,
            })
        })
        .collect();
    Ok(json!({ "links": links, "trafficSplits": splits, "prometheusError": prometheus_error }))
}

/// How far back the split's chart reaches, and its resolution.
const HISTORY_SECONDS: f64 = 15.0 * 60.0;
const HISTORY_STEP_SECONDS: f64 = 5.0;

async fn split_history(
    prometheus: &Prometheus,
    namespace: &str,
    name: &str,
) -> Result<Value, Failure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let start = now - HISTORY_SECONDS;
    let selector = crate::metrics::prometheus::matchers(&[
        ("namespace".to_owned(), namespace.to_owned()),
        ("trafficsplit".to_owned(), name.to_owned()),
    ]);
    let per_backend = |metric: &str| format!("max by (backend) ({metric}{selector})");
    let queries = [
        per_backend("failover_backend_weight"),
        per_backend("failover_backend_success_rate"),
        per_backend("failover_backend_rps"),
        format!("max(failover_state{selector})"),
    ];
    let [weight, success, rps, phase] = queries.map(|q| {
        let prometheus = prometheus.clone();
        async move {
            prometheus
                .query_range(&q, start, now, HISTORY_STEP_SECONDS)
                .await
        }
    });
    let (weight, success, rps, phase) = futures::try_join!(weight, success, rps, phase)?;
    let mut backends: BTreeSet<String> = BTreeSet::new();
    for series in weight.iter().chain(&success).chain(&rps) {
        backends.insert(series.label("backend").to_owned());
    }
    let points = |ranges: &[mesh_api::prometheus::Range], backend: &str| -> Vec<(f64, f64)> {
        ranges
            .iter()
            .find(|r| r.label("backend") == backend)
            .map(|r| {
                r.points
                    .iter()
                    .copied()
                    .filter(|(_, v)| v.is_finite())
                    .collect()
            })
            .unwrap_or_default()
    };
    let backends: Vec<Value> = backends
        .iter()
        .map(|b| {
            json!({
                "service": b,
                "weight": points(&weight, b),
                "successRate": points(&success, b),
                "rps": points(&rps, b),
            })
        })
        .collect();
    let phase: Vec<(f64, &str)> = phase
        .first()
        .map(|r| {
            r.points
                .iter()
                .map(|(t, v)| (*t, mesh_api::failover_state::name(*v)))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "namespace": namespace,
        "name": name,
        "from": start,
        "to": now,
        "backends": backends,
        "phase": phase,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_kubernetes_names_are_refused_by_parameter() {
        let params = Params::parse("namespace=shop&name=web%22%7D&window=2h&other=x");
        assert_eq!(params.object_name("namespace").ok(), Some("shop"));
        let Err(Failure::BadRequest(why)) = params.object_name("name") else {
            panic!("a name with a quote was taken");
        };
        assert!(why.contains("parameter name="), "{why}");
        let Err(Failure::BadRequest(why)) = params.window() else {
            panic!("a 2h window was taken");
        };
        assert!(why.contains("longer than 1h"), "{why}");
        let Err(Failure::BadRequest(why)) = Params::parse("").object_name("namespace") else {
            panic!("a missing namespace was taken");
        };
        assert!(why.contains("\"namespace\" is missing"), "{why}");
        assert_eq!(Params::parse("").window().ok(), Some("1m"));
    }
}
