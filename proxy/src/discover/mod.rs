//! The client of the destination service: `GetProfile` for every outbound
//! address in the profile networks, `Get` for every Service (and split
//! backend) traffic goes to; and, beside each profile, the policy
//! controller's `OutboundPolicies` for the same target, whose HTTPRoutes
//! fold into the profile ([`policy`]) unless a ServiceProfile or
//! TrafficSplit already routes it.
//!
//! Each lookup is one long-lived watch, shared by every connection that
//! needs it and published through a `tokio::sync::watch` channel. When the
//! stream breaks (a destination pod restarts, the network blips), the last
//! answer keeps serving while the watch reconnects with jittered back-off;
//! the new stream's first answer then replaces the old state, so endpoints
//! removed during the outage go away and nothing else changes. A watch no
//! connection has used for a while is closed. Each cache holds at most
//! [`MAX_SHARED_WATCHES`] watches: past that (an application dialling
//! address after address), a lookup gets a watch of its own that ends
//! with its last user, so memory follows the connections (themselves
//! capped), not every address ever dialled.

pub mod endpoints;
pub mod policy;
pub mod profile;

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::destination::{self as api, GetDestination};
use linkerd2_proxy_api::outbound::outbound_policies_client::OutboundPoliciesClient;
use linkerd2_proxy_api::outbound::{OutboundPolicy, TrafficSpec, traffic_spec};
use rand::RngExt;
use tokio::sync::watch;
use tonic::transport::Channel;

pub use endpoints::{Endpoint, EndpointSet};
pub use profile::Profile;

use mesh_core::identity::schedule::Backoff;

/// What a profile watch holds: `None` until the first answer.
pub type ProfileWatch = watch::Receiver<Option<Arc<Profile>>>;
/// What an endpoint watch holds.
pub type EndpointsWatch = watch::Receiver<Arc<EndpointSet>>;

/// How long a target's first profile waits for the policy controller's
/// first answer about it.
const POLICY_WAIT: Duration = Duration::from_secs(1);

/// How often an unused watch is looked at, and closed when still unused.
const IDLE_CHECK: Duration = Duration::from_secs(60);

/// How many shared watches each cache (profiles, endpoints) holds at most.
pub const MAX_SHARED_WATCHES: usize = 10_000;

type Cache<K, T> = Arc<Mutex<HashMap<K, watch::Receiver<T>>>>;

/// The destination service's client.
#[derive(Debug)]
pub struct Discovery {
    client: DestinationClient<Channel>,
    context: String,
    networks: Vec<IpNet>,
    backoff: Backoff,
    profiles: Cache<String, Option<Arc<Profile>>>,
    endpoints: Cache<String, Arc<EndpointSet>>,
    /// The policy controller's outbound API and this proxy's workload.
    policies: Option<(OutboundPoliciesClient<Channel>, String)>,
}

impl Discovery {
    /// A client on `channel`, sending `context` as the context token and
    /// looking up profiles for addresses in `networks`; with `policies`
    /// (the policy controller's channel and this proxy's workload), each
    /// profile also follows the target's `OutboundPolicies`.
    pub fn new(
        channel: Channel,
        context: String,
        networks: Vec<IpNet>,
        policies: Option<(Channel, String)>,
    ) -> Arc<Self> {
        Arc::new(Self {
            client: DestinationClient::new(channel),
            context,
            networks,
            backoff: Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
            profiles: Arc::default(),
            endpoints: Arc::default(),
            policies: policies
                .map(|(channel, workload)| (OutboundPoliciesClient::new(channel), workload)),
        })
    }

    /// Watches the profile of `addr`, or `None` when `addr` is outside the
    /// profile networks (it is then forwarded as it came).
    pub fn profile(self: &Arc<Self>, addr: SocketAddr) -> Option<ProfileWatch> {
        if !self.networks.iter().any(|n| n.contains(&addr.ip())) {
            return None;
        }
        Some(self.profile_of(addr.to_string(), addr.port()))
    }

    /// Watches the profile of a Service by name (`name.ns.svc.domain:port`),
    /// as a gateway looks up the Services it forwards to.
    pub fn profile_named(self: &Arc<Self>, authority: &str) -> ProfileWatch {
        let port = authority
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_default();
        self.profile_of(authority.to_owned(), port)
    }

    fn profile_of(self: &Arc<Self>, path: String, port: u16) -> ProfileWatch {
        let this = self.clone();
        watch_shared(
            &self.profiles,
            MAX_SHARED_WATCHES,
            path.clone(),
            None,
            move |tx| this.run_routed_profile(path, port, tx),
        )
    }

    /// The profile of `addr`, with the policy controller's routes folded
    /// in when it has any: both watches run side by side, and every
    /// answer of either republishes the merge. The first profile waits
    /// for the policy's first answer (at most [`POLICY_WAIT`]), so a new
    /// client's first request already takes its HTTPRoute.
    async fn run_routed_profile(
        self: Arc<Self>,
        addr: String,
        port: u16,
        tx: watch::Sender<Option<Arc<Profile>>>,
    ) {
        let Some((client, workload)) = self.policies.clone() else {
            return self.run_profile(addr, port, tx).await;
        };
        let (profile_tx, mut profiles) = watch::channel(None);
        // `None` until the controller answers; `Some(None)`: no policy.
        let (policy_tx, mut policies) = watch::channel(None::<Option<Arc<OutboundPolicy>>>);
        // Dropping the set (when the shared watch goes idle) stops both.
        let mut lookups = tokio::task::JoinSet::new();
        lookups.spawn(self.clone().run_profile(addr.clone(), port, profile_tx));
        lookups.spawn(self.clone().run_policy(client, workload, addr, policy_tx));
        let (mut profile_done, mut policy_done) = (false, false);
        let mut policy_deadline = None;
        loop {
            let profile = profiles.borrow_and_update().clone();
            let policy = policies.borrow_and_update().clone();
            if profile.is_some() && policy_deadline.is_none() {
                policy_deadline = Some(tokio::time::Instant::now() + POLICY_WAIT);
            }
            let waiting = policy.is_none()
                && !policy_done
                && policy_deadline.is_some_and(|d| tokio::time::Instant::now() < d);
            if let Some(profile) = profile.filter(|_| !waiting) {
                let merged = match policy.flatten() {
                    Some(policy) => policy::apply(&profile, &policy).map_or(profile, Arc::new),
                    None => profile,
                };
                tx.send_replace(Some(merged));
            }
            if profile_done && policy_done {
                // Both lookups ended for good: the answer stays.
                tx.closed().await;
                return;
            }
            let deadline = policy_deadline.filter(|_| waiting);
            tokio::select! {
                changed = profiles.changed(), if !profile_done => profile_done = changed.is_err(),
                changed = policies.changed(), if !policy_done => policy_done = changed.is_err(),
                () = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => {}
                () = tx.closed() => return,
            }
        }
    }

    /// Follows `OutboundPolicies.Watch` for `addr` (an `ip:port` or a
    /// Service authority); NOT_FOUND (not a Service) ends it with no
    /// policy.
    async fn run_policy(
        self: Arc<Self>,
        client: OutboundPoliciesClient<Channel>,
        workload: String,
        addr: String,
        tx: watch::Sender<Option<Option<Arc<OutboundPolicy>>>>,
    ) {
        let target = match addr.parse::<SocketAddr>() {
            Ok(socket) => traffic_spec::Target::Addr(socket.into()),
            Err(_) => traffic_spec::Target::Authority(addr.clone()),
        };
        let spec = TrafficSpec {
            source_workload: workload,
            target: Some(target),
        };
        let mut failures = 0u32;
        loop {
            let mut client = client.clone();
            match client.watch(spec.clone()).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    while let Ok(Some(policy)) = stream.message().await {
                        failures = 0;
                        tx.send_replace(Some(Some(Arc::new(policy))));
                    }
                }
                Err(status) if is_final(&status) => {
                    tracing::debug!(%addr, "no outbound policy: {status}");
                    tx.send_replace(Some(None));
                    return;
                }
                Err(status) => tracing::debug!(%addr, "OutboundPolicies.Watch: {status}"),
            }
            failures = failures.saturating_add(1);
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(self.delay(failures)).await;
        }
    }

    /// Watches the endpoints of `authority` (`name:port`).
    pub fn endpoints(self: &Arc<Self>, authority: &str) -> EndpointsWatch {
        let this = self.clone();
        let key = authority.to_owned();
        watch_shared(
            &self.endpoints,
            MAX_SHARED_WATCHES,
            key.clone(),
            Arc::default(),
            move |tx| this.run_endpoints(key, tx),
        )
    }

    fn request(&self, path: String) -> GetDestination {
        GetDestination {
            scheme: "k8s".into(),
            path,
            context_token: self.context.clone(),
        }
    }

    async fn run_profile(
        self: Arc<Self>,
        addr: String,
        port: u16,
        tx: watch::Sender<Option<Arc<Profile>>>,
    ) {
        let mut failures = 0u32;
        loop {
            let mut client = self.client.clone();
            match client.get_profile(self.request(addr.clone())).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(profile)) => {
                                failures = 0;
                                let profile = profile::from_api(profile, port);
                                tx.send_replace(Some(Arc::new(profile)));
                            }
                            Ok(None) => break,
                            Err(status) => {
                                tracing::debug!(%addr, "profile stream: {status}");
                                if status.code() == tonic::Code::PermissionDenied {
                                    tx.send_replace(Some(Arc::new(Profile::refused(&status))));
                                }
                                break;
                            }
                        }
                    }
                }
                Err(status) if is_final(&status) => {
                    tracing::debug!(%addr, "no profile: {status}");
                    tx.send_replace(Some(Arc::new(Profile::refused(&status))));
                    return;
                }
                Err(status) if status.code() == tonic::Code::PermissionDenied => {
                    // A gateway asking for what it does not export: refused
                    // now, asked again (it may be exported later).
                    tracing::debug!(%addr, "profile refused: {status}");
                    tx.send_replace(Some(Arc::new(Profile::refused(&status))));
                }
                Err(status) => {
                    tracing::debug!(%addr, "GetProfile: {status}");
                }
            }
            failures = failures.saturating_add(1);
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(self.delay(failures)).await;
        }
    }

    async fn run_endpoints(
        self: Arc<Self>,
        authority: String,
        tx: watch::Sender<Arc<EndpointSet>>,
    ) {
        let mut failures = 0u32;
        loop {
            let mut client = self.client.clone();
            match client.get(self.request(authority.clone())).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    let mut reset = true;
                    loop {
                        match stream.message().await {
                            Ok(Some(api::Update {
                                update: Some(update),
                            })) => {
                                failures = 0;
                                tx.send_modify(|set| Arc::make_mut(set).apply(update, reset));
                                reset = false;
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(status) => {
                                tracing::debug!(%authority, "endpoint stream: {status}");
                                break;
                            }
                        }
                    }
                }
                Err(status) if is_final(&status) => {
                    tracing::warn!(%authority, "the destination service refuses {authority}: {status}");
                    tx.send_modify(|set| {
                        let set = Arc::make_mut(set);
                        set.resolved = true;
                        set.exists = false;
                    });
                    return;
                }
                Err(status) if status.code() == tonic::Code::PermissionDenied => {
                    // Not exported to this gateway: no endpoints until it is.
                    tracing::debug!(%authority, "endpoints refused: {status}");
                    tx.send_replace(Arc::new(EndpointSet {
                        resolved: true,
                        exists: false,
                        ..EndpointSet::default()
                    }));
                }
                Err(status) => tracing::debug!(%authority, "Get: {status}"),
            }
            failures = failures.saturating_add(1);
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(self.delay(failures)).await;
        }
    }

    fn delay(&self, failures: u32) -> Duration {
        self.backoff
            .delay(failures.saturating_sub(1), rand::rng().random::<f64>())
    }
}

/// Whether a lookup error will not change by asking again.
fn is_final(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument | tonic::Code::NotFound
    )
}

/// The cached watch for `key`, started with `run` when there is none. The
/// watch task ends, and leaves the cache, once only the cache has held it
/// for an idle period. With `max` watches cached already, the new one is
/// not shared: its task ends once its last receiver is dropped.
fn watch_shared<K, T, F, Fut>(
    cache: &Cache<K, T>,
    max: usize,
    key: K,
    initial: T,
    run: F,
) -> watch::Receiver<T>
where
    K: Hash + Eq + Clone + Send + 'static,
    T: Send + Sync + 'static,
    F: FnOnce(watch::Sender<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rx) = map.get(&key) {
        return rx.clone();
    }
    let (tx, rx) = watch::channel(initial);
    if map.len() >= max {
        drop(map);
        let probe = tx.clone();
        let work = run(tx);
        tokio::spawn(async move {
            tokio::select! {
                () = work => {}
                () = probe.closed() => {}
            }
        });
        return rx;
    }
    map.insert(key.clone(), rx.clone());
    let probe = tx.clone();
    let work = run(tx);
    let cache = cache.clone();
    tokio::spawn(async move {
        tokio::pin!(work);
        let mut idle_ticks = 0;
        loop {
            tokio::select! {
                () = &mut work => break,
                () = tokio::time::sleep(IDLE_CHECK) => {}
            }
            let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
            // The cache's own receiver is one; nobody else holds it.
            if probe.receiver_count() <= 1 {
                idle_ticks += 1;
                if idle_ticks >= 2 {
                    map.remove(&key);
                    return;
                }
            } else {
                idle_ticks = 0;
            }
        }
        // The lookup ended for good (the answer cannot change): keep the
        // answer cached, it stays true.
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup that publishes its key and runs until dropped.
    fn lookup(key: u32) -> impl FnOnce(watch::Sender<u32>) -> std::future::Ready<()> {
        move |tx| {
            tx.send_replace(key);
            std::future::ready(())
        }
    }

    #[tokio::test]
    async fn past_its_cap_a_cache_hands_out_watches_it_does_not_keep() {
        let cache: Cache<u32, u32> = Arc::default();
        let first = watch_shared(&cache, 2, 1, 0, lookup(1));
        let again = watch_shared(&cache, 2, 1, 0, |_| async { panic!("not run twice") });
        assert!(first.same_channel(&again), "one shared watch per key");
        let _second = watch_shared(&cache, 2, 2, 0, lookup(2));
        let third = watch_shared(&cache, 2, 3, 0, lookup(3));
        tokio::task::yield_now().await;
        assert_eq!(*third.borrow(), 3, "served, though not cached");
        let cached = cache.lock().expect("cache").len();
        assert_eq!(cached, 2, "the cache stays at its cap");
    }
}
