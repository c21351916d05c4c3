//! mesh's images as a user gets them: `mesh images build` from the
//! binaries next to `mesh`, `mesh images push` to a real registry
//! (Debian's `docker-registry` on loopback), then pulled with skopeo,
//! unpacked with umoci and run with runc, with nothing from outside the
//! image: the proxy serves `/live`, the controller answers `--help`,
//! podinfo serves its page, each as the non-root user its image names,
//! and the init container (`mesh-init` from the proxy's image) installs a
//! pod's iptables rules with the iptables the image ships.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const TAG: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// A tool the tests need, found on PATH, or a failure that says how to
/// get it.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: scripts/setup.sh installs it (Debian's skopeo, umoci, runc, docker-registry)")
    })
}

fn run(program: &Path, args: &[&str]) -> Output {
    support::run_ok(program, args)
}

/// `mesh images build --output json` into `out`, the base packages from
/// `debs`: image name → manifest digest.
fn build(out: &Path, debs: &Path) -> Vec<(String, String)> {
    let output = run(
        Path::new(env!("CARGO_BIN_EXE_mesh")),
        &[
            "images",
            "build",
            "--out",
            &out.display().to_string(),
            "--debs",
            &debs.display().to_string(),
            "--revision",
            "test",
            "--output",
            "json",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("build report JSON");
    report["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|image| {
            (
                image["image"].as_str().expect("image").to_owned(),
                image["digest"].as_str().expect("digest").to_owned(),
            )
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A registry on loopback keeping its blobs under `dir`.
async fn registry(dir: &Path) -> (Killed, String) {
    let port = free_port();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .expect("registry config");
    let child = Command::new(tool("docker-registry"))
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting docker-registry");
    let address = format!("127.0.0.1:{port}");
    wait_for(&format!("the registry at {address}"), || {
        std::net::TcpStream::connect(&address).is_ok()
    })
    .await;
    (Killed(child), address)
}

async fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..300 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} was not ready within 30 s");
}

/// A container run with runc from an unpacked image; deleted when the
/// test ends.
struct Container {
    id: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Container {
    fn drop(&mut self) {
        let runc = tool("runc");
        let _ = Command::new(&runc)
            .args(["kill", &self.id, "KILL"])
            .output();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let _ = Command::new(&runc)
            .args(["delete", "--force", &self.id])
            .output();
    }
}

/// Pulls `<registry>/mesh/<image>:<tag>` into a layout under `work`,
/// unpacks it into a bundle and returns the bundle's directory and
/// runtime config (as umoci made it from the image's config).
fn pull_and_unpack(
    registry: &str,
    image: &str,
    work: &Path,
    bundle: &str,
) -> (PathBuf, serde_json::Value) {
    let pulled = work.join("pulled");
    std::fs::create_dir_all(&pulled).expect("pulled dir");
    run(
        &tool("skopeo"),
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{registry}/mesh/{image}:{TAG}"),
            &format!("oci:{}:{TAG}", pulled.join(image).display()),
        ],
    );
    let bundle = work.join(bundle);
    run(
        &tool("umoci"),
        &[
            "unpack",
            "--image",
            &format!("{}:{TAG}", pulled.join(image).display()),
            &bundle.display().to_string(),
        ],
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).expect("config.json"))
            .expect("runtime config");
    (bundle, config)
}

/// Runs the bundle with runc: no terminal, in the network namespace at
/// `network` or else the host's (so that the test reaches what it serves
/// on loopback), `args` instead of the image's entrypoint when given,
/// `env` added to the image's.
fn start(
    bundle: &Path,
    mut config: serde_json::Value,
    args: Option<&[&str]>,
    env: &[String],
    network: Option<&Path>,
) -> Container {
    config["process"]["terminal"] = false.into();
    if let Some(args) = args {
        config["process"]["args"] = serde_json::json!(args);
    }
    let image_env = config["process"]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    config["process"]["env"] = image_env
        .into_iter()
        .chain(env.iter().map(|e| serde_json::Value::from(e.as_str())))
        .collect::<Vec<_>>()
        .into();
    let namespaces = config["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    config["linux"]["namespaces"] = namespaces
        .into_iter()
        .filter(|ns| ns["type"] != "network")
        .chain(network.map(|path| serde_json::json!({"type": "network", "path": path})))
        .collect();
    std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
    let id = format!(
        "mesh-test-{}-{}",
        std::process::id(),
        bundle
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("bundle")
    );
    let log = bundle.with_extension("log");
    let out = std::fs::File::create(&log).expect("log");
    let child = Command::new(tool("runc"))
        .args(["run", "--bundle", &bundle.display().to_string(), &id])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("runc run");
    Container {
        id,
        child: Some(child),
        log,
    }
}

impl Container {
    /// Waits for the container's process to end; what it printed.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.take().expect("child").wait().expect("wait");
        (
            status,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The user id a running container's first process runs as.
fn container_uid(id: &str) -> u32 {
    let state = run(&tool("runc"), &["state", id]);
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).expect("runc state");
    let pid = state["pid"].as_u64().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("Uid line")
}

fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

#[test]
fn the_same_binaries_build_the_same_images() {
    let work = tempfile::tempdir().expect("work dir");
    let debs = work.path().join("debs");
    let first = build(&work.path().join("one"), &debs);
    let second = build(&work.path().join("two"), &debs);
    let names: Vec<&str> = first.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["proxy", "controller", "podinfo"]);
    assert_eq!(first, second, "two builds of the same inputs");
}

#[tokio::test]
async fn images_pushed_to_a_registry_run_with_runc_from_the_image_alone() {
    let work = tempfile::tempdir().expect("work dir");
    build(&work.path().join("images"), &work.path().join("debs"));
    let (_registry, registry) = registry(work.path()).await;
    run(
        Path::new(env!("CARGO_BIN_EXE_mesh")),
        &[
            "images",
            "push",
            "--registry",
            &format!("{registry}/mesh"),
            "--dir",
            &work.path().join("images").display().to_string(),
            "--tls-verify=false",
        ],
    );

    // The proxy, with no control plane, serves its admin page.
    let (bundle, config) = pull_and_unpack(&registry, "proxy", work.path(), "proxy");
    // Its bill of materials lists its binaries and the Debian packages.
    let sbom: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bundle.join("rootfs/usr/share/doc/mesh/sbom.spdx.json")).expect("SBOM"),
    )
    .expect("SBOM JSON");
    let listed: Vec<&str> = sbom["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["mesh-proxy", "mesh-init", "libc6", "libgcc-s1", "iptables"] {
        assert!(listed.contains(&name), "the SBOM lists {name}: {listed:?}");
    }
    assert_eq!(
        config["process"]["user"]["uid"], 2102,
        "the proxy's UID is Linkerd's"
    );
    let admin = format!("127.0.0.1:{}", free_port());
    let proxy = start(
        &bundle,
        config,
        None,
        &[
            format!("LINKERD2_PROXY_ADMIN_LISTEN_ADDR={admin}"),
            format!(
                "LINKERD2_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:{}",
                free_port()
            ),
            format!(
                "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:{}",
                free_port()
            ),
        ],
        None,
    );
    wait_for(
        &format!("the proxy's /live at {admin}:\n{}", proxy.log()),
        || http_get(&admin, "/live").is_some_and(|(status, _)| status == 200),
    )
    .await;
    assert_eq!(container_uid(&proxy.id), 2102);
    drop(proxy);

    // The controller's binary runs in its image as its own user.
    let (bundle, config) = pull_and_unpack(&registry, "controller", work.path(), "controller");
    assert_eq!(config["process"]["user"]["uid"], 2103);
    let (status, printed) = start(
        &bundle,
        config,
        Some(&["/usr/bin/mesh-controller", "identity", "--help"]),
        &[],
        None,
    )
    .finish();
    assert!(
        status.success(),
        "mesh-controller identity --help in its image: {status}\n{printed}"
    );
    assert!(printed.contains("Usage"), "{printed}");

    // podinfo serves its page from its working directory.
    let (bundle, config) = pull_and_unpack(&registry, "podinfo", work.path(), "podinfo");
    assert_eq!(config["process"]["args"][0], "./podinfo");
    let port = free_port();
    let podinfo = start(
        &bundle,
        config,
        None,
        &[format!("PODINFO_PORT={port}")],
        None,
    );
    let address = format!("127.0.0.1:{port}");
    wait_for(&format!("podinfo at {address}:\n{}", podinfo.log()), || {
        http_get(&address, "/").is_some_and(|(status, _)| status == 200)
    })
    .await;
    assert_eq!(container_uid(&podinfo.id), 65532);
    drop(podinfo);

    // The init container from the proxy's image, as the injector runs it
    // (command /usr/bin/mesh-init, root, NET_ADMIN and NET_RAW, a read-only
    // root filesystem and an empty /run) in a pod's network namespace: the
    // image's iptables installs the redirect.
    let (bundle, mut config) = pull_and_unpack(&registry, "proxy", work.path(), "init");
    config["process"]["user"] = serde_json::json!({"uid": 0, "gid": 0});
    for set in ["bounding", "effective", "permitted"] {
        let caps = config["process"]["capabilities"][set]
            .as_array_mut()
            .expect("capabilities");
        caps.extend(["CAP_NET_ADMIN".into(), "CAP_NET_RAW".into()]);
    }
    // A read-only root with an empty /run, as the injector mounts it.
    config["root"]["readonly"] = true.into();
    config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(serde_json::json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
    let pod = NetworkNamespace::new(&format!("mesh-images-{}", std::process::id()));
    let (status, printed) = start(
        &bundle,
        config,
        Some(&["/usr/bin/mesh-init"]),
        &[],
        Some(&pod.path()),
    )
    .finish();
    assert!(
        status.success(),
        "mesh-init in its image: {status}\n{printed}"
    );
    let rules = run(
        &tool("ip"),
        &[
            "netns",
            "exec",
            &pod.name,
            "iptables-legacy-save",
            "-t",
            "nat",
        ],
    );
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains("-A PROXY_INIT_REDIRECT -p tcp")
            && rules.contains("--to-ports 4143")
            && rules.contains("--uid-owner 2102"),
        "the pod's nat table after mesh-init:\n{rules}"
    );
}

/// A network namespace made with `ip netns add`, deleted when the test ends.
struct NetworkNamespace {
    name: String,
}

impl NetworkNamespace {
    fn new(name: &str) -> Self {
        let _ = Command::new(tool("ip"))
            .args(["netns", "del", name])
            .output();
        run(&tool("ip"), &["netns", "add", name]);
        Self {
            name: name.to_owned(),
        }
    }

    fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }
}

impl Drop for NetworkNamespace {
    fn drop(&mut self) {
        let _ = Command::new(tool("ip"))
            .args(["netns", "del", &self.name])
            .output();
    }
}
