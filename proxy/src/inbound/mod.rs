//! The inbound side (listener 4143): connections to the pod, redirected by
//! iptables. Mesh TLS (a ClientHello naming this workload's identity) is
//! terminated and the client's identity recorded; a transport header, when
//! the client sent one, names the real port. What is inside is detected
//! again: HTTP is served request by request to the application in plain
//! text, with `l5d-client-id` set (and any forged one removed) and
//! `l5d-orig-proto` requests restored to HTTP/1; anything else is relayed
//! as opaque TCP. Other TLS (the application's own) passes through
//! untouched.
//!
//! With gateway mode on, a transport header naming a Service hands the
//! connection to [`crate::gateway`]. A request that a trusted gateway
//! forwarded counts as the client the gateway's `Forwarded` element names
//! (see DESIGN: client identity across the gateway), so a workload sees
//! who called it from another cluster.
//!
//! Authorization policy ([`policy`]): each port's policy comes from the
//! policy controller (the default policy until it answers). An opaque
//! connection is admitted or refused once, and closed if a policy change
//! stops admitting it; an HTTP request is admitted or answered 403 (gRPC:
//! `PERMISSION_DENIED`) with the policy current when it arrives. A request
//! a trusted gateway forwarded is decided for the client the gateway vouches
//! for. A Server's protocol replaces detection (opaque and TLS ports are
//! relayed as opaque).
//!
//! The decisions are pure functions, tested on their own: what a
//! connection's first bytes mean ([`decide`]), and who its client is and
//! what the application is told ([`peer`]).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::cache::IdleCache;
use crate::config::DirectionConfig;
use crate::detect::{self, Protocol};
use crate::discover::Endpoint;
use crate::endpoint::{self, Body, EndpointClient, ORIG_PROTO};
use crate::forward;
use crate::gateway::Gateway;
use crate::http::{self as proxy_http, error_response};
use crate::limits::{AcceptError, HandshakePace};
use crate::metrics::{HttpMetrics, Labels, TcpMetrics};
use crate::transport_header::{self, TransportHeader};
use mesh_core::drain::Signal;
use mesh_core::tls::{self, ALPN_H2, ALPN_TRANSPORT_HEADER, ClientAuth, Credentials, TlsError};

mod decide;
mod peer;
pub(crate) mod policy;
mod series;
mod settle;

use decide::{OnDetected, OnTls};
use peer::Peer;
use policy::authorize::{PortProtocol, RequestDenied, ServerPolicy};
use policy::metrics::{AuthzMetrics, Decision, request_labels};
use policy::watch::{Policies, PortPolicy};
use series::{Admitted, ConnectionSeries, Counted};
use settle::Session;

/// A connection's target port as the inbound proxy serves it.
struct TargetPort {
    /// Its policy.
    policy: PortPolicy,
    /// Whether it is opaque: forwarded without detection.
    opaque: bool,
}

/// The inbound proxy.
pub struct Inbound {
    config: DirectionConfig,
    credentials: Option<Arc<Credentials>>,
    server_tls: Option<Arc<ServerConfig>>,
    http_metrics: HttpMetrics,
    tcp_metrics: TcpMetrics,
    /// The pace of mesh TLS handshakes.
    handshakes: HandshakePace,
    apps: IdleCache<SocketAddr, EndpointClient>,
    gateway: Option<Gateway>,
    trusted_gateways: Vec<String>,
    policies: Arc<Policies>,
    authz_metrics: AuthzMetrics,
    taps: crate::tap::Taps,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

impl Inbound {
    /// The inbound proxy; without `credentials`, mesh TLS is not
    /// terminated (it passes through like any TLS); with `gateway`, it is
    /// also a gateway to this cluster's Services. Requests from
    /// `trusted_gateways` count as the client their `Forwarded` element
    /// names. Each port is authorized with its policy from `policies`,
    /// decisions counted in `authz_metrics`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: DirectionConfig,
        credentials: Option<Arc<Credentials>>,
        http_metrics: HttpMetrics,
        tcp_metrics: TcpMetrics,
        gateway: Option<Gateway>,
        trusted_gateways: Vec<String>,
        policies: Arc<Policies>,
        authz_metrics: AuthzMetrics,
        taps: crate::tap::Taps,
    ) -> Result<Arc<Self>, TlsError> {
        let server_tls = credentials
            .as_ref()
            .map(|c| {
                c.server_config(
                    ClientAuth::Optional,
                    &[ALPN_TRANSPORT_HEADER, ALPN_H2, b"http/1.1"],
                )
            })
            .transpose()?;
        let (per_second, burst) = config.tls_handshakes;
        let handshakes = HandshakePace::new(
            per_second,
            burst,
            "inbound",
            tcp_metrics.accept_errors().clone(),
        );
        Ok(Arc::new(Self {
            config,
            credentials,
            server_tls,
            http_metrics,
            tcp_metrics,
            handshakes,
            apps: IdleCache::default(),
            gateway,
            trusted_gateways,
            policies,
            authz_metrics,
            taps,
        }))
    }

    /// Accepts connections on `listener` until `drain` completes.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, drain: Signal) {
        let this = self.clone();
        let sweeper = crate::cache::sweeper(move || this.apps.sweep());
        let this = self.clone();
        let limit = self
            .tcp_metrics
            .connection_limit(self.config.max_connections, "inbound");
        mesh_core::drain::accept_until(listener, drain.clone(), move |stream| {
            let admitted = limit.admit();
            let connection = this.clone().connection(stream, drain.clone());
            async move {
                if let Some(_held) = admitted {
                    connection.await;
                }
            }
        })
        .await;
        sweeper.abort();
    }

    async fn connection(self: Arc<Self>, stream: TcpStream, drain: Signal) {
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let orig = crate::orig_dst::original_dst(&stream, local).unwrap_or(local);
        // Connected to the inbound port itself, not redirected: only a peer
        // proxy naming its target in a transport header may do that
        // (anything else would be forwarded back to this listener).
        let direct = orig == local;
        if !direct && self.config.skip_ports.contains(orig.port()) {
            forward::raw(stream, orig, self.config.connect_timeout).await;
            return;
        }
        let target_port = self.port(orig.port()).await;
        let opaque_port = target_port.opaque;
        // What detection cannot tell is settled (not relayed blind) on a
        // redirected port that is not opaque; see [`settle`].
        let settling = !direct && !opaque_port;
        let client = stream.peer_addr().ok();
        let (session, io) = match settle::detect(stream, orig, settling, self.limits()).await {
            Ok(settled) => settled,
            Err(e) => {
                tracing::debug!(%orig, ?client, "protocol detection: {e}");
                return;
            }
        };
        let protocol = match &session {
            Session::Detected(protocol) => *protocol,
            Session::ServerFirst(_) => Protocol::Opaque,
        };
        let sni = (protocol == Protocol::Tls)
            .then(|| detect::client_hello_sni(io.prefix()))
            .flatten();
        let ours = match (&self.credentials, &sni) {
            (Some(credentials), Some(sni)) => {
                sni == credentials.local_identity() && credentials.has_certificate()
            }
            _ => false,
        };
        match decide::on_detected(protocol, ours, direct, opaque_port) {
            OnDetected::Terminate => {}
            OnDetected::Refuse => {
                tracing::info!(
                    ?client,
                    "direct connections must be mutually authenticated: closed"
                );
                return;
            }
            OnDetected::Plain {
                protocol,
                no_tls_reason,
            } => {
                let peer = Peer {
                    identity: None,
                    no_tls_reason,
                    addr: client,
                    mesh_tls: false,
                };
                let session = match session {
                    Session::Detected(_) => Session::Detected(protocol),
                    server_first @ Session::ServerFirst(_) => server_first,
                };
                let policy = target_port.policy;
                self.clone()
                    .proxy(io, orig, policy, peer, session, drain)
                    .await;
                return;
            }
        }
        let Some(server_tls) = self.server_tls.clone() else {
            return;
        };
        // The handshake, its wait for its turn included, ends by the
        // detection timeout.
        let deadline = tokio::time::Instant::now() + self.config.detect_timeout;
        let Some(turn) = self.handshakes.turn(deadline) else {
            return;
        };
        // Within the burst, no timer: the handshake starts at once.
        if turn > tokio::time::Instant::now() {
            tokio::time::sleep_until(turn).await;
        }
        let handshake = tokio_rustls::TlsAcceptor::from(server_tls).accept(io);
        let tls = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%orig, ?client, "mesh TLS handshake: {e}");
                return;
            }
            Err(_) => {
                self.accept_error(AcceptError::TlsHandshakeTimeout);
                tracing::debug!(%orig, ?client, "mesh TLS handshake not finished in time: closed");
                return;
            }
        };
        let connection = tls.get_ref().1;
        let peer = Peer {
            identity: tls::peer_identity(connection),
            no_tls_reason: "no_client_certificate",
            addr: client,
            mesh_tls: true,
        };
        let header = connection.alpn_protocol() == Some(ALPN_TRANSPORT_HEADER);
        let mut tls = tls;
        match decide::on_tls(peer.identity.is_some(), header, direct, opaque_port) {
            OnTls::Refuse => tracing::info!(
                client = ?peer.identity,
                "direct connections must be mutually authenticated and negotiate a transport header: closed"
            ),
            OnTls::TransportHeader => {
                let Some(header) = self
                    .transport_header(&mut tls, peer.identity.as_deref())
                    .await
                else {
                    return;
                };
                let Ok(port) = u16::try_from(header.port) else {
                    return;
                };
                if !header.name.is_empty() {
                    self.forward_named(tls, header, &peer, drain).await;
                    return;
                }
                let target = SocketAddr::new(orig.ip(), port);
                let named_port = self.port(port).await;
                let peer = peer.stream_caller(&self.trusted_gateways, &header);
                // A session protocol says the stream is HTTP: it is served
                // as HTTP. Without one, a port that is not opaque is
                // detected like any other, so that no HTTP reaches the
                // application unread.
                match session_protocol(&header) {
                    Some(protocol) => {
                        let session = Session::Detected(protocol);
                        let policy = named_port.policy;
                        self.proxy(tls, target, policy, peer, session, drain).await;
                    }
                    None if named_port.opaque => {
                        let session = Session::Detected(Protocol::Opaque);
                        let policy = named_port.policy;
                        self.proxy(tls, target, policy, peer, session, drain).await;
                    }
                    None => {
                        let policy = named_port.policy;
                        self.detect_and_proxy(tls, target, policy, peer, drain)
                            .await;
                    }
                }
            }
            OnTls::Opaque => {
                let session = Session::Detected(Protocol::Opaque);
                let policy = target_port.policy;
                self.proxy(tls, orig, policy, peer, session, drain).await;
            }
            OnTls::Detect => {
                let policy = target_port.policy;
                self.detect_and_proxy(tls, orig, policy, peer, drain).await;
            }
        }
    }

    /// Reads the transport header a proxy sends first, within the
    /// detection timeout; none (logged, and counted when late) when it is
    /// malformed or late.
    async fn transport_header<I: AsyncRead + Unpin>(
        &self,
        io: &mut I,
        client: Option<&str>,
    ) -> Option<TransportHeader> {
        match tokio::time::timeout(self.config.detect_timeout, transport_header::read(io)).await {
            Ok(Ok(header)) => Some(header),
            Ok(Err(e)) => {
                tracing::info!(?client, "transport header: {e}");
                None
            }
            Err(_) => {
                self.accept_error(AcceptError::TransportHeaderTimeout);
                tracing::debug!(?client, "transport header not sent in time: closed");
                None
            }
        }
    }

    fn accept_error(&self, error: AcceptError) {
        self.tcp_metrics.accept_errors().count("inbound", error);
    }

    /// `port`'s policy, looked up once per connection, and whether the
    /// port is opaque (configured so, or by its policy's protocol).
    async fn port(&self, port: u16) -> TargetPort {
        let policy = self.policies.first(port).await;
        let opaque = self.config.opaque_ports.contains(port)
            || matches!(
                policy.current().protocol,
                PortProtocol::Opaque | PortProtocol::Tls
            );
        TargetPort { policy, opaque }
    }

    fn limits(&self) -> settle::Limits {
        settle::Limits {
            detect_timeout: self.config.detect_timeout,
            connect_timeout: self.config.connect_timeout,
        }
    }

    /// Detects what a stream inside mesh TLS speaks (settling what
    /// detection cannot tell), then proxies it to `target`.
    async fn detect_and_proxy<I>(
        self: Arc<Self>,
        io: I,
        target: SocketAddr,
        port_policy: PortPolicy,
        peer: Peer,
        drain: Signal,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match settle::detect(io, target, true, self.limits()).await {
            Ok((session, io)) => {
                self.proxy(io, target, port_policy, peer, session, drain)
                    .await
            }
            Err(e) => {
                tracing::info!(%target, client = ?peer.identity, "protocol detection inside mesh TLS: {e}");
            }
        }
    }

    /// Hands a stream whose transport header names a Service to the
    /// gateway, when this proxy is one.
    async fn forward_named<I>(&self, io: I, header: TransportHeader, peer: &Peer, drain: Signal)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match &self.gateway {
            Some(gateway) => {
                // Who may use the gateway: the policy of its own port (the
                // `linkerd-gateway` Server `mesh multicluster install`
                // renders), decided for the connection's client.
                let port = self.config.listen.port();
                let port_policy = self.policies.first(port).await;
                let policy = port_policy.current();
                let decision = Decision::new(
                    self.config.listen.to_string(),
                    &policy.meta,
                    authz_labels(peer),
                );
                match policy.authorize_connection(&peer.client()) {
                    Some(authz) => self.authz_metrics.tcp_allowed(&decision, &authz.meta),
                    None => {
                        self.authz_metrics.tcp_denied(&decision);
                        tracing::info!(client = ?peer.identity, name = %header.name, server = %policy.meta.name, "the gateway's policy does not admit this client: refused");
                        return;
                    }
                }
                // A connection the policy stops admitting is closed.
                tokio::select! {
                    () = gateway.forward(io, header, peer.identity.clone(), peer.labels(), drain) => {}
                    () = revoked(port_policy, peer) => {
                        self.authz_metrics.tcp_terminated(&decision);
                        tracing::info!(client = ?peer.identity, "the gateway's policy no longer admits this client: closed");
                    }
                }
            }
            None => tracing::info!(
                name = %header.name,
                "a transport header naming a Service reached a workload proxy: refused"
            ),
        }
    }

    /// A QUIC stream from a client at `remote` with `identity` (proved by
    /// its certificate): a transport header naming a Service, then the
    /// bytes for it ([`crate::quic`]).
    pub async fn quic_stream(
        self: Arc<Self>,
        mut stream: crate::quic::QuicStream,
        identity: Option<String>,
        remote: SocketAddr,
        drain: Signal,
    ) {
        let Some(header) = self
            .transport_header(&mut stream, identity.as_deref())
            .await
        else {
            return;
        };
        if header.name.is_empty() {
            tracing::info!(client = ?identity, "a QUIC stream must name a Service: refused");
            return;
        }
        let peer = Peer {
            identity,
            no_tls_reason: "no_client_certificate",
            addr: Some(remote),
            mesh_tls: true,
        };
        self.forward_named(stream, header, &peer, drain).await;
    }

    /// Serves a connection to `target`, under its port's policy.
    async fn proxy<I>(
        self: Arc<Self>,
        io: I,
        target: SocketAddr,
        port_policy: PortPolicy,
        peer: Peer,
        session: Session,
        drain: Signal,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let policy = port_policy.current();
        let (protocol, app) = match session {
            Session::Detected(protocol) => (protocol, None),
            Session::ServerFirst(app) => (Protocol::Opaque, Some(app)),
        };
        let protocol = match policy.protocol {
            PortProtocol::Opaque | PortProtocol::Tls => Protocol::Opaque,
            PortProtocol::Detect
            | PortProtocol::Http1
            | PortProtocol::Http2
            | PortProtocol::Grpc => protocol,
        };
        let decision = Decision::new(target.to_string(), &policy.meta, authz_labels(&peer));
        let mut labels = vec![
            ("direction", "inbound".to_owned()),
            ("peer", "src".to_owned()),
            ("target_addr", target.to_string()),
        ];
        labels.extend(peer.labels());
        match protocol {
            Protocol::Http1 | Protocol::Http2 => {
                let streams = if peer.identity.is_some() {
                    self.config.http2_max_concurrent_streams
                } else {
                    self.config.unauthenticated_http2_max_concurrent_streams
                };
                let io = self.tcp_metrics.track(labels, io);
                let this = self.clone();
                let peer = Arc::new(peer);
                let series = Arc::new(ConnectionSeries::default());
                let handle = move |req| {
                    let this = this.clone();
                    let peer = peer.clone();
                    let port_policy = port_policy.clone();
                    let series = series.clone();
                    async move {
                        this.request(target, &peer, &port_policy, &series, req)
                            .await
                    }
                };
                proxy_http::serve(io, protocol, streams, handle, drain.wait()).await;
            }
            _ => {
                let client = peer.client();
                let Some(authz) = policy.authorize_connection(&client) else {
                    self.authz_metrics.tcp_denied(&decision);
                    tracing::info!(%target, client = ?peer.identity, addr = ?peer.addr, server = %policy.meta.name, "connection not authorized: closed");
                    return;
                };
                self.authz_metrics.tcp_allowed(&decision, &authz.meta);
                let io = self.tcp_metrics.track(labels, io);
                tokio::select! {
                    () = self.relay(io, target, app) => {}
                    () = revoked(port_policy, &peer) => {
                        self.authz_metrics.tcp_terminated(&decision);
                        tracing::info!(%target, client = ?peer.identity, "a policy change no longer authorizes this connection: closed");
                    }
                }
            }
        }
    }

    /// Relays an opaque connection to the application at `target` (on
    /// `app`, when the application already spoke on it).
    async fn relay<I>(&self, io: I, target: SocketAddr, app: Option<TcpStream>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(app) = app {
            forward::copy(io, app).await;
            return;
        }
        match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(target)).await {
            Ok(Ok(app)) => {
                let _ = app.set_nodelay(true);
                forward::copy(io, app).await;
            }
            Ok(Err(e)) => tracing::info!(%target, "connecting to the application: {e}"),
            Err(_) => tracing::info!(%target, "connecting to the application timed out"),
        }
    }

    fn app(&self, target: SocketAddr) -> Arc<EndpointClient> {
        self.apps.get_or_insert_with(&target, || {
            Arc::new(EndpointClient::plain(
                Endpoint::unmeshed(target),
                self.config.connect_timeout,
            ))
        })
    }

    /// Serves one request of a connection from `peer` to `target`, counted
    /// under the connection's `series`.
    async fn request(
        &self,
        target: SocketAddr,
        peer: &Peer,
        port_policy: &PortPolicy,
        series: &ConnectionSeries,
        mut req: Request<Incoming>,
    ) -> Response<Body> {
        let started = Instant::now();
        let caller = peer.caller(&self.trusted_gateways, req.headers());
        let peer = caller.as_ref();
        let policy = port_policy.current();
        let (route, authorization) = match policy.authorize_request(&peer.client(), &(&req).into())
        {
            Ok(admitted) => admitted,
            Err(denied) => return self.deny(target, peer, &policy, &req, denied),
        };
        if authorization.meta.is_default() && authorization.meta.name == "audit" {
            tracing::info!(%target, client = ?peer.identity, path = %req.uri().path(), "audit: allowed by the audit policy");
        }
        let admitted = Admitted {
            policy: &policy,
            route,
            authorization,
            caller: peer.identity.as_deref(),
            authority: request_authority(&req),
        };
        let counted = series.counted(&admitted, || self.resolve(target, peer, &admitted));
        counted.allowed.inc();
        peer.tell(req.headers_mut());
        let downgraded = proxy_http::restore_orig_proto(&mut req);
        let tapped = self.tap(target, peer, &req);
        let upgrade = proxy_http::take_upgrade(&mut req);
        let response = match self.app(target).send(req.map(endpoint::boxed)).await {
            Ok(mut response) => {
                proxy_http::relay_upgrade(upgrade, &mut response);
                if downgraded {
                    response
                        .headers_mut()
                        .insert(ORIG_PROTO, HeaderValue::from_static("HTTP/1.1"));
                }
                proxy_http::boxed_response(response)
            }
            Err(e) => error_response(
                StatusCode::BAD_GATEWAY,
                &format!("the application at {target} did not answer: {e}"),
            ),
        };
        let response = match tapped {
            Some(tapped) => tapped.response(response),
            None => response,
        };
        proxy_http::observe_response(counted.series, response, None, None, started)
    }

    /// What a kind of admitted request is counted under, labelled as
    /// Linkerd labels it: the authorization counter by target, Server,
    /// route, authorization and client; the golden series by direction,
    /// authority, target, client and the policy objects.
    fn resolve(&self, target: SocketAddr, peer: &Peer, admitted: &Admitted<'_>) -> Counted {
        let policy = admitted.policy;
        let route = admitted
            .route
            .map(|route| route.meta.clone())
            .unwrap_or_default();
        let authorization = &admitted.authorization.meta;
        let decision = Decision::new(target.to_string(), &policy.meta, authz_labels(peer));
        let allowed = self
            .authz_metrics
            .http_allowed(&decision.on_route(&route), authorization);
        let mut labels: Labels = vec![
            ("direction", "inbound".to_owned()),
            ("authority", admitted.authority.to_owned()),
            ("target_addr", target.to_string()),
        ];
        labels.extend(peer.labels());
        labels.extend(request_labels(&policy.meta, &route, authorization));
        Counted {
            allowed,
            series: self.http_metrics.series(labels),
        }
    }

    /// Reports a request from `peer` to the taps that want it.
    fn tap(
        &self,
        target: SocketAddr,
        peer: &Peer,
        req: &Request<Incoming>,
    ) -> Option<crate::tap::Tapped> {
        if !self.taps.is_active() {
            return None;
        }
        self.taps.observe(&crate::tap::Observed {
            direction: crate::tap::Direction::Inbound,
            source: peer
                .addr
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            destination: target,
            source_labels: &peer.labels(),
            destination_labels: &[],
            route_labels: &[],
            request: req.into(),
        })
    }

    /// Answers a request `policy` did not admit: 404 when no route matches,
    /// else 403, with `l5d-proxy-error` (for gRPC `PERMISSION_DENIED`),
    /// counted and logged.
    fn deny(
        &self,
        target: SocketAddr,
        peer: &Peer,
        policy: &ServerPolicy,
        req: &Request<Incoming>,
        denied: RequestDenied,
    ) -> Response<Body> {
        let decision = Decision::new(target.to_string(), &policy.meta, authz_labels(peer));
        let (route, why) = match &denied {
            RequestDenied::NoRoute => (
                Default::default(),
                "no route matches the request".to_owned(),
            ),
            RequestDenied::Unauthorized { route } => (
                route.clone(),
                format!(
                    "client {} is not authorized on route {}",
                    peer.identity.as_deref().unwrap_or("without an identity"),
                    route.name
                ),
            ),
        };
        self.authz_metrics.http_denied(&decision.on_route(&route));
        tracing::info!(%target, client = ?peer.identity, path = %req.uri().path(), "request denied: {why}");
        let status = if matches!(denied, RequestDenied::NoRoute) {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::FORBIDDEN
        };
        denied_response(req, status, &why)
    }
}

/// The protocol a transport header's session protocol names, if any.
fn session_protocol(header: &TransportHeader) -> Option<Protocol> {
    match header.session_protocol.as_ref()?.kind.as_ref()? {
        transport_header::Kind::Http1(_) => Some(Protocol::Http1),
        transport_header::Kind::Http2(_) => Some(Protocol::Http2),
    }
}

/// A request's authority, or its `Host` (empty without either).
fn request_authority<B>(req: &Request<B>) -> &str {
    req.uri()
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default()
}

/// The client labels of an authorization metric (`tls`, `client_id`).
fn authz_labels(peer: &Peer) -> Labels {
    peer.labels()
        .into_iter()
        .filter(|(k, _)| *k == "tls" || *k == "client_id")
        .collect()
}

/// A refusal the client understands: gRPC's status for a gRPC request,
/// otherwise `status` with `l5d-proxy-error`.
fn denied_response(req: &Request<Incoming>, status: StatusCode, why: &str) -> Response<Body> {
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let code = if status == StatusCode::NOT_FOUND {
            12
        } else {
            7
        };
        return crate::http::grpc_error_response(code, why);
    }
    error_response(status, why)
}

/// Resolves once the port's policy stops admitting `peer`'s connection.
async fn revoked(mut port_policy: PortPolicy, peer: &Peer) {
    loop {
        port_policy.changed().await;
        if port_policy
            .current()
            .authorize_connection(&peer.client())
            .is_none()
        {
            return;
        }
    }
}
