//! The network of a pair of local clusters (`west` and `east`), planned as
//! pure data and then built with iproute2 and iptables.
//!
//! ```text
//!  host (root namespace)
//!    mesh<slot>w 172.30.<slot>.1 ── veth ── host0 172.30.<slot>.2  netns mesh<slot>-west
//!    mesh<slot>e 172.30.<slot>.5 ── veth ── host0 172.30.<slot>.6  netns mesh<slot>-east
//!
//!  netns mesh<slot>-west                        netns mesh<slot>-east
//!    control plane, kube-proxy, node agent        (the same)
//!    pods: netns mesh<slot>-w-<pod>, routed       pods: mesh<slot>-e-<pod>,
//!      /32 veths, 10.10.0.0/16                      10.20.0.0/16
//!    wan0 (TUN) 172.31.0.1/24 ══ mesh-node wan ══ wan0 (TUN) 172.31.0.2/24
//!    LoadBalancer pool 172.31.0.64/26             pool 172.31.0.128/26
//! ```
//!
//! A *slot* (0–63) keeps several pairs apart on one host (a `mesh up` and a
//! test run): it is in every namespace name and in the host-side addresses.
//! Everything else lives inside the node namespaces, so pod, service and WAN
//! addresses repeat freely between slots. Node namespaces have no default
//! route: the only way out of a cluster is the WAN, and pod traffic leaving
//! on it is masqueraded to the node's WAN address, so the other cluster's
//! pods and services are unreachable unless exposed on a LoadBalancer
//! address (or the pair is built flat, with pod routes across the WAN).

use std::net::Ipv4Addr;

use crate::netns::{self, NetError};

/// The highest slot number.
pub const MAX_SLOT: u8 = 63;

/// The two clusters of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The first cluster.
    West,
    /// The second cluster.
    East,
}

impl Side {
    /// Both, in order.
    pub const BOTH: [Side; 2] = [Side::West, Side::East];

    /// `west` or `east`.
    pub fn name(self) -> &'static str {
        match self {
            Side::West => "west",
            Side::East => "east",
        }
    }

    fn index(self) -> u8 {
        match self {
            Side::West => 0,
            Side::East => 1,
        }
    }

    /// The other cluster.
    pub fn other(self) -> Side {
        match self {
            Side::West => Side::East,
            Side::East => Side::West,
        }
    }
}

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Its first address.
    pub network: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/p`.
    pub const fn new(network: Ipv4Addr, prefix: u8) -> Self {
        Self { network, prefix }
    }

    /// The `n`th address of the network.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    /// How many addresses it holds.
    pub fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        u32::from(ip) & mask == u32::from(self.network) & mask
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an IPv4 CIDR such as 10.0.0.0/24");
        let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Self::new(ip.parse().map_err(|_| bad())?, prefix))
    }
}

/// Everything about one cluster's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNet {
    /// Which cluster.
    pub side: Side,
    /// Its node's network namespace.
    pub netns: String,
    /// Prefix of its pods' namespaces.
    pub pod_netns_prefix: String,
    /// The host end of the veth to the node.
    pub host_if: String,
    /// The host's address on that veth.
    pub host_ip: Ipv4Addr,
    /// The node's address on that veth: where the host reaches the API.
    pub node_ip: Ipv4Addr,
    /// The node's address on the WAN (its InternalIP).
    pub wan_ip: Ipv4Addr,
    /// Pod addresses.
    pub pod_cidr: Cidr,
    /// Service (ClusterIP) addresses.
    pub service_cidr: Cidr,
    /// The `kube-dns` Service address.
    pub dns_ip: Ipv4Addr,
    /// Addresses given to LoadBalancer Services, on the WAN.
    pub lb_pool: Cidr,
}

/// A pair of clusters' network plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairNet {
    /// The slot.
    pub slot: u8,
    /// The prefix of every namespace of this pair (`mesh<slot>-`).
    pub prefix: String,
    /// The WAN subnet.
    pub wan: Cidr,
    /// Whether pod CIDRs are routed across the WAN (a flat network).
    pub flat: bool,
    /// West, then east.
    pub clusters: [ClusterNet; 2],
}

/// The name of the WAN interface in each node namespace.
pub const WAN_IF: &str = "wan0";

/// The node-side name of the veth to the host.
pub const HOST_LINK_IF: &str = "host0";

/// The gateway address every pod routes through (on the node's side of each
/// pod's veth).
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

impl PairNet {
    /// The plan for `slot`.
    pub fn plan(slot: u8, flat: bool) -> Self {
        let prefix = format!("mesh{slot}-");
        let wan = Cidr::new(Ipv4Addr::new(172, 31, 0, 0), 24);
        let cluster = |side: Side| {
            let i = side.index();
            ClusterNet {
                side,
                netns: format!("{prefix}{}", side.name()),
                pod_netns_prefix: format!("{prefix}{}-", &side.name()[..1]),
                host_if: format!("mesh{slot}{}", &side.name()[..1]),
                host_ip: Ipv4Addr::new(172, 30, slot, 4 * i + 1),
                node_ip: Ipv4Addr::new(172, 30, slot, 4 * i + 2),
                wan_ip: wan.nth(u32::from(i) + 1),
                pod_cidr: Cidr::new(Ipv4Addr::new(10, 10 * (i + 1), 0, 0), 16),
                service_cidr: Cidr::new(Ipv4Addr::new(10, 96 + i, 0, 0), 16),
                dns_ip: Ipv4Addr::new(10, 96 + i, 0, 10),
                lb_pool: Cidr::new(wan.nth(64 * (u32::from(i) + 1)), 26),
            }
        };
        let clusters = [cluster(Side::West), cluster(Side::East)];
        Self {
            slot,
            prefix,
            wan,
            flat,
            clusters,
        }
    }

    /// One cluster's part.
    pub fn cluster(&self, side: Side) -> &ClusterNet {
        &self.clusters[usize::from(side.index())]
    }
}

/// Creates the node namespaces, the host links, forwarding and NAT. The WAN
/// interfaces themselves are made by the forwarder (see [`crate::wan`]);
/// [`configure_wan`] addresses them once it runs.
pub async fn build(plan: &PairNet) -> Result<(), NetError> {
    for net in &plan.clusters {
        let ns = net.netns.as_str();
        // A host link left by an earlier pair in this slot would clash.
        if std::path::Path::new("/sys/class/net")
            .join(&net.host_if)
            .exists()
        {
            netns::ip(&["link", "del", &net.host_if]).await?;
        }
        if !netns::exists(ns) {
            netns::ip(&["netns", "add", ns]).await?;
        }
        netns::ip_in(ns, &["link", "set", "lo", "up"]).await?;
        netns::veth_into(
            ns,
            &net.host_if,
            &format!("{}/30", net.host_ip),
            HOST_LINK_IF,
        )
        .await?;
        netns::ip_in(
            ns,
            &[
                "addr",
                "add",
                &format!("{}/30", net.node_ip),
                "dev",
                HOST_LINK_IF,
            ],
        )
        .await?;
        netns::ip_in(ns, &["link", "set", HOST_LINK_IF, "up"]).await?;
        netns::sysctl_in(ns, "net.ipv4.ip_forward", "1").await?;
        // The node's own processes (the API server calling a webhook, the
        // agent probing) reach ClusterIPs too: a route lets their packets
        // out of the routing decision so that kube-proxy's OUTPUT rules can
        // translate them to a pod; without a translation they go nowhere.
        netns::ip_in(
            ns,
            &[
                "route",
                "add",
                &net.service_cidr.to_string(),
                "dev",
                "lo",
                "src",
                &net.node_ip.to_string(),
            ],
        )
        .await?;
        // Traffic from pods to the host (kubectl port-forwards aside, rare)
        // leaves as the node, since the host has no route to pods.
        masquerade(ns, net.pod_cidr, HOST_LINK_IF).await?;
    }
    Ok(())
}

/// Pod traffic from `pods` leaving `ns` on `out` takes the node's address.
async fn masquerade(ns: &str, pods: Cidr, out: &str) -> Result<(), NetError> {
    let pods = pods.to_string();
    let rule = [
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        &pods,
        "-o",
        out,
        "-j",
        "MASQUERADE",
    ];
    netns::exec_in(ns, "iptables", &rule).await.map(drop)
}

/// Addresses and routes the WAN interfaces once the forwarder made them.
pub async fn configure_wan(plan: &PairNet) -> Result<(), NetError> {
    for net in &plan.clusters {
        let ns = net.netns.as_str();
        netns::ip_in(
            ns,
            &[
                "addr",
                "add",
                &format!("{}/{}", net.wan_ip, plan.wan.prefix),
                "dev",
                WAN_IF,
            ],
        )
        .await?;
        netns::ip_in(ns, &["link", "set", WAN_IF, "up"]).await?;
        if plan.flat {
            let other = plan.cluster(net.side.other());
            netns::ip_in(
                ns,
                &[
                    "route",
                    "add",
                    &other.pod_cidr.to_string(),
                    "via",
                    &other.wan_ip.to_string(),
                    "dev",
                    WAN_IF,
                ],
            )
            .await?;
        } else {
            masquerade(ns, net.pod_cidr, WAN_IF).await?;
        }
    }
    Ok(())
}

/// Removes every namespace of the pair (and with them every interface,
/// route, rule and process inside) and the host ends of the node links. A
/// deleted namespace can outlive its name while the kernel still holds a
/// reference to it, keeping its veth peers alive, so the host links are
/// deleted by name rather than left to that.
pub async fn teardown(plan: &PairNet) {
    netns::remove_all_with_prefix(&plan.prefix).await;
    for net in &plan.clusters {
        if std::path::Path::new("/sys/class/net")
            .join(&net.host_if)
            .exists()
        {
            let _ = netns::ip(&["link", "del", &net.host_if]).await;
        }
    }
}

/// The shell commands that do what [`teardown`] does, for the janitor.
pub fn shell_teardown(plan: &PairNet) -> String {
    let links: Vec<String> = plan
        .clusters
        .iter()
        .map(|n| format!("ip link del {} 2>/dev/null", n.host_if))
        .collect();
    format!(
        "{}; {}",
        netns::shell_cleanup(&plan.prefix),
        links.join("; ")
    )
}

/// Claims the first free slot by creating its west node namespace (an atomic
/// operation: two claimants never get the same slot).
pub async fn claim_slot(flat: bool) -> Result<PairNet, NetError> {
    let mut last = None;
    for slot in 0..=MAX_SLOT {
        let plan = PairNet::plan(slot, flat);
        if netns::exists(&plan.cluster(Side::West).netns) {
            continue;
        }
        match netns::ip(&["netns", "add", &plan.cluster(Side::West).netns]).await {
            // The namespace is the claim; `build` goes on from it.
            Ok(_) => return Ok(plan),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(NetError {
        command: "ip netns add".into(),
        reason: format!(
            "all {} slots are taken: `mesh down` frees one",
            MAX_SLOT + 1
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_keeps_clusters_apart() {
        let plan = PairNet::plan(3, false);
        let (w, e) = (plan.cluster(Side::West), plan.cluster(Side::East));
        assert_eq!(w.netns, "mesh3-west");
        assert_eq!(e.netns, "mesh3-east");
        assert_eq!(w.host_if, "mesh3w");
        assert!(w.host_if.len() <= 15 && e.pod_netns_prefix.len() < 10);
        assert_eq!(
            (w.host_ip, w.node_ip),
            (
                "172.30.3.1".parse().expect("ip"),
                "172.30.3.2".parse().expect("ip")
            )
        );
        assert_eq!(e.node_ip, "172.30.3.6".parse::<Ipv4Addr>().expect("ip"));
        assert_eq!(w.pod_cidr.to_string(), "10.10.0.0/16");
        assert_eq!(e.pod_cidr.to_string(), "10.20.0.0/16");
        assert_eq!(w.service_cidr.to_string(), "10.96.0.0/16");
        assert_eq!(e.service_cidr.to_string(), "10.97.0.0/16");
        assert_eq!(w.dns_ip, "10.96.0.10".parse::<Ipv4Addr>().expect("ip"));
        assert_eq!(w.lb_pool.to_string(), "172.31.0.64/26");
        assert_eq!(e.lb_pool.to_string(), "172.31.0.128/26");
        for net in [w, e] {
            assert!(plan.wan.contains(net.wan_ip));
            assert!(plan.wan.contains(net.lb_pool.network));
            assert!(!net.lb_pool.contains(net.wan_ip));
            assert!(!net.pod_cidr.contains(net.service_cidr.network));
        }
        assert!(!w.lb_pool.contains(e.lb_pool.network));
    }

    #[test]
    fn cidr_arithmetic() {
        let c = Cidr::new(Ipv4Addr::new(10, 10, 0, 0), 16);
        assert_eq!(c.size(), 65_536);
        assert_eq!(c.nth(258), Ipv4Addr::new(10, 10, 1, 2));
        assert!(c.contains(Ipv4Addr::new(10, 10, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 11, 0, 0)));
    }
}
