//! Linkerd's route annotations, parsed once for every reader: retries
//! (`retry.linkerd.io/http`, `grpc`, `limit`, `timeout`), timeouts
//! (`timeout.linkerd.io/request`, `response`, `idle`) and failure accrual
//! (`balancer.linkerd.io/failure-accrual` and its `consecutive-*` tuning).
//! They may sit on a route or on its Service (a route's own win, key by
//! key, as in Linkerd). A bad value is an error naming the annotation.

use std::collections::BTreeMap;
use std::time::Duration;

/// The annotation listing HTTP retry conditions.
pub const RETRY_HTTP: &str = "retry.linkerd.io/http";
/// The annotation listing gRPC retry conditions.
pub const RETRY_GRPC: &str = "retry.linkerd.io/grpc";
/// The annotation bounding retries of one request.
pub const RETRY_LIMIT: &str = "retry.linkerd.io/limit";
/// The annotation bounding each attempt.
pub const RETRY_TIMEOUT: &str = "retry.linkerd.io/timeout";
/// The annotation bounding a whole request.
pub const TIMEOUT_REQUEST: &str = "timeout.linkerd.io/request";
/// The annotation bounding the wait for a response.
pub const TIMEOUT_RESPONSE: &str = "timeout.linkerd.io/response";
/// The annotation bounding idleness of a stream.
pub const TIMEOUT_IDLE: &str = "timeout.linkerd.io/idle";
/// The annotation choosing failure accrual (`consecutive`).
pub const FAILURE_ACCRUAL: &str = "balancer.linkerd.io/failure-accrual";
const ACCRUAL_MAX_FAILURES: &str = "balancer.linkerd.io/failure-accrual-consecutive-max-failures";
const ACCRUAL_MIN_PENALTY: &str = "balancer.linkerd.io/failure-accrual-consecutive-min-penalty";
const ACCRUAL_MAX_PENALTY: &str = "balancer.linkerd.io/failure-accrual-consecutive-max-penalty";
const ACCRUAL_JITTER: &str = "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio";

/// An annotation whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {reason}")]
pub struct BadAnnotation {
    /// The annotation.
    pub key: String,
    /// Why.
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> BadAnnotation {
    BadAnnotation {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A duration as Linkerd writes them (`2s`, `500ms`, `1m30s`).
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, BadAnnotation> {
    humantime::parse_duration(value.trim())
        .map_err(|e| bad(key, format!("{value:?} is not a duration ({e})")))
}

/// Inclusive HTTP status range a retry is made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatusRange {
    /// The first status.
    pub start: u16,
    /// The last status.
    pub end: u16,
}

/// `5xx`, `gateway-error`, a status or a range of statuses (`500-504`),
/// comma-separated.
pub fn http_retry_conditions(value: &str) -> Result<Vec<StatusRange>, BadAnnotation> {
    let status = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|code| (100..600).contains(code))
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|condition| {
            let range = |start, end| Ok(StatusRange { start, end });
            if condition.eq_ignore_ascii_case("5xx") {
                return range(500, 599);
            }
            if condition.eq_ignore_ascii_case("gateway-error") {
                return range(502, 504);
            }
            if let Some(code) = status(condition) {
                return range(code, code);
            }
            match condition.split_once('-').map(|(a, b)| (status(a), status(b))) {
                Some((Some(start), Some(end))) if start <= end => range(start, end),
                _ => Err(bad(
                    RETRY_HTTP,
                    format!(
                        "{condition:?} is not 5xx, gateway-error, a status or a range such as 500-504"
                    ),
                )),
            }
        })
        .collect()
}

/// A gRPC status a retry is made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrpcRetryCondition {
    /// `cancelled` (1).
    Cancelled,
    /// `deadline-exceeded` (4).
    DeadlineExceeded,
    /// `resource-exhausted` (8).
    ResourceExhausted,
    /// `internal` (13).
    Internal,
    /// `unavailable` (14).
    Unavailable,
}

impl GrpcRetryCondition {
    /// As the annotation spells it (`unavailable`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::DeadlineExceeded => "deadline-exceeded",
            Self::ResourceExhausted => "resource-exhausted",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
        }
    }
}

/// `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`,
/// `unavailable`, comma-separated.
pub fn grpc_retry_conditions(value: &str) -> Result<Vec<GrpcRetryCondition>, BadAnnotation> {
    value
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|condition| match condition.to_ascii_lowercase().as_str() {
            "cancelled" => Ok(GrpcRetryCondition::Cancelled),
            "deadline-exceeded" => Ok(GrpcRetryCondition::DeadlineExceeded),
            "resource-exhausted" => Ok(GrpcRetryCondition::ResourceExhausted),
            "internal" => Ok(GrpcRetryCondition::Internal),
            "unavailable" => Ok(GrpcRetryCondition::Unavailable),
            _ => Err(bad(
                RETRY_GRPC,
                format!(
                    "{condition:?} is not cancelled, deadline-exceeded, internal, resource-exhausted or unavailable"
                ),
            )),
        })
        .collect()
}

/// How a route retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry<C> {
    /// Retries of one request (default 1).
    pub limit: u32,
    /// Each attempt's bound.
    pub timeout: Option<Duration>,
    /// What is retried (`None`: the proxy's default conditions).
    pub conditions: Option<Vec<C>>,
}

fn retry<C>(
    annotations: &BTreeMap<String, String>,
    conditions_key: &str,
    parse: impl Fn(&str) -> Result<Vec<C>, BadAnnotation>,
) -> Result<Option<Retry<C>>, BadAnnotation> {
    let limit = annotations
        .get(RETRY_LIMIT)
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| bad(RETRY_LIMIT, format!("{v:?} is not a number")))
        })
        .transpose()?
        .filter(|v| *v != 0);
    let timeout = annotations
        .get(RETRY_TIMEOUT)
        .map(|v| parse_duration(RETRY_TIMEOUT, v))
        .transpose()?
        .filter(|t| !t.is_zero());
    let conditions = annotations
        .get(conditions_key)
        .map(|v| parse(v))
        .transpose()?;
    if limit.is_none() && timeout.is_none() && conditions.is_none() {
        return Ok(None);
    }
    Ok(Some(Retry {
        limit: limit.unwrap_or(1),
        timeout,
        conditions,
    }))
}

/// An HTTP route's retries, if its annotations ask for any.
pub fn http_retry(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<Retry<StatusRange>>, BadAnnotation> {
    retry(annotations, RETRY_HTTP, http_retry_conditions)
}

/// A gRPC route's retries, if its annotations ask for any.
pub fn grpc_retry(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<Retry<GrpcRetryCondition>>, BadAnnotation> {
    retry(annotations, RETRY_GRPC, grpc_retry_conditions)
}

/// A route's timeouts from its annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// The whole request, retries included.
    pub request: Option<Duration>,
    /// The wait for a response (headers).
    pub response: Option<Duration>,
    /// How long a stream may be idle.
    pub idle: Option<Duration>,
}

/// The `timeout.linkerd.io/*` annotations.
pub fn timeouts(annotations: &BTreeMap<String, String>) -> Result<Timeouts, BadAnnotation> {
    let get = |key| {
        annotations
            .get(key)
            .map(|v| parse_duration(key, v))
            .transpose()
    };
    Ok(Timeouts {
        request: get(TIMEOUT_REQUEST)?,
        response: get(TIMEOUT_RESPONSE)?,
        idle: get(TIMEOUT_IDLE)?,
    })
}

/// Consecutive-failures accrual: an endpoint that fails `max_failures`
/// times in a row is ejected for a penalty backing off from `min_penalty`
/// to `max_penalty`, with `jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsecutiveFailures {
    /// Failures in a row that eject (default 7).
    pub max_failures: u32,
    /// The first penalty (default 1 s).
    pub min_penalty: Duration,
    /// The longest penalty (default 60 s).
    pub max_penalty: Duration,
    /// Jitter ratio (default 0.5).
    pub jitter: f32,
}

/// A Service's failure accrual, when `balancer.linkerd.io/failure-accrual`
/// asks for one.
pub fn failure_accrual(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<ConsecutiveFailures>, BadAnnotation> {
    let Some(mode) = annotations.get(FAILURE_ACCRUAL) else {
        return Ok(None);
    };
    if mode.trim() != "consecutive" {
        return Err(bad(
            FAILURE_ACCRUAL,
            format!("{mode:?} is not a failure accrual mode (consecutive)"),
        ));
    }
    let duration = |key, default| {
        annotations
            .get(key)
            .map(|v| parse_duration(key, v))
            .transpose()
            .map(|d| d.unwrap_or(default))
    };
    let max_failures = annotations
        .get(ACCRUAL_MAX_FAILURES)
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| bad(ACCRUAL_MAX_FAILURES, format!("{v:?} is not a number")))
        })
        .transpose()?
        .unwrap_or(7);
    let min_penalty = duration(ACCRUAL_MIN_PENALTY, Duration::from_secs(1))?;
    let max_penalty = duration(ACCRUAL_MAX_PENALTY, Duration::from_secs(60))?;
    let jitter = annotations
        .get(ACCRUAL_JITTER)
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .ok()
                .filter(|j| (0.0..=100.0).contains(j))
                .ok_or_else(|| {
                    bad(
                        ACCRUAL_JITTER,
                        format!("{v:?} is not a ratio from 0 to 100"),
                    )
                })
        })
        .transpose()?
        .unwrap_or(0.5);
    if max_penalty.is_zero() {
        return Err(bad(ACCRUAL_MAX_PENALTY, "must be more than zero"));
    }
    if min_penalty > max_penalty {
        return Err(bad(
            ACCRUAL_MIN_PENALTY,
            format!("{min_penalty:?} exceeds the max penalty {max_penalty:?}"),
        ));
    }
    Ok(Some(ConsecutiveFailures {
        max_failures,
        min_penalty,
        max_penalty,
        jitter,
    }))
}

/// `route`'s annotations over `service`'s: a key the route sets wins.
pub fn merged(
    service: &BTreeMap<String, String>,
    route: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all = service.clone();
    all.extend(route.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn http_conditions_take_classes_statuses_and_ranges() {
        let ranges = http_retry_conditions("5xx, gateway-error,429,500-504").expect("valid");
        assert_eq!(
            ranges,
            [
                StatusRange {
                    start: 500,
                    end: 599
                },
                StatusRange {
                    start: 502,
                    end: 504
                },
                StatusRange {
                    start: 429,
                    end: 429
                },
                StatusRange {
                    start: 500,
                    end: 504
                },
            ]
        );
        for bad in ["5xy", "504-500", "700", "500-"] {
            let error = http_retry_conditions(bad).expect_err(bad);
            assert_eq!(error.key, RETRY_HTTP);
        }
    }

    #[test]
    fn a_retry_needs_one_annotation_and_defaults_to_one_retry() {
        assert_eq!(http_retry(&annotations(&[])).expect("none"), None);
        let retry = http_retry(&annotations(&[
            (RETRY_HTTP, "5xx"),
            (RETRY_TIMEOUT, "300ms"),
        ]))
        .expect("valid")
        .expect("some");
        assert_eq!(retry.limit, 1);
        assert_eq!(retry.timeout, Some(Duration::from_millis(300)));
        let retry = grpc_retry(&annotations(&[
            (RETRY_GRPC, "unavailable"),
            (RETRY_LIMIT, "2"),
        ]))
        .expect("valid")
        .expect("some");
        assert_eq!(retry.limit, 2);
        assert_eq!(
            retry.conditions,
            Some(vec![GrpcRetryCondition::Unavailable])
        );
        let error = http_retry(&annotations(&[(RETRY_LIMIT, "two")])).expect_err("bad");
        assert_eq!(error.key, RETRY_LIMIT);
    }

    #[test]
    fn failure_accrual_defaults_and_checks_its_penalties() {
        assert_eq!(failure_accrual(&annotations(&[])).expect("none"), None);
        let accrual = failure_accrual(&annotations(&[(FAILURE_ACCRUAL, "consecutive")]))
            .expect("valid")
            .expect("some");
        assert_eq!(accrual.max_failures, 7);
        assert_eq!(accrual.max_penalty, Duration::from_secs(60));
        let error = failure_accrual(&annotations(&[
            (FAILURE_ACCRUAL, "consecutive"),
            (ACCRUAL_MIN_PENALTY, "2m"),
        ]))
        .expect_err("min over max");
        assert_eq!(error.key, ACCRUAL_MIN_PENALTY);
        assert!(failure_accrual(&annotations(&[(FAILURE_ACCRUAL, "sometimes")])).is_err());
    }

    #[test]
    fn a_routes_annotation_wins_over_its_services() {
        let all = merged(
            &annotations(&[(RETRY_HTTP, "5xx"), (TIMEOUT_REQUEST, "1s")]),
            &annotations(&[(TIMEOUT_REQUEST, "2s")]),
        );
        assert_eq!(
            timeouts(&all).expect("valid").request,
            Some(Duration::from_secs(2))
        );
        assert!(http_retry(&all).expect("valid").is_some());
    }
}
