//! What scenarios do to clusters, as a user would with kubectl: make a
//! namespace, apply a manifest, wait for a rollout, run a one-shot pod and
//! read its logs. Every wait has a deadline and says what it saw.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, ObjectMeta, PostParams};
use tokio::time::Instant;

/// How often waits look again.
const POLL: Duration = Duration::from_millis(250);

/// Creates a namespace named `<prefix>-<random suffix>`.
pub async fn namespace(client: &kube::Client, prefix: &str) -> anyhow::Result<String> {
    create_namespace(client, prefix, None).await
}

/// Creates a namespace named `<prefix>-<random suffix>` annotated
/// `linkerd.io/inject: enabled`, so that its pods are meshed.
pub async fn meshed_namespace(client: &kube::Client, prefix: &str) -> anyhow::Result<String> {
    let inject = [("linkerd.io/inject".to_owned(), "enabled".to_owned())].into();
    create_namespace(client, prefix, Some(inject)).await
}

async fn create_namespace(
    client: &kube::Client,
    prefix: &str,
    annotations: Option<std::collections::BTreeMap<String, String>>,
) -> anyhow::Result<String> {
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            annotations,
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| anyhow::anyhow!("creating namespace {prefix}-*: {e}"))?
        .metadata
        .name
        .ok_or_else(|| anyhow::anyhow!("the API server named no namespace"))
}

/// Deletes a namespace and what is in it, without waiting.
pub async fn delete_namespace(client: &kube::Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// `kubectl apply -n <namespace> -f -`.
pub async fn apply(client: &kube::Client, namespace: &str, yaml: &str) -> anyhow::Result<()> {
    mesh_clusters::apply::apply_yaml_in(client, namespace, yaml).await?;
    Ok(())
}

/// The Ready pods matching `selector`.
pub async fn ready_pods(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> anyhow::Result<Vec<Pod>> {
    Ok(Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .filter(mesh_api::pod::is_ready)
        .collect())
}

/// Waits until a Deployment's rollout is complete: every replica updated
/// and available (`kubectl rollout status`).
pub async fn wait_rollout(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api = Api::<Deployment>::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    loop {
        let deployment = api.get(name).await?;
        let wanted = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let done = status.observed_generation >= deployment.metadata.generation
            && status.updated_replicas.unwrap_or(0) == wanted
            && status.available_replicas.unwrap_or(0) == wanted
            && status.replicas.unwrap_or(0) == wanted;
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let pods = Api::<Pod>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await
                .map(|l| {
                    l.items
                        .into_iter()
                        .map(|p| {
                            (
                                p.metadata.name,
                                p.status.map(|s| (s.phase, s.container_statuses)),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            anyhow::bail!(
                "deployment {namespace}/{name} did not roll out within {timeout:?}: {status:?}; pods: {pods:#?}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How a one-shot pod ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// It exited 0.
    pub succeeded: bool,
    /// What it printed.
    pub logs: String,
}

/// Runs `command` in a pod of `image` (`restartPolicy: Never`) until it
/// ends; returns whether it succeeded and its logs.
pub async fn run_once(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    image: &str,
    command: &[&str],
    timeout: Duration,
) -> anyhow::Result<Finished> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": command}],
        }
    }))?;
    run_pod(client, namespace, pod, timeout).await
}

/// Runs `pod` (whose containers must end) until it ends; returns whether it
/// succeeded and its first container's logs.
pub async fn run_pod(
    client: &kube::Client,
    namespace: &str,
    pod: Pod,
    timeout: Duration,
) -> anyhow::Result<Finished> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let name = name.as_str();
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| anyhow::anyhow!("creating pod {namespace}/{name}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let phase = loop {
        let phase = pods
            .get(name)
            .await?
            .status
            .and_then(|s| s.phase)
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            break phase;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "pod {namespace}/{name} did not finish within {timeout:?} (phase {phase:?})"
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let logs = pods
        .logs(name, &LogParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("logs of pod {namespace}/{name}: {e}"))?;
    Ok(Finished {
        succeeded: phase == "Succeeded",
        logs,
    })
}

/// Starts a pod named `load` in `namespace` running `mesh-podinfo load`
/// (podinfo's image maps to it) at `rps` requests per second against
/// `url`; it prints one [`mesh_podinfo::report::LoadSecond`] line a second
/// (read them with `mesh_podinfo::drive::load_seconds`).
pub async fn start_load(
    client: &kube::Client,
    namespace: &str,
    url: &str,
    rps: u32,
) -> anyhow::Result<()> {
    start_load_pod(client, namespace, "load", &[], url, rps).await
}

/// Starts a pod named `name` running `mesh-podinfo load` with `flags`
/// (`--grpc`) besides the rate and the URL.
pub async fn start_load_pod(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    flags: &[&str],
    url: &str,
    rps: u32,
) -> anyhow::Result<()> {
    let mut command = vec!["load".to_owned(), "--rps".to_owned(), rps.to_string()];
    command.extend(flags.iter().map(|f| (*f).to_owned()));
    command.push(url.to_owned());
    let load: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "ghcr.io/stefanprodan/podinfo:6.9.2",
                "command": command,
            }],
        }
    }))?;
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &load)
        .await
        .map_err(|e| anyhow::anyhow!("creating the {name} pod in {namespace}: {e}"))?;
    Ok(())
}

/// Waits for a LoadBalancer Service's address.
pub async fn load_balancer_ip(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<IpAddr> {
    let api = Api::<Service>::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    loop {
        let ip = api
            .get(name)
            .await?
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .and_then(|i| i.into_iter().find_map(|i| i.ip));
        if let Some(ip) = ip {
            return Ok(ip.parse()?);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "service {namespace}/{name} got no load-balancer address within {timeout:?}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What `container` of `pod` has logged so far (empty when it cannot be
/// read yet).
pub async fn logs(client: &kube::Client, namespace: &str, pod: &str, container: &str) -> String {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .logs(
            pod,
            &kube::api::LogParams {
                container: Some(container.into()),
                ..kube::api::LogParams::default()
            },
        )
        .await
        .unwrap_or_default()
}
