//! What a proxy asks about: `<service>.<namespace>.svc.<cluster-domain>:<port>`,
//! a pod of a headless Service by its host name
//! (`<hostname>.<service>.<namespace>.svc.<cluster-domain>:<port>`, as a
//! StatefulSet's pods are named) or `<ip>:<port>`, parsed, with errors that
//! say what is wrong.

use std::net::{IpAddr, SocketAddr};

/// A parsed lookup target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A Service by name.
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The port asked for.
        port: u16,
    },
    /// One pod of a headless Service, by the host name its endpoint has.
    Host {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
        /// The endpoint's host name.
        hostname: String,
        /// The port asked for.
        port: u16,
    },
    /// An IP address: a Service's cluster IP or a pod.
    Ip(SocketAddr),
}

/// Why a path is not a lookup target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid destination {path:?}: {reason}")]
pub struct InvalidAuthority {
    /// What was asked.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses `path` for a cluster whose DNS domain is `domain`. A missing port
/// means 80, as for an HTTP authority.
pub fn parse(path: &str, domain: &str) -> Result<Target, InvalidAuthority> {
    let invalid = |reason: String| InvalidAuthority {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("empty".into()));
    }
    if let Ok(addr) = path.parse::<SocketAddr>() {
        return Ok(Target::Ip(addr));
    }
    let (host, port) = match path.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid(format!("port {port:?} is not a number from 1 to 65535")))?;
            (host, port)
        }
        None => (path, 80),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Target::Ip(SocketAddr::new(ip, port)));
    }
    let host = host.trim_end_matches('.');
    let suffix = format!(".svc.{domain}");
    let Some(service_ns) = host.strip_suffix(&suffix) else {
        return Err(invalid(format!(
            "expected <service>.<namespace>.svc.{domain}:<port> or <ip>:<port>"
        )));
    };
    let labels: Vec<&str> = service_ns.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(invalid(format!(
            "expected <service>.<namespace>.svc.{domain}:<port> (an empty label)"
        )));
    }
    match labels[..] {
        [name, namespace] => Ok(Target::Service {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port,
        }),
        [hostname, name, namespace] => Ok(Target::Host {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            hostname: hostname.to_owned(),
            port,
        }),
        _ => Err(invalid(format!(
            "expected <service>.<namespace>.svc.{domain}:<port> or \
             <hostname>.<service>.<namespace>.svc.{domain}:<port>"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_and_ips_parse() {
        assert_eq!(
            parse("web.shop.svc.cluster.local:8080", "cluster.local"),
            Ok(Target::Service {
                namespace: "shop".into(),
                name: "web".into(),
                port: 8080
            })
        );
        assert_eq!(
            parse("web.shop.svc.cluster.local.:80", "cluster.local"),
            parse("web.shop.svc.cluster.local", "cluster.local")
        );
        assert_eq!(
            parse("web-0.web.shop.svc.cluster.local:8080", "cluster.local"),
            Ok(Target::Host {
                namespace: "shop".into(),
                name: "web".into(),
                hostname: "web-0".into(),
                port: 8080
            })
        );
        assert_eq!(
            parse("10.1.2.3:80", "cluster.local"),
            Ok(Target::Ip("10.1.2.3:80".parse().expect("addr")))
        );
        assert_eq!(
            parse("[fd00::1]:80", "cluster.local"),
            Ok(Target::Ip("[fd00::1]:80".parse().expect("addr")))
        );
    }

    #[test]
    fn malformed_paths_say_why() {
        for (path, needle) in [
            ("", "empty"),
            ("web.shop.svc.cluster.local:http", "port \"http\""),
            ("web.shop.svc.cluster.local:0", "port \"0\""),
            ("example.com:80", "expected <service>"),
            ("a.b.web.shop.svc.cluster.local:80", "<hostname>.<service>"),
            (".shop.svc.cluster.local:80", "an empty label"),
        ] {
            let err = parse(path, "cluster.local").expect_err(path);
            assert!(err.to_string().contains(needle), "{path}: {err}");
        }
    }
}
