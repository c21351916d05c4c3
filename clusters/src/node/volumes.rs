//! Pod volumes as files on the node, the way the kubelet lays them out:
//! `emptyDir`, `configMap`, `secret`, `downwardAPI` and `projected`
//! (ServiceAccount tokens with their audience and expiry, ConfigMaps,
//! Secrets, downward API). Everything lives under the pod's directory and
//! is bind-mounted into its containers. Running [`materialize`] again
//! rewrites the files (atomically, by rename), which is how ConfigMap and
//! Secret edits reach running pods; ServiceAccount tokens are requested
//! again only when asked to (they are renewed at 80 % of their life).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount, Volume,
};
use kube::Api;
use kube::api::PostParams;

use super::env::field_ref;

/// Why volumes could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("volume {volume:?}: {reason}")]
pub struct VolumeError {
    /// Which volume.
    pub volume: String,
    /// What went wrong.
    pub reason: String,
}

/// The pod's volumes on disk.
#[derive(Debug, Clone, Default)]
pub struct Materialized {
    /// Each volume's directory.
    pub dirs: BTreeMap<String, PathBuf>,
    /// When the earliest token written by this run should be renewed (80 %
    /// of its life); `None` when no token was requested.
    pub renew_tokens_at: Option<Instant>,
}

/// Where the API objects come from.
#[derive(Clone)]
pub struct VolumeSources {
    /// The admin client.
    pub client: kube::Client,
    /// The pod's IP, for downward-API files.
    pub pod_ip: String,
    /// The node's IP.
    pub host_ip: String,
}

impl std::fmt::Debug for VolumeSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeSources")
            .field("pod_ip", &self.pod_ip)
            .field("host_ip", &self.host_ip)
            .finish_non_exhaustive()
    }
}

fn err(volume: &Volume, reason: impl Into<String>) -> VolumeError {
    VolumeError {
        volume: volume.name.clone(),
        reason: reason.into(),
    }
}

/// Writes `contents` to `dir/rel` atomically, creating parents.
fn write_file(dir: &Path, rel: &str, contents: &[u8]) -> std::io::Result<()> {
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|part| part == "..") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("path {rel:?} leaves the volume"),
        ));
    }
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("mesh-tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, &path)
}

/// Keys to files: all keys, or the listed `items` under their paths.
fn select<'a>(
    data: &'a BTreeMap<String, Vec<u8>>,
    items: Option<&'a Vec<KeyToPath>>,
) -> Result<Vec<(String, &'a [u8])>, String> {
    match items {
        None => Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_slice()))
            .collect()),
        Some(items) => items
            .iter()
            .map(|item| {
                data.get(&item.key)
                    .map(|v| (item.path.clone(), v.as_slice()))
                    .ok_or_else(|| format!("key {:?} not found", item.key))
            })
            .collect(),
    }
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    data
}

/// A Secret's keys: `data`, then `stringData`.
pub(super) fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    data.extend(
        secret
            .string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
    );
    data
}

/// Writes the selected keys of `data` (`None`: the object is missing).
fn write_keys(
    dir: &Path,
    what: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
) -> Result<(), String> {
    match data {
        Some(data) => {
            for (path, bytes) in select(&data, items)? {
                write_file(dir, &path, bytes).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        None if optional => Ok(()),
        None => Err(format!("{what} not found")),
    }
}

/// Writes the selected keys of ConfigMap or Secret `name` (`what` names its
/// kind in errors; `data` reads its keys).
async fn write_object<K>(
    api: &Api<K>,
    dir: &Path,
    what: &str,
    name: &str,
    data: fn(&K) -> BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
) -> Result<(), String>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let found = api.get_opt(name).await.map_err(|e| e.to_string())?;
    let data = found.as_ref().map(data);
    write_keys(dir, &format!("{what} {name:?}"), data, items, optional)
}

fn write_downward(
    pod: &Pod,
    dir: &Path,
    items: &[DownwardAPIVolumeFile],
    sources: &VolumeSources,
) -> Result<(), String> {
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            let path = f.field_path.as_str();
            let map = |m: Option<&BTreeMap<String, String>>| {
                m.map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}=\"{v}\"\n"))
                        .collect::<String>()
                })
                .unwrap_or_default()
            };
            match path {
                "metadata.labels" => map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => map(pod.metadata.annotations.as_ref()),
                _ => field_ref(pod, path, &sources.pod_ip, &sources.host_ip)
                    .ok_or_else(|| format!("unsupported fieldRef {path:?}"))?,
            }
        } else {
            String::new()
        };
        write_file(dir, &item.path, value.as_bytes()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Asks the API for a token of the pod's ServiceAccount, bound to the pod.
async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration: i64,
) -> Result<(String, Duration), String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            expiration_seconds: Some(expiration),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let answer = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("requesting a token for serviceaccount {ns}/{sa}: {e}"))?;
    let status = answer
        .status
        .ok_or_else(|| "the token request came back without a token".to_owned())?;
    let lifetime = (status.expiration_timestamp.0 - jiff::Timestamp::now())
        .total(jiff::Unit::Second)
        .unwrap_or(0.0)
        .max(0.0);
    Ok((status.token, Duration::from_secs_f64(lifetime)))
}

/// One thing a volume's directory is filled from: a plain volume is one
/// source, a projected volume several.
enum Source<'a> {
    ConfigMap {
        name: &'a str,
        items: Option<&'a Vec<KeyToPath>>,
        optional: bool,
    },
    Secret {
        name: &'a str,
        items: Option<&'a Vec<KeyToPath>>,
        optional: bool,
    },
    Downward(&'a [DownwardAPIVolumeFile]),
    Token {
        path: &'a str,
        audience: Option<&'a str>,
        expiration: i64,
    },
}

/// What fills `volume` (nothing for emptyDir).
fn sources_of(volume: &Volume) -> Result<Vec<Source<'_>>, VolumeError> {
    if volume.empty_dir.is_some() {
        return Ok(Vec::new());
    }
    if let Some(cm) = &volume.config_map {
        return Ok(vec![Source::ConfigMap {
            name: &cm.name,
            items: cm.items.as_ref(),
            optional: cm.optional == Some(true),
        }]);
    }
    if let Some(secret) = &volume.secret {
        return Ok(vec![Source::Secret {
            name: secret.secret_name.as_deref().unwrap_or_default(),
            items: secret.items.as_ref(),
            optional: secret.optional == Some(true),
        }]);
    }
    if let Some(downward) = &volume.downward_api {
        return Ok(vec![Source::Downward(
            downward.items.as_deref().unwrap_or_default(),
        )]);
    }
    if let Some(projected) = &volume.projected {
        let mut out = Vec::new();
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                out.push(Source::Token {
                    path: &token.path,
                    audience: token.audience.as_deref(),
                    expiration: token.expiration_seconds.unwrap_or(3600).max(600),
                });
            }
            if let Some(cm) = &source.config_map {
                out.push(Source::ConfigMap {
                    name: &cm.name,
                    items: cm.items.as_ref(),
                    optional: cm.optional == Some(true),
                });
            }
            if let Some(secret) = &source.secret {
                out.push(Source::Secret {
                    name: &secret.name,
                    items: secret.items.as_ref(),
                    optional: secret.optional == Some(true),
                });
            }
            if let Some(downward) = &source.downward_api {
                out.push(Source::Downward(
                    downward.items.as_deref().unwrap_or_default(),
                ));
            }
        }
        return Ok(out);
    }
    if volume.host_path.is_some() {
        return Err(err(
            volume,
            "hostPath volumes are not supported by mesh's node agent",
        ));
    }
    Ok(Vec::new())
}

/// Lays out every volume of `pod` under `pod_dir/volumes`. A token whose
/// file is already there is requested again only when `renew_tokens`.
pub async fn materialize(
    pod: &Pod,
    pod_dir: &Path,
    sources: &VolumeSources,
    renew_tokens: bool,
) -> Result<Materialized, VolumeError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let config_maps: Api<ConfigMap> = Api::namespaced(sources.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(sources.client.clone(), &ns);
    let mut out = Materialized::default();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in &volumes {
        let fills = sources_of(volume)?;
        let dir = pod_dir.join("volumes").join(&volume.name);
        std::fs::create_dir_all(&dir).map_err(|e| err(volume, e.to_string()))?;
        if volume.empty_dir.is_some() {
            // As the kubelet makes it: writable by whatever user the
            // containers run as.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| err(volume, e.to_string()))?;
        }
        for fill in fills {
            match fill {
                Source::ConfigMap {
                    name,
                    items,
                    optional,
                } => {
                    write_object(
                        &config_maps,
                        &dir,
                        "configmap",
                        name,
                        config_map_data,
                        items,
                        optional,
                    )
                    .await
                }
                Source::Secret {
                    name,
                    items,
                    optional,
                } => {
                    write_object(&secrets, &dir, "secret", name, secret_data, items, optional).await
                }
                Source::Downward(items) => write_downward(pod, &dir, items, sources),
                Source::Token {
                    path,
                    audience,
                    expiration,
                } => {
                    if !renew_tokens && dir.join(path.trim_start_matches('/')).exists() {
                        continue;
                    }
                    let (jwt, lifetime) = request_token(&sources.client, pod, audience, expiration)
                        .await
                        .map_err(|e| err(volume, e))?;
                    let renew_at = Instant::now() + lifetime.mul_f64(0.8);
                    out.renew_tokens_at =
                        Some(out.renew_tokens_at.map_or(renew_at, |r| r.min(renew_at)));
                    write_file(&dir, path, jwt.as_bytes()).map_err(|e| e.to_string())
                }
            }
            .map_err(|e| err(volume, e))?;
        }
        out.dirs.insert(volume.name.clone(), dir);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_stay_inside_their_volume() {
        let dir = tempfile::tempdir().expect("dir");
        write_file(dir.path(), "a/b.txt", b"x").expect("nested");
        assert_eq!(
            std::fs::read(dir.path().join("a/b.txt")).expect("read"),
            b"x"
        );
        assert!(write_file(dir.path(), "../escape", b"x").is_err());
    }

    #[test]
    fn items_pick_keys_and_missing_ones_say_which() {
        let data = BTreeMap::from([
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
        ]);
        assert_eq!(select(&data, None).expect("all").len(), 2);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "conf/b.txt".into(),
            mode: None,
        }];
        let picked = select(&data, Some(&items)).expect("picked");
        assert_eq!(picked, vec![("conf/b.txt".to_owned(), b"2".as_slice())]);
        let missing = vec![KeyToPath {
            key: "c".into(),
            path: "c".into(),
            mode: None,
        }];
        assert!(
            select(&data, Some(&missing))
                .expect_err("missing")
                .contains("\"c\"")
        );
    }
}
