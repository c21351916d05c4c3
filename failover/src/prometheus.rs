//! Reading what clients saw from a Prometheus server instead of their
//! metrics pages: the proxies' per-attempt outcomes summed per scraped
//! instance (so the same per-client deltas apply), what each proxy served
//! inbound per client identity, which proxies are scraped, and the
//! mirrors' gateway liveness, with PromQL over the HTTP API.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_api::prometheus::Sample;

use crate::error::Error;
use crate::signals::{self, ClientCounts, Ignored, OUTCOMES, RESPONSES, ServedCounts};
use crate::window::Counts;

/// A Prometheus server.
#[derive(Debug, Clone)]
pub struct Prometheus {
    authority: String,
    timeout: Duration,
}

impl Prometheus {
    /// The server at `url` (`http://prometheus.monitoring:9090`).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, Error> {
        let refused = |reason: String| Error::PrometheusUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: http::Uri = url.parse().map_err(|e| refused(format!("{e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(refused("only http:// is supported".into()));
        }
        let authority = uri.authority().ok_or_else(|| refused("no host".into()))?;
        let port = authority.port_u16().unwrap_or(80);
        Ok(Self {
            authority: format!("{}:{port}", authority.host()),
            timeout,
        })
    }

    async fn query(&self, promql: &str) -> Result<Vec<Sample>, Error> {
        let path = mesh_api::prometheus::query_path(promql);
        let body = crate::fetch::get(&self.authority, &path, self.timeout).await?;
        mesh_api::prometheus::samples(&body, promql).map_err(Error::Prometheus)
    }

    /// Each scraped client in `namespace` (the `namespace` label Linkerd's
    /// scrape configuration gives every proxy's series) with its cumulative
    /// outcomes toward `namespace`'s Services; samples that are no counts
    /// are noted in `ignored`.
    pub async fn client_counts(
        &self,
        namespace: &str,
        ignored: &mut Ignored,
    ) -> Result<BTreeMap<String, ClientCounts>, Error> {
        let promql = format!(
            "sum by (instance, dst_namespace, dst_service, classification) \
             ({OUTCOMES}{{direction=\"outbound\",namespace=\"{namespace}\",dst_namespace=\"{namespace}\"}})"
        );
        self.counts_per_instance(&promql, ignored, |labels| {
            Some((
                labels.get("dst_namespace")?.clone(),
                labels.get("dst_service")?.clone(),
            ))
        })
        .await
    }

    /// Each scraped proxy in `namespace` with what it served inbound over
    /// mutual TLS, per client identity (cumulative); samples that are no
    /// counts are noted in `ignored`.
    pub async fn served_counts(
        &self,
        namespace: &str,
        ignored: &mut Ignored,
    ) -> Result<BTreeMap<String, ServedCounts>, Error> {
        let promql = format!(
            "sum by (instance, client_id, classification) \
             ({RESPONSES}{{direction=\"inbound\",tls=\"true\",namespace=\"{namespace}\"}})"
        );
        self.counts_per_instance(&promql, ignored, |labels| labels.get("client_id").cloned())
            .await
    }

    /// The answer to `promql` (series with `instance` and `classification`
    /// labels) as cumulative counts per instance, keyed by what `key` reads
    /// of each series' labels (series without one are left out); samples
    /// that are no counts are noted in `ignored`.
    async fn counts_per_instance<K: Ord>(
        &self,
        promql: &str,
        ignored: &mut Ignored,
        key: impl Fn(&BTreeMap<String, String>) -> Option<K>,
    ) -> Result<BTreeMap<String, BTreeMap<K, Counts>>, Error> {
        let mut proxies: BTreeMap<String, BTreeMap<K, Counts>> = BTreeMap::new();
        for sample in self.query(promql).await? {
            let labels = &sample.labels;
            let (Some(instance), Some(key)) = (labels.get("instance"), key(labels)) else {
                continue;
            };
            let classification = labels.get("classification").map(String::as_str);
            let counts = proxies.entry(instance.clone()).or_default();
            signals::add(counts, ignored, key, classification, sample.value);
        }
        Ok(proxies)
    }

    /// The instances (`ip:port`) of `namespace` whose last scrape worked.
    pub async fn scraped(&self, namespace: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .query(&format!("up{{namespace=\"{namespace}\"}} == 1"))
            .await?
            .into_iter()
            .filter_map(|s| s.labels.get("instance").cloned())
            .collect())
    }

    /// `gateway_alive` per linked cluster, as the mirrors report it.
    pub async fn gateways_alive(&self) -> Result<BTreeMap<String, bool>, Error> {
        Ok(self
            .query("max by (target_cluster_name) (gateway_alive)")
            .await?
            .into_iter()
            .filter_map(|s| {
                let alive = s.value > 0.0;
                Some((s.labels.get("target_cluster_name")?.clone(), alive))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_queries() {
        let p = Prometheus::new("http://prometheus.monitoring:9090", Duration::from_secs(1))
            .expect("url");
        assert_eq!(p.authority, "prometheus.monitoring:9090");
        assert!(Prometheus::new("https://x", Duration::from_secs(1)).is_err());
    }
}
