//! The `io.linkerd.proxy.outbound.OutboundPolicies` gRPC service (`Get`,
//! `Watch`) over the index: a target is an authority
//! (`<svc>.<ns>.svc.<domain>[:port]`, port 80 by default) or a Service's
//! cluster IP and port; anything else is NOT_FOUND (the proxy then routes
//! by the address alone). The `source_workload` names the client, whose
//! namespace decides which consumer routes it gets (an empty one gets the
//! producer's routes only; a malformed one is refused). A watch ends when
//! its Service goes away.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use linkerd2_proxy_api::outbound::outbound_policies_server::OutboundPolicies;
use linkerd2_proxy_api::outbound::{OutboundPolicy, TrafficSpec, traffic_spec};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use crate::index::Index;

/// The service over the shared index.
#[derive(Debug, Clone)]
pub struct OutboundPolicyService {
    index: Arc<Mutex<Index>>,
    cluster_domain: Arc<str>,
}

/// A Service port a `TrafficSpec` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port.
    pub port: u16,
}

/// Parses `<svc>.<ns>.svc.<domain>[:port]` (port 80 when absent).
pub fn parse_authority(authority: &str, cluster_domain: &str) -> Result<Target, Status> {
    let parsed: http::uri::Authority = authority
        .parse()
        .map_err(|_| Status::invalid_argument(format!("{authority:?} is not an authority")))?;
    let port = parsed.port_u16().unwrap_or(80);
    let host = parsed.host().trim_end_matches('.');
    let suffix = format!(".svc.{}", cluster_domain.trim_matches('.'));
    let not_a_service = || {
        Status::not_found(format!(
            "{authority:?} is not <service>.<namespace>{suffix}"
        ))
    };
    let rest = host.strip_suffix(&suffix).ok_or_else(not_a_service)?;
    match rest.split('.').collect::<Vec<_>>()[..] {
        [name, namespace] if !name.is_empty() && !namespace.is_empty() => Ok(Target {
            namespace: namespace.into(),
            name: name.into(),
            port,
        }),
        _ => Err(not_a_service()),
    }
}

impl OutboundPolicyService {
    /// Serves `index` for a cluster whose DNS domain is `cluster_domain`.
    pub fn new(index: Arc<Mutex<Index>>, cluster_domain: &str) -> Self {
        Self {
            index,
            cluster_domain: cluster_domain.into(),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Index>, Status> {
        self.index
            .lock()
            .map_err(|_| Status::internal("the policy index is poisoned"))
    }

    /// The client's namespace, from the proxy's `source_workload`.
    fn client_namespace(spec: &TrafficSpec) -> Result<Option<String>, Status> {
        if spec.source_workload.is_empty() {
            return Ok(None);
        }
        let (namespace, _) = crate::grpc::parse_workload(&spec.source_workload)?;
        Ok(Some(namespace))
    }

    fn target(&self, spec: &TrafficSpec) -> Result<Target, Status> {
        match spec.target.as_ref() {
            Some(traffic_spec::Target::Authority(authority)) => {
                parse_authority(authority, &self.cluster_domain)
            }
            Some(traffic_spec::Target::Addr(addr)) => {
                let ip = addr
                    .ip
                    .as_ref()
                    .and_then(|ip| std::net::IpAddr::try_from(*ip).ok())
                    .ok_or_else(|| Status::invalid_argument("an address without an IP"))?;
                let port = u16::try_from(addr.port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| Status::invalid_argument("a port from 1 to 65535"))?;
                let (namespace, name) = self
                    .lock()?
                    .outbound
                    .service_by_ip(ip)
                    .ok_or_else(|| Status::not_found(format!("{ip} is not a Service's")))?;
                Ok(Target {
                    namespace,
                    name,
                    port,
                })
            }
            None => Err(Status::invalid_argument("a target is required")),
        }
    }
}

fn unknown(target: &Target) -> Status {
    Status::not_found(format!(
        "Service {}/{} has no port {} (yet)",
        target.namespace, target.name, target.port
    ))
}

type PolicyStream = Pin<Box<dyn Stream<Item = Result<OutboundPolicy, Status>> + Send>>;

#[tonic::async_trait]
impl OutboundPolicies for OutboundPolicyService {
    async fn get(&self, request: Request<TrafficSpec>) -> Result<Response<OutboundPolicy>, Status> {
        let target = self.target(request.get_ref())?;
        let client = Self::client_namespace(request.get_ref())?;
        let policy = self
            .lock()?
            .outbound
            .policy(
                &target.namespace,
                &target.name,
                target.port,
                client.as_deref(),
            )
            .ok_or_else(|| unknown(&target))?;
        Ok(Response::new(super::proto::policy(&policy)))
    }

    type WatchStream = PolicyStream;

    async fn watch(&self, request: Request<TrafficSpec>) -> Result<Response<PolicyStream>, Status> {
        let target = self.target(request.get_ref())?;
        let client = Self::client_namespace(request.get_ref())?;
        let rx = {
            let mut index = self.lock()?;
            index.outbound.forget_unwatched();
            index.outbound.watch(
                &target.namespace,
                &target.name,
                target.port,
                client.as_deref(),
            )
        };
        if rx.borrow().is_none() {
            return Err(unknown(&target));
        }
        let stream = WatchStream::new(rx)
            .take_while(|policy| futures::future::ready(policy.is_some()))
            .filter_map(|policy| {
                futures::future::ready(policy.map(|p| Ok(super::proto::policy(&p))))
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_name_a_service_port_of_the_cluster_domain() {
        let target = |namespace: &str, name: &str, port| Target {
            namespace: namespace.into(),
            name: name.into(),
            port,
        };
        assert_eq!(
            parse_authority("web.shop.svc.cluster.local:8080", "cluster.local").expect("valid"),
            target("shop", "web", 8080)
        );
        assert_eq!(
            parse_authority("web.shop.svc.cluster.local.", "cluster.local").expect("valid"),
            target("shop", "web", 80)
        );
        for other in [
            "web.shop",
            "a.web.shop.svc.cluster.local",
            "web.shop.svc.other.domain",
        ] {
            assert_eq!(
                parse_authority(other, "cluster.local")
                    .expect_err(other)
                    .code(),
                tonic::Code::NotFound,
                "{other}"
            );
        }
    }
}
