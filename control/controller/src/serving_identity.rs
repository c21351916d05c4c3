//! The flags a gRPC component (destination, policy) takes to serve over
//! mutual TLS as its own identity, certified by the identity service, as
//! proxies expect of the control plane.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use mesh_core::grpc_server::ServerTls;
use mesh_core::identity::IdentityConfig;
use mesh_core::identity::schedule::Backoff;

#[derive(Debug, Args)]
pub(crate) struct ServingIdentityArgs {
    /// Serve gRPC over mutual TLS as this identity (what proxies expect,
    /// `linkerd-destination.<ns>.serviceaccount.identity.<ns>.<trust domain>`),
    /// with a certificate from the identity service; plain when unset.
    #[arg(
        long,
        env = "MESH_IDENTITY_LOCAL_NAME",
        value_name = "NAME",
        requires = "identity_trust_anchors_file"
    )]
    identity_local_name: Option<String>,
    /// The trust anchors (PEM) for that certificate.
    #[arg(long, env = "MESH_IDENTITY_TRUST_ANCHORS_FILE", value_name = "FILE")]
    identity_trust_anchors_file: Option<PathBuf>,
    #[command(flatten)]
    service: IdentityServiceArgs,
}

/// Where a component gets its certificate: the identity service and the
/// token it proves its ServiceAccount with.
#[derive(Debug, Args)]
pub(crate) struct IdentityServiceArgs {
    /// The identity service's address.
    #[arg(
        long,
        env = "MESH_IDENTITY_ADDR",
        default_value = "linkerd-identity-headless.linkerd.svc.cluster.local.:8080"
    )]
    identity_addr: String,
    /// The identity service's own identity.
    #[arg(
        long,
        env = "MESH_IDENTITY_SVC_NAME",
        default_value = "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local"
    )]
    identity_svc_name: String,
    /// The projected ServiceAccount token (audience identity.l5d.io) to certify with.
    #[arg(long, env = "MESH_IDENTITY_TOKEN_FILE", default_value = mesh_api::labels::IDENTITY_TOKEN_PATH)]
    identity_token_file: PathBuf,
}

impl IdentityServiceArgs {
    /// Certificates from the identity service with the token, retried
    /// often at first (at install the identity service may come up after
    /// the component); `trust_dir` is a mounted trust roots ConfigMap to
    /// follow.
    pub(crate) fn config(&self, trust_dir: Option<(PathBuf, String)>) -> IdentityConfig {
        IdentityConfig {
            addr: self.identity_addr.clone(),
            server_identity: self.identity_svc_name.clone(),
            token_path: self.identity_token_file.clone(),
            backoff: Backoff {
                min: std::time::Duration::from_millis(500),
                max: std::time::Duration::from_secs(5),
            },
            trust_dir,
        }
    }
}

impl ServingIdentityArgs {
    /// The TLS to serve with, when an identity is given.
    pub(crate) fn server_tls(&self) -> anyhow::Result<Option<ServerTls>> {
        let (Some(local_identity), Some(anchors)) =
            (&self.identity_local_name, &self.identity_trust_anchors_file)
        else {
            return Ok(None);
        };
        let trust_anchors_pem = std::fs::read_to_string(anchors)
            .with_context(|| format!("--identity-trust-anchors-file {}", anchors.display()))?;
        Ok(Some(ServerTls {
            local_identity: local_identity.clone(),
            trust_anchors_pem: trust_anchors_pem.clone(),
            // The mounted trust roots ConfigMap, followed without a restart
            // (with the issuer the identity service records in it).
            identity: self.service.config(
                anchors
                    .parent()
                    .map(|dir| (dir.to_path_buf(), trust_anchors_pem)),
            ),
        }))
    }
}
