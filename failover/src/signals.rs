//! What the clients of a split saw, per backend: the per-attempt outcomes
//! their proxies count (`route_actual_response_total` — what each backend
//! answered, even when a retry on another backend hid a failure from the
//! caller), read from each client's metrics page or from a Prometheus
//! server that scrapes them; what each proxy served inbound, by client
//! identity (to check the clients' word against, see `corroborate`); and
//! the cumulative counters turned into what happened since the last
//! sample, per proxy.

use std::collections::{BTreeMap, BTreeSet};

use mesh_api::metrics_text::{label, samples};

use crate::window::Counts;

/// The per-attempt outcomes metric of the proxies.
pub const OUTCOMES: &str = "route_actual_response_total";

/// The responses metric of the proxies: inbound, with `client_id`, what a
/// backend's proxy served each client identity.
pub const RESPONSES: &str = "response_total";

/// A backend Service: `(namespace, name)`.
pub type BackendKey = (String, String);

/// Cumulative outcomes per backend, as one client reports them.
pub type ClientCounts = BTreeMap<BackendKey, Counts>;

/// Cumulative outcomes one proxy served inbound, per client identity
/// (`client_id`: mutual TLS only).
pub type ServedCounts = BTreeMap<String, Counts>;

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
    /// Claims of a round (one client identity toward one backend) that
    /// the backend's own proxies did not confirm, cut by more than the
    /// requests in flight at a scrape (see `corroborate`).
    pub unconfirmed: u64,
}

impl Ignored {
    /// Each kind with its metric label.
    pub fn by_reason(&self) -> [(&'static str, u64); 4] {
        [
            ("not_finite", self.not_finite),
            ("negative", self.negative),
            ("backwards", self.backwards),
            ("unconfirmed", self.unconfirmed),
        ]
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Ignored) {
        self.not_finite += other.not_finite;
        self.negative += other.negative;
        self.backwards += other.backwards;
        self.unconfirmed += other.unconfirmed;
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
            (namespace.to_owned(), service.to_owned()),
            label(labels, "classification"),
            value,
        );
    }
    (counts, ignored)
}

/// What one proxy's metrics page says it served inbound over mutual TLS,
/// per client identity, and the samples that were ignored.
pub fn served_from_metrics_page(page: &str) -> (ServedCounts, Ignored) {
    let mut served = ServedCounts::new();
    let mut ignored = Ignored::default();
    for (labels, value) in samples(page, RESPONSES) {
        if label(labels, "direction") != Some("inbound") || label(labels, "tls") != Some("true") {
            continue;
        }
        let Some(client) = label(labels, "client_id") else {
            continue;
        };
        add(
            &mut served,
            &mut ignored,
            client.to_owned(),
            label(labels, "classification"),
            value,
        );
    }
    (served, ignored)
}

/// Adds `value` as a success or a failure of `key`, unless it is no count
/// at all (NaN, infinite or negative: noted in `ignored`).
pub fn add<K: Ord>(
    counts: &mut BTreeMap<K, Counts>,
    ignored: &mut Ignored,
    key: K,
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
    let entry = counts.entry(key).or_default();
    match classification {
        Some("success") => entry.success += value,
        _ => entry.failure += value,
    }
}

/// The last cumulative counts of each proxy (per backend for a client's
/// claims, per client identity for what a backend served), to turn the
/// next ones into what happened in between.
#[derive(Debug)]
pub struct Deltas<K = BackendKey> {
    last: BTreeMap<String, BTreeMap<K, Counts>>,
}

impl<K> Default for Deltas<K> {
    fn default() -> Self {
        Self {
            last: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> Deltas<K> {
    /// What `proxy` counted since its last sample. A proxy seen for the
    /// first time only sets the baseline (its past is not news); a counter
    /// that went down (the proxy restarted, or the page lies) only sets the
    /// new baseline and is noted in `ignored`: whatever a page claims, a
    /// proxy adds no more than its counters rose.
    pub fn update(
        &mut self,
        proxy: &str,
        now: BTreeMap<K, Counts>,
        ignored: &mut Ignored,
    ) -> BTreeMap<K, Counts> {
        let Some(before) = self.last.insert(proxy.to_owned(), now.clone()) else {
            return BTreeMap::new();
        };
        now.into_iter()
            .filter_map(|(key, counts)| {
                let old = before.get(&key).copied().unwrap_or_default();
                if counts.success < old.success || counts.failure < old.failure {
                    ignored.backwards += 1;
                    return None;
                }
                let delta = Counts {
                    success: counts.success - old.success,
                    failure: counts.failure - old.failure,
                };
                Some((key, delta))
            })
            .collect()
    }

    /// Forgets proxies that are gone.
    pub fn retain(&mut self, proxies: &BTreeSet<String>) {
        self.last.retain(|proxy, _| proxies.contains(proxy));
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
    fn served_per_client_identity_over_mutual_tls_only() {
        let page = "\
response_total{direction=\"inbound\",tls=\"true\",client_id=\"web.test.serviceaccount.identity.linkerd.cluster.local\",status_code=\"200\",classification=\"success\"} 40
response_total{direction=\"inbound\",tls=\"true\",client_id=\"web.test.serviceaccount.identity.linkerd.cluster.local\",status_code=\"500\",classification=\"failure\"} 2
response_total{direction=\"inbound\",tls=\"no_identity\",no_tls_reason=\"no_tls_from_remote\",classification=\"failure\"} 7
response_total{direction=\"outbound\",tls=\"true\",client_id=\"web.test.serviceaccount.identity.linkerd.cluster.local\",classification=\"failure\"} 9
";
        let (served, ignored) = served_from_metrics_page(page);
        assert_eq!(ignored, Ignored::default());
        assert_eq!(
            served,
            [(
                "web.test.serviceaccount.identity.linkerd.cluster.local".to_owned(),
                Counts {
                    success: 40.0,
                    failure: 2.0
                }
            )]
            .into(),
            "plain-text clients prove no identity, and outbound is not served"
        );
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
