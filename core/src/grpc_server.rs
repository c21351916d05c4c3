//! Serving a control-plane gRPC API (destination, policy) the way proxies
//! expect: over mutual-TLS-capable TLS with a certificate for the
//! component's own identity, certified by the identity service and renewed
//! as a proxy's is, or in plain text when no identity is configured
//! (development, tests). Either way it stops on the drain signal.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tonic::transport::server::Router;

use crate::drain::Drain;
use crate::identity::{CredentialsError, IdentityConfig};
use crate::tls::incoming::TlsIncoming;
use crate::tls::{ClientAuth, Credentials, TlsError};

/// How a component proves its identity to proxies.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Its identity (`linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local`).
    pub local_identity: String,
    /// The trust anchors (PEM).
    pub trust_anchors_pem: String,
    /// Where and how to get certificates.
    pub identity: IdentityConfig,
}

/// What a running index-backed component (destination, policy) tells its
/// caller.
#[derive(Debug)]
pub struct Started<I> {
    /// Where gRPC listens.
    pub addr: SocketAddr,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// The index (for tests and benchmarks).
    pub index: Arc<Mutex<I>>,
}

/// Why such a component could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its gRPC server (its credentials, TLS) could not be set up.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A listener could not be bound.
    #[error(transparent)]
    Listen(#[from] crate::listen::ListenError),
}

/// Runs an index-backed component (destination, policy): binds `listen`
/// and `admin_listen`, stops its `watchers` on the drain, serves `router`
/// (over certified TLS with `tls`), and serves its admin endpoint
/// (`extend` adds the component's own routes), ready once `synced` and,
/// with TLS, certified. `what` names it in logs.
#[allow(clippy::too_many_arguments)]
pub async fn start_indexed<I: Send + 'static>(
    what: &'static str,
    listen: SocketAddr,
    admin_listen: SocketAddr,
    tls: Option<ServerTls>,
    index: Arc<Mutex<I>>,
    (mut watchers, synced): (tokio::task::JoinSet<()>, crate::admin::Readiness),
    router: Router,
    extend: impl FnOnce(crate::admin::Admin) -> crate::admin::Admin,
) -> Result<crate::drain::Serving<Started<I>>, StartError> {
    let (listener, addr) = crate::listen::bind(listen).await?;
    let (admin_listener, admin_addr) = crate::listen::bind(admin_listen).await?;
    let mut drain = Drain::new();
    let watch_stop = drain.signaled();
    drain.spawn(async move {
        watch_stop.await;
        watchers.shutdown().await;
    });
    let mut registry = Registry::default();
    let credentials = serve(router, listener, tls, &mut registry, &mut drain, what)?;
    // Ready once proxies can be served: every kind listed, and with TLS,
    // certified.
    let admin = extend(crate::admin::Admin::new(Arc::new(registry), move || {
        synced.is_ready() && credentials.as_ref().is_none_or(|c| c.has_certificate())
    }));
    drain.spawn(admin.serve(admin_listener, drain.signaled()));
    tracing::info!(%addr, %admin_addr, "{what} started");
    Ok(crate::drain::Serving::new(
        Started {
            addr,
            admin_addr,
            index,
        },
        drain,
    ))
}

/// Why a gRPC server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Its own credentials could not be set up.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Serves `router` on `listener` until `drain` signals (`what` names it in
/// logs); with `tls`, over TLS with certified credentials, which it returns
/// (their metrics in `registry`).
pub fn serve(
    router: Router,
    listener: TcpListener,
    tls: Option<ServerTls>,
    registry: &mut Registry,
    drain: &mut Drain,
    what: &'static str,
) -> Result<Option<Arc<Credentials>>, ServeError> {
    let stop = drain.signaled();
    let Some(tls) = tls else {
        let incoming = tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(10)));
        drain.spawn(async move {
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
                tracing::error!("{what} gRPC server failed: {e}");
            }
        });
        return Ok(None);
    };
    let credentials = crate::identity::certified_credentials(
        &tls.local_identity,
        &tls.trust_anchors_pem,
        tls.identity,
        registry,
        drain,
    )?;
    let server_config = credentials.server_config(ClientAuth::Optional, &[b"h2"])?;
    let (conns_tx, conns_rx) = tokio::sync::mpsc::channel(64);
    drain.spawn(TlsIncoming::accept_loop(
        listener,
        server_config,
        conns_tx,
        drain.signaled(),
        crate::tls::incoming::CONTROL_MAX_CONNECTIONS,
    ));
    drain.spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(TlsIncoming::stream(conns_rx), stop)
            .await
        {
            tracing::error!("{what} gRPC server failed: {e}");
        }
    });
    Ok(Some(credentials))
}
