//! `mesh viz dashboard` as a user runs it: the port-forward to viz's web
//! component answers the page and its API with what the cluster holds
//! (podinfo's golden metrics, the scenario's TrafficSplit with its
//! weights), and refuses a request whose `Host` is another site's name
//! (the DNS-rebinding attack on a local port-forward).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::provider::{Cluster, Provider};

/// The longest answer read.
const MAX_ANSWER: usize = 8 << 20;

/// Runs the dashboard's checks against namespace `ns` of west.
pub async fn dashboard(p: &impl Provider, ns: &str) -> anyhow::Result<()> {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let binary = mesh_clusters::testing::mesh_bin_dir()?.join("mesh");
    let port_text = port.to_string();
    let _forward = Command::new(&binary)
        .args([
            "--kubeconfig",
            &p.kubeconfig().display().to_string(),
            "--context",
            &p.context(Cluster::West),
            "viz",
            "dashboard",
            "--show",
            "url",
            "--address",
            "127.0.0.1",
            "--port",
            &port_text,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("running {}: {e}", binary.display()))?;
    let authority = format!("127.0.0.1:{port}");
    let get = |path: String| {
        let authority = authority.clone();
        async move {
            mesh_core::http_get::get(&authority, &path, Duration::from_secs(20), MAX_ANSWER)
                .await
                .map_err(|e| anyhow::anyhow!("GET {path} through mesh viz dashboard: {e}"))
        }
    };
    // The web pod may still be starting, and Prometheus must have a
    // window of podinfo's traffic.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let workloads = loop {
        let answer = get(format!("/api/workloads?namespace={ns}")).await;
        match answer.and_then(|body| Ok(serde_json::from_str::<serde_json::Value>(&body)?)) {
            Ok(json) => {
                let podinfo = json["rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["name"] == "podinfo" && r["kind"] == "deployment")
                    .cloned();
                if let Some(row) = podinfo.filter(|r| r["rps"].as_f64().unwrap_or(0.0) > 0.0) {
                    break row;
                }
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!("the dashboard shows no traffic for podinfo: {json}");
                }
            }
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
            Err(e) => eprintln!("dashboard not answering yet: {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    anyhow::ensure!(
        workloads["meshed"] == serde_json::json!([2, 2]) && workloads["success"].as_f64().is_some(),
        "the dashboard shows podinfo meshed 2/2 with a success rate: {workloads}"
    );
    let page = get("/".into()).await?;
    anyhow::ensure!(
        page.contains("app.js") && page.contains("uPlot"),
        "the dashboard's page names its script and charts:\n{page}"
    );
    let clusters: serde_json::Value = serde_json::from_str(&get("/api/clusters".into()).await?)?;
    let split = clusters["trafficSplits"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["namespace"] == ns && s["name"] == "podinfo-split")
        .ok_or_else(|| anyhow::anyhow!("the clusters page lists no podinfo-split: {clusters}"))?;
    anyhow::ensure!(
        split["backends"]
            == serde_json::json!([
                {"service": "podinfo", "weight": 90},
                {"service": "podinfo-canary", "weight": 10},
            ]),
        "the clusters page shows the split's weights: {split}"
    );
    // The attack: a page from another site whose name now resolves to
    // 127.0.0.1 asks the dashboard; its Host is its own name.
    let status = raw_status(&authority, "evil.example").await?;
    anyhow::ensure!(
        status.contains(" 403 "),
        "a request for Host evil.example is refused: {status}"
    );
    Ok(())
}

/// The status line of a GET / sent with `host` as its Host.
async fn raw_status(authority: &str, host: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await??;
    Ok(String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}
