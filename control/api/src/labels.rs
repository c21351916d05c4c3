//! Label and annotation keys, as Linkerd writes them. Keys under `mesh.dev/`
//! are ours: they only add to Linkerd's behaviour, never change a default.

/// Namespace of the control plane.
pub const CONTROL_PLANE_NAMESPACE: &str = "linkerd";
/// Namespace of the multicluster extension (gateway, links, mirrors).
pub const MULTICLUSTER_NAMESPACE: &str = "linkerd-multicluster";

/// `enabled` or `disabled`, on a namespace or a pod template.
pub const INJECT_ANNOTATION: &str = "linkerd.io/inject";
/// The proxy version an injected pod runs.
pub const PROXY_VERSION_ANNOTATION: &str = "linkerd.io/proxy-version";
/// Prefix of the per-workload proxy configuration overrides.
pub const CONFIG_ANNOTATION_PREFIX: &str = "config.linkerd.io/";

/// On a remote Service: `true` exports it through the gateway.
pub const MIRROR_EXPORTED: &str = "mirror.linkerd.io/exported";
/// On a mirror Service, its Endpoints and Namespace: `"true"`.
pub const MIRROR_MIRRORED_SERVICE: &str = "mirror.linkerd.io/mirrored-service";
/// On mirror objects: the name of the linked cluster.
pub const MIRROR_CLUSTER_NAME: &str = "mirror.linkerd.io/cluster-name";
/// On a mirror Service and its Endpoints: `<svc>.<ns>.svc.<domain>` of the original.
pub const MIRROR_REMOTE_SVC_FQ_NAME: &str = "mirror.linkerd.io/remote-svc-fq-name";
/// On a mirror Service: the resourceVersion of the remote Service it copies.
pub const MIRROR_REMOTE_RESOURCE_VERSION: &str = "mirror.linkerd.io/remote-resource-version";
/// On a headless mirror's endpoint mirror (`<hostname>-<link>`): the name
/// of the headless mirror it belongs to.
pub const MIRROR_HEADLESS_MIRROR_SVC_NAME: &str = "mirror.linkerd.io/headless-mirror-svc-name";
/// On mirror Endpoints: the identity the remote gateway must present.
pub const MIRROR_REMOTE_GATEWAY_IDENTITY: &str = "mirror.linkerd.io/remote-gateway-identity";
/// On the gateway Service: the gateway's identity, read by `multicluster link`.
pub const MIRROR_GATEWAY_IDENTITY: &str = "mirror.linkerd.io/gateway-identity";
/// Link annotation (ours): `<namespace>/<name>` of the linked cluster's
/// gateway Service whose LoadBalancer addresses the Link was made from.
/// The mirror follows that Service, so a gateway that moves to a new
/// address never leaves the Link's addresses stale. Absent when the
/// addresses were given by hand (`--gateway-addresses`).
pub const GATEWAY_SERVICE_ANNOTATION: &str = "mesh.dev/gateway-service";
/// Link annotation (ours), copied by the mirror onto its mirror Endpoints:
/// how proxies reach the Link's gateway, `quic`, `tcp` or `auto` (QUIC with
/// TCP fallback, the default). The destination service sends it to proxies
/// as the endpoint label [`GATEWAY_TRANSPORT_LABEL`].
pub const TRANSPORT_ANNOTATION: &str = "mesh.dev/transport";
/// On a gateway pod: the label selector (JSON `LabelSelector`) of the
/// Services it exports, which `mesh multicluster install --export-selector`
/// sets and the injector passes to the gateway's proxy.
pub const GATEWAY_EXPORTS_ANNOTATION: &str = "mesh.dev/gateway-exports";

/// On a gateway's pod template: the Secret (in its namespace) whose
/// `reset-key` the gateway's pods share for QUIC stateless resets.
pub const GATEWAY_RESET_KEY_SECRET_ANNOTATION: &str = "mesh.dev/gateway-reset-key-secret";

/// On a namespace or pod template: the congestion controller of the
/// proxy's QUIC connections to gateways (a gateway's: from its clients),
/// one of [`QUIC_CONGESTION_CONTROLS`]; the proxy's default (`bbr`) when
/// unset.
pub const QUIC_CONGESTION_CONTROL_ANNOTATION: &str = "mesh.dev/quic-congestion-control";

/// The congestion controllers the proxy's QUIC can use.
pub const QUIC_CONGESTION_CONTROLS: [&str; 3] = ["bbr", "cubic", "newreno"];

/// The key of that Secret holding the reset key (base64).
pub const GATEWAY_RESET_KEY: &str = "reset-key";
/// The endpoint metric label that carries [`TRANSPORT_ANNOTATION`] to
/// proxies (proxies read it and never export it).
pub const GATEWAY_TRANSPORT_LABEL: &str = "gateway_transport";

/// On a managed TrafficSplit (ours): the failover controller's status, JSON.
pub const FAILOVER_STATUS_ANNOTATION: &str = "failover.mesh.dev/status";
/// The `controlled-by` value the failover controller manages by default.
pub const FAILOVER_CONTROLLER_NAME: &str = "linkerd-failover";
/// The failover extension's namespace.
pub const FAILOVER_NAMESPACE: &str = "linkerd-failover";
/// On a TrafficSplit: which failover controller manages it.
pub const FAILOVER_CONTROLLED_BY: &str = "failover.linkerd.io/controlled-by";
/// On a TrafficSplit: the backend that takes traffic when healthy.
pub const FAILOVER_PRIMARY_SERVICE: &str = "failover.linkerd.io/primary-service";

/// Audience of the projected ServiceAccount token a proxy presents to Certify.
pub const IDENTITY_TOKEN_AUDIENCE: &str = "identity.l5d.io";
/// Where the injector mounts that token in every meshed pod.
pub const IDENTITY_TOKEN_PATH: &str = "/var/run/secrets/tokens/linkerd-identity-token";

/// Label on control-plane objects naming their component (`identity`, …).
pub const CONTROL_PLANE_COMPONENT: &str = "linkerd.io/control-plane-component";
/// Label on control-plane objects naming the control plane's namespace.
pub const CONTROL_PLANE_NS: &str = "linkerd.io/control-plane-ns";
/// Label on the control plane's namespace.
pub const IS_CONTROL_PLANE: &str = "linkerd.io/is-control-plane";
/// The ConfigMap holding the trust anchors (`ca-bundle.crt`).
pub const TRUST_ROOTS_CONFIGMAP: &str = "linkerd-identity-trust-roots";
/// The copy of the trust roots the identity service keeps in every
/// namespace it certifies workloads of, for their proxies to mount (a pod
/// cannot mount another namespace's ConfigMap): the bundle, and the
/// issuer in force.
pub const TRUST_ROOTS_COPY_CONFIGMAP: &str = "mesh-identity-trust-roots";
/// The label on those copies (the identity service updates and repairs
/// only ConfigMaps that carry it).
pub const TRUST_ROOTS_COPY_LABEL: &str = "mesh.dev/trust-roots-copy";
/// The trust roots ConfigMap's bundle key (Linkerd's).
pub const TRUST_BUNDLE_KEY: &str = "ca-bundle.crt";
/// The key holding the SHA-256 of the issuer certificate in force: when it
/// changes, proxies certify again at once.
pub const ISSUER_FINGERPRINT_KEY: &str = "issuer.sha256";
/// Where injected proxies mount their namespace's copy.
pub const TRUST_ROOTS_COPY_PATH: &str = "/var/run/linkerd/identity/trust-roots";
/// The Secret holding the issuer certificate and key.
pub const ISSUER_SECRET: &str = "linkerd-identity-issuer";

/// The annotation naming a default inbound policy (pod or namespace).
pub const DEFAULT_INBOUND_POLICY_ANNOTATION: &str = "config.linkerd.io/default-inbound-policy";

/// The annotation listing ports whose default policy requires an identity.
pub const REQUIRE_IDENTITY_PORTS_ANNOTATION: &str =
    "config.linkerd.io/proxy-require-identity-inbound-ports";

/// The annotation listing a workload's (or a Service's) opaque ports.
pub const OPAQUE_PORTS_ANNOTATION: &str = "config.linkerd.io/opaque-ports";

/// Linkerd viz's annotation that keeps a pod's proxy from serving tap.
pub const VIZ_DISABLE_TAP_ANNOTATION: &str = "viz.linkerd.io/disable-tap";

/// The namespace of the viz extension (its tap component's identity is
/// `tap.linkerd-viz.serviceaccount.identity.<ns>.<trust domain>`).
pub const VIZ_NAMESPACE: &str = "linkerd-viz";

/// Linkerd's annotation for how long the proxy keeps serving after its
/// pod is told to stop, before it drains.
pub const WAIT_BEFORE_EXIT_ANNOTATION: &str =
    "config.alpha.linkerd.io/proxy-wait-before-exit-seconds";

/// Linkerd's default inbound policies.
pub const DEFAULT_INBOUND_POLICIES: [&str; 6] = [
    "all-unauthenticated",
    "all-authenticated",
    "cluster-unauthenticated",
    "cluster-authenticated",
    "deny",
    "audit",
];
