//! `flood-bench`: what a flood costs a well-behaved client. Two pods in
//! network namespaces (the proxy tests' harness); a client calls the
//! server pod through both proxies at a fixed rate (open loop), first
//! quietly, then while an attacker in the client pod, talking past its
//! proxy, holds 5,000 connections that sent a ClientHello and stalled and
//! opens an HTTP/2 connection a second with 10,000 streams on it
//! (`mesh_test_util::attack`). Reports the client's p50/p99 and errors in
//! both runs, and the server proxy's RSS before, at its peak under attack
//! and after the attack, as a Markdown table.
//!
//! Run as root after `cargo build --release -p mesh-proxy -p mesh-bench`:
//! `target/release/flood-bench [seconds per run, default 20] [hellos |
//! streams]` (one attack alone; both by default). `MESH_PROXY_INBOUND_*`
//! variables in its environment are passed to the server proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use linkerd2_proxy_api::destination::DestinationProfile;
use mesh_bench::{http_load, ms, percentile, rss_mib};
use mesh_test_util::attack::{open_streams, stalled_handshakes};
use mesh_test_util::{Mesh, Side, meshed};

const RATE: u32 = 100;
const STALLED: usize = 5_000;
const STREAMS: u32 = 10_000;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20);
    let only = |attack: &str| args.iter().any(|a| a == attack);
    let (hellos, streams) = match (only("hellos"), only("streams")) {
        (false, false) => (STALLED, STREAMS),
        (h, s) => (if h { STALLED } else { 0 }, if s { STREAMS } else { 0 }),
    };
    let duration = Duration::from_secs(seconds);
    let mut mesh = Mesh::start().await;
    // The server proxy's inbound settings under test may be set from the
    // environment (`MESH_PROXY_INBOUND_TLS_HANDSHAKE_BURST=1 flood-bench`).
    let settings: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| name.starts_with("MESH_PROXY_INBOUND_"))
        .collect();
    if !settings.is_empty() {
        for (name, value) in &settings {
            eprintln!("flood-bench: server proxy with {name}={value}");
            mesh.set_proxy_env(Side::Server, name, value);
        }
        mesh.restart_proxy(Side::Server).await;
    }
    eprintln!(
        "flood-bench: proxies from {}",
        mesh.proxy_program().display()
    );
    mesh.web(DestinationProfile::default(), meshed(&[(8080, "web-1")]));
    mesh.app("web-1", 8080).await;
    let server = mesh.proxy_pid(Side::Server);
    // Warm the path up, then the quiet run.
    http_load(&mesh, "http://10.96.0.10/", RATE, Duration::from_secs(2)).await;
    let rss_before = rss_mib(server);
    eprintln!("flood-bench: quiet run, {seconds} s at {RATE} rps");
    let (quiet, quiet_errors) = http_load(&mesh, "http://10.96.0.10/", RATE, duration).await;

    eprintln!(
        "flood-bench: attacked run: {hellos} stalled handshakes, {streams} streams per HTTP/2 connection"
    );
    let attacking = Arc::new(AtomicBool::new(true));
    // The attacker is another program in the client pod: it gets its own
    // runtime, so that its work does not delay the load generator's.
    let attacker = mesh.client.new_runtime();
    let stalled = attacker.spawn(stalled_handshakes(hellos));
    let flood = attacker.spawn({
        let attacking = attacking.clone();
        async move {
            let mut connections = 0u32;
            // One connection a second, each opening all its streams at once
            // (h2 closes it once it has refused too many).
            while streams > 0 && attacking.load(Ordering::Relaxed) {
                let next = tokio::time::Instant::now() + Duration::from_secs(1);
                open_streams(streams, "/delay/1000", Duration::from_secs(1)).await;
                connections += 1;
                tokio::time::sleep_until(next).await;
            }
            connections
        }
    });
    let peak = tokio::spawn(async move {
        let mut peak = 0.0f64;
        for _ in 0..(seconds * 4 + 8) {
            peak = peak.max(rss_mib(server));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        peak
    });
    let (attacked, attacked_errors) = http_load(&mesh, "http://10.96.0.10/", RATE, duration).await;
    attacking.store(false, Ordering::Relaxed);
    let held = stalled.await.expect("the stalled handshakes");
    let connections = flood.await.expect("the stream floods");
    let peak = peak.await.expect("the RSS samples");
    drop(held);
    // The detection timeout (10 s by default) closes what is left.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let rss_after = rss_mib(server);

    println!("| run | requests | p50 (ms) | p99 (ms) | errors |");
    println!("|---|---|---|---|---|");
    for (name, latencies, errors) in [
        ("quiet", &quiet, quiet_errors),
        ("under attack", &attacked, attacked_errors),
    ] {
        println!(
            "| {name} | {} | {:.3} | {:.3} | {errors} |",
            latencies.len(),
            ms(percentile(latencies, 0.5)),
            ms(percentile(latencies, 0.99)),
        );
    }
    println!();
    println!(
        "p99 under attack / quiet: {:.2}. Attack: {hellos} stalled handshakes, {connections} HTTP/2 connections of {streams} streams.",
        ms(percentile(&attacked, 0.99)) / ms(percentile(&quiet, 0.99)).max(f64::EPSILON)
    );
    println!(
        "Server proxy RSS: {rss_before:.1} MiB before, {peak:.1} MiB at the peak under attack, {rss_after:.1} MiB after."
    );
}
