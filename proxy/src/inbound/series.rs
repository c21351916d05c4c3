//! What an HTTP connection's admitted requests are counted under, resolved
//! once per kind of request. The requests on one connection mostly repeat
//! (the same caller, route, authorization and authority), and building
//! their label sets for every request used to be most of what the inbound
//! side allocated per request.
//!
//! A kind is the policy in force (held here, so the route and
//! authorization it points into stay where they are and their addresses
//! can key a kind), the route and authorization that admitted the request,
//! who the caller is (a trusted gateway speaks for many clients on one
//! connection) and the authority. The client chooses the authority, so the
//! kinds a connection keeps are bounded ([`MAX_KINDS`]): a client that
//! sends ever new ones costs what an uncached request costs, not memory.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::policy::authorize::{Authorization, Route, ServerPolicy};
use crate::cache::{KeptUnder, WhenFull};
use crate::metrics::Series;

/// How many kinds of request one connection keeps resolved.
pub(crate) const MAX_KINDS: usize = 16;

/// An admitted request, as far as its metrics are concerned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted<'a> {
    /// The policy that admitted it.
    pub policy: &'a Arc<ServerPolicy>,
    /// The route it took (none: a policy without routes).
    pub route: Option<&'a Route>,
    /// The authorization that admitted it.
    pub authorization: &'a Authorization,
    /// The caller's identity (the connection's, or the one a trusted
    /// gateway speaks for).
    pub caller: Option<&'a str>,
    /// The request's authority (or `Host`).
    pub authority: &'a str,
}

/// What a kind of request is counted under: the authorization counter
/// (`inbound_http_authz_allow_total`) and the golden series.
#[derive(Debug, Clone)]
pub(crate) struct Counted {
    /// Its `inbound_http_authz_allow_total`.
    pub allowed: Counter,
    /// Its `request_total`, `response_total` and `response_latency_ms`.
    pub series: Arc<Series>,
}

/// The kinds of request one connection has seen, under the policy they
/// were resolved with (a new policy forgets them).
#[derive(Debug)]
pub(crate) struct ConnectionSeries {
    kinds: KeptUnder<Arc<ServerPolicy>, Kind, Counted>,
}

impl Default for ConnectionSeries {
    fn default() -> Self {
        Self {
            kinds: KeptUnder::new(MAX_KINDS, WhenFull::KeepOld),
        }
    }
}

/// One kind of request. The route and authorization are known by their
/// addresses in the policy the kinds were made under.
#[derive(Debug)]
struct Kind {
    route: Option<usize>,
    authorization: usize,
    caller: Option<String>,
    authority: String,
}

impl Admitted<'_> {
    fn route_address(&self) -> Option<usize> {
        self.route.map(|route| std::ptr::from_ref(route).addr())
    }

    fn authorization_address(&self) -> usize {
        std::ptr::from_ref(self.authorization).addr()
    }

    fn kind(&self) -> Kind {
        Kind {
            route: self.route_address(),
            authorization: self.authorization_address(),
            caller: self.caller.map(str::to_owned),
            authority: self.authority.to_owned(),
        }
    }
}

impl Kind {
    fn is(&self, admitted: &Admitted<'_>) -> bool {
        self.route == admitted.route_address()
            && self.authorization == admitted.authorization_address()
            && self.caller.as_deref() == admitted.caller
            && self.authority == admitted.authority
    }
}

impl ConnectionSeries {
    /// What `admitted` is counted under: kept from an earlier request of
    /// its kind, or made by `resolve` (and kept, while there is room).
    pub(crate) fn counted(
        &self,
        admitted: &Admitted<'_>,
        resolve: impl FnOnce() -> Counted,
    ) -> Counted {
        self.kinds.get_or_insert_with(
            admitted.policy,
            Arc::ptr_eq,
            |kind| kind.is(admitted),
            || (admitted.kind(), resolve()),
        )
    }

    /// How many kinds it keeps now.
    #[cfg(test)]
    fn kinds(&self) -> usize {
        self.kinds.len()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::inbound::policy::authorize::Client;
    use crate::metrics::HttpMetrics;

    const CLIENT: &str = "web.east.serviceaccount.identity.linkerd.cluster.local";
    const OTHER: &str = "admin.east.serviceaccount.identity.linkerd.cluster.local";

    fn policy() -> Arc<ServerPolicy> {
        Arc::new(ServerPolicy::default_named("all-unauthenticated", &[]).expect("policy"))
    }

    /// Counts `admitted` on `series`, saying whether it had to resolve it.
    fn resolved(series: &ConnectionSeries, admitted: &Admitted<'_>) -> bool {
        let resolved = Cell::new(false);
        let metrics = HttpMetrics::register(&mut prometheus_client::registry::Registry::default());
        series.counted(admitted, || {
            resolved.set(true);
            Counted {
                allowed: Counter::default(),
                series: metrics.series(Vec::new()),
            }
        });
        resolved.get()
    }

    fn admitted<'a>(
        policy: &'a Arc<ServerPolicy>,
        caller: Option<&'a str>,
        authority: &'a str,
    ) -> Admitted<'a> {
        let client = Client {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            mesh_tls: caller.is_some(),
            identity: caller,
        };
        Admitted {
            policy,
            route: None,
            authorization: policy.authorize_connection(&client).expect("admitted"),
            caller,
            authority,
        }
    }

    #[test]
    fn a_repeated_request_is_resolved_once_and_a_new_policy_resolves_it_again() {
        let series = ConnectionSeries::default();
        let first = policy();
        assert!(resolved(&series, &admitted(&first, Some(CLIENT), "web:80")));
        assert!(!resolved(
            &series,
            &admitted(&first, Some(CLIENT), "web:80")
        ));
        assert!(resolved(
            &series,
            &admitted(&first, Some(CLIENT), "web:8080")
        ));
        let second = policy();
        assert!(
            resolved(&series, &admitted(&second, Some(CLIENT), "web:80")),
            "a new policy's routes and authorizations are new objects"
        );
        assert_eq!(series.kinds(), 1, "what the old policy resolved is gone");
    }

    /// A trusted gateway's connection carries requests of many clients: one
    /// client's requests must never be counted under another's identity.
    #[test]
    fn each_caller_a_gateway_speaks_for_is_counted_as_itself() {
        let series = ConnectionSeries::default();
        let policy = policy();
        assert!(resolved(
            &series,
            &admitted(&policy, Some(CLIENT), "web:80")
        ));
        assert!(resolved(&series, &admitted(&policy, Some(OTHER), "web:80")));
        assert!(resolved(&series, &admitted(&policy, None, "web:80")));
        assert!(!resolved(
            &series,
            &admitted(&policy, Some(OTHER), "web:80")
        ));
    }

    /// The authority is the client's to choose: ever new ones cost an
    /// uncached request each, never memory.
    #[test]
    fn ever_new_authorities_do_not_grow_a_connections_memory() {
        let series = ConnectionSeries::default();
        let policy = policy();
        for i in 0..10_000 {
            let authority = format!("web-{i}:80");
            resolved(&series, &admitted(&policy, Some(CLIENT), &authority));
        }
        assert_eq!(series.kinds(), MAX_KINDS);
        assert!(resolved(
            &series,
            &admitted(&policy, Some(CLIENT), "web-10000:80")
        ));
    }
}
