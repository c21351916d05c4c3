//! `mesh upgrade`: the installed control plane rendered again by this
//! CLI, as Linkerd's upgrade does. The values it was installed with come
//! from `linkerd-config` (anything given now — flags, `--values`, `--set` —
//! goes over them); the trust anchors, the issuer and the webhook
//! certificate come from the cluster unless new ones are given, each part
//! on its own: `--identity-issuer-certificate-file` and `-key-file` alone
//! rotate the issuer under the same anchors, `--identity-trust-anchors-file`
//! alone changes the anchors (a bundle of old and new while rotating them)
//! and keeps the issuer, which must chain to one of them. Unlike `mesh
//! install`, it needs the cluster: without it there is nothing to upgrade.

use std::time::Duration;

use anyhow::Context;
use mesh_api::labels::CONTROL_PLANE_NAMESPACE as NS;

use super::existing::Existing;
use super::settings::Settings;
use super::{InstallArgs, config, control_plane, manifest};
use crate::cli::GlobalArgs;

/// How long the cluster is given to answer.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Renders the upgrade for `kubectl apply -f -`.
pub async fn render(global: &GlobalArgs, args: &InstallArgs) -> anyhow::Result<String> {
    let (stored, existing) = tokio::time::timeout(READ_TIMEOUT, read(global))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "mesh upgrade reads the installed control plane, and the API server did not answer within {READ_TIMEOUT:?}"
            )
        })??;
    let mut settings = Settings::resolve_over(args, stored)?;
    let kept = existing.keep_parts_in(&mut settings);
    if !kept.is_empty() {
        eprintln!(
            "mesh upgrade: keeping the {} in the cluster",
            kept.join(", the ")
        );
    }
    manifest::to_yaml(&control_plane(&settings)?)
}

/// The values the control plane was installed with (without the version
/// that rendered them and the anchors, which the trust-roots ConfigMap
/// holds), and the trust material and webhook certificate in the cluster.
async fn read(global: &GlobalArgs) -> anyhow::Result<(serde_json::Value, Existing)> {
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await
            .context("mesh upgrade reads the installed control plane")?;
    let mut stored = config::installed_values(&client).await?.with_context(|| {
        format!(
            "mesh is not installed in this cluster (no ConfigMap {NS}/{}): install it with `mesh install | kubectl apply -f -`",
            config::NAME
        )
    })?;
    if let Some(values) = stored.as_object_mut() {
        values.remove("linkerdVersion");
        values.remove("identityTrustAnchorsPEM");
    }
    let existing = Existing::read_with(&client).await?;
    Ok((stored, existing))
}
