//! `mesh images`: mesh's container images built from the release
//! binaries without Docker, and pushed to a registry.
//!
//! `build` writes one OCI image layout per image under the output
//! directory (`proxy`, `controller`, `podinfo`), each of two layers: the
//! base every image shares ([`debian::BASE`]: the shared libraries from
//! Debian's packages, and a minimal `/etc`) and the image's own files
//! (its binaries; for `proxy`, which also runs the init container's
//! `mesh-init`, iptables from Debian's packages too). The same binaries and packages give the same
//! digests; each image carries an SPDX bill of materials ([`sbom`]).
//! `push` copies the layouts to `<registry>/<image>:<tag>` with
//! skopeo, the names `mesh install --registry` renders.

mod debian;
mod layer;
mod layout;
mod sbom;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::cli::OutputFormat;
use crate::output;
use layer::LayerBuilder;

/// Where `build` writes the image layouts and `push` reads them unless told.
const DEFAULT_DIR: &str = "target/images";

/// The tag images get: `v` and mesh's version.
pub const TAG: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// The registry (and path) images are named under unless one is given
/// (`mesh/proxy`: the names local clusters map to their binaries in
/// `clusters/images.toml`).
pub const DEFAULT_REGISTRY: &str = "mesh";

/// `<registry>/<name>` for one of mesh's images, from the default
/// registry when none is given.
pub fn repository(registry: Option<&str>, name: &str) -> String {
    let registry = registry.unwrap_or(DEFAULT_REGISTRY).trim_end_matches('/');
    format!("{registry}/{name}")
}

/// `<registry>/<name>:<tag>` for one of mesh's images.
pub fn image(registry: Option<&str>, name: &str) -> String {
    format!("{}:{TAG}", repository(registry, name))
}

/// Which `mesh-controller` image an extension's controller runs.
#[derive(Debug, Clone, Default, Args)]
pub struct ControllerImageArgs {
    /// The registry (and path) to pull mesh's images from, as `mesh images
    /// push --registry` put them [default: mesh].
    #[arg(long, env = "MESH_REGISTRY", value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// The controller image (`mesh-controller`) [default:
    /// <registry>/controller:v<version>].
    #[arg(long, env = "MESH_CONTROLLER_IMAGE", value_name = "IMAGE")]
    pub controller_image: Option<String>,
}

impl ControllerImageArgs {
    /// The image: the one named, else the registry's controller.
    pub fn controller_image(&self) -> String {
        self.controller_image
            .clone()
            .unwrap_or_else(|| image(self.registry.as_deref(), "controller"))
    }
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build mesh's images (proxy, controller, podinfo) as OCI image
    /// layouts from the release binaries; the same inputs give the same
    /// digests.
    Build(BuildArgs),
    /// Push built images to a registry as `<registry>/<image>:<tag>`
    /// (with skopeo).
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Where the binaries are [default: the directory of this `mesh`,
    /// `target/release` after `cargo build --release`].
    #[arg(long, env = "MESH_IMAGES_BINARIES", value_name = "DIR")]
    pub binaries: Option<PathBuf>,
    /// Where the image layouts are written, one directory per image.
    #[arg(
        long,
        env = "MESH_IMAGES_DIR",
        value_name = "DIR",
        default_value = DEFAULT_DIR
    )]
    pub out: PathBuf,
    /// Debian's libc6 and libgcc-s1 .deb files; downloaded there with
    /// `apt-get download` when absent [default: <out>/debs].
    #[arg(long, env = "MESH_IMAGES_DEBS", value_name = "DIR")]
    pub debs: Option<PathBuf>,
    /// The source revision the images' labels name [default: `git
    /// rev-parse HEAD` here, else "unknown"].
    #[arg(long, env = "MESH_IMAGES_REVISION", value_name = "REV")]
    pub revision: Option<String>,
    /// The creation time written in the images, in seconds since the
    /// epoch (the reproducible-builds convention).
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        default_value_t = 0
    )]
    pub source_date_epoch: u64,
    /// Output format.
    #[arg(long, short, env = "MESH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The registry and path to push to (`ghcr.io/acme/mesh`,
    /// `localhost:5000/mesh`).
    #[arg(long, env = "MESH_IMAGES_REGISTRY", value_name = "REGISTRY")]
    pub registry: String,
    /// Where `mesh images build` wrote the image layouts.
    #[arg(
        long,
        env = "MESH_IMAGES_DIR",
        value_name = "DIR",
        default_value = DEFAULT_DIR
    )]
    pub dir: PathBuf,
    /// Verify the registry's TLS certificate (off for a plain-HTTP
    /// registry on loopback).
    #[arg(long, env = "MESH_IMAGES_TLS_VERIFY", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
}

/// One of mesh's images: which binaries go where, and how it runs.
#[derive(Debug)]
struct ImageSpec {
    name: &'static str,
    title: &'static str,
    /// (binary, path in the image)
    binaries: &'static [(&'static str, &'static str)],
    /// (path in the image, target)
    links: &'static [(&'static str, &'static str)],
    /// Debian packages whose files the image's own layer holds.
    packages: Option<&'static debian::PackageSet>,
    user: u32,
    entrypoint: &'static [&'static str],
    working_dir: Option<&'static str>,
}

const IMAGES: [ImageSpec; 3] = [
    // The proxy, and the init container's mesh-init with the iptables it
    // runs (as root, with NET_ADMIN and NET_RAW, as the injector runs
    // it); as Linkerd's unified proxy image. `iptables` is the legacy back
    // end, as Linkerd's proxy-init defaults; `iptables-nft-save` and
    // `-restore` are there for hosts whose rules are in nf_tables.
    ImageSpec {
        name: "proxy",
        title: "mesh proxy, with mesh-init (the pod's iptables rules)",
        binaries: &[
            ("mesh-proxy", "usr/bin/mesh-proxy"),
            ("mesh-init", "usr/bin/mesh-init"),
        ],
        links: &[
            ("usr/sbin/iptables", "iptables-legacy"),
            ("usr/sbin/iptables-save", "iptables-legacy-save"),
            ("usr/sbin/iptables-restore", "iptables-legacy-restore"),
            ("usr/sbin/ip6tables", "ip6tables-legacy"),
            ("usr/sbin/ip6tables-save", "ip6tables-legacy-save"),
            ("usr/sbin/ip6tables-restore", "ip6tables-legacy-restore"),
        ],
        packages: Some(&debian::IPTABLES),
        user: 2102,
        entrypoint: &["/usr/bin/mesh-proxy"],
        working_dir: None,
    },
    ImageSpec {
        name: "controller",
        title: "mesh control plane (identity, destination, policy, injector, mirror, failover)",
        binaries: &[("mesh-controller", "usr/bin/mesh-controller")],
        links: &[],
        packages: None,
        user: 2103,
        entrypoint: &["/usr/bin/mesh-controller"],
        working_dir: None,
    },
    ImageSpec {
        name: "podinfo",
        title: "podinfo, the demo application (with podcli)",
        binaries: &[("mesh-podinfo", "home/app/podinfo")],
        links: &[("usr/bin/podcli", "/home/app/podinfo")],
        packages: None,
        user: 65532,
        entrypoint: &["./podinfo"],
        working_dir: Some("/home/app"),
    },
];

/// One image built.
#[derive(Debug, serde::Serialize)]
struct Built {
    image: String,
    tag: &'static str,
    digest: String,
    /// Compressed bytes: what a pull downloads.
    size: u64,
    layout: PathBuf,
    /// The Debian packages its files came from.
    debian_packages: Vec<debian::Package>,
}

/// What `mesh images build --output json` prints.
#[derive(Debug, serde::Serialize)]
struct BuildReport {
    images: Vec<Built>,
    revision: String,
}

/// Runs `mesh images …`.
pub fn run(command: &ImagesCommand) -> anyhow::Result<ExitCode> {
    match command {
        ImagesCommand::Build(args) => build(args),
        ImagesCommand::Push(args) => push(args),
    }
}

fn build(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    if std::env::consts::ARCH != "x86_64" {
        bail!(
            "images are built for linux/amd64 only, and this is {}",
            std::env::consts::ARCH
        );
    }
    let binaries = match &args.binaries {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("finding this mesh binary")?
            .parent()
            .map(Path::to_path_buf)
            .context("the directory of this mesh binary")?,
    };
    let missing: Vec<String> = IMAGES
        .iter()
        .flat_map(|image| image.binaries.iter().map(|(binary, _)| *binary))
        .filter(|binary| !binaries.join(binary).is_file())
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} holds no {}: build them with `cargo build --release -p mesh-proxy -p mesh-controller -p mesh-podinfo` (mesh-proxy builds mesh-init), or name their directory with --binaries",
            binaries.display(),
            missing.join(", ")
        );
    }
    let revision = args.revision.clone().unwrap_or_else(git_revision);
    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(args.source_date_epoch),
    )
    .to_string();

    let debs_dir = args.debs.clone().unwrap_or_else(|| args.out.join("debs"));
    let from_debian = |set: &debian::PackageSet, layer: &mut LayerBuilder| {
        progress(
            args,
            &format!(
                "Debian's {} from {}",
                set.packages.join(", "),
                debs_dir.display()
            ),
        );
        debian::add(layer, set, &debian::debs(&debs_dir, set)?)
    };
    let mut base_files = LayerBuilder::default();
    debian::add_etc(&mut base_files);
    let base_packages = from_debian(&debian::BASE, &mut base_files)?;
    let base_layer = base_files.build(args.source_date_epoch)?;

    let mut built = Vec::new();
    for image in &IMAGES {
        progress(args, &format!("{}: layers", image.name));
        let mut files = LayerBuilder::default();
        let mut listed = Vec::new();
        for (binary, path) in image.binaries {
            let from = binaries.join(binary);
            let bytes =
                std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            listed.push(sbom::Binary {
                name: binary,
                digest: layer::sha256(&bytes),
            });
            files.file(path, bytes, 0o755);
        }
        for (path, target) in image.links {
            files.symlink(path, target);
        }
        let mut packages = base_packages.clone();
        if let Some(set) = image.packages {
            packages.extend(from_debian(set, &mut files)?);
        }
        files.file(
            sbom::PATH,
            sbom::document(image.name, &listed, &packages, &revision, &created),
            0o644,
        );
        let layer = files.build(args.source_date_epoch)?;
        let labels = labels(image, &revision, &created, &packages);
        let run = layout::RunConfig {
            user: image.user.to_string(),
            entrypoint: image.entrypoint.iter().map(|s| (*s).to_owned()).collect(),
            working_dir: image.working_dir.map(str::to_owned),
            labels,
            created: created.clone(),
        };
        let dir = args.out.join(image.name);
        let written = layout::write(&dir, &[&base_layer, &layer], &run, TAG)?;
        built.push(Built {
            image: image.name.to_owned(),
            tag: TAG,
            digest: written.digest,
            size: written.size,
            layout: dir,
            debian_packages: packages,
        });
    }

    match args.output {
        OutputFormat::Json => output::print_json(&BuildReport {
            images: built,
            revision,
        })?,
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = built
                .iter()
                .map(|b| {
                    vec![
                        format!("{}:{}", b.image, b.tag),
                        format!("{:.1} MiB", b.size as f64 / (1024.0 * 1024.0)),
                        b.digest.clone(),
                        format!("oci:{}:{}", b.layout.display(), b.tag),
                    ]
                })
                .collect();
            output::print_table(&["IMAGE", "SIZE", "DIGEST", "LAYOUT"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The image's labels: OCI's annotation keys for title, version,
/// revision, source, licences and creation, and the Debian packages the
/// base came from.
fn labels(
    image: &ImageSpec,
    revision: &str,
    created: &str,
    packages: &[debian::Package],
) -> HashMap<String, String> {
    use oci_spec::image::{
        ANNOTATION_CREATED, ANNOTATION_LICENSES, ANNOTATION_REVISION, ANNOTATION_SOURCE,
        ANNOTATION_TITLE, ANNOTATION_VERSION,
    };
    let mut labels = HashMap::from([
        (ANNOTATION_TITLE.to_owned(), image.title.to_owned()),
        (ANNOTATION_VERSION.to_owned(), TAG.to_owned()),
        (ANNOTATION_REVISION.to_owned(), revision.to_owned()),
        (ANNOTATION_CREATED.to_owned(), created.to_owned()),
        (
            ANNOTATION_LICENSES.to_owned(),
            env!("CARGO_PKG_LICENSE").to_owned(),
        ),
    ]);
    if let Some(repository) = option_env!("CARGO_PKG_REPOSITORY").filter(|r| !r.is_empty()) {
        labels.insert(ANNOTATION_SOURCE.to_owned(), repository.to_owned());
    }
    for package in packages {
        labels.insert(
            format!("io.mesh.base.debian.{}", package.name),
            package.version.clone(),
        );
    }
    labels
}

/// The commit checked out here, or "unknown" outside a git work tree.
fn git_revision() -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|rev| !rev.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn progress(args: &BuildArgs, message: &str) {
    if args.output == OutputFormat::Table {
        eprintln!("{} {message}", console::style("›").cyan());
    }
}

fn push(args: &PushArgs) -> anyhow::Result<ExitCode> {
    let registry = args.registry.trim_end_matches('/');
    for image in &IMAGES {
        let layout = args.dir.join(image.name);
        if !layout.join("index.json").is_file() {
            bail!(
                "{} holds no image layout of {}: run `mesh images build --out {}` first",
                layout.display(),
                image.name,
                args.dir.display()
            );
        }
        let destination = format!("{registry}/{}:{TAG}", image.name);
        eprintln!("{} {destination}", console::style("›").cyan());
        let status = Command::new("skopeo")
            .arg("copy")
            .arg("--quiet")
            .arg(format!("--dest-tls-verify={}", args.tls_verify))
            .arg(format!("oci:{}:{TAG}", layout.display()))
            .arg(format!("docker://{destination}"))
            .status()
            .context("running skopeo (Debian's package `skopeo`) to push the images")?;
        if !status.success() {
            bail!("skopeo could not push {destination} ({status})");
        }
    }
    Ok(ExitCode::SUCCESS)
}
