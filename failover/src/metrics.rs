//! The controller's metrics: `failover_state` (0 Primary, 1 FailingOver,
//! 2 FailedOver, 3 FailingBack, -1 invalid settings) and
//! `failover_transitions_total` per split, and per backend the weight,
//! success rate and request rate it decided on.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SplitLabels {
    namespace: String,
    trafficsplit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    namespace: String,
    trafficsplit: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    namespace: String,
    trafficsplit: String,
    backend: String,
}

/// The failover metrics.
#[derive(Debug, Clone, Default)]
pub struct FailoverMetrics {
    state: Family<SplitLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    weight: Family<BackendLabels, Gauge>,
    success_rate: Family<BackendLabels, Gauge<f64, AtomicU64>>,
    rps: Family<BackendLabels, Gauge<f64, AtomicU64>>,
    ignored: Family<ReasonLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

impl FailoverMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "failover_state",
            "The split's phase: 0 Primary, 1 FailingOver, 2 FailedOver, 3 FailingBack, -1 invalid",
            metrics.state.clone(),
        );
        registry.register(
            "failover_transitions",
            "Changes of phase, by the phase entered",
            metrics.transitions.clone(),
        );
        registry.register(
            "failover_backend_weight",
            "The weight the controller gives a backend (percent)",
            metrics.weight.clone(),
        );
        registry.register(
            "failover_backend_success_rate",
            "A backend's success rate over the window, as its clients saw it",
            metrics.success_rate.clone(),
        );
        registry.register(
            "failover_backend_rps",
            "A backend's requests per second over the window",
            metrics.rps.clone(),
        );
        registry.register(
            "failover_ignored_samples",
            "Client samples that counted for nothing: not finite, negative, or a counter that went down",
            metrics.ignored.clone(),
        );
        metrics
    }

    fn split(namespace: &str, name: &str) -> SplitLabels {
        SplitLabels {
            namespace: namespace.to_owned(),
            trafficsplit: name.to_owned(),
        }
    }

    /// Sets a split's phase gauge.
    pub fn set_state(&self, namespace: &str, name: &str, value: i64) {
        self.state
            .get_or_create(&Self::split(namespace, name))
            .set(value);
    }

    /// Counts a transition into `to`.
    pub fn transition(&self, namespace: &str, name: &str, to: &str) {
        self.transitions
            .get_or_create(&TransitionLabels {
                namespace: namespace.to_owned(),
                trafficsplit: name.to_owned(),
                to: to.to_owned(),
            })
            .inc();
    }

    /// Sets what the controller decided for one backend.
    pub fn set_backend(
        &self,
        namespace: &str,
        name: &str,
        backend: &str,
        weight: u32,
        success_rate: Option<f64>,
        rps: f64,
    ) {
        let labels = BackendLabels {
            namespace: namespace.to_owned(),
            trafficsplit: name.to_owned(),
            backend: backend.to_owned(),
        };
        self.weight.get_or_create(&labels).set(i64::from(weight));
        if let Some(rate) = success_rate {
            self.success_rate.get_or_create(&labels).set(rate);
        }
        self.rps.get_or_create(&labels).set(rps);
    }

    /// Counts the client samples a round ignored.
    pub fn ignored(&self, ignored: &crate::signals::Ignored) {
        for (reason, count) in ignored.by_reason() {
            self.ignored
                .get_or_create(&ReasonLabels { reason })
                .inc_by(count);
        }
    }
}
