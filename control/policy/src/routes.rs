//! What inbound and outbound routes share: an HTTPRoute rule's matches
//! (path, method, headers, query parameters), validated by field.

use crate::index::Invalid;
use crate::index::model::invalid;

/// A route's path match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Exactly this path.
    Exact(String),
    /// This path and those under it.
    Prefix(String),
    /// Paths the (whole-path) regular expression matches.
    Regex(String),
}

/// A header's or query parameter's value match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    /// Exactly this value.
    Exact(String),
    /// Values the (whole-value) regular expression matches.
    Regex(String),
}

/// One way a request matches a route: every part set must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteMatch {
    /// Its path (none: any).
    pub path: Option<PathMatch>,
    /// Its method (none: any).
    pub method: Option<String>,
    /// Headers, by name.
    pub headers: Vec<(String, ValueMatch)>,
    /// Query parameters, by name.
    pub query_params: Vec<(String, ValueMatch)>,
}

impl std::fmt::Display for RouteMatch {
    /// `GET /api*`, `* /books header x-team=ops query v~[0-9]+`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = match &self.path {
            Some(PathMatch::Exact(p)) => p.clone(),
            Some(PathMatch::Prefix(p)) => format!("{p}*"),
            Some(PathMatch::Regex(p)) => format!("~{p}"),
            None => "*".into(),
        };
        write!(f, "{} {path}", self.method.as_deref().unwrap_or("*"))?;
        let headers = self.headers.iter().map(|h| ("header", h));
        for (what, (name, value)) in headers.chain(self.query_params.iter().map(|q| ("query", q))) {
            match value {
                ValueMatch::Exact(v) => write!(f, " {what} {name}={v}")?,
                ValueMatch::Regex(r) => write!(f, " {what} {name}~{r}")?,
            }
        }
        Ok(())
    }
}

/// A rule's matches; a rule without any matches every request (the
/// prefix `/`).
pub fn rule_matches(
    rule: &mesh_api::crds::http_route::Rule,
    r: usize,
) -> Result<Vec<RouteMatch>, Invalid> {
    if rule.matches.is_empty() {
        return Ok(vec![RouteMatch {
            path: Some(PathMatch::Prefix("/".into())),
            ..RouteMatch::default()
        }]);
    }
    let mut matches = Vec::new();
    for (m, route_match) in rule.matches.iter().enumerate() {
        let field = format!("spec.rules[{r}].matches[{m}]");
        let path = match &route_match.path {
            None => Some(PathMatch::Prefix("/".into())),
            Some(path) => {
                let value = path.value.clone().unwrap_or_else(|| "/".into());
                Some(match path.type_.as_deref().unwrap_or("PathPrefix") {
                    "Exact" => PathMatch::Exact(value),
                    "PathPrefix" => PathMatch::Prefix(value),
                    "RegularExpression" => {
                        check_regex(&value, &format!("{field}.path.value"))?;
                        PathMatch::Regex(value)
                    }
                    other => {
                        return Err(invalid(
                            &format!("{field}.path.type"),
                            format!("{other:?} is not Exact, PathPrefix or RegularExpression"),
                        ));
                    }
                })
            }
        };
        if let Some(method) = &route_match.method {
            http::Method::from_bytes(method.as_bytes()).map_err(|_| {
                invalid(
                    &format!("{field}.method"),
                    format!("{method:?} is not an HTTP method"),
                )
            })?;
        }
        let headers = value_matches(&route_match.headers, &format!("{field}.headers"), |name| {
            http::HeaderName::from_bytes(name.as_bytes()).is_ok()
        })?;
        let query_params = value_matches(
            &route_match.query_params,
            &format!("{field}.queryParams"),
            |name| !name.is_empty(),
        )?;
        matches.push(RouteMatch {
            path,
            method: route_match.method.clone(),
            headers,
            query_params,
        });
    }
    Ok(matches)
}

pub(crate) fn check_regex(pattern: &str, field: &str) -> Result<(), Invalid> {
    regex::Regex::new(pattern)
        .map(drop)
        .map_err(|e| invalid(field, e.to_string()))
}

/// Header or query parameter matches, each checked: a valid name, a type
/// of `Exact` (the default) or `RegularExpression` that compiles.
pub(crate) fn value_matches(
    matches: &[mesh_api::crds::http_route::ValueMatch],
    field: &str,
    valid_name: impl Fn(&str) -> bool,
) -> Result<Vec<(String, ValueMatch)>, Invalid> {
    matches
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let field = format!("{field}[{i}]");
            if !valid_name(&m.name) {
                return Err(invalid(
                    &format!("{field}.name"),
                    format!("{:?} is not a valid name", m.name),
                ));
            }
            let value = match m.type_.as_deref().unwrap_or("Exact") {
                "Exact" => ValueMatch::Exact(m.value.clone()),
                "RegularExpression" => {
                    check_regex(&m.value, &format!("{field}.value"))?;
                    ValueMatch::Regex(m.value.clone())
                }
                other => {
                    return Err(invalid(
                        &format!("{field}.type"),
                        format!("{other:?} is not Exact or RegularExpression"),
                    ));
                }
            };
            Ok((m.name.clone(), value))
        })
        .collect()
}
