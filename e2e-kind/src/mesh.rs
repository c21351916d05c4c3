//! The mesh on a cluster as its docs install it, once per cluster for every
//! scenario of a run: west with `mesh install --crds` and `mesh install`
//! piped to `kubectl apply`, east with the Helm charts as the Helm guide
//! does (`helm install` of `charts/mesh-crds` with `--create-namespace`,
//! then `charts/mesh-control-plane` with `--set-file` for the trust
//! material), so that every multicluster scenario links a CLI-installed
//! cluster with a Helm-installed one; both clusters with one trust anchor and an issuer
//! each, as the multicluster docs set them up (locks beside the kubeconfig
//! keep concurrent test processes from installing twice); the
//! `mesh` CLI and kubectl run as a user runs them; a proxy's metrics read
//! through the API server as `mesh check` reads them.

use std::path::Path;
use std::process::Stdio;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::provider::{Cluster, Provider};

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Ran {
    /// Exit status 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Ran {
    /// Fails with the command's output unless it succeeded.
    pub fn ok(self, what: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.success,
            "{what} failed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
}

async fn run(program: &Path, args: &[String], stdin: Option<&str>) -> anyhow::Result<Ran> {
    let mut child = Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("running {}: {e}", program.display()))?;
    let mut input = child.stdin.take();
    if let (Some(pipe), Some(text)) = (&mut input, stdin) {
        pipe.write_all(text.as_bytes()).await?;
    }
    drop(input);
    let out = child.wait_with_output().await?;
    Ok(Ran {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `args` after the run's kubeconfig and `cluster`'s context, given with
/// `context_flag` (`--context`; helm's is `--kube-context`).
fn with_cluster(
    p: &impl Provider,
    cluster: Cluster,
    context_flag: &str,
    args: &[&str],
) -> Vec<String> {
    let mut all = vec![
        "--kubeconfig".to_owned(),
        p.kubeconfig().display().to_string(),
        context_flag.to_owned(),
        p.context(cluster),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all
}

/// `mesh --kubeconfig … --context <cluster> <args>`.
pub async fn mesh(p: &impl Provider, cluster: Cluster, args: &[&str]) -> anyhow::Result<Ran> {
    let binary = mesh_clusters::testing::mesh_bin_dir()?.join("mesh");
    run(&binary, &with_cluster(p, cluster, "--context", args), None).await
}

/// `mesh … <args>` for a command that runs until stopped (`viz tap`):
/// what it printed in `duration`, then it is killed.
pub async fn mesh_for(
    p: &impl Provider,
    cluster: Cluster,
    args: &[&str],
    duration: std::time::Duration,
) -> anyhow::Result<Ran> {
    use tokio::io::AsyncReadExt as _;
    let binary = mesh_clusters::testing::mesh_bin_dir()?.join("mesh");
    let mut child = Command::new(&binary)
        .args(with_cluster(p, cluster, "--context", args))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("running {}: {e}", binary.display()))?;
    let (mut stdout, mut stderr) = (
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
        child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?,
    );
    let out = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text).await;
        text
    });
    let err = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        text
    });
    let status = match tokio::time::timeout(duration, child.wait()).await {
        Ok(status) => Some(status?),
        Err(_) => {
            child.kill().await?;
            None
        }
    };
    Ok(Ran {
        // Still running when stopped counts as running well.
        success: status.is_none_or(|s| s.success()),
        stdout: String::from_utf8_lossy(&out.await?).into_owned(),
        stderr: String::from_utf8_lossy(&err.await?).into_owned(),
    })
}

/// `kubectl --kubeconfig … --context <cluster> <args>`, with `stdin`.
pub async fn kubectl(
    p: &impl Provider,
    cluster: Cluster,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<Ran> {
    run(
        &p.kubectl(),
        &with_cluster(p, cluster, "--context", args),
        stdin,
    )
    .await
}

/// Takes an exclusive lock on `path` (created), off the runtime.
pub(crate) async fn lock(path: std::path::PathBuf) -> anyhow::Result<std::fs::File> {
    Ok(tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await??)
}

/// The trust material of the run, beside the kubeconfig: one trust anchor
/// for both clusters (as the multicluster docs set it up) and an issuer per
/// cluster; made by the first test that needs it. Returns its directory.
pub(crate) async fn trust_material(p: &impl Provider) -> anyhow::Result<std::path::PathBuf> {
    let dir = p.kubeconfig().with_file_name("mesh-trust");
    let _lock = lock(p.kubeconfig().with_file_name("mesh-trust.lock")).await?;
    mesh_identity::generate::shared_trust(&dir, &[Cluster::West.name(), Cluster::East.name()])?;
    Ok(dir)
}

/// Installs the mesh on `cluster` unless it is there (with the run's shared
/// trust anchor and the cluster's own issuer), then waits for `mesh check`
/// to pass and returns its report.
pub async fn ensure_installed(p: &impl Provider, cluster: Cluster) -> anyhow::Result<Ran> {
    let trust = trust_material(p).await?;
    let lock = lock(
        p.kubeconfig()
            .with_file_name(format!("mesh-install-{}.lock", cluster.name())),
    )
    .await?;
    let roots = Api::<ConfigMap>::namespaced(p.client(cluster), "linkerd")
        .get_opt("linkerd-identity-trust-roots")
        .await?;
    if roots.is_none() {
        match cluster {
            Cluster::West => {
                let install = install_args(&trust, cluster);
                let install: Vec<&str> = install.iter().map(String::as_str).collect();
                for args in [&["install", "--crds"][..], &install] {
                    apply_mesh(p, cluster, args).await?;
                }
            }
            Cluster::East => helm_install(p, &trust, cluster).await?,
        }
    }
    drop(lock);
    mesh(p, cluster, &["check", "--wait", "3m"])
        .await?
        .ok("mesh check after install")
}

/// Where the charts are in this repository.
pub fn chart(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts")
        .join(name)
        .display()
        .to_string()
}

/// `helm --kubeconfig … --kube-context <cluster> <args>`.
pub async fn helm(p: &impl Provider, cluster: Cluster, args: &[&str]) -> anyhow::Result<Ran> {
    let binary = mesh_clusters::helm::locate()?;
    run(
        &binary,
        &with_cluster(p, cluster, "--kube-context", args),
        None,
    )
    .await
}

/// The Helm guide's install with the run's trust material for `cluster`
/// (`upgrade --install`, so that a run stopped half-way can finish it).
async fn helm_install(
    p: &impl Provider,
    trust: &std::path::Path,
    cluster: Cluster,
) -> anyhow::Result<()> {
    let crds = chart("mesh-crds");
    let args = [
        "upgrade",
        "--install",
        "linkerd-crds",
        &crds,
        "-n",
        "linkerd",
        "--create-namespace",
    ];
    helm(p, cluster, &args)
        .await?
        .ok("helm install linkerd-crds")?;
    let file = |name: String| trust.join(name).display().to_string();
    let set_file = [
        format!("identityTrustAnchorsPEM={}", file("ca.crt".into())),
        format!(
            "identity.issuer.tls.crtPEM={}",
            file(format!("{}.crt", cluster.name()))
        ),
        format!(
            "identity.issuer.tls.keyPEM={}",
            file(format!("{}.key", cluster.name()))
        ),
    ];
    let control_plane = chart("mesh-control-plane");
    let mut args = vec![
        "upgrade",
        "--install",
        "linkerd-control-plane",
        &control_plane,
        "-n",
        "linkerd",
    ];
    for value in &set_file {
        args.extend(["--set-file", value]);
    }
    helm(p, cluster, &args)
        .await?
        .ok("helm install linkerd-control-plane")?;
    Ok(())
}

/// East's multicluster extension by its chart, as the Helm guide installs
/// it (`helm upgrade --install … --create-namespace`); `ha` adds the
/// chart's `values-ha.yaml`, and without it the values go back to the
/// chart's own.
pub async fn helm_multicluster(p: &impl Provider, ha: bool) -> anyhow::Result<()> {
    let chart_dir = chart("mesh-multicluster");
    let ha_values = format!("{chart_dir}/values-ha.yaml");
    let mut args = vec![
        "upgrade",
        "--install",
        "linkerd-multicluster",
        &chart_dir,
        "-n",
        "linkerd-multicluster",
        "--create-namespace",
        "--reset-values",
    ];
    if ha {
        args.extend(["-f", &ha_values]);
    }
    helm(p, Cluster::East, &args)
        .await?
        .ok("helm install of east's multicluster extension")?;
    Ok(())
}

/// `mesh install` with the run's trust material for `cluster`, as the
/// multicluster guide gives it.
fn install_args(trust: &std::path::Path, cluster: Cluster) -> Vec<String> {
    let file = |name: String| trust.join(name).display().to_string();
    vec![
        "install".to_owned(),
        "--identity-trust-anchors-file".into(),
        file("ca.crt".into()),
        "--identity-issuer-certificate-file".into(),
        file(format!("{}.crt", cluster.name())),
        "--identity-issuer-key-file".into(),
        file(format!("{}.key", cluster.name())),
    ]
}

/// Renders `mesh install` again with the flags it was installed with and
/// applies it, as a user changing one flag (or a GitOps sync) does;
/// returns what `mesh install` said on stderr.
pub async fn reapply_install(p: &impl Provider, cluster: Cluster) -> anyhow::Result<String> {
    let trust = trust_material(p).await?;
    let args = install_args(&trust, cluster);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    apply_mesh(p, cluster, &args).await
}

/// `mesh upgrade` with `issuer_of`'s issuer (the run's issuers share one
/// anchor: another cluster's is a new issuer under the same root), applied
/// as the guide's issuer rotation does; returns what it said on stderr.
pub async fn upgrade_issuer(
    p: &impl Provider,
    cluster: Cluster,
    issuer_of: Cluster,
) -> anyhow::Result<String> {
    let trust = trust_material(p).await?;
    let file = |extension: &str| {
        trust
            .join(format!("{}.{extension}", issuer_of.name()))
            .display()
            .to_string()
    };
    let (crt, key) = (file("crt"), file("key"));
    apply_upgrade(
        p,
        cluster,
        &[
            "--identity-issuer-certificate-file",
            &crt,
            "--identity-issuer-key-file",
            &key,
        ],
    )
    .await
}

/// `mesh upgrade <args> | kubectl apply -f -`; what mesh said on stderr.
pub async fn apply_upgrade(
    p: &impl Provider,
    cluster: Cluster,
    args: &[&str],
) -> anyhow::Result<String> {
    let mut all = vec!["upgrade"];
    all.extend(args);
    apply_mesh(p, cluster, &all).await
}

/// `mesh <args> | kubectl apply -f -` on `cluster`, as the docs install
/// and upgrade; what mesh said on stderr.
pub async fn apply_mesh(
    p: &impl Provider,
    cluster: Cluster,
    args: &[&str],
) -> anyhow::Result<String> {
    let command: Vec<&str> = args
        .iter()
        .copied()
        .take_while(|a| !a.starts_with('-'))
        .collect();
    let command = format!("mesh {}", command.join(" "));
    let rendered = mesh(p, cluster, args).await?.ok(&command)?;
    kubectl(p, cluster, &["apply", "-f", "-"], Some(&rendered.stdout))
        .await?
        .ok(&format!("kubectl apply of {command}"))?;
    Ok(rendered.stderr)
}

/// Puts `bundle` in a cluster's trust roots ConfigMap (to break trust on
/// purpose); returns the bundle it held, to put back.
pub async fn replace_trust_bundle(client: &kube::Client, bundle: &str) -> anyhow::Result<String> {
    let maps = Api::<ConfigMap>::namespaced(client.clone(), "linkerd");
    let previous = maps
        .get("linkerd-identity-trust-roots")
        .await?
        .data
        .and_then(|d| d.get("ca-bundle.crt").cloned())
        .unwrap_or_default();
    maps.patch(
        "linkerd-identity-trust-roots",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"data": {"ca-bundle.crt": bundle}})),
    )
    .await?;
    Ok(previous)
}

/// A proxy's metrics page, through the API server's pod proxy.
pub async fn proxy_metrics(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> anyhow::Result<String> {
    mesh_api::kube_client::pod_get(
        client,
        namespace,
        pod,
        mesh_api::ports::PROXY_ADMIN,
        "/metrics",
    )
    .await
}

/// The sum of `metric` over the series whose labels include all of `labels`.
pub fn sum(metrics: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    mesh_api::metrics_text::samples(metrics, metric)
        .filter(|(series, _)| {
            labels
                .iter()
                .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_by_label() {
        let page = "request_total{direction=\"inbound\",tls=\"true\",client_id=\"a\"} 3\n\
                    request_total{direction=\"inbound\",tls=\"true\",client_id=\"b\"} 4\n\
                    request_total{direction=\"outbound\",tls=\"true\"} 5\n\
                    request_totals{direction=\"inbound\"} 100\n";
        assert_eq!(sum(page, "request_total", &[("direction", "inbound")]), 7.0);
        assert_eq!(sum(page, "request_total", &[("client_id", "b")]), 4.0);
        assert_eq!(sum(page, "response_total", &[]), 0.0);
    }
}
