//! Which requests a tap wants: linkerd2-proxy-api's `ObserveRequest.Match`
//! checked once, when the tap starts, into a [`Match`] that a request is
//! tested against without allocating. A match the caller sends is
//! untrusted: its nesting is bounded and every malformed part is refused
//! with the field it was in.

use std::net::IpAddr;

use ipnet::IpNet;
use linkerd2_proxy_api::tap::observe_request::r#match as api;

use super::Observed;

/// How deep `all`, `any` and `not` may nest: far more than any filter a
/// person writes, and a bound on the recursion a hostile caller can cause.
pub const MAX_DEPTH: usize = 16;

/// How many matches one tap may hold in all.
pub const MAX_MATCHES: usize = 256;

/// A checked match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Every inner match holds (an empty list: always).
    All(Vec<Match>),
    /// Some inner match holds (an empty list: never).
    Any(Vec<Match>),
    /// The inner match does not hold.
    Not(Box<Match>),
    /// The client's address.
    Source(Tcp),
    /// The server's address.
    Destination(Tcp),
    /// A label of the destination (`namespace`, `deployment`, `pod`, …).
    DestinationLabel(String, String),
    /// A label of the route.
    RouteLabel(String, String),
    /// The request's method.
    Method(http::Method),
    /// The request's scheme (`http`, `https`).
    Scheme(String),
    /// The request's authority.
    Authority(StringMatch),
    /// The request's path.
    Path(StringMatch),
}

/// An address condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tcp {
    /// In this network.
    Net(IpNet),
    /// A port in this range (inclusive).
    Ports(u16, u16),
}

/// A string condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    /// Equal (ASCII case-insensitive for authorities).
    Exact(String),
    /// Starts with.
    Prefix(String),
}

/// Why a match is refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("match{field}: {reason}")]
pub struct MatchError {
    field: String,
    reason: String,
}

impl MatchError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl Match {
    /// Checks the match a tap asked for (none: every request).
    pub fn from_api(
        api: Option<&linkerd2_proxy_api::tap::observe_request::Match>,
    ) -> Result<Self, MatchError> {
        let mut budget = MAX_MATCHES;
        match api {
            None => Ok(Self::All(Vec::new())),
            Some(m) => convert(m, "", 0, &mut budget),
        }
    }

    /// Whether `request` is one the tap wants.
    pub fn matches(&self, request: &Observed<'_>) -> bool {
        match self {
            Self::All(all) => all.iter().all(|m| m.matches(request)),
            Self::Any(any) => any.iter().any(|m| m.matches(request)),
            Self::Not(inner) => !inner.matches(request),
            Self::Source(tcp) => tcp.matches(request.source),
            Self::Destination(tcp) => tcp.matches(request.destination),
            Self::DestinationLabel(key, value) => request
                .destination_labels
                .iter()
                .any(|(k, v)| label_key(k) == key && v == value),
            Self::RouteLabel(key, value) => request
                .route_labels
                .iter()
                .any(|(k, v)| label_key(k) == key && v == value),
            Self::Method(method) => request.request.method() == method,
            Self::Scheme(scheme) => request
                .request
                .uri()
                .scheme_str()
                .unwrap_or("http")
                .eq_ignore_ascii_case(scheme),
            Self::Authority(m) => m.matches(&request.authority(), true),
            Self::Path(m) => m.matches(request.request.uri().path(), false),
        }
    }
}

/// A label's name as tap sees it: the metric prefix `dst_` dropped.
pub fn label_key(key: &str) -> &str {
    key.strip_prefix("dst_").unwrap_or(key)
}

impl Tcp {
    fn matches(&self, addr: std::net::SocketAddr) -> bool {
        match self {
            Self::Net(net) => net.contains(&addr.ip()),
            Self::Ports(min, max) => (*min..=*max).contains(&addr.port()),
        }
    }
}

impl StringMatch {
    fn matches(&self, value: &str, ignore_case: bool) -> bool {
        match (self, ignore_case) {
            (Self::Exact(s), true) => value.eq_ignore_ascii_case(s),
            (Self::Exact(s), false) => value == s,
            (Self::Prefix(p), true) => value
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p)),
            (Self::Prefix(p), false) => value.starts_with(p.as_str()),
        }
    }
}

fn convert(
    m: &linkerd2_proxy_api::tap::observe_request::Match,
    field: &str,
    depth: usize,
    budget: &mut usize,
) -> Result<Match, MatchError> {
    if depth > MAX_DEPTH {
        return Err(MatchError::new(
            field,
            format!("nested deeper than {MAX_DEPTH}"),
        ));
    }
    if *budget == 0 {
        return Err(MatchError::new(
            field,
            format!("more than {MAX_MATCHES} matches"),
        ));
    }
    *budget -= 1;
    let seq = |seq: &api::Seq, name: &str, budget: &mut usize| {
        seq.matches
            .iter()
            .enumerate()
            .map(|(i, m)| convert(m, &format!("{field}.{name}[{i}]"), depth + 1, budget))
            .collect::<Result<Vec<_>, _>>()
    };
    let Some(inner) = &m.r#match else {
        return Err(MatchError::new(field, "empty (no condition set)"));
    };
    Ok(match inner {
        api::Match::All(all) => Match::All(seq(all, "all", budget)?),
        api::Match::Any(any) => Match::Any(seq(any, "any", budget)?),
        api::Match::Not(not) => Match::Not(Box::new(convert(
            not,
            &format!("{field}.not"),
            depth + 1,
            budget,
        )?)),
        api::Match::Source(tcp) => Match::Source(tcp_match(tcp, &format!("{field}.source"))?),
        api::Match::Destination(tcp) => {
            Match::Destination(tcp_match(tcp, &format!("{field}.destination"))?)
        }
        api::Match::DestinationLabel(label) => {
            Match::DestinationLabel(label.key.clone(), label.value.clone())
        }
        api::Match::RouteLabel(label) => Match::RouteLabel(label.key.clone(), label.value.clone()),
        api::Match::Http(http) => http_match(http, &format!("{field}.http"))?,
    })
}

fn tcp_match(tcp: &api::Tcp, field: &str) -> Result<Tcp, MatchError> {
    use api::tcp::Match as T;
    match &tcp.r#match {
        None => Err(MatchError::new(field, "empty (neither netmask nor ports)")),
        Some(T::Netmask(net)) => {
            let ip = net
                .ip
                .and_then(|ip| IpAddr::try_from(ip).ok())
                .ok_or_else(|| MatchError::new(&format!("{field}.netmask.ip"), "not an address"))?;
            let mask = u8::try_from(net.mask)
                .ok()
                .and_then(|mask| IpNet::new(ip, mask).ok())
                .ok_or_else(|| {
                    MatchError::new(
                        &format!("{field}.netmask.mask"),
                        format!("{} is not a prefix length for {ip}", net.mask),
                    )
                })?;
            Ok(Tcp::Net(mask.trunc()))
        }
        Some(T::Ports(range)) => {
            let port = |p: u32, name: &str| {
                u16::try_from(p).map_err(|_| {
                    MatchError::new(
                        &format!("{field}.ports.{name}"),
                        format!("{p} is not a port"),
                    )
                })
            };
            let min = port(range.min, "min")?;
            // Without a maximum, the range is the one port.
            let max = if range.max == 0 {
                min
            } else {
                port(range.max, "max")?
            };
            if max < min {
                return Err(MatchError::new(
                    &format!("{field}.ports"),
                    format!("max {max} is below min {min}"),
                ));
            }
            Ok(Tcp::Ports(min, max))
        }
    }
}

fn http_match(http: &api::Http, field: &str) -> Result<Match, MatchError> {
    use api::http::Match as H;
    use api::http::string_match::Match as S;
    let string = |m: &api::http::StringMatch, name: &str| match &m.r#match {
        Some(S::Exact(s)) => Ok(StringMatch::Exact(s.clone())),
        Some(S::Prefix(s)) => Ok(StringMatch::Prefix(s.clone())),
        None => Err(MatchError::new(
            &format!("{field}.{name}"),
            "empty (neither exact nor prefix)",
        )),
    };
    match &http.r#match {
        None => Err(MatchError::new(field, "empty (no HTTP condition)")),
        Some(H::Method(method)) => http::Method::try_from(method.clone())
            .map(Match::Method)
            .map_err(|e| MatchError::new(&format!("{field}.method"), e.to_string())),
        Some(H::Scheme(scheme)) => http::uri::Scheme::try_from(scheme.clone())
            .map(|s| Match::Scheme(s.as_str().to_ascii_lowercase()))
            .map_err(|e| MatchError::new(&format!("{field}.scheme"), e.to_string())),
        Some(H::Authority(m)) => string(m, "authority").map(Match::Authority),
        Some(H::Path(m)) => string(m, "path").map(Match::Path),
    }
}

#[cfg(test)]
mod tests {
    use linkerd2_proxy_api::tap::observe_request::Match as ApiMatch;
    use proptest::prelude::*;

    use super::*;
    use crate::tap::{Direction, Observed};

    fn seq(kind: fn(api::Seq) -> api::Match, matches: Vec<ApiMatch>) -> ApiMatch {
        ApiMatch {
            r#match: Some(kind(api::Seq { matches })),
        }
    }

    fn path_prefix(prefix: &str) -> ApiMatch {
        ApiMatch {
            r#match: Some(api::Match::Http(api::Http {
                r#match: Some(api::http::Match::Path(api::http::StringMatch {
                    r#match: Some(api::http::string_match::Match::Prefix(prefix.into())),
                })),
            })),
        }
    }

    fn label(key: &str, value: &str) -> ApiMatch {
        ApiMatch {
            r#match: Some(api::Match::DestinationLabel(api::Label {
                key: key.into(),
                value: value.into(),
            })),
        }
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::get(format!("http://web.test.svc.cluster.local{path}"))
            .body(())
            .expect("request")
    }

    fn observed<'a>(
        request: &'a http::Request<()>,
        labels: &'a crate::metrics::Labels,
    ) -> Observed<'a> {
        Observed {
            direction: Direction::Outbound,
            source: "10.0.0.1:40000".parse().expect("addr"),
            destination: "10.0.0.2:8080".parse().expect("addr"),
            source_labels: &[],
            destination_labels: labels,
            route_labels: &[],
            request: request.into(),
        }
    }

    #[test]
    fn the_linkerd_cli_filters_select_what_they_name() {
        // `viz tap deploy/web --to deploy/api --path /api`: all of a
        // destination's labels and a path prefix.
        let m = Match::from_api(Some(&seq(
            api::Match::All,
            vec![
                label("deployment", "api"),
                label("namespace", "test"),
                path_prefix("/api"),
            ],
        )))
        .expect("valid");
        let labels = vec![
            ("dst_deployment", "api".to_owned()),
            ("dst_namespace", "test".to_owned()),
        ];
        let hit = request("/api/users");
        assert!(m.matches(&observed(&hit, &labels)));
        let other_path = request("/healthz");
        assert!(!m.matches(&observed(&other_path, &labels)));
        let other = vec![("dst_deployment", "web".to_owned())];
        assert!(!m.matches(&observed(&hit, &other)));
        // No match at all: everything; `any` of nothing: nothing.
        assert!(
            Match::from_api(None)
                .expect("none")
                .matches(&observed(&hit, &other))
        );
        let never = Match::from_api(Some(&seq(api::Match::Any, vec![]))).expect("valid");
        assert!(!never.matches(&observed(&hit, &other)));
    }

    #[test]
    fn a_malformed_match_is_refused_naming_its_field() {
        let empty_inside = seq(api::Match::All, vec![ApiMatch { r#match: None }]);
        let e = Match::from_api(Some(&empty_inside)).expect_err("empty inner match");
        assert_eq!(e.to_string(), "match.all[0]: empty (no condition set)");
        let bad_mask = ApiMatch {
            r#match: Some(api::Match::Source(api::Tcp {
                r#match: Some(api::tcp::Match::Netmask(api::tcp::Netmask {
                    ip: Some(std::net::IpAddr::from([10, 0, 0, 0]).into()),
                    mask: 40,
                })),
            })),
        };
        let e = Match::from_api(Some(&bad_mask)).expect_err("mask over 32");
        assert_eq!(
            e.to_string(),
            "match.source.netmask.mask: 40 is not a prefix length for 10.0.0.0"
        );
        let backwards = ApiMatch {
            r#match: Some(api::Match::Destination(api::Tcp {
                r#match: Some(api::tcp::Match::Ports(api::tcp::PortRange {
                    min: 90,
                    max: 80,
                })),
            })),
        };
        let e = Match::from_api(Some(&backwards)).expect_err("max below min");
        assert_eq!(
            e.to_string(),
            "match.destination.ports: max 80 is below min 90"
        );
    }

    #[test]
    fn a_hostile_nesting_is_refused_before_it_recurses() {
        // The attack: a match nested far deeper than any filter, which a
        // naive converter (or matcher) would recurse through.
        let mut m = path_prefix("/");
        for _ in 0..200 {
            m = ApiMatch {
                r#match: Some(api::Match::Not(Box::new(m))),
            };
        }
        let e = Match::from_api(Some(&m)).expect_err("too deep");
        assert!(e.to_string().contains("nested deeper than 16"), "{e}");
        // And a flat list past the budget.
        let wide = seq(api::Match::Any, vec![path_prefix("/"); MAX_MATCHES + 1]);
        let e = Match::from_api(Some(&wide)).expect_err("too many");
        assert!(e.to_string().contains("more than 256 matches"), "{e}");
        // Dropping the deep value must not overflow the stack either.
        drop(m);
    }

    fn arbitrary_match() -> impl Strategy<Value = ApiMatch> {
        let leaf = prop_oneof![
            "[/a-z]{0,8}".prop_map(|p| path_prefix(&p)),
            ("[a-z]{0,6}", "[a-z]{0,6}").prop_map(|(k, v)| label(&k, &v)),
            (any::<u32>(), any::<u32>()).prop_map(|(min, max)| ApiMatch {
                r#match: Some(api::Match::Destination(api::Tcp {
                    r#match: Some(api::tcp::Match::Ports(api::tcp::PortRange { min, max })),
                })),
            }),
            (any::<u32>(), any::<u32>()).prop_map(|(ip, mask)| ApiMatch {
                r#match: Some(api::Match::Source(api::Tcp {
                    r#match: Some(api::tcp::Match::Netmask(api::tcp::Netmask {
                        ip: Some(std::net::IpAddr::from(ip.to_be_bytes()).into()),
                        mask,
                    })),
                })),
            }),
            Just(ApiMatch { r#match: None }),
        ];
        leaf.prop_recursive(24, 512, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(|m| seq(api::Match::All, m)),
                prop::collection::vec(inner.clone(), 0..6).prop_map(|m| seq(api::Match::Any, m)),
                inner.prop_map(|m| ApiMatch {
                    r#match: Some(api::Match::Not(Box::new(m))),
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(0x7a9), ..ProptestConfig::default() })]
        #[test]
        fn any_match_is_checked_without_panic(m in arbitrary_match()) {
            match Match::from_api(Some(&m)) {
                Ok(checked) => {
                    let req = request("/api");
                    let labels = vec![("dst_namespace", "test".to_owned())];
                    let _ = checked.matches(&observed(&req, &labels));
                }
                Err(e) => prop_assert!(e.to_string().starts_with("match"), "{}", e),
            }
        }
    }
}
