//! Routing policy for `GetProfile`, validated once when an object arrives:
//! ServiceProfiles (routes, response classes, retries, timeouts, budget)
//! and TrafficSplits (HTTPRoutes reach proxies through the policy
//! controller's `OutboundPolicies`, as in Linkerd). An object that does not validate is refused with the
//! reason and the last valid version of it stays in force.

use std::collections::BTreeMap;
use std::time::Duration;

use linkerd2_proxy_api::destination::{
    HttpStatusRange, PathMatch, RequestMatch, ResponseClass, ResponseMatch, RetryBudget, Route,
    request_match, response_match,
};
use mesh_api::crds::service_profile::{self as sp, ServiceProfile};
use mesh_api::crds::traffic_split::TrafficSplit;

/// Linkerd's retry budget when none is configured: 20 % extra load, at
/// least 10 retries a second, over 10 seconds.
pub fn default_budget() -> RetryBudget {
    RetryBudget {
        retry_ratio: 0.2,
        min_retries_per_second: 10,
        ttl: Some(duration(Duration::from_secs(10))),
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn parse_duration(value: &str, what: &str) -> Result<prost_types::Duration, String> {
    humantime::parse_duration(value.trim())
        .map(duration)
        .map_err(|e| format!("{what} {value:?} is not a duration ({e})"))
}

/// A validated ServiceProfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Its routes, in order.
    pub routes: Vec<Route>,
    /// Its budget, or Linkerd's default.
    pub budget: RetryBudget,
}

/// Validates a ServiceProfile.
pub fn service_profile(profile: &ServiceProfile) -> Result<Profile, String> {
    let mut routes = Vec::new();
    for (i, route) in profile.spec.routes.iter().enumerate() {
        let what = format!("spec.routes[{i}] ({:?})", route.name);
        let condition =
            request_match(&route.condition).map_err(|e| format!("{what}.condition: {e}"))?;
        let response_classes = route
            .response_classes
            .iter()
            .enumerate()
            .map(|(j, class)| {
                Ok(ResponseClass {
                    condition: Some(
                        response_match(&class.condition)
                            .map_err(|e| format!("{what}.responseClasses[{j}].condition: {e}"))?,
                    ),
                    is_failure: class.is_failure,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let timeout = route
            .timeout
            .as_deref()
            .map(|t| parse_duration(t, &format!("{what}.timeout")))
            .transpose()?;
        routes.push(Route {
            condition: Some(condition),
            response_classes,
            metrics_labels: BTreeMap::from([("route".to_owned(), route.name.clone())])
                .into_iter()
                .collect(),
            is_retryable: route.is_retryable.unwrap_or(false),
            timeout,
        });
    }
    let budget = match &profile.spec.retry_budget {
        None => default_budget(),
        Some(b) => {
            if !(b.retry_ratio >= 0.0 && b.retry_ratio.is_finite()) {
                return Err(format!(
                    "spec.retryBudget.retryRatio {} must be a number ≥ 0",
                    b.retry_ratio
                ));
            }
            RetryBudget {
                retry_ratio: b.retry_ratio,
                min_retries_per_second: b.min_retries_per_second,
                ttl: Some(parse_duration(&b.ttl, "spec.retryBudget.ttl")?),
            }
        }
    };
    Ok(Profile { routes, budget })
}

fn request_match(m: &sp::RequestMatch) -> Result<RequestMatch, String> {
    let mut all = Vec::new();
    if let Some(regex) = &m.path_regex {
        regex::Regex::new(regex)
            .map_err(|e| format!("pathRegex {regex:?} is not a regular expression: {e}"))?;
        all.push(RequestMatch {
            r#match: Some(request_match::Match::Path(PathMatch {
                regex: regex.clone(),
            })),
        });
    }
    if let Some(method) = &m.method {
        let method = http::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("method {method:?} is not an HTTP method"))?;
        all.push(RequestMatch {
            r#match: Some(request_match::Match::Method(method.into())),
        });
    }
    if let Some(list) = &m.all {
        let seq = list.iter().map(request_match).collect::<Result<_, _>>()?;
        all.push(RequestMatch {
            r#match: Some(request_match::Match::All(request_match::Seq {
                matches: seq,
            })),
        });
    }
    if let Some(list) = &m.any {
        let seq = list.iter().map(request_match).collect::<Result<_, _>>()?;
        all.push(RequestMatch {
            r#match: Some(request_match::Match::Any(request_match::Seq {
                matches: seq,
            })),
        });
    }
    if let Some(not) = &m.not {
        all.push(RequestMatch {
            r#match: Some(request_match::Match::Not(Box::new(request_match(not)?))),
        });
    }
    match all.len() {
        0 => Err("the condition is empty (set pathRegex, method, all, any or not)".into()),
        1 => Ok(all.remove(0)),
        _ => Ok(RequestMatch {
            r#match: Some(request_match::Match::All(request_match::Seq {
                matches: all,
            })),
        }),
    }
}

fn response_match(m: &sp::ResponseMatch) -> Result<ResponseMatch, String> {
    let mut all = Vec::new();
    if let Some(status) = &m.status {
        let (min, max) = match (status.min, status.max) {
            (Some(min), Some(max)) => (min, max),
            (Some(one), None) | (None, Some(one)) => (one, one),
            (None, None) => return Err("status needs min or max".into()),
        };
        if !(100..=599).contains(&min) || !(100..=599).contains(&max) || min > max {
            return Err(format!("status range {min}-{max} is not within 100-599"));
        }
        all.push(ResponseMatch {
            r#match: Some(response_match::Match::Status(HttpStatusRange { min, max })),
        });
    }
    if let Some(list) = &m.all {
        let seq = list.iter().map(response_match).collect::<Result<_, _>>()?;
        all.push(ResponseMatch {
            r#match: Some(response_match::Match::All(response_match::Seq {
                matches: seq,
            })),
        });
    }
    if let Some(list) = &m.any {
        let seq = list.iter().map(response_match).collect::<Result<_, _>>()?;
        all.push(ResponseMatch {
            r#match: Some(response_match::Match::Any(response_match::Seq {
                matches: seq,
            })),
        });
    }
    if let Some(not) = &m.not {
        all.push(ResponseMatch {
            r#match: Some(response_match::Match::Not(Box::new(response_match(not)?))),
        });
    }
    match all.len() {
        0 => Err("the condition is empty (set status, all, any or not)".into()),
        1 => Ok(all.remove(0)),
        _ => Ok(ResponseMatch {
            r#match: Some(response_match::Match::All(response_match::Seq {
                matches: all,
            })),
        }),
    }
}

/// A validated TrafficSplit: the apex and each backend's weight in
/// `WeightedDst` units (weight × 10 000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The apex Service.
    pub service: String,
    /// Backend name (or FQDN) → weight.
    pub backends: Vec<(String, u32)>,
}

/// Validates a TrafficSplit.
pub fn traffic_split(split: &TrafficSplit) -> Result<Split, String> {
    if split.spec.service.is_empty() {
        return Err("spec.service is empty".into());
    }
    let mut backends = Vec::new();
    for (i, backend) in split.spec.backends.iter().enumerate() {
        let weight = backend.weight_units().ok_or_else(|| {
            format!(
                "spec.backends[{i}].weight {} is not a weight ≥ 0",
                backend.weight
            )
        })?;
        backends.push((backend.service.clone(), weight));
    }
    Ok(Split {
        service: split.spec.service.clone(),
        backends,
    })
}
