//! The service mirror of one Link, as a loop: every probe period it reads
//! the Link (a malformed one is logged and changes nothing), builds a
//! client for the linked cluster from the credentials Secret (rebuilt when
//! the Secret changes, so a rotated kubeconfig needs no restart), resolves
//! and probes the gateway, and runs a mirroring pass. When the linked API
//! cannot be reached the pass is skipped: mirrors stay, and the next pass
//! after reconnecting deletes only what really went away. Exports Linkerd's
//! gateway metrics labelled `target_cluster_name`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mesh_api::crds::link::Link;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::desired::Gateway;
use crate::link::LinkSettings;
use crate::probe::{Liveness, probe};
use crate::sync::{selector_string, sync};

/// The data key of the credentials Secret.
pub const KUBECONFIG_KEY: &str = "kubeconfig";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    target_cluster_name: String,
}

/// The mirror's metrics (Linkerd's names).
#[derive(Debug, Clone)]
pub struct MirrorMetrics {
    enabled: Family<ClusterLabel, Gauge>,
    alive: Family<ClusterLabel, Gauge>,
    latency: Family<ClusterLabel, Gauge<f64, AtomicU64>>,
    probe_latency: Family<ClusterLabel, Histogram>,
    probes: Family<ClusterLabel, Counter>,
}

impl MirrorMetrics {
    /// Registers `gateway_enabled`, `gateway_alive`, `gateway_latency`,
    /// `gateway_probe_latency_ms` and `gateway_probes`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            enabled: Family::default(),
            alive: Family::default(),
            latency: Family::default(),
            probe_latency: Family::new_with_constructor(|| {
                Histogram::new([
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
                ])
            }),
            probes: Family::default(),
        };
        registry.register(
            "gateway_enabled",
            "Whether the Link's gateway is mirrored",
            metrics.enabled.clone(),
        );
        registry.register(
            "gateway_alive",
            "Whether the gateway answers its probes",
            metrics.alive.clone(),
        );
        registry.register(
            "gateway_latency",
            "The last probe's latency in milliseconds",
            metrics.latency.clone(),
        );
        registry.register(
            "gateway_probe_latency_ms",
            "Probe latencies in milliseconds",
            metrics.probe_latency.clone(),
        );
        registry.register(
            "gateway_probes",
            "Probes sent to the gateway",
            metrics.probes.clone(),
        );
        metrics
    }
}

/// What the loop keeps between rounds.
#[derive(Default)]
struct State {
    remote: Option<(String, kube::Client)>,
    liveness: Option<Liveness>,
}

/// Runs the mirror of Link `name` (in `namespace` of `local`) until `stop`.
pub async fn run(
    local: kube::Client,
    namespace: String,
    name: String,
    metrics: MirrorMetrics,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut state = State::default();
    loop {
        let period = round(&local, &namespace, &name, &metrics, &mut state).await;
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = &mut stop => return,
        }
    }
}

/// One round; returns how long to wait before the next.
async fn round(
    local: &kube::Client,
    namespace: &str,
    name: &str,
    metrics: &MirrorMetrics,
    state: &mut State,
) -> Duration {
    let retry = Duration::from_secs(3);
    let link = match Api::<Link>::namespaced(local.clone(), namespace)
        .get(name)
        .await
    {
        Ok(link) => link,
        Err(e) => {
            tracing::warn!(link = %name, "reading the Link: {e}");
            return retry;
        }
    };
    let settings = match LinkSettings::from_spec(name, &link.spec) {
        Ok(settings) => settings,
        Err(e) => {
            tracing::warn!("{e}; the mirrors stay as they are");
            return retry;
        }
    };
    let label = ClusterLabel {
        target_cluster_name: settings.cluster.clone(),
    };
    metrics.enabled.get_or_create(&label).set(1);
    let liveness = state
        .liveness
        .get_or_insert_with(|| Liveness::new(settings.failure_threshold));
    liveness.set_threshold(settings.failure_threshold);
    let addresses = settings.resolve_gateway().await;
    let ok = match addresses.first() {
        Some(ip) => {
            let (ok, took) = probe(
                *ip,
                settings.probe_port,
                &settings.probe_path,
                settings.probe_timeout,
            )
            .await;
            let ms = took.as_secs_f64() * 1000.0;
            metrics.probes.get_or_create(&label).inc();
            if ok {
                metrics.probe_latency.get_or_create(&label).observe(ms);
                metrics.latency.get_or_create(&label).set(ms);
            }
            ok
        }
        None => false,
    };
    let alive = liveness.record(ok);
    metrics.alive.get_or_create(&label).set(i64::from(alive));
    let remote = match remote_client(local, namespace, &settings.credentials_secret, state).await {
        Ok(remote) => remote,
        Err(e) => {
            tracing::warn!(link = %name, "the linked cluster's credentials: {e:#}");
            return settings.probe_period;
        }
    };
    let gateway = Gateway {
        cluster: settings.cluster.clone(),
        cluster_domain: settings.cluster_domain.clone(),
        addresses,
        port: settings.gateway_port,
        identity: settings.gateway_identity.clone(),
        alive,
    };
    let selector = selector_string(link.spec.selector.as_ref());
    match sync(&remote, local, &selector, &gateway).await {
        Ok(outcome) => {
            for (key, invalid) in &outcome.invalid {
                tracing::warn!(service = %format!("{}/{}", key.0, key.1), "not mirrored: {invalid}");
            }
            for (key, error) in &outcome.failed {
                tracing::warn!(mirror = %format!("{}/{}", key.0, key.1), "not written: {error}");
            }
            let plan = &outcome.plan;
            if !(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty()) {
                tracing::info!(
                    created = plan.create.len(),
                    updated = plan.update.len(),
                    deleted = plan.delete.len(),
                    link = %name,
                    "mirrors changed"
                );
            }
        }
        // The linked API is down or refused us: the mirrors stay.
        Err(e) => tracing::warn!(link = %name, "mirroring pass: {e}; mirrors kept"),
    }
    settings.probe_period
}

/// The linked cluster's client, rebuilt when the credentials Secret changes.
async fn remote_client(
    local: &kube::Client,
    namespace: &str,
    secret_name: &str,
    state: &mut State,
) -> anyhow::Result<kube::Client> {
    let secret = Api::<Secret>::namespaced(local.clone(), namespace)
        .get(secret_name)
        .await
        .map_err(|e| anyhow::anyhow!("Secret {namespace}/{secret_name}: {e}"))?;
    let version = secret.metadata.resource_version.clone().unwrap_or_default();
    if let Some((seen, client)) = &state.remote
        && *seen == version
    {
        return Ok(client.clone());
    }
    let kubeconfig = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KUBECONFIG_KEY))
        .ok_or_else(|| {
            anyhow::anyhow!("Secret {namespace}/{secret_name} has no {KUBECONFIG_KEY}")
        })?;
    let text = String::from_utf8(kubeconfig.0.clone()).map_err(|_| {
        anyhow::anyhow!("Secret {namespace}/{secret_name}: {KUBECONFIG_KEY} is not text")
    })?;
    let config = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("Secret {namespace}/{secret_name}: {KUBECONFIG_KEY}: {e}"))?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| {
                anyhow::anyhow!("Secret {namespace}/{secret_name}: {KUBECONFIG_KEY}: {e}")
            })?;
    let client = kube::Client::try_from(config)?;
    state.remote = Some((version, client.clone()));
    tracing::info!(secret = %secret_name, "linked cluster credentials loaded");
    Ok(client)
}

/// The metrics registry and the mirror's metrics in it.
pub fn metrics() -> (Arc<Registry>, MirrorMetrics) {
    let mut registry = Registry::default();
    let metrics = MirrorMetrics::register(&mut registry);
    (Arc::new(registry), metrics)
}
