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
//!
//! The `gateway.networking.k8s.io` CRDs mesh ships are the Gateway API
//! project's own, full schema and validation included ([`gateway_api`]:
//! vendored unchanged in `control/api/crds/gateway-api/` by
//! `scripts/fetch-gateway-api-crds.sh`, the experimental channel at the
//! version Linkerd's chart ships); the types here read and write them.
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
    let [http_route, grpc_route] = gateway_api();
    vec![
        service_profile::ServiceProfile::crd(),
        also_serving(traffic_split::TrafficSplit::crd(), &["v1alpha1"]),
        http_route,
        http_route::policy_crd(),
        grpc_route,
        also_serving(policy::Server::crd(), &["v1beta1", "v1beta2"]),
        also_serving(policy::AuthorizationPolicy::crd(), &["v1beta3"]),
        also_serving(policy::MeshTLSAuthentication::crd(), &["v1beta3"]),
        policy::NetworkAuthentication::crd(),
        policy::ServerAuthorization::crd(),
        link::crd(),
    ]
}

/// The Gateway API version of the vendored CRDs.
pub fn gateway_api_version() -> &'static str {
    include_str!("../../crds/gateway-api/VERSION").trim()
}

/// The Gateway API project's HTTPRoute and GRPCRoute CRDs, as published
/// (parsed once).
pub fn gateway_api() -> [CustomResourceDefinition; 2] {
    static CRDS: std::sync::OnceLock<[CustomResourceDefinition; 2]> = std::sync::OnceLock::new();
    CRDS.get_or_init(|| {
        let parse = |yaml: &str| -> CustomResourceDefinition {
            match serde_saphyr::from_str(yaml) {
                Ok(crd) => crd,
                // The files are part of the build; a test parses them.
                Err(e) => panic!("a vendored Gateway API CRD does not parse: {e}"),
            }
        };
        [
            parse(include_str!(
                "../../crds/gateway-api/gateway.networking.k8s.io_httproutes.yaml"
            )),
            parse(include_str!(
                "../../crds/gateway-api/gateway.networking.k8s.io_grpcroutes.yaml"
            )),
        ]
    })
    .clone()
}

#[cfg(test)]
mod gateway_api_tests {
    use super::*;

    fn served(crd: &CustomResourceDefinition) -> Vec<String> {
        crd.spec
            .versions
            .iter()
            .filter(|v| v.served)
            .map(|v| v.name.clone())
            .collect()
    }

    /// The shipped Gateway API CRDs are the upstream ones: their bundle
    /// version, the versions the guides write, the status subresource and
    /// the project's validation rules.
    #[test]
    fn the_gateway_api_crds_are_upstreams_with_the_versions_the_guides_use() {
        let [http, grpc] = gateway_api();
        assert_eq!(
            http.metadata.name.as_deref(),
            Some("httproutes.gateway.networking.k8s.io")
        );
        assert_eq!(
            grpc.metadata.name.as_deref(),
            Some("grpcroutes.gateway.networking.k8s.io")
        );
        assert_eq!(served(&http), ["v1", "v1beta1"]);
        assert_eq!(served(&grpc), ["v1", "v1alpha2"]);
        for crd in [&http, &grpc] {
            let annotations = crd.metadata.annotations.clone().unwrap_or_default();
            assert_eq!(
                annotations
                    .get("gateway.networking.k8s.io/bundle-version")
                    .map(String::as_str),
                Some(gateway_api_version())
            );
            let v1 = &crd.spec.versions[0];
            assert!(
                v1.subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some()
            );
            let schema = serde_json::to_string(&v1.schema).unwrap_or_default();
            assert!(
                schema.contains("x-kubernetes-validations"),
                "upstream's CEL rules"
            );
        }
        let names: Vec<String> = all()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        assert!(names.contains(&"httproutes.gateway.networking.k8s.io".to_owned()));
        assert!(names.contains(&"grpcroutes.gateway.networking.k8s.io".to_owned()));
    }
}
