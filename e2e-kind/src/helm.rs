//! The Helm path on a real cluster: east is installed with the charts (see
//! [`crate::mesh`]), and this scenario upgrades it as the Helm guide does,
//! `helm upgrade --reuse-values` with one value changed, then checks what a
//! user would: `mesh check` passes (the injector serves the webhook
//! certificate the chart made anew, and the API server injects through
//! it), the values given at install survive, and `mesh upgrade` on a
//! Helm-installed cluster starts from the values the chart stored.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::mesh::{self, chart, helm};
use crate::provider::{Cluster, Provider};

/// A log level that behaves as the default one (h2 is already under
/// `warn`) but can be told apart from it.
const LOG_LEVEL: &str = "warn,mesh_proxy=info,h2=warn";

/// The injector's serving certificate in its Secret.
async fn injector_certificate(client: &kube::Client) -> anyhow::Result<Vec<u8>> {
    let secret = Api::<Secret>::namespaced(client.clone(), "linkerd")
        .get("linkerd-proxy-injector-k8s-tls")
        .await?;
    secret
        .data
        .and_then(|d| d.get("tls.crt").map(|b| b.0.clone()))
        .ok_or_else(|| anyhow::anyhow!("the injector's Secret has no tls.crt"))
}

/// `helm upgrade --reuse-values` keeps a Helm-installed mesh checked.
pub async fn mesh_helm_upgrade_reuse_values_keeps_the_mesh_checked(
    p: &impl Provider,
) -> anyhow::Result<()> {
    mesh::ensure_installed(p, Cluster::East).await?;
    let list = helm(p, Cluster::East, &["list", "-n", "linkerd", "-o", "json"])
        .await?
        .ok("helm list")?;
    let releases: Vec<serde_json::Value> = serde_json::from_str(&list.stdout)?;
    for name in ["linkerd-crds", "linkerd-control-plane"] {
        anyhow::ensure!(
            releases
                .iter()
                .any(|r| r["name"] == name && r["status"] == "deployed"),
            "east runs Helm release {name}: {releases:?}"
        );
    }
    let east = p.client(Cluster::East);
    let before = injector_certificate(&east).await?;
    let set = format!("proxy.logLevel={}", LOG_LEVEL.replace(',', "\\,"));
    let control_plane = chart("mesh-control-plane");
    let args = [
        "upgrade",
        "linkerd-control-plane",
        &control_plane,
        "-n",
        "linkerd",
        "--reuse-values",
        "--set",
        &set,
    ];
    helm(p, Cluster::East, &args)
        .await?
        .ok("helm upgrade --reuse-values")?;
    anyhow::ensure!(
        injector_certificate(&east).await? != before,
        "the chart makes a new webhook certificate on every upgrade (as Linkerd's does), \
         which the injector must follow"
    );
    mesh::mesh(p, Cluster::East, &["check", "--wait", "3m"])
        .await?
        .ok("mesh check after helm upgrade --reuse-values")?;
    let values = helm(
        p,
        Cluster::East,
        &[
            "get",
            "values",
            "linkerd-control-plane",
            "-n",
            "linkerd",
            "-o",
            "json",
        ],
    )
    .await?
    .ok("helm get values")?;
    let values: serde_json::Value = serde_json::from_str(&values.stdout)?;
    anyhow::ensure!(
        values["identityTrustAnchorsPEM"]
            .as_str()
            .is_some_and(|pem| pem.contains("BEGIN CERTIFICATE"))
            && values["proxy"]["logLevel"] == LOG_LEVEL,
        "--reuse-values keeps the install's --set-file values and adds the new one: {values}"
    );
    let upgrade = mesh::mesh(p, Cluster::East, &["upgrade"])
        .await?
        .ok("mesh upgrade on a Helm-installed cluster")?;
    anyhow::ensure!(
        upgrade.stderr.contains("keeping the trust anchors")
            && upgrade
                .stdout
                .contains(&format!("--proxy-log-level={LOG_LEVEL}")),
        "mesh upgrade starts from the values the chart stored (proxy log level {LOG_LEVEL}):\n{}",
        upgrade.stderr
    );
    Ok(())
}
