//! Authorization decisions counted with Linkerd's names and labels:
//! `inbound_http_authz_allow_total` / `_deny_total` per request,
//! `inbound_tcp_authz_allow_total` / `_deny_total` per connection, and
//! `inbound_tcp_authz_terminate_total` for a connection closed because a
//! policy change no longer admits it. Labels: `target_addr`, the Server's
//! `srv_group`/`srv_kind`/`srv_name`, for HTTP the route's `route_*`, for
//! an allowed one the authorization's `authz_*`, and the client's `tls` and
//! `client_id`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::authorize::Meta;
use crate::metrics::Labels;

/// The five families.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthzMetrics {
    http_allow: Family<Labels, Counter>,
    http_deny: Family<Labels, Counter>,
    tcp_allow: Family<Labels, Counter>,
    tcp_deny: Family<Labels, Counter>,
    tcp_terminate: Family<Labels, Counter>,
}

/// A decision's labels, built up as it is made.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    labels: Labels,
}

impl Decision {
    /// For a connection to `target_addr` on the Server `server`, from a
    /// client labelled `client` (`tls`, `client_id`).
    pub(crate) fn new(target_addr: String, server: &Meta, client: Labels) -> Self {
        let mut labels: Labels = vec![("target_addr", target_addr)];
        labels.extend(object_labels(SERVER, server));
        labels.extend(client);
        Self { labels }
    }

    /// The same decision on `route`.
    pub(crate) fn on_route(&self, route: &Meta) -> Self {
        let mut labels = self.labels.clone();
        labels.extend(object_labels(ROUTE, route));
        Self { labels }
    }

    fn allowed_by(&self, authz: &Meta) -> Labels {
        let mut labels = self.labels.clone();
        labels.extend(object_labels(AUTHORIZATION, authz));
        labels
    }
}

const SERVER: [&str; 3] = ["srv_group", "srv_kind", "srv_name"];
const ROUTE: [&str; 3] = ["route_group", "route_kind", "route_name"];
const AUTHORIZATION: [&str; 3] = ["authz_group", "authz_kind", "authz_name"];

/// A policy object's labels under `names` (group, kind, name).
fn object_labels(names: [&'static str; 3], object: &Meta) -> Labels {
    let [group, kind, name] = names;
    vec![
        (group, object.group.clone()),
        (kind, object.kind.clone()),
        (name, object.name.clone()),
    ]
}

/// The policy labels Linkerd puts on an admitted request's
/// `request_total`, `response_total` and `response_latency_ms`: the
/// Server's, the route's and the authorization's (`srv_*`, `route_*`,
/// `authz_*`), which `viz stat httproute` selects by.
pub(crate) fn request_labels(server: &Meta, route: &Meta, authz: &Meta) -> Labels {
    let mut labels = object_labels(SERVER, server);
    labels.extend(object_labels(ROUTE, route));
    labels.extend(object_labels(AUTHORIZATION, authz));
    labels
}

impl AuthzMetrics {
    /// Registers the families in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        for (name, help, family) in [
            (
                "inbound_http_authz_allow",
                "HTTP requests authorized",
                &metrics.http_allow,
            ),
            (
                "inbound_http_authz_deny",
                "HTTP requests denied",
                &metrics.http_deny,
            ),
            (
                "inbound_tcp_authz_allow",
                "Connections authorized",
                &metrics.tcp_allow,
            ),
            (
                "inbound_tcp_authz_deny",
                "Connections denied",
                &metrics.tcp_deny,
            ),
            (
                "inbound_tcp_authz_terminate",
                "Connections closed because a policy change no longer authorizes them",
                &metrics.tcp_terminate,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        metrics
    }

    /// The counter of HTTP requests `decision` allows by `authz` (kept by
    /// a connection for the requests like it: see `inbound::series`).
    pub(crate) fn http_allowed(&self, decision: &Decision, authz: &Meta) -> Counter {
        self.http_allow
            .get_or_create(&decision.allowed_by(authz))
            .clone()
    }

    pub(crate) fn http_denied(&self, decision: &Decision) {
        self.http_deny.get_or_create(&decision.labels).inc();
    }

    pub(crate) fn tcp_allowed(&self, decision: &Decision, authz: &Meta) {
        self.tcp_allow
            .get_or_create(&decision.allowed_by(authz))
            .inc();
    }

    pub(crate) fn tcp_denied(&self, decision: &Decision) {
        self.tcp_deny.get_or_create(&decision.labels).inc();
    }

    pub(crate) fn tcp_terminated(&self, decision: &Decision) {
        self.tcp_terminate.get_or_create(&decision.labels).inc();
    }
}
