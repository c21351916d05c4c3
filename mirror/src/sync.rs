//! Mirroring: the watched views of both clusters ([`RemoteViews`] of the
//! linked cluster's exported Services and their Endpoints, both scoped by
//! the Link's selector; [`LocalViews`] of this Link's mirrors) and one pass
//! that makes the mirrors match (server-side apply as `mesh-mirror`; a
//! mirror's Endpoints are written only when the gateway's addresses,
//! liveness or the remote readiness changed).
//!
//! The linked cluster is not trusted with local objects: the mirror writes
//! and deletes only what it wrote itself (its field manager in the
//! object's managed fields, not merely its labels), deletes name the uid
//! it saw, and a name already held by someone else's Service is a
//! conflict, reported and left alone. At most `max_services` remote
//! Services are mirrored per Link, those already mirrored first, so a
//! flood of exports neither grows this cluster without bound nor displaces
//! what is mirrored. A remote Service that cannot be mirrored is reported,
//! not fatal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use mesh_api::labels::{MIRROR_CLUSTER_NAME, MIRROR_MIRRORED_SERVICE, TRUST_ROOTS_CONFIGMAP};
use tokio::sync::Notify;

use crate::desired::{
    self, EndpointsContent, Existing, FIELD_MANAGER, Gateway, Key, LocalEndpoints, Plan,
    RemoteEndpoints, written_by_mirror,
};
use crate::watch::Watched;

/// The key of the trust anchors bundle in its ConfigMap.
const TRUST_ROOTS_KEY: &str = "ca-bundle.crt";

/// What one pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The plan it applied.
    pub plan: Plan,
    /// Mirror Endpoints it rewrote.
    pub endpoints_written: usize,
    /// Remote Services mirrored after the pass (a headless one counts
    /// once, with its endpoint mirrors).
    pub mirrors: usize,
    /// Remote Services it could not mirror, with the reason.
    pub invalid: Vec<(Key, desired::Invalid)>,
    /// Mirrors the API server refused to write or delete, with its answer
    /// (the other mirrors are still written).
    pub failed: Vec<(Key, String)>,
    /// Mirror names held by objects the mirror did not write, with what
    /// holds them: those objects are left alone.
    pub conflicts: Vec<(Key, String)>,
    /// Remote Services past the Link's cap, not mirrored.
    pub over_cap: Vec<Key>,
}

/// Why a pass could not run: a view is not complete yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} not listed yet{}", .error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
pub struct NotListed {
    /// The view.
    pub what: &'static str,
    /// The watch's last error.
    pub error: Option<String>,
}

/// The linked cluster as the mirror sees it: the Services its Link exports
/// and what the mirror needs of their Endpoints (readiness, host names).
#[derive(Debug)]
pub struct RemoteViews {
    services: Watched<Service>,
    endpoints: Watched<RemoteEndpoints>,
    gateway: Option<Watched<Vec<String>>>,
    anchors: Watched<Option<String>>,
    anchors_at: String,
}

impl RemoteViews {
    /// Watches what `remote` exports under `selector`, its trust anchors
    /// (in `linkerd_namespace`), and its gateway Service `(namespace,
    /// name)` when the Link follows one.
    pub fn start(
        remote: &kube::Client,
        selector: &str,
        linkerd_namespace: &str,
        gateway_service: Option<&(String, String)>,
        changed: &Arc<Notify>,
    ) -> Self {
        let gateway = gateway_service.map(|(namespace, name)| {
            Watched::spawn(
                Api::<Service>::namespaced(remote.clone(), namespace),
                watcher::Config::default().fields(&format!("metadata.name={name}")),
                load_balancer_addresses,
                changed.clone(),
            )
        });
        let anchors = Watched::spawn(
            Api::<ConfigMap>::namespaced(remote.clone(), linkerd_namespace),
            watcher::Config::default().fields(&format!("metadata.name={TRUST_ROOTS_CONFIGMAP}")),
            |map| {
                map.data
                    .as_ref()
                    .and_then(|d| d.get(TRUST_ROOTS_KEY))
                    .cloned()
            },
            changed.clone(),
        );
        Self {
            gateway,
            anchors,
            anchors_at: format!("{linkerd_namespace}/{TRUST_ROOTS_CONFIGMAP}"),
            services: Watched::spawn(
                Api::<Service>::all(remote.clone()),
                watcher::Config::default().labels(selector),
                desired::kept_of_remote,
                changed.clone(),
            ),
            // Kubernetes' endpoints controller copies a Service's labels to
            // its Endpoints: the selector scopes them to what is exported.
            endpoints: Watched::spawn(
                Api::<Endpoints>::all(remote.clone()),
                watcher::Config::default().labels(selector),
                RemoteEndpoints::of,
                changed.clone(),
            ),
        }
    }

    /// The addresses the linked cluster's gateway Service advertises now
    /// (its LoadBalancer ingress), when the Link follows it and it has some.
    pub fn advertised_gateway(&self) -> Option<Vec<String>> {
        let view = self.gateway.as_ref()?.view()?;
        view.into_values().next().filter(|a| !a.is_empty())
    }

    /// The linked cluster's trust anchors (PEM), why they cannot be read,
    /// or `None` before the first answer.
    pub fn anchors(&self) -> Option<Result<String, String>> {
        let at = &self.anchors_at;
        let Some(view) = self.anchors.view() else {
            let error = self.anchors.error()?;
            return Some(Err(format!(
                "watching ConfigMap {at} of the linked cluster: {error}"
            )));
        };
        Some(match view.into_values().next() {
            Some(Some(pem)) => Ok(pem),
            Some(None) => Err(format!(
                "ConfigMap {at} of the linked cluster has no {TRUST_ROOTS_KEY}"
            )),
            None => Err(format!("the linked cluster has no ConfigMap {at}")),
        })
    }

    /// The watches' last error, when they are not connected.
    pub fn error(&self) -> Option<String> {
        self.services.error().or_else(|| self.endpoints.error())
    }
}

/// This Link's mirrors in this cluster.
#[derive(Debug)]
pub struct LocalViews {
    services: Watched<Existing>,
    endpoints: Watched<LocalEndpoints>,
}

impl LocalViews {
    /// Whether both watches have listed this cluster's mirrors once.
    pub fn is_listed(&self) -> bool {
        self.services.view().is_some() && self.endpoints.view().is_some()
    }

    /// Watches the mirrors of the Link to `cluster`.
    pub fn start(local: &kube::Client, cluster: &str, changed: &Arc<Notify>) -> Self {
        let config = watcher::Config::default().labels(&format!(
            "{MIRROR_MIRRORED_SERVICE}=true,{MIRROR_CLUSTER_NAME}={cluster}"
        ));
        Self {
            services: Watched::spawn(
                Api::<Service>::all(local.clone()),
                config.clone(),
                Existing::of,
                changed.clone(),
            ),
            endpoints: Watched::spawn(
                Api::<Endpoints>::all(local.clone()),
                config,
                LocalEndpoints::of,
                changed.clone(),
            ),
        }
    }
}

/// A Service's LoadBalancer ingress: IPs and host names.
fn load_balancer_addresses(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect()
}

fn complete<T: Clone + PartialEq + Send + 'static>(
    watched: &Watched<T>,
    what: &'static str,
) -> Result<BTreeMap<Key, T>, NotListed> {
    watched.view().ok_or_else(|| NotListed {
        what,
        error: watched.error(),
    })
}

/// Makes the mirrors in `local` match what `remote` shows, through
/// `gateway`, mirroring at most `max_services` remote Services.
pub async fn pass(
    remote: &RemoteViews,
    mirrors: &LocalViews,
    local: &kube::Client,
    gateway: &Gateway,
    max_services: usize,
) -> Result<Outcome, NotListed> {
    let remote_services = complete(&remote.services, "the linked cluster's exported Services")?;
    let remote_endpoints = complete(&remote.endpoints, "the linked cluster's Endpoints")?;
    let existing = complete(&mirrors.services, "this cluster's mirror Services")?;
    let existing_endpoints = complete(&mirrors.endpoints, "this cluster's mirror Endpoints")?;
    let mut outcome = Outcome::default();
    let cluster_ip = |key: &Key| {
        existing
            .get(key)
            .and_then(|seen| seen.cluster_ip.clone())
            .filter(|ip| ip != "None")
    };
    // Those already mirrored first (a stable sort keeps the rest in key
    // order): new exports past the cap never displace a mirror, and no
    // mirror is even built for a Service past it.
    let mirrored_now = |(namespace, name): &Key| {
        existing.contains_key(&(namespace.clone(), format!("{name}-{}", gateway.cluster)))
    };
    let mut order: Vec<&Key> = remote_services.keys().collect();
    order.sort_by_key(|key| !mirrored_now(key));
    let mut desired_services: BTreeMap<Key, Service> = BTreeMap::new();
    let mut desired_endpoints: Vec<Endpoints> = Vec::new();
    for key in order {
        if outcome.mirrors >= max_services {
            outcome.over_cap.push(key.clone());
            continue;
        }
        let endpoints = remote_endpoints.get(key).cloned().unwrap_or_default();
        match desired::mirrors(&remote_services[key], &endpoints, gateway, &cluster_ip) {
            Ok(mirrors) => {
                outcome.mirrors += 1;
                for mirror in mirrors {
                    desired_endpoints.push(mirror.endpoints);
                    desired_services.insert(key_of(&mirror.service.metadata), mirror.service);
                }
            }
            Err(invalid) => outcome.invalid.push((key.clone(), invalid)),
        }
    }
    let plan = desired::plan(&desired_services, &existing);
    // Names that must not be written this pass: held by someone else, or
    // not checked.
    let mut hands_off: BTreeSet<Key> = BTreeSet::new();
    for key in &plan.conflicts {
        hands_off.insert(key.clone());
        outcome
            .conflicts
            .push((key.clone(), held_message("Service", key)));
    }
    // A new mirror's name may be held by a Service without the mirror's
    // labels, which the local view does not show: look before writing.
    let new_names = plan.create.iter().map(|s| key_of(&s.metadata));
    for (key, held) in in_flight(new_names.map(|key| held_by_another::<Service>(local, key))).await
    {
        match held {
            Ok(false) => {}
            Ok(true) => {
                outcome
                    .conflicts
                    .push((key.clone(), held_message("Service", &key)));
                hands_off.insert(key);
            }
            Err(error) => {
                outcome.failed.push((key.clone(), error));
                hands_off.insert(key);
            }
        }
    }
    // A mirror that must change between headless and not is deleted first
    // (the API server does not change a Service's cluster IP).
    let replaced = plan.replace.iter().map(|s| {
        let key = key_of(&s.metadata);
        delete_mirror(local, &key, &existing, &existing_endpoints)
    });
    for result in in_flight(replaced).await {
        if let Err(failed) = result {
            outcome.failed.push(failed);
        }
    }
    // Writes go out WRITES_IN_FLIGHT at a time: a thousand new exports are
    // mirrored in seconds, not one round trip after another.
    let services = plan
        .create
        .iter()
        .chain(&plan.update)
        .chain(&plan.replace)
        .filter(|s| !hands_off.contains(&key_of(&s.metadata)));
    for result in in_flight(services.map(|service| apply(local, service, "Service"))).await {
        if let Err(failed) = result {
            outcome.failed.push(failed);
        }
    }
    let mut endpoints_to_write = Vec::new();
    let mut unseen_endpoints = Vec::new();
    for endpoints in &desired_endpoints {
        let key = key_of(&endpoints.metadata);
        if hands_off.contains(&key) {
            continue;
        }
        match existing_endpoints.get(&key) {
            Some(seen) if !seen.owned => outcome
                .conflicts
                .push((key.clone(), held_message("Endpoints", &key))),
            Some(seen) if seen.content == EndpointsContent::of(endpoints) => {}
            Some(_) => endpoints_to_write.push(endpoints),
            None => unseen_endpoints.push(endpoints),
        }
    }
    let checks = unseen_endpoints.iter().map(|e| {
        let check = held_by_another::<Endpoints>(local, key_of(&e.metadata));
        async move { (check.await, *e) }
    });
    for ((key, held), endpoints) in in_flight(checks).await {
        match held {
            Ok(false) => endpoints_to_write.push(endpoints),
            Ok(true) => outcome
                .conflicts
                .push((key.clone(), held_message("Endpoints", &key))),
            Err(error) => outcome.failed.push((key, error)),
        }
    }
    let writes = endpoints_to_write.into_iter();
    for result in in_flight(writes.map(|e| apply(local, e, "Endpoints"))).await {
        match result {
            Ok(()) => outcome.endpoints_written += 1,
            Err(failed) => outcome.failed.push(failed),
        }
    }
    let deletions = plan
        .delete
        .iter()
        .map(|key| delete_mirror(local, key, &existing, &existing_endpoints));
    for result in in_flight(deletions).await {
        if let Err(failed) = result {
            outcome.failed.push(failed);
        }
    }
    outcome.plan = plan;
    Ok(outcome)
}

/// What a conflict on `key` says.
fn held_message(kind: &str, (namespace, name): &Key) -> String {
    format!(
        "{kind} {namespace}/{name} exists and was not written by the mirror \
         (no {FIELD_MANAGER} field manager): left alone"
    )
}

/// Whether an object named `key` exists that the mirror did not write.
fn held_by_another<K>(
    local: &kube::Client,
    key: Key,
) -> impl std::future::Future<Output = (Key, Result<bool, String>)> + Send + 'static
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api = Api::<K>::namespaced(local.clone(), &key.0);
    async move {
        let found = api.get_opt(&key.1).await;
        let held = found
            .map(|object| object.is_some_and(|o| !written_by_mirror(o.meta())))
            .map_err(|e| format!("looking up {}/{}: {e}", key.0, key.1));
        (key, held)
    }
}

/// Deletes a mirror Service and its Endpoints (no selector: the API server
/// would keep them otherwise), each only as the object seen in the views
/// (its uid as a precondition) and the Endpoints only if the mirror wrote
/// them.
fn delete_mirror(
    local: &kube::Client,
    key: &Key,
    services: &BTreeMap<Key, Existing>,
    endpoints: &BTreeMap<Key, LocalEndpoints>,
) -> impl std::future::Future<Output = Result<(), (Key, String)>> + Send + use<> {
    let only = |uid: Option<String>| DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let service_uid = services.get(key).and_then(|s| s.uid.clone());
    let endpoints_uid = endpoints
        .get(key)
        .filter(|e| e.owned)
        .map(|e| e.uid.clone());
    let (namespace, name) = key.clone();
    let local = local.clone();
    async move {
        if let Some(uid) = endpoints_uid {
            let _ = Api::<Endpoints>::namespaced(local.clone(), &namespace)
                .delete(&name, &only(uid))
                .await;
        }
        Api::<Service>::namespaced(local, &namespace)
            .delete(&name, &only(service_uid))
            .await
            .map(|_| ())
            .map_err(|e| ((namespace.clone(), name.clone()), e.to_string()))
    }
}

/// Server-side applies `object` (a `kind` of the core API) as the mirror.
fn apply<K>(
    local: &kube::Client,
    object: &K,
    kind: &str,
) -> impl std::future::Future<Output = Result<(), (Key, String)>> + Send + 'static
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + 'static,
{
    let key = key_of(object.meta());
    let api = Api::<K>::namespaced(local.clone(), &key.0);
    let body = with_kind(object, kind);
    async move {
        api.patch(
            &key.1,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map(|_| ())
        .map_err(|e| (key, e.to_string()))
    }
}

/// How many writes a pass has in flight at once.
const WRITES_IN_FLIGHT: usize = 16;

/// Runs `writes`, [`WRITES_IN_FLIGHT`] at a time.
async fn in_flight<F: std::future::Future>(writes: impl Iterator<Item = F>) -> Vec<F::Output> {
    // Collected first: a stream over the iterator itself would carry its
    // closure's higher-ranked type into the future, which then is not Send.
    let writes: Vec<F> = writes.collect();
    futures::stream::iter(writes)
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect()
        .await
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The object as JSON with its apiVersion and kind, as server-side apply wants.
fn with_kind<T: serde::Serialize>(object: &T, kind: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    value["apiVersion"] = "v1".into();
    value["kind"] = kind.into();
    value
}
