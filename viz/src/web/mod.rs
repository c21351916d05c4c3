//! viz's dashboard (`mesh-controller web`): a page and its JSON API, served
//! over HTTP on Linkerd's port 8084 inside the cluster and reached by users
//! through `mesh viz dashboard`'s port-forward.
//!
//! - [`assets`]: the page, its script and style, and uPlot, embedded in
//!   the binary.
//! - [`api`]: what the page shows, as JSON: golden metrics per namespace
//!   and workload, the Links with their gateways and mirrored Services,
//!   and every TrafficSplit with its failover phase and weights over time.
//!
//! Defences: only `GET`/`HEAD`; the `Host` must match `--enforced-host`
//! (Linkerd's default: localhost and the in-cluster name), so a web page
//! that rebinds its DNS name to 127.0.0.1 cannot read the dashboard through
//! a user's port-forward; a Content-Security-Policy without inline script,
//! so a name a cluster or a metrics page chose cannot run as script; every
//! query parameter checked before it reaches Kubernetes or PromQL.

pub mod api;
pub mod assets;
pub mod cache;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::metrics::prometheus::Prometheus;

/// Linkerd's default `enforced-host` (the names a port-forward and the
/// cluster use, with any port), and IPv4 literals, which the API server's
/// service proxy sends (`mesh viz dashboard`). A DNS-rebinding page always
/// sends a name, never an address.
pub const DEFAULT_ENFORCED_HOST: &str = r"^(localhost|127\.0\.0\.1|web\.linkerd-viz\.svc\.cluster\.local|web\.linkerd-viz\.svc|\[::1\]|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(:\d+)?$";

/// What every page and answer is sent with.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The dashboard's state: whom it asks.
pub struct Dashboard {
    /// The Kubernetes API (its own ServiceAccount: read-only).
    pub client: kube::Client,
    /// viz's Prometheus.
    pub prometheus: Prometheus,
    /// The `Host` values it answers.
    pub enforced_host: regex::Regex,
    /// API answers being worked out at once (each asks Kubernetes and
    /// Prometheus several questions); beyond [`MAX_CONCURRENT_ANSWERS`]
    /// a request is told to come back.
    pub answering: tokio::sync::Semaphore,
    /// The last few seconds' answers, shared by every tab.
    pub answers: cache::Answers,
}

/// How many API answers are worked out at once.
pub const MAX_CONCURRENT_ANSWERS: usize = 16;

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("enforced_host", &self.enforced_host.as_str())
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard that reads Kubernetes with `client` and asks
    /// `prometheus`, answering the `Host` values `enforced_host` matches.
    pub fn new(client: kube::Client, prometheus: Prometheus, enforced_host: regex::Regex) -> Self {
        Self {
            client,
            prometheus,
            enforced_host,
            answering: tokio::sync::Semaphore::new(MAX_CONCURRENT_ANSWERS),
            answers: cache::Answers::default(),
        }
    }

    /// The answer to one request.
    pub async fn respond<B>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "the dashboard only answers GET",
            );
        }
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .unwrap_or_default();
        if !self.enforced_host.is_match(host) {
            return text(
                StatusCode::FORBIDDEN,
                &format!(
                    "host {host:?} is not allowed: the dashboard answers {:?} (mesh-controller web --enforced-host); \
                     reach it with `mesh viz dashboard`",
                    self.enforced_host.as_str()
                ),
            );
        }
        let path = request.uri().path();
        if let Some(asset) = assets::get(path) {
            return respond(
                StatusCode::OK,
                asset.content_type,
                Bytes::from_static(asset.body),
            );
        }
        let Some(endpoint) = path.strip_prefix("/api/") else {
            return text(StatusCode::NOT_FOUND, "no such page");
        };
        let query = api::Params::parse(request.uri().query().unwrap_or_default());
        let slot = self
            .answers
            .slot(&format!("{endpoint}?{}", query.canonical()));
        if let Some((status, body)) = slot.get() {
            return respond(*status, "application/json", body.clone());
        }
        let Ok(_permit) = self.answering.try_acquire() else {
            let mut busy = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the dashboard is answering as many requests as it may; try again",
            );
            busy.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            return busy;
        };
        let (status, body) = slot
            .get_or_init(|| async {
                match api::answer(self, endpoint, &query).await {
                    Ok(json) => (StatusCode::OK, Bytes::from(json.to_string())),
                    Err(api::Failure::BadRequest(why)) => {
                        (StatusCode::BAD_REQUEST, error_body(&why))
                    }
                    Err(api::Failure::NotFound) => {
                        (StatusCode::NOT_FOUND, error_body("no such endpoint"))
                    }
                    Err(api::Failure::Upstream(e)) => {
                        (StatusCode::BAD_GATEWAY, error_body(&format!("{e:#}")))
                    }
                }
            })
            .await;
        respond(*status, "application/json", body.clone())
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(format!("{message}\n")),
    )
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(status, "application/json", error_body(message))
}

/// `{"error": message}`.
fn error_body(message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": message }).to_string())
}

/// How long a connection may take to send a request's head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the dashboard on `listener` until `signal`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dashboard: Arc<Dashboard>,
    signal: mesh_core::drain::Signal,
) {
    mesh_core::drain::accept_until(listener, signal, move |tcp| {
        let dashboard = dashboard.clone();
        async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let dashboard = dashboard.clone();
                async move { Ok::<_, Infallible>(dashboard.respond(request).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dashboard whose Kubernetes API and Prometheus are nowhere: these
    /// tests are about what is refused before either is asked.
    fn dashboard() -> Dashboard {
        dashboard_asking("http://127.0.0.1:9")
    }

    /// A dashboard asking the Prometheus at `url` (its Kubernetes API is
    /// nowhere).
    fn dashboard_asking(url: &str) -> Dashboard {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        Dashboard::new(
            kube::Client::try_from(config).expect("client"),
            Prometheus::direct(url).expect("prometheus"),
            regex::Regex::new(DEFAULT_ENFORCED_HOST).expect("regex"),
        )
    }

    /// How many range queries the Prometheus at `url` has answered, by
    /// its own count.
    async fn range_queries_answered(url: &str) -> f64 {
        let page = mesh_core::http_get::get(
            url.trim_start_matches("http://"),
            "/metrics",
            std::time::Duration::from_secs(5),
            16 << 20,
        )
        .await
        .expect("Prometheus's own metrics");
        mesh_api::metrics_text::samples(&page, "prometheus_http_requests_total")
            .filter(|(labels, _)| {
                mesh_api::metrics_text::label(labels, "handler") == Some("/api/v1/query_range")
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Tabs asking the same question within a few seconds share one
    /// answer: a real Prometheus is asked once for five requests, and
    /// again once the answer is no longer fresh.
    #[tokio::test]
    async fn tabs_asking_the_same_question_share_one_answer() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a port")
            .local_addr()
            .expect("an address")
            .port();
        let server = mesh_clusters::prometheus::Server::start(
            "global:\n  scrape_interval: 1h\n",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            None,
        )
        .unwrap_or_else(|e| panic!("this test needs a Prometheus server: {e:#}"));
        server.wait_ready().await.expect("Prometheus ready");
        let dashboard = dashboard_asking(&server.url);
        let path = "/api/trafficsplit?namespace=shop&name=web";
        let before = range_queries_answered(&server.url).await;
        let first = dashboard.respond(get(path, "localhost")).await;
        assert_eq!(first.status(), StatusCode::OK);
        let one_answer = range_queries_answered(&server.url).await - before;
        assert!(one_answer > 0.0, "the first request asked Prometheus");
        for _ in 0..4 {
            let again = dashboard.respond(get(path, "localhost")).await;
            assert_eq!(again.status(), StatusCode::OK);
        }
        let asked = range_queries_answered(&server.url).await - before;
        assert_eq!(asked, one_answer, "five requests, one answer's queries");
        tokio::time::sleep(cache::FRESH_FOR).await;
        dashboard.respond(get(path, "localhost")).await;
        let asked = range_queries_answered(&server.url).await - before;
        assert_eq!(asked, 2.0 * one_answer, "a stale answer is asked again");
    }

    fn get(path: &str, host: &str) -> Request<()> {
        Request::get(path)
            .header(header::HOST, host)
            .body(())
            .expect("request")
    }

    /// Attack: a web page whose name was rebound to 127.0.0.1 reads the
    /// dashboard through the user's port-forward; its requests carry its
    /// own name as `Host` and are refused.
    #[tokio::test]
    async fn a_rebound_host_is_refused() {
        let dashboard = dashboard();
        for host in [
            "evil.example:50750",
            "localhost.evil.example",
            "127.0.0.1.nip.io:50750",
            "",
        ] {
            let response = dashboard.respond(get("/", host)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "host {host:?}");
        }
        for host in [
            "localhost:50750",
            "127.0.0.1:50750",
            "[::1]:50750",
            "web.linkerd-viz.svc.cluster.local:8084",
            "10.244.1.7:8084",
        ] {
            let response = dashboard.respond(get("/", host)).await;
            assert_eq!(response.status(), StatusCode::OK, "host {host:?}");
        }
    }

    #[tokio::test]
    async fn pages_forbid_inline_script_and_framing() {
        let response = dashboard().respond(get("/", "localhost:50750")).await;
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .expect("type")
                .starts_with("text/html")
        );
    }

    #[tokio::test]
    async fn only_reads_are_answered() {
        let request = Request::post("/api/namespaces")
            .header(header::HOST, "localhost")
            .body(())
            .expect("request");
        let response = dashboard().respond(request).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn a_bad_parameter_is_named_and_nothing_is_asked() {
        let dashboard = dashboard();
        let response = dashboard
            .respond(get("/api/workloads?namespace=a%22%7D", "localhost"))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("parameter namespace="), "{body}");
        for (path, named) in [
            (
                "/api/routes?namespace=shop&kind=secret&name=web",
                "parameter kind=",
            ),
            (
                "/api/routes?namespace=shop&kind=deployment&name=..%2Fx",
                "parameter name=",
            ),
            (
                "/api/httproutes?namespace=shop%22%7Dor%7B",
                "parameter namespace=",
            ),
            (
                "/api/httproutes?namespace=shop&window=2h",
                "parameter window=",
            ),
        ] {
            let response = dashboard.respond(get(path, "localhost")).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains(named), "{path}: {body}");
        }
        let missing = dashboard.respond(get("/api/nothing", "localhost")).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    /// Attack: many slow API requests at once (each costs the cluster
    /// several questions); past the bound they are turned away at once.
    #[tokio::test]
    async fn answers_beyond_the_bound_are_turned_away() {
        let dashboard = dashboard();
        let _all = dashboard
            .answering
            .try_acquire_many(MAX_CONCURRENT_ANSWERS as u32)
            .expect("permits");
        let response = dashboard.respond(get("/api/namespaces", "localhost")).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let page = dashboard.respond(get("/", "localhost")).await;
        assert_eq!(
            page.status(),
            StatusCode::OK,
            "the page itself is still served"
        );
    }

    #[test]
    fn every_file_the_page_names_is_embedded() {
        let page = String::from_utf8_lossy(assets::get("/").expect("page").body).into_owned();
        for name in [
            "vendor/uplot/uPlot.min.css",
            "style.css",
            "vendor/uplot/uPlot.iife.min.js",
            "vendor/cytoscape/cytoscape.min.js",
            "app.js",
        ] {
            assert!(
                page.contains(&format!("\"{name}\"")),
                "the page does not name {name}"
            );
            assert!(
                assets::get(&format!("/{name}")).is_some(),
                "{name} is not embedded"
            );
        }
    }
}
