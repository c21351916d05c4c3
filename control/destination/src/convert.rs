//! From index answers to `linkerd2-proxy-api` messages: endpoint metadata
//! as `WeightedAddr`, and a stream of answers as the Add / Remove /
//! NoEndpoints updates destination.proto asks for.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use linkerd2_proxy_api::destination::{
    AddrSet, AuthorityOverride, NoEndpoints, ProtocolHint, TlsIdentity, Update, WeightedAddr,
    WeightedAddrSet, protocol_hint, tls_identity, update,
};

use crate::index::{Endpoint, Protocol, Resolution};

/// One endpoint as the proxy API describes it.
pub fn weighted_addr(addr: SocketAddr, endpoint: &Endpoint) -> WeightedAddr {
    let tls_identity = endpoint.identity.as_ref().map(|name| TlsIdentity {
        strategy: Some(tls_identity::Strategy::DnsLikeIdentity(
            tls_identity::DnsLikeIdentity { name: name.clone() },
        )),
        server_name: Some(tls_identity::DnsLikeIdentity { name: name.clone() }),
    });
    let hint = &endpoint.hint;
    let protocol_hint =
        (hint.protocol.is_some() || hint.opaque_transport_port.is_some()).then(|| ProtocolHint {
            protocol: hint.protocol.map(|p| match p {
                Protocol::H2 => protocol_hint::Protocol::H2(protocol_hint::H2 {}),
                Protocol::Opaque => protocol_hint::Protocol::Opaque(protocol_hint::Opaque {}),
            }),
            opaque_transport: hint
                .opaque_transport_port
                .map(|inbound_port| protocol_hint::OpaqueTransport { inbound_port }),
        });
    WeightedAddr {
        addr: Some(addr.into()),
        weight: endpoint.weight,
        metric_labels: endpoint.labels.clone().into_iter().collect(),
        tls_identity,
        protocol_hint,
        authority_override: endpoint
            .authority_override
            .as_ref()
            .map(|a| AuthorityOverride {
                authority_override: a.clone(),
            }),
        http2: None,
        resource_ref: None,
    }
}

/// What a `Get` stream has told its client so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sent {
    /// Nothing yet.
    #[default]
    Nothing,
    /// That the service does not exist.
    NotFound,
    /// These endpoints (possibly none).
    Endpoints(BTreeMap<SocketAddr, Endpoint>),
}

/// The updates that take a client from `sent` to `next`, and what it then
/// knows. The first message of a stream always states the whole answer.
pub fn updates(sent: &Sent, next: &Resolution) -> (Vec<Update>, Sent) {
    let no_endpoints = |exists| Update {
        update: Some(update::Update::NoEndpoints(NoEndpoints { exists })),
    };
    let remove = |addrs: Vec<SocketAddr>| Update {
        update: Some(update::Update::Remove(AddrSet {
            addrs: addrs.into_iter().map(Into::into).collect(),
        })),
    };
    let previous = match sent {
        Sent::Endpoints(eps) => Some(eps),
        _ => None,
    };
    match next {
        Resolution::NotFound => {
            let mut out = Vec::new();
            if let Some(prev) = previous.filter(|p| !p.is_empty()) {
                out.push(remove(prev.keys().copied().collect()));
            }
            if *sent != Sent::NotFound {
                out.push(no_endpoints(false));
            }
            (out, Sent::NotFound)
        }
        Resolution::Endpoints {
            set_labels,
            endpoints,
        } => {
            let mut out = Vec::new();
            let empty = BTreeMap::new();
            let prev = previous.unwrap_or(&empty);
            let removed: Vec<SocketAddr> = prev
                .keys()
                .filter(|a| !endpoints.contains_key(a))
                .copied()
                .collect();
            if !removed.is_empty() {
                out.push(remove(removed));
            }
            let added: Vec<WeightedAddr> = endpoints
                .iter()
                .filter(|(addr, ep)| prev.get(addr) != Some(ep))
                .map(|(addr, ep)| weighted_addr(*addr, ep))
                .collect();
            if !added.is_empty() {
                out.push(Update {
                    update: Some(update::Update::Add(WeightedAddrSet {
                        addrs: added,
                        metric_labels: set_labels.clone().into_iter().collect(),
                    })),
                });
            }
            if endpoints.is_empty()
                && (previous.is_none() || prev.is_empty())
                && !matches!(sent, Sent::Endpoints(p) if p.is_empty())
            {
                out.push(no_endpoints(true));
            }
            (out, Sent::Endpoints(endpoints.clone()))
        }
    }
}
