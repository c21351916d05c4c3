//! podinfo's HTTP API, as far as clients of the demo use it.
//!
//! | route | answer |
//! |---|---|
//! | `GET /`, `GET /api/info` | podinfo's JSON: `hostname` (the pod name), `version`, `message`, `color`, … |
//! | `GET /version` | `{"version", "commit"}` |
//! | `GET /healthz`, `GET /readyz` | `{"status":"OK"}`, or 503 when disabled |
//! | `POST /readyz/enable`, `POST /readyz/disable` | flip readiness (as podinfo) |
//! | `POST /chaos/errors/{share}` | ours: answer that share (0–1) of requests with 500 from now on |
//! | `GET /status/{code}` | that status, `{"status": code}` |
//! | `GET /delay/{seconds}` | answers after that long, `{"delay": seconds}` |
//! | `GET /env` | the process environment, `["K=V", …]` |
//! | `GET /headers` | the request's headers |
//! | `POST /echo`, `POST /api/echo` | the request body |
//!
//! Every route but the probes goes through the injected [`Faults`], and so
//! do gRPC calls on the same port ([`crate::grpc`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full};
use serde_json::{Value, json};

use crate::args::Settings;
use crate::faults::Faults;

/// What every request shares.
#[derive(Debug)]
pub struct App {
    settings: Settings,
    hostname: String,
    faults: Faults,
    ready: AtomicBool,
    healthy: AtomicBool,
}

impl App {
    /// The app for these settings, answering as `hostname`.
    pub fn new(settings: Settings, hostname: String) -> Arc<Self> {
        Arc::new(Self {
            faults: Faults::new(settings.error_rate, settings.delay),
            ready: AtomicBool::new(!settings.unready),
            healthy: AtomicBool::new(!settings.unhealthy),
            hostname,
            settings,
        })
    }

    /// Marks the app not ready (on shutdown, so endpoints drop it).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Answers one request or gRPC call (see [`crate::grpc`]).
    pub async fn handle_call<B>(
        self: Arc<Self>,
        request: Request<B>,
    ) -> Response<Either<Full<Bytes>, crate::grpc::UnaryBody>>
    where
        B: hyper::body::Body,
        B::Error: std::fmt::Display,
    {
        if !crate::grpc::is_grpc(&request) {
            return self.handle(request).await.map(Either::Left);
        }
        let delay = self.faults.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let response = if self.faults.next_fails() {
            crate::grpc::failed(14, "injected by MESH_DEMO_ERROR_RATE")
        } else {
            crate::grpc::answer(request.uri().path())
        };
        response.map(Either::Right)
    }

    /// Answers one request.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body,
        B::Error: std::fmt::Display,
    {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        match (&method, path.as_str()) {
            (&Method::GET | &Method::HEAD, "/healthz") => self.probe(&self.healthy),
            (&Method::GET | &Method::HEAD, "/readyz") => self.probe(&self.ready),
            (&Method::POST, "/readyz/enable") => {
                self.set_ready(true);
                accepted()
            }
            (&Method::POST, "/readyz/disable") => {
                self.set_ready(false);
                accepted()
            }
            (&Method::POST, "/healthz/enable") => {
                self.healthy.store(true, Ordering::SeqCst);
                accepted()
            }
            (&Method::POST, "/healthz/disable") => {
                self.healthy.store(false, Ordering::SeqCst);
                accepted()
            }
            (&Method::POST, chaos) if chaos.starts_with("/chaos/errors/") => {
                let share = chaos.trim_start_matches("/chaos/errors/");
                match share.parse::<f64>() {
                    Ok(rate) if (0.0..=1.0).contains(&rate) => {
                        self.faults.set_error_rate(rate);
                        reply(StatusCode::ACCEPTED, json!({"errorRate": rate}))
                    }
                    _ => reply(
                        StatusCode::BAD_REQUEST,
                        json!({"code": 400, "message": format!("{share:?} is not a share from 0 to 1")}),
                    ),
                }
            }
            _ => {
                let delay = self.faults.delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if self.faults.next_fails() {
                    return reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"code": 500, "message": "injected by MESH_DEMO_ERROR_RATE"}),
                    );
                }
                self.route(&method, &path, request).await
            }
        }
    }

    async fn route<B>(
        &self,
        method: &Method,
        path: &str,
        request: Request<B>,
    ) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body,
        B::Error: std::fmt::Display,
    {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET | &Method::HEAD, [""] | ["api", "info"]) => {
                reply(StatusCode::OK, self.info())
            }
            (&Method::GET, ["version"]) => reply(
                StatusCode::OK,
                json!({"version": env!("CARGO_PKG_VERSION"), "commit": "mesh-podinfo"}),
            ),
            (_, ["status", code]) => match code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(status) => reply(status, json!({"status": status.as_u16()})),
                None => reply(
                    StatusCode::BAD_REQUEST,
                    json!({"code": 400, "message": format!("{code:?} is not an HTTP status code")}),
                ),
            },
            (_, ["delay", seconds]) => match seconds.parse::<u64>() {
                Ok(seconds) => {
                    tokio::time::sleep(Duration::from_secs(seconds)).await;
                    reply(StatusCode::OK, json!({"delay": seconds}))
                }
                Err(_) => reply(
                    StatusCode::BAD_REQUEST,
                    json!({"code": 400, "message": format!("{seconds:?} is not a whole number of seconds")}),
                ),
            },
            (&Method::GET, ["env"] | ["api", "env"]) => {
                let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                reply(StatusCode::OK, json!(env))
            }
            (&Method::GET, ["headers"]) => {
                let mut headers = serde_json::Map::new();
                for (name, value) in request.headers() {
                    let entry = headers
                        .entry(name.as_str().to_string())
                        .or_insert_with(|| json!([]));
                    if let Value::Array(values) = entry {
                        values.push(json!(String::from_utf8_lossy(value.as_bytes())));
                    }
                }
                reply(StatusCode::OK, Value::Object(headers))
            }
            (&Method::POST | &Method::PUT, ["echo"] | ["api", "echo"]) => {
                match request.into_body().collect().await {
                    Ok(body) => Response::builder()
                        .status(StatusCode::ACCEPTED)
                        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                        .body(Full::new(body.to_bytes()))
                        .unwrap_or_default(),
                    Err(e) => reply(
                        StatusCode::BAD_REQUEST,
                        json!({"code": 400, "message": format!("reading the body: {e}")}),
                    ),
                }
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                json!({"code": 404, "message": format!("no route for {method} {path}")}),
            ),
        }
    }

    fn info(&self) -> Value {
        json!({
            "hostname": self.hostname,
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "",
            "color": self.settings.color,
            "logo": "",
            "message": self.settings.message,
            "goos": std::env::consts::OS,
            "goarch": std::env::consts::ARCH,
            "runtime": "rust",
            "num_goroutine": "0",
            "num_cpu": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string(),
        })
    }

    fn probe(&self, flag: &AtomicBool) -> Response<Full<Bytes>> {
        if flag.load(Ordering::SeqCst) {
            reply(StatusCode::OK, json!({"status": "OK"}))
        } else {
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "Unavailable"}),
            )
        }
    }
}

fn accepted() -> Response<Full<Bytes>> {
    reply(StatusCode::ACCEPTED, json!({"status": "Accepted"}))
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut text = body.to_string();
    text.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_default()
}
