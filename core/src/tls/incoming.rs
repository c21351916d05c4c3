//! Feeding TLS connections to tonic: an accept loop that completes each
//! handshake on its own task (a slow client never holds up the others),
//! holding at most a set number of connections (handshaking or served) at
//! once, and a stream of finished connections for `serve_with_incoming`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client gets to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections a control-plane gRPC listener holds at once
/// (two or three per proxy, so room for thousands of pods per replica).
pub const CONTROL_MAX_CONNECTIONS: usize = 20_000;

/// A server-side TLS connection tonic can serve, holding its place among
/// the listener's connections until it closes.
#[derive(Debug)]
pub struct TlsIncoming {
    stream: TlsStream<TcpStream>,
    /// Released when the connection closes.
    _place: OwnedSemaphorePermit,
}

impl TlsIncoming {
    /// Accepts on `listener`, handshakes with `config` and sends finished
    /// connections to `out` until `stop` completes. At most
    /// `max_connections` are held at once, handshaking or served: one more
    /// is closed as soon as it is accepted (a client that opens thousands
    /// of connections and never finishes a handshake costs a bounded
    /// amount, for at most the handshake timeout each).
    pub async fn accept_loop(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        out: mpsc::Sender<std::io::Result<TlsIncoming>>,
        stop: impl Future<Output = ()>,
        max_connections: usize,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let places = Arc::new(Semaphore::new(max_connections));
        let mut listener = crate::listen::FairAcceptor::new(listener);
        tokio::pin!(stop);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                },
                () = &mut stop => return,
            };
            let Ok(place) = places.clone().try_acquire_owned() else {
                tracing::debug!(%peer, max_connections, "the listener is full: a new connection is closed");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let out = out.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = out
                            .send(Ok(TlsIncoming {
                                stream: tls,
                                _place: place,
                            }))
                            .await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    }

    /// The certificate the client presented first (its own), if any.
    pub fn peer_certificate(&self) -> Option<&rustls_pki_types::CertificateDer<'static>> {
        self.stream.get_ref().1.peer_certificates()?.first()
    }

    /// The client's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.get_ref().0.peer_addr().ok()
    }

    /// The finished connections, as tonic wants them.
    pub fn stream(
        rx: mpsc::Receiver<std::io::Result<TlsIncoming>>,
    ) -> ReceiverStream<std::io::Result<TlsIncoming>> {
        ReceiverStream::new(rx)
    }
}

/// Who is on the other end of a [`TlsIncoming`] connection (in each
/// request's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The client's identity, when it presented a certificate.
    pub identity: Option<String>,
    /// The client's address.
    pub addr: Option<std::net::SocketAddr>,
}

impl tonic::transport::server::Connected for TlsIncoming {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        let (tcp, tls) = self.stream.get_ref();
        PeerInfo {
            identity: super::peer_identity(tls),
            addr: tcp.peer_addr().ok(),
        }
    }
}

impl AsyncRead for TlsIncoming {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIncoming {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn server_config() -> Arc<rustls::ServerConfig> {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("config");
        Arc::new(config)
    }

    /// Whether the server closed `stream` within a second.
    async fn closed_at_once(stream: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// Attack: connections that never start their handshake, more than the
    /// listener holds. Past the bound each new one is closed at once; a
    /// place freed by a client that leaves is given to the next.
    #[tokio::test]
    async fn connections_past_the_bound_are_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, _rx) = mpsc::channel(8);
        tokio::spawn(TlsIncoming::accept_loop(
            listener,
            server_config(),
            tx,
            std::future::pending(),
            2,
        ));
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stalled = TcpStream::connect(addr).await.expect("connect");
            assert!(
                !closed_at_once(&mut stalled).await,
                "within the bound, a connection waits for its handshake"
            );
            held.push(stalled);
        }
        let mut third = TcpStream::connect(addr).await.expect("connect");
        assert!(
            closed_at_once(&mut third).await,
            "the third connection is closed at once"
        );
        drop(held.pop());
        // The server notices the client left when its handshake fails.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut next = TcpStream::connect(addr).await.expect("connect");
        assert!(
            !closed_at_once(&mut next).await,
            "a freed place is given to the next connection"
        );
    }
}
