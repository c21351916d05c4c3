//! Well-known ports, identical to Linkerd's so that existing Services,
//! NetworkPolicies and scrape configurations apply unchanged.

/// The proxy's outbound listener; iptables redirects the pod's outgoing
/// connections here.
pub const PROXY_OUTBOUND: u16 = 4140;
/// The proxy's inbound listener; iptables redirects incoming connections here,
/// and proxies (and gateways) dial it directly for mTLS.
pub const PROXY_INBOUND: u16 = 4143;
/// The proxy's admin server: `/ready`, `/live`, `/metrics`, `/shutdown`.
pub const PROXY_ADMIN: u16 = 4191;
/// The proxy's tap/control port.
pub const PROXY_CONTROL: u16 = 4190;

/// The destination service (`Destination.Get`, `GetProfile`).
pub const DESTINATION: u16 = 8086;
/// The identity service (`Identity.Certify`).
pub const IDENTITY: u16 = 8080;
/// The policy service (inbound and outbound policy APIs).
pub const POLICY: u16 = 8090;
/// The proxy injector's admission webhook.
pub const INJECTOR_WEBHOOK: u16 = 8443;

/// The multicluster gateway's mTLS port (`mc-gateway`), the proxy's inbound port.
pub const GATEWAY: u16 = PROXY_INBOUND;
/// The multicluster gateway's probe port on its LoadBalancer (`mc-probe`),
/// the number Linkerd uses (its proxy's admin port).
pub const GATEWAY_PROBE: u16 = PROXY_ADMIN;
/// Where the gateway's proxy serves `/ready` and `/live` alone
/// (`MESH_PROXY_PROBE_LISTEN_ADDR`): the target of `mc-probe`, so that the
/// admin server (`/metrics`) is not reachable from outside the cluster.
pub const GATEWAY_PROBE_TARGET: u16 = 4181;

/// The identity service's admin server (`/metrics`, `/ready`, `/live`).
pub const IDENTITY_ADMIN: u16 = 9990;
/// The proxy injector's admin server.
pub const INJECTOR_ADMIN: u16 = 9995;
/// The destination service's admin server.
pub const DESTINATION_ADMIN: u16 = 9996;
/// The policy controller's admin server (a container of the destination
/// pod, as in Linkerd, so not 9996).
pub const POLICY_ADMIN: u16 = 9990;
/// The failover controller's admin server (its own pod, Linkerd's port).
pub const FAILOVER_ADMIN: u16 = 9996;
/// The viz tap component's API server (behind the APIService; Linkerd's).
pub const TAP: u16 = 8089;
/// The viz tap component's admin server (Linkerd's).
pub const TAP_ADMIN: u16 = 9998;
/// viz's web dashboard (HTTP), as Linkerd's.
pub const WEB: u16 = 8084;
/// viz's web admin port.
pub const WEB_ADMIN: u16 = 9994;
/// viz's metrics-api (gRPC `linkerd2.viz.Api`), as Linkerd's.
pub const METRICS_API: u16 = 8085;
/// viz's metrics-api admin port (as Linkerd's; another pod than the
/// injector, whose admin port has the same number).
pub const METRICS_API_ADMIN: u16 = 9995;
/// Where `viz dashboard` listens on the user's machine, as Linkerd's.
pub const DASHBOARD: u16 = 50750;
/// A service mirror's admin server (`admin-http`): its gateway probe
/// metrics, which the failover controller and `mesh multicluster gateways`
/// read.
pub const MIRROR_ADMIN: u16 = 9999;

/// Linkerd's default `clusterNetworks`: the private ranges, where its pods
/// and nodes are (profile lookups, `cluster-*` default policies).
pub const DEFAULT_CLUSTER_NETWORKS: &str =
    "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8";

/// Linkerd's default opaque ports (SMTP, MySQL, Galera, PostgreSQL, Redis,
/// Elasticsearch, Memcached).
pub const DEFAULT_OPAQUE_PORTS: &[u16] = &[25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

/// A set of ports, written as Linkerd's port annotations and flags write
/// them: a comma list of ports and ranges (`25,4000-4100`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet(std::collections::BTreeSet<(u16, u16)>);

impl PortSet {
    /// Linkerd's default opaque ports.
    pub fn default_opaque() -> Self {
        Self(DEFAULT_OPAQUE_PORTS.iter().map(|p| (*p, *p)).collect())
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        self.0
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&port))
    }

    /// Whether the set has no port.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::str::FromStr for PortSet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut set = std::collections::BTreeSet::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let port = |p: &str| {
                p.trim().parse::<u16>().map_err(|_| {
                    format!("{item:?} is not a port (1-65535) or a range such as 4000-4100")
                })
            };
            let range = match item.split_once('-') {
                Some((low, high)) => (port(low)?, port(high)?),
                None => (port(item)?, port(item)?),
            };
            if range.0 > range.1 {
                return Err(format!("{item:?}: the range runs backwards"));
            }
            set.insert(range);
        }
        Ok(Self(set))
    }
}

impl std::fmt::Display for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (low, high)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if low == high {
                write!(f, "{low}")?;
            } else {
                write!(f, "{low}-{high}")?;
            }
        }
        Ok(())
    }
}

/// The buffer a proxy's QUIC socket wants each way, as the kernel reports
/// it (twice what it was asked for): a node whose `net.core.rmem_max` or
/// `wmem_max` is below half of this grants less, and a fast transfer from
/// another cluster loses packets in the socket. The proxy exports what it
/// got; `mesh multicluster check` compares the gateway's with this.
pub const QUIC_SOCKET_BUFFER_BYTES: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_sets_read_lists_and_ranges_and_print_them_back() {
        let ports: PortSet = "25, 4000-4100,9000".parse().expect("ports");
        assert!(ports.contains(25) && ports.contains(4050) && ports.contains(9000));
        assert!(!ports.contains(26) && !ports.contains(4101));
        assert_eq!(ports.to_string(), "25,4000-4100,9000");
        assert!("".parse::<PortSet>().expect("empty").is_empty());
        assert!("4100-4000".parse::<PortSet>().is_err());
        assert!("http".parse::<PortSet>().is_err());
        assert_eq!(
            PortSet::default_opaque().to_string(),
            "25,587,3306,4444,5432,6379,9300,11211"
        );
    }
}
