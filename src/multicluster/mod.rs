//! `mesh multicluster`: the multicluster extension, named and laid out as
//! Linkerd's so its docs apply.
//!
//! - [`install`]: `mesh multicluster install` renders the `linkerd-multicluster`
//!   namespace, the Link CRD and the gateway: a Deployment whose injected
//!   proxy runs in gateway mode (`config.linkerd.io/enable-gateway`) behind
//!   a LoadBalancer Service on 4143 (`mc-gateway`) and 4191 (`mc-probe`,
//!   to the proxy's probe-only listener),
//!   the gateway's own Server and AuthorizationPolicy ([`gateway_policy`]),
//!   and the read-only ServiceAccount linked clusters' mirrors use.
//! - [`chart`]: `charts/mesh-multicluster`, generated from [`install`]'s
//!   renderer.
//! - [`allow`]: `mesh multicluster allow`, the MeshTLSAuthentication and
//!   AuthorizationPolicy that let a linked cluster's workloads in.
//! - [`check`]: `mesh multicluster check`, the extension and each Link
//!   (credentials, shared trust anchors, mirror permissions, gateways,
//!   mirror Services) as named checks.
//! - [`gateways`]: `mesh multicluster gateways`, each Link's gateway as its
//!   mirror sees it.
//! - [`link`]: `mesh multicluster link` reads this cluster (gateway, token)
//!   and renders the Link, credentials and service mirror for the other
//!   cluster; `unlink` renders what removes them (mirrors included).

pub mod allow;
pub mod chart;
pub mod check;
pub mod gateway_policy;
pub mod gateways;
pub mod install;
pub mod link;
pub mod quic_buffers;
