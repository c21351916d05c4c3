//! What `Get` says about a Service: its endpoints, each with the identity it
//! must present, whether it is meshed and speaks HTTP/2 between proxies,
//! where its proxy takes opaque connections, and the `dst_*` metric labels
//! its traffic carries. [`EndpointSet::apply`] folds the stream's updates
//! into the current set.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use linkerd2_proxy_api::destination as api;

use crate::metrics::Labels;

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The identity its proxy presents; none for an unmeshed endpoint.
    pub identity: Option<String>,
    /// Its proxy takes HTTP/2 from other proxies (so HTTP/1 is upgraded).
    pub http2: bool,
    /// The port its proxy takes opaque connections on (with the transport
    /// header).
    pub opaque_transport_port: Option<u16>,
    /// `dst_*` labels.
    pub labels: Labels,
    /// The Service (`name.ns.svc.domain:port`) a gateway at this address
    /// forwards to: connections carry it in their transport header.
    pub authority_override: Option<String>,
    /// How to reach it when it is a gateway (the destination service's
    /// `gateway_transport` label, from the Link's `mesh.dev/transport`).
    pub transport: crate::quic::Transport,
}

/// The label that carries a gateway endpoint's transport (the destination
/// service's `mesh_api::labels::GATEWAY_TRANSPORT_LABEL`; the proxy does not
/// depend on mesh-api).
pub const TRANSPORT_LABEL: &str = "gateway_transport";

impl Endpoint {
    /// An endpoint discovery says nothing about: plain text, no labels.
    pub fn unmeshed(addr: SocketAddr) -> Self {
        Self {
            addr,
            identity: None,
            http2: false,
            opaque_transport_port: None,
            authority_override: None,
            labels: Vec::new(),
            transport: crate::quic::Transport::default(),
        }
    }
}

/// The endpoints of a Service as known now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSet {
    /// By address.
    pub endpoints: BTreeMap<SocketAddr, Endpoint>,
    /// Whether the destination service has answered yet.
    pub resolved: bool,
    /// Whether the Service exists (as far as the last answer said).
    pub exists: bool,
}

impl EndpointSet {
    /// Applies one update. `reset` replaces the set instead of adding to it
    /// (the first answer of a new stream, which repeats every endpoint).
    pub fn apply(&mut self, update: api::update::Update, reset: bool) {
        use api::update::Update;
        if reset {
            self.endpoints.clear();
        }
        self.resolved = true;
        match update {
            Update::Add(set) => {
                self.exists = true;
                for addr in set.addrs {
                    if let Some(endpoint) = endpoint_from_api(addr, &set.metric_labels) {
                        self.endpoints.insert(endpoint.addr, endpoint);
                    }
                }
            }
            Update::Remove(set) => {
                for addr in set.addrs {
                    if let Some(addr) = socket_addr(&addr) {
                        self.endpoints.remove(&addr);
                    }
                }
            }
            Update::NoEndpoints(no) => {
                self.endpoints.clear();
                self.exists = no.exists;
            }
        }
    }
}

fn socket_addr(addr: &linkerd2_proxy_api::net::TcpAddress) -> Option<SocketAddr> {
    let ip = std::net::IpAddr::try_from(addr.ip?).ok()?;
    Some(SocketAddr::new(ip, u16::try_from(addr.port).ok()?))
}

/// Converts one `WeightedAddr`; `set_labels` are the labels of its set.
pub fn endpoint_from_api(
    addr: api::WeightedAddr,
    set_labels: &HashMap<String, String>,
) -> Option<Endpoint> {
    let socket = socket_addr(addr.addr.as_ref()?)?;
    let identity = addr.tls_identity.and_then(|id| match id.strategy? {
        api::tls_identity::Strategy::DnsLikeIdentity(dns) => Some(dns.name),
        api::tls_identity::Strategy::UriLikeIdentity(_) => None,
    });
    let hint = addr.protocol_hint.unwrap_or_default();
    let http2 = matches!(hint.protocol, Some(api::protocol_hint::Protocol::H2(_)));
    let opaque_transport_port = hint
        .opaque_transport
        .and_then(|o| u16::try_from(o.inbound_port).ok())
        .filter(|p| *p != 0);
    let all: BTreeMap<String, String> = set_labels
        .iter()
        .chain(addr.metric_labels.iter())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let transport = all
        .get(TRANSPORT_LABEL)
        .and_then(|t| crate::quic::Transport::parse(t))
        .unwrap_or_default();
    let authority_override = addr
        .authority_override
        .map(|o| o.authority_override)
        .filter(|a| !a.is_empty());
    let identity = identity.filter(|i| !i.is_empty());
    // A gateway (it forwards to the Service it is told) is reached over
    // mutual TLS or not at all: another cluster's traffic never crosses a
    // WAN in clear, whatever the destination service said.
    let gateway = authority_override.is_some() || all.contains_key(TRANSPORT_LABEL);
    if gateway && identity.is_none() {
        tracing::warn!(
            addr = %socket,
            forwards_to = authority_override.as_deref().unwrap_or("?"),
            "an endpoint behind a gateway comes without an identity: refused, never sent in clear (does its Link name a gatewayIdentity?)"
        );
        return None;
    }
    let mut labels: Labels = all
        .into_iter()
        .filter_map(|(k, v)| Some((dst_label(&k)?, v)))
        .collect();
    labels.sort();
    Some(Endpoint {
        addr: socket,
        identity,
        http2,
        opaque_transport_port,
        labels,
        authority_override,
        transport,
    })
}

/// The `dst_*` label for a label the destination service sends; labels
/// outside Linkerd's set are dropped (label names must be static).
fn dst_label(key: &str) -> Option<&'static str> {
    Some(match key {
        "namespace" => "dst_namespace",
        "service" => "dst_service",
        "pod" => "dst_pod",
        "deployment" => "dst_deployment",
        "daemonset" => "dst_daemonset",
        "statefulset" => "dst_statefulset",
        "replicaset" => "dst_replicaset",
        "serviceaccount" => "dst_serviceaccount",
        "pod_template_hash" => "dst_pod_template_hash",
        "zone" => "dst_zone",
        "zone_locality" => "dst_zone_locality",
        "control_plane_ns" => "dst_control_plane_ns",
        "target_cluster" => "dst_target_cluster",
        "target_service" => "dst_target_service",
        "target_service_namespace" => "dst_target_service_namespace",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: [u8; 4], port: u32, identity: Option<&str>) -> api::WeightedAddr {
        api::WeightedAddr {
            addr: Some(linkerd2_proxy_api::net::TcpAddress {
                ip: Some(std::net::IpAddr::from(ip).into()),
                port,
            }),
            weight: 10000,
            metric_labels: [("pod".to_owned(), "web-1".to_owned())].into(),
            tls_identity: identity.map(|name| api::TlsIdentity {
                strategy: Some(api::tls_identity::Strategy::DnsLikeIdentity(
                    api::tls_identity::DnsLikeIdentity { name: name.into() },
                )),
                ..Default::default()
            }),
            protocol_hint: Some(api::ProtocolHint {
                protocol: Some(api::protocol_hint::Protocol::H2(api::protocol_hint::H2 {})),
                opaque_transport: Some(api::protocol_hint::OpaqueTransport { inbound_port: 4143 }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_endpoint_behind_a_gateway_without_an_identity_is_refused() {
        let gateway = |identity: Option<&str>, label: bool| {
            let mut addr = addr([10, 0, 0, 9], 4143, identity);
            if label {
                addr.metric_labels
                    .insert(TRANSPORT_LABEL.to_owned(), "quic".to_owned());
            } else {
                addr.authority_override = Some(api::AuthorityOverride {
                    authority_override: "web.shop.svc.cluster.local:80".into(),
                });
            }
            endpoint_from_api(addr, &HashMap::new())
        };
        assert!(gateway(None, false).is_none(), "an authority override");
        assert!(gateway(None, true).is_none(), "a gateway transport label");
        assert!(
            gateway(Some(""), false).is_none(),
            "an empty identity is none"
        );
        let with_identity = gateway(
            Some("linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"),
            false,
        )
        .expect("a gateway with an identity");
        assert!(with_identity.authority_override.is_some());
        assert!(
            endpoint_from_api(addr([10, 0, 0, 2], 80, None), &HashMap::new()).is_some(),
            "an unmeshed pod (no gateway) is reached as it is"
        );
    }

    #[test]
    fn updates_fold_into_the_set_and_a_reset_replaces_it() {
        let mut set = EndpointSet::default();
        set.apply(
            api::update::Update::Add(api::WeightedAddrSet {
                addrs: vec![
                    addr(
                        [10, 0, 0, 1],
                        80,
                        Some("web.shop.serviceaccount.identity.linkerd.cluster.local"),
                    ),
                    addr([10, 0, 0, 2], 80, None),
                ],
                metric_labels: [("service".to_owned(), "web".to_owned())].into(),
            }),
            false,
        );
        assert_eq!(set.endpoints.len(), 2);
        let first = set.endpoints.values().next().expect("one");
        assert!(first.http2 && first.identity.is_some());
        assert_eq!(first.opaque_transport_port, Some(4143));
        assert_eq!(
            first.labels,
            vec![
                ("dst_pod", "web-1".to_owned()),
                ("dst_service", "web".to_owned())
            ]
        );
        set.apply(
            api::update::Update::Remove(api::AddrSet {
                addrs: vec![addr([10, 0, 0, 1], 80, None).addr.expect("addr")],
            }),
            false,
        );
        assert_eq!(set.endpoints.len(), 1);
        set.apply(
            api::update::Update::Add(api::WeightedAddrSet {
                addrs: vec![addr([10, 0, 0, 3], 80, None)],
                ..Default::default()
            }),
            true,
        );
        assert_eq!(
            set.endpoints.keys().copied().collect::<Vec<_>>(),
            vec!["10.0.0.3:80".parse::<SocketAddr>().expect("addr")],
            "a new stream's first answer replaces what an old stream left"
        );
        set.apply(
            api::update::Update::NoEndpoints(api::NoEndpoints { exists: false }),
            false,
        );
        assert!(set.endpoints.is_empty() && !set.exists && set.resolved);
    }
}
