//! Property tests of the route annotations users write on HTTPRoutes,
//! GRPCRoutes and Services (`retry.linkerd.io/*`, `timeout.linkerd.io/*`,
//! `balancer.linkerd.io/failure-accrual*`): any values give a policy or an
//! error that names the annotation, never a panic.

use std::collections::BTreeMap;

use mesh_api::route_policy::{self, BadAnnotation};
use proptest::prelude::*;

const KEYS: [&str; 12] = [
    route_policy::RETRY_HTTP,
    route_policy::RETRY_GRPC,
    route_policy::RETRY_LIMIT,
    route_policy::RETRY_TIMEOUT,
    route_policy::TIMEOUT_REQUEST,
    route_policy::TIMEOUT_RESPONSE,
    route_policy::TIMEOUT_IDLE,
    route_policy::FAILURE_ACCRUAL,
    "balancer.linkerd.io/failure-accrual-consecutive-max-failures",
    "balancer.linkerd.io/failure-accrual-consecutive-min-penalty",
    "balancer.linkerd.io/failure-accrual-consecutive-max-penalty",
    "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,6}(ms|s|m|h|xx)?",
        "(5xx|4xx|gateway-error|500-504|504-500|0-999|cancelled|deadline-exceeded|internal|unavailable|resource-exhausted|consecutive|,|-)(,[0-9a-z-]{0,12}){0,4}",
        "(-1|NaN|inf|1e400|18446744073709551616|0\\.5|2\\.0)",
        any::<String>(),
    ]
}

fn named(result: Result<impl Sized, BadAnnotation>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert!(KEYS.contains(&e.key.as_str()), "{e}");
        prop_assert!(e.to_string().contains(&e.key), "{e}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn any_route_annotations_give_a_policy_or_name_the_bad_one(
        pairs in prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..6)
    ) {
        let annotations: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        named(route_policy::http_retry(&annotations))?;
        named(route_policy::grpc_retry(&annotations))?;
        named(route_policy::timeouts(&annotations))?;
        named(route_policy::failure_accrual(&annotations))?;
    }
}
