//! `proxy-bench`: what two mesh proxies with mutual TLS add to a request,
//! measured in one run on this machine. Two pods in network namespaces (the
//! proxy tests' harness: `mesh-init` rules, `mesh-proxy` processes, a mock
//! control plane); the same applications are reached directly (on ports
//! iptables leaves alone) and through both proxies, at fixed request rates
//! (open loop: requests start on schedule whether or not earlier ones have
//! finished; latency counts from when a request was due), for HTTP/1.1
//! with small bodies, unary gRPC over HTTP/2, a gRPC server stream (the
//! application sends messages at the rate, each timed from when it was due)
//! and opaque TCP (lines echoed on one connection to a port marked
//! opaque). Reports added p50, p99 and p99.9,
//! proxy CPU per 1,000 rps, proxy RSS idle and under load, and the release
//! binary size, as a Markdown table.
//!
//! Run as root after `cargo build --release -p mesh-proxy -p mesh-bench`:
//! `target/release/proxy-bench [seconds per run, default 10] [--baseline
//! PATH]`. The baseline is another proxy configured the same way (by
//! Linkerd's `LINKERD2_PROXY_*` variables): another build of `mesh-proxy`,
//! or a stock linkerd2-proxy, the peer we measure ourselves against
//! (`MESH_PROXY_BASELINE` names it too; it is never part of this
//! repository). Both are certified by the same identity service and
//! discover through the same mock controller, which then serves what
//! Linkerd's control plane serves and a stock proxy needs: the default
//! policy for every inbound port, and each Service's outbound policy. With
//! a baseline, each row is measured for both proxies one after the other,
//! and a table of added p99 and CPU per 1,000 rps, ours against it, closes
//! the report; without one, the report says it measured ours alone.
//! `--saturation` adds, for each proxy and the direct path, the highest
//! rate sustained with a p99 under 10 ms; `--saturation-only` measures
//! that alone, and `--only http1|grpc|grpc-stream|tcp` one protocol.
//! `--allocations` adds the heap allocations each proxy makes per request
//! at 1,000 rps (counted by `perf` probes in runs of their own, since a
//! probe's cost would show in the CPU figures); `--allocations-only`
//! measures that alone.

use mesh_bench::{cpu_seconds, ms, percentile, rss_mib};
use mesh_test_util as support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use linkerd2_proxy_api::destination::DestinationProfile;
use support::{Mesh, Side, app, meshed, server};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Grpc,
    /// Opaque TCP: lines echoed on one connection (a port marked opaque).
    Tcp,
    /// A gRPC server stream: one call, the server sends `rate` messages a
    /// second, each timed from when it was due to leave.
    GrpcStream,
}

const PROTOCOLS: [Protocol; 4] = [
    Protocol::Http1,
    Protocol::Grpc,
    Protocol::GrpcStream,
    Protocol::Tcp,
];

impl Protocol {
    /// Its name on the command line (`--only NAME`).
    fn flag(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
            Protocol::GrpcStream => "grpc-stream",
        }
    }

    /// Its name in the report, the application reached directly (a port
    /// iptables leaves alone) and through the proxies (its Service's
    /// address).
    fn targets(self) -> (&'static str, &'static str, &'static str) {
        let (name, direct) = match self {
            Protocol::Http1 => ("HTTP/1.1", "10.77.0.2:9999"),
            Protocol::Grpc => ("gRPC (HTTP/2)", "10.77.0.2:9998"),
            Protocol::Tcp => ("opaque TCP", "10.77.0.2:9997"),
            Protocol::GrpcStream => ("gRPC streaming", "10.77.0.2:9996"),
        };
        (name, direct, self.service().0)
    }

    /// The Service the meshed runs call: its address, its name, and the
    /// port and pod of its one endpoint in the server pod.
    fn service(self) -> (&'static str, &'static str, u16, &'static str) {
        match self {
            Protocol::Http1 => (support::WEB_ADDR, support::WEB, 8080, "web-1"),
            Protocol::Grpc => (
                "10.96.0.11:9090",
                "grpc.test.svc.cluster.local:9090",
                9090,
                "grpc-1",
            ),
            Protocol::Tcp => (
                "10.96.0.12:7000",
                "db.test.svc.cluster.local:7000",
                7000,
                "db-1",
            ),
            Protocol::GrpcStream => (
                "10.96.0.13:9191",
                "stream.test.svc.cluster.local:9191",
                9191,
                "stream-1",
            ),
        }
    }
}

/// How many idle HTTP/1.1 connections the memory row holds open.
const IDLE_CONNECTIONS: usize = 1_000;

/// Opens `count` connections to `target`, sends one HTTP/1.1 request on
/// each and reads its response's head, and returns them still open (a
/// connection pool's idle connections, as the proxy in front of it sees
/// them).
async fn idle_connections(target: &'static str, count: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET / HTTP/1.1\r\nhost: {target}\r\n\r\n");
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut io = tokio::net::TcpStream::connect(target)
            .await
            .expect("connect to the meshed Service");
        io.write_all(request.as_bytes()).await.expect("request");
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = io.read(&mut buf).await.expect("response");
            assert!(
                n > 0,
                "the proxy closed an idle connection's first exchange"
            );
            response.extend_from_slice(&buf[..n]);
        }
        assert!(
            response.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&response)
        );
        held.push(io);
    }
    held
}

/// The latencies of one run, sorted, and its errors.
struct Run {
    latencies: Vec<Duration>,
    errors: usize,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

/// Sends `rate` requests per second for `duration` to `target` from the
/// client pod.
async fn load(
    mesh: &Mesh,
    protocol: Protocol,
    target: &'static str,
    rate: u32,
    duration: Duration,
) -> Run {
    match protocol {
        Protocol::Tcp => return mesh.client.run(tcp_load(target, rate, duration)).await,
        Protocol::GrpcStream => {
            return mesh.client.run(stream_load(target, rate, duration)).await;
        }
        Protocol::Http1 | Protocol::Grpc => {}
    }
    mesh.client
        .run(async move {
            let latencies = Arc::new(Mutex::new(Vec::new()));
            let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let grpc = match protocol {
                Protocol::Grpc => Some(
                    tonic::transport::Endpoint::from_shared(format!("http://{target}"))
                        .expect("endpoint")
                        .connect()
                        .await
                        .expect("connect gRPC"),
                ),
                Protocol::Http1 | Protocol::Tcp | Protocol::GrpcStream => None,
            };
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let end = Instant::now() + duration;
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let due = ticks.tick().await;
                if due >= end {
                    break;
                }
                let (http, grpc, latencies, errors) = (
                    http.clone(),
                    grpc.clone(),
                    latencies.clone(),
                    errors.clone(),
                );
                tasks.spawn(async move {
                    // Latency counts from when the request was due.
                    let started = due;
                    let ok = match grpc {
                        Some(channel) => {
                            let mut client =
                                linkerd2_proxy_api::identity::identity_client::IdentityClient::new(
                                    channel,
                                );
                            client
                                .certify(linkerd2_proxy_api::identity::CertifyRequest {
                                    token: b"small".to_vec(),
                                    ..Default::default()
                                })
                                .await
                                .is_ok()
                        }
                        None => {
                            let req = http::Request::get(format!("http://{target}/"))
                                .body(Full::default())
                                .expect("request");
                            matches!(support::request(&http, req).await, Ok((200, _)))
                        }
                    };
                    if ok {
                        latencies.lock().expect("latencies").push(started.elapsed());
                    } else {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
            let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
            latencies.sort();
            Run {
                latencies,
                errors: errors.load(std::sync::atomic::Ordering::Relaxed),
            }
        })
        .await
}

/// Writes a line to `target` `rate` times a second for `duration` on one
/// connection (open loop: lines are written on schedule whether or not
/// earlier ones came back) and times each echoed line from when it was
/// due; lines not back within `duration` and 5 s of when they were due
/// are errors.
async fn tcp_load(target: &'static str, rate: u32, duration: Duration) -> Run {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Ok(stream) = tokio::net::TcpStream::connect(target).await else {
        return Run {
            latencies: Vec::new(),
            errors: 1,
        };
    };
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let reader = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(read).lines();
        // The greeter's greeting first.
        let _ = lines.next_line().await;
        let mut latencies = Vec::new();
        while let Some(due) = due_rx.recv().await {
            match tokio::time::timeout_at(
                due + duration + Duration::from_secs(5),
                lines.next_line(),
            )
            .await
            {
                Ok(Ok(Some(_))) => latencies.push(due.elapsed()),
                _ => break,
            }
        }
        latencies
    });
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + duration;
    let mut sent = 0usize;
    loop {
        let due = ticks.tick().await;
        if due >= end || write.write_all(b"ping\n").await.is_err() {
            break;
        }
        let _ = due_tx.send(due);
        sent += 1;
    }
    drop(due_tx);
    let mut latencies = reader.await.unwrap_or_default();
    latencies.sort();
    Run {
        errors: sent - latencies.len(),
        latencies,
    }
}

/// Asks `target`'s streaming gRPC application for `rate` messages a second
/// on one call, reads those due within `duration`, and times each from
/// when the application was due to send it (one clock: both run on this
/// machine); those not arrived 5 s after the last was due are errors.
async fn stream_load(target: &'static str, rate: u32, duration: Duration) -> Run {
    use linkerd2_proxy_api::destination::{
        GetDestination, destination_client::DestinationClient, update,
    };
    let failed = Run {
        latencies: Vec::new(),
        errors: 1,
    };
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
        .expect("endpoint")
        .connect()
        .await
    else {
        return failed;
    };
    let every = 1_000_000 / u64::from(rate.max(1));
    let request = GetDestination {
        path: every.to_string(),
        ..GetDestination::default()
    };
    let Ok(response) = DestinationClient::new(channel).get(request).await else {
        return failed;
    };
    let mut stream = response.into_inner();
    // The messages due within `duration`, each given 5 s to arrive.
    let expected = (duration.as_secs_f64() * f64::from(rate)) as usize;
    let end = Instant::now() + duration + Duration::from_secs(5);
    let mut latencies = Vec::new();
    while latencies.len() < expected
        && let Ok(Ok(Some(message))) = tokio::time::timeout_at(end, stream.message()).await
    {
        let due = match message.update {
            Some(update::Update::Add(set)) => set
                .metric_labels
                .get(support::app::DUE_LABEL)
                .and_then(|nanos| nanos.parse::<u64>().ok()),
            _ => None,
        };
        if let Some(due) = due {
            let due = std::time::UNIX_EPOCH + Duration::from_nanos(due);
            latencies.push(
                std::time::SystemTime::now()
                    .duration_since(due)
                    .unwrap_or_default(),
            );
        }
    }
    latencies.sort();
    Run {
        errors: expected.saturating_sub(latencies.len()),
        latencies,
    }
}

/// The rates `--saturation` tries, in order, 5 s each.
const SATURATION_RATES: [u32; 9] = [
    2_000, 3_000, 4_000, 6_000, 8_000, 10_000, 13_000, 16_000, 20_000,
];

/// For the direct path and each of `programs`, the highest of
/// [`SATURATION_RATES`] it sustains for `protocol` with a p99 under 10 ms
/// and at most one error in a thousand, trying them in order until one
/// fails (`None`: not even the first). The candidates take turns at each
/// rate, the proxies in an order that alternates from one rate to the
/// next, each after a warm-up of its own: an overload leaves the machine
/// busy for a while (connections closing, sockets in TIME_WAIT), and
/// whichever ran next would otherwise always pay for it (measured: one
/// build run twice, 13,000 in first place and 16,000–20,000 in second).
async fn saturation(
    mesh: &mut Mesh,
    protocol: Protocol,
    programs: &[(String, std::path::PathBuf)],
) -> Vec<Option<u32>> {
    let (_, direct_target, meshed_target) = protocol.targets();
    // Index 0 is the direct path, 1.. the programs.
    let mut sustained = vec![None; programs.len() + 1];
    let mut going = vec![true; programs.len() + 1];
    for (step, rate) in SATURATION_RATES.into_iter().enumerate() {
        let mut turns: Vec<usize> = (1..=programs.len()).collect();
        if step % 2 == 1 {
            turns.reverse();
        }
        for candidate in std::iter::once(0).chain(turns) {
            if !going[candidate] {
                continue;
            }
            let target = match candidate.checked_sub(1) {
                None => direct_target,
                Some(index) => {
                    let program = &programs[index].1;
                    if mesh.proxy_program() != program.as_path() {
                        mesh.run_proxies_from(program).await;
                    }
                    meshed_target
                }
            };
            // Warm up: connections, discovery and certificates are in place.
            load(mesh, protocol, target, 1000, Duration::from_secs(1)).await;
            let run = load(mesh, protocol, target, rate, Duration::from_secs(5)).await;
            let total = run.latencies.len() + run.errors;
            let p99 = run.percentile(0.99);
            if run.errors * 1000 > total || p99 > Duration::from_millis(10) {
                eprintln!(
                    "proxy-bench: {target} at {rate} rps: p99 {:.3} ms, {} errors of {total}",
                    ms(p99),
                    run.errors
                );
                going[candidate] = false;
                // Let the overload's aftermath pass before the next run.
                tokio::time::sleep(Duration::from_secs(3)).await;
            } else {
                sustained[candidate] = Some(rate);
            }
        }
        if !going.contains(&true) {
            break;
        }
    }
    sustained
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(10);
    let baseline = args
        .iter()
        .position(|a| a == "--baseline")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("MESH_PROXY_BASELINE").ok())
        .map(std::path::PathBuf::from);
    if let Some(baseline) = &baseline {
        assert!(
            baseline.exists(),
            "the baseline proxy {} does not exist",
            baseline.display()
        );
    }
    // `--saturation-only`: the saturation table alone (an A/B of a change
    // that matters at overload, in minutes rather than half an hour).
    let saturation_only = args.iter().any(|a| a == "--saturation-only");
    let with_saturation = saturation_only || args.iter().any(|a| a == "--saturation");
    let allocations_only = args.iter().any(|a| a == "--allocations-only");
    let with_allocations = allocations_only || args.iter().any(|a| a == "--allocations");
    // `--only NAME`: measure one protocol (http1, grpc, grpc-stream, tcp).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args.get(i + 1).map(String::as_str).unwrap_or_default());
    let measured: Vec<Protocol> = PROTOCOLS
        .into_iter()
        .filter(|p| only.is_none_or(|name| name == p.flag()))
        .collect();
    assert!(
        !measured.is_empty(),
        "--only {}: expected one of {:?}",
        only.unwrap_or_default(),
        PROTOCOLS.map(Protocol::flag)
    );
    let duration = Duration::from_secs(seconds);
    let mut mesh = Mesh::start().await;
    mesh.serve_default_policies();
    // Each Service as the control plane serves it, what a stock
    // linkerd2-proxy needs (its outbound policy) included: mesh-proxy does
    // without. The TCP one is opaque: the profile, the Service's policy and
    // the pod's port policy all say so, as they do for
    // `config.linkerd.io/opaque-ports`.
    for protocol in PROTOCOLS {
        let (address, name, port, pod) = protocol.service();
        let opaque = protocol == Protocol::Tcp;
        mesh.service(
            address,
            name,
            DestinationProfile {
                opaque_protocol: opaque,
                ..DestinationProfile::default()
            },
        );
        mesh.state.set_endpoints(name, meshed(&[(port, pod)]));
        mesh.serve_service_policy(address, name, opaque);
        if opaque {
            mesh.serve_opaque_port_policy(port);
        }
    }
    mesh.server
        .run(async {
            app::App::serve("web", server(8080)).await;
            app::App::serve("web", server(9999)).await;
            app::Grpc::serve(server(9090)).await;
            app::Grpc::serve(server(9998)).await;
            app::greeter("db-1", server(7000)).await;
            app::GrpcStream::serve(server(9191)).await;
            app::GrpcStream::serve(server(9996)).await;
            app::greeter("db-1", server(9997)).await;
        })
        .await;
    let this_build = mesh.proxy_program().to_path_buf();
    let mut programs = vec![("this build".to_owned(), this_build.clone())];
    match baseline {
        Some(baseline) => {
            let name = baseline
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "baseline".to_owned());
            programs.push((name, baseline));
        }
        None => eprintln!(
            "proxy-bench: no baseline (--baseline PATH or MESH_PROXY_BASELINE, e.g. a stock linkerd2-proxy): skipped the comparison, measuring this build only"
        ),
    }
    // Each proxy's RSS when it has started and served nothing yet.
    let mut idle = vec![Some(mesh.proxy_pids().map(rss_mib)), None];

    if !saturation_only && !allocations_only {
        println!(
            "| protocol | rate (rps) | proxy | direct p50 / p99 / p99.9 (ms) | meshed p50 / p99 / p99.9 (ms) | added p50 / p99 / p99.9 (ms) | proxy CPU per 1,000 rps (vCPU, client / server) | proxy RSS under load (MiB, client / server) | errors |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let mut compared = Vec::new();
        for &protocol in &measured {
            let (name, direct_target, meshed_target) = protocol.targets();
            for rate in [1000u32, 5000] {
                // Each build is measured right after the other, each against a
                // direct run of its own, so drift on a shared machine hits both.
                let mut row = Vec::new();
                for (index, (label, program)) in programs.iter().enumerate() {
                    if mesh.proxy_program() != program.as_path() {
                        mesh.run_proxies_from(program).await;
                        if idle[index].is_none() {
                            idle[index] = Some(mesh.proxy_pids().map(rss_mib));
                        }
                    }
                    let pids = mesh.proxy_pids();
                    load(&mesh, protocol, meshed_target, rate, Duration::from_secs(1)).await;
                    let direct = load(&mesh, protocol, direct_target, rate, duration).await;
                    let before = pids.map(cpu_seconds);
                    let meshed = load(&mesh, protocol, meshed_target, rate, duration).await;
                    let after = pids.map(cpu_seconds);
                    let per_krps = |i: usize| {
                        (after[i] - before[i]) / seconds as f64 / (f64::from(rate) / 1000.0)
                    };
                    let added = |p: f64| meshed.percentile(p).saturating_sub(direct.percentile(p));
                    // p50 / p99 / p99.9 in ms.
                    let tails = |at: &dyn Fn(f64) -> Duration| {
                        format!(
                            "{:.3} / {:.3} / {:.3}",
                            ms(at(0.5)),
                            ms(at(0.99)),
                            ms(at(0.999))
                        )
                    };
                    println!(
                        "| {name} | {rate} | {label} | {} | {} | {} | {:.3} / {:.3} | {:.1} / {:.1} | {} / {} |",
                        tails(&|p| direct.percentile(p)),
                        tails(&|p| meshed.percentile(p)),
                        tails(&added),
                        per_krps(0),
                        per_krps(1),
                        rss_mib(pids[0]),
                        rss_mib(pids[1]),
                        direct.errors,
                        meshed.errors,
                    );
                    row.push((ms(added(0.99)), per_krps(0) + per_krps(1)));
                }
                compared.push((name, rate, row));
            }
        }
        println!();
        let size = |program: &std::path::Path| {
            std::fs::metadata(program).map(|m| m.len()).unwrap_or(0) as f64 / (1024.0 * 1024.0)
        };
        for ((name, program), idle) in programs.iter().zip(&idle) {
            let [client, server] = idle.unwrap_or_default();
            println!(
                "{name}: {}, {:.1} MiB; RSS idle: client {client:.1} MiB, server {server:.1} MiB",
                program.display(),
                size(program)
            );
        }
        if let Some((name, _)) = programs.get(1) {
            println!();
            println!(
                "| protocol | rate (rps) | added p99 (ms), this build / {name} | CPU per 1,000 rps (vCPU, both proxies), this build / {name} |"
            );
            println!("|---|---|---|---|");
            for (name, rate, row) in compared {
                if let [(p99, cpu), (base_p99, base_cpu)] = row[..] {
                    println!(
                        "| {name} | {rate} | {p99:.3} / {base_p99:.3} | {cpu:.3} / {base_cpu:.3} |"
                    );
                }
            }
        }
        println!();
        println!(
            "Idle HTTP/1.1 connections: the client proxy's RSS before and after the client opens {IDLE_CONNECTIONS} connections to the meshed Service, sends one request on each and keeps them open."
        );
        println!();
        println!(
            "| proxy | RSS before (MiB) | RSS with the connections open (MiB) | per connection (KiB) |"
        );
        println!("|---|---|---|---|");
        let (_, _, meshed_target) = Protocol::Http1.targets();
        for (label, program) in &programs {
            mesh.run_proxies_from(program).await;
            let client = mesh.proxy_pid(Side::Client);
            let before = rss_mib(client);
            let held = mesh
                .client
                .run(idle_connections(meshed_target, IDLE_CONNECTIONS))
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let after = rss_mib(client);
            drop(held);
            println!(
                "| {label} | {before:.1} | {after:.1} | {:.1} |",
                (after - before) * 1024.0 / IDLE_CONNECTIONS as f64
            );
        }
    }
    if with_allocations {
        allocations_table(&mut mesh, &measured, &programs, duration).await;
    }
    if with_saturation && !allocations_only {
        println!();
        println!(
            "Saturation: the highest rate sustained with p99 under 10 ms (of {SATURATION_RATES:?} rps, 5 s each after 1 s at 1,000 rps, the candidates taking turns at each rate; each proxy runs one worker thread, so this is the rate one proxy core sustains)."
        );
        println!();
        let names: Vec<&str> = programs.iter().map(|(name, _)| name.as_str()).collect();
        println!("| protocol | direct | {} |", names.join(" | "));
        println!("|---|---|{}", "---|".repeat(names.len()));
        let mut rows = Vec::new();
        for &protocol in &measured {
            rows.push(saturation(&mut mesh, protocol, &programs).await);
        }
        let shown = |rate: &Option<u32>| {
            rate.map_or(format!("< {}", SATURATION_RATES[0]), |r| r.to_string())
        };
        for (row, protocol) in rows.iter().zip(&measured) {
            let (name, _, _) = protocol.targets();
            let cells: Vec<String> = row.iter().map(shown).collect();
            println!("| {name} | {} |", cells.join(" | "));
        }
    }
}

/// Heap allocations per request of each proxy, at 1,000 rps for
/// `duration`: each candidate, each protocol, counted by `perf` probes.
async fn allocations_table(
    mesh: &mut Mesh,
    measured: &[Protocol],
    programs: &[(String, std::path::PathBuf)],
    duration: Duration,
) {
    const RATE: u32 = 1000;
    println!();
    println!(
        "Heap allocations per request (malloc, calloc and realloc calls, counted by perf probes on the C library; {RATE} rps for {} s). For gRPC streaming a request is one message; for opaque TCP one line.",
        duration.as_secs()
    );
    println!();
    println!("| protocol | proxy | allocations per request (client / server) |");
    println!("|---|---|---|");
    mesh_bench::allocations::add_probes(mesh.proxy_pid(Side::Client))
        .expect("adding the allocation probes");
    for &protocol in measured {
        let (name, _, meshed_target) = protocol.targets();
        for (label, program) in programs {
            if mesh.proxy_program() != program.as_path() {
                mesh.run_proxies_from(program).await;
            }
            load(mesh, protocol, meshed_target, RATE, Duration::from_secs(1)).await;
            let mut counting = Vec::new();
            for pid in mesh.proxy_pids() {
                counting.push(
                    mesh_bench::allocations::Counting::start(pid)
                        .await
                        .expect("counting allocations"),
                );
            }
            let run = load(mesh, protocol, meshed_target, RATE, duration).await;
            let counted: Vec<u64> = counting
                .into_iter()
                .map(|counting| counting.stop().expect("counting allocations"))
                .collect();
            let [client, server]: [u64; 2] = counted.try_into().expect("one count per proxy");
            let requests = run.latencies.len().max(1) as f64;
            // Nothing through the C library's allocator is not "none": the
            // program has its own (a stock linkerd2-proxy links jemalloc).
            let counted = if client + server == 0 {
                "not counted: it does not allocate through the C library's malloc".to_owned()
            } else {
                format!(
                    "{:.1} / {:.1}",
                    client as f64 / requests,
                    server as f64 / requests
                )
            };
            println!("| {name} | {label} | {counted} |");
        }
    }
}
