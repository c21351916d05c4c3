//! viz on the local clusters: `mesh viz install` applied to west (scraping
//! every 2 s), `mesh viz check` and `mesh check` passing on Prometheus's
//! own word, then a meshed client Deployment and an unmeshed caller
//! calling podinfo at known rates: `mesh viz stat` shows podinfo meshed
//! with the rate the callers themselves counted (within 10 %), `--from`
//! narrows it to the client's share, `mesh viz edges` shows the client's
//! edge secured and the unmeshed caller's not; a rogue pod that labels
//! itself as podinfo's and serves a metrics page claiming 500 failures a
//! second is left out, and stat says so; `mesh viz routes` lists
//! podinfo's ServiceProfile routes with the client's rate on `GET /`;
//! `stat ts` shows a 90/10 canary split's leaves carrying the client's
//! rate; a second client calls the Service podinfo-routed, whose
//! HTTPRoute `viz routes` and `viz stat httproute` report at the rate
//! that client counted; then `mesh viz uninstall` removes it all.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use mesh_podinfo::report::LoadSecond;

use crate::kube_util;
use crate::provider::{Cluster, Provider};
use crate::scenarios::deploy_podinfo;

/// The window `stat` is asked about.
const WINDOW_SECONDS: u64 = 30;

/// The scenario.
pub async fn mesh_viz_stat_and_edges_see_what_the_callers_counted(
    p: &impl Provider,
) -> anyhow::Result<()> {
    crate::mesh::ensure_installed(p, Cluster::West).await?;
    install_viz(p, Cluster::West).await?;
    let west = p.client(Cluster::West);
    let result = scenario(p, &west).await;
    uninstall_viz(p, Cluster::West).await?;
    result
}

/// `mesh viz install | kubectl apply -f -`, scraping every 2 s.
pub(crate) async fn install_viz(p: &impl Provider, cluster: Cluster) -> anyhow::Result<()> {
    crate::mesh::apply_mesh(p, cluster, &["viz", "install", "--scrape-interval", "2s"]).await?;
    Ok(())
}

/// `mesh viz uninstall | kubectl delete -f -`, waiting until it is gone
/// (the next scenario installs it again).
pub(crate) async fn uninstall_viz(p: &impl Provider, cluster: Cluster) -> anyhow::Result<()> {
    let removed = crate::mesh::mesh(p, cluster, &["viz", "uninstall"])
        .await?
        .ok("mesh viz uninstall")?;
    crate::mesh::kubectl(
        p,
        cluster,
        &["delete", "--ignore-not-found", "--timeout=120s", "-f", "-"],
        Some(&removed.stdout),
    )
    .await?
    .ok("kubectl delete -f - (viz)")?;
    Ok(())
}

/// viz across the link: west's client calls `podinfo-east` (east's podinfo
/// through east's gateway). From west, `stat svc/podinfo-east` shows the
/// rate the client counted; `stat deploy --contexts west,east` is one
/// table with a CLUSTER column in which east's podinfo served that rate;
/// east's `edges` names the west caller by the identity it presented
/// through the gateway, secured.
pub async fn mesh_viz_sees_a_mirrored_service_across_clusters(
    p: &impl Provider,
) -> anyhow::Result<()> {
    crate::multicluster::ensure_linked(p).await?;
    install_viz(p, Cluster::West).await?;
    install_viz(p, Cluster::East).await?;
    let exported = crate::multicluster::Exported::start(p, "e2e-vizmc").await?;
    let ns = exported.ns.clone();
    let result = across(p, &ns).await;
    if result.is_ok() {
        exported.remove(p).await;
    }
    uninstall_viz(p, Cluster::West).await?;
    uninstall_viz(p, Cluster::East).await?;
    result
}

async fn across(p: &impl Provider, ns: &str) -> anyhow::Result<()> {
    let west = p.client(Cluster::West);
    kube_util::apply(
        &west,
        ns,
        &client_deployment("client", 10, "http://podinfo-east:9898/"),
    )
    .await?;
    kube_util::wait_rollout(&west, ns, "client", crate::scenarios::ROLLOUT).await?;
    let client_pod = kube_util::ready_pods(&west, ns, "app=client")
        .await?
        .first()
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| anyhow::anyhow!("no client pod"))?;
    tokio::time::sleep(Duration::from_secs(WINDOW_SECONDS + 5)).await;
    let window = format!("{WINDOW_SECONDS}s");
    let (mirrored, _) = stat_json(
        p,
        &["viz", "stat", "svc/podinfo-east", "-n", ns, "-t", &window],
    )
    .await?;
    let counted = counted_rate(&west, ns, &client_pod).await?;
    let rps = row(&mirrored, "podinfo-east")?["rps"]
        .as_f64()
        .unwrap_or_default();
    within_ten_percent(
        "podinfo-east's RPS as west's clients saw it",
        rps,
        counted.0,
    )?;

    let (both, _) = stat_json(
        p,
        &[
            "viz",
            "stat",
            "deploy",
            "-n",
            ns,
            "-t",
            &window,
            "--contexts",
            "west,east",
        ],
    )
    .await?;
    let east_podinfo = both
        .iter()
        .find(|r| r["cluster"] == "east" && r["name"] == "podinfo")
        .ok_or_else(|| anyhow::anyhow!("no east podinfo row in {both:#?}"))?;
    let west_client = both
        .iter()
        .find(|r| r["cluster"] == "west" && r["name"] == "client")
        .ok_or_else(|| anyhow::anyhow!("no west client row in {both:#?}"))?;
    anyhow::ensure!(
        west_client["meshed"] == serde_json::json!([1, 1]),
        "west's client is meshed: {west_client}"
    );
    let served = east_podinfo["rps"].as_f64().unwrap_or_default();
    let counted = counted_rate(&west, ns, &client_pod).await?;
    within_ten_percent("east podinfo's RPS from across the link", served, counted.0)?;

    let edges = crate::mesh::mesh(
        p,
        Cluster::East,
        &["viz", "edges", "deploy", "-n", ns, "-o", "json"],
    )
    .await?
    .ok("mesh --context east viz edges")?;
    let edges: Vec<serde_json::Value> = serde_json::from_str(&edges.stdout)?;
    let identity = crate::scenarios::default_identity(ns);
    let remote = edges
        .iter()
        .find(|e| e["dst"] == "podinfo" && e["client_id"] == identity.as_str())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "east's edges name the west caller by its identity {identity}: {edges:#?}"
            )
        })?;
    anyhow::ensure!(
        remote["secured"] == true && remote["src_namespace"] == ns,
        "the west caller's edge into east's podinfo is secured: {remote}"
    );
    Ok(())
}

async fn scenario(p: &impl Provider, west: &kube::Client) -> anyhow::Result<()> {
    let check = crate::mesh::mesh(p, Cluster::West, &["viz", "check", "--wait", "2m"]).await?;
    anyhow::ensure!(
        check.success && check.stdout.contains("prometheus scrapes every meshed pod"),
        "mesh viz check passes once Prometheus runs:\n{}\n{}",
        check.stdout,
        check.stderr
    );
    let ns = kube_util::meshed_namespace(west, "e2e-viz").await?;
    deploy_podinfo(west, &ns).await?;
    kube_util::apply(west, &ns, &service_profile(&ns)).await?;
    kube_util::apply(west, &ns, CANARY_SPLIT).await?;
    kube_util::apply(
        west,
        &ns,
        &client_deployment("client", 20, "http://podinfo:9898/"),
    )
    .await?;
    // A second way in: the Service podinfo-routed, whose requests an
    // HTTPRoute routes, called by its own client.
    kube_util::apply(west, &ns, &routed_service(&ns)).await?;
    kube_util::apply(
        west,
        &ns,
        &client_deployment("client-routed", 10, "http://podinfo-routed:9898/"),
    )
    .await?;
    kube_util::wait_rollout(west, &ns, "client", crate::scenarios::ROLLOUT).await?;
    kube_util::wait_rollout(west, &ns, "client-routed", crate::scenarios::ROLLOUT).await?;
    let pods = Api::<Pod>::namespaced(west.clone(), &ns);
    let stranger: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "stranger", "annotations": {"linkerd.io/inject": "disabled"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "ghcr.io/stefanprodan/podinfo:6.9.2",
                "command": ["load", "--rps", "5", "http://podinfo:9898/"],
            }],
        }
    }))?;
    let stranger = pods
        .create(&kube::api::PostParams::default(), &stranger)
        .await?;
    anyhow::ensure!(
        !stranger.spec.as_ref().is_some_and(mesh_api::pod::has_proxy),
        "the stranger pod (inject: disabled) has no proxy"
    );
    // A rogue pod that passes for one of podinfo's: Linkerd's scrape rules
    // keep it (a `linkerd-proxy` container with a `linkerd-admin` port, the
    // control plane's label), its own `linkerd.io/proxy-deployment` label
    // becomes `deployment="podinfo"`, and its page claims 500 failed
    // requests a second. stat must leave it out and say so.
    pods.create(&kube::api::PostParams::default(), &rogue_pod()?)
        .await?;
    let client_pod = kube_util::ready_pods(west, &ns, "app=client")
        .await?
        .first()
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| anyhow::anyhow!("no client pod"))?;
    let routed_pod = kube_util::ready_pods(west, &ns, "app=client-routed")
        .await?
        .first()
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| anyhow::anyhow!("no client-routed pod"))?;
    // The window must be full of steady load, and Prometheus must have
    // scraped the new pods (mesh check says so, by Prometheus's word).
    tokio::time::sleep(Duration::from_secs(WINDOW_SECONDS + 5)).await;
    crate::mesh::mesh(p, Cluster::West, &["check", "--wait", "1m"])
        .await?
        .ok("mesh check (with viz's category)")?;

    let window = format!("{WINDOW_SECONDS}s");
    let (stat, warnings) =
        stat_json(p, &["viz", "stat", "deploy", "-n", &ns, "-t", &window]).await?;
    let client_rate = counted_rate(west, &ns, &client_pod).await?;
    let stranger_rate = counted_rate(west, &ns, "stranger").await?;
    let routed_rate = counted_rate(west, &ns, &routed_pod).await?;
    let podinfo = row(&stat, "podinfo")?;
    anyhow::ensure!(
        podinfo["meshed"] == serde_json::json!([2, 2]),
        "podinfo is meshed 2/2: {podinfo}"
    );
    let rps = podinfo["rps"].as_f64().unwrap_or_default();
    let counted = client_rate.0 + stranger_rate.0 + routed_rate.0;
    within_ten_percent("podinfo's RPS", rps, counted)?;
    let success = podinfo["success"].as_f64().unwrap_or_default();
    let counted_success = (client_rate.1 + stranger_rate.1 + routed_rate.1) / counted;
    anyhow::ensure!(
        (success - counted_success).abs() <= 0.1,
        "podinfo's SUCCESS {success} is within 10 points of what the callers counted ({counted_success})"
    );
    anyhow::ensure!(
        podinfo["latency_ms_p50"].as_f64().is_some(),
        "podinfo has a p50 latency: {podinfo}"
    );
    anyhow::ensure!(
        warnings.contains(&format!("left out pod {ns}/rogue")),
        "stat says it left the rogue pod's series out:\n{warnings}"
    );
    // What podinfo served, per Server and route: no Server selects it, so
    // everything is the default policy's [DEFAULT] route, at its callers'
    // rate (the inbound series carry Linkerd's policy labels); the rogue
    // pod's made-up failures are left out here too.
    let served = routes_json(p, &ns, "deploy/podinfo").await?;
    anyhow::ensure!(
        !served.is_empty()
            && served.iter().all(|r| r["route"] == "[DEFAULT]"
                && r["service"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("default/"))),
        "podinfo served only its default policy's [DEFAULT] route: {served:#?}"
    );
    let served_rps: f64 = served.iter().filter_map(|r| r["rps"].as_f64()).sum();
    within_ten_percent(
        "what podinfo served (viz routes deploy/podinfo)",
        served_rps,
        counted,
    )?;
    let (from, _) = stat_json(
        p,
        &[
            "viz",
            "stat",
            "deploy/podinfo",
            "-n",
            &ns,
            "--from",
            "deploy/client",
            "-t",
            &window,
        ],
    )
    .await?;
    let from_rps = row(&from, "podinfo")?["rps"].as_f64().unwrap_or_default();
    let client_now = counted_rate(west, &ns, &client_pod).await?;
    within_ten_percent("podinfo's RPS --from deploy/client", from_rps, client_now.0)?;

    let (splits, _) = stat_json(p, &["viz", "stat", "ts", "-n", &ns, "-t", &window]).await?;
    let leaves: Vec<(&str, u64)> = splits
        .iter()
        .map(|r| {
            (
                r["leaf"].as_str().unwrap_or_default(),
                r["weight"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    anyhow::ensure!(
        leaves == [("podinfo", 90), ("podinfo-canary", 10)],
        "stat ts lists the split's leaves with their weights: {splits:#?}"
    );
    let through_split: f64 = splits.iter().filter_map(|r| r["rps"].as_f64()).sum();
    let client_now = counted_rate(west, &ns, &client_pod).await?;
    within_ten_percent("the split's leaves' RPS", through_split, client_now.0)?;
    anyhow::ensure!(
        splits
            .iter()
            .all(|r| r["rps"].as_f64().is_some_and(|rps| rps > 0.0)),
        "both leaves carried traffic: {splits:#?}"
    );

    let routes = routes_json(p, &ns, "svc/podinfo").await?;
    let names: Vec<&str> = routes.iter().filter_map(|r| r["route"].as_str()).collect();
    anyhow::ensure!(
        names == ["GET /", "GET /version", "[DEFAULT]"],
        "viz routes lists the ServiceProfile's routes in order, then [DEFAULT]: {names:?}"
    );
    let root_rps = routes[0]["rps"].as_f64().unwrap_or_default();
    let client_then = counted_rate(west, &ns, &client_pod).await?;
    within_ten_percent("GET /'s RPS", root_rps, client_then.0)?;
    anyhow::ensure!(
        routes[1]["rps"].is_null(),
        "nobody calls GET /version: {}",
        routes[1]
    );

    http_route_figures(p, west, &ns, &routed_pod).await?;

    let edges = crate::mesh::mesh(
        p,
        Cluster::West,
        &["viz", "edges", "deploy", "-n", &ns, "-o", "json"],
    )
    .await?
    .ok("mesh viz edges")?;
    let edges: Vec<serde_json::Value> = serde_json::from_str(&edges.stdout)?;
    let edge = |src: &str| {
        edges
            .iter()
            .find(|e| e["src"] == src && e["dst"] == "podinfo")
            .ok_or_else(|| anyhow::anyhow!("no {src} → podinfo edge in {edges:#?}"))
    };
    let client_edge = edge("client")?;
    anyhow::ensure!(
        client_edge["secured"] == true
            && client_edge["client_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("default.{ns}.serviceaccount.identity."))),
        "the client → podinfo edge is secured with the client's identity: {client_edge}"
    );
    let unmeshed = edge("(unmeshed)")?;
    anyhow::ensure!(
        unmeshed["secured"] == false,
        "the unmeshed caller's edge is not secured: {unmeshed}"
    );
    let table = crate::mesh::mesh(p, Cluster::West, &["viz", "edges", "deploy", "-n", &ns])
        .await?
        .ok("mesh viz edges (table)")?;
    let secured_line = table
        .stdout
        .lines()
        .find(|l| l.starts_with("client"))
        .unwrap_or_default();
    anyhow::ensure!(
        secured_line.trim_end().ends_with('√'),
        "the table marks the client's edge √:\n{}",
        table.stdout
    );
    tap(p, west, &ns).await?;
    crate::viz_dashboard::dashboard(p, &ns).await?;
    kube_util::delete_namespace(west, &ns).await;
    Ok(())
}

/// `mesh viz tap` through the API server: podinfo's proxies report the
/// client's requests with `tls=true` and the unmeshed caller's with
/// `tls=no_tls_from_remote`; the client's proxy reports its requests to
/// podinfo (`--to`) as outbound over mutual TLS; a ServiceAccount without
/// tap's RBAC is refused.
async fn tap(p: &impl Provider, west: &kube::Client, ns: &str) -> anyhow::Result<()> {
    kube_util::wait_rollout(
        west,
        mesh_api::labels::VIZ_NAMESPACE,
        "tap",
        crate::scenarios::ROLLOUT,
    )
    .await?;
    // The APIService becomes available once the API server reaches tap.
    let mut tapped = None;
    for _ in 0..30 {
        let ran = crate::mesh::mesh_for(
            p,
            Cluster::West,
            &["viz", "tap", "deploy/podinfo", "-n", ns, "-o", "wide"],
            Duration::from_secs(8),
        )
        .await?;
        if ran.stdout.contains("req id=") {
            tapped = Some(ran);
            break;
        }
        eprintln!("viz tap not answering yet: {}", ran.stderr.trim());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let tapped = tapped
        .ok_or_else(|| anyhow::anyhow!("viz tap deploy/podinfo printed no request in a minute"))?;
    let lines: Vec<&str> = tapped.stdout.lines().collect();
    let meshed = lines
        .iter()
        .find(|l| l.starts_with("req id=") && l.contains("proxy=in ") && l.contains(" tls=true "));
    anyhow::ensure!(
        meshed.is_some_and(|l| l.contains(":method=GET")
            && l.contains(":path=/")
            && l.contains(" src_pod=client-")
            && l.contains(&format!(" dst_namespace={ns}"))),
        "the client's requests are tapped with tls=true, both pods named:\n{}",
        tapped.stdout
    );
    anyhow::ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("req id=") && l.contains(" tls=no_tls_from_remote ")),
        "the unmeshed caller's requests are tapped with tls=no_tls_from_remote:\n{}",
        tapped.stdout
    );
    anyhow::ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("rsp id=") && l.contains(":status=200"))
            && lines
                .iter()
                .any(|l| l.starts_with("end id=") && l.contains("response-length=")),
        "responses and their ends are tapped:\n{}",
        tapped.stdout
    );
    let outbound = crate::mesh::mesh_for(
        p,
        Cluster::West,
        &[
            "viz",
            "tap",
            "deploy/client",
            "-n",
            ns,
            "--to",
            "deploy/podinfo",
            "-o",
            "json",
        ],
        Duration::from_secs(8),
    )
    .await?;
    anyhow::ensure!(
        outbound.stdout.contains("\"proxyDirection\": \"OUTBOUND\"")
            && outbound.stdout.contains("\"tls\": \"true\"")
            && !outbound.stdout.contains("\"INBOUND\""),
        "the client's proxy reports its requests to podinfo, over mutual TLS:\n{}\n{}",
        outbound.stdout,
        outbound.stderr
    );
    // The attack: a workload's ServiceAccount, without tap's RBAC, asks for
    // podinfo's traffic through the API server.
    kube_util::apply(
        west,
        ns,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: nosy\n",
    )
    .await?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(p.kubeconfig())?,
        &kube::config::KubeConfigOptions {
            context: Some(p.context(Cluster::West)),
            ..Default::default()
        },
    )
    .await?;
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:nosy"));
    let nosy = kube::Client::try_from(config)?;
    let request = mesh_viz::tap_api::TapByResourceRequest {
        target: Some(mesh_viz::tap_api::ResourceSelection {
            resource: Some(mesh_viz::tap_api::Resource {
                namespace: ns.to_owned(),
                r#type: "deployment".into(),
                name: "podinfo".into(),
            }),
            label_selector: String::new(),
        }),
        r#match: None,
        max_rps: 1.0,
    };
    let path =
        format!("/apis/tap.linkerd.io/v1alpha1/watch/namespaces/{ns}/deployments/podinfo/tap");
    let refused = nosy
        .send(
            http::Request::post(path)
                .body(prost::Message::encode_to_vec(&request))?
                .map(kube::client::Body::from),
        )
        .await?;
    let status = refused.status();
    let body = http_body_util::BodyExt::collect(refused.into_body())
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    // The API server refuses it before tap is asked (tap asks again with
    // a SubjectAccessReview, in case an aggregation layer lets it through).
    anyhow::ensure!(
        status == http::StatusCode::FORBIDDEN
            && body.contains(
                r#"cannot watch resource \"deployments/tap\" in API group \"tap.linkerd.io\""#
            ),
        "a ServiceAccount without tap's RBAC is refused: {status} {body}"
    );
    Ok(())
}

/// A canary Service over podinfo's own pods and a TrafficSplit sending 10 %
/// of podinfo's traffic through it.
const CANARY_SPLIT: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: podinfo-canary
spec:
  selector: {app: podinfo}
  ports:
  - {name: http, port: 9898, targetPort: http}
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  name: podinfo-split
spec:
  service: podinfo
  backends:
  - {service: podinfo, weight: 90}
  - {service: podinfo-canary, weight: 10}
"#;

/// podinfo's ServiceProfile: two routes, one of them never called.
fn service_profile(ns: &str) -> String {
    format!(
        r#"apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: podinfo.{ns}.svc.cluster.local
spec:
  routes:
  - name: GET /
    condition: {{method: GET, pathRegex: /}}
  - name: GET /version
    condition: {{method: GET, pathRegex: /version}}
"#
    )
}

/// The Service podinfo-routed (podinfo's pods) and the HTTPRoute
/// podinfo-root that routes every request to it.
fn routed_service(ns: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: podinfo-routed
spec:
  selector: {{app: podinfo}}
  ports:
  - {{name: http, port: 9898, targetPort: http}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: podinfo-root
  namespace: {ns}
spec:
  parentRefs:
  - {{name: podinfo-routed, kind: Service, group: core, port: 9898}}
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
"#
    )
}

/// What the HTTPRoute podinfo-root carried, as `viz routes` and `viz stat
/// httproute` report it: its own row (then an idle `[DEFAULT]`), at the
/// rate client-routed counted, from podinfo-routed's clients' side.
async fn http_route_figures(
    p: &impl Provider,
    west: &kube::Client,
    ns: &str,
    routed_pod: &str,
) -> anyhow::Result<()> {
    let window = format!("{WINDOW_SECONDS}s");
    let routes = routes_json(p, ns, "svc/podinfo-routed").await?;
    let names: Vec<&str> = routes.iter().filter_map(|r| r["route"].as_str()).collect();
    anyhow::ensure!(
        names == ["podinfo-root", "[DEFAULT]"],
        "viz routes lists the HTTPRoute, then [DEFAULT]: {names:?}"
    );
    let counted = counted_rate(west, ns, routed_pod).await?;
    within_ten_percent(
        "podinfo-root's RPS (viz routes)",
        routes[0]["rps"].as_f64().unwrap_or_default(),
        counted.0,
    )?;
    let (stat, _) = stat_json(p, &["viz", "stat", "httproute", "-n", ns, "-t", &window]).await?;
    let route = row(&stat, "podinfo-root")?;
    anyhow::ensure!(
        route["parent"] == "svc/podinfo-routed"
            && route["direction"] == "outbound"
            && route["group"] == "gateway.networking.k8s.io",
        "stat httproute names the route's Service parent: {route}"
    );
    within_ten_percent(
        "podinfo-root's RPS (viz stat httproute)",
        route["rps"].as_f64().unwrap_or_default(),
        counted.0,
    )?;
    anyhow::ensure!(
        route["success"].as_f64().is_some_and(|s| s > 0.9)
            && route["latency_ms_p50"].as_f64().is_some(),
        "the route's success rate and latency are there: {route}"
    );
    Ok(())
}

/// A Deployment `name` running `mesh-podinfo load` at `rps` against `url`.
fn client_deployment(name: &str, rps: u32, url: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: ghcr.io/stefanprodan/podinfo:6.9.2
        command: [load, --rps, "{rps}", "{url}"]
"#
    )
}

/// `mesh viz routes TARGET -n NS -o json` over the scenario's window: its
/// rows.
async fn routes_json(
    p: &impl Provider,
    ns: &str,
    target: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let window = format!("{WINDOW_SECONDS}s");
    let ran = crate::mesh::mesh(
        p,
        Cluster::West,
        &[
            "viz", "routes", target, "-n", ns, "-t", &window, "-o", "json",
        ],
    )
    .await?
    .ok(&format!("mesh viz routes {target}"))?;
    serde_json::from_str(&ran.stdout).map_err(|e| {
        anyhow::anyhow!(
            "mesh viz routes {target} -o json printed {:?}: {e}",
            ran.stdout
        )
    })
}

/// `mesh viz stat … -o json`: its rows, and what it said on stderr.
async fn stat_json(
    p: &impl Provider,
    args: &[&str],
) -> anyhow::Result<(Vec<serde_json::Value>, String)> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let ran = crate::mesh::mesh(p, Cluster::West, &args)
        .await?
        .ok("mesh viz stat")?;
    let rows = serde_json::from_str(&ran.stdout)
        .map_err(|e| anyhow::anyhow!("mesh viz stat -o json printed {:?}: {e}", ran.stdout))?;
    Ok((rows, ran.stderr))
}

/// A pod that is not podinfo's but labels itself as one and serves a
/// metrics page where a proxy's would be, counting 500 failed inbound
/// requests a second (a real counter, so `increase()` sees them).
fn rogue_pod() -> anyhow::Result<Pod> {
    let server = r#"
import http.server, time
start = time.time()
class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        n = int((time.time() - start) * 500)
        body = ('# TYPE response_total counter\n'
                'response_total{direction="inbound",classification="failure",tls="true",status_code="500"} %d\n' % n).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain; version=0.0.4')
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(('', 4191), Page).serve_forever()
"#;
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "rogue",
            "labels": {
                "linkerd.io/proxy-deployment": "podinfo",
                "linkerd.io/control-plane-ns": "linkerd",
            },
        },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "linkerd-proxy",
                "image": "busybox:1.36",
                "command": ["python3", "-c", server],
                "ports": [{"name": "linkerd-admin", "containerPort": 4191}],
            }],
        }
    }))?)
}

fn row<'a>(rows: &'a [serde_json::Value], name: &str) -> anyhow::Result<&'a serde_json::Value> {
    rows.iter()
        .find(|r| r["name"] == name)
        .ok_or_else(|| anyhow::anyhow!("no {name} row in {rows:#?}"))
}

/// Requests and successes per second over the last window, as the load
/// pod `pod` counted them itself (its container is `main`).
async fn counted_rate(client: &kube::Client, ns: &str, pod: &str) -> anyhow::Result<(f64, f64)> {
    let logs = kube_util::logs(client, ns, pod, "main").await;
    let seconds = LoadSecond::parse_lines(&logs);
    let window = WINDOW_SECONDS as usize;
    anyhow::ensure!(
        seconds.len() > window,
        "{pod} has counted {} seconds of load, fewer than the window",
        seconds.len()
    );
    let recent = &seconds[seconds.len() - window..];
    let total: u64 = recent.iter().map(|s| s.ok + s.failed).sum();
    let ok: u64 = recent.iter().map(|s| s.ok).sum();
    Ok((total as f64 / window as f64, ok as f64 / window as f64))
}

fn within_ten_percent(what: &str, seen: f64, counted: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        counted > 0.0 && (seen - counted).abs() <= 0.1 * counted,
        "{what} is {seen:.2}, not within 10 % of the {counted:.2} the callers counted"
    );
    Ok(())
}
