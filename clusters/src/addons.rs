//! What every cluster of a pair gets once its node is Ready: CoreDNS, as
//! the `kube-dns` Service in `kube-system` (`clusters/addons/`), run by the
//! node agent like any other pod; and, as kubeadm publishes it, the
//! `kube-public/cluster-info` ConfigMap naming the API server at the
//! address other clusters reach (the node's WAN address), which is where
//! `mesh multicluster link` finds it.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};

use crate::apply::apply_yaml;

const COREDNS: &str = include_str!("../addons/coredns.yaml");

/// The CoreDNS manifest for a cluster.
pub fn coredns_manifest(cluster_domain: &str, dns_ip: Ipv4Addr) -> String {
    COREDNS
        .replace("${CLUSTER_DOMAIN}", cluster_domain)
        .replace("${DNS_IP}", &dns_ip.to_string())
}

/// Applies CoreDNS and waits until it answers (its Deployment is available).
pub async fn install_dns(
    client: &Client,
    cluster_domain: &str,
    dns_ip: Ipv4Addr,
    timeout: Duration,
) -> anyhow::Result<()> {
    apply_yaml(client, &coredns_manifest(cluster_domain, dns_ip)).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ready = deployments
            .get_opt("coredns")
            .await
            .ok()
            .flatten()
            .and_then(|d| d.status)
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if ready > 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "CoreDNS (deployment kube-system/coredns) was not ready within {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes `server` (with the cluster CA `ca_pem`) in ConfigMap
/// `kube-public/cluster-info`, key `kubeconfig`, in kubeadm's shape.
pub async fn publish_cluster_info(
    client: &Client,
    server: &str,
    ca_pem: &str,
) -> anyhow::Result<()> {
    use base64::Engine;
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "", "cluster": {
            "server": server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        }}],
        "contexts": [],
        "users": [],
    });
    let map = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": serde_saphyr::to_string(&kubeconfig)?},
    });
    apply_yaml(client, &serde_json::to_string(&map)?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_serves_the_cluster_domain_at_the_dns_address() {
        let manifest = coredns_manifest("west.example", Ipv4Addr::new(10, 96, 0, 10));
        assert!(manifest.contains("kubernetes west.example in-addr.arpa ip6.arpa"));
        assert!(manifest.contains("clusterIP: 10.96.0.10"));
        assert!(!manifest.contains("${"), "every placeholder is filled");
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&manifest).expect("valid YAML");
        assert_eq!(documents.iter().filter(|d| !d.is_null()).count(), 6);
    }
}
