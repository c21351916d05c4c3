//! The metrics-api's gRPC transport: `linkerd2.viz.Api`'s methods routed
//! by path to [`MetricsApi`], each a unary call with prost's codec, as
//! tonic's generated servers do (the proto is Linkerd's and is not
//! published as a crate, so the messages are declared in
//! [`super::proto`] and the routing is here). A method mesh does not
//! serve answers `UNIMPLEMENTED` with what to use instead.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;

use super::MetricsApi;

/// The service's name, as clients address it.
pub const SERVICE: &str = "linkerd2.viz.Api";

/// `linkerd2.viz.Api` as a tonic service.
#[derive(Debug, Clone)]
pub struct ApiServer(Arc<MetricsApi>);

impl ApiServer {
    /// Serving `api`.
    pub fn new(api: MetricsApi) -> Self {
        Self(Arc::new(api))
    }
}

/// A gRPC server of `api`: at most 32 calls at once per connection, each
/// cut off after a minute (an answer takes a few Prometheus queries).
pub fn router(api: MetricsApi) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(32)
        .timeout(std::time::Duration::from_secs(60))
        .add_service(ApiServer::new(api))
}

impl tonic::server::NamedService for ApiServer {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One unary method: `F` answers a decoded request.
struct Unary<F>(F);

impl<Req, Res, F, Fut> tonic::server::UnaryService<Req> for Unary<F>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Res, Status>> + Send + 'static,
{
    type Response = Res;
    type Future = BoxFuture<Result<tonic::Response<Res>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let answer = (self.0)(request.into_inner());
        Box::pin(async move { answer.await.map(tonic::Response::new) })
    }
}

/// Answers `request` with `method`: decodes it, calls, encodes.
async fn unary<Req, Res, F, Fut, B>(request: http::Request<B>, method: F) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Res: prost::Message + Send + 'static,
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Res, Status>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let codec = tonic_prost::ProstCodec::<Res, Req>::default();
    tonic::server::Grpc::new(codec)
        .unary(Unary(method), request)
        .await
}

impl<B> tower::Service<http::Request<B>> for ApiServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let api = self.0.clone();
        let method = request
            .uri()
            .path()
            .strip_prefix(&format!("/{SERVICE}/"))
            .unwrap_or_default()
            .to_owned();
        Box::pin(async move {
            // Each method: decode, ask the API, encode.
            macro_rules! answer {
                ($method:ident) => {
                    unary(request, move |r| {
                        let api = api.clone();
                        async move { api.$method(r).await }
                    })
                    .await
                };
            }
            Ok(match method.as_str() {
                "StatSummary" => answer!(stat_summary),
                "Edges" => answer!(edges),
                "TopRoutes" => answer!(top_routes),
                "ListServices" => answer!(list_services),
                "SelfCheck" => answer!(self_check),
                "ListPods" => unimplemented("ListPods: list pods with the Kubernetes API"),
                "Authz" => unimplemented(
                    "Authz: `mesh viz stat httproute` and the proxies' inbound_http_authz_* series",
                ),
                "Gateways" => unimplemented("Gateways (deprecated): `mesh multicluster gateways`"),
                other => unimplemented(&format!("{SERVICE}/{other} is not a method of the API")),
            })
        })
    }
}

/// An `UNIMPLEMENTED` answer saying `what`.
fn unimplemented(what: &str) -> http::Response<Body> {
    Status::unimplemented(what.to_owned()).into_http()
}

/// A client of `linkerd2.viz.Api`, calling it as one generated from
/// Linkerd's proto does (benchmarks and tests use it).
#[derive(Debug, Clone)]
pub struct Client(tonic::client::Grpc<tonic::transport::Channel>);

impl Client {
    /// Connected to the metrics-api at `url` (`http://host:8085`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
            .connect()
            .await?;
        Ok(Self(tonic::client::Grpc::new(channel)))
    }

    /// Calls `method` (`StatSummary`) with `request`.
    pub async fn call<Req, Res>(&mut self, method: &str, request: Req) -> Result<Res, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Res: prost::Message + Default + Send + Sync + 'static,
    {
        self.0
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::try_from(format!("/{SERVICE}/{method}"))
            .map_err(|e| Status::invalid_argument(format!("method {method:?}: {e}")))?;
        let codec = tonic_prost::ProstCodec::<Req, Res>::default();
        self.0
            .unary(tonic::Request::new(request), path, codec)
            .await
            .map(tonic::Response::into_inner)
    }

    /// `SelfCheck`.
    pub async fn self_check(&mut self) -> Result<super::proto::SelfCheckResponse, Status> {
        self.call("SelfCheck", super::proto::SelfCheckRequest {})
            .await
    }

    /// `StatSummary`.
    pub async fn stat_summary(
        &mut self,
        request: super::proto::StatSummaryRequest,
    ) -> Result<super::proto::StatSummaryResponse, Status> {
        self.call("StatSummary", request).await
    }
}
