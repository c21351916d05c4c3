//! The data plane (`--proxy`): meshed pods' proxies ready (waited for),
//! trusting the control plane's anchors, on the control plane's and this
//! CLI's version, and holding a valid certificate (read from each proxy's
//! `identity_cert_expiration_timestamp_seconds` through the API server's
//! pod proxy).
//!
//! A data-plane pod is one that runs the proxy container. The control
//! plane's own pods carry `linkerd.io/control-plane-ns` too but run no
//! proxy (mesh does not mesh its control plane: the identity service must
//! run before any proxy can have a certificate), so the label alone would
//! count them as proxies that are never ready.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::ListParams;
use mesh_api::labels::{CONTROL_PLANE_NAMESPACE as NS, CONTROL_PLANE_NS, PROXY_VERSION_ANNOTATION};
use mesh_injector::inject::PROXY_CONTAINER;

use super::Waiter;
use super::control_plane::{cli_version, why_not_ready};
use super::report::{Outcome, Problem, Report};

const RESTART_HINT: &str = "restart the workloads so their pods are injected again: `kubectl -n <namespace> rollout restart deploy`";

/// The data-plane checks, for `namespace` or every namespace.
pub async fn check(
    client: &kube::Client,
    report: &mut Report,
    waiter: &Waiter,
    namespace: Option<&str>,
    anchors: Option<&str>,
) {
    report.category("linkerd-data-plane");
    let pods = || async {
        meshed_pods(client, namespace)
            .await
            .map_err(|e| Problem::error(format!("listing meshed pods: {e}"), ""))
    };
    let found = match (pods().await, namespace) {
        (Ok(pods), Some(ns)) if pods.is_empty() => Err(Problem::error(
            format!("no meshed pods in namespace {ns}"),
            format!(
                "annotate it and restart its workloads: `kubectl annotate ns {ns} linkerd.io/inject=enabled`, \
                     `kubectl -n {ns} rollout restart deploy`"
            ),
        )),
        (Ok(_), _) => Ok(()),
        (Err(e), _) => Err(e),
    };
    if !report.record("data plane pods exist", found) {
        return;
    }
    report.record(
        "data plane proxies are ready",
        waiter
            .until_ok("data plane proxies ready", || async {
                proxies_ready(&pods().await?)
            })
            .await,
    );
    let Ok(pods) = pods().await else { return };
    let pages = metrics_pages(client, &pods, waiter).await;
    if let Some(anchors) = anchors {
        report.record(
            "data plane proxies certificate match CA",
            anchors_match(&pods, &pages, anchors),
        );
    }
    let injected = injector_proxy_version(client).await;
    report.record(
        "data plane is up-to-date",
        versions_are(&pods, &injected, "the control plane injects"),
    );
    report.record(
        "data plane and cli versions match",
        versions_are(&pods, &cli_version(), "this CLI is"),
    );
    report.record(
        "data plane proxies have valid certificates",
        certificates_valid(&pages),
    );
}

/// The pods of `namespace` (or of every namespace) that run a proxy of
/// this control plane.
pub async fn meshed_pods(client: &kube::Client, namespace: Option<&str>) -> kube::Result<Vec<Pod>> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    api.list(&ListParams::default().labels(&format!("{CONTROL_PLANE_NS}={NS}")))
        .await
        .map(|l| l.items.into_iter().filter(runs_proxy).collect())
}

/// The proxy version a pod was injected with (`linkerd.io/proxy-version`).
pub fn proxy_version(pod: &Pod) -> &str {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROXY_VERSION_ANNOTATION))
        .map_or("unknown", String::as_str)
}

/// Whether `pod` runs the proxy: a data-plane pod.
fn runs_proxy(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(mesh_api::pod::has_proxy)
}

fn name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn proxy_container(pod: &Pod) -> Option<&Container> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == PROXY_CONTAINER)
}

fn proxies_ready(pods: &[Pod]) -> Outcome {
    let not_ready: Vec<String> = pods
        .iter()
        .filter(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded"))
        .filter(|pod| {
            let statuses = pod.status.as_ref().map(|s| {
                s.init_container_statuses
                    .iter()
                    .chain(&s.container_statuses)
                    .flatten()
                    .any(|c| c.name == PROXY_CONTAINER && c.ready)
            });
            statuses != Some(true)
        })
        .map(|pod| {
            format!(
                "{}: {}",
                name(pod),
                why_not_ready(pod).unwrap_or_else(|| "proxy not ready".into())
            )
        })
        .collect();
    if not_ready.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            format!("proxies not ready:\n{}", not_ready.join("\n")),
            "`kubectl logs <pod> -c linkerd-proxy` tells why; a proxy is ready once it has its certificate",
        ))
    }
}

/// The anchors each proxy trusts now, as it says itself
/// (`identity_trust_anchor_info`: a proxy that follows its namespace's
/// trust roots copy trusts a rotated bundle without a restart), else as
/// its pod's environment gave them at start (a proxy without the metric).
fn anchors_match(pods: &[Pod], pages: &[(&Pod, Result<String, String>)], anchors: &str) -> Outcome {
    let normalize = |pem: &str| pem.split_whitespace().collect::<String>();
    let wanted_pem = normalize(anchors);
    let wanted: BTreeSet<String> = mesh_core::identity::trust_dir::parse_bundle(anchors)
        .unwrap_or_default()
        .iter()
        .map(|der| mesh_core::tls::sha256_hex(der))
        .collect();
    let stale: Vec<String> = pods
        .iter()
        .filter_map(|pod| {
            let said = pages
                .iter()
                .find(|(p, _)| std::ptr::eq(*p, pod))
                .and_then(|(_, page)| page.as_ref().ok())
                .and_then(|page| trusted_anchors(page));
            let stale = match said {
                Some(trusted) => trusted != wanted,
                None => {
                    let env = proxy_container(pod)
                        .and_then(|c| c.env.as_ref())
                        .and_then(|env| {
                            env.iter()
                                .find(|e| e.name == "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS")
                        })
                        .and_then(|e| e.value.as_deref());
                    env.map(normalize) != Some(wanted_pem.clone())
                }
            };
            stale.then(|| name(pod))
        })
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            format!(
                "these proxies trust other anchors than {NS}/linkerd-identity-trust-roots: {}",
                stale.join(", ")
            ),
            "a proxy follows its namespace's mesh-identity-trust-roots within seconds; one that does not \
             (injected before it existed, or another proxy) needs its workload restarted: \
             `kubectl -n <namespace> rollout restart deploy`",
        ))
    }
}

/// The anchors a proxy's metrics page says it trusts (their SHA-256), when
/// it says.
fn trusted_anchors(page: &str) -> Option<BTreeSet<String>> {
    let trusted: BTreeSet<String> =
        mesh_api::metrics_text::samples(page, "identity_trust_anchor_info")
            .filter(|(_, value)| *value == 1.0)
            .filter_map(|(labels, _)| mesh_api::metrics_text::label(labels, "sha256"))
            .map(str::to_owned)
            .collect();
    (!trusted.is_empty()).then_some(trusted)
}

/// The proxy version the injector adds (its `--proxy-version`, else the CLI's).
async fn injector_proxy_version(client: &kube::Client) -> String {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let args = deployments
        .get_opt("linkerd-proxy-injector")
        .await
        .ok()
        .flatten()
        .and_then(|d| d.spec?.template.spec?.containers.into_iter().next()?.args)
        .unwrap_or_default();
    args.iter()
        .find_map(|a| a.strip_prefix("--proxy-version=").map(str::to_owned))
        .unwrap_or_else(cli_version)
}

fn versions_are(pods: &[Pod], wanted: &str, whose: &str) -> Outcome {
    let other: Vec<String> = pods
        .iter()
        .filter_map(|pod| {
            let version = proxy_version(pod);
            (version != wanted).then(|| format!("{} runs {version}", name(pod)))
        })
        .collect();
    if other.is_empty() {
        Ok(())
    } else {
        Err(Problem::warning(
            format!("{whose} {wanted}; {}", other.join(", ")),
            RESTART_HINT,
        ))
    }
}

/// Each running proxy's metrics page, or why it could not be read: read
/// from every pod at once and given up at the `--wait` deadline.
pub(crate) async fn metrics_pages<'a>(
    client: &kube::Client,
    pods: &'a [Pod],
    waiter: &Waiter,
) -> Vec<(&'a Pod, Result<String, String>)> {
    let running: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect();
    let pages = futures::future::join_all(running.iter().map(|pod| {
        waiter.bounded(mesh_api::kube_client::pod_get(
            client,
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            mesh_api::ports::PROXY_ADMIN,
            "/metrics",
        ))
    }))
    .await;
    running
        .into_iter()
        .zip(pages)
        .map(|(pod, page)| {
            let page = match page {
                Some(Ok(text)) => Ok(text),
                Some(Err(e)) => Err(format!("metrics unreadable: {e:#}")),
                None => Err("its metrics did not answer within --wait".to_owned()),
            };
            (pod, page)
        })
        .collect()
}

/// Each running proxy's certificate expiry from its metrics.
fn certificates_valid(pages: &[(&Pod, Result<String, String>)]) -> Outcome {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut problems = Vec::new();
    for (pod, page) in pages {
        let expiry = match page {
            Ok(text) => expiration(text),
            Err(e) => {
                problems.push(format!("{}: {e}", name(pod)));
                continue;
            }
        };
        match expiry {
            Some(at) if at > now => {}
            Some(_) => problems.push(format!("{}: its certificate has expired", name(pod))),
            None => problems.push(format!("{}: no certificate yet", name(pod))),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            problems.join("\n"),
            "a proxy renews its certificate from the identity service: check `mesh check` above and \
             `kubectl logs <pod> -c linkerd-proxy`",
        ))
    }
}

/// `identity_cert_expiration_timestamp_seconds` from a metrics page.
fn expiration(metrics: &str) -> Option<f64> {
    mesh_api::metrics_text::samples(metrics, "identity_cert_expiration_timestamp_seconds")
        .next()
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_the_metrics_page() {
        let page = "# HELP x\nidentity_cert_expiration_timestamp_seconds 1790000000\nother 1\n";
        assert_eq!(expiration(page), Some(1_790_000_000.0));
        assert_eq!(expiration("other 1\n"), None);
    }

    #[test]
    fn the_anchors_a_proxy_trusts_are_read_from_its_metrics() {
        let page = "identity_trust_anchor_info{sha256=\"aa\"} 1\n\
                    identity_trust_anchor_info{sha256=\"bb\"} 1\nother 1\n";
        assert_eq!(
            trusted_anchors(page),
            Some(BTreeSet::from(["aa".to_owned(), "bb".to_owned()]))
        );
        assert_eq!(
            trusted_anchors("other 1\n"),
            None,
            "a proxy that does not say"
        );
    }
}
