//! The proxy assembled from its configuration: identity (certificate and
//! renewal), discovery, the outbound, inbound and admin listeners, and a
//! shutdown on SIGTERM, SIGINT or `POST /shutdown` that stops accepting and
//! lets in-flight requests finish within the grace period.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::discover::Discovery;
use crate::endpoint::TlsClients;
use crate::inbound::Inbound;
use crate::metrics::{HttpMetrics, TcpMetrics};
use crate::outbound::Outbound;
use mesh_core::admin::Admin;
use mesh_core::drain::Drain;
use mesh_core::identity::schedule::Backoff;
use mesh_core::identity::{CredentialsError, IdentityConfig};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The trust anchors are unusable.
    #[error("LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS: {0}")]
    Anchors(String),
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] mesh_core::tls::TlsError),
    /// A control-plane channel could not be set up.
    #[error(transparent)]
    Channel(#[from] mesh_core::control::ChannelError),
    /// A listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A profile network is not a CIDR.
    #[error(
        "LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS: {0:?} is not a network such as 10.0.0.0/8"
    )]
    Network(String),
    /// A cluster network is not a CIDR.
    #[error("LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS: {0:?} is not a network such as 10.0.0.0/8")]
    ClusterNetwork(String),
    /// The default inbound policy is not one.
    #[error("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY: {0}")]
    DefaultPolicy(String),
}

/// Each inbound port's policy: from the policy controller when one is
/// configured (over mutual TLS when it has an identity), the default policy
/// until it answers.
/// A channel to the policy controller, when one is configured.
fn policy_channel(
    config: &crate::config::PolicyConfig,
    credentials: Option<&Arc<mesh_core::tls::Credentials>>,
) -> Result<Option<tonic::transport::Channel>, StartError> {
    config
        .service_addr
        .as_ref()
        .map(|addr| {
            let tls = match (&config.service_name, credentials) {
                (Some(name), Some(credentials)) => Some((name.as_str(), credentials)),
                _ => None,
            };
            mesh_core::control::channel(addr, tls)
        })
        .transpose()
        .map_err(StartError::from)
}

fn policies(
    config: &crate::config::PolicyConfig,
    channel: Option<tonic::transport::Channel>,
) -> Result<Arc<crate::inbound::policy::watch::Policies>, StartError> {
    let networks = config
        .cluster_networks
        .iter()
        .map(|n| n.parse().map_err(|_| StartError::ClusterNetwork(n.clone())))
        .collect::<Result<Vec<ipnet::IpNet>, _>>()?;
    let default = crate::inbound::policy::authorize::ServerPolicy::default_named(
        &config.default_policy,
        &networks,
    )
    .map_err(|e| StartError::DefaultPolicy(e.to_string()))?;
    Ok(crate::inbound::policy::watch::Policies::new(
        channel,
        config.workload.clone(),
        default,
        &config.ports,
    ))
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

/// Runs the proxy until a shutdown is asked for and has drained.
pub async fn run(config: Config) -> Result<(), StartError> {
    let mut registry = Registry::default();
    let http_metrics = HttpMetrics::register(&mut registry);
    let tcp_metrics = TcpMetrics::register(&mut registry);
    let quic_metrics = crate::quic::QuicMetrics::register(&mut registry);
    let taps = crate::tap::Taps::register(&mut registry);
    let mut drain = Drain::new();

    let credentials = match &config.identity {
        Some(identity) => Some(
            mesh_core::identity::certified_credentials(
                &identity.local_name,
                &identity.trust_anchors,
                IdentityConfig {
                    addr: identity.service_addr.clone(),
                    server_identity: identity.service_name.clone(),
                    token_path: identity.token_file.clone(),
                    backoff: Backoff::default(),
                    trust_dir: identity
                        .trust_dir
                        .clone()
                        .map(|dir| (dir, identity.trust_anchors.clone())),
                },
                &mut registry,
                &mut drain,
            )
            .map_err(|e| match e {
                CredentialsError::Anchors(e) => StartError::Anchors(e),
                CredentialsError::Tls(e) => StartError::Tls(e),
            })?,
        ),
        None => None,
    };
    let tls = credentials
        .as_ref()
        .map(|c| TlsClients::new(c, quic_metrics.clone(), config.quic_congestion))
        .transpose()?;
    let policy_channel = policy_channel(&config.policy, credentials.as_ref())?;
    let discovery = match &config.destination {
        Some(destination) => {
            let networks = destination
                .profile_networks
                .iter()
                .map(|n| n.parse().map_err(|_| StartError::Network(n.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            let tls = match (&destination.service_name, &credentials) {
                (Some(name), Some(credentials)) => Some((name.as_str(), credentials)),
                _ => None,
            };
            let channel = mesh_core::control::channel(&destination.service_addr, tls)?;
            let outbound_policies = policy_channel
                .clone()
                .map(|channel| (channel, config.policy.workload.clone()));
            Some(Discovery::new(
                channel,
                destination.context.clone(),
                networks,
                outbound_policies,
            ))
        }
        None => None,
    };

    let outbound = Outbound::new(
        config.outbound.clone(),
        discovery,
        tls,
        http_metrics.clone(),
        tcp_metrics.clone(),
        taps.clone(),
    );
    let gateway = credentials
        .as_ref()
        .filter(|_| !config.gateway_suffixes.is_empty())
        .map(|credentials| {
            crate::gateway::Gateway::new(
                config.gateway_suffixes.clone(),
                credentials.local_identity().to_owned(),
                outbound.clone(),
                &mut registry,
            )
        });
    let is_gateway = gateway.is_some();
    let policies = policies(&config.policy, policy_channel)?;
    let authz_metrics = crate::inbound::policy::metrics::AuthzMetrics::register(&mut registry);
    let inbound = Inbound::new(
        config.inbound.clone(),
        credentials.clone(),
        http_metrics,
        tcp_metrics,
        gateway,
        config.trusted_gateways.clone(),
        policies,
        authz_metrics,
        taps.clone(),
    )?;
    let outbound_listener = bind(config.outbound.listen).await?;
    let inbound_listener = bind(config.inbound.listen).await?;
    // A gateway's QUIC socket too, before anything answers `/ready`: a
    // proxy that cannot bind it exits without ever having said it is
    // ready.
    let quic_endpoint = credentials
        .as_ref()
        .filter(|_| is_gateway)
        .map(|credentials| {
            crate::quic::server_endpoint(
                credentials,
                config.inbound.listen,
                config.quic_reset_key.as_deref(),
                config.quic_congestion,
                &quic_metrics,
            )
        })
        .transpose()?;
    let admin_listener = bind(config.admin_listen).await?;

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let ready_credentials = credentials.clone();
    let admin = Admin::new(Arc::new(registry), move || {
        ready_credentials
            .as_ref()
            .is_none_or(|c| c.has_certificate())
    })
    .with_shutdown(move || {
        let _ = stop_tx.send(true);
    });
    if let Some(probe_listen) = config.probe_listen {
        let probe_listener = bind(probe_listen).await?;
        drain.spawn(
            admin
                .clone()
                .probes_only()
                .serve(probe_listener, drain.signaled()),
        );
    }
    drain.spawn(admin.serve(admin_listener, drain.signaled()));
    drain.spawn(outbound.serve(outbound_listener, drain.signal()));
    // A gateway also takes QUIC on its inbound port, over UDP (bound
    // above, before the admin server could say it is ready).
    if let Some(endpoint) = quic_endpoint {
        let quic_inbound = inbound.clone();
        let signal = drain.signal();
        drain.spawn(crate::quic::serve(
            endpoint,
            quic_metrics,
            drain.signal(),
            move |stream, identity, remote| {
                quic_inbound
                    .clone()
                    .quic_stream(stream, identity, remote, signal.clone())
            },
        ));
    }
    drain.spawn(inbound.serve(inbound_listener, drain.signal()));
    // Tap, for its one authorized client, when the proxy has an identity
    // to serve it with (and was built with the `tap` feature).
    if !cfg!(feature = "tap") && config.tap_svc_name.is_some() {
        tracing::warn!("LINKERD2_PROXY_TAP_SVC_NAME is set, but this proxy was built without tap");
    }
    let tap = credentials
        .as_ref()
        .filter(|_| cfg!(feature = "tap"))
        .zip(config.tap_svc_name.clone())
        .map(|(credentials, authorized)| {
            let service = crate::tap::server::TapService::new(taps, authorized);
            (credentials, service)
        });
    if let Some((credentials, service)) = tap {
        let listener = bind(config.control_listen).await?;
        drain.spawn(crate::tap::server::serve(
            listener,
            credentials,
            service,
            drain.signal(),
        )?);
    }
    tracing::info!(
        outbound = %config.outbound.listen,
        inbound = %config.inbound.listen,
        admin = %config.admin_listen,
        identity = credentials.as_ref().map(|c| c.local_identity()).unwrap_or("none"),
        "proxy started"
    );

    let reason = wait_for_stop(&mut stop_rx).await;
    if !config.wait_before_exit.is_zero() {
        // Still serving, new connections included, while the Service's
        // endpoints move to a replacement pod (kube-proxy sends new
        // connections to a terminating pod only while it has no other).
        tracing::info!(
            "{reason}: serving for {} more before draining",
            humantime::format_duration(config.wait_before_exit)
        );
        tokio::time::sleep(config.wait_before_exit).await;
    }
    tracing::info!(
        "{reason}: draining for up to {}",
        humantime::format_duration(config.shutdown_grace)
    );
    drain.shutdown(config.shutdown_grace).await;
    Ok(())
}

async fn wait_for_stop(admin: &mut tokio::sync::watch::Receiver<bool>) -> &'static str {
    tokio::select! {
        reason = mesh_core::drain::terminated() => reason,
        _ = admin.wait_for(|stop| *stop) => "POST /shutdown",
    }
}
