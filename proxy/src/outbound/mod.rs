//! The outbound side (listener 4140): the pod's own connections, redirected
//! by iptables. For each connection: where it was going
//! (`SO_ORIGINAL_DST`), what discovery says about that address (a Service,
//! a pod, or neither), what it speaks; then HTTP requests are routed,
//! split, balanced, timed out and retried one by one, and opaque TCP is
//! balanced per connection. Meshed endpoints are reached over mutual TLS
//! with the identity discovery gave; anything else as it came.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use rand::RngExt;
use tokio::net::{TcpListener, TcpStream};

use crate::balance::{self, Balancer, Member, PickError};
use crate::cache::IdleCache;
use crate::config::DirectionConfig;
use crate::detect::{self, Protocol};
use crate::discover::{Discovery, Endpoint, Profile, ProfileWatch};
use crate::endpoint::{self, EndpointClient, TlsClients};
use crate::forward;
use crate::http::{self as proxy_http, error_response};
use crate::metrics::{HttpMetrics, Labels, TcpMetrics};
use crate::retry::Budget;
use mesh_core::drain::Signal;

pub(crate) mod layers;

/// How long a connection waits for its first profile before it is
/// forwarded as it came.
pub const PROFILE_WAIT: Duration = Duration::from_secs(3);

/// How long a request waits for an endpoint to exist (Linkerd's fail-fast
/// timeout).
pub const ENDPOINT_WAIT: Duration = Duration::from_secs(3);

/// Where a connection handed to [`Outbound::proxy`] came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its `tls` (and `client_id` or `no_tls_reason`) metric labels.
    pub labels: Labels,
    /// A `Forwarded` value to append to each HTTP request.
    pub forwarded: Option<http::HeaderValue>,
    /// Forward it as opaque TCP, without detection.
    pub opaque: bool,
    /// The client a gateway forwards it for: told to the endpoint in an
    /// opaque stream's transport header.
    pub client: Option<String>,
    /// The address it came from, when known (shown by tap).
    pub addr: Option<SocketAddr>,
}

/// The outbound proxy.
pub struct Outbound {
    config: DirectionConfig,
    discovery: Option<Arc<Discovery>>,
    tls: Option<TlsClients>,
    http_metrics: HttpMetrics,
    tcp_metrics: TcpMetrics,
    taps: crate::tap::Taps,
    logicals: IdleCache<SocketAddr, Logical>,
    named: IdleCache<String, Logical>,
    balancers: IdleCache<String, Balancer>,
    direct: IdleCache<DirectKey, Member>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// A direct endpoint: its address and the identity it must present.
type DirectKey = (SocketAddr, Option<String>);

/// One original destination: its profile and its retry budget.
#[derive(Debug)]
pub(crate) struct Logical {
    /// The address the connection was for (a placeholder for a name).
    addr: SocketAddr,
    /// The Service it was for by name (`name.ns.svc.domain:port`), when a
    /// gateway names it.
    name: Option<String>,
    profile: Option<ProfileWatch>,
    /// A first profile did not come in time.
    gave_up: std::sync::atomic::AtomicBool,
    budget: Mutex<Budget>,
    /// Its routing decisions, kept for the requests like them.
    pub(crate) decisions: layers::route::Decisions,
}

impl Logical {
    /// The target port.
    pub(crate) fn port(&self) -> u16 {
        self.name
            .as_deref()
            .and_then(|n| n.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(self.addr.port())
    }

    pub(crate) fn current(&self) -> Option<Arc<Profile>> {
        self.profile.as_ref().and_then(|w| w.borrow().clone())
    }

    /// The profile, waiting for the first one up to [`PROFILE_WAIT`]; once
    /// a wait has timed out, later connections do not wait again (discovery
    /// being down must not add seconds to every connection) and use the
    /// profile as soon as it comes.
    /// Waits until the destination service refuses this destination (a
    /// gateway's Service no longer exported); forever without discovery.
    pub(crate) async fn refused(&self) -> String {
        if let Some(mut watch) = self.profile.clone()
            && let Ok(profile) = watch
                .wait_for(|p| p.as_ref().is_some_and(|p| p.refused.is_some()))
                .await
        {
            return profile
                .as_ref()
                .and_then(|p| p.refused.clone())
                .unwrap_or_default();
        }
        std::future::pending().await
    }

    pub(crate) async fn first_profile(&self) -> Option<Arc<Profile>> {
        let mut watch = self.profile.clone()?;
        if self.gave_up.load(std::sync::atomic::Ordering::Relaxed) {
            return watch.borrow().clone();
        }
        let wait = watch.wait_for(|p| p.is_some());
        match tokio::time::timeout(PROFILE_WAIT, wait).await {
            Ok(Ok(profile)) => profile.clone(),
            _ => {
                self.gave_up
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(addr = %self.addr, name = ?self.name, "no profile within {PROFILE_WAIT:?}: forwarding as addressed");
                None
            }
        }
    }

    pub(crate) fn budget(&self, profile: Option<&Profile>) -> std::sync::MutexGuard<'_, Budget> {
        let config = profile.and_then(|p| p.retry_budget).unwrap_or_default();
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        if budget.config() != config {
            *budget = Budget::new(config);
        }
        budget
    }
}

/// Where a request or connection goes.
pub(crate) enum Target {
    /// A Service's endpoints.
    Balanced(Arc<Balancer>),
    /// One endpoint (a pod's address, or an address discovery does not
    /// know).
    Direct(Arc<Member>),
    /// A route backend that cannot be reached: requests drawn to it are
    /// answered with its failure (the attempt layer does).
    Failing(crate::discover::profile::BackendFailure),
}

impl Target {
    async fn pick(&self) -> Result<Arc<Member>, PickError> {
        self.pick_within(false).await
    }

    /// With `fail_fast`, a Service known to have no endpoint fails at once
    /// (another backend of its split can be tried).
    pub(crate) async fn pick_within(&self, fail_fast: bool) -> Result<Arc<Member>, PickError> {
        match self {
            Self::Balanced(balancer) => balancer.pick_within(ENDPOINT_WAIT, fail_fast).await,
            Self::Direct(member) => Ok(member.clone()),
            Self::Failing(_) => Err(PickError::NotFound("a route backend".into())),
        }
    }

    /// The Service authority it balances over.
    pub(crate) fn authority(&self) -> Option<&str> {
        match self {
            Self::Balanced(balancer) => Some(balancer.authority()),
            Self::Direct(_) | Self::Failing(_) => None,
        }
    }
}

impl Outbound {
    /// The outbound proxy.
    pub fn new(
        config: DirectionConfig,
        discovery: Option<Arc<Discovery>>,
        tls: Option<TlsClients>,
        http_metrics: HttpMetrics,
        tcp_metrics: TcpMetrics,
        taps: crate::tap::Taps,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            discovery,
            tls,
            http_metrics,
            tcp_metrics,
            taps,
            logicals: IdleCache::default(),
            named: IdleCache::default(),
            balancers: IdleCache::default(),
            direct: IdleCache::default(),
        })
    }

    /// Accepts connections on `listener` until `drain` completes; each
    /// connection then finishes its in-flight requests.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, drain: Signal) {
        let this = self.clone();
        let sweeper = crate::cache::sweeper(move || {
            this.logicals.sweep();
            this.named.sweep();
            this.balancers.sweep();
            this.direct.sweep();
        });
        let this = self.clone();
        let limit = self
            .tcp_metrics
            .connection_limit(self.config.max_connections, "outbound");
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
        if orig == local {
            tracing::debug!(%orig, "a connection to the proxy itself, not redirected: closing");
            return;
        }
        if self.config.skip_ports.contains(orig.port()) {
            forward::raw(stream, orig, self.config.connect_timeout).await;
            return;
        }
        let source = Source {
            labels: vec![
                ("tls", "no_identity".to_owned()),
                ("no_tls_reason", "loopback".to_owned()),
            ],
            forwarded: None,
            client: None,
            opaque: false,
            addr: stream.peer_addr().ok(),
        };
        self.proxy(stream, orig, source, drain).await;
    }

    /// Proxies `io`, a connection for `orig`, as the outbound side does:
    /// discovery, detection, routing, balancing, mutual TLS to meshed
    /// endpoints. The pod's own redirected connections come here, and so do
    /// the connections a multicluster gateway accepts for a local Service.
    pub async fn proxy<I>(self: Arc<Self>, io: I, orig: SocketAddr, source: Source, drain: Signal)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let logical = self.logical(orig);
        self.proxy_logical(io, logical, source, drain).await;
    }

    /// The logical destination of the Service named `authority`
    /// (`name.ns.svc.domain:port`), shared by every connection to it.
    pub(crate) fn named(&self, authority: &str) -> Arc<Logical> {
        self.named.get_or_insert_with(authority, || {
            Arc::new(Logical {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                name: Some(authority.to_owned()),
                profile: self.discovery.as_ref().map(|d| d.profile_named(authority)),
                gave_up: Default::default(),
                budget: Mutex::new(Budget::new(Default::default())),
                decisions: Default::default(),
            })
        })
    }

    pub(crate) async fn proxy_logical<I>(
        self: Arc<Self>,
        io: I,
        logical: Arc<Logical>,
        source: Source,
        drain: Signal,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let orig = logical.addr;
        // Discovery first: a profile can say the port is opaque, and a
        // server-speaks-first protocol must not wait out detection.
        let profile = logical.first_profile().await;
        let opaque = source.opaque
            || self.config.opaque_ports.contains(orig.port())
            || profile.as_ref().is_some_and(|p| p.opaque);
        let (protocol, io) = if opaque {
            (
                Protocol::Opaque,
                detect::Prefixed::new(Default::default(), io),
            )
        } else {
            // The application behind this proxy is its own client: what
            // detection cannot tell is relayed as opaque TCP.
            // Detection, serving and relaying are each boxed: a task holds
            // its future's largest state for as long as it lives, so inline
            // an idle HTTP connection would keep room for all three (2.1 KiB
            // more per idle HTTP/1.1 connection, measured).
            let detecting =
                detect::detect(io, self.config.detect_timeout, detect::MAX_DETECT_BYTES);
            match Box::pin(detecting).await {
                Ok((detection, io)) => (detection.or_opaque(), io),
                Err(e) => {
                    tracing::debug!(%orig, "detection: {e}");
                    return;
                }
            }
        };
        let target_label = logical.name.clone().unwrap_or_else(|| orig.to_string());
        let mut labels = vec![
            ("direction", "outbound".to_owned()),
            ("peer", "src".to_owned()),
            ("target_addr", target_label),
        ];
        labels.extend(source.labels);
        let io = self.tcp_metrics.track(labels, io);
        match protocol {
            Protocol::Http1 | Protocol::Http2 => {
                let forwarded = source.forwarded;
                let stack = layers::stack(self.clone(), logical.clone());
                let taps = self.taps.clone();
                let client_addr = source.addr;
                let handle = move |mut req: Request<Incoming>| {
                    let mut stack = stack.clone();
                    if let Some(addr) = client_addr.filter(|_| taps.is_active()) {
                        req.extensions_mut().insert(crate::tap::ClientAddr(addr));
                    }
                    let looped = forwarded
                        .as_ref()
                        .is_some_and(|f| crate::http::forwarded_loop(req.headers(), f));
                    if let Some(forwarded) = &forwarded {
                        // From a proxy in another cluster: HTTP/1 it carried
                        // over HTTP/2 goes on as HTTP/1 (upgraded again for
                        // a meshed endpoint).
                        proxy_http::restore_orig_proto(&mut req);
                        req.headers_mut()
                            .append(http::header::FORWARDED, forwarded.clone());
                    }
                    async move {
                        if looped {
                            return error_response(
                                StatusCode::LOOP_DETECTED,
                                "this gateway already forwarded the request",
                            );
                        }
                        let Ok(response) =
                            tower::Service::call(&mut stack, req.map(endpoint::boxed)).await;
                        response
                    }
                };
                let streams = self.config.http2_max_concurrent_streams;
                Box::pin(proxy_http::serve(
                    io,
                    protocol,
                    streams,
                    handle,
                    drain.wait(),
                ))
                .await;
            }
            _ => {
                let target = self.target(&logical, profile.as_deref(), None, &[]);
                Box::pin(self.opaque(io, target, source.client.as_deref())).await;
            }
        }
    }

    fn logical(&self, addr: SocketAddr) -> Arc<Logical> {
        self.logicals.get_or_insert_with(&addr, || {
            Arc::new(Logical {
                addr,
                name: None,
                profile: self.discovery.as_ref().and_then(|d| d.profile(addr)),
                gave_up: Default::default(),
                budget: Mutex::new(Budget::new(Default::default())),
                decisions: Default::default(),
            })
        })
    }

    /// Where traffic for `logical` goes under `profile`: a backend of its
    /// split or of the request's route (one not in `tried`, for a retry) or
    /// the Service itself, a pod, or the address as it came.
    pub(crate) fn target(
        &self,
        logical: &Logical,
        profile: Option<&Profile>,
        route: Option<&crate::discover::profile::Route>,
        tried: &[String],
    ) -> Target {
        self.pick(logical, profile, route, tried).0
    }

    /// [`Self::target`], with the filters of the backend drawn (an
    /// HTTPRoute backendRef's header modifiers).
    pub(crate) fn pick(
        &self,
        logical: &Logical,
        profile: Option<&Profile>,
        route: Option<&crate::discover::profile::Route>,
        tried: &[String],
    ) -> (Target, Vec<crate::discover::profile::RouteFilter>) {
        if let Some(name) = &logical.name
            && profile.is_none_or(|p| p.fully_qualified_name.is_none())
        {
            return (Target::Balanced(self.balancer(name)), Vec::new());
        }
        let Some(profile) = profile else {
            return (
                Target::Direct(self.direct(Endpoint::unmeshed(logical.addr))),
                Vec::new(),
            );
        };
        if let Some(name) = &profile.fully_qualified_name {
            let draw = rand::rng().random::<f64>();
            let backends = profile.backends_for(route);
            let backend = if tried.is_empty() {
                crate::split::pick(backends, draw)
            } else {
                crate::split::pick_retry(backends, draw, tried, |b| {
                    b.failure.is_none() && self.balancer(&b.authority).known_empty()
                })
            };
            if let Some(failure) = backend.and_then(|b| b.failure.clone()) {
                return (Target::Failing(failure), Vec::new());
            }
            let filters = backend.map(|b| b.filters.clone()).unwrap_or_default();
            let balancer = match backend {
                Some(backend) => self.balancer(&backend.authority),
                None => self.balancer(&format!("{name}:{}", logical.port())),
            };
            return (Target::Balanced(balancer), filters);
        }
        let endpoint = match &profile.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => Endpoint::unmeshed(logical.addr),
        };
        (Target::Direct(self.direct(endpoint)), Vec::new())
    }

    fn balancer(&self, authority: &str) -> Arc<Balancer> {
        self.balancers.get_or_insert_with(authority, || {
            let watch = match &self.discovery {
                Some(discovery) => discovery.endpoints(authority),
                None => tokio::sync::watch::channel(Arc::default()).1,
            };
            let tls = self.tls.clone();
            let timeout = self.config.connect_timeout;
            let make: balance::MakeClient = Arc::new(move |endpoint: &Endpoint| {
                EndpointClient::new(endpoint.clone(), tls.as_ref(), timeout)
                    .map_err(|e| tracing::warn!(addr = %endpoint.addr, "endpoint unusable: {e}"))
                    .ok()
            });
            Balancer::new(authority.to_owned(), watch, make)
        })
    }

    fn direct(&self, endpoint: Endpoint) -> Arc<Member> {
        let key = (endpoint.addr, endpoint.identity.clone());
        self.direct.get_or_insert_with(&key, || {
            let timeout = self.config.connect_timeout;
            let client = EndpointClient::new(endpoint.clone(), self.tls.as_ref(), timeout)
                .unwrap_or_else(|e| {
                    tracing::warn!(addr = %endpoint.addr, "endpoint identity unusable ({e}): plain text");
                    EndpointClient::plain(Endpoint::unmeshed(endpoint.addr), timeout)
                });
            Member::new(client)
        })
    }

    async fn opaque<I>(&self, io: I, target: Target, client: Option<&str>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let member = match target.pick().await {
            Ok(member) => member,
            Err(e) => {
                tracing::info!("opaque connection refused: {e}");
                return;
            }
        };
        let mut inflight = member.start();
        let server = match member.client.connect_opaque(client).await {
            Ok(server) => {
                inflight.established();
                server
            }
            Err(e) => {
                tracing::info!(addr = %member.endpoint().addr, "connecting: {e}");
                inflight.finish(false);
                return;
            }
        };
        let labels = endpoint_labels(&member, "dst");
        let server = self.tcp_metrics.track(labels, server);
        forward::copy(io, server).await;
        drop(inflight);
    }
}

fn endpoint_labels(member: &Member, peer: &str) -> Labels {
    let mut labels = vec![
        ("direction", "outbound".to_owned()),
        ("peer", peer.to_owned()),
        ("target_addr", member.endpoint().addr.to_string()),
    ];
    labels.extend(member.labels().iter().cloned());
    labels
}
