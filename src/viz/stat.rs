//! `mesh viz stat`: golden metrics per resource (success rate, requests per
//! second, latency percentiles, open TCP connections) over a time window,
//! from viz's Prometheus, with Linkerd's columns and queries:
//!
//! - by default what each resource **served** (inbound series);
//! - `--from KIND[/NAME]`: what the source sent to each resource (the
//!   source's outbound series, grouped by `dst_<kind>`);
//! - `--to KIND[/NAME]`: what each resource sent to the target;
//! - `svc`: what the Service's clients saw (outbound, by `dst_service`),
//!   which is how a mirrored `podinfo-east` is watched from this side.

use clap::Args;
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
    /// `authority`, optionally with a name (`deploy/web`).
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
    if args.target.kind == Kind::TrafficSplit {
        return traffic_splits(global, args, &contexts).await;
    }
    let mut rows = Vec::new();
    for context in &contexts {
        let client = mesh_api::kube_client::client(
            global.kubeconfig.as_deref(),
            context.as_deref().or(global.context.as_deref()),
        )
        .await?;
        let mut these = stat(&client, args).await.map_err(|e| match context {
            Some(name) => e.context(format!("context {name}")),
            None => e,
        })?;
        for row in &mut these {
            row.cluster = context.clone();
        }
        rows.extend(these);
    }
    let namespaces = args.namespaces.all_namespaces && args.target.kind.namespaced();
    print(&rows, args.output, namespaces);
    Ok(())
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
    let mut rows = Vec::new();
    for context in contexts {
        let client = mesh_api::kube_client::client(
            global.kubeconfig.as_deref(),
            context.as_deref().or(global.context.as_deref()),
        )
        .await?;
        let namespace = args
            .namespaces
            .resolve(&client)
            .unwrap_or_else(|| "default".to_owned());
        let mut these = super::traffic_split::stat(
            &client,
            &namespace,
            args.target.name.as_deref(),
            (&args.time_window, window),
        )
        .await?;
        for row in &mut these {
            row.cluster = context.clone();
        }
        rows.extend(these);
    }
    super::traffic_split::print(&rows, args.output == StatOutput::Json)
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
