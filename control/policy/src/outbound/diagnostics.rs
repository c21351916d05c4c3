//! What the controller serves a client for a Service port, as JSON, on its
//! admin server (`GET /outbound?ns=<namespace>&svc=<name>&port=<port>`,
//! and `&from=<namespace>` for a client in another namespace, which also
//! gets that namespace's consumer routes):
//! what `mesh diagnostics outbound` reads through the API server's pod
//! proxy, so it shows the controller's own answer (routes, their matches,
//! backends and weights, retries, timeouts).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use super::model::{Filter, Matches, RouteRetry};
use super::{AppProtocol, OutboundPolicy, ResolvedRule};
use crate::diagnostics::{query_field, query_port};
use crate::index::Index;

/// The admin path.
pub const PATH: &str = "/outbound";

/// Answers `query` (`ns`, `svc`, `port`) from `index`.
pub fn answer(index: &Arc<Mutex<Index>>, query: &str) -> Result<String, (StatusCode, String)> {
    const EXPECTED: &str = "ns, svc, port";
    let ns = query_field(query, "ns", EXPECTED)?;
    let svc = query_field(query, "svc", EXPECTED)?;
    let port = query_port(query, EXPECTED)?;
    let from = query_field(query, "from", EXPECTED).ok();
    let index = index.lock().map_err(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the policy index is poisoned".to_owned(),
        )
    })?;
    let policy = index
        .outbound
        .policy(&ns, &svc, port, from.as_deref())
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("Service {ns}/{svc} with port {port} is not known"),
            )
        })?;
    Ok(to_json(&policy).to_string())
}

fn seconds(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!(humantime::format_duration(d).to_string())
    })
}

fn rule_json(rule: &ResolvedRule, authority: &str) -> Value {
    let backends: Vec<Value> = if rule.backends.is_empty() {
        vec![json!({"authority": authority, "weight": 1})]
    } else {
        rule.backends
            .iter()
            .map(|b| {
                json!({
                    "authority": b.authority,
                    "service": format!("{}/{}", b.backend.namespace, b.backend.name),
                    "weight": b.backend.weight,
                    "exists": b.authority.is_some(),
                })
            })
            .collect()
    };
    let retry = match &rule.retry {
        None => Value::Null,
        Some(RouteRetry::Http(r)) => json!({
            "limit": r.limit,
            "timeout": seconds(r.timeout),
            "statuses": r.conditions.iter().flatten()
                .map(|c| if c.start == c.end { c.start.to_string() } else { format!("{}-{}", c.start, c.end) })
                .collect::<Vec<_>>(),
        }),
        Some(RouteRetry::Grpc(r)) => json!({
            "limit": r.limit,
            "timeout": seconds(r.timeout),
            "grpcCodes": r.conditions.iter().flatten().map(|c| c.as_str()).collect::<Vec<_>>(),
        }),
    };
    let matches: Vec<String> = match &rule.matches {
        Matches::Http(matches) => matches.iter().map(ToString::to_string).collect(),
        Matches::Grpc(matches) => matches.iter().map(ToString::to_string).collect(),
    };
    let filters: Vec<&str> = rule
        .filters
        .iter()
        .map(|f| match f {
            Filter::RequestHeaders(_) => "RequestHeaderModifier",
            Filter::ResponseHeaders(_) => "ResponseHeaderModifier",
            Filter::Redirect(_) => "RequestRedirect",
        })
        .collect();
    json!({
        "matches": matches,
        "backends": backends,
        "retry": retry,
        "timeouts": {
            "request": seconds(rule.timeouts.request),
            "response": seconds(rule.timeouts.response),
            "idle": seconds(rule.timeouts.idle),
        },
        "filters": filters,
    })
}

/// `policy` as JSON.
pub fn to_json(policy: &OutboundPolicy) -> Value {
    let protocol = match policy.protocol {
        AppProtocol::Detect => "detect",
        AppProtocol::Http1 => "HTTP/1",
        AppProtocol::Http2 => "HTTP/2",
        AppProtocol::Opaque => "opaque",
    };
    let routes: Vec<Value> = if policy.routes.is_empty() {
        let default = policy.default_rule();
        vec![
            json!({"kind": "default", "name": "http", "rules": [rule_json(&default, &policy.authority)]}),
        ]
    } else {
        policy
            .routes
            .iter()
            .map(|route| {
                json!({
                    "group": route.key.group,
                    "kind": route.kind.as_str(),
                    "namespace": route.namespace,
                    "name": route.key.name,
                    "rules": route.rules.iter().map(|r| rule_json(r, &policy.authority)).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    json!({
        "namespace": policy.namespace,
        "service": policy.name,
        "port": policy.port,
        "authority": policy.authority,
        "protocol": protocol,
        "failureAccrual": policy.accrual.map(|a| json!({
            "consecutiveFailures": a.max_failures,
            "minPenalty": seconds(Some(a.min_penalty)),
            "maxPenalty": seconds(Some(a.max_penalty)),
        })),
        "routes": routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::defaults::ClusterInfo;

    #[test]
    fn a_service_ports_routes_read_as_json_and_bad_queries_are_refused() {
        let index = Arc::new(Mutex::new(Index::new(ClusterInfo::default())));
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web", "annotations": {"retry.linkerd.io/http": "500-504"}},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}
        }))
        .expect("Service");
        index
            .lock()
            .expect("index")
            .apply_service(&svc)
            .expect("valid");
        let body = answer(&index, "ns=shop&svc=web&port=80").expect("an answer");
        let value: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(value["authority"], "web.shop.svc.cluster.local:80");
        assert_eq!(value["routes"][0]["kind"], "default");
        assert_eq!(
            value["routes"][0]["rules"][0]["retry"]["statuses"][0],
            "500-504"
        );
        for (query, status) in [
            ("ns=shop&svc=web", StatusCode::BAD_REQUEST),
            ("ns=shop&svc=web&port=x", StatusCode::BAD_REQUEST),
            ("ns=shop&svc=api&port=80", StatusCode::NOT_FOUND),
            ("ns=shop&svc=web&port=81", StatusCode::NOT_FOUND),
        ] {
            assert_eq!(answer(&index, query).expect_err(query).0, status, "{query}");
        }
    }
}
