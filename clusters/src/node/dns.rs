//! A pod's `resolv.conf`, from its `dnsPolicy` and `dnsConfig` as the
//! kubelet writes it.
//!
//! - `ClusterFirst` (the default) and `ClusterFirstWithHostNet`: the cluster
//!   DNS, searching `<ns>.svc.<domain> svc.<domain> <domain>`, `ndots:5`.
//! - `Default`: the node's own `resolv.conf`.
//! - `None`: only what `dnsConfig` gives.
//!
//! `dnsConfig` nameservers, searches and options are merged after the
//! policy's (an option given again replaces the policy's value).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::PodSpec;

/// What the pod's resolver is told.
#[derive(Debug, Default, PartialEq)]
struct Resolver {
    nameservers: Vec<String>,
    searches: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

impl Resolver {
    fn cluster(namespace: &str, domain: &str, dns: Ipv4Addr) -> Self {
        Self {
            nameservers: vec![dns.to_string()],
            searches: vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_string(),
            ],
            options: vec![("ndots".into(), Some("5".into()))],
        }
    }

    fn parse(text: &str) -> Self {
        let mut resolver = Self::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => resolver.nameservers.extend(words.map(String::from)),
                Some("search" | "domain") => resolver.searches = words.map(String::from).collect(),
                Some("options") => {
                    for option in words {
                        resolver.set_option(option);
                    }
                }
                _ => {}
            }
        }
        resolver
    }

    fn set_option(&mut self, option: &str) {
        let (name, value) = match option.split_once(':') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (option.to_string(), None),
        };
        self.options.retain(|(n, _)| *n != name);
        self.options.push((name, value));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            let options: Vec<String> = self
                .options
                .iter()
                .map(|(n, v)| match v {
                    Some(v) => format!("{n}:{v}"),
                    None => n.clone(),
                })
                .collect();
            out.push_str(&format!("options {}\n", options.join(" ")));
        }
        out
    }
}

/// The resolv.conf for a pod of `namespace` with this spec; `host` reads
/// the node's own resolv.conf (only for `dnsPolicy: Default`).
pub fn resolv_conf(
    spec: Option<&PodSpec>,
    namespace: &str,
    domain: &str,
    dns: Ipv4Addr,
    host: impl FnOnce() -> String,
) -> String {
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let mut resolver = match policy {
        "Default" => Resolver::parse(&host()),
        "None" => Resolver::default(),
        _ => Resolver::cluster(namespace, domain, dns),
    };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        for server in config.nameservers.iter().flatten() {
            if !resolver.nameservers.contains(server) {
                resolver.nameservers.push(server.clone());
            }
        }
        for search in config.searches.iter().flatten() {
            if !resolver.searches.contains(search) {
                resolver.searches.push(search.clone());
            }
        }
        for option in config.options.iter().flatten() {
            let name = option.name.clone().unwrap_or_default();
            match &option.value {
                Some(value) => resolver.set_option(&format!("{name}:{value}")),
                None => resolver.set_option(&name),
            }
        }
    }
    resolver.render()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption};

    use super::*;

    const DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    #[test]
    fn pods_resolve_names_in_their_namespace_first() {
        assert_eq!(
            resolv_conf(None, "shop", "cluster.local", DNS, String::new),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_policy_uses_the_node_resolver() {
        let spec = PodSpec {
            dns_policy: Some("Default".into()),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(Some(&spec), "kube-system", "cluster.local", DNS, || {
                "# host\nnameserver 1.1.1.1\nsearch lan\n".to_owned()
            }),
            "search lan\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn dns_config_is_merged_and_none_uses_it_alone() {
        let config = PodDNSConfig {
            nameservers: Some(vec!["10.0.0.53".into()]),
            searches: Some(vec!["corp.example".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        };
        let mut spec = PodSpec {
            dns_config: Some(config),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(Some(&spec), "a", "cluster.local", DNS, String::new),
            "search a.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\nnameserver 10.0.0.53\noptions ndots:2 edns0\n"
        );
        spec.dns_policy = Some("None".into());
        assert_eq!(
            resolv_conf(Some(&spec), "a", "cluster.local", DNS, String::new),
            "search corp.example\nnameserver 10.0.0.53\noptions ndots:2 edns0\n"
        );
    }
}
