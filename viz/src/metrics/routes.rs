//! Per-route golden metrics of a Service: one row per ServiceProfile
//! route (in the profile's order, idle ones too), then one per HTTPRoute
//! attached to the Service (by name), and `[DEFAULT]` for requests that
//! matched none, from Linkerd's `route_response_total` /
//! `route_response_latency_ms` (`dst`, `rt_route`), which client proxies
//! record for a Service with ServiceProfile routes or HTTPRoutes (a
//! ServiceProfile's routes take precedence, as in Linkerd); every client's,
//! or one client's. `mesh viz routes` prints them and the dashboard's
//! workload page shows them. [`served`] is the other side: what a
//! workload served, per Server and route, from its inbound series with
//! Linkerd's policy labels (`viz routes deploy/NAME`, as Linkerd's
//! default).

use kube::Api;
use kube::api::ListParams;
use mesh_api::crds::service_profile::ServiceProfile;
use mesh_api::prometheus::Sample;
use serde::Serialize;

use super::golden::{Golden, ask, quantiles};
use super::prometheus::{Prometheus, duration_seconds};
use super::resource::{Kind, Target};
use super::stat::{Query, leave_out_impostors};

/// The row of requests that matched no route.
pub const DEFAULT_ROUTE: &str = "[DEFAULT]";

/// One route's row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteRow {
    /// The route's name, or [`DEFAULT_ROUTE`].
    pub route: String,
    /// The Service; for what a workload served ([`served_rows`]), the
    /// Server (`server/NAME`, or `default/NAME` for a default policy).
    pub service: String,
    /// Its figures.
    #[serde(flatten)]
    pub golden: Golden,
}

/// PromQL-escaped text inside a double-quoted string.
fn quoted(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The matchers of a Service's route series: outbound, `dst` the Service
/// (any port), and optionally one client.
pub fn selector(service: &str, namespace: &str, client: Option<(&Target, &str)>) -> String {
    let regex = format!(
        "{}\\.{}\\.svc\\..+",
        regex_literal(service),
        regex_literal(namespace)
    );
    let mut matchers = vec![
        "direction=\"outbound\"".to_owned(),
        format!("dst=~\"{}\"", quoted(&regex)),
    ];
    if let Some((source, source_ns)) = client {
        matchers.push(format!("namespace=\"{}\"", quoted(source_ns)));
        if let Some(name) = &source.name
            && source.kind != Kind::Namespace
        {
            matchers.push(format!("{}=\"{}\"", source.kind.label(), quoted(name)));
        }
    }
    format!("{{{}}}", matchers.join(","))
}

/// `text` matched literally in a regular expression.
fn regex_literal(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = ".^$*+?()[]{}|\\".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// The three queries: requests by route and classification, and a latency
/// quantile by route.
pub fn queries(selector: &str, window: &str) -> (String, [String; 3]) {
    let requests = format!(
        "sum(increase(route_response_total{selector}[{window}])) by (rt_route, classification)"
    );
    (
        requests,
        quantiles("route_response_latency_ms", selector, window, "rt_route"),
    )
}

/// The rows: each of `routes` in order, then [`DEFAULT_ROUTE`], then any
/// route the series name that the profile no longer has.
pub fn rows(
    service: &str,
    routes: &[String],
    window_seconds: f64,
    requests: &[Sample],
    latency: &[Vec<Sample>; 3],
) -> Vec<RouteRow> {
    let name = |s: &Sample| {
        let route = s.label("rt_route");
        if route.is_empty() {
            DEFAULT_ROUTE.to_owned()
        } else {
            route.to_owned()
        }
    };
    let mut order: Vec<String> = routes.to_vec();
    order.push(DEFAULT_ROUTE.to_owned());
    for sample in requests {
        let route = name(sample);
        if !order.contains(&route) {
            order.push(route);
        }
    }
    order
        .into_iter()
        .map(|route| RouteRow {
            golden: Golden::matching(requests, latency, window_seconds, |s| name(s) == route),
            service: service.to_owned(),
            route,
        })
        .collect()
}

/// A Service's route rows over `window` (every client's, or `client`'s),
/// and whether a ServiceProfile or an HTTPRoute names its routes (without
/// either, every request is [`DEFAULT_ROUTE`]).
pub async fn of(
    client: &kube::Client,
    prometheus: &Prometheus,
    service: &str,
    service_ns: &str,
    source: Option<(&Target, &str)>,
    window: &str,
) -> anyhow::Result<(Vec<RouteRow>, bool)> {
    let window_seconds = duration_seconds(window).map_err(|e| anyhow::anyhow!("window: {e}"))?;
    let profiles: Vec<ServiceProfile> = Api::namespaced(client.clone(), service_ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("listing ServiceProfiles in {service_ns}: {e}"))?
        .items;
    let prefix = format!("{service}.{service_ns}.svc.");
    let mut routes: Vec<String> = profiles
        .iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .flat_map(|p| p.spec.routes.iter().map(|r| r.name.clone()))
        .collect();
    // A ServiceProfile's routes take precedence: the proxies apply a
    // Service's HTTPRoutes only when its profile has none.
    if routes.is_empty() {
        let parent = super::http_route::Parent::Service {
            name: service.to_owned(),
            namespace: service_ns.to_owned(),
        };
        for route in super::http_route::list(client, Some(service_ns), None).await? {
            if route.parents.contains(&parent) && !routes.contains(&route.name) {
                routes.push(route.name);
            }
        }
    }
    let selector = selector(service, service_ns, source);
    let (requests, latency) = ask(prometheus, &queries(&selector, window)).await?;
    let rows = rows(service, &routes, window_seconds, &requests, &latency);
    Ok((rows, !routes.is_empty()))
}

/// The query of what `workload` (`deploy/NAME`, `po/NAME`, …) in
/// `namespace` served: its inbound series.
pub fn served_query(workload: &Target, namespace: &str, window: &str) -> anyhow::Result<Query> {
    anyhow::ensure!(
        workload.name.is_some(),
        "routes of a workload need its name: deploy/NAME"
    );
    anyhow::ensure!(
        matches!(
            workload.kind,
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::Job | Kind::Pod
        ),
        "routes are a Service's or a workload's: {} is neither",
        workload.kind.name()
    );
    Query::new(workload, Some(namespace), None, None, window).map_err(|e| anyhow::anyhow!(e))
}

/// The queries of what a workload served, by Server and route (Linkerd's
/// policy labels on the inbound series).
pub fn served_queries(selector: &str, window: &str) -> (String, [String; 3]) {
    let by = "srv_kind, srv_name, route_kind, route_name";
    (
        format!("sum(increase(response_total{selector}[{window}])) by ({by}, classification)"),
        quantiles("response_latency_ms", selector, window, by),
    )
}

/// A served series' route: the HTTPRoute's or GRPCRoute's name, or
/// [`DEFAULT_ROUTE`] for the policy controller's default routes (`default`,
/// `probe`); and the Server (`server/NAME`, or `default/NAME` for a
/// default policy).
fn served_route(sample: &Sample) -> (String, String) {
    let route = match sample.label("route_kind") {
        "HTTPRoute" | "GRPCRoute" => sample.label("route_name").to_owned(),
        _ => DEFAULT_ROUTE.to_owned(),
    };
    let server = match sample.label("srv_kind") {
        "" => String::new(),
        "server" => format!("server/{}", sample.label("srv_name")),
        kind => format!("{kind}/{}", sample.label("srv_name")),
    };
    (route, server)
}

/// The rows of what a workload served: one per Server and route, in the
/// order of the names, [`DEFAULT_ROUTE`] last of each Server's; `service`
/// holds the Server.
pub fn served_rows(
    window_seconds: f64,
    requests: &[Sample],
    latency: &[Vec<Sample>; 3],
) -> Vec<RouteRow> {
    let mut keys: Vec<(String, String)> = requests.iter().map(served_route).collect();
    keys.sort_by(|(route_a, server_a), (route_b, server_b)| {
        (server_a, route_a == DEFAULT_ROUTE, route_a).cmp(&(
            server_b,
            route_b == DEFAULT_ROUTE,
            route_b,
        ))
    });
    keys.dedup();
    keys.into_iter()
        .map(|(route, server)| RouteRow {
            golden: Golden::matching(requests, latency, window_seconds, |s| {
                let (r, v) = served_route(s);
                r == route && v == server
            }),
            service: server.clone(),
            route,
        })
        .collect()
}

/// What `workload` in `namespace` served over `window`, per Server and
/// route: the server's side (the clients' side is [`of`]); and a warning
/// for each live pod left out because its series claim the workload
/// without being one of its pods (as `stat` leaves them out).
pub async fn served(
    client: &kube::Client,
    prometheus: &Prometheus,
    workload: &Target,
    namespace: &str,
    window: &str,
) -> anyhow::Result<(Vec<RouteRow>, Vec<String>)> {
    let mut query = served_query(workload, namespace, window)?;
    let listing = super::resource::objects(client, workload.kind, Some(namespace)).await?;
    let warnings = leave_out_impostors(prometheus, &mut query, &listing).await?;
    let (requests, latency) = ask(prometheus, &served_queries(&query.series(), window)).await?;
    Ok((served_rows(query.window.1, &requests, &latency), warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workloads_served_routes_are_its_inbound_series_by_server_and_route() {
        let podinfo: Target = "deploy/podinfo".parse().expect("target");
        let mut query = served_query(&podinfo, "shop", "1m").expect("query");
        query.excluded_pods.insert("rogue".into());
        let selector = query.series();
        assert_eq!(
            selector,
            r#"{direction="inbound",namespace="shop",deployment="podinfo",pod!~"^(rogue)$"}"#
        );
        for refused in ["svc/podinfo", "deploy"] {
            let target: Target = refused.parse().expect("target");
            assert!(served_query(&target, "shop", "1m").is_err(), "{refused}");
        }
        let (requests, _) = served_queries(&selector, "1m");
        assert_eq!(
            requests,
            r#"sum(increase(response_total{direction="inbound",namespace="shop",deployment="podinfo",pod!~"^(rogue)$"}[1m])) by (srv_kind, srv_name, route_kind, route_name, classification)"#
        );
        let sample = |srv: (&str, &str), route: (&str, &str), class: &str, value: f64| {
            Sample::new(
                &[
                    ("srv_kind", srv.0),
                    ("srv_name", srv.1),
                    ("route_kind", route.0),
                    ("route_name", route.1),
                    ("classification", class),
                ],
                value,
            )
        };
        let http = ("server", "podinfo-http");
        let requests = vec![
            sample(http, ("default", "probe"), "success", 12.0),
            sample(http, ("HTTPRoute", "podinfo-api"), "success", 54.0),
            sample(http, ("HTTPRoute", "podinfo-api"), "failure", 6.0),
            sample(http, ("default", "default"), "success", 18.0),
            sample(
                ("default", "all-unauthenticated"),
                ("default", "default"),
                "success",
                6.0,
            ),
        ];
        let latency = [
            vec![Sample::new(
                &[
                    ("srv_kind", "server"),
                    ("srv_name", "podinfo-http"),
                    ("route_kind", "HTTPRoute"),
                    ("route_name", "podinfo-api"),
                ],
                3.0,
            )],
            vec![],
            vec![],
        ];
        let rows = served_rows(60.0, &requests, &latency);
        let keys: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.service.as_str(), r.route.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("default/all-unauthenticated", DEFAULT_ROUTE),
                ("server/podinfo-http", "podinfo-api"),
                ("server/podinfo-http", DEFAULT_ROUTE),
            ]
        );
        assert_eq!(rows[1].golden.rps, Some(1.0));
        assert_eq!(rows[1].golden.success, Some(0.9));
        assert_eq!(rows[1].golden.latency_ms_p50, Some(3.0));
        assert_eq!(
            rows[2].golden.rps,
            Some(0.5),
            "the probe and default routes are both [DEFAULT]"
        );
    }

    #[test]
    fn the_services_route_series_are_selected() {
        assert_eq!(
            selector("podinfo", "shop", None),
            r#"{direction="outbound",dst=~"podinfo\\.shop\\.svc\\..+"}"#
        );
        let client: Target = "deploy/client".parse().expect("target");
        assert_eq!(
            selector("podinfo", "shop", Some((&client, "load"))),
            r#"{direction="outbound",dst=~"podinfo\\.shop\\.svc\\..+",namespace="load",deployment="client"}"#
        );
        let (requests, latency) = queries("{x=\"y\"}", "1m");
        assert_eq!(
            requests,
            r#"sum(increase(route_response_total{x="y"}[1m])) by (rt_route, classification)"#
        );
        assert!(latency[2].starts_with("histogram_quantile(0.99, sum(irate(route_response_latency_ms_bucket{x=\"y\"}[1m])) by (le, rt_route))"));
    }

    #[test]
    fn every_profile_route_has_a_row_and_the_rest_is_default() {
        let routes = vec!["GET /".to_owned(), "GET /status/{code}".to_owned()];
        let requests = vec![
            Sample::new(
                &[("rt_route", "GET /"), ("classification", "success")],
                60.0,
            ),
            Sample::new(&[("classification", "success")], 27.0),
            Sample::new(&[("classification", "failure")], 3.0),
            Sample::new(
                &[("rt_route", "GET /gone"), ("classification", "success")],
                6.0,
            ),
        ];
        let latency = [
            vec![Sample::new(&[("rt_route", "GET /")], 2.0)],
            vec![],
            vec![],
        ];
        let rows = rows("podinfo", &routes, 60.0, &requests, &latency);
        let names: Vec<&str> = rows.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(
            names,
            ["GET /", "GET /status/{code}", DEFAULT_ROUTE, "GET /gone"]
        );
        assert_eq!(rows[0].golden.rps, Some(1.0));
        assert_eq!(rows[0].golden.latency_ms_p50, Some(2.0));
        assert_eq!(
            rows[1].golden.rps, None,
            "an idle route is listed, without figures"
        );
        assert_eq!(rows[2].golden.success, Some(0.9));
        assert_eq!(rows[2].golden.rps, Some(0.5));
    }
}
