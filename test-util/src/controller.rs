//! A mock control plane speaking the real `linkerd2-proxy-api` gRPC: a
//! destination service whose answers the test sets (and changes while
//! proxies watch), a policy service (`InboundServerPolicies`) serving the
//! port policies the test sets (NOT_FOUND for a port it has none for, as
//! the real controller answers for a pod it does not know) and the
//! outbound policies it sets (`OutboundPolicies`, NOT_FOUND otherwise), and an identity
//! service that checks the token and signs CSRs with a test CA. All serve
//! mutual TLS with their identities.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use linkerd2_proxy_api::destination::destination_server::{Destination, DestinationServer};
use linkerd2_proxy_api::destination::{self as api, DestinationProfile, GetDestination, Update};
use linkerd2_proxy_api::identity::identity_server::{Identity, IdentityServer};
use linkerd2_proxy_api::identity::{CertifyRequest, CertifyResponse};
use linkerd2_proxy_api::inbound::PortSpec;
use linkerd2_proxy_api::inbound::inbound_server_policies_server::{
    InboundServerPolicies, InboundServerPoliciesServer,
};
use linkerd2_proxy_api::outbound::outbound_policies_server::{
    OutboundPolicies, OutboundPoliciesServer,
};
use linkerd2_proxy_api::outbound::{OutboundPolicy, TrafficSpec, traffic_spec};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, Issuer,
    KeyPair,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

pub const DESTINATION_ID: &str =
    "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local";
pub const POLICY_ID: &str = "linkerd-policy.linkerd.serviceaccount.identity.linkerd.cluster.local";
pub const IDENTITY_ID: &str =
    "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local";
pub const TOKEN: &str = "a-projected-service-account-token";

/// A test CA: the trust anchor and its key.
pub struct Ca {
    pub anchor_pem: String,
    issuer: Issuer<'static, KeyPair>,
    pub lifetime: Mutex<Duration>,
}

impl Ca {
    pub fn new() -> Arc<Self> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "root.linkerd.cluster.local");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("anchor");
        Arc::new(Self {
            anchor_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            lifetime: Mutex::new(Duration::from_secs(24 * 3600)),
        })
    }

    /// Signs a CSR; the leaf is valid for the current lifetime.
    pub fn sign(&self, csr: &[u8]) -> (CertificateDer<'static>, SystemTime) {
        let mut params = CertificateSigningRequestParams::from_der(
            &CertificateSigningRequestDer::from(csr.to_vec()),
        )
        .expect("a CSR");
        let now = SystemTime::now();
        let valid_until = now + *self.lifetime.lock().expect("lifetime");
        params.params.not_before = (now - Duration::from_secs(20)).into();
        params.params.not_after = valid_until.into();
        let cert = params.signed_by(&self.issuer).expect("sign");
        (cert.der().clone(), valid_until)
    }

    /// Credentials for a control-plane identity, certified at once.
    pub fn credentials(&self, identity: &str) -> Arc<mesh_core::tls::Credentials> {
        let roots = vec![pem_cert(&self.anchor_pem)];
        let credentials = mesh_core::tls::Credentials::new(identity, &roots).expect("credentials");
        let key = mesh_core::identity::LocalKey::generate(identity).expect("key");
        let (leaf, _) = self.sign(key.csr_der());
        credentials
            .set_certificate(vec![leaf], key.private_key())
            .expect("certificate");
        credentials
    }
}

impl Ca {
    /// A TLS client trusting this CA: with `identity`, it presents a
    /// certificate for it, else none; it offers `alpn`.
    pub fn connector(&self, identity: Option<&str>, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let credentials = match identity {
            Some(identity) => self.credentials(identity),
            None => mesh_core::tls::Credentials::new(
                "nobody.test.serviceaccount.identity.linkerd.cluster.local",
                &[pem_cert(&self.anchor_pem)],
            )
            .expect("credentials"),
        };
        let config = credentials.client_config(&[alpn]).expect("client config");
        tokio_rustls::TlsConnector::from(config)
    }
}

pub fn pem_cert(pem: &str) -> CertificateDer<'static> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM")
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

/// What the destination service answers.
#[derive(Default)]
pub struct State {
    profiles: Mutex<HashMap<String, watch::Sender<DestinationProfile>>>,
    endpoints: Mutex<HashMap<String, watch::Sender<Vec<api::WeightedAddr>>>>,
    pub certified: Mutex<Vec<String>>,
    /// Paths refused (`PERMISSION_DENIED`) to a gateway's lookups, as the
    /// destination service refuses a Service a gateway does not export.
    unexported: Mutex<HashSet<String>>,
    /// The context token of every lookup, in order.
    pub contexts: Mutex<Vec<String>>,
    policies: Mutex<HashMap<u32, watch::Sender<Option<linkerd2_proxy_api::inbound::Server>>>>,
    /// The policy of every port not given one (none: NOT_FOUND).
    default_policy: Mutex<Option<linkerd2_proxy_api::inbound::Server>>,
    outbound: Mutex<HashMap<String, watch::Sender<Option<OutboundPolicy>>>>,
    /// The workload of every policy lookup, in order.
    pub policy_workloads: Mutex<Vec<String>>,
}

impl State {
    fn profile_tx(&self, path: &str) -> watch::Sender<DestinationProfile> {
        self.profiles
            .lock()
            .expect("profiles")
            .entry(path.to_owned())
            .or_insert_with(|| watch::channel(DestinationProfile::default()).0)
            .clone()
    }

    fn endpoints_tx(&self, authority: &str) -> watch::Sender<Vec<api::WeightedAddr>> {
        self.endpoints
            .lock()
            .expect("endpoints")
            .entry(authority.to_owned())
            .or_insert_with(|| watch::channel(Vec::new()).0)
            .clone()
    }

    /// Sets the profile of `path` (`ip:port`), now and for watchers.
    pub fn set_profile(&self, path: &str, profile: DestinationProfile) {
        self.profile_tx(path).send_replace(profile);
    }

    fn policy_tx(&self, port: u32) -> watch::Sender<Option<linkerd2_proxy_api::inbound::Server>> {
        let default = self.default_policy.lock().expect("default policy").clone();
        self.policies
            .lock()
            .expect("policies")
            .entry(port)
            .or_insert_with(|| watch::channel(default).0)
            .clone()
    }

    fn outbound_tx(&self, target: &str) -> watch::Sender<Option<OutboundPolicy>> {
        self.outbound
            .lock()
            .expect("outbound policies")
            .entry(target.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .clone()
    }

    /// Sets the outbound policy of `target` (`ip:port`, or a Service
    /// authority), now and for watchers; targets without one are
    /// NOT_FOUND, as the controller answers for what is not a Service.
    pub fn set_outbound_policy(&self, target: &str, policy: OutboundPolicy) {
        self.outbound_tx(target).send_replace(Some(policy));
    }

    /// Sets the policy of inbound `port`, now and for watchers.
    pub fn set_port_policy(&self, port: u16, server: linkerd2_proxy_api::inbound::Server) {
        self.policy_tx(u32::from(port)).send_replace(Some(server));
    }

    /// Serves `server` for every port not given a policy of its own, now
    /// and for watchers, as the policy controller serves its default
    /// policy for any port of a pod; until then such ports are NOT_FOUND.
    pub fn set_default_port_policy(&self, server: linkerd2_proxy_api::inbound::Server) {
        *self.default_policy.lock().expect("default policy") = Some(server.clone());
        for tx in self.policies.lock().expect("policies").values() {
            tx.send_if_modified(|policy| {
                let unset = policy.is_none();
                if unset {
                    *policy = Some(server.clone());
                }
                unset
            });
        }
    }

    /// Refuses (or, with `exported`, answers again) a gateway's lookups of
    /// `path`: those whose context token carries `gatewayExports`.
    pub fn set_exported(&self, path: &str, exported: bool) {
        let mut unexported = self.unexported.lock().expect("unexported");
        if exported {
            unexported.remove(path);
        } else {
            unexported.insert(path.to_owned());
        }
    }

    /// Records a lookup's context token; refuses it when a gateway asks for
    /// what it does not export.
    fn lookup(&self, req: &GetDestination) -> Result<(), Status> {
        self.contexts
            .lock()
            .expect("contexts")
            .push(req.context_token.clone());
        let gateway = req.context_token.contains("\"gatewayExports\"");
        if gateway
            && self
                .unexported
                .lock()
                .expect("unexported")
                .contains(&req.path)
        {
            return Err(Status::permission_denied(format!(
                "{} is not exported",
                req.path
            )));
        }
        Ok(())
    }

    /// Sets the endpoints of `authority` (`name:port`).
    pub fn set_endpoints(&self, authority: &str, endpoints: Vec<api::WeightedAddr>) {
        self.endpoints_tx(authority).send_replace(endpoints);
    }
}

/// A meshed endpoint (identity, HTTP/2 between proxies, opaque transport
/// on 4143) with a `pod` label.
pub fn endpoint(addr: SocketAddr, identity: Option<&str>, pod: &str) -> api::WeightedAddr {
    api::WeightedAddr {
        addr: Some(linkerd2_proxy_api::net::TcpAddress {
            ip: Some(addr.ip().into()),
            port: u32::from(addr.port()),
        }),
        weight: 10000,
        metric_labels: [("pod".to_owned(), pod.to_owned())].into(),
        tls_identity: identity.map(|name| api::TlsIdentity {
            strategy: Some(api::tls_identity::Strategy::DnsLikeIdentity(
                api::tls_identity::DnsLikeIdentity { name: name.into() },
            )),
            ..Default::default()
        }),
        protocol_hint: identity.map(|_| api::ProtocolHint {
            protocol: Some(api::protocol_hint::Protocol::H2(api::protocol_hint::H2 {})),
            opaque_transport: Some(api::protocol_hint::OpaqueTransport { inbound_port: 4143 }),
        }),
        ..Default::default()
    }
}

#[derive(Clone)]
struct Service(Arc<State>, Arc<Ca>);

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

fn diff(
    old: &[api::WeightedAddr],
    new: &[api::WeightedAddr],
    first: bool,
) -> Vec<Result<Update, Status>> {
    use api::update::Update as U;
    let key = |a: &api::WeightedAddr| a.addr;
    // As the destination service does, an endpoint that changed (its
    // identity, its labels) is added again; an Add replaces what the
    // proxy held for that address.
    let added: Vec<_> = new
        .iter()
        .filter(|a| first || !old.contains(a))
        .cloned()
        .collect();
    let removed: Vec<_> = old
        .iter()
        .filter(|o| !first && !new.iter().any(|a| key(a) == key(o)))
        .filter_map(|o| o.addr)
        .collect();
    let mut updates = Vec::new();
    if !added.is_empty() {
        updates.push(Ok(Update {
            update: Some(U::Add(api::WeightedAddrSet {
                addrs: added,
                metric_labels: [("service".to_owned(), "web".to_owned())].into(),
            })),
        }));
    }
    if !removed.is_empty() {
        updates.push(Ok(Update {
            update: Some(U::Remove(api::AddrSet { addrs: removed })),
        }));
    }
    if first && new.is_empty() {
        updates.push(Ok(Update {
            update: Some(U::NoEndpoints(api::NoEndpoints { exists: true })),
        }));
    }
    updates
}

#[tonic::async_trait]
impl Destination for Service {
    type GetStream = Stream<Update>;
    type GetProfileStream = Stream<DestinationProfile>;

    async fn get(&self, req: Request<GetDestination>) -> Result<Response<Self::GetStream>, Status> {
        let req = req.into_inner();
        self.0.lookup(&req)?;
        let rx = self.0.endpoints_tx(&req.path).subscribe();
        let mut previous: Option<Vec<api::WeightedAddr>> = None;
        let stream = tokio_stream::wrappers::WatchStream::new(rx).flat_map(move |current| {
            let updates = diff(
                previous.as_deref().unwrap_or(&[]),
                &current,
                previous.is_none(),
            );
            previous = Some(current);
            futures::stream::iter(updates)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_profile(
        &self,
        req: Request<GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let req = req.into_inner();
        self.0.lookup(&req)?;
        let rx = self.0.profile_tx(&req.path).subscribe();
        let stream = tokio_stream::wrappers::WatchStream::new(rx).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl InboundServerPolicies for Service {
    async fn get_port(
        &self,
        req: Request<PortSpec>,
    ) -> Result<Response<linkerd2_proxy_api::inbound::Server>, Status> {
        let spec = req.into_inner();
        self.0
            .policy_workloads
            .lock()
            .expect("workloads")
            .push(spec.workload);
        self.0
            .policy_tx(spec.port)
            .borrow()
            .clone()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no policy for port {}", spec.port)))
    }

    type WatchPortStream = Stream<linkerd2_proxy_api::inbound::Server>;

    async fn watch_port(
        &self,
        req: Request<PortSpec>,
    ) -> Result<Response<Self::WatchPortStream>, Status> {
        let spec = req.into_inner();
        self.0
            .policy_workloads
            .lock()
            .expect("workloads")
            .push(spec.workload);
        let rx = self.0.policy_tx(spec.port).subscribe();
        if rx.borrow().is_none() {
            return Err(Status::not_found(format!(
                "no policy for port {}",
                spec.port
            )));
        }
        let stream = tokio_stream::wrappers::WatchStream::new(rx)
            .filter_map(|server| futures::future::ready(server.map(Ok)));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The key a `TrafficSpec` is looked up by.
fn outbound_key(spec: &TrafficSpec) -> Result<String, Status> {
    match spec.target.as_ref() {
        Some(traffic_spec::Target::Authority(authority)) => Ok(authority.clone()),
        Some(traffic_spec::Target::Addr(addr)) => {
            let ip = addr
                .ip
                .and_then(|ip| std::net::IpAddr::try_from(ip).ok())
                .ok_or_else(|| Status::invalid_argument("no IP"))?;
            Ok(SocketAddr::new(ip, u16::try_from(addr.port).unwrap_or_default()).to_string())
        }
        None => Err(Status::invalid_argument("no target")),
    }
}

#[tonic::async_trait]
impl OutboundPolicies for Service {
    async fn get(&self, req: Request<TrafficSpec>) -> Result<Response<OutboundPolicy>, Status> {
        let key = outbound_key(req.get_ref())?;
        self.0
            .outbound_tx(&key)
            .borrow()
            .clone()
            .map(Response::new)
            .ok_or_else(|| Status::not_found("not a Service"))
    }

    type WatchStream = Stream<OutboundPolicy>;

    async fn watch(
        &self,
        req: Request<TrafficSpec>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let key = outbound_key(req.get_ref())?;
        let rx = self.0.outbound_tx(&key).subscribe();
        if rx.borrow().is_none() {
            return Err(Status::not_found("not a Service"));
        }
        let stream = tokio_stream::wrappers::WatchStream::new(rx)
            .filter_map(|policy| futures::future::ready(policy.map(Ok)));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl Identity for Service {
    async fn certify(
        &self,
        req: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let req = req.into_inner();
        if req.token != TOKEN.as_bytes() {
            return Err(Status::unauthenticated("not a token we issued"));
        }
        let (leaf, valid_until) = self.1.sign(&req.certificate_signing_request);
        self.0
            .certified
            .lock()
            .expect("certified")
            .push(req.identity);
        Ok(Response::new(CertifyResponse {
            leaf_certificate: leaf.to_vec(),
            intermediate_certificates: Vec::new(),
            valid_until: Some(valid_until.into()),
        }))
    }
}

/// A TLS connection tonic can serve.
struct Tls(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for Tls {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the mock controller")
}

/// Serves `router` on `listener` over TLS with `credentials` until the
/// runtime ends.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    credentials: Arc<mesh_core::tls::Credentials>,
    router: tonic::service::Routes,
) {
    let config = credentials
        .server_config(
            mesh_core::tls::ClientAuth::Optional,
            &[mesh_core::tls::ALPN_H2],
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Tls>>(16);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok(Tls(tls))).await;
                }
            });
        }
    });
    let _ = tonic::transport::Server::builder()
        .add_routes(router)
        .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
}

/// Starts the destination (port 8086), policy (8090) and identity (8080)
/// services on `ip`, on the current runtime.
pub async fn start(ip: std::net::IpAddr, state: Arc<State>, ca: Arc<Ca>) {
    let service = Service(state, ca.clone());
    tokio::spawn(serve_tls(
        bind(SocketAddr::new(ip, 8090)).await,
        ca.credentials(POLICY_ID),
        tonic::service::Routes::new(InboundServerPoliciesServer::new(service.clone()))
            .add_service(OutboundPoliciesServer::new(service.clone())),
    ));
    tokio::spawn(serve_tls(
        bind(SocketAddr::new(ip, 8086)).await,
        ca.credentials(DESTINATION_ID),
        tonic::service::Routes::new(DestinationServer::new(service.clone())),
    ));
    tokio::spawn(serve_tls(
        bind(SocketAddr::new(ip, 8080)).await,
        ca.credentials(IDENTITY_ID),
        tonic::service::Routes::new(IdentityServer::new(service)),
    ));
}
