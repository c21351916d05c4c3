//! `mesh viz routes`: per-route golden metrics
//! ([`mesh_viz::metrics::routes`]): `routes svc/NAME` sums what every
//! client of the Service saw; `--from KIND/NAME` (or `routes KIND/NAME --to
//! svc/NAME`, as Linkerd writes it) keeps one client's; `routes
//! deploy/NAME` is what the workload served, per Server and route (Linkerd's
//! default).

use clap::Args;
use mesh_viz::metrics::routes::{DEFAULT_ROUTE, RouteRow, of, served};

use super::golden::HEADERS;
use super::prometheus::{Prometheus, duration_seconds};
use super::resource::{Kind, Target};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// Flags of `mesh viz routes`.
#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// `svc/NAME` (what its clients saw), a client (`deploy/NAME`) with
    /// `--to svc/NAME`, or a workload alone (`deploy/NAME`: what it
    /// served).
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

/// Runs `mesh viz routes`.
pub async fn run(global: &GlobalArgs, args: &RoutesArgs) -> anyhow::Result<()> {
    duration_seconds(&args.time_window).map_err(|e| anyhow::anyhow!("--time-window: {e}"))?;
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    if args.target.kind != Kind::Service && args.to.is_none() && args.from.is_none() {
        let prometheus = Prometheus::locate(client.clone()).await?;
        let (rows, warnings) = served(
            &client,
            &prometheus,
            &args.target,
            &namespace,
            &args.time_window,
        )
        .await?;
        for warning in warnings {
            eprintln!("‼ {warning}");
        }
        return print(&rows, "SERVER", args.output);
    }
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
            "routes are a Service's (`mesh viz routes svc/NAME`, or `mesh viz routes deploy/CLIENT --to svc/NAME`) or what a workload served (`mesh viz routes deploy/NAME`)"
        ),
    };
    let prometheus = Prometheus::locate(client.clone()).await?;
    let (rows, profiled) = of(
        &client,
        &prometheus,
        &service,
        &service_ns,
        source,
        &args.time_window,
    )
    .await?;
    if !profiled && args.output != OutputFormat::Json {
        eprintln!(
            "‼ no ServiceProfile routes or HTTPRoutes for {service}.{service_ns}: every request is {DEFAULT_ROUTE} \
             (routes are counted per ServiceProfile route or HTTPRoute)"
        );
    }
    print(&rows, "SERVICE", args.output)
}

/// Prints route rows: ROUTE, `owner` (SERVICE or SERVER) and the golden
/// columns, or JSON.
fn print(rows: &[RouteRow], owner: &str, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return output::print_json(&rows);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.route.clone(), r.service.clone()];
            cells.extend(r.golden.cells());
            cells
        })
        .collect();
    let mut headers = vec!["ROUTE", owner];
    headers.extend(HEADERS);
    output::print_table(&headers, &table);
    Ok(())
}
