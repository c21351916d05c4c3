//! Routing from HTTPRoutes and GRPCRoutes on the local clusters, as
//! Linkerd's guides write them, delivered to proxies by the policy
//! controller's `OutboundPolicies`: the retries-and-timeouts guide's route
//! (written at `gateway.networking.k8s.io/v1beta1`) hides a broken replica
//! and times out a slow request; an HTTPRoute canary splits by its
//! `backendRefs` weights and moves when they change; an edit the
//! controller refuses shows `Accepted=False` on the route and leaves the
//! split as it was; a GRPCRoute retries calls answered `UNAVAILABLE`.

use std::time::Duration;

use crate::kube_util;
use crate::mesh;
use crate::multicluster::wait_for;
use crate::provider::{Cluster, Provider};
use crate::scenarios::{PODINFO, ROLLOUT, curl, deploy_podinfo};

/// The guide's route, with its retry and timeout annotations, for
/// podinfo's port.
fn guide_route(ns: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata:
  name: podinfo-route
  namespace: {ns}
  annotations:
    retry.linkerd.io/http: 5xx
    retry.linkerd.io/limit: \"2\"
    timeout.linkerd.io/request: 2s
spec:
  parentRefs:
  - {{name: podinfo, kind: Service, group: core, port: 9898}}
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
"
    )
}

/// A canary route: `primary`/`canary` of podinfo's requests to podinfo
/// and podinfo-canary, retrying `500-504` (a range, as a guide writes it).
fn canary_route(ns: &str, primary: u32, canary: u32) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: podinfo-route
  namespace: {ns}
  annotations:
    retry.linkerd.io/http: 500-504
spec:
  parentRefs:
  - {{name: podinfo, kind: Service, group: core, port: 9898}}
  rules:
  - backendRefs:
    - {{name: podinfo, port: 9898, weight: {primary}}}
    - {{name: podinfo-canary, port: 9898, weight: {canary}}}
"
    )
}

/// A GRPCRoute for podinfo's health checks that retries `UNAVAILABLE`
/// (podinfo serves gRPC on its HTTP port), written at `v1alpha2`.
fn grpc_route(ns: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2
kind: GRPCRoute
metadata:
  name: podinfo-grpc
  namespace: {ns}
  annotations:
    retry.linkerd.io/grpc: unavailable
    retry.linkerd.io/limit: \"2\"
spec:
  parentRefs:
  - {{name: podinfo, kind: Service, group: core, port: 9898}}
  rules:
  - matches: [{{method: {{service: grpc.health.v1.Health, method: Check}}}}]
    backendRefs: [{{name: podinfo, port: 9898}}]
"
    )
}

/// Our controller's `Accepted` condition on a route, as `kubectl get -o
/// yaml` shows it: (status, reason, message).
async fn accepted_condition(
    client: &kube::Client,
    ns: &str,
    resource: &str,
    name: &str,
) -> Option<(String, String, String)> {
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let kind = if resource == "grpcroutes" {
        "GRPCRoute"
    } else {
        "HTTPRoute"
    };
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind);
    let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, resource),
    );
    let object = api.get(name).await.ok()?;
    let parents = object.data.pointer("/status/parents")?.as_array()?.clone();
    parents
        .iter()
        .filter(|p| p["controllerName"] == "linkerd.io/policy-controller")
        .flat_map(|p| p["conditions"].as_array().cloned().unwrap_or_default())
        .find(|c| c["type"] == "Accepted")
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
            (text("status"), text("reason"), text("message"))
        })
}

/// The answers of load pod `pod` after its first `after` lines, once
/// `count` are in: (answered by a canary pod, all answered, failed).
async fn tally(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    after: usize,
    count: u64,
    canary_prefix: &str,
) -> anyhow::Result<(u64, u64, u64, usize)> {
    let result = std::sync::Mutex::new((0, 0, 0, after));
    wait_for(
        &format!("{count} answers of the load"),
        ROLLOUT * 2,
        || async {
            let seconds = mesh_podinfo::drive::load_seconds(client, ns, pod, "main").await;
            let recent = seconds.iter().skip(after);
            let (mut canary, mut ok, mut failed) = (0, 0, 0);
            for second in recent {
                ok += second.ok;
                failed += second.failed;
                canary += second
                    .answered_by
                    .iter()
                    .filter(|(pod, _)| pod.starts_with(canary_prefix))
                    .map(|(_, n)| n)
                    .sum::<u64>();
            }
            *result.lock().expect("tally") = (canary, ok, failed, seconds.len());
            Ok(ok + failed >= count)
        },
    )
    .await?;
    Ok(result.into_inner().expect("tally"))
}

/// Makes podinfo pod `pod` answer `share` of its requests with 500.
async fn set_errors(client: &kube::Client, ns: &str, pod: &str, share: f64) -> anyhow::Result<()> {
    mesh_api::kube_client::pod_request(
        client,
        http::Method::POST,
        ns,
        pod,
        mesh_podinfo::drive::PORT,
        &format!("/chaos/errors/{share}"),
    )
    .await?;
    Ok(())
}

/// See the module's documentation.
pub async fn mesh_routes_the_guides_httproutes_retry_time_out_and_split(
    p: &impl Provider,
) -> anyhow::Result<()> {
    mesh::ensure_installed(p, Cluster::West).await?;
    let west = p.client(Cluster::West);
    let ns = kube_util::meshed_namespace(&west, "e2e-routes").await?;
    let pods = deploy_podinfo(&west, &ns).await?;
    let canary = PODINFO
        .replace("app: podinfo", "app: podinfo-canary")
        .replace("name: podinfo", "name: podinfo-canary");
    kube_util::apply(&west, &ns, &canary).await?;
    kube_util::wait_rollout(&west, &ns, "podinfo-canary", ROLLOUT).await?;
    kube_util::apply(&west, &ns, &guide_route(&ns)).await?;

    // One of podinfo's two replicas fails every request: the route's
    // retries (and failure accrual) hide it.
    let broken = pods
        .iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no podinfo pod"))?;
    set_errors(&west, &ns, broken, 1.0).await?;
    let url = format!("http://podinfo.{ns}.svc.cluster.local:9898/");
    kube_util::start_load(&west, &ns, &url, 20).await?;
    // The route reaches the load's proxy within seconds; count after that.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let start = mesh_podinfo::drive::load_seconds(&west, &ns, "load", "main")
        .await
        .len();
    let (_, ok, failed, _) = tally(&west, &ns, "load", start, 400, "podinfo-canary").await?;
    anyhow::ensure!(
        failed * 100 <= ok + failed,
        "with one replica failing, the route's retries answer at least 99 % of GETs ({ok} answered, {failed} failed)"
    );

    // The route's 2 s request timeout.
    let slow = curl(
        &west,
        &ns,
        "slow",
        &[
            "curl".to_owned(),
            "-sS".to_owned(),
            "-o".to_owned(),
            "/dev/null".to_owned(),
            "-w".to_owned(),
            "%{http_code} %{time_total}".to_owned(),
            format!("{url}delay/5"),
        ],
    )
    .await?;
    let mut words = slow.logs.split_whitespace();
    let (code, took) = (
        words.next(),
        words.next().and_then(|t| t.parse::<f64>().ok()),
    );
    anyhow::ensure!(
        code == Some("504") && took.is_some_and(|t| t < 4.0),
        "/delay/5 answers 504 after the route's 2 s timeout: {}",
        slow.logs
    );

    // The canary: 90/10 by weight over 2,000 requests, then 50/50.
    set_errors(&west, &ns, broken, 0.0).await?;
    kube_util::apply(&west, &ns, &canary_route(&ns, 90, 10)).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let start = mesh_podinfo::drive::load_seconds(&west, &ns, "load", "main")
        .await
        .len();
    // What the controller serves, as `mesh diagnostics outbound` shows it.
    let served = mesh::mesh(
        p,
        Cluster::West,
        &[
            "diagnostics",
            "outbound",
            "-n",
            &ns,
            "podinfo:9898",
            "-o",
            "json",
        ],
    )
    .await?;
    let served: serde_json::Value = serde_json::from_str(&served.stdout).map_err(|e| {
        anyhow::anyhow!("mesh diagnostics outbound -o json: {e}: {}", served.stdout)
    })?;
    let weights: Vec<u64> = served["routes"][0]["rules"][0]["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["weight"].as_u64())
        .collect();
    anyhow::ensure!(
        weights == [90, 10],
        "mesh diagnostics outbound shows the route's weights: {served}"
    );
    let (to_canary, ok, failed, end) =
        tally(&west, &ns, "load", start, 2000, "podinfo-canary").await?;
    let share = to_canary as f64 / ok.max(1) as f64;
    anyhow::ensure!(
        (0.07..=0.13).contains(&share) && failed == 0,
        "the canary takes 10 % ± 3 % ({share:.3} of {ok}, {failed} failed)"
    );
    kube_util::apply(&west, &ns, &canary_route(&ns, 50, 50)).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (to_canary, ok, _, end) = tally(&west, &ns, "load", end + 5, 400, "podinfo-canary").await?;
    let share = to_canary as f64 / ok.max(1) as f64;
    anyhow::ensure!(
        (0.35..=0.65).contains(&share),
        "the canary's share moves with its weight ({share:.3} of {ok})"
    );

    // An edit the controller refuses (a URLRewrite filter, which the API
    // server accepts): the route says why, and the 50/50 split stays.
    let refused = canary_route(&ns, 0, 100).replace(
        "  - backendRefs:",
        "  - filters: [{type: URLRewrite, urlRewrite: {hostname: elsewhere}}]\n    backendRefs:",
    );
    kube_util::apply(&west, &ns, &refused).await?;
    let message = std::sync::Mutex::new(String::new());
    wait_for(
        "the refused route's Accepted=False condition",
        ROLLOUT,
        || async {
            let accepted = accepted_condition(&west, &ns, "httproutes", "podinfo-route").await;
            let done = accepted.as_ref().is_some_and(|(status, reason, _)| {
                status == "False" && reason == "UnsupportedValue"
            });
            *message.lock().expect("message") = format!("{accepted:?}");
            Ok(done)
        },
    )
    .await?;
    let message = message.into_inner().expect("message");
    anyhow::ensure!(
        message.contains("spec.rules[0].filters[0].type"),
        "the condition names the field: {message}"
    );
    let (to_canary, ok, _, _) = tally(&west, &ns, "load", end + 2, 300, "podinfo-canary").await?;
    let share = to_canary as f64 / ok.max(1) as f64;
    anyhow::ensure!(
        (0.35..=0.65).contains(&share),
        "the refused edit (all to the canary) leaves the 50/50 split in force ({share:.3} of {ok})"
    );

    // A GRPCRoute retrying UNAVAILABLE: one podinfo replica fails every
    // call, the other none; the route's retries (and failure accrual)
    // answer at least 99 % of the health checks.
    kube_util::apply(&west, &ns, &grpc_route(&ns)).await?;
    wait_for(
        "the GRPCRoute's Accepted=True condition",
        ROLLOUT,
        || async {
            let accepted = accepted_condition(&west, &ns, "grpcroutes", "podinfo-grpc").await;
            Ok(accepted.is_some_and(|(status, _, _)| status == "True"))
        },
    )
    .await?;
    set_errors(&west, &ns, broken, 1.0).await?;
    kube_util::start_load_pod(&west, &ns, "grpc-load", &["--grpc"], &url, 20).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let start = mesh_podinfo::drive::load_seconds(&west, &ns, "grpc-load", "main")
        .await
        .len();
    let (_, ok, failed, _) = tally(&west, &ns, "grpc-load", start, 400, "podinfo-canary").await?;
    anyhow::ensure!(
        failed * 100 <= ok + failed,
        "with one replica answering UNAVAILABLE, the GRPCRoute's retries answer at least 99 % of calls ({ok} answered, {failed} failed)"
    );
    kube_util::delete_namespace(&west, &ns).await;
    Ok(())
}
