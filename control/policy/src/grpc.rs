//! The `io.linkerd.proxy.inbound.InboundServerPolicies` gRPC service
//! (`GetPort`, `WatchPort`) over the index, as Linkerd's policy controller
//! serves it: a workload is `{"ns":…,"pod":…}` (what proxies send) or
//! `<ns>:<pod>`; a pod the index does not know yet is NOT_FOUND (the proxy
//! asks again); a watch ends when its pod goes away.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use ipnet::IpNet;
use linkerd2_proxy_api::inbound::inbound_server_policies_server::InboundServerPolicies;
use linkerd2_proxy_api::inbound::{PortSpec, Server};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use crate::index::Index;
use crate::proto;

/// The service over a shared index.
#[derive(Debug, Clone)]
pub struct InboundPolicyService {
    index: Arc<Mutex<Index>>,
    cluster_networks: Arc<[IpNet]>,
}

impl InboundPolicyService {
    /// Serves `index`; `cluster_networks` stand for authorizations that
    /// name no network.
    pub fn new(index: Arc<Mutex<Index>>, cluster_networks: Vec<IpNet>) -> Self {
        Self {
            index,
            cluster_networks: cluster_networks.into(),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Index>, Status> {
        self.index
            .lock()
            .map_err(|_| Status::internal("the policy index is poisoned"))
    }
}

/// A pod, as a `PortSpec` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub pod: String,
}

/// A workload as a proxy names itself (`{"ns":…,"pod":…}`, an external
/// workload's `{"ns":…,"external_workload":…}`, or `<namespace>:<pod>`):
/// its namespace, and its pod unless it is an external workload.
pub fn parse_workload(workload: &str) -> Result<(String, Option<String>), Status> {
    let invalid = |why: &str| Status::invalid_argument(format!("workload {workload:?}: {why}"));
    if workload.trim_start().starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(workload).map_err(|e| invalid(&e.to_string()))?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(serde_json::Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let namespace = field("ns").ok_or_else(|| invalid("no \"ns\""))?;
        if field("external_workload").is_some() {
            return Ok((namespace, None));
        }
        let pod = field("pod").ok_or_else(|| invalid("no \"pod\""))?;
        return Ok((namespace, Some(pod)));
    }
    match workload.split_once(':') {
        Some((namespace, pod)) if !namespace.is_empty() && !pod.is_empty() => {
            Ok((namespace.to_owned(), Some(pod.to_owned())))
        }
        _ => Err(invalid(
            "expected {\"ns\":…,\"pod\":…} or <namespace>:<pod>",
        )),
    }
}

/// Parses a `PortSpec`'s workload (a pod) and port.
pub fn target(spec: &PortSpec) -> Result<(Workload, u16), Status> {
    let (namespace, pod) = parse_workload(&spec.workload)?;
    let pod = pod.ok_or_else(|| {
        Status::invalid_argument(format!(
            "workload {:?}: external workloads are not supported",
            spec.workload
        ))
    })?;
    let workload = Workload { namespace, pod };
    let port = u16::try_from(spec.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            Status::invalid_argument(format!("port {} is not from 1 to 65535", spec.port))
        })?;
    Ok((workload, port))
}

fn unknown(workload: &Workload) -> Status {
    Status::not_found(format!(
        "pod {}/{} is not known (yet)",
        workload.namespace, workload.pod
    ))
}

type ServerStream = Pin<Box<dyn Stream<Item = Result<Server, Status>> + Send>>;

#[tonic::async_trait]
impl InboundServerPolicies for InboundPolicyService {
    async fn get_port(&self, request: Request<PortSpec>) -> Result<Response<Server>, Status> {
        let (workload, port) = target(request.get_ref())?;
        let server = self
            .lock()?
            .inbound_server(&workload.namespace, &workload.pod, port)
            .ok_or_else(|| unknown(&workload))?;
        Ok(Response::new(proto::server(
            &server,
            &self.cluster_networks,
        )))
    }

    type WatchPortStream = ServerStream;

    async fn watch_port(
        &self,
        request: Request<PortSpec>,
    ) -> Result<Response<ServerStream>, Status> {
        let (workload, port) = target(request.get_ref())?;
        let rx = {
            let mut index = self.lock()?;
            index.forget_unwatched();
            index.watch_port(&workload.namespace, &workload.pod, port)
        };
        if rx.borrow().is_none() {
            return Err(unknown(&workload));
        }
        let networks = self.cluster_networks.clone();
        let stream = WatchStream::new(rx)
            .take_while(|server| futures::future::ready(server.is_some()))
            .filter_map(move |server| {
                futures::future::ready(server.map(|s| Ok(proto::server(&s, &networks))))
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(workload: &str, port: u32) -> PortSpec {
        PortSpec {
            workload: workload.into(),
            port,
        }
    }

    #[test]
    fn workloads_are_read_as_linkerds_proxies_send_them() {
        let expected = Workload {
            namespace: "prod".into(),
            pod: "web-1".into(),
        };
        assert_eq!(
            target(&spec(r#"{"ns":"prod", "pod":"web-1"}"#, 8080)).expect("json"),
            (expected.clone(), 8080)
        );
        assert_eq!(
            target(&spec("prod:web-1", 8080)).expect("legacy"),
            (expected, 8080)
        );
        for (workload, port) in [
            ("prod", 8080),
            (":web-1", 8080),
            (r#"{"ns":"prod"}"#, 8080),
            (r#"{"ns":"prod","external_workload":"vm-1"}"#, 8080),
            ("prod:web-1", 0),
            ("prod:web-1", 70000),
        ] {
            let status = target(&spec(workload, port)).expect_err(workload);
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{workload} {port}"
            );
        }
    }
}
