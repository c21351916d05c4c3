//! Reading a Link: its fields as the mirror uses them, each bad one named
//! (`spec.gatewayPort: "x" is not a port`), so a malformed Link is reported
//! and the mirrors it made stay as they are.

use std::net::IpAddr;
use std::time::Duration;

use mesh_api::crds::link::{Link, LinkSpec};
use mesh_api::labels::TRANSPORT_ANNOTATION;

/// A Link, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSettings {
    /// `spec.targetClusterName`.
    pub cluster: String,
    /// `spec.targetClusterDomain` (`cluster.local` when empty).
    pub cluster_domain: String,
    /// `spec.targetClusterLinkerdNamespace` (`linkerd` when empty).
    pub linkerd_namespace: String,
    /// `spec.gatewayAddress`, split.
    pub gateway_hosts: Vec<String>,
    /// `spec.gatewayPort`.
    pub gateway_port: u16,
    /// `spec.gatewayIdentity`.
    pub gateway_identity: String,
    /// `spec.clusterCredentialsSecret` (`cluster-credentials-<cluster>` when empty).
    pub credentials_secret: String,
    /// `spec.probeSpec.path` (`/ready`).
    pub probe_path: String,
    /// `spec.probeSpec.port` (4191).
    pub probe_port: u16,
    /// `spec.probeSpec.period` (3 s).
    pub probe_period: Duration,
    /// `spec.probeSpec.failureThreshold` (3).
    pub failure_threshold: u32,
    /// `spec.probeSpec.timeout` (30 s, never more than the period).
    pub probe_timeout: Duration,
    /// The `mesh.dev/transport` annotation (`quic`, `tcp` or `auto`), when
    /// set.
    pub transport: Option<String>,
    /// `spec.selector` as the API's label selector (Linkerd's default:
    /// `mirror.linkerd.io/exported=true`): which of the linked cluster's
    /// Services are watched and mirrored.
    pub selector: String,
}

/// A field of a Link that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Link {link}: {}{field}: {reason}", if field.starts_with("metadata.") { "" } else { "spec." })]
pub struct InvalidLink {
    /// The Link's name.
    pub link: String,
    /// The field (under `spec` unless it starts with `metadata.`).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn number(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A duration as Links write them: `3s`, `1m`, or a bare number of seconds.
fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    text.parse::<u64>()
        .map(Duration::from_secs)
        .ok()
        .or_else(|| humantime::parse_duration(text).ok())
}

impl LinkSettings {
    /// Checks `link`: its spec and our annotations.
    pub fn from_link(link: &Link) -> Result<Self, InvalidLink> {
        let name = link.metadata.name.clone().unwrap_or_default();
        let mut settings = Self::from_spec(&name, &link.spec)?;
        let transport = link
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRANSPORT_ANNOTATION));
        if let Some(transport) = transport {
            if !["quic", "tcp", "auto"].contains(&transport.as_str()) {
                return Err(InvalidLink {
                    link: name,
                    field: "metadata.annotations[mesh.dev/transport]",
                    reason: format!("{transport:?} is not one of quic, tcp, auto"),
                });
            }
            settings.transport = Some(transport.clone());
        }
        Ok(settings)
    }

    /// Checks the spec of the Link named `name`.
    pub fn from_spec(name: &str, spec: &LinkSpec) -> Result<Self, InvalidLink> {
        let bad = |field: &'static str, reason: String| InvalidLink {
            link: name.to_owned(),
            field,
            reason,
        };
        if spec.target_cluster_name.is_empty() {
            return Err(bad("targetClusterName", "empty".into()));
        }
        let gateway_hosts: Vec<String> = spec
            .gateway_address
            .split(',')
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        if gateway_hosts.is_empty() {
            return Err(bad("gatewayAddress", "no address".into()));
        }
        // Without the gateway's identity, proxies could not authenticate
        // it: mesh never sends another cluster's traffic in clear.
        if spec.gateway_identity.trim().is_empty() {
            return Err(bad(
                "gatewayIdentity",
                "empty: proxies could not authenticate the gateway, and mesh never sends traffic to another cluster in clear".into(),
            ));
        }
        let port =
            |field: &'static str, value: Option<&serde_json::Value>, default: u16| match value {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(value) => number(value)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad(field, format!("{value} is not a port"))),
            };
        let gateway_port = port("gatewayPort", Some(&spec.gateway_port), 4143)?;
        let selector = match &spec.selector {
            None => format!("{}=true", mesh_api::labels::MIRROR_EXPORTED),
            Some(selector) => {
                mesh_api::selector::query(selector).map_err(|reason| bad("selector", reason))?
            }
        };
        let probe = spec.probe_spec.clone().unwrap_or_default();
        let probe_port = port("probeSpec.port", probe.port.as_ref(), 4191)?;
        let probe_period = match &probe.period {
            None => Duration::from_secs(3),
            Some(text) => duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad("probeSpec.period", format!("{text:?} is not a duration")))?,
        };
        let probe_timeout = match &probe.timeout {
            None => Duration::from_secs(30),
            Some(text) => duration(text)
                .ok_or_else(|| bad("probeSpec.timeout", format!("{text:?} is not a duration")))?,
        }
        .min(probe_period);
        let failure_threshold = match &probe.failure_threshold {
            None => 3,
            Some(value) => number(value)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    bad(
                        "probeSpec.failureThreshold",
                        format!("{value} is not a count"),
                    )
                })?,
        };
        Ok(Self {
            cluster: spec.target_cluster_name.clone(),
            cluster_domain: if spec.target_cluster_domain.is_empty() {
                "cluster.local".into()
            } else {
                spec.target_cluster_domain.clone()
            },
            linkerd_namespace: spec
                .target_cluster_linkerd_namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| mesh_api::labels::CONTROL_PLANE_NAMESPACE.into()),
            gateway_hosts,
            gateway_port,
            gateway_identity: spec.gateway_identity.clone(),
            credentials_secret: if spec.cluster_credentials_secret.is_empty() {
                format!("cluster-credentials-{}", spec.target_cluster_name)
            } else {
                spec.cluster_credentials_secret.clone()
            },
            probe_path: probe.path.unwrap_or_else(|| "/ready".into()),
            probe_port,
            probe_period,
            failure_threshold,
            probe_timeout,
            transport: None,
            selector,
        })
    }

    /// The gateway's addresses now (host names resolved afresh on every
    /// call, so a moved gateway is followed), sorted.
    pub async fn resolve_gateway(&self) -> Vec<IpAddr> {
        let mut addresses = Vec::new();
        for host in &self.gateway_hosts {
            match host.parse::<IpAddr>() {
                Ok(ip) => addresses.push(ip),
                Err(_) => match tokio::net::lookup_host((host.as_str(), self.gateway_port)).await {
                    Ok(found) => addresses.extend(found.map(|a| a.ip())),
                    Err(e) => tracing::warn!(%host, "resolving the gateway: {e}"),
                },
            }
        }
        addresses.sort();
        addresses.dedup();
        addresses
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    use mesh_api::crds::link::ProbeSpec;

    use super::*;

    fn spec() -> LinkSpec {
        LinkSpec {
            target_cluster_name: "east".into(),
            gateway_address: "172.31.0.129, gw.example.".into(),
            gateway_port: serde_json::json!("4143"),
            gateway_identity:
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                    .into(),
            probe_spec: Some(ProbeSpec {
                path: Some("/ready".into()),
                port: Some(serde_json::json!("4191")),
                period: Some("3".into()),
                failure_threshold: None,
                timeout: None,
            }),
            ..LinkSpec::default()
        }
    }

    #[test]
    fn linkerds_link_fields_are_read_with_their_defaults() {
        let settings = LinkSettings::from_spec("east", &spec()).expect("valid");
        assert_eq!(settings.gateway_hosts, ["172.31.0.129", "gw.example."]);
        assert_eq!((settings.gateway_port, settings.probe_port), (4143, 4191));
        assert_eq!(settings.probe_period, Duration::from_secs(3));
        assert_eq!(
            settings.probe_timeout,
            Duration::from_secs(3),
            "never past the period"
        );
        assert_eq!(settings.failure_threshold, 3);
        assert_eq!(settings.credentials_secret, "cluster-credentials-east");
        assert_eq!(settings.cluster_domain, "cluster.local");
        assert_eq!(settings.selector, "mirror.linkerd.io/exported=true");
        let mut scoped = spec();
        scoped.selector = Some(LabelSelector {
            match_labels: Some([("tier".to_owned(), "web".to_owned())].into()),
            match_expressions: None,
        });
        let settings = LinkSettings::from_spec("east", &scoped).expect("valid");
        assert_eq!(settings.selector, "tier=web");
    }

    #[test]
    fn each_bad_field_is_named() {
        for (change, field) in [
            (
                Box::new(|s: &mut LinkSpec| s.gateway_port = serde_json::json!("x"))
                    as Box<dyn Fn(&mut LinkSpec)>,
                "gatewayPort",
            ),
            (
                Box::new(|s: &mut LinkSpec| s.gateway_address = " , ".into()),
                "gatewayAddress",
            ),
            (
                Box::new(|s: &mut LinkSpec| s.target_cluster_name = String::new()),
                "targetClusterName",
            ),
            (
                Box::new(|s: &mut LinkSpec| s.gateway_identity = " ".into()),
                "gatewayIdentity",
            ),
            (
                Box::new(|s: &mut LinkSpec| {
                    s.probe_spec.as_mut().expect("probe").period = Some("soon".into());
                }),
                "probeSpec.period",
            ),
            (
                Box::new(|s: &mut LinkSpec| {
                    s.selector = Some(LabelSelector {
                        match_labels: None,
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "mirror.linkerd.io/exported".into(),
                            operator: "Bogus".into(),
                            values: None,
                        }]),
                    });
                }),
                "selector",
            ),
        ] {
            let mut bad = spec();
            change(&mut bad);
            let err = LinkSettings::from_spec("east", &bad).expect_err(field);
            assert_eq!(err.field, field);
            assert!(
                err.to_string()
                    .starts_with(&format!("Link east: spec.{field}")),
                "{err}"
            );
        }
    }
}
