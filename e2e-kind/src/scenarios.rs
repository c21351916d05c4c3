//! The scenarios. Each makes its own namespaces, checks what a user would
//! check, and removes its namespaces when it passes (a failing scenario
//! leaves them for inspection until the clusters go).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::Value;

pub use crate::anchor_rotation::mesh_trust_anchor_rotation_in_four_steps_under_load;
pub use crate::failover::{
    mesh_failover_ignores_noise_and_aborts_a_relapsing_failback,
    mesh_failover_manages_an_httproute_split, mesh_failover_moves_traffic_by_success_rate_and_back,
    mesh_failover_wan_cut_moves_traffic_to_the_local_secondary,
};
pub use crate::gateway_restart::mesh_multicluster_a_replaced_gateway_costs_seconds_not_a_minute;
pub use crate::helm::mesh_helm_upgrade_reuse_values_keeps_the_mesh_checked;
use crate::kube_util::{self, Finished};
pub use crate::multicluster::{
    mesh_gateway_carries_a_west_call_to_east, mesh_multicluster_check_names_an_unreachable_link,
    mesh_multicluster_check_names_mismatched_anchors,
    mesh_multicluster_quic_and_tcp_both_carry_traffic,
    mesh_multicluster_statefulset_pods_are_reached_by_name,
    mesh_multicluster_wan_cut_keeps_mirrors_and_a_moved_gateway_is_followed,
};
pub use crate::policy::{
    mesh_policy_audit_counts_and_an_opaque_server_refuses_and_closes,
    mesh_policy_the_guides_manifests_are_enforced,
};
use crate::provider::{Cluster, Provider};
pub use crate::routes::mesh_routes_the_guides_httproutes_retry_time_out_and_split;
pub use crate::viz::{
    mesh_viz_sees_a_mirrored_service_across_clusters,
    mesh_viz_stat_and_edges_see_what_the_callers_counted,
};

/// podinfo's own Deployment and Service manifests.
pub const PODINFO: &str = include_str!("../../demo/podinfo.yaml");

pub(crate) const ROLLOUT: Duration = Duration::from_secs(90);
const ONE_SHOT: Duration = Duration::from_secs(60);

/// Deploys podinfo in `namespace` and returns its Ready pods' names.
pub async fn deploy_podinfo(
    client: &kube::Client,
    namespace: &str,
) -> anyhow::Result<BTreeSet<String>> {
    kube_util::apply(client, namespace, PODINFO).await?;
    kube_util::wait_rollout(client, namespace, "podinfo", ROLLOUT).await?;
    Ok(names(
        &kube_util::ready_pods(client, namespace, "app=podinfo").await?,
    ))
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// curl that waits for the Service to be routable (kube-proxy programs a
/// new Service within about a second), as a client with retries would.
pub(crate) fn curl_with_retries(url: &str) -> Vec<String> {
    [
        "curl",
        "-sS",
        "--fail",
        "--retry",
        "10",
        "--retry-all-errors",
        "--retry-delay",
        "1",
        "--max-time",
        "5",
        url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub(crate) async fn curl(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    command: &[String],
) -> anyhow::Result<Finished> {
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    kube_util::run_once(
        client,
        namespace,
        pod,
        "curlimages/curl:8.10.1",
        &command,
        ONE_SHOT,
    )
    .await
}

/// Asks podinfo at `url` from a one-shot curl pod (with retries) and checks
/// that one of `pods` answered.
async fn ask_podinfo(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    url: &str,
    pods: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let answer = curl(client, namespace, pod, &curl_with_retries(url)).await?;
    anyhow::ensure!(
        answer.succeeded,
        "{url} from pod {pod} failed: {}",
        answer.logs
    );
    let host = hostname(&answer.logs)?;
    anyhow::ensure!(
        pods.contains(&host),
        "{url} answered from {host}, not one of {pods:?}"
    );
    Ok(())
}

/// The `hostname` of podinfo's answer in a curl pod's logs (curl's retry
/// messages, on stderr, come first).
fn hostname(logs: &str) -> anyhow::Result<String> {
    let body = logs
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or(logs);
    let json: Value = serde_json::from_str(body.trim())
        .map_err(|e| anyhow::anyhow!("podinfo's answer {body:?} is not JSON: {e}"))?;
    json["hostname"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("podinfo's answer {body:?} has no hostname"))
}

/// From a curl pod in west, podinfo answers by its Service name (cluster
/// DNS and a ClusterIP), short and fully qualified, from one of its own
/// pods; `kubectl logs` shows the same answer.
pub async fn podinfo_answers_by_service_name(p: &impl Provider) -> anyhow::Result<()> {
    let west = p.client(Cluster::West);
    let ns = kube_util::namespace(&west, "e2e-dns").await?;
    let pods = deploy_podinfo(&west, &ns).await?;
    for (pod, url) in [
        ("curl-short", "http://podinfo:9898/".to_owned()),
        (
            "curl-fqdn",
            format!("http://podinfo.{ns}.svc.cluster.local:9898/"),
        ),
    ] {
        ask_podinfo(&west, &ns, pod, &url, &pods).await?;
    }
    let kubectl = tokio::process::Command::new(p.kubectl())
        .arg("--kubeconfig")
        .arg(p.kubeconfig())
        .args([
            "--context",
            &p.context(Cluster::West),
            "-n",
            &ns,
            "logs",
            "curl-short",
        ])
        .output()
        .await?;
    let printed = String::from_utf8_lossy(&kubectl.stdout);
    anyhow::ensure!(
        kubectl.status.success() && hostname(&printed).is_ok_and(|h| pods.contains(&h)),
        "kubectl logs curl-short: {printed}{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );
    kube_util::delete_namespace(&west, &ns).await;
    Ok(())
}

/// Pods in west reach west's pod addresses but not east's: pod networks are
/// not routed between the clusters.
pub async fn pods_cannot_reach_the_other_clusters_pod_ips(p: &impl Provider) -> anyhow::Result<()> {
    let (west, east) = (p.client(Cluster::West), p.client(Cluster::East));
    let (west_ns, east_ns) = (
        kube_util::namespace(&west, "e2e-isolation").await?,
        kube_util::namespace(&east, "e2e-isolation").await?,
    );
    let (west_pods, east_pods) = tokio::try_join!(
        deploy_podinfo(&west, &west_ns),
        deploy_podinfo(&east, &east_ns)
    )?;
    let ip = |client: kube::Client, ns: String, name: String| async move {
        Api::<Pod>::namespaced(client, &ns)
            .get(&name)
            .await?
            .status
            .and_then(|s| s.pod_ip)
            .ok_or_else(|| anyhow::anyhow!("pod {ns}/{name} has no IP"))
    };
    let first = |set: &BTreeSet<String>| set.iter().next().cloned().unwrap_or_default();
    let west_ip = ip(west.clone(), west_ns.clone(), first(&west_pods)).await?;
    let east_ip = ip(east.clone(), east_ns.clone(), first(&east_pods)).await?;
    let script = format!(
        "curl -sS --max-time 5 http://{west_ip}:9898/ && echo && \
         if curl -sS --max-time 3 http://{east_ip}:9898/; then echo REACHED-EAST; fi"
    );
    let probe = curl(
        &west,
        &west_ns,
        "probe",
        &["sh".into(), "-c".into(), script],
    )
    .await?;
    anyhow::ensure!(
        probe.succeeded,
        "a west pod could not reach a west pod at {west_ip}: {}",
        probe.logs
    );
    anyhow::ensure!(
        !probe.logs.contains("REACHED-EAST"),
        "a west pod reached east's pod {east_ip}: {}",
        probe.logs
    );
    kube_util::delete_namespace(&west, &west_ns).await;
    kube_util::delete_namespace(&east, &east_ns).await;
    Ok(())
}

/// Deleting a podinfo pod gets it replaced by its Deployment, and the
/// Service answers from the replacement.
pub async fn deleted_pods_are_replaced(p: &impl Provider) -> anyhow::Result<()> {
    let west = p.client(Cluster::West);
    let ns = kube_util::namespace(&west, "e2e-replace").await?;
    let before = deploy_podinfo(&west, &ns).await?;
    let victim = before.iter().next().cloned().unwrap_or_default();
    Api::<Pod>::namespaced(west.clone(), &ns)
        .delete(&victim, &DeleteParams::default())
        .await?;
    let deadline = tokio::time::Instant::now() + ROLLOUT;
    let after = loop {
        let ready = names(&kube_util::ready_pods(&west, &ns, "app=podinfo").await?);
        if ready.len() == before.len() && !ready.contains(&victim) {
            break ready;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "pod {victim} was not replaced within {ROLLOUT:?}; ready now: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let replacement: Vec<&String> = after.difference(&before).collect();
    anyhow::ensure!(
        replacement.len() == 1,
        "one new pod expected: {before:?} → {after:?}"
    );
    // Ask until the replacement answers (the Service balances over both).
    let script = format!(
        "for i in $(seq 1 40); do curl -sS --max-time 2 http://podinfo:9898/ | grep -q '\"hostname\":\"{}\"' && echo FOUND && exit 0; sleep 0.2; done; exit 1",
        replacement[0]
    );
    let found = curl(&west, &ns, "curl", &["sh".into(), "-c".into(), script]).await?;
    anyhow::ensure!(
        found.succeeded,
        "the Service never answered from the replacement {}: {}",
        replacement[0],
        found.logs
    );
    kube_util::delete_namespace(&west, &ns).await;
    Ok(())
}

/// A west pod reaches east's podinfo through a LoadBalancer address on the
/// WAN; cutting the WAN breaks the call and restoring it heals it.
pub async fn wan_cut_breaks_and_restore_heals_a_load_balancer_call(
    p: &impl Provider,
) -> anyhow::Result<()> {
    let (west, east) = (p.client(Cluster::West), p.client(Cluster::East));
    let (west_ns, east_ns) = (
        kube_util::namespace(&west, "e2e-wan").await?,
        kube_util::namespace(&east, "e2e-wan").await?,
    );
    let east_pods = deploy_podinfo(&east, &east_ns).await?;
    kube_util::apply(
        &east,
        &east_ns,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: podinfo-lb\nspec:\n  type: LoadBalancer\n  \
         selector:\n    app: podinfo\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n",
    )
    .await?;
    let address =
        kube_util::load_balancer_ip(&east, &east_ns, "podinfo-lb", Duration::from_secs(30)).await?;
    let url = format!("http://{address}/");

    ask_podinfo(&west, &west_ns, "before-cut", &url, &east_pods).await?;

    p.cut_wan().await?;
    let during = curl(
        &west,
        &west_ns,
        "during-cut",
        &[
            "curl".into(),
            "-sS".into(),
            "--max-time".into(),
            "3".into(),
            url.clone(),
        ],
    )
    .await;
    p.restore_wan().await?;
    let during = during?;
    anyhow::ensure!(
        !during.succeeded,
        "{url} answered with the WAN cut: {}",
        during.logs
    );

    let after = curl(&west, &west_ns, "after-restore", &curl_with_retries(&url)).await?;
    anyhow::ensure!(
        after.succeeded,
        "{url} did not heal after the WAN was restored: {}",
        after.logs
    );
    kube_util::delete_namespace(&west, &west_ns).await;
    kube_util::delete_namespace(&east, &east_ns).await;
    Ok(())
}

/// A container runs as its `runAsUser`/`runAsGroup` (what lets `mesh-init`
/// tell the proxy's own traffic apart), and can write to an emptyDir.
pub async fn containers_run_as_their_user(p: &impl Provider) -> anyhow::Result<()> {
    let west = p.client(Cluster::West);
    let ns = kube_util::namespace(&west, "e2e-user").await?;
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "whoami"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 1000},
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "id -u; id -g; touch /scratch/x && echo writable"],
                "securityContext": {"runAsUser": 2102, "runAsGroup": 2102},
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }],
        }
    }))?;
    let finished = kube_util::run_pod(&west, &ns, pod, Duration::from_secs(60)).await?;
    anyhow::ensure!(
        finished.succeeded && finished.logs == "2102\n2102\nwritable\n",
        "the container's own securityContext wins over the pod's: {:?}",
        finished.logs
    );
    kube_util::delete_namespace(&west, &ns).await;
    Ok(())
}

/// The identity of the `default` ServiceAccount of `namespace`.
pub(crate) fn default_identity(namespace: &str) -> String {
    format!("default.{namespace}.serviceaccount.identity.linkerd.cluster.local")
}

/// A meshed namespace (`linkerd.io/inject: enabled`) with podinfo and a pod
/// calling it in a loop, one curl per request, printing each status code.
pub(crate) async fn meshed_podinfo_under_load(client: &kube::Client) -> anyhow::Result<String> {
    let ns = kube_util::meshed_namespace(client, "e2e-meshed").await?;
    deploy_podinfo(client, &ns).await?;
    start_curl_load(client, &ns, "load").await?;
    Ok(ns)
}

/// A pod `name` in `ns` calling podinfo in a loop, one curl per request,
/// printing each status code.
pub(crate) async fn start_curl_load(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<()> {
    let load: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "load"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "curlimages/curl:8.10.1",
                "command": ["sh", "-c",
                    "while true; do curl -s -o /dev/null -w '%{http_code}\\n' --max-time 5 http://podinfo:9898/; sleep 0.1; done"],
            }],
        }
    }))?;
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&kube::api::PostParams::default(), &load)
        .await?;
    Ok(())
}

/// The status codes the load pod has printed so far.
pub(crate) async fn load_codes(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<String>> {
    codes_of(client, ns, "load").await
}

/// The status codes load pod `pod` has printed so far.
pub(crate) async fn codes_of(
    client: &kube::Client,
    ns: &str,
    pod: &str,
) -> anyhow::Result<Vec<String>> {
    let logs = kube_util::logs(client, ns, pod, "main").await;
    Ok(logs.lines().map(str::to_owned).collect())
}

/// Waits until the load pod has printed `count` codes.
pub(crate) async fn wait_for_codes(
    client: &kube::Client,
    ns: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + ROLLOUT;
    loop {
        let codes = load_codes(client, ns).await?;
        if codes.len() >= count {
            return Ok(codes);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the load pod in {ns} printed {} status codes in {ROLLOUT:?}",
                codes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The docs walk-through: install the mesh, `mesh check` passes; annotate a
/// namespace and deploy into it, and its pods get proxies; their traffic
/// goes over mTLS with each side's identity in the other's metrics; a meshed
/// Job completes; `mesh check --proxy` passes; a rolling restart of the
/// destination and identity controllers under load fails no request.
pub async fn mesh_meshed_app_talks_over_mtls(p: &impl Provider) -> anyhow::Result<()> {
    let check = crate::mesh::ensure_installed(p, Cluster::West).await?;
    anyhow::ensure!(
        check.stdout.contains("Status check results are ✔"),
        "mesh check: {}",
        check.stdout
    );
    let west = p.client(Cluster::West);
    let ns = meshed_podinfo_under_load(&west).await?;
    let identity = default_identity(&ns);

    let podinfo = kube_util::ready_pods(&west, &ns, "app=podinfo").await?;
    for pod in &podinfo {
        let spec = pod.spec.clone().unwrap_or_default();
        let init: Vec<String> = spec
            .init_containers
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        anyhow::ensure!(
            init.contains(&"linkerd-init".into()) && init.contains(&"linkerd-proxy".into()),
            "podinfo pods are injected: init containers {init:?}"
        );
    }
    let codes = wait_for_codes(&west, &ns, 20).await?;
    anyhow::ensure!(
        codes.iter().all(|c| c == "200"),
        "every request through the mesh succeeds: {codes:?}"
    );
    let mut inbound = 0.0;
    for pod in &podinfo {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let metrics = crate::mesh::proxy_metrics(&west, &ns, &name).await?;
        inbound += crate::mesh::sum(
            &metrics,
            "request_total",
            &[
                ("direction", "inbound"),
                ("tls", "true"),
                ("client_id", &identity),
            ],
        );
    }
    anyhow::ensure!(
        inbound > 0.0,
        "podinfo's proxies count mTLS requests from {identity}"
    );
    let load_metrics = crate::mesh::proxy_metrics(&west, &ns, "load").await?;
    let outbound = crate::mesh::sum(
        &load_metrics,
        "response_total",
        &[
            ("direction", "outbound"),
            ("tls", "true"),
            ("server_id", &identity),
            ("classification", "success"),
        ],
    );
    anyhow::ensure!(
        outbound > 0.0,
        "the client's proxy counts successful mTLS responses from {identity}:\n{}",
        load_metrics
            .lines()
            .filter(|l| l.starts_with("response_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main",
                    "image": "curlimages/curl:8.10.1",
                    "command": ["curl", "-sS", "--fail", "--max-time", "5", "http://podinfo:9898/"],
                }],
            }},
        }
    }))?;
    let jobs = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(west.clone(), &ns);
    jobs.create(&kube::api::PostParams::default(), &job).await?;
    let deadline = tokio::time::Instant::now() + ROLLOUT;
    loop {
        let status = jobs.get("once").await?.status.unwrap_or_default();
        if status.succeeded.unwrap_or(0) >= 1 {
            break;
        }
        anyhow::ensure!(
            status.failed.unwrap_or(0) == 0,
            "the meshed Job failed: {status:?}"
        );
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the meshed Job did not complete within {ROLLOUT:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    crate::mesh::mesh(
        p,
        Cluster::West,
        &["check", "--proxy", "-n", &ns, "--wait", "1m"],
    )
    .await?
    .ok("mesh check --proxy")?;
    // The guides' command, every namespace: the control plane's own pods
    // (labelled with the control plane's namespace, no proxy) are not
    // data-plane pods.
    let everywhere =
        crate::mesh::mesh(p, Cluster::West, &["check", "--proxy", "--wait", "1m"]).await?;
    anyhow::ensure!(
        everywhere.success && everywhere.stdout.contains("✔ data plane proxies are ready"),
        "mesh check --proxy without -n passes on a healthy install:\n{}",
        everywhere.stdout
    );

    let before = load_codes(&west, &ns).await?.len();
    for deployment in ["linkerd-destination", "linkerd-identity"] {
        crate::mesh::kubectl(
            p,
            Cluster::West,
            &[
                "-n",
                "linkerd",
                "rollout",
                "restart",
                &format!("deploy/{deployment}"),
            ],
            None,
        )
        .await?
        .ok("kubectl rollout restart")?;
    }
    for deployment in ["linkerd-destination", "linkerd-identity"] {
        kube_util::wait_rollout(&west, "linkerd", deployment, ROLLOUT).await?;
    }
    let codes = wait_for_codes(&west, &ns, before + 30).await?;
    let failed: Vec<&String> = codes.iter().filter(|c| *c != "200").collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} requests failed around the control plane's restart: {failed:?}",
        failed.len(),
        codes.len()
    );
    kube_util::delete_namespace(&west, &ns).await;
    Ok(())
}

/// The guide's issuer rotation under load: `mesh upgrade
/// --identity-issuer-certificate-file … --identity-issuer-key-file … |
/// kubectl apply -f -` keeps the anchors and every value the install chose;
/// the identity service loads the new issuer from its Secret without a
/// restart; a workload started after it is certified by it and talks to
/// one certified before (one anchor, two issuers); the running load pod's
/// proxy is certified by the new issuer without a restart (it follows its
/// namespace's trust roots copy); not one request fails.
/// Then the cluster's own issuer is put back the same way.
pub async fn mesh_upgrade_rotates_the_issuer_under_load(p: &impl Provider) -> anyhow::Result<()> {
    crate::mesh::ensure_installed(p, Cluster::West).await?;
    let west = p.client(Cluster::West);
    let ns = meshed_podinfo_under_load(&west).await?;
    wait_for_codes(&west, &ns, 20).await?;
    let reloads = || async {
        let mut total = 0.0;
        for pod in kube_util::ready_pods(
            &west,
            "linkerd",
            "linkerd.io/control-plane-component=identity",
        )
        .await?
        {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let metrics = mesh_api::kube_client::pod_get(
                &west,
                "linkerd",
                &name,
                mesh_api::ports::IDENTITY_ADMIN,
                "/metrics",
            )
            .await?;
            total += crate::mesh::sum(&metrics, "identity_issuer_reloads_total", &[]);
        }
        anyhow::Ok(total)
    };
    let before = reloads().await?;
    let said = crate::mesh::upgrade_issuer(p, Cluster::West, Cluster::East).await?;
    anyhow::ensure!(
        said.contains("keeping the trust anchors"),
        "mesh upgrade keeps the cluster's anchors: {said}"
    );
    let deadline = tokio::time::Instant::now() + ROLLOUT;
    while reloads().await.unwrap_or(before) <= before {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the identity service did not load the new issuer within {ROLLOUT:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The running load pod's proxy sees the new issuer in its namespace's
    // trust roots copy and is certified again, without a restart.
    loop {
        let metrics = crate::mesh::proxy_metrics(&west, &ns, "load").await?;
        let seen = crate::mesh::sum(&metrics, "identity_trust_roots_reloads_total", &[]);
        let certified = crate::mesh::sum(&metrics, "identity_cert_refresh_total", &[]);
        if seen >= 1.0 && certified >= 2.0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline + ROLLOUT,
            "the running load pod's proxy did not follow the new issuer (reloads {seen}, certificates {certified})"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let counted = load_codes(&west, &ns).await?.len();
    start_curl_load(&west, &ns, "load-after").await?;
    loop {
        let after = codes_of(&west, &ns, "load-after").await?;
        if after.len() >= 20 {
            anyhow::ensure!(
                after.iter().all(|c| c == "200"),
                "a pod certified by the new issuer calls one certified by the old: {after:?}"
            );
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline + ROLLOUT,
            "the pod started after the rotation printed {} codes",
            after.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let codes = wait_for_codes(&west, &ns, counted + 30).await?;
    let failed: Vec<&String> = codes.iter().filter(|c| *c != "200").collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} requests failed around the issuer rotation: {failed:?}",
        failed.len(),
        codes.len()
    );
    let before = reloads().await?;
    crate::mesh::upgrade_issuer(p, Cluster::West, Cluster::West).await?;
    while reloads().await.unwrap_or(before) <= before {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline + ROLLOUT,
            "the identity service did not load the cluster's own issuer back"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    kube_util::delete_namespace(&west, &ns).await;
    Ok(())
}

/// `mesh check` fails, naming the problem and a fix, when the issuer
/// Secret is gone or the trust anchors are not the ones the issuer and the
/// proxies use; it passes again once they are restored.
pub async fn mesh_check_explains_a_broken_control_plane(p: &impl Provider) -> anyhow::Result<()> {
    crate::mesh::ensure_installed(p, Cluster::West).await?;
    // Before an install, the operator's permissions pass; here mesh is
    // already installed, which --pre reports.
    let pre = crate::mesh::mesh(p, Cluster::West, &["check", "--pre"]).await?;
    anyhow::ensure!(
        !pre.success
            && pre
                .stdout
                .contains("× control plane namespace does not already exist")
            && pre.stdout.contains("✔ can create non-namespaced resources")
            && pre.stdout.contains("✔ can create namespaced resources"),
        "mesh check --pre on an installed cluster:\n{}",
        pre.stdout
    );
    let west = p.client(Cluster::West);
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(west.clone(), "linkerd");
    let mut issuer = secrets.get("linkerd-identity-issuer").await?;
    secrets
        .delete("linkerd-identity-issuer", &DeleteParams::default())
        .await?;
    let broken = crate::mesh::mesh(p, Cluster::West, &["check", "--wait", "10s"]).await?;
    issuer.metadata.resource_version = None;
    issuer.metadata.uid = None;
    issuer.metadata.creation_timestamp = None;
    issuer.metadata.managed_fields = None;
    secrets
        .create(&kube::api::PostParams::default(), &issuer)
        .await?;
    anyhow::ensure!(
        !broken.success
            && broken.stdout.contains("× issuer certificate exists")
            && broken
                .stdout
                .contains("Secret linkerd/linkerd-identity-issuer does not exist"),
        "mesh check names the missing issuer:\n{}",
        broken.stdout
    );

    let original = crate::mesh::replace_trust_bundle(&west, &foreign_anchor()?).await?;
    let broken = crate::mesh::mesh(
        p,
        Cluster::West,
        &["check", "--wait", "10s", "--output", "json"],
    )
    .await?;
    crate::mesh::replace_trust_bundle(&west, &original).await?;
    let (report, failed) = failed_checks(&broken.stdout)?;
    anyhow::ensure!(
        !broken.success
            && report["success"] == false
            && failed.iter().any(|c| {
                c["description"] == "issuer cert is issued by the trust anchor"
                    && c["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("CN=foreign root"))
                    && c["hint"].as_str().is_some_and(|h| !h.is_empty())
            }),
        "mesh check names the foreign anchors: {failed:#?}"
    );

    let healed = crate::mesh::mesh(p, Cluster::West, &["check", "--wait", "1m"]).await?;
    anyhow::ensure!(
        healed.success,
        "restored, mesh check passes:\n{}",
        healed.stdout
    );
    Ok(())
}

/// A namespace annotated for injection after its pods started makes `mesh
/// check` warn, naming its pods and the restart. Re-applying `mesh install`
/// with the same flags (a one-flag change, a GitOps sync) keeps the
/// webhook's certificate, so the restarted Deployment's pods are meshed and
/// `mesh check` passes without naming them any more; a webhook
/// certificate the API server does not trust makes `mesh check` fail with
/// the fix, and once it is restored the injector serves it again without a
/// restart.
pub async fn mesh_install_reapplied_keeps_injection_and_check_names_a_broken_webhook(
    p: &impl Provider,
) -> anyhow::Result<()> {
    crate::mesh::ensure_installed(p, Cluster::West).await?;
    let west = p.client(Cluster::West);
    // Annotated for injection after its pods started, as the guides' users
    // often do: mesh check names the pods left without a proxy.
    let ns = kube_util::namespace(&west, "e2e-reinstall").await?;
    deploy_podinfo(&west, &ns).await?;
    crate::mesh::kubectl(
        p,
        Cluster::West,
        &["annotate", "namespace", &ns, "linkerd.io/inject=enabled"],
        None,
    )
    .await?
    .ok("kubectl annotate namespace")?;
    let late = uninjected_warning(p, &ns).await?;
    anyhow::ensure!(
        late.as_ref()
            .is_some_and(|(result, error, hint)| result == "warning"
                && error.contains(&format!("{ns}: podinfo-"))
                && hint.contains(&format!("kubectl -n {ns} rollout restart deploy"))),
        "mesh check warns about {ns}'s pods started before the annotation, with the restart: {late:?}"
    );

    let said = crate::mesh::reapply_install(p, Cluster::West).await?;
    anyhow::ensure!(
        said.contains("keeping the proxy injector webhook certificate already in the cluster"),
        "mesh install says it keeps the cluster's webhook certificate: {said}"
    );
    crate::mesh::kubectl(
        p,
        Cluster::West,
        &["-n", &ns, "rollout", "restart", "deploy/podinfo"],
        None,
    )
    .await?
    .ok("kubectl rollout restart")?;
    kube_util::wait_rollout(&west, &ns, "podinfo", ROLLOUT).await?;
    let pods = kube_util::ready_pods(&west, &ns, "app=podinfo").await?;
    let unmeshed: Vec<String> = pods
        .iter()
        .filter(|pod| !pod.spec.as_ref().is_some_and(mesh_api::pod::has_proxy))
        .filter_map(|pod| pod.metadata.name.clone())
        .collect();
    anyhow::ensure!(
        unmeshed.is_empty() && !pods.is_empty(),
        "after re-applying mesh install, restarted pods are meshed; these are not: {unmeshed:?}"
    );
    let after = uninjected_warning(p, &ns).await?;
    anyhow::ensure!(
        after.is_none(),
        "after the restart, mesh check no longer names {ns}: {after:?}"
    );

    // A certificate the webhook's caBundle does not vouch for.
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(west.clone(), "linkerd");
    let original = secrets.get("linkerd-proxy-injector-k8s-tls").await?;
    let key = rcgen::KeyPair::generate()?;
    let rogue =
        rcgen::CertificateParams::new(vec!["linkerd-proxy-injector.linkerd.svc".to_owned()])?
            .self_signed(&key)?;
    let broken =
        serde_json::json!({"stringData": {"tls.crt": rogue.pem(), "tls.key": key.serialize_pem()}});
    secrets
        .patch(
            "linkerd-proxy-injector-k8s-tls",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&broken),
        )
        .await?;
    let checked =
        crate::mesh::mesh(p, Cluster::West, &["check", "--wait", "20s", "-o", "json"]).await;
    let restore = serde_json::json!({"data": original.data});
    secrets
        .patch(
            "linkerd-proxy-injector-k8s-tls",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&restore),
        )
        .await?;
    let checked = checked?;
    let (_, failed) = failed_checks(&checked.stdout)?;
    anyhow::ensure!(
        !checked.success
            && failed.iter().any(|c| {
                c["description"] == "proxy-injector webhook has valid cert"
                    && c["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("the API server would not trust the injector"))
                    && c["hint"]
                        .as_str()
                        .is_some_and(|h| h.contains("linkerd-proxy-injector-k8s-tls"))
            }),
        "mesh check names the untrusted webhook certificate and the fix: {failed:#?}"
    );
    // Restored: the injector serves the Secret's certificate again (it
    // reloads changed files; no restart), and new pods are injected.
    let healed = crate::mesh::mesh(p, Cluster::West, &["check", "--wait", "3m"]).await?;
    anyhow::ensure!(
        healed.success,
        "restored, mesh check passes without restarting the injector:\n{}",
        healed.stdout
    );
    kube_util::delete_namespace(&west, &ns).await;
    Ok(())
}

/// `mesh check --output json`'s document and every check in it.
fn all_checks(stdout: &str) -> anyhow::Result<(Value, Vec<Value>)> {
    let report: Value = serde_json::from_str(stdout)
        .map_err(|e| anyhow::anyhow!("mesh check --output json: {e}: {stdout}"))?;
    let checks = report["categories"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["checks"].as_array().into_iter().flatten())
        .cloned()
        .collect();
    Ok((report, checks))
}

/// `mesh check --output json`'s document and the checks in it that failed.
fn failed_checks(stdout: &str) -> anyhow::Result<(Value, Vec<Value>)> {
    let (report, checks) = all_checks(stdout)?;
    Ok((
        report,
        checks
            .into_iter()
            .filter(|c| c["result"] == "error")
            .collect(),
    ))
}

/// After a passing `mesh check` on west, its "pods in injected namespaces
/// run a proxy" result `(result, error, hint)` when it names namespace
/// `ns`, else `None`.
async fn uninjected_warning(
    p: &impl Provider,
    ns: &str,
) -> anyhow::Result<Option<(String, String, String)>> {
    let checked = crate::mesh::mesh(p, Cluster::West, &["check", "--wait", "1m", "-o", "json"])
        .await?
        .ok("mesh check")?;
    let (_, checks) = all_checks(&checked.stdout)?;
    let field = |c: &Value, name: &str| c[name].as_str().unwrap_or_default().to_owned();
    Ok(checks
        .iter()
        .find(|c| c["description"] == "pods in injected namespaces run a proxy")
        .map(|c| (field(c, "result"), field(c, "error"), field(c, "hint")))
        .filter(|(_, error, _)| error.contains(&format!("{ns}:"))))
}

/// A self-signed CA certificate nobody's issuer chains to.
pub(crate) fn foreign_anchor() -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "foreign root");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ok(params.self_signed(&key)?.pem())
}
