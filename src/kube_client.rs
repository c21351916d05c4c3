//! A Kubernetes client from the global `--kubeconfig` and `--context`
//! flags, as kubectl would build it.

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli::GlobalArgs;

/// The client for the chosen kubeconfig and context.
pub async fn client(global: &GlobalArgs) -> anyhow::Result<kube::Client> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..Default::default()
    };
    let config = match &global.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .with_context(|| match &global.context {
        Some(context) => format!("kubeconfig context {context:?}"),
        None => "the kubeconfig's current context".to_owned(),
    })?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}
