//! `mesh viz stat ts`: each TrafficSplit's backends (leaves) with their
//! weight and what the apex's clients saw from each: success rate,
//! requests per second and latency, from the clients' outbound series
//! (`authority` the apex, `dst_service` the leaf). With a failover
//! controller moving the weights, this is the split as traffic sees it.

use kube::Api;
use kube::api::ListParams;
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_api::prometheus::Sample;
use serde::Serialize;

use super::golden::{Golden, HEADERS, ask, quantiles};
use super::prometheus::Prometheus;

/// One leaf of one split.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeafRow {
    /// The cluster (kubeconfig context) it was read in, when several were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The split's namespace.
    pub namespace: String,
    /// The split.
    pub name: String,
    /// Its apex Service.
    pub apex: String,
    /// This backend's Service.
    pub leaf: String,
    /// Its share of the weights, in percent.
    pub weight: u32,
    /// What the apex's clients saw from it.
    #[serde(flatten)]
    pub golden: Golden,
}

/// A TrafficSplit as the rows need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The apex Service.
    pub apex: String,
    /// Each backend Service and its share of the weights, in percent.
    pub backends: Vec<(String, u32)>,
}

/// The split series' matchers: outbound toward `namespace`'s Services.
fn selector(namespace: &str) -> String {
    super::prometheus::matchers(&[
        ("direction".into(), "outbound".into()),
        ("dst_namespace".into(), namespace.into()),
    ])
}

/// Requests by apex authority, leaf and classification; a latency
/// quantile by apex and leaf.
pub fn queries(namespace: &str, window: &str) -> (String, [String; 3]) {
    let selector = selector(namespace);
    (
        format!(
            "sum(increase(response_total{selector}[{window}])) by (authority, dst_service, classification)"
        ),
        quantiles(
            "response_latency_ms",
            &selector,
            window,
            "authority, dst_service",
        ),
    )
}

/// The rows of `splits` (namespace, name, apex, and each backend with its
/// weight in percent) from the answers; a series counts for a split when
/// its authority is the apex (`apex.namespace.svc.…`) and its
/// `dst_service` one of the split's leaves.
pub fn rows(
    splits: &[Split],
    window_seconds: f64,
    requests: &[Sample],
    latency: &[Vec<Sample>; 3],
) -> Vec<LeafRow> {
    let mut out = Vec::new();
    for split in splits {
        let apex = format!("{}.{}.svc.", split.apex, split.namespace);
        for (leaf, weight) in &split.backends {
            let mine = |s: &Sample| {
                s.label("authority").starts_with(&apex) && s.label("dst_service") == leaf
            };
            out.push(LeafRow {
                cluster: None,
                namespace: split.namespace.clone(),
                name: split.name.clone(),
                apex: split.apex.clone(),
                leaf: leaf.clone(),
                weight: *weight,
                golden: Golden::matching(requests, latency, window_seconds, mine),
            });
        }
    }
    out
}

/// The split rows of `namespace`.
pub async fn stat(
    client: &kube::Client,
    namespace: &str,
    name: Option<&str>,
    window: (&str, f64),
) -> anyhow::Result<Vec<LeafRow>> {
    let splits: Vec<TrafficSplit> = Api::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "listing TrafficSplits in {namespace}: {e} (is the TrafficSplit CRD installed?)"
            )
        })?
        .items;
    let splits: Vec<Split> = splits
        .into_iter()
        .filter(|s| name.is_none_or(|n| s.metadata.name.as_deref() == Some(n)))
        .map(|s| {
            let weights = s.spec.percentages();
            let backends = s
                .spec
                .backends
                .iter()
                .zip(weights)
                .map(|(b, w)| (b.service.clone(), w))
                .collect();
            Split {
                namespace: namespace.to_owned(),
                name: s.metadata.name.clone().unwrap_or_default(),
                apex: s.spec.service.clone(),
                backends,
            }
        })
        .collect();
    let prometheus = Prometheus::locate(client.clone()).await?;
    let (requests, latency) = ask(&prometheus, &queries(namespace, window.0)).await?;
    Ok(rows(&splits, window.1, &requests, &latency))
}

/// Prints split rows as Linkerd's `viz stat ts` does.
pub fn print(rows: &[LeafRow], json: bool) -> anyhow::Result<()> {
    if json {
        return crate::output::print_json(&rows);
    }
    if rows.is_empty() {
        println!("No TrafficSplits found.");
        return Ok(());
    }
    let clusters = rows.iter().any(|r| r.cluster.is_some());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                r.name.clone(),
                r.apex.clone(),
                r.leaf.clone(),
                format!("{}%", r.weight),
            ];
            cells.extend(r.golden.cells());
            if clusters {
                cells.insert(0, r.cluster.clone().unwrap_or_default());
            }
            cells
        })
        .collect();
    let mut headers = vec!["NAME", "APEX", "LEAF", "WEIGHT"];
    headers.extend(HEADERS);
    if clusters {
        headers.insert(0, "CLUSTER");
    }
    crate::output::print_table(&headers, &table);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_leaf_gets_what_the_apexs_clients_saw_from_it() {
        let (requests, latency) = queries("shop", "30s");
        assert_eq!(
            requests,
            r#"sum(increase(response_total{direction="outbound",dst_namespace="shop"}[30s])) by (authority, dst_service, classification)"#
        );
        assert!(latency[0].ends_with("by (le, authority, dst_service))"));
        let apex = ("authority", "podinfo.shop.svc.cluster.local:9898");
        let splits = vec![Split {
            namespace: "shop".to_owned(),
            name: "podinfo-split".to_owned(),
            apex: "podinfo".to_owned(),
            backends: vec![("podinfo".to_owned(), 25), ("podinfo-east".to_owned(), 75)],
        }];
        let requests = vec![
            Sample::new(
                &[
                    apex,
                    ("dst_service", "podinfo"),
                    ("classification", "success"),
                ],
                27.0,
            ),
            Sample::new(
                &[
                    apex,
                    ("dst_service", "podinfo"),
                    ("classification", "failure"),
                ],
                3.0,
            ),
            Sample::new(
                &[
                    apex,
                    ("dst_service", "podinfo-east"),
                    ("classification", "success"),
                ],
                90.0,
            ),
            // Someone calling podinfo-east directly is not the split's traffic.
            Sample::new(
                &[
                    ("authority", "podinfo-east.shop.svc.cluster.local:9898"),
                    ("dst_service", "podinfo-east"),
                    ("classification", "success"),
                ],
                600.0,
            ),
        ];
        let latency = [
            vec![Sample::new(&[apex, ("dst_service", "podinfo-east")], 3.0)],
            vec![],
            vec![],
        ];
        let rows = rows(&splits, 30.0, &requests, &latency);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].leaf.as_str(), rows[0].weight), ("podinfo", 25));
        assert_eq!(rows[0].golden.success, Some(0.9));
        assert_eq!(rows[0].golden.rps, Some(1.0));
        assert_eq!(rows[1].golden.rps, Some(3.0), "only the apex's traffic");
        assert_eq!(rows[1].golden.latency_ms_p50, Some(3.0));
        assert_eq!(rows[0].golden.latency_ms_p50, None);
    }
}
