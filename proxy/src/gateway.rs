//! Gateway mode (`MESH_PROXY_GATEWAY_SUFFIXES`): the inbound side accepts
//! mutual TLS connections whose transport header names a Service of this
//! cluster (`name.ns.svc.<cluster domain>`) and forwards them through the
//! outbound side, as a pod's own connection to that Service would go:
//! discovery by name, balancing, mutual TLS to the pods. A client without
//! an identity, a name outside the suffixes or a request this gateway
//! already forwarded is refused; HTTP requests get a `Forwarded` element
//! saying which gateway forwarded them for which client.

use std::sync::Arc;

use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::outbound::{Outbound, Source};
use crate::transport_header::{Kind, TransportHeader};
use mesh_core::drain::Signal;

/// What the gateway needs: the suffixes it serves, its own identity and
/// the outbound side it forwards through.
#[derive(Debug)]
pub struct Gateway {
    suffixes: Vec<String>,
    identity: String,
    outbound: Arc<Outbound>,
}

/// Why a named connection is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The client presented no certificate.
    #[error("a client without an identity")]
    Anonymous,
    /// The name is not a Service under the suffixes.
    #[error("{name:?} is not a Service under {suffixes}")]
    Outside {
        /// The name asked for.
        name: String,
        /// What is served.
        suffixes: String,
    },
}

impl Gateway {
    /// A gateway for Services under `suffixes` (`svc.cluster.local`).
    pub fn new(suffixes: Vec<String>, identity: String, outbound: Arc<Outbound>) -> Self {
        Self {
            suffixes,
            identity,
            outbound,
        }
    }

    /// The authority (`name:port`) a header asks for, when this gateway
    /// serves it: `<service>.<namespace>.<suffix>` or
    /// `<hostname>.<service>.<namespace>.<suffix>`.
    pub fn authority(&self, header: &TransportHeader) -> Result<String, Refusal> {
        let name = header.name.trim_end_matches('.');
        let served = self.suffixes.iter().any(|suffix| {
            name.strip_suffix(suffix.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|service_ns| {
                    // `<svc>.<ns>`, or `<hostname>.<svc>.<ns>`: one pod of a
                    // headless Service (a StatefulSet's).
                    let labels = service_ns.split('.');
                    (2..=3).contains(&labels.clone().count())
                        && labels.clone().all(|l| !l.is_empty())
                })
        });
        if !served {
            return Err(Refusal::Outside {
                name: header.name.clone(),
                suffixes: self.suffixes.join(", "),
            });
        }
        Ok(format!("{name}:{}", header.port))
    }

    /// Forwards `io` (after its transport header) from `client` to the
    /// Service the header names.
    pub async fn forward<I>(
        &self,
        io: I,
        header: TransportHeader,
        client: Option<String>,
        client_labels: crate::metrics::Labels,
        drain: Signal,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(client) = client else {
            tracing::info!(name = %header.name, "gateway: {}", Refusal::Anonymous);
            return;
        };
        let authority = match self.authority(&header) {
            Ok(authority) => authority,
            Err(refusal) => {
                tracing::info!(%client, "gateway: {refusal}");
                return;
            }
        };
        let forwarded = HeaderValue::from_str(&format!(
            "by={};for={client};host={authority};proto=https",
            self.identity
        ))
        .ok();
        let http = header
            .session_protocol
            .as_ref()
            .and_then(|s| s.kind.as_ref())
            .is_some_and(|kind| matches!(kind, Kind::Http1(_) | Kind::Http2(_)));
        let source = Source {
            labels: client_labels,
            forwarded,
            opaque: !http,
            client: Some(client),
        };
        self.outbound
            .clone()
            .proxy_named(io, &authority, source, drain)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str) -> TransportHeader {
        TransportHeader {
            port: 9898,
            name: name.into(),
            session_protocol: None,
            client_id: String::new(),
        }
    }

    #[test]
    fn only_services_under_the_suffixes_are_served() {
        let outbound = Outbound::new(
            crate::config::Config::from_lookup(|_| None)
                .expect("defaults")
                .outbound,
            None,
            None,
            crate::metrics::HttpMetrics::register(&mut Default::default()),
            crate::metrics::TcpMetrics::register(&mut Default::default()),
        );
        let gateway = Gateway::new(vec!["svc.cluster.local".into()], "gw".into(), outbound);
        assert_eq!(
            gateway.authority(&header("podinfo.test.svc.cluster.local.")),
            Ok("podinfo.test.svc.cluster.local:9898".into())
        );
        assert_eq!(
            gateway.authority(&header("web-0.web.test.svc.cluster.local")),
            Ok("web-0.web.test.svc.cluster.local:9898".into()),
            "a StatefulSet's pod by host name"
        );
        for outside in [
            "podinfo.test.svc.other.local",
            "test.svc.cluster.local",
            "a.b.c.test.svc.cluster.local",
            "a..test.svc.cluster.local",
            "evilsvc.cluster.local",
            "10.0.0.1",
        ] {
            assert!(gateway.authority(&header(outside)).is_err(), "{outside}");
        }
    }
}
