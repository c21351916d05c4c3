//! `stat httproute`: golden metrics per HTTPRoute (both kinds:
//! `gateway.networking.k8s.io` and `policy.linkerd.io`), one row per
//! route and parent, for both kinds of parent:
//!
//! - a **Service** (an outbound route): what the Service's clients saw on
//!   the route, from `route_response_total` / `route_response_latency_ms`
//!   with `dst` the Service and `rt_route` the route's name, which client
//!   proxies record for requests an HTTPRoute routed (the same series
//!   `viz routes` reads);
//! - a **Server** (an inbound route): what the server's proxies served on
//!   it, from `response_total` / `response_latency_ms` with
//!   `direction="inbound"` and Linkerd's policy labels (`srv_name`,
//!   `route_kind="HTTPRoute"`, `route_group`, `route_name`), as Linkerd's
//!   viz reads them.
//!
//! Eight queries answer every route of the namespace, whatever their
//! number. Two routes of the same name in different namespaces attached to
//! one Service (a consumer route and the producer's) share one row's
//! figures: the clients' series name the route, not its namespace.

use kube::Api;
use kube::api::ListParams;
use mesh_api::crds::http_route::{HttpRoute, HttpRouteSpec, PolicyHttpRoute};
use mesh_api::prometheus::Sample;
use serde::Serialize;

use super::golden::{Golden, ask, quantiles};
use super::prometheus::{Prometheus, matchers};

/// What a route attaches to, as far as the mesh is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// A Service: the route applies to its clients' requests.
    Service {
        /// Its name.
        name: String,
        /// Its namespace.
        namespace: String,
    },
    /// A Server (`policy.linkerd.io`): the route applies to what its pods
    /// serve.
    Server {
        /// Its name (in the route's namespace).
        name: String,
    },
}

impl Parent {
    /// `svc/NAME` (with `.NAMESPACE` when it is not the route's) or
    /// `server/NAME`.
    fn display(&self, route_namespace: &str) -> String {
        match self {
            Self::Service { name, namespace } if namespace == route_namespace => {
                format!("svc/{name}")
            }
            Self::Service { name, namespace } => format!("svc/{name}.{namespace}"),
            Self::Server { name } => format!("server/{name}"),
        }
    }
}

/// An HTTPRoute as the rows need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Its API group.
    pub group: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The parents the mesh serves (other parents, such as Gateways, are
    /// left out).
    pub parents: Vec<Parent>,
}

impl Route {
    /// The route `name` in `namespace` of `group`, from its spec.
    pub fn new(group: &str, namespace: &str, name: &str, spec: &HttpRouteSpec) -> Self {
        let parents = spec
            .parent_refs
            .iter()
            .filter_map(|parent| {
                let group = parent.group.as_deref().unwrap_or_default();
                match (group, parent.kind.as_deref()) {
                    ("" | "core", Some("Service")) => Some(Parent::Service {
                        name: parent.name.clone(),
                        namespace: parent
                            .namespace
                            .clone()
                            .unwrap_or_else(|| namespace.to_owned()),
                    }),
                    ("policy.linkerd.io", Some("Server")) => Some(Parent::Server {
                        name: parent.name.clone(),
                    }),
                    _ => None,
                }
            })
            .collect();
        Self {
            group: group.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            parents,
        }
    }
}

/// One route's row for one parent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteRow {
    /// The cluster (kubeconfig context) it was read in, when several were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The route's namespace.
    pub namespace: String,
    /// The route.
    pub name: String,
    /// Its API group.
    pub group: String,
    /// `svc/NAME` or `server/NAME`.
    pub parent: String,
    /// `outbound` (a Service parent: what clients saw) or `inbound` (a
    /// Server parent: what was served).
    pub direction: &'static str,
    /// The figures.
    #[serde(flatten)]
    pub golden: Golden,
}

/// The queries: for each direction, requests by route and classification
/// and a latency quantile by route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    /// Clients' requests on routes (`dst`, `rt_route`).
    pub outbound: (String, [String; 3]),
    /// Servers' requests on HTTPRoutes (`namespace`, `srv_name`,
    /// `route_group`, `route_name`).
    pub inbound: (String, [String; 3]),
}

/// The queries over `window`, inbound ones limited to `namespace`.
pub fn queries(namespace: Option<&str>, window: &str) -> Queries {
    let outbound = r#"{direction="outbound",rt_route!=""}"#;
    let outbound_by = "dst, rt_route";
    let mut inbound = vec![
        ("direction".to_owned(), "inbound".to_owned()),
        ("route_kind".to_owned(), "HTTPRoute".to_owned()),
    ];
    if let Some(namespace) = namespace {
        inbound.push(("namespace".to_owned(), namespace.to_owned()));
    }
    let inbound = matchers(&inbound);
    let inbound_by = "namespace, srv_name, route_group, route_name";
    Queries {
        outbound: (
            format!(
                "sum(increase(route_response_total{outbound}[{window}])) by ({outbound_by}, classification)"
            ),
            quantiles("route_response_latency_ms", outbound, window, outbound_by),
        ),
        inbound: (
            format!(
                "sum(increase(response_total{inbound}[{window}])) by ({inbound_by}, classification)"
            ),
            quantiles("response_latency_ms", &inbound, window, inbound_by),
        ),
    }
}

/// Prometheus's answers to [`Queries`], in their order.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// Answers to [`Queries::outbound`].
    pub outbound: (Vec<Sample>, [Vec<Sample>; 3]),
    /// Answers to [`Queries::inbound`].
    pub inbound: (Vec<Sample>, [Vec<Sample>; 3]),
}

/// Whether `sample` is one of `route`'s on `parent`.
fn belongs(sample: &Sample, route: &Route, parent: &Parent) -> bool {
    match parent {
        Parent::Service { name, namespace } => {
            sample.label("rt_route") == route.name
                && sample
                    .label("dst")
                    .strip_prefix(&format!("{name}.{namespace}.svc."))
                    .is_some_and(|rest| !rest.is_empty())
        }
        Parent::Server { name } => {
            sample.label("namespace") == route.namespace
                && sample.label("srv_name") == name
                && sample.label("route_group") == route.group
                && sample.label("route_name") == route.name
        }
    }
}

/// The rows of `routes` (in their order, each parent in its order) from
/// the answers.
pub fn rows(routes: &[Route], window_seconds: f64, answers: &Answers) -> Vec<RouteRow> {
    routes
        .iter()
        .flat_map(|route| {
            route.parents.iter().map(move |parent| {
                let ((requests, latency), direction) = match parent {
                    Parent::Service { .. } => (&answers.outbound, "outbound"),
                    Parent::Server { .. } => (&answers.inbound, "inbound"),
                };
                RouteRow {
                    cluster: None,
                    namespace: route.namespace.clone(),
                    name: route.name.clone(),
                    group: route.group.clone(),
                    parent: parent.display(&route.namespace),
                    direction,
                    golden: Golden::matching(requests, latency, window_seconds, |s| {
                        belongs(s, route, parent)
                    }),
                }
            })
        })
        .collect()
}

/// The HTTPRoutes of both kinds in `namespace` (every namespace: `None`),
/// or the one named `name`, sorted by namespace, name and group. A kind
/// whose CRD is not installed has none.
pub async fn list(
    client: &kube::Client,
    namespace: Option<&str>,
    name: Option<&str>,
) -> anyhow::Result<Vec<Route>> {
    fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let params = match name {
        Some(name) => ListParams::default().fields(&format!("metadata.name={name}")),
        None => ListParams::default(),
    };
    let gateway = super::installed(
        api::<HttpRoute>(client, namespace).list(&params).await,
        "HTTPRoutes (gateway.networking.k8s.io)",
    )?;
    let policy = super::installed(
        api::<PolicyHttpRoute>(client, namespace)
            .list(&params)
            .await,
        "HTTPRoutes (policy.linkerd.io)",
    )?;
    let route = |group: &str, meta: &kube::api::ObjectMeta, spec: &HttpRouteSpec| {
        Route::new(
            group,
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
            spec,
        )
    };
    let mut routes: Vec<Route> = gateway
        .iter()
        .map(|r| route("gateway.networking.k8s.io", &r.metadata, &r.spec))
        .chain(
            policy
                .iter()
                .map(|r| route("policy.linkerd.io", &r.metadata, &r.spec.route)),
        )
        .collect();
    routes
        .sort_by(|a, b| (&a.namespace, &a.name, &a.group).cmp(&(&b.namespace, &b.name, &b.group)));
    Ok(routes)
}

/// The rows of the HTTPRoutes in `namespace` (or the one named `name`)
/// over `window` (`window_seconds` long).
pub async fn stat(
    client: &kube::Client,
    prometheus: &Prometheus,
    namespace: Option<&str>,
    name: Option<&str>,
    (window, window_seconds): (&str, f64),
) -> anyhow::Result<Vec<RouteRow>> {
    let routes = list(client, namespace, name).await?;
    if routes.is_empty() {
        return Ok(Vec::new());
    }
    let queries = queries(namespace, window);
    let (outbound, inbound) = futures::try_join!(
        ask(prometheus, &queries.outbound),
        ask(prometheus, &queries.inbound)
    )?;
    Ok(rows(
        &routes,
        window_seconds,
        &Answers { outbound, inbound },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::crds::http_route::ParentRef;

    fn parent(group: Option<&str>, kind: &str, name: &str, namespace: Option<&str>) -> ParentRef {
        ParentRef {
            group: group.map(str::to_owned),
            kind: Some(kind.to_owned()),
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            ..ParentRef::default()
        }
    }

    #[test]
    fn a_routes_parents_are_its_services_and_servers_only() {
        let spec = HttpRouteSpec {
            parent_refs: vec![
                parent(Some("core"), "Service", "web", None),
                parent(None, "Service", "api", Some("other")),
                parent(Some("policy.linkerd.io"), "Server", "web-http", None),
                parent(Some("gateway.networking.k8s.io"), "Gateway", "edge", None),
            ],
            ..HttpRouteSpec::default()
        };
        let route = Route::new("gateway.networking.k8s.io", "shop", "web-root", &spec);
        assert_eq!(
            route
                .parents
                .iter()
                .map(|p| p.display("shop"))
                .collect::<Vec<_>>(),
            ["svc/web", "svc/api.other", "server/web-http"]
        );
    }

    #[test]
    fn the_queries_select_routes_by_name_in_each_direction() {
        let asked = queries(Some("shop"), "1m");
        assert_eq!(
            asked.outbound.0,
            r#"sum(increase(route_response_total{direction="outbound",rt_route!=""}[1m])) by (dst, rt_route, classification)"#
        );
        assert_eq!(
            asked.inbound.0,
            r#"sum(increase(response_total{direction="inbound",route_kind="HTTPRoute",namespace="shop"}[1m])) by (namespace, srv_name, route_group, route_name, classification)"#
        );
        assert!(
            asked.inbound.1[2].starts_with(
                r#"histogram_quantile(0.99, sum(irate(response_latency_ms_bucket{direction="inbound",route_kind="HTTPRoute",namespace="shop"}[1m])) by (le, namespace, srv_name, route_group, route_name))"#
            ),
            "{}",
            asked.inbound.1[2]
        );
        assert!(!queries(None, "1m").inbound.0.contains("namespace=\""));
    }

    #[test]
    fn each_row_counts_only_its_routes_series() {
        let spec = HttpRouteSpec {
            parent_refs: vec![
                parent(None, "Service", "web", None),
                parent(Some("policy.linkerd.io"), "Server", "web-http", None),
            ],
            ..HttpRouteSpec::default()
        };
        let routes = [Route::new("policy.linkerd.io", "shop", "web-root", &spec)];
        let out = |dst: &str, route: &str, class: &str, value: f64| {
            Sample::new(
                &[("dst", dst), ("rt_route", route), ("classification", class)],
                value,
            )
        };
        let served = |ns: &str, srv: &str, group: &str, class: &str, value: f64| {
            Sample::new(
                &[
                    ("namespace", ns),
                    ("srv_name", srv),
                    ("route_group", group),
                    ("route_name", "web-root"),
                    ("classification", class),
                ],
                value,
            )
        };
        let answers = Answers {
            outbound: (
                vec![
                    out("web.shop.svc.cluster.local:80", "web-root", "success", 57.0),
                    out("web.shop.svc.cluster.local:80", "web-root", "failure", 3.0),
                    // Another route of the Service, and another Service
                    // whose name starts the same.
                    out("web.shop.svc.cluster.local:80", "web-api", "success", 600.0),
                    out(
                        "web.shopping.svc.cluster.local:80",
                        "web-root",
                        "success",
                        600.0,
                    ),
                ],
                [
                    vec![Sample::new(
                        &[
                            ("dst", "web.shop.svc.cluster.local:80"),
                            ("rt_route", "web-root"),
                        ],
                        4.0,
                    )],
                    Vec::new(),
                    Vec::new(),
                ],
            ),
            inbound: (
                vec![
                    served("shop", "web-http", "policy.linkerd.io", "success", 30.0),
                    served("shop", "other", "policy.linkerd.io", "success", 600.0),
                    served(
                        "shop",
                        "web-http",
                        "gateway.networking.k8s.io",
                        "success",
                        600.0,
                    ),
                    served(
                        "elsewhere",
                        "web-http",
                        "policy.linkerd.io",
                        "success",
                        600.0,
                    ),
                ],
                Default::default(),
            ),
        };
        let rows = rows(&routes, 60.0, &answers);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].parent.as_str(), rows[0].direction),
            ("svc/web", "outbound")
        );
        assert_eq!(rows[0].golden.rps, Some(1.0));
        assert_eq!(rows[0].golden.success, Some(0.95));
        assert_eq!(rows[0].golden.latency_ms_p50, Some(4.0));
        assert_eq!(
            (rows[1].parent.as_str(), rows[1].direction),
            ("server/web-http", "inbound")
        );
        assert_eq!(rows[1].golden.rps, Some(0.5));
        assert_eq!(rows[1].golden.latency_ms_p50, None);
    }
}
