//! The applications behind the server proxy: an HTTP server (HTTP/1 and
//! h2c) that reports what it saw (and answers `/status/N`, `/delay/MS` and
//! `/bytes/N`), a unary and a streaming gRPC server, and a TCP greeter.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP application and what it saw.
#[derive(Debug, Default)]
pub struct App {
    pub name: String,
    pub hits: AtomicUsize,
    pub failing: AtomicBool,
    pub client_ids: Mutex<Vec<String>>,
    /// Requests being answered now, and the most there ever were at once.
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// The `Forwarded` headers of each request (empty when none).
    pub forwarded: Mutex<Vec<String>>,
}

impl App {
    /// Serves on `addr` (on the current runtime, so in its namespace).
    pub async fn serve(name: &str, addr: SocketAddr) -> Arc<App> {
        let app = Arc::new(App {
            name: name.to_owned(),
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the app");
        let served = app.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let app = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(app.respond(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        app
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn respond(&self, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let response = self.answer(req).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        response
    }

    async fn answer(&self, mut req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
        let client_id = req
            .headers()
            .get("l5d-client-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        self.client_ids.lock().expect("ids").push(client_id.clone());
        let forwarded: Vec<&str> = req
            .headers()
            .get_all(http::header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        self.forwarded
            .lock()
            .expect("forwarded")
            .push(forwarded.join(", "));
        let reply = |status: u16, body: String| {
            http::Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(body)))
                .expect("response")
        };
        let path = req.uri().path().to_owned();
        if req.headers().contains_key(http::header::UPGRADE) {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            return http::Response::builder()
                .status(101)
                .header(http::header::UPGRADE, "websocket")
                .header(http::header::CONNECTION, "Upgrade")
                .body(Full::new(Bytes::new()))
                .expect("101");
        }
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if let Some(code) = path.strip_prefix("/status/") {
            return reply(code.parse().unwrap_or(400), format!("{}\n", self.name));
        }
        if let Some(size) = path.strip_prefix("/bytes/") {
            // A body of that many bytes, up to 16 MiB (the benchmarks' large
            // responses).
            let size = size.parse().unwrap_or(0usize).min(16 << 20);
            return reply(200, "x".repeat(size));
        }
        if let Some(ms) = path.strip_prefix("/delay/") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return reply(500, format!("{} is failing\n", self.name));
        }
        reply(
            200,
            format!("{} client-id={client_id} body={}\n", self.name, body.len()),
        )
    }
}

/// A gRPC application: the Identity API, answering `Certify` with the
/// caller's token back as the leaf, or `PERMISSION_DENIED` for the token
/// `deny`.
#[derive(Debug, Clone, Copy)]
pub struct Grpc;

#[tonic::async_trait]
impl linkerd2_proxy_api::identity::identity_server::Identity for Grpc {
    async fn certify(
        &self,
        req: tonic::Request<linkerd2_proxy_api::identity::CertifyRequest>,
    ) -> Result<tonic::Response<linkerd2_proxy_api::identity::CertifyResponse>, tonic::Status> {
        let req = req.into_inner();
        if req.token == b"deny" {
            return Err(tonic::Status::permission_denied("denied"));
        }
        Ok(tonic::Response::new(
            linkerd2_proxy_api::identity::CertifyResponse {
                leaf_certificate: req.token,
                ..Default::default()
            },
        ))
    }
}

impl Grpc {
    pub async fn serve(addr: SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind gRPC");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    linkerd2_proxy_api::identity::identity_server::IdentityServer::new(Grpc),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
    }
}

/// A streaming gRPC application: the Destination API's `Get`, which
/// answers a `path` of `<n>` (microseconds) with an update every `n` µs
/// for as long as the caller listens, each labelled `due` with when it was
/// due (nanoseconds since the Unix epoch), so that the caller can time
/// each message from when it was meant to leave (open loop).
#[derive(Debug, Clone, Copy)]
pub struct GrpcStream;

/// The label of a [`GrpcStream`] update that says when it was due.
pub const DUE_LABEL: &str = "due";

#[tonic::async_trait]
impl linkerd2_proxy_api::destination::destination_server::Destination for GrpcStream {
    type GetStream = std::pin::Pin<
        Box<
            dyn tokio_stream::Stream<
                    Item = Result<linkerd2_proxy_api::destination::Update, tonic::Status>,
                > + Send,
        >,
    >;

    async fn get(
        &self,
        req: tonic::Request<linkerd2_proxy_api::destination::GetDestination>,
    ) -> Result<tonic::Response<Self::GetStream>, tonic::Status> {
        use linkerd2_proxy_api::destination::{Update, WeightedAddrSet, update};
        let every: u64 =
            req.get_ref().path.parse().map_err(|_| {
                tonic::Status::invalid_argument("path: microseconds between updates")
            })?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_micros(every.max(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let (start, epoch) = (tokio::time::Instant::now(), std::time::SystemTime::now());
            loop {
                let due = ticks.tick().await;
                let due = epoch + (due - start);
                let nanos = due
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                let message = Update {
                    update: Some(update::Update::Add(WeightedAddrSet {
                        addrs: Vec::new(),
                        metric_labels: [(DUE_LABEL.to_owned(), nanos.to_string())].into(),
                    })),
                };
                if tx.send(Ok(message)).await.is_err() {
                    break;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type GetProfileStream = std::pin::Pin<
        Box<
            dyn tokio_stream::Stream<
                    Item = Result<
                        linkerd2_proxy_api::destination::DestinationProfile,
                        tonic::Status,
                    >,
                > + Send,
        >,
    >;

    async fn get_profile(
        &self,
        _: tonic::Request<linkerd2_proxy_api::destination::GetDestination>,
    ) -> Result<tonic::Response<Self::GetProfileStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("only Get streams"))
    }
}

impl GrpcStream {
    pub async fn serve(addr: SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind streaming gRPC");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    linkerd2_proxy_api::destination::destination_server::DestinationServer::new(
                        GrpcStream,
                    ),
                )
                // Each message leaves at once (no waiting to coalesce
                // small writes).
                .serve_with_incoming(tokio_stream::StreamExt::map(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    |stream| {
                        if let Ok(stream) = &stream {
                            let _ = stream.set_nodelay(true);
                        }
                        stream
                    },
                )),
        );
    }
}

/// A TCP server that greets with `hello from <name>\n`, then echoes.
pub async fn greeter(name: &str, addr: SocketAddr) {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the greeter");
    let greeting = format!("hello from {name}\n");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let greeting = greeting.clone();
            // Each echo leaves at once (no waiting to coalesce small writes).
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = stream.write_all(greeting.as_bytes()).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}
