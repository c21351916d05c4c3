//! `-n NAMESPACE` / `-A` as kubectl takes them; the kinds viz reports on
//! and their objects are [`mesh_viz::metrics::resource`]'s.

pub use mesh_viz::metrics::resource::{Kind, Target};

/// `-n NAMESPACE` or `-A`, as kubectl takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct NamespaceArgs {
    /// The namespace (the current context's namespace, else `default`).
    #[arg(long, short, env = "MESH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(
        long,
        short = 'A',
        env = "MESH_ALL_NAMESPACES",
        conflicts_with = "namespace"
    )]
    pub all_namespaces: bool,
}

impl NamespaceArgs {
    /// The namespace meant (`None`: every one): `--namespace`, else the
    /// context's.
    pub fn resolve(&self, client: &kube::Client) -> Option<String> {
        (!self.all_namespaces).then(|| {
            self.namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned())
        })
    }
}
