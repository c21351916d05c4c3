//! Binding a listener, with an error that names the address, and taking
//! its connections in without letting a flood of them hold back the
//! connections already open.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("listening on {addr}: {source}")]
pub struct ListenError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Binds `addr`; also returns the address bound (the port chosen for 0).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ListenError> {
    let failed = |source| ListenError { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

/// Accepts `listener`'s next connection, once the runtime has polled its
/// I/O since the last one.
///
/// An accept loop that takes every waiting connection in at once queues a
/// task for each ahead of everything else: during a flood of connections
/// (thousands of stalled TLS handshakes, say), a request arriving on a
/// connection already open waits behind all of them, because tokio only
/// polls I/O when its run queue empties or every 61 tasks. Yielding first
/// puts the loop behind the tasks that I/O woke in the meantime (tokio
/// runs a yielded task after its next I/O poll), so new connections are
/// taken in one at a time, between the requests of the open ones.
pub async fn accept_fairly(
    listener: &TcpListener,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    tokio::task::yield_now().await;
    listener.accept().await
}
