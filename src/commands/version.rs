//! `mesh version`: this CLI's version, the control plane's (what
//! `linkerd-config` says the cluster runs), with `--proxy` the versions
//! the data plane's proxies were injected with, and the Kubernetes release
//! the local clusters run.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat, VersionArgs};
use crate::images::TAG;
use crate::output;

/// How long the cluster is given to answer.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Serialize)]
struct Versions {
    client: &'static str,
    /// The control plane's version; absent with `--client`, or when it
    /// could not be read (`server_error` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_error: Option<String>,
    /// With `--proxy`: each version the proxies run, and on how many pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    proxies: Option<Vec<ProxyVersion>>,
    kubernetes: &'static str,
}

#[derive(Debug, Serialize)]
struct ProxyVersion {
    version: String,
    pods: usize,
}

pub async fn run(global: &GlobalArgs, args: &VersionArgs) -> anyhow::Result<ExitCode> {
    let mut versions = Versions {
        client: TAG,
        kubernetes: mesh_clusters::KUBERNETES_VERSION,
        ..Versions::default()
    };
    if !args.client {
        match tokio::time::timeout(CLUSTER_TIMEOUT, from_cluster(global, args)).await {
            Ok(Ok((server, proxies))) => {
                versions.proxies = proxies;
                match server {
                    Some(server) => versions.server = Some(server),
                    None => {
                        versions.server_error = Some(
                            "mesh is not installed there (no ConfigMap linkerd/linkerd-config)"
                                .into(),
                        );
                    }
                }
            }
            Ok(Err(e)) => versions.server_error = Some(format!("{e:#}")),
            Err(_) => {
                versions.server_error = Some(format!(
                    "the cluster did not answer within {} s",
                    CLUSTER_TIMEOUT.as_secs()
                ));
            }
        }
    }
    match args.output {
        OutputFormat::Json => output::print_json(&versions)?,
        OutputFormat::Table if args.short => {
            println!("{}", versions.client);
            if let Some(server) = &versions.server {
                println!("{server}");
            }
        }
        OutputFormat::Table => {
            let mut rows = vec![("Client version:", versions.client.to_owned())];
            if !args.client {
                let server = versions.server.as_deref().unwrap_or("unavailable");
                rows.push(("Server version:", server.to_owned()));
            }
            if let Some(proxies) = &versions.proxies {
                rows.push(("Proxy versions:", proxy_list(proxies)));
            }
            rows.push(("Local Kubernetes:", versions.kubernetes.to_owned()));
            output::print_rows(&rows);
        }
    }
    if let Some(error) = &versions.server_error {
        eprintln!("mesh version: the server version is unavailable: {error}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `v1 (3 pods), v2 (1 pod)`.
fn proxy_list(proxies: &[ProxyVersion]) -> String {
    if proxies.is_empty() {
        return "none (no meshed pods)".to_owned();
    }
    proxies
        .iter()
        .map(|p| {
            let plural = if p.pods == 1 { "" } else { "s" };
            format!("{} ({} pod{plural})", p.version, p.pods)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The control plane's version (`None` when it is not installed) and,
/// with `--proxy`, the proxies' versions.
async fn from_cluster(
    global: &GlobalArgs,
    args: &VersionArgs,
) -> anyhow::Result<(Option<String>, Option<Vec<ProxyVersion>>)> {
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    let server = crate::install::config::installed_version(&client).await?;
    if !args.proxy {
        return Ok((server, None));
    }
    let pods = crate::check::data_plane::meshed_pods(&client, args.namespace.as_deref()).await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &pods {
        let version = crate::check::data_plane::proxy_version(pod);
        *counts.entry(version.to_owned()).or_default() += 1;
    }
    let proxies = counts
        .into_iter()
        .map(|(version, pods)| ProxyVersion { version, pods })
        .collect();
    Ok((server, Some(proxies)))
}
