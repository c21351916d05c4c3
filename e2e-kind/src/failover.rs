//! The failover scenarios on the linked pair: podinfo in west (primary) and
//! east (exported, `podinfo-east` in west), the docs' TrafficSplit with a
//! retryable route, the failover controller installed with `mesh failover
//! install`, and a meshed load pod in west sending 50 requests a second.
//!
//! - A bad deploy (Ready, every answer a 500) moves the traffic to east; the
//!   fixed deploy brings it back after the hold time, through the failback
//!   ramp; a brown-out (30 % of answers 500, from one instant) moves it in
//!   steps; the active controller replica is killed and the standby takes
//!   its Lease; a full outage (no pod) moves it again; no GET fails
//!   throughout.
//! - With a second, local secondary, a primary outage spreads the traffic
//!   over east and the local one; cutting the WAN then moves it all to the
//!   local one.
//! - Noise just above the threshold moves nothing for two minutes; a
//!   relapse during the failback ramp aborts it.

use std::time::Duration;

use mesh_podinfo::drive;
use mesh_podinfo::report::LoadSecond;
use serde_json::Value;
use tokio::time::Instant;

use crate::kube_util;
use crate::mesh::{self, kubectl};
use crate::multicluster::{Exported, ensure_linked, wait_for};
use crate::provider::{Cluster, Provider};
use crate::scenarios::{ROLLOUT, deploy_podinfo};

const FAILOVER_NS: &str = "linkerd-failover";

/// A ServiceProfile that makes podinfo's GETs retryable (what lets the
/// proxies retry on east before the weights move).
const RETRYABLE_GETS: &str = include_str!("../../demo/podinfo-retries.yaml");

/// The docs' failover TrafficSplit, with a shorter hold and failback steps
/// so the scenario does not wait minutes.
pub(crate) fn docs_split() -> String {
    mesh_failover::split::DOCS_EXAMPLE.replace(
        "  annotations:\n",
        "  annotations:\n    failover.mesh.dev/hold: 10s\n    failover.mesh.dev/failback-step-interval: 2s\n",
    )
}

/// Installs the failover controller in west (`charts/mesh-failover`)
/// unless a run already did.
async fn ensure_failover_installed(p: &impl Provider) -> anyhow::Result<()> {
    let west = p.client(Cluster::West);
    let _lock = mesh::lock(p.kubeconfig().with_file_name("mesh-failover.lock")).await?;
    if kube_util::wait_rollout(&west, FAILOVER_NS, "linkerd-failover", Duration::ZERO)
        .await
        .is_ok()
    {
        return Ok(());
    }
    // By its Helm chart, on the cluster installed by the CLI.
    let chart = mesh::chart("mesh-failover");
    let args = [
        "upgrade",
        "--install",
        "linkerd-failover",
        &chart,
        "-n",
        FAILOVER_NS,
        "--create-namespace",
    ];
    mesh::helm(p, Cluster::West, &args)
        .await?
        .ok("helm install of the failover controller")?;
    kube_util::wait_rollout(&west, FAILOVER_NS, "linkerd-failover", ROLLOUT).await
}

/// What the load pod has printed so far.
pub(crate) async fn load_seconds(client: &kube::Client, ns: &str) -> Vec<LoadSecond> {
    drive::load_seconds(client, ns, "load", "main").await
}

/// Waits until the last `run` seconds of load all put at least `share` of
/// their answers on east (or, with `on_east` false, at most 1 − `share`);
/// returns how long that took from `since`.
pub(crate) async fn until_traffic(
    p: &impl Provider,
    exported: &Exported,
    on_east: bool,
    share: f64,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let west = p.client(Cluster::West);
    let what = if on_east { "east" } else { "west" };
    wait_for(
        &format!("{share} of the traffic on {what}"),
        timeout,
        || async {
            let seconds = load_seconds(&west, &exported.ns).await;
            let last = seconds.iter().rev().take(3).collect::<Vec<_>>();
            Ok(last.len() == 3
                && last.iter().all(|s| {
                    let east = s.answered_by_any(&exported.east_pods) as f64 / s.ok.max(1) as f64;
                    s.ok > 0
                        && if on_east {
                            east >= share
                        } else {
                            1.0 - east >= share
                        }
                }))
        },
    )
    .await?;
    Ok(since.elapsed())
}

/// Waits until the controller has given east at least 99 % of the weight
/// of the `podinfo` TrafficSplit (or, with `route`, HTTPRoute); how long
/// that took from `since`. On failure, the controller's logs say what it
/// saw.
pub(crate) async fn until_failed_over(
    p: &impl Provider,
    ns: &str,
    since: Instant,
    route: bool,
) -> anyhow::Result<Duration> {
    let west = p.client(Cluster::West);
    let waited = wait_for("east has 99 % of the split's weight", ROLLOUT, || async {
        let weights = if route {
            drive::route_weights(&west, ns, "podinfo").await?
        } else {
            drive::split_weights(&west, ns, "podinfo").await?
        };
        Ok(weights.get(1).is_some_and(|w| *w >= 99))
    })
    .await;
    if let Err(e) = waited {
        let logs = kubectl(
            p,
            Cluster::West,
            &[
                "-n",
                FAILOVER_NS,
                "logs",
                "deploy/linkerd-failover",
                "--tail=40",
            ],
            None,
        )
        .await?;
        let status = split_status(p, ns).await.unwrap_or_default();
        anyhow::bail!(
            "{e}; status {status}; the controller's logs:\n{}",
            logs.stdout
        );
    }
    Ok(since.elapsed())
}

/// `mesh --context=west failover status -o json`: the split's status.
async fn split_status(p: &impl Provider, ns: &str) -> anyhow::Result<Value> {
    let out = mesh::mesh(
        p,
        Cluster::West,
        &["failover", "status", "-n", ns, "-o", "json"],
    )
    .await?
    .ok("mesh failover status")?;
    let rows: Value = serde_json::from_str(&out.stdout)?;
    Ok(rows[0]["status"].clone())
}

/// The set-up the scenarios share: podinfo exported from east, podinfo in
/// west, `split` (YAML: a TrafficSplit, with the retryable ServiceProfile
/// applied too, or an HTTPRoute, which carries its own retries), and the
/// load pod running; returns the export.
pub(crate) async fn start(
    p: &impl Provider,
    prefix: &str,
    split: &str,
) -> anyhow::Result<Exported> {
    ensure_linked(p).await?;
    ensure_failover_installed(p).await?;
    let exported = Exported::start(p, prefix).await?;
    let ns = exported.ns.clone();
    let west = p.client(Cluster::West);
    deploy_podinfo(&west, &ns).await?;
    kube_util::apply(&west, &ns, split).await?;
    if split.contains("kind: TrafficSplit") {
        kube_util::apply(&west, &ns, &RETRYABLE_GETS.replace("NAMESPACE", &ns)).await?;
    }
    kube_util::start_load(
        &west,
        &ns,
        &format!("http://podinfo.{ns}.svc.cluster.local:9898/"),
        50,
    )
    .await?;
    Ok(exported)
}

/// The first scenario (see the module's documentation).
pub async fn mesh_failover_moves_traffic_by_success_rate_and_back(
    p: &impl Provider,
) -> anyhow::Result<()> {
    let exported = start(p, "e2e-fo", &docs_split()).await?;
    let ns = exported.ns.clone();
    let west = p.client(Cluster::West);
    // viz in west, to watch the failover on the dashboard's clusters page.
    crate::viz::install_viz(p, Cluster::West).await?;
    kube_util::wait_rollout(&west, mesh_viz::NAMESPACE, "prometheus", ROLLOUT).await?;
    until_traffic(p, &exported, false, 1.0, Instant::now(), ROLLOUT).await?;
    let status = split_status(p, &ns).await?;
    anyhow::ensure!(
        status["state"] == "Primary",
        "managed, on the primary: {status}"
    );

    // A bad deploy: Ready pods answering 500 to everything.
    let broke = Instant::now();
    drive::set_error_rate(&west, &ns, "1").await?;
    let took = until_failed_over(p, &ns, broke, false).await?;
    eprintln!("bad deploy: 99 % of the weight on east {took:?} after the rollout began");
    until_traffic(p, &exported, true, 0.99, broke, ROLLOUT).await?;
    let status = split_status(p, &ns).await?;
    anyhow::ensure!(
        status["state"] == "FailedOver"
            && status["lastTransition"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("primary podinfo")),
        "the status says why it failed over: {status}"
    );

    // Fixed: the primary gets its traffic back after the hold, in steps.
    let fixed = Instant::now();
    drive::set_error_rate(&west, &ns, "0").await?;
    let mut states: Vec<String> = Vec::new();
    let deadline = Instant::now() + ROLLOUT * 2;
    loop {
        let status = split_status(p, &ns).await?;
        let state = status["state"].as_str().unwrap_or_default().to_owned();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if state == "Primary" {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not back on the primary within {:?}: {states:?}, {status}",
            ROLLOUT * 2
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::ensure!(
        states.iter().any(|s| s == "FailingBack"),
        "failback ramps: {states:?}"
    );
    let took = until_traffic(p, &exported, false, 0.99, fixed, ROLLOUT).await?;
    eprintln!("fixed deploy: back on west {took:?} after the fix began (hold 10 s, ramp 4 × 2 s)");
    crate::viz_dashboard::failover(p, &ns, "podinfo").await?;
    crate::viz::uninstall_viz(p, Cluster::West).await?;

    // A brown-out from one instant: 30 % of answers are 500.
    drive::break_pods(&west, &ns, "app=podinfo", 0.3).await?;
    let mut states: Vec<String> = Vec::new();
    let deadline = Instant::now() + ROLLOUT;
    while states.last().map(String::as_str) != Some("FailedOver") {
        let state = split_status(p, &ns).await?["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if states.last() != Some(&state) {
            states.push(state);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no failover on a brown-out: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::ensure!(
        states.iter().any(|s| s == "FailingOver"),
        "a brown-out moves the traffic in steps: {states:?}"
    );
    drive::break_pods(&west, &ns, "app=podinfo", 0.0).await?;
    wait_for(
        "back on the primary after the brown-out",
        ROLLOUT * 2,
        || async { Ok(split_status(p, &ns).await?["state"] == "Primary") },
    )
    .await?;

    // The active controller replica is deleted at once (grace 0: killed
    // before it can release much of anything): the standby takes its
    // Lease, and the outage below is its to handle.
    let killed = kill_the_active_failover_replica(&west).await?;
    let took = wait_for(
        "the standby holding the failover Lease",
        ROLLOUT,
        || async {
            Ok(failover_lease_holder(&west)
                .await?
                .is_some_and(|holder| holder != killed))
        },
    )
    .await?;
    eprintln!("the standby failover replica took over {took:?} after the active one was killed");

    // A full outage: no podinfo pod in west at all.
    let gone = Instant::now();
    drive::scale(&west, &ns, 0).await?;
    let took = until_failed_over(p, &ns, gone, false).await?;
    eprintln!("full outage: 99 % of the weight on east {took:?} after the scale-down");
    until_traffic(p, &exported, true, 0.99, gone, ROLLOUT).await?;

    let seconds = load_seconds(&west, &ns).await;
    let failed: u64 = seconds.iter().map(|s| s.failed).sum();
    let ok: u64 = seconds.iter().map(|s| s.ok).sum();
    anyhow::ensure!(
        failed == 0,
        "no GET failed through a bad deploy, its fix and an outage ({failed} of {})",
        ok + failed
    );
    drive::scale(&west, &ns, 2).await?;
    exported.remove(p).await;
    Ok(())
}

/// The pod holding the failover controller's Lease (its holder identity
/// is the pod's name and a suffix).
async fn failover_lease_holder(west: &kube::Client) -> anyhow::Result<Option<String>> {
    let lease = kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        west.clone(),
        FAILOVER_NS,
    )
    .get_opt("linkerd-failover")
    .await?;
    Ok(lease
        .and_then(|l| l.spec?.holder_identity)
        .and_then(|h| h.split('_').next().map(str::to_owned))
        .filter(|pod| !pod.is_empty()))
}

/// Deletes the active failover replica's pod at once; its name.
async fn kill_the_active_failover_replica(west: &kube::Client) -> anyhow::Result<String> {
    let holder = failover_lease_holder(west)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no failover replica holds the Lease"))?;
    kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(west.clone(), FAILOVER_NS)
        .delete(
            &holder,
            &kube::api::DeleteParams {
                grace_period_seconds: Some(0),
                ..kube::api::DeleteParams::default()
            },
        )
        .await?;
    Ok(holder)
}

/// The failover HTTPRoute: the docs' split as Gateway API users write it,
/// its `backendRefs` carrying the primary and east, retrying 5xx (a
/// ServiceProfile would win over the route, so none is applied).
const FAILOVER_ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: podinfo
  annotations:
    failover.linkerd.io/primary-service: podinfo
    failover.mesh.dev/hold: 10s
    failover.mesh.dev/failback-step-interval: 2s
    retry.linkerd.io/http: 5xx
    retry.linkerd.io/limit: "2"
  labels:
    failover.linkerd.io/controlled-by: linkerd-failover
spec:
  parentRefs:
  - {name: podinfo, kind: Service, group: core, port: 9898}
  rules:
  - backendRefs:
    - {name: podinfo, port: 9898, weight: 1}
    - {name: podinfo-east, port: 9898, weight: 0}
"#;

/// Failover on an HTTPRoute instead of a TrafficSplit: a bad deploy moves
/// the traffic to east, the fix brings it back through the failback ramp,
/// and no GET fails.
pub async fn mesh_failover_manages_an_httproute_split(p: &impl Provider) -> anyhow::Result<()> {
    let exported = start(p, "e2e-fo-route", FAILOVER_ROUTE).await?;
    let ns = exported.ns.clone();
    let west = p.client(Cluster::West);
    until_traffic(p, &exported, false, 1.0, Instant::now(), ROLLOUT).await?;
    wait_for("the route managed, on the primary", ROLLOUT, || async {
        Ok(split_status(p, &ns).await?["state"] == "Primary")
    })
    .await?;

    let broke = Instant::now();
    drive::set_error_rate(&west, &ns, "1").await?;
    let took = until_failed_over(p, &ns, broke, true).await?;
    eprintln!("HTTPRoute, bad deploy: 99 % of the weight on east {took:?} after the rollout began");
    until_traffic(p, &exported, true, 0.99, broke, ROLLOUT).await?;

    let fixed = Instant::now();
    drive::set_error_rate(&west, &ns, "0").await?;
    wait_for("back on the primary", ROLLOUT * 2, || async {
        Ok(split_status(p, &ns).await?["state"] == "Primary")
    })
    .await?;
    let took = until_traffic(p, &exported, false, 0.99, fixed, ROLLOUT).await?;
    eprintln!("HTTPRoute, fixed deploy: back on west {took:?} after the fix began");

    let seconds = load_seconds(&west, &ns).await;
    let failed: u64 = seconds.iter().map(|s| s.failed).sum();
    let ok: u64 = seconds.iter().map(|s| s.ok).sum();
    anyhow::ensure!(
        failed == 0,
        "no GET failed through a bad deploy and its fix on an HTTPRoute split ({failed} of {})",
        ok + failed
    );
    exported.remove(p).await;
    Ok(())
}

/// The second scenario (see the module's documentation).
pub async fn mesh_failover_wan_cut_moves_traffic_to_the_local_secondary(
    p: &impl Provider,
) -> anyhow::Result<()> {
    let split = docs_split().replace(
        "      weight: 0\n",
        "      weight: 0\n    - service: podinfo-backup\n      weight: 0\n",
    );
    let exported = start(p, "e2e-fo-wan", &split).await?;
    let ns = exported.ns.clone();
    let west = p.client(Cluster::West);
    let backup = crate::scenarios::PODINFO
        .replace("name: podinfo\n", "name: podinfo-backup\n")
        .replace("app: podinfo", "app: podinfo-backup");
    kube_util::apply(&west, &ns, &backup).await?;
    kube_util::wait_rollout(&west, &ns, "podinfo-backup", ROLLOUT).await?;
    until_traffic(p, &exported, false, 1.0, Instant::now(), ROLLOUT).await?;

    drive::scale(&west, &ns, 0).await?;
    wait_for(
        "the traffic spread over east and the local secondary",
        ROLLOUT,
        || async {
            let weights = drive::split_weights(&west, &ns, "podinfo").await?;
            Ok(weights.len() == 3 && weights[0] == 0 && weights[1] > 0 && weights[2] > 0)
        },
    )
    .await?;
    p.cut_wan().await?;
    let cut = async {
        let took = wait_for(
            "all the traffic on the local secondary",
            ROLLOUT,
            || async {
                Ok(drive::split_weights(&west, &ns, "podinfo").await?.get(2) == Some(&100))
            },
        )
        .await?;
        eprintln!("WAN cut: all the weight on the local secondary {took:?} after the cut");
        // The weight can move on a brown-out (requests to east failing fast
        // while the window still holds the successes from before the cut);
        // while the WAN stays cut, east must then be seen as a hard failure:
        // Down (its gateway not alive) or Failing (its requests given up),
        // whichever the controller sees first.
        let east_health = || async {
            let status = split_status(p, &ns).await?;
            let hard = matches!(
                status["backends"][1]["health"].as_str(),
                Some("Down" | "Failing")
            );
            anyhow::Ok((hard, status))
        };
        let seen = wait_for("east's backend seen as a hard failure", ROLLOUT, || async {
            Ok(east_health().await?.0)
        })
        .await;
        match seen {
            Ok(_) => Ok(()),
            Err(e) => Err(e.context(format!("last status: {}", east_health().await?.1))),
        }
    }
    .await;
    p.restore_wan().await?;
    cut?;
    drive::scale(&west, &ns, 2).await?;
    exported.remove(p).await;
    Ok(())
}

/// The third scenario: errors hovering just above the threshold (3 % for
/// two minutes, under a 95 % threshold) move nothing; a primary that
/// relapses during its failback ramp sends the traffic back to east, and
/// the status says the failback was aborted.
pub async fn mesh_failover_ignores_noise_and_aborts_a_relapsing_failback(
    p: &impl Provider,
) -> anyhow::Result<()> {
    let exported = start(p, "e2e-fo-noise", &docs_split()).await?;
    let ns = exported.ns.clone();
    let west = p.client(Cluster::West);
    until_traffic(p, &exported, false, 1.0, Instant::now(), ROLLOUT).await?;
    wait_for("managed", ROLLOUT, || async {
        Ok(split_status(p, &ns).await?["state"] == "Primary")
    })
    .await?;

    drive::break_pods(&west, &ns, "app=podinfo", 0.03).await?;
    let noisy = Instant::now();
    while noisy.elapsed() < Duration::from_secs(120) {
        let status = split_status(p, &ns).await?;
        anyhow::ensure!(
            status["state"] == "Primary" && status.get("lastTransition").is_none(),
            "3 % errors under a 95 % threshold moved the split after {:?}: {status}",
            noisy.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    drive::break_pods(&west, &ns, "app=podinfo", 1.0).await?;
    until_failed_over(p, &ns, Instant::now(), false).await?;
    drive::break_pods(&west, &ns, "app=podinfo", 0.0).await?;
    wait_for("the failback ramp started", ROLLOUT, || async {
        Ok(split_status(p, &ns).await?["state"] == "FailingBack")
    })
    .await?;
    drive::break_pods(&west, &ns, "app=podinfo", 0.5).await?;
    wait_for("the ramp aborted", ROLLOUT, || async {
        let status = split_status(p, &ns).await?;
        Ok(status["state"] == "FailedOver"
            && status["lastTransition"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("failback aborted")))
    })
    .await?;
    anyhow::ensure!(
        drive::split_weights(&west, &ns, "podinfo")
            .await?
            .get(1)
            .is_some_and(|w| *w >= 99),
        "the traffic is back on east"
    );
    drive::break_pods(&west, &ns, "app=podinfo", 0.0).await?;
    exported.remove(p).await;
    Ok(())
}
