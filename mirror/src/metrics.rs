//! The mirror's metrics, Linkerd's names labelled `target_cluster_name`:
//! `gateway_enabled`, `gateway_alive`, `gateway_latency`,
//! `gateway_probe_latency_ms` and `gateway_probes`; and ours for the linked
//! API as the mirror itself reaches it: `remote_api_reachable` and
//! `remote_api_errors_total`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
    remote_reachable: Family<ClusterLabel, Gauge>,
    remote_errors: Family<ClusterLabel, Counter>,
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
            remote_reachable: Family::default(),
            remote_errors: Family::default(),
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
        registry.register(
            "remote_api_reachable",
            "Whether the mirror's view of the linked cluster's API is complete and current",
            metrics.remote_reachable.clone(),
        );
        registry.register(
            "remote_api_errors",
            "Times the mirror lost the linked cluster's API (or failed to reach it at first)",
            metrics.remote_errors.clone(),
        );
        metrics
    }

    /// Records whether `cluster`'s API is reached now; `newly_failed` counts
    /// one more error.
    pub fn record_remote(&self, cluster: &str, reachable: bool, newly_failed: bool) {
        let label = ClusterLabel {
            target_cluster_name: cluster.to_owned(),
        };
        self.remote_reachable
            .get_or_create(&label)
            .set(i64::from(reachable));
        if newly_failed {
            self.remote_errors.get_or_create(&label).inc();
        }
    }

    /// Records one probe of `cluster`'s gateway and what it concluded.
    pub fn record_probe(&self, cluster: &str, ok: bool, took: Duration, alive: bool) {
        let label = ClusterLabel {
            target_cluster_name: cluster.to_owned(),
        };
        self.enabled.get_or_create(&label).set(1);
        self.probes.get_or_create(&label).inc();
        if ok {
            let ms = took.as_secs_f64() * 1000.0;
            self.probe_latency.get_or_create(&label).observe(ms);
            self.latency.get_or_create(&label).set(ms);
        }
        self.alive.get_or_create(&label).set(i64::from(alive));
    }
}

/// The metrics registry and the mirror's metrics in it.
pub fn metrics() -> (Arc<Registry>, MirrorMetrics) {
    let mut registry = Registry::default();
    let metrics = MirrorMetrics::register(&mut registry);
    (Arc::new(registry), metrics)
}
