//! Gateway mode (`MESH_PROXY_GATEWAY_SUFFIXES`): the inbound side accepts
//! mutual TLS connections whose transport header names a Service of this
//! cluster (`name.ns.svc.<cluster domain>`) and forwards them through the
//! outbound side, as a pod's own connection to that Service would go:
//! discovery by name, balancing, mutual TLS to the pods. HTTP requests get
//! a `Forwarded` element saying which gateway forwarded them for which
//! client.
//!
//! The gateway opens only what is exported: its lookups carry its export
//! selector (see [`crate::config`]'s `MESH_PROXY_GATEWAY_EXPORTS`), the
//! destination service refuses those of Services that do not match it, and
//! the gateway refuses the connection (and closes one still open when its
//! Service stops being exported). It also refuses a client without an
//! identity, a name outside the suffixes, and a connection it cannot get
//! an answer for (it fails closed). Each refusal is logged with the
//! caller's identity and counted in `gateway_refused_total{reason}`.

use std::sync::Arc;

use http::HeaderValue;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
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
    refused: Family<RefusedLabels, Counter>,
}

/// The labels of `gateway_refused_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabels {
    reason: &'static str,
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
    /// The destination service refuses the lookup: the Service is not
    /// exported (or never is: the API server, the control plane).
    #[error("{authority} is not exported: {why}")]
    NotExported {
        /// The name and port asked for.
        authority: String,
        /// The destination service's answer.
        why: String,
    },
    /// No answer from the destination service in time: refused rather than
    /// forwarded unchecked.
    #[error("no answer from the destination service on whether {authority} is exported")]
    Unchecked {
        /// The name and port asked for.
        authority: String,
    },
}

impl Refusal {
    /// The `reason` label it is counted under.
    fn reason(&self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Outside { .. } => "outside_suffixes",
            Self::NotExported { .. } => "not_exported",
            Self::Unchecked { .. } => "unchecked",
        }
    }
}

impl Gateway {
    /// A gateway for Services under `suffixes` (`svc.cluster.local`),
    /// counting its refusals in `registry`.
    pub fn new(
        suffixes: Vec<String>,
        identity: String,
        outbound: Arc<Outbound>,
        registry: &mut Registry,
    ) -> Self {
        let refused = Family::default();
        registry.register(
            "gateway_refused",
            "Connections a gateway refused to forward, by reason",
            refused.clone(),
        );
        Self {
            suffixes,
            identity,
            outbound,
            refused,
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
            self.refuse(&Refusal::Anonymous, "-", &header.name);
            return;
        };
        let authority = match self.authority(&header) {
            Ok(authority) => authority,
            Err(refusal) => {
                self.refuse(&refusal, &client, &header.name);
                return;
            }
        };
        let logical = self.outbound.named(&authority);
        let refusal = match logical.first_profile().await {
            Some(profile) => profile.refused.clone().map(|why| Refusal::NotExported {
                authority: authority.clone(),
                why,
            }),
            None => Some(Refusal::Unchecked {
                authority: authority.clone(),
            }),
        };
        if let Some(refusal) = refusal {
            self.refuse(&refusal, &client, &authority);
            return;
        }
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
            client: Some(client.clone()),
            addr: None,
        };
        // Forwarded while exported: a connection still open when its Service
        // stops being exported is closed, not left to carry more requests.
        let watched = logical.clone();
        tokio::select! {
            () = self.outbound.clone().proxy_logical(io, logical, source, drain) => {}
            why = watched.refused() => {
                self.refuse(&Refusal::NotExported { authority: authority.clone(), why }, &client, &authority);
            }
        }
    }

    fn refuse(&self, refusal: &Refusal, client: &str, name: &str) {
        self.refused
            .get_or_create(&RefusedLabels {
                reason: refusal.reason(),
            })
            .inc();
        tracing::info!(%client, %name, reason = refusal.reason(), "gateway refused: {refusal}");
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
            Default::default(),
        );
        let gateway = Gateway::new(
            vec!["svc.cluster.local".into()],
            "gw".into(),
            outbound,
            &mut Registry::default(),
        );
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
