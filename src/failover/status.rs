//! `mesh failover status`: every TrafficSplit and HTTPRoute the failover
//! controller manages, with the state, backends (weight, health, success
//! rate) and last transition it wrote in the object's
//! `failover.mesh.dev/status` annotation; one it has not written yet, or
//! cannot manage, says so.

use kube::Api;
use kube::api::ListParams;
use mesh_api::crds::http_route::HttpRoute;
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_api::labels::FAILOVER_CONTROLLED_BY;
use mesh_failover::status::SplitStatus;
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// One managed split.
#[derive(Debug, Serialize)]
pub struct Row {
    /// `TrafficSplit` or `HTTPRoute`.
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What the controller last wrote (`None`: nothing yet).
    pub status: Option<SplitStatus>,
}

/// Lists the managed TrafficSplits and HTTPRoutes of `namespace` (every
/// namespace when `None`).
pub async fn rows(client: &kube::Client, namespace: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let mut rows = managed::<TrafficSplit>(client, namespace, "TrafficSplit").await?;
    rows.extend(managed::<HttpRoute>(client, namespace, "HTTPRoute").await?);
    Ok(rows)
}

async fn managed<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    kind: &'static str,
) -> anyhow::Result<Vec<Row>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = match namespace {
        Some(ns) => Api::<K>::namespaced(client.clone(), ns),
        None => Api::<K>::all(client.clone()),
    };
    let objects = api
        .list(&ListParams::default().labels(FAILOVER_CONTROLLED_BY))
        .await
        .map_err(|e| anyhow::anyhow!("listing {kind}s: {e} (is the {kind} CRD installed?)"))?;
    Ok(objects
        .items
        .into_iter()
        .map(|object| {
            let meta = object.meta();
            Row {
                kind,
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
                status: meta
                    .annotations
                    .as_ref()
                    .and_then(SplitStatus::of_annotations),
            }
        })
        .collect())
}

/// Prints every managed split.
pub async fn run(
    global: &GlobalArgs,
    namespace: Option<&str>,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    let rows = rows(&client, namespace).await?;
    if format == OutputFormat::Json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        println!("No TrafficSplit or HTTPRoute is labelled {FAILOVER_CONTROLLED_BY}.");
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows.iter().map(table_row).collect();
    output::print_table(
        &[
            "NAMESPACE",
            "KIND",
            "NAME",
            "STATE",
            "BACKENDS",
            "LAST TRANSITION",
        ],
        &table,
    );
    for row in &rows {
        if let Some(why) = explanation(row) {
            println!("\n{} {}/{}: {why}", row.kind, row.namespace, row.name);
        }
    }
    Ok(())
}

fn table_row(row: &Row) -> Vec<String> {
    let Some(status) = &row.status else {
        return vec![
            row.namespace.clone(),
            row.kind.into(),
            row.name.clone(),
            "-".into(),
            "not managed yet (is `mesh failover install` applied?)".into(),
            "-".into(),
        ];
    };
    let backends = status
        .backends
        .iter()
        .map(|b| {
            let rate = b
                .success_rate
                .map(|r| format!(" {:.1}%", r * 100.0))
                .unwrap_or_default();
            let primary = if b.primary { "*" } else { "" };
            format!("{primary}{} {}% {}{rate}", b.service, b.weight, b.health)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let transition = status
        .last_transition
        .as_ref()
        .map(|t| format!("{} → {} at {}", t.from, t.to, t.at))
        .unwrap_or_else(|| "-".into());
    vec![
        row.namespace.clone(),
        row.kind.into(),
        row.name.clone(),
        status.state.clone(),
        backends,
        transition,
    ]
}

/// Why a split is where it is: its errors, its note, its last transition's
/// reason, or what a down backend has.
fn explanation(row: &Row) -> Option<String> {
    let status = row.status.as_ref()?;
    if !status.errors.is_empty() {
        return Some(format!("not managed: {}", status.errors.join("; ")));
    }
    let mut parts = Vec::new();
    if let Some(note) = &status.note {
        parts.push(note.clone());
    }
    if let Some(t) = &status.last_transition {
        parts.push(t.reason.clone());
    }
    for backend in &status.backends {
        if let Some(why) = &backend.why {
            parts.push(format!("{} is {}: {why}", backend.service, backend.health));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
