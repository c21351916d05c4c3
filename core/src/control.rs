//! gRPC channels to the control plane (identity and destination services):
//! lazy, reconnecting, and over mutual TLS that checks the service's own
//! identity when one is configured.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::tls::{self, ALPN_H2, Credentials, TlsError};

/// Why a channel cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The address is not `host:port`.
    #[error("control-plane address {0:?} is not host:port")]
    Address(String),
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A lazy gRPC channel to `addr` (`host:port`). With `tls`, the service
/// must present the given identity, verified against the credentials'
/// roots; without it the channel is plain text (tests, unmeshed control
/// planes).
pub fn channel(
    addr: &str,
    tls: Option<(&str, &Arc<Credentials>)>,
) -> Result<Channel, ChannelError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| ChannelError::Address(addr.to_owned()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // Watches are long and mostly quiet: pings notice a peer that went
        // away without closing (a node lost, a partition) so the stream is
        // re-opened elsewhere.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true);
    let Some((server_identity, credentials)) = tls else {
        return Ok(endpoint.connect_lazy());
    };
    let connector = tokio_rustls::TlsConnector::from(credentials.client_config(&[ALPN_H2])?);
    let server_name = tls::server_name(server_identity)?;
    let addr = addr.to_owned();
    let connect = tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let addr = addr.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr.as_str()).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}
