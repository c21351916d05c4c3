//! The destination index: everything the destination service knows, kept
//! from Kubernetes watch events, and the answers it gives. Pure: events go
//! in through `apply_*`/`delete_*`, answers come out through watch channels
//! that every open `Get` and `GetProfile` stream reads. No I/O, no clock,
//! so tests feed events and read answers like a reducer's.
//!
//! - [`model`]: the fields kept of each object.
//! - [`resolve`]: endpoint answers.
//! - [`profiles`]: ServiceProfile, HTTPRoute and TrafficSplit validation.

pub mod model;
pub mod profiles;
pub mod resolve;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use linkerd2_proxy_api::destination::{DestinationProfile, WeightedDst};
use mesh_api::crds::service_profile::ServiceProfile;
use mesh_api::crds::traffic_split::TrafficSplit;
use tokio::sync::watch;

use self::model::{Key, MirrorEndpoints, PodInfo, ServiceInfo, SliceInfo};
use self::profiles::{Profile, Split};
pub use self::resolve::{Endpoint, Hint, Protocol, Resolution};

/// What the index needs to know about its cluster.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    /// The cluster DNS domain (`cluster.local`).
    pub cluster_domain: String,
    /// The control plane's namespace (`linkerd`), part of identities.
    pub control_namespace: String,
    /// The trust domain (`cluster.local`).
    pub trust_domain: String,
    /// Ports treated as opaque when a Service does not say.
    pub default_opaque_ports: BTreeSet<u16>,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            control_namespace: mesh_api::labels::CONTROL_PLANE_NAMESPACE.into(),
            trust_domain: mesh_api::identity::DEFAULT_TRUST_DOMAIN.into(),
            default_opaque_ports: mesh_api::ports::DEFAULT_OPAQUE_PORTS
                .iter()
                .copied()
                .collect(),
        }
    }
}

/// What a lookup is keyed by once parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LookupKey {
    /// A Service port.
    Service(Key, u16),
    /// An address that is not a Service's cluster IP.
    Ip(SocketAddr),
    /// A pod of a headless Service by host name: answered as whatever the
    /// endpoint with that host name is now (a pod, or the cluster IP of a
    /// Service such as a headless mirror's endpoint mirror).
    Host(Key, String, u16),
}

/// The index.
#[derive(Debug, Default)]
pub struct Index {
    config: IndexConfig,
    services: HashMap<Key, ServiceInfo>,
    services_by_ip: HashMap<IpAddr, Key>,
    slices: HashMap<Key, SliceInfo>,
    slices_by_service: HashMap<Key, BTreeSet<String>>,
    mirror_endpoints: HashMap<Key, MirrorEndpoints>,
    pods: HashMap<Key, PodInfo>,
    pods_by_ip: HashMap<IpAddr, Key>,
    service_profiles: HashMap<Key, Profile>,
    splits: HashMap<Key, Split>,
    endpoint_watches: HashMap<LookupKey, watch::Sender<Resolution>>,
    profile_watches: HashMap<LookupKey, watch::Sender<DestinationProfile>>,
    label_watches: HashMap<Key, watch::Sender<Option<ServiceLabels>>>,
}

/// A Service's labels.
pub type ServiceLabels = std::collections::BTreeMap<String, String>;

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

impl Index {
    /// An empty index.
    pub fn new(config: IndexConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// How many Services, EndpointSlices and Pods it holds.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.services.len(), self.slices.len(), self.pods.len())
    }

    // ----- events -------------------------------------------------------

    /// A Service was created or changed.
    pub fn apply_service(&mut self, svc: &Service) {
        let Some(key) = key_of(&svc.metadata) else {
            return;
        };
        let info = model::service(svc);
        if let Some(old) = self.services.get(&key) {
            for ip in &old.cluster_ips {
                self.services_by_ip.remove(ip);
            }
        }
        for ip in &info.cluster_ips {
            self.services_by_ip.insert(*ip, key.clone());
        }
        let labels = info.labels.clone();
        self.services.insert(key.clone(), info);
        self.publish_labels(&key, Some(labels));
        self.refresh_service(&key);
    }

    /// A Service was deleted.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(old) = self.services.remove(&key) {
            for ip in &old.cluster_ips {
                self.services_by_ip.remove(ip);
            }
        }
        self.publish_labels(&key, None);
        self.refresh_service(&key);
    }

    fn publish_labels(&self, key: &Key, labels: Option<ServiceLabels>) {
        if let Some(tx) = self.label_watches.get(key) {
            tx.send_if_modified(|held| {
                let changed = *held != labels;
                *held = labels;
                changed
            });
        }
    }

    /// An EndpointSlice was created or changed.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let Some(key) = key_of(&slice.metadata) else {
            return;
        };
        let Some(info) = model::slice(slice) else {
            return;
        };
        let service = (key.0.clone(), info.service.clone());
        if let Some(old) = self.slices.insert(key.clone(), info)
            && old.service != service.1
        {
            let old_service = (key.0.clone(), old.service);
            if let Some(set) = self.slices_by_service.get_mut(&old_service) {
                set.remove(&key.1);
            }
            self.refresh_endpoints(&old_service);
        }
        self.slices_by_service
            .entry(service.clone())
            .or_default()
            .insert(key.1);
        self.refresh_endpoints(&service);
    }

    /// An EndpointSlice was deleted.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(old) = self.slices.remove(&key) {
            let service = (key.0.clone(), old.service);
            if let Some(set) = self.slices_by_service.get_mut(&service) {
                set.remove(&key.1);
                if set.is_empty() {
                    self.slices_by_service.remove(&service);
                }
            }
            self.refresh_endpoints(&service);
        }
    }

    /// The Endpoints of a mirrored Service were created or changed.
    pub fn apply_mirror_endpoints(&mut self, endpoints: &Endpoints) {
        let Some(key) = key_of(&endpoints.metadata) else {
            return;
        };
        self.mirror_endpoints
            .insert(key.clone(), model::mirror_endpoints(endpoints));
        self.refresh_endpoints(&key);
    }

    /// The Endpoints of a mirrored Service were deleted.
    pub fn delete_mirror_endpoints(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if self.mirror_endpoints.remove(&key).is_some() {
            self.refresh_endpoints(&key);
        }
    }

    /// A Pod was created or changed.
    pub fn apply_pod(&mut self, pod: &Pod) {
        let Some(key) = key_of(&pod.metadata) else {
            return;
        };
        let info = model::pod(pod);
        if self.pods.get(&key) == Some(&info) {
            return;
        }
        if let Some(old) = self.pods.get(&key) {
            for ip in &old.ips {
                if self.pods_by_ip.get(ip) == Some(&key) {
                    self.pods_by_ip.remove(ip);
                }
            }
        }
        for ip in &info.ips {
            self.pods_by_ip.insert(*ip, key.clone());
        }
        self.pods.insert(key.clone(), info);
        self.refresh_namespace_endpoints(&key.0);
    }

    /// A Pod was deleted.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(old) = self.pods.remove(&key) {
            for ip in &old.ips {
                if self.pods_by_ip.get(ip) == Some(&key) {
                    self.pods_by_ip.remove(ip);
                }
            }
            self.refresh_namespace_endpoints(namespace);
        }
    }

    /// A ServiceProfile was created or changed. An invalid one is refused
    /// with the reason, and its last valid version stays.
    pub fn apply_service_profile(&mut self, profile: &ServiceProfile) -> Result<(), String> {
        let Some(key) = key_of(&profile.metadata) else {
            return Ok(());
        };
        let parsed = profiles::service_profile(profile)?;
        self.service_profiles.insert(key.clone(), parsed);
        self.refresh_namespace_profiles(&key.0);
        Ok(())
    }

    /// A ServiceProfile was deleted.
    pub fn delete_service_profile(&mut self, namespace: &str, name: &str) {
        if self
            .service_profiles
            .remove(&(namespace.to_owned(), name.to_owned()))
            .is_some()
        {
            self.refresh_namespace_profiles(namespace);
        }
    }

    /// A TrafficSplit was created or changed (same rules as profiles).
    pub fn apply_traffic_split(&mut self, split: &TrafficSplit) -> Result<(), String> {
        let Some(key) = key_of(&split.metadata) else {
            return Ok(());
        };
        let parsed = profiles::traffic_split(split)?;
        self.splits.insert(key.clone(), parsed);
        self.refresh_namespace_profiles(&key.0);
        Ok(())
    }

    /// A TrafficSplit was deleted.
    pub fn delete_traffic_split(&mut self, namespace: &str, name: &str) {
        if self
            .splits
            .remove(&(namespace.to_owned(), name.to_owned()))
            .is_some()
        {
            self.refresh_namespace_profiles(namespace);
        }
    }

    // ----- lookups ------------------------------------------------------

    /// What a target is: a Service port (by name or cluster IP) or an IP.
    pub fn lookup_key(&self, target: &crate::authority::Target) -> LookupKey {
        match target {
            crate::authority::Target::Service {
                namespace,
                name,
                port,
            } => LookupKey::Service((namespace.clone(), name.clone()), *port),
            crate::authority::Target::Host {
                namespace,
                name,
                hostname,
                port,
            } => LookupKey::Host((namespace.clone(), name.clone()), hostname.clone(), *port),
            crate::authority::Target::Ip(addr) => self.ip_key(*addr),
        }
    }

    fn ip_key(&self, addr: SocketAddr) -> LookupKey {
        match self.services_by_ip.get(&addr.ip()) {
            Some(key) => LookupKey::Service(key.clone(), addr.port()),
            None => LookupKey::Ip(addr),
        }
    }

    /// What the endpoint named `hostname` of the Service `key` is now, on
    /// `port`: `None` while no endpoint has that host name.
    fn host_key(&self, key: &Key, hostname: &str, port: u16) -> Option<LookupKey> {
        let ip = self
            .slices_by_service
            .get(key)?
            .iter()
            .filter_map(|name| self.slices.get(&(key.0.clone(), name.clone())))
            .flat_map(|slice| &slice.addresses)
            .find(|a| a.hostname.as_deref() == Some(hostname))?
            .ip;
        Some(self.ip_key(SocketAddr::new(ip, port)))
    }

    /// Follows the endpoints of `key`: the receiver holds the current answer
    /// and changes whenever it does.
    pub fn watch_endpoints(&mut self, key: &LookupKey) -> watch::Receiver<Resolution> {
        if let Some(tx) = self.endpoint_watches.get(key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(self.resolve(key));
        self.endpoint_watches.insert(key.clone(), tx);
        rx
    }

    /// Follows the profile of `key`.
    pub fn watch_profile(&mut self, key: &LookupKey) -> watch::Receiver<DestinationProfile> {
        if let Some(tx) = self.profile_watches.get(key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(self.profile(key));
        self.profile_watches.insert(key.clone(), tx);
        rx
    }

    /// Follows the labels of the Service `key`: `None` while it does not
    /// exist.
    pub fn watch_service_labels(&mut self, key: &Key) -> watch::Receiver<Option<ServiceLabels>> {
        if let Some(tx) = self.label_watches.get(key) {
            return tx.subscribe();
        }
        let labels = self.services.get(key).map(|s| s.labels.clone());
        let (tx, rx) = watch::channel(labels);
        self.label_watches.insert(key.clone(), tx);
        rx
    }

    /// Drops watches nobody reads any more.
    pub fn forget_unwatched(&mut self) {
        self.endpoint_watches
            .retain(|_, tx| tx.receiver_count() > 0);
        self.profile_watches.retain(|_, tx| tx.receiver_count() > 0);
        self.label_watches.retain(|_, tx| tx.receiver_count() > 0);
    }

    fn view(&self) -> resolve::View<'_> {
        resolve::View {
            domain: &self.config.cluster_domain,
            control_namespace: &self.config.control_namespace,
            trust_domain: &self.config.trust_domain,
            default_opaque_ports: &self.config.default_opaque_ports,
            pods: &self.pods,
        }
    }

    /// The current endpoints of `key`.
    pub fn resolve(&self, key: &LookupKey) -> Resolution {
        match key {
            LookupKey::Service(svc_key, port) => {
                let Some(service) = self.services.get(svc_key) else {
                    return Resolution::NotFound;
                };
                let slices: Vec<&SliceInfo> = self
                    .slices_by_service
                    .get(svc_key)
                    .into_iter()
                    .flatten()
                    .filter_map(|name| self.slices.get(&(svc_key.0.clone(), name.clone())))
                    .collect();
                self.view().service(
                    &svc_key.0,
                    &svc_key.1,
                    *port,
                    service,
                    &slices,
                    self.mirror_endpoints.get(svc_key),
                )
            }
            LookupKey::Host(svc_key, hostname, port) => {
                match self.host_key(svc_key, hostname, *port) {
                    Some(inner) => self.resolve(&inner),
                    None => Resolution::NotFound,
                }
            }
            LookupKey::Ip(addr) => match self
                .pods_by_ip
                .get(&addr.ip())
                .and_then(|k| Some((k, self.pods.get(k)?)))
            {
                Some((pod_key, pod)) => self.view().pod_ip(&pod_key.0, pod, *addr),
                None => Resolution::NotFound,
            },
        }
    }

    /// The current profile of `key`.
    pub fn profile(&self, key: &LookupKey) -> DestinationProfile {
        match key {
            LookupKey::Service((ns, name), port) => self.service_profile(ns, name, *port),
            // One pod is asked for: its Service's routes apply, its
            // TrafficSplit does not (it would send the pod's traffic
            // elsewhere).
            LookupKey::Host(svc_key, hostname, port) => {
                let inner = self
                    .host_key(svc_key, hostname, *port)
                    .unwrap_or(LookupKey::Service(svc_key.clone(), *port));
                DestinationProfile {
                    dst_overrides: Vec::new(),
                    ..self.profile(&inner)
                }
            }
            LookupKey::Ip(addr) => {
                let endpoint = match self.resolve(key) {
                    Resolution::Endpoints { endpoints, .. } => endpoints.get(addr).cloned(),
                    Resolution::NotFound => None,
                };
                let pod_opaque = self
                    .pods_by_ip
                    .get(&addr.ip())
                    .and_then(|k| self.pods.get(k))
                    .and_then(|p| p.opaque_ports.as_ref())
                    .unwrap_or(&self.config.default_opaque_ports)
                    .contains(&addr.port());
                let endpoint = endpoint.unwrap_or(Endpoint {
                    weight: resolve::DEFAULT_WEIGHT,
                    labels: Default::default(),
                    identity: None,
                    hint: Hint::default(),
                    authority_override: None,
                });
                DestinationProfile {
                    opaque_protocol: pod_opaque,
                    retry_budget: Some(profiles::default_budget()),
                    endpoint: Some(crate::convert::weighted_addr(*addr, &endpoint)),
                    ..DestinationProfile::default()
                }
            }
        }
    }

    fn service_profile(&self, ns: &str, name: &str, port: u16) -> DestinationProfile {
        let domain = &self.config.cluster_domain;
        let fqn = format!("{name}.{ns}.svc.{domain}");
        let opaque = self
            .services
            .get(&(ns.to_owned(), name.to_owned()))
            .is_some_and(|svc| self.view().service_port_opaque(svc, port));
        let (routes, budget) = match self.service_profiles.get(&(ns.to_owned(), fqn.clone())) {
            Some(profile) => (profile.routes.clone(), profile.budget),
            // HTTPRoutes reach proxies through the policy controller's
            // OutboundPolicies, as in Linkerd.
            None => (Vec::new(), profiles::default_budget()),
        };
        let mut splits: Vec<(&Key, &Split)> = self
            .splits
            .iter()
            .filter(|((sns, _), s)| sns == ns && s.service == name)
            .collect();
        splits.sort_by(|a, b| a.0.cmp(b.0));
        let dst_overrides = splits
            .first()
            .map(|(_, split)| {
                split
                    .backends
                    .iter()
                    .map(|(backend, weight)| WeightedDst {
                        authority: backend_authority(backend, ns, domain, port),
                        weight: *weight,
                        backend_ref: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        DestinationProfile {
            fully_qualified_name: if self
                .services
                .contains_key(&(ns.to_owned(), name.to_owned()))
            {
                fqn
            } else {
                String::new()
            },
            opaque_protocol: opaque,
            routes,
            retry_budget: Some(budget),
            dst_overrides,
            ..DestinationProfile::default()
        }
    }

    // ----- publishing ---------------------------------------------------

    fn refresh_service(&mut self, key: &Key) {
        self.refresh_endpoints(key);
        self.refresh_namespace_profiles(&key.0.clone());
    }

    fn refresh_endpoints(&mut self, key: &Key) {
        let keys: Vec<LookupKey> = self
            .endpoint_watches
            .keys()
            .filter(|k| match k {
                LookupKey::Service(k, _) => k == key,
                LookupKey::Host(..) => true,
                LookupKey::Ip(_) => false,
            })
            .cloned()
            .collect();
        self.publish_endpoints(keys);
    }

    fn refresh_namespace_endpoints(&mut self, namespace: &str) {
        let keys: Vec<LookupKey> = self
            .endpoint_watches
            .keys()
            .filter(|k| match k {
                LookupKey::Service((ns, _), _) => ns == namespace,
                LookupKey::Host(..) | LookupKey::Ip(_) => true,
            })
            .cloned()
            .collect();
        self.publish_endpoints(keys);
        let ip_keys: Vec<LookupKey> = self
            .profile_watches
            .keys()
            .filter(|k| matches!(k, LookupKey::Ip(_) | LookupKey::Host(..)))
            .cloned()
            .collect();
        self.publish_profiles(ip_keys);
    }

    fn refresh_namespace_profiles(&mut self, namespace: &str) {
        let keys: Vec<LookupKey> = self
            .profile_watches
            .keys()
            .filter(|k| match k {
                LookupKey::Service((ns, _), _) => ns == namespace,
                LookupKey::Host(..) => true,
                LookupKey::Ip(_) => false,
            })
            .cloned()
            .collect();
        self.publish_profiles(keys);
    }

    fn publish_endpoints(&mut self, keys: Vec<LookupKey>) {
        for key in keys {
            let next = self.resolve(&key);
            if let Some(tx) = self.endpoint_watches.get(&key) {
                if tx.receiver_count() == 0 {
                    self.endpoint_watches.remove(&key);
                    continue;
                }
                tx.send_if_modified(|current| {
                    let changed = *current != next;
                    if changed {
                        *current = next;
                    }
                    changed
                });
            }
        }
    }

    fn publish_profiles(&mut self, keys: Vec<LookupKey>) {
        for key in keys {
            let next = self.profile(&key);
            if let Some(tx) = self.profile_watches.get(&key) {
                if tx.receiver_count() == 0 {
                    self.profile_watches.remove(&key);
                    continue;
                }
                tx.send_if_modified(|current| {
                    let changed = *current != next;
                    if changed {
                        *current = next;
                    }
                    changed
                });
            }
        }
    }
}

/// `backend` (a Service name or an FQDN, with or without port) as the
/// authority a proxy resolves.
fn backend_authority(backend: &str, namespace: &str, domain: &str, port: u16) -> String {
    let host = if backend.contains('.') {
        backend.trim_end_matches('.').to_owned()
    } else {
        format!("{backend}.{namespace}.svc.{domain}")
    };
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests;
