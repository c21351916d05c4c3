//! The proxy's settings: the installation's defaults, overridden by
//! `config.linkerd.io/*` annotations on the namespace and then on the pod
//! (Linkerd's names). A bad annotation is an error that names it; nothing
//! is injected with a setting that would not work.

use std::collections::BTreeMap;

use mesh_api::labels::CONFIG_ANNOTATION_PREFIX;

/// What the installation injects by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    /// The proxy image repository.
    pub proxy_image: String,
    /// The proxy version (image tag and `linkerd.io/proxy-version`).
    pub proxy_version: String,
    /// The init container's image (repository and tag), when not the
    /// proxy's own (which holds `mesh-init` and iptables).
    pub init_image: Option<String>,
    /// The UID the proxy runs as.
    pub proxy_uid: i64,
    /// The proxy's log filter.
    pub log_level: String,
    /// The control plane's namespace.
    pub control_plane_namespace: String,
    /// The identity trust domain.
    pub trust_domain: String,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// The trust anchors (PEM).
    pub trust_anchors_pem: String,
    /// Inbound ports that bypass the proxy.
    pub skip_inbound_ports: String,
    /// Outbound ports that bypass the proxy.
    pub skip_outbound_ports: String,
    /// Networks whose outbound traffic bypasses the proxy.
    pub skip_subnets: String,
    /// Ports forwarded as opaque TCP.
    pub opaque_ports: String,
    /// Resource requests and limits of the proxy (Kubernetes quantities).
    pub cpu_request: Option<String>,
    /// CPU limit.
    pub cpu_limit: Option<String>,
    /// Memory request.
    pub memory_request: Option<String>,
    /// Memory limit.
    pub memory_limit: Option<String>,
    /// The proxy is a multicluster gateway (`config.linkerd.io/enable-gateway`).
    pub gateway: bool,
    /// The default inbound policy (`config.linkerd.io/default-inbound-policy`,
    /// else the installation's `proxy.defaultInboundPolicy`).
    pub default_inbound_policy: String,
    /// The cluster's networks (`clusterNetworks`), for the `cluster-*`
    /// default policies.
    pub cluster_networks: String,
    /// A gateway's export selector (`mesh.dev/gateway-exports`, JSON);
    /// the proxy's default when unset.
    pub gateway_exports: Option<String>,
    /// A gateway's Secret holding the QUIC reset key its pods share
    /// (`mesh.dev/gateway-reset-key-secret`).
    pub gateway_reset_key_secret: Option<String>,
    /// The congestion controller of the proxy's QUIC connections
    /// (`mesh.dev/quic-congestion-control`); the proxy's default when
    /// unset.
    pub quic_congestion_control: Option<String>,
    /// How long the proxy keeps serving after the pod is told to stop,
    /// before it drains (`config.alpha.linkerd.io/proxy-wait-before-exit-seconds`):
    /// time for the Service's endpoints to move to a replacement pod.
    pub wait_before_exit_seconds: u64,
    /// The proxy serves no tap (`viz.linkerd.io/disable-tap` or
    /// `config.linkerd.io/disable-tap`: "true").
    pub tap_disabled: bool,
}

/// A boolean annotation's value.
fn flag(value: &str) -> Option<bool> {
    value.trim().parse::<bool>().ok()
}

/// Where `mesh-init` is in the proxy image.
pub const INIT_PROGRAM: &str = "/usr/bin/mesh-init";

impl Values {
    /// The init container's image: the one given, else the proxy's.
    pub fn init_image(&self) -> String {
        self.init_image
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.proxy_image, self.proxy_version))
    }
}

/// The proxies' log filter unless one is given.
pub const DEFAULT_PROXY_LOG_LEVEL: &str = "warn,mesh_proxy=info";

impl Values {
    /// Linkerd's defaults with `trust_anchors_pem`, proxy version `version`.
    pub fn new(trust_anchors_pem: impl Into<String>, version: impl Into<String>) -> Self {
        let version = version.into();
        Self {
            proxy_image: "mesh/proxy".into(),
            init_image: None,
            proxy_version: version,
            proxy_uid: 2102,
            log_level: DEFAULT_PROXY_LOG_LEVEL.into(),
            control_plane_namespace: mesh_api::labels::CONTROL_PLANE_NAMESPACE.into(),
            trust_domain: mesh_api::identity::DEFAULT_TRUST_DOMAIN.into(),
            cluster_domain: "cluster.local".into(),
            trust_anchors_pem: trust_anchors_pem.into(),
            skip_inbound_ports: String::new(),
            skip_outbound_ports: String::new(),
            skip_subnets: String::new(),
            opaque_ports: mesh_api::ports::PortSet::default_opaque().to_string(),
            cpu_request: None,
            cpu_limit: None,
            memory_request: None,
            memory_limit: None,
            gateway: false,
            default_inbound_policy: "all-unauthenticated".into(),
            cluster_networks: mesh_api::ports::DEFAULT_CLUSTER_NETWORKS.into(),
            gateway_exports: None,
            quic_congestion_control: None,
            wait_before_exit_seconds: 0,
            tap_disabled: false,
            gateway_reset_key_secret: None,
        }
    }
}

/// A `config.linkerd.io/*` annotation that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}={value:?} on {on}: {reason}")]
pub struct ValuesError {
    /// The annotation.
    pub annotation: String,
    /// Its value.
    pub value: String,
    /// Where it was (`namespace shop`, `pod template of deployment/web`).
    pub on: String,
    /// What is wrong.
    pub reason: String,
}

/// Annotations to apply, in order (namespace first, then pod).
#[derive(Debug, Clone, Default)]
pub struct Overrides<'a> {
    layers: Vec<(&'a BTreeMap<String, String>, String)>,
}

impl<'a> Overrides<'a> {
    /// Adds a layer of annotations found `on` something.
    pub fn layer(
        mut self,
        annotations: Option<&'a BTreeMap<String, String>>,
        on: impl Into<String>,
    ) -> Self {
        if let Some(annotations) = annotations {
            self.layers.push((annotations, on.into()));
        }
        self
    }

    /// `values` with every layer applied.
    pub fn apply(&self, values: &Values) -> Result<Values, ValuesError> {
        let mut out = values.clone();
        for (annotations, on) in &self.layers {
            for (key, value) in annotations.iter() {
                if key == mesh_api::labels::GATEWAY_EXPORTS_ANNOTATION {
                    out.gateway_exports =
                        Some(gateway_exports(value).map_err(|reason| ValuesError {
                            annotation: key.clone(),
                            value: value.clone(),
                            on: on.clone(),
                            reason,
                        })?);
                    continue;
                }
                if key == mesh_api::labels::GATEWAY_RESET_KEY_SECRET_ANNOTATION {
                    let name = value.trim();
                    let valid = !name.is_empty()
                        && name.len() <= 253
                        && name.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                        });
                    if !valid {
                        return Err(ValuesError {
                            annotation: key.clone(),
                            value: value.clone(),
                            on: on.clone(),
                            reason: "expected the name of a Secret".into(),
                        });
                    }
                    out.gateway_reset_key_secret = Some(name.to_owned());
                    continue;
                }
                if key == mesh_api::labels::QUIC_CONGESTION_CONTROL_ANNOTATION {
                    let name = value.trim().to_ascii_lowercase();
                    if !mesh_api::labels::QUIC_CONGESTION_CONTROLS.contains(&name.as_str()) {
                        return Err(ValuesError {
                            annotation: key.clone(),
                            value: value.clone(),
                            on: on.clone(),
                            reason: format!(
                                "expected one of {}",
                                mesh_api::labels::QUIC_CONGESTION_CONTROLS.join(", ")
                            ),
                        });
                    }
                    out.quic_congestion_control = Some(name);
                    continue;
                }
                if key == mesh_api::labels::WAIT_BEFORE_EXIT_ANNOTATION {
                    out.wait_before_exit_seconds = value
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|s| *s <= 3600)
                        .ok_or_else(|| ValuesError {
                            annotation: key.clone(),
                            value: value.clone(),
                            on: on.clone(),
                            reason: "expected a number of seconds from 0 to 3600".into(),
                        })?;
                    continue;
                }
                if key == mesh_api::labels::VIZ_DISABLE_TAP_ANNOTATION {
                    out.tap_disabled = flag(value).ok_or_else(|| ValuesError {
                        annotation: key.clone(),
                        value: value.clone(),
                        on: on.clone(),
                        reason: "expected true or false".into(),
                    })?;
                    continue;
                }
                let Some(name) = key.strip_prefix(CONFIG_ANNOTATION_PREFIX) else {
                    continue;
                };
                let error = |reason: &str| ValuesError {
                    annotation: key.clone(),
                    value: value.clone(),
                    on: on.clone(),
                    reason: reason.to_owned(),
                };
                let value = value.trim();
                match name {
                    "proxy-image" => {
                        out.proxy_image = nonempty(value).ok_or_else(|| error("empty"))?
                    }
                    "proxy-version" => {
                        out.proxy_version = nonempty(value).ok_or_else(|| error("empty"))?
                    }
                    "init-image" | "proxy-init-image" => {
                        out.init_image = Some(nonempty(value).ok_or_else(|| error("empty"))?)
                    }
                    "proxy-uid" => {
                        out.proxy_uid = value
                            .parse::<i64>()
                            .ok()
                            .filter(|uid| *uid > 0)
                            .ok_or_else(|| error("expected a user id above 0"))?
                    }
                    "proxy-log-level" => {
                        out.log_level = nonempty(value).ok_or_else(|| error("empty"))?
                    }
                    "skip-inbound-ports" => {
                        out.skip_inbound_ports = ports(value).map_err(|e| error(&e))?
                    }
                    "skip-outbound-ports" => {
                        out.skip_outbound_ports = ports(value).map_err(|e| error(&e))?
                    }
                    "opaque-ports" => out.opaque_ports = ports(value).map_err(|e| error(&e))?,
                    "skip-subnets" => out.skip_subnets = subnets(value).map_err(|e| error(&e))?,
                    "proxy-cpu-request" => {
                        out.cpu_request = Some(quantity(value).map_err(|e| error(&e))?)
                    }
                    "proxy-cpu-limit" => {
                        out.cpu_limit = Some(quantity(value).map_err(|e| error(&e))?)
                    }
                    "proxy-memory-request" => {
                        out.memory_request = Some(quantity(value).map_err(|e| error(&e))?)
                    }
                    "proxy-memory-limit" => {
                        out.memory_limit = Some(quantity(value).map_err(|e| error(&e))?)
                    }
                    "default-inbound-policy" => {
                        if !mesh_api::labels::DEFAULT_INBOUND_POLICIES.contains(&value) {
                            return Err(error(&format!(
                                "expected one of {}",
                                mesh_api::labels::DEFAULT_INBOUND_POLICIES.join(", ")
                            )));
                        }
                        out.default_inbound_policy = value.to_owned();
                    }
                    "enable-gateway" => {
                        out.gateway = flag(value).ok_or_else(|| error("expected true or false"))?
                    }
                    "disable-tap" => {
                        out.tap_disabled =
                            flag(value).ok_or_else(|| error("expected true or false"))?
                    }
                    // Other Linkerd settings are accepted and have no effect
                    // here yet; they never stop an injection.
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

/// A gateway's export selector: a JSON object (a `LabelSelector`) that
/// selects something (an empty one would export every Service).
fn gateway_exports(value: &str) -> Result<String, String> {
    let parsed: serde_json::Value =
        serde_json::from_str(value).map_err(|e| format!("expected a JSON label selector: {e}"))?;
    let selects = |field: &str| {
        parsed.get(field).is_some_and(|v| {
            v.as_object().is_some_and(|o| !o.is_empty())
                || v.as_array().is_some_and(|a| !a.is_empty())
        })
    };
    if !parsed.is_object() || !(selects("matchLabels") || selects("matchExpressions")) {
        return Err("expected a label selector with matchLabels or matchExpressions".into());
    }
    Ok(value.trim().to_owned())
}

fn nonempty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn ports(value: &str) -> Result<String, String> {
    value
        .parse::<mesh_api::ports::PortSet>()
        .map(|_| value.to_owned())
}

fn subnets(value: &str) -> Result<String, String> {
    for net in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let (ip, prefix) = net
            .split_once('/')
            .ok_or_else(|| format!("{net:?} is not a network such as 10.0.0.0/8"))?;
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| format!("{net:?} is not a network such as 10.0.0.0/8"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if !prefix.parse::<u8>().is_ok_and(|p| p <= max) {
            return Err(format!("{net:?}: the prefix length must be 0 to {max}"));
        }
    }
    Ok(value.to_owned())
}

/// A Kubernetes quantity: a decimal number with an optional suffix.
fn quantity(value: &str) -> Result<String, String> {
    let number_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(number_end);
    let suffixes = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if number.is_empty() || number.parse::<f64>().is_err() || !suffixes.contains(&suffix) {
        return Err("expected a quantity such as 100m, 0.5, 64Mi or 1Gi".into());
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_pod_overrides_the_namespace_which_overrides_the_defaults() {
        let defaults = Values::new("PEM", "v1");
        let ns = annotations(&[
            ("config.linkerd.io/proxy-log-level", "debug"),
            ("config.linkerd.io/skip-outbound-ports", "3306"),
            ("config.linkerd.io/default-inbound-policy", "deny"),
        ]);
        let pod = annotations(&[
            ("config.linkerd.io/proxy-log-level", "trace"),
            ("config.linkerd.io/proxy-cpu-limit", "500m"),
            ("config.linkerd.io/opaque-ports", "4000-4100"),
            (
                "config.alpha.linkerd.io/proxy-wait-before-exit-seconds",
                "10",
            ),
            ("unrelated.io/x", "y"),
        ]);
        let values = Overrides::default()
            .layer(Some(&ns), "namespace shop")
            .layer(Some(&pod), "pod web")
            .apply(&defaults)
            .expect("values");
        assert_eq!(values.log_level, "trace");
        assert_eq!(values.skip_outbound_ports, "3306");
        assert_eq!(values.cpu_limit.as_deref(), Some("500m"));
        assert_eq!(values.opaque_ports, "4000-4100");
        assert_eq!(values.default_inbound_policy, "deny", "from the namespace");
        assert_eq!(values.wait_before_exit_seconds, 10);
    }

    #[test]
    fn a_bad_annotation_names_itself_and_where_it_was() {
        let defaults = Values::new("PEM", "v1");
        for (key, value) in [
            ("config.linkerd.io/skip-inbound-ports", "22,ssh"),
            ("config.linkerd.io/proxy-uid", "-3"),
            ("config.linkerd.io/proxy-memory-limit", "lots"),
            ("config.linkerd.io/skip-subnets", "10.0.0.0/40"),
            ("config.linkerd.io/default-inbound-policy", "allow-all"),
            (
                "config.alpha.linkerd.io/proxy-wait-before-exit-seconds",
                "soon",
            ),
        ] {
            let pod = annotations(&[(key, value)]);
            let err = Overrides::default()
                .layer(Some(&pod), "pod template of deployment/web")
                .apply(&defaults)
                .expect_err(key);
            assert_eq!(err.annotation, key);
            assert!(err.to_string().contains("deployment/web"), "{err}");
        }
    }
}
