//! What the clients of a split saw, per backend: the per-attempt outcomes
//! their proxies count (`route_actual_response_total` — what each backend
//! answered, even when a retry on another backend hid a failure from the
//! caller), read from each client's metrics page or from a Prometheus
//! server that scrapes them; and the cumulative counters turned into what
//! happened since the last sample, per client.

use std::collections::{BTreeMap, BTreeSet};

use mesh_api::metrics_text::{label, samples};

use crate::window::Counts;

/// The per-attempt outcomes metric of the proxies.
pub const OUTCOMES: &str = "route_actual_response_total";

/// A backend Service: `(namespace, name)`.
pub type BackendKey = (String, String);

/// Cumulative outcomes per backend, as one client reports them.
pub type ClientCounts = BTreeMap<BackendKey, Counts>;

/// Samples a client's page gave that count for nothing, by why: a metrics
/// page is the client's word, and a rogue or broken one must not steer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ignored {
    /// NaN or infinite values.
    pub not_finite: u64,
    /// Negative values.
    pub negative: u64,
    /// Counters lower than in the previous sample (a restart or a lie):
    /// the interval counts for nothing, the new value is the baseline.
    pub backwards: u64,
}

impl Ignored {
    /// Each kind with its metric label.
    pub fn by_reason(&self) -> [(&'static str, u64); 3] {
        [
            ("not_finite", self.not_finite),
            ("negative", self.negative),
            ("backwards", self.backwards),
        ]
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Ignored) {
        self.not_finite += other.not_finite;
        self.negative += other.negative;
        self.backwards += other.backwards;
    }
}

/// The outbound outcomes on one proxy's metrics page, per backend, and
/// the samples that were ignored.
pub fn from_metrics_page(page: &str) -> (ClientCounts, Ignored) {
    let mut counts = ClientCounts::new();
    let mut ignored = Ignored::default();
    for (labels, value) in samples(page, OUTCOMES) {
        if label(labels, "direction") != Some("outbound") {
            continue;
        }
        let (Some(namespace), Some(service)) =
            (label(labels, "dst_namespace"), label(labels, "dst_service"))
        else {
            continue;
        };
        add(
            &mut counts,
            &mut ignored,
            namespace,
            service,
            label(labels, "classification"),
            value,
        );
    }
    (counts, ignored)
}

/// Adds `value` as a success or a failure of `namespace/service`, unless it
/// is no count at all (NaN, infinite or negative: noted in `ignored`).
pub fn add(
    counts: &mut ClientCounts,
    ignored: &mut Ignored,
    namespace: &str,
    service: &str,
    classification: Option<&str>,
    value: f64,
) {
    if !value.is_finite() {
        ignored.not_finite += 1;
        return;
    }
    if value < 0.0 {
        ignored.negative += 1;
        return;
    }
    let entry = counts
        .entry((namespace.to_owned(), service.to_owned()))
        .or_default();
    match classification {
        Some("success") => entry.success += value,
        _ => entry.failure += value,
    }
}

/// The last cumulative counts of each client, to turn the next ones into
/// what happened in between.
#[derive(Debug, Default)]
pub struct Deltas {
    last: BTreeMap<String, ClientCounts>,
}

impl Deltas {
    /// What `client` saw since its last sample. A client seen for the
    /// first time only sets the baseline (its past is not news); a counter
    /// that went down (the proxy restarted, or the page lies) only sets the
    /// new baseline and is noted in `ignored`: whatever a page claims, a
    /// client adds no more than its counters rose.
    pub fn update(
        &mut self,
        client: &str,
        now: ClientCounts,
        ignored: &mut Ignored,
    ) -> ClientCounts {
        let Some(before) = self.last.insert(client.to_owned(), now.clone()) else {
            return ClientCounts::new();
        };
        now.into_iter()
            .filter_map(|(backend, counts)| {
                let old = before.get(&backend).copied().unwrap_or_default();
                if counts.success < old.success || counts.failure < old.failure {
                    ignored.backwards += 1;
                    return None;
                }
                let delta = Counts {
                    success: counts.success - old.success,
                    failure: counts.failure - old.failure,
                };
                Some((backend, delta))
            })
            .collect()
    }

    /// Forgets clients that are gone.
    pub fn retain(&mut self, clients: &BTreeSet<String>) {
        self.last.retain(|client, _| clients.contains(client));
    }
}

/// `gateway_alive{target_cluster_name}` on a service mirror's metrics page.
pub fn gateways_alive(page: &str) -> BTreeMap<String, bool> {
    samples(page, "gateway_alive")
        .filter_map(|(labels, value)| {
            Some((
                label(labels, "target_cluster_name")?.to_owned(),
                value > 0.0,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
route_actual_response_total{direction=\"outbound\",authority=\"podinfo.test.svc.cluster.local:9898\",dst_namespace=\"test\",dst_service=\"podinfo\",classification=\"success\"} 90
route_actual_response_total{direction=\"outbound\",authority=\"podinfo.test.svc.cluster.local:9898\",dst_namespace=\"test\",dst_service=\"podinfo\",classification=\"failure\"} 10
route_actual_response_total{direction=\"outbound\",authority=\"podinfo.test.svc.cluster.local:9898\",dst_namespace=\"test\",dst_service=\"podinfo-east\",classification=\"success\"} 5
route_actual_response_total{direction=\"inbound\",dst_namespace=\"test\",dst_service=\"podinfo\",classification=\"success\"} 1000
";

    fn key(service: &str) -> BackendKey {
        ("test".into(), service.into())
    }

    #[test]
    fn outbound_outcomes_per_backend() {
        let (counts, ignored) = from_metrics_page(PAGE);
        assert_eq!(ignored, Ignored::default());
        assert_eq!(
            counts[&key("podinfo")],
            Counts {
                success: 90.0,
                failure: 10.0
            }
        );
        assert_eq!(counts[&key("podinfo-east")].success, 5.0);
        assert_eq!(counts.len(), 2, "inbound is not a client's view");
    }

    #[test]
    fn pages_that_are_no_counts_are_ignored_and_counted() {
        let page = "\
route_actual_response_total{direction=\"outbound\",dst_namespace=\"test\",dst_service=\"podinfo\",classification=\"failure\"} NaN
route_actual_response_total{direction=\"outbound\",dst_namespace=\"test\",dst_service=\"podinfo\",classification=\"failure\"} +Inf
route_actual_response_total{direction=\"outbound\",dst_namespace=\"test\",dst_service=\"podinfo\",classification=\"success\"} -5
route_actual_response_total{direction=\"outbound\",dst_namespace=\"test\",dst_service=\"podinfo\",classification=\"success\"} 3
";
        let (counts, ignored) = from_metrics_page(page);
        assert_eq!(
            counts[&key("podinfo")],
            Counts {
                success: 3.0,
                failure: 0.0
            }
        );
        assert_eq!((ignored.not_finite, ignored.negative), (2, 1));
    }

    #[test]
    fn deltas_start_at_the_second_sample_and_a_counter_that_went_down_adds_nothing() {
        let mut deltas = Deltas::default();
        let mut ignored = Ignored::default();
        let sample = |success, failure| -> ClientCounts {
            [(key("podinfo"), Counts { success, failure })].into()
        };
        assert!(
            deltas
                .update("pod-a", sample(100.0, 0.0), &mut ignored)
                .is_empty()
        );
        assert_eq!(
            deltas.update("pod-a", sample(150.0, 5.0), &mut ignored)[&key("podinfo")],
            Counts {
                success: 50.0,
                failure: 5.0
            }
        );
        // A page that swings down and up again claims nothing it did not
        // count on the way up.
        assert!(
            deltas
                .update("pod-a", sample(0.0, 0.0), &mut ignored)
                .is_empty(),
            "a restart, or a lie"
        );
        assert_eq!(ignored.backwards, 1);
        assert_eq!(
            deltas.update("pod-a", sample(7.0, 1.0), &mut ignored)[&key("podinfo")],
            Counts {
                success: 7.0,
                failure: 1.0
            },
            "counted from the new baseline"
        );
        deltas.retain(&BTreeSet::new());
        assert!(
            deltas
                .update("pod-a", sample(8.0, 1.0), &mut ignored)
                .is_empty()
        );
    }

    #[test]
    fn gateway_liveness_per_cluster() {
        let page = "gateway_alive{target_cluster_name=\"east\"} 1\ngateway_alive{target_cluster_name=\"north\"} 0\n";
        assert_eq!(
            gateways_alive(page),
            [("east".to_owned(), true), ("north".to_owned(), false)].into()
        );
    }
}
