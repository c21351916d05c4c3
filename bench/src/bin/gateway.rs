//! `gateway-bench`: a call across a WAN through the multicluster gateway,
//! measured in one run. Two pods in network namespaces (the proxy tests'
//! harness: `mesh-init` rules, `mesh-proxy` processes, a mock control
//! plane); the server pod's proxy is a gateway. The pods are joined by our
//! WAN forwarder (`mesh-node wan`, the local clusters' own: one-way delay
//! and loss on every packet, TCP and UDP alike).
//!
//! 1. At 20 ms one-way delay, p50 / p99 of a request from the client pod
//!    straight to the server's application (a port iptables leaves alone),
//!    and through the client's proxy and the gateway (mirror Service →
//!    gateway → application), over TCP and over QUIC.
//! 2. TCP against QUIC to the gateway at 0 % and 2 % loss, for small
//!    responses (32 requests in flight) and 1 MiB ones (8 in flight):
//!    requests per second, MiB/s, p50, p99, failures. QUIC runs twice,
//!    with each congestion controller worth comparing (BBR, the proxies'
//!    default, and Cubic, quinn's); each run starts on new connections
//!    (both proxies restarted with that controller), warmed for a second
//!    at that row's delay and loss.
//!
//! Run as root after `cargo build --release -p mesh-proxy -p mesh-bench
//! -p mesh-clusters`: `target/release/gateway-bench [seconds per run,
//! default 10]`.

use mesh_bench::{ms, percentile};
use mesh_test_util as support;

use std::time::Duration;

use support::wan::{self, DIRECT_URL, QUIC_URL, Run, TCP_URL, Wan, load};
use support::{Mesh, Side};

/// The response sizes part 2 compares: a small body, and 1 MiB.
const BODIES: [(&str, &str, usize, f64); 2] =
    [("small", "/", 32, 0.0), ("1 MiB", "/bytes/1048576", 8, 1.0)];

/// The runs of each row of part 2: TCP, then QUIC with each congestion
/// controller (`MESH_PROXY_QUIC_CONGESTION_CONTROL` of both proxies; TCP's
/// is the kernel's whatever the setting).
const TRANSPORT_RUNS: [(&str, &str); 3] = [
    ("TCP", "bbr"),
    ("QUIC, BBR", "bbr"),
    ("QUIC, Cubic", "cubic"),
];

/// A run's latency at percentile `p`.
fn at(run: &Run, p: f64) -> Duration {
    percentile(&run.latencies, p)
}

/// What a gateway's `quic_path_*` metrics say of its connections: the
/// share of packets lost, the mean round trip and the window now.
fn quic_path(metrics: &str) -> String {
    let inbound = ["direction=\"inbound\""];
    let sample = |name| support::sample(metrics, name, &inbound);
    let sent = sample("quic_path_sent_packets_total").max(1.0);
    let lost = sample("quic_path_lost_packets_total");
    let rtt = sample("quic_path_rtt_seconds_sum") / sample("quic_path_rtt_seconds_count").max(1.0);
    format!(
        "{:.2} % of {sent:.0}, {:.1} ms, {:.0} KiB",
        100.0 * lost / sent,
        rtt * 1e3,
        sample("quic_path_congestion_window_bytes") / 1024.0
    )
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let duration = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut mesh = Mesh::start().await;
        let wan = Wan::join(&mesh).await;
        let (direct_url, tcp_url, quic_url) = (DIRECT_URL, TCP_URL, QUIC_URL);

        // Warm: discovery, connections, the QUIC handshake.
        for url in [direct_url, tcp_url, quic_url] {
            let warm = load(&mesh, url, 1, Duration::from_secs(1)).await;
            assert!(
                warm.errors == 0 && !warm.latencies.is_empty(),
                "{url} answers: {} errors {:?}\n{}",
                warm.errors,
                warm.failures,
                mesh.logs()
            );
        }

        wan.set("delay=20ms loss=0").await;
        println!("At 20 ms one-way WAN delay (40 ms round trip), 4 requests in flight, {seconds} s each:\n");
        println!("| path | p50 (ms) | p99 (ms) | added p50 / p99 vs direct (ms) | failures |");
        println!("|---|---|---|---|---|");
        let base = load(&mesh, direct_url, 4, duration).await;
        println!(
            "| direct (no proxy) | {:.1} | {:.1} | — | {} |",
            ms(at(&base, 0.5)),
            ms(at(&base, 0.99)),
            base.errors
        );
        for (label, url) in [("through the gateway, TCP", tcp_url), ("through the gateway, QUIC", quic_url)] {
            let run = load(&mesh, url, 4, duration).await;
            println!(
                "| {label} | {:.1} | {:.1} | {:.1} / {:.1} | {} |",
                ms(at(&run, 0.5)),
                ms(at(&run, 0.99)),
                ms(at(&run, 0.5).saturating_sub(at(&base, 0.5))),
                ms(at(&run, 0.99).saturating_sub(at(&base, 0.99))),
                run.errors
            );
        }

        // The kernel's TCP congestion control is the machine's (netns inherit
        // it); QUIC's is the proxies' setting: say which each used.
        let tcp_congestion = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            .map_or_else(|e| format!("unknown ({e})"), |name| name.trim().to_owned());
        println!("\nTCP against QUIC to the gateway, 20 ms one-way delay, {seconds} s each (small responses 32 requests in flight, 1 MiB ones 8; TCP congestion control: {tcp_congestion}, the kernel's; QUIC: the proxies' MESH_PROXY_QUIC_CONGESTION_CONTROL, named in the row). Each run starts on new connections (both proxies restarted), warmed for 1 s at its delay and loss:\n");
        println!("| response | loss | transport | requests/s | MiB/s | p50 (ms) | p99 (ms) | failures | / TCP requests/s | gateway's QUIC: lost packets, mean RTT, window |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for (body, path, in_flight, mib) in BODIES {
            let (tcp_body_url, quic_body_url) = (wan::url(tcp_url, path), wan::url(quic_url, path));
            for loss in ["0", "2%"] {
                wan.set(&format!("delay=20ms loss={loss}")).await;
                // Each run measures the link it names: new connections (a
                // congestion window or minimum round trip learnt in the run
                // before would carry over), warmed for a second at this
                // row's delay and loss.
                let mut runs = Vec::new();
                for (name, congestion) in TRANSPORT_RUNS {
                    let url = if name == "TCP" { tcp_body_url } else { quic_body_url };
                    for side in [Side::Client, Side::Server] {
                        mesh.set_proxy_env(side, "MESH_PROXY_QUIC_CONGESTION_CONTROL", congestion);
                        mesh.restart_proxy(side).await;
                    }
                    load(&mesh, url, in_flight, Duration::from_secs(1)).await;
                    let run = load(&mesh, url, in_flight, duration).await;
                    // What QUIC itself saw on the gateway (warm-up included).
                    let path = if name == "TCP" {
                        String::new()
                    } else {
                        quic_path(&mesh.server_metrics().await)
                    };
                    runs.push((name, run, path));
                }
                let tcp_rps = runs[0].1.rps().max(f64::EPSILON);
                for (name, run, path) in &runs {
                    println!(
                        "| {body} | {loss} | {name} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} | {path} |",
                        run.rps(),
                        run.rps() * mib,
                        ms(at(run, 0.5)),
                        ms(at(run, 0.99)),
                        run.errors,
                        if *name == "TCP" {
                            String::new()
                        } else {
                            format!("{:.2}", run.rps() / tcp_rps)
                        }
                    );
                }
                for (name, run, _) in &runs {
                    if !run.failures.is_empty() {
                        eprintln!("{body} at {loss} loss over {name}, failures: {:?}", run.failures);
                    }
                }
            }
        }
        let client = mesh.client_metrics().await;
        let quic = support::sample(
            &client,
            "quic_connections_total",
            &["direction=\"outbound\"", "outcome=\"connected\""],
        );
        println!("\nQUIC connections the client's proxy made: {quic}");
        drop(wan);
    });
}
