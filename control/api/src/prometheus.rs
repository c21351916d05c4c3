//! Prometheus's query HTTP API (`/api/v1/query` and `/api/v1/query_range`),
//! transport aside: the request path for a PromQL expression and the
//! samples (or series over time) of its answer.
//! The failover controller sends it straight to a Prometheus server; the
//! CLI's `mesh viz` sends it through the API server's service proxy.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One series of a vector answer: its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (`__name__` is gone after aggregation).
    pub labels: BTreeMap<String, String>,
    /// Its value; `NaN` and infinities pass through as Prometheus wrote
    /// them, for the caller to judge.
    pub value: f64,
}

impl Sample {
    /// A sample with these labels and value.
    pub fn new(labels: &[(&str, &str)], value: f64) -> Self {
        Self {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        }
    }

    /// The value of `label`, or `""` when the series has none (as PromQL
    /// treats a missing label).
    pub fn label(&self, label: &str) -> &str {
        label_value(&self.labels, label)
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType", default)]
    result_type: String,
    #[serde(default)]
    result: serde_json::Value,
}

/// One series of a matrix answer (a range query): its labels and its
/// points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, value)`; points whose value is not a number are
    /// left out, `NaN` and infinities pass through.
    pub points: Vec<(f64, f64)>,
}

impl Range {
    /// The value of `label`, or `""`.
    pub fn label(&self, label: &str) -> &str {
        label_value(&self.labels, label)
    }
}

/// The value of `label` in `labels`, or `""`.
fn label_value<'a>(labels: &'a BTreeMap<String, String>, label: &str) -> &'a str {
    labels.get(label).map(String::as_str).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

#[derive(Debug, Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// The request path (with its query string) that asks for `promql` now.
pub fn query_path(promql: &str) -> String {
    format!("/api/v1/query?query={}", encode(promql))
}

/// The request path that asks for `promql` from `start` to `end` (unix
/// seconds) every `step` seconds.
pub fn query_range_path(promql: &str, start: f64, end: f64, step: f64) -> String {
    format!(
        "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
        encode(promql)
    )
}

/// The series of Prometheus's answer `body` to the range query `promql`;
/// errors as [`samples`] gives them.
pub fn ranges(body: &str, promql: &str) -> Result<Vec<Range>, String> {
    let series: Vec<MatrixSeries> = result(body, promql, "matrix")?;
    Ok(series
        .into_iter()
        .map(|s| Range {
            labels: s.metric,
            points: s
                .values
                .into_iter()
                .filter_map(|(t, v)| Some((t, v.parse().ok()?)))
                .collect(),
        })
        .collect())
}

/// The series of an answer of `result_type` (none when it has no data).
fn result<T: serde::de::DeserializeOwned>(
    body: &str,
    promql: &str,
    result_type: &str,
) -> Result<Vec<T>, String> {
    let answer: Answer = serde_json::from_str(body).map_err(|e| {
        format!(
            "answered {:?}: {e}",
            body.chars().take(200).collect::<String>()
        )
    })?;
    if answer.status != "success" {
        return Err(format!(
            "refused {promql:?}: {}",
            answer.error.unwrap_or_default()
        ));
    }
    let Some(data) = answer.data else {
        return Ok(Vec::new());
    };
    if data.result_type != result_type {
        return Err(format!(
            "answered {promql:?} with a {:?}, not a {result_type}",
            data.result_type
        ));
    }
    serde_json::from_value(data.result)
        .map_err(|e| format!("answered {promql:?} with malformed series: {e}"))
}

/// The samples of Prometheus's answer `body` to `promql`; an error that
/// quotes Prometheus when it refused the query, or says what was wrong
/// with an answer that is not a vector. A series whose value is not a
/// number is left out.
pub fn samples(body: &str, promql: &str) -> Result<Vec<Sample>, String> {
    let series: Vec<Series> = result(body, promql, "vector")?;
    Ok(series
        .into_iter()
        .filter_map(|s| {
            Some(Sample {
                value: s.value.1.parse().ok()?,
                labels: s.metric,
            })
        })
        .collect())
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            query_path("a{b=\"c\"} 1"),
            "/api/v1/query?query=a%7Bb%3D%22c%22%7D%201"
        );
    }

    #[test]
    fn vector_answers_become_samples() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"deployment":"web"},"value":[1.5,"2.5"]},
            {"metric":{"deployment":"db"},"value":[1.5,"NaN"]},
            {"metric":{},"value":[1.5,"lots"]}]}}"#;
        let samples = samples(body, "q").expect("answer");
        assert_eq!(samples.len(), 2, "a value that is no number is left out");
        assert_eq!(samples[0].label("deployment"), "web");
        assert_eq!(samples[0].value, 2.5);
        assert!(samples[1].value.is_nan());
        assert_eq!(samples[1].label("pod"), "");
    }

    #[test]
    fn matrix_answers_become_ranges() {
        assert_eq!(
            query_range_path("up", 100.0, 1000.5, 5.0),
            "/api/v1/query_range?query=up&start=100.000&end=1000.500&step=5"
        );
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"backend":"web"},"values":[[1,"100"],[6,"x"],[11,"0"]]}]}}"#;
        let ranges = ranges(body, "q").expect("answer");
        assert_eq!(ranges[0].label("backend"), "web");
        assert_eq!(ranges[0].points, vec![(1.0, 100.0), (11.0, 0.0)]);
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(
            super::ranges(vector, "q")
                .expect_err("a vector")
                .contains("not a matrix")
        );
    }

    #[test]
    fn refusals_and_other_shapes_are_errors() {
        let refused = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(
            samples(refused, "q{")
                .expect_err("refused")
                .contains("parse error")
        );
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            samples(matrix, "q")
                .expect_err("a matrix")
                .contains("matrix")
        );
        assert!(
            samples("<html>", "q")
                .expect_err("not JSON")
                .contains("<html>")
        );
    }
}
