//! Pod networking: each pod gets a network namespace, a veth whose node end
//! routes its /32 (as Calico does: no bridge, so every packet between pods
//! crosses the node's routing and kube-proxy's rules, with no need for
//! br_netfilter), the gateway 169.254.1.1 on the node end, and an address
//! from the node's pod CIDR ([`Ipam`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::netns::{self, NetError};
use crate::topology::{Cidr, POD_GATEWAY};

/// Pod addresses from the node's pod CIDR.
#[derive(Debug, Clone)]
pub struct Ipam {
    cidr: Cidr,
    given: BTreeMap<String, Ipv4Addr>,
}

impl Ipam {
    /// Addresses from `cidr` (its first two and last are kept back).
    pub fn new(cidr: Cidr) -> Self {
        Self {
            cidr,
            given: BTreeMap::new(),
        }
    }

    /// The address of pod `uid`, given before or now; `None` when full.
    pub fn assign(&mut self, uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.given.get(uid) {
            return Some(*ip);
        }
        let taken: std::collections::HashSet<Ipv4Addr> = self.given.values().copied().collect();
        let ip = (2..self.cidr.size().saturating_sub(1))
            .map(|n| self.cidr.nth(n))
            .find(|ip| !taken.contains(ip))?;
        self.given.insert(uid.to_owned(), ip);
        Some(ip)
    }

    /// Gives pod `uid`'s address back.
    pub fn release(&mut self, uid: &str) {
        self.given.remove(uid);
    }
}

/// A pod's network namespace and veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNet {
    /// The namespace's name.
    pub netns: String,
    /// The node end of the veth.
    pub host_if: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
}

impl PodNet {
    /// Names for pod `uid` under `prefix`.
    pub fn for_pod(prefix: &str, uid: &str, ip: Ipv4Addr) -> Self {
        let short: String = uid.chars().filter(|c| *c != '-').take(11).collect();
        Self {
            netns: format!("{prefix}{uid}"),
            host_if: format!("vm{short}"),
            ip,
        }
    }

    /// Creates the namespace and wires it (run from the node's namespace).
    pub async fn create(&self, node_ip: Ipv4Addr) -> Result<(), NetError> {
        let ns = self.netns.as_str();
        if netns::exists(ns) {
            self.delete().await;
        }
        netns::ip(&["netns", "add", ns]).await?;
        netns::ip_in(ns, &["link", "set", "lo", "up"]).await?;
        let gateway = POD_GATEWAY.to_string();
        netns::veth_into(ns, &self.host_if, &format!("{gateway}/32"), "eth0").await?;
        netns::ip(&[
            "route",
            "add",
            &format!("{}/32", self.ip),
            "dev",
            &self.host_if,
            "src",
            &node_ip.to_string(),
        ])
        .await?;
        netns::ip_in(
            ns,
            &["addr", "add", &format!("{}/32", self.ip), "dev", "eth0"],
        )
        .await?;
        netns::ip_in(ns, &["link", "set", "eth0", "up"]).await?;
        netns::ip_in(
            ns,
            &["route", "add", &gateway, "dev", "eth0", "scope", "link"],
        )
        .await?;
        netns::ip_in(
            ns,
            &["route", "add", "default", "via", &gateway, "dev", "eth0"],
        )
        .await?;
        Ok(())
    }

    /// Kills what runs inside and removes the namespace and the veth.
    pub async fn delete(&self) {
        netns::remove(&self.netns).await;
        if std::path::Path::new("/sys/class/net")
            .join(&self.host_if)
            .exists()
        {
            let _ = netns::ip(&["link", "del", &self.host_if]).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_stable_per_pod_and_reused_after_release() {
        let mut ipam = Ipam::new(Cidr::new(Ipv4Addr::new(10, 10, 0, 0), 24));
        let a = ipam.assign("a").expect("ip");
        assert_eq!(a, Ipv4Addr::new(10, 10, 0, 2));
        assert_eq!(ipam.assign("a"), Some(a));
        let b = ipam.assign("b").expect("ip");
        assert_eq!(b, Ipv4Addr::new(10, 10, 0, 3));
        ipam.release("a");
        assert_eq!(ipam.assign("c"), Some(a));
    }

    #[test]
    fn a_full_range_says_none() {
        let mut ipam = Ipam::new(Cidr::new(Ipv4Addr::new(10, 10, 0, 0), 30));
        assert!(ipam.assign("a").is_some());
        assert_eq!(ipam.assign("b"), None);
    }

    #[test]
    fn names_fit_the_kernel_limits() {
        let net = PodNet::for_pod(
            "mesh0-w-",
            "0f3c2a9e-1b2c-4d5e-8f90-123456789abc",
            Ipv4Addr::new(10, 10, 0, 2),
        );
        assert!(net.host_if.len() <= 15, "{}", net.host_if);
        assert_eq!(net.netns, "mesh0-w-0f3c2a9e-1b2c-4d5e-8f90-123456789abc");
    }
}
