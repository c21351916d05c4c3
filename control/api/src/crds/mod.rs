//! The custom resources mesh reads, with Linkerd's groups, versions, kinds
//! and field names, so the YAML in Linkerd's documentation applies as is.
//! `mesh install --crds` renders their definitions from these types.
//!
//! - [`service_profile`]: `linkerd.io/v1alpha2` ServiceProfile.
//! - [`traffic_split`]: `split.smi-spec.io/v1alpha2` TrafficSplit.
//! - [`http_route`]: `gateway.networking.k8s.io/v1` HTTPRoute (the parts mesh
//!   uses; other fields are kept by the API server, not read).
//! - [`policy`]: `policy.linkerd.io` Server, AuthorizationPolicy,
//!   MeshTLSAuthentication and NetworkAuthentication.
//! - [`link`]: `multicluster.linkerd.io` Link (`v1alpha3`, older versions served).

pub mod http_route;
pub mod link;
pub mod policy;
pub mod service_profile;
pub mod traffic_split;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD mesh ships, in apply order.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut http_route = http_route::HttpRoute::crd();
    // `*.k8s.io` groups are protected; the Gateway API project's approval
    // is recorded on its CRDs, and ours carry the same annotations.
    http_route.metadata.annotations = Some(
        [
            (
                "api-approved.kubernetes.io".to_owned(),
                "https://github.com/kubernetes-sigs/gateway-api/pull/2466".to_owned(),
            ),
            (
                "gateway.networking.k8s.io/channel".to_owned(),
                "standard".to_owned(),
            ),
        ]
        .into(),
    );
    vec![
        service_profile::ServiceProfile::crd(),
        traffic_split::TrafficSplit::crd(),
        http_route,
        policy::Server::crd(),
        policy::AuthorizationPolicy::crd(),
        policy::MeshTLSAuthentication::crd(),
        policy::NetworkAuthentication::crd(),
        link::crd(),
    ]
}
