//! The multicluster scenarios: the docs' walk-through with `mesh`, and what
//! happens when the WAN is cut, when east's gateway moves to another
//! address, and when the clusters' trust anchors differ. West is linked to
//! east once per run ([`ensure_linked`]); each scenario exports its own
//! podinfo from its own namespace.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::Value;
use tokio::time::Instant;

use crate::kube_util;
use crate::mesh::{self, kubectl};
use crate::provider::{Cluster, Provider};
use crate::scenarios::{
    ROLLOUT, curl, curl_with_retries, default_identity, deploy_podinfo, foreign_anchor,
};

const MC: &str = "linkerd-multicluster";
const GATEWAY: &str = "linkerd-gateway";
const GATEWAY_IDENTITY: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

/// How long a gateway may take to be seen dead or alive: three failed
/// probes of 3 s each, and slack for a loaded machine.
const PROBES: Duration = Duration::from_secs(60);

/// Installs mesh and the extension on both clusters and links west to
/// east with the guides' command as written, unless a run already did:
/// `mesh --context=east multicluster link --cluster-name east |
/// kubectl --context=west apply -f -` (no `--api-server-address`: the local
/// clusters publish the address west's pods reach in
/// `kube-public/cluster-info`, and the credentials must name it).
pub async fn ensure_linked(p: &impl Provider) -> anyhow::Result<()> {
    mesh::ensure_installed(p, Cluster::West).await?;
    mesh::ensure_installed(p, Cluster::East).await?;
    let _lock = mesh::lock(p.kubeconfig().with_file_name("mesh-link.lock")).await?;
    let (west, east) = (p.client(Cluster::West), p.client(Cluster::East));
    let linked = Api::<Service>::namespaced(east.clone(), MC)
        .get_opt(GATEWAY)
        .await?
        .is_some()
        && kube_util::wait_rollout(&west, MC, "linkerd-service-mirror-east", Duration::ZERO)
            .await
            .is_ok();
    if linked {
        return Ok(());
    }
    // West by the CLI, east by the Helm chart, as each was installed.
    mesh::apply_mesh(p, Cluster::West, &["multicluster", "install"]).await?;
    mesh::helm_multicluster(p, false).await?;
    kube_util::wait_rollout(&east, MC, GATEWAY, ROLLOUT).await?;
    kube_util::load_balancer_ip(&east, MC, GATEWAY, ROLLOUT).await?;
    let api_server = p.api_server_address(Cluster::East);
    let mut link = None;
    for _ in 0..40 {
        // The read-only account's token appears a moment after install.
        let out = mesh::mesh(
            p,
            Cluster::East,
            &["multicluster", "link", "--cluster-name", "east"],
        )
        .await?;
        if out.success {
            link = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let link = link.ok_or_else(|| anyhow::anyhow!("mesh multicluster link never succeeded"))?;
    let kubeconfig = credentials_kubeconfig(&link.stdout)?;
    anyhow::ensure!(
        kubeconfig.contains(&format!("\"server\":\"{api_server}\""))
            || kubeconfig.contains(&format!("server: {api_server}")),
        "the link's credentials name east's API at {api_server}, the address west's pods reach: {kubeconfig}"
    );
    kubectl(p, Cluster::West, &["apply", "-f", "-"], Some(&link.stdout))
        .await?
        .ok("kubectl --context west apply of the link")?;
    kube_util::wait_rollout(&west, MC, "linkerd-service-mirror-east", ROLLOUT).await?;
    Ok(())
}

/// The kubeconfig inside the credentials Secret of a rendered link.
fn credentials_kubeconfig(rendered: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let objects: Vec<Value> = serde_saphyr::from_multiple(rendered)?;
    let secret = objects
        .iter()
        .find(|o| o["kind"] == "Secret" && o["type"] == "mirror.linkerd.io/remote-kubeconfig")
        .ok_or_else(|| anyhow::anyhow!("the link renders no credentials Secret: {rendered}"))?;
    let text = match (
        secret["stringData"]["kubeconfig"].as_str(),
        secret["data"]["kubeconfig"].as_str(),
    ) {
        (Some(text), _) => text.to_owned(),
        (None, Some(encoded)) => {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded)?)?
        }
        _ => anyhow::bail!("the credentials Secret has no kubeconfig: {secret}"),
    };
    Ok(text)
}

/// Polls `check` every 250 ms until it holds; returns how long that took.
pub(crate) async fn wait_for<F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A new namespace of the same name in both clusters, meshed.
async fn meshed_namespace_in_both(p: &impl Provider, prefix: &str) -> anyhow::Result<String> {
    let (west, east) = (p.client(Cluster::West), p.client(Cluster::East));
    let ns = kube_util::namespace(&east, prefix).await?;
    let meshed = serde_json::json!({"metadata": {"annotations": {"linkerd.io/inject": "enabled"}}});
    for client in [&west, &east] {
        let namespaces = Api::<Namespace>::all(client.clone());
        if namespaces.get_opt(&ns).await?.is_none() {
            namespaces
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?,
                )
                .await?;
        }
        namespaces
            .patch(&ns, &PatchParams::default(), &Patch::Merge(&meshed))
            .await?;
    }
    Ok(ns)
}

/// A podinfo in east exported to west, in a meshed namespace of both.
pub(crate) struct Exported {
    pub(crate) ns: String,
    pub(crate) east_pods: BTreeSet<String>,
}

impl Exported {
    pub(crate) async fn start(p: &impl Provider, prefix: &str) -> anyhow::Result<Self> {
        let ns = meshed_namespace_in_both(p, prefix).await?;
        let east_pods = deploy_podinfo(&p.client(Cluster::East), &ns).await?;
        let exported = Self { ns, east_pods };
        exported.set_exported(p, true).await?;
        let took = wait_for(
            "podinfo-east in west with a live gateway",
            ROLLOUT,
            || async { Ok(!exported.mirror_addresses(p).await?.0.is_empty()) },
        )
        .await?;
        eprintln!("export label to a ready mirror in west: {took:?}");
        Ok(exported)
    }

    async fn set_exported(&self, p: &impl Provider, exported: bool) -> anyhow::Result<()> {
        let value = if exported {
            Value::from("true")
        } else {
            Value::Null
        };
        Api::<Service>::namespaced(p.client(Cluster::East), &self.ns)
            .patch(
                "podinfo",
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"metadata": {"labels": {"mirror.linkerd.io/exported": value}}}),
                ),
            )
            .await?;
        Ok(())
    }

    /// The mirror's `(ready, not ready)` addresses in west.
    async fn mirror_addresses(
        &self,
        p: &impl Provider,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let endpoints = Api::<Endpoints>::namespaced(p.client(Cluster::West), &self.ns)
            .get_opt("podinfo-east")
            .await?;
        let subsets = endpoints.and_then(|e| e.subsets).unwrap_or_default();
        let ips = |list: Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
            list.unwrap_or_default().into_iter().map(|a| a.ip)
        };
        Ok((
            subsets
                .iter()
                .flat_map(|s| ips(s.addresses.clone()))
                .collect(),
            subsets
                .iter()
                .flat_map(|s| ips(s.not_ready_addresses.clone()))
                .collect(),
        ))
    }

    async fn mirror_exists(&self, p: &impl Provider) -> anyhow::Result<bool> {
        Ok(
            Api::<Service>::namespaced(p.client(Cluster::West), &self.ns)
                .get_opt("podinfo-east")
                .await?
                .is_some(),
        )
    }

    /// Calls `podinfo-east` from a meshed pod in west; the answering pod.
    async fn call_from_west(&self, p: &impl Provider, pod: &str) -> anyhow::Result<String> {
        let url = format!("http://podinfo-east.{}.svc.cluster.local:9898/", self.ns);
        let answer = curl(
            &p.client(Cluster::West),
            &self.ns,
            pod,
            &curl_with_retries(&url),
        )
        .await?;
        anyhow::ensure!(
            answer.succeeded,
            "a meshed west pod reaches east's podinfo through the gateway: {}",
            answer.logs
        );
        let answered = podinfo_answer(&answer.logs)?;
        let host = answered["hostname"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(
            self.east_pods.contains(&host),
            "east's podinfo answered ({host:?} among {:?})",
            self.east_pods
        );
        Ok(host)
    }

    pub(crate) async fn remove(self, p: &impl Provider) {
        kube_util::delete_namespace(&p.client(Cluster::West), &self.ns).await;
        kube_util::delete_namespace(&p.client(Cluster::East), &self.ns).await;
    }
}

/// podinfo's JSON answer in a curl pod's output: the last line (curl's own
/// messages about attempts it retried come first).
fn podinfo_answer(logs: &str) -> anyhow::Result<Value> {
    let last = logs.trim().lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| anyhow::anyhow!("podinfo's answer {logs:?}: {e}"))
}

/// East's row of `mesh --context=west multicluster gateways -o json`.
async fn east_gateway(p: &impl Provider) -> anyhow::Result<Value> {
    gateway_row(p, "east").await
}

/// Linked cluster `cluster`'s row of `mesh --context=west multicluster
/// gateways -o json`.
async fn gateway_row(p: &impl Provider, cluster: &str) -> anyhow::Result<Value> {
    let out = mesh::mesh(
        p,
        Cluster::West,
        &["multicluster", "gateways", "-o", "json"],
    )
    .await?
    .ok("mesh multicluster gateways")?;
    let rows: Value = serde_json::from_str(&out.stdout)?;
    rows.as_array()
        .into_iter()
        .flatten()
        .find(|r| r["cluster"] == cluster)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("mesh multicluster gateways lists {cluster}: {rows}"))
}

/// `mesh --context=west multicluster check -o json`: whether it passed, and
/// `(result, error)` of each check by description.
async fn multicluster_check(
    p: &impl Provider,
    wait: &str,
) -> anyhow::Result<(bool, Vec<(String, String, String)>)> {
    let out = mesh::mesh(
        p,
        Cluster::West,
        &["multicluster", "check", "--wait", wait, "-o", "json"],
    )
    .await?;
    let report: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| anyhow::anyhow!("mesh multicluster check -o json: {e}: {}", out.stdout))?;
    let checks = report["categories"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["checks"].as_array().into_iter().flatten())
        .map(|c| {
            let field = |name: &str| c[name].as_str().unwrap_or_default().to_owned();
            (field("description"), field("result"), field("error"))
        })
        .collect();
    Ok((out.success, checks))
}

/// The docs' walk-through with `mesh`: both clusters meshed with one trust
/// anchor, the extension on both, west linked to east; `mesh multicluster
/// gateways` shows east alive; labelling east's podinfo
/// `mirror.linkerd.io/exported=true` makes `podinfo-east` appear in west,
/// and a meshed pod in west gets east's podinfo over mutual TLS through
/// the gateway, east's pods seeing the west caller's identity (not the
/// gateway's); `mesh multicluster check` passes. Mirrors written by hand
/// in west get through east's gateway only to what east exports: never to
/// east's API server (the gateway refuses it and counts the refusal).
/// East's policy decides for the west caller: `mesh multicluster allow`
/// lets it in, naming another identity refuses it.
/// Removing the label removes the mirror.
pub async fn mesh_gateway_carries_a_west_call_to_east(p: &impl Provider) -> anyhow::Result<()> {
    ensure_linked(p).await?;
    let exported = Exported::start(p, "e2e-mc").await?;
    let east_row = east_gateway(p).await?;
    anyhow::ensure!(
        east_row["alive"] == true && east_row["num_svc"].as_u64() >= Some(1),
        "east's gateway is alive with its mirrored Service: {east_row}"
    );
    exported.call_from_west(p, "caller").await?;
    let east = p.client(Cluster::East);
    let west_caller = default_identity(&exported.ns);
    let mut from_west_caller = 0.0;
    for pod in &exported.east_pods {
        let metrics = mesh::proxy_metrics(&east, &exported.ns, pod).await?;
        from_west_caller += mesh::sum(
            &metrics,
            "request_total",
            &[
                ("direction", "inbound"),
                ("tls", "true"),
                ("client_id", &west_caller),
            ],
        );
    }
    anyhow::ensure!(
        from_west_caller >= 1.0,
        "east's podinfo proxies count the request as the west caller's ({west_caller}), \
         which the gateway ({GATEWAY_IDENTITY}) forwarded"
    );

    let (passed, checks) = multicluster_check(p, "2m").await?;
    anyhow::ensure!(
        passed,
        "mesh multicluster check passes on a healthy link: {checks:#?}"
    );
    // The gateway's QUIC socket buffers, as its proxy reports them: the
    // local clusters' nodes share this machine's kernel, so its limit says
    // what the check must find.
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")?
        .trim()
        .parse()?;
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")?
        .trim()
        .parse()?;
    let granted_in_full = 2 * rmem_max.min(wmem_max) >= mesh_api::ports::QUIC_SOCKET_BUFFER_BYTES;
    let buffers = checks
        .iter()
        .find(|(description, _, _)| description.contains("QUIC sockets"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "mesh multicluster check looks at the gateway's QUIC buffers: {checks:#?}"
            )
        })?;
    let expected = if granted_in_full {
        "success"
    } else {
        "warning"
    };
    anyhow::ensure!(
        buffers.1 == expected,
        "with net.core.rmem_max {rmem_max} and wmem_max {wmem_max} the gateway's QUIC buffer check is a {expected}: {buffers:?}"
    );

    // An attacker who may write Services in west writes mirrors by hand:
    // one for east's API server, one for podinfo. Only what east exports
    // gets through east's gateway.
    let (gateways, _) = exported.mirror_addresses(p).await?;
    let fqn = format!("podinfo.{}.svc.cluster.local", exported.ns);
    hand_written_mirror(
        p,
        &exported.ns,
        "kube-api-east",
        "kubernetes.default.svc.cluster.local",
        443,
        &gateways,
    )
    .await?;
    hand_written_mirror(p, &exported.ns, "stale-east", &fqn, 9898, &gateways).await?;
    let stale = format!("http://stale-east.{}.svc.cluster.local:9898/", exported.ns);
    let answer = curl(
        &p.client(Cluster::West),
        &exported.ns,
        "stale-exported",
        &curl_with_retries(&stale),
    )
    .await?;
    anyhow::ensure!(
        answer.succeeded,
        "a hand-written mirror of an exported Service works (the attack below is a real one): {}",
        answer.logs
    );
    let before = gateway_refused(p).await?;
    let api = format!(
        "https://kube-api-east.{}.svc.cluster.local:443/version",
        exported.ns
    );
    // Each attempt runs its own curl pod.
    let attempt = std::sync::atomic::AtomicUsize::new(0);
    let next = |what: &str| {
        let n = attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{what}-{n}")
    };
    wait_for(
        "east's gateway refusing east's API server",
        ROLLOUT,
        || async {
            refused_from_west(p, &exported.ns, &next("kube-api"), &api).await?;
            Ok(gateway_refused(p).await? > before)
        },
    )
    .await?;

    // East's policy decides for the west caller behind the gateway. A
    // Server for podinfo admits no one until a policy names someone;
    // `mesh multicluster allow --server` (the caller's namespace) lets the
    // west caller in; the same authentication naming another identity
    // refuses it (403).
    let url = format!(
        "http://podinfo-east.{}.svc.cluster.local:9898/",
        exported.ns
    );
    let east = p.client(Cluster::East);
    kube_util::apply(
        &east,
        &exported.ns,
        &format!(
            "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {{name: podinfo, namespace: {}}}\n\
             spec: {{podSelector: {{matchLabels: {{app: podinfo}}}}, port: http, proxyProtocol: HTTP/1}}\n",
            exported.ns
        ),
    )
    .await?;
    let refused_from = |what: &str| {
        let name = next(what);
        let url = url.clone();
        let ns = exported.ns.clone();
        async move {
            let answer =
                crate::policy::curl_once(&p.client(Cluster::West), &ns, &name, &url, false).await?;
            anyhow::Ok(!answer.succeeded && answer.logs.contains("403"))
        }
    };
    wait_for(
        "the west caller refused by east's Server without a policy",
        ROLLOUT,
        || refused_from("no-policy"),
    )
    .await?;
    let allow = mesh::mesh(
        p,
        Cluster::East,
        &[
            "multicluster",
            "allow",
            "-n",
            &exported.ns,
            "--server",
            "podinfo",
        ],
    )
    .await?;
    anyhow::ensure!(allow.success, "mesh multicluster allow: {}", allow.stderr);
    let applied =
        mesh::kubectl(p, Cluster::East, &["apply", "-f", "-"], Some(&allow.stdout)).await?;
    anyhow::ensure!(
        applied.success,
        "applying the allow policy in east: {}",
        applied.stderr
    );
    wait_for(
        "the west caller let in by east's policy",
        ROLLOUT,
        || async {
            let answer = crate::policy::curl_once(
                &p.client(Cluster::West),
                &exported.ns,
                &next("allowed"),
                &url,
                false,
            )
            .await?;
            Ok(answer.succeeded)
        },
    )
    .await?;
    let narrowed = allow.stdout.replace(
        &format!(
            "*.{}.serviceaccount.identity.linkerd.cluster.local",
            exported.ns
        ),
        "nobody.elsewhere.serviceaccount.identity.linkerd.cluster.local",
    );
    anyhow::ensure!(
        narrowed != allow.stdout,
        "the allow policy names the caller's namespace: {}",
        allow.stdout
    );
    let applied = mesh::kubectl(p, Cluster::East, &["apply", "-f", "-"], Some(&narrowed)).await?;
    anyhow::ensure!(
        applied.success,
        "narrowing the policy in east: {}",
        applied.stderr
    );
    wait_for(
        "the west caller refused once east's policy names another identity",
        ROLLOUT,
        || refused_from("narrowed"),
    )
    .await?;

    exported.set_exported(p, false).await?;
    wait_for(
        "podinfo-east gone from west after the export label went",
        ROLLOUT,
        || async { Ok(!exported.mirror_exists(p).await?) },
    )
    .await?;
    exported.remove(p).await;
    Ok(())
}

/// Writes, in west's `ns`, a mirror Service `name` by hand (as anyone who
/// may create Services and Endpoints there can): `remote_fqn` on `port`
/// through east's gateway at `gateways`.
async fn hand_written_mirror(
    p: &impl Provider,
    ns: &str,
    name: &str,
    remote_fqn: &str,
    port: u16,
    gateways: &[String],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !gateways.is_empty(),
        "east's gateway has no address in west"
    );
    // Not `east`: east's mirror would delete a mirror of what east does not
    // export as its own.
    let labels = "    mirror.linkerd.io/mirrored-service: \"true\"\n    mirror.linkerd.io/cluster-name: forged\n";
    let addresses: Vec<String> = gateways.iter().map(|ip| format!("{{ip: {ip}}}")).collect();
    kube_util::apply(
        &p.client(Cluster::West),
        ns,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels:\n{labels}  \
             annotations:\n    mirror.linkerd.io/remote-svc-fq-name: {remote_fqn}\n\
             spec:\n  ports: [{{name: port, port: {port}}}]\n\
             ---\n\
             apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: {name}\n  labels:\n{labels}  \
             annotations:\n    mirror.linkerd.io/remote-gateway-identity: {GATEWAY_IDENTITY}\n\
             subsets:\n- addresses: [{}]\n  ports: [{{name: port, port: 4143}}]\n",
            addresses.join(", ")
        ),
    )
    .await
}

/// Asserts that a meshed west pod's call to `url` (`name` names the pod)
/// gets no answer at all.
async fn refused_from_west(
    p: &impl Provider,
    ns: &str,
    name: &str,
    url: &str,
) -> anyhow::Result<()> {
    let answer = curl(
        &p.client(Cluster::West),
        ns,
        name,
        &[
            "curl".into(),
            "-ksS".into(),
            "--max-time".into(),
            "5".into(),
            url.into(),
        ],
    )
    .await?;
    anyhow::ensure!(
        !answer.succeeded,
        "{url} through east's gateway is refused, yet it answered: {}",
        answer.logs
    );
    Ok(())
}

/// What east's gateways have refused as not exported.
async fn gateway_refused(p: &impl Provider) -> anyhow::Result<f64> {
    let east = p.client(Cluster::East);
    let pods = kube_util::ready_pods(&east, MC, &format!("app={GATEWAY}")).await?;
    let mut refused = 0.0;
    for pod in pods.iter().filter_map(|p| p.metadata.name.as_deref()) {
        let metrics = mesh::proxy_metrics(&east, MC, pod).await?;
        refused += mesh::sum(
            &metrics,
            "gateway_refused_total",
            &[("reason", "not_exported")],
        );
    }
    Ok(refused)
}

/// Cutting the WAN marks east's gateway not alive and its mirror's
/// addresses not ready, while the mirror stays; restoring the WAN brings
/// the gateway back. Moving east's gateway to another address moves the
/// mirror's endpoints there, and calls follow.
pub async fn mesh_multicluster_wan_cut_keeps_mirrors_and_a_moved_gateway_is_followed(
    p: &impl Provider,
) -> anyhow::Result<()> {
    ensure_linked(p).await?;
    let exported = Exported::start(p, "e2e-mc-wan").await?;

    p.cut_wan().await?;
    let cut = async {
        let took = wait_for(
            "east's gateway not alive after the WAN cut",
            PROBES,
            || async { Ok(east_gateway(p).await?["alive"] == false) },
        )
        .await?;
        wait_for("the mirror's addresses not ready", PROBES, || async {
            let (ready, not_ready) = exported.mirror_addresses(p).await?;
            Ok(ready.is_empty() && !not_ready.is_empty())
        })
        .await?;
        anyhow::ensure!(
            exported.mirror_exists(p).await?,
            "the mirror stays while the WAN is cut"
        );
        Ok::<_, anyhow::Error>(took)
    }
    .await;
    p.restore_wan().await?;
    let down_after = cut?;
    let back_after = wait_for(
        "east's gateway alive again after the WAN is back",
        PROBES,
        || async {
            Ok(east_gateway(p).await?["alive"] == true
                && !exported.mirror_addresses(p).await?.0.is_empty())
        },
    )
    .await?;
    eprintln!(
        "WAN cut: gateway not alive after {down_after:?}; restored: alive after {back_after:?}"
    );

    let old = kube_util::load_balancer_ip(&p.client(Cluster::East), MC, GATEWAY, ROLLOUT).await?;
    let new = if old.to_string() == "172.31.0.190" {
        "172.31.0.189"
    } else {
        "172.31.0.190"
    };
    let moved = async {
        move_gateway(p, new).await?;
        let took = wait_for(
            "the mirror's endpoints at the gateway's new address",
            ROLLOUT,
            || async { Ok(exported.mirror_addresses(p).await?.0 == [new.to_owned()]) },
        )
        .await?;
        eprintln!("gateway moved {old} -> {new}: mirror endpoints followed in {took:?}");
        exported.call_from_west(p, "after-move").await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    move_gateway(p, &old.to_string()).await?;
    moved?;
    wait_for(
        "the mirror back at the gateway's first address",
        ROLLOUT,
        || async { Ok(exported.mirror_addresses(p).await?.0 == [old.to_string()]) },
    )
    .await?;
    exported.remove(p).await;
    Ok(())
}

/// Recreates east's gateway Service at LoadBalancer address `ip`, as a
/// cloud load balancer re-provisioned elsewhere would be.
async fn move_gateway(p: &impl Provider, ip: &str) -> anyhow::Result<()> {
    let services = Api::<Service>::namespaced(p.client(Cluster::East), MC);
    let mut service = services.get(GATEWAY).await?;
    services.delete(GATEWAY, &DeleteParams::default()).await?;
    wait_for("the old gateway Service gone", ROLLOUT, || async {
        Ok(services.get_opt(GATEWAY).await?.is_none())
    })
    .await?;
    service.metadata.resource_version = None;
    service.metadata.uid = None;
    service.metadata.creation_timestamp = None;
    service.metadata.managed_fields = None;
    service.status = None;
    if let Some(spec) = service.spec.as_mut() {
        spec.cluster_ip = None;
        spec.cluster_ips = None;
        spec.load_balancer_ip = Some(ip.to_owned());
        for port in spec.ports.iter_mut().flatten() {
            port.node_port = None;
        }
    }
    services.create(&PostParams::default(), &service).await?;
    let got = kube_util::load_balancer_ip(&p.client(Cluster::East), MC, GATEWAY, ROLLOUT).await?;
    anyhow::ensure!(got.to_string() == ip, "the gateway got {got}, not {ip}");
    Ok(())
}

/// With a foreign trust anchor in east's bundle, `mesh multicluster check`
/// on west fails "clusters share trust anchors" and names both sides'
/// anchors; restored, it passes.
pub async fn mesh_multicluster_check_names_mismatched_anchors(
    p: &impl Provider,
) -> anyhow::Result<()> {
    ensure_linked(p).await?;
    let east = p.client(Cluster::East);
    let original = mesh::replace_trust_bundle(&east, &foreign_anchor()?).await?;
    let shared = "clusters share trust anchors";
    let last = std::sync::Mutex::new(Vec::new());
    let broken = wait_for(
        "mesh multicluster check fails on the anchors",
        PROBES,
        || async {
            let (passed, checks) = multicluster_check(p, "1s").await?;
            let named = checks.iter().any(|(description, result, error)| {
                description == shared
                    && result == "error"
                    && error.contains("linked cluster: CN=foreign root")
                    && error.contains("this cluster: CN=")
            });
            if let Ok(mut last) = last.lock() {
                *last = checks;
            }
            Ok(!passed && named)
        },
    )
    .await
    .map_err(|e| {
        let said = last.lock().map(|l| format!("{l:#?}")).unwrap_or_default();
        anyhow::anyhow!("{e}; the last check said {said}")
    });
    mesh::replace_trust_bundle(&east, &original).await?;
    broken?;
    wait_for("the anchors shared again once restored", PROBES, || async {
        let (_, checks) = multicluster_check(p, "1s").await?;
        Ok(checks
            .iter()
            .any(|(description, result, _)| description == shared && result == "success"))
    })
    .await?;
    Ok(())
}

/// QUIC connections east's gateway accepted (its proxy's
/// `quic_connections_total{direction="inbound",outcome="accepted"}`).
async fn gateway_quic_accepted(p: &impl Provider) -> anyhow::Result<f64> {
    let east = p.client(Cluster::East);
    let pods = kube_util::ready_pods(&east, MC, &format!("app={GATEWAY}")).await?;
    let mut accepted = 0.0;
    for pod in pods.iter().filter_map(|p| p.metadata.name.as_deref()) {
        let metrics = mesh::proxy_metrics(&east, MC, pod).await?;
        accepted += mesh::sum(
            &metrics,
            "quic_connections_total",
            &[("direction", "inbound"), ("outcome", "accepted")],
        );
    }
    Ok(accepted)
}

/// A west pod's call to east goes over QUIC (east's gateway accepts a QUIC
/// connection for it); with UDP dropped on the WAN, a call still succeeds,
/// over TCP, and the gateway accepts no QUIC connection for it.
pub async fn mesh_multicluster_quic_and_tcp_both_carry_traffic(
    p: &impl Provider,
) -> anyhow::Result<()> {
    ensure_linked(p).await?;
    let exported = Exported::start(p, "e2e-mc-quic").await?;
    let before = gateway_quic_accepted(p).await?;
    exported.call_from_west(p, "over-quic").await?;
    let after = gateway_quic_accepted(p).await?;
    anyhow::ensure!(
        after > before,
        "the west pod's proxy reached the gateway over QUIC ({before} → {after} accepted)"
    );

    p.set_wan("udp=drop").await?;
    let over_tcp = async {
        exported.call_from_west(p, "over-tcp").await?;
        let dropped = gateway_quic_accepted(p).await?;
        anyhow::ensure!(
            dropped == after,
            "with UDP dropped no QUIC connection reached the gateway ({after} → {dropped})"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    p.set_wan("udp=pass").await?;
    over_tcp?;
    exported.remove(p).await;
    Ok(())
}

/// podinfo as a StatefulSet of two behind an exported headless Service.
const PODINFO_STATEFULSET: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: db
  labels:
    mirror.linkerd.io/exported: "true"
spec:
  clusterIP: None
  selector:
    app: db
  ports:
  - name: http
    port: 9898
    targetPort: 9898
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: podinfod
        image: ghcr.io/stefanprodan/podinfo:6.9.2
        command: ["./podinfo", "--port=9898"]
        ports:
        - name: http
          containerPort: 9898
        readinessProbe:
          httpGet:
            path: /readyz
            port: 9898
"#;

/// A StatefulSet in east behind an exported headless Service: west gets
/// the headless mirror `db-east` and an endpoint mirror per pod, and a
/// meshed west pod reaches each pod by name,
/// `db-<n>.db-east.<ns>.svc.cluster.local`, through the gateway.
pub async fn mesh_multicluster_statefulset_pods_are_reached_by_name(
    p: &impl Provider,
) -> anyhow::Result<()> {
    ensure_linked(p).await?;
    let ns = meshed_namespace_in_both(p, "e2e-mc-sts").await?;
    let (west, east) = (p.client(Cluster::West), p.client(Cluster::East));
    kube_util::apply(&east, &ns, PODINFO_STATEFULSET).await?;
    let took = wait_for("db-east in west names both pods", ROLLOUT, || async {
        let endpoints = Api::<Endpoints>::namespaced(west.clone(), &ns)
            .get_opt("db-east")
            .await?;
        let hosts: BTreeSet<String> = endpoints
            .and_then(|e| e.subsets)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| s.addresses.unwrap_or_default())
            .filter_map(|a| a.hostname)
            .collect();
        Ok(hosts.len() == 2)
    })
    .await?;
    eprintln!("headless mirror with both pods in west: {took:?}");
    for pod in ["db-0", "db-1"] {
        let url = format!("http://{pod}.db-east.{ns}.svc.cluster.local:9898/");
        let answer = curl(
            &west,
            &ns,
            &format!("caller-{pod}"),
            &curl_with_retries(&url),
        )
        .await?;
        anyhow::ensure!(
            answer.succeeded,
            "a meshed west pod reaches {url}: {}",
            answer.logs
        );
        let answered = podinfo_answer(&answer.logs)?;
        anyhow::ensure!(
            answered["hostname"] == pod,
            "{url} is answered by east's {pod}: {answered}"
        );
    }
    kube_util::delete_namespace(&west, &ns).await;
    kube_util::delete_namespace(&east, &ns).await;
    Ok(())
}

/// A Link whose credentials name an API server its mirror cannot reach (a
/// loopback address, the mistake a kind kubeconfig leads to) makes `mesh
/// multicluster check` fail naming the Link and the mirror's own error,
/// even though this machine reaches the same cluster; `mesh multicluster
/// gateways` does not show it as synced.
pub async fn mesh_multicluster_check_names_an_unreachable_link(
    p: &impl Provider,
) -> anyhow::Result<()> {
    ensure_linked(p).await?;
    let west = p.client(Cluster::West);
    let link = mesh::mesh(
        p,
        Cluster::East,
        &[
            "multicluster",
            "link",
            "--cluster-name",
            "nowhere",
            "--api-server-address",
            "https://127.0.0.1:6443",
        ],
    )
    .await?
    .ok("mesh multicluster link --cluster-name nowhere")?;
    kubectl(p, Cluster::West, &["apply", "-f", "-"], Some(&link.stdout))
        .await?
        .ok("kubectl apply of the link to nowhere")?;
    let outcome = async {
        kube_util::wait_rollout(&west, MC, "linkerd-service-mirror-nowhere", ROLLOUT).await?;
        let (passed, checks) = multicluster_check(p, "30s").await?;
        let reach = checks
            .iter()
            .find(|(description, _, _)| description == "service mirrors reach the linked clusters");
        anyhow::ensure!(
            !passed
                && reach.is_some_and(|(_, result, error)| {
                    result == "error"
                        && error.contains("Link nowhere")
                        && error.contains("cannot reach the linked API server")
                        && !error.contains("Link east")
                }),
            "mesh multicluster check names the unreachable Link and the mirror's error: {reach:?}"
        );
        let nowhere = gateway_row(p, "nowhere").await?;
        anyhow::ensure!(
            nowhere["synced"] != true && nowhere["last_error"].is_string(),
            "gateways does not show the unreachable Link as synced, and gives its error: {nowhere}"
        );
        Ok(())
    }
    .await;
    let unlink = mesh::mesh(
        p,
        Cluster::West,
        &["multicluster", "unlink", "--cluster-name", "nowhere"],
    )
    .await?
    .ok("mesh multicluster unlink")?;
    kubectl(
        p,
        Cluster::West,
        &["delete", "--ignore-not-found", "-f", "-"],
        Some(&unlink.stdout),
    )
    .await?
    .ok("kubectl delete of the link to nowhere")?;
    outcome
}
