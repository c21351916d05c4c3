//! The tap component (`mesh-controller tap`): an extension API server
//! behind `APIService v1alpha1.tap.linkerd.io`. A user's `viz tap` goes to
//! the Kubernetes API server, which authenticates them, and reaches this
//! server with its front-proxy certificate ([`authn`]); this server asks
//! the API server whether the user may `watch` the resource's `tap`
//! subresource (a SubjectAccessReview, so tap follows RBAC), finds the
//! pods ([`targets`]), taps their proxies ([`proxies`]) and streams the
//! events back in Linkerd's framing ([`crate::tap_api`]).

pub mod authn;
pub mod proxies;
pub mod targets;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use prost::Message as _;
use tokio_stream::StreamExt;

use crate::tap_api::{self, ApiError, Resource, TapByResourceRequest};
use authn::{RequestHeader, User};
use proxies::Proxies;

/// The largest request body read.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How many events wait for a slow reader before the pods' streams pause.
const EVENT_BUFFER: usize = 1024;

type Body = BoxBody<Bytes, Infallible>;

/// What the tap server needs.
#[derive(Clone)]
pub struct TapServer {
    /// The Kubernetes API.
    pub client: kube::Client,
    /// How the API server vouches for users.
    pub authn: RequestHeader,
    /// The pods' proxies.
    pub proxies: Proxies,
    /// Every pod, to name a request's other side by its address.
    pub pods: Option<kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>>,
}

impl std::fmt::Debug for TapServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapServer")
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl TapServer {
    /// Answers one request from the API server.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let group = format!("/apis/{}", tap_api::GROUP_VERSION);
        match (req.method(), path.as_str()) {
            (&Method::GET, "/healthz" | "/readyz" | "/livez") => text(StatusCode::OK, "ok"),
            (&Method::GET, "/apis/tap.linkerd.io") => json(StatusCode::OK, &api_group()),
            (&Method::GET, p) if p == group => json(StatusCode::OK, &resource_list()),
            (&Method::GET, "/openapi/v2") => json(
                StatusCode::OK,
                &serde_json::json!({"swagger": "2.0", "info": {"title": "tap.linkerd.io", "version": "v1alpha1"}, "paths": {}}),
            ),
            (&Method::POST, p) if p.starts_with(&group) && p.ends_with("/tap") => {
                self.tap(req).await
            }
            _ => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{path}: not found"),
            ),
        }
    }

    async fn tap(&self, req: Request<Incoming>) -> Response<Body> {
        let Some(user) = self.authn.user(req.headers()) else {
            return status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "no user in the request; tap is reached through the Kubernetes API server",
            );
        };
        let path = req.uri().path().to_owned();
        let Some(url_target) = parse_path(&path) else {
            return api_error(StatusCode::BAD_REQUEST, &format!("invalid path: {path:?}"));
        };
        let body = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the request: {e}"),
                );
            }
        };
        let request = match TapByResourceRequest::decode(body) {
            Ok(request) => request,
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    &format!("not a TapByResourceRequest: {e}"),
                );
            }
        };
        let Some(target) = request.target.as_ref().and_then(|t| t.resource.clone()) else {
            return api_error(
                StatusCode::BAD_REQUEST,
                "the request names no target resource",
            );
        };
        // The body must ask for what the URL (which RBAC checked) names.
        if tap_api::path(&target) != path {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("the request's target does not match its URL {path:?}"),
            );
        }
        if let Err(why) = self.authorize(&user, &url_target).await {
            tracing::info!(user = %user.name, %path, "tap refused: {why}");
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "tap authorization failed ({why}); grant watch on {}/tap in tap.linkerd.io (the linkerd-linkerd-viz-tap-admin ClusterRole does)",
                    resource_plural(&url_target.r#type)
                ),
            );
        }
        let matcher = match request
            .r#match
            .as_ref()
            .map(proxies::proxy_match)
            .transpose()
        {
            Ok(matcher) => matcher,
            Err(e) => return api_error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let targets = match targets::resolve(&self.client, &target).await {
            Ok(targets) => targets,
            Err(e) => return api_error(StatusCode::NOT_FOUND, &e.to_string()),
        };
        tracing::info!(user = %user.name, %path, pods = targets.len(), "tapping");
        let (tx, rx) = tokio::sync::mpsc::channel(EVENT_BUFFER);
        let peers = Arc::new(proxies::Peers::new(self.pods.clone()));
        self.proxies
            .tap(&targets, matcher, request.max_rps, peers, tx);
        let frames = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|event| Ok::<_, Infallible>(Frame::data(tap_api::frame(&event))));
        let mut response = Response::new(StreamBody::new(frames).boxed());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        response
    }

    /// Whether `user` may watch `target`'s tap subresource.
    async fn authorize(&self, user: &User, target: &Resource) -> Result<(), String> {
        let (namespace, name) = if target.r#type == "namespace" {
            (target.name.clone(), None)
        } else {
            (target.namespace.clone(), Some(target.name.clone()))
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace),
                    verb: Some("watch".into()),
                    group: Some("tap.linkerd.io".into()),
                    version: Some("v1alpha1".into()),
                    resource: Some(resource_plural(&target.r#type)),
                    subresource: Some("tap".into()),
                    name,
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("the SubjectAccessReview failed: {e}"))?;
        let status = answer.status.unwrap_or_default();
        if status.allowed {
            return Ok(());
        }
        Err(match status.reason.filter(|r| !r.is_empty()) {
            Some(reason) => format!("user {:?} may not: {reason}", user.name),
            None => format!("user {:?} may not watch it", user.name),
        })
    }
}

/// The resource a tap URL names: `…/watch/namespaces/{ns}/tap` or
/// `…/watch/namespaces/{ns}/{type}s/{name}/tap`.
pub fn parse_path(path: &str) -> Option<Resource> {
    let rest = path.strip_prefix(&format!(
        "/apis/{}/watch/namespaces/",
        tap_api::GROUP_VERSION
    ))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let valid = |s: &str| !s.is_empty() && s.len() <= 253;
    match parts.as_slice() {
        [ns, "tap"] if valid(ns) => Some(Resource {
            namespace: String::new(),
            r#type: "namespace".into(),
            name: (*ns).to_owned(),
        }),
        [ns, plural, name, "tap"] if valid(ns) && valid(name) => {
            let (plural, _) = tap_api::RESOURCES
                .iter()
                .find(|(p, namespaced)| *namespaced && p == plural)?;
            Some(Resource {
                namespace: (*ns).to_owned(),
                r#type: plural.trim_end_matches('s').to_owned(),
                name: (*name).to_owned(),
            })
        }
        _ => None,
    }
}

fn resource_plural(kind: &str) -> String {
    format!("{kind}s")
}

fn api_group() -> serde_json::Value {
    let version =
        serde_json::json!({"groupVersion": tap_api::GROUP_VERSION, "version": "v1alpha1"});
    serde_json::json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": "tap.linkerd.io",
        "versions": [version], "preferredVersion": version,
    })
}

fn resource_list() -> serde_json::Value {
    let resources: Vec<_> = tap_api::RESOURCES
        .iter()
        .flat_map(|(plural, namespaced)| {
            let singular = plural.trim_end_matches('s');
            [
                serde_json::json!({"name": plural, "singularName": singular, "namespaced": namespaced, "kind": "Tap", "verbs": ["watch"]}),
                serde_json::json!({"name": format!("{plural}/tap"), "singularName": "", "namespaced": namespaced, "kind": "Tap", "verbs": ["watch"]}),
            ]
        })
        .collect();
    serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": tap_api::GROUP_VERSION, "resources": resources})
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn text(code: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(full(body.to_owned()));
    *response.status_mut() = code;
    response
}

fn json(code: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A Kubernetes `Status` answer, which the API server passes on as is.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json(
        code,
        &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// Linkerd's error answer: `linkerd-error` and a framed `ApiError`.
fn api_error(code: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(tap_api::frame(&ApiError {
        error: message.to_owned(),
    })));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(reason) = code.canonical_reason()
        && let Ok(value) = http::HeaderValue::from_str(reason)
    {
        headers.insert(tap_api::ERROR_HEADER, value);
    }
    response
}

/// Serves `server` on `listener` over `tls` until `stop` completes; a
/// client whose certificate is not the API server's is closed at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<TapServer>,
    stop: impl std::future::Future<Output = ()>,
) {
    let (connections, mut finished) = tokio::sync::mpsc::channel(64);
    let accept = mesh_core::tls::incoming::TlsIncoming::accept_loop(
        listener,
        tls,
        connections,
        stop,
        MAX_CONNECTIONS,
    );
    let serve = async move {
        while let Some(Ok(connection)) = finished.recv().await {
            let server = server.clone();
            tokio::spawn(async move {
                let peer = connection.peer_addr();
                let allowed = connection
                    .peer_certificate()
                    .is_some_and(|cert| server.authn.allows(cert));
                if !allowed {
                    tracing::info!(
                        ?peer,
                        "a client certificate that is not the API server's: closed"
                    );
                    return;
                }
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                if let Err(e) = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(connection), service)
                    .await
                {
                    tracing::debug!(?peer, "connection: {e}");
                }
            });
        }
    };
    tokio::join!(accept, serve);
}

/// Connections the tap component holds at once (the API server's, a few
/// per user tapping).
pub const MAX_CONNECTIONS: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_linkerds_tap_urls_name_a_resource() {
        let ns = parse_path("/apis/tap.linkerd.io/v1alpha1/watch/namespaces/shop/tap").expect("ns");
        assert_eq!(
            (ns.r#type.as_str(), ns.name.as_str()),
            ("namespace", "shop")
        );
        let deploy =
            parse_path("/apis/tap.linkerd.io/v1alpha1/watch/namespaces/shop/deployments/web/tap")
                .expect("deployment");
        assert_eq!(
            (
                deploy.namespace.as_str(),
                deploy.r#type.as_str(),
                deploy.name.as_str()
            ),
            ("shop", "deployment", "web")
        );
        for bad in [
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/shop/secrets/db/tap",
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces//tap",
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/shop/deployments/web/x/tap",
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/shop/namespaces/shop/tap",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
        // What a request names and where it is posted round-trip.
        assert_eq!(
            tap_api::path(&deploy),
            "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/shop/deployments/web/tap"
        );
    }
}
