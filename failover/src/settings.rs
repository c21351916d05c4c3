//! The knobs of one managed TrafficSplit, read from its `failover.mesh.dev/*`
//! annotations over our defaults. Every bad value is named with its
//! annotation and why; a split with any bad value is not acted on (its
//! weights stay as they are) until it is fixed.

use std::collections::BTreeMap;
use std::time::Duration;

/// The prefix of our annotations.
pub const PREFIX: &str = "failover.mesh.dev/";

/// How a split fails over and back.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Under this success rate (with enough volume) the primary is browned
    /// out (`success-threshold`, default 95 %).
    pub threshold: f64,
    /// Under this success rate over the fast window a backend is down, as
    /// if it had no endpoint (`hard-failure-threshold`, default 50 %).
    pub hard_threshold: f64,
    /// A primary that failed over counts as recovered only at
    /// `threshold + hysteresis` (`hysteresis`, default 2 %).
    pub hysteresis: f64,
    /// The sliding window success rates are measured over (`window`, 10 s).
    pub window: Duration,
    /// The short window hard failures are seen in (`fast-window`, 2 s).
    pub fast_window: Duration,
    /// Below this many requests per second the success rate says nothing
    /// (`min-rps`, 1).
    pub min_rps: f64,
    /// How long the primary must stay recovered before failing back
    /// (`hold`, 30 s).
    pub hold: Duration,
    /// The share of traffic (percent) the primary keeps while failed over,
    /// so that its recovery is judged on real requests (`probe-share`, 1 %).
    pub probe_share: u32,
    /// The shares (percent) moved to the secondaries, step by step, on a
    /// brown-out (`failover-steps`, 25 %, 50 %, 75 %, 100 %).
    pub failover_steps: Vec<u32>,
    /// Time between brown-out steps (`failover-step-interval`, 1 s).
    pub failover_interval: Duration,
    /// The shares (percent) given back to the primary, step by step
    /// (`failback-steps`, 10 %, 25 %, 50 %, 100 %).
    pub failback_steps: Vec<u32>,
    /// Time between failback steps (`failback-step-interval`, 5 s).
    pub failback_interval: Duration,
    /// Judge backends on success rates too (`use-success-rate`, true);
    /// `false` is Linkerd's rule: readiness (and gateway liveness) only.
    pub use_success_rate: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            threshold: 0.95,
            hard_threshold: 0.5,
            hysteresis: 0.02,
            window: Duration::from_secs(10),
            fast_window: Duration::from_secs(2),
            min_rps: 1.0,
            hold: Duration::from_secs(30),
            probe_share: 1,
            failover_steps: vec![25, 50, 75, 100],
            failover_interval: Duration::from_secs(1),
            failback_steps: vec![10, 25, 50, 100],
            failback_interval: Duration::from_secs(5),
            use_success_rate: true,
        }
    }
}

/// One bad annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}: {value:?} {reason}")]
pub struct Invalid {
    /// The annotation.
    pub annotation: String,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl Settings {
    /// The settings `annotations` give, or every bad one.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Self, Vec<Invalid>> {
        let mut reader = Reader {
            annotations,
            errors: Vec::new(),
        };
        let d = Self::default();
        let settings = Self {
            threshold: reader.get("success-threshold", d.threshold, share),
            hard_threshold: reader.get("hard-failure-threshold", d.hard_threshold, share),
            hysteresis: reader.get("hysteresis", d.hysteresis, share),
            window: reader.get("window", d.window, duration),
            fast_window: reader.get("fast-window", d.fast_window, duration),
            min_rps: reader.get("min-rps", d.min_rps, rate),
            hold: reader.get("hold", d.hold, duration),
            probe_share: reader.get("probe-share", d.probe_share, percent),
            failover_steps: reader.get("failover-steps", d.failover_steps, steps),
            failover_interval: reader.get("failover-step-interval", d.failover_interval, duration),
            failback_steps: reader.get("failback-steps", d.failback_steps, steps),
            failback_interval: reader.get("failback-step-interval", d.failback_interval, duration),
            use_success_rate: reader.get("use-success-rate", d.use_success_rate, boolean),
        };
        reader.check(
            "hard-failure-threshold",
            settings.hard_threshold < settings.threshold,
            "must be under the success threshold",
        );
        reader.check(
            "hysteresis",
            settings.threshold + settings.hysteresis <= 1.0,
            "puts the recovery rate (threshold + hysteresis) over 100 %",
        );
        reader.check(
            "fast-window",
            settings.fast_window <= settings.window,
            "must not be longer than the window",
        );
        reader.check(
            "probe-share",
            settings.probe_share <= 50,
            "must be at most 50 %",
        );
        if reader.errors.is_empty() {
            Ok(settings)
        } else {
            Err(reader.errors)
        }
    }
}

struct Reader<'a> {
    annotations: &'a BTreeMap<String, String>,
    errors: Vec<Invalid>,
}

impl Reader<'_> {
    fn get<T>(&mut self, key: &str, default: T, parse: fn(&str) -> Result<T, String>) -> T {
        let annotation = format!("{PREFIX}{key}");
        let Some(value) = self.annotations.get(&annotation) else {
            return default;
        };
        parse(value.trim()).unwrap_or_else(|reason| {
            self.errors.push(Invalid {
                annotation,
                value: value.clone(),
                reason,
            });
            default
        })
    }

    /// Records `reason` against `key` when `ok` is false and its own value
    /// was fine (a bad value is reported once, for itself).
    fn check(&mut self, key: &str, ok: bool, reason: &str) {
        let annotation = format!("{PREFIX}{key}");
        if ok || self.errors.iter().any(|e| e.annotation == annotation) {
            return;
        }
        let value = self
            .annotations
            .get(&annotation)
            .cloned()
            .unwrap_or_default();
        self.errors.push(Invalid {
            annotation,
            value,
            reason: reason.to_owned(),
        });
    }
}

/// `95%` or `0.95`: a share from 0 to 1.
fn share(value: &str) -> Result<f64, String> {
    let parsed = match value.strip_suffix('%') {
        Some(number) => number.trim().parse::<f64>().map(|p| p / 100.0),
        None => value.parse::<f64>(),
    };
    match parsed {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err("is not a share from 0 to 1 (0.95) or a percentage (95%)".into()),
    }
}

/// A whole percentage, `1%` or `1`.
fn percent(value: &str) -> Result<u32, String> {
    value
        .trim_end_matches('%')
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| "is not a whole percentage from 0 to 100 (1%)".into())
}

fn duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "is not a duration above zero (10s, 500ms)".into())
}

fn boolean(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("is not true or false".into()),
    }
}

fn rate(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 0.0)
        .ok_or_else(|| "is not a number of requests per second (1, 0.5)".into())
}

/// `25%,50%,100%`: increasing whole percentages ending at 100.
fn steps(value: &str) -> Result<Vec<u32>, String> {
    let steps: Option<Vec<u32>> = value.split(',').map(|s| percent(s).ok()).collect();
    match steps {
        Some(steps)
            if steps.last() == Some(&100)
                && steps.first().is_some_and(|s| *s > 0)
                && steps.windows(2).all(|w| w[0] < w[1]) =>
        {
            Ok(steps)
        }
        _ => Err("is not a list of increasing percentages ending at 100% (25%,50%,100%)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            Settings::from_annotations(&BTreeMap::new()),
            Ok(Settings::default())
        );
        let settings = Settings::from_annotations(&annotations(&[
            ("success-threshold", "90%"),
            ("window", "30s"),
            ("probe-share", "5%"),
            ("failback-steps", "50%,100%"),
            ("min-rps", "0.5"),
            ("use-success-rate", "false"),
        ]))
        .expect("valid");
        assert_eq!(settings.threshold, 0.9);
        assert_eq!(settings.window, Duration::from_secs(30));
        assert_eq!(settings.probe_share, 5);
        assert_eq!(settings.failback_steps, vec![50, 100]);
        assert_eq!(settings.min_rps, 0.5);
        assert!(!settings.use_success_rate);
    }

    #[test]
    fn every_bad_value_is_named_with_its_annotation() {
        let errors = Settings::from_annotations(&annotations(&[
            ("success-threshold", "150%"),
            ("window", "soon"),
            ("failover-steps", "50%,25%"),
            ("hard-failure-threshold", "0.99"),
        ]))
        .expect_err("invalid");
        let named: Vec<&str> = errors.iter().map(|e| e.annotation.as_str()).collect();
        assert_eq!(
            named,
            [
                "failover.mesh.dev/success-threshold",
                "failover.mesh.dev/window",
                "failover.mesh.dev/failover-steps",
                "failover.mesh.dev/hard-failure-threshold",
            ]
        );
        assert!(errors[1].to_string().contains("\"soon\" is not a duration"));
        assert!(
            errors[3]
                .to_string()
                .contains("under the success threshold")
        );
    }
}
