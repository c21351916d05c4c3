//! viz's Prometheus, asked through the Kubernetes API server's service
//! proxy with the caller's own credentials (so RBAC decides who may read
//! the mesh's metrics, and nothing needs a port-forward).

use mesh_api::prometheus::Sample;

use super::install::{NAMESPACE, PROMETHEUS, PROMETHEUS_PORT};

/// viz's Prometheus in one cluster.
#[derive(Clone)]
pub struct Prometheus {
    client: kube::Client,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus").finish_non_exhaustive()
    }
}

impl Prometheus {
    /// The Prometheus of the cluster `client` talks to.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// GETs `path` from Prometheus's API.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        mesh_api::kube_client::service_get(
            &self.client,
            NAMESPACE,
            PROMETHEUS,
            PROMETHEUS_PORT,
            path,
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{e:#} (is viz installed? `mesh viz install | kubectl apply -f -`, then `mesh viz check`)"
            )
        })
    }

    /// The answer to `promql`, now.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Sample>> {
        let body = self.get(&mesh_api::prometheus::query_path(promql)).await?;
        mesh_api::prometheus::samples(&body, promql)
            .map_err(|e| anyhow::anyhow!("Prometheus {NAMESPACE}/{PROMETHEUS}: {e}"))
    }
}

/// The length of a Prometheus duration (`30s`, `1m`, `6h`) in seconds;
/// an error that says what is expected when `text` is not one.
pub fn duration_seconds(text: &str) -> Result<f64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let per_unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        "y" => 31_536_000.0,
        _ => 0.0,
    };
    let count: u64 = if digits.chars().all(|c| c.is_ascii_digit()) {
        digits.parse().unwrap_or(0)
    } else {
        0
    };
    if count == 0 || per_unit == 0.0 {
        return Err(format!(
            "{text:?} is not a Prometheus duration such as 10s, 1m or 6h"
        ));
    }
    Ok(count as f64 * per_unit)
}

/// A label matcher list for PromQL (`{a="b",c="d"}`); values are escaped.
pub fn matchers(pairs: &[(String, String)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_prometheus_durations() {
        assert_eq!(duration_seconds("30s"), Ok(30.0));
        assert_eq!(duration_seconds("1m"), Ok(60.0));
        assert_eq!(duration_seconds("6h"), Ok(21_600.0));
        for bad in ["", "0s", "10", "s", "1.5s", "10 s", "10sec", "-1m"] {
            assert!(duration_seconds(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn matcher_values_cannot_break_out() {
        assert_eq!(
            matchers(&[("a".into(), "x\"}or{".into()), ("b".into(), "c".into())]),
            r#"{a="x\"}or{",b="c"}"#
        );
    }
}
