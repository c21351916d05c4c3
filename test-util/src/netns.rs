//! Network namespaces for tests: each "pod" of a test is a namespace with
//! its own loopback, iptables and addresses, and a tokio runtime on a thread
//! that lives inside it, so that the sockets its tasks open are the pod's.

use std::os::fd::AsFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs `program args`, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (scripts/setup.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tokio runtime on a thread inside a namespace; dropping it ends its
/// tasks and closes their sockets.
#[derive(Debug)]
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: std::sync::mpsc::Sender<()>,
}

impl NsRuntime {
    fn start(path: String) -> Self {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let netns = std::fs::File::open(&path).expect("the namespace");
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            handle_tx.send(runtime.handle().clone()).expect("handle");
            let _ = stop_rx.recv();
            runtime.shutdown_background();
        });
        Self {
            handle: handle_rx.recv().expect("the runtime starts"),
            stop,
        }
    }

    /// Starts `future` on this runtime.
    pub fn spawn<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.handle.spawn(future)
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

/// A network namespace, deleted (with what runs in it) on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    runtime: Option<NsRuntime>,
}

impl Netns {
    /// A new namespace with loopback up.
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "mesh-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        let mut ns = Self {
            name,
            runtime: None,
        };
        ns.runtime = Some(ns.new_runtime());
        ns
    }

    /// The path `nsenter --net=` takes.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs `program args` inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip -n <ns> args`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Another runtime in this namespace, to stop on its own.
    pub fn new_runtime(&self) -> NsRuntime {
        NsRuntime::start(self.path())
    }

    /// Runs `future` on the namespace's runtime (its sockets are the
    /// namespace's) and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.spawn(future).await.expect("the task in the namespace")
    }

    /// Starts `future` on the namespace's runtime.
    pub fn spawn<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.runtime.as_ref().expect("a runtime").spawn(future)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.runtime.take();
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
