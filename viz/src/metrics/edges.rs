//! Who calls whom, and whether the connection is secured — secured
//! exactly where both sides presented identities: the server proxy saw
//! the caller's identity (inbound `client_id`) and the caller's proxy saw
//! the server's (outbound `server_id`). Three sets of series answer:
//!
//! - the callers' outbound series (HTTP responses over the window, opaque
//!   connections open now): source and destination workloads, the
//!   server's identity;
//! - the servers' inbound series: each caller identity the server saw, and
//!   requests from callers that presented none (an unmeshed client, a
//!   probe), which no caller-side series can show;
//! - each source pod's ServiceAccount, which names the identity its proxy
//!   presents (`<sa>.<namespace>.serviceaccount.identity.…`).
//!
//! A caller seen only by the server (one in another cluster, through the
//! gateway) is named by its identity. Series of a live pod that claims a
//! workload that is not its own are left out, and named.

use std::collections::{BTreeMap, BTreeSet};

use mesh_api::prometheus::Sample;
use serde::Serialize;

use super::golden::Golden;
use super::prometheus::{Prometheus, duration_seconds, matchers};
use super::resource::Kind;

/// The name viz gives callers that presented no identity.
pub const UNMESHED: &str = "(unmeshed)";

/// One edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The caller (a workload, an identity's ServiceAccount, or
    /// [`UNMESHED`]).
    pub src: String,
    /// Its namespace (empty when unknown).
    pub src_namespace: String,
    /// The callee.
    pub dst: String,
    /// Its namespace.
    pub dst_namespace: String,
    /// The identity the server saw the caller present.
    pub client_id: Option<String>,
    /// The identity the caller saw the server present.
    pub server_id: Option<String>,
    /// Both presented identities.
    pub secured: bool,
    /// Why not, when not (`no_tls_from_remote`, …).
    pub no_tls_reason: Option<String>,
}

/// The PromQL that edges of `label` (`deployment`) need, over `window`.
pub fn queries(label: &str, window: &str) -> [String; 3] {
    let out = matchers(&[("direction".into(), "outbound".into())]);
    let opaque = matchers(&[
        ("direction".into(), "outbound".into()),
        ("peer".into(), "dst".into()),
    ]);
    let inbound = matchers(&[("direction".into(), "inbound".into())]);
    let outbound_by = format!(
        "namespace, {label}, pod, dst_namespace, dst_{label}, server_id, tls, no_tls_reason"
    );
    [
        format!("sum(increase(response_total{out}[{window}])) by ({outbound_by}, classification)"),
        format!("sum(tcp_open_connections{opaque}) by ({outbound_by})"),
        format!(
            "sum(increase(response_total{inbound}[{window}])) by (namespace, {label}, pod, client_id, tls, no_tls_reason)"
        ),
    ]
}

/// The edges the three answers of [`queries`] show, given each pod's
/// ServiceAccount (`(namespace, pod)` → name); only those into or out of
/// `namespace` when one is given.
pub fn edges(
    label: &str,
    outbound: &[Sample],
    inbound: &[Sample],
    service_accounts: &BTreeMap<(String, String), String>,
    namespace: Option<&str>,
) -> Vec<Edge> {
    let dst_label = format!("dst_{label}");
    let active = |s: &&Sample| s.value.is_finite() && s.value > 0.0;
    // What each server saw: caller identities, and callers without one.
    let mut seen: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut edges: BTreeMap<(String, String, String, String), Edge> = BTreeMap::new();
    for sample in inbound.iter().filter(active) {
        let server = (
            sample.label("namespace").to_owned(),
            sample.label(label).to_owned(),
        );
        if server.1.is_empty() {
            continue;
        }
        if sample.label("tls") == "true" && !sample.label("client_id").is_empty() {
            seen.entry(server)
                .or_default()
                .insert(sample.label("client_id").to_owned());
        } else {
            let reason = Some(sample.label("no_tls_reason"))
                .filter(|r| !r.is_empty())
                .unwrap_or("no_identity")
                .to_owned();
            edges.insert(
                (
                    String::new(),
                    UNMESHED.to_owned(),
                    server.0.clone(),
                    server.1.clone(),
                ),
                Edge {
                    src: UNMESHED.into(),
                    src_namespace: String::new(),
                    dst: server.1,
                    dst_namespace: server.0,
                    client_id: None,
                    server_id: None,
                    secured: false,
                    no_tls_reason: Some(reason),
                },
            );
        }
    }
    let mut explained: BTreeSet<(String, String, String)> = BTreeSet::new();
    for sample in outbound.iter().filter(active) {
        let (src_ns, src) = (sample.label("namespace"), sample.label(label));
        let (dst_ns, dst) = (sample.label("dst_namespace"), sample.label(&dst_label));
        if src.is_empty() || dst.is_empty() {
            continue;
        }
        let prefix = service_accounts
            .get(&(src_ns.to_owned(), sample.label("pod").to_owned()))
            .map(|sa| format!("{sa}.{src_ns}.serviceaccount.identity."));
        let client_id = prefix.as_ref().and_then(|prefix| {
            seen.get(&(dst_ns.to_owned(), dst.to_owned()))
                .and_then(|ids| ids.iter().find(|id| id.starts_with(prefix.as_str())))
                .cloned()
        });
        let server_id = Some(sample.label("server_id"))
            .filter(|id| !id.is_empty() && sample.label("tls") == "true")
            .map(str::to_owned);
        if let Some(id) = &client_id {
            explained.insert((dst_ns.to_owned(), dst.to_owned(), id.clone()));
        }
        let key = (
            src_ns.to_owned(),
            src.to_owned(),
            dst_ns.to_owned(),
            dst.to_owned(),
        );
        let edge = edges.entry(key).or_insert_with(|| Edge {
            src: src.to_owned(),
            src_namespace: src_ns.to_owned(),
            dst: dst.to_owned(),
            dst_namespace: dst_ns.to_owned(),
            client_id: None,
            server_id: None,
            secured: false,
            no_tls_reason: None,
        });
        edge.client_id = edge.client_id.take().or(client_id);
        edge.server_id = edge.server_id.take().or(server_id);
        edge.secured = edge.client_id.is_some() && edge.server_id.is_some();
        edge.no_tls_reason = if edge.secured {
            None
        } else if edge.server_id.is_none() {
            Some(
                Some(sample.label("no_tls_reason"))
                    .filter(|r| !r.is_empty())
                    .unwrap_or("the server presented no identity")
                    .to_owned(),
            )
        } else {
            Some("the server did not see the caller's identity".to_owned())
        };
    }
    // Callers only the server saw: named by the identity they presented.
    for ((dst_ns, dst), ids) in &seen {
        for id in ids {
            if explained.contains(&(dst_ns.clone(), dst.clone(), id.clone())) {
                continue;
            }
            let mut parts = id.split('.');
            let (sa, ns) = (parts.next().unwrap_or(id), parts.next().unwrap_or_default());
            edges.insert(
                (ns.to_owned(), sa.to_owned(), dst_ns.clone(), dst.clone()),
                Edge {
                    src: sa.to_owned(),
                    src_namespace: ns.to_owned(),
                    dst: dst.clone(),
                    dst_namespace: dst_ns.clone(),
                    client_id: Some(id.clone()),
                    server_id: None,
                    // The server saw the caller's identity on a connection
                    // it terminated with its own: both presented one.
                    secured: true,
                    no_tls_reason: None,
                },
            );
        }
    }
    edges
        .into_values()
        .filter(|e| namespace.is_none_or(|ns| e.src_namespace == ns || e.dst_namespace == ns))
        .collect()
}

/// What [`of`] finds.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The edges.
    pub edges: Vec<Edge>,
    /// What each caller saw of each callee over the window (its HTTP
    /// requests' success rate and rate), by `(source namespace, source,
    /// destination namespace, destination)`.
    pub golden: BTreeMap<(String, String, String, String), Golden>,
    /// A warning for each pod left out because its series claim a
    /// workload it does not belong to.
    pub warnings: Vec<String>,
}

/// The edges of `kind`'s objects over `window` into or out of `namespace`
/// (every one when `None`), with what callers saw of each.
pub async fn of(
    client: &kube::Client,
    prometheus: &Prometheus,
    kind: Kind,
    namespace: Option<&str>,
    window: &str,
) -> anyhow::Result<Found> {
    let window_seconds = duration_seconds(window).map_err(|e| anyhow::anyhow!(e))?;
    let [http, opaque, inbound] = queries(kind.label(), window);
    // One listing of every pod: who owns it (series whose live pod claims
    // a workload that is not its own are left out, on either side) and
    // which ServiceAccount it runs as.
    let (http, opaque, inbound, listing) = futures::try_join!(
        prometheus.query(&http),
        prometheus.query(&opaque),
        prometheus.query(&inbound),
        super::resource::objects(client, kind, None),
    )?;
    let mut impostors = BTreeSet::new();
    let mut warnings = Vec::new();
    let mut genuine = |samples: Vec<Sample>| -> Vec<Sample> {
        samples
            .into_iter()
            .filter(|s| {
                let (ns, pod) = (s.label("namespace"), s.label("pod"));
                let claimed = s.label(kind.label());
                let impostor = !claimed.is_empty() && listing.impostor(ns, pod, claimed);
                if impostor && impostors.insert((ns.to_owned(), pod.to_owned())) {
                    warnings.push(format!(
                        "left out pod {ns}/{pod}: its series say {}={claimed:?}, \
                         but it is not one of that workload's pods",
                        kind.label()
                    ));
                }
                !impostor
            })
            .collect()
    };
    let http = genuine(http);
    let opaque = genuine(opaque);
    let inbound = genuine(inbound);
    let label = kind.label();
    let dst_label = format!("dst_{label}");
    let mut requests: BTreeMap<(String, String, String, String), Vec<&Sample>> = BTreeMap::new();
    for sample in &http {
        let key = (
            sample.label("namespace").to_owned(),
            sample.label(label).to_owned(),
            sample.label("dst_namespace").to_owned(),
            sample.label(&dst_label).to_owned(),
        );
        requests.entry(key).or_default().push(sample);
    }
    let golden = requests
        .into_iter()
        .map(|(key, samples)| {
            (
                key,
                Golden::from_samples(samples, [None; 3], window_seconds),
            )
        })
        .collect();
    let outbound: Vec<Sample> = http.into_iter().chain(opaque).collect();
    let edges = edges(
        label,
        &outbound,
        &inbound,
        &listing.service_accounts,
        namespace,
    );
    Ok(Found {
        edges,
        golden,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_ID: &str = "client.load.serviceaccount.identity.linkerd.cluster.local";
    const SERVER_ID: &str = "podinfo.shop.serviceaccount.identity.linkerd.cluster.local";

    fn accounts() -> BTreeMap<(String, String), String> {
        [(("load".into(), "client-1".into()), "client".into())].into()
    }

    fn outbound(server_id: &str, tls: &str) -> Sample {
        Sample::new(
            &[
                ("namespace", "load"),
                ("deployment", "client"),
                ("pod", "client-1"),
                ("dst_namespace", "shop"),
                ("dst_deployment", "podinfo"),
                ("server_id", server_id),
                ("tls", tls),
            ],
            12.0,
        )
    }

    #[test]
    fn secured_only_where_both_sides_saw_an_identity() {
        let inbound = vec![
            Sample::new(
                &[
                    ("namespace", "shop"),
                    ("deployment", "podinfo"),
                    ("client_id", CLIENT_ID),
                    ("tls", "true"),
                ],
                12.0,
            ),
            Sample::new(
                &[
                    ("namespace", "shop"),
                    ("deployment", "podinfo"),
                    ("tls", "no_identity"),
                    ("no_tls_reason", "no_tls_from_remote"),
                ],
                3.0,
            ),
        ];
        let edges = edges(
            "deployment",
            &[outbound(SERVER_ID, "true")],
            &inbound,
            &accounts(),
            Some("shop"),
        );
        assert_eq!(edges.len(), 2, "{edges:#?}");
        let meshed = edges
            .iter()
            .find(|e| e.src == "client")
            .expect("client edge");
        assert!(meshed.secured);
        assert_eq!(meshed.client_id.as_deref(), Some(CLIENT_ID));
        assert_eq!(meshed.server_id.as_deref(), Some(SERVER_ID));
        let unmeshed = edges
            .iter()
            .find(|e| e.src == UNMESHED)
            .expect("unmeshed edge");
        assert!(!unmeshed.secured);
        assert_eq!(
            unmeshed.no_tls_reason.as_deref(),
            Some("no_tls_from_remote")
        );
    }

    #[test]
    fn one_sided_identities_are_not_secured() {
        // The server never saw the caller's identity.
        let edges1 = edges(
            "deployment",
            &[outbound(SERVER_ID, "true")],
            &[],
            &accounts(),
            None,
        );
        assert!(!edges1[0].secured);
        // The caller saw no server identity (an unmeshed server).
        let inbound = vec![Sample::new(
            &[
                ("namespace", "shop"),
                ("deployment", "podinfo"),
                ("client_id", CLIENT_ID),
                ("tls", "true"),
            ],
            1.0,
        )];
        let edges2 = edges(
            "deployment",
            &[outbound("", "no_identity")],
            &inbound,
            &accounts(),
            None,
        );
        assert!(!edges2[0].secured);
        // Another pod's identity does not vouch for this caller.
        let stranger = vec![Sample::new(
            &[
                ("namespace", "shop"),
                ("deployment", "podinfo"),
                (
                    "client_id",
                    "other.load.serviceaccount.identity.linkerd.cluster.local",
                ),
                ("tls", "true"),
            ],
            1.0,
        )];
        let edges3 = edges(
            "deployment",
            &[outbound(SERVER_ID, "true")],
            &stranger,
            &accounts(),
            None,
        );
        let client = edges3.iter().find(|e| e.src == "client").expect("client");
        assert!(!client.secured);
        let other = edges3
            .iter()
            .find(|e| e.src == "other")
            .expect("named by its identity");
        assert!(other.secured);
        assert_eq!(other.src_namespace, "load");
    }

    #[test]
    fn idle_and_unrelated_series_make_no_edges() {
        let mut idle = outbound(SERVER_ID, "true");
        idle.value = 0.0;
        assert!(edges("deployment", &[idle], &[], &accounts(), None).is_empty());
        let elsewhere = edges(
            "deployment",
            &[outbound(SERVER_ID, "true")],
            &[],
            &accounts(),
            Some("other"),
        );
        assert!(elsewhere.is_empty());
    }
}
