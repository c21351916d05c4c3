//! The golden figures of a viz row (success rate, requests per second,
//! latency percentiles) worked out from Prometheus's answers, printed the
//! way Linkerd prints them, and the latency queries that feed them.

use mesh_api::prometheus::Sample;
use serde::Serialize;

/// Success rate, requests per second and latency of one row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Golden {
    /// Successful responses of all (`None`: no traffic).
    pub success: Option<f64>,
    /// Requests per second (`None`: no series at all).
    pub rps: Option<f64>,
    /// Latency percentiles in milliseconds.
    pub latency_ms_p50: Option<f64>,
    /// See `latency_ms_p50`.
    pub latency_ms_p95: Option<f64>,
    /// See `latency_ms_p50`.
    pub latency_ms_p99: Option<f64>,
}

/// The columns of [`Golden::cells`].
pub const HEADERS: [&str; 5] = [
    "SUCCESS",
    "RPS",
    "LATENCY_P50",
    "LATENCY_P95",
    "LATENCY_P99",
];

/// A value a figure can use: finite and not negative (anything else is a
/// page's word that cannot be a count or a latency).
pub fn usable(value: f64) -> Option<f64> {
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// The p50, p95 and p99 queries of `metric`'s histogram (`…_bucket`) over
/// `window`, by `by`.
pub fn quantiles(metric: &str, selector: &str, window: &str, by: &str) -> [String; 3] {
    [0.5, 0.95, 0.99].map(|q| {
        format!(
            "histogram_quantile({q}, sum(irate({metric}_bucket{selector}[{window}])) by (le, {by}))"
        )
    })
}

/// Prometheus's answers to a requests query and its three latency
/// quantiles (as [`quantiles`] writes them), asked at once.
pub async fn ask(
    prometheus: &super::prometheus::Prometheus,
    (requests, latency): &(String, [String; 3]),
) -> anyhow::Result<(Vec<Sample>, [Vec<Sample>; 3])> {
    let [p50, p95, p99] = latency;
    let (requests, p50, p95, p99) = futures::try_join!(
        prometheus.query(requests),
        prometheus.query(p50),
        prometheus.query(p95),
        prometheus.query(p99),
    )?;
    Ok((requests, [p50, p95, p99]))
}

impl Golden {
    /// The figures of one row: `requests` are its request counts over the
    /// window (labelled `classification`), `latency` the value of each
    /// quantile's answer for it.
    pub fn from_samples<'a>(
        requests: impl IntoIterator<Item = &'a Sample>,
        latency: [Option<f64>; 3],
        window_seconds: f64,
    ) -> Self {
        let (mut success, mut total, mut seen) = (0.0, 0.0, false);
        for sample in requests {
            seen = true;
            if let Some(value) = usable(sample.value) {
                total += value;
                if sample.label("classification") == "success" {
                    success += value;
                }
            }
        }
        let [p50, p95, p99] = latency.map(|v| v.and_then(usable));
        Self {
            success: (total > 0.0).then(|| success / total),
            rps: seen.then(|| total / window_seconds),
            latency_ms_p50: p50,
            latency_ms_p95: p95,
            latency_ms_p99: p99,
        }
    }

    /// The figures of the row whose series `mine` picks out of the
    /// answers: `requests` (request counts over the window, labelled
    /// `classification`) and `latency` (each quantile's answer).
    pub fn matching(
        requests: &[Sample],
        latency: &[Vec<Sample>; 3],
        window_seconds: f64,
        mine: impl Fn(&Sample) -> bool,
    ) -> Self {
        let quantile = |i: usize| {
            latency[i]
                .iter()
                .filter(|s| mine(s))
                .find_map(|s| usable(s.value))
        };
        Self::from_samples(
            requests.iter().filter(|s| mine(s)),
            [quantile(0), quantile(1), quantile(2)],
            window_seconds,
        )
    }

    /// SUCCESS, RPS, LATENCY_P50, LATENCY_P95, LATENCY_P99 as table cells
    /// (`-` where there is no figure).
    pub fn cells(&self) -> [String; 5] {
        let dash = || "-".to_owned();
        let ms = |v: Option<f64>| v.map_or_else(dash, |v| format!("{}ms", v.round()));
        [
            self.success
                .map_or_else(dash, |s| format!("{:.2}%", s * 100.0)),
            self.rps.map_or_else(dash, |v| format!("{v:.1}rps")),
            ms(self.latency_ms_p50),
            ms(self.latency_ms_p95),
            ms(self.latency_ms_p99),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_usable_counts_only() {
        let requests = [
            Sample::new(&[("classification", "success")], 57.0),
            Sample::new(&[("classification", "failure")], 3.0),
            Sample::new(&[("classification", "success")], f64::NAN),
            Sample::new(&[("classification", "success")], -100.0),
        ];
        let golden = Golden::from_samples(&requests, [Some(1.2), None, Some(f64::INFINITY)], 30.0);
        assert_eq!(golden.success, Some(0.95));
        assert_eq!(golden.rps, Some(2.0));
        assert_eq!(golden.latency_ms_p99, None);
        assert_eq!(
            golden.cells(),
            ["95.00%", "2.0rps", "1ms", "-", "-"].map(str::to_owned)
        );
        let idle = Golden::from_samples([], [None; 3], 30.0);
        assert_eq!(idle.cells()[1], "-");
    }
}
