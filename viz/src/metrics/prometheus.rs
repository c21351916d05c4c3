//! viz's Prometheus, asked through the Kubernetes API server's service
//! proxy with the caller's own credentials (so RBAC decides who may read
//! the mesh's metrics, and nothing needs a port-forward).

use mesh_api::prometheus::Sample;

use crate::{CONFIG, NAMESPACE, PROMETHEUS, PROMETHEUS_PORT};

/// An in-cluster Service's port, which the API server's service proxy
/// reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// The Service's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its port.
    pub port: u16,
}

impl ServiceRef {
    /// viz's own Prometheus.
    pub fn bundled() -> Self {
        Self {
            namespace: NAMESPACE.to_owned(),
            name: PROMETHEUS.to_owned(),
            port: PROMETHEUS_PORT,
        }
    }

    /// The Service an in-cluster URL names (`http://NAME.NAMESPACE[.svc[.DOMAIN]][:PORT]`);
    /// an error that says why anything else cannot be reached.
    pub fn parse(url: &str) -> Result<Self, String> {
        let refused = |why: &str| {
            format!(
                "--prometheus-url {url:?}: {why}; mesh asks Prometheus through the API server's \
                 service proxy, so give an in-cluster Service URL such as \
                 http://prometheus.monitoring.svc.cluster.local:9090"
            )
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| refused("only http:// is supported"))?;
        let authority = rest.trim_end_matches('/');
        if authority.contains(['/', '?', '#', '@']) {
            return Err(refused("a path, query or user is not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| refused("the port is not a number from 1 to 65535"))?,
            ),
            None => (authority, 80),
        };
        let labels: Vec<&str> = host.split('.').collect();
        let dns_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let in_cluster = labels.len() >= 2
            && labels[..2].iter().all(|l| dns_label(l))
            && (labels.len() == 2 || labels[2] == "svc")
            && labels.iter().all(|l| dns_label(l));
        if !in_cluster {
            return Err(refused("the host is not NAME.NAMESPACE[.svc[.DOMAIN]]"));
        }
        Ok(Self {
            namespace: labels[1].to_owned(),
            name: labels[0].to_owned(),
            port,
        })
    }
}

/// viz's Prometheus in one cluster.
#[derive(Clone)]
pub struct Prometheus {
    transport: Transport,
}

/// How Prometheus is reached.
#[derive(Clone)]
enum Transport {
    /// Through the API server's service proxy with the caller's
    /// credentials (the CLI).
    ServiceProxy {
        client: kube::Client,
        service: ServiceRef,
    },
    /// Straight to `host:port` (viz's components, in the cluster).
    Direct { authority: String },
}

/// How long a direct query may take.
const DIRECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest answer read from Prometheus directly.
const MAX_ANSWER_BYTES: usize = 64 << 20;

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus").finish_non_exhaustive()
    }
}

impl Prometheus {
    /// The Prometheus viz uses in the cluster `client` talks to: the one
    /// its `linkerd-viz-config` names, else its own.
    pub async fn locate(client: kube::Client) -> anyhow::Result<Self> {
        let configs: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client.clone(), NAMESPACE);
        let url = configs
            .get_opt(CONFIG)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.data)
            .and_then(|d| d.get("prometheusUrl").cloned())
            .filter(|u| !u.is_empty());
        let service = match url {
            Some(url) => ServiceRef::parse(&url)
                .map_err(|e| anyhow::anyhow!("ConfigMap {NAMESPACE}/{CONFIG}: {e}"))?,
            None => ServiceRef::bundled(),
        };
        Ok(Self {
            transport: Transport::ServiceProxy { client, service },
        })
    }

    /// The Prometheus at `url` (`http://host[:port]`), asked directly: for
    /// viz's components, which run in the cluster.
    pub fn direct(url: &str) -> Result<Self, String> {
        let refused = |why: &str| format!("Prometheus URL {url:?}: {why}");
        let uri: http::Uri = url.parse().map_err(|e| refused(&format!("{e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(refused("only http:// is supported"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(refused("a path or query is not supported"));
        }
        let authority = uri.authority().ok_or_else(|| refused("no host"))?;
        Ok(Self {
            transport: Transport::Direct {
                authority: format!(
                    "{}:{}",
                    authority.host(),
                    authority.port_u16().unwrap_or(80)
                ),
            },
        })
    }

    /// The Service it is reached at through the API server (`None` when
    /// it is asked directly).
    pub fn service(&self) -> Option<&ServiceRef> {
        match &self.transport {
            Transport::ServiceProxy { service, .. } => Some(service),
            Transport::Direct { .. } => None,
        }
    }

    /// Where it is, for messages.
    fn name(&self) -> String {
        match &self.transport {
            Transport::ServiceProxy { service, .. } => {
                format!("Prometheus {}/{}", service.namespace, service.name)
            }
            Transport::Direct { authority } => format!("Prometheus at {authority}"),
        }
    }

    /// GETs `path` from Prometheus's API.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        match &self.transport {
            Transport::ServiceProxy { client, service } => {
                let ServiceRef {
                    namespace,
                    name,
                    port,
                } = service;
                mesh_api::kube_client::service_get(client, namespace, name, *port, path)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{e:#} (is viz installed? `mesh viz install | kubectl apply -f -`, then `mesh viz check`)"
                        )
                    })
            }
            Transport::Direct { authority } => {
                mesh_core::http_get::get(authority, path, DIRECT_TIMEOUT, MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| anyhow::anyhow!("GET http://{authority}{path}: {e}"))
            }
        }
    }

    /// The answer to `promql`, now.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Sample>> {
        let body = self.get(&mesh_api::prometheus::query_path(promql)).await?;
        mesh_api::prometheus::samples(&body, promql)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.name()))
    }

    /// The series of `promql` from `start` to `end` (unix seconds) every
    /// `step` seconds.
    pub async fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> anyhow::Result<Vec<mesh_api::prometheus::Range>> {
        let path = mesh_api::prometheus::query_range_path(promql, start, end, step);
        let body = self.get(&path).await?;
        mesh_api::prometheus::ranges(&body, promql)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.name()))
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
    fn only_in_cluster_service_urls_are_taken() {
        let prometheus = |ns: &str, port| ServiceRef {
            namespace: ns.into(),
            name: "prometheus".into(),
            port,
        };
        assert_eq!(
            ServiceRef::parse("http://prometheus.monitoring.svc.cluster.local:9090"),
            Ok(prometheus("monitoring", 9090))
        );
        assert_eq!(
            ServiceRef::parse("http://prometheus.monitoring"),
            Ok(prometheus("monitoring", 80))
        );
        for bad in [
            "https://prometheus.monitoring:9090",
            "http://prometheus:9090",
            "http://10.0.0.1:9090",
            "http://prometheus.monitoring.example.com:9090",
            "http://prometheus.monitoring:9090/api",
            "http://user@prometheus.monitoring:9090",
            "http://prometheus.monitoring:0",
            "http://Prometheus.monitoring:9090",
        ] {
            let refused = ServiceRef::parse(bad).expect_err(bad);
            assert!(refused.contains("in-cluster Service URL"), "{refused}");
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
