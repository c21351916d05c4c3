//! The `io.linkerd.proxy.destination.Destination` gRPC service: parses the
//! path, subscribes to the index and turns each change into messages.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use linkerd2_proxy_api::destination::destination_server::Destination;
use linkerd2_proxy_api::destination::{DestinationProfile, GetDestination, Update};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use crate::convert::{self, Sent};
use crate::index::model::Key;
use crate::index::{Index, LookupKey, ServiceLabels};
use crate::{authority, gateway};

/// The Destination service over a shared index.
#[derive(Debug, Clone)]
pub struct DestinationService {
    index: Arc<Mutex<Index>>,
    domain: String,
}

impl DestinationService {
    /// Serves lookups from `index`.
    pub fn new(index: Arc<Mutex<Index>>) -> Self {
        let domain = index
            .lock()
            .map(|i| i.config().cluster_domain.clone())
            .unwrap_or_default();
        Self { index, domain }
    }

    /// The index key `req` asks about, the index, and when a gateway asks,
    /// its exports and the labels watch of the Service it asks about (the
    /// lookup refused when that Service is not exported).
    fn key(
        &self,
        req: &GetDestination,
    ) -> Result<(LookupKey, std::sync::MutexGuard<'_, Index>, Option<Guard>), Status> {
        let target = authority::parse(&req.path, &self.domain)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut index = self
            .index
            .lock()
            .map_err(|_| Status::internal("the index is poisoned"))?;
        index.forget_unwatched();
        let key = index.lookup_key(&target);
        let exports =
            gateway::Exports::from_context(&req.context_token, &index.config().control_namespace)?;
        let guard = match exports {
            None => None,
            Some(exports) => {
                let service = exports.service(&key)?.clone();
                let labels = index.watch_service_labels(&service);
                exports.check(&service, labels.borrow().as_ref())?;
                Some(Guard {
                    exports,
                    service,
                    labels,
                })
            }
        };
        Ok((key, index, guard))
    }
}

/// What keeps a gateway's answer stream to an exported Service.
struct Guard {
    exports: gateway::Exports,
    service: Key,
    labels: tokio::sync::watch::Receiver<Option<ServiceLabels>>,
}

impl Guard {
    fn wrap<T: Send + 'static>(
        guard: Option<Self>,
        answers: impl Stream<Item = Result<T, Status>> + Send + 'static,
    ) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>> {
        match guard {
            None => Box::pin(answers),
            Some(g) => g.exports.guard(g.service, answers, g.labels),
        }
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<Update, Status>> + Send>>;
type ProfileStream = Pin<Box<dyn Stream<Item = Result<DestinationProfile, Status>> + Send>>;

#[tonic::async_trait]
impl Destination for DestinationService {
    type GetStream = UpdateStream;
    type GetProfileStream = ProfileStream;

    async fn get(
        &self,
        request: Request<GetDestination>,
    ) -> Result<Response<UpdateStream>, Status> {
        let req = request.into_inner();
        let (rx, guard) = {
            let (key, mut index, guard) = self.key(&req)?;
            (index.watch_endpoints(&key), guard)
        };
        tracing::debug!(path = %req.path, "Get");
        let stream = WatchStream::new(rx)
            .scan(Sent::Nothing, |sent, resolution| {
                let (updates, next) = convert::updates(sent, &resolution);
                *sent = next;
                futures::future::ready(Some(futures::stream::iter(updates.into_iter().map(Ok))))
            })
            .flatten();
        Ok(Response::new(Guard::wrap(guard, stream)))
    }

    async fn get_profile(
        &self,
        request: Request<GetDestination>,
    ) -> Result<Response<ProfileStream>, Status> {
        let req = request.into_inner();
        let (rx, guard) = {
            let (key, mut index, guard) = self.key(&req)?;
            (index.watch_profile(&key), guard)
        };
        tracing::debug!(path = %req.path, "GetProfile");
        Ok(Response::new(Guard::wrap(
            guard,
            WatchStream::new(rx).map(Ok),
        )))
    }
}
