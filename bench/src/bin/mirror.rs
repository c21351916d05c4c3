//! `mirror-bench`: the service mirror (`mesh-controller mirror`, the
//! release binary, as its own process) against a real kube-apiserver on
//! this host, which plays both the linked cluster and this one:
//!
//! 1. time from the export label on a Service to its mirror's Endpoints
//!    with a ready gateway address, p50 / p99 / max over 100 Services, one
//!    at a time (what a user waits for after `kubectl label`);
//! 2. the mirror's memory (RSS) idle, and with 1 000 exported Services
//!    mirrored, and how long mirroring those 1 000 took;
//! 3. a flood: the linked cluster exports 10 000 Services in all against
//!    the mirror's cap of 2 000 (`MESH_MIRROR_MAX_SERVICES`): how many it
//!    mirrors, what the Link reports, and its memory then.
//!
//! Run as root after `cargo build --release -p mesh-controller -p mesh-bench`:
//! `target/release/mirror-bench`.

use mesh_bench::{ms, percentile, rss_mib};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const NS: &str = "mc";
const EXPORTS: &str = "exports";
const LINK: &str = "bench";
/// The mirror's cap on mirrored Services in the flood.
const FLOOD_CAP: usize = 2000;
/// How many Services the linked cluster exports in the flood, in all.
const FLOOD_EXPORTS: usize = 10_000;

/// This host's address on its default route (the API server refuses
/// loopback addresses in Endpoints, so the probe responder listens there).
fn host_ip() -> anyhow::Result<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.connect("192.0.2.1:9")?;
    Ok(socket.local_addr()?.ip())
}

/// A gateway probe endpoint that always answers 200.
async fn probe_responder(ip: IpAddr) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    Ok(port)
}

/// Exported Services `names`, created 16 at a time.
async fn export_all(
    client: &kube::Client,
    names: impl Iterator<Item = String>,
) -> anyhow::Result<()> {
    let names: Vec<String> = names.collect();
    futures::stream::iter(names.iter())
        .map(|name| service(client, name, true))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// A Service `name` (exported or not) with one ready endpoint.
async fn service(client: &kube::Client, name: &str, exported: bool) -> anyhow::Result<()> {
    let labels = if exported {
        serde_json::json!({"app": name, "mirror.linkerd.io/exported": "true"})
    } else {
        serde_json::json!({"app": name})
    };
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }))?;
    Api::<Service>::namespaced(client.clone(), EXPORTS)
        .create(&PostParams::default(), &service)
        .await?;
    let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "subsets": [{"addresses": [{"ip": "10.10.0.9"}], "ports": [{"name": "http", "port": 8080}]}],
    }))?;
    Api::<Endpoints>::namespaced(client.clone(), EXPORTS)
        .create(&PostParams::default(), &endpoints)
        .await?;
    Ok(())
}

fn ready(endpoints: &Endpoints) -> bool {
    endpoints
        .subsets
        .iter()
        .flatten()
        .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()))
}

struct Mirror(Child);

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let api = mesh_bench::ApiServer::start(&[NS, EXPORTS]).await?;
    let client = api.client.clone();

    let ip = host_ip()?;
    let probe_port = probe_responder(ip).await?;
    let kubeconfig = std::fs::read_to_string(api.kubeconfig())?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("cluster-credentials-{LINK}")},
        "type": "mirror.linkerd.io/remote-kubeconfig",
        "stringData": {"kubeconfig": kubeconfig},
    }))?;
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await?;
    let link: mesh_api::crds::link::Link = serde_json::from_value(serde_json::json!({
        "apiVersion": "multicluster.linkerd.io/v1alpha3",
        "kind": "Link",
        "metadata": {"name": LINK},
        "spec": {
            "targetClusterName": LINK,
            "clusterCredentialsSecret": format!("cluster-credentials-{LINK}"),
            "gatewayAddress": ip.to_string(),
            "gatewayPort": "4143",
            "gatewayIdentity": "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
            "probeSpec": {"path": "/ready", "port": probe_port.to_string(), "period": "3s"},
        },
    }))?;
    Api::<mesh_api::crds::link::Link>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &link)
        .await?;

    let controller = std::env::current_exe()?.with_file_name("mesh-controller");
    anyhow::ensure!(
        controller.exists(),
        "{} is missing: cargo build --release -p mesh-controller",
        controller.display()
    );
    let mirror = Mirror(
        Command::new(&controller)
            .args(["mirror", "--link", LINK, "--namespace", NS])
            .arg(format!(
                "--admin-listen={}",
                SocketAddr::from(([127, 0, 0, 1], 0))
            ))
            .env("KUBECONFIG", api.kubeconfig())
            .env("MESH_MIRROR_MAX_SERVICES", FLOOD_CAP.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let pid = mirror.0.id();

    // Everything the mirror writes, as it happens.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let watched = Api::<Endpoints>::namespaced(client.clone(), EXPORTS);
    tokio::spawn(async move {
        let config =
            watcher::Config::default().labels(&format!("mirror.linkerd.io/cluster-name={LINK}"));
        let mut events = watcher::watcher(watched, config).boxed();
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(e) | watcher::Event::InitApply(e)) = event
                && ready(&e)
                && let Some(name) = e.metadata.name
            {
                let _ = seen_tx.send(name);
            }
        }
    });
    // The mirror is up once its Link says it is valid.
    let links = Api::<mesh_api::crds::link::Link>::namespaced(client.clone(), NS);
    let started = Instant::now();
    loop {
        let status = links.get(LINK).await?.status;
        if status.is_some_and(|s| s.0.contains_key("conditions")) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the mirror never reported on its Link"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(pid);

    let services = Api::<Service>::namespaced(client.clone(), EXPORTS);
    let mut latencies = Vec::new();
    for i in 0..100 {
        let name = format!("lat-{i}");
        service(&client, &name, false).await?;
        let mirror_name = format!("{name}-{LINK}");
        let t0 = Instant::now();
        // The label on the Endpoints too, as Kubernetes' endpoints
        // controller copies it for a Service with a selector.
        let export = Patch::Merge(
            serde_json::json!({"metadata": {"labels": {"mirror.linkerd.io/exported": "true"}}}),
        );
        Api::<Endpoints>::namespaced(client.clone(), EXPORTS)
            .patch(&name, &PatchParams::default(), &export)
            .await?;
        services
            .patch(&name, &PatchParams::default(), &export)
            .await?;
        loop {
            let seen = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("{mirror_name} not ready within 30 s"))?;
            if seen.as_deref() == Some(mirror_name.as_str()) {
                break;
            }
        }
        latencies.push(t0.elapsed());
    }
    latencies.sort();

    let t0 = Instant::now();
    export_all(&client, (0..1000).map(|i| format!("many-{i}"))).await?;
    let created = t0.elapsed();
    loop {
        let count = Api::<Endpoints>::namespaced(client.clone(), EXPORTS)
            .list(&ListParams::default().labels(&format!("mirror.linkerd.io/cluster-name={LINK}")))
            .await?
            .items
            .iter()
            .filter(|e| ready(e))
            .count();
        if count >= 1100 {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(300),
            "only {count} of 1 100 mirrors after 5 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mirrored = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded = rss_mib(pid);

    // The flood: exports up to FLOOD_EXPORTS in all, past the cap.
    let t0 = Instant::now();
    export_all(&client, (1100..FLOOD_EXPORTS).map(|i| format!("flood-{i}"))).await?;
    let flooded = t0.elapsed();
    let over = FLOOD_EXPORTS - FLOOD_CAP;
    loop {
        let status = links.get(LINK).await?.status;
        let total = status
            .as_ref()
            .and_then(|s| s.0.get("rejectedServicesTotal"))
            .and_then(serde_json::Value::as_u64);
        if total == Some(u64::try_from(over)?) {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(600),
            "the Link reports {total:?} over the cap, not {over}, 10 min after the flood"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reported = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mirrors = Api::<Service>::namespaced(client.clone(), EXPORTS)
        .list(&ListParams::default().labels(&format!("mirror.linkerd.io/cluster-name={LINK}")))
        .await?
        .items
        .len();
    let flood_rss = rss_mib(pid);

    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| export label → mirror Endpoints ready, p50 / p99 / max (100 Services, one at a time) | {:.0} ms / {:.0} ms / {:.0} ms |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
    );
    println!(
        "| 1 000 exported Services created (16 at a time) / all mirrored and ready | {:.1} s / {:.1} s |",
        created.as_secs_f64(),
        mirrored.as_secs_f64()
    );
    println!("| mirror RSS idle (no exported Service) | {idle:.1} MiB |");
    println!("| mirror RSS with 1 100 exported Services mirrored | {loaded:.1} MiB |");
    println!(
        "| per mirrored Service | {:.1} KiB |",
        (loaded - idle) * 1024.0 / 1100.0
    );
    println!(
        "| flood: {FLOOD_EXPORTS} exported Services (cap {FLOOD_CAP}) created / Link reports {over} over the cap | {:.1} s / {:.1} s |",
        flooded.as_secs_f64(),
        reported.as_secs_f64()
    );
    println!("| flood: mirror Services in this cluster | {mirrors} |");
    println!("| flood: mirror RSS | {flood_rss:.1} MiB |");
    drop(mirror);
    Ok(())
}
