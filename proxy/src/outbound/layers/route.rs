//! The route layer: which route of the destination's profile a request
//! takes (first match wins), the labels every metric of the request
//! carries (`direction`, `authority`, `route`), and the route's filters
//! (HTTPRoute header modifiers on the request and the response, a redirect
//! or a failure answered here).

use std::sync::Arc;

use super::{HttpRequest, HttpResponse, Layer, Next, ResponseFuture, Routed};
use crate::discover::profile::{HeaderModifier, PathRewrite, Redirect, RouteFilter};
use crate::http::{error_response, grpc_error_response};
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
        let mut response_headers = Vec::new();
        if let Some(route) = routed.route.as_ref() {
            for filter in &route.filters {
                match filter {
                    RouteFilter::RequestHeaders(modifier) => modifier.apply(req.headers_mut()),
                    RouteFilter::ResponseHeaders(modifier) => {
                        response_headers.push(modifier.clone());
                    }
                    RouteFilter::Redirect(redirect) => {
                        let response = redirect_response(redirect, route, &req);
                        return Box::pin(async move { Ok(response) });
                    }
                    RouteFilter::Fail(status, message) => {
                        let response = error_response(*status, message);
                        return Box::pin(async move { Ok(response) });
                    }
                    RouteFilter::GrpcFail(code, message) => {
                        let response = grpc_error_response(*code, message);
                        return Box::pin(async move { Ok(response) });
                    }
                }
            }
        }
        req.extensions_mut().insert(Arc::new(routed));
        let mut next = next;
        with_response_headers(next.call(req), response_headers)
    }
}

/// `response` with `modifiers` applied to its headers, in order.
pub(super) fn with_response_headers(
    response: ResponseFuture,
    modifiers: Vec<HeaderModifier>,
) -> ResponseFuture {
    if modifiers.is_empty() {
        return response;
    }
    Box::pin(async move {
        let Ok(mut response) = response.await;
        for modifier in &modifiers {
            modifier.apply(response.headers_mut());
        }
        Ok(response)
    })
}

/// The redirect `redirect` answers for `req` on `route`: the request's
/// scheme, host, port and path except where the filter replaces them (a
/// port is left out when it is the scheme's default).
fn redirect_response(
    redirect: &Redirect,
    route: &crate::discover::profile::Route,
    req: &HttpRequest,
) -> HttpResponse {
    let (host, port) = match request_authority(req) {
        Some(authority) => match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => {
                (host.to_owned(), port.parse::<u16>().ok())
            }
            _ => (authority, None),
        },
        None => (String::new(), None),
    };
    let scheme = redirect
        .scheme
        .clone()
        .or_else(|| req.uri().scheme_str().map(str::to_owned))
        .unwrap_or_else(|| "http".to_owned());
    let host = redirect.host.clone().unwrap_or(host);
    // A new scheme or host drops the request's port.
    let port = redirect.port.or_else(|| {
        (redirect.scheme.is_none() && redirect.host.is_none())
            .then_some(port)
            .flatten()
    });
    let port = port
        .filter(|p| !matches!((scheme.as_str(), p), ("http", 80) | ("https", 443)))
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let path = req.uri().path();
    let path = match &redirect.path {
        None => path.to_owned(),
        Some(PathRewrite::Full(full)) => full.clone(),
        Some(PathRewrite::Prefix(replacement)) => match route.matched_prefix(path) {
            Some(prefix) => {
                let rest = &path[prefix.len()..];
                format!("{}{rest}", replacement.trim_end_matches('/'))
            }
            None => path.to_owned(),
        },
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let location = format!("{scheme}://{host}{port}{path}{query}");
    let mut response = HttpResponse::new(crate::endpoint::full(bytes::Bytes::new()));
    *response.status_mut() = redirect.status;
    if let Ok(location) = http::HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    response
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
    use crate::discover::profile::RequestMatch;
    use crate::outbound::layers::Layer;
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

    /// An HTTPRoute's filters: the request's headers are modified before it
    /// goes on, the response's on the way back; a redirect is answered
    /// here, keeping what it does not replace.
    #[tokio::test]
    async fn a_routes_filters_modify_headers_or_answer_a_redirect() {
        use crate::discover::profile::{HeaderModifier, PathRewrite, Redirect, RouteFilter};
        use crate::route_match::{PathMatch, RouteMatch};
        let header = |name: &str, value: &str| {
            (
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                http::HeaderValue::from_str(value).expect("value"),
            )
        };
        let mut headers_route = fixtures::route(false, None);
        headers_route.filters = vec![
            RouteFilter::RequestHeaders(HeaderModifier {
                set: vec![header("x-canary", "1")],
                remove: vec![http::HeaderName::from_static("x-drop")],
                ..HeaderModifier::default()
            }),
            RouteFilter::ResponseHeaders(HeaderModifier {
                add: vec![header("x-served-by", "route")],
                ..HeaderModifier::default()
            }),
        ];
        let web = logical(ADDR, Some(split(&[], headers_route, Default::default())));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let inner = {
            let seen = seen.clone();
            fixtures::scripted(move |req| {
                *seen.lock().expect("seen") = Some(req.headers().clone());
                Box::pin(async { Ok(fixtures::status(200)) })
            })
        };
        let mut req = get();
        req.headers_mut()
            .insert("x-drop", http::HeaderValue::from_static("secret"));
        let Ok(response) = Route::new(web).handle(req, inner).await;
        let seen = seen.lock().expect("seen").clone().expect("forwarded");
        assert_eq!(seen.get("x-canary").map(|v| v.as_bytes()), Some(&b"1"[..]));
        assert!(seen.get("x-drop").is_none());
        assert_eq!(
            response.headers().get("x-served-by").map(|v| v.as_bytes()),
            Some(&b"route"[..])
        );

        let mut redirect_route = fixtures::route(false, None);
        redirect_route.condition = RequestMatch::Any(vec![RequestMatch::Http(RouteMatch::path(
            PathMatch::Prefix("/old".into()),
            None,
        ))]);
        redirect_route.filters = vec![RouteFilter::Redirect(Redirect {
            scheme: Some("https".into()),
            host: None,
            path: Some(PathRewrite::Prefix("/new".into())),
            port: None,
            status: http::StatusCode::MOVED_PERMANENTLY,
        })];
        let web = logical(ADDR, Some(split(&[], redirect_route, Default::default())));
        let req = http::Request::get("http://web.test.svc.cluster.local:8080/old/page?x=1")
            .body(crate::endpoint::empty())
            .expect("request");
        let never = fixtures::scripted(|_| panic!("a redirect is answered by the proxy"));
        let Ok(response) = Route::new(web).handle(req, never).await;
        assert_eq!(response.status(), http::StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            response
                .headers()
                .get(http::header::LOCATION)
                .map(|v| v.as_bytes()),
            Some(&b"https://web.test.svc.cluster.local/new/page?x=1"[..]),
            "a new scheme drops the request's port"
        );
    }
}
