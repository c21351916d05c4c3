//! The proxy injector's MutatingWebhook (`mesh-controller injector`): an
//! HTTPS server that answers the API server's AdmissionReviews for Pod
//! creation with a JSON patch that injects the proxy ([`crate::inject`]).
//!
//! For each Pod it reads the namespace's annotations and the trust anchors
//! (ConfigMap `linkerd-identity-trust-roots` in the control plane's
//! namespace, cached briefly). It never refuses a Pod: when it cannot
//! inject (a bad `config.linkerd.io/*` annotation, no trust anchors yet) the
//! Pod is admitted as it is, with an admission warning that says why, which
//! kubectl prints.
//!
//! What a caller can make it do is bounded: its TLS handshake and its
//! review's body must arrive within 10 s, and a body over
//! [`MAX_REVIEW_BYTES`] is refused (413) as soon as it is over.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use mesh_api::labels::TRUST_ROOTS_CONFIGMAP;
use mesh_core::drain::accept_until;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::inject::{self, Decision};
use crate::values::{Overrides, Values};

/// The path the webhook serves.
pub const PATH: &str = "/inject";

/// How long trust anchors read from the cluster are reused.
const ANCHORS_TTL: Duration = Duration::from_secs(10);

/// The largest AdmissionReview read: the API server takes request bodies
/// up to 3 MiB, and a review carries the object (and, on update, the old
/// one). A larger body is refused with 413 without being kept.
pub const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

/// How long a client may take over its TLS handshake, and over sending a
/// review's body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What every injection starts from, apart from the trust anchors (read
/// from the cluster).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The installation's values; `trust_anchors_pem` is replaced by the
    /// cluster's.
    pub values: Values,
}

/// The webhook's state.
pub struct Webhook {
    client: kube::Client,
    settings: Settings,
    anchors: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook reading the cluster through `client`.
    pub fn new(client: kube::Client, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            client,
            settings,
            anchors: Mutex::new(None),
        })
    }

    async fn trust_anchors(&self) -> anyhow::Result<String> {
        if let Some((at, pem)) = self
            .anchors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            && at.elapsed() < ANCHORS_TTL
        {
            return Ok(pem);
        }
        let namespace = &self.settings.values.control_plane_namespace;
        let config_maps: kube::Api<ConfigMap> =
            kube::Api::namespaced(self.client.clone(), namespace);
        let pem = config_maps
            .get(TRUST_ROOTS_CONFIGMAP)
            .await
            .map_err(|e| {
                anyhow::anyhow!("reading ConfigMap {namespace}/{TRUST_ROOTS_CONFIGMAP}: {e}")
            })?
            .data
            .and_then(|d| d.get("ca-bundle.crt").cloned())
            .filter(|pem| pem.contains("BEGIN CERTIFICATE"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "ConfigMap {namespace}/{TRUST_ROOTS_CONFIGMAP} has no ca-bundle.crt"
                )
            })?;
        *self.anchors.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), pem.clone()));
        Ok(pem)
    }

    async fn namespace_annotations(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let namespaces: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        match namespaces.get(namespace).await {
            Ok(ns) => ns.metadata.annotations,
            Err(e) => {
                tracing::warn!(namespace, "reading the namespace: {e}");
                None
            }
        }
    }

    /// Answers one admission request.
    pub async fn review(&self, request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let response = AdmissionResponse::from(request);
        if request.kind.kind != "Pod" {
            return response;
        }
        let Some(object) = &request.object else {
            return response;
        };
        let namespace = request
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = object
            .metadata
            .name
            .clone()
            .or_else(|| object.metadata.generate_name.clone())
            .unwrap_or_default();
        let label = format!("pod {namespace}/{name}");
        match self.patch(object, &namespace, &label).await {
            Ok(None) => response,
            Ok(Some(patch)) => match response.clone().with_patch(patch) {
                Ok(patched) => patched,
                Err(e) => warn(response, &label, &format!("serializing the patch: {e}")),
            },
            Err(why) => warn(response, &label, &why),
        }
    }

    async fn patch(
        &self,
        object: &DynamicObject,
        namespace: &str,
        label: &str,
    ) -> Result<Option<json_patch::Patch>, String> {
        let before = serde_json::to_value(object).map_err(|e| e.to_string())?;
        let mut pod: Pod =
            serde_json::from_value(before.clone()).map_err(|e| format!("not a Pod: {e}"))?;
        let ns_annotations = self.namespace_annotations(namespace).await;
        let spec = pod.spec.get_or_insert_with(Default::default);
        match inject::decide(&pod.metadata, spec, ns_annotations.as_ref()) {
            Decision::Skip(why) => {
                tracing::debug!("{label}: not injected: {why}");
                return Ok(None);
            }
            Decision::Inject => {}
        }
        let anchors = self.trust_anchors().await.map_err(|e| e.to_string())?;
        let base = Values {
            trust_anchors_pem: anchors,
            ..self.settings.values.clone()
        };
        let values = Overrides::default()
            .layer(ns_annotations.as_ref(), format!("namespace {namespace}"))
            .layer(pod.metadata.annotations.as_ref(), label.to_owned())
            .apply(&base)
            .map_err(|e| e.to_string())?;
        let workload = crate::owner::workload(&self.client, namespace, &pod.metadata).await;
        inject::inject(&mut pod.metadata, spec, &values, Some(namespace));
        if let Some((kind, name)) = workload {
            pod.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(crate::owner::label(&kind), name);
        }
        let after = serde_json::to_value(&pod).map_err(|e| e.to_string())?;
        tracing::info!("{label}: injected");
        Ok(Some(json_patch::diff(&before, &after)))
    }

    /// Serves HTTPS on `listener` with `tls` until `signal`; then waits
    /// for the reviews in progress (whoever runs it bounds the wait).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        signal: mesh_core::drain::Signal,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        accept_until(listener, signal, move |tcp| {
            let (acceptor, webhook) = (acceptor.clone(), self.clone());
            async move {
                // A client that never finishes its handshake is dropped.
                let Ok(Ok(tls)) = tokio::time::timeout(READ_TIMEOUT, acceptor.accept(tcp)).await
                else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let webhook = webhook.clone();
                    async move { Ok::<_, Infallible>(webhook.respond(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        })
        .await;
    }

    async fn respond(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, body: Vec<u8>| {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        };
        if req.method() != Method::POST || req.uri().path() != PATH {
            return reply(StatusCode::NOT_FOUND, b"{}".to_vec());
        }
        let limited = http_body_util::Limited::new(req.into_body(), MAX_REVIEW_BYTES);
        let body = match tokio::time::timeout(READ_TIMEOUT, limited.collect()).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("an AdmissionReview is at most {MAX_REVIEW_BYTES} bytes").into_bytes(),
                );
            }
            Ok(Err(e)) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
            Err(_) => {
                return reply(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the AdmissionReview did not arrive within {READ_TIMEOUT:?}")
                        .into_bytes(),
                );
            }
        };
        let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
            Ok(review) => review,
            Err(e) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!("not an AdmissionReview: {e}").into_bytes(),
                );
            }
        };
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
        };
        let response = self.review(&request).await.into_review();
        match serde_json::to_vec(&response) {
            Ok(body) => reply(StatusCode::OK, body),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string().into_bytes(),
            ),
        }
    }
}

/// Admits the Pod uninjected, with a warning kubectl shows.
fn warn(response: AdmissionResponse, label: &str, why: &str) -> AdmissionResponse {
    tracing::warn!("{label}: not injected: {why}");
    let mut response = response;
    response
        .warnings
        .get_or_insert_with(Vec::new)
        .push(format!("mesh proxy not injected into {label}: {why}"));
    response
}
