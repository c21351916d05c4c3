//! `tap-bench`: what tap costs the proxies. Two pods in network namespaces
//! (the proxy tests' harness); a client calls the server pod through both
//! proxies at a fixed rate (open loop), up to four times: with proxies
//! built without tap (the `tap` feature off: no tap check on the request
//! path at all), with tap off (no tap identity configured: no tap server),
//! with tap on but nobody tapping, and with a tap on both proxies taking
//! every request (its events read as fast as they come, over mutual TLS as
//! the tap identity). Reports the client's p50/p99 and both proxies' CPU
//! seconds per 1,000 requests in each run, as a Markdown table.
//!
//! Run as root after `cargo build --release -p mesh-proxy -p mesh-bench`:
//! `target/release/tap-bench [rps, default 1000] [seconds per run, default 20]`.
//! The first run needs a proxy built without tap, named by
//! `MESH_PROXY_WITHOUT_TAP` (`cargo build --release -p mesh-proxy
//! --no-default-features --target-dir target/without-tap`); without it,
//! that run is skipped and the output says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use linkerd2_proxy_api::destination::DestinationProfile;
use linkerd2_proxy_api::tap::ObserveRequest;
use linkerd2_proxy_api::tap::tap_client::TapClient;
use mesh_bench::{cpu_seconds, http_load, ms, percentile};
use mesh_test_util::{CLIENT_ID, CLIENT_IP, Mesh, Side, WEB_ID, meshed, server, unmeshed_connect};

const TAP_ID: &str = "tap.linkerd-viz.serviceaccount.identity.linkerd.cluster.local";

/// Taps the proxy at `addr` (identity `id`) for every request until the
/// process ends, counting the events read (three a request).
async fn tap_everything(
    mesh: &Mesh,
    addr: std::net::SocketAddr,
    id: &'static str,
    events: Arc<AtomicU64>,
) {
    let connector = mesh.ca.connector(Some(TAP_ID), mesh_core::tls::ALPN_H2);
    let name = mesh_core::tls::server_name(id).expect("name");
    let runtime = mesh.client.new_runtime();
    runtime.spawn(async move {
        let channel = tonic::transport::Endpoint::from_static("http://tap")
            .connect_with_connector(tower::service_fn(move |_| {
                let (connector, name) = (connector.clone(), name.clone());
                async move {
                    let tcp = unmeshed_connect(addr).await?;
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            }))
            .await
            .expect("the tap server");
        let mut client = TapClient::new(channel);
        // A tap ends after its limit (at most 10,000 requests): open the
        // next at once, as the tap component does every second.
        // A refused tap ends it: the proxies are going away with the bench.
        loop {
            let Ok(response) = client
                .observe(ObserveRequest {
                    limit: u32::MAX,
                    ..Default::default()
                })
                .await
            else {
                return;
            };
            let mut stream = response.into_inner();
            while let Ok(Some(_)) = stream.message().await {
                events.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // The runtime (and the tap) lives as long as the benchmark.
    std::mem::forget(runtime);
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(1000) as u32;
    let seconds = args.get(1).copied().unwrap_or(20);
    let duration = Duration::from_secs(seconds);
    let mut mesh = Mesh::start().await;
    eprintln!("tap-bench: proxies from {}", mesh.proxy_program().display());
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.app("web-1", 8080).await;

    let with_tap = mesh.proxy_program().to_path_buf();
    let without_tap = std::env::var_os("MESH_PROXY_WITHOUT_TAP").map(std::path::PathBuf::from);
    let mut runs = vec!["tap off", "tap on, idle", "tapping every request"];
    match &without_tap {
        Some(program) => {
            eprintln!(
                "tap-bench: first run with proxies from {}",
                program.display()
            );
            mesh.run_proxies_from(program).await;
            runs.insert(0, WITHOUT_TAP);
        }
        None => eprintln!(
            "tap-bench: MESH_PROXY_WITHOUT_TAP not set: skipping the run without tap compiled in \
             (build one with `cargo build --release -p mesh-proxy --no-default-features --target-dir target/without-tap`)"
        ),
    }
    let mut rows = Vec::new();
    for run in runs {
        if run == "tap off" && without_tap.is_some() {
            mesh.run_proxies_from(&with_tap).await;
        }
        if run == "tap on, idle" {
            for side in [Side::Client, Side::Server] {
                mesh.set_proxy_env(side, "LINKERD2_PROXY_TAP_SVC_NAME", TAP_ID);
                mesh.restart_proxy(side).await;
            }
        }
        let events = Arc::new(AtomicU64::new(0));
        if run == "tapping every request" {
            let client_proxy = format!("{CLIENT_IP}:4190").parse().expect("addr");
            tap_everything(&mesh, server(4190), WEB_ID, events.clone()).await;
            tap_everything(&mesh, client_proxy, CLIENT_ID, events.clone()).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Warm the path up, then measure.
        http_load(&mesh, "http://10.96.0.10/", rate, Duration::from_secs(2)).await;
        let pids = mesh.proxy_pids();
        let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        let seen_before = events.load(Ordering::Relaxed);
        eprintln!("tap-bench: {run}, {seconds} s at {rate} rps");
        let (latencies, errors) = http_load(&mesh, "http://10.96.0.10/", rate, duration).await;
        let cpu: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
        let seen = events.load(Ordering::Relaxed) - seen_before;
        rows.push((run, latencies, errors, cpu, seen));
    }

    println!(
        "| run | requests | p50 (ms) | p99 (ms) | errors | CPU s per 1,000 requests (both proxies) | tap events read |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (run, latencies, errors, cpu, seen) in &rows {
        println!(
            "| {run} | {} | {:.3} | {:.3} | {errors} | {:.4} | {seen} |",
            latencies.len(),
            ms(percentile(latencies, 0.5)),
            ms(percentile(latencies, 0.99)),
            cpu * 1000.0 / latencies.len().max(1) as f64,
        );
    }
    let p99 = |i: usize| ms(percentile(&rows[i].1, 0.99));
    let cpu = |i: usize| rows[i].3 / rows[i].1.len().max(1) as f64;
    let base = usize::from(without_tap.is_some());
    println!();
    if base == 1 {
        println!(
            "Ratio of tap off to tap not compiled in: p99 {:.2}, CPU {:.2}.",
            p99(1) / p99(0).max(f64::EPSILON),
            cpu(1) / cpu(0).max(f64::EPSILON),
        );
    } else {
        println!("(No run without tap compiled in: MESH_PROXY_WITHOUT_TAP was not set.)");
    }
    println!(
        "p99 ratio to tap off: idle {:.2}, tapping {:.2}; CPU ratio: idle {:.2}, tapping {:.2}.",
        p99(base + 1) / p99(base).max(f64::EPSILON),
        p99(base + 2) / p99(base).max(f64::EPSILON),
        cpu(base + 1) / cpu(base).max(f64::EPSILON),
        cpu(base + 2) / cpu(base).max(f64::EPSILON),
    );
}

/// The run whose proxies were built without the `tap` feature.
const WITHOUT_TAP: &str = "tap not compiled in";
