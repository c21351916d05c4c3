//! Feeding TLS connections to tonic: an accept loop that completes each
//! handshake on its own task (a slow client never holds up the others) and
//! a stream of finished connections for `serve_with_incoming`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client gets to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server-side TLS connection tonic can serve.
#[derive(Debug)]
pub struct TlsIncoming(TlsStream<TcpStream>);

impl TlsIncoming {
    /// Accepts on `listener`, handshakes with `config` and sends finished
    /// connections to `out` until `stop` completes.
    pub async fn accept_loop(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        out: mpsc::Sender<std::io::Result<TlsIncoming>>,
        stop: impl Future<Output = ()>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
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
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let out = out.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = out.send(Ok(TlsIncoming(tls))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
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
        let (tcp, tls) = self.0.get_ref();
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
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIncoming {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
