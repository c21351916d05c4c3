//! Running programs as a user runs them, for the CLI's integration tests:
//! the built `mesh`, the pinned kubectl, with input on stdin and output
//! captured; colour off so that assertions read plain text.
#![allow(dead_code)] // each test binary uses part of it

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mesh_clusters::{Binaries, Binary};

/// Runs `program` with `args` and fails the test, with everything it
/// printed, unless it succeeds.
pub fn run_ok(program: &Path, args: &[&str]) -> Output {
    let output = run(program, args, None);
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        program.display(),
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// Runs `program` with `args`, writing `stdin` (if any) to it.
pub fn run(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("output")
}

/// The pinned kubectl.
pub fn kubectl_path() -> PathBuf {
    Binaries::locate()
        .expect("the Kubernetes binaries are built (scripts/setup.sh)")
        .path(Binary::Kubectl)
}

/// `kubectl --kubeconfig <kubeconfig> <args>`.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let kubeconfig = kubeconfig.display().to_string();
    let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
    all.extend(args);
    run(&kubectl_path(), &all, stdin)
}

/// Output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
