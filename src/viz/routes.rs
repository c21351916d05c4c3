//! `mesh viz routes`: per-route golden metrics of a Service, one row per
//! ServiceProfile route (in the profile's order, idle ones too) and
//! `[DEFAULT]` for requests that matched none, from Linkerd's
//! `route_response_total` / `route_response_latency_ms` (`dst`,
//! `rt_route`), which client proxies record for a Service with
//! ServiceProfile routes. `routes svc/NAME` sums every client; `--from
//! KIND/NAME` (or `routes KIND/NAME --to svc/NAME`, as Linkerd writes it)
//! keeps one client's.

use clap::Args;
use kube::Api;
use kube::api::ListParams;
use mesh_api::crds::service_profile::ServiceProfile;
use mesh_api::prometheus::Sample;
use serde::Serialize;

use super::golden::{Golden, HEADERS, quantiles, usable};
use super::prometheus::{Prometheus, duration_seconds};
use super::resource::{Kind, Target};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// The row of requests that matched no route.
pub const DEFAULT_ROUTE: &str = "[DEFAULT]";

/// Flags of `mesh viz routes`.
#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// `svc/NAME`, or a client (`deploy/NAME`) with `--to svc/NAME`.
    pub target: Target,
    /// The namespace (the context's by default).
    #[arg(long, short, env = "MESH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Only this client's requests (`deploy/client`).
    #[arg(long, env = "MESH_VIZ_FROM")]
    pub from: Option<Target>,
    /// The Service, when the target is a client.
    #[arg(long, env = "MESH_VIZ_TO")]
    pub to: Option<Target>,
    /// The Service's namespace with --to (default: --namespace).
    #[arg(long, env = "MESH_VIZ_TO_NAMESPACE")]
    pub to_namespace: Option<String>,
    /// The window the figures cover.
    #[arg(long, short = 't', env = "MESH_VIZ_TIME_WINDOW", default_value = "1m")]
    pub time_window: String,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// One route's row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteRow {
    /// The route's name, or [`DEFAULT_ROUTE`].
    pub route: String,
    /// The Service.
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
        .map(|route| {
            let mine = |s: &&Sample| name(s) == route;
            let quantile = |i: usize| latency[i].iter().filter(mine).find_map(|s| usable(s.value));
            RouteRow {
                golden: Golden::from_samples(
                    requests.iter().filter(mine),
                    [quantile(0), quantile(1), quantile(2)],
                    window_seconds,
                ),
                service: service.to_owned(),
                route,
            }
        })
        .collect()
}

/// Runs `mesh viz routes`.
pub async fn run(global: &GlobalArgs, args: &RoutesArgs) -> anyhow::Result<()> {
    let window =
        duration_seconds(&args.time_window).map_err(|e| anyhow::anyhow!("--time-window: {e}"))?;
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let (service, service_ns, source) = match (&args.target, &args.to) {
        (
            Target {
                kind: Kind::Service,
                name: Some(name),
            },
            None,
        ) => (
            name.clone(),
            namespace.clone(),
            args.from.as_ref().map(|f| (f, namespace.as_str())),
        ),
        (
            source,
            Some(Target {
                kind: Kind::Service,
                name: Some(name),
            }),
        ) => (
            name.clone(),
            args.to_namespace
                .clone()
                .unwrap_or_else(|| namespace.clone()),
            Some((source, namespace.as_str())),
        ),
        _ => anyhow::bail!(
            "routes are a Service's: `mesh viz routes svc/NAME`, or `mesh viz routes deploy/CLIENT --to svc/NAME`"
        ),
    };
    let profiles: Vec<ServiceProfile> = Api::namespaced(client.clone(), &service_ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("listing ServiceProfiles in {service_ns}: {e}"))?
        .items;
    let prefix = format!("{service}.{service_ns}.svc.");
    let routes: Vec<String> = profiles
        .iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .flat_map(|p| p.spec.routes.iter().map(|r| r.name.clone()))
        .collect();
    let prometheus = Prometheus::locate(client.clone()).await?;
    let selector = selector(&service, &service_ns, source);
    let (requests, latency) = queries(&selector, &args.time_window);
    let requests = prometheus.query(&requests).await?;
    let mut answers: [Vec<Sample>; 3] = Default::default();
    for (answer, promql) in answers.iter_mut().zip(&latency) {
        *answer = prometheus.query(promql).await?;
    }
    let rows = rows(&service, &routes, window, &requests, &answers);
    if args.output == OutputFormat::Json {
        return output::print_json(&rows);
    }
    if routes.is_empty() {
        eprintln!(
            "‼ no ServiceProfile for {service}.{service_ns}: every request is {DEFAULT_ROUTE} \
             (routes are counted per ServiceProfile route)"
        );
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.route.clone(), r.service.clone()];
            cells.extend(r.golden.cells());
            cells
        })
        .collect();
    let mut headers = vec!["ROUTE", "SERVICE"];
    headers.extend(HEADERS);
    output::print_table(&headers, &table);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
