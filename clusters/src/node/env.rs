//! A container's environment as the kubelet builds it: `envFrom` sources,
//! then `env` entries (literal, `$(VAR)` expansion, ConfigMap and Secret
//! keys, downward-API fields), plus the service variables every pod gets
//! for the `kubernetes` Service and `HOSTNAME`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

/// Why the environment cannot be built (the container waits with
/// CreateContainerConfigError and this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// A downward-API field of the pod (`metadata.name`, `status.podIP`,
/// `metadata.labels['app']`, …).
pub fn field_ref(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        map.and_then(|m| m.get(key).cloned())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .or_else(|| Some("default".into())),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_owned()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_owned()),
        _ if path.starts_with("metadata.labels") => keyed("metadata.labels", meta.labels.as_ref()),
        _ if path.starts_with("metadata.annotations") => {
            keyed("metadata.annotations", meta.annotations.as_ref())
        }
        _ => None,
    }
}

/// Expands `$(NAME)` references to earlier variables; `$$` escapes.
pub fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Where ConfigMaps and Secrets come from.
#[derive(Clone)]
pub struct Sources {
    /// ConfigMaps of the pod's namespace.
    pub config_maps: Api<ConfigMap>,
    /// Secrets of the pod's namespace.
    pub secrets: Api<Secret>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

/// The two kinds of object a container's environment reads keys from.
#[derive(Debug, Clone, Copy)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::ConfigMap => "configmap",
            Self::Secret => "secret",
        }
    }
}

impl Sources {
    /// The keys of a ConfigMap (`data`, as the kubelet reads it for env) or
    /// a Secret (decoded); `None` when it does not exist.
    async fn strings(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EnvError> {
        let found = match kind {
            Kind::ConfigMap => self
                .config_maps
                .get_opt(name)
                .await
                .map(|cm| cm.map(|cm| cm.data.unwrap_or_default())),
            Kind::Secret => self.secrets.get_opt(name).await.map(|secret| {
                secret.map(|secret| {
                    super::volumes::secret_data(&secret)
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                        .collect()
                })
            }),
        };
        found.map_err(|e| EnvError(format!("reading {} {name:?}: {e}", kind.name())))
    }
}

/// The whole environment of `container` in `pod`.
pub async fn build(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    pod_ip: &str,
    host_ip: &str,
    base: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, EnvError> {
    let mut vars = base.clone();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let sources_of_from = [
            from.config_map_ref
                .as_ref()
                .map(|r| (Kind::ConfigMap, &r.name, r.optional)),
            from.secret_ref
                .as_ref()
                .map(|r| (Kind::Secret, &r.name, r.optional)),
        ];
        for (kind, name, optional) in sources_of_from.into_iter().flatten() {
            match sources.strings(kind, name).await? {
                Some(data) => {
                    for (k, v) in data {
                        vars.insert(format!("{prefix}{k}"), v);
                    }
                }
                None if optional == Some(true) => {}
                None => return Err(EnvError(format!("{} {name:?} not found", kind.name()))),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            Some(expand(value, &vars))
        } else if let Some(from) = &var.value_from {
            let key_ref = from
                .config_map_key_ref
                .as_ref()
                .map(|r| (Kind::ConfigMap, &r.name, &r.key, r.optional))
                .or_else(|| {
                    from.secret_key_ref
                        .as_ref()
                        .map(|r| (Kind::Secret, &r.name, &r.key, r.optional))
                });
            if let Some((kind, name, key, optional)) = key_ref {
                let found = sources
                    .strings(kind, name)
                    .await?
                    .and_then(|data| data.get(key).cloned());
                match found {
                    Some(v) => Some(v),
                    None if optional == Some(true) => None,
                    None => {
                        return Err(EnvError(format!(
                            "env {}: key {key:?} of {} {name:?} not found",
                            var.name,
                            kind.name()
                        )));
                    }
                }
            } else if let Some(f) = &from.field_ref {
                Some(
                    field_ref(pod, &f.field_path, pod_ip, host_ip).ok_or_else(|| {
                        EnvError(format!(
                            "env {}: unsupported fieldRef {:?}",
                            var.name, f.field_path
                        ))
                    })?,
                )
            } else {
                from.resource_field_ref
                    .as_ref()
                    .map(|r| resource_field(container, &r.resource))
            }
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            vars.insert(var.name.clone(), value);
        }
    }
    Ok(vars)
}

/// `limits.cpu` and friends: the container's value, else the node's
/// (we report 2 CPUs and no memory limit, as an unlimited container sees).
fn resource_field(container: &Container, resource: &str) -> String {
    let resources = container.resources.as_ref();
    let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
    let map = match kind {
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => resources.and_then(|r| r.limits.as_ref()),
    };
    map.and_then(|m| m.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| {
            if name == "cpu" {
                "2".into()
            } else {
                "0".into()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_and_unknown_ones_stay() {
        let vars = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5", &vars), "cost $5");
    }

    #[test]
    fn downward_fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u",
                         "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"nodeName": "west", "containers": []}
        }))
        .expect("pod");
        let f = |p: &str| field_ref(&pod, p, "10.10.0.2", "172.31.0.1");
        assert_eq!(f("metadata.name").as_deref(), Some("web-1"));
        assert_eq!(f("metadata.labels['app']").as_deref(), Some("web"));
        assert_eq!(f("metadata.annotations['a']").as_deref(), Some("b"));
        assert_eq!(f("status.podIP").as_deref(), Some("10.10.0.2"));
        assert_eq!(f("spec.serviceAccountName").as_deref(), Some("default"));
        assert_eq!(f("spec.nodeName").as_deref(), Some("west"));
        assert_eq!(f("metadata.bogus"), None);
    }
}
