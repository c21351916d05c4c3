//! Child processes of a local cluster. Each component runs in its own
//! process group with stdin closed and its output in a log file, and its
//! group id is appended to the cluster directory's `pgids` file. A janitor —
//! a tiny shell loop in a process group of its own that ignores job-control
//! signals — watches the process that owns the cluster; when that process is
//! gone, for whatever reason (success, failure, panic, SIGKILL), it kills
//! every recorded group and removes the cluster directory. Nothing is left
//! behind even when no destructor runs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The file in a cluster directory that lists the process groups to kill.
pub const PGIDS_FILE: &str = "pgids";

/// A running component: one process, leader of its own process group.
#[derive(Debug)]
pub struct Component {
    name: &'static str,
    child: Child,
    pid: i32,
    log: PathBuf,
}

impl Component {
    /// Starts `program` with `args`, logging to `<dir>/logs/<name>.log`, and
    /// records its process group in `<dir>/pgids` before returning.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        dir: &Path,
    ) -> std::io::Result<Self> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("starting {}: {e}", program.display()))
            })?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| std::io::Error::other(format!("{name} exited at once")))?;
        let mut pgids = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(PGIDS_FILE))?;
        writeln!(pgids, "{pid}")?;
        Ok(Self {
            name,
            child,
            pid,
            log,
        })
    }

    /// The component's name (`etcd`, `kube-apiserver`, …).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its process id (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Its resident memory in bytes, from `/proc`.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid)
    }

    /// SIGTERM to the group, then SIGKILL after `grace`; waits for the exit.
    pub async fn stop(&mut self, grace: Duration) {
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
    }
}

/// The last `lines` lines of a log file (empty when unreadable), leaving out
/// the flag dump Kubernetes components print at start-up.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.contains("] FLAG: --")).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Resident memory of a process, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Kills every process group recorded in `dir` whose leader still runs a
/// command that mentions `dir` (so a recycled pid is never hit): SIGTERM,
/// then SIGKILL after `grace`. Used by `mesh down` and by destructors.
pub async fn kill_recorded_groups(dir: &Path, grace: Duration) {
    let pgids = recorded_groups(dir);
    for pgid in &pgids {
        let _ = killpg(*pgid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while pgids.iter().any(|p| group_alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pgid in &pgids {
        let _ = killpg(*pgid, Signal::SIGKILL);
    }
    while pgids.iter().any(|p| group_alive(*p)) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The same as [`kill_recorded_groups`] with no grace, for destructors that
/// cannot await.
pub fn kill_recorded_groups_now(dir: &Path) {
    let pgids = recorded_groups(dir);
    for pgid in &pgids {
        let _ = killpg(*pgid, Signal::SIGKILL);
    }
}

/// The recorded process groups whose leader still belongs to this cluster.
pub fn recorded_groups(dir: &Path) -> Vec<Pid> {
    let text = std::fs::read_to_string(dir.join(PGIDS_FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|pid| cmdline_mentions(*pid, dir))
        .map(Pid::from_raw)
        .collect()
}

/// Processes (zombies aside) whose command line mentions `marker`, such as
/// a cluster directory: what must be gone once the cluster is stopped.
pub fn live_processes_mentioning(marker: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            cmdline_mentions(*pid, marker) && !process_state(*pid).is_some_and(is_dead_state)
        })
        .collect()
}

fn cmdline_mentions(pid: i32, marker: &Path) -> bool {
    let marker = marker.as_os_str().as_encoded_bytes();
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmd| cmd.windows(marker.len()).any(|w| w == marker))
}

/// The state letter and process group of a process, from `/proc/<pid>/stat`
/// (`pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses).
fn stat_fields(pid: &str) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

fn process_state(pid: i32) -> Option<char> {
    stat_fields(&pid.to_string()).map(|(state, _)| state)
}

fn is_dead_state(state: char) -> bool {
    matches!(state, 'Z' | 'X')
}

/// Whether any process of the group still runs. Zombies do not count: once
/// a detached component exits, whoever inherited it may reap it late.
fn group_alive(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(pgid, None).is_ok();
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(stat_fields)
            .is_some_and(|(state, pgrp)| pgrp == pgid.as_raw() && !is_dead_state(state))
    })
}

/// A guard process that cleans a cluster directory up once the process it
/// watches has exited.
#[derive(Debug)]
pub struct Janitor {
    child: std::process::Child,
}

/// The janitor's script: `$1` is the pid to watch, `$2` the directory
/// (whose `pgids` file, and its subdirectories', list the groups to kill),
/// `$3` more shell to run before the directory goes.
const JANITOR_SCRIPT: &str = r#"
trap '' INT TERM HUP
while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
groups=$(cat "$2/pgids" "$2"/*/pgids 2>/dev/null)
for pg in $groups; do kill -KILL "-$pg" 2>/dev/null; done
for pg in $groups; do
  n=0
  while kill -0 "-$pg" 2>/dev/null && [ "$n" -lt 200 ]; do sleep 0.05; n=$((n+1)); done
done
if [ -n "$3" ]; then eval "$3"; fi
rm -rf -- "$2"
"#;

impl Janitor {
    /// Starts a janitor for `dir` that acts once `owner` has exited.
    pub fn watch(owner: u32, dir: &Path) -> std::io::Result<Self> {
        Self::watch_with(owner, dir, "")
    }

    /// The same, running the shell commands `cleanup` (as root, before the
    /// directory goes) too: how network namespaces are removed.
    pub fn watch_with(owner: u32, dir: &Path, cleanup: &str) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(JANITOR_SCRIPT)
            .arg("mesh-cluster-janitor")
            .arg(owner.to_string())
            .arg(dir)
            .arg(cleanup)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Self { child })
    }

    /// Stops the janitor without letting it clean up: the caller has taken
    /// over (it cleaned up itself, or handed the cluster to another owner).
    pub fn dismiss(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
