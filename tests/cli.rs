//! The `mesh` binary as a user runs it: help, version, and the local
//! cluster's life cycle (`mesh up`, kubectl against it, `mesh down`).

use std::path::Path;
use std::process::{Command, Output};

use mesh_clusters::process::live_processes_mentioning;
use mesh_clusters::{Binaries, Binary};

fn mesh(args: &[&str], state_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(args)
        .env("MESH_STATE_DIR", state_dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("running mesh {args:?}: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn help_lists_the_commands_and_kubectl_style_global_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let output = mesh(&["--help"], tmp.path());
    assert_success("mesh --help", &output);
    let help = stdout(&output);
    for needle in [
        "version",
        "up",
        "down",
        "--kubeconfig",
        "--context",
        "[env: KUBECONFIG=",
    ] {
        assert!(
            help.contains(needle),
            "`mesh --help` lacks {needle}:\n{help}"
        );
    }
}

#[test]
fn version_prints_json_for_programs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let output = mesh(&["version", "--output", "json"], tmp.path());
    assert_success("mesh version --output json", &output);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["client"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["kubernetes"], mesh_clusters::KUBERNETES_VERSION);
}

#[test]
fn a_bad_flag_is_explained() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let output = mesh(&["version", "--output", "xml"], tmp.path());
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("--output") && err.contains("json"), "{err}");
}

/// Runs `mesh down` when dropped, so that a failing test stops its cluster.
struct DownOnDrop<'a>(&'a Path);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = mesh(&["down"], self.0);
    }
}

#[test]
fn up_then_kubectl_then_down_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path();
    let _cleanup = DownOnDrop(state);
    let up = mesh(&["up"], state);
    assert_success("mesh up", &up);
    let printed = stdout(&up);
    let kubeconfig = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("`mesh up` prints no `export KUBECONFIG=`:\n{printed}"))
        .to_owned();

    let kubectl = Binaries::locate()
        .expect("kubectl is built")
        .path(Binary::Kubectl);
    let get = Command::new(&kubectl)
        .args([
            "--kubeconfig",
            &kubeconfig,
            "get",
            "namespaces",
            "-o",
            "name",
        ])
        .output()
        .expect("running kubectl");
    assert_success("kubectl get namespaces", &get);
    let namespaces = stdout(&get);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            namespaces.contains(&format!("namespace/{ns}")),
            "{ns} missing:\n{namespaces}"
        );
    }

    let again = mesh(&["up"], state);
    assert_success("a second mesh up", &again);
    assert!(stdout(&again).contains("already up"), "{}", stdout(&again));
    assert!(
        stdout(&again).contains(&kubeconfig),
        "the same cluster is reported"
    );

    let down = mesh(&["down"], state);
    assert_success("mesh down", &down);
    assert!(
        live_processes_mentioning(state).is_empty(),
        "processes left after mesh down: {:?}",
        live_processes_mentioning(state)
    );
    assert!(
        !state.join("clusters").join("local").exists(),
        "the cluster directory is left"
    );
    let after = Command::new(&kubectl)
        .args([
            "--kubeconfig",
            &kubeconfig,
            "get",
            "namespaces",
            "--request-timeout=2s",
        ])
        .output()
        .expect("running kubectl");
    assert!(
        !after.status.success(),
        "the API server still answers after mesh down"
    );

    let down_again = mesh(&["down"], state);
    assert_success("a second mesh down", &down_again);
    assert!(stdout(&down_again).contains("nothing to do"));
}
