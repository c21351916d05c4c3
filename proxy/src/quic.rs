//! QUIC between a proxy and a multicluster gateway: the same certificates,
//! identities and transport header as TCP, but one QUIC connection per
//! gateway carries every request and opaque stream, each on its own QUIC
//! stream (so a lost packet holds up one request, not all of them).
//!
//! Each stream starts with a transport header naming the Service, as a TCP
//! connection to the gateway does; HTTP/1 requests get a stream each
//! (HTTP/1 on it, kept for reuse), HTTP/2 shares one.
//!
//! The client side ([`QuicClient`]) prefers QUIC for gateways whose
//! transport is `auto` or `quic`. A handshake runs on its own; a request
//! that may use TCP (`auto`) waits for it at most [`HANDSHAKE_TIMEOUT`],
//! then goes over TCP while the handshake carries on. When the handshake
//! fails (UDP does not get through), `auto` routes use TCP for
//! [`FALLBACK_FOR`], after which QUIC is tried again; `quic` routes fail
//! the requests that waited for it and try again after
//! [`QUIC_ONLY_RETRY_AFTER`]. A connected client pings its gateway every
//! [`CLIENT_KEEP_ALIVE`] and counts the connection dead after
//! [`CLIENT_IDLE_TIMEOUT`] of silence (a crashed or replaced gateway), then
//! connects again on the next request, from a new UDP port; a draining
//! gateway pod refuses handshakes at once, and a refused one is tried once
//! more from a new port before TCP. The server side ([`serve`]) accepts connections on the gateway's
//! port over UDP and hands each stream to the inbound side.

mod bounded_bbr;
mod path;
mod socket;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::transport_header::{self, TransportHeader};
use mesh_core::drain::Signal;
use mesh_core::tls::{self, ALPN_TRANSPORT_HEADER, ClientAuth, Credentials, TlsError};

/// How long a request that may go over TCP waits for a QUIC handshake
/// before it does (the handshake goes on: later requests use QUIC once it
/// completes).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a handshake may take in all before the gateway counts as
/// unreachable over UDP (one that hears nothing ends sooner, at
/// [`CLIENT_IDLE_TIMEOUT`]).
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// How long TCP is used for a gateway after QUIC failed to reach it (by
/// the routes whose Link allows TCP).
pub const FALLBACK_FOR: Duration = Duration::from_secs(30);

/// How soon a route whose Link says QUIC only tries QUIC again after a
/// handshake failed (it has nothing else to try; the requests that waited
/// for the failed handshake fail with it).
pub const QUIC_ONLY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The round trip QUIC assumes before it has measured one, which sets when
/// a lost handshake packet is sent again (three times it). Links between
/// clusters have round trips well under it; RFC 9002's 333 ms default
/// would resend a lost first packet only after a second, longer than a
/// request that may use TCP waits.
pub const INITIAL_RTT: Duration = Duration::from_millis(100);

/// How long TCP is used for a gateway whose pods refused two QUIC
/// handshakes in a row (draining: QUIC itself gets through).
pub const REFUSED_FALLBACK_FOR: Duration = Duration::from_secs(1);

/// What a caller of [`QuicClient::connection`] does when QUIC does not get
/// through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Otherwise {
    /// Uses TCP: waits for a handshake at most [`HANDSHAKE_TIMEOUT`].
    Tcp,
    /// Fails (the Link says QUIC only): waits for the handshake's outcome.
    Fail,
}

/// Why a handshake did not give a connection.
enum HandshakeError {
    /// The gateway pod refused it (it is draining).
    Refused,
    /// Anything else, described.
    Failed(String),
}

/// How a proxy reaches a gateway (`mesh.dev/transport` on the Link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// QUIC, falling back to TCP when UDP does not get through.
    #[default]
    Auto,
    /// QUIC only.
    Quic,
    /// TCP only.
    Tcp,
}

impl Transport {
    /// `auto`, `quic` or `tcp`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "auto" => Some(Self::Auto),
            "quic" => Some(Self::Quic),
            "tcp" => Some(Self::Tcp),
            _ => None,
        }
    }
}

/// The congestion controller of QUIC connections, both ways
/// (`MESH_PROXY_QUIC_CONGESTION_CONTROL`).
///
/// BBR by default: a WAN loses packets for reasons that say nothing about
/// congestion, and a loss-based controller (Cubic, NewReno) shrinks its
/// window at each. At 2 % loss over a 40 ms round trip, Cubic held a
/// gateway's window at 6–16 KB and moved 1 MiB responses at 0.3 MiB/s,
/// BBR at 69 MiB/s, 2.3× the kernel's TCP (`gateway-bench`, BENCHMARKS.md);
/// at 0 % loss both beat TCP. BBR here is quinn's, its window bounded by
/// what the path delivered ([`bounded_bbr`]: quinn's own grows without
/// bound on a flow-controlled connection); quinn calls it experimental,
/// and it keeps the lowest round trip a connection ever saw (a path whose
/// delay rises keeps a window sized for the old one). It retransmits more
/// than Cubic (3 % of packets at 0 % link loss, against 0.04 %); Cubic is
/// one setting away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionControl {
    /// Model-based: bandwidth and round trip, not loss (quinn's, bounded).
    #[default]
    Bbr,
    /// Loss-based (RFC 9438), quinn's default.
    Cubic,
    /// Loss-based (RFC 9002's reference controller).
    NewReno,
}

impl CongestionControl {
    /// Every controller, in the order of
    /// `mesh_api::labels::QUIC_CONGESTION_CONTROLS` (the names the injector
    /// accepts).
    pub const ALL: [Self; 3] = [Self::Bbr, Self::Cubic, Self::NewReno];

    /// `bbr`, `cubic` or `newreno`, in any case.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(text))
    }

    /// The name `parse` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bbr => "bbr",
            Self::Cubic => "cubic",
            Self::NewReno => "newreno",
        }
    }

    fn factory(self) -> Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> {
        use quinn::congestion::{CubicConfig, NewRenoConfig};
        match self {
            Self::Bbr => Arc::new(bounded_bbr::BoundedBbrConfig::default()),
            Self::Cubic => Arc::new(CubicConfig::default()),
            Self::NewReno => Arc::new(NewRenoConfig::default()),
        }
    }
}

/// One QUIC stream as a byte stream.
#[derive(Debug)]
pub struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl AsyncRead for QuicStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.get_mut().send), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().send), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().send), cx)
    }
}

/// How often a client pings a gateway it is connected to.
pub const CLIENT_KEEP_ALIVE: Duration = Duration::from_millis(300);

/// How long a client's connection to a gateway may hear nothing before it
/// counts as dead (QUIC takes the smaller of the two peers' values, so this
/// is what both sides use). A gateway that crashed or was replaced answers
/// nothing its client can use (a new pod cannot vouch for the old one's
/// connections), so this is how long a client takes to notice it and
/// connect again.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_millis(1500);

fn transport_config(
    keep_alive: Duration,
    idle_timeout: Duration,
    congestion: CongestionControl,
) -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    config
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(4096))
        .keep_alive_interval(Some(keep_alive))
        .max_idle_timeout(quinn::IdleTimeout::try_from(idle_timeout).ok())
        .initial_rtt(INITIAL_RTT)
        .congestion_controller_factory(congestion.factory());
    Arc::new(config)
}

/// The labels of the `quic_path_*` and `quic_socket_*` metrics:
/// `outbound` (a proxy's connections to gateways) or `inbound` (a
/// gateway's from proxies).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuicLabels {
    direction: &'static str,
    outcome: &'static str,
}

/// QUIC connections by direction and outcome:
/// `quic_connections_total{direction="outbound",outcome="connected"|"fallback_to_tcp"|"refused"}`
/// on clients, and how their connections ended (`gateway_draining`,
/// `reset`, `timed_out`, `lost`, counted when the next request finds it
/// closed);
/// `{direction="inbound",outcome="accepted"|"refused"|"refused_draining"}`
/// on gateways. And what QUIC sees of each connection's path
/// (`quic_path_*`, see [`path`]) and the socket buffers the kernel granted
/// (`quic_socket_*`, see [`socket`]).
#[derive(Debug, Clone, Default)]
pub struct QuicMetrics {
    connections: Family<QuicLabels, Counter>,
    path: path::PathMetrics,
    socket: socket::SocketMetrics,
}

impl QuicMetrics {
    /// Registers `quic_connections_total`, `quic_path_*` and
    /// `quic_socket_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let connections = Family::default();
        registry.register(
            "quic_connections",
            "QUIC connections between proxies and gateways, by outcome",
            connections.clone(),
        );
        Self {
            connections,
            path: path::PathMetrics::register(registry),
            socket: socket::SocketMetrics::register(registry),
        }
    }

    fn count(&self, direction: &'static str, outcome: &'static str) {
        self.connections
            .get_or_create(&QuicLabels { direction, outcome })
            .inc();
    }
}

/// What a draining gateway sends each client on a unidirectional stream,
/// before it stops taking streams: open no new stream here (the QUIC
/// counterpart of HTTP/2's GOAWAY).
const DRAIN_NOTICE: &[u8] = b"mesh-gateway-draining";

/// How long a draining gateway still takes the streams a client opened
/// before its notice arrived (a round trip, generously), once it has none
/// left in flight.
const DRAIN_NOTICE_GRACE: Duration = Duration::from_millis(500);

/// A connection to a gateway, from its own UDP socket (kept open as long
/// as the connection is).
#[derive(Debug)]
struct Dialed {
    _socket: quinn::Endpoint,
    connection: quinn::Connection,
    /// The gateway said it is draining: new streams go elsewhere.
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl Dialed {
    fn new(socket: quinn::Endpoint, connection: quinn::Connection) -> Self {
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(watch_drain_notice(connection.clone(), draining.clone()));
        Self {
            _socket: socket,
            connection,
            draining,
        }
    }

    fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Waits for the gateway's [`DRAIN_NOTICE`] on `connection`.
async fn watch_drain_notice(
    connection: quinn::Connection,
    draining: Arc<std::sync::atomic::AtomicBool>,
) {
    while let Ok(mut notice) = connection.accept_uni().await {
        if let Ok(text) = notice.read_to_end(DRAIN_NOTICE.len()).await
            && text == DRAIN_NOTICE
        {
            draining.store(true, std::sync::atomic::Ordering::Release);
            return;
        }
    }
}

/// What a client knows about one gateway.
#[derive(Debug, Default)]
struct Gateway {
    state: GatewayState,
    /// After a failed handshake: the routes that may use TCP do until then
    /// (kept apart from the state, which a QUIC-only route's next
    /// handshake replaces meanwhile).
    tcp_until: Option<Instant>,
    /// Connections to pods that said they are draining, kept (with their
    /// sockets) until the streams still on them end.
    retiring: Vec<Dialed>,
}

/// How a client reaches one gateway now.
#[derive(Debug, Default)]
enum GatewayState {
    /// Never tried (or the connection closed).
    #[default]
    Unknown,
    /// A handshake in flight since `since`; the task making it drops the
    /// sender of `done` once it has set the outcome.
    Connecting {
        since: Instant,
        done: tokio::sync::watch::Receiver<()>,
    },
    /// Connected.
    Connected(Dialed),
    /// The last handshake failed then.
    Failed(Instant),
}

/// What a gateway's state offers one caller of [`QuicClient::connection`].
enum Current {
    /// This connection, or `None`: TCP, or a failure for QUIC-only routes.
    Ready(Option<quinn::Connection>),
    /// A handshake in flight since then: wait for it.
    Connecting {
        since: Instant,
        done: tokio::sync::watch::Receiver<()>,
    },
    /// None in flight, none to wait for: make one.
    Connect,
}

/// The client side: one QUIC connection per gateway, made on first use,
/// each from a UDP socket of its own, bound afresh for every new
/// connection. A gateway address is a Service: the node's connection
/// tracking pins a UDP flow (its four-tuple) to the gateway pod it first
/// reached, so a connection made again from the same port after that pod
/// stopped would go on reaching it; a new port is a new flow, sent to a
/// pod that is there now.
#[derive(Debug)]
pub struct QuicClient {
    config: quinn::ClientConfig,
    metrics: QuicMetrics,
    gateways: Mutex<HashMap<SocketAddr, Arc<Mutex<Gateway>>>>,
}

impl QuicClient {
    /// A client presenting `credentials`, its connections paced by
    /// `congestion`.
    pub fn new(
        credentials: &Arc<Credentials>,
        metrics: QuicMetrics,
        congestion: CongestionControl,
    ) -> Result<Arc<Self>, TlsError> {
        let crypto = credentials.client_config(&[ALPN_TRANSPORT_HEADER])?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|e| TlsError::Certificate(format!("QUIC client configuration: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport_config(
            CLIENT_KEEP_ALIVE,
            CLIENT_IDLE_TIMEOUT,
            congestion,
        ));
        Ok(Arc::new(Self {
            config,
            metrics,
            gateways: Mutex::default(),
        }))
    }

    /// A UDP endpoint on a new ephemeral port.
    fn endpoint(&self) -> Result<quinn::Endpoint, String> {
        let socket = self
            .metrics
            .socket
            .bind(SocketAddr::from(([0, 0, 0, 0], 0)), "outbound")
            .map_err(|e| format!("a UDP socket for QUIC: {e}"))?;
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| format!("a UDP socket for QUIC: {e}"))?;
        endpoint.set_default_client_config(self.config.clone());
        Ok(endpoint)
    }

    fn state(&self, addr: SocketAddr) -> Arc<Mutex<Gateway>> {
        self.gateways
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(addr)
            .or_default()
            .clone()
    }

    /// The connection to the gateway at `addr` (identity `server_name`),
    /// made if needed; `None` while QUIC cannot reach it. A handshake runs
    /// on its own: callers that arrive during it wait for its outcome, those
    /// that may use TCP ([`Otherwise::Tcp`]) at most [`HANDSHAKE_TIMEOUT`]
    /// from its start, after which they go over TCP while it carries on (a
    /// lost handshake packet or a long round trip delays QUIC, it does not
    /// turn it off).
    pub async fn connection(
        self: &Arc<Self>,
        addr: SocketAddr,
        server_name: &str,
        otherwise: Otherwise,
    ) -> Option<quinn::Connection> {
        let gateway = self.state(addr);
        loop {
            let (since, mut done) = {
                let mut state = gateway.lock().unwrap_or_else(PoisonError::into_inner);
                match self.current(addr, &mut state, otherwise) {
                    Current::Ready(connection) => return connection,
                    Current::Connecting { since, done } => (since, done),
                    Current::Connect => {
                        let (tx, done) = tokio::sync::watch::channel(());
                        let since = Instant::now();
                        state.state = GatewayState::Connecting {
                            since,
                            done: done.clone(),
                        };
                        tokio::spawn(self.clone().connect(
                            addr,
                            server_name.to_owned(),
                            gateway.clone(),
                            tx,
                        ));
                        (since, done)
                    }
                }
            };
            // The sender is never used: `changed` ends when it is dropped.
            match otherwise {
                Otherwise::Tcp => {
                    let deadline = since + HANDSHAKE_TIMEOUT;
                    if tokio::time::timeout_at(deadline, done.changed())
                        .await
                        .is_err()
                    {
                        return None;
                    }
                }
                Otherwise::Fail => {
                    let _ = done.changed().await;
                }
            }
        }
    }

    /// What `state` offers a caller now: a connection, `None` (TCP, or a
    /// failure), a handshake to wait for, or a handshake to make.
    fn current(&self, addr: SocketAddr, gateway: &mut Gateway, otherwise: Otherwise) -> Current {
        gateway
            .retiring
            .retain(|dialed| dialed.connection.close_reason().is_none());
        let now = Instant::now();
        match std::mem::take(&mut gateway.state) {
            GatewayState::Connected(dialed) => match dialed.connection.close_reason() {
                None if !dialed.is_draining() => {
                    let connection = dialed.connection.clone();
                    gateway.state = GatewayState::Connected(dialed);
                    return Current::Ready(Some(connection));
                }
                None => {
                    tracing::info!(%addr, "the gateway pod is draining; connecting again");
                    self.metrics.count("outbound", "gateway_draining");
                    gateway.retiring.push(dialed);
                }
                Some(reason) => {
                    let outcome = if dialed.is_draining() {
                        "gateway_draining"
                    } else {
                        closed_outcome(&reason)
                    };
                    tracing::info!(%addr, "the QUIC connection to the gateway closed ({reason}); connecting again");
                    self.metrics.count("outbound", outcome);
                }
            },
            other => gateway.state = other,
        }
        if otherwise == Otherwise::Tcp && gateway.tcp_until.is_some_and(|until| now < until) {
            return Current::Ready(None);
        }
        match &gateway.state {
            // A handshake task that ended without setting an outcome (it
            // panicked, or the runtime is shutting down) has dropped its
            // sender: that one is made again rather than waited for.
            GatewayState::Connecting { since, done } if done.has_changed().is_ok() => {
                Current::Connecting {
                    since: *since,
                    done: done.clone(),
                }
            }
            GatewayState::Failed(at)
                if otherwise == Otherwise::Fail && now < *at + QUIC_ONLY_RETRY_AFTER =>
            {
                Current::Ready(None)
            }
            _ => Current::Connect,
        }
    }

    /// Makes a connection to the gateway at `addr` and records the outcome
    /// in `gateway`; then drops `done`, which wakes the callers waiting
    /// for it. A refusal comes from a draining pod: once more at once,
    /// from a new port (a new flow, which the Service sends to a pod there
    /// now).
    async fn connect(
        self: Arc<Self>,
        addr: SocketAddr,
        server_name: String,
        gateway: Arc<Mutex<Gateway>>,
        done: tokio::sync::watch::Sender<()>,
    ) {
        let dial = async {
            match self.handshake(addr, &server_name).await {
                Err(HandshakeError::Refused) => {
                    tracing::info!(%addr, "the gateway pod refused QUIC (draining); again from a new port");
                    self.metrics.count("outbound", "refused");
                    self.handshake(addr, &server_name).await
                }
                outcome => outcome,
            }
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(HANDSHAKE_DEADLINE, dial).await;
        let mut gateway = gateway.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match outcome {
            Ok(Ok((endpoint, connection))) => {
                tracing::debug!(%addr, took = ?now - started, "QUIC connection to the gateway");
                self.metrics.count("outbound", "connected");
                self.metrics.path.follow(connection.clone(), "outbound");
                gateway.state = GatewayState::Connected(Dialed::new(endpoint, connection));
                gateway.tcp_until = None;
            }
            Ok(Err(HandshakeError::Refused)) => {
                tracing::info!(%addr, "the gateway refused QUIC twice; TCP for {REFUSED_FALLBACK_FOR:?} where the Link allows it");
                self.metrics.count("outbound", "refused");
                gateway.state = GatewayState::Failed(now);
                gateway.tcp_until = Some(now + REFUSED_FALLBACK_FOR);
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(HandshakeError::Failed(e))) => e,
                    _ => format!("no handshake within {HANDSHAKE_DEADLINE:?}"),
                };
                tracing::info!(%addr, "QUIC to the gateway failed ({why}); TCP for {FALLBACK_FOR:?} where the Link allows it");
                self.metrics.count("outbound", "fallback_to_tcp");
                gateway.state = GatewayState::Failed(now);
                gateway.tcp_until = Some(now + FALLBACK_FOR);
            }
        }
        drop(gateway);
        drop(done);
    }

    /// One handshake with the gateway at `addr`, from a new UDP socket.
    async fn handshake(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<(quinn::Endpoint, quinn::Connection), HandshakeError> {
        let endpoint = self.endpoint().map_err(HandshakeError::Failed)?;
        let connecting = endpoint
            .connect(addr, server_name)
            .map_err(|e| HandshakeError::Failed(e.to_string()))?;
        match connecting.await {
            Ok(connection) => Ok((endpoint, connection)),
            Err(quinn::ConnectionError::ConnectionClosed(close))
                if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                Err(HandshakeError::Refused)
            }
            Err(e) => Err(HandshakeError::Failed(e.to_string())),
        }
    }

    /// Opens a stream on `connection` and writes `header` on it.
    pub async fn open(
        connection: &quinn::Connection,
        header: &TransportHeader,
    ) -> io::Result<QuicStream> {
        let (send, recv) = connection.open_bi().await.map_err(io::Error::other)?;
        let mut stream = QuicStream { send, recv };
        stream.write_all(&transport_header::encode(header)).await?;
        Ok(stream)
    }
}

/// A QUIC server endpoint on `addr` (UDP) presenting `credentials` and
/// requiring client certificates; its stateless resets are derived from
/// `reset_key` when given (shared by a gateway's pods: a packet for a
/// connection this pod does not know, an old pod's, is answered with a
/// reset its client accepts), else from a random key. Its connections are
/// paced by `congestion` (what it sends: the responses); its socket's
/// buffers are recorded in `metrics`.
pub fn server_endpoint(
    credentials: &Arc<Credentials>,
    addr: SocketAddr,
    reset_key: Option<&[u8]>,
    congestion: CongestionControl,
    metrics: &QuicMetrics,
) -> Result<quinn::Endpoint, TlsError> {
    let crypto = credentials.server_config(ClientAuth::Required, &[ALPN_TRANSPORT_HEADER])?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| TlsError::Certificate(format!("QUIC server configuration: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    // The client's shorter idle timeout wins; the gateway's own keeps a
    // client that sets none from holding state for long.
    config.transport_config(transport_config(
        Duration::from_secs(10),
        Duration::from_secs(60),
        congestion,
    ));
    let bind_error =
        |e: io::Error| TlsError::Certificate(format!("binding UDP {addr} for QUIC: {e}"));
    let socket = metrics.socket.bind(addr, "inbound").map_err(bind_error)?;
    let Some(key) = reset_key else {
        return quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error);
    };
    // The connection IDs are keyed too (from the same secret): a pod drops
    // a packet whose connection ID it cannot validate before it would
    // answer it with a reset.
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&hmac, b"mesh gateway connection ids");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&tag.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(hmac));
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    quinn::Endpoint::new(
        endpoint_config,
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bind_error)
}

/// The identity a QUIC peer's certificate proved.
fn peer_identity(connection: &quinn::Connection) -> Option<String> {
    let certificates = connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    tls::dns_names(certificates.first()?).into_iter().next()
}

/// How a client's connection to a gateway ended, as a metric outcome:
/// `gateway_draining` (the gateway said it is shutting down), `reset` (a
/// gateway pod that shares the gone pod's reset key ended it), `timed_out`
/// (it went silent: crashed, replaced, or the path broke) or `lost`.
fn closed_outcome(reason: &quinn::ConnectionError) -> &'static str {
    match reason {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(CLOSE_DRAINING) =>
        {
            "gateway_draining"
        }
        quinn::ConnectionError::TimedOut => "timed_out",
        quinn::ConnectionError::Reset => "reset",
        _ => "lost",
    }
}

/// The application close code a gateway that is shutting down sends its
/// clients: reconnect (to another gateway pod behind the same address).
pub const CLOSE_DRAINING: u32 = 1;

/// Accepts QUIC connections on `endpoint` until `drain`, handing every
/// stream, with the client's identity, to `stream`. On `drain` it refuses
/// new connections (CONNECTION_REFUSED, at once, so a client tries another
/// pod instead of waiting out a handshake), lets each connection's streams
/// finish, and closes it with [`CLOSE_DRAINING`] so its client connects
/// again at once (whoever runs this bounds the wait).
pub async fn serve<F, Fut>(
    endpoint: quinn::Endpoint,
    metrics: QuicMetrics,
    drain: Signal,
    stream: F,
) where
    F: Fn(QuicStream, Option<String>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    let stopping = drain.clone().wait();
    tokio::pin!(stopping);
    let mut draining = false;
    loop {
        if draining && connections.is_empty() {
            break;
        }
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut stopping, if !draining => {
                draining = true;
                continue;
            }
        };
        let Some(incoming) = incoming else { break };
        if draining {
            metrics.count("inbound", "refused_draining");
            incoming.refuse();
            continue;
        }
        let stream = stream.clone();
        let metrics = metrics.clone();
        let drain = drain.clone();
        connections.spawn(async move {
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(e) => {
                    tracing::info!("QUIC handshake: {e}");
                    metrics.count("inbound", "refused");
                    return;
                }
            };
            metrics.count("inbound", "accepted");
            metrics.path.follow(connection.clone(), "inbound");
            serve_connection(connection, drain, stream).await;
        });
    }
    endpoint.wait_idle().await;
}

/// One client's connection: each stream to `stream`, until the client
/// closes it or `drain`. On `drain` the client is told ([`DRAIN_NOTICE`])
/// to open new streams elsewhere; the streams it opened before hearing
/// so are still taken and finish; once none is left (and the notice had
/// time to arrive) the connection is closed with [`CLOSE_DRAINING`].
async fn serve_connection<F, Fut>(connection: quinn::Connection, drain: Signal, stream: F)
where
    F: Fn(QuicStream, Option<String>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let identity = peer_identity(&connection);
    let remote = connection.remote_address();
    let mut streams = tokio::task::JoinSet::new();
    let stopping = drain.wait();
    tokio::pin!(stopping);
    let quiet = tokio::time::sleep(Duration::MAX);
    tokio::pin!(quiet);
    let mut draining = false;
    loop {
        tokio::select! {
            accepted = connection.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(stream.clone()(QuicStream { send, recv }, identity.clone(), remote));
                }
                Err(_) => return,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {
                if draining && streams.is_empty() {
                    quiet.as_mut().reset(Instant::now() + DRAIN_NOTICE_GRACE);
                }
            }
            () = &mut stopping, if !draining => {
                draining = true;
                send_drain_notice(&connection).await;
                if streams.is_empty() {
                    quiet.as_mut().reset(Instant::now() + DRAIN_NOTICE_GRACE);
                }
            }
            () = &mut quiet, if draining && streams.is_empty() => break,
        }
    }
    connection.close(
        quinn::VarInt::from_u32(CLOSE_DRAINING),
        b"the gateway is shutting down: reconnect",
    );
}

/// Tells the client on `connection` that this gateway is draining.
async fn send_drain_notice(connection: &quinn::Connection) {
    let sent = async {
        let mut notice = connection.open_uni().await.map_err(io::Error::other)?;
        notice.write_all(DRAIN_NOTICE).await?;
        notice.finish().map_err(io::Error::other)
    };
    if let Err(e) = tokio::time::timeout(DRAIN_NOTICE_GRACE, sent)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("timed out")))
    {
        tracing::debug!("telling a QUIC client the gateway is draining: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway's identity.
    const GATEWAY: &str =
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

    /// What the relay does to datagrams: hold them, lose some answers,
    /// lose all of them for a while.
    #[derive(Debug, Clone, Copy, Default)]
    struct Link {
        delay: Duration,
        drop_every: usize,
        /// Every datagram, either way, is lost for this long from the
        /// relay's start.
        blackout: Duration,
    }

    impl Link {
        /// Sends `datagram` from `socket` to `to` after the link's delay.
        async fn send(self, socket: &Arc<tokio::net::UdpSocket>, datagram: &[u8], to: SocketAddr) {
            if self.delay.is_zero() {
                let _ = socket.send_to(datagram, to).await;
                return;
            }
            let (socket, datagram) = (socket.clone(), datagram.to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(self.delay).await;
                let _ = socket.send_to(&datagram, to).await;
            });
        }
    }

    /// A UDP relay in front of a gateway address, as kube-proxy's NAT is:
    /// a client's flow (its address and port) goes to the server `target`
    /// named when the flow began, or, with `follow`, to whichever server
    /// it names now (as when the node's connection tracking entry of a
    /// removed endpoint is flushed); answers come back from the relay.
    /// Each datagram is held for `link.delay` either way, and every
    /// `link.drop_every`th answer is lost (0: none); none gets through
    /// during the first `link.blackout`.
    async fn relay(target: Arc<Mutex<SocketAddr>>, follow: bool, link: Link) -> SocketAddr {
        let opened = Instant::now();
        let dark = move || opened.elapsed() < link.blackout;
        let front = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("front"),
        );
        let addr = front.local_addr().expect("bound");
        tokio::spawn(async move {
            let mut flows: HashMap<SocketAddr, (Arc<tokio::net::UdpSocket>, SocketAddr)> =
                HashMap::new();
            let mut buf = vec![0u8; 65536];
            while let Ok((n, client)) = front.recv_from(&mut buf).await {
                let now = *target.lock().expect("target");
                let (back, pinned) = match flows.get(&client) {
                    Some(flow) => flow.clone(),
                    None => {
                        let back = Arc::new(
                            tokio::net::UdpSocket::bind("127.0.0.1:0")
                                .await
                                .expect("back"),
                        );
                        let (from, to) = (back.clone(), front.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65536];
                            let mut answers = 0usize;
                            while let Ok((n, _)) = from.recv_from(&mut buf).await {
                                answers += 1;
                                if !dark()
                                    && (link.drop_every == 0
                                        || !answers.is_multiple_of(link.drop_every))
                                {
                                    link.send(&to, &buf[..n], client).await;
                                }
                            }
                        });
                        flows.insert(client, (back.clone(), now));
                        (back, now)
                    }
                };
                let to = if follow { now } else { pinned };
                if !dark() {
                    link.send(&back, &buf[..n], to).await;
                }
            }
        });
        addr
    }

    /// A client and a gateway (accepting every handshake) reached through
    /// a relay that does `link` to its datagrams.
    async fn gateway_behind(link: Link) -> (Arc<QuicClient>, SocketAddr, quinn::Endpoint) {
        let ca = mesh_test_util::controller::Ca::new();
        let gateway = server_endpoint(
            &ca.credentials(GATEWAY),
            "127.0.0.1:0".parse().expect("addr"),
            None,
            CongestionControl::default(),
            &QuicMetrics::default(),
        )
        .expect("a server endpoint");
        let target = Arc::new(Mutex::new(gateway.local_addr().expect("bound")));
        let addr = relay(target, false, link).await;
        let accepting = gateway.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                tokio::spawn(async move {
                    if let Ok(connection) = incoming.await {
                        connection.closed().await;
                    }
                });
            }
        });
        let client = QuicClient::new(
            &ca.credentials("client.test.serviceaccount.identity.linkerd.cluster.local"),
            QuicMetrics::default(),
            CongestionControl::default(),
        )
        .expect("client");
        (client, addr, gateway)
    }

    /// A handshake that takes longer than a request waits for it (here a
    /// 1.2 s round trip; on a WAN, a lost handshake packet) is not a
    /// gateway UDP cannot reach: the request that could not wait goes
    /// over TCP, the handshake carries on, and the requests after it use
    /// QUIC. A route that may only use QUIC waits for it. Before, the
    /// handshake was abandoned after a second and the gateway was reached
    /// over TCP for 30 s, and QUIC-only routes failed for as long.
    #[tokio::test]
    async fn a_slow_handshake_delays_quic_and_does_not_turn_it_off() {
        let link = Link {
            delay: Duration::from_millis(600),
            ..Link::default()
        };
        let (client, addr, _gateway) = gateway_behind(link).await;
        assert!(
            client
                .connection(addr, GATEWAY, Otherwise::Tcp)
                .await
                .is_none(),
            "a request that may use TCP does not wait for a 1.2 s handshake"
        );
        let connection = client
            .connection(addr, GATEWAY, Otherwise::Fail)
            .await
            .expect("a QUIC-only route waits for the handshake to complete");
        let again = client
            .connection(addr, GATEWAY, Otherwise::Tcp)
            .await
            .expect("once it has, routes that may use TCP use QUIC");
        assert_eq!(again.stable_id(), connection.stable_id());
    }

    /// The gateway cannot be reached over UDP for a while (a firewall
    /// change, a node restarting). A QUIC-only route fails the requests
    /// that waited for the failed handshake, and tries QUIC again a
    /// moment later, not after the 30 s TCP fallback of the routes that
    /// have one.
    #[tokio::test]
    async fn a_quic_only_route_tries_again_soon_after_a_failed_handshake() {
        let link = Link {
            blackout: Duration::from_millis(1800),
            ..Link::default()
        };
        let (client, addr, _gateway) = gateway_behind(link).await;
        assert!(
            client
                .connection(addr, GATEWAY, Otherwise::Fail)
                .await
                .is_none(),
            "nothing gets through: the handshake fails"
        );
        assert!(
            client
                .connection(addr, GATEWAY, Otherwise::Tcp)
                .await
                .is_none(),
            "a route that may use TCP does, at once"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        client
            .connection(addr, GATEWAY, Otherwise::Fail)
            .await
            .expect("a QUIC-only route tries again, and gets through");
        client
            .connection(addr, GATEWAY, Otherwise::Tcp)
            .await
            .expect("the other routes use the new connection");
    }

    /// A handshake task that ended without setting an outcome (it
    /// panicked, or its runtime was stopping) leaves its callers neither
    /// waiting on it nor spinning on it: the next caller makes a new one.
    #[tokio::test]
    async fn a_handshake_that_vanished_is_made_again() {
        let (client, addr, _gateway) = gateway_behind(Link::default()).await;
        let (vanished, done) = tokio::sync::watch::channel(());
        drop(vanished);
        client.state(addr).lock().expect("gateway").state = GatewayState::Connecting {
            since: Instant::now(),
            done,
        };
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            client.connection(addr, GATEWAY, Otherwise::Fail),
        )
        .await;
        assert!(
            matches!(connected, Ok(Some(_))),
            "a new handshake, not the vanished one: {connected:?}"
        );
    }

    /// How a client's connection ends when the gateway pod it reached
    /// behind an address is replaced by one with reset key
    /// `replacement_key`, the first one's being `key` (the first one stays
    /// up, as a pod whose connection tracking entry expired would).
    async fn ending_after_replacement(
        key: &[u8],
        replacement_key: &[u8],
    ) -> quinn::ConnectionError {
        let ca = mesh_test_util::controller::Ca::new();
        let gateway = ca.credentials(GATEWAY);
        let any = || "127.0.0.1:0".parse().expect("addr");
        let first = server_endpoint(
            &gateway,
            any(),
            Some(key),
            CongestionControl::default(),
            &QuicMetrics::default(),
        )
        .expect("a server endpoint");
        let second = server_endpoint(
            &gateway,
            any(),
            Some(replacement_key),
            CongestionControl::default(),
            &QuicMetrics::default(),
        )
        .expect("a server endpoint");
        let target = Arc::new(Mutex::new(first.local_addr().expect("bound")));
        let addr = relay(target.clone(), true, Link::default()).await;
        let accepting = first.clone();
        let accepted = tokio::spawn(async move {
            accepting
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("handshake")
        });
        let client = QuicClient::new(
            &ca.credentials("client.test.serviceaccount.identity.linkerd.cluster.local"),
            QuicMetrics::default(),
            CongestionControl::default(),
        )
        .expect("client");
        let connection = client
            .connection(addr, GATEWAY, Otherwise::Fail)
            .await
            .expect("connected");
        let _server_side = accepted.await.expect("accepted");
        *target.lock().expect("target") = second.local_addr().expect("bound");
        connection.closed().await
    }

    /// A gateway pod told to drain (a rolling update) tells its client at
    /// once: the client's next stream goes over a new connection (from a
    /// new port, so to the pod now behind the address), while the stream
    /// it had open on the draining pod is still answered there; once that
    /// one ends, the draining pod closes the connection with
    /// [`CLOSE_DRAINING`]. Without the notice, a stream opened while the
    /// pod drains would never be taken (the request would fail).
    #[tokio::test]
    async fn a_draining_gateway_moves_new_streams_to_a_new_connection() {
        let ca = mesh_test_util::controller::Ca::new();
        let gateway = ca.credentials(GATEWAY);
        let any = || "127.0.0.1:0".parse().expect("addr");
        // Each gateway answers a stream with its name, after the client's
        // first byte (a held stream answers when the test says so).
        let serve = |name: &'static str, drain: Signal| {
            let endpoint = server_endpoint(
                &gateway,
                any(),
                None,
                CongestionControl::default(),
                &QuicMetrics::default(),
            )
            .expect("a server endpoint");
            let addr = endpoint.local_addr().expect("bound");
            tokio::spawn(serve(
                endpoint,
                QuicMetrics::default(),
                drain,
                move |mut stream: QuicStream, _, _| async move {
                    let mut byte = [0u8; 1];
                    if tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte)
                        .await
                        .is_ok()
                    {
                        let _ = stream.write_all(name.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                },
            ));
            addr
        };
        let first_drain = mesh_core::drain::Drain::new();
        let second_drain = mesh_core::drain::Drain::new();
        let first = serve("first", first_drain.signal());
        let second = serve("second", second_drain.signal());
        let target = Arc::new(Mutex::new(first));
        let addr = relay(target.clone(), false, Link::default()).await;
        let client = QuicClient::new(
            &ca.credentials("client.test.serviceaccount.identity.linkerd.cluster.local"),
            QuicMetrics::default(),
            CongestionControl::default(),
        )
        .expect("client");
        let answer = |mut stream: QuicStream| async move {
            stream.write_all(b"?").await.expect("write");
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text)
                .await
                .expect("read");
            text
        };
        let open = |connection: quinn::Connection| async move {
            let (send, recv) = connection.open_bi().await.expect("a stream");
            QuicStream { send, recv }
        };
        let old = client
            .connection(addr, GATEWAY, Otherwise::Fail)
            .await
            .expect("connected");
        let held = open(old.clone()).await;
        // The stream reaches the first gateway before it drains.
        let mut warm = open(old.clone()).await;
        warm.write_all(b"?").await.expect("write");
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut warm, &mut text)
            .await
            .expect("read");
        assert_eq!(text, "first");

        // A rolling update: new flows go to the second pod; the first drains.
        *target.lock().expect("target") = second;
        tokio::spawn(first_drain.shutdown(Duration::from_secs(10)));
        let mut next = None;
        for _ in 0..100 {
            let connection = client
                .connection(addr, GATEWAY, Otherwise::Fail)
                .await
                .expect("connected");
            if connection.stable_id() != old.stable_id() {
                next = Some(connection);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let next = next.expect("a new connection once the first gateway said it drains");
        assert_eq!(answer(open(next).await).await, "second");
        assert_eq!(
            answer(held).await,
            "first",
            "the stream in flight ends there"
        );
        let closed = old.closed().await;
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(CLOSE_DRAINING)),
            "{closed:?}"
        );
        drop(second_drain);
    }

    /// Gateway pods sharing the reset key: the replacement ends the gone
    /// pod's connection with a stateless reset the client accepts. With
    /// another key its reset is not believed (a forged one would not be
    /// either), and the client only finds out by timing out.
    #[tokio::test]
    async fn a_replacement_with_the_shared_reset_key_resets_the_old_connection() {
        let shared = [7u8; 32];
        let ending = ending_after_replacement(&shared, &shared).await;
        assert!(
            matches!(ending, quinn::ConnectionError::Reset),
            "{ending:?}"
        );
        assert!(matches!(
            ending_after_replacement(&shared, &[8u8; 32]).await,
            quinn::ConnectionError::TimedOut
        ));
    }

    #[test]
    fn transports_are_read_as_links_write_them() {
        assert_eq!(Transport::parse("auto"), Some(Transport::Auto));
        assert_eq!(Transport::parse(" quic "), Some(Transport::Quic));
        assert_eq!(Transport::parse("tcp"), Some(Transport::Tcp));
        assert_eq!(Transport::parse("udp"), None);
    }

    /// A MiB: bulk responses are a whole number of them.
    const MIB: usize = 1 << 20;

    /// A gateway that answers each stream's first byte, N, with N MiB,
    /// behind a relay over `link`, and a client of it; both ends'
    /// connections paced by `congestion`, counted in their own metrics.
    struct BulkPath {
        client: Arc<QuicClient>,
        relay: SocketAddr,
        _drain: mesh_core::drain::Drain,
    }

    impl BulkPath {
        async fn new(
            link: Link,
            congestion: CongestionControl,
            gateway_metrics: QuicMetrics,
            client_metrics: QuicMetrics,
        ) -> Self {
            let ca = mesh_test_util::controller::Ca::new();
            let endpoint = server_endpoint(
                &ca.credentials(GATEWAY),
                "127.0.0.1:0".parse().expect("addr"),
                None,
                congestion,
                &gateway_metrics,
            )
            .expect("a server endpoint");
            let gateway = endpoint.local_addr().expect("bound");
            let drain = mesh_core::drain::Drain::new();
            tokio::spawn(serve(
                endpoint,
                gateway_metrics,
                drain.signal(),
                |mut stream: QuicStream, _, _| async move {
                    let mut mebibytes = [0u8; 1];
                    if tokio::io::AsyncReadExt::read_exact(&mut stream, &mut mebibytes)
                        .await
                        .is_ok()
                    {
                        let chunk = vec![7u8; MIB];
                        for _ in 0..mebibytes[0] {
                            if stream.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                        let _ = stream.shutdown().await;
                    }
                },
            ));
            let client = QuicClient::new(
                &ca.credentials("client.test.serviceaccount.identity.linkerd.cluster.local"),
                client_metrics,
                congestion,
            )
            .expect("client");
            Self {
                client,
                relay: relay(Arc::new(Mutex::new(gateway)), false, link).await,
                _drain: drain,
            }
        }

        /// The client's connection (made on first use).
        async fn connection(&self) -> quinn::Connection {
            self.client
                .connection(self.relay, GATEWAY, Otherwise::Fail)
                .await
                .expect("connected")
        }

        /// Fetches a response of `mebibytes` MiB on one stream; how long
        /// it took from the request on.
        async fn fetch(&self, mebibytes: u8) -> Duration {
            let connection = self.connection().await;
            let started = Instant::now();
            let (send, recv) = connection.open_bi().await.expect("a stream");
            let mut stream = QuicStream { send, recv };
            stream.write_all(&[mebibytes]).await.expect("write");
            let mut body = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut body)
                .await
                .expect("read");
            assert_eq!(body.len(), usize::from(mebibytes) * MIB);
            started.elapsed()
        }
    }

    /// A WAN drops a few packets in a hundred for reasons that are not
    /// congestion. The default controller (BBR) keeps moving a 1 MiB
    /// response at its pace over a 40 ms round trip losing 2 % of the
    /// gateway's packets; a loss-based one (Cubic, quinn's own default)
    /// shrinks its window at each loss and takes several times as long.
    /// A ratio in one run: the same path, the same loss, one controller
    /// then the other.
    #[tokio::test]
    async fn the_default_congestion_control_keeps_a_lossy_wan_fast() {
        let link = Link {
            delay: Duration::from_millis(20),
            drop_every: 50,
            ..Link::default()
        };
        let mut took = Vec::new();
        for congestion in [CongestionControl::default(), CongestionControl::Cubic] {
            let path = BulkPath::new(
                link,
                congestion,
                QuicMetrics::default(),
                QuicMetrics::default(),
            )
            .await;
            // The handshake is not part of the transfer.
            path.connection().await;
            took.push(path.fetch(1).await);
        }
        let (default, cubic) = (took[0], took[1]);
        assert!(
            cubic.as_secs_f64() >= 3.0 * default.as_secs_f64(),
            "1 MiB at 2 % loss: the default controller took {default:?}, Cubic {cubic:?}"
        );
    }

    /// What QUIC sees of a lossy path reaches the metrics: the gateway
    /// (which sends the response) counts the packets it lost and its
    /// controller's reactions, the client its round trip and window; the
    /// window leaves the sum when the connection closes (a client whose
    /// connections come and go does not add up stale windows).
    #[test]
    fn the_injector_accepts_the_congestion_controllers_the_proxy_has() {
        let names = CongestionControl::ALL.map(CongestionControl::name);
        assert_eq!(names, mesh_api::labels::QUIC_CONGESTION_CONTROLS);
    }

    #[tokio::test]
    async fn a_lossy_path_shows_in_the_quic_path_metrics() {
        let scrape = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
            text
        };
        let (mut gateway_registry, mut client_registry) =
            (Registry::default(), Registry::default());
        // One answer in 20 lost on the way to the client.
        let link = Link {
            drop_every: 20,
            ..Link::default()
        };
        let path = BulkPath::new(
            link,
            CongestionControl::default(),
            QuicMetrics::register(&mut gateway_registry),
            QuicMetrics::register(&mut client_registry),
        )
        .await;
        path.fetch(1).await;
        let connection = path.connection().await;

        let sample = mesh_test_util::sample;
        let inbound = ["direction=\"inbound\""];
        let outbound = ["direction=\"outbound\""];
        let deadline = Instant::now() + 4 * path::SAMPLE_EVERY;
        let (gateway_text, client_text) = loop {
            let (g, c) = (scrape(&gateway_registry), scrape(&client_registry));
            let sampled = sample(&g, "quic_path_lost_packets_total", &inbound) > 0.0
                && sample(&c, "quic_path_rtt_seconds_count", &outbound) > 0.0;
            if sampled || Instant::now() > deadline {
                break (g, c);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let sent = sample(&gateway_text, "quic_path_sent_packets_total", &inbound);
        let lost = sample(&gateway_text, "quic_path_lost_packets_total", &inbound);
        assert!(sent > (MIB / 1500) as f64, "{gateway_text}");
        assert!(lost > 0.0 && lost < sent / 5.0, "{gateway_text}");
        assert!(
            sample(&gateway_text, "quic_path_lost_bytes_total", &inbound) > 0.0,
            "{gateway_text}"
        );
        assert!(
            sample(&gateway_text, "quic_path_congestion_events_total", &inbound) > 0.0,
            "{gateway_text}"
        );
        assert!(
            sample(&client_text, "quic_path_rtt_seconds_count", &outbound) > 0.0,
            "{client_text}"
        );
        let window = |text: &str| sample(text, "quic_path_congestion_window_bytes", &outbound);
        assert!(window(&client_text) > 0.0, "{client_text}");

        connection.close(quinn::VarInt::from_u32(0), b"done");
        let deadline = Instant::now() + 4 * path::SAMPLE_EVERY;
        while window(&scrape(&client_registry)) != 0.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let client_text = scrape(&client_registry);
        assert_eq!(window(&client_text), 0.0, "{client_text}");
    }
}
