//! What makes a pod meshed: the proxy container `linkerd-proxy`, a native
//! sidecar (an init container that keeps running) or a plain container.

use k8s_openapi::api::core::v1::PodSpec;

/// The name of the proxy container.
pub const PROXY_CONTAINER: &str = "linkerd-proxy";

/// Whether `spec` has the proxy.
pub fn has_proxy(spec: &PodSpec) -> bool {
    proxy_container(spec).is_some()
}

/// The proxy container of `spec`, a plain container or a native sidecar.
pub fn proxy_container(spec: &PodSpec) -> Option<&k8s_openapi::api::core::v1::Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == PROXY_CONTAINER)
}

/// Whether `pod` is Ready and not being deleted.
pub fn is_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
