//! `mesh viz dashboard` as a user runs it: the port-forward to viz's web
//! component answers the page and its API with what the cluster holds
//! (podinfo's golden metrics, the scenario's TrafficSplit with its
//! weights), and refuses a request whose `Host` is another site's name
//! (the DNS-rebinding attack on a local port-forward); then headless
//! Chromium loads every page: the workload page's figures match `viz
//! stat` for the same window, the topology graph holds the client →
//! podinfo edge, the namespace page lists the HTTPRoute podinfo-root with
//! its traffic, podinfo's workload page fills its live calls from the
//! tap stream while it stays open, the clusters page shows the split;
//! screenshots are left in `target/screenshots`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::provider::{Cluster, Provider};

/// The longest answer read.
const MAX_ANSWER: usize = 8 << 20;

/// `mesh viz dashboard` running on a free local port of this machine,
/// stopped when dropped.
#[derive(Debug)]
pub struct Relay {
    _child: tokio::process::Child,
    /// `127.0.0.1:PORT`.
    pub authority: String,
}

impl Relay {
    /// Starts `mesh viz dashboard --show url` against `cluster`.
    pub async fn start(p: &impl Provider, cluster: Cluster) -> anyhow::Result<Self> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let binary = mesh_clusters::testing::mesh_bin_dir()?.join("mesh");
        let child = Command::new(&binary)
            .args([
                "--kubeconfig",
                &p.kubeconfig().display().to_string(),
                "--context",
                &p.context(cluster),
                "viz",
                "dashboard",
                "--show",
                "url",
                "--address",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("running {}: {e}", binary.display()))?;
        Ok(Self {
            _child: child,
            authority: format!("127.0.0.1:{port}"),
        })
    }

    /// The answer to GET `path` (with its query) through the relay.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        mesh_core::http_get::get(&self.authority, path, Duration::from_secs(20), MAX_ANSWER)
            .await
            .map_err(|e| anyhow::anyhow!("GET {path} through mesh viz dashboard: {e}"))
    }

    /// The JSON answer to GET `path`.
    pub async fn json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.get(path).await?)?)
    }
}

/// Runs the dashboard's checks against namespace `ns` of west.
pub async fn dashboard(p: &impl Provider, ns: &str) -> anyhow::Result<()> {
    let relay = Relay::start(p, Cluster::West).await?;
    let authority = relay.authority.clone();
    // The web pod may still be starting, and Prometheus must have a
    // window of podinfo's traffic.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let workloads = loop {
        match relay.json(&format!("/api/workloads?namespace={ns}")).await {
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
    let page = relay.get("/").await?;
    anyhow::ensure!(
        page.contains("app.js") && page.contains("uPlot"),
        "the dashboard's page names its script and charts:\n{page}"
    );
    let clusters = relay.json("/api/clusters").await?;
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
    browser(p, ns, &format!("http://{authority}")).await?;
    // The attack: a page from another site whose name now resolves to
    // 127.0.0.1 asks the dashboard; its Host is its own name.
    let status = raw_status(&authority, "evil.example").await?;
    anyhow::ensure!(
        status.contains(" 403 "),
        "a request for Host evil.example is refused: {status}"
    );
    Ok(())
}

/// The pages in a real browser.
async fn browser(p: &impl Provider, ns: &str, base: &str) -> anyhow::Result<()> {
    let chromium = crate::browser::Chromium::find()?;
    let dir = crate::browser::screenshot_dir();
    let namespace_page = format!("{base}/#/namespace/{ns}");
    let dom = chromium.dom(&namespace_page).await?;
    let cells = crate::browser::row_cells(&dom, r#"data-workload="deployment/podinfo""#)
        .ok_or_else(|| anyhow::anyhow!("the workload page has no podinfo row:\n{dom}"))?;
    // Kind, Name, Meshed, Success, RPS, P50, P95, P99.
    anyhow::ensure!(
        cells.len() == 8 && cells[2] == "2/2",
        "podinfo's row reads {cells:?}"
    );
    let page_rps: f64 = cells[4]
        .parse()
        .map_err(|_| anyhow::anyhow!("podinfo's RPS on the page is {:?}", cells[4]))?;
    let page_success: f64 = cells[3]
        .trim_end_matches('%')
        .parse::<f64>()
        .map_err(|_| anyhow::anyhow!("podinfo's success on the page is {:?}", cells[3]))?
        / 100.0;
    // The same window (the page's is 1m), asked of the CLI.
    let stat = crate::mesh::mesh(
        p,
        Cluster::West,
        &[
            "viz",
            "stat",
            "deploy/podinfo",
            "-n",
            ns,
            "-t",
            "1m",
            "-o",
            "json",
        ],
    )
    .await?
    .ok("mesh viz stat deploy/podinfo")?;
    let rows: serde_json::Value = serde_json::from_str(&stat.stdout)?;
    let cli = &rows[0];
    let cli_rps = cli["rps"].as_f64().unwrap_or_default();
    let cli_success = cli["success"].as_f64().unwrap_or_default();
    anyhow::ensure!(
        (page_rps - cli_rps).abs() <= 0.1 * cli_rps.max(1.0),
        "the page's RPS {page_rps} is within 10 % of viz stat's {cli_rps}"
    );
    anyhow::ensure!(
        (page_success - cli_success).abs() <= 0.02,
        "the page's success {page_success} matches viz stat's {cli_success}"
    );
    let drawn = dom
        .split("data-drawn-edges=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default();
    anyhow::ensure!(
        drawn.split(' ').any(|e| e == "client→podinfo"),
        "the topology graph draws client → podinfo (it drew {drawn:?})"
    );
    let edge = crate::browser::row_cells(&dom, r#"data-edge="client→podinfo""#)
        .ok_or_else(|| anyhow::anyhow!("the edges table has no client → podinfo row"))?;
    anyhow::ensure!(
        edge.get(4).map(String::as_str) == Some("√"),
        "client → podinfo is secured: {edge:?}"
    );
    // The namespace's HTTPRoute, with what podinfo-routed's client saw on it.
    let route =
        crate::browser::row_cells(&dom, r#"data-httproute="podinfo-root svc/podinfo-routed""#)
            .ok_or_else(|| {
                anyhow::anyhow!("the namespace page has no podinfo-root route row:\n{dom}")
            })?;
    anyhow::ensure!(
        route.len() == 7 && route[3].parse::<f64>().is_ok_and(|rps| rps > 0.0),
        "podinfo-root's row shows its traffic: {route:?}"
    );
    let clusters = chromium.dom(&format!("{base}/#/clusters")).await?;
    anyhow::ensure!(
        clusters.contains(&format!("data-split=\"{ns}/podinfo-split\""))
            && clusters.contains("podinfo 90% · podinfo-canary 10%"),
        "the clusters page shows the split and its weights:\n{clusters}"
    );
    let namespaces = chromium.dom(&format!("{base}/#/namespaces")).await?;
    anyhow::ensure!(
        namespaces.contains(&format!("#/namespace/{ns}")),
        "the namespaces page links {ns}:\n{namespaces}"
    );
    live_calls(&chromium, base, ns).await?;
    for (name, url) in [
        ("namespaces", format!("{base}/#/namespaces")),
        ("namespace", namespace_page.clone()),
        ("clusters", format!("{base}/#/clusters")),
    ] {
        chromium
            .screenshot(&url, &dir.join(format!("viz-{name}.png")))
            .await?;
    }
    Ok(())
}

/// podinfo's workload page, left open: its routes are the ServiceProfile's
/// with the client's traffic on `GET /`; its live calls (tapped by the
/// relay with the test's credentials) fill with the client's requests,
/// and the latest events show them over mTLS; a screenshot of it is left
/// as `viz-workload.png`.
async fn live_calls(
    chromium: &crate::browser::Chromium,
    base: &str,
    ns: &str,
) -> anyhow::Result<()> {
    let mut page = chromium
        .open(&format!("{base}/#/namespace/{ns}/deployment/podinfo"))
        .await?;
    let dom = page
        .wait_for(
            "a live call from the client to podinfo",
            Duration::from_secs(60),
            |dom| {
                dom.contains("data-call=\"client-")
                    && dom.contains("proxy=in ")
                    && dom.contains("tls=true")
            },
        )
        .await?;
    let marker = dom
        .split("data-call=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|call| call.starts_with("client-") && call.contains("→podinfo-"))
        .ok_or_else(|| anyhow::anyhow!("no live call from a client pod to a podinfo pod:\n{dom}"))?
        .to_owned();
    let cells = crate::browser::row_cells(&dom, &format!("data-call=\"{marker}\""))
        .ok_or_else(|| anyhow::anyhow!("no row for {marker}"))?;
    // Source, Destination, Method, Path, Count, Best, Worst, Last, Success.
    anyhow::ensure!(
        cells.len() == 9
            && cells[2] == "GET"
            && cells[4].parse::<u64>().is_ok_and(|n| n > 0)
            && cells[8].ends_with('%'),
        "the live call {marker} reads {cells:?}"
    );
    // The routes of the Service in front of podinfo, from its
    // ServiceProfile: `GET /` carries the client's requests, `GET
    // /version` is listed idle.
    let root =
        crate::browser::row_cells(&dom, "data-route=\"podinfo GET /\"").ok_or_else(|| {
            anyhow::anyhow!("the workload page has no route GET / of podinfo:\n{dom}")
        })?;
    // Route, Service, Success, RPS, P50, P95, P99.
    anyhow::ensure!(
        root.len() == 7 && root[3].parse::<f64>().is_ok_and(|rps| rps > 0.0),
        "route GET / of podinfo reads {root:?}"
    );
    anyhow::ensure!(
        dom.contains("data-route=\"podinfo GET /version\"")
            && dom.contains("data-route=\"podinfo [DEFAULT]\""),
        "the workload page lists GET /version and [DEFAULT] too:\n{dom}"
    );
    // The stream goes on: the count grows while the page stays open.
    let first: u64 = cells[4].parse()?;
    page.wait_for(
        "the live call's count growing",
        Duration::from_secs(30),
        |dom| {
            crate::browser::row_cells(dom, &format!("data-call=\"{marker}\""))
                .and_then(|cells| cells.get(4).and_then(|c| c.parse::<u64>().ok()))
                .is_some_and(|n| n > first)
        },
    )
    .await?;
    page.screenshot(&crate::browser::screenshot_dir().join("viz-workload.png"))
        .await
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

/// After a failover and its failback (the failover scenario, viz
/// installed in west): the clusters page shows east's gateway alive, the
/// Service mirrored from east, and the split's primary weight having moved
/// (100 and 0 within the last 15 minutes, from the failover controller's
/// own series), in the API and in the browser; a screenshot of it is left
/// as `viz-clusters-failover.png`.
pub async fn failover(p: &impl Provider, ns: &str, split: &str) -> anyhow::Result<()> {
    let relay = Relay::start(p, Cluster::West).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let seen = async {
            let clusters = relay.json("/api/clusters").await?;
            let east = clusters["links"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["targetClusterName"] == "east")
                .cloned()
                .ok_or_else(|| {
                    anyhow::anyhow!("no Link to east on the clusters page: {clusters}")
                })?;
            anyhow::ensure!(east["alive"] == true, "east's gateway is alive: {east}");
            anyhow::ensure!(
                east["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| s["namespace"] == ns && s["name"] == "podinfo-east"),
                "podinfo-east is listed as mirrored from east: {east}"
            );
            let history = relay
                .json(&format!("/api/trafficsplit?namespace={ns}&name={split}"))
                .await?;
            let weights: Vec<f64> = history["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|b| b["service"] == "podinfo")
                .and_then(|b| b["weight"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|point| point[1].as_f64())
                .collect();
            anyhow::ensure!(
                weights.iter().any(|w| *w >= 99.0) && weights.iter().any(|w| *w <= 1.0),
                "the primary's weight moved from 100 to 0 and back: {weights:?}"
            );
            Ok(())
        }
        .await;
        match seen {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
            Err(e) => eprintln!("clusters page not there yet: {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let chromium = crate::browser::Chromium::find()?;
    let url = format!("http://{}/#/clusters", relay.authority);
    let dom = chromium.dom(&url).await?;
    let east_card = dom
        .split("data-link=\"east\"")
        .nth(1)
        .and_then(|rest| rest.split("class=\"card\"").next())
        .unwrap_or_default();
    anyhow::ensure!(
        east_card.contains(">alive<") && east_card.contains("podinfo-east"),
        "the browser shows east alive with podinfo-east:\n{dom}"
    );
    anyhow::ensure!(
        dom.contains(&format!("data-split=\"{ns}/{split}\""))
            && dom.matches("class=\"uplot").count() >= 2,
        "the browser draws the split's weight and success charts:\n{dom}"
    );
    chromium
        .screenshot(
            &url,
            &crate::browser::screenshot_dir().join("viz-clusters-failover.png"),
        )
        .await
}
