//! Talking to one endpoint: TCP with a connect timeout, mutual TLS to the
//! identity discovery gave (plain text to unmeshed endpoints), pooled
//! HTTP/1 connections and one multiplexed HTTP/2 connection, and Linkerd's
//! `l5d-orig-proto` upgrade that carries HTTP/1 requests over HTTP/2
//! between meshed proxies. A gateway endpoint is reached over QUIC when it
//! can be ([`crate::quic`]), over TCP otherwise.
//!
//! The inbound side uses the same client, unmeshed, to reach the
//! application.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::discover::Endpoint;
use crate::quic::{CongestionControl, Otherwise, QuicClient, QuicMetrics, QuicStream, Transport};
use crate::transport_header::{self, Empty, Kind, SessionProtocol, TransportHeader};
use mesh_core::tls::{self, ALPN_H2, ALPN_TRANSPORT_HEADER, Credentials, TlsError};

/// Errors that cross body and service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body every proxied request and response has.
pub type Body = BoxBody<Bytes, BoxError>;

/// The header that carries an HTTP/1 request's version over HTTP/2.
pub const ORIG_PROTO: &str = "l5d-orig-proto";

/// An empty body.
#[cfg(test)]
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Boxes a received body.
pub fn boxed(body: Incoming) -> Body {
    body.map_err(BoxError::from).boxed()
}

/// The client TLS configurations of this proxy, one per ALPN offer.
#[derive(Debug, Clone)]
pub struct TlsClients {
    /// HTTP/2 between proxies.
    pub h2: Arc<ClientConfig>,
    /// HTTP/1 (the server detects it).
    pub http1: Arc<ClientConfig>,
    /// Opaque streams with a transport header.
    pub transport_header: Arc<ClientConfig>,
    /// QUIC to gateways.
    pub quic: Arc<QuicClient>,
}

impl TlsClients {
    /// Configurations presenting `credentials`; QUIC paced by
    /// `congestion` and counted in `quic`.
    pub fn new(
        credentials: &Arc<Credentials>,
        quic: QuicMetrics,
        congestion: CongestionControl,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            h2: credentials.client_config(&[ALPN_H2])?,
            http1: credentials.client_config(&[])?,
            transport_header: credentials.client_config(&[ALPN_TRANSPORT_HEADER])?,
            quic: QuicClient::new(credentials, quic, congestion)?,
        })
    }
}

/// A connection to an endpoint, plain or mutual TLS.
#[derive(Debug)]
pub enum Conn {
    /// Plain text.
    Plain(TcpStream),
    /// Mutual TLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A stream of a QUIC connection to a gateway (its transport header
    /// written).
    Quic(QuicStream),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Self::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(ALPN_H2) => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Quic(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Quic(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Quic(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Quic(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Dials one endpoint (whatever URI hyper asks for).
#[derive(Debug, Clone)]
struct Connector {
    addr: SocketAddr,
    tls: Option<(Arc<ClientConfig>, rustls_pki_types::ServerName<'static>)>,
    timeout: Duration,
    /// Written first when the server agrees to a transport header.
    header: Option<TransportHeader>,
}

impl Connector {
    async fn connect(self) -> io::Result<Conn> {
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "connecting to {} timed out after {:?}",
                        self.addr, self.timeout
                    ),
                )
            })??;
        tcp.set_nodelay(true)?;
        match self.tls {
            None => Ok(Conn::Plain(tcp)),
            Some((config, name)) => {
                let mut tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                if let Some(header) = &self.header
                    && tls.get_ref().1.alpn_protocol() == Some(ALPN_TRANSPORT_HEADER)
                {
                    tls.write_all(&transport_header::encode(header)).await?;
                }
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }
}

/// Opens one connection to an endpoint: TCP, TLS, or a QUIC stream.
trait Dial: Clone + Send + 'static {
    fn dial(self) -> Pin<Box<dyn std::future::Future<Output = io::Result<Conn>> + Send>>;
}

/// A [`Dial`] as the connector hyper's pooled client takes.
#[derive(Debug, Clone)]
struct Dialer<D>(D);

impl<D: Dial> tower::Service<http::Uri> for Dialer<D> {
    type Response = TokioIo<Conn>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<TokioIo<Conn>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let dial = self.0.clone().dial();
        Box::pin(async move { dial.await.map(TokioIo::new) })
    }
}

impl Dial for Connector {
    fn dial(self) -> Pin<Box<dyn std::future::Future<Output = io::Result<Conn>> + Send>> {
        Box::pin(self.connect())
    }
}

/// Opens QUIC streams to one gateway, each starting with `header`.
#[derive(Debug, Clone)]
struct QuicConnector {
    route: Arc<QuicRoute>,
    header: TransportHeader,
}

/// A gateway reached over QUIC.
#[derive(Debug)]
struct QuicRoute {
    client: Arc<QuicClient>,
    addr: SocketAddr,
    server_name: String,
    /// What its requests do when QUIC does not get through: TCP, or fail
    /// (the Link says QUIC only).
    otherwise: Otherwise,
}

impl QuicRoute {
    /// The QUIC connection, or `None` when TCP should be used instead.
    async fn connection(&self) -> io::Result<Option<quinn::Connection>> {
        match self
            .client
            .connection(self.addr, &self.server_name, self.otherwise)
            .await
        {
            Some(connection) => Ok(Some(connection)),
            None if self.otherwise == Otherwise::Fail => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "QUIC to the gateway at {} failed and its Link says quic only",
                    self.addr
                ),
            )),
            None => Ok(None),
        }
    }
}

impl Dial for QuicConnector {
    fn dial(self) -> Pin<Box<dyn std::future::Future<Output = io::Result<Conn>> + Send>> {
        Box::pin(async move {
            let connection = self.route.connection().await?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "QUIC to the gateway is down",
                )
            })?;
            let stream = QuicClient::open(&connection, &self.header).await?;
            Ok(Conn::Quic(stream))
        })
    }
}

/// The QUIC side of a gateway endpoint's client.
#[derive(Debug)]
struct QuicClients {
    route: Arc<QuicRoute>,
    /// HTTP/1, a stream per request in flight (kept for reuse).
    http1: Client<Dialer<QuicConnector>, Body>,
    /// HTTP/2, on one stream.
    http2: Client<Dialer<QuicConnector>, Body>,
    /// The header of opaque streams.
    opaque: TransportHeader,
}

/// The HTTP and TCP client of one endpoint.
#[derive(Debug)]
pub struct EndpointClient {
    endpoint: Endpoint,
    http1: Client<Dialer<Connector>, Body>,
    http2: Client<Dialer<Connector>, Body>,
    opaque: Connector,
    /// For a gateway reached over QUIC (TCP stays as the fallback).
    quic: Option<QuicClients>,
}

impl EndpointClient {
    /// A client of `endpoint`: mutual TLS when it has an identity and `tls`
    /// is given, plain text otherwise. Fails when the identity is not a
    /// usable TLS server name.
    pub fn new(
        endpoint: Endpoint,
        tls: Option<&TlsClients>,
        connect_timeout: Duration,
    ) -> Result<Self, TlsError> {
        let meshed = match (&endpoint.identity, tls) {
            (Some(identity), Some(tls)) => Some((tls::server_name(identity)?, tls)),
            _ => None,
        };
        Ok(Self::build(endpoint, meshed, connect_timeout))
    }

    /// A plain-text client of `endpoint`.
    pub fn plain(endpoint: Endpoint, connect_timeout: Duration) -> Self {
        Self::build(endpoint, None, connect_timeout)
    }

    fn build(
        endpoint: Endpoint,
        meshed: Option<(rustls_pki_types::ServerName<'static>, &TlsClients)>,
        connect_timeout: Duration,
    ) -> Self {
        let connector = |config: fn(&TlsClients) -> &Arc<ClientConfig>,
                         addr,
                         header: Option<TransportHeader>| Connector {
            addr,
            tls: meshed
                .as_ref()
                .map(|(name, tls)| (config(tls).clone(), name.clone())),
            timeout: connect_timeout,
            header,
        };
        let mut http1 = Client::builder(TokioExecutor::new());
        http1.pool_idle_timeout(Duration::from_secs(60));
        let mut http2 = Client::builder(TokioExecutor::new());
        http2
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(60));
        // A gateway: every connection names the Service behind it in a
        // transport header, and HTTP goes over HTTP/2.
        if let Some(target) = gateway_target(&endpoint)
            && meshed.is_some()
        {
            let header = |session: Option<Kind>| TransportHeader {
                port: i32::from(target.1),
                name: target.0.clone(),
                session_protocol: session.map(|kind| SessionProtocol { kind: Some(kind) }),
                client_id: String::new(),
            };
            let h2 = Some(header(Some(Kind::Http2(Empty {}))));
            let quic = match (&meshed, &endpoint.identity) {
                (Some((_, tls)), Some(identity)) if endpoint.transport != Transport::Tcp => {
                    let route = Arc::new(QuicRoute {
                        client: tls.quic.clone(),
                        addr: endpoint.addr,
                        server_name: identity.clone(),
                        otherwise: if endpoint.transport == Transport::Quic {
                            Otherwise::Fail
                        } else {
                            Otherwise::Tcp
                        },
                    });
                    let quic_connector = |kind: Kind| QuicConnector {
                        route: route.clone(),
                        header: header(Some(kind)),
                    };
                    let mut quic_http1 = Client::builder(TokioExecutor::new());
                    quic_http1.pool_idle_timeout(Duration::from_secs(60));
                    let mut quic_http2 = Client::builder(TokioExecutor::new());
                    quic_http2
                        .http2_only(true)
                        .pool_idle_timeout(Duration::from_secs(60));
                    Some(QuicClients {
                        http1: quic_http1.build(Dialer(quic_connector(Kind::Http1(Empty {})))),
                        http2: quic_http2.build(Dialer(quic_connector(Kind::Http2(Empty {})))),
                        opaque: header(None),
                        route,
                    })
                }
                _ => None,
            };
            return Self {
                quic,
                http1: http1.build(Dialer(connector(
                    |t| &t.transport_header,
                    endpoint.addr,
                    h2.clone(),
                ))),
                http2: http2.build(Dialer(connector(
                    |t| &t.transport_header,
                    endpoint.addr,
                    h2,
                ))),
                opaque: connector(|t| &t.transport_header, endpoint.addr, Some(header(None))),
                endpoint: Endpoint {
                    http2: true,
                    ..endpoint
                },
            };
        }
        let opaque_addr = match endpoint.opaque_transport_port {
            Some(port) if meshed.is_some() => SocketAddr::new(endpoint.addr.ip(), port),
            _ => endpoint.addr,
        };
        let opaque_header = TransportHeader {
            port: i32::from(endpoint.addr.port()),
            ..Default::default()
        };
        Self {
            quic: None,
            http1: http1.build(Dialer(connector(|t| &t.http1, endpoint.addr, None))),
            http2: http2.build(Dialer(connector(|t| &t.h2, endpoint.addr, None))),
            opaque: connector(|t| &t.transport_header, opaque_addr, Some(opaque_header)),
            endpoint,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether traffic to it is mutual TLS.
    pub fn meshed(&self) -> bool {
        self.opaque.tls.is_some()
    }

    /// Sends `req`: HTTP/1 requests to a meshed HTTP/2 proxy are upgraded
    /// (`l5d-orig-proto`, never for connection upgrades such as WebSocket),
    /// HTTP/2 requests go over HTTP/2, the rest over HTTP/1.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Incoming>, BoxError> {
        absolute_uri(&mut req, self.endpoint.addr)?;
        let upgrade = is_upgrade(&req);
        if let Some(quic) = &self.quic
            && quic.route.connection().await?.is_some()
        {
            return Ok(if req.version() == Version::HTTP_2 {
                quic.http2.request(req).await?
            } else {
                quic.http1.request(req).await?
            });
        }
        if req.version() == Version::HTTP_2 {
            return Ok(self.http2.request(req).await?);
        }
        if self.meshed() && self.endpoint.http2 && !upgrade {
            let orig = if req.version() == Version::HTTP_10 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            };
            req.headers_mut()
                .insert(ORIG_PROTO, HeaderValue::from_static(orig));
            *req.version_mut() = Version::HTTP_2;
            let mut response = self.http2.request(req).await?;
            response.headers_mut().remove(ORIG_PROTO);
            *response.version_mut() = Version::HTTP_11;
            return Ok(response);
        }
        Ok(self.http1.request(req).await?)
    }

    /// Opens an opaque stream to the endpoint: plain to its port, or
    /// mutual TLS with a transport header naming the port (or, through a
    /// gateway, the Service) when it is meshed; a gateway names the
    /// `client` it forwards for in that header.
    pub async fn connect_opaque(&self, client: Option<&str>) -> io::Result<Conn> {
        let for_client = |header: &TransportHeader| TransportHeader {
            client_id: client.unwrap_or_default().to_owned(),
            ..header.clone()
        };
        if let Some(quic) = &self.quic
            && let Some(connection) = quic.route.connection().await?
        {
            let header = for_client(&quic.opaque);
            return Ok(Conn::Quic(QuicClient::open(&connection, &header).await?));
        }
        let mut connector = self.opaque.clone();
        connector.header = connector.header.as_ref().map(for_client);
        connector.connect().await
    }
}

/// The Service name and port a gateway endpoint forwards to.
fn gateway_target(endpoint: &Endpoint) -> Option<(String, u16)> {
    let (name, port) = endpoint.authority_override.as_deref()?.rsplit_once(':')?;
    Some((name.trim_end_matches('.').to_owned(), port.parse().ok()?))
}

/// Whether `req` asks to switch protocols (WebSocket and the like).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() <= Version::HTTP_11
        && req.headers().contains_key(http::header::UPGRADE)
        && req
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Gives `req` the absolute URI hyper's pooled client needs: its own
/// authority, else the Host header, else the endpoint's address.
fn absolute_uri<B>(req: &mut Request<B>, addr: SocketAddr) -> Result<(), BoxError> {
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        return Ok(());
    }
    let authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| addr.to_string());
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    *req.uri_mut() = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()?;
    Ok(())
}
