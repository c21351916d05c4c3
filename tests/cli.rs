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
    assert_eq!(json["client"], concat!("v", env!("CARGO_PKG_VERSION")));
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

fn kubectl(args: &[&str]) -> Output {
    let kubectl = Binaries::locate()
        .expect("kubectl is built (scripts/setup.sh)")
        .path(Binary::Kubectl);
    Command::new(&kubectl)
        .args(args)
        .output()
        .expect("running kubectl")
}

fn iptables_save() -> String {
    let out = Command::new("iptables-save")
        .output()
        .expect("iptables-save (scripts/setup.sh installs iptables)");
    // Counters and the header's timestamp change by themselves.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn up_then_kubectl_then_down_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path();
    let _cleanup = DownOnDrop(state);
    let host_rules = iptables_save();
    let up = mesh(&["up", "--wan-delay", "5ms"], state);
    assert_success("mesh up", &up);
    let printed = stdout(&up);
    let kubeconfig = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("`mesh up` prints no `export KUBECONFIG=`:\n{printed}"))
        .to_owned();
    assert!(printed.contains("delay=5ms"), "{printed}");

    for context in ["west", "east"] {
        let nodes = kubectl(&[
            "--kubeconfig",
            &kubeconfig,
            "--context",
            context,
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].metadata.name} {.items[*].status.conditions[?(@.type=='Ready')].status}",
        ]);
        assert_success(&format!("kubectl --context {context} get nodes"), &nodes);
        assert_eq!(stdout(&nodes), format!("{context} True"));
    }

    let again = mesh(&["up", "--output", "json"], state);
    assert_success("a second mesh up", &again);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(again["started"], false, "the clusters were already up");
    assert_eq!(again["kubeconfig"], kubeconfig.as_str());
    assert!(
        again["wan"]
            .as_str()
            .is_some_and(|w| w.contains("delay=5ms"))
    );
    let slot_prefix = {
        let info: serde_json::Value = serde_json::from_slice(
            &std::fs::read(state.join("clusters").join("pair.json")).expect("pair.json"),
        )
        .expect("pair.json is JSON");
        format!("mesh{}-", info["slot"])
    };

    let cut = mesh(&["wan", "cut"], state);
    assert_success("mesh wan cut", &cut);
    assert!(stdout(&cut).contains("cut=true"), "{}", stdout(&cut));

    let down = mesh(&["down"], state);
    assert_success("mesh down", &down);
    assert!(
        live_processes_mentioning(state).is_empty(),
        "processes left after mesh down: {:?}",
        live_processes_mentioning(state)
    );
    assert!(
        mesh_clusters::netns::list_with_prefix(&slot_prefix).is_empty(),
        "network namespaces left: {:?}",
        mesh_clusters::netns::list_with_prefix(&slot_prefix)
    );
    assert_eq!(
        iptables_save(),
        host_rules,
        "the host's iptables rules changed"
    );
    assert!(
        !state.join("clusters").exists(),
        "the clusters' directory is left"
    );
    let after = kubectl(&[
        "--kubeconfig",
        &kubeconfig,
        "get",
        "namespaces",
        "--request-timeout=2s",
    ]);
    assert!(
        !after.status.success(),
        "the API server still answers after mesh down"
    );

    let down_again = mesh(&["down"], state);
    assert_success("a second mesh down", &down_again);
    assert!(stdout(&down_again).contains("nothing to do"));
}
