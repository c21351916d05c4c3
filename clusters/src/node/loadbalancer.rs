//! Addresses for Services of type LoadBalancer, as kind users get them from
//! MetalLB: each such Service gets an address from the node's pool on the
//! WAN side, put on the WAN interface (so the other cluster reaches it) and
//! written to `status.loadBalancer.ingress`; kube-proxy does the rest.
//!
//! An address, once given, stays with its Service for the Service's life:
//! on restart the agent reads the addresses back from the Services' status
//! before it gives out any new one, so a gateway's address never changes
//! under a Link that points at it. `spec.loadBalancerIP` is honoured when
//! it is in the pool and free; Services with another `loadBalancerClass`
//! are left to that class.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::netns;
use crate::topology::Cidr;

/// Gives out the pool's addresses, one per Service (`namespace/name`).
#[derive(Debug)]
pub struct Allocator {
    pool: Cidr,
    assigned: BTreeMap<String, Ipv4Addr>,
}

impl Allocator {
    /// An allocator for `pool` (its first and last addresses are not used).
    pub fn new(pool: Cidr) -> Self {
        Self {
            pool,
            assigned: BTreeMap::new(),
        }
    }

    /// The address of `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<Ipv4Addr> {
        self.assigned.get(key).copied()
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.pool.contains(ip)
            && ip != self.pool.network
            && ip != self.pool.nth(self.pool.size() - 1)
    }

    fn holder(&self, ip: Ipv4Addr) -> Option<&str> {
        self.assigned
            .iter()
            .find(|(_, held)| **held == ip)
            .map(|(key, _)| key.as_str())
    }

    /// Gives `key` an address: the one it has, else `wanted` (from
    /// `spec.loadBalancerIP` or an earlier status) when usable and free,
    /// else the lowest free one.
    pub fn allocate(&mut self, key: &str, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, String> {
        if let Some(ip) = self.get(key) {
            return Ok(ip);
        }
        if let Some(ip) = wanted {
            if !self.usable(ip) {
                return Err(format!(
                    "{ip} is not in the load-balancer pool {}",
                    self.pool
                ));
            }
            if let Some(other) = self.holder(ip) {
                return Err(format!("{ip} is already given to {other}"));
            }
            self.assigned.insert(key.to_string(), ip);
            return Ok(ip);
        }
        let free = (1..self.pool.size().saturating_sub(1))
            .map(|n| self.pool.nth(n))
            .find(|ip| self.holder(*ip).is_none())
            .ok_or_else(|| format!("the load-balancer pool {} is exhausted", self.pool))?;
        self.assigned.insert(key.to_string(), free);
        Ok(free)
    }

    /// Takes `key`'s address back.
    pub fn release(&mut self, key: &str) -> Option<Ipv4Addr> {
        self.assigned.remove(key)
    }
}

fn key(service: &Service) -> String {
    format!(
        "{}/{}",
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether this allocator serves `service`.
fn wants_address(service: &Service) -> bool {
    service.metadata.deletion_timestamp.is_none()
        && service.spec.as_ref().is_some_and(|spec| {
            spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.is_none()
        })
}

/// The address the Service asks for or already had.
fn wanted(service: &Service, pool: Cidr) -> Option<Ipv4Addr> {
    let requested = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|ip| !ip.is_empty())
        .and_then(|ip| ip.parse().ok());
    let had = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|ingress| ingress.iter().find_map(|i| i.ip.as_deref()?.parse().ok()))
        .filter(|ip| pool.contains(*ip));
    requested.or(had)
}

/// Watches Services and keeps their addresses, until the process ends.
pub async fn run(client: Client, pool: Cidr, interface: String) {
    let services: Api<Service> = Api::all(client.clone());
    let mut events = watcher::watcher(services, watcher::Config::default()).boxed();
    let mut allocator = Allocator::new(pool);
    let mut relist: Vec<Service> = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => relist.clear(),
            Ok(watcher::Event::InitApply(service)) => relist.push(service),
            Ok(watcher::Event::InitDone) => {
                let listed = std::mem::take(&mut relist);
                let keys: Vec<String> = listed.iter().map(key).collect();
                let gone: Vec<String> = allocator
                    .assigned
                    .keys()
                    .filter(|k| !keys.contains(k))
                    .cloned()
                    .collect();
                for key in gone {
                    release(&mut allocator, &key, &interface).await;
                }
                // Services that had an address first, so that none loses it
                // to a newcomer.
                let (had, new): (Vec<Service>, Vec<Service>) =
                    listed.into_iter().partition(|s| wanted(s, pool).is_some());
                for service in had.into_iter().chain(new) {
                    reconcile(&client, &mut allocator, &service, &interface).await;
                }
            }
            Ok(watcher::Event::Apply(service)) => {
                reconcile(&client, &mut allocator, &service, &interface).await;
            }
            Ok(watcher::Event::Delete(service)) => {
                release(&mut allocator, &key(&service), &interface).await;
            }
            Err(e) => tracing::warn!("watching services: {e}"),
        }
    }
}

async fn reconcile(client: &Client, allocator: &mut Allocator, service: &Service, interface: &str) {
    let key = key(service);
    if !wants_address(service) {
        release(allocator, &key, interface).await;
        return;
    }
    let ip = match allocator.allocate(&key, wanted(service, allocator.pool)) {
        Ok(ip) => ip,
        Err(why) => {
            tracing::warn!(service = %key, "no load-balancer address: {why}");
            return;
        }
    };
    if let Err(e) = netns::ip(&["addr", "replace", &format!("{ip}/32"), "dev", interface]).await {
        tracing::warn!(service = %key, %ip, "adding the address to {interface}: {e}");
    }
    let current = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| {
            ingress
                .iter()
                .filter_map(|i| i.ip.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if current == [ip.to_string()] {
        return;
    }
    let (namespace, name) = key.split_once('/').unwrap_or_default();
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let status = serde_json::json!({
        "status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}
    });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
    {
        Ok(_) => tracing::info!(service = %key, %ip, "load-balancer address given"),
        Err(e) => tracing::warn!(service = %key, %ip, "writing the load-balancer status: {e}"),
    }
}

async fn release(allocator: &mut Allocator, key: &str, interface: &str) {
    if let Some(ip) = allocator.release(key) {
        tracing::info!(service = %key, %ip, "load-balancer address released");
        if let Err(e) = netns::ip(&["addr", "del", &format!("{ip}/32"), "dev", interface]).await {
            tracing::warn!(service = %key, %ip, "removing the address from {interface}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Cidr {
        Cidr::new(Ipv4Addr::new(172, 31, 0, 64), 30)
    }

    #[test]
    fn addresses_are_given_once_and_kept() {
        let mut a = Allocator::new(pool());
        let first = a.allocate("x/gw", None).expect("an address");
        assert_eq!(
            first,
            Ipv4Addr::new(172, 31, 0, 65),
            "not the network address"
        );
        assert_eq!(a.allocate("x/gw", None), Ok(first), "the same one again");
        assert_eq!(
            a.allocate("x/other", None),
            Ok(Ipv4Addr::new(172, 31, 0, 66))
        );
        let err = a.allocate("x/third", None).expect_err("a /30 has two");
        assert!(err.contains("exhausted"), "{err}");
        assert_eq!(a.release("x/gw"), Some(first));
        assert_eq!(a.allocate("x/third", None), Ok(first));
    }

    #[test]
    fn wanted_addresses_are_checked() {
        let mut a = Allocator::new(pool());
        let want = Ipv4Addr::new(172, 31, 0, 66);
        assert_eq!(a.allocate("x/gw", Some(want)), Ok(want));
        let taken = a.allocate("y/gw", Some(want)).expect_err("taken");
        assert!(taken.contains("already given to x/gw"), "{taken}");
        let outside = a
            .allocate("y/gw", Some(Ipv4Addr::new(10, 0, 0, 1)))
            .expect_err("outside");
        assert!(
            outside.contains("not in the load-balancer pool"),
            "{outside}"
        );
        assert!(
            a.allocate("y/gw", Some(Ipv4Addr::new(172, 31, 0, 67)))
                .is_err(),
            "broadcast"
        );
    }

    #[test]
    fn only_plain_load_balancers_are_served() {
        let service =
            |json: serde_json::Value| -> Service { serde_json::from_value(json).expect("service") };
        assert!(wants_address(&service(serde_json::json!({
            "metadata": {"name": "gw", "namespace": "x"}, "spec": {"type": "LoadBalancer"}
        }))));
        assert!(!wants_address(&service(serde_json::json!({
            "metadata": {"name": "gw", "namespace": "x"}, "spec": {"type": "ClusterIP"}
        }))));
        assert!(!wants_address(&service(serde_json::json!({
            "metadata": {"name": "gw", "namespace": "x"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/other"}
        }))));
        let had = service(serde_json::json!({
            "metadata": {"name": "gw", "namespace": "x"}, "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": "172.31.0.66"}]}}
        }));
        assert_eq!(wanted(&had, pool()), Some(Ipv4Addr::new(172, 31, 0, 66)));
    }
}
