//! The metrics-api as a client built from Linkerd's `viz.proto` sees it:
//! real gRPC on a real socket, answering from the test run's shared
//! kube-apiserver (a meshed pod and an unmeshed one, marked Running as a
//! kubelet would) and a real Prometheus scraping a page that speaks for
//! the meshed pod's proxy at 10 requests a second. `StatSummary` gives
//! the pod's row (meshed 1/1, success and failure counts over the window,
//! latency), `SelfCheck` says Prometheus answers, and what a request may
//! not ask is refused before any query: an unknown type, a name that is
//! not a Kubernetes name (a PromQL injection), a method mesh does not
//! serve.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use mesh_viz::metrics::prometheus::Prometheus;
use mesh_viz::metrics_api::MetricsApi;
use mesh_viz::metrics_api::grpc::Client;
use mesh_viz::metrics_api::proto::{
    CheckStatus, Resource, ResourceSelection, SelfCheckRequest, SelfCheckResponse,
    StatSummaryAnswer, StatSummaryRequest, StatSummaryResponse, Table,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

/// Requests a second the meshed pod's page counts.
const RPS: f64 = 10.0;

/// A pod `name`, with a proxy container when `meshed`, created and marked
/// Running with an address.
async fn running_pod(client: &kube::Client, ns: &str, name: &str, meshed: bool, ip: &str) {
    let mut containers = vec![serde_json::json!({"name": "app", "image": "podinfo"})];
    if meshed {
        containers.push(serde_json::json!({"name": "linkerd-proxy", "image": "mesh-proxy"}));
    }
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": {"linkerd.io/proxy-version": "test"}},
        "spec": {"containers": containers},
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let status = serde_json::json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("mark Running");
}

/// Serves the meshed pod's proxy page: [`RPS`] successful requests a
/// second since the start, all answered within 5 ms.
async fn serve_page(ns: String, pod: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let started = Instant::now();
    let labels = Arc::new(format!(
        "direction=\"inbound\",namespace=\"{ns}\",pod=\"{pod}\",tls=\"true\""
    ));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let labels = labels.clone();
            tokio::spawn(async move {
                let mut request = vec![0; 8192];
                let _ = stream.read(&mut request).await;
                let n = (started.elapsed().as_secs_f64() * RPS).floor();
                let mut body = format!(
                    "response_total{{{labels},classification=\"success\",status_code=\"200\"}} {n}\n"
                );
                for le in ["1", "5", "+Inf"] {
                    let count = if le == "1" { 0.0 } else { n };
                    body.push_str(&format!(
                        "response_latency_ms_bucket{{{labels},le=\"{le}\"}} {count}\n"
                    ));
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    address
}

/// `StatSummary` of `resource` over 10 s, with TCP figures.
async fn stat(
    client: &mut Client,
    resource: Resource,
) -> Result<StatSummaryResponse, tonic::Status> {
    client
        .stat_summary(StatSummaryRequest {
            selector: Some(ResourceSelection {
                resource: Some(resource),
                label_selector: String::new(),
            }),
            time_window: "10s".into(),
            outbound: None,
            skip_stats: false,
            tcp_stats: true,
        })
        .await
}

fn pods_of(ns: &str) -> Resource {
    Resource {
        namespace: ns.into(),
        r#type: "pod".into(),
        name: String::new(),
    }
}

#[tokio::test]
async fn linkerds_api_answers_stat_from_kubernetes_and_prometheus() {
    let cluster = mesh_clusters::testing::shared_cluster().await;
    let ns = cluster.namespace("metrics-api").await;
    running_pod(&cluster.client, &ns, "web-1", true, "10.250.0.1").await;
    running_pod(&cluster.client, &ns, "batch-1", false, "10.250.0.2").await;
    let page = serve_page(ns.clone(), "web-1".into()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a port")
        .local_addr()
        .expect("an address")
        .port();
    let prometheus = mesh_clusters::prometheus::Server::start(
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: linkerd-proxy\n    \
             honor_labels: true\n    static_configs:\n      - targets: ['{page}']\n"
        ),
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        None,
    )
    .unwrap_or_else(|e| panic!("this test needs a Prometheus server: {e:#}"));
    prometheus.wait_ready().await.expect("Prometheus ready");

    let api = MetricsApi::new(
        cluster.client.clone(),
        Prometheus::direct(&prometheus.url).expect("Prometheus URL"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(
        mesh_viz::metrics_api::grpc::router(api)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = Client::connect(&format!("http://{address}"))
        .await
        .expect("connect to the metrics-api");

    let check = client.self_check().await.expect("SelfCheck");
    assert_eq!(
        check.results.first().map(|r| r.status),
        Some(CheckStatus::Ok as i32),
        "{check:?}"
    );

    // The window fills as Prometheus scrapes the page every second.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let answer = stat(&mut client, pods_of(&ns)).await.expect("StatSummary");
        let Some(StatSummaryAnswer::Ok(ok)) = answer.response else {
            panic!("StatSummary answered {answer:?}");
        };
        let Some(Table::PodGroup(group)) = ok.stat_tables.into_iter().next().and_then(|t| t.table)
        else {
            panic!("no pod group in the answer");
        };
        let counted = group
            .rows
            .iter()
            .find(|r| r.resource.as_ref().is_some_and(|r| r.name == "web-1"))
            .and_then(|r| r.stats)
            .is_some_and(|s| s.success_count >= 85);
        if counted {
            break group.rows;
        }
        assert!(
            Instant::now() < deadline,
            "web-1's requests never showed: {:#?}",
            group.rows
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.resource.as_ref().is_some_and(|r| r.name == name))
            .unwrap_or_else(|| panic!("no {name} row in {rows:#?}"))
    };
    let web = row("web-1");
    assert_eq!(
        web.resource
            .as_ref()
            .map(|r| (r.r#type.as_str(), r.namespace.as_str())),
        Some(("pod", ns.as_str()))
    );
    assert_eq!((web.meshed_pod_count, web.running_pod_count), (1, 1));
    let stats = web.stats.expect("web-1's figures");
    // 10 requests a second over a full 10 s window, by Prometheus's
    // increase() (waited for above: the window fills as Prometheus
    // scrapes).
    assert!(
        (85..=130).contains(&stats.success_count) && stats.failure_count == 0,
        "{stats:?}"
    );
    assert!(
        (1..=5).contains(&stats.latency_ms_p50) && stats.latency_ms_p99 <= 5,
        "{stats:?}"
    );
    assert_eq!(web.time_window, "10s");
    let batch = row("batch-1");
    assert_eq!((batch.meshed_pod_count, batch.running_pod_count), (0, 1));
    assert_eq!(batch.stats, None, "no traffic, no figures");

    // Refused before any query, naming the field.
    let mut injected = pods_of(&ns);
    injected.name = "web-1\"} or vector(1e9) #".into();
    for (resource, field) in [
        (
            Resource {
                r#type: "bogus".into(),
                ..pods_of(&ns)
            },
            "selector.resource.type",
        ),
        (injected, "selector.resource.name"),
    ] {
        let refused = stat(&mut client, resource).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().starts_with(field), "{refused:?}");
    }
    let unserved = client
        .call::<_, SelfCheckResponse>("ListPods", SelfCheckRequest {})
        .await
        .expect_err("ListPods is not served");
    assert_eq!(unserved.code(), tonic::Code::Unimplemented, "{unserved:?}");
}
