//! `policy-bench`: authorization policy, measured in one run:
//!
//! 1. what a policy costs per request: two mesh proxies (the proxy tests'
//!    harness), HTTP/1.1 at a fixed rate (open loop), with the default
//!    policy (one authorization) and then with a Server whose port has 100
//!    AuthorizationPolicies naming 1,000 identities (the client's in the
//!    last one): p50/p99 and server-proxy CPU per 1,000 rps for each;
//! 2. the policy controller's index holding 5,000 Servers (with as many
//!    pods, AuthorizationPolicies and MeshTLSAuthentications, over 100
//!    namespaces) while 5,000 pod ports are watched: RSS growth and the
//!    time to take them all in;
//! 3. apply to enforced: a MeshTLSAuthentication changed on a real
//!    kube-apiserver until an open `WatchPort` stream (what a proxy reads)
//!    carries the change, p50 and p99 over 50 changes.
//!
//! Run as root after `cargo build --release -p mesh-proxy -p mesh-bench`:
//! `target/release/policy-bench [seconds per load run, default 10]`.

use mesh_bench::{cpu_seconds, ms, percentile, rss_mib};
use mesh_test_util as support;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use linkerd2_proxy_api::destination::DestinationProfile;
use linkerd2_proxy_api::inbound::PortSpec;
use linkerd2_proxy_api::inbound::inbound_server_policies_client::InboundServerPoliciesClient;
use mesh_policy::index::Index;
use mesh_policy::index::defaults::ClusterInfo;
use support::{Mesh, Side, app, meshed, server};
use tokio::time::Instant;

/// Requests at `rate` per second for `duration` (open loop) to the web
/// Service from the client pod: sorted latencies and errors.
async fn load(mesh: &Mesh, rate: u32, duration: Duration) -> (Vec<Duration>, usize) {
    mesh_bench::http_load(mesh, "http://10.96.0.10/", rate, duration).await
}

/// A port policy of `policies` AuthorizationPolicies naming `per_policy`
/// identities each, the client's identity the last one named.
fn large_policy(policies: usize, per_policy: usize) -> linkerd2_proxy_api::inbound::Server {
    let mut authorizations = Vec::new();
    for p in 0..policies {
        let mut authz = support::policy::admits(&format!("policy-{p}"), "unused");
        if let Some(linkerd2_proxy_api::inbound::Authn {
            permit:
                Some(linkerd2_proxy_api::inbound::authn::Permit::MeshTls(
                    linkerd2_proxy_api::inbound::authn::PermitMeshTls {
                        clients:
                            Some(linkerd2_proxy_api::inbound::authn::permit_mesh_tls::Clients::Identities(
                                ids,
                            )),
                    },
                )),
        }) = authz.authentication.as_mut()
        {
            ids.identities = (0..per_policy)
                .map(|i| linkerd2_proxy_api::inbound::Identity {
                    name: if p + 1 == policies && i + 1 == per_policy {
                        support::CLIENT_ID.to_owned()
                    } else {
                        format!("sa-{p}-{i}.ns-{p}.serviceaccount.identity.linkerd.cluster.local")
                    },
                })
                .collect();
        }
        authorizations.push(authz);
    }
    support::policy::server("web-http", authorizations)
}

async fn per_request_cost(seconds: u64) -> anyhow::Result<()> {
    let duration = Duration::from_secs(seconds);
    let rate = 1000;
    let mesh = Mesh::start().await;
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.server
        .run(async { app::App::serve("web", server(8080)).await })
        .await;
    let server_pid = mesh.proxy_pid(Side::Server);
    println!(
        "| policy on the port | p50 (ms) | p99 (ms) | server proxy CPU per 1,000 rps (vCPU) | errors |"
    );
    println!("|---|---|---|---|---|");
    let measure = async |label: &str| {
        load(&mesh, rate, Duration::from_secs(1)).await;
        let before = cpu_seconds(server_pid);
        let (latencies, errors) = load(&mesh, rate, duration).await;
        let cpu = (cpu_seconds(server_pid) - before) / seconds as f64 / (f64::from(rate) / 1000.0);
        println!(
            "| {label} | {:.3} | {:.3} | {cpu:.3} | {errors} |",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
        );
    };
    measure("default (one authorization)").await;
    mesh.state.set_port_policy(8080, large_policy(100, 10));
    // The proxy has it once a request is counted against the Server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while support::sample(
        &mesh.server_metrics().await,
        "inbound_http_authz_allow_total",
        &["srv_name=\"web-http\""],
    ) < 1.0
    {
        anyhow::ensure!(Instant::now() < deadline, "the large policy never applied");
        load(&mesh, 50, Duration::from_millis(200)).await;
    }
    measure("100 AuthorizationPolicies, 1,000 identities").await;
    Ok(())
}

fn index_scale() -> anyhow::Result<()> {
    let before = rss_mib(std::process::id());
    let started = Instant::now();
    let mut index = Index::new(ClusterInfo::default());
    let mut watches = Vec::new();
    for s in 0..5_000u32 {
        let ns = format!("ns-{}", s % 100);
        let app = format!("app-{s}");
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": format!("{app}-0"), "labels": {"app": app}},
            "spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))?;
        index.apply_pod(&pod);
        watches.push(index.watch_port(&ns, &format!("{app}-0"), 8080));
        let object = |kind: &str, spec: serde_json::Value| serde_json::json!({"metadata": {"namespace": ns, "name": format!("{app}-{kind}")}, "spec": spec});
        index
            .apply_server(&serde_json::from_value(object(
                "server",
                serde_json::json!({"podSelector": {"matchLabels": {"app": app}}, "port": "http"}),
            ))?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        index
            .apply_mesh_tls_authentication(&serde_json::from_value(object(
                "clients",
                serde_json::json!({"identities": [format!("*.{ns}.serviceaccount.identity.linkerd.cluster.local")]}),
            ))?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        index
            .apply_authorization_policy(&serde_json::from_value(object(
                "policy",
                serde_json::json!({
                    "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": format!("{app}-server")},
                    "requiredAuthenticationRefs": [{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": format!("{app}-clients")}]
                }),
            ))?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let took = started.elapsed();
    let after = rss_mib(std::process::id());
    let served = watches
        .iter()
        .filter(|w| {
            w.borrow()
                .as_ref()
                .is_some_and(|s| !s.authorizations.is_empty())
        })
        .count();
    anyhow::ensure!(
        served == 5_000,
        "every watched port has its policy ({served})"
    );
    println!(
        "| policy index: 5,000 Servers, pods, AuthorizationPolicies and MeshTLSAuthentications over 100 namespaces, 5,000 ports watched | {:.1} MiB RSS growth; taken in {:.2} s |",
        (after - before).max(0.0),
        took.as_secs_f64()
    );
    drop(index);
    Ok(())
}

async fn apply_to_enforced() -> anyhow::Result<(Duration, Duration)> {
    let api = mesh_bench::ApiServer::start(&["bench"]).await?;
    let client = api.client.clone();
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
    let create = async |yaml: String| -> anyhow::Result<()> {
        let object: kube::core::DynamicObject = serde_saphyr::from_str(&yaml)?;
        let types = object
            .types
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no kind"))?;
        let gvk = kube::core::GroupVersionKind::try_from(&types)?;
        let (resource, _) = kube::discovery::oneshot::pinned_kind(&client, &gvk).await?;
        Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), "bench", &resource)
            .create(&PostParams::default(), &object)
            .await?;
        Ok(())
    };
    create("apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: bench, labels: {app: web}}\nspec: {containers: [{name: app, image: web, ports: [{containerPort: 8080}]}]}\n".into()).await?;
    create("apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: web, namespace: bench}\nspec: {podSelector: {matchLabels: {app: web}}, port: 8080}\n".into()).await?;
    create("apiVersion: policy.linkerd.io/v1alpha1\nkind: MeshTLSAuthentication\nmetadata: {name: clients, namespace: bench}\nspec: {identities: [\"sa-0.bench.serviceaccount.identity.linkerd.cluster.local\"]}\n".into()).await?;
    create("apiVersion: policy.linkerd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: web, namespace: bench}\nspec:\n  targetRef: {group: policy.linkerd.io, kind: Server, name: web}\n  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: clients}]\n".into()).await?;
    let grpc = InboundServerPoliciesClient::connect(format!("http://{}", running.addr)).await?;
    let spec = PortSpec {
        workload: r#"{"ns":"bench","pod":"web-0"}"#.into(),
        port: 8080,
    };
    let mut stream = mesh_bench::open_watch("WatchPort", || {
        let (mut grpc, spec) = (grpc.clone(), spec.clone());
        async move { grpc.watch_port(spec).await }
    })
    .await?;
    let names =
        |server: &linkerd2_proxy_api::inbound::Server| format!("{:?}", server.authorizations);
    let authentications =
        Api::<mesh_api::crds::policy::MeshTLSAuthentication>::namespaced(client.clone(), "bench");
    let mut samples = Vec::new();
    for i in 1..=50 {
        let identity = format!("sa-{i}.bench.serviceaccount.identity.linkerd.cluster.local");
        let changed = Instant::now();
        authentications
            .patch(
                "clients",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"identities": [identity]}})),
            )
            .await?;
        loop {
            let server = mesh_bench::next_update(&mut stream).await?;
            if names(&server).contains(&identity) {
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
    runtime.block_on(per_request_cost(seconds))?;
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    index_scale()?;
    let (p50, p99) = runtime.block_on(apply_to_enforced())?;
    println!(
        "| apply → enforced: a MeshTLSAuthentication patched until an open WatchPort stream carries it (50 changes) | p50 {:.1} ms, p99 {:.1} ms |",
        ms(p50),
        ms(p99)
    );
    Ok(())
}
