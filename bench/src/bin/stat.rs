//! `stat-bench`: how long `mesh viz stat` and the metrics-api's
//! `StatSummary` take as a namespace grows from 10 meshed pods to 1,000.
//! `viz stat`, the dashboard and the metrics-api run the same code
//! (`mesh_viz::metrics::stat`: list the workloads and their pods from the
//! API server, then ask Prometheus): it is timed called directly, and
//! through the metrics-api over real gRPC on a loopback socket, against
//! real parts:
//!
//! - a real kube-apiserver and controller-manager on this host, where
//!   Deployments of 10 replicas each make their ReplicaSets and pods (no
//!   node runs them; each pod's status is then set Running, as a kubelet
//!   would);
//! - the real Prometheus `scripts/setup.sh` builds, scraping every 2 s a
//!   page that speaks for all those pods' proxies: the series `viz stat`
//!   reads (`response_total`, `response_latency_ms_bucket`,
//!   `tcp_open_connections`, `tcp_read_bytes_total`,
//!   `tcp_write_bytes_total`) with the labels Linkerd's scrape
//!   configuration gives a pod, each pod serving 10 requests a second.
//!
//! Reports p50 and max of 20 calls (after one untimed) each of `stat
//! deploy` and `stat po` in the 10-pod and the 1,000-pod namespace, and
//! the ratios, as a Markdown table; and checks each answer (every row meshed 10/10 at about 100
//! requests a second) so that a fast wrong answer cannot pass.
//!
//! Run as root after `cargo build --release -p mesh-bench`:
//! `target/release/stat-bench`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use mesh_bench::{ms, percentile};
use mesh_viz::metrics::prometheus::Prometheus;
use mesh_viz::metrics::resource::Target;
use mesh_viz::metrics::stat::{Request, stat};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Replicas of each Deployment.
const REPLICAS: usize = 10;
/// Requests a second each pod serves.
const POD_RPS: f64 = 10.0;
/// Calls timed per case.
const CALLS: usize = 20;
/// The namespaces and their Deployments: 10 pods and 1,000.
const NAMESPACES: [(&str, usize); 2] = [("small", 1), ("large", 100)];

/// The Deployment `name` of [`REPLICAS`] meshed pods.
fn deployment(name: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": REPLICAS,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [
                    { "name": "app", "image": "podinfo" },
                    { "name": "linkerd-proxy", "image": "mesh-proxy" },
                ] },
            },
        },
    }))?)
}

/// Creates the Deployments of `namespace`, waits for their pods, and
/// marks each Running with an address, as a kubelet would.
async fn populate(
    client: &kube::Client,
    namespace: &str,
    deployments: usize,
) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for i in 0..deployments {
        api.create(&PostParams::default(), &deployment(&format!("web-{i}"))?)
            .await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let want = deployments * REPLICAS;
    let deadline = Instant::now() + Duration::from_secs(300);
    let listed = loop {
        let listed = pods.list(&ListParams::default()).await?.items;
        if listed.len() >= want {
            break listed;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{namespace}: the controller-manager made {} of {want} pods in 5 minutes",
            listed.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for (i, pod) in listed.iter().enumerate() {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = serde_json::json!({ "status": {
            "phase": "Running",
            "podIP": format!("10.{}.{}.{}", 200 + usize::from(namespace == "large"), i / 250, i % 250 + 1),
            "conditions": [{ "type": "Ready", "status": "True" }],
        }});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    Ok(())
}

/// Each pod's namespace, Deployment and name.
async fn pods_of(client: &kube::Client) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for (namespace, _) in NAMESPACES {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        for pod in pods.list(&ListParams::default()).await?.items {
            let labels = pod.metadata.labels.unwrap_or_default();
            out.push((
                namespace.to_owned(),
                labels.get("app").cloned().unwrap_or_default(),
                pod.metadata.name.unwrap_or_default(),
            ));
        }
    }
    Ok(out)
}

/// The metrics page of every pod's proxy at `elapsed` since the start:
/// what a proxy serving [`POD_RPS`] would say.
fn page(pods: &[(String, String, String)], elapsed: f64) -> String {
    use std::fmt::Write as _;
    let requests = (elapsed * POD_RPS).floor();
    let mut text = String::with_capacity(pods.len() * 2_500);
    for (namespace, deployment, pod) in pods {
        let labels = format!(
            "direction=\"inbound\",namespace=\"{namespace}\",deployment=\"{deployment}\",pod=\"{pod}\""
        );
        let _ = writeln!(
            text,
            "response_total{{{labels},tls=\"true\",status_code=\"200\",classification=\"success\"}} {requests}"
        );
        // Latency: a fifth under 1 ms, most under 10 ms, none over 50 ms.
        for (le, share) in [
            ("1", 0.2),
            ("2", 0.4),
            ("5", 0.7),
            ("10", 0.95),
            ("50", 1.0),
            ("+Inf", 1.0),
        ] {
            let _ = writeln!(
                text,
                "response_latency_ms_bucket{{{labels},tls=\"true\",le=\"{le}\"}} {}",
                (requests * share).floor()
            );
        }
        let _ = writeln!(text, "tcp_open_connections{{{labels},peer=\"src\"}} 2");
        let _ = writeln!(
            text,
            "tcp_read_bytes_total{{{labels},peer=\"src\"}} {}",
            requests * 120.0
        );
        let _ = writeln!(
            text,
            "tcp_write_bytes_total{{{labels},peer=\"src\"}} {}",
            requests * 400.0
        );
    }
    text
}

/// Serves [`page`] on a free loopback port; returns it.
async fn serve_pages(pods: Vec<(String, String, String)>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let pods = Arc::new(pods);
    let started = Instant::now();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let pods = pods.clone();
            tokio::spawn(async move {
                let mut request = vec![0; 8192];
                let _ = stream.read(&mut request).await;
                // Off the runtime's workers: writing 1,000 pods' page
                // must not stall the calls being timed.
                let elapsed = started.elapsed().as_secs_f64();
                let Ok(body) = tokio::task::spawn_blocking(move || page(&pods, elapsed)).await
                else {
                    return;
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(address)
}

/// The real Prometheus, scraping `target` every 2 s with its labels kept.
async fn start_prometheus(
    target: std::net::SocketAddr,
) -> anyhow::Result<mesh_clusters::prometheus::Server> {
    let config = format!(
        "global:\n  scrape_interval: 2s\nscrape_configs:\n  - job_name: linkerd-proxy\n    \
         honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let server = mesh_clusters::prometheus::Server::start(
        &config,
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        None,
    )?;
    server.wait_ready().await?;
    Ok(server)
}

/// Times [`CALLS`] calls of `stat KIND -n namespace`, checking each answer.
async fn time_stat(
    client: &kube::Client,
    prometheus: &Prometheus,
    kind: &str,
    namespace: &str,
    deployments: usize,
) -> anyhow::Result<Vec<Duration>> {
    let target: Target = kind.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let (want_rows, want_meshed, want_rps) = if kind == "deploy" {
        (deployments, (REPLICAS, REPLICAS), POD_RPS * REPLICAS as f64)
    } else {
        (deployments * REPLICAS, (1, 1), POD_RPS)
    };
    let mut times = Vec::with_capacity(CALLS);
    // One call first, untimed: connections opened, caches warm.
    for call in 0..=CALLS {
        let started = Instant::now();
        let (rows, warnings) = stat(
            client,
            prometheus,
            Request {
                target: &target,
                namespace: Some(namespace),
                from: None,
                to: None,
                window: "30s",
            },
        )
        .await?;
        if call > 0 {
            times.push(started.elapsed());
        }
        anyhow::ensure!(
            warnings.is_empty(),
            "stat {kind} -n {namespace} warned: {warnings:?}"
        );
        anyhow::ensure!(
            rows.len() == want_rows,
            "stat {kind} -n {namespace}: {} rows, not {want_rows}",
            rows.len()
        );
        for row in &rows {
            let rps = row.golden.rps.unwrap_or_default();
            anyhow::ensure!(
                row.meshed == Some(want_meshed) && (rps - want_rps).abs() <= 0.2 * want_rps,
                "stat {kind} -n {namespace}: {} meshed {:?} at {rps:.1} rps (want {want_meshed:?} at {want_rps})",
                row.name,
                row.meshed,
            );
        }
    }
    times.sort();
    Ok(times)
}

/// Times [`CALLS`] `StatSummary` calls of the metrics-api (real gRPC on a
/// loopback socket) for `kind` in `namespace`, checking each answer as
/// [`time_stat`] does.
async fn time_metrics_api(
    api: &mut mesh_viz::metrics_api::grpc::Client,
    kind: &str,
    namespace: &str,
    deployments: usize,
) -> anyhow::Result<Vec<Duration>> {
    use mesh_viz::metrics_api::proto::{
        Resource, ResourceSelection, StatSummaryAnswer, StatSummaryRequest, Table,
    };
    let (r#type, want_rows, want_meshed, want_rps) = if kind == "deploy" {
        (
            "deployment",
            deployments,
            REPLICAS,
            POD_RPS * REPLICAS as f64,
        )
    } else {
        ("pod", deployments * REPLICAS, 1, POD_RPS)
    };
    let request = StatSummaryRequest {
        selector: Some(ResourceSelection {
            resource: Some(Resource {
                namespace: namespace.into(),
                r#type: r#type.into(),
                name: String::new(),
            }),
            label_selector: String::new(),
        }),
        time_window: "30s".into(),
        outbound: None,
        skip_stats: false,
        tcp_stats: true,
    };
    let mut times = Vec::with_capacity(CALLS);
    for call in 0..=CALLS {
        let started = Instant::now();
        let answer = api.stat_summary(request.clone()).await?;
        if call > 0 {
            times.push(started.elapsed());
        }
        let Some(StatSummaryAnswer::Ok(ok)) = answer.response else {
            anyhow::bail!("StatSummary {type} -n {namespace} answered {answer:?}");
        };
        let rows: Vec<_> = ok
            .stat_tables
            .into_iter()
            .filter_map(|t| t.table)
            .flat_map(|Table::PodGroup(group)| group.rows)
            .collect();
        anyhow::ensure!(
            rows.len() == want_rows,
            "StatSummary {type} -n {namespace}: {} rows, not {want_rows}",
            rows.len()
        );
        for row in &rows {
            let counted = row.stats.map_or(0, |s| s.success_count + s.failure_count) as f64;
            let want = want_rps * 30.0;
            anyhow::ensure!(
                row.meshed_pod_count == want_meshed as u64 && (counted - want).abs() <= 0.2 * want,
                "StatSummary {type} -n {namespace}: {:?} meshed {} with {counted} requests in 30 s (want {want_meshed}, {want})",
                row.resource,
                row.meshed_pod_count,
            );
        }
    }
    times.sort();
    Ok(times)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let names: Vec<&str> = NAMESPACES.iter().map(|(ns, _)| *ns).collect();
    let api = mesh_bench::ApiServer::start(&names).await?;
    let client = api.client.clone();
    for (namespace, deployments) in NAMESPACES {
        eprintln!("stat-bench: {deployments} Deployments of {REPLICAS} pods in {namespace}");
        populate(&client, namespace, deployments).await?;
    }
    let pods = pods_of(&client).await?;
    eprintln!(
        "stat-bench: {} pods; Prometheus scraping their page",
        pods.len()
    );
    let page_bytes = page(&pods, 1.0).len();
    let target = serve_pages(pods).await?;
    let server = start_prometheus(target).await?;
    let prometheus = Prometheus::direct(&server.url).map_err(|e| anyhow::anyhow!(e))?;
    // Enough scrapes for a 30 s window's rates.
    tokio::time::sleep(Duration::from_secs(40)).await;

    let mut rows: BTreeMap<(&str, &str), Vec<Duration>> = BTreeMap::new();
    for kind in ["deploy", "po"] {
        for (namespace, deployments) in NAMESPACES {
            eprintln!("stat-bench: stat {kind} -n {namespace}, {CALLS} calls");
            let times = time_stat(&client, &prometheus, kind, namespace, deployments).await?;
            rows.insert((kind, namespace), times);
        }
    }
    // The metrics-api: the same figures through Linkerd viz's gRPC API.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(
        mesh_viz::metrics_api::grpc::router(mesh_viz::metrics_api::MetricsApi::new(
            client.clone(),
            prometheus.clone(),
        ))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut metrics_api =
        mesh_viz::metrics_api::grpc::Client::connect(&format!("http://{address}")).await?;
    let mut via_api: BTreeMap<(&str, &str), Vec<Duration>> = BTreeMap::new();
    for kind in ["deploy", "po"] {
        for (namespace, deployments) in NAMESPACES {
            eprintln!("stat-bench: metrics-api StatSummary {kind} -n {namespace}, {CALLS} calls");
            let times = time_metrics_api(&mut metrics_api, kind, namespace, deployments).await?;
            via_api.insert((kind, namespace), times);
        }
    }
    println!("Metrics page: {page_bytes} bytes for all pods, scraped every 2 s.");
    println!();
    println!("| stat | pods | rows | p50 (ms) | max (ms) |");
    println!("|---|---|---|---|---|");
    for ((kind, namespace), times) in &rows {
        let deployments = NAMESPACES
            .iter()
            .find(|(ns, _)| ns == namespace)
            .map_or(0, |(_, d)| *d);
        let pods = deployments * REPLICAS;
        let shown = if *kind == "deploy" { deployments } else { pods };
        println!(
            "| `stat {kind} -n {namespace}` | {pods} | {shown} | {:.1} | {:.1} |",
            ms(percentile(times, 0.5)),
            ms(times.last().copied().unwrap_or_default()),
        );
        let api = &via_api[&(*kind, *namespace)];
        println!(
            "| metrics-api `StatSummary` ({kind}, {namespace}) | {pods} | {shown} | {:.1} | {:.1} |",
            ms(percentile(api, 0.5)),
            ms(api.last().copied().unwrap_or_default()),
        );
    }
    println!();
    for kind in ["deploy", "po"] {
        for (what, times) in [("stat", &rows), ("metrics-api StatSummary", &via_api)] {
            let p50 = |ns: &str| ms(percentile(&times[&(kind, ns)], 0.5));
            println!(
                "`{what} {kind}`: 1,000 pods take {:.1}× the time of 10 (p50).",
                p50("large") / p50("small").max(f64::EPSILON)
            );
        }
    }
    drop(server);
    api.stop().await;
    Ok(())
}
