//! The iptables rules `mesh-init` installs in a pod's network namespace
//! before any other container starts, with Linkerd's chain names:
//!
//! - `PROXY_INIT_REDIRECT` (from `PREROUTING`): connections to the pod go
//!   to the inbound proxy, except skipped ports.
//! - `PROXY_INIT_OUTPUT` (from `OUTPUT`): the pod's own connections go to
//!   the outbound proxy, except the proxy's own (its UID), loopback,
//!   skipped ports and skipped networks.
//!
//! Rendering is pure ([`Rules::restore_input`]); applying feeds the result
//! to `iptables-restore --noflush`. Declaring the two chains empties them
//! and the jumps into them are added only when missing, so running it again
//! (a restarted init container) leaves exactly one copy of each rule.

use ipnet::IpNet;

/// The chain `PREROUTING` jumps to.
pub const REDIRECT_CHAIN: &str = "PROXY_INIT_REDIRECT";
/// The chain `OUTPUT` jumps to.
pub const OUTPUT_CHAIN: &str = "PROXY_INIT_OUTPUT";

/// iptables' `multiport` takes at most 15 ports per rule.
const MULTIPORT_MAX: usize = 15;

/// What to redirect where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The inbound proxy's port (4143).
    pub inbound_port: u16,
    /// The outbound proxy's port (4140).
    pub outbound_port: u16,
    /// The UID the proxy runs as (2102); its connections are not redirected.
    pub proxy_uid: u32,
    /// Ports whose incoming connections bypass the proxy.
    pub inbound_skip: Vec<(u16, u16)>,
    /// Ports whose outgoing connections bypass the proxy.
    pub outbound_skip: Vec<(u16, u16)>,
    /// Networks whose outgoing connections bypass the proxy.
    pub skip_networks: Vec<IpNet>,
}

/// Parses `25,4000-4100` (Linkerd also writes ranges with `:`).
pub fn parse_ports(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut ports = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("{item:?} is not a port or a range such as 4000-4100"))
        };
        let range = match item.split_once(['-', ':']) {
            Some((low, high)) => (port(low)?, port(high)?),
            None => (port(item)?, port(item)?),
        };
        if range.0 > range.1 {
            return Err(format!("{item:?}: the range runs backwards"));
        }
        ports.push(range);
    }
    Ok(ports)
}

fn port_spec((low, high): (u16, u16)) -> String {
    if low == high {
        low.to_string()
    } else {
        format!("{low}:{high}")
    }
}

/// `-p tcp` rules returning early for `ports`, 15 per rule.
fn skip_ports(chain: &str, ports: &[(u16, u16)], comment: &str) -> Vec<String> {
    // A range counts as two ports for multiport.
    let mut rules = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    let mut used = 0;
    let flush = |batch: &mut Vec<String>, rules: &mut Vec<String>| {
        if !batch.is_empty() {
            rules.push(format!(
                "-A {chain} -p tcp -m multiport --dports {} -m comment --comment \"{comment}\" -j RETURN",
                batch.join(",")
            ));
            batch.clear();
        }
    };
    for &range in ports {
        let cost = if range.0 == range.1 { 1 } else { 2 };
        if used + cost > MULTIPORT_MAX {
            flush(&mut batch, &mut rules);
            used = 0;
        }
        batch.push(port_spec(range));
        used += cost;
    }
    flush(&mut batch, &mut rules);
    rules
}

impl Rules {
    /// The rules of the two chains, in order.
    pub fn chain_rules(&self) -> Vec<String> {
        let mut rules = skip_ports(
            REDIRECT_CHAIN,
            &self.inbound_skip,
            "mesh/ignore-inbound-ports",
        );
        rules.push(format!(
            "-A {REDIRECT_CHAIN} -p tcp -m comment --comment \"mesh/redirect-all-incoming-to-proxy-port\" -j REDIRECT --to-ports {}",
            self.inbound_port
        ));
        rules.push(format!(
            "-A {OUTPUT_CHAIN} -m owner --uid-owner {} -m comment --comment \"mesh/ignore-proxy-user-id\" -j RETURN",
            self.proxy_uid
        ));
        rules.push(format!(
            "-A {OUTPUT_CHAIN} -o lo -m comment --comment \"mesh/ignore-loopback\" -j RETURN"
        ));
        rules.extend(skip_ports(
            OUTPUT_CHAIN,
            &self.outbound_skip,
            "mesh/ignore-outbound-ports",
        ));
        for network in self
            .skip_networks
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)))
        {
            rules.push(format!(
                "-A {OUTPUT_CHAIN} -d {network} -m comment --comment \"mesh/ignore-subnets\" -j RETURN"
            ));
        }
        rules.push(format!(
            "-A {OUTPUT_CHAIN} -p tcp -m comment --comment \"mesh/redirect-all-outgoing-to-proxy-port\" -j REDIRECT --to-ports {}",
            self.outbound_port
        ));
        rules
    }

    /// The `iptables-restore --noflush` input that installs the rules, given
    /// what `iptables-save -t nat` shows now.
    pub fn restore_input(&self, current_nat: &str) -> String {
        let mut lines = vec![
            "*nat".to_owned(),
            format!(":{REDIRECT_CHAIN} - [0:0]"),
            format!(":{OUTPUT_CHAIN} - [0:0]"),
        ];
        lines.extend(self.chain_rules());
        for (hook, chain) in [("PREROUTING", REDIRECT_CHAIN), ("OUTPUT", OUTPUT_CHAIN)] {
            let jump = format!("-A {hook} -j {chain}");
            if !current_nat.lines().any(|l| l.trim() == jump) {
                lines.push(jump);
            }
        }
        lines.push("COMMIT".to_owned());
        lines.join("\n") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            inbound_port: 4143,
            outbound_port: 4140,
            proxy_uid: 2102,
            inbound_skip: parse_ports("4190,4191,22").expect("ports"),
            outbound_skip: parse_ports("443,1000-2000").expect("ports"),
            skip_networks: vec!["169.254.0.0/16".parse().expect("net")],
        }
    }

    #[test]
    fn the_rules_redirect_both_ways_and_spare_the_proxy() {
        let input = rules().restore_input("");
        for expected in [
            ":PROXY_INIT_REDIRECT - [0:0]",
            "-A PROXY_INIT_REDIRECT -p tcp -m multiport --dports 4190,4191,22 -m comment --comment \"mesh/ignore-inbound-ports\" -j RETURN",
            "-j REDIRECT --to-ports 4143",
            "-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102",
            "-A PROXY_INIT_OUTPUT -o lo",
            "--dports 443,1000:2000",
            "-A PROXY_INIT_OUTPUT -d 169.254.0.0/16",
            "-j REDIRECT --to-ports 4140",
            "-A PREROUTING -j PROXY_INIT_REDIRECT",
            "-A OUTPUT -j PROXY_INIT_OUTPUT",
        ] {
            assert!(input.contains(expected), "{expected} in\n{input}");
        }
        let owner = input.find("--uid-owner").expect("owner rule");
        let redirect = input.find("--to-ports 4140").expect("redirect rule");
        assert!(
            owner < redirect,
            "the proxy's own traffic returns before the redirect"
        );
    }

    #[test]
    fn jumps_that_exist_are_not_added_again() {
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j PROXY_INIT_REDIRECT\n-A OUTPUT -j PROXY_INIT_OUTPUT\nCOMMIT\n";
        let input = rules().restore_input(saved);
        assert!(!input.contains("-A PREROUTING"));
        assert!(!input.contains("-A OUTPUT "));
    }

    #[test]
    fn many_ports_are_split_fifteen_to_a_rule() {
        let ports: Vec<String> = (1..=20).map(|p| p.to_string()).collect();
        let rules = Rules {
            inbound_skip: parse_ports(&ports.join(",")).expect("ports"),
            ..rules()
        };
        let skips = rules
            .chain_rules()
            .into_iter()
            .filter(|r| r.contains("ignore-inbound-ports"))
            .count();
        assert_eq!(skips, 2);
        assert!(parse_ports("22,ssh").is_err());
        assert!(parse_ports("2000-1000").is_err());
    }
}
