//! Container images as local programs: `clusters/images.toml` says which
//! program stands for each image repository, and [`Images::resolve`] turns
//! a container's image, command and args into the argv to run, with
//! Docker's rules for ENTRYPOINT and CMD.

use std::path::PathBuf;

use serde::Deserialize;

/// The mapping shipped with mesh.
pub const BUILTIN: &str = include_str!("../../images.toml");

/// One image repository's mapping.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageRule {
    /// The repository, without tag or digest.
    pub repository: String,
    /// One of mesh's binaries.
    #[serde(default)]
    pub binary: Option<String>,
    /// One of the pinned Kubernetes binaries.
    #[serde(default)]
    pub k8s_binary: Option<String>,
    /// A program `scripts/setup.sh` leaves in mesh's cache directory, by
    /// its path there (`prometheus/usr/bin/prometheus`).
    #[serde(default)]
    pub cached: Option<String>,
    /// The image's ENTRYPOINT.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// The image's CMD.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Other names a pod may use for the program.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Other programs the image ships, by the name a pod uses for them
    /// (in commands and exec probes): the mesh binary and its first
    /// arguments (`podcli = ["mesh-podinfo", "podcli"]`).
    #[serde(default)]
    pub tools: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagesFile {
    image: Vec<ImageRule>,
}

/// The mapping and where the programs are.
#[derive(Debug, Clone)]
pub struct Images {
    rules: Vec<ImageRule>,
    /// Where mesh's binaries are.
    pub mesh_bin_dir: PathBuf,
    /// Where the Kubernetes binaries are.
    pub k8s_bin_dir: PathBuf,
    /// mesh's cache directory (for `cached` programs).
    pub cache_dir: PathBuf,
}

/// Why a container cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The image has no mapping.
    #[error(
        "image {0:?} is not available on this host: clusters/images.toml maps no program to it"
    )]
    Unmapped(String),
    /// Nothing to run.
    #[error("image {0:?}: the container gives no command and the image has no entrypoint or cmd")]
    NoCommand(String),
    /// The program the image maps to is one `scripts/setup.sh` builds,
    /// and it has not been built here.
    #[error(
        "image {image:?} runs {path}, which is not there: scripts/setup.sh builds it (the full set-up, for the tests)"
    )]
    NotBuilt {
        /// The image.
        image: String,
        /// Where the program should be.
        path: String,
    },
    /// The mapping file is malformed.
    #[error("images.toml: {0}")]
    Malformed(String),
}

/// The repository part of an image reference (`busybox:1.36` → `busybox`,
/// `ghcr.io/a/b@sha256:…` → `ghcr.io/a/b`, `localhost:5000/x:1` →
/// `localhost:5000/x`).
pub fn repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

impl Images {
    /// Parses a mapping.
    pub fn parse(
        text: &str,
        mesh_bin_dir: PathBuf,
        k8s_bin_dir: PathBuf,
        cache_dir: PathBuf,
    ) -> Result<Self, ImageError> {
        let file: ImagesFile =
            toml::from_str(text).map_err(|e| ImageError::Malformed(e.to_string()))?;
        for rule in &file.image {
            let programs = [&rule.binary, &rule.k8s_binary, &rule.cached];
            if programs.iter().filter(|p| p.is_some()).count() > 1 {
                return Err(ImageError::Malformed(format!(
                    "{}: give one of binary, k8s_binary and cached",
                    rule.repository
                )));
            }
        }
        Ok(Self {
            rules: file.image,
            mesh_bin_dir,
            k8s_bin_dir,
            cache_dir,
        })
    }

    /// The rule for an image.
    pub fn rule(&self, image: &str) -> Option<&ImageRule> {
        let repo = repository(image);
        let short = repo.strip_prefix("docker.io/library/").unwrap_or(repo);
        self.rules
            .iter()
            .find(|r| r.repository == repo || r.repository == short)
    }

    /// The argv for a container: the pod's `command` replaces the image's
    /// ENTRYPOINT, its `args` replace CMD; then the image's own program name
    /// becomes the local program's path.
    pub fn resolve(
        &self,
        image: &str,
        command: &[String],
        args: &[String],
    ) -> Result<Vec<String>, ImageError> {
        let rule = self
            .rule(image)
            .ok_or_else(|| ImageError::Unmapped(image.to_owned()))?;
        let mut argv: Vec<String> = if !command.is_empty() {
            command.iter().chain(args).cloned().collect()
        } else if !args.is_empty() {
            rule.entrypoint.iter().chain(args).cloned().collect()
        } else {
            rule.entrypoint.iter().chain(&rule.cmd).cloned().collect()
        };
        let Some(first) = argv.first_mut() else {
            return Err(ImageError::NoCommand(image.to_owned()));
        };
        let names_program = rule.entrypoint.first() == Some(first) || rule.aliases.contains(first);
        if names_program {
            if let Some(binary) = &rule.binary {
                *first = self.mesh_bin_dir.join(binary).display().to_string();
            } else if let Some(binary) = &rule.k8s_binary {
                *first = self.k8s_bin_dir.join(binary).display().to_string();
            } else if let Some(path) = &rule.cached {
                let program = self.cache_dir.join(path);
                if !program.is_file() {
                    return Err(ImageError::NotBuilt {
                        image: image.to_owned(),
                        path: program.display().to_string(),
                    });
                }
                *first = program.display().to_string();
            }
            return Ok(argv);
        }
        Ok(with_tools(&self.tools(image), argv))
    }

    /// The programs an image ships besides its entrypoint, each as the argv
    /// prefix that runs it here.
    pub fn tools(&self, image: &str) -> Tools {
        self.rule(image)
            .map(|rule| {
                rule.tools
                    .iter()
                    .filter_map(|(name, prefix)| {
                        let (binary, args) = prefix.split_first()?;
                        let path = self.mesh_bin_dir.join(binary).display().to_string();
                        Some((
                            name.clone(),
                            std::iter::once(path).chain(args.iter().cloned()).collect(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An image's extra programs (see [`ImageRule::tools`]).
pub type Tools = std::collections::BTreeMap<String, Vec<String>>;

/// `argv` with its program replaced when it names one of `tools`.
pub fn with_tools(tools: &Tools, mut argv: Vec<String>) -> Vec<String> {
    let Some(first) = argv.first() else {
        return argv;
    };
    let name = first.rsplit('/').next().unwrap_or(first);
    match tools.get(name) {
        Some(prefix) => {
            argv.splice(0..1, prefix.iter().cloned());
            argv
        }
        None => argv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> Images {
        Images::parse(
            BUILTIN,
            "/mesh/bin".into(),
            "/k8s/bin".into(),
            "/cache/mesh".into(),
        )
        .expect("builtin parses")
    }

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn an_images_other_programs_run_as_mesh_binaries() {
        let i = images();
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let tools = i.tools("ghcr.io/stefanprodan/podinfo:6.7.0");
        assert_eq!(
            with_tools(
                &tools,
                v(&["podcli", "check", "http", "localhost:9898/readyz"])
            ),
            v(&[
                "/mesh/bin/mesh-podinfo",
                "podcli",
                "check",
                "http",
                "localhost:9898/readyz"
            ])
        );
        assert_eq!(with_tools(&tools, v(&["cat", "/x"])), v(&["cat", "/x"]));
        assert!(i.tools("busybox").is_empty());
    }

    #[test]
    fn repositories_drop_tags_and_digests_but_not_registry_ports() {
        assert_eq!(repository("busybox:1.36"), "busybox");
        assert_eq!(
            repository("ghcr.io/stefanprodan/podinfo:6.7.0"),
            "ghcr.io/stefanprodan/podinfo"
        );
        assert_eq!(repository("ghcr.io/a/b@sha256:abc"), "ghcr.io/a/b");
        assert_eq!(repository("localhost:5000/x:1"), "localhost:5000/x");
        assert_eq!(repository("localhost:5000/x"), "localhost:5000/x");
    }

    #[test]
    fn the_podinfo_manifest_runs_our_demo_app_with_its_flags() {
        let argv = images()
            .resolve(
                "ghcr.io/stefanprodan/podinfo:6.7.0",
                &v(&["./podinfo", "--port=9898", "--level=info"]),
                &[],
            )
            .expect("mapped");
        assert_eq!(
            argv,
            v(&["/mesh/bin/mesh-podinfo", "--port=9898", "--level=info"])
        );
        let bare = images()
            .resolve("ghcr.io/stefanprodan/podinfo:latest", &[], &[])
            .expect("mapped");
        assert_eq!(bare, v(&["/mesh/bin/mesh-podinfo"]));
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker_rules() {
        let i = images();
        assert_eq!(
            i.resolve("curlimages/curl:8.5.0", &[], &v(&["-s", "http://x"]))
                .expect("curl"),
            v(&["curl", "-s", "http://x"])
        );
        assert_eq!(i.resolve("busybox", &[], &[]).expect("busybox"), v(&["sh"]));
        assert_eq!(
            i.resolve("busybox:1.36", &v(&["sleep", "3600"]), &[])
                .expect("busybox"),
            v(&["sleep", "3600"])
        );
        assert_eq!(
            i.resolve(
                "registry.k8s.io/coredns/coredns:v1.13.1",
                &[],
                &v(&["-conf", "/etc/coredns/Corefile"])
            )
            .expect("coredns"),
            v(&["/k8s/bin/coredns", "-conf", "/etc/coredns/Corefile"])
        );
    }

    #[test]
    fn prometheus_runs_from_the_cache_with_the_pods_args() {
        let missing = images()
            .resolve("prom/prometheus:v3.16.0", &[], &[])
            .expect_err("not built under /cache/mesh");
        assert!(
            missing.to_string().contains("scripts/setup.sh builds it"),
            "{missing}"
        );
        let cache = tempfile::tempdir().expect("tempdir");
        let program = cache.path().join("prometheus-v3.16.0/prometheus");
        std::fs::create_dir_all(program.parent().expect("dir")).expect("mkdir");
        std::fs::write(&program, "").expect("write");
        let built = Images::parse(
            BUILTIN,
            "/mesh/bin".into(),
            "/k8s/bin".into(),
            cache.path().to_path_buf(),
        )
        .expect("builtin parses");
        assert_eq!(
            built
                .resolve(
                    "prom/prometheus:v3.16.0",
                    &[],
                    &v(&["--config.file=/etc/prometheus/prometheus.yml"])
                )
                .expect("prometheus"),
            v(&[
                &program.display().to_string(),
                "--config.file=/etc/prometheus/prometheus.yml"
            ])
        );
        let two = "[[image]]\nrepository = \"x\"\nbinary = \"a\"\ncached = \"b\"\n";
        assert!(matches!(
            Images::parse(two, "/m".into(), "/k".into(), "/c".into()),
            Err(ImageError::Malformed(_))
        ));
    }

    #[test]
    fn unmapped_images_say_so() {
        let err = images()
            .resolve("nginx:1.27", &[], &[])
            .expect_err("unmapped");
        assert!(err.to_string().contains("\"nginx:1.27\""), "{err}");
        assert!(err.to_string().contains("images.toml"), "{err}");
    }
}
