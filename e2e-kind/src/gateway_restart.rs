//! The gateway chaos scenario: west's podinfo scaled to 0, so the load
//! pod's 50 GET/s all cross to east through east's gateway; the gateway
//! pod is then deleted (a node drain, a crash, a rolling update), once over
//! QUIC (the Link's default) and once over TCP (UDP dropped on the WAN).
//! Each replacement may cost the client at most two seconds with a failed
//! GET: the stopping pod keeps serving while its Service moves to the new
//! one (its wait before exit), then tells its clients to reconnect, and
//! clients reconnect from a new port so the node's connection tracking
//! does not pin them to the old pod.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use mesh_podinfo::drive;
use tokio::time::Instant;

use crate::failover::{docs_split, load_seconds, start, until_failed_over, until_traffic};
use crate::multicluster::wait_for;
use crate::provider::{Cluster, Provider};
use crate::scenarios::ROLLOUT;

const GATEWAY_NS: &str = "linkerd-multicluster";
const GATEWAY_SELECTOR: &str = "app=linkerd-gateway";

/// The most seconds of load with a failed GET that one gateway replacement
/// may cost (issue 26's bound).
const MAX_FAILED_SECONDS: usize = 2;

/// Deletes east's gateway pod and waits until it is gone and a
/// replacement is Ready, then a few seconds more of load.
async fn replace_the_gateway(p: &impl Provider) -> anyhow::Result<()> {
    let east = p.client(Cluster::East);
    let pods = Api::<Pod>::namespaced(east.clone(), GATEWAY_NS);
    let old: Vec<String> = pods
        .list(&ListParams::default().labels(GATEWAY_SELECTOR))
        .await?
        .items
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect();
    anyhow::ensure!(!old.is_empty(), "east has no gateway pod");
    for name in &old {
        pods.delete(name, &DeleteParams::default()).await?;
    }
    wait_for(
        "the old gateway pod gone and a new one Ready",
        ROLLOUT,
        || async {
            let now = pods
                .list(&ListParams::default().labels(GATEWAY_SELECTOR))
                .await?
                .items;
            Ok(now
                .iter()
                .all(|pod| !old.contains(pod.metadata.name.as_ref().unwrap_or(&String::new())))
                && now.iter().any(mesh_api::pod::is_ready))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

/// Replaces the gateway and checks what the load saw from then on:
/// at most [`MAX_FAILED_SECONDS`] seconds with a failed GET.
async fn replaced_costs_seconds(p: &impl Provider, ns: &str, over: &str) -> anyhow::Result<()> {
    let west = p.client(Cluster::West);
    let before = load_seconds(&west, ns).await.len();
    let started = Instant::now();
    replace_the_gateway(p).await?;
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
    eprintln!(
        "gateway replaced over {over}: {failed} of {} GETs failed, in {} s {bad:?} ({:?} until the replacement was Ready)",
        ok + failed,
        bad.len(),
        started.elapsed()
    );
    anyhow::ensure!(
        !after.is_empty() && ok > 0,
        "the load ran on after the replacement over {over}"
    );
    anyhow::ensure!(
        bad.len() <= MAX_FAILED_SECONDS,
        "over {over}, the gateway replacement cost {} s with failed GETs ({failed} GETs, seconds {bad:?}); at most {MAX_FAILED_SECONDS} s",
        bad.len()
    );
    Ok(())
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

    let quic = replaced_costs_seconds(p, &ns, "QUIC").await;
    // TCP: with UDP dropped on the WAN, the client falls back to TCP.
    let tcp = async {
        p.set_wan("udp=drop").await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let replaced = replaced_costs_seconds(p, &ns, "TCP").await;
        p.set_wan("udp=pass").await?;
        replaced
    }
    .await;
    drive::scale(&west, &ns, 2).await?;
    exported.remove(p).await;
    quic?;
    tcp
}
