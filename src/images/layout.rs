//! An image written as an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/sha256/…`), the form `skopeo copy oci:DIR:TAG …`
//! and `umoci unpack --image DIR:TAG` read. JSON documents are written
//! with their keys in order, so the same image has the same digest.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use oci_spec::image::{
    ANNOTATION_REF_NAME, Arch, ConfigBuilder, Descriptor, Digest, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, RootFsBuilder,
};

use super::layer::{Layer, sha256};

/// What the image runs, as the image config says it.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub user: String,
    pub entrypoint: Vec<String>,
    pub working_dir: Option<String>,
    pub labels: HashMap<String, String>,
    /// RFC 3339 time of creation.
    pub created: String,
}

/// An image written: the manifest's digest and the bytes of its blobs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    pub digest: String,
    pub size: u64,
}

/// Writes an image of `layers` (bottom first) running `run` into the
/// layout at `dir` (replacing what was there), tagged `tag`.
pub fn write(dir: &Path, layers: &[&Layer], run: &RunConfig, tag: &str) -> anyhow::Result<Written> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let put = |bytes: &[u8]| -> anyhow::Result<String> {
        let digest = sha256(bytes);
        let file = blobs.join(digest.trim_start_matches("sha256:"));
        std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
        Ok(digest)
    };
    let descriptor =
        |media_type: MediaType, bytes: usize, digest: &str| -> anyhow::Result<Descriptor> {
            let digest: Digest = digest.parse().context("a digest")?;
            Ok(Descriptor::new(media_type, bytes as u64, digest))
        };

    let mut size = 0u64;
    let mut layer_descriptors = Vec::new();
    for layer in layers {
        put(&layer.blob)?;
        size += layer.blob.len() as u64;
        layer_descriptors.push(descriptor(
            MediaType::ImageLayerGzip,
            layer.blob.len(),
            &layer.digest,
        )?);
    }
    let config = ImageConfigurationBuilder::default()
        .created(run.created.clone())
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .user(run.user.clone())
                .entrypoint(run.entrypoint.clone())
                .env(vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                ])
                .labels(run.labels.clone())
                .working_dir(run.working_dir.clone().unwrap_or_else(|| "/".to_owned()))
                .build()?,
        )
        .rootfs(
            RootFsBuilder::default()
                .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
                .build()?,
        )
        .build()?;
    let config_bytes = canonical_json(&config)?;
    let config_digest = put(&config_bytes)?;
    size += config_bytes.len() as u64;

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            config_bytes.len(),
            &config_digest,
        )?)
        .layers(layer_descriptors)
        .build()?;
    let manifest_bytes = canonical_json(&manifest)?;
    let manifest_digest = put(&manifest_bytes)?;
    size += manifest_bytes.len() as u64;

    let mut tagged = descriptor(
        MediaType::ImageManifest,
        manifest_bytes.len(),
        &manifest_digest,
    )?;
    tagged.set_annotations(Some(HashMap::from([(
        ANNOTATION_REF_NAME.to_owned(),
        tag.to_owned(),
    )])));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![tagged])
        .build()?;
    std::fs::write(dir.join("index.json"), canonical_json(&index)?)?;
    std::fs::write(
        dir.join("oci-layout"),
        canonical_json(
            &OciLayoutBuilder::default()
                .image_layout_version("1.0.0")
                .build()?,
        )?,
    )?;
    Ok(Written {
        digest: manifest_digest,
        size,
    })
}

/// `value` as JSON with every object's keys in order (the spec's types
/// keep labels and annotations in hash maps, whose order changes from
/// run to run).
fn canonical_json<T: serde::Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    fn sorted(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let ordered: std::collections::BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::Value::Object(ordered.into_iter().collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sorted).collect())
            }
            other => other,
        }
    }
    Ok(serde_json::to_vec(&sorted(serde_json::to_value(value)?))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::layer::LayerBuilder;

    fn run_config() -> RunConfig {
        RunConfig {
            user: "2102".into(),
            entrypoint: vec!["/usr/bin/mesh-proxy".into()],
            working_dir: None,
            labels: (0..20)
                .map(|n| (format!("label.{n}"), n.to_string()))
                .collect(),
            created: "1970-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_same_image_written_twice_has_the_same_digest_and_blobs() {
        let mut files = LayerBuilder::default();
        files.file("usr/bin/mesh-proxy", b"binary".to_vec(), 0o755);
        let layer = files.build(0).expect("layer");
        let (one, two) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let first = write(one.path(), &[&layer], &run_config(), "v1").expect("first");
        let second = write(two.path(), &[&layer], &run_config(), "v1").expect("second");
        assert_eq!(first.digest, second.digest);
        let list = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
                .expect("blobs")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(list(one.path()), list(two.path()));
        assert_eq!(
            std::fs::read(one.path().join("index.json")).expect("index"),
            std::fs::read(two.path().join("index.json")).expect("index")
        );
    }

    #[test]
    fn the_layout_names_each_blob_by_its_digest_and_the_tag_in_the_index() {
        let mut files = LayerBuilder::default();
        files.file("usr/bin/mesh-proxy", b"binary".to_vec(), 0o755);
        let layer = files.build(0).expect("layer");
        let dir = tempfile::tempdir().expect("dir");
        let written = write(dir.path(), &[&layer], &run_config(), "v1.2.3").expect("written");
        let index = oci_spec::image::ImageIndex::from_file(dir.path().join("index.json"))
            .expect("index.json");
        let tagged = &index.manifests()[0];
        assert_eq!(tagged.digest().to_string(), written.digest);
        assert_eq!(
            tagged
                .annotations()
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_REF_NAME)),
            Some(&"v1.2.3".to_owned())
        );
        let blob = |digest: &str| {
            std::fs::read(
                dir.path()
                    .join("blobs/sha256")
                    .join(digest.trim_start_matches("sha256:")),
            )
            .expect("blob")
        };
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&blob(&written.digest)).expect("manifest");
        assert_eq!(sha256(&blob(&written.digest)), written.digest);
        let config: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&blob(manifest.config().digest().as_ref())).expect("config");
        assert_eq!(config.rootfs().diff_ids(), &vec![layer.diff_id.clone()]);
        assert_eq!(
            config.config().as_ref().and_then(|c| c.user().clone()),
            Some("2102".into())
        );
        assert_eq!(manifest.layers()[0].digest().to_string(), layer.digest);
        assert_eq!(blob(&layer.digest), layer.blob);
    }
}
