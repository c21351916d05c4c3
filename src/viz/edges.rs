//! `mesh viz edges`: who calls whom, and whether the connection is secured
//! (`√` exactly where both sides presented identities); the edges
//! themselves are [`mesh_viz::metrics::edges`]'s.

use clap::Args;

use super::prometheus::{Prometheus, duration_seconds};
use super::resource::Kind;
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// Flags of `mesh viz edges`.
#[derive(Debug, Args)]
pub struct EdgesArgs {
    /// The kind of resource edges join: `deploy`, `po`, `sts`, `ds`, `job`.
    pub kind: String,
    #[command(flatten)]
    pub namespaces: super::resource::NamespaceArgs,
    /// The window HTTP traffic is looked for in.
    #[arg(long, short = 't', env = "MESH_VIZ_TIME_WINDOW", default_value = "1m")]
    pub time_window: String,
    /// Add the identities and why an edge is not secured.
    #[arg(long, env = "MESH_VIZ_WIDE")]
    pub wide: bool,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Runs `mesh viz edges`.
pub async fn run(global: &GlobalArgs, args: &EdgesArgs) -> anyhow::Result<()> {
    let kind = Kind::parse(&args.kind).map_err(|e| anyhow::anyhow!(e))?;
    if matches!(
        kind,
        Kind::Namespace | Kind::Service | Kind::Authority | Kind::TrafficSplit | Kind::HttpRoute
    ) {
        anyhow::bail!(
            "edges join workloads or pods: use deploy, sts, ds, job or po, not {}",
            kind.name()
        );
    }
    duration_seconds(&args.time_window).map_err(|e| anyhow::anyhow!("--time-window: {e}"))?;
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    let namespace = args.namespaces.resolve(&client);
    let prometheus = Prometheus::locate(client.clone()).await?;
    let found = mesh_viz::metrics::edges::of(
        &client,
        &prometheus,
        kind,
        namespace.as_deref(),
        &args.time_window,
    )
    .await?;
    for warning in &found.warnings {
        eprintln!("‼ {warning}");
    }
    let edges = found.edges;
    if args.output == OutputFormat::Json {
        return output::print_json(&edges);
    }
    if edges.is_empty() {
        println!("No edges found.");
        return Ok(());
    }
    let mut headers = vec!["SRC", "DST", "SRC_NS", "DST_NS", "SECURED"];
    if args.wide {
        headers.extend(["CLIENT_ID", "SERVER_ID", "MSG"]);
    }
    let table: Vec<Vec<String>> = edges
        .iter()
        .map(|e| {
            let mut row = vec![
                e.src.clone(),
                e.dst.clone(),
                if e.src_namespace.is_empty() {
                    "-".into()
                } else {
                    e.src_namespace.clone()
                },
                e.dst_namespace.clone(),
                if e.secured {
                    "√".into()
                } else {
                    String::new()
                },
            ];
            if args.wide {
                let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                row.extend([
                    or_dash(&e.client_id),
                    or_dash(&e.server_id),
                    or_dash(&e.no_tls_reason),
                ]);
            }
            row
        })
        .collect();
    output::print_table(&headers, &table);
    Ok(())
}
