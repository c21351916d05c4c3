//! One container's life: start it through `mesh-node exec`, log its output,
//! run its probes, restart it with the kubelet's back-off (10 s doubling to
//! 5 min) as its restart policy says, and stop it with SIGTERM then SIGKILL.
//! Its state is published on a watch channel for the pod to report.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;

use super::probe::{self, ProbeState, Verdict};

/// The shortest and longest restart back-off.
pub const BACKOFF: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(300));

/// What a container is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not running: why.
    Waiting {
        /// `ContainerCreating`, `CrashLoopBackOff`, `ErrImagePull`, …
        reason: String,
        /// Details.
        message: Option<String>,
    },
    /// Running since.
    Running {
        /// When it started.
        started_at: jiff::Timestamp,
    },
    /// Exited.
    Terminated {
        /// Its exit code (128 + signal when killed).
        exit_code: i32,
        /// `Completed` or `Error`.
        reason: String,
        /// When it started.
        started_at: jiff::Timestamp,
        /// When it ended.
        finished_at: jiff::Timestamp,
    },
}

/// A container's reported status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its current state.
    pub state: State,
    /// The state before the last restart.
    pub last: Option<State>,
    /// Restarts so far.
    pub restarts: i32,
    /// Readiness.
    pub ready: bool,
    /// Whether the startup probe (if any) passed.
    pub started: bool,
}

impl Snapshot {
    fn waiting(reason: &str, message: Option<String>) -> Self {
        Self {
            state: State::Waiting {
                reason: reason.into(),
                message,
            },
            last: None,
            restarts: 0,
            ready: false,
            started: false,
        }
    }
}

/// When a container is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Whatever the exit.
    Always,
    /// After a non-zero exit.
    OnFailure,
    /// Never.
    Never,
}

impl Restart {
    /// From a restartPolicy string.
    pub fn parse(policy: Option<&str>) -> Self {
        match policy {
            Some("Never") => Restart::Never,
            Some("OnFailure") => Restart::OnFailure,
            _ => Restart::Always,
        }
    }

    fn restarts_after(self, exit_code: i32) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => exit_code != 0,
            Restart::Never => false,
        }
    }
}

/// Everything needed to run one container.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The container as the pod declares it.
    pub container: Container,
    /// The argv after image mapping.
    pub argv: Vec<String>,
    /// The image's other programs, for exec probes.
    pub tools: super::images::Tools,
    /// The environment.
    pub env: BTreeMap<String, String>,
    /// `mesh-node` itself (for `exec`).
    pub shim: PathBuf,
    /// Arguments for the shim before `--` (netns, binds, hostname, workdir).
    pub shim_args: Vec<String>,
    /// Where its logs go (`<n>.log` per run).
    pub log_dir: PathBuf,
    /// The pod's IP, for probes.
    pub pod_ip: IpAddr,
    /// Its restart policy.
    pub restart: Restart,
    /// Where to record process groups for cleanup (the cluster's `pgids`).
    pub pgids_file: Option<PathBuf>,
}

/// A running supervisor.
#[derive(Debug)]
pub struct Handle {
    /// Its status.
    pub status: watch::Receiver<Snapshot>,
    stop: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Stops the container (SIGTERM, SIGKILL after `grace`) and waits.
    pub async fn stop(self, grace: Duration) -> watch::Receiver<Snapshot> {
        self.stop.send_replace(Some(grace));
        let _ = self.task.await;
        self.status
    }
}

/// The stop request: `Some(grace)` once asked.
type StopRx = watch::Receiver<Option<Duration>>;

async fn stopped(stop: &mut StopRx) -> Duration {
    loop {
        if let Some(grace) = *stop.borrow_and_update() {
            return grace;
        }
        if stop.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// Starts supervising `spec`.
pub fn start(spec: Spec) -> Handle {
    let (tx, rx) = watch::channel(Snapshot::waiting("ContainerCreating", None));
    let (stop, stop_rx) = watch::channel(None);
    let task = tokio::spawn(supervise(spec, tx, stop_rx));
    Handle {
        status: rx,
        stop,
        task,
    }
}

fn log_file(dir: &std::path::Path, restarts: i32) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    std::fs::File::create(dir.join(format!("{restarts}.log")))
}

fn spawn(spec: &Spec, restarts: i32) -> std::io::Result<tokio::process::Child> {
    let out = log_file(&spec.log_dir, restarts)?;
    let err = out.try_clone()?;
    let child = Command::new(&spec.shim)
        .arg("exec")
        .args(&spec.shim_args)
        .arg("--")
        .args(&spec.argv)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    if let (Some(file), Some(pid)) = (&spec.pgids_file, child.id()) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
        {
            let _ = writeln!(f, "{pid}");
        }
    }
    Ok(child)
}

async fn exec_probe(spec: &Spec, command: Vec<String>) -> bool {
    Command::new(&spec.shim)
        .arg("exec")
        .args(&spec.shim_args)
        .arg("--")
        .args(super::images::with_tools(&spec.tools, command))
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .is_ok_and(|s| s.success())
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

async fn supervise(spec: Spec, tx: watch::Sender<Snapshot>, mut stop: StopRx) {
    let mut restarts = 0;
    let mut backoff = BACKOFF.0;
    let mut last: Option<State> = None;
    loop {
        let started_at = jiff::Timestamp::now();
        let mut child = match spawn(&spec, restarts) {
            Ok(child) => child,
            Err(e) => {
                tx.send_replace(Snapshot {
                    restarts,
                    last: last.clone(),
                    ..Snapshot::waiting("RunContainerError", Some(e.to_string()))
                });
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        let has_startup = spec.container.startup_probe.is_some();
        tx.send_replace(Snapshot {
            state: State::Running { started_at },
            last: last.clone(),
            restarts,
            ready: spec.container.readiness_probe.is_none() && !has_startup,
            started: !has_startup,
        });
        let probes = run_probes(&spec, &tx);
        tokio::pin!(probes);
        enum End {
            Exited(i32),
            Stopped(Duration),
            Unhealthy,
        }
        let end = tokio::select! {
            status = child.wait() => End::Exited(status.map(exit_code).unwrap_or(255)),
            grace = stopped(&mut stop) => End::Stopped(grace),
            () = &mut probes => End::Unhealthy,
        };
        let exit = match end {
            End::Exited(code) => code,
            End::Stopped(_) | End::Unhealthy => {
                let grace = match end {
                    End::Stopped(grace) => grace,
                    _ => spec
                        .container
                        .liveness_probe
                        .as_ref()
                        .and_then(|p| p.termination_grace_period_seconds)
                        .map_or(Duration::from_secs(30), |s| {
                            Duration::from_secs(s.unsigned_abs())
                        }),
                };
                if let Some(pgid) = pgid {
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
                }
                let code = match tokio::time::timeout(grace, child.wait()).await {
                    Ok(status) => status.map(exit_code).unwrap_or(255),
                    Err(_) => {
                        if let Some(pgid) = pgid {
                            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                        }
                        child.wait().await.map(exit_code).unwrap_or(137)
                    }
                };
                if let Some(pgid) = pgid {
                    // Whatever the container left in its group goes too.
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                }
                code
            }
        };
        let terminated = State::Terminated {
            exit_code: exit,
            reason: if exit == 0 { "Completed" } else { "Error" }.into(),
            started_at,
            finished_at: jiff::Timestamp::now(),
        };
        let was_stopped = matches!(end, End::Stopped(_));
        if was_stopped || !spec.restart.restarts_after(exit) {
            tx.send_replace(Snapshot {
                state: terminated,
                last: last.clone(),
                restarts,
                ready: false,
                started: false,
            });
            if !was_stopped {
                stopped(&mut stop).await;
            }
            return;
        }
        // A run that lasted long enough resets the back-off, as the kubelet's.
        let ran = jiff::Timestamp::now()
            .duration_since(started_at)
            .as_secs_f64();
        if ran > 600.0 {
            backoff = BACKOFF.0;
        }
        last = Some(terminated.clone());
        tx.send_replace(Snapshot {
            state: State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {}s restarting failed container {}",
                    backoff.as_secs(),
                    spec.container.name
                )),
            },
            last: last.clone(),
            restarts,
            ready: false,
            started: false,
        });
        tokio::select! {
            _ = stopped(&mut stop) => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF.1);
        restarts += 1;
    }
}

/// Runs startup, then readiness and liveness probes; returns when liveness
/// (or startup) fails for good, so the container is restarted.
async fn run_probes(spec: &Spec, tx: &watch::Sender<Snapshot>) {
    let container = &spec.container;
    let exec = |command: Vec<String>| exec_probe(spec, command);
    if let Some(startup) = &container.startup_probe {
        let (delay, period, _) = probe::timing(startup);
        tokio::time::sleep(delay).await;
        let mut state = ProbeState::new(startup, Verdict::Unknown);
        loop {
            let ok = probe::check(startup, container, spec.pod_ip, exec).await;
            match state.record(ok) {
                Verdict::Success => break,
                Verdict::Failure => return,
                Verdict::Unknown => tokio::time::sleep(period).await,
            }
        }
        tx.send_modify(|s| {
            s.started = true;
            if container.readiness_probe.is_none() {
                s.ready = true;
            }
        });
    }
    let readiness = async {
        let Some(readiness) = &container.readiness_probe else {
            return std::future::pending::<()>().await;
        };
        let (delay, period, _) = probe::timing(readiness);
        tokio::time::sleep(delay).await;
        let mut state = ProbeState::new(readiness, Verdict::Failure);
        loop {
            let ok = probe::check(readiness, container, spec.pod_ip, exec).await;
            let ready = state.record(ok) == Verdict::Success;
            tx.send_if_modified(|s| {
                let changed = s.ready != ready;
                s.ready = ready;
                changed
            });
            tokio::time::sleep(period).await;
        }
    };
    let liveness = async {
        let Some(liveness) = &container.liveness_probe else {
            return std::future::pending::<()>().await;
        };
        let (delay, period, _) = probe::timing(liveness);
        tokio::time::sleep(delay).await;
        let mut state = ProbeState::new(liveness, Verdict::Success);
        loop {
            let ok = probe::check(liveness, container, spec.pod_ip, exec).await;
            if state.record(ok) == Verdict::Failure {
                return;
            }
            tokio::time::sleep(period).await;
        }
    };
    tokio::select! {
        () = readiness => {}
        () = liveness => {}
    }
}
