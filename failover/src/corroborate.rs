//! A client's word checked against the backend's: what a client's proxy
//! says a backend answered counts only as far as that backend's own
//! proxies say they served the client's identity.
//!
//! Every meshed pod of a split's namespace is one of its clients, and its
//! metrics page is its own word: a rogue pod can claim a million failures
//! of the primary without sending a request. Where a backend's pods are
//! meshed and read in the same round, their inbound
//! `response_total{tls="true",client_id}` says what each client identity
//! actually got, and a claim is cut to it, successes and failures each
//! (a client's identity is its ServiceAccount's, so pods sharing one are
//! judged together). A backend whose pods cannot be read (a mirror of
//! another cluster, unmeshed pods) is judged on the clients' word alone.
//!
//! What a client counts that never reached the backend's proxy (a
//! connection refused, a reset) is not believed for a backend that can be
//! read: a backend that is gone is seen by readiness instead.

use std::collections::BTreeMap;

use crate::signals::{BackendKey, ClientCounts};
use crate::window::Counts;

/// Outcomes a backend's proxies served in one round, by the client's
/// mesh identity (`client_id`).
pub type Served = BTreeMap<String, Counts>;

/// One client's claims of a round.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The start of its mesh identity
    /// (`<serviceaccount>.<namespace>.serviceaccount.identity.`), if known.
    pub identity: Option<String>,
    /// What it says each backend answered.
    pub counts: ClientCounts,
}

/// The start of the mesh identity of a pod running as `service_account`
/// in `namespace` (the trust domain follows).
pub fn identity_prefix(service_account: &str, namespace: &str) -> String {
    format!("{service_account}.{namespace}.serviceaccount.identity.")
}

/// What the round's claims count for, per backend, given what the
/// backends that could be read served (`served`, by backend); and how
/// many (backend, identity) claims were cut by more than a margin (a few
/// requests in flight at the scrape, or 10 %).
pub fn bound(
    claims: &[Claim],
    served: &BTreeMap<BackendKey, Served>,
) -> (BTreeMap<BackendKey, Counts>, u64) {
    let mut counted: BTreeMap<BackendKey, Counts> = BTreeMap::new();
    let mut claimed: BTreeMap<(BackendKey, Option<&str>), Counts> = BTreeMap::new();
    for claim in claims {
        for (backend, counts) in &claim.counts {
            if served.contains_key(backend) {
                *claimed
                    .entry((backend.clone(), claim.identity.as_deref()))
                    .or_default() += *counts;
            } else {
                *counted.entry(backend.clone()).or_default() += *counts;
            }
        }
    }
    let mut cut = 0;
    for ((backend, identity), claim) in claimed {
        let mut confirmed = Counts::default();
        if let Some(identity) = identity {
            for (client_id, counts) in &served[&backend] {
                if client_id.starts_with(identity) {
                    confirmed += *counts;
                }
            }
        }
        let allowed = Counts {
            success: claim.success.min(confirmed.success),
            failure: claim.failure.min(confirmed.failure),
        };
        if claim.total() - allowed.total() > (claim.total() * 0.1).max(5.0) {
            cut += 1;
            tracing::debug!(
                ?backend,
                ?identity,
                ?claim,
                ?confirmed,
                "a client's claims cut to what the backend served it"
            );
        }
        *counted.entry(backend).or_default() += allowed;
    }
    (counted, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(service: &str) -> BackendKey {
        ("shop".into(), service.into())
    }

    fn counts(success: f64, failure: f64) -> Counts {
        Counts { success, failure }
    }

    fn claim(identity: &str, service: &str, success: f64, failure: f64) -> Claim {
        Claim {
            identity: Some(identity_prefix(identity, "shop")),
            counts: [(key(service), counts(success, failure))].into(),
        }
    }

    const WEB: &str = "web.shop.serviceaccount.identity.linkerd.cluster.local";

    /// What podinfo's proxies served the web identity.
    fn served_to_web(success: f64, failure: f64) -> BTreeMap<BackendKey, Served> {
        [(
            key("podinfo"),
            [(WEB.to_owned(), counts(success, failure))].into(),
        )]
        .into()
    }

    #[test]
    fn a_claim_counts_as_far_as_the_backend_served_it() {
        let served = served_to_web(100.0, 0.0);
        // The honest client and a rogue pod of another ServiceAccount that
        // sent nothing but claims a thousand failures.
        let claims = [
            claim("web", "podinfo", 100.0, 0.0),
            claim("rogue", "podinfo", 0.0, 1000.0),
        ];
        let (counted, cut) = bound(&claims, &served);
        assert_eq!(counted[&key("podinfo")], counts(100.0, 0.0));
        assert_eq!(cut, 1, "the rogue's claim is cut");
    }

    #[test]
    fn pods_sharing_an_identity_are_bounded_together_and_neither_class_grows() {
        let served = served_to_web(80.0, 20.0);
        // A second pod of the same ServiceAccount claims the primary is
        // healthy while it is not: successes beyond what was served count
        // for nothing, the real failures stay.
        let claims = [
            claim("web", "podinfo", 80.0, 20.0),
            claim("web", "podinfo", 5000.0, 0.0),
        ];
        let (counted, _) = bound(&claims, &served);
        assert_eq!(counted[&key("podinfo")], counts(80.0, 20.0));
    }

    #[test]
    fn a_backend_that_cannot_be_read_is_judged_on_the_clients_word() {
        let served: BTreeMap<BackendKey, Served> = [(key("podinfo"), Served::new())].into();
        let claims = [claim("web", "podinfo-east", 10.0, 90.0)];
        let (counted, cut) = bound(&claims, &served);
        assert_eq!(counted[&key("podinfo-east")], counts(10.0, 90.0));
        assert_eq!(cut, 0);
    }

    #[test]
    fn requests_in_flight_at_the_scrape_are_not_reported_as_cut() {
        let served: BTreeMap<BackendKey, Served> =
            [(key("podinfo"), [(WEB.to_owned(), counts(97.0, 0.0))].into())].into();
        let (counted, cut) = bound(&[claim("web", "podinfo", 100.0, 0.0)], &served);
        assert_eq!(counted[&key("podinfo")], counts(97.0, 0.0));
        assert_eq!(cut, 0);
    }

    #[test]
    fn a_client_without_a_known_identity_is_confirmed_by_nothing() {
        let served = served_to_web(100.0, 0.0);
        let anonymous = Claim {
            identity: None,
            counts: [(key("podinfo"), counts(0.0, 50.0))].into(),
        };
        let (counted, _) = bound(&[anonymous], &served);
        assert_eq!(counted[&key("podinfo")], counts(0.0, 0.0));
    }
}
