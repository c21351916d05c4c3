//! Events in, the expected policy of a pod port out, in the style of
//! Linkerd's policy-controller index tests.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use mesh_api::crds::policy::{
    AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication, Server,
};

use super::defaults::ClusterInfo;
use super::*;

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

fn pod(ns: &str, name: &str, labels: serde_json::Value, annotations: serde_json::Value) -> Pod {
    object(serde_json::json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{
            "name": "app",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9090}],
            "readinessProbe": {"httpGet": {"port": "admin", "path": "/ready"}},
            "livenessProbe": {"httpGet": {"port": 9090, "path": "/live"}}
        }]}
    }))
}

fn namespace(name: &str, policy: Option<&str>) -> Namespace {
    object(serde_json::json!({
        "metadata": {"name": name, "annotations": policy.map(|p| serde_json::json!({"config.linkerd.io/default-inbound-policy": p})).unwrap_or(serde_json::json!({}))}
    }))
}

fn server(ns: &str, name: &str, spec: serde_json::Value) -> Server {
    object(serde_json::json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
}

fn index() -> Index {
    Index::new(ClusterInfo::default())
}

/// An index with pod `prod/web-1` (`app: web`) and the Server `web`
/// selecting its port 8080.
fn index_with_web_server() -> Index {
    let mut index = index();
    index.apply_pod(&pod(
        "prod",
        "web-1",
        serde_json::json!({"app": "web"}),
        serde_json::json!({}),
    ));
    index
        .apply_server(&server(
            "prod",
            "web",
            serde_json::json!({"podSelector": {"matchLabels": {"app": "web"}}, "port": 8080}),
        ))
        .expect("valid");
    index
}

fn authz_names(server: &InboundServer) -> Vec<AuthorizationRef> {
    server.authorizations.keys().cloned().collect()
}

fn suffix(text: &str) -> IdentityMatch {
    IdentityMatch::Suffix(text.split('.').map(str::to_owned).collect())
}

#[test]
fn an_unknown_pod_has_no_policy_and_a_known_one_the_cluster_default() {
    let mut index = index();
    assert_eq!(index.inbound_server("prod", "web-1", 8080), None);
    index.apply_pod(&pod(
        "prod",
        "web-1",
        serde_json::json!({}),
        serde_json::json!({}),
    ));
    let server = index
        .inbound_server("prod", "web-1", 8080)
        .expect("known pod");
    assert_eq!(server.reference, ServerRef::Default("all-unauthenticated"));
    assert_eq!(
        server.protocol,
        Protocol::Detect {
            timeout: Duration::from_secs(10)
        }
    );
    let authz = &server.authorizations[&AuthorizationRef::Default("all-unauthenticated")];
    assert_eq!(authz.authentication, ClientAuthentication::Unauthenticated);
    assert_eq!(
        authz
            .networks
            .iter()
            .map(|n| n.net.to_string())
            .collect::<Vec<_>>(),
        ["0.0.0.0/0", "::/0"]
    );
    assert!(
        server
            .http_routes
            .contains_key(&RouteRef::Default("default"))
    );
    assert!(
        !server.http_routes.contains_key(&RouteRef::Default("probe")),
        "no probe on 8080"
    );
}

#[test]
fn every_default_policy_allows_what_its_name_says() {
    let cluster = ClusterInfo::default();
    for (name, networks, authenticated) in [
        ("all-unauthenticated", 2, false),
        ("all-authenticated", 2, true),
        ("cluster-unauthenticated", cluster.networks.len(), false),
        ("cluster-authenticated", cluster.networks.len(), true),
        ("audit", 2, false),
    ] {
        let policy: DefaultPolicy = name.parse().expect("a policy");
        let authzs = policy.authorizations(&cluster);
        assert_eq!(authzs.len(), 1, "{name}");
        let (reference, authz) = &authzs[0];
        assert_eq!(reference, &AuthorizationRef::Default(name));
        assert_eq!(authz.networks.len(), networks, "{name}");
        assert_eq!(
            matches!(
                authz.authentication,
                ClientAuthentication::TlsAuthenticated(_)
            ),
            authenticated,
            "{name}"
        );
    }
    assert!(DefaultPolicy::Deny.authorizations(&cluster).is_empty());
}

#[test]
fn a_pod_annotation_beats_its_namespace_which_beats_the_cluster() {
    let mut index = Index::new(ClusterInfo {
        default_policy: "cluster-authenticated".parse().expect("policy"),
        ..ClusterInfo::default()
    });
    index.apply_pod(&pod("a", "p", serde_json::json!({}), serde_json::json!({})));
    index.apply_pod(&pod("b", "p", serde_json::json!({}), serde_json::json!({})));
    index.apply_pod(&pod(
        "b",
        "q",
        serde_json::json!({}),
        serde_json::json!({"config.linkerd.io/default-inbound-policy": "all-unauthenticated"}),
    ));
    index
        .apply_namespace(&namespace("b", Some("deny")))
        .expect("valid");
    fn reference(index: &Index, ns: &str, pod: &str) -> ServerRef {
        index.inbound_server(ns, pod, 8080).expect("pod").reference
    }
    assert_eq!(
        reference(&index, "a", "p"),
        ServerRef::Default("cluster-authenticated")
    );
    assert_eq!(reference(&index, "b", "p"), ServerRef::Default("deny"));
    assert_eq!(
        reference(&index, "b", "q"),
        ServerRef::Default("all-unauthenticated")
    );

    let error = index
        .apply_namespace(&namespace("b", Some("allow-all")))
        .expect_err("unknown policy");
    assert!(error.field.contains("default-inbound-policy"), "{error}");
    assert_eq!(
        reference(&index, "b", "p"),
        ServerRef::Default("deny"),
        "a bad annotation keeps the last valid one"
    );
}

#[test]
fn ports_requiring_identity_and_opaque_ports_change_the_default() {
    let mut index = index();
    index.apply_pod(&pod(
        "prod",
        "db",
        serde_json::json!({}),
        serde_json::json!({
            "config.linkerd.io/proxy-require-identity-inbound-ports": "8080",
            "config.linkerd.io/opaque-ports": "9090"
        }),
    ));
    let web = index.inbound_server("prod", "db", 8080).expect("pod");
    assert_eq!(web.reference, ServerRef::Default("all-authenticated"));
    let admin = index.inbound_server("prod", "db", 9090).expect("pod");
    assert_eq!(admin.reference, ServerRef::Default("all-unauthenticated"));
    assert_eq!(admin.protocol, Protocol::Opaque);
}

#[test]
fn under_deny_only_kubelets_probes_get_in() {
    let mut index = index();
    index
        .apply_namespace(&namespace("prod", Some("deny")))
        .expect("valid");
    index.apply_pod(&pod(
        "prod",
        "web-1",
        serde_json::json!({}),
        serde_json::json!({}),
    ));
    let admin = index.inbound_server("prod", "web-1", 9090).expect("pod");
    assert!(admin.authorizations.is_empty(), "deny allows nothing");
    let probe = &admin.http_routes[&RouteRef::Default("probe")];
    let get = |path: &str| RouteMatch {
        path: Some(PathMatch::Exact(path.into())),
        method: Some("GET".into()),
        ..RouteMatch::default()
    };
    assert_eq!(
        probe.matches,
        [get("/live"), get("/ready")],
        "both probes, the named port resolved"
    );
    let authz = &probe.authorizations[&AuthorizationRef::Default("probe")];
    assert_eq!(authz.authentication, ClientAuthentication::Unauthenticated);
}

/// The guide's manifests: a Server for `app: my-service` on 8080 speaking
/// HTTP/2, an AuthorizationPolicy requiring a MeshTLSAuthentication for
/// every identity of the `production` namespace.
#[test]
fn the_guides_server_policy_and_authentication() {
    let mut index = index();
    index.apply_pod(&pod(
        "production",
        "my-service-1",
        serde_json::json!({"app": "my-service"}),
        serde_json::json!({}),
    ));
    index.apply_pod(&pod(
        "production",
        "other-1",
        serde_json::json!({"app": "other"}),
        serde_json::json!({}),
    ));
    index
        .apply_server(&server(
            "production",
            "my-service-server",
            serde_json::json!({"podSelector": {"matchLabels": {"app": "my-service"}}, "port": 8080, "proxyProtocol": "HTTP/2"}),
        ))
        .expect("valid server");
    let mut watch = index.watch_port("production", "my-service-1", 8080);
    let served = watch.borrow_and_update().clone().expect("pod");
    assert_eq!(
        served.reference,
        ServerRef::Server("my-service-server".into())
    );
    assert_eq!(served.protocol, Protocol::Http2);
    assert!(
        served.authorizations.is_empty(),
        "a Server without policy allows no one"
    );

    index
        .apply_authorization_policy(&object(serde_json::json!({
            "metadata": {"namespace": "production", "name": "my-service-authn"},
            "spec": {
                "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "my-service-server"},
                "requiredAuthenticationRefs": [{"name": "meshed-only", "kind": "MeshTLSAuthentication", "group": "policy.linkerd.io"}]
            }
        })))
        .expect("valid policy");
    assert!(
        index
            .inbound_server("production", "my-service-1", 8080)
            .expect("pod")
            .authorizations
            .is_empty(),
        "its authentication does not exist yet: the policy admits no one"
    );
    let meshed_only = |identity: &str| -> MeshTLSAuthentication {
        object(serde_json::json!({
            "metadata": {"namespace": "production", "name": "meshed-only"},
            "spec": {"identities": [identity]}
        }))
    };
    index
        .apply_mesh_tls_authentication(&meshed_only(
            "*.production.serviceaccount.identity.linkerd.cluster.local",
        ))
        .expect("valid authentication");
    assert!(
        watch.has_changed().expect("open"),
        "the watch sees the change"
    );
    let served = watch.borrow_and_update().clone().expect("pod");
    assert_eq!(
        authz_names(&served),
        [AuthorizationRef::AuthorizationPolicy(
            "my-service-authn".into()
        )]
    );
    let authz =
        &served.authorizations[&AuthorizationRef::AuthorizationPolicy("my-service-authn".into())];
    assert_eq!(
        authz.authentication,
        ClientAuthentication::TlsAuthenticated(vec![suffix(
            "production.serviceaccount.identity.linkerd.cluster.local"
        )])
    );
    assert!(
        authz.networks.is_empty(),
        "no NetworkAuthentication: the cluster's networks"
    );

    // Editing the authentication changes the answer.
    index
        .apply_mesh_tls_authentication(&meshed_only(
            "web.production.serviceaccount.identity.linkerd.cluster.local",
        ))
        .expect("valid authentication");
    let served = watch.borrow_and_update().clone().expect("pod");
    assert_eq!(
        served.authorizations[&AuthorizationRef::AuthorizationPolicy("my-service-authn".into())]
            .authentication,
        ClientAuthentication::TlsAuthenticated(vec![IdentityMatch::Exact(
            "web.production.serviceaccount.identity.linkerd.cluster.local".into()
        )])
    );

    // Other pods and ports keep the default.
    assert_eq!(
        index
            .inbound_server("production", "other-1", 8080)
            .expect("pod")
            .reference,
        ServerRef::Default("all-unauthenticated")
    );
    assert_eq!(
        index
            .inbound_server("production", "my-service-1", 9090)
            .expect("pod")
            .reference,
        ServerRef::Default("all-unauthenticated")
    );
}

#[test]
fn a_server_selects_by_port_name_and_the_oldest_wins() {
    let mut index = index();
    index.apply_pod(&pod(
        "prod",
        "web-1",
        serde_json::json!({"app": "web"}),
        serde_json::json!({}),
    ));
    let mut by_name = server(
        "prod",
        "web-admin",
        serde_json::json!({"podSelector": {"matchLabels": {"app": "web"}}, "port": "admin", "accessPolicy": "all-authenticated"}),
    );
    by_name.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().expect("time"),
        ));
    index.apply_server(&by_name).expect("valid");
    let mut newer = server(
        "prod",
        "a-newer-one",
        serde_json::json!({"podSelector": {"matchLabels": {}}, "port": 9090, "proxyProtocol": "opaque"}),
    );
    newer.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-06-01T00:00:00Z".parse().expect("time"),
    ));
    index.apply_server(&newer).expect("valid");
    let served = index.inbound_server("prod", "web-1", 9090).expect("pod");
    assert_eq!(served.reference, ServerRef::Server("web-admin".into()));
    assert_eq!(
        authz_names(&served),
        [AuthorizationRef::Default("all-authenticated")],
        "accessPolicy adds its default authorizations"
    );
    index.delete_server("prod", "web-admin");
    let served = index.inbound_server("prod", "web-1", 9090).expect("pod");
    assert_eq!(served.reference, ServerRef::Server("a-newer-one".into()));
    assert_eq!(served.protocol, Protocol::Opaque);
}

#[test]
fn network_and_service_account_authentications_and_namespace_targets() {
    let mut index = index_with_web_server();
    let network: NetworkAuthentication = object(serde_json::json!({
        "metadata": {"namespace": "prod", "name": "office"},
        "spec": {"networks": [{"cidr": "10.1.0.0/16", "except": ["10.1.2.3"]}]}
    }));
    index.apply_network_authentication(&network).expect("valid");
    let policy: AuthorizationPolicy = object(serde_json::json!({
        "metadata": {"namespace": "prod", "name": "whole-namespace"},
        "spec": {
            "targetRef": {"kind": "Namespace", "name": "prod"},
            "requiredAuthenticationRefs": [
                {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "office"},
                {"kind": "ServiceAccount", "name": "client", "namespace": "other"}
            ]
        }
    }));
    index.apply_authorization_policy(&policy).expect("valid");
    let served = index.inbound_server("prod", "web-1", 8080).expect("pod");
    let authz =
        &served.authorizations[&AuthorizationRef::AuthorizationPolicy("whole-namespace".into())];
    assert_eq!(authz.networks.len(), 1);
    assert_eq!(authz.networks[0].net.to_string(), "10.1.0.0/16");
    assert_eq!(authz.networks[0].except[0].to_string(), "10.1.2.3/32");
    assert_eq!(
        authz.authentication,
        ClientAuthentication::TlsAuthenticated(vec![IdentityMatch::Exact(
            "client.other.serviceaccount.identity.linkerd.cluster.local".into()
        )])
    );
}

#[test]
fn invalid_objects_name_their_field_and_keep_the_last_valid_version() {
    let mut index = index_with_web_server();
    for (spec, field) in [
        (
            serde_json::json!({"podSelector": {"matchLabels": {"app": "web"}}, "port": 0}),
            "spec.port",
        ),
        (serde_json::json!({"port": 8080}), "spec.podSelector"),
        (
            serde_json::json!({"podSelector": {}, "port": 8080, "accessPolicy": "open"}),
            "spec.accessPolicy",
        ),
    ] {
        let error = index
            .apply_server(&server("prod", "web", spec))
            .expect_err(field);
        assert_eq!(error.field, field, "{error}");
    }
    assert_eq!(
        index
            .inbound_server("prod", "web-1", 8080)
            .expect("pod")
            .reference,
        ServerRef::Server("web".into()),
        "the last valid Server stays"
    );
    for (spec, field) in [
        (
            serde_json::json!({"targetRef": {"group": "apps", "kind": "Deployment", "name": "web"}, "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "a"}]}),
            "spec.targetRef",
        ),
        (
            serde_json::json!({"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "web"}, "requiredAuthenticationRefs": []}),
            "spec.requiredAuthenticationRefs",
        ),
        (
            serde_json::json!({"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "web"}, "requiredAuthenticationRefs": [{"kind": "Secret", "name": "a"}]}),
            "spec.requiredAuthenticationRefs[0]",
        ),
    ] {
        let policy: AuthorizationPolicy = object(
            serde_json::json!({"metadata": {"namespace": "prod", "name": "p"}, "spec": spec}),
        );
        let error = index.apply_authorization_policy(&policy).expect_err(field);
        assert_eq!(error.field, field, "{error}");
    }
    for (identity, field) in [
        ("web.*.example", "spec.identities[0]"),
        ("", "spec.identities[0]"),
    ] {
        let authn: MeshTLSAuthentication = object(
            serde_json::json!({"metadata": {"namespace": "prod", "name": "m"}, "spec": {"identities": [identity]}}),
        );
        let error = index
            .apply_mesh_tls_authentication(&authn)
            .expect_err(identity);
        assert_eq!(error.field, field, "{error}");
    }
    let authn: NetworkAuthentication = object(
        serde_json::json!({"metadata": {"namespace": "prod", "name": "n"}, "spec": {"networks": [{"cidr": "10.0.0.0/33"}]}}),
    );
    assert_eq!(
        index
            .apply_network_authentication(&authn)
            .expect_err("bad cidr")
            .field,
        "spec.networks[0].cidr"
    );
    let problems = index.apply_pod(&pod(
        "prod",
        "web-2",
        serde_json::json!({}),
        serde_json::json!({"config.linkerd.io/opaque-ports": "http"}),
    ));
    assert_eq!(problems.len(), 1);
    assert!(problems[0].field.contains("opaque-ports"), "{problems:?}");
}

/// The legacy ServerAuthorization: by Server name or label selector, with
/// each client form (unauthenticated, any mesh TLS, identities and
/// ServiceAccounts), beside AuthorizationPolicies.
#[test]
fn legacy_server_authorizations_select_servers_by_name_and_labels() {
    use mesh_api::crds::policy::ServerAuthorization;
    let mut index = index();
    index.apply_pod(&pod(
        "prod",
        "web-1",
        serde_json::json!({"app": "web"}),
        serde_json::json!({}),
    ));
    let mut web = server(
        "prod",
        "web",
        serde_json::json!({"podSelector": {"matchLabels": {"app": "web"}}, "port": 8080}),
    );
    web.metadata.labels = Some([("tier".to_owned(), "front".to_owned())].into());
    index.apply_server(&web).expect("valid");
    let saz = |name: &str, spec: serde_json::Value| -> ServerAuthorization {
        object(serde_json::json!({"metadata": {"namespace": "prod", "name": name}, "spec": spec}))
    };
    index
        .apply_server_authorization(&saz(
            "by-name",
            serde_json::json!({"server": {"name": "web"}, "client": {"unauthenticated": true}}),
        ))
        .expect("valid");
    index
        .apply_server_authorization(&saz(
            "by-labels",
            serde_json::json!({
                "server": {"selector": {"matchLabels": {"tier": "front"}}},
                "client": {"meshTLS": {"identities": ["*.prod.serviceaccount.identity.linkerd.cluster.local"], "serviceAccounts": [{"name": "api", "namespace": "other"}]}}
            }),
        ))
        .expect("valid");
    index
        .apply_server_authorization(&saz(
            "any-tls",
            serde_json::json!({"server": {"name": "web"}, "client": {"meshTLS": {"unauthenticatedTLS": true}, "networks": [{"cidr": "10.0.0.0/8"}]}}),
        ))
        .expect("valid");
    index
        .apply_server_authorization(&saz(
            "elsewhere",
            serde_json::json!({"server": {"name": "db"}, "client": {"unauthenticated": true}}),
        ))
        .expect("valid");
    let served = index.inbound_server("prod", "web-1", 8080).expect("pod");
    let saz_ref = |name: &str| AuthorizationRef::ServerAuthorization(name.into());
    assert_eq!(
        authz_names(&served),
        [saz_ref("any-tls"), saz_ref("by-labels"), saz_ref("by-name")],
        "the one for another Server is not there"
    );
    assert_eq!(
        served.authorizations[&saz_ref("by-name")].authentication,
        ClientAuthentication::Unauthenticated
    );
    assert_eq!(
        served.authorizations[&saz_ref("any-tls")].authentication,
        ClientAuthentication::TlsUnauthenticated
    );
    assert_eq!(
        served.authorizations[&saz_ref("by-labels")].authentication,
        ClientAuthentication::TlsAuthenticated(vec![
            suffix("prod.serviceaccount.identity.linkerd.cluster.local"),
            IdentityMatch::Exact("api.other.serviceaccount.identity.linkerd.cluster.local".into()),
        ])
    );
    for (spec, field) in [
        (
            serde_json::json!({"server": {}, "client": {"unauthenticated": true}}),
            "spec.server",
        ),
        (
            serde_json::json!({"server": {"name": "web"}, "client": {}}),
            "spec.client",
        ),
        (
            serde_json::json!({"server": {"name": "web"}, "client": {"meshTLS": {"unauthenticatedTLS": true, "identities": ["*"]}}}),
            "spec.client.meshTLS",
        ),
    ] {
        let error = index
            .apply_server_authorization(&saz("by-name", spec))
            .expect_err(field);
        assert_eq!(error.field, field, "{error}");
    }
    assert_eq!(
        index
            .inbound_server("prod", "web-1", 8080)
            .expect("pod")
            .authorizations[&saz_ref("by-name")]
            .authentication,
        ClientAuthentication::Unauthenticated,
        "the last valid version stays"
    );
}

/// An AuthorizationPolicy may require an authentication of another
/// namespace: a change there reaches the open watch here.
#[test]
fn an_authentication_in_another_namespace_updates_the_policies_naming_it() {
    let mut index = index_with_web_server();
    index
        .apply_authorization_policy(&object(serde_json::json!({
            "metadata": {"namespace": "prod", "name": "shared-clients"},
            "spec": {
                "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "web"},
                "requiredAuthenticationRefs": [{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "clients", "namespace": "shared"}]
            }
        })))
        .expect("valid");
    let mut watch = index.watch_port("prod", "web-1", 8080);
    assert!(
        watch
            .borrow_and_update()
            .as_ref()
            .expect("pod")
            .authorizations
            .is_empty()
    );
    index
        .apply_mesh_tls_authentication(&object(serde_json::json!({
            "metadata": {"namespace": "shared", "name": "clients"},
            "spec": {"identities": ["*"]}
        })))
        .expect("valid");
    assert!(
        watch.has_changed().expect("open"),
        "the change in `shared` reached `prod`'s watch"
    );
    assert_eq!(
        authz_names(watch.borrow_and_update().as_ref().expect("pod")),
        [AuthorizationRef::AuthorizationPolicy(
            "shared-clients".into()
        )]
    );
}

fn gateway_route(key: &str) -> RouteRef {
    RouteRef::HttpRoute(RouteKey {
        group: "gateway.networking.k8s.io".into(),
        name: key.into(),
    })
}

fn policy_route(key: &str) -> RouteRef {
    RouteRef::HttpRoute(RouteKey {
        group: "policy.linkerd.io".into(),
        name: key.into(),
    })
}

/// An HTTPRoute attached to a Server replaces its default route; the
/// AuthorizationPolicies that target the route authorize it (and the
/// Server's, which the proxy adds to every route); one attached to a
/// Service instead is none of the policy controller's business; header and
/// query matches are kept, and a bad one is refused by field.
#[test]
fn httproutes_attached_to_a_server_are_its_routes_with_their_own_policies() {
    use mesh_api::crds::http_route::HttpRoute as GatewayRoute;
    let mut index = index_with_web_server();
    let route =
        |name: &str, parent: serde_json::Value, matches: serde_json::Value| -> GatewayRoute {
            object(serde_json::json!({
                "metadata": {"namespace": "prod", "name": name},
                "spec": {"parentRefs": [parent], "rules": [{"matches": matches}]}
            }))
        };
    let to_server =
        serde_json::json!({"group": "policy.linkerd.io", "kind": "Server", "name": "web"});
    index
        .apply_http_route(&route(
            "admin",
            to_server.clone(),
            serde_json::json!([{
                "path": {"type": "PathPrefix", "value": "/admin"},
                "method": "POST",
                "headers": [{"name": "x-team", "value": "ops"}],
                "queryParams": [{"type": "RegularExpression", "name": "v", "value": "[0-9]+"}]
            }]),
        ))
        .expect("valid");
    index
        .apply_http_route(&route(
            "for-a-service",
            serde_json::json!({"group": "core", "kind": "Service", "name": "web"}),
            serde_json::json!([{"path": {"type": "Exact", "value": "/"}}]),
        ))
        .expect("valid");
    index
        .apply_authorization_policy(&object(serde_json::json!({
            "metadata": {"namespace": "prod", "name": "admins"},
            "spec": {
                "targetRef": {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "admin"},
                "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "ops"}]
            }
        })))
        .expect("valid");
    let served = index.inbound_server("prod", "web-1", 8080).expect("pod");
    let routes: Vec<&RouteRef> = served.http_routes.keys().collect();
    assert_eq!(
        routes,
        [&gateway_route("admin")],
        "the default route is replaced"
    );
    let admin = &served.http_routes[&gateway_route("admin")];
    assert_eq!(
        admin.matches,
        [RouteMatch {
            path: Some(PathMatch::Prefix("/admin".into())),
            method: Some("POST".into()),
            headers: vec![("x-team".into(), ValueMatch::Exact("ops".into()))],
            query_params: vec![("v".into(), ValueMatch::Regex("[0-9]+".into()))],
        }]
    );
    assert_eq!(
        admin.authorizations.keys().collect::<Vec<_>>(),
        [&AuthorizationRef::AuthorizationPolicy("admins".into())]
    );
    assert!(
        served.authorizations.is_empty(),
        "a route's policy is not the Server's"
    );
    for (matches, field) in [
        (
            serde_json::json!([{"headers": [{"name": "x user", "value": "root"}]}]),
            "spec.rules[0].matches[0].headers[0].name",
        ),
        (
            serde_json::json!([{"queryParams": [{"type": "RegularExpression", "name": "q", "value": "("}]}]),
            "spec.rules[0].matches[0].queryParams[0].value",
        ),
        (
            serde_json::json!([{"headers": [{"type": "Prefix", "name": "a", "value": "b"}]}]),
            "spec.rules[0].matches[0].headers[0].type",
        ),
    ] {
        let error = index
            .apply_http_route(&route("admin", to_server.clone(), matches))
            .expect_err("an invalid match");
        assert_eq!(error.field, field, "{error}");
    }
    assert!(
        index
            .inbound_server("prod", "web-1", 8080)
            .expect("pod")
            .http_routes[&gateway_route("admin")]
            .matches[0]
            .method
            .is_some(),
        "the last valid route stays"
    );
}

/// `policy.linkerd.io` HTTPRoutes (any served version) are inbound routes
/// too, distinct from a Gateway API route of the same name: a policy names
/// the group of the route it authorizes.
#[test]
fn policy_linkerd_io_httproutes_are_routes_of_their_own_group() {
    use mesh_api::crds::http_route::{HttpRoute as GatewayRoute, PolicyHttpRoute};
    let mut index = index_with_web_server();
    let spec = |path: &str| {
        serde_json::json!({
            "parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "web"}],
            "rules": [{"matches": [{"path": {"value": path}}]}]
        })
    };
    let linkerd: PolicyHttpRoute = object(serde_json::json!({
        "apiVersion": "policy.linkerd.io/v1beta2",
        "kind": "HTTPRoute",
        "metadata": {"namespace": "prod", "name": "books"},
        "spec": spec("/books")
    }));
    let gateway: GatewayRoute = object(serde_json::json!({
        "metadata": {"namespace": "prod", "name": "books"},
        "spec": spec("/authors")
    }));
    index.apply_policy_http_route(&linkerd).expect("valid");
    index.apply_http_route(&gateway).expect("valid");
    index
        .apply_authorization_policy(&object(serde_json::json!({
            "metadata": {"namespace": "prod", "name": "readers"},
            "spec": {
                "targetRef": {"group": "policy.linkerd.io", "kind": "HTTPRoute", "name": "books"},
                "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "reader"}]
            }
        })))
        .expect("valid");
    let served = index.inbound_server("prod", "web-1", 8080).expect("pod");
    assert_eq!(
        served.http_routes.keys().collect::<Vec<_>>(),
        [&gateway_route("books"), &policy_route("books")]
    );
    assert_eq!(
        served.http_routes[&policy_route("books")]
            .authorizations
            .keys()
            .collect::<Vec<_>>(),
        [&AuthorizationRef::AuthorizationPolicy("readers".into())]
    );
    assert!(
        served.http_routes[&gateway_route("books")]
            .authorizations
            .is_empty(),
        "the policy names the other group's route"
    );
    index.delete_policy_http_route("prod", "books");
    assert_eq!(
        index
            .inbound_server("prod", "web-1", 8080)
            .expect("pod")
            .http_routes
            .keys()
            .collect::<Vec<_>>(),
        [&gateway_route("books")],
        "deleting one kind leaves the other"
    );
}

/// A GRPCRoute attached to a gRPC Server is its route, authorized by the
/// AuthorizationPolicies that target it, and served as a gRPC route with
/// its service and method; a Server that is not gRPC does not read it (as
/// in Linkerd); a method given as a regular expression is refused by field
/// and the last valid version stays.
#[test]
fn a_grpcroute_on_a_grpc_server_is_its_route_with_its_own_policies() {
    use mesh_api::crds::grpc_route::GrpcRoute as GatewayGrpcRoute;
    let mut index = index_with_web_server();
    let grpc_server = |protocol: &str| {
        server(
            "prod",
            "web",
            serde_json::json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "port": 8080,
                "proxyProtocol": protocol
            }),
        )
    };
    index.apply_server(&grpc_server("gRPC")).expect("valid");
    let route = |method: serde_json::Value| -> GatewayGrpcRoute {
        object(serde_json::json!({
            "metadata": {"namespace": "prod", "name": "admin"},
            "spec": {
                "parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "web"}],
                "rules": [{"matches": [{"method": method}]}]
            }
        }))
    };
    index
        .apply_grpc_route(&route(
            serde_json::json!({"service": "shop.Admin", "method": "Drop"}),
        ))
        .expect("valid");
    index
        .apply_authorization_policy(&object(serde_json::json!({
            "metadata": {"namespace": "prod", "name": "admins"},
            "spec": {
                "targetRef": {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute", "name": "admin"},
                "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "ops"}]
            }
        })))
        .expect("valid");
    let served = index.inbound_server("prod", "web-1", 8080).expect("pod");
    let admin = &served.grpc_routes[&RouteRef::GrpcRoute("admin".into())];
    assert_eq!(
        (
            admin.matches[0].service.as_deref(),
            admin.matches[0].method.as_deref()
        ),
        (Some("shop.Admin"), Some("Drop"))
    );
    assert_eq!(
        admin.authorizations.keys().collect::<Vec<_>>(),
        [&AuthorizationRef::AuthorizationPolicy("admins".into())]
    );
    let message = crate::proto::server(&served, &[]);
    let Some(linkerd2_proxy_api::inbound::proxy_protocol::Kind::Grpc(grpc)) =
        message.protocol.and_then(|p| p.kind)
    else {
        panic!("a gRPC Server");
    };
    let names: Vec<String> = grpc
        .routes
        .iter()
        .filter_map(|r| match r.metadata.as_ref()?.kind.as_ref()? {
            linkerd2_proxy_api::meta::metadata::Kind::Resource(r) => {
                Some(format!("{}/{}", r.kind, r.name))
            }
            _ => None,
        })
        .collect();
    assert_eq!(names, ["GRPCRoute/admin"], "the route, not the default one");
    let rpc = grpc.routes[0].rules[0].matches[0].rpc.clone().expect("rpc");
    assert_eq!(
        (rpc.service.as_str(), rpc.method.as_str()),
        ("shop.Admin", "Drop")
    );

    let error = index
        .apply_grpc_route(&route(
            serde_json::json!({"type": "RegularExpression", "service": "shop.*"}),
        ))
        .expect_err("a regular expression");
    assert_eq!(error.field, "spec.rules[0].matches[0].method.type");
    let kept = index.inbound_server("prod", "web-1", 8080).expect("pod");
    assert_eq!(
        kept.grpc_routes[&RouteRef::GrpcRoute("admin".into())].matches[0]
            .method
            .as_deref(),
        Some("Drop"),
        "the last valid route stays"
    );

    index.apply_server(&grpc_server("HTTP/2")).expect("valid");
    assert!(
        index
            .inbound_server("prod", "web-1", 8080)
            .expect("pod")
            .grpc_routes
            .is_empty(),
        "an HTTP/2 Server does not read GRPCRoutes"
    );
    index.apply_server(&grpc_server("gRPC")).expect("valid");
    index.delete_grpc_route("prod", "admin");
    assert!(
        index
            .inbound_server("prod", "web-1", 8080)
            .expect("pod")
            .grpc_routes
            .is_empty()
    );
}
