//! `mesh viz stat`: golden metrics per resource (success rate, requests per
//! second, latency percentiles, open TCP connections) over a time window,
//! from viz's Prometheus, with Linkerd's columns and queries:
//!
//! - by default what each resource **served** (inbound series);
//! - `--from KIND[/NAME]`: what the source sent to each resource (the
//!   source's outbound series, grouped by `dst_<kind>`);
//! - `--to KIND[/NAME]`: what each resource sent to the target;
//! - `svc`: what the Service's clients saw (outbound, by `dst_service`),
//!   which is how a mirrored `podinfo-east` is watched from this side;
//! - `httproute`: each HTTPRoute per parent
//!   ([`mesh_viz::metrics::http_route`]).

use clap::Args;
use mesh_viz::metrics::http_route::RouteRow;
use mesh_viz::metrics::stat::{Request, Row};

use super::golden::HEADERS;
use super::prometheus::{Prometheus, duration_seconds};
use super::resource::{Kind, NamespaceArgs, Target};
use crate::cli::GlobalArgs;
use crate::output;

/// Flags of `mesh viz stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    /// What to report on: `deploy`, `po`, `ns`, `svc`, `sts`, `ds`, `job`,
    /// `authority`, `ts`, `httproute`, optionally with a name
    /// (`deploy/web`).
    pub target: Target,
    #[command(flatten)]
    pub namespaces: NamespaceArgs,
    /// Only what this resource sent (`deploy/client`).
    #[arg(long, env = "MESH_VIZ_FROM", conflicts_with = "to")]
    pub from: Option<Target>,
    /// The namespace of --from (default: --namespace).
    #[arg(long, env = "MESH_VIZ_FROM_NAMESPACE")]
    pub from_namespace: Option<String>,
    /// Only what was sent to this resource (`deploy/web`).
    #[arg(long, env = "MESH_VIZ_TO")]
    pub to: Option<Target>,
    /// The namespace of --to (default: --namespace).
    #[arg(long, env = "MESH_VIZ_TO_NAMESPACE")]
    pub to_namespace: Option<String>,
    /// The window the figures cover (`10s`, `1m`, `1h`).
    #[arg(long, short = 't', env = "MESH_VIZ_TIME_WINDOW", default_value = "1m", value_parser = window)]
    pub time_window: String,
    #[command(flatten)]
    pub clusters: super::contexts::ContextsArgs,
    /// `table`, `wide` (with bytes per second) or `json`.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = StatOutput::Table)]
    pub output: StatOutput,
}

fn window(text: &str) -> Result<String, String> {
    duration_seconds(text).map(|_| text.to_owned())
}

/// How `stat` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatOutput {
    /// Linkerd's columns.
    Table,
    /// Plus bytes read and written per second.
    Wide,
    /// JSON for programs.
    Json,
}

/// Runs `mesh viz stat`: in the current context, or in each of
/// `--contexts` / `--all-contexts` with a CLUSTER column.
pub async fn run(global: &GlobalArgs, args: &StatArgs) -> anyhow::Result<()> {
    let contexts =
        super::contexts::chosen(global, &args.clusters.contexts, args.clusters.all_contexts)?;
    match args.target.kind {
        Kind::TrafficSplit => traffic_splits(global, args, &contexts).await,
        Kind::HttpRoute => http_routes(global, args, &contexts).await,
        _ => {
            let rows = in_each_context(
                global,
                &contexts,
                |client| async move { stat(&client, args).await },
                |row: &mut Row, cluster| row.cluster = cluster,
            )
            .await?;
            let namespaces = args.namespaces.all_namespaces && args.target.kind.namespaced();
            print(&rows, args.output, namespaces);
            Ok(())
        }
    }
}

/// The rows `one` reads with each context's client, each tagged with its
/// context (`tag`) and an error naming the context it came from.
async fn in_each_context<R, F, Fut>(
    global: &GlobalArgs,
    contexts: &[Option<String>],
    one: F,
    tag: fn(&mut R, Option<String>),
) -> anyhow::Result<Vec<R>>
where
    F: Fn(kube::Client) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<R>>>,
{
    let mut rows = Vec::new();
    for context in contexts {
        let client = mesh_api::kube_client::client(
            global.kubeconfig.as_deref(),
            context.as_deref().or(global.context.as_deref()),
        )
        .await?;
        let mut these = one(client).await.map_err(|e| match context {
            Some(name) => e.context(format!("context {name}")),
            None => e,
        })?;
        for row in &mut these {
            tag(row, context.clone());
        }
        rows.extend(these);
    }
    Ok(rows)
}

/// `stat ts`: each split's leaves, in each context asked for.
async fn traffic_splits(
    global: &GlobalArgs,
    args: &StatArgs,
    contexts: &[Option<String>],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.namespaces.all_namespaces && args.from.is_none() && args.to.is_none(),
        "stat ts reads one namespace's splits, without --from or --to"
    );
    let window = duration_seconds(&args.time_window).map_err(|e| anyhow::anyhow!(e))?;
    let rows = in_each_context(
        global,
        contexts,
        |client| async move {
            let namespace = args
                .namespaces
                .resolve(&client)
                .unwrap_or_else(|| "default".to_owned());
            super::traffic_split::stat(
                &client,
                &namespace,
                args.target.name.as_deref(),
                (&args.time_window, window),
            )
            .await
        },
        |row, cluster| row.cluster = cluster,
    )
    .await?;
    super::traffic_split::print(&rows, args.output == StatOutput::Json)
}

/// `stat httproute`: each HTTPRoute's figures per parent (what a Service's
/// clients saw on it, what a Server's pods served on it), in each context
/// asked for.
async fn http_routes(
    global: &GlobalArgs,
    args: &StatArgs,
    contexts: &[Option<String>],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.from.is_none() && args.to.is_none(),
        "stat httproute reads every client of a route: --from and --to do not apply"
    );
    let window = duration_seconds(&args.time_window).map_err(|e| anyhow::anyhow!(e))?;
    let rows = in_each_context(
        global,
        contexts,
        |client| async move {
            let prometheus = Prometheus::locate(client.clone()).await?;
            mesh_viz::metrics::http_route::stat(
                &client,
                &prometheus,
                args.namespaces.resolve(&client).as_deref(),
                args.target.name.as_deref(),
                (&args.time_window, window),
            )
            .await
        },
        |row, cluster| row.cluster = cluster,
    )
    .await?;
    print_routes(&rows, args.output, args.namespaces.all_namespaces)
}

/// Prints `stat httproute`'s rows: NAME, PARENT and the golden columns.
fn print_routes(rows: &[RouteRow], format: StatOutput, namespaces: bool) -> anyhow::Result<()> {
    if format == StatOutput::Json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        println!("No HTTPRoutes with a Service or Server parent found.");
        return Ok(());
    }
    let clusters = rows.iter().any(|r| r.cluster.is_some());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.name.clone(), r.parent.clone()];
            cells.extend(r.golden.cells());
            if namespaces {
                cells.insert(0, r.namespace.clone());
            }
            if clusters {
                cells.insert(0, r.cluster.clone().unwrap_or_default());
            }
            cells
        })
        .collect();
    let mut headers = vec!["NAME", "PARENT"];
    headers.extend(HEADERS);
    if namespaces {
        headers.insert(0, "NAMESPACE");
    }
    if clusters {
        headers.insert(0, "CLUSTER");
    }
    output::print_table(&headers, &table);
    Ok(())
}

/// The rows of one cluster.
async fn stat(client: &kube::Client, args: &StatArgs) -> anyhow::Result<Vec<Row>> {
    let namespace = args.namespaces.resolve(client);
    let fallback = namespace.as_deref().unwrap_or("default");
    let from = args
        .from
        .as_ref()
        .map(|t| (t, args.from_namespace.as_deref().unwrap_or(fallback)));
    let to = args
        .to
        .as_ref()
        .map(|t| (t, args.to_namespace.as_deref().unwrap_or(fallback)));
    let prometheus = Prometheus::locate(client.clone()).await?;
    let request = Request {
        target: &args.target,
        namespace: namespace.as_deref(),
        from,
        to,
        window: &args.time_window,
    };
    let (rows, warnings) = mesh_viz::metrics::stat::stat(client, &prometheus, request).await?;
    for warning in warnings {
        eprintln!("‼ {warning}");
    }
    Ok(rows)
}

/// Prints rows as `stat` does; `namespaces` adds a NAMESPACE column.
pub fn print(rows: &[Row], format: StatOutput, namespaces: bool) {
    if format == StatOutput::Json {
        if let Err(e) = output::print_json(&rows) {
            eprintln!("{e:#}");
        }
        return;
    }
    if rows.is_empty() {
        println!("No resources found.");
        return;
    }
    let mut headers = vec!["NAME", "MESHED"];
    headers.extend(HEADERS);
    headers.push("TCP_CONN");
    if namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let clusters = rows.iter().any(|r| r.cluster.is_some());
    if clusters {
        headers.insert(0, "CLUSTER");
    }
    if format == StatOutput::Wide {
        headers.extend(["READ_BYTES/SEC", "WRITE_BYTES/SEC"]);
    }
    let dash = || "-".to_owned();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![
                row.name.clone(),
                row.meshed.map_or_else(dash, |(m, t)| format!("{m}/{t}")),
            ];
            cells.extend(row.golden.cells());
            cells.push(
                row.tcp_open_connections
                    .map_or_else(dash, |c| format!("{}", c.round())),
            );
            if namespaces {
                cells.insert(0, row.namespace.clone());
            }
            if clusters {
                cells.insert(0, row.cluster.clone().unwrap_or_default());
            }
            if format == StatOutput::Wide {
                for bytes in [row.read_bytes_per_second, row.write_bytes_per_second] {
                    cells.push(bytes.map_or_else(dash, |b| format!("{b:.1}B/s")));
                }
            }
            cells
        })
        .collect();
    output::print_table(&headers, &table);
}
