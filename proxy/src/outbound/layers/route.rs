//! The route layer: which route of the destination's profile a request
//! takes (first match wins), the labels every metric of the request
//! carries (`direction`, `authority`, `route`), and the route's filters
//! (HTTPRoute header modifiers on the request and the response, a redirect
//! or a failure answered here).
//!
//! A decision is kept by the destination ([`Decisions`], in its
//! `Logical`, shared by every connection to it) for the requests like it:
//! the same route of the same profile and, when the profile does not name
//! the Service, the same authority. With it goes what its requests are
//! counted under ([`super::counts`]), so a request like an earlier one does
//! no label work. The authority is the client's to choose, so the
//! decisions kept are bounded ([`MAX_KEPT`]: a new one past that starts
//! the set afresh, so ever new authorities cannot keep common requests
//! out); a new profile forgets them.

use std::sync::Arc;

use super::{Decision, HttpRequest, HttpResponse, Layer, Next, ResponseFuture, Routed};
use crate::cache::{KeptUnder, WhenFull};
use crate::discover::profile::{self, HeaderModifier, PathRewrite, Profile, Redirect, RouteFilter};
use crate::http::{error_response, grpc_error_response};
use crate::outbound::Logical;

/// How many routing decisions one destination keeps.
pub const MAX_KEPT: usize = 16;

/// Routes requests for one destination.
#[derive(Debug, Clone)]
pub struct Route {
    logical: Arc<Logical>,
}

/// A destination's kept decisions, under the profile they were made with.
#[derive(Debug)]
pub struct Decisions(KeptUnder<Option<Arc<Profile>>, DecisionKey, Arc<Decision>>);

impl Default for Decisions {
    fn default() -> Self {
        Self(KeptUnder::new(MAX_KEPT, WhenFull::StartAfresh))
    }
}

/// What a kept decision is known by: the address of its route in the
/// profile it was made under, and the request's authority when that named
/// the destination.
#[derive(Debug)]
struct DecisionKey {
    route: Option<usize>,
    authority: Option<String>,
}

/// Whether two lookups of a destination's profile gave the same one.
fn same_profile(a: &Option<Arc<Profile>>, b: &Option<Arc<Profile>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl Route {
    /// Requests for `logical`.
    pub fn new(logical: Arc<Logical>) -> Self {
        Self { logical }
    }

    /// `req`'s decision: one kept for a request like it, or a new one.
    pub fn routed(&self, req: &HttpRequest) -> Arc<Routed> {
        let profile = self.logical.current();
        let route = profile.as_deref().and_then(|p| p.route(&req.into()));
        let named = profile
            .as_deref()
            .is_some_and(|p| p.fully_qualified_name.is_some());
        let route_address = route.map(|r| std::ptr::from_ref(r).addr());
        let authority = (!named).then(|| request_authority_str(req)).flatten();
        let decision = self.logical.decisions.0.get_or_insert_with(
            &profile,
            same_profile,
            |key| key.route == route_address && key.authority.as_deref() == authority,
            || {
                let key = DecisionKey {
                    route: route_address,
                    authority: authority.map(str::to_owned),
                };
                let decision = decide(&self.logical, profile.clone(), route.cloned(), req);
                (key, Arc::new(decision))
            },
        );
        Arc::new(Routed {
            logical: self.logical.clone(),
            decision,
        })
    }

    /// How many decisions its destination keeps now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.logical.decisions.0.len()
    }
}

impl Layer for Route {
    fn handle<N: Next>(&self, mut req: HttpRequest, next: N) -> ResponseFuture {
        let routed = self.routed(&req);
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
        req.extensions_mut().insert(routed);
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

/// The decision for `req`, which takes `route` of `profile`: the route
/// and the labels every metric of the request carries.
fn decide(
    logical: &Logical,
    profile: Option<Arc<Profile>>,
    route: Option<profile::Route>,
    req: &HttpRequest,
) -> Decision {
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
    Decision {
        profile,
        route,
        labels,
        counts: Default::default(),
    }
}

fn request_authority<B>(req: &http::Request<B>) -> Option<String> {
    request_authority_str(req).map(str::to_owned)
}

/// The request's authority, else its `Host`.
fn request_authority_str<B>(req: &http::Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::discover::profile::{RequestMatch, RetryBudget};
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
        let routed = Route::new(web).routed(&get());
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
        let routed = Route::new(unknown).routed(&get());
        assert!(routed.route.is_none());
        assert_eq!(
            routed.labels,
            [
                ("direction", "outbound".to_owned()),
                ("authority", "web.test.svc.cluster.local".to_owned()),
            ]
        );
    }

    fn to(authority: &str) -> HttpRequest {
        http::Request::get(format!("http://{authority}/"))
            .body(crate::endpoint::full(bytes::Bytes::new()))
            .expect("request")
    }

    #[test]
    fn a_decision_is_kept_for_the_requests_like_it_and_no_other() {
        let routes = Route::new(logical(ADDR, None));
        let first = routes.routed(&to("web:80"));
        assert!(Arc::ptr_eq(
            &first.decision,
            &routes.routed(&to("web:80")).decision
        ));
        let another_connection = Route::new(routes.logical.clone());
        assert!(Arc::ptr_eq(
            &first.decision,
            &another_connection.routed(&to("web:80")).decision
        ));
        // Without a profile the authority is the request's: another one is
        // another decision, counted under its own name.
        let other = routes.routed(&to("db:80"));
        assert!(!Arc::ptr_eq(&first.decision, &other.decision));
        assert!(other.labels.contains(&("authority", "db:80".to_owned())));
    }

    /// A new profile (the Service's routes changed) decides its requests
    /// again, under its own routes, and what the old one decided is let go
    /// (each decision holds the profile it was made under).
    #[test]
    fn a_new_profile_decides_again_and_forgets_the_old_decisions() {
        let budget = RetryBudget::default();
        let first = split(&[("web", 1)], fixtures::route(false, None), budget);
        let (logical, profiles) = fixtures::logical_watched(ADDR, Some(first));
        let routes = Route::new(logical);
        let before = routes.routed(&get());
        let mut renamed = fixtures::route(false, None);
        renamed.name = Some("renamed".into());
        profiles.send_replace(Some(Arc::new(split(&[("web", 1)], renamed, budget))));
        let after = routes.routed(&get());
        assert!(!Arc::ptr_eq(&before.decision, &after.decision));
        assert_eq!(
            after.route.as_ref().and_then(|r| r.name.as_deref()),
            Some("renamed")
        );
        assert_eq!(routes.kept(), 1, "the old profile's decision is let go");
    }

    /// The authority is the client's to choose: ever new ones are decided
    /// each time under their own name, what a destination keeps stays
    /// bounded, and they do not keep a common request's decision out.
    #[test]
    fn ever_new_authorities_neither_grow_what_a_destination_keeps_nor_crowd_out_others() {
        let routes = Route::new(logical(ADDR, None));
        for i in 0..1_000 {
            let routed = routes.routed(&to(&format!("web-{i}:80")));
            assert!(
                routed
                    .labels
                    .contains(&("authority", format!("web-{i}:80")))
            );
        }
        assert!(routes.kept() <= MAX_KEPT);
        let common = routes.routed(&to("web:80"));
        assert!(Arc::ptr_eq(
            &common.decision,
            &routes.routed(&to("web:80")).decision
        ));
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
