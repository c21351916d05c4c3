//! What `mesh viz stat` and `edges` are asked about: a kind of resource
//! (with kubectl's short names), optionally one object of it, and how each
//! kind is found in the proxies' series (the label Prometheus's scrape
//! configuration gives it) and in Kubernetes (its objects and how many of
//! their pods run a proxy).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::ListParams;

/// A kind `mesh viz` reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Deployments.
    Deployment,
    /// StatefulSets.
    StatefulSet,
    /// DaemonSets.
    DaemonSet,
    /// Jobs.
    Job,
    /// Pods.
    Pod,
    /// Namespaces.
    Namespace,
    /// Services, as their clients see them (outbound).
    Service,
    /// Authorities (`Host`), as served.
    Authority,
}

impl Kind {
    /// The kind named by `word` (kubectl's names, short names and plurals).
    pub fn parse(word: &str) -> Result<Self, String> {
        Ok(match word.to_ascii_lowercase().as_str() {
            "deploy" | "deployment" | "deployments" => Self::Deployment,
            "sts" | "statefulset" | "statefulsets" => Self::StatefulSet,
            "ds" | "daemonset" | "daemonsets" => Self::DaemonSet,
            "job" | "jobs" => Self::Job,
            "po" | "pod" | "pods" => Self::Pod,
            "ns" | "namespace" | "namespaces" => Self::Namespace,
            "svc" | "service" | "services" => Self::Service,
            "au" | "authority" | "authorities" => Self::Authority,
            other => {
                return Err(format!(
                    "{other:?} is not a kind viz reports on: use deploy, sts, ds, job, po, ns, svc or authority"
                ));
            }
        })
    }

    /// Its name as kubectl prints it (`deployment`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::StatefulSet => "statefulset",
            Self::DaemonSet => "daemonset",
            Self::Job => "job",
            Self::Pod => "pod",
            Self::Namespace => "namespace",
            Self::Service => "service",
            Self::Authority => "authority",
        }
    }

    /// The label its objects carry in the proxies' series (Linkerd's scrape
    /// configuration: `linkerd.io/proxy-job` becomes `k8s_job`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Job => "k8s_job",
            Self::Service => "service",
            other => other.name(),
        }
    }

    /// Whether its objects live in a namespace.
    pub fn namespaced(self) -> bool {
        self != Self::Namespace
    }
}

/// `KIND` or `KIND/NAME`, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The kind.
    pub kind: Kind,
    /// One object, or all of them.
    pub name: Option<String>,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, name) = match text.split_once('/') {
            Some((kind, name)) => (kind, Some(name)),
            None => (text, None),
        };
        if let Some(name) = name
            && (name.is_empty() || name.contains(['/', '"', '\\', '{', '}', ',', '=']))
        {
            return Err(format!("{text:?}: {name:?} is not an object name"));
        }
        Ok(Self {
            kind: Kind::parse(kind)?,
            name: name.map(str::to_owned),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{name}", self.kind.name()),
            None => f.write_str(self.kind.name()),
        }
    }
}

/// One object of a kind, with its pods: how many there are, how many run a
/// proxy, and the ServiceAccount each runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object {
    /// Its namespace (`""` for a Namespace).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Running pods.
    pub pods: usize,
    /// Running pods with a proxy.
    pub meshed: usize,
}

/// The objects of `kind` in `namespace` (every namespace when `None`) with
/// their running pods counted; Services and authorities have no pods of
/// their own and are not listed (their rows come from the series).
pub async fn objects(
    client: &kube::Client,
    kind: Kind,
    namespace: Option<&str>,
) -> anyhow::Result<Vec<Object>> {
    let pods_api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("listing pods: {e}"))?
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect();
    let count = |namespace: &str, selector: &dyn Fn(&Pod) -> bool| {
        let mine: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace) && selector(p))
            .collect();
        let meshed = mine
            .iter()
            .filter(|p| p.spec.as_ref().is_some_and(mesh_api::pod::has_proxy))
            .count();
        (mine.len(), meshed)
    };
    let mut out = Vec::new();
    let mut push = |namespace: String, name: String, counts: (usize, usize)| {
        out.push(Object {
            namespace,
            name,
            pods: counts.0,
            meshed: counts.1,
        });
    };
    macro_rules! workloads {
        ($ty:ty, $selector:expr) => {{
            let api: Api<$ty> = match namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            for object in api
                .list(&ListParams::default())
                .await
                .map_err(|e| anyhow::anyhow!("listing {}s: {e}", kind.name()))?
                .items
            {
                let ns = object.metadata.namespace.clone().unwrap_or_default();
                let name = object.metadata.name.clone().unwrap_or_default();
                let selector: Option<LabelSelector> = $selector(&object);
                let counts = count(&ns, &|p: &Pod| selects(selector.as_ref(), p));
                push(ns, name, counts);
            }
        }};
    }
    match kind {
        Kind::Deployment => {
            workloads!(Deployment, |d: &Deployment| d
                .spec
                .as_ref()
                .map(|s| s.selector.clone()))
        }
        Kind::StatefulSet => {
            workloads!(StatefulSet, |d: &StatefulSet| d
                .spec
                .as_ref()
                .map(|s| s.selector.clone()))
        }
        Kind::DaemonSet => {
            workloads!(DaemonSet, |d: &DaemonSet| d
                .spec
                .as_ref()
                .map(|s| s.selector.clone()))
        }
        Kind::Job => {
            workloads!(Job, |d: &Job| d
                .spec
                .as_ref()
                .and_then(|s| s.selector.clone()))
        }
        Kind::Pod => {
            for pod in &pods {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let meshed = pod.spec.as_ref().is_some_and(mesh_api::pod::has_proxy);
                push(ns, name, (1, usize::from(meshed)));
            }
        }
        Kind::Namespace => {
            let names: Vec<String> = match namespace {
                Some(ns) => vec![ns.to_owned()],
                None => Api::<Namespace>::all(client.clone())
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| anyhow::anyhow!("listing namespaces: {e}"))?
                    .items
                    .into_iter()
                    .filter_map(|n| n.metadata.name)
                    .collect(),
            };
            for name in names {
                let counts = count(&name, &|_| true);
                push(String::new(), name, counts);
            }
        }
        Kind::Service => {
            let api: Api<Service> = match namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            for service in api
                .list(&ListParams::default())
                .await
                .map_err(|e| anyhow::anyhow!("listing services: {e}"))?
                .items
            {
                let ns = service.metadata.namespace.clone().unwrap_or_default();
                let name = service.metadata.name.clone().unwrap_or_default();
                let selector = service.spec.as_ref().and_then(|s| s.selector.clone());
                let counts = match selector {
                    Some(labels) if !labels.is_empty() => count(&ns, &|p: &Pod| {
                        let have = p.metadata.labels.clone().unwrap_or_default();
                        labels.iter().all(|(k, v)| have.get(k) == Some(v))
                    }),
                    _ => (0, 0),
                };
                push(ns, name, counts);
            }
        }
        Kind::Authority => {}
    }
    Ok(out)
}

/// Whether `selector` selects `pod` (matchLabels and matchExpressions).
fn selects(selector: Option<&LabelSelector>, pod: &Pod) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_use_kubectls_names() {
        let t: Target = "deploy/podinfo".parse().expect("target");
        assert_eq!(t.kind, Kind::Deployment);
        assert_eq!(t.name.as_deref(), Some("podinfo"));
        assert_eq!(t.to_string(), "deployment/podinfo");
        assert_eq!("po".parse::<Target>().expect("pods").kind, Kind::Pod);
        assert_eq!(
            "svc/web-east".parse::<Target>().expect("svc").kind,
            Kind::Service
        );
        assert_eq!(Kind::Job.label(), "k8s_job");
    }

    #[test]
    fn names_that_would_change_a_query_are_refused() {
        for bad in [
            "widget/x",
            "deploy/",
            "deploy/a\"}",
            "deploy/a,b",
            "deploy/a/b",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web", "tier": "front"}}
        }))
        .expect("pod");
        let selector = |v: serde_json::Value| -> LabelSelector {
            serde_json::from_value(v).expect("selector")
        };
        assert!(selects(
            Some(&selector(
                serde_json::json!({"matchLabels": {"app": "web"}})
            )),
            &pod
        ));
        assert!(!selects(
            Some(&selector(serde_json::json!({"matchLabels": {"app": "db"}}))),
            &pod
        ));
        assert!(selects(
            Some(&selector(
                serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]})
            )),
            &pod
        ));
        assert!(!selects(
            Some(&selector(
                serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})
            )),
            &pod
        ));
        assert!(!selects(None, &pod));
    }
}
