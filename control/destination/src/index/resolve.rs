//! Answers for `Get`: the endpoints of a Service port or an IP, with the
//! metadata each address carries (weight, labels, identity, protocol hint,
//! authority override). Pure functions over the index's maps.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use mesh_api::IdentityName;

use super::model::{Key, MirrorEndpoints, PodInfo, ServiceInfo, SliceInfo};

/// The weight of every endpoint (Linkerd's default).
pub const DEFAULT_WEIGHT: u32 = 10_000;

/// How a client should talk to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hint {
    /// The protocol the endpoint speaks beyond the application's.
    pub protocol: Option<Protocol>,
    /// The inbound port that accepts the transport header.
    pub opaque_transport_port: Option<u32>,
}

/// A protocol hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The endpoint's proxy accepts HTTP/2 (and upgraded HTTP/1).
    H2,
    /// Traffic is carried as opaque TCP.
    Opaque,
}

/// One address and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Relative weight.
    pub weight: u32,
    /// Metric labels (`pod`, `deployment`, `serviceaccount`, …).
    pub labels: BTreeMap<String, String>,
    /// The TLS identity to require, for meshed endpoints.
    pub identity: Option<String>,
    /// The protocol hint.
    pub hint: Hint,
    /// The authority to send instead of the original (remote services).
    pub authority_override: Option<String>,
}

/// The answer for one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// No such Service or address.
    NotFound,
    /// The ready endpoints (possibly none).
    Endpoints {
        /// Labels for the whole set (`namespace`, `service`, …).
        set_labels: BTreeMap<String, String>,
        /// Address → metadata.
        endpoints: BTreeMap<SocketAddr, Endpoint>,
    },
}

/// What resolution needs from the index.
#[derive(Debug)]
pub struct View<'a> {
    /// The cluster domain.
    pub domain: &'a str,
    /// Identity names are under `<control-ns>.<trust-domain>`.
    pub control_namespace: &'a str,
    /// The trust domain.
    pub trust_domain: &'a str,
    /// Ports opaque when a Service says nothing.
    pub default_opaque_ports: &'a BTreeSet<u16>,
    /// Pods.
    pub pods: &'a std::collections::HashMap<Key, PodInfo>,
}

impl View<'_> {
    fn identity(&self, namespace: &str, pod: &PodInfo) -> String {
        IdentityName {
            service_account: pod.service_account.clone(),
            namespace: namespace.to_owned(),
            control_namespace: self.control_namespace.to_owned(),
            trust_domain: self.trust_domain.to_owned(),
        }
        .to_string()
    }

    /// Whether `port` of a Service is opaque.
    pub fn service_port_opaque(&self, service: &ServiceInfo, port: u16) -> bool {
        service
            .opaque_ports
            .as_ref()
            .unwrap_or(self.default_opaque_ports)
            .contains(&port)
    }

    /// The endpoint for a pod on `port`.
    pub fn pod_endpoint(&self, namespace: &str, pod: &PodInfo, opaque: bool) -> Endpoint {
        let mut labels = pod.labels.clone();
        labels.insert("namespace".into(), namespace.to_owned());
        let (identity, hint) = if pod.meshed {
            let hint = if opaque {
                Hint {
                    protocol: Some(Protocol::Opaque),
                    opaque_transport_port: Some(u32::from(pod.inbound_port)),
                }
            } else {
                Hint {
                    protocol: Some(Protocol::H2),
                    opaque_transport_port: None,
                }
            };
            (Some(self.identity(namespace, pod)), hint)
        } else {
            (None, Hint::default())
        };
        Endpoint {
            weight: DEFAULT_WEIGHT,
            labels,
            identity,
            hint,
            authority_override: None,
        }
    }

    /// The ready endpoints of `namespace/name` on `port`.
    pub fn service(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        service: &ServiceInfo,
        slices: &[&SliceInfo],
        mirror: Option<&MirrorEndpoints>,
    ) -> Resolution {
        let svc_port = service.ports.iter().find(|p| p.port == port);
        let port_name = svc_port.and_then(|p| p.name.clone());
        let mut set_labels = BTreeMap::from([
            ("namespace".to_owned(), namespace.to_owned()),
            ("service".to_owned(), name.to_owned()),
        ]);
        let mut endpoints = BTreeMap::new();
        // A headless mirror's endpoints are its endpoint mirrors' cluster
        // IPs (each a gateway mirror of its own): they resolve as any
        // Service's endpoints do.
        let gateway_mirror = service
            .mirror
            .as_ref()
            .filter(|_| !service.cluster_ips.is_empty());
        if let Some(mirror_info) = gateway_mirror {
            set_labels.insert("target_cluster".into(), mirror_info.cluster.clone());
            if let Some(fqn) = &mirror_info.remote_fqn {
                let mut parts = fqn.split('.');
                if let (Some(svc), Some(ns)) = (parts.next(), parts.next()) {
                    set_labels.insert("target_service".into(), svc.to_owned());
                    set_labels.insert("target_service_namespace".into(), ns.to_owned());
                }
            }
            if let Some(mirror) = mirror {
                let gateway_port = mirror
                    .ports
                    .iter()
                    .find(|(n, _)| *n == port_name)
                    .or_else(|| mirror.ports.first())
                    .map(|(_, p)| *p);
                if let Some(gateway_port) = gateway_port {
                    for ip in &mirror.addresses {
                        endpoints.insert(
                            SocketAddr::new(*ip, gateway_port),
                            Endpoint {
                                weight: DEFAULT_WEIGHT,
                                labels: mirror
                                    .transport
                                    .iter()
                                    .map(|t| {
                                        (
                                            mesh_api::labels::GATEWAY_TRANSPORT_LABEL.to_owned(),
                                            t.clone(),
                                        )
                                    })
                                    .collect(),
                                identity: mirror.gateway_identity.clone(),
                                hint: Hint {
                                    protocol: mirror
                                        .gateway_identity
                                        .as_ref()
                                        .map(|_| Protocol::H2),
                                    opaque_transport_port: None,
                                },
                                authority_override: mirror_info
                                    .remote_fqn
                                    .as_ref()
                                    .map(|fqn| format!("{fqn}:{port}")),
                            },
                        );
                    }
                }
            }
            return Resolution::Endpoints {
                set_labels,
                endpoints,
            };
        }
        let opaque = self.service_port_opaque(service, port);
        for slice in slices {
            let target_port = match svc_port {
                Some(sp) => slice
                    .ports
                    .iter()
                    .find(|(n, _)| *n == sp.name)
                    .map(|(_, p)| *p),
                None => Some(port),
            };
            let Some(target_port) = target_port else {
                continue;
            };
            for address in slice.addresses.iter().filter(|a| a.ready) {
                let addr = SocketAddr::new(address.ip, target_port);
                let pod = address
                    .pod
                    .as_ref()
                    .and_then(|p| self.pods.get(&(namespace.to_owned(), p.clone())));
                let endpoint = match pod {
                    Some(pod) => {
                        let pod_opaque = pod
                            .opaque_ports
                            .as_ref()
                            .map_or(opaque, |o| o.contains(&target_port) || opaque);
                        let mut ep = self.pod_endpoint(namespace, pod, pod_opaque);
                        ep.labels.remove("namespace");
                        if let Some(zone) = &address.zone {
                            ep.labels.insert("zone".into(), zone.clone());
                        }
                        ep
                    }
                    None => Endpoint {
                        weight: DEFAULT_WEIGHT,
                        labels: BTreeMap::new(),
                        identity: None,
                        hint: Hint::default(),
                        authority_override: None,
                    },
                };
                endpoints.insert(addr, endpoint);
            }
        }
        Resolution::Endpoints {
            set_labels,
            endpoints,
        }
    }

    /// The single endpoint of a pod IP lookup.
    pub fn pod_ip(&self, namespace: &str, pod: &PodInfo, addr: SocketAddr) -> Resolution {
        let opaque = pod
            .opaque_ports
            .as_ref()
            .unwrap_or(self.default_opaque_ports)
            .contains(&addr.port());
        let endpoint = self.pod_endpoint(namespace, pod, opaque);
        Resolution::Endpoints {
            set_labels: BTreeMap::from([("namespace".to_owned(), namespace.to_owned())]),
            endpoints: BTreeMap::from([(addr, endpoint)]),
        }
    }
}
