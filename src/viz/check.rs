//! `mesh viz check` (and `mesh check` once viz is installed): what viz's
//! own components experience, not what this machine can reach. Prometheus
//! is asked through the API server for its scrape targets, and every
//! running meshed pod must be one that Prometheus itself scraped
//! successfully; a pod it cannot scrape is named with the error Prometheus
//! got.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::ListParams;
use serde::Deserialize;

use super::install::{NAMESPACE, PROMETHEUS};
use super::prometheus::{Prometheus, ServiceRef};
use crate::check::Waiter;
use crate::check::report::{Outcome, Problem, Report};
use crate::cli::{GlobalArgs, OutputFormat};

const INSTALL_HINT: &str = "install viz: `mesh viz install | kubectl apply -f -`";

/// Runs `mesh viz check`; the exit code says whether every check passed.
pub async fn run(
    global: &GlobalArgs,
    wait: Duration,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    crate::check::run_extension(global, wait, output, checks).await
}

/// Whether viz is installed in the cluster (its namespace exists).
pub async fn installed(client: &kube::Client) -> bool {
    Api::<Namespace>::all(client.clone())
        .get_opt(NAMESPACE)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// The `linkerd-viz` category.
pub async fn checks(client: &kube::Client, report: &mut Report, waiter: &Waiter) {
    report.category("linkerd-viz");
    let namespace = if installed(client).await {
        Ok(())
    } else {
        Err(Problem::error(
            format!("namespace {NAMESPACE} does not exist"),
            INSTALL_HINT,
        ))
    };
    if !report.record("linkerd-viz Namespace exists", namespace) {
        return;
    }
    tap(client, report, waiter).await;
    let prometheus = match Prometheus::locate(client.clone()).await {
        Ok(prometheus) => prometheus,
        Err(e) => {
            report.record(
                "viz's configuration names a Prometheus it can reach",
                Err(Problem::error(
                    format!("{e:#}"),
                    "install viz again with a valid --prometheus-url",
                )),
            );
            return;
        }
    };
    // `locate` asks through the API server, so there is always a Service.
    let service = prometheus
        .service()
        .cloned()
        .unwrap_or_else(ServiceRef::bundled);
    let bundled = service == ServiceRef::bundled();
    if bundled {
        let running = waiter
            .until_ok("prometheus ready", || {
                crate::check::control_plane::deployments_ready(client, NAMESPACE, &[PROMETHEUS])
            })
            .await;
        if !report.record("prometheus is running", running) {
            return;
        }
    }
    let ServiceRef {
        namespace,
        name,
        port,
    } = service;
    let hint = if bundled {
        "see `kubectl -n linkerd-viz logs deploy/prometheus`".to_owned()
    } else {
        format!(
            "viz uses the Prometheus at Service {namespace}/{name}:{port} (--prometheus-url): check that it runs"
        )
    };
    let answers = match prometheus.query("vector(1)").await {
        Ok(samples) if samples.len() == 1 => Ok(()),
        Ok(samples) => Err(Problem::error(
            format!(
                "Prometheus answered `vector(1)` with {} series",
                samples.len()
            ),
            "",
        )),
        Err(e) => Err(Problem::error(format!("{e:#}"), hint)),
    };
    if !report.record("prometheus answers queries", answers) {
        return;
    }
    report.record(
        "prometheus scrapes every meshed pod",
        waiter
            .until_ok("prometheus scraping every meshed pod", || {
                every_proxy_scraped(client, &prometheus)
            })
            .await,
    );
}

/// Tap: its component runs, and the API server itself reaches it (the
/// APIService's `Available` condition is the API server's own verdict on
/// its requests to tap, certificate included).
async fn tap(client: &kube::Client, report: &mut Report, waiter: &Waiter) {
    const TAP: [&str; 1] = [super::tap_component::TAP];
    let running = waiter
        .until_ok("tap ready", || {
            crate::check::control_plane::deployments_ready(client, NAMESPACE, &TAP)
        })
        .await;
    if !report.record("tap is running", running) {
        return;
    }
    report.record(
        "the API server reaches tap (APIService v1alpha1.tap.linkerd.io is available)",
        waiter
            .until_ok("the tap APIService available", || tap_api_available(client))
            .await,
    );
    // The metrics-api is ready only once Prometheus has answered it: its
    // readiness is what it saw, not what this machine can reach.
    for (component, check) in [
        ([super::web_component::WEB], "web is running"),
        (
            [super::web_component::METRICS_API],
            "metrics-api is running and queries Prometheus",
        ),
    ] {
        report.record(
            check,
            waiter
                .until_ok(&format!("{} ready", component[0]), || {
                    crate::check::control_plane::deployments_ready(client, NAMESPACE, &component)
                })
                .await,
        );
    }
}

async fn tap_api_available(client: &kube::Client) -> Outcome {
    let resource = kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
    ));
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    let name = super::tap_component::API_SERVICE;
    let service = match api.get_opt(name).await {
        Ok(Some(service)) => service,
        Ok(None) => {
            return Err(Problem::error(
                format!("APIService {name} does not exist"),
                INSTALL_HINT,
            ));
        }
        Err(e) => {
            return Err(Problem::error(
                format!("reading APIService {name}: {e}"),
                "",
            ));
        }
    };
    let available = service.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Available");
    match available {
        Some(c) if c["status"] == "True" => Ok(()),
        Some(c) => Err(Problem::error(
            format!(
                "the API server says tap is not available: {} {}",
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            ),
            "see `kubectl -n linkerd-viz logs deploy/tap`; the API server needs its aggregation layer (--requestheader-client-ca-file)",
        )),
        None => Err(Problem::error(
            format!("the API server has not judged APIService {name} yet"),
            "",
        )),
    }
}

#[derive(Debug, Deserialize)]
struct Targets {
    data: TargetsData,
}

#[derive(Debug, Deserialize)]
struct TargetsData {
    #[serde(rename = "activeTargets", default)]
    active: Vec<Target>,
}

#[derive(Debug, Deserialize)]
struct Target {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    health: String,
    #[serde(rename = "lastError", default)]
    last_error: String,
}

/// Each scraped pod, `(namespace, pod)`, and how its last scrape went
/// (`Err` with the error Prometheus got).
type ScrapeHealth = BTreeMap<(String, String), Result<(), String>>;

/// Prometheus's own word on each proxy it scrapes.
fn scrape_health(body: &str) -> Result<ScrapeHealth, String> {
    let targets: Targets =
        serde_json::from_str(body).map_err(|e| format!("unreadable /api/v1/targets: {e}"))?;
    Ok(targets
        .data
        .active
        .into_iter()
        .filter(|t| t.labels.get("job").map(String::as_str) == Some("linkerd-proxy"))
        .filter_map(|t| {
            let key = (
                t.labels.get("namespace")?.clone(),
                t.labels.get("pod")?.clone(),
            );
            let health = match t.health.as_str() {
                "up" => Ok(()),
                "unknown" => Err("not scraped yet".to_owned()),
                _ => Err(t.last_error),
            };
            Some((key, health))
        })
        .collect())
}

/// Whether every running pod with a proxy is scraped, by Prometheus's word.
async fn every_proxy_scraped(client: &kube::Client, prometheus: &Prometheus) -> Outcome {
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().labels(mesh_api::labels::CONTROL_PLANE_NS))
        .await
        .map_err(|e| Problem::error(format!("listing meshed pods: {e}"), ""))?;
    let body = prometheus
        .get("/api/v1/targets?state=active")
        .await
        .map_err(|e| Problem::error(format!("{e:#}"), ""))?;
    let health = scrape_health(&body).map_err(|e| Problem::error(e, ""))?;
    let mut problems = Vec::new();
    for pod in &pods.items {
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if !running || !pod.spec.as_ref().is_some_and(mesh_api::pod::has_proxy) {
            continue;
        }
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        match health.get(&key) {
            Some(Ok(())) => {}
            Some(Err(why)) => problems.push(format!("pod {}/{}: {why}", key.0, key.1)),
            None => problems.push(format!(
                "pod {}/{}: not among Prometheus's targets",
                key.0, key.1
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            format!(
                "Prometheus does not scrape {} meshed pod(s): {}",
                problems.len(),
                problems.join("; ")
            ),
            "see Prometheus's targets: `kubectl get --raw /api/v1/namespaces/linkerd-viz/services/prometheus:9090/proxy/api/v1/targets`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_says_which_proxies_it_scraped() {
        let body = r#"{"status":"success","data":{"activeTargets":[
            {"labels":{"job":"linkerd-proxy","namespace":"shop","pod":"web-1"},"health":"up","lastError":""},
            {"labels":{"job":"linkerd-proxy","namespace":"shop","pod":"web-2"},"health":"down","lastError":"connection refused"},
            {"labels":{"job":"linkerd-proxy","namespace":"shop","pod":"web-3"},"health":"unknown","lastError":""},
            {"labels":{"job":"prometheus","instance":"localhost:9090"},"health":"up","lastError":""}
        ]}}"#;
        let health = scrape_health(body).expect("targets");
        assert_eq!(health.len(), 3);
        assert_eq!(health[&("shop".into(), "web-1".into())], Ok(()));
        assert_eq!(
            health[&("shop".into(), "web-2".into())],
            Err("connection refused".into())
        );
        assert!(health[&("shop".into(), "web-3".into())].is_err());
        assert!(scrape_health("<html>").is_err());
    }
}
