//! Matching a request to a route (pure), as linkerd2-proxy reads the
//! routes the policy controller sends, inbound and outbound: HTTP routes
//! match a path, a method, headers and query parameters; gRPC routes a
//! service and method and headers. Regular expressions match a whole value.
//!
//! When several routes match, the most specific match wins, ranked as the
//! Gateway API ranks them: an exact path over a prefix (longer first) over
//! a regular expression, then a method, then more header matches, then
//! more query parameter matches.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use linkerd2_proxy_api::grpc_route as grpc_api;
use linkerd2_proxy_api::http_route as api;

/// A match the controller sent that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route}: {reason}")]
pub(crate) struct InvalidMatch {
    route: String,
    reason: String,
}

/// A value: exactly, or a regular expression matching all of it.
#[derive(Debug, Clone)]
pub(crate) enum ValueMatch {
    Exact(String),
    Regex(regex::Regex),
}

impl ValueMatch {
    /// A regular expression that must match a whole value.
    fn whole(pattern: &str) -> Result<Self, regex::Error> {
        regex::Regex::new(&format!("^(?:{pattern})$")).map(Self::Regex)
    }

    fn is_match(&self, value: &str) -> bool {
        match self {
            Self::Exact(v) => v == value,
            Self::Regex(r) => r.is_match(value),
        }
    }
}

/// A path match.
#[derive(Debug, Clone)]
pub(crate) enum PathMatch {
    Exact(String),
    /// This path and those under it (whole segments).
    Prefix(String),
    Regex(regex::Regex),
}

/// The parts of a request a route can match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestView<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) uri: &'a http::Uri,
    pub(crate) headers: &'a HeaderMap,
}

impl<'a, B> From<&'a http::Request<B>> for RequestView<'a> {
    fn from(req: &'a http::Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        }
    }
}

/// One way a request matches a route; every part set must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteMatch {
    pub(crate) path: Option<PathMatch>,
    pub(crate) method: Option<http::Method>,
    headers: Vec<(HeaderName, HeaderMatchValue)>,
    query: Vec<(String, ValueMatch)>,
}

/// A header value: exact bytes, or a regular expression over its text.
#[derive(Debug, Clone)]
enum HeaderMatchValue {
    Exact(HeaderValue),
    Text(ValueMatch),
}

/// How specific a match is (greater wins).
pub(crate) type Specificity = (u8, usize, bool, usize, usize);

impl RouteMatch {
    /// A match on `path` (and `method`) alone.
    #[cfg(test)]
    pub(crate) fn path(path: PathMatch, method: Option<http::Method>) -> Self {
        Self {
            path: Some(path),
            method,
            ..Self::default()
        }
    }

    /// How specific the match is, as the Gateway API ranks matches.
    pub(crate) fn specificity(&self) -> Specificity {
        let (kind, length) = match &self.path {
            Some(PathMatch::Exact(p)) => (3, p.len()),
            Some(PathMatch::Prefix(p)) => (2, p.len()),
            Some(PathMatch::Regex(r)) => (1, r.as_str().len()),
            None => (0, 0),
        };
        (
            kind,
            length,
            self.method.is_some(),
            self.headers.len(),
            self.query.len(),
        )
    }

    /// Whether `req` satisfies every part of the match.
    pub(crate) fn matches(&self, req: &RequestView<'_>) -> bool {
        let path = req.uri.path();
        let path_ok = match &self.path {
            None => true,
            Some(PathMatch::Exact(p)) => path == p,
            Some(PathMatch::Prefix(p)) => {
                let p = p.trim_end_matches('/');
                // Whole segments: `/api` is under `/api`, `/api/x` too,
                // `/apis` not (no allocation: this runs per request).
                p.is_empty()
                    || path
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            Some(PathMatch::Regex(r)) => r.is_match(path),
        };
        path_ok
            && self.method.as_ref().is_none_or(|m| m == req.method)
            && self.headers.iter().all(|(name, value)| {
                req.headers.get_all(name).iter().any(|v| match value {
                    HeaderMatchValue::Exact(exact) => v == exact,
                    HeaderMatchValue::Text(m) => v.to_str().is_ok_and(|v| m.is_match(v)),
                })
            })
            && self.query.iter().all(|(name, value)| {
                req.uri.query().is_some_and(|query| {
                    form_urlencoded::parse(query.as_bytes())
                        .any(|(n, v)| n == name.as_str() && value.is_match(&v))
                })
            })
    }

    /// An HTTP route's match as the controller sent it.
    pub(crate) fn from_http(m: &api::HttpRouteMatch, route: &str) -> Result<Self, InvalidMatch> {
        use api::path_match::Kind;
        let invalid = |e: &dyn std::fmt::Display| invalid(route, e);
        let path = match m.path.as_ref().and_then(|p| p.kind.as_ref()) {
            None => None,
            Some(Kind::Exact(p)) => Some(PathMatch::Exact(p.clone())),
            Some(Kind::Prefix(p)) => Some(PathMatch::Prefix(p.clone())),
            Some(Kind::Regex(r)) => Some(PathMatch::Regex(
                regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| invalid(&e))?,
            )),
        };
        let method = m
            .method
            .clone()
            .map(http::Method::try_from)
            .transpose()
            .map_err(|e| invalid(&e))?;
        let query = m
            .query_params
            .iter()
            .map(|q| {
                use api::query_param_match::Value;
                if q.name.is_empty() {
                    return Err(invalid(&"a query parameter match without a name"));
                }
                let value = match &q.value {
                    Some(Value::Exact(v)) => ValueMatch::Exact(v.clone()),
                    Some(Value::Regex(r)) => ValueMatch::whole(r).map_err(|e| invalid(&e))?,
                    None => return Err(invalid(&"a query parameter match without a value")),
                };
                Ok((q.name.clone(), value))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path,
            method,
            headers: headers_from_api(&m.headers, route)?,
            query,
        })
    }

    /// A gRPC route's match: its service and method become a path
    /// (`/service/method`), as gRPC sends them.
    pub(crate) fn from_grpc(
        m: &grpc_api::GrpcRouteMatch,
        route: &str,
    ) -> Result<Self, InvalidMatch> {
        let invalid = |e: regex::Error| invalid(route, &e);
        let path = match m.rpc.as_ref() {
            None => None,
            Some(rpc) => match (rpc.service.as_str(), rpc.method.as_str()) {
                ("", "") => None,
                (service, "") => Some(PathMatch::Prefix(format!("/{service}"))),
                ("", method) => Some(PathMatch::Regex(
                    regex::Regex::new(&format!("^/[^/]+/{}$", regex::escape(method)))
                        .map_err(invalid)?,
                )),
                (service, method) => Some(PathMatch::Exact(format!("/{service}/{method}"))),
            },
        };
        Ok(Self {
            path,
            method: None,
            headers: headers_from_api(&m.headers, route)?,
            query: Vec::new(),
        })
    }
}

fn invalid(route: &str, reason: &dyn std::fmt::Display) -> InvalidMatch {
    InvalidMatch {
        route: route.to_owned(),
        reason: reason.to_string(),
    }
}

fn headers_from_api(
    headers: &[api::HeaderMatch],
    route: &str,
) -> Result<Vec<(HeaderName, HeaderMatchValue)>, InvalidMatch> {
    use api::header_match::Value;
    let invalid = |e: &dyn std::fmt::Display| invalid(route, e);
    headers
        .iter()
        .map(|h| {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| invalid(&e))?;
            let value = match &h.value {
                Some(Value::Exact(v)) => {
                    HeaderMatchValue::Exact(HeaderValue::from_bytes(v).map_err(|e| invalid(&e))?)
                }
                Some(Value::Regex(r)) => {
                    HeaderMatchValue::Text(ValueMatch::whole(r).map_err(|e| invalid(&e))?)
                }
                None => return Err(invalid(&"a header match without a value")),
            };
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    /// `(name, exact value)` or, with a `~` before the value, a regex.
    fn http_match(headers: &[(&str, &str)], query: &[(&str, &str)]) -> RouteMatch {
        use api::{HeaderMatch, QueryParamMatch, header_match, query_param_match};
        let m = api::HttpRouteMatch {
            path: None,
            headers: headers
                .iter()
                .map(|(name, value)| HeaderMatch {
                    name: (*name).into(),
                    value: Some(match value.strip_prefix('~') {
                        Some(r) => header_match::Value::Regex(r.into()),
                        None => header_match::Value::Exact(value.as_bytes().to_vec()),
                    }),
                })
                .collect(),
            query_params: query
                .iter()
                .map(|(name, value)| QueryParamMatch {
                    name: (*name).into(),
                    value: Some(match value.strip_prefix('~') {
                        Some(r) => query_param_match::Value::Regex(r.into()),
                        None => query_param_match::Value::Exact((*value).into()),
                    }),
                })
                .collect(),
            method: None,
        };
        RouteMatch::from_http(&m, "r").expect("match")
    }

    #[test]
    fn headers_match_any_of_their_values_exactly_or_wholly_by_regex() {
        let exact = http_match(&[("x-team", "blue")], &[]);
        let matches = |m: &RouteMatch, headers: &[(&str, &str)]| {
            m.matches(&(&request("GET", "/", headers)).into())
        };
        assert!(matches(&exact, &[("x-team", "blue")]));
        assert!(matches(&exact, &[("x-team", "red"), ("x-team", "blue")]));
        assert!(!matches(&exact, &[("x-team", "bluer")]));
        assert!(!matches(&exact, &[]), "absent header");
        let regex = http_match(&[("x-team", "~bl.e")], &[]);
        assert!(
            matches(&regex, &[("X-Team", "blue")]),
            "names are case-insensitive"
        );
        assert!(!matches(&regex, &[("x-team", "blues")]), "the whole value");
    }

    #[test]
    fn query_parameters_are_decoded_and_matched_by_name() {
        let m = http_match(&[], &[("user", "a b"), ("v", "~[0-9]+")]);
        let matches = |uri: &str| m.matches(&(&request("GET", uri, &[])).into());
        assert!(matches("/?user=a%20b&v=12"));
        assert!(matches("/?v=7&user=a+b"));
        assert!(!matches("/?user=a%20b&v=1x"), "the whole value");
        assert!(!matches("/?user=ab&v=1"));
        assert!(!matches("/"), "no query");
    }

    #[test]
    fn grpc_service_and_method_match_the_path() {
        let rpc = |service: &str, method: &str| {
            RouteMatch::from_grpc(
                &grpc_api::GrpcRouteMatch {
                    rpc: Some(grpc_api::GrpcRpcMatch {
                        service: service.into(),
                        method: method.into(),
                    }),
                    headers: Vec::new(),
                },
                "r",
            )
            .expect("match")
        };
        let matches = |m: &RouteMatch, path: &str| m.matches(&(&request("POST", path, &[])).into());
        assert!(matches(&rpc("pkg.Greeter", "Hello"), "/pkg.Greeter/Hello"));
        assert!(!matches(&rpc("pkg.Greeter", "Hello"), "/pkg.Greeter/Bye"));
        assert!(matches(&rpc("pkg.Greeter", ""), "/pkg.Greeter/Bye"));
        assert!(!matches(&rpc("pkg.Greeter", ""), "/pkg.GreeterX/Bye"));
        assert!(matches(&rpc("", "Hello"), "/other.Svc/Hello"));
        assert!(!matches(&rpc("", "Hello"), "/other.Svc/Hello2"));
        assert!(matches(&rpc("", ""), "/anything/At"));
    }

    #[test]
    fn more_header_matches_are_more_specific() {
        let one = http_match(&[("a", "1")], &[]);
        let two = http_match(&[("a", "1"), ("b", "2")], &[]);
        assert!(two.specificity() > one.specificity());
    }
}
