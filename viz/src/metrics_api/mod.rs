//! viz's metrics-api: Linkerd viz's `linkerd2.viz.Api` gRPC service on
//! port 8085, answered from the same code as `mesh viz` and the dashboard
//! ([`crate::metrics`]), so that what speaks Linkerd's API (Linkerd's CLI
//! and dashboard, a user's tool) reads mesh's figures unchanged:
//!
//! - `StatSummary`: golden metrics per resource (`deployment`, `pod`,
//!   `namespace`, `service`, `statefulset`, `daemonset`, `job`,
//!   `authority`), with `to_resource` / `from_resource`, and each row's
//!   meshed and running pod counts; success and failure **counts** over
//!   the window, as Linkerd's (its CLI divides by the window);
//! - `Edges`: who calls whom, with the identities each side saw;
//! - `TopRoutes`: a Service's routes as its clients saw them (a workload's
//!   with `to_resource`), or what a workload served per route;
//! - `ListServices`, and `SelfCheck` (Prometheus answers a query).
//!
//! `ListPods`, `Authz` and the deprecated `Gateways` answer
//! `UNIMPLEMENTED` with what to use instead. A request names what it asks
//! for with Linkerd's resource types; anything else is an
//! `INVALID_ARGUMENT` naming the field. [`grpc`] is the transport.

pub mod grpc;
pub mod proto;

use k8s_openapi::api::core::v1::Service as KubeService;
use kube::Api;
use kube::api::ListParams;
use tonic::Status;

use crate::metrics::golden::Golden;
use crate::metrics::prometheus::{Prometheus, duration_seconds};
use crate::metrics::resource::{Kind, Target};
use proto::{
    BasicStats, CheckResult, CheckStatus, Edge, EdgesAnswer, EdgesOk, EdgesRequest, EdgesResponse,
    ListServicesRequest, ListServicesResponse, Outbound, PodGroup, Resource, ResourceError,
    ResourceSelection, RouteTable, Row, SelfCheckRequest, SelfCheckResponse, Service,
    StatSummaryAnswer, StatSummaryOk, StatSummaryRequest, StatSummaryResponse, StatTable, Table,
    TcpStats, TopRoutesAnswer, TopRoutesOk, TopRoutesOutbound, TopRoutesRequest, TopRoutesResponse,
};

/// The window when a request gives none (Linkerd's CLI default).
const DEFAULT_WINDOW: &str = "1m";

/// The service: a Kubernetes client (its own read-only ServiceAccount) and
/// viz's Prometheus.
#[derive(Clone)]
pub struct MetricsApi {
    client: kube::Client,
    prometheus: Prometheus,
}

impl std::fmt::Debug for MetricsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsApi").finish_non_exhaustive()
    }
}

/// A resource as a request names it, checked.
struct Named {
    target: Target,
    namespace: Option<String>,
}

/// The resource a selection names; a label selector is refused (mesh
/// filters by name only), rather than answering more than was asked.
fn selected(selection: Option<&ResourceSelection>) -> Result<Option<&Resource>, Status> {
    if let Some(selection) = selection
        && !selection.label_selector.is_empty()
    {
        return Err(Status::unimplemented(format!(
            "selector.label_selector: {:?}: label selectors are not supported; name the resource",
            selection.label_selector
        )));
    }
    Ok(selection.and_then(|s| s.resource.as_ref()))
}

/// `resource` (the request's `field`) as a viz target, refused with the
/// field's name when its type is not one viz reports on or a name is not a
/// Kubernetes name.
fn named(resource: Option<&Resource>, field: &str) -> Result<Named, Status> {
    let resource = resource.ok_or_else(|| Status::invalid_argument(format!("{field}: missing")))?;
    let kind = Kind::parse(&resource.r#type)
        .map_err(|e| Status::invalid_argument(format!("{field}.type: {e}")))?;
    for (name, value) in [("namespace", &resource.namespace), ("name", &resource.name)] {
        if !value.is_empty() && !crate::metrics::resource::is_object_name(value) {
            return Err(Status::invalid_argument(format!(
                "{field}.{name}: {value:?} is not a Kubernetes name"
            )));
        }
    }
    Ok(Named {
        target: Target {
            kind,
            name: (!resource.name.is_empty()).then(|| resource.name.clone()),
        },
        namespace: (!resource.namespace.is_empty()).then(|| resource.namespace.clone()),
    })
}

/// The request's window (`1m` when empty), refused unless Prometheus reads
/// it as a duration.
fn window(text: &str) -> Result<(String, f64), Status> {
    let text = if text.is_empty() {
        DEFAULT_WINDOW
    } else {
        text
    };
    let seconds = duration_seconds(text)
        .map_err(|e| Status::invalid_argument(format!("time_window: {e}")))?;
    Ok((text.to_owned(), seconds))
}

/// A row's figures as Linkerd's counts over the window (`None` without
/// traffic).
fn basic_stats(golden: &Golden, window_seconds: f64) -> Option<BasicStats> {
    let total = golden.rps? * window_seconds;
    let success = golden.success.unwrap_or(0.0) * total;
    let ms = |v: Option<f64>| v.map_or(0, |v| v.round() as u64);
    Some(BasicStats {
        success_count: success.round() as u64,
        failure_count: (total - success).max(0.0).round() as u64,
        latency_ms_p50: ms(golden.latency_ms_p50),
        latency_ms_p95: ms(golden.latency_ms_p95),
        latency_ms_p99: ms(golden.latency_ms_p99),
        actual_success_count: 0,
        actual_failure_count: 0,
    })
}

/// A failure of the figures' sources, as the answer's error (Linkerd's
/// API answers these in the message, not as a gRPC status).
fn resource_error(resource: Option<&Resource>, error: &anyhow::Error) -> ResourceError {
    ResourceError {
        resource: resource.cloned(),
        error: format!("{error:#}"),
    }
}

impl MetricsApi {
    /// Answering from `client` and `prometheus`.
    pub fn new(client: kube::Client, prometheus: Prometheus) -> Self {
        Self { client, prometheus }
    }

    /// `StatSummary`.
    pub async fn stat_summary(
        &self,
        request: StatSummaryRequest,
    ) -> Result<StatSummaryResponse, Status> {
        let resource = selected(request.selector.as_ref())?;
        let Named { target, namespace } = named(resource, "selector.resource")?;
        if matches!(target.kind, Kind::TrafficSplit | Kind::HttpRoute) {
            return Err(Status::unimplemented(format!(
                "{}: not served by the metrics-api; `mesh viz stat {}` reads it",
                target.kind.name(),
                target.kind.name()
            )));
        }
        let (window, window_seconds) = window(&request.time_window)?;
        let (from, to) = match &request.outbound {
            Some(Outbound::FromResource(r)) => (Some(named(Some(r), "from_resource")?), None),
            Some(Outbound::ToResource(r)) => (None, Some(named(Some(r), "to_resource")?)),
            Some(Outbound::None(_)) | None => (None, None),
        };
        let fallback = namespace.as_deref().unwrap_or("default");
        let peer = |n: &Named| -> (Target, String) {
            (
                n.target.clone(),
                n.namespace.clone().unwrap_or_else(|| fallback.to_owned()),
            )
        };
        let from = from.as_ref().map(peer);
        let to = to.as_ref().map(peer);
        let stat = crate::metrics::stat::Request {
            target: &target,
            namespace: namespace.as_deref(),
            from: from.as_ref().map(|(t, ns)| (t, ns.as_str())),
            to: to.as_ref().map(|(t, ns)| (t, ns.as_str())),
            window: &window,
        };
        let rows = match crate::metrics::stat::stat(&self.client, &self.prometheus, stat).await {
            Ok((rows, _)) => rows,
            Err(e) => {
                return Ok(StatSummaryResponse {
                    response: Some(StatSummaryAnswer::Error(resource_error(resource, &e))),
                });
            }
        };
        let rows = rows
            .into_iter()
            .map(|row| {
                let (meshed, running) = row.meshed.unwrap_or((0, 0));
                let per_window =
                    |v: Option<f64>| v.map_or(0, |v| (v * window_seconds).round() as u64);
                Row {
                    resource: Some(Resource {
                        namespace: row.namespace.clone(),
                        r#type: target.kind.name().to_owned(),
                        name: row.name.clone(),
                    }),
                    time_window: window.clone(),
                    meshed_pod_count: meshed as u64,
                    running_pod_count: running as u64,
                    stats: if request.skip_stats {
                        None
                    } else {
                        basic_stats(&row.golden, window_seconds)
                    },
                    failed_pod_count: 0,
                    tcp_stats: (request.tcp_stats && !request.skip_stats).then(|| TcpStats {
                        open_connections: row.tcp_open_connections.map_or(0, |c| c.round() as u64),
                        read_bytes_total: per_window(row.read_bytes_per_second),
                        write_bytes_total: per_window(row.write_bytes_per_second),
                    }),
                    status: String::new(),
                }
            })
            .collect();
        Ok(StatSummaryResponse {
            response: Some(StatSummaryAnswer::Ok(StatSummaryOk {
                stat_tables: vec![StatTable {
                    table: Some(Table::PodGroup(PodGroup { rows })),
                }],
            })),
        })
    }

    /// `Edges`.
    pub async fn edges(&self, request: EdgesRequest) -> Result<EdgesResponse, Status> {
        let resource = selected(request.selector.as_ref())?;
        let Named { target, namespace } = named(resource, "selector.resource")?;
        if !matches!(
            target.kind,
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::Job | Kind::Pod
        ) {
            return Err(Status::invalid_argument(format!(
                "selector.resource.type: edges join workloads or pods, not {}",
                target.kind.name()
            )));
        }
        let found = match crate::metrics::edges::of(
            &self.client,
            &self.prometheus,
            target.kind,
            namespace.as_deref(),
            DEFAULT_WINDOW,
        )
        .await
        {
            Ok(found) => found,
            Err(e) => {
                return Ok(EdgesResponse {
                    response: Some(EdgesAnswer::Error(resource_error(resource, &e))),
                });
            }
        };
        let kind = target.kind.name();
        let side = |namespace: &str, name: &str| Resource {
            namespace: namespace.to_owned(),
            r#type: kind.to_owned(),
            name: name.to_owned(),
        };
        let edges = found
            .edges
            .iter()
            .map(|e| Edge {
                src: Some(side(&e.src_namespace, &e.src)),
                dst: Some(side(&e.dst_namespace, &e.dst)),
                client_id: e.client_id.clone().unwrap_or_default(),
                server_id: e.server_id.clone().unwrap_or_default(),
                no_identity_msg: e.no_tls_reason.clone().unwrap_or_default(),
            })
            .collect();
        Ok(EdgesResponse {
            response: Some(EdgesAnswer::Ok(EdgesOk { edges })),
        })
    }

    /// `TopRoutes`: a Service's routes as every client saw them, a
    /// workload's requests to `to_resource` (a Service) per route, or what a
    /// workload served per route.
    pub async fn top_routes(&self, request: TopRoutesRequest) -> Result<TopRoutesResponse, Status> {
        let resource = selected(request.selector.as_ref())?;
        let Named { target, namespace } = named(resource, "selector.resource")?;
        let namespace = namespace
            .ok_or_else(|| Status::invalid_argument("selector.resource.namespace: missing"))?;
        let (window, _) = window(&request.time_window)?;
        let to = match &request.outbound {
            Some(TopRoutesOutbound::ToResource(r)) => Some(named(Some(r), "to_resource")?),
            Some(TopRoutesOutbound::None(_)) | None => None,
        };
        let answer = match (&target, &to) {
            (
                Target {
                    kind: Kind::Service,
                    name: Some(service),
                },
                None,
            ) => crate::metrics::routes::of(
                &self.client,
                &self.prometheus,
                service,
                &namespace,
                None,
                &window,
            )
            .await
            .map(|(rows, _)| (format!("service/{service}"), rows)),
            (
                source,
                Some(Named {
                    target:
                        Target {
                            kind: Kind::Service,
                            name: Some(service),
                        },
                    namespace: service_ns,
                }),
            ) => {
                let service_ns = service_ns.clone().unwrap_or_else(|| namespace.clone());
                crate::metrics::routes::of(
                    &self.client,
                    &self.prometheus,
                    service,
                    &service_ns,
                    Some((source, namespace.as_str())),
                    &window,
                )
                .await
                .map(|(rows, _)| (format!("service/{service}"), rows))
            }
            (workload, None) => crate::metrics::routes::served(
                &self.client,
                &self.prometheus,
                workload,
                &namespace,
                &window,
            )
            .await
            .map(|(rows, _)| (workload.to_string(), rows)),
            (_, Some(_)) => {
                return Err(Status::invalid_argument(
                    "to_resource: routes are a Service's (type service, with a name)",
                ));
            }
        };
        let (table_resource, rows) = match answer {
            Ok(found) => found,
            Err(e) => {
                return Ok(TopRoutesResponse {
                    response: Some(TopRoutesAnswer::Error(resource_error(resource, &e))),
                });
            }
        };
        let (_, window_seconds) = self::window(&window)?;
        let rows = rows
            .iter()
            .map(|r| proto::RouteRow {
                route: r.route.clone(),
                time_window: window.clone(),
                stats: basic_stats(&r.golden, window_seconds),
                authority: r.service.clone(),
            })
            .collect();
        Ok(TopRoutesResponse {
            response: Some(TopRoutesAnswer::Ok(TopRoutesOk {
                routes: vec![RouteTable {
                    rows,
                    resource: table_resource,
                }],
            })),
        })
    }

    /// `ListServices`.
    pub async fn list_services(
        &self,
        request: ListServicesRequest,
    ) -> Result<ListServicesResponse, Status> {
        let api: Api<KubeService> = if request.namespace.is_empty() {
            Api::all(self.client.clone())
        } else if crate::metrics::resource::is_object_name(&request.namespace) {
            Api::namespaced(self.client.clone(), &request.namespace)
        } else {
            return Err(Status::invalid_argument(format!(
                "namespace: {:?} is not a Kubernetes name",
                request.namespace
            )));
        };
        let services = api
            .list(&ListParams::default())
            .await
            .map_err(|e| Status::unavailable(format!("listing Services: {e}")))?
            .items
            .into_iter()
            .map(|s| Service {
                name: s.metadata.name.unwrap_or_default(),
                namespace: s.metadata.namespace.unwrap_or_default(),
            })
            .collect();
        Ok(ListServicesResponse { services })
    }

    /// `SelfCheck`: whether Prometheus answers a query.
    pub async fn self_check(&self, _: SelfCheckRequest) -> Result<SelfCheckResponse, Status> {
        let (status, message) = match self.prometheus.query("vector(1)").await {
            Ok(_) => (CheckStatus::Ok, String::new()),
            Err(e) => (CheckStatus::Error, format!("{e:#}")),
        };
        Ok(SelfCheckResponse {
            results: vec![CheckResult {
                subsystem_name: "linkerd-prometheus".to_owned(),
                check_description: "can query the Prometheus instance".to_owned(),
                status: status as i32,
                friendly_message_to_user: message,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_is_named_with_linkerds_types_and_kubernetes_names() {
        let resource = |t: &str, ns: &str, name: &str| Resource {
            namespace: ns.to_owned(),
            r#type: t.to_owned(),
            name: name.to_owned(),
        };
        let found = named(
            Some(&resource("deployment", "shop", "web")),
            "selector.resource",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.target.kind, Kind::Deployment);
        assert_eq!(found.target.name.as_deref(), Some("web"));
        assert_eq!(found.namespace.as_deref(), Some("shop"));
        for (bad, field) in [
            (resource("bogus", "shop", ""), "selector.resource.type"),
            (
                resource("pod", "shop\"}", ""),
                "selector.resource.namespace",
            ),
            (resource("pod", "shop", "a{b"), "selector.resource.name"),
        ] {
            let refused = named(Some(&bad), "selector.resource").err();
            assert!(
                refused
                    .as_ref()
                    .is_some_and(|s| s.code() == tonic::Code::InvalidArgument
                        && s.message().starts_with(field)),
                "{bad:?}: {refused:?}"
            );
        }
        assert!(named(None, "to_resource").is_err());
        let filtered = ResourceSelection {
            resource: Some(resource("pod", "shop", "")),
            label_selector: "app=web".into(),
        };
        assert_eq!(
            selected(Some(&filtered)).err().map(|s| s.code()),
            Some(tonic::Code::Unimplemented),
            "a filter mesh cannot apply is refused, not ignored"
        );
    }

    #[test]
    fn figures_are_counts_over_the_window() {
        let golden = Golden {
            success: Some(0.95),
            rps: Some(2.0),
            latency_ms_p50: Some(1.4),
            latency_ms_p95: None,
            latency_ms_p99: Some(9.6),
        };
        assert_eq!(
            basic_stats(&golden, 30.0),
            Some(BasicStats {
                success_count: 57,
                failure_count: 3,
                latency_ms_p50: 1,
                latency_ms_p95: 0,
                latency_ms_p99: 10,
                actual_success_count: 0,
                actual_failure_count: 0,
            })
        );
        assert_eq!(basic_stats(&Golden::default(), 30.0), None);
        assert_eq!(window("").map(|w| w.1).ok(), Some(60.0));
        assert!(window("ten minutes").is_err());
    }
}
