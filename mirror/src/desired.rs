//! What the mirrors must be: for each exported remote Service, a local
//! Service `<svc>-<link>` (same namespace, the remote ports, no selector)
//! and Endpoints holding the gateway's addresses on the gateway port, with
//! Linkerd's labels and annotations; and the plan (create, update, delete)
//! that makes the mirrors that exist match, deleting only mirrors of this
//! Link whose remote Service is known to be gone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mesh_api::labels::{
    MIRROR_CLUSTER_NAME, MIRROR_MIRRORED_SERVICE, MIRROR_REMOTE_GATEWAY_IDENTITY,
    MIRROR_REMOTE_RESOURCE_VERSION, MIRROR_REMOTE_SVC_FQ_NAME, TRANSPORT_ANNOTATION,
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

/// The mirror Service of `remote`.
pub fn mirror_service(remote: &Service, gateway: &Gateway) -> Result<Service, Invalid> {
    let (name, namespace) = names(remote)?;
    let mirror = mirror_name(&name, &gateway.cluster);
    if mirror.len() > 63 {
        return Err(Invalid::NameTooLong(mirror));
    }
    let ports: Vec<ServicePort> = remote
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| ServicePort {
            node_port: None,
            ..p
        })
        .collect();
    if ports.is_empty() {
        return Err(Invalid::NoPorts(format!("{namespace}/{name}")));
    }
    let mut labels: BTreeMap<String, String> = remote
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("mirror.linkerd.io/"))
        .collect();
    labels.insert(MIRROR_MIRRORED_SERVICE.into(), "true".into());
    labels.insert(MIRROR_CLUSTER_NAME.into(), gateway.cluster.clone());
    let mut annotations: BTreeMap<String, String> = remote
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !DROPPED_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    annotations.insert(
        MIRROR_REMOTE_SVC_FQ_NAME.into(),
        fq_name(&name, &namespace, gateway),
    );
    annotations.insert(
        MIRROR_REMOTE_RESOURCE_VERSION.into(),
        remote.metadata.resource_version.clone().unwrap_or_default(),
    );
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(mirror),
            namespace: Some(namespace),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The mirror's Endpoints: the gateway on its port, once per remote port
/// name; no subsets while the remote Service has no ready endpoint; every
/// address not ready while the gateway is not alive.
pub fn mirror_endpoints(
    remote: &Service,
    remote_has_ready_endpoints: bool,
    gateway: &Gateway,
) -> Result<Endpoints, Invalid> {
    let (name, namespace) = names(remote)?;
    let ports: Vec<EndpointPort> = remote
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| EndpointPort {
            name: p.name,
            port: i32::from(gateway.port),
            protocol: p.protocol,
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
    let subsets = (remote_has_ready_endpoints && !addresses.is_empty()).then(|| {
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
    Ok(Endpoints {
        metadata: ObjectMeta {
            name: Some(mirror_name(&name, &gateway.cluster)),
            namespace: Some(namespace.clone()),
            labels: Some(
                [
                    (MIRROR_MIRRORED_SERVICE.to_owned(), "true".to_owned()),
                    (MIRROR_CLUSTER_NAME.to_owned(), gateway.cluster.clone()),
                ]
                .into(),
            ),
            annotations: Some(
                [
                    (
                        MIRROR_REMOTE_SVC_FQ_NAME.to_owned(),
                        fq_name(&name, &namespace, gateway),
                    ),
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
    })
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

/// What to do to the mirrors of one Link.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Mirrors to create.
    pub create: Vec<Service>,
    /// Mirrors whose remote Service changed.
    pub update: Vec<Service>,
    /// Mirrors whose remote Service is gone.
    pub delete: Vec<Key>,
}

/// The plan from the mirrors that exist (this Link's, by key, with their
/// `remote-resource-version`) to `desired`. `desired` comes from a complete
/// view of the linked cluster ([`crate::watch`] keeps the last complete one
/// through outages), so a mirror missing from it is really gone.
pub fn plan(desired: &BTreeMap<Key, Service>, existing: &BTreeMap<Key, Option<String>>) -> Plan {
    let version = |s: &Service| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIRROR_REMOTE_RESOURCE_VERSION))
            .cloned()
    };
    let mut plan = Plan::default();
    for (key, service) in desired {
        match existing.get(key) {
            None => plan.create.push(service.clone()),
            Some(seen) if *seen != version(service) => plan.update.push(service.clone()),
            Some(_) => {}
        }
    }
    plan.delete = existing
        .keys()
        .filter(|key| !desired.contains_key(*key))
        .cloned()
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
    /// Ready addresses.
    pub ready: Vec<String>,
    /// Addresses not ready.
    pub not_ready: Vec<String>,
    /// `(name, port)` of each port.
    pub ports: Vec<(Option<String>, i32)>,
}

impl EndpointsContent {
    /// The content of `endpoints`.
    pub fn of(endpoints: &Endpoints) -> Self {
        let ips = |addresses: &Option<Vec<EndpointAddress>>| {
            let mut ips: Vec<String> = addresses.iter().flatten().map(|a| a.ip.clone()).collect();
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
        let existing: BTreeMap<Key, Option<String>> = [
            (
                ("test".to_owned(), "a-east".to_owned()),
                Some("1".to_owned()),
            ),
            (
                ("test".to_owned(), "gone-east".to_owned()),
                Some("1".to_owned()),
            ),
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
