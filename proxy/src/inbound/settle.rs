//! What the inbound side does when detection does not know, on a port
//! that is not opaque. Relaying such a connection as opaque TCP would let
//! a client reach an HTTP application with headers the proxy never saw
//! (a forged `l5d-client-id`, sent once detection has given up), so:
//!
//! - a client that said nothing within the detection timeout waits for
//!   whoever speaks first: the application (a server-speaks-first
//!   protocol, relayed as opaque TCP on that same connection), or the
//!   client, whose bytes are detected then as if it had spoken at once;
//! - a client whose bytes could still begin HTTP or TLS when the timeout
//!   or the byte limit came (a stalled or over-long request line) is
//!   closed.
//!
//! The application's connection is opened before the client is
//! authorized, and nothing is relayed on it until the client is.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::detect::{self, Detection, Prefixed, Protocol};

/// How a connection is to be served.
#[derive(Debug)]
pub(crate) enum Session {
    /// As its first bytes say.
    Detected(Protocol),
    /// As opaque TCP on this connection to the application, which spoke
    /// first.
    ServerFirst(TcpStream),
}

/// Why a connection is not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unsettled {
    /// Reading or connecting failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The application could not be reached while the client was silent.
    #[error("the application did not accept a connection within {0:?}")]
    ConnectTimeout(Duration),
    /// The bytes could still have begun HTTP or TLS.
    #[error(
        "its first {0} bytes could begin HTTP or TLS, then it stalled or sent too much: closed"
    )]
    Undecided(usize),
}

/// The limits detection works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub detect_timeout: Duration,
    pub connect_timeout: Duration,
}

/// Detects what `io` speaks; with `settle`, what detection does not know
/// is settled as this module says (for `target`, the application),
/// otherwise it is opaque TCP.
pub(crate) async fn detect<I: AsyncRead + Unpin>(
    io: I,
    target: SocketAddr,
    settle: bool,
    limits: Limits,
) -> Result<(Session, Prefixed<I>), Unsettled> {
    let (detection, io) =
        detect::detect(io, limits.detect_timeout, detect::MAX_DETECT_BYTES).await?;
    match detection {
        Detection::Is(protocol) => Ok((Session::Detected(protocol), io)),
        _ if !settle => Ok((Session::Detected(Protocol::Opaque), io)),
        Detection::Undecided => Err(Unsettled::Undecided(io.prefix().len())),
        Detection::Silent => {
            let (_, io) = io.into_parts();
            first_to_speak(io, target, limits).await
        }
    }
}

/// Opens a connection to the application at `target` and serves whoever
/// speaks first.
async fn first_to_speak<I: AsyncRead + Unpin>(
    mut io: I,
    target: SocketAddr,
    limits: Limits,
) -> Result<(Session, Prefixed<I>), Unsettled> {
    let app = tokio::time::timeout(limits.connect_timeout, TcpStream::connect(target))
        .await
        .map_err(|_| Unsettled::ConnectTimeout(limits.connect_timeout))??;
    let _ = app.set_nodelay(true);
    let mut read = BytesMut::with_capacity(1024);
    tokio::select! {
        ready = app.readable() => {
            ready?;
            return Ok((Session::ServerFirst(app), Prefixed::new(read, io)));
        }
        n = io.read_buf(&mut read) => { n?; }
    }
    drop(app);
    let (detection, io) =
        detect::detect_after(read, io, limits.detect_timeout, detect::MAX_DETECT_BYTES).await?;
    match detection {
        Detection::Is(protocol) => Ok((Session::Detected(protocol), io)),
        Detection::Silent | Detection::Undecided => Err(Unsettled::Undecided(io.prefix().len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const LIMITS: Limits = Limits {
        detect_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(5),
    };

    async fn app() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, addr)
    }

    #[tokio::test]
    async fn a_client_silent_until_after_the_timeout_is_still_detected() {
        let (_listener, target) = app().await;
        let (mut client, server) = tokio::io::duplex(1024);
        let speak_late = tokio::spawn(async move {
            tokio::time::sleep(LIMITS.detect_timeout * 3).await;
            client
                .write_all(b"GET / HTTP/1.1\r\nl5d-client-id: forged\r\n\r\n")
                .await
                .expect("write");
            client
        });
        let (session, _) = detect(server, target, true, LIMITS).await.expect("settled");
        assert!(
            matches!(session, Session::Detected(Protocol::Http1)),
            "{session:?}: served as HTTP, so its headers are the proxy's to check"
        );
        drop(speak_late.await);
        let (_silent, server) = tokio::io::duplex(1024);
        let (session, _) = detect(server, target, false, LIMITS)
            .await
            .expect("not settled");
        assert!(
            matches!(session, Session::Detected(Protocol::Opaque)),
            "without settling (an opaque port), silence is opaque"
        );
    }

    #[tokio::test]
    async fn an_application_that_speaks_first_is_relayed_on_its_own_connection() {
        let (listener, target) = app().await;
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            conn.write_all(b"220 ready\r\n").await.expect("greet");
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let (_silent, server) = tokio::io::duplex(1024);
        let (session, _) = detect(server, target, true, LIMITS).await.expect("settled");
        let Session::ServerFirst(mut app) = session else {
            panic!("{session:?}: the application spoke first");
        };
        let mut greeting = [0u8; 11];
        app.read_exact(&mut greeting).await.expect("greeting");
        assert_eq!(&greeting, b"220 ready\r\n", "nothing of it was lost");
    }

    #[tokio::test]
    async fn a_request_line_that_stalls_or_runs_too_long_is_closed() {
        let (_listener, target) = app().await;
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(b"GET /").await.expect("write");
        let refused = detect(server, target, true, LIMITS)
            .await
            .expect_err("stalled");
        assert!(matches!(refused, Unsettled::Undecided(5)), "{refused}");

        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(detect::MAX_DETECT_BYTES));
        client.write_all(line.as_bytes()).await.expect("write");
        let refused = detect(server, target, true, LIMITS)
            .await
            .expect_err("too long");
        assert!(matches!(refused, Unsettled::Undecided(_)), "{refused}");

        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(b"GET /").await.expect("write");
        let (session, _) = detect(server, target, false, LIMITS)
            .await
            .expect("an opaque port relays what it cannot tell");
        assert!(matches!(session, Session::Detected(Protocol::Opaque)));
    }
}
