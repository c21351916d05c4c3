//! Files taken from Debian's packages, as distroless images are made:
//! only the files an image needs, with each package's copyright file.
//! [`BASE`] is what every image holds besides mesh's binaries (the C
//! library, the maths library, the dynamic loader and libgcc's unwinder),
//! with a minimal `/etc` (the users the images run as, name resolution
//! from files then DNS), `/tmp` and `/run` ([`add_etc`]); [`IPTABLES`] is what
//! `mesh-init` runs (iptables, legacy and nft, with their libraries and
//! extensions).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::layer::LayerBuilder;

/// Some of Debian's packages, and which of their files an image takes.
#[derive(Debug)]
pub struct PackageSet {
    /// The packages, by name.
    pub packages: &'static [&'static str],
    /// Whether a file (its path without the leading `./` or `/`) is taken.
    takes: fn(&str) -> bool,
    /// Files that must be among those taken: without them, the packages
    /// were not the ones expected.
    required: &'static [&'static str],
}

/// The shared libraries mesh's binaries load (`ldd` lists no others).
pub const BASE: PackageSet = PackageSet {
    packages: &["libc6", "libgcc-s1"],
    takes: |path| LIBRARIES.contains(&path),
    required: &LIBRARIES,
};

/// iptables for `mesh-init`: the two multi-call programs (legacy and
/// nft) with their command names, the libraries they load and the
/// extensions they load at run time.
pub const IPTABLES: PackageSet = PackageSet {
    packages: &[
        "iptables",
        "libip4tc2",
        "libip6tc2",
        "libxtables12",
        "libmnl0",
        "libnetfilter-conntrack3",
        "libnfnetlink0",
        "libnftnl11",
    ],
    takes: |path| {
        let in_lib = path.starts_with("lib/") || path.starts_with("usr/lib/");
        let shared_object = in_lib && path.contains(".so");
        let program = path.strip_prefix("usr/sbin/").is_some_and(|name| {
            let multi_call = name.starts_with("xtables-") && name.ends_with("-multi");
            let command = (name.starts_with("iptables-") || name.starts_with("ip6tables-"))
                && !name.contains("apply")
                && !name.contains("translate");
            multi_call || command
        });
        shared_object || program
    },
    required: &[
        "usr/sbin/xtables-legacy-multi",
        "usr/sbin/xtables-nft-multi",
        "usr/sbin/iptables-legacy-save",
        "usr/sbin/iptables-nft-restore",
        "usr/lib/x86_64-linux-gnu/xtables/libxt_REDIRECT.so",
        "usr/lib/x86_64-linux-gnu/xtables/libxt_owner.so",
        "usr/lib/x86_64-linux-gnu/xtables/libxt_multiport.so",
    ],
};

const LIBRARIES: [&str; 5] = [
    "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "lib/x86_64-linux-gnu/libc.so.6",
    "lib/x86_64-linux-gnu/libm.so.6",
    "lib/x86_64-linux-gnu/libgcc_s.so.1",
    "lib64/ld-linux-x86-64.so.2",
];

/// The users the images run as: the proxy's UID is Linkerd's (2102), the
/// controller's Linkerd's control plane's (2103), anything else distroless's
/// `nonroot` (65532).
const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
proxy:x:2102:2102:mesh proxy:/nonexistent:/sbin/nologin\n\
controller:x:2103:2103:mesh controller:/nonexistent:/sbin/nologin\n\
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nproxy:x:2102:\ncontroller:x:2103:\nnonroot:x:65532:\n";
const NSSWITCH: &str = "hosts: files dns\n";

/// One Debian package the base was taken from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// The `.deb` of each package of `set` in `dir`, downloaded there with
/// `apt-get download` when absent (so a second build uses the same
/// files).
pub fn debs(dir: &Path, set: &PackageSet) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut found = Vec::new();
    for &package in set.packages {
        if let Some(deb) = deb_in(dir, package)? {
            found.push(deb);
            continue;
        }
        let status = Command::new("apt-get")
            .args(["download", "-qq", package])
            .current_dir(dir)
            .status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => bail!(
                "`apt-get download {package}` in {} failed ({status}); put Debian's {} .deb files there (--debs) and run again",
                dir.display(),
                set.packages.join(", ")
            ),
            Err(e) => bail!(
                "no {package} .deb in {} and no apt-get to download it ({e}); put Debian's {} .deb files there (--debs) and run again",
                dir.display(),
                set.packages.join(", ")
            ),
        }
        found.push(deb_in(dir, package)?.with_context(|| {
            format!(
                "`apt-get download {package}` left no .deb in {}",
                dir.display()
            )
        })?);
    }
    Ok(found)
}

/// The one `<package>_*.deb` in `dir`, if any (more than one is an error:
/// which to take would depend on the order the directory lists them).
fn deb_in(dir: &Path, package: &str) -> anyhow::Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let mut matches: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix) && name.ends_with(".deb"))
        })
        .collect();
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches.pop()),
        _ => bail!(
            "{} holds {} .deb files of {package} ({}); keep one",
            dir.display(),
            matches.len(),
            matches
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Adds `/etc` (users, groups, name resolution), `/tmp` and `/run`
/// (where iptables takes its lock) to `layer`.
pub fn add_etc(layer: &mut LayerBuilder) {
    layer
        .file("etc/passwd", PASSWD.into(), 0o644)
        .file("etc/group", GROUP.into(), 0o644)
        .file("etc/nsswitch.conf", NSSWITCH.into(), 0o644)
        .dir("tmp", 0o1777)
        .dir("run", 0o755);
}

/// Adds the files `set` takes from the `.deb` files `debs` to `layer`;
/// the packages it took files from.
pub fn add(
    layer: &mut LayerBuilder,
    set: &PackageSet,
    debs: &[PathBuf],
) -> anyhow::Result<Vec<Package>> {
    let mut packages = Vec::new();
    let mut taken = Vec::new();
    for deb in debs {
        let fields = dpkg_deb(&["--field"], deb, &["Package", "Version"])?;
        let fields = String::from_utf8_lossy(&fields);
        let field = |name: &str| {
            fields
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
                .with_context(|| format!("{} names no {name}", deb.display()))
        };
        let package = Package {
            name: field("Package")?,
            version: field("Version")?,
        };
        let tar = dpkg_deb(&["--fsys-tarfile"], deb, &[])?;
        taken.extend(add_from_archive(layer, set, &package.name, &tar)?);
        packages.push(package);
    }
    let missing: Vec<&str> = set
        .required
        .iter()
        .copied()
        .filter(|library| !taken.iter().any(|t| t == library))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the packages ({}) hold no {}: are they Debian's amd64 {}?",
            debs.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            missing.join(", "),
            set.packages.join(", ")
        );
    }
    Ok(packages)
}

/// What `dpkg-deb <option> <deb> <extra…>` prints (Debian's dpkg); an
/// error naming the file when it fails.
fn dpkg_deb(option: &[&str], deb: &Path, extra: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("dpkg-deb")
        .args(option)
        .arg(deb)
        .args(extra)
        .output()
        .with_context(|| format!("running dpkg-deb on {} (Debian's dpkg)", deb.display()))?;
    if !out.status.success() {
        bail!(
            "{} is not a Debian package dpkg-deb can read: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Adds the files `set` takes and the copyright file of `package` found
/// in its data archive `tar` (paths as dpkg writes them, `./lib/…`); the
/// paths it took (the copyright file aside).
fn add_from_archive(
    layer: &mut LayerBuilder,
    set: &PackageSet,
    package: &str,
    tar: &[u8],
) -> anyhow::Result<Vec<String>> {
    let copyright = format!("usr/share/doc/{package}/copyright");
    let mut added = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().context("reading a package's files")? {
        let mut entry = entry.context("reading a package's files")?;
        let path = entry.path()?.display().to_string();
        let path = path.trim_start_matches("./").to_owned();
        let wanted = (set.takes)(&path);
        if !wanted && path != copyright {
            continue;
        }
        let header = entry.header().clone();
        match header.entry_type() {
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .with_context(|| format!("{path} in {package}: a link without a target"))?;
                layer.symlink(&path, &target.display().to_string());
            }
            tar::EntryType::Regular => {
                let mut contents = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut contents)?;
                layer.file(&path, contents, header.mode()? & 0o755);
            }
            _ => continue,
        }
        if wanted {
            added.push(path);
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package_archive(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut archive = tar::Builder::new(Vec::new());
        for (path, link) in entries {
            let mut header = tar::Header::new_gnu();
            match link {
                Some(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    archive
                        .append_link(&mut header, path, target)
                        .expect("link");
                }
                None => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o4755);
                    header.set_size(3);
                    archive
                        .append_data(&mut header, path, &b"elf"[..])
                        .expect("file");
                }
            }
        }
        archive.into_inner().expect("archive")
    }

    #[test]
    fn only_the_libraries_and_the_copyright_are_taken_without_setuid_bits() {
        let tar = package_archive(&[
            ("./lib/x86_64-linux-gnu/libc.so.6", None),
            ("./lib/x86_64-linux-gnu/libresolv.so.2", None),
            ("./usr/bin/ldd", None),
            ("./usr/share/doc/libc6/copyright", None),
            ("./usr/share/doc/libc6/changelog.Debian.gz", None),
            (
                "./lib64/ld-linux-x86-64.so.2",
                Some("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            ),
        ]);
        let mut layer = LayerBuilder::default();
        let added = add_from_archive(&mut layer, &BASE, "libc6", &tar).expect("added");
        assert_eq!(
            added,
            [
                "lib/x86_64-linux-gnu/libc.so.6",
                "lib64/ld-linux-x86-64.so.2"
            ]
        );
        let built = layer.build(0).expect("layer");
        let mut gunzipped = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(built.blob.as_slice()),
            &mut gunzipped,
        )
        .expect("gunzip");
        let mut archive = tar::Archive::new(gunzipped.as_slice());
        let listed: Vec<(String, u32)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.path().expect("path").display().to_string(),
                    e.header().mode().expect("mode"),
                )
            })
            .filter(|(path, _)| !path.ends_with('/'))
            .collect();
        assert_eq!(
            listed,
            [
                ("lib/x86_64-linux-gnu/libc.so.6".to_owned(), 0o755),
                ("lib64/ld-linux-x86-64.so.2".to_owned(), 0o777),
                ("usr/share/doc/libc6/copyright".to_owned(), 0o755),
            ]
        );
    }

    #[test]
    fn a_deb_directory_with_two_versions_of_a_package_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        for name in ["libc6_2.36-9_amd64.deb", "libc6_2.36-10_amd64.deb"] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        let error = deb_in(dir.path(), "libc6")
            .expect_err("two versions")
            .to_string();
        assert!(error.contains("2 .deb files of libc6"), "{error}");
        assert_eq!(deb_in(dir.path(), "libgcc-s1").expect("none"), None);
    }
}
