//! Kubeconfig files for local clusters: one context per cluster, each with
//! the cluster CA and an admin client certificate embedded, so the file works
//! on its own with kubectl, kube-rs and client-go alike.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// One cluster as a kubeconfig context.
#[derive(Debug, Clone)]
pub struct KubeconfigEntry {
    /// Context, cluster and user name (`west`, `east`, `local`).
    pub name: String,
    /// `https://<ip>:<port>` of the API server.
    pub server: String,
    /// The cluster CA certificate (PEM).
    pub ca_cert: String,
    /// The admin client certificate (PEM).
    pub client_cert: String,
    /// Its key (PEM).
    pub client_key: String,
}

/// Renders a kubeconfig holding `entries`, with `current` as current context.
pub fn render(entries: &[KubeconfigEntry], current: &str) -> String {
    let b64 = |pem: &str| BASE64.encode(pem);
    let mut out = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for e in entries {
        let _ = write!(
            out,
            "- name: {}\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n",
            e.name,
            e.server,
            b64(&e.ca_cert)
        );
    }
    out.push_str("users:\n");
    for e in entries {
        let _ = write!(
            out,
            "- name: {}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            e.name,
            b64(&e.client_cert),
            b64(&e.client_key)
        );
    }
    out.push_str("contexts:\n");
    for e in entries {
        let _ = write!(
            out,
            "- name: {0}\n  context:\n    cluster: {0}\n    user: {0}\n",
            e.name
        );
    }
    let _ = writeln!(out, "current-context: {current}");
    out
}

/// One kubeconfig holding every context of the files at `paths`, with
/// `current` as current context.
pub fn merge(paths: &[std::path::PathBuf], current: &str) -> anyhow::Result<String> {
    let mut merged: Option<kube::config::Kubeconfig> = None;
    for path in paths {
        let next = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        merged = Some(match merged {
            Some(config) => config.merge(next)?,
            None => next,
        });
    }
    let mut merged = merged.ok_or_else(|| anyhow::anyhow!("no kubeconfig to merge"))?;
    merged.current_context = Some(current.to_owned());
    Ok(serde_saphyr::to_string(&merged)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_rs_reads_the_rendered_file() {
        let entry = |name: &str, port: u16| KubeconfigEntry {
            name: name.into(),
            server: format!("https://127.0.0.1:{port}"),
            ca_cert: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            client_cert: "cert".into(),
            client_key: "key".into(),
        };
        let text = render(&[entry("west", 6443), entry("east", 7443)], "west");
        let config = kube::config::Kubeconfig::from_yaml(&text).expect("valid kubeconfig");
        assert_eq!(config.current_context.as_deref(), Some("west"));
        let names: Vec<_> = config.contexts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["west", "east"]);
        let east = &config.clusters[1];
        let cluster = east.cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:7443"));
        assert!(
            cluster
                .certificate_authority_data
                .as_deref()
                .unwrap_or_default()
                .starts_with("LS0tLS1CRUdJTi")
        );
    }
}
