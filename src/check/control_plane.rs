//! The control plane: its namespace, the CRDs, the webhook configuration,
//! the controllers' pods ready (waited for), and their version against
//! this CLI's.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use mesh_api::labels::CONTROL_PLANE_NAMESPACE as NS;

use super::Waiter;
use super::report::{Outcome, Problem, Report};

/// The controllers `mesh install` runs.
pub const DEPLOYMENTS: [&str; 4] = [
    "linkerd-identity",
    "linkerd-destination",
    "linkerd-policy",
    "linkerd-proxy-injector",
];
/// The injector's webhook configuration.
pub const WEBHOOK_CONFIG: &str = "linkerd-proxy-injector-webhook-config";

const INSTALL_HINT: &str = "install it: `mesh install --crds | kubectl apply -f -` then `mesh install | kubectl apply -f -`";

/// The control-plane checks; whether later checks can run.
pub async fn check(client: &kube::Client, report: &mut Report, waiter: &Waiter) -> bool {
    report.category("linkerd-existence");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let exists = match namespaces.get_opt(NS).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Problem::error(
            format!("the {NS:?} namespace does not exist"),
            INSTALL_HINT,
        )),
        Err(e) => Err(Problem::error(format!("reading namespace {NS}: {e}"), "")),
    };
    if !report.record("control plane namespace exists", exists) {
        return false;
    }
    report.record(
        "control plane pods are ready",
        waiter
            .until_ok("control plane pods ready", || {
                deployments_ready(client, NS, &DEPLOYMENTS)
            })
            .await,
    );
    report.record(
        "proxy injector webhook is registered",
        webhook_registered(client).await,
    );

    report.category("linkerd-config");
    report.record(
        "control plane CustomResourceDefinitions exist",
        crds_exist(client).await,
    );

    report.category("control-plane-version");
    report.record(
        "control plane is running the same version as the CLI",
        same_version(client).await,
    );
    true
}

/// Whether Deployments `names` in `ns` have all their replicas ready; each
/// one that does not is named with what keeps its pods from being ready.
pub async fn deployments_ready(client: &kube::Client, ns: &str, names: &[&str]) -> Outcome {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut problems = Vec::new();
    for name in names {
        let Some(deployment) = deployments
            .get_opt(name)
            .await
            .map_err(|e| Problem::error(format!("reading deployment {ns}/{name}: {e}"), ""))?
        else {
            problems.push(format!("deployment {ns}/{name} does not exist"));
            continue;
        };
        let wanted = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let ready = deployment
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if ready < wanted {
            let why = pod_problems(client, ns, &deployment).await;
            problems.push(format!(
                "deployment {ns}/{name}: {ready} of {wanted} replicas ready{why}"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            problems.join("\n"),
            format!("`kubectl -n {ns} describe pods` and `kubectl -n {ns} logs <pod>` tell why"),
        ))
    }
}

/// What keeps a Deployment's pods from being ready (`; pod x: reason`).
async fn pod_problems(client: &kube::Client, ns: &str, deployment: &Deployment) -> String {
    let selector: Vec<String> = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if selector.is_empty() {
        return String::new();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let Ok(list) = pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
    else {
        return String::new();
    };
    list.items
        .iter()
        .filter_map(|pod| {
            Some(format!(
                "; pod {}: {}",
                pod.metadata.name.as_deref()?,
                why_not_ready(pod)?
            ))
        })
        .collect()
}

/// Why a pod is not ready, from its phase and container states.
pub fn why_not_ready(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .chain(&status.container_statuses)
        .flatten();
    for container in containers {
        if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            return Some(format!(
                "container {} waiting: {}{}",
                container.name,
                waiting.reason.as_deref().unwrap_or("unknown"),
                waiting
                    .message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(done) = container.state.as_ref().and_then(|s| s.terminated.as_ref())
            && done.exit_code != 0
        {
            return Some(format!(
                "container {} exited with {}{}",
                container.name,
                done.exit_code,
                done.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        if container.restart_count > 0 && !container.ready {
            return Some(format!(
                "container {} not ready after {} restarts",
                container.name, container.restart_count
            ));
        }
        if !container.ready
            && container
                .state
                .as_ref()
                .is_some_and(|s| s.running.is_some())
        {
            return Some(format!(
                "container {} running, not ready yet",
                container.name
            ));
        }
    }
    match status.phase.as_deref() {
        Some("Running" | "Succeeded") => None,
        phase => Some(format!("phase {}", phase.unwrap_or("unknown"))),
    }
}

async fn webhook_registered(client: &kube::Client) -> Outcome {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    match configs.get_opt(WEBHOOK_CONFIG).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Problem::error(
            format!(
                "MutatingWebhookConfiguration {WEBHOOK_CONFIG} does not exist: new pods get no proxy"
            ),
            "re-apply `mesh install | kubectl apply -f -`",
        )),
        Err(e) => Err(Problem::error(format!("reading {WEBHOOK_CONFIG}: {e}"), "")),
    }
}

async fn crds_exist(client: &kube::Client) -> Outcome {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut missing = Vec::new();
    for crd in mesh_api::crds::all() {
        let name = crd.metadata.name.unwrap_or_default();
        let found = crds
            .get_opt(&name)
            .await
            .map_err(|e| Problem::error(format!("reading CRD {name}: {e}"), ""))?;
        if found.is_none() {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            format!("missing CustomResourceDefinitions: {}", missing.join(", ")),
            "`mesh install --crds | kubectl apply -f -`",
        ))
    }
}

/// The version tag of this CLI's images.
pub fn cli_version() -> String {
    crate::images::TAG.to_owned()
}

const UPGRADE_HINT: &str = "upgrade the control plane (`mesh install | kubectl apply -f -` with this CLI) or use the CLI of its version";

/// Whether the control plane runs this CLI's version: what `linkerd-config`
/// says it was rendered by, or (an install without it) its images' tags.
async fn same_version(client: &kube::Client) -> Outcome {
    match crate::install::config::installed_version(client).await {
        Ok(Some(version)) if version == cli_version() => return Ok(()),
        Ok(Some(version)) => {
            return Err(Problem::warning(
                format!(
                    "this CLI is {}; the control plane is {version} (linkerd/linkerd-config)",
                    cli_version()
                ),
                UPGRADE_HINT,
            ));
        }
        Ok(None) => {}
        Err(e) => return Err(Problem::error(format!("{e:#}"), "")),
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let mut different = Vec::new();
    for name in DEPLOYMENTS {
        let Ok(Some(deployment)) = deployments.get_opt(name).await else {
            continue;
        };
        let images = deployment
            .spec
            .and_then(|s| s.template.spec)
            .map(|s| s.containers)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.image);
        for image in images {
            let tag = image
                .rsplit_once(':')
                .map(|(_, tag)| tag)
                .unwrap_or("latest");
            if tag != cli_version() {
                different.push(format!("{name} runs {image}"));
            }
        }
    }
    if different.is_empty() {
        Ok(())
    } else {
        Err(Problem::warning(
            format!("this CLI is {}; {}", cli_version(), different.join(", ")),
            UPGRADE_HINT,
        ))
    }
}
