//! What viz reports on: a kind of resource
//! (with kubectl's short names), optionally one object of it, and how each
//! kind is found in the proxies' series (the label Prometheus's scrape
//! configuration gives it) and in Kubernetes (its objects and how many of
//! their pods run a proxy).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
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
    /// TrafficSplits, leaf by leaf.
    TrafficSplit,
    /// HTTPRoutes, parent by parent.
    HttpRoute,
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
            "ts" | "trafficsplit" | "trafficsplits" => Self::TrafficSplit,
            "httproute" | "httproutes" => Self::HttpRoute,
            other => {
                return Err(format!(
                    "{other:?} is not a kind viz reports on: use deploy, sts, ds, job, po, ns, svc, authority, ts or httproute"
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
            Self::TrafficSplit => "trafficsplit",
            Self::HttpRoute => "httproute",
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

/// Whether `value` is a Kubernetes object name (a DNS subdomain): what a
/// request from outside may name before it is put in a query.
pub fn is_object_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !value.starts_with(['-', '.'])
        && !value.ends_with(['-', '.'])
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

/// One object of a kind, with its pods: how many run, how many of those run
/// a proxy, and the names of every live pod that belongs to it.
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
    /// Every live pod that belongs to it: by Kubernetes' ownership (a
    /// Deployment's through its ReplicaSets, by uid), a Namespace's by
    /// namespace, a Service's by its selector.
    pub members: BTreeSet<String>,
}

/// What one kind looks like in Kubernetes now.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Its objects.
    pub objects: Vec<Object>,
    /// Every live pod in the namespaces listed, `(namespace, name)`.
    pub live: BTreeSet<(String, String)>,
    /// The ServiceAccount of every pod listed (terminating ones too), by
    /// `(namespace, name)`: the identity its proxy presents.
    pub service_accounts: BTreeMap<(String, String), String>,
}

impl Listing {
    /// Whether pod `namespace/pod`, alive now, claims in its series to be
    /// part of `object` of this kind without belonging to it: a pod that
    /// labels itself `linkerd.io/proxy-deployment: web`, or whose
    /// metrics page writes `deployment="web"`, is not one of web's pods.
    /// A pod no longer alive is given the benefit of the doubt (the window
    /// holds series of pods a rollout replaced).
    pub fn impostor(&self, namespace: &str, pod: &str, object: &str) -> bool {
        if !self.live.contains(&(namespace.to_owned(), pod.to_owned())) {
            return false;
        }
        !self
            .objects
            .iter()
            .any(|o| o.namespace == namespace && o.name == object && o.members.contains(pod))
    }
}

/// The objects of `kind` in `namespace` (every namespace when `None`) with
/// their pods; authorities have no objects (their rows come from the
/// series).
pub async fn objects(
    client: &kube::Client,
    kind: Kind,
    namespace: Option<&str>,
) -> anyhow::Result<Listing> {
    fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    async fn list<K>(api: Api<K>, what: &str) -> anyhow::Result<Vec<K>>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        Ok(api
            .list(&ListParams::default())
            .await
            .map_err(|e| anyhow::anyhow!("listing {what}: {e}"))?
            .items)
    }
    let listed = list(api::<Pod>(client, namespace), "pods").await?;
    let service_accounts = listed
        .iter()
        .filter_map(|p| {
            let sa = p
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            Some((
                (p.metadata.namespace.clone()?, p.metadata.name.clone()?),
                sa,
            ))
        })
        .collect();
    let pods: Vec<Pod> = listed
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let live = pods
        .iter()
        .filter_map(|p| Some((p.metadata.namespace.clone()?, p.metadata.name.clone()?)))
        .collect();
    // Each pod's controlling owner's uid, and for ReplicaSets their own.
    let controller_uid = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.clone())
    };
    let replica_sets: BTreeMap<String, Option<String>> = if kind == Kind::Deployment {
        list(api::<ReplicaSet>(client, namespace), "replicasets")
            .await?
            .into_iter()
            .filter_map(|rs| Some((rs.metadata.uid.clone()?, controller_uid(&rs.metadata))))
            .collect()
    } else {
        BTreeMap::new()
    };
    let owner_of = |pod: &Pod| -> Option<String> {
        let owner = controller_uid(&pod.metadata)?;
        match replica_sets.get(&owner) {
            Some(deployment) => deployment.clone(),
            None => Some(owner),
        }
    };
    let object = |namespace: &str, name: &str, belongs: &dyn Fn(&Pod) -> bool| {
        let mine: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace) && belongs(p))
            .collect();
        let running: Vec<&&Pod> = mine
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect();
        Object {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            pods: running.len(),
            meshed: running
                .iter()
                .filter(|p| p.spec.as_ref().is_some_and(mesh_api::pod::has_proxy))
                .count(),
            members: mine
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect(),
        }
    };
    let mut objects = Vec::new();
    macro_rules! owners {
        ($ty:ty) => {{
            for owner in list(api::<$ty>(client, namespace), &format!("{}s", kind.name())).await? {
                let ns = owner.metadata.namespace.clone().unwrap_or_default();
                let name = owner.metadata.name.clone().unwrap_or_default();
                let uid = owner.metadata.uid.clone();
                objects.push(object(&ns, &name, &|p: &Pod| {
                    uid.is_some() && owner_of(p) == uid
                }));
            }
        }};
    }
    match kind {
        Kind::Deployment => owners!(Deployment),
        Kind::StatefulSet => owners!(StatefulSet),
        Kind::DaemonSet => owners!(DaemonSet),
        Kind::Job => owners!(Job),
        Kind::Pod => {
            for pod in &pods {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                objects.push(object(&ns, &name, &|p: &Pod| {
                    p.metadata.name.as_deref() == Some(name.as_str())
                }));
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
                let mut ns = object(&name, &name, &|_| true);
                ns.namespace = String::new();
                objects.push(ns);
            }
        }
        Kind::Service => {
            for service in list(api::<Service>(client, namespace), "services").await? {
                let ns = service.metadata.namespace.clone().unwrap_or_default();
                let name = service.metadata.name.clone().unwrap_or_default();
                let selector = service
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.clone())
                    .filter(|labels| !labels.is_empty());
                objects.push(object(&ns, &name, &|p: &Pod| {
                    selector.as_ref().is_some_and(|labels| {
                        let have = p.metadata.labels.clone().unwrap_or_default();
                        labels.iter().all(|(k, v)| have.get(k) == Some(v))
                    })
                }));
            }
        }
        Kind::Authority | Kind::TrafficSplit | Kind::HttpRoute => {}
    }
    Ok(Listing {
        objects,
        live,
        service_accounts,
    })
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
}
