//! What the index keeps of each Kubernetes object: only the fields that
//! decide an answer, extracted by pure functions from the API types.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mesh_api::labels;

/// `namespace/name`.
pub type Key = (String, String);

/// The opaque-ports annotation.
pub use mesh_api::labels::OPAQUE_PORTS_ANNOTATION;
pub use mesh_api::pod::PROXY_CONTAINER;

/// A Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Its name (EndpointSlice ports carry the same name).
    pub name: Option<String>,
    /// The port clients use.
    pub port: u16,
    /// The target port, by number or by container port name.
    pub target: IntOrString,
}

/// What a mirrored Service says about its remote side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The linked cluster (`mirror.linkerd.io/cluster-name`).
    pub cluster: String,
    /// `<svc>.<ns>.svc.<remote-domain>` (`mirror.linkerd.io/remote-svc-fq-name`).
    pub remote_fqn: Option<String>,
}

/// A Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Its cluster IPs (none for headless).
    pub cluster_ips: Vec<IpAddr>,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// Ports marked opaque by annotation (`None`: no annotation).
    pub opaque_ports: Option<BTreeSet<u16>>,
    /// Set when the Service is a mirror of a linked cluster's Service.
    pub mirror: Option<Mirror>,
    /// Its labels (a gateway forwards only to Services whose labels match
    /// its export selector).
    pub labels: BTreeMap<String, String>,
}

/// One address of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceAddress {
    /// The IP.
    pub ip: IpAddr,
    /// Whether it takes traffic.
    pub ready: bool,
    /// The pod behind it.
    pub pod: Option<String>,
    /// Its zone.
    pub zone: Option<String>,
    /// Its host name (a StatefulSet pod's, or a headless mirror's endpoint
    /// mirror's), by which `<hostname>.<svc>.<ns>.svc.<domain>` names it.
    pub hostname: Option<String>,
}

/// An EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    /// The Service it belongs to.
    pub service: String,
    /// Port name → port number.
    pub ports: Vec<(Option<String>, u16)>,
    /// Its addresses.
    pub addresses: Vec<SliceAddress>,
}

/// The Endpoints of a mirrored Service (written by the service mirror).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorEndpoints {
    /// Ready gateway addresses.
    pub addresses: Vec<IpAddr>,
    /// Port name → gateway port.
    pub ports: Vec<(Option<String>, u16)>,
    /// The gateway's identity.
    pub gateway_identity: Option<String>,
    /// How proxies reach the gateway (`mesh.dev/transport`), when set.
    pub transport: Option<String>,
}

/// A Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Its IPs.
    pub ips: Vec<IpAddr>,
    /// Whether it runs the proxy.
    pub meshed: bool,
    /// Its ServiceAccount.
    pub service_account: String,
    /// Metric labels describing it (pod, owner, serviceaccount, …).
    pub labels: BTreeMap<String, String>,
    /// Ports marked opaque by annotation.
    pub opaque_ports: Option<BTreeSet<u16>>,
    /// Container port name → number.
    pub named_ports: BTreeMap<String, u16>,
    /// The proxy's inbound port.
    pub inbound_port: u16,
}

/// Parses `25,587,8000-8010` into ports; a bad element is skipped.
pub fn parse_ports(value: &str) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>())
                    && a <= b
                {
                    ports.extend(a..=b);
                }
            }
            None => {
                if let Ok(p) = part.parse() {
                    ports.insert(p);
                }
            }
        }
    }
    ports
}

/// The index's view of a Service.
pub fn service(svc: &Service) -> ServiceInfo {
    let spec = svc.spec.clone().unwrap_or_default();
    let cluster_ips = mesh_api::service::cluster_ips(svc);
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            Some(ServicePort {
                name: p.name,
                port,
                target: p.target_port.unwrap_or(IntOrString::Int(p.port)),
            })
        })
        .collect();
    let meta = &svc.metadata;
    let annotations = meta.annotations.clone().unwrap_or_default();
    let svc_labels = meta.labels.clone().unwrap_or_default();
    let mirror = (svc_labels
        .get(labels::MIRROR_MIRRORED_SERVICE)
        .map(String::as_str)
        == Some("true"))
    .then(|| Mirror {
        cluster: svc_labels
            .get(labels::MIRROR_CLUSTER_NAME)
            .cloned()
            .unwrap_or_default(),
        remote_fqn: annotations.get(labels::MIRROR_REMOTE_SVC_FQ_NAME).cloned(),
    });
    ServiceInfo {
        cluster_ips,
        ports,
        opaque_ports: annotations
            .get(OPAQUE_PORTS_ANNOTATION)
            .map(|v| parse_ports(v)),
        mirror,
        labels: svc_labels,
    }
}

/// The index's view of an EndpointSlice, or `None` when it names no Service.
pub fn slice(slice: &EndpointSlice) -> Option<SliceInfo> {
    let service = slice
        .metadata
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?
        .clone();
    let ports = slice
        .ports
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Some((p.name, u16::try_from(p.port?).ok()?)))
        .collect();
    let mut addresses = Vec::new();
    for ep in &slice.endpoints {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        let pod = ep
            .target_ref
            .as_ref()
            .filter(|r| r.kind.as_deref() == Some("Pod"))
            .and_then(|r| r.name.clone());
        for ip in &ep.addresses {
            if let Ok(ip) = ip.parse() {
                addresses.push(SliceAddress {
                    ip,
                    ready,
                    pod: pod.clone(),
                    zone: ep.zone.clone(),
                    hostname: ep.hostname.clone(),
                });
            }
        }
    }
    Some(SliceInfo {
        service,
        ports,
        addresses,
    })
}

/// The index's view of a mirrored Service's Endpoints.
pub fn mirror_endpoints(endpoints: &Endpoints) -> MirrorEndpoints {
    let mut addresses = Vec::new();
    let mut ports = Vec::new();
    for subset in endpoints.subsets.clone().unwrap_or_default() {
        addresses.extend(
            subset
                .addresses
                .unwrap_or_default()
                .iter()
                .filter_map(|a| a.ip.parse::<IpAddr>().ok()),
        );
        for p in subset.ports.unwrap_or_default() {
            if let Ok(port) = u16::try_from(p.port) {
                ports.push((p.name, port));
            }
        }
    }
    addresses.sort();
    addresses.dedup();
    MirrorEndpoints {
        addresses,
        ports,
        gateway_identity: endpoints
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(labels::MIRROR_REMOTE_GATEWAY_IDENTITY))
            .cloned(),
        transport: endpoints
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(labels::TRANSPORT_ANNOTATION))
            .cloned(),
    }
}

/// The index's view of a Pod.
pub fn pod(pod: &Pod) -> PodInfo {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .unwrap_or_default()
        .iter()
        .map(|p| p.ip.clone())
        .chain(status.pod_ip)
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let proxy = spec
        .containers
        .iter()
        .chain(sidecars)
        .find(|c| c.name == PROXY_CONTAINER);
    let inbound_port = proxy
        .and_then(|c| c.env.as_ref())
        .and_then(|env| {
            env.iter()
                .find(|e| e.name == "LINKERD2_PROXY_INBOUND_LISTEN_ADDR")
        })
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(mesh_api::ports::PROXY_INBOUND);
    let service_account = spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());
    let meta = &pod.metadata;
    let pod_labels = meta.labels.clone().unwrap_or_default();
    let mut metric_labels = BTreeMap::new();
    if let Some(name) = &meta.name {
        metric_labels.insert("pod".to_owned(), name.clone());
    }
    metric_labels.insert("serviceaccount".to_owned(), service_account.clone());
    let hash = pod_labels.get("pod-template-hash");
    if let Some(hash) = hash {
        metric_labels.insert("pod_template_hash".to_owned(), hash.clone());
    }
    if let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        match (owner.kind.as_str(), hash) {
            ("ReplicaSet", Some(hash)) if owner.name.ends_with(&format!("-{hash}")) => {
                let deployment = &owner.name[..owner.name.len() - hash.len() - 1];
                metric_labels.insert("deployment".to_owned(), deployment.to_owned());
            }
            (kind, _) => {
                metric_labels.insert(kind.to_ascii_lowercase(), owner.name.clone());
            }
        }
    }
    let named_ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
        .collect();
    PodInfo {
        ips,
        meshed: proxy.is_some(),
        service_account,
        labels: metric_labels,
        opaque_ports: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(OPAQUE_PORTS_ANNOTATION))
            .map(|v| parse_ports(v)),
        named_ports,
        inbound_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_and_ranges_parse() {
        assert_eq!(
            parse_ports("25, 587,8000-8002,x,9-1"),
            [25, 587, 8000, 8001, 8002].into()
        );
    }
}
