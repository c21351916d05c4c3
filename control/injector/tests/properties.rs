//! Property tests of the `config.linkerd.io/*` annotations a namespace or
//! a pod template carries (a user's YAML, read by the injector and by
//! `mesh inject`): any values give proxy values or an error that names the
//! annotation and where it was, never a panic.

use std::collections::BTreeMap;

use mesh_injector::{Overrides, Values};
use proptest::prelude::*;

const KEYS: [&str; 18] = [
    "config.linkerd.io/default-inbound-policy",
    "config.linkerd.io/enable-gateway",
    "config.linkerd.io/opaque-ports",
    "config.linkerd.io/proxy-cpu-limit",
    "config.linkerd.io/proxy-cpu-request",
    "config.linkerd.io/proxy-image",
    "config.linkerd.io/proxy-init-image",
    "config.linkerd.io/proxy-log-level",
    "config.linkerd.io/proxy-memory-limit",
    "config.linkerd.io/proxy-memory-request",
    "config.linkerd.io/proxy-uid",
    "config.linkerd.io/proxy-version",
    "config.linkerd.io/skip-inbound-ports",
    "config.linkerd.io/skip-outbound-ports",
    "config.linkerd.io/skip-subnets",
    "config.alpha.linkerd.io/proxy-wait-before-exit-seconds",
    mesh_api::labels::GATEWAY_EXPORTS_ANNOTATION,
    mesh_api::labels::GATEWAY_RESET_KEY_SECRET_ANNOTATION,
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,6}(m|Mi|Gi|k)?",
        "([0-9]{1,6}(-[0-9]{1,6})?)(,[0-9a-z-]{0,8}){0,4}",
        "([0-9]{1,3}\\.){3}[0-9]{1,3}/[0-9]{1,3}",
        "(deny|all-unauthenticated|audit|-3|4294967296|true|\\{\\}|\\{\"matchLabels\":\\{\\}\\})",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn any_config_annotations_give_values_or_name_the_bad_one(
        pairs in prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..6)
    ) {
        let annotations: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        let base = Values::new(String::new(), "v0.1.0");
        let applied = Overrides::default()
            .layer(Some(&annotations), "pod web")
            .apply(&base);
        if let Err(e) = applied {
            prop_assert!(KEYS.contains(&e.annotation.as_str()), "{e}");
            prop_assert_eq!(e.on.as_str(), "pod web");
            let message = e.to_string();
            prop_assert!(message.contains(&e.annotation), "{}", message);
        }
    }
}
