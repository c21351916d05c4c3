//! The tap server: `tap.Tap/Observe` on the control port (4190), over
//! mutual TLS with this proxy's certificate. A client must present a
//! certificate (the handshake fails without one) and be the tap
//! component's identity (`LINKERD2_PROXY_TAP_SVC_NAME`); anyone else is
//! refused with `PERMISSION_DENIED` naming who may tap. What one client can
//! make the proxy hold is bounded: a few concurrent taps, a limit on the
//! requests each takes, small requests and a bounded match.

use std::pin::Pin;
use std::sync::Arc;

use linkerd2_proxy_api::tap::tap_server::{Tap, TapServer};
use linkerd2_proxy_api::tap::{ObserveRequest, TapEvent};
use mesh_core::drain::Signal;
use mesh_core::tls::incoming::{PeerInfo, TlsIncoming};
use mesh_core::tls::{ALPN_H2, ClientAuth, Credentials, TlsError};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::Taps;
use super::matcher::Match;

/// How many taps may run at once on one proxy.
pub const MAX_TAPS: usize = 16;

/// The most requests one tap may take (the tap component asks for a
/// second's worth at a time).
pub const MAX_LIMIT: u32 = 10_000;

/// Connections the tap listener holds at once (handshaking or served):
/// only the tap component connects, a few at a time.
pub const MAX_CONNECTIONS: usize = 256;

/// The largest `ObserveRequest` accepted.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The `tap.Tap` service.
#[derive(Debug, Clone)]
pub struct TapService {
    taps: Taps,
    /// The only identity that may tap.
    authorized: String,
}

impl TapService {
    /// Serving `taps` to `authorized` alone.
    pub fn new(taps: Taps, authorized: String) -> Self {
        Self { taps, authorized }
    }

    fn admit(&self, client: Option<&str>) -> Result<(), Status> {
        if client == Some(self.authorized.as_str()) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "only {} may tap this proxy; this client is {}",
            self.authorized,
            client.unwrap_or("without an identity")
        )))
    }
}

type EventStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<TapEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Tap for TapService {
    type ObserveStream = EventStream;

    async fn observe(
        &self,
        request: Request<ObserveRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let client = request
            .extensions()
            .get::<PeerInfo>()
            .and_then(|p| p.identity.clone());
        self.admit(client.as_deref())?;
        let observe = request.into_inner();
        if observe.limit == 0 {
            return Err(Status::invalid_argument("limit: must be at least 1"));
        }
        let matcher = Match::from_api(observe.r#match.as_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if self.taps.count() >= MAX_TAPS {
            return Err(Status::resource_exhausted(format!(
                "this proxy already serves {MAX_TAPS} taps; try again when one ends"
            )));
        }
        let subscription = self.taps.subscribe(matcher, observe.limit.min(MAX_LIMIT));
        tracing::debug!(client = ?client, limit = observe.limit, "tap started");
        Ok(Response::new(Box::pin(subscription)))
    }
}

/// Serves tap to `authorized` on `listener`, over mutual TLS with
/// `credentials`, until `drain` signals.
pub fn serve(
    listener: TcpListener,
    credentials: &Arc<Credentials>,
    service: TapService,
    drain: Signal,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, TlsError> {
    let config = credentials.server_config(ClientAuth::Required, &[ALPN_H2])?;
    Ok(async move {
        let (conns_tx, conns_rx) = tokio::sync::mpsc::channel(MAX_TAPS);
        let accept_stop = drain.clone();
        let accept = TlsIncoming::accept_loop(
            listener,
            config,
            conns_tx,
            async move {
                accept_stop.wait().await;
            },
            MAX_CONNECTIONS,
        );
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(MAX_TAPS as u32))
            .add_service(TapServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
            .serve_with_incoming_shutdown(TlsIncoming::stream(conns_rx), async move {
                drain.wait().await;
            });
        let (_, served) = tokio::join!(accept, server);
        if let Err(e) = served {
            tracing::warn!("tap server: {e}");
        }
    })
}
