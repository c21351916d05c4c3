//! Running the identity service: gRPC `Certify` over TLS on 8080 (the
//! service presents its own identity, `linkerd-identity.<ns>.serviceaccount…`,
//! issued by itself), the admin endpoint, and the loop that picks up issuer
//! rotations and keeps the service's own certificate fresh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use linkerd2_proxy_api::identity::identity_server::IdentityServer;
use mesh_api::IdentityName;
use mesh_core::admin::Admin;
use mesh_core::drain::{Drain, Serving};
use mesh_core::identity::{LocalKey, schedule};
use mesh_core::listen::ListenError;
use mesh_core::tls::{ALPN_H2, ClientAuth, Credentials, TlsError};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::ca::IssuancePolicy;
use crate::issuer::{IssuerFiles, IssuerStore, LoadError, Loaded, Reload};
use crate::metrics::Metrics;
use crate::service::CertifyService;
use crate::token::TokenReviewer;
use crate::trust_copies::TrustCopies;
use mesh_core::tls::incoming::TlsIncoming;

/// How the identity service runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The gRPC listener (`0.0.0.0:8080`).
    pub listen: SocketAddr,
    /// The admin listener (`0.0.0.0:9990`).
    pub admin_listen: SocketAddr,
    /// The trust anchors and issuer files.
    pub files: IssuerFiles,
    /// Leaf lifetime and back-dating.
    pub policy: IssuancePolicy,
    /// The control plane's namespace (`linkerd`).
    pub control_namespace: String,
    /// The trust domain (`cluster.local`).
    pub trust_domain: String,
    /// How often the issuer files are checked for changes.
    pub reload_interval: Duration,
    /// Per-source rate and TokenReview concurrency limits.
    pub admission: crate::admission::Limits,
    /// Keep the trust roots copies in workloads' namespaces
    /// ([`crate::trust_copies`]).
    pub trust_copies: bool,
}

/// What a running identity service tells its caller.
#[derive(Debug)]
pub struct Started {
    /// Where gRPC listens.
    pub addr: SocketAddr,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// The identity the service presents.
    pub server_identity: String,
    /// Its metrics.
    pub metrics: Metrics,
}

/// A running identity service: where it listens, and how it stops.
pub type Running = Serving<Started>;

/// Why the identity service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The issuance policy cannot be used.
    #[error("{0}")]
    Policy(String),
    /// The issuer or the trust anchors are unusable.
    #[error(transparent)]
    Issuer(#[from] LoadError),
    /// The service could not issue its own certificate.
    #[error("issuing the identity service's own certificate: {0}")]
    OwnCertificate(String),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
}

/// Loads the issuer (failing when it is unusable), binds both listeners and
/// starts serving.
pub async fn start(config: ServerConfig, client: kube::Client) -> Result<Running, StartError> {
    config.policy.check().map_err(StartError::Policy)?;
    let issuer = Arc::new(IssuerStore::load(
        config.files.clone(),
        config.policy,
        SystemTime::now(),
    )?);
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let loaded = issuer
        .current()
        .ok_or_else(|| StartError::OwnCertificate("no issuer after loading".into()))?;
    record_issuer(&metrics, &loaded);

    let server_identity = IdentityName {
        service_account: "linkerd-identity".into(),
        namespace: config.control_namespace.clone(),
        control_namespace: config.control_namespace.clone(),
        trust_domain: config.trust_domain.clone(),
    };
    let credentials = Credentials::new(server_identity.to_string(), loaded.roots.certs())?;
    let mut own_renewal = self_certify(&loaded, &server_identity, &credentials)
        .map_err(|e| StartError::OwnCertificate(e.to_string()))?;

    let (listener, addr) = mesh_core::listen::bind(config.listen).await?;
    let (admin_listener, admin_addr) = mesh_core::listen::bind(config.admin_listen).await?;
    let mut drain = Drain::new();

    let mut service = CertifyService::new(
        issuer.clone(),
        TokenReviewer::new(client.clone(), mesh_api::labels::IDENTITY_TOKEN_AUDIENCE),
        config.control_namespace.clone(),
        config.trust_domain.clone(),
        metrics.clone(),
        crate::admission::Admission::new(config.admission),
    );
    let issuer_changed = Arc::new(tokio::sync::Notify::new());
    if config.trust_copies {
        let copies = TrustCopies::new(client, config.control_namespace.clone());
        service = service.with_trust_copies(copies.clone());
        drain.spawn(copies.run(issuer.clone(), issuer_changed.clone(), drain.signaled()));
    }
    let server_config = credentials.server_config(ClientAuth::Optional, &[ALPN_H2])?;
    let (conns_tx, conns_rx) = mpsc::channel(64);
    drain.spawn(TlsIncoming::accept_loop(
        listener,
        server_config,
        conns_tx,
        drain.signaled(),
        mesh_core::tls::incoming::CONTROL_MAX_CONNECTIONS,
    ));
    let grpc_stop = drain.signaled();
    drain.spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(IdentityServer::new(service))
            .serve_with_incoming_shutdown(TlsIncoming::stream(conns_rx), grpc_stop)
            .await;
        if let Err(e) = result {
            tracing::error!("identity gRPC server failed: {e}");
        }
    });
    let ready_issuer = issuer.clone();
    let admin = Admin::new(Arc::new(registry), move || ready_issuer.current().is_some());
    drain.spawn(admin.serve(admin_listener, drain.signaled()));

    let reload_metrics = metrics.clone();
    let reload_stop = drain.signaled();
    let interval = config.reload_interval;
    let identity = server_identity.clone();
    drain.spawn(async move {
        tokio::pin!(reload_stop);
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = &mut reload_stop => return,
            }
            match issuer.reload(SystemTime::now()) {
                Ok(Reload::Unchanged) => {}
                Ok(Reload::Changed) => {
                    reload_metrics.reloads.inc();
                    issuer_changed.notify_one();
                    if let Some(loaded) = issuer.current() {
                        tracing::info!(issuer = loaded.ca.subject(), "loaded a new issuer");
                        record_issuer(&reload_metrics, &loaded);
                        if let Err(e) = credentials.set_roots(loaded.roots.certs()) {
                            tracing::error!("the new trust anchors are unusable for TLS: {e}");
                        }
                        own_renewal = tokio::time::Instant::now();
                    }
                }
                Err(e) => {
                    reload_metrics.reload_failures.inc();
                    tracing::error!("the issuer files changed but cannot be used; keeping the current issuer: {e}");
                }
            }
            if tokio::time::Instant::now() >= own_renewal
                && let Some(loaded) = issuer.current()
            {
                match self_certify(&loaded, &identity, &credentials) {
                    Ok(next) => own_renewal = next,
                    Err(e) => tracing::error!("renewing the identity service's own certificate: {e}"),
                }
            }
        }
    });
    tracing::info!(%addr, %admin_addr, identity = %server_identity, "identity service started");
    let started = Started {
        addr,
        admin_addr,
        server_identity: server_identity.to_string(),
        metrics,
    };
    Ok(Serving::new(started, drain))
}

fn record_issuer(metrics: &Metrics, loaded: &Loaded) {
    let expiry = loaded
        .ca
        .not_after()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    metrics.issuer_expiration.set(expiry.as_secs_f64());
}

/// Issues the service its own certificate; returns when to renew it.
fn self_certify(
    loaded: &Loaded,
    identity: &IdentityName,
    credentials: &Credentials,
) -> Result<tokio::time::Instant, Box<dyn std::error::Error + Send + Sync>> {
    let name = identity.to_string();
    let key = LocalKey::generate(&name)?;
    let now = SystemTime::now();
    let issued = loaded
        .ca
        .certify(&name, &identity.spiffe_id(), key.csr_der(), now)?;
    let mut chain = vec![issued.leaf];
    chain.extend(issued.intermediates);
    credentials.set_certificate(chain, key.private_key())?;
    let left = issued.valid_until.duration_since(now).unwrap_or_default();
    Ok(tokio::time::Instant::now() + schedule::renew_after(left))
}
