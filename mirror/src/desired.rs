//! What the mirrors must be: for each exported remote Service, a local
//! Service `<svc>-<link>` (same namespace, the remote ports, no selector)
//! and Endpoints holding the gateway's addresses on the gateway port, with
//! Linkerd's labels and annotations (for a StatefulSet's headless Service,
//! a headless mirror and one endpoint mirror per pod); and the plan
//! (create, update, replace, delete) that makes the mirrors that exist
//! match, deleting only mirrors of this Link whose remote Service is known
//! to be gone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mesh_api::labels::{
    MIRROR_CLUSTER_NAME, MIRROR_HEADLESS_MIRROR_SVC_NAME, MIRROR_MIRRORED_SERVICE,
    MIRROR_REMOTE_GATEWAY_IDENTITY, MIRROR_REMOTE_RESOURCE_VERSION, MIRROR_REMOTE_SVC_FQ_NAME,
    TRANSPORT_ANNOTATION,
};

/// Remote annotations a mirror does not copy (they steer the remote
/// cluster's own routing).
const DROPPED_ANNOTATIONS: [&str; 3] = [
    "service.kubernetes.io/topology-aware-hints",
    "service.kubernetes.io/topology-mode",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// What the mirrors of one Link point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The Link's target cluster name (`east`): mirrors are `<svc>-east`.
    pub cluster: String,
    /// The linked cluster's DNS domain.
    pub cluster_domain: String,
    /// The gateway's addresses, resolved and sorted.
    pub addresses: Vec<IpAddr>,
    /// The gateway's mTLS port.
    pub port: u16,
    /// The gateway's identity.
    pub identity: String,
    /// Whether the last probes found it alive.
    pub alive: bool,
    /// How proxies reach it (`mesh.dev/transport`), when the Link says.
    pub transport: Option<String>,
}

/// Why a remote Service cannot be mirrored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// It lacks a name or namespace.
    #[error("a Service without a name or namespace")]
    Unnamed,
    /// Its mirror's name would not be a valid Service name.
    #[error("the mirror name {0:?} is longer than 63 characters")]
    NameTooLong(String),
    /// It has no ports to mirror.
    #[error("Service {0} has no ports")]
    NoPorts(String),
}

/// `<svc>-<cluster>`.
pub fn mirror_name(service: &str, cluster: &str) -> String {
    format!("{service}-{cluster}")
}

/// What the mirror keeps of a remote Service's Endpoints: whether any
/// address is ready, and the host name of each address that has one (a
/// StatefulSet's pods) with its readiness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteEndpoints {
    /// Some address is ready.
    pub ready: bool,
    /// Host name → ready.
    pub hosts: BTreeMap<String, bool>,
}

impl RemoteEndpoints {
    /// What `endpoints` holds.
    pub fn of(endpoints: &Endpoints) -> Self {
        let mut seen = Self::default();
        for subset in endpoints.subsets.iter().flatten() {
            for (addresses, ready) in [
                (&subset.addresses, true),
                (&subset.not_ready_addresses, false),
            ] {
                for address in addresses.iter().flatten() {
                    seen.ready |= ready;
                    if let Some(host) = &address.hostname {
                        *seen.hosts.entry(host.clone()).or_default() |= ready;
                    }
                }
            }
        }
        seen
    }
}

/// One mirror Service with its Endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// The Service.
    pub service: Service,
    /// Its Endpoints.
    pub endpoints: Endpoints,
}

/// The mirrors of `remote`: `<svc>-<link>` pointing at the gateway; or, for
/// a headless Service whose endpoints have host names (a StatefulSet's),
/// a headless `<svc>-<link>` plus one endpoint mirror `<hostname>-<link>`
/// per host, each pointing at the gateway with the name
/// `<hostname>.<svc>.<ns>.svc.<domain>`, the headless mirror's Endpoints
/// naming each endpoint mirror's cluster IP (looked up in `cluster_ips`,
/// by key, once the API server has given it one) with its host name, so
/// that `<hostname>.<svc>-<link>.<ns>.svc.<local domain>` resolves.
pub fn mirrors(
    remote: &Service,
    endpoints: &RemoteEndpoints,
    gateway: &Gateway,
    cluster_ips: &dyn Fn(&Key) -> Option<String>,
) -> Result<Vec<Mirror>, Invalid> {
    let (name, namespace) = names(remote)?;
    let ports = remote_ports(remote);
    if ports.is_empty() {
        return Err(Invalid::NoPorts(format!("{namespace}/{name}")));
    }
    let headless = remote.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
        && !endpoints.hosts.is_empty();
    let main = Named {
        name: mirror_name(&name, &gateway.cluster),
        namespace: namespace.clone(),
        fq_name: fq_name(&name, &namespace, gateway),
        headless_parent: None,
    };
    if !headless {
        return Ok(vec![Mirror {
            service: mirror_service(remote, &main, &ports, gateway)?,
            endpoints: gateway_endpoints(&main, &ports, endpoints.ready, gateway),
        }]);
    }
    let mut mirrors = Vec::new();
    let mut addresses = (Vec::new(), Vec::new());
    for (host, ready) in &endpoints.hosts {
        let endpoint = Named {
            name: mirror_name(host, &gateway.cluster),
            namespace: namespace.clone(),
            fq_name: format!("{host}.{}", main.fq_name),
            headless_parent: Some(main.name.clone()),
        };
        if let Some(ip) = cluster_ips(&(namespace.clone(), endpoint.name.clone())) {
            let address = EndpointAddress {
                ip,
                hostname: Some(host.clone()),
                ..EndpointAddress::default()
            };
            if *ready && gateway.alive {
                addresses.0.push(address);
            } else {
                addresses.1.push(address);
            }
        }
        mirrors.push(Mirror {
            service: mirror_service(remote, &endpoint, &ports, gateway)?,
            endpoints: gateway_endpoints(&endpoint, &ports, *ready, gateway),
        });
    }
    let mut service = mirror_service(remote, &main, &ports, gateway)?;
    if let Some(spec) = service.spec.as_mut() {
        spec.cluster_ip = Some("None".into());
    }
    let non_empty = |list: Vec<EndpointAddress>| (!list.is_empty()).then_some(list);
    let subsets = (!addresses.0.is_empty() || !addresses.1.is_empty()).then(|| {
        vec![EndpointSubset {
            addresses: non_empty(addresses.0),
            not_ready_addresses: non_empty(addresses.1),
            ports: Some(
                ports
                    .iter()
                    .map(|p| EndpointPort {
                        name: p.name.clone(),
                        port: p.port,
                        protocol: p.protocol.clone(),
                        app_protocol: None,
                    })
                    .collect(),
            ),
        }]
    });
    let mut headless_endpoints = gateway_endpoints(&main, &ports, false, gateway);
    headless_endpoints.subsets = subsets;
    if let Some(annotations) = headless_endpoints.metadata.annotations.as_mut() {
        // Its addresses are endpoint mirrors, not the gateway.
        annotations.remove(MIRROR_REMOTE_GATEWAY_IDENTITY);
        annotations.remove(TRANSPORT_ANNOTATION);
    }
    mirrors.insert(
        0,
        Mirror {
            service,
            endpoints: headless_endpoints,
        },
    );
    Ok(mirrors)
}

/// The names of one mirror.
struct Named {
    name: String,
    namespace: String,
    /// The remote name it stands for (`mirror.linkerd.io/remote-svc-fq-name`).
    fq_name: String,
    /// For an endpoint mirror, the headless mirror it belongs to.
    headless_parent: Option<String>,
}

/// What the mirror keeps of a remote Service: what its mirrors are made
/// from (name, labels, the annotations it copies, resourceVersion, ports,
/// cluster IP) and nothing else, so that thousands of exports cost their
/// names and ports, not whole objects.
pub fn kept_of_remote(remote: &Service) -> Service {
    let meta = &remote.metadata;
    let annotations = meta.annotations.as_ref().map(|a| {
        a.iter()
            .filter(|(k, _)| !DROPPED_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    Service {
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone(),
            annotations,
            resource_version: meta.resource_version.clone(),
            ..ObjectMeta::default()
        },
        spec: remote.spec.as_ref().map(|spec| ServiceSpec {
            ports: spec.ports.clone(),
            cluster_ip: spec.cluster_ip.clone(),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn remote_ports(remote: &Service) -> Vec<ServicePort> {
    remote
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| ServicePort {
            node_port: None,
            ..p
        })
        .collect()
}

/// The labels every mirror object of `named` carries.
fn mirror_labels(named: &Named, gateway: &Gateway) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        (MIRROR_MIRRORED_SERVICE.to_owned(), "true".to_owned()),
        (MIRROR_CLUSTER_NAME.to_owned(), gateway.cluster.clone()),
    ]
    .into();
    if let Some(parent) = &named.headless_parent {
        labels.insert(MIRROR_HEADLESS_MIRROR_SVC_NAME.into(), parent.clone());
    }
    labels
}

/// The mirror Service `named` of `remote`.
fn mirror_service(
    remote: &Service,
    named: &Named,
    ports: &[ServicePort],
    gateway: &Gateway,
) -> Result<Service, Invalid> {
    if named.name.len() > 63 {
        return Err(Invalid::NameTooLong(named.name.clone()));
    }
    let mut labels: BTreeMap<String, String> = remote
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("mirror.linkerd.io/"))
        .collect();
    labels.extend(mirror_labels(named, gateway));
    let mut annotations: BTreeMap<String, String> = remote
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !DROPPED_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    annotations.insert(MIRROR_REMOTE_SVC_FQ_NAME.into(), named.fq_name.clone());
    annotations.insert(
        MIRROR_REMOTE_RESOURCE_VERSION.into(),
        remote.metadata.resource_version.clone().unwrap_or_default(),
    );
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(named.name.clone()),
            namespace: Some(named.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(ports.to_vec()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// Endpoints of `named` holding the gateway on its port, once per remote
/// port name; no subsets while the remote side has no ready endpoint;
/// every address not ready while the gateway is not alive.
fn gateway_endpoints(
    named: &Named,
    ports: &[ServicePort],
    remote_ready: bool,
    gateway: &Gateway,
) -> Endpoints {
    let ports: Vec<EndpointPort> = ports
        .iter()
        .map(|p| EndpointPort {
            name: p.name.clone(),
            port: i32::from(gateway.port),
            protocol: p.protocol.clone(),
            app_protocol: None,
        })
        .collect();
    let addresses: Vec<EndpointAddress> = gateway
        .addresses
        .iter()
        .map(|ip| EndpointAddress {
            ip: ip.to_string(),
            ..EndpointAddress::default()
        })
        .collect();
    let subsets = (remote_ready && !addresses.is_empty()).then(|| {
        let (ready, not_ready) = if gateway.alive {
            (Some(addresses), None)
        } else {
            (None, Some(addresses))
        };
        vec![EndpointSubset {
            addresses: ready,
            not_ready_addresses: not_ready,
            ports: Some(ports),
        }]
    });
    Endpoints {
        metadata: ObjectMeta {
            name: Some(named.name.clone()),
            namespace: Some(named.namespace.clone()),
            labels: Some(mirror_labels(named, gateway)),
            annotations: Some(
                [
                    (MIRROR_REMOTE_SVC_FQ_NAME.to_owned(), named.fq_name.clone()),
                    (
                        MIRROR_REMOTE_GATEWAY_IDENTITY.to_owned(),
                        gateway.identity.clone(),
                    ),
                ]
                .into_iter()
                .chain(
                    gateway
                        .transport
                        .iter()
                        .map(|t| (TRANSPORT_ANNOTATION.to_owned(), t.clone())),
                )
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        subsets,
    }
}

fn names(remote: &Service) -> Result<(String, String), Invalid> {
    match (&remote.metadata.name, &remote.metadata.namespace) {
        (Some(name), Some(namespace)) => Ok((name.clone(), namespace.clone())),
        _ => Err(Invalid::Unnamed),
    }
}

fn fq_name(name: &str, namespace: &str, gateway: &Gateway) -> String {
    format!("{name}.{namespace}.svc.{}", gateway.cluster_domain)
}

/// `namespace/name` of a mirror.
pub type Key = (String, String);

/// The field manager of everything the mirror writes; an object without
/// it in its managed fields was not written by the mirror, whatever its
/// labels say.
pub const FIELD_MANAGER: &str = "mesh-mirror";

/// Whether the mirror wrote the object `meta` describes (its field manager
/// owns fields of it). Labels alone prove nothing: anyone who can create a
/// Service can set them.
pub fn written_by_mirror(meta: &ObjectMeta) -> bool {
    meta.managed_fields
        .iter()
        .flatten()
        .any(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER))
}

/// What the mirror reads back of a mirror Service that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// Its `mirror.linkerd.io/remote-resource-version`.
    pub version: Option<String>,
    /// Its cluster IP (`None` for a headless mirror).
    pub cluster_ip: Option<String>,
    /// Its uid: a delete names it, so that an object created again under
    /// the same name meanwhile is never the one deleted.
    pub uid: Option<String>,
    /// Whether the mirror wrote it ([`written_by_mirror`]).
    pub owned: bool,
}

impl Existing {
    /// What `service` says.
    pub fn of(service: &Service) -> Self {
        Self {
            version: remote_version(service),
            cluster_ip: service.spec.as_ref().and_then(|s| s.cluster_ip.clone()),
            uid: service.metadata.uid.clone(),
            owned: written_by_mirror(&service.metadata),
        }
    }

    fn headless(&self) -> bool {
        self.cluster_ip.as_deref() == Some("None")
    }
}

fn remote_version(service: &Service) -> Option<String> {
    service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MIRROR_REMOTE_RESOURCE_VERSION))
        .cloned()
}

/// What to do to the mirrors of one Link.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Mirrors to create.
    pub create: Vec<Service>,
    /// Mirrors whose remote Service changed.
    pub update: Vec<Service>,
    /// Mirrors to delete and create again: a headless mirror that must now
    /// have a cluster IP or the reverse (the API server cannot change it).
    pub replace: Vec<Service>,
    /// Mirrors whose remote Service is gone.
    pub delete: Vec<Key>,
    /// Names a mirror should have that a Service the mirror did not write
    /// already holds (with the mirror's labels, or it would not be seen
    /// here): left alone, neither updated nor deleted.
    pub conflicts: Vec<Key>,
}

/// The plan from the mirrors that exist (this Link's, by key) to
/// `desired`. `desired` comes from a complete view of the linked cluster
/// ([`crate::watch`] keeps the last complete one through outages), so a
/// mirror missing from it is really gone.
pub fn plan(desired: &BTreeMap<Key, Service>, existing: &BTreeMap<Key, Existing>) -> Plan {
    let mut plan = Plan::default();
    for (key, service) in desired {
        let headless = Existing::of(service).headless();
        match existing.get(key) {
            None => plan.create.push(service.clone()),
            Some(seen) if !seen.owned => plan.conflicts.push(key.clone()),
            Some(seen) if seen.headless() != headless => plan.replace.push(service.clone()),
            Some(seen) if seen.version != remote_version(service) => {
                plan.update.push(service.clone())
            }
            Some(_) => {}
        }
    }
    plan.delete = existing
        .iter()
        .filter(|(key, seen)| seen.owned && !desired.contains_key(*key))
        .map(|(key, _)| key.clone())
        .collect();
    plan
}

/// What the mirror owns in a mirror's Endpoints, in a canonical order (the
/// API server repacks subsets): the gateway identity and the subsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointsContent {
    /// `mirror.linkerd.io/remote-gateway-identity`.
    pub gateway_identity: Option<String>,
    /// `mesh.dev/transport`.
    pub transport: Option<String>,
    /// Each subset, sorted.
    pub subsets: Vec<SubsetContent>,
}

/// One subset of a mirror's Endpoints, each list sorted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubsetContent {
    /// Ready addresses, with their host names.
    pub ready: Vec<(String, Option<String>)>,
    /// Addresses not ready, with their host names.
    pub not_ready: Vec<(String, Option<String>)>,
    /// `(name, port)` of each port.
    pub ports: Vec<(Option<String>, i32)>,
}

impl EndpointsContent {
    /// The content of `endpoints`.
    pub fn of(endpoints: &Endpoints) -> Self {
        let ips = |addresses: &Option<Vec<EndpointAddress>>| {
            let mut ips: Vec<(String, Option<String>)> = addresses
                .iter()
                .flatten()
                .map(|a| (a.ip.clone(), a.hostname.clone()))
                .collect();
            ips.sort();
            ips
        };
        let mut subsets: Vec<_> = endpoints
            .subsets
            .iter()
            .flatten()
            .map(|subset| {
                let mut ports: Vec<(Option<String>, i32)> = subset
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| (p.name.clone(), p.port))
                    .collect();
                ports.sort();
                SubsetContent {
                    ready: ips(&subset.addresses),
                    not_ready: ips(&subset.not_ready_addresses),
                    ports,
                }
            })
            .collect();
        subsets.sort();
        let annotation = |key: &str| {
            endpoints
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .cloned()
        };
        Self {
            gateway_identity: annotation(MIRROR_REMOTE_GATEWAY_IDENTITY),
            transport: annotation(TRANSPORT_ANNOTATION),
            subsets,
        }
    }
}

/// What the mirror reads back of a mirror's Endpoints that exist: their
/// content, and whether and as what the mirror wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoints {
    /// What they hold.
    pub content: EndpointsContent,
    /// Their uid, for a delete that deletes only them.
    pub uid: Option<String>,
    /// Whether the mirror wrote them ([`written_by_mirror`]).
    pub owned: bool,
}

impl LocalEndpoints {
    /// What `endpoints` say.
    pub fn of(endpoints: &Endpoints) -> Self {
        Self {
            content: EndpointsContent::of(endpoints),
            uid: endpoints.metadata.uid.clone(),
            owned: written_by_mirror(&endpoints.metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(name: &str, version: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("test".into()),
                resource_version: Some(version.into()),
                labels: Some(
                    [
                        ("app".to_owned(), name.to_owned()),
                        ("mirror.linkerd.io/exported".to_owned(), "true".to_owned()),
                    ]
                    .into(),
                ),
                annotations: Some(
                    [
                        (
                            "config.linkerd.io/opaque-ports".to_owned(),
                            "4000".to_owned(),
                        ),
                        (
                            "service.kubernetes.io/topology-mode".to_owned(),
                            "Auto".to_owned(),
                        ),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_owned(), name.to_owned())].into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 9898,
                    node_port: Some(30000),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// The one mirror of a Service that is not headless.
    fn mirror(remote: &Service, ready: bool, gateway: &Gateway) -> Result<Mirror, Invalid> {
        let endpoints = RemoteEndpoints {
            ready,
            hosts: BTreeMap::new(),
        };
        let mut mirrors = mirrors(remote, &endpoints, gateway, &|_| None)?;
        assert_eq!(mirrors.len(), 1);
        Ok(mirrors.remove(0))
    }

    fn mirror_service(remote: &Service, gateway: &Gateway) -> Result<Service, Invalid> {
        mirror(remote, true, gateway).map(|m| m.service)
    }

    fn mirror_endpoints(
        remote: &Service,
        ready: bool,
        gateway: &Gateway,
    ) -> Result<Endpoints, Invalid> {
        mirror(remote, ready, gateway).map(|m| m.endpoints)
    }

    fn gateway(alive: bool) -> Gateway {
        Gateway {
            cluster: "east".into(),
            cluster_domain: "cluster.local".into(),
            addresses: vec!["172.31.0.129".parse().expect("ip")],
            port: 4143,
            identity:
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                    .into(),
            alive,
            transport: None,
        }
    }

    #[test]
    fn a_mirror_service_is_named_labelled_and_annotated_as_linkerd_does() {
        let mirror = mirror_service(&remote("podinfo", "42"), &gateway(true)).expect("mirror");
        assert_eq!(mirror.metadata.name.as_deref(), Some("podinfo-east"));
        assert_eq!(mirror.metadata.namespace.as_deref(), Some("test"));
        let labels = mirror.metadata.labels.expect("labels");
        assert_eq!(labels[MIRROR_MIRRORED_SERVICE], "true");
        assert_eq!(labels[MIRROR_CLUSTER_NAME], "east");
        assert_eq!(labels["app"], "podinfo");
        assert!(!labels.contains_key("mirror.linkerd.io/exported"));
        let annotations = mirror.metadata.annotations.expect("annotations");
        assert_eq!(
            annotations[MIRROR_REMOTE_SVC_FQ_NAME],
            "podinfo.test.svc.cluster.local"
        );
        assert_eq!(annotations[MIRROR_REMOTE_RESOURCE_VERSION], "42");
        assert_eq!(annotations["config.linkerd.io/opaque-ports"], "4000");
        assert!(!annotations.contains_key("service.kubernetes.io/topology-mode"));
        let spec = mirror.spec.expect("spec");
        assert!(spec.selector.is_none(), "a mirror has no selector");
        let port = &spec.ports.expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.node_port),
            (Some("http"), 9898, None)
        );
    }

    #[test]
    fn endpoints_hold_the_gateway_ready_only_while_it_is_alive() {
        let alive = mirror_endpoints(&remote("podinfo", "1"), true, &gateway(true)).expect("eps");
        let subset = &alive.subsets.expect("subsets")[0];
        assert_eq!(
            subset.addresses.as_ref().expect("ready")[0].ip,
            "172.31.0.129"
        );
        assert_eq!(subset.ports.as_ref().expect("ports")[0].port, 4143);
        assert_eq!(
            alive.metadata.annotations.expect("annotations")[MIRROR_REMOTE_GATEWAY_IDENTITY],
            gateway(true).identity
        );
        let down = mirror_endpoints(&remote("podinfo", "1"), true, &gateway(false)).expect("eps");
        let subset = &down.subsets.expect("subsets")[0];
        assert!(subset.addresses.is_none());
        assert_eq!(
            subset
                .not_ready_addresses
                .as_ref()
                .expect("not ready")
                .len(),
            1
        );
        let empty = mirror_endpoints(&remote("podinfo", "1"), false, &gateway(true)).expect("eps");
        assert!(
            empty.subsets.is_none(),
            "no ready remote endpoint, no subsets"
        );
    }

    #[test]
    fn bad_remote_services_are_refused_with_a_reason() {
        let mut unnamed = remote("x", "1");
        unnamed.metadata.name = None;
        assert_eq!(
            mirror_service(&unnamed, &gateway(true)),
            Err(Invalid::Unnamed)
        );
        let mut portless = remote("x", "1");
        portless.spec = None;
        assert!(matches!(
            mirror_service(&portless, &gateway(true)),
            Err(Invalid::NoPorts(_))
        ));
        let long = "a".repeat(60);
        assert!(matches!(
            mirror_service(&remote(&long, "1"), &gateway(true)),
            Err(Invalid::NameTooLong(_))
        ));
    }

    #[test]
    fn plans_create_update_and_delete() {
        let desired: BTreeMap<Key, Service> = ["a", "b"]
            .iter()
            .map(|n| {
                let service = mirror_service(&remote(n, "2"), &gateway(true)).expect("mirror");
                (("test".to_owned(), format!("{n}-east")), service)
            })
            .collect();
        let seen = |version: &str| Existing {
            version: Some(version.to_owned()),
            cluster_ip: Some("10.96.0.9".to_owned()),
            uid: None,
            owned: true,
        };
        let existing: BTreeMap<Key, Existing> = [
            (("test".to_owned(), "a-east".to_owned()), seen("1")),
            (("test".to_owned(), "gone-east".to_owned()), seen("1")),
        ]
        .into();
        let plan = plan(&desired, &existing);
        assert_eq!(plan.create.len(), 1, "b is new");
        assert_eq!(plan.update.len(), 1, "a changed remotely");
        assert_eq!(
            plan.delete,
            vec![("test".to_owned(), "gone-east".to_owned())]
        );
    }

    #[test]
    fn what_is_kept_of_a_remote_service_makes_the_same_mirrors() {
        let mut full = remote("podinfo", "3");
        if let Some(annotations) = full.metadata.annotations.as_mut() {
            annotations.insert(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                "x".repeat(10_000),
            );
        }
        full.metadata.uid = Some("uid".into());
        let kept = kept_of_remote(&full);
        assert!(
            serde_json::to_string(&kept).expect("json").len() < 1000,
            "{kept:?}"
        );
        let endpoints = RemoteEndpoints::default();
        let no_ips = |_: &Key| None;
        assert_eq!(
            mirrors(&kept, &endpoints, &gateway(true), &no_ips),
            mirrors(&full, &endpoints, &gateway(true), &no_ips)
        );
    }

    #[test]
    fn a_service_the_mirror_did_not_write_is_neither_updated_nor_deleted() {
        let desired: BTreeMap<Key, Service> = [(
            ("test".to_owned(), "web-east".to_owned()),
            mirror_service(&remote("web", "2"), &gateway(true)).expect("mirror"),
        )]
        .into();
        let lookalike = Existing {
            version: Some("1".to_owned()),
            cluster_ip: Some("10.96.0.9".to_owned()),
            uid: Some("someone-else".to_owned()),
            owned: false,
        };
        let existing: BTreeMap<Key, Existing> = [
            (
                ("test".to_owned(), "web-east".to_owned()),
                lookalike.clone(),
            ),
            (("test".to_owned(), "old-east".to_owned()), lookalike),
        ]
        .into();
        let plan = plan(&desired, &existing);
        assert_eq!(
            plan.conflicts,
            vec![("test".to_owned(), "web-east".to_owned())]
        );
        assert!(
            plan.create.is_empty()
                && plan.update.is_empty()
                && plan.replace.is_empty()
                && plan.delete.is_empty(),
            "{plan:?}"
        );
    }

    #[test]
    fn endpoints_content_ignores_the_order_the_api_server_packs_them_in() {
        let two = Gateway {
            addresses: vec![
                "172.31.0.129".parse().expect("ip"),
                "172.31.0.130".parse().expect("ip"),
            ],
            ..gateway(true)
        };
        let mut service = remote("podinfo", "1");
        if let Some(ports) = service.spec.as_mut().and_then(|s| s.ports.as_mut()) {
            ports.push(ServicePort {
                name: Some("grpc".into()),
                port: 9999,
                ..ServicePort::default()
            });
        }
        let written = mirror_endpoints(&service, true, &two).expect("eps");
        let mut repacked = written.clone();
        for subset in repacked.subsets.iter_mut().flatten() {
            subset.addresses.iter_mut().for_each(|a| a.reverse());
            subset.ports.iter_mut().for_each(|p| p.reverse());
        }
        assert_eq!(
            EndpointsContent::of(&written),
            EndpointsContent::of(&repacked)
        );
        let down = mirror_endpoints(
            &service,
            true,
            &Gateway {
                alive: false,
                ..two
            },
        )
        .expect("eps");
        assert_ne!(EndpointsContent::of(&written), EndpointsContent::of(&down));
    }
}

#[cfg(test)]
mod headless_tests {
    use super::*;

    fn statefulset_service() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("test".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                ports: Some(vec![ServicePort {
                    name: Some("pg".into()),
                    port: 5432,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn gateway() -> Gateway {
        Gateway {
            cluster: "east".into(),
            cluster_domain: "cluster.local".into(),
            addresses: vec!["172.31.0.129".parse().expect("ip")],
            port: 4143,
            identity: "gw".into(),
            alive: true,
            transport: None,
        }
    }

    #[test]
    fn a_statefulset_gets_a_headless_mirror_and_an_endpoint_mirror_per_pod() {
        let endpoints = RemoteEndpoints {
            ready: true,
            hosts: [("db-0".to_owned(), true), ("db-1".to_owned(), false)].into(),
        };
        let ip_of = |key: &Key| (key.1 == "db-0-east").then(|| "10.96.1.5".to_owned());
        let mirrors =
            mirrors(&statefulset_service(), &endpoints, &gateway(), &ip_of).expect("mirrors");
        let names: Vec<_> = mirrors
            .iter()
            .map(|m| m.service.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["db-east", "db-0-east", "db-1-east"]);

        let headless = &mirrors[0];
        let spec = headless.service.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        let subset = &headless.endpoints.subsets.as_ref().expect("subsets")[0];
        let ready = subset.addresses.as_ref().expect("ready");
        assert_eq!(
            (ready[0].ip.as_str(), ready[0].hostname.as_deref()),
            ("10.96.1.5", Some("db-0")),
            "db-0's endpoint mirror by its cluster IP and host name"
        );
        assert!(
            subset.not_ready_addresses.is_none(),
            "db-1's endpoint mirror has no cluster IP yet"
        );
        assert_eq!(subset.ports.as_ref().expect("ports")[0].port, 5432);
        let annotations = headless.endpoints.metadata.annotations.as_ref().expect("a");
        assert!(!annotations.contains_key(MIRROR_REMOTE_GATEWAY_IDENTITY));

        let db0 = &mirrors[1];
        let labels = db0.service.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[MIRROR_HEADLESS_MIRROR_SVC_NAME], "db-east");
        assert_eq!(labels[MIRROR_CLUSTER_NAME], "east");
        let annotations = db0.service.metadata.annotations.as_ref().expect("a");
        assert_eq!(
            annotations[MIRROR_REMOTE_SVC_FQ_NAME],
            "db-0.db.test.svc.cluster.local"
        );
        let gateway_subset = &db0.endpoints.subsets.as_ref().expect("subsets")[0];
        assert_eq!(gateway_subset.ports.as_ref().expect("ports")[0].port, 4143);
        assert!(
            mirrors[2].endpoints.subsets.is_none(),
            "db-1 is not ready in east: its endpoint mirror has no address"
        );
    }

    #[test]
    fn a_headless_service_without_host_names_is_mirrored_with_a_cluster_ip() {
        let endpoints = RemoteEndpoints {
            ready: true,
            hosts: BTreeMap::new(),
        };
        let mirrors =
            mirrors(&statefulset_service(), &endpoints, &gateway(), &|_| None).expect("mirrors");
        assert_eq!(mirrors.len(), 1);
        let spec = mirrors[0].service.spec.as_ref().expect("spec");
        assert_eq!(
            spec.cluster_ip, None,
            "the API server gives it a cluster IP"
        );
    }

    #[test]
    fn a_mirror_that_must_change_headlessness_is_replaced() {
        let desired = mirrors(
            &statefulset_service(),
            &RemoteEndpoints {
                ready: true,
                hosts: [("db-0".to_owned(), true)].into(),
            },
            &gateway(),
            &|_| None,
        )
        .expect("mirrors");
        let desired: BTreeMap<Key, Service> = desired
            .into_iter()
            .map(|m| {
                let meta = &m.service.metadata;
                (
                    (
                        meta.namespace.clone().unwrap_or_default(),
                        meta.name.clone().unwrap_or_default(),
                    ),
                    m.service,
                )
            })
            .collect();
        let existing: BTreeMap<Key, Existing> = [(
            ("test".to_owned(), "db-east".to_owned()),
            Existing {
                version: Some("7".into()),
                cluster_ip: Some("10.96.0.4".into()),
                uid: None,
                owned: true,
            },
        )]
        .into();
        let plan = plan(&desired, &existing);
        assert_eq!(plan.replace.len(), 1, "db-east must become headless");
        assert_eq!(plan.create.len(), 1, "db-0-east is new");
        assert!(plan.update.is_empty() && plan.delete.is_empty());
    }

    #[test]
    fn remote_endpoints_keep_host_names_and_their_readiness() {
        let address = |ip: &str, host: Option<&str>| EndpointAddress {
            ip: ip.into(),
            hostname: host.map(Into::into),
            ..EndpointAddress::default()
        };
        let seen = RemoteEndpoints::of(&Endpoints {
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![address("10.0.0.1", Some("db-0"))]),
                not_ready_addresses: Some(vec![
                    address("10.0.0.2", Some("db-1")),
                    address("10.0.0.3", None),
                ]),
                ports: None,
            }]),
            ..Endpoints::default()
        });
        assert!(seen.ready);
        assert_eq!(
            seen.hosts,
            [("db-0".to_owned(), true), ("db-1".to_owned(), false)].into()
        );
    }
}
