//! What every reader of a Service takes from it the same way.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

/// The Service's cluster IPs (`clusterIPs` and `clusterIP`), sorted, once
/// each; none for a headless Service.
pub fn cluster_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}
