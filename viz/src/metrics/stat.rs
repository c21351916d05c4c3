//! Golden metrics per resource (success rate, requests per second,
//! latency percentiles, open TCP connections) over a time window, from
//! viz's Prometheus, with Linkerd's queries: what `mesh viz stat` prints
//! and the dashboard shows.
//!
//! - by default what each resource **served** (inbound series);
//! - `from`: what the source sent to each resource (the source's outbound
//!   series, grouped by `dst_<kind>`);
//! - `to`: what each resource sent to the target;
//! - Services: what the Service's clients saw (outbound, by
//!   `dst_service`), which is how a mirrored `podinfo-east` is watched
//!   from this side.

use std::collections::{BTreeMap, BTreeSet};

use mesh_api::prometheus::Sample;
use serde::Serialize;

use super::golden::{Golden, usable};
use super::prometheus::{Prometheus, duration_seconds, matchers};
use super::resource::{Kind, Target, objects};

/// What one `stat` asks, resolved: the kind reported on, and the series
/// that carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Matchers of every series (direction, namespaces, names).
    pub selector: Vec<(String, String)>,
    /// The labels that name a row: its namespace's and its name's.
    pub namespace_label: &'static str,
    /// See `namespace_label`.
    pub name_label: String,
    /// The window (`1m`) and its length in seconds.
    pub window: (String, f64),
    /// The label whose value a series' pod claims to belong to (the rows'
    /// workloads, or `--from`'s source), when it is not a label Prometheus
    /// itself gives (`pod`, `namespace`).
    pub claim_label: Option<String>,
    /// Live pods whose series claim a workload they do not belong to: left
    /// out of every query.
    pub excluded_pods: BTreeSet<String>,
}

impl Query {
    /// The query for `stat` of `target` in `namespace` (`None`: every
    /// namespace), optionally `--from` or `--to` another resource.
    pub fn new(
        target: &Target,
        namespace: Option<&str>,
        from: Option<(&Target, &str)>,
        to: Option<(&Target, &str)>,
        window: &str,
    ) -> Result<Self, String> {
        let seconds = duration_seconds(window)?;
        let mut selector: Vec<(String, String)> = Vec::new();
        let mut add = |label: String, value: Option<&str>| {
            if let Some(value) = value {
                selector.push((label, value.to_owned()));
            }
        };
        let dst = |label: &str| format!("dst_{label}");
        let own_label = target.kind.label();
        // Clients' view (outbound) when the rows are destinations.
        let rows_are_destinations = from.is_some() || target.kind == Kind::Service;
        let (namespace_label, name_label) = if rows_are_destinations {
            add("direction".into(), Some("outbound"));
            add("dst_namespace".into(), namespace);
            if target.kind != Kind::Namespace {
                add(dst(own_label), target.name.as_deref());
            }
            if let Some((source, source_ns)) = from {
                if source.kind == Kind::Service || source.kind == Kind::Authority {
                    return Err(format!(
                        "--from {source}: a source must be a workload, a pod or a namespace"
                    ));
                }
                add("namespace".into(), Some(source_ns));
                if source.kind != Kind::Namespace {
                    add(source.kind.label().into(), source.name.as_deref());
                }
            }
            (
                "dst_namespace",
                if target.kind == Kind::Namespace {
                    "dst_namespace".into()
                } else {
                    dst(own_label)
                },
            )
        } else if let Some((destination, destination_ns)) = to {
            if target.kind == Kind::Authority {
                return Err("--to does not apply to authorities".into());
            }
            add("direction".into(), Some("outbound"));
            add("namespace".into(), namespace);
            if target.kind != Kind::Namespace {
                add(own_label.into(), target.name.as_deref());
            }
            add("dst_namespace".into(), Some(destination_ns));
            if destination.kind != Kind::Namespace {
                add(dst(destination.kind.label()), destination.name.as_deref());
            }
            ("namespace", own_label.into())
        } else {
            add("direction".into(), Some("inbound"));
            add("namespace".into(), namespace);
            if target.kind != Kind::Namespace {
                add(own_label.into(), target.name.as_deref());
            }
            ("namespace", own_label.into())
        };
        let claimed = match from {
            Some((source, _)) => source.kind,
            None if target.kind == Kind::Service => Kind::Pod,
            None => target.kind,
        };
        let claim_label = (!matches!(claimed, Kind::Pod | Kind::Namespace | Kind::Authority))
            .then(|| claimed.label().to_owned());
        Ok(Self {
            selector,
            namespace_label,
            name_label,
            window: (window.to_owned(), seconds),
            claim_label,
            excluded_pods: BTreeSet::new(),
        })
    }

    /// The series' matchers, with the excluded pods left out.
    pub fn series(&self) -> String {
        self.matchers(&[])
    }

    /// The series' matchers and `extra`, with the excluded pods left out.
    fn matchers(&self, extra: &[(String, String)]) -> String {
        let mut pairs = self.selector.clone();
        pairs.extend_from_slice(extra);
        let text = matchers(&pairs);
        if self.excluded_pods.is_empty() {
            return text;
        }
        let pods: Vec<String> = self
            .excluded_pods
            .iter()
            .map(|p| {
                p.replace(
                    |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.',
                    "",
                )
            })
            .collect();
        format!(
            "{},pod!~\"^({})$\"}}",
            text.trim_end_matches('}'),
            pods.join("|").replace('.', "\\\\.")
        )
    }

    /// Requests per claimed workload and pod (see [`Query::claim_label`]),
    /// to find pods that claim a workload that is not theirs.
    pub fn claims(&self) -> Option<String> {
        let label = self.claim_label.as_ref()?;
        Some(format!(
            "sum(increase(response_total{}[{}])) by (namespace, {label}, pod)",
            matchers(&self.selector),
            self.window.0
        ))
    }

    fn group(&self) -> String {
        if self.name_label == self.namespace_label {
            self.namespace_label.to_owned()
        } else {
            format!("{}, {}", self.namespace_label, self.name_label)
        }
    }

    /// Requests per row and classification over the window.
    pub fn requests(&self) -> String {
        format!(
            "sum(increase(response_total{}[{}])) by ({}, classification)",
            self.matchers(&[]),
            self.window.0,
            self.group()
        )
    }

    /// The `quantile` latency per row over the window, in milliseconds.
    pub fn latency(&self, quantile: f64) -> String {
        format!(
            "histogram_quantile({quantile}, sum(irate(response_latency_ms_bucket{}[{}])) by (le, {}))",
            self.matchers(&[]),
            self.window.0,
            self.group()
        )
    }

    /// A TCP gauge or counter rate per row: outbound series count the
    /// proxy's connections to endpoints (`peer="dst"`).
    fn tcp(&self, metric: &str, rate: bool) -> String {
        let outbound = self
            .selector
            .iter()
            .any(|(k, v)| k == "direction" && v == "outbound");
        let peer = [("peer".to_owned(), "dst".to_owned())];
        let series = format!(
            "{metric}{}",
            self.matchers(if outbound { &peer } else { &[] })
        );
        let series = if rate {
            format!("irate({series}[{}])", self.window.0)
        } else {
            series
        };
        format!("sum({series}) by ({})", self.group())
    }

    /// Open connections per row.
    pub fn connections(&self) -> String {
        self.tcp("tcp_open_connections", false)
    }

    /// Bytes per second read (`tcp_read_bytes_total`) or written.
    pub fn bytes(&self, metric: &str) -> String {
        self.tcp(metric, true)
    }

    fn key(&self, sample: &Sample) -> (String, String) {
        let namespace = sample.label(self.namespace_label).to_owned();
        let name = sample.label(&self.name_label).to_owned();
        if self.name_label == self.namespace_label {
            (String::new(), name)
        } else {
            (namespace, name)
        }
    }
}

/// One row of `stat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// The cluster (kubeconfig context) it was read in, when several were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The resource's namespace (empty for namespaces).
    pub namespace: String,
    /// `deployment`, `pod`, …
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Running pods with a proxy, of all its running pods (`None` for
    /// Services' client views and authorities).
    pub meshed: Option<(usize, usize)>,
    /// Success rate, requests per second and latency over the window.
    #[serde(flatten)]
    pub golden: Golden,
    /// Open TCP connections.
    pub tcp_open_connections: Option<f64>,
    /// Bytes read per second.
    pub read_bytes_per_second: Option<f64>,
    /// Bytes written per second.
    pub write_bytes_per_second: Option<f64>,
}

/// Prometheus's answers to one [`Query`].
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// To [`Query::requests`].
    pub requests: Vec<Sample>,
    /// To [`Query::latency`] at 0.5, 0.95 and 0.99.
    pub latency: [Vec<Sample>; 3],
    /// To [`Query::connections`].
    pub connections: Vec<Sample>,
    /// To [`Query::bytes`] of read and written bytes.
    pub bytes: [Vec<Sample>; 2],
}

/// The rows: one per listed object (`meshed` counted), and one per other
/// name the series carry (a Service's clients, an authority, a workload
/// Kubernetes no longer lists); figures a value that is not finite or is
/// negative cannot give are left empty.
pub fn rows(
    kind: Kind,
    query: &Query,
    objects: &[super::resource::Object],
    answers: &Answers,
) -> Vec<Row> {
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    let blank = |namespace: &str, name: &str| Row {
        namespace: namespace.to_owned(),
        kind: kind.name().to_owned(),
        name: name.to_owned(),
        ..Row::default()
    };
    for object in objects {
        let mut row = blank(&object.namespace, &object.name);
        if !matches!(kind, Kind::Service | Kind::Authority) {
            row.meshed = Some((object.meshed, object.pods));
        }
        rows.insert((object.namespace.clone(), object.name.clone()), row);
    }
    let mut requests: BTreeMap<(String, String), Vec<&Sample>> = BTreeMap::new();
    for sample in &answers.requests {
        let key = query.key(sample);
        if !key.1.is_empty() && usable(sample.value).is_some() {
            requests.entry(key).or_default().push(sample);
        }
    }
    for (key, samples) in requests {
        let row = rows
            .entry(key.clone())
            .or_insert_with(|| blank(&key.0, &key.1));
        row.golden = Golden::from_samples(samples, [None; 3], query.window.1);
    }
    let mut fill = |samples: &[Sample], set: &dyn Fn(&mut Row, f64)| {
        for sample in samples {
            let key = query.key(sample);
            if let (Some(value), Some(row)) = (usable(sample.value), rows.get_mut(&key)) {
                set(row, value);
            }
        }
    };
    fill(&answers.latency[0], &|r, v| {
        r.golden.latency_ms_p50 = Some(v)
    });
    fill(&answers.latency[1], &|r, v| {
        r.golden.latency_ms_p95 = Some(v)
    });
    fill(&answers.latency[2], &|r, v| {
        r.golden.latency_ms_p99 = Some(v)
    });
    fill(&answers.connections, &|r, v| {
        r.tcp_open_connections = Some(v)
    });
    fill(&answers.bytes[0], &|r, v| r.read_bytes_per_second = Some(v));
    fill(&answers.bytes[1], &|r, v| {
        r.write_bytes_per_second = Some(v)
    });
    rows.into_values().collect()
}

/// Asks Prometheus everything one [`Query`] needs.
pub async fn ask(prometheus: &Prometheus, query: &Query) -> anyhow::Result<Answers> {
    let promql = [
        query.requests(),
        query.latency(0.5),
        query.latency(0.95),
        query.latency(0.99),
        query.connections(),
        query.bytes("tcp_read_bytes_total"),
        query.bytes("tcp_write_bytes_total"),
    ];
    let answers = futures::future::try_join_all(promql.iter().map(|q| prometheus.query(q))).await?;
    let [requests, p50, p95, p99, connections, read, written]: [Vec<Sample>; 7] = answers
        .try_into()
        .map_err(|_| anyhow::anyhow!("Prometheus answered a different number of queries"))?;
    Ok(Answers {
        requests,
        latency: [p50, p95, p99],
        connections,
        bytes: [read, written],
    })
}

/// What one `stat` is about: the rows' kind (and name), their namespace
/// (`None`: every one), what they sent to or received from, and the window.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The rows' kind, optionally one object.
    pub target: &'a Target,
    /// Their namespace (`None`: every namespace).
    pub namespace: Option<&'a str>,
    /// Only what this source sent, and its namespace.
    pub from: Option<(&'a Target, &'a str)>,
    /// Only what was sent to this destination, and its namespace.
    pub to: Option<(&'a Target, &'a str)>,
    /// The window (`1m`).
    pub window: &'a str,
}

/// Leaves out of `query` every live pod whose series claim a workload
/// that `claimed` (the Kubernetes listing) says is not its own, and says
/// so: one warning per pod.
pub async fn leave_out_impostors(
    prometheus: &Prometheus,
    query: &mut Query,
    claimed: &super::resource::Listing,
) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    if let Some(claims) = query.claims() {
        let label = query.claim_label.clone().unwrap_or_default();
        for sample in prometheus.query(&claims).await? {
            let (ns, pod) = (sample.label("namespace"), sample.label("pod"));
            let object = sample.label(&label);
            if !object.is_empty() && claimed.impostor(ns, pod, object) {
                warnings.push(format!(
                    "left out pod {ns}/{pod}: its series say {label}={object:?}, \
                     but it is not one of that workload's pods"
                ));
                query.excluded_pods.insert(pod.to_owned());
            }
        }
    }
    Ok(warnings)
}

/// The rows of one cluster, and a warning for each pod left out because
/// its series claim a workload it does not belong to.
pub async fn stat(
    client: &kube::Client,
    prometheus: &Prometheus,
    request: Request<'_>,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let Request {
        target,
        namespace,
        from,
        to,
        window,
    } = request;
    let namespace = namespace.filter(|_| target.kind.namespaced());
    let mut query =
        Query::new(target, namespace, from, to, window).map_err(|e| anyhow::anyhow!(e))?;
    let mut listing = objects(client, target.kind, namespace).await?;
    // Whose claims are checked: the source's, else the rows' own.
    let claimed = match from {
        Some((source, source_ns)) => objects(client, source.kind, Some(source_ns)).await?,
        None => listing.clone(),
    };
    let warnings = leave_out_impostors(prometheus, &mut query, &claimed).await?;
    let answers = ask(prometheus, &query).await?;
    if let Some(name) = &target.name {
        listing.objects.retain(|o| &o.name == name);
    }
    Ok((
        rows(target.kind, &query, &listing.objects, &answers),
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::resource::Object;
    use super::*;

    fn target(text: &str) -> Target {
        text.parse().expect("target")
    }

    #[test]
    fn served_traffic_is_read_from_inbound_series() {
        let q = Query::new(&target("deploy"), Some("shop"), None, None, "1m").expect("query");
        assert_eq!(
            q.requests(),
            r#"sum(increase(response_total{direction="inbound",namespace="shop"}[1m])) by (namespace, deployment, classification)"#
        );
        assert_eq!(
            q.latency(0.99),
            r#"histogram_quantile(0.99, sum(irate(response_latency_ms_bucket{direction="inbound",namespace="shop"}[1m])) by (le, namespace, deployment))"#
        );
        assert_eq!(
            q.connections(),
            r#"sum(tcp_open_connections{direction="inbound",namespace="shop"}) by (namespace, deployment)"#
        );
    }

    #[test]
    fn from_reads_the_sources_outbound_series_by_destination() {
        let from = target("deploy/client");
        let q = Query::new(
            &target("deploy/podinfo"),
            Some("shop"),
            Some((&from, "load")),
            None,
            "30s",
        )
        .expect("query");
        assert_eq!(
            q.requests(),
            r#"sum(increase(response_total{direction="outbound",dst_namespace="shop",dst_deployment="podinfo",namespace="load",deployment="client"}[30s])) by (dst_namespace, dst_deployment, classification)"#
        );
        assert_eq!(
            q.connections(),
            r#"sum(tcp_open_connections{direction="outbound",dst_namespace="shop",dst_deployment="podinfo",namespace="load",deployment="client",peer="dst"}) by (dst_namespace, dst_deployment)"#
        );
        let to = target("deploy/podinfo");
        let q = Query::new(
            &target("deploy"),
            Some("load"),
            None,
            Some((&to, "shop")),
            "1m",
        )
        .expect("query");
        assert!(q.requests().contains(r#"{direction="outbound",namespace="load",dst_namespace="shop",dst_deployment="podinfo"}"#));
        let svc =
            Query::new(&target("svc/podinfo-east"), Some("shop"), None, None, "1m").expect("query");
        assert!(
            svc.requests().contains(
                r#"{direction="outbound",dst_namespace="shop",dst_service="podinfo-east"}"#
            )
        );
        assert!(
            svc.requests()
                .ends_with("by (dst_namespace, dst_service, classification)")
        );
        let ns = Query::new(&target("ns"), None, None, None, "1m").expect("query");
        assert!(
            ns.requests()
                .ends_with(r#"{direction="inbound"}[1m])) by (namespace, classification)"#)
        );
    }

    #[test]
    fn bad_windows_and_sources_are_refused() {
        assert!(Query::new(&target("deploy"), None, None, None, "soon").is_err());
        let svc = target("svc/web");
        assert!(Query::new(&target("deploy"), None, Some((&svc, "x")), None, "1m").is_err());
    }

    #[test]
    fn pods_claiming_a_workload_not_theirs_are_left_out() {
        use super::super::resource::Listing;
        let listing = Listing {
            objects: vec![Object {
                namespace: "shop".into(),
                name: "podinfo".into(),
                pods: 1,
                meshed: 1,
                members: ["podinfo-1".into()].into(),
            }],
            live: [
                ("shop".to_owned(), "podinfo-1".to_owned()),
                ("shop".to_owned(), "rogue".to_owned()),
            ]
            .into(),
            service_accounts: Default::default(),
        };
        assert!(!listing.impostor("shop", "podinfo-1", "podinfo"));
        assert!(
            listing.impostor("shop", "rogue", "podinfo"),
            "alive, and not podinfo's"
        );
        assert!(
            !listing.impostor("shop", "podinfo-0", "podinfo"),
            "a pod a rollout replaced still counts for the window"
        );
        let mut q = Query::new(&target("deploy"), Some("shop"), None, None, "1m").expect("query");
        assert_eq!(
            q.claims().as_deref(),
            Some(
                r#"sum(increase(response_total{direction="inbound",namespace="shop"}[1m])) by (namespace, deployment, pod)"#
            )
        );
        q.excluded_pods.insert("rogue".into());
        q.excluded_pods.insert("x\"}or{".into());
        assert_eq!(
            q.requests(),
            r#"sum(increase(response_total{direction="inbound",namespace="shop",pod!~"^(rogue|xor)$"}[1m])) by (namespace, deployment, classification)"#
        );
        assert!(q.connections().contains(r#"pod!~"^(rogue|xor)$""#));
        let pods = Query::new(&target("po"), Some("shop"), None, None, "1m").expect("query");
        assert_eq!(pods.claims(), None, "Prometheus itself gives the pod label");
        let from = target("deploy/client");
        let q = Query::new(
            &target("deploy"),
            Some("shop"),
            Some((&from, "load")),
            None,
            "1m",
        )
        .expect("query");
        assert_eq!(
            q.claim_label.as_deref(),
            Some("deployment"),
            "the source's claim"
        );
    }

    #[test]
    fn rows_join_kubernetes_and_prometheus() {
        let q = Query::new(&target("deploy"), Some("shop"), None, None, "1m").expect("query");
        let objects = vec![
            Object {
                namespace: "shop".into(),
                name: "podinfo".into(),
                pods: 2,
                meshed: 2,
                members: ["podinfo-1".into(), "podinfo-2".into()].into(),
            },
            Object {
                namespace: "shop".into(),
                name: "idle".into(),
                pods: 1,
                meshed: 0,
                members: ["idle-1".into()].into(),
            },
        ];
        let web = [("namespace", "shop"), ("deployment", "podinfo")];
        let answers = Answers {
            requests: vec![
                Sample::new(&[web[0], web[1], ("classification", "success")], 114.0),
                Sample::new(&[web[0], web[1], ("classification", "failure")], 6.0),
                Sample::new(
                    &[
                        web[0],
                        ("deployment", "gone"),
                        ("classification", "success"),
                    ],
                    60.0,
                ),
                Sample::new(&[web[0], web[1], ("classification", "success")], f64::NAN),
            ],
            latency: [
                vec![Sample::new(&web, 1.2)],
                vec![Sample::new(&web, 4.0)],
                vec![Sample::new(&web, f64::NAN)],
            ],
            connections: vec![Sample::new(&web, 3.0)],
            bytes: Default::default(),
        };
        let rows = rows(Kind::Deployment, &q, &objects, &answers);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["gone", "idle", "podinfo"]);
        let podinfo = &rows[2];
        assert_eq!(podinfo.meshed, Some((2, 2)));
        assert_eq!(podinfo.golden.success, Some(0.95));
        assert_eq!(podinfo.golden.rps, Some(2.0));
        assert_eq!(podinfo.golden.latency_ms_p50, Some(1.2));
        assert_eq!(podinfo.golden.latency_ms_p99, None, "NaN is no latency");
        assert_eq!(podinfo.tcp_open_connections, Some(3.0));
        assert_eq!(rows[1].golden.success, None, "no traffic, no rate");
        assert_eq!(rows[1].meshed, Some((0, 1)));
        assert_eq!(rows[0].meshed, None, "Kubernetes no longer lists it");
    }
}
