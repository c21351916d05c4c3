//! Whether new pods really get a proxy, tested the way the API server
//! experiences it rather than from the Secrets alone:
//!
//! - the certificate each injector pod actually serves (its
//!   `injector_serving_certificate_info` metric, read through the API
//!   server's pod proxy) is the one in the webhook Secret, which the
//!   webhook's caBundle trusts (checked in [`super::certificates`]);
//! - a dry-run pod created with `linkerd.io/inject: enabled` comes back from
//!   the API server with the proxy: the whole admission path, TLS included;
//! - pods that the injector would inject today but that run without a
//!   proxy (created while the webhook failed, or before their namespace was
//!   annotated) are named, with the restart that fixes them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use mesh_api::labels::{CONTROL_PLANE_COMPONENT, CONTROL_PLANE_NAMESPACE as NS};
use mesh_core::tls::sha256_hex;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::Waiter;
use super::report::{Outcome, Problem, Report};
use crate::install::existing::INJECTOR_SECRET;

const RESTART_INJECTOR: &str = "restart the injector so it serves the Secret's certificate: \
     `kubectl -n linkerd rollout restart deploy/linkerd-proxy-injector` (it also picks a changed Secret up by itself within a minute)";

/// The injection checks, under the webhook category.
pub async fn check(client: &kube::Client, report: &mut Report, waiter: &Waiter) {
    report.record(
        "proxy-injector serves the certificate the API server trusts",
        waiter
            .until_ok("the injector serving its Secret's certificate", || {
                served_certificate(client, waiter)
            })
            .await,
    );
    report.record(
        "the API server injects the proxy into new pods",
        waiter
            .until_ok("a dry-run pod injected", || dry_run_injected(client))
            .await,
    );
    let uninjected = waiter.bounded(uninjected_pods(client)).await;
    report.record(
        "pods in injected namespaces run a proxy",
        uninjected.unwrap_or_else(|| {
            Err(Problem::warning(
                "listing pods did not finish before the --wait deadline",
                "",
            ))
        }),
    );
}

/// SHA-256 of the first certificate in `pem`.
fn leaf_sha256(pem: &[u8]) -> Option<String> {
    let leaf = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    Some(sha256_hex(&leaf))
}

/// The fingerprint an injector's metrics page says it serves.
fn served_sha256(metrics: &str) -> Option<String> {
    mesh_api::metrics_text::samples(metrics, "injector_serving_certificate_info")
        .find(|(_, value)| *value == 1.0)
        .and_then(|(labels, _)| mesh_api::metrics_text::label(labels, "sha256"))
        .map(str::to_owned)
}

async fn served_certificate(client: &kube::Client, waiter: &Waiter) -> Outcome {
    let secret = Api::<Secret>::namespaced(client.clone(), NS)
        .get_opt(INJECTOR_SECRET)
        .await
        .map_err(|e| Problem::error(format!("reading Secret {NS}/{INJECTOR_SECRET}: {e}"), ""))?;
    let wanted = secret
        .and_then(|s| s.data?.get("tls.crt").and_then(|b| leaf_sha256(&b.0)))
        .ok_or_else(|| {
            Problem::error(
                format!("Secret {NS}/{INJECTOR_SECRET} has no certificate in tls.crt"),
                "re-apply `mesh install | kubectl apply -f -` (it keeps the cluster's other certificates)",
            )
        })?;
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("{CONTROL_PLANE_COMPONENT}=proxy-injector")))
        .await
        .map_err(|e| Problem::error(format!("listing the injector's pods: {e}"), ""))?;
    let running: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    if running.is_empty() {
        return Err(Problem::error(
            "no injector pod is running",
            "`kubectl -n linkerd describe deploy/linkerd-proxy-injector` tells why",
        ));
    }
    let mut wrong = Vec::new();
    for pod in running {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let page = waiter
            .bounded(mesh_api::kube_client::pod_get(
                client,
                NS,
                name,
                mesh_api::ports::INJECTOR_ADMIN,
                "/metrics",
            ))
            .await;
        match page {
            Some(Ok(page)) => match served_sha256(&page) {
                Some(served) if served == wanted => {}
                Some(served) => wrong.push(format!(
                    "pod {NS}/{name} serves certificate sha256 {}…, not the Secret's {}…",
                    &served[..served.len().min(16)],
                    &wanted[..16]
                )),
                None => wrong.push(format!(
                    "pod {NS}/{name} does not say which certificate it serves (an older injector?)"
                )),
            },
            Some(Err(e)) => wrong.push(format!("pod {NS}/{name}: {e:#}")),
            None => wrong.push(format!(
                "pod {NS}/{name}: no answer before the --wait deadline"
            )),
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            format!(
                "{}\nthe API server trusts only Secret {NS}/{INJECTOR_SECRET}'s certificate, so its calls to these pods fail \
                 and new pods start without a proxy",
                wrong.join("\n")
            ),
            RESTART_INJECTOR,
        ))
    }
}

/// A pod the injector must inject (annotated for it), created with
/// `dryRun=All` in `default`, a namespace every cluster has and the
/// webhook does not skip: nothing is stored, but the API server calls the
/// webhook as for a real pod.
async fn dry_run_injected(client: &kube::Client) -> Outcome {
    let namespace = "default";
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "generateName": "mesh-check-injection-",
            "annotations": {"linkerd.io/inject": "enabled"},
        },
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }))
    .map_err(|e| Problem::error(e.to_string(), ""))?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let created = Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&params, &pod)
        .await;
    match created {
        Ok(pod) if pod.spec.as_ref().is_some_and(mesh_api::pod::has_proxy) => Ok(()),
        Ok(_) => Err(Problem::error(
            format!(
                "a dry-run pod in namespace {namespace} annotated linkerd.io/inject=enabled came back without a proxy: \
                 the API server's call to the injector failed (the webhook's failurePolicy Ignore hides it), \
                 so every new pod starts unmeshed"
            ),
            "see the check above; `kubectl -n linkerd logs deploy/linkerd-proxy-injector` and the API server's log name the failure",
        )),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(Problem::warning(
            format!(
                "cannot create a dry-run pod in namespace {namespace} to test injection: {}",
                e.message
            ),
            "run the check with an account that may create pods",
        )),
        Err(e) => Err(Problem::error(
            format!("creating a dry-run pod in namespace {namespace}: {e}"),
            RESTART_INJECTOR,
        )),
    }
}

/// Namespaces annotated for injection (and not being deleted), with their
/// annotations.
async fn injected_namespaces(
    client: &kube::Client,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, kube::Error> {
    let list = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        // A namespace being deleted takes its pods with it.
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
        .filter_map(|ns| {
            let annotations = ns.metadata.annotations?;
            let enabled = annotations
                .get(mesh_api::labels::INJECT_ANNOTATION)
                .is_some_and(|v| v == "enabled" || v == "ingress");
            enabled.then_some((ns.metadata.name?, annotations))
        })
        .collect())
}

/// Pods the injector would inject now that run without a proxy.
async fn uninjected_pods(client: &kube::Client) -> Outcome {
    let namespaces = injected_namespaces(client)
        .await
        .map_err(|e| Problem::warning(format!("listing namespaces: {e}"), ""))?;
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (namespace, annotations) in &namespaces {
        let pods = Api::<Pod>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| Problem::warning(format!("listing pods in {namespace}: {e}"), ""))?;
        for pod in pods.items {
            let finished = matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            let Some(spec) = pod.spec.as_ref() else {
                continue;
            };
            if finished || mesh_api::pod::has_proxy(spec) {
                continue;
            }
            let would_inject = matches!(
                mesh_injector::decide(&pod.metadata, spec, Some(annotations)),
                mesh_injector::Decision::Inject
            );
            if would_inject {
                missing
                    .entry(namespace.clone())
                    .or_default()
                    .push(pod.metadata.name.unwrap_or_default());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = missing
        .iter()
        .map(|(ns, pods)| format!("{ns}: {}", pods.join(", ")))
        .collect();
    let restarts: Vec<String> = missing
        .keys()
        .map(|ns| format!("`kubectl -n {ns} rollout restart deploy`"))
        .collect();
    Err(Problem::warning(
        format!(
            "these pods are in namespaces annotated linkerd.io/inject=enabled but run without a proxy \
             (created before the annotation, or while the injector could not be reached):\n{}",
            listed.join("\n")
        ),
        format!("restart their workloads: {}", restarts.join(", ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_fingerprint_is_read_from_the_metrics_page() {
        let page = "# HELP injector_serving_certificate_info x\n\
                    injector_serving_certificate_info{sha256=\"abc123\"} 1\n\
                    other 2\n";
        assert_eq!(served_sha256(page).as_deref(), Some("abc123"));
        assert_eq!(served_sha256("other 2\n"), None);
    }
}
