//! `route-bench`: routing from HTTPRoutes, measured in one run:
//!
//! 1. what matching costs per request: two mesh proxies (the proxy tests'
//!    harness, mutual TLS), HTTP/1.1 at 1,000 rps (open loop), to a
//!    Service with no HTTPRoute and then with one of 1, 10 and 100 rules
//!    (each rule but the last matches a path and a header the requests do
//!    not carry, so a request is tried against every rule): p50/p99 and
//!    client-proxy CPU per 1,000 rps, the added p99 against no route;
//! 2. weight change → new split, in two legs: (a) an HTTPRoute's weights
//!    patched on a real kube-apiserver until the policy controller's open
//!    `OutboundPolicies.Watch` stream (what a proxy reads) carries them;
//!    (b) the controller's new message (from the mock control plane) until
//!    the client proxy's requests land on the other backend; p50 and p99
//!    over 20 changes each.
//!
//! Run as root after `cargo build --release -p mesh-proxy -p mesh-bench`:
//! `target/release/route-bench [seconds per load run, default 10]`.

use mesh_bench::{cpu_seconds, ms, percentile};
use mesh_test_util as support;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use linkerd2_proxy_api::destination::DestinationProfile;
use linkerd2_proxy_api::outbound::outbound_policies_client::OutboundPoliciesClient;
use linkerd2_proxy_api::outbound::{TrafficSpec, traffic_spec};
use mesh_policy::index::defaults::ClusterInfo;
use support::{Mesh, Side, app, meshed, server};
use tokio::time::Instant;

const CANARY: &str = "web-canary.test.svc.cluster.local:80";

/// Requests at `rate` per second for `duration` (open loop) to the web
/// Service from the client pod: sorted latencies and errors.
async fn load(mesh: &Mesh, rate: u32, duration: Duration) -> (Vec<Duration>, usize) {
    mesh_bench::http_load(mesh, "http://10.96.0.10/api/items", rate, duration).await
}

fn service(name: &str, ip: &str) -> serde_json::Value {
    support::outbound::service("test", name, ip, 80)
}

/// The web Service with an HTTPRoute of `rules` rules (none: no route);
/// only the last matches the benchmark's requests.
fn with_rules(rules: usize) -> Vec<serde_json::Value> {
    let mut objects = vec![service("web", "10.96.0.10")];
    if rules > 0 {
        let rules: Vec<serde_json::Value> = (0..rules)
            .map(|r| {
                if r + 1 == rules {
                    serde_json::json!({"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}]})
                } else {
                    serde_json::json!({"matches": [{
                        "path": {"type": "PathPrefix", "value": format!("/api/never-{r}")},
                        "headers": [{"name": "x-rule", "value": r.to_string()}]
                    }]})
                }
            })
            .collect();
        objects.push(serde_json::json!({
            "kind": "HTTPRoute",
            "metadata": {"namespace": "test", "name": "web-route"},
            "spec": {"parentRefs": [{"group": "core", "kind": "Service", "name": "web", "port": 80}], "rules": rules}
        }));
    }
    objects
}

/// The web Service split `primary`/`canary` between itself and web-canary.
fn split(primary: u32, canary: u32) -> Vec<serde_json::Value> {
    vec![
        service("web", "10.96.0.10"),
        service("web-canary", "10.96.0.11"),
        support::outbound::split_route(
            "test",
            "web-route",
            "web",
            &[("web", primary), ("web-canary", canary)],
        ),
    ]
}

/// Requests (one every millisecond) until one lands on the canary when
/// `to_canary`, or on web otherwise; how long from `changed`.
async fn until_split(
    mesh: &Mesh,
    canary: &app::App,
    to_canary: bool,
    changed: Instant,
) -> anyhow::Result<Duration> {
    loop {
        anyhow::ensure!(
            changed.elapsed() < Duration::from_secs(10),
            "the new split never reached the client proxy"
        );
        let before = canary.hits();
        mesh.client
            .run(async {
                let req = http::Request::get("http://10.96.0.10/")
                    .body(Default::default())
                    .expect("request");
                let _ = support::request(&support::http_client(), req).await;
            })
            .await;
        if (canary.hits() > before) == to_canary {
            return Ok(changed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn per_request_cost_and_split(seconds: u64) -> anyhow::Result<(Duration, Duration)> {
    let duration = Duration::from_secs(seconds);
    let rate = 1000;
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.state
        .set_endpoints(CANARY, meshed(&[(8081, "canary")]));
    mesh.server
        .run(async { app::App::serve("web", server(8080)).await })
        .await;
    let canary = mesh.app("canary", 8081).await;
    let client_pid = mesh.proxy_pid(Side::Client);
    println!(
        "| HTTPRoute on the Service | p50 (ms) | p99 (ms) | added p99 (ms) | client proxy CPU per 1,000 rps (vCPU) | errors |"
    );
    println!("|---|---|---|---|---|---|");
    let mut no_route_p99 = None;
    // The policy is there before the first request (a proxy takes a
    // target's NOT_FOUND as final); the last row repeats the first, to
    // show the run's drift.
    for rules in [0usize, 1, 10, 100, 0] {
        mesh.state.set_outbound_policy(
            support::WEB_ADDR,
            support::outbound::policy(&with_rules(rules), "test", "web", 80),
        );
        // The proxy follows the policy watch; give it a moment and warm up.
        tokio::time::sleep(Duration::from_millis(500)).await;
        load(&mesh, rate, Duration::from_secs(1)).await;
        let routed = support::sample(
            &mesh.client_metrics().await,
            "outbound_http_route_request_statuses_total",
            &["route_name=\"web-route\""],
        );
        anyhow::ensure!(
            rules == 0 || routed > 0.0,
            "with {rules} rules, {routed} requests took the HTTPRoute"
        );
        let before = cpu_seconds(client_pid);
        let (latencies, errors) = load(&mesh, rate, duration).await;
        let cpu = (cpu_seconds(client_pid) - before) / seconds as f64 / (f64::from(rate) / 1000.0);
        let p99 = percentile(&latencies, 0.99);
        let baseline = *no_route_p99.get_or_insert(p99);
        let label = match rules {
            0 => "none (the Service's default route)".to_owned(),
            1 => "1 rule".to_owned(),
            n => format!("{n} rules (the last one matches)"),
        };
        println!(
            "| {label} | {:.3} | {:.3} | {:.3} | {cpu:.3} | {errors} |",
            ms(percentile(&latencies, 0.5)),
            ms(p99),
            ms(p99.saturating_sub(baseline)),
        );
    }

    // Weight changes pushed by the controller until the client's split
    // follows.
    let mut samples = Vec::new();
    for i in 0..20 {
        let to_canary = i % 2 == 0;
        let (primary, to) = if to_canary { (0, 100) } else { (100, 0) };
        let changed = Instant::now();
        mesh.state.set_outbound_policy(
            support::WEB_ADDR,
            support::outbound::policy(&split(primary, to), "test", "web", 80),
        );
        samples.push(until_split(&mesh, &canary, to_canary, changed).await?);
    }
    samples.sort();
    Ok((percentile(&samples, 0.5), percentile(&samples, 0.99)))
}

/// The weights of the first HTTP rule's backends in `policy`.
fn served_weights(policy: &linkerd2_proxy_api::outbound::OutboundPolicy) -> Vec<u32> {
    use linkerd2_proxy_api::outbound::{http_route, proxy_protocol};
    let Some(proxy_protocol::Kind::Detect(detect)) =
        policy.protocol.as_ref().and_then(|p| p.kind.as_ref())
    else {
        return Vec::new();
    };
    let rule = detect
        .http1
        .as_ref()
        .and_then(|h| h.routes.first())
        .and_then(|r| r.rules.first());
    match rule
        .and_then(|r| r.backends.as_ref())
        .and_then(|b| b.kind.as_ref())
    {
        Some(http_route::distribution::Kind::RandomAvailable(random)) => {
            random.backends.iter().map(|b| b.weight).collect()
        }
        _ => Vec::new(),
    }
}

/// An HTTPRoute's weights patched on a real API server until the policy
/// controller's open `OutboundPolicies.Watch` carries them: p50 and p99
/// over 20 changes.
async fn apply_to_served() -> anyhow::Result<(Duration, Duration)> {
    let api = mesh_bench::ApiServer::start(&["bench"]).await?;
    let client = api.client.clone();
    mesh_clusters::testing::ensure_crds(&client, mesh_api::crds::all()).await;
    let running = mesh_policy::server::start(
        mesh_policy::server::ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            admin_listen: "127.0.0.1:0".parse()?,
            cluster: ClusterInfo::default(),
            tls: None,
        },
        client.clone(),
    )
    .await?;
    let services = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "bench");
    for name in ["web", "web-canary"] {
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name},
                    "spec": {"ports": [{"name": "http", "port": 80}]}
                }))?,
            )
            .await?;
    }
    let routes = Api::<mesh_api::crds::http_route::HttpRoute>::namespaced(client.clone(), "bench");
    let route =
        |primary: u32, canary: u32| -> anyhow::Result<mesh_api::crds::http_route::HttpRoute> {
            Ok(serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web-route"},
                "spec": {
                    "parentRefs": [{"group": "core", "kind": "Service", "name": "web", "port": 80}],
                    "rules": [{"backendRefs": [
                        {"name": "web", "port": 80, "weight": primary},
                        {"name": "web-canary", "port": 80, "weight": canary}
                    ]}]
                }
            }))?)
        };
    routes
        .create(&PostParams::default(), &route(100, 0)?)
        .await?;
    let grpc = OutboundPoliciesClient::connect(format!("http://{}", running.addr)).await?;
    let spec = TrafficSpec {
        source_workload: "bench:client".into(),
        target: Some(traffic_spec::Target::Authority(
            "web.bench.svc.cluster.local:80".into(),
        )),
    };
    let mut stream = mesh_bench::open_watch("Watch", || {
        let (mut grpc, spec) = (grpc.clone(), spec.clone());
        async move { grpc.watch(spec).await }
    })
    .await?;
    let mut samples = Vec::new();
    for i in 1..=20u32 {
        let canary = i * 5;
        let changed = Instant::now();
        routes
            .patch(
                "web-route",
                &PatchParams::default(),
                &Patch::Merge(serde_json::to_value(route(100 - canary, canary)?)?),
            )
            .await?;
        loop {
            let policy = mesh_bench::next_update(&mut stream).await?;
            if served_weights(&policy).get(1) == Some(&canary) {
                break;
            }
        }
        samples.push(changed.elapsed());
    }
    samples.sort();
    drop(stream);
    drop(running);
    api.stop().await;
    Ok((percentile(&samples, 0.5), percentile(&samples, 0.99)))
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (proxy_p50, proxy_p99) = runtime.block_on(per_request_cost_and_split(seconds))?;
    let (served_p50, served_p99) = runtime.block_on(apply_to_served())?;
    println!();
    println!("| weight change → new split | p50 (ms) | p99 (ms) |");
    println!("|---|---|---|");
    println!(
        "| (a) HTTPRoute patched on the API server → the controller's Watch carries the weights (20 changes) | {:.1} | {:.1} |",
        ms(served_p50),
        ms(served_p99)
    );
    println!(
        "| (b) the controller's message → the client proxy's requests on the new backend (20 changes) | {:.1} | {:.1} |",
        ms(proxy_p50),
        ms(proxy_p99)
    );
    Ok(())
}
