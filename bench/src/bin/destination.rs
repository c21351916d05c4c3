//! Destination benchmarks, measured in one run:
//!
//! 1. latency from an EndpointSlice write (to a real kube-apiserver on this
//!    host) to the `Get` update on an open stream, p50 and p99;
//! 2. memory of one index holding 5 000 Services and 50 000 endpoints
//!    (process RSS growth while building it);
//! 3. time to serve a new subscriber (first `Add` of all 1 000 endpoints
//!    over gRPC) while another task churns that Service's endpoints,
//!    against the same with no churn. The churn is about a thousand
//!    slice updates a second, each replacing a tenth of the endpoints.
//!
//! Run: `cargo run --release -p mesh-bench --bin destination-bench`.

use mesh_bench::{percentile, rss_mib};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::destination::destination_server::DestinationServer;
use linkerd2_proxy_api::destination::{GetDestination, update};
use mesh_destination::grpc::DestinationService;
use mesh_destination::index::{Index, IndexConfig};
use tokio::time::Instant;

fn service(ns: &str, name: &str, ip: Ipv4Addr) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.to_string()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn slice(ns: &str, name: &str, svc: &str, ips: impl Iterator<Item = Ipv4Addr>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: Some([("kubernetes.io/service-name".to_owned(), svc.to_owned())].into()),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            ..EndpointPort::default()
        }]),
        endpoints: ips
            .map(|ip| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..EndpointConditions::default()
                }),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some(format!("pod-{ip}")),
                    ..ObjectReference::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
    }
}

fn ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + n)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("| measure | result |");
    println!("|---|---|");
    let (p50, p99) = runtime.block_on(slice_to_update_latency())?;
    println!(
        "| EndpointSlice write → Get update, p50 (real kube-apiserver, 200 writes) | {:.1} ms |",
        p50.as_secs_f64() * 1e3
    );
    println!(
        "| EndpointSlice write → Get update, p99 | {:.1} ms |",
        p99.as_secs_f64() * 1e3
    );
    let (mib, per_endpoint) = index_memory();
    println!(
        "| index with 5 000 Services / 50 000 endpoints: RSS growth | {mib:.1} MiB ({per_endpoint:.0} bytes per endpoint) |"
    );
    let (quiet, churning) = runtime.block_on(subscriber_during_churn())?;
    println!(
        "| new subscriber, first Add of 1 000 endpoints, no churn (median of 500) | {:.2} ms |",
        quiet.as_secs_f64() * 1e3
    );
    println!(
        "| new subscriber, first Add of 1 000 endpoints, during churn (median of 500) | {:.2} ms |",
        churning.as_secs_f64() * 1e3
    );
    println!(
        "| during churn / no churn | {:.2} |",
        churning.as_secs_f64() / quiet.as_secs_f64()
    );
    Ok(())
}

async fn slice_to_update_latency() -> anyhow::Result<(Duration, Duration)> {
    let api = mesh_bench::ApiServer::start(&["bench"]).await?;
    let client = api.client.clone();
    let running = mesh_destination::server::start(
        mesh_destination::server::ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            admin_listen: "127.0.0.1:0".parse()?,
            index: IndexConfig::default(),
            tls: None,
        },
        client.clone(),
    )
    .await?;
    let mut svc = service("bench", "web", Ipv4Addr::new(10, 96, 7, 7));
    if let Some(spec) = svc.spec.as_mut() {
        spec.cluster_ip = None;
    }
    Api::<Service>::namespaced(client.clone(), "bench")
        .create(&PostParams::default(), &svc)
        .await?;
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "bench");
    slices
        .create(
            &PostParams::default(),
            &slice("bench", "web-1", "web", (1..=1).map(ip)),
        )
        .await?;
    let mut grpc = DestinationClient::connect(format!("http://{}", running.addr)).await?;
    let mut stream = grpc
        .get(GetDestination {
            scheme: "k8s".into(),
            path: "web.bench.svc.cluster.local:80".into(),
            context_token: String::new(),
        })
        .await?
        .into_inner();
    // Wait for the first endpoint.
    loop {
        if let Some(Ok(u)) = stream.next().await
            && matches!(u.update, Some(update::Update::Add(_)))
        {
            break;
        }
    }
    let mut samples = Vec::new();
    for i in 2..202u32 {
        let body = serde_json::json!({"endpoints": [{"addresses": [ip(i).to_string()], "conditions": {"ready": true}}]});
        let started = Instant::now();
        slices
            .patch("web-1", &PatchParams::default(), &Patch::Merge(&body))
            .await?;
        // The new address arrives as an Add (the old one as a Remove).
        loop {
            let u = stream
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
            if matches!(u.update, Some(update::Update::Add(_))) {
                break;
            }
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    drop(stream);
    drop(grpc);
    running.shutdown().await;
    api.stop().await;
    Ok((percentile(&samples, 0.5), percentile(&samples, 0.99)))
}

fn index_memory() -> (f64, f64) {
    let before = rss_mib(std::process::id());
    let mut index = Index::new(IndexConfig::default());
    let mut n = 0u32;
    for s in 0..5_000u32 {
        let ns = format!("ns-{}", s % 100);
        let name = format!("svc-{s}");
        index.apply_service(&service(&ns, &name, Ipv4Addr::from(0x0a60_0000 + s)));
        index.apply_slice(&slice(
            &ns,
            &format!("{name}-1"),
            &name,
            (n..n + 10).map(ip),
        ));
        n += 10;
    }
    let after = rss_mib(std::process::id());
    let (services, slices, _) = index.sizes();
    assert_eq!((services, slices), (5_000, 5_000));
    let bytes = (after - before).max(0.0) * 1024.0 * 1024.0;
    drop(index);
    (bytes / (1024.0 * 1024.0), bytes / 50_000.0)
}

async fn subscriber_during_churn() -> anyhow::Result<(Duration, Duration)> {
    let index = Arc::new(Mutex::new(Index::new(IndexConfig::default())));
    {
        let mut idx = index.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        idx.apply_service(&service("bench", "big", Ipv4Addr::new(10, 96, 9, 9)));
        idx.apply_slice(&slice("bench", "big-1", "big", (0..1000).map(ip)));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let service = DestinationService::new(index.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DestinationServer::new(service))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            ),
    );
    let grpc = DestinationClient::connect(format!("http://{addr}")).await?;
    let measure = |grpc: DestinationClient<tonic::transport::Channel>| async move {
        let mut samples = Vec::new();
        for _ in 0..500 {
            let mut grpc = grpc.clone();
            let started = Instant::now();
            let mut stream = grpc
                .get(GetDestination {
                    scheme: "k8s".into(),
                    path: "big.bench.svc.cluster.local:80".into(),
                    context_token: String::new(),
                })
                .await?
                .into_inner();
            loop {
                let u = tokio::time::timeout(Duration::from_secs(10), stream.next())
                    .await
                    .map_err(|_| anyhow::anyhow!("no full Add within 10 s"))?
                    .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
                if let Some(update::Update::Add(set)) = u.update
                    && set.addrs.len() == 1000
                {
                    break;
                }
            }
            samples.push(started.elapsed());
        }
        samples.sort();
        Ok::<_, anyhow::Error>(percentile(&samples, 0.5))
    };
    let quiet = measure(grpc.clone()).await?;
    let churn_index = index.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn_stop = stop.clone();
    let churn = tokio::spawn(async move {
        let mut round = 0u32;
        while !churn_stop.load(std::sync::atomic::Ordering::Relaxed) {
            round += 1;
            // Replace one endpoint in ten each round.
            let ips = (0..1000u32).map(|i| {
                if i % 10 == round % 10 {
                    ip(100_000 + (round % 1000) * 1000 + i)
                } else {
                    ip(i)
                }
            });
            if let Ok(mut idx) = churn_index.lock() {
                idx.apply_slice(&slice("bench", "big-1", "big", ips));
            }
            // About a thousand slice updates a second: far above what a
            // busy cluster's EndpointSlice controller writes for one Service.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        round
    });
    let churning = measure(grpc).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = churn.await?;
    eprintln!("churn applied {rounds} slice updates while measuring");
    Ok((quiet, churning))
}
