//! The guide's four-step trust anchor rotation, under load and without a
//! restart: (1) `mesh upgrade --identity-trust-anchors-file old+new`;
//! (2) the guide restarts workloads here — mesh's proxies follow their
//! namespace's trust roots copy instead, so the step is waiting until they
//! trust both; (3) a new issuer from the new anchor (`mesh upgrade
//! --identity-issuer-certificate-file …`), which the running proxies are
//! certified by at once; (4) the old anchor dropped. Not one request of the
//! load fails. Then the same four steps back to the run's own anchor, so
//! the other scenarios find the cluster as it was.

use std::time::Duration;

use mesh_identity::generate;

use crate::kube_util;
use crate::mesh;
use crate::provider::{Cluster, Provider};
use crate::scenarios::{
    ROLLOUT, codes_of, load_codes, meshed_podinfo_under_load, start_curl_load, wait_for_codes,
};

/// Each ready meshed pod of `ns` with its proxy's metrics page.
async fn proxies(
    client: &kube::Client,
    ns: &str,
) -> anyhow::Result<Vec<(String, anyhow::Result<String>)>> {
    let mut out = Vec::new();
    for pod in kube_util::ready_pods(client, ns, "").await? {
        if !pod.spec.as_ref().is_some_and(mesh_api::pod::has_proxy) {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let page = mesh::proxy_metrics(client, ns, &name).await;
        out.push((name, page));
    }
    Ok(out)
}

/// Waits until every meshed pod of `ns` passes `done` (its name, its
/// proxy's metrics).
async fn until_proxies(
    client: &kube::Client,
    ns: &str,
    what: &str,
    done: impl Fn(&str, &str) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + ROLLOUT;
    loop {
        let mut lagging = Vec::new();
        for (name, page) in proxies(client, ns).await? {
            if !done(&name, &page.unwrap_or_default()) {
                lagging.push(name);
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: these proxies did not within {ROLLOUT:?}: {lagging:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The certificates each meshed pod's proxy has been given so far.
async fn certificates(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<(String, f64)>> {
    proxies(client, ns)
        .await?
        .into_iter()
        .map(|(name, page)| {
            let count = mesh::sum(&page?, "identity_cert_refresh_total", &[]);
            Ok((name, count))
        })
        .collect()
}

/// One rotation (`step`) from the anchor in `from` to `to` (PEM files),
/// the issuer moving to `issuer` (certificate and key files under `to`);
/// it ends with a load pod `load-<step>` started after it.
async fn rotate(
    p: &impl Provider,
    step: &str,
    ns: &str,
    from: &str,
    to: &str,
    issuer: (&str, &str),
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let west = p.client(Cluster::West);
    let bundle = dir.join("bundle.crt");
    std::fs::write(
        &bundle,
        format!(
            "{}{}",
            std::fs::read_to_string(from)?,
            std::fs::read_to_string(to)?
        ),
    )?;
    // 1. Trust both.
    let bundle_arg = bundle.display().to_string();
    mesh::apply_upgrade(
        p,
        Cluster::West,
        &["--identity-trust-anchors-file", &bundle_arg],
    )
    .await?;
    // 2. Every running proxy trusts both, without a restart.
    until_proxies(&west, ns, "trusting the two-anchor bundle", |_, m| {
        mesh::sum(m, "identity_trust_anchors", &[]) == 2.0
    })
    .await?;
    // 3. The issuer moves to the new anchor; running proxies are certified
    // by it at once.
    let before = certificates(&west, ns).await?;
    mesh::apply_upgrade(
        p,
        Cluster::West,
        &[
            "--identity-issuer-certificate-file",
            issuer.0,
            "--identity-issuer-key-file",
            issuer.1,
        ],
    )
    .await?;
    until_proxies(&west, ns, "certified by the new issuer", |name, m| {
        let had = before
            .iter()
            .find(|(pod, _)| pod == name)
            .map_or(0.0, |(_, count)| *count);
        mesh::sum(m, "identity_cert_refresh_total", &[]) > had
    })
    .await?;
    // 4. Only the new anchor.
    mesh::apply_upgrade(p, Cluster::West, &["--identity-trust-anchors-file", to]).await?;
    until_proxies(&west, ns, "trusting the new anchor alone", |_, m| {
        mesh::sum(m, "identity_trust_anchors", &[]) == 1.0
    })
    .await?;
    mesh::mesh(p, Cluster::West, &["check", "--wait", "2m"])
        .await?
        .ok("mesh check after the rotation")?;
    // The data plane check asks each proxy what it trusts now (their pods'
    // environment still holds the anchors they started with).
    mesh::mesh(
        p,
        Cluster::West,
        &["check", "--proxy", "--namespace", ns, "--wait", "2m"],
    )
    .await?
    .ok("mesh check --proxy after the rotation")?;
    // A pod started now (new connections, a certificate from the new
    // issuer alone) reaches the pods that lived through the rotation.
    let fresh = format!("load-{step}");
    start_curl_load(&west, ns, &fresh).await?;
    let deadline = tokio::time::Instant::now() + ROLLOUT;
    loop {
        let codes = codes_of(&west, ns, &fresh).await?;
        if codes.len() >= 10 {
            anyhow::ensure!(
                codes.iter().all(|c| c == "200"),
                "a pod started after the rotation calls the ones that lived through it: {codes:?}"
            );
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{fresh} printed {} codes in {ROLLOUT:?}",
            codes.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// See the module's documentation.
pub async fn mesh_trust_anchor_rotation_in_four_steps_under_load(
    p: &impl Provider,
) -> anyhow::Result<()> {
    mesh::ensure_installed(p, Cluster::West).await?;
    let west = p.client(Cluster::West);
    let trust = mesh::trust_material(p).await?;
    // Beside the run's trust material (removed with the clusters).
    let dir = trust.join("anchor-rotation");
    std::fs::create_dir_all(&dir)?;
    let day = Duration::from_secs(86400);
    let now = std::time::SystemTime::now();
    let anchor = generate::trust_anchor("root.linkerd.cluster.local", now - day, 365 * day)?;
    let issuer = generate::issuer(
        &anchor,
        "identity.linkerd.cluster.local",
        now - day,
        30 * day,
    )?;
    let write = |name: &str, text: &str| -> anyhow::Result<String> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };
    let new_anchor = write("new-ca.crt", &anchor.cert_pem)?;
    let new_issuer = (
        write("new-issuer.crt", &issuer.cert_pem)?,
        write("new-issuer.key", &issuer.key_pem)?,
    );
    let old_anchor = trust.join("ca.crt").display().to_string();
    let own_issuer = (
        trust.join("west.crt").display().to_string(),
        trust.join("west.key").display().to_string(),
    );
    let ns = meshed_podinfo_under_load(&west).await?;
    wait_for_codes(&west, &ns, 20).await?;
    let forward = rotate(
        p,
        "forward",
        &ns,
        &old_anchor,
        &new_anchor,
        (&new_issuer.0, &new_issuer.1),
        &dir,
    )
    .await;
    let counted = load_codes(&west, &ns).await?.len();
    // Back to the run's anchor and west's issuer, whatever happened.
    let back = rotate(
        p,
        "back",
        &ns,
        &new_anchor,
        &old_anchor,
        (&own_issuer.0, &own_issuer.1),
        &dir,
    )
    .await;
    forward?;
    back?;
    let mut codes = wait_for_codes(&west, &ns, counted + 20).await?;
    for fresh in ["load-forward", "load-back"] {
        codes.extend(codes_of(&west, &ns, fresh).await?);
    }
    let failed: Vec<&String> = codes.iter().filter(|c| *c != "200").collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} requests failed across two trust anchor rotations: {failed:?}",
        failed.len(),
        codes.len()
    );
    kube_util::delete_namespace(&west, &ns).await;
    Ok(())
}
