//! The proxy's configuration, read from environment variables with
//! Linkerd's `LINKERD2_PROXY_*` names wherever the concept is the same, so
//! that the injector (ours or Linkerd's templates) configures it as it
//! configures linkerd2-proxy. Every variable, its default and meaning:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR` | `127.0.0.1:4140` | where iptables sends the pod's outbound connections |
//! | `LINKERD2_PROXY_INBOUND_LISTEN_ADDR` | `0.0.0.0:4143` | where iptables sends connections to the pod |
//! | `LINKERD2_PROXY_ADMIN_LISTEN_ADDR` | `0.0.0.0:4191` | `/ready`, `/live`, `/metrics`, `/shutdown` |
//! | `LINKERD2_PROXY_CONTROL_LISTEN_ADDR` | `0.0.0.0:4190` | where tap (`tap.Tap/Observe`) is served, over mutual TLS |
//! | `LINKERD2_PROXY_TAP_SVC_NAME` | none | the only identity that may tap this proxy (the tap component's, `tap.linkerd-viz.serviceaccount.identity.<trust domain>`); without it, or with `LINKERD2_PROXY_TAP_DISABLED=true`, or without an identity of its own, the proxy serves no tap |
//! | `MESH_PROXY_PROBE_LISTEN_ADDR` | none | where `/ready` and `/live` alone are served (everything else 404): the port a gateway's LoadBalancer exposes for the service mirror's probes, so that the admin server stays inside the cluster |
//! | `LINKERD2_PROXY_DESTINATION_SVC_ADDR` | none | the destination service (`host:port`); without it every outbound connection is forwarded as it came |
//! | `LINKERD2_PROXY_DESTINATION_SVC_NAME` | none | the destination service's identity |
//! | `LINKERD2_PROXY_DESTINATION_CONTEXT` | `{}` | JSON sent as `context_token` in lookups (`{"ns":…,"nodeName":…,"pod":…}`) |
//! | `LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS` | `10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8` | addresses whose profiles are looked up |
//! | `LINKERD2_PROXY_IDENTITY_SVC_ADDR` / `_SVC_NAME` | none | the identity service and its identity |
//! | `LINKERD2_PROXY_IDENTITY_LOCAL_NAME` | none | this workload's identity |
//! | `LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS` | none | the trust anchors, PEM (the value itself) |
//! | `MESH_PROXY_IDENTITY_TRUST_DIR` | none | a directory (the namespace's `mesh-identity-trust-roots` ConfigMap, mounted by the injector) whose `ca-bundle.crt` replaces the trust anchors and whose `issuer.sha256` names the issuer in force, followed without a restart: a change of either has the proxy certified again at once |
//! | `LINKERD2_PROXY_IDENTITY_TOKEN_FILE` | `/var/run/secrets/tokens/linkerd-identity-token` | the projected ServiceAccount token |
//! | `LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION` | Linkerd's default opaque ports | inbound ports forwarded as opaque TCP without detection (list and ranges: `25,3306,4000-4100`) |
//! | `LINKERD2_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION` | the same | outbound ports forwarded as opaque TCP without detection (discovery can add more) |
//! | `MESH_PROXY_INBOUND_PORTS_SKIP` / `MESH_PROXY_OUTBOUND_PORTS_SKIP` | none | ports the proxy never handles: connections redirected to it anyway are forwarded untouched, without metrics (iptables normally keeps them away; see `mesh-init`) |
//! | `LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT` / `LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT` | `10s` | how long protocol detection waits for the first bytes; also how long a client may take over its TLS handshake and its transport header (then the connection is closed and counted in `tcp_accept_errors_total`) |
//! | `LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT` / `LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT` | `100ms` / `1s` | connecting to the application / to endpoints |
//! | `MESH_PROXY_INBOUND_MAX_CONNECTIONS` / `MESH_PROXY_OUTBOUND_MAX_CONNECTIONS` | `10000` | connections a listener holds at once; one more is closed at once and counted (`tcp_accept_errors_total{error="max_connections"}`) |
//! | `LINKERD2_PROXY_INBOUND_SERVER_HTTP2_MAX_CONCURRENT_STREAMS` / `LINKERD2_PROXY_OUTBOUND_SERVER_HTTP2_MAX_CONCURRENT_STREAMS` | `2000` | concurrent streams a client may open on one HTTP/2 connection to the listener (streams over it are refused) |
//! | `MESH_PROXY_INBOUND_TLS_HANDSHAKES_PER_SECOND` / `MESH_PROXY_INBOUND_TLS_HANDSHAKE_BURST` | `1000` / `1` | the pace at which the inbound listener starts mesh TLS handshakes (a burst at once, then one after another at this rate, so that a flood of ClientHellos never holds the requests of established connections); one whose turn would come after the detection timeout is closed before the proxy signs anything, and counted (`tcp_accept_errors_total{error="handshake_rate"}`) |
//! | `MESH_PROXY_INBOUND_UNAUTHENTICATED_HTTP2_MAX_CONCURRENT_STREAMS` | `100` | the same, for an inbound client that proved no mesh identity (plain text, or TLS without a client certificate): such a client is one application, not a proxy multiplexing a whole pod's requests, and RFC 9113's recommended minimum is enough for it |
//! | `LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD` | `120s` | how long in-flight requests may finish after SIGTERM or `/shutdown` |
//! | `MESH_PROXY_WAIT_BEFORE_EXIT` | `0s` | how long the proxy keeps serving, new connections included, after SIGTERM before it drains (Linkerd's `config.alpha.linkerd.io/proxy-wait-before-exit-seconds`): time for the Service's endpoints to move to a replacement pod |
//! | `LINKERD2_PROXY_CORES` | `1` | worker threads (the injector sets it from the CPU limit) |
//! | `LINKERD2_PROXY_LOG` | `warn,mesh_proxy=info` | the log filter |
//! | `MESH_PROXY_TRUSTED_GATEWAYS` | `linkerd-gateway.linkerd-multicluster.serviceaccount.identity.<trust domain>` | identities of gateways whose `Forwarded: by=<gateway>;for=<client>` element is believed: a request they forward counts as `<client>`'s (`client_id`, `l5d-client-id`); empty: none |
//! | `MESH_PROXY_QUIC_RESET_KEY` | none (a random key per process) | gateway mode: the key (base64, at least 32 bytes) QUIC stateless resets are derived from; the gateway's pods share it (a Secret), so a replacement pod ends a gone pod's connections at once instead of leaving clients to time out |
//! | `MESH_PROXY_QUIC_CONGESTION_CONTROL` | `bbr` | the congestion controller of QUIC connections to and from gateways: `bbr`, `cubic` or `newreno` (the injector sets it from `mesh.dev/quic-congestion-control`; a loss-based one shrinks its window at every random loss of a WAN; see `quic::CongestionControl`) |
//! | `MESH_PROXY_GATEWAY_SUFFIXES` | none | gateway mode: inbound mTLS connections whose transport header names a Service under one of these DNS suffixes (`svc.cluster.local`) are forwarded to it through the outbound side; empty: such names are refused |
//! | `LINKERD2_PROXY_POLICY_SVC_ADDR` / `LINKERD2_PROXY_POLICY_SVC_NAME` | none | the policy controller (`InboundServerPolicies`) and its identity; without it only the default policy applies |
//! | `LINKERD2_PROXY_POLICY_WORKLOAD` | none | this pod as the policy controller knows it (`{"ns":…,"pod":…}`); required with the controller |
//! | `LINKERD2_PROXY_INBOUND_DEFAULT_POLICY` | `all-unauthenticated` | the policy of a port until the controller answers for it: `all-unauthenticated`, `all-authenticated`, `cluster-unauthenticated`, `cluster-authenticated`, `deny` or `audit` |
//! | `LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS` | Linkerd's private ranges | the networks of the `cluster-*` default policies |
//! | `LINKERD2_PROXY_INBOUND_PORTS` | none | the pod's ports, whose policy is fetched at start-up |
//! | `MESH_PROXY_GATEWAY_EXPORTS` | `{"matchLabels":{"mirror.linkerd.io/exported":"true"}}` | gateway mode: the label selector (JSON) of the Services it forwards to, sent as `gatewayExports` in its context token; the destination service refuses lookups of any other Service |

use std::net::SocketAddr;

use crate::quic::CongestionControl;
use mesh_api::ports::PortSet;
use std::time::Duration;

/// How many connections a listener holds at once by default: far above
/// what one pod's clients open, low enough that a flood of connections
/// that never finish (each closed after the detection timeout) cannot
/// exhaust the proxy.
const DEFAULT_MAX_CONNECTIONS: &str = "10000";

/// How many concurrent streams one HTTP/2 connection may carry by default:
/// a client proxy multiplexes all of its pod's requests to an endpoint on
/// one connection, so this is well above any pod's concurrency, and it
/// bounds the tasks one connection can spawn.
const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: &str = "2000";

/// How many concurrent streams one inbound HTTP/2 connection from a client
/// without a mesh identity may carry by default: RFC 9113 recommends no
/// fewer than 100, and one application needs no more on one connection; an
/// anonymous flood of streams is forwarded to the application 100 at a
/// time instead of 2,000.
const DEFAULT_UNAUTHENTICATED_HTTP2_MAX_CONCURRENT_STREAMS: &str = "100";

/// The default pace of inbound mesh TLS handshakes: ten at once, then one
/// a millisecond. A handshake costs about a quarter of a millisecond of
/// CPU here, so a flood of ClientHellos takes at most a quarter of a core
/// and never more than a few milliseconds in a row; proxies pool their
/// connections, so a pod's clients all reconnecting at once still fit in
/// a fraction of a second.
const DEFAULT_TLS_HANDSHAKES_PER_SECOND: &str = "1000";
const DEFAULT_TLS_HANDSHAKE_BURST: &str = "1";

/// Linkerd's default profile networks (the private ranges).
pub const DEFAULT_PROFILE_NETWORKS: &str = mesh_api::ports::DEFAULT_CLUSTER_NETWORKS;

/// One direction's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectionConfig {
    /// Where redirected connections arrive.
    pub listen: SocketAddr,
    /// Ports forwarded as opaque TCP, without detection.
    pub opaque_ports: PortSet,
    /// Ports forwarded untouched.
    pub skip_ports: PortSet,
    /// How long detection waits for the first bytes.
    pub detect_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// The most connections the listener holds at once.
    pub max_connections: usize,
    /// The most concurrent streams a client may open on one HTTP/2
    /// connection to the listener.
    pub http2_max_concurrent_streams: u32,
    /// The same, for a client that proved no mesh identity (inbound only;
    /// outbound, every client is the pod's own application and gets
    /// `http2_max_concurrent_streams`).
    pub unauthenticated_http2_max_concurrent_streams: u32,
    /// Mesh TLS handshakes started per second, and at once (inbound only:
    /// the outbound listener terminates none).
    pub tls_handshakes: (u32, u32),
}

/// The identity service and this workload's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// `host:port` of the identity service.
    pub service_addr: String,
    /// Its identity.
    pub service_name: String,
    /// This workload's identity.
    pub local_name: String,
    /// The trust anchors (PEM).
    pub trust_anchors: String,
    /// The ServiceAccount token file.
    pub token_file: std::path::PathBuf,
    /// The trust roots directory followed without a restart.
    pub trust_dir: Option<std::path::PathBuf>,
}

/// The destination service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationConfig {
    /// `host:port`.
    pub service_addr: String,
    /// Its identity (none: plain text, for tests and unmeshed control planes).
    pub service_name: Option<String>,
    /// The `context_token` of every lookup.
    pub context: String,
    /// Networks whose addresses get profile lookups (CIDR strings).
    pub profile_networks: Vec<String>,
}

/// Where inbound authorization policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The policy controller, `host:port` (none: only the default policy).
    pub service_addr: Option<String>,
    /// Its identity (none: plain text).
    pub service_name: Option<String>,
    /// This workload, as the controller knows it (`{"ns":…,"pod":…}`).
    pub workload: String,
    /// The default policy's name, used until the controller answers for a
    /// port, or without one.
    pub default_policy: String,
    /// The cluster's networks (the `cluster-*` default policies).
    pub cluster_networks: Vec<String>,
    /// Inbound ports whose policy is fetched at start-up.
    pub ports: Vec<u16>,
}

/// Everything the proxy is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Outbound (the pod's own connections).
    pub outbound: DirectionConfig,
    /// Inbound (connections to the pod).
    pub inbound: DirectionConfig,
    /// The admin server.
    pub admin_listen: SocketAddr,
    /// Where `/ready` and `/live` alone are served, if anywhere (a
    /// gateway's LoadBalancer probe port).
    pub probe_listen: Option<SocketAddr>,
    /// Where tap is served (the control port).
    pub control_listen: SocketAddr,
    /// The only identity that may tap this proxy; without it (or without
    /// an identity of the proxy's own) tap is not served.
    pub tap_svc_name: Option<String>,
    /// Discovery, when configured.
    pub destination: Option<DestinationConfig>,
    /// mTLS identity, when configured (without it, no mTLS).
    pub identity: Option<IdentityConfig>,
    /// Drain time on shutdown.
    pub shutdown_grace: Duration,
    /// How long it keeps serving after SIGTERM before it drains.
    pub wait_before_exit: Duration,
    /// The log filter.
    pub log: String,
    /// Worker threads.
    pub worker_threads: usize,
    /// DNS suffixes of the Services this proxy forwards to as a gateway.
    pub gateway_suffixes: Vec<String>,
    /// The key a gateway's QUIC stateless resets are derived from, shared
    /// by its pods, so a new pod can end an old pod's connections at once.
    pub quic_reset_key: Option<Vec<u8>>,
    /// The congestion controller of QUIC connections.
    pub quic_congestion: CongestionControl,
    /// Gateways whose `Forwarded` element names the client a request came
    /// from in another cluster: requests they forward count as that
    /// client's.
    pub trusted_gateways: Vec<String>,
    /// Inbound authorization policy.
    pub policy: PolicyConfig,
}

/// A QUIC reset key: base64 of at least 32 bytes.
fn reset_key(value: &str) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine as _;
    let error = |reason: &str| ConfigError {
        variable: "MESH_PROXY_QUIC_RESET_KEY".into(),
        value: "(secret)".into(),
        reason: reason.into(),
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| error("expected base64"))?;
    if key.len() < 32 {
        return Err(error("expected at least 32 bytes"));
    }
    Ok(key)
}

/// The multicluster gateway's identity in the trust domain of
/// `local_identity` (`<sa>.<ns>.serviceaccount.identity.<domain>`).
pub fn gateway_identity_beside(local_identity: &str) -> Option<String> {
    let (_, rest) = local_identity.split_once('.')?;
    let (_, domain) = rest.split_once('.')?;
    domain
        .starts_with("serviceaccount.identity.")
        .then(|| format!("linkerd-gateway.linkerd-multicluster.{domain}"))
}

/// A variable that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub variable: String,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, variable: &str) -> Option<String> {
        (self.0)(variable).filter(|v| !v.trim().is_empty())
    }

    fn parse<T>(&self, variable: &str, default: &str) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let value = self.get(variable).unwrap_or_else(|| default.to_owned());
        value.trim().parse().map_err(|e: T::Err| ConfigError {
            variable: variable.to_owned(),
            value: value.clone(),
            reason: e.to_string(),
        })
    }

    fn duration(&self, variable: &str, default: &str) -> Result<Duration, ConfigError> {
        let value = self.get(variable).unwrap_or_else(|| default.to_owned());
        humantime::parse_duration(value.trim()).map_err(|e| ConfigError {
            variable: variable.to_owned(),
            value: value.clone(),
            reason: format!("{e} (expected a duration such as 10s or 500ms)"),
        })
    }

    fn required(&self, variable: &str, because: &str) -> Result<String, ConfigError> {
        self.get(variable).ok_or_else(|| ConfigError {
            variable: variable.to_owned(),
            value: String::new(),
            reason: format!("must be set {because}"),
        })
    }

    fn direction(
        &self,
        name: &str,
        listen: &str,
        connect_timeout: &str,
    ) -> Result<DirectionConfig, ConfigError> {
        let var = |suffix: &str| format!("LINKERD2_PROXY_{name}_{suffix}");
        let http2_max_concurrent_streams = self.parse(
            &var("SERVER_HTTP2_MAX_CONCURRENT_STREAMS"),
            DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
        )?;
        // Outbound, every client is the pod's own application, and no mesh
        // TLS is terminated.
        let (unauthenticated_http2_max_concurrent_streams, tls_handshakes) = if name == "INBOUND" {
            let pace = (
                self.parse(
                    "MESH_PROXY_INBOUND_TLS_HANDSHAKES_PER_SECOND",
                    DEFAULT_TLS_HANDSHAKES_PER_SECOND,
                )?,
                self.parse(
                    "MESH_PROXY_INBOUND_TLS_HANDSHAKE_BURST",
                    DEFAULT_TLS_HANDSHAKE_BURST,
                )?,
            );
            let streams = self.parse(
                "MESH_PROXY_INBOUND_UNAUTHENTICATED_HTTP2_MAX_CONCURRENT_STREAMS",
                DEFAULT_UNAUTHENTICATED_HTTP2_MAX_CONCURRENT_STREAMS,
            )?;
            (streams, pace)
        } else {
            (http2_max_concurrent_streams, (u32::MAX, u32::MAX))
        };
        Ok(DirectionConfig {
            listen: self.parse(&var("LISTEN_ADDR"), listen)?,
            opaque_ports: self.parse(
                &var("PORTS_DISABLE_PROTOCOL_DETECTION"),
                &PortSet::default_opaque().to_string(),
            )?,
            // Not a Linkerd variable: ours carry mesh's own prefix.
            skip_ports: self.parse(&format!("MESH_PROXY_{name}_PORTS_SKIP"), "")?,
            detect_timeout: self.duration(&var("DETECT_TIMEOUT"), "10s")?,
            connect_timeout: self.duration(&var("CONNECT_TIMEOUT"), connect_timeout)?,
            max_connections: self.parse(
                &format!("MESH_PROXY_{name}_MAX_CONNECTIONS"),
                DEFAULT_MAX_CONNECTIONS,
            )?,
            http2_max_concurrent_streams,
            unauthenticated_http2_max_concurrent_streams,
            tls_handshakes,
        })
    }
}

impl Config {
    /// Reads the configuration through `lookup` (`std::env::var` in the
    /// binary; a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let gateway_suffixes: Vec<String> = env
            .get("MESH_PROXY_GATEWAY_SUFFIXES")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().trim_matches('.').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let mut context = env
            .get("LINKERD2_PROXY_DESTINATION_CONTEXT")
            .unwrap_or_else(|| "{}".into());
        if !gateway_suffixes.is_empty() {
            let exports = env
                .get("MESH_PROXY_GATEWAY_EXPORTS")
                .unwrap_or_else(default_gateway_exports);
            context = gateway_context(&context, &exports)?;
        }
        let destination = env
            .get("LINKERD2_PROXY_DESTINATION_SVC_ADDR")
            .map(|service_addr| DestinationConfig {
                service_addr,
                service_name: env.get("LINKERD2_PROXY_DESTINATION_SVC_NAME"),
                context,
                profile_networks: env
                    .get("LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS")
                    .unwrap_or_else(|| DEFAULT_PROFILE_NETWORKS.into())
                    .split(',')
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .collect(),
            });
        let identity = match env.get("LINKERD2_PROXY_IDENTITY_SVC_ADDR") {
            Some(service_addr) => {
                let because = "when LINKERD2_PROXY_IDENTITY_SVC_ADDR is";
                Some(IdentityConfig {
                    service_addr,
                    service_name: env.required("LINKERD2_PROXY_IDENTITY_SVC_NAME", because)?,
                    local_name: env.required("LINKERD2_PROXY_IDENTITY_LOCAL_NAME", because)?,
                    trust_anchors: env
                        .required("LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", because)?,
                    token_file: env
                        .get("LINKERD2_PROXY_IDENTITY_TOKEN_FILE")
                        .unwrap_or_else(|| "/var/run/secrets/tokens/linkerd-identity-token".into())
                        .into(),
                    trust_dir: env.get("MESH_PROXY_IDENTITY_TRUST_DIR").map(Into::into),
                })
            }
            None => None,
        };
        let list = |value: Option<String>| -> Vec<String> {
            value
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let policy = PolicyConfig {
            service_addr: env.get("LINKERD2_PROXY_POLICY_SVC_ADDR"),
            service_name: env.get("LINKERD2_PROXY_POLICY_SVC_NAME"),
            workload: env
                .get("LINKERD2_PROXY_POLICY_WORKLOAD")
                .unwrap_or_default(),
            default_policy: env
                .get("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY")
                .unwrap_or_else(|| "all-unauthenticated".into()),
            cluster_networks: list(Some(
                env.get("LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS")
                    .unwrap_or_else(|| mesh_api::ports::DEFAULT_CLUSTER_NETWORKS.into()),
            )),
            ports: list(env.get("LINKERD2_PROXY_INBOUND_PORTS"))
                .iter()
                .map(|p| {
                    p.parse::<u16>().map_err(|_| ConfigError {
                        variable: "LINKERD2_PROXY_INBOUND_PORTS".into(),
                        value: p.clone(),
                        reason: "expected a comma list of ports".into(),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if policy.service_addr.is_some() && policy.workload.is_empty() {
            return Err(ConfigError {
                variable: "LINKERD2_PROXY_POLICY_WORKLOAD".into(),
                value: String::new(),
                reason: "required when LINKERD2_PROXY_POLICY_SVC_ADDR is set".into(),
            });
        }
        Ok(Self {
            policy,
            outbound: env.direction("OUTBOUND", "127.0.0.1:4140", "1s")?,
            inbound: env.direction("INBOUND", "0.0.0.0:4143", "100ms")?,
            admin_listen: env.parse("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:4191")?,
            probe_listen: env
                .get("MESH_PROXY_PROBE_LISTEN_ADDR")
                .filter(|v| !v.trim().is_empty())
                .map(|_| env.parse("MESH_PROXY_PROBE_LISTEN_ADDR", ""))
                .transpose()?,
            control_listen: env.parse("LINKERD2_PROXY_CONTROL_LISTEN_ADDR", "0.0.0.0:4190")?,
            tap_svc_name: env
                .get("LINKERD2_PROXY_TAP_SVC_NAME")
                .filter(|v| !v.trim().is_empty())
                .filter(|_| {
                    env.get("LINKERD2_PROXY_TAP_DISABLED")
                        .is_none_or(|v| v != "true")
                }),
            destination,
            shutdown_grace: env.duration("LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD", "120s")?,
            wait_before_exit: env.duration("MESH_PROXY_WAIT_BEFORE_EXIT", "0s")?,
            worker_threads: env.parse::<usize>("LINKERD2_PROXY_CORES", "1")?.max(1),
            log: env
                .get("LINKERD2_PROXY_LOG")
                .unwrap_or_else(|| "warn,mesh_proxy=info".into()),
            gateway_suffixes,
            quic_reset_key: env
                .get("MESH_PROXY_QUIC_RESET_KEY")
                .map(|value| reset_key(&value))
                .transpose()?,
            quic_congestion: match env.get("MESH_PROXY_QUIC_CONGESTION_CONTROL") {
                None => CongestionControl::default(),
                Some(value) => CongestionControl::parse(&value).ok_or_else(|| ConfigError {
                    variable: "MESH_PROXY_QUIC_CONGESTION_CONTROL".into(),
                    value: value.clone(),
                    reason: format!(
                        "expected one of {}",
                        mesh_api::labels::QUIC_CONGESTION_CONTROLS.join(", ")
                    ),
                })?,
            },
            trusted_gateways: match env.get("MESH_PROXY_TRUSTED_GATEWAYS") {
                Some(list) => list
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
                None => identity
                    .as_ref()
                    .and_then(|i| gateway_identity_beside(&i.local_name))
                    .into_iter()
                    .collect(),
            },
            identity,
        })
    }
}

/// What a gateway exports unless told otherwise: Services labelled
/// `mirror.linkerd.io/exported: "true"`, as a Link mirrors by default.
fn default_gateway_exports() -> String {
    format!(
        r#"{{"matchLabels":{{"{}":"true"}}}}"#,
        mesh_api::labels::MIRROR_EXPORTED
    )
}

/// A gateway's context token: `context` (a JSON object) with
/// `"gatewayExports": <exports>` (a JSON label selector) added last, so that
/// it wins over one already there. The destination service validates the
/// selector and refuses the lookups of a gateway whose selector is invalid.
fn gateway_context(context: &str, exports: &str) -> Result<String, ConfigError> {
    fn object<'v>(variable: &str, value: &'v str) -> Result<&'v str, ConfigError> {
        let value = value.trim();
        value
            .strip_prefix('{')
            .and_then(|v| v.strip_suffix('}'))
            .map(str::trim)
            .ok_or_else(|| ConfigError {
                variable: variable.into(),
                value: value.into(),
                reason: "expected a JSON object".into(),
            })
    }
    let context = object("LINKERD2_PROXY_DESTINATION_CONTEXT", context)?;
    object("MESH_PROXY_GATEWAY_EXPORTS", exports)?;
    let separator = if context.is_empty() { "" } else { "," };
    Ok(format!(
        r#"{{{context}{separator}"gatewayExports":{}}}"#,
        exports.trim()
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_gateway_always_tells_the_destination_service_what_it_exports() {
        let token = |vars: &[(&str, &str)]| {
            config(vars)
                .expect("valid")
                .destination
                .expect("destination")
                .context
        };
        let gateway = [
            ("LINKERD2_PROXY_DESTINATION_SVC_ADDR", "dst:8086"),
            ("MESH_PROXY_GATEWAY_SUFFIXES", "svc.cluster.local"),
        ];
        assert_eq!(
            token(&gateway),
            r#"{"gatewayExports":{"matchLabels":{"mirror.linkerd.io/exported":"true"}}}"#
        );
        let mut configured = gateway.to_vec();
        configured.push((
            "LINKERD2_PROXY_DESTINATION_CONTEXT",
            r#"{"ns":"mc", "gatewayExports":{}}"#,
        ));
        configured.push((
            "MESH_PROXY_GATEWAY_EXPORTS",
            r#"{"matchLabels":{"tier":"public"}}"#,
        ));
        assert_eq!(
            token(&configured),
            r#"{"ns":"mc", "gatewayExports":{},"gatewayExports":{"matchLabels":{"tier":"public"}}}"#,
            "the gateway's own selector comes last, and wins"
        );
        assert_eq!(
            token(&gateway[..1]),
            "{}",
            "a pod's token says nothing of exports"
        );
        let mut broken = gateway.to_vec();
        broken.push(("MESH_PROXY_GATEWAY_EXPORTS", "tier=public"));
        let error = config(&broken).expect_err("not JSON");
        assert_eq!(error.variable, "MESH_PROXY_GATEWAY_EXPORTS");
    }

    #[test]
    fn the_trusted_gateway_is_the_multicluster_gateway_of_the_same_trust_domain() {
        assert_eq!(
            gateway_identity_beside("web.test.serviceaccount.identity.linkerd.example.org")
                .as_deref(),
            Some(
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.example.org"
            )
        );
        assert_eq!(gateway_identity_beside("not-a-mesh-identity"), None);
    }

    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_are_linkerds() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.outbound.listen, "127.0.0.1:4140".parse().expect("addr"));
        assert_eq!(c.inbound.listen, "0.0.0.0:4143".parse().expect("addr"));
        assert_eq!(c.admin_listen, "0.0.0.0:4191".parse().expect("addr"));
        assert!(c.inbound.opaque_ports.contains(3306));
        assert!(!c.inbound.opaque_ports.contains(8080));
        assert_eq!(c.inbound.detect_timeout, Duration::from_secs(10));
        assert!(c.destination.is_none() && c.identity.is_none());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("MESH_PROXY_INBOUND_PORTS_SKIP", "22,ssh")]).expect_err("bad port");
        assert_eq!(err.variable, "MESH_PROXY_INBOUND_PORTS_SKIP");
        assert!(err.to_string().contains("\"ssh\""), "{err}");
        let err =
            config(&[("LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT", "soon")]).expect_err("bad time");
        assert!(
            err.to_string()
                .contains("LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT"),
            "{err}"
        );
        let err = config(&[("LINKERD2_PROXY_IDENTITY_SVC_ADDR", "identity:8080")])
            .expect_err("partial identity");
        assert_eq!(err.variable, "LINKERD2_PROXY_IDENTITY_SVC_NAME");
    }

    /// QUIC's congestion controller is BBR unless set; a name it does not
    /// know is refused, named, rather than silently replaced by the
    /// default.
    #[test]
    fn quic_congestion_control_defaults_to_bbr_and_refuses_unknown_names() {
        assert_eq!(
            config(&[]).expect("valid").quic_congestion,
            CongestionControl::Bbr
        );
        let c = config(&[("MESH_PROXY_QUIC_CONGESTION_CONTROL", " Cubic ")]).expect("valid");
        assert_eq!(c.quic_congestion, CongestionControl::Cubic);
        let err = config(&[("MESH_PROXY_QUIC_CONGESTION_CONTROL", "reno")]).expect_err("reno");
        assert_eq!(err.variable, "MESH_PROXY_QUIC_CONGESTION_CONTROL");
        assert!(err.to_string().contains("reno"), "{err}");
    }

    /// A gateway's shared QUIC reset key is base64 of at least 32 bytes; a
    /// bad one names the variable and never echoes the secret.
    #[test]
    fn a_quic_reset_key_is_long_enough_and_never_echoed() {
        let key = "bWVzaC10ZXN0LXJlc2V0LWtleS0zMi1ieXRlcy1sb25nIQ==";
        let c = config(&[("MESH_PROXY_QUIC_RESET_KEY", key)]).expect("valid");
        assert_eq!(c.quic_reset_key.map(|k| k.len()), Some(34));
        for bad in ["c2hvcnQ=", "not base64!"] {
            let err = config(&[("MESH_PROXY_QUIC_RESET_KEY", bad)]).expect_err(bad);
            assert_eq!(err.variable, "MESH_PROXY_QUIC_RESET_KEY");
            assert!(!err.to_string().contains(bad), "{err}");
        }
        assert!(config(&[]).expect("defaults").quic_reset_key.is_none());
    }

    #[test]
    fn discovery_and_identity_are_read_together() {
        let c = config(&[
            (
                "LINKERD2_PROXY_DESTINATION_SVC_ADDR",
                "linkerd-dst-headless.linkerd.svc.cluster.local.:8086",
            ),
            (
                "LINKERD2_PROXY_DESTINATION_CONTEXT",
                r#"{"ns":"shop","nodeName":"west","pod":"web-1"}"#,
            ),
            (
                "LINKERD2_PROXY_IDENTITY_SVC_ADDR",
                "linkerd-identity-headless.linkerd.svc.cluster.local.:8080",
            ),
            (
                "LINKERD2_PROXY_IDENTITY_SVC_NAME",
                "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local",
            ),
            (
                "LINKERD2_PROXY_IDENTITY_LOCAL_NAME",
                "web.shop.serviceaccount.identity.linkerd.cluster.local",
            ),
            (
                "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS",
                "-----BEGIN CERTIFICATE-----",
            ),
        ])
        .expect("config");
        let dst = c.destination.expect("destination");
        assert!(dst.context.contains("web-1"));
        assert_eq!(dst.profile_networks.len(), 5);
        assert_eq!(
            c.identity.expect("identity").token_file,
            std::path::PathBuf::from("/var/run/secrets/tokens/linkerd-identity-token")
        );
    }
}
