//! The admin endpoint every mesh process serves (the proxy on 4191, the
//! controllers on 9990): `/metrics` in the Prometheus text format, `/ready`
//! (200 `ready` or 503 `not ready`), `/live` (always 200 `live`), and, when
//! the process allows it, `POST /shutdown` (as Linkerd's proxy: only from
//! loopback, so a pod's own containers can end their proxy, as Jobs do).
//! [`Admin::probes_only`] serves the probes alone, for a port exposed
//! outside the cluster.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Whether a component is ready: false until every part it waits for is
/// done (each of its watches listed once, its first certificate in hand),
/// then true for good. Clones share the state.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicUsize>);

impl Default for Readiness {
    fn default() -> Self {
        Self::waiting_for(1)
    }
}

impl Readiness {
    /// Waiting for one thing ([`Readiness::set_ready`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Waiting for `parts` things, each reported by [`Readiness::part_done`].
    pub fn waiting_for(parts: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(parts)))
    }

    /// One of the parts is done (call it once per part).
    pub fn part_done(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            });
    }

    /// From now on, ready, whatever is left.
    pub fn set_ready(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// Whether every part is done.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

/// A component's own JSON endpoint: the request's query string in, a JSON
/// body or an error status and message out.
pub type JsonHandler = Arc<dyn Fn(&str) -> Result<String, (StatusCode, String)> + Send + Sync>;

/// What the admin endpoint reports.
#[derive(Clone)]
pub struct Admin {
    registry: Arc<Registry>,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
    shutdown: Option<Arc<dyn Fn() + Send + Sync>>,
    json: Vec<(&'static str, JsonHandler)>,
    probes_only: bool,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// Serves `registry`, and readiness as `ready` says.
    pub fn new(registry: Arc<Registry>, ready: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self {
            registry,
            ready: Arc::new(ready),
            shutdown: None,
            json: Vec::new(),
            probes_only: false,
        }
    }

    /// The same endpoint serving `GET /ready` and `/live` only: what a
    /// port open to the outside (a gateway's LoadBalancer) may show, with
    /// no metrics, JSON or shutdown behind it.
    pub fn probes_only(mut self) -> Self {
        self.probes_only = true;
        self
    }

    /// Serves `GET path?query` with `handler` (what a component shows of
    /// its state to `mesh` diagnostics through the API server's pod proxy).
    pub fn with_json(
        mut self,
        path: &'static str,
        handler: impl Fn(&str) -> Result<String, (StatusCode, String)> + Send + Sync + 'static,
    ) -> Self {
        self.json.push((path, Arc::new(handler)));
        self
    }

    /// Serves `registry`, ready once `readiness` is.
    pub fn with_readiness(registry: Arc<Registry>, readiness: &Readiness) -> Self {
        let readiness = readiness.clone();
        Self::new(registry, move || readiness.is_ready())
    }

    /// Serves `POST /shutdown`, which calls `shutdown`.
    pub fn with_shutdown(mut self, shutdown: impl Fn() + Send + Sync + 'static) -> Self {
        self.shutdown = Some(Arc::new(shutdown));
        self
    }

    /// Serves HTTP/1 on `listener` until `shutdown` completes.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => return,
            };
            let Ok((stream, peer)) = accepted else {
                continue;
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.respond(&req, peer)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn respond(&self, req: &Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: String, content_type: &'static str| {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            response
        };
        let probe = matches!(req.uri().path(), "/ready" | "/live");
        if self.probes_only && !probe {
            return text(
                StatusCode::NOT_FOUND,
                "this port serves /ready and /live only\n".into(),
                "text/plain",
            );
        }
        if req.uri().path() == "/shutdown" {
            return match (&self.shutdown, req.method()) {
                (None, _) => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
                (Some(_), m) if m != Method::POST => text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST only\n".into(),
                    "text/plain",
                ),
                (Some(_), _) if !peer.ip().is_loopback() => text(
                    StatusCode::FORBIDDEN,
                    "shutdown is only allowed from the pod itself (loopback)\n".into(),
                    "text/plain",
                ),
                (Some(shutdown), _) => {
                    shutdown();
                    text(StatusCode::OK, "shutdown\n".into(), "text/plain")
                }
            };
        }
        if req.method() != Method::GET {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "GET only\n".into(),
                "text/plain",
            );
        }
        if let Some((_, handler)) = self.json.iter().find(|(p, _)| *p == req.uri().path()) {
            return match handler(req.uri().query().unwrap_or_default()) {
                Ok(body) => text(StatusCode::OK, body, "application/json"),
                Err((status, message)) => text(status, format!("{message}\n"), "text/plain"),
            };
        }
        match req.uri().path() {
            "/metrics" => {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &self.registry) {
                    Ok(()) => text(
                        StatusCode::OK,
                        body,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("{e}\n"),
                        "text/plain",
                    ),
                }
            }
            "/ready" if (self.ready)() => text(StatusCode::OK, "ready\n".into(), "text/plain"),
            "/ready" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready\n".into(),
                "text/plain",
            ),
            "/live" => text(StatusCode::OK, "live\n".into(), "text/plain"),
            _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_every_part_and_counts_each_once() {
        let readiness = Readiness::waiting_for(2);
        assert!(!readiness.is_ready());
        readiness.part_done();
        assert!(
            !readiness.clone().is_ready(),
            "one of two parts is not ready"
        );
        readiness.part_done();
        readiness.part_done();
        assert!(readiness.is_ready());
        let single = Readiness::new();
        assert!(!single.is_ready());
        single.set_ready();
        assert!(single.is_ready());
    }
}
