//! Who a connection's client is, and what the application is told: the
//! identity its certificate proved (or why there is none) as metric
//! labels; the client a trusted gateway speaks for; the `l5d-client-id`
//! header, set by the proxy alone.

use http::HeaderValue;

use crate::http as proxy_http;
use crate::metrics::Labels;
use crate::transport_header::TransportHeader;

/// The header that tells the application who called.
pub const CLIENT_ID: &str = "l5d-client-id";

/// What is known about a connection's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    /// The identity its certificate proved, if it presented one over mesh
    /// TLS.
    pub identity: Option<String>,
    /// Why there is no identity.
    pub no_tls_reason: &'static str,
    /// Its address, when known.
    pub addr: Option<std::net::SocketAddr>,
    /// Whether it came over mesh TLS, which this proxy terminated.
    pub mesh_tls: bool,
}

impl Peer {
    /// `tls` and `client_id`, or `no_tls_reason`.
    pub fn labels(&self) -> Labels {
        match &self.identity {
            Some(id) => vec![("tls", "true".to_owned()), ("client_id", id.clone())],
            None => vec![
                ("tls", "no_identity".to_owned()),
                ("no_tls_reason", self.no_tls_reason.to_owned()),
            ],
        }
    }

    /// Who a request speaks for: this peer, or, when it is one of
    /// `trusted_gateways`, the client in another cluster that the
    /// gateway's own `Forwarded` element names (the gateway proved that
    /// client's identity with mutual TLS, and this connection proves the
    /// gateway's).
    pub fn caller(
        &self,
        trusted_gateways: &[String],
        headers: &http::HeaderMap,
    ) -> std::borrow::Cow<'_, Peer> {
        let forwarded = self
            .identity
            .as_ref()
            .filter(|id| trusted_gateways.contains(id))
            .and_then(|gateway| proxy_http::forwarded_for(headers, gateway));
        match forwarded {
            Some(client) => std::borrow::Cow::Owned(Peer {
                identity: Some(client),
                ..self.clone()
            }),
            None => std::borrow::Cow::Borrowed(self),
        }
    }

    /// Who an opaque stream speaks for: this peer, or the client a trusted
    /// gateway names in the stream's transport header.
    pub fn stream_caller(self, trusted_gateways: &[String], header: &TransportHeader) -> Peer {
        let trusted = self
            .identity
            .as_ref()
            .is_some_and(|id| trusted_gateways.contains(id));
        if trusted && !header.client_id.is_empty() {
            Peer {
                identity: Some(header.client_id.clone()),
                ..self
            }
        } else {
            self
        }
    }

    /// The client as policy sees it; without an address, the unspecified
    /// one (no network admits it unless it admits every address).
    pub fn client(&self) -> crate::inbound::policy::authorize::Client<'_> {
        crate::inbound::policy::authorize::Client {
            ip: self
                .addr
                .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| {
                    a.ip()
                }),
            mesh_tls: self.mesh_tls,
            identity: self.identity.as_deref(),
        }
    }

    /// Replaces any `l5d-client-id` the request carried with this peer's
    /// identity (or none).
    pub fn tell(&self, headers: &mut http::HeaderMap) {
        headers.remove(CLIENT_ID);
        if let Some(id) = self
            .identity
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            headers.insert(CLIENT_ID, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str =
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
    const CLIENT: &str = "web.east.serviceaccount.identity.linkerd.cluster.local";

    fn peer(identity: Option<&str>) -> Peer {
        Peer {
            addr: None,
            mesh_tls: identity.is_some(),
            identity: identity.map(str::to_owned),
            no_tls_reason: "no_client_certificate",
        }
    }

    fn forwarded_by_gateway() -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::FORWARDED,
            HeaderValue::from_str(&format!("by=\"{GATEWAY}\";for=\"{CLIENT}\"")).expect("value"),
        );
        headers
    }

    #[test]
    fn a_proved_identity_and_its_absence_are_labelled_as_linkerd_labels_them() {
        assert_eq!(
            peer(Some(CLIENT)).labels(),
            [("tls", "true".to_owned()), ("client_id", CLIENT.to_owned())]
        );
        assert_eq!(
            peer(None).labels(),
            [
                ("tls", "no_identity".to_owned()),
                ("no_tls_reason", "no_client_certificate".to_owned())
            ]
        );
    }

    #[test]
    fn only_a_trusted_gateway_speaks_for_another_client() {
        let trusted = [GATEWAY.to_owned()];
        let headers = forwarded_by_gateway();
        assert_eq!(
            peer(Some(GATEWAY))
                .caller(&trusted, &headers)
                .identity
                .as_deref(),
            Some(CLIENT)
        );
        assert_eq!(
            peer(Some(GATEWAY))
                .caller(&[], &headers)
                .identity
                .as_deref(),
            Some(GATEWAY),
            "an untrusted peer is who it proved to be"
        );
        assert_eq!(
            peer(None).caller(&trusted, &headers).identity,
            None,
            "a Forwarded header from an unauthenticated client names no one"
        );
        let header = TransportHeader {
            client_id: CLIENT.to_owned(),
            ..TransportHeader::default()
        };
        assert_eq!(
            peer(Some(GATEWAY))
                .stream_caller(&trusted, &header)
                .identity
                .as_deref(),
            Some(CLIENT)
        );
        assert_eq!(
            peer(Some(
                "db.default.serviceaccount.identity.linkerd.cluster.local"
            ))
            .stream_caller(&trusted, &header)
            .identity
            .as_deref(),
            Some("db.default.serviceaccount.identity.linkerd.cluster.local")
        );
    }

    #[test]
    fn a_forged_client_id_never_reaches_the_application() {
        let mut headers = http::HeaderMap::new();
        headers.insert(CLIENT_ID, HeaderValue::from_static("admin.kube-system"));
        peer(None).tell(&mut headers);
        assert!(
            headers.get(CLIENT_ID).is_none(),
            "removed without a proved identity"
        );
        headers.insert(CLIENT_ID, HeaderValue::from_static("admin.kube-system"));
        peer(Some(CLIENT)).tell(&mut headers);
        assert_eq!(
            headers.get_all(CLIENT_ID).iter().collect::<Vec<_>>(),
            [CLIENT],
            "replaced by the proved one"
        );
    }
}
