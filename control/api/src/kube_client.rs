//! The Kubernetes client of a component or of the CLI: from `--kubeconfig`/`--context`
//! when given, else inferred (in-cluster ServiceAccount, then the default
//! kubeconfig), as kubectl does; and requests to pods and Services
//! through the API server's proxy.

use std::path::Path;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client for the given kubeconfig and context, or the inferred one.
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    kube::Client::try_from(config(kubeconfig, context).await?)
        .context("building the Kubernetes client")
}

/// The client configuration [`client`] builds on (its server URL, for one).
pub async fn config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Config> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("loading the default kubeconfig")?,
        None => kube::Config::infer()
            .await
            .context("no in-cluster credentials and no kubeconfig (set --kubeconfig)")?,
    };
    Ok(config)
}

/// GETs `path` from port `port` of pod `namespace/name` through the API
/// server's pod proxy (`…/pods/<name>:<port>/proxy<path>`), as `kubectl get
/// --raw` would: how the CLI reads a proxy's or controller's admin page.
pub async fn pod_get(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    port: u16,
    path: &str,
) -> anyhow::Result<String> {
    pod_request(client, http::Method::GET, namespace, name, port, path).await
}

/// Sends `method path` to port `port` of pod `namespace/name` through the
/// API server's pod proxy; the body of its answer.
pub async fn pod_request(
    client: &kube::Client,
    method: http::Method,
    namespace: &str,
    name: &str,
    port: u16,
    path: &str,
) -> anyhow::Result<String> {
    proxied(client, method, "pods", namespace, name, port, path).await
}

/// GETs `path` from port `port` of Service `namespace/name` through the
/// API server's service proxy (`…/services/<name>:<port>/proxy<path>`): how
/// the CLI asks viz's Prometheus, with the caller's own credentials.
pub async fn service_get(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    port: u16,
    path: &str,
) -> anyhow::Result<String> {
    proxied(
        client,
        http::Method::GET,
        "services",
        namespace,
        name,
        port,
        path,
    )
    .await
}

/// The API server's proxy path to port `port` of `resource` (`pods`,
/// `services`) `namespace/name`; a path on that port follows it.
pub fn proxy_prefix(resource: &str, namespace: &str, name: &str, port: u16) -> String {
    format!("/api/v1/namespaces/{namespace}/{resource}/{name}:{port}/proxy")
}

async fn proxied(
    client: &kube::Client,
    method: http::Method,
    resource: &str,
    namespace: &str,
    name: &str,
    port: u16,
    path: &str,
) -> anyhow::Result<String> {
    let uri = format!("{}{path}", proxy_prefix(resource, namespace, name, port));
    let request = http::Request::builder()
        .method(method.clone())
        .uri(&uri)
        .body(Vec::new())?;
    let kind = resource.trim_end_matches('s');
    client
        .request_text(request)
        .await
        .with_context(|| format!("{method} {path} to {kind} {namespace}/{name}:{port}"))
}
