//! The `io.linkerd.proxy.destination.Destination` gRPC service: parses the
//! path, subscribes to the index and turns each change into messages.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use linkerd2_proxy_api::destination::destination_server::Destination;
use linkerd2_proxy_api::destination::{DestinationProfile, GetDestination, Update};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use crate::authority;
use crate::convert::{self, Sent};
use crate::index::{Index, LookupKey};

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

    fn key(
        &self,
        req: &GetDestination,
    ) -> Result<(LookupKey, std::sync::MutexGuard<'_, Index>), Status> {
        let target = authority::parse(&req.path, &self.domain)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut index = self
            .index
            .lock()
            .map_err(|_| Status::internal("the index is poisoned"))?;
        index.forget_unwatched();
        Ok((index.lookup_key(&target), index))
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
        let rx = {
            let (key, mut index) = self.key(&req)?;
            index.watch_endpoints(&key)
        };
        tracing::debug!(path = %req.path, "Get");
        let stream = WatchStream::new(rx)
            .scan(Sent::Nothing, |sent, resolution| {
                let (updates, next) = convert::updates(sent, &resolution);
                *sent = next;
                futures::future::ready(Some(futures::stream::iter(updates.into_iter().map(Ok))))
            })
            .flatten();
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_profile(
        &self,
        request: Request<GetDestination>,
    ) -> Result<Response<ProfileStream>, Status> {
        let req = request.into_inner();
        let rx = {
            let (key, mut index) = self.key(&req)?;
            index.watch_profile(&key)
        };
        tracing::debug!(path = %req.path, "GetProfile");
        Ok(Response::new(Box::pin(WatchStream::new(rx).map(Ok))))
    }
}
