//! `mesh --context=east multicluster link --cluster-name east`: read from
//! the cluster to link to (east) what another cluster (west) needs to
//! mirror its Services, and render it for `kubectl --context=west apply`:
//! the Link (gateway addresses, port, identity and probe from east's
//! gateway Service), the credentials Secret (a kubeconfig for east's
//! read-only ServiceAccount) and the service mirror for that Link with its
//! permissions. `mesh multicluster unlink` renders what removes them.

use anyhow::Context;
use base64::Engine;
use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use mesh_api::crds::link::{Link, LinkSpec, ProbeSpec};
use mesh_api::labels::{
    MIRROR_CLUSTER_NAME, MIRROR_GATEWAY_IDENTITY, MULTICLUSTER_NAMESPACE as NS,
};

use super::install::{
    GATEWAY, PROBE_PATH_ANNOTATION, PROBE_PERIOD_ANNOTATION, REMOTE_ACCESS, REMOTE_ACCESS_TOKEN,
};
use crate::cli::GlobalArgs;
use crate::install::manifest::{self, Object, object};

/// Flags of `mesh multicluster link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The linked cluster's name: mirrors are `<svc>-<name>`.
    #[arg(long, env = "MESH_LINK_CLUSTER_NAME", value_name = "NAME")]
    pub cluster_name: String,
    /// The API server address the other cluster's mirror reaches this one
    /// at [default: the kubeconfig's server].
    #[arg(long, env = "MESH_LINK_API_SERVER_ADDRESS", value_name = "URL")]
    pub api_server_address: Option<String>,
    /// The gateway's addresses (comma list of IPs or host names)
    /// [default: its LoadBalancer Service's].
    #[arg(long, env = "MESH_LINK_GATEWAY_ADDRESSES", value_name = "ADDRESSES")]
    pub gateway_addresses: Option<String>,
    /// This cluster's DNS domain.
    #[arg(long, env = "MESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// How proxies reach the gateway: QUIC, falling back to TCP when UDP
    /// does not get through (`auto`), or only one of them (the Link's
    /// `mesh.dev/transport` annotation).
    #[arg(long, env = "MESH_LINK_TRANSPORT", value_enum, default_value_t = LinkTransport::Auto)]
    pub transport: LinkTransport,
    /// The image of the service mirror (`mesh-controller`).
    #[command(flatten)]
    pub image: crate::images::ControllerImageArgs,
}

/// How proxies reach a linked cluster's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkTransport {
    /// QUIC, falling back to TCP.
    Auto,
    /// QUIC only.
    Quic,
    /// TCP only.
    Tcp,
}

impl LinkTransport {
    fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Quic => "quic",
            Self::Tcp => "tcp",
        }
    }
}

/// Whether `name` is a DNS label (a cluster, namespace or object name).
pub(crate) fn names_a_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The address the other cluster's mirror should reach this API server at,
/// when `--api-server-address` is not given: the one the cluster publishes
/// for others in `kube-public/cluster-info` (kubeadm and kind clusters, and
/// mesh's local clusters, have it), else the kubeconfig's server, unless
/// that is a loopback address no other cluster can reach.
async fn api_server_for_others(
    client: &kube::Client,
    kubeconfig_server: &str,
) -> anyhow::Result<String> {
    let published = Api::<ConfigMap>::namespaced(client.clone(), "kube-public")
        .get_opt("cluster-info")
        .await
        .ok()
        .flatten()
        .and_then(|map| map.data?.get("kubeconfig").cloned())
        .and_then(|text| published_server(&text));
    if let Some(server) = published {
        if server.trim_end_matches('/') != kubeconfig_server.trim_end_matches('/') {
            eprintln!(
                "mesh multicluster link: the mirror will reach this cluster's API at {server}, as published in \
                 kube-public/cluster-info (--api-server-address chooses another)"
            );
        }
        return Ok(server);
    }
    anyhow::ensure!(
        !is_loopback(kubeconfig_server),
        "the kubeconfig's server {kubeconfig_server} is a loopback address, which the other cluster's service \
         mirror cannot reach, and the cluster publishes no other in kube-public/cluster-info: give \
         --api-server-address with an address the other cluster's pods reach (for kind, \
         https://<cluster>-control-plane:6443)"
    );
    Ok(kubeconfig_server.to_owned())
}

/// The server of the first cluster in a published kubeconfig.
fn published_server(kubeconfig: &str) -> Option<String> {
    let config = kube::config::Kubeconfig::from_yaml(kubeconfig).ok()?;
    config
        .clusters
        .into_iter()
        .find_map(|c| c.cluster?.server)
        .filter(|s| !s.is_empty())
}

/// Whether a URL's host is a loopback address (`localhost`, 127.0.0.0/8, ::1).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads the cluster to link to and renders what the other cluster applies.
pub async fn render(global: &GlobalArgs, args: &LinkArgs) -> anyhow::Result<String> {
    anyhow::ensure!(
        names_a_dns_label(&args.cluster_name),
        "--cluster-name {:?}: lower-case letters, digits and '-', at most 63",
        args.cluster_name
    );
    let config =
        mesh_api::kube_client::config(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    let kubeconfig_server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    let server = match &args.api_server_address {
        Some(server) => server.clone(),
        None => api_server_for_others(&client, &kubeconfig_server).await?,
    };
    let install_hint = "is the multicluster extension installed here? `mesh multicluster install | kubectl apply -f -`";
    let gateway = Api::<Service>::namespaced(client.clone(), NS)
        .get(GATEWAY)
        .await
        .with_context(|| format!("reading Service {NS}/{GATEWAY} ({install_hint})"))?;
    let addresses = match &args.gateway_addresses {
        Some(addresses) => addresses.clone(),
        None => {
            let ingress: Vec<String> = gateway
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.ip.or(i.hostname))
                .collect();
            anyhow::ensure!(
                !ingress.is_empty(),
                "Service {NS}/{GATEWAY} has no LoadBalancer address yet: wait for one, or give --gateway-addresses"
            );
            ingress.join(",")
        }
    };
    let ports = gateway
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let port = |name: &str| {
        ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.port)
            .with_context(|| format!("Service {NS}/{GATEWAY} has no port named {name}"))
    };
    let annotations = gateway.metadata.annotations.clone().unwrap_or_default();
    let identity = annotations
        .get(MIRROR_GATEWAY_IDENTITY)
        .filter(|identity| !identity.trim().is_empty())
        .cloned()
        .with_context(|| {
            format!("Service {NS}/{GATEWAY} has no (or an empty) {MIRROR_GATEWAY_IDENTITY} annotation: the linked cluster could not authenticate its gateway")
        })?;
    let period = annotations
        .get(PROBE_PERIOD_ANNOTATION)
        .map(|p| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                format!("{p}s")
            } else {
                p.clone()
            }
        })
        .unwrap_or_else(|| "3s".into());
    let token_secret = Api::<Secret>::namespaced(client, NS)
        .get(REMOTE_ACCESS_TOKEN)
        .await
        .with_context(|| format!("reading Secret {NS}/{REMOTE_ACCESS_TOKEN} ({install_hint})"))?;
    let data = token_secret.data.unwrap_or_default();
    let token = data
        .get("token")
        .and_then(|t| String::from_utf8(t.0.clone()).ok())
        .with_context(|| format!("Secret {NS}/{REMOTE_ACCESS_TOKEN} has no token yet (the token controller fills it in)"))?;
    let ca = data.get("ca.crt").map(|c| c.0.clone()).unwrap_or_default();
    let name = &args.cluster_name;
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(&ca),
        }}],
        "users": [{"name": REMOTE_ACCESS, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": REMOTE_ACCESS}}],
        "current-context": name,
    });
    let link = Link::new(
        name,
        LinkSpec {
            target_cluster_name: name.clone(),
            target_cluster_domain: args.cluster_domain.clone(),
            target_cluster_linkerd_namespace: Some(
                mesh_api::labels::CONTROL_PLANE_NAMESPACE.into(),
            ),
            cluster_credentials_secret: credentials_name(name),
            gateway_address: addresses,
            gateway_port: serde_json::Value::String(port("mc-gateway")?.to_string()),
            gateway_identity: identity,
            probe_spec: Some(ProbeSpec {
                path: Some(
                    annotations
                        .get(PROBE_PATH_ANNOTATION)
                        .cloned()
                        .unwrap_or_else(|| "/ready".into()),
                ),
                port: Some(serde_json::Value::String(port("mc-probe")?.to_string())),
                period: Some(period),
                failure_threshold: None,
                timeout: None,
            }),
            selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(
                        [(
                            mesh_api::labels::MIRROR_EXPORTED.to_owned(),
                            "true".to_owned(),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                },
            ),
            ..LinkSpec::default()
        },
    );
    let mut link = link;
    link.metadata.namespace = Some(NS.into());
    let mut annotations = std::collections::BTreeMap::from([(
        mesh_api::labels::TRANSPORT_ANNOTATION.to_owned(),
        args.transport.as_str().to_owned(),
    )]);
    if args.gateway_addresses.is_none() {
        annotations.insert(
            mesh_api::labels::GATEWAY_SERVICE_ANNOTATION.to_owned(),
            format!("{NS}/{GATEWAY}"),
        );
    }
    link.metadata.annotations = Some(annotations);
    let credentials = Secret {
        metadata: ObjectMeta {
            name: Some(credentials_name(name)),
            namespace: Some(NS.into()),
            labels: Some([(MIRROR_CLUSTER_NAME.to_owned(), name.clone())].into()),
            ..ObjectMeta::default()
        },
        type_: Some("mirror.linkerd.io/remote-kubeconfig".into()),
        string_data: Some(
            [(
                "kubeconfig".to_owned(),
                serde_saphyr::to_string(&kubeconfig)?,
            )]
            .into(),
        ),
        ..Secret::default()
    };
    let mut objects = vec![object(&credentials)?, object(&link)?];
    objects.extend(mirror_objects(name, &args.image.controller_image())?);
    manifest::to_yaml(&objects)
}

fn credentials_name(cluster: &str) -> String {
    format!("cluster-credentials-{cluster}")
}

/// The service mirror of Link `cluster`: its ServiceAccount, what it may
/// do here (write mirrors, read its Link and credentials) and Deployment.
fn mirror_objects(cluster: &str, image: &str) -> anyhow::Result<Vec<Object>> {
    let name = format!("linkerd-service-mirror-{cluster}");
    let labels = serde_json::json!({"linkerd.io/extension": "multicluster", MIRROR_CLUSTER_NAME: cluster, "component": "linkerd-service-mirror"});
    let meta = |kind_name: &str, namespaced: bool| {
        let mut meta = serde_json::json!({"name": kind_name, "labels": labels});
        if namespaced {
            meta["namespace"] = NS.into();
        }
        meta
    };
    let rw = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    Ok(vec![
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(&name, true)}),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(&format!("{name}-access-local-resources"), false),
            "rules": [
                {"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": rw},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
            ],
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(&format!("{name}-access-local-resources"), false),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{name}-access-local-resources")},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}],
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(&format!("{name}-read-link"), true),
            "rules": [
                {"apiGroups": ["multicluster.linkerd.io"], "resources": ["links"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["multicluster.linkerd.io"], "resources": ["links/status"], "verbs": ["patch", "update"]},
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [credentials_name(cluster)], "verbs": ["get", "watch"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
                // Of two replicas, the one holding the Lease mirrors.
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
            ],
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(&format!("{name}-read-link"), true),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("{name}-read-link")},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}],
        }),
        object(&serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta(&name, true),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"component": "linkerd-service-mirror", MIRROR_CLUSTER_NAME: cluster}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": name,
                        "containers": [{
                            "name": "service-mirror",
                            "image": image,
                            "args": ["mirror", format!("--link={cluster}"), format!("--namespace={NS}")],
                            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                            "ports": [{"name": "admin-http", "containerPort": mesh_api::ports::MIRROR_ADMIN}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": "admin-http"}},
                            "livenessProbe": {"httpGet": {"path": "/live", "port": "admin-http"}},
                        }],
                    },
                },
            },
        }))?,
    ])
}

/// `mesh --context=west multicluster unlink --cluster-name east`: what
/// `kubectl --context=west delete -f -` needs to remove the link: its
/// credentials, the Link, the service mirror and its permissions, and the
/// mirror Services (with their Endpoints) it made, found in this cluster
/// (by their labels and the mirror's field manager).
pub async fn render_unlink(global: &GlobalArgs, cluster: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        names_a_dns_label(cluster),
        "--cluster-name {cluster:?}: lower-case letters, digits and '-', at most 63"
    );
    let client =
        mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref())
            .await?;
    let mirrors = Api::<Service>::all(client)
        .list(&kube::api::ListParams::default().labels(&format!(
            "{}=true,{MIRROR_CLUSTER_NAME}={cluster}",
            mesh_api::labels::MIRROR_MIRRORED_SERVICE
        )))
        .await
        .context("listing the link's mirror Services")?;
    let mut objects = vec![
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("linkerd-service-mirror-{cluster}"), "namespace": NS}}),
        serde_json::json!({"apiVersion": "multicluster.linkerd.io/v1alpha3", "kind": "Link", "metadata": {"name": cluster, "namespace": NS}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": credentials_name(cluster), "namespace": NS}}),
    ];
    objects.extend(
        mirror_objects(cluster, "-")?
            .iter()
            .filter(|o| o["kind"] != "Deployment")
            .map(manifest::reference),
    );
    // Only what the mirror wrote: a Service that merely wears its labels
    // is someone else's, and `delete -f` must not take it.
    for mirror in mirrors
        .items
        .into_iter()
        .filter(|m| mesh_mirror::desired::written_by_mirror(&m.metadata))
    {
        objects.push(
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": mirror.metadata.name, "namespace": mirror.metadata.namespace}}),
        );
    }
    manifest::to_yaml(&objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_are_recognised() {
        for url in [
            "https://127.0.0.1:6443",
            "https://localhost:6443/",
            "https://[::1]:6443",
            "https://127.0.0.5",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "https://172.31.0.2:6443",
            "https://kind-control-plane:6443",
            "https://[fd00::1]:6443",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn the_published_server_is_read_from_a_kubeadm_cluster_info() {
        let published = "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: https://172.31.0.2:6443\n    certificate-authority-data: AA==\ncontexts: []\nusers: []\n";
        assert_eq!(
            published_server(published).as_deref(),
            Some("https://172.31.0.2:6443")
        );
        assert_eq!(published_server("not yaml: ["), None);
    }
}
