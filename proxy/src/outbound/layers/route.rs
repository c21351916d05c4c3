//! The route layer: which route of the destination's profile a request
//! takes (first match wins), and the labels every metric of the request
//! carries (`direction`, `authority`, `route`).

use std::sync::Arc;

use super::{HttpRequest, Layer, Next, ResponseFuture, Routed};
use crate::outbound::Logical;

/// Routes requests for one destination.
#[derive(Debug, Clone)]
pub struct Route {
    logical: Arc<Logical>,
}

impl Route {
    /// Requests for `logical`.
    pub fn new(logical: Arc<Logical>) -> Self {
        Self { logical }
    }
}

impl Layer for Route {
    fn handle<N: Next>(&self, mut req: HttpRequest, next: N) -> ResponseFuture {
        let routed = route(&self.logical, &req);
        req.extensions_mut().insert(Arc::new(routed));
        let mut next = next;
        next.call(req)
    }
}

/// The route `req` takes and its labels.
pub fn route(logical: &Arc<Logical>, req: &HttpRequest) -> Routed {
    let profile = logical.current();
    let route = profile
        .as_deref()
        .and_then(|p| p.route(&req.into()))
        .cloned();
    let authority = match profile
        .as_deref()
        .and_then(|p| p.fully_qualified_name.as_ref())
    {
        Some(name) => format!("{name}:{}", logical.port()),
        None => request_authority(req).unwrap_or_else(|| logical.addr.to_string()),
    };
    let mut labels = vec![
        ("direction", "outbound".to_owned()),
        ("authority", authority),
    ];
    if let Some(name) = route.as_ref().and_then(|r| r.name.clone()) {
        labels.push(("route", name));
    }
    Routed {
        logical: logical.clone(),
        profile,
        route,
        labels,
    }
}

fn request_authority<B>(req: &http::Request<B>) -> Option<String> {
    req.uri().authority().map(|a| a.to_string()).or_else(|| {
        req.headers()
            .get(http::header::HOST)?
            .to_str()
            .ok()
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::outbound::layers::fixtures::{self, get, logical, split};

    const ADDR: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 10)),
        80,
    );

    #[test]
    fn a_request_takes_its_route_and_is_labelled_with_the_services_name() {
        let web = logical(
            ADDR,
            Some(split(&[], fixtures::route(false, None), Default::default())),
        );
        let routed = route(&web, &get());
        assert!(routed.route.is_some(), "the catch-all route matched");
        assert_eq!(
            routed.labels,
            [
                ("direction", "outbound".to_owned()),
                ("authority", "web.test.svc.cluster.local:80".to_owned()),
                ("route", "route".to_owned()),
            ]
        );
    }

    #[test]
    fn without_a_profile_the_request_names_its_authority() {
        let unknown = logical(ADDR, None);
        let routed = route(&unknown, &get());
        assert!(routed.route.is_none());
        assert_eq!(
            routed.labels,
            [
                ("direction", "outbound".to_owned()),
                ("authority", "web.test.svc.cluster.local".to_owned()),
            ]
        );
    }
}
