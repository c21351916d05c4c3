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

/// The outbound outcomes on one proxy's metrics page, per backend.
pub fn from_metrics_page(page: &str) -> ClientCounts {
    let mut counts = ClientCounts::new();
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
            namespace,
            service,
            label(labels, "classification"),
            value,
        );
    }
    counts
}

/// Adds `value` as a success or a failure of `namespace/service`.
pub fn add(
    counts: &mut ClientCounts,
    namespace: &str,
    service: &str,
    classification: Option<&str>,
    value: f64,
) {
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
    /// that went down (the proxy restarted) counts from zero.
    pub fn update(&mut self, client: &str, now: ClientCounts) -> ClientCounts {
        let Some(before) = self.last.insert(client.to_owned(), now.clone()) else {
            return ClientCounts::new();
        };
        now.into_iter()
            .map(|(backend, counts)| {
                let old = before.get(&backend).copied().unwrap_or_default();
                let since = |now: f64, old: f64| if now >= old { now - old } else { now };
                let delta = Counts {
                    success: since(counts.success, old.success),
                    failure: since(counts.failure, old.failure),
                };
                (backend, delta)
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
        let counts = from_metrics_page(PAGE);
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
    fn deltas_start_at_the_second_sample_and_survive_restarts() {
        let mut deltas = Deltas::default();
        let sample = |success, failure| -> ClientCounts {
            [(key("podinfo"), Counts { success, failure })].into()
        };
        assert!(deltas.update("pod-a", sample(100.0, 0.0)).is_empty());
        assert_eq!(
            deltas.update("pod-a", sample(150.0, 5.0))[&key("podinfo")],
            Counts {
                success: 50.0,
                failure: 5.0
            }
        );
        assert_eq!(
            deltas.update("pod-a", sample(7.0, 1.0))[&key("podinfo")],
            Counts {
                success: 7.0,
                failure: 1.0
            },
            "the proxy restarted"
        );
        deltas.retain(&BTreeSet::new());
        assert!(deltas.update("pod-a", sample(8.0, 1.0)).is_empty());
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
