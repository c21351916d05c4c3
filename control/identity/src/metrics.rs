//! The identity service's metrics: certificates issued and refused (by
//! reason), issuer reloads, and the issuer's expiry.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The label of a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why (`token_expired`, `identity_mismatch`, `csr_signature`, …).
    pub reason: String,
}

/// Counters and gauges of the identity service.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Certificates issued.
    pub issued: Counter,
    /// Requests refused, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Issuer (or trust anchor) changes picked up.
    pub reloads: Counter,
    /// Changed files that did not load (the previous issuer stayed).
    pub reload_failures: Counter,
    /// When the issuer certificate expires.
    pub issuer_expiration: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "identity_certificates_issued",
            "Workload certificates issued",
            m.issued.clone(),
        );
        registry.register(
            "identity_certificates_rejected",
            "Certify requests refused, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "identity_issuer_reloads",
            "Issuer or trust anchor changes loaded",
            m.reloads.clone(),
        );
        registry.register(
            "identity_issuer_reload_failures",
            "Issuer or trust anchor changes that could not be loaded",
            m.reload_failures.clone(),
        );
        registry.register(
            "identity_issuer_expiration_timestamp_seconds",
            "When the issuer certificate expires, in seconds since the Unix epoch",
            m.issuer_expiration.clone(),
        );
        m
    }

    /// Counts a refusal.
    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
