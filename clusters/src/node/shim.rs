//! Entering a pod: `mesh-node exec` joins the pod's network namespace,
//! makes private mount and UTS namespaces, bind-mounts the pod's volumes,
//! `resolv.conf` and `hosts` where its containers expect them, sets the
//! hostname to the pod's name, takes the container's user (`runAsUser`,
//! `runAsGroup`) and executes the container's command. The
//! node agent starts every container (and exec probe) through it.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};

/// One bind mount: `source:target[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// On the node.
    pub source: PathBuf,
    /// Inside the container.
    pub target: PathBuf,
    /// Read-only.
    pub read_only: bool,
}

impl std::str::FromStr for Bind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
            return Err(format!("bind {s:?}: expected SOURCE:TARGET[:ro]"));
        };
        let read_only = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => return Err(format!("bind {s:?}: unknown option {other:?}")),
        };
        Ok(Self {
            source: source.into(),
            target: target.into(),
            read_only,
        })
    }
}

impl std::fmt::Display for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}{}",
            self.source.display(),
            self.target.display(),
            if self.read_only { ":ro" } else { "" }
        )
    }
}

/// What to enter and run.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The pod's network namespace (a name under /run/netns).
    pub netns: String,
    /// The pod's hostname.
    pub hostname: Option<String>,
    /// Bind mounts, in order.
    pub binds: Vec<Bind>,
    /// The working directory.
    pub workdir: Option<PathBuf>,
    /// The user and group to run as (`runAsUser`, `runAsGroup`); root
    /// when unset.
    pub user: Option<(u32, u32)>,
    /// The command.
    pub argv: Vec<String>,
}

fn make_target(bind: &Bind) -> std::io::Result<()> {
    if bind.target.exists() {
        return Ok(());
    }
    if bind.source.is_dir() {
        std::fs::create_dir_all(&bind.target)
    } else {
        if let Some(parent) = bind.target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&bind.target, b"")
    }
}

/// Enters the pod and executes the command; returns only on failure.
pub fn enter_and_exec(entry: &Entry) -> anyhow::Error {
    match try_enter(entry) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_enter(entry: &Entry) -> anyhow::Result<std::convert::Infallible> {
    let path = Path::new(crate::netns::NETNS_DIR).join(&entry.netns);
    let ns = std::fs::File::open(&path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| anyhow::anyhow!("joining network namespace {}: {e}", entry.netns))?;
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
        .map_err(|e| anyhow::anyhow!("making mount and UTS namespaces: {e}"))?;
    // Nothing mounted here may reach the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| anyhow::anyhow!("making / private: {e}"))?;
    for bind in &entry.binds {
        make_target(bind)
            .map_err(|e| anyhow::anyhow!("preparing {}: {e}", bind.target.display()))?;
        mount(
            Some(&bind.source),
            &bind.target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| anyhow::anyhow!("mounting {bind}: {e}"))?;
        if bind.read_only {
            mount(
                None::<&str>,
                &bind.target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| anyhow::anyhow!("making {} read-only: {e}", bind.target.display()))?;
        }
    }
    if let Some(hostname) = &entry.hostname {
        nix::unistd::sethostname(hostname)
            .map_err(|e| anyhow::anyhow!("setting hostname {hostname}: {e}"))?;
    }
    if let Some(dir) = &entry.workdir {
        std::env::set_current_dir(dir)
            .map_err(|e| anyhow::anyhow!("changing to {}: {e}", dir.display()))?;
    }
    // A program named by path is opened while still root, so a container
    // that runs as another user can execute one that user could not reach
    // (a cached program under root's home), as a runtime's image layers
    // would give it.
    let program_file = entry
        .argv
        .first()
        .filter(|p| p.contains('/'))
        .and_then(|p| std::fs::File::open(p).ok());
    if let Some((uid, gid)) = entry.user {
        use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
        setgroups(&[]).map_err(|e| anyhow::anyhow!("dropping supplementary groups: {e}"))?;
        setgid(Gid::from_raw(gid)).map_err(|e| anyhow::anyhow!("runAsGroup {gid}: {e}"))?;
        setuid(Uid::from_raw(uid)).map_err(|e| anyhow::anyhow!("runAsUser {uid}: {e}"))?;
    }
    let argv: Vec<CString> = entry
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("the command holds a NUL byte"))?;
    let program = argv
        .first()
        .ok_or_else(|| anyhow::anyhow!("no command to run"))?;
    let errno = match program_file {
        Some(file) => {
            let env: Vec<CString> = std::env::vars_os()
                .filter_map(|(k, v)| {
                    let mut pair = k.into_encoded_bytes();
                    pair.push(b'=');
                    pair.extend(v.into_encoded_bytes());
                    CString::new(pair).ok()
                })
                .collect();
            match nix::unistd::fexecve(&file, &argv, &env) {
                // A script through a close-on-exec descriptor: by path.
                Err(nix::errno::Errno::ENOENT) => nix::unistd::execvp(program, &argv).err(),
                other => other.err(),
            }
        }
        None => nix::unistd::execvp(program, &argv).err(),
    };
    Err(anyhow::anyhow!(
        "executing {:?}: {}",
        entry.argv[0],
        errno.map_or_else(|| "unknown error".to_owned(), |e| e.desc().to_owned())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_and_print() {
        let b: Bind = "/a:/b:ro".parse().expect("bind");
        assert!(b.read_only);
        assert_eq!(b.to_string(), "/a:/b:ro");
        let rw: Bind = "/a:/b".parse().expect("bind");
        assert!(!rw.read_only);
        assert!("/a".parse::<Bind>().is_err());
        assert!("/a:/b:xx".parse::<Bind>().is_err());
    }
}
