//! Moving bytes: an opaque connection relayed to its server until both
//! sides close, and skipped ports forwarded untouched.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Copies both ways between `client` and `server` until both are done.
pub async fn copy<C, S>(mut client: C, mut server: S)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
        tracing::debug!("relay: {e}");
    }
}

/// Forwards `client` to `target` without looking at it (skipped ports).
pub async fn raw(client: TcpStream, target: SocketAddr, timeout: Duration) {
    match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
        Ok(Ok(server)) => {
            let _ = server.set_nodelay(true);
            copy(client, server).await;
        }
        Ok(Err(e)) => tracing::debug!(%target, "forwarding: {e}"),
        Err(_) => tracing::debug!(%target, "forwarding: connect timed out"),
    }
}
