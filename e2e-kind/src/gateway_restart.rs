//! The gateway chaos scenario: west's podinfo scaled to 0, so the load
//! pod's 50 GET/s all cross to east through east's gateway; the gateway
//! pod is then deleted (a node drain, a crash, a rolling update), once over
//! QUIC (the Link's default) and once over TCP (UDP dropped on the WAN).
//! Each replacement may cost the client at most two seconds with a failed
//! GET: the stopping pod keeps serving while its Service moves to the new
//! one (its wait before exit), then tells its clients to reconnect, and
//! clients reconnect from a new port so the node's connection tracking
//! does not pin them to the old pod. Then the gateway is made highly
//! available (east's extension is a Helm release: `helm upgrade -f
//! values-ha.yaml`, the chart's equivalent of `mesh multicluster install
//! --ha`): deleting one of its pods,
//! and `kubectl rollout restart` of all of them, fail no GET at all.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use mesh_podinfo::drive;
use tokio::time::Instant;

use crate::failover::{docs_split, load_seconds, start, until_failed_over, until_traffic};
use crate::kube_util;
use crate::mesh;
use crate::multicluster::wait_for;
use crate::provider::{Cluster, Provider};
use crate::scenarios::ROLLOUT;

const GATEWAY_NS: &str = "linkerd-multicluster";
const GATEWAY_SELECTOR: &str = "app=linkerd-gateway";

/// The most seconds of load with a failed GET that one gateway replacement
/// may cost (issue 26's bound).
const MAX_FAILED_SECONDS: usize = 2;

/// How the gateway is disrupted.
#[derive(Debug, Clone, Copy)]
enum Disruption {
    /// Its first pod is deleted.
    DeleteOnePod,
    /// `kubectl rollout restart` of its Deployment.
    RolloutRestart,
}

/// East's gateway pods.
async fn gateway_pods(pods: &Api<Pod>) -> anyhow::Result<Vec<Pod>> {
    Ok(pods
        .list(&ListParams::default().labels(GATEWAY_SELECTOR))
        .await?
        .items)
}

/// Disrupts east's gateway and waits until the pods it stopped are gone
/// and `replicas` are Ready, then a few seconds more of load.
async fn disrupt_the_gateway(
    p: &impl Provider,
    how: Disruption,
    replicas: usize,
) -> anyhow::Result<()> {
    let east = p.client(Cluster::East);
    let pods = Api::<Pod>::namespaced(east.clone(), GATEWAY_NS);
    let before: Vec<String> = gateway_pods(&pods)
        .await?
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect();
    anyhow::ensure!(!before.is_empty(), "east has no gateway pod");
    let stopped = match how {
        Disruption::DeleteOnePod => {
            pods.delete(&before[0], &DeleteParams::default()).await?;
            vec![before[0].clone()]
        }
        Disruption::RolloutRestart => {
            mesh::kubectl(
                p,
                Cluster::East,
                &[
                    "-n",
                    GATEWAY_NS,
                    "rollout",
                    "restart",
                    "deploy/linkerd-gateway",
                ],
                None,
            )
            .await?
            .ok("kubectl rollout restart of the gateway")?;
            before.clone()
        }
    };
    wait_for(
        &format!("the stopped gateway pods gone and {replicas} Ready"),
        ROLLOUT * 2,
        || async {
            let now = gateway_pods(&pods).await?;
            let gone = now.iter().all(|pod| {
                pod.metadata
                    .name
                    .as_ref()
                    .is_none_or(|name| !stopped.contains(name))
            });
            Ok(gone
                && now
                    .iter()
                    .filter(|pod| mesh_api::pod::is_ready(pod))
                    .count()
                    >= replicas)
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

/// Disrupts the gateway and checks what the load saw from then on: at
/// most `max_failed_seconds` seconds with a failed GET.
async fn disruption_costs_seconds(
    p: &impl Provider,
    ns: &str,
    over: &str,
    how: Disruption,
    replicas: usize,
    max_failed_seconds: usize,
) -> anyhow::Result<()> {
    let west = p.client(Cluster::West);
    let before = load_seconds(&west, ns).await.len();
    let started = Instant::now();
    disrupt_the_gateway(p, how, replicas).await?;
    let after: Vec<_> = load_seconds(&west, ns)
        .await
        .into_iter()
        .skip(before)
        .collect();
    let failed: u64 = after.iter().map(|s| s.failed).sum();
    let ok: u64 = after.iter().map(|s| s.ok).sum();
    let bad: Vec<u64> = after
        .iter()
        .filter(|s| s.failed > 0)
        .map(|s| s.second)
        .collect();
    let codes: Vec<_> = after
        .iter()
        .filter(|s| s.failed > 0)
        .map(|s| &s.codes)
        .collect();
    eprintln!(
        "{how:?} of the gateway over {over}: {failed} of {} GETs failed, in {} s {bad:?} {codes:?} ({:?} until the replacements were Ready)",
        ok + failed,
        bad.len(),
        started.elapsed()
    );
    anyhow::ensure!(
        !after.is_empty() && ok > 0,
        "the load ran on after the replacement over {over}"
    );
    anyhow::ensure!(
        bad.len() <= max_failed_seconds,
        "over {over}, {how:?} of the gateway cost {} s with failed GETs ({failed} GETs, seconds {bad:?}); at most {max_failed_seconds} s",
        bad.len()
    );
    Ok(())
}

/// Upgrades east's multicluster extension (a Helm release) to the chart's
/// HA values or back, and waits for its gateway's rollout.
async fn install_gateway(p: &impl Provider, ha: bool) -> anyhow::Result<()> {
    mesh::helm_multicluster(p, ha).await?;
    kube_util::wait_rollout(
        &p.client(Cluster::East),
        GATEWAY_NS,
        "linkerd-gateway",
        ROLLOUT * 2,
    )
    .await
}

/// See the module's documentation.
pub async fn mesh_multicluster_a_replaced_gateway_costs_seconds_not_a_minute(
    p: &impl Provider,
) -> anyhow::Result<()> {
    let exported = start(p, "e2e-gw-restart", &docs_split()).await?;
    let ns = exported.ns.clone();
    let west = p.client(Cluster::West);
    until_traffic(p, &exported, false, 1.0, Instant::now(), ROLLOUT).await?;
    let gone = Instant::now();
    drive::scale(&west, &ns, 0).await?;
    until_failed_over(p, &ns, gone, false).await?;
    until_traffic(p, &exported, true, 0.99, gone, ROLLOUT).await?;

    let one = Disruption::DeleteOnePod;
    let quic = disruption_costs_seconds(p, &ns, "QUIC", one, 1, MAX_FAILED_SECONDS).await;
    // TCP: with UDP dropped on the WAN, the client falls back to TCP.
    let tcp = async {
        p.set_wan("udp=drop").await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let replaced = disruption_costs_seconds(p, &ns, "TCP", one, 1, MAX_FAILED_SECONDS).await;
        p.set_wan("udp=pass").await?;
        replaced
    }
    .await;
    // Highly available: no GET fails.
    let ha = async {
        install_gateway(p, true).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        disruption_costs_seconds(p, &ns, "QUIC, HA", one, 3, 0).await?;
        disruption_costs_seconds(p, &ns, "QUIC, HA", Disruption::RolloutRestart, 3, 0).await
    }
    .await;
    let restored = install_gateway(p, false).await;
    drive::scale(&west, &ns, 2).await?;
    exported.remove(p).await;
    quic?;
    tcp?;
    ha?;
    restored
}
