//! The custom resources mesh reads, with Linkerd's groups, versions, kinds
//! and field names, so the YAML in Linkerd's documentation applies as is.
//! `mesh install --crds` renders their definitions from these types.
//!
//! - [`service_profile`]: `linkerd.io/v1alpha2` ServiceProfile.
//! - [`traffic_split`]: `split.smi-spec.io/v1alpha2` TrafficSplit (`v1alpha1`,
//!   with weights in milli-units such as `950m`, served too).
//! - [`http_route`]: HTTPRoute, `gateway.networking.k8s.io` (`v1`, `v1beta1`)
//!   and `policy.linkerd.io` (`v1beta3`, `v1alpha1` to `v1beta2`), one spec
//!   (the parts mesh uses; other fields are kept by the API server).
//! - [`grpc_route`]: GRPCRoute, `gateway.networking.k8s.io` (`v1`,
//!   `v1alpha2`).
//! - [`policy`]: `policy.linkerd.io` Server (stored as `v1beta3`, `v1beta1`
//!   and `v1beta2` served), AuthorizationPolicy and MeshTLSAuthentication
//!   (stored as `v1alpha1`; `v1beta3` served too, a spelling Linkerd never
//!   served that one of its guides uses: [`MESH_ONLY_VERSIONS`]) and
//!   NetworkAuthentication (`v1alpha1`), and the legacy ServerAuthorization
//!   (`v1beta1`).
//! - [`link`]: `multicluster.linkerd.io` Link (`v1alpha3`, older versions served).

pub mod grpc_route;
pub mod http_route;
pub mod link;
pub mod policy;
pub mod service_profile;
pub mod traffic_split;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Versions mesh serves that Linkerd never did, by kind: `mesh check` warns
/// about objects stored from them (they would not apply to Linkerd).
pub const MESH_ONLY_VERSIONS: [(&str, &str); 2] = [
    ("AuthorizationPolicy", "v1beta3"),
    ("MeshTLSAuthentication", "v1beta3"),
];

/// `crd` also serving each of `versions`, with the same schema (the API
/// server converts between them by changing `apiVersion` only).
pub fn also_serving(
    mut crd: CustomResourceDefinition,
    versions: &[&str],
) -> CustomResourceDefinition {
    let stored = crd.spec.versions[0].clone();
    for name in versions {
        let mut version = stored.clone();
        version.name = (*name).to_owned();
        version.storage = false;
        crd.spec.versions.push(version);
    }
    crd
}

/// Every CRD mesh ships, in apply order.
pub fn all() -> Vec<CustomResourceDefinition> {
    // `*.k8s.io` groups are protected; the Gateway API project's approval
    // is recorded on its CRDs, and ours carry the same annotations.
    let gateway_api = |mut crd: CustomResourceDefinition| {
        crd.metadata.annotations = Some(
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
        crd
    };
    let http_route = gateway_api(http_route::HttpRoute::crd());
    let grpc_route = gateway_api(grpc_route::GrpcRoute::crd());
    vec![
        service_profile::ServiceProfile::crd(),
        also_serving(traffic_split::TrafficSplit::crd(), &["v1alpha1"]),
        also_serving(http_route, &["v1beta1"]),
        http_route::policy_crd(),
        also_serving(grpc_route, &["v1alpha2"]),
        also_serving(policy::Server::crd(), &["v1beta1", "v1beta2"]),
        also_serving(policy::AuthorizationPolicy::crd(), &["v1beta3"]),
        also_serving(policy::MeshTLSAuthentication::crd(), &["v1beta3"]),
        policy::NetworkAuthentication::crd(),
        policy::ServerAuthorization::crd(),
        link::crd(),
    ]
}
