//! Property tests of what the failover controller reads from others: a
//! TrafficSplit's `failover.mesh.dev/*` annotations (a user's YAML) and the
//! proxies' metrics pages (any pod can serve one). Any input gives settings
//! or errors that name each bad annotation, and counts, never a panic.

use std::collections::BTreeMap;

use mesh_failover::settings::{PREFIX, Settings};
use mesh_failover::signals::{from_metrics_page, gateways_alive};
use proptest::prelude::*;

const KEYS: [&str; 14] = [
    "success-threshold",
    "hard-failure-threshold",
    "hysteresis",
    "window",
    "fast-window",
    "min-rps",
    "hold",
    "probe-share",
    "failover-steps",
    "failover-step-interval",
    "failback-steps",
    "failback-step-interval",
    "use-success-rate",
    "unknown-knob",
];

/// Values that look like what users write, and anything at all.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,4}(\\.[0-9]{0,3})?(%|s|ms|m|h)?",
        "(true|false|yes|no|-1|NaN|inf|1e309|0x10)",
        any::<String>(),
    ]
}

fn metric_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "(response_total|request_total|gateway_alive)\\{[a-z_]{1,12}=\"[^\"\\n]{0,20}\"(,[a-z_]{1,12}=\"[^\"\\n]{0,20}\"){0,6}\\} [-+0-9.eEnaif]{0,12}",
        "# (HELP|TYPE) [a-z_]{1,20} .{0,20}",
        ".{0,80}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn any_annotations_give_settings_or_errors_naming_them(
        pairs in prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..8)
    ) {
        let annotations: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(key, value)| (format!("{PREFIX}{key}"), value))
            .collect();
        if let Err(errors) = Settings::from_annotations(&annotations) {
            prop_assert!(!errors.is_empty());
            for error in errors {
                prop_assert!(error.annotation.starts_with(PREFIX), "{error}");
                prop_assert!(error.to_string().contains(&error.annotation), "{error}");
            }
        }
    }

    #[test]
    fn any_metrics_page_is_read_without_a_panic(lines in prop::collection::vec(metric_line(), 0..40)) {
        let page = lines.join("\n");
        let _ = from_metrics_page(&page);
        let _ = gateways_alive(&page);
    }
}
