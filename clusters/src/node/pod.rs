//! One pod's life on the node, as the kubelet leads it: network namespace
//! and address, `resolv.conf` and `hosts`, volumes, then init containers in
//! order (native sidecars — init containers with `restartPolicy: Always` —
//! start and keep running), then the containers; status reported as it
//! changes; a Job's pod completes once its containers have, its sidecars
//! stopped after them; deletion sends SIGTERM, waits the grace period,
//! kills, and removes the namespace before the Pod object is released.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::watch;
use tokio::time::Instant;

use super::container::{self, Handle, Restart, Snapshot, State};
use super::dns;
use super::env::{self, Sources};
use super::images::Images;
use super::network::{Ipam, PodNet};
use super::shim::Bind;
use super::volumes::{self, Materialized, VolumeSources};

/// What every pod worker shares.
pub struct PodContext {
    /// The admin client.
    pub client: kube::Client,
    /// The node's name.
    pub node_name: String,
    /// The node's address (hostIP).
    pub node_ip: Ipv4Addr,
    /// Image mapping.
    pub images: Images,
    /// `mesh-node` (the exec shim).
    pub shim: PathBuf,
    /// Where pods keep their files.
    pub pods_dir: PathBuf,
    /// The cluster DNS address.
    pub dns_ip: Ipv4Addr,
    /// The cluster domain.
    pub cluster_domain: String,
    /// Prefix of pod namespaces.
    pub pod_netns_prefix: String,
    /// Addresses for pods.
    pub ipam: Mutex<Ipam>,
    /// The `kubernetes` Service address and port for in-cluster clients.
    pub kubernetes_service: (Ipv4Addr, u16),
    /// The cluster's `pgids` file.
    pub pgids_file: Option<PathBuf>,
}

impl std::fmt::Debug for PodContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodContext")
            .field("node_name", &self.node_name)
            .field("node_ip", &self.node_ip)
            .field("pods_dir", &self.pods_dir)
            .finish_non_exhaustive()
    }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

struct Running {
    name: String,
    handle: Handle,
}

/// Runs the pod until it is deleted (its object released) or this task is
/// aborted.
pub async fn run(ctx: Arc<PodContext>, mut pod_rx: watch::Receiver<Pod>) {
    let pod = pod_rx.borrow_and_update().clone();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let reporter = Reporter {
        api: api.clone(),
        name: name.clone(),
        last: None,
    };
    let mut life = PodLife {
        ctx: ctx.clone(),
        pod,
        reporter,
        net: None,
        volumes: Materialized::default(),
        volumes_synced_at: Instant::now(),
        init_done: false,
        init_runs: Vec::new(),
        sidecars: Vec::new(),
        mains: Vec::new(),
        waiting: BTreeMap::new(),
        phase: "Pending",
        started_at: jiff::Timestamp::now(),
    };
    let deleted = life.run(&mut pod_rx).await;
    life.teardown(deleted).await;
    if deleted {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(&name, &params).await {
            tracing::debug!(pod = %name, "releasing the pod object: {e}");
        }
    }
    ctx.ipam
        .lock()
        .map(|mut i| i.release(&uid))
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(ctx.pods_dir.join(&uid));
}

/// How often a running pod's ConfigMap and Secret volumes are rewritten
/// from the API. The kubelet takes about a minute plus its cache's life;
/// the local clusters take less, so a rotated certificate or an edited
/// ConfigMap reaches pods while a test waits.
const VOLUME_SYNC_PERIOD: Duration = Duration::from_secs(10);

/// The least time a sidecar gets to stop, even past the grace period.
const SIDECAR_MIN_GRACE: Duration = Duration::from_secs(2);

struct Reporter {
    api: Api<Pod>,
    name: String,
    last: Option<serde_json::Value>,
}

impl Reporter {
    async fn report(&mut self, status: serde_json::Value) {
        if self.last.as_ref() == Some(&status) {
            return;
        }
        let patch = serde_json::json!({ "status": status });
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last = Some(status),
            Err(e) => tracing::debug!(pod = %self.name, "status update: {e}"),
        }
    }
}

struct PodLife {
    ctx: Arc<PodContext>,
    pod: Pod,
    reporter: Reporter,
    net: Option<PodNet>,
    volumes: Materialized,
    /// When the volumes were last written from the API.
    volumes_synced_at: Instant,
    init_done: bool,
    /// Regular init containers started so far.
    init_runs: Vec<Running>,
    sidecars: Vec<Running>,
    mains: Vec<Running>,
    /// Containers that cannot start yet, with the reason and message.
    waiting: BTreeMap<String, (String, String)>,
    phase: &'static str,
    started_at: jiff::Timestamp,
}

impl PodLife {
    fn spec(&self) -> k8s_openapi::api::core::v1::PodSpec {
        self.pod.spec.clone().unwrap_or_default()
    }

    fn pod_dir(&self) -> PathBuf {
        self.ctx
            .pods_dir
            .join(self.pod.metadata.uid.clone().unwrap_or_default())
    }

    fn restart(&self) -> Restart {
        Restart::parse(self.spec().restart_policy.as_deref())
    }

    /// Returns true when the pod was deleted, false when it completed.
    async fn run(&mut self, pod_rx: &mut watch::Receiver<Pod>) -> bool {
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                return true;
            }
            self.mark_statuses_seen();
            match self.step().await {
                Step::Again(after) => {
                    self.report().await;
                    let mut statuses = self.status_receivers();
                    // A deadline, not a delay: wake-ups for other reasons
                    // (probes, status changes) must not put the sync off.
                    let volumes_due = self.volumes_due();
                    tokio::select! {
                        changed = pod_rx.changed() => {
                            if changed.is_err() { return true; }
                            self.pod = pod_rx.borrow_and_update().clone();
                        }
                        () = any_changed(&mut statuses) => {}
                        () = tokio::time::sleep_until((Instant::now() + after).min(volumes_due)) => {}
                    }
                    if self.net.is_some() && Instant::now() >= self.volumes_due() {
                        self.refresh_volumes().await;
                    }
                }
                Step::Done => {
                    self.report().await;
                    // Keep the record until the pod object goes away.
                    loop {
                        if pod_rx.changed().await.is_err() {
                            return true;
                        }
                        self.pod = pod_rx.borrow_and_update().clone();
                        if self.pod.metadata.deletion_timestamp.is_some() {
                            return true;
                        }
                    }
                }
            }
        }
    }

    /// Copies of every container's status receiver, each at the version
    /// [`Self::mark_statuses_seen`] last saw: a change since then wakes the
    /// pod's loop at once, and nothing else does.
    fn status_receivers(&self) -> Vec<watch::Receiver<Snapshot>> {
        self.sidecars
            .iter()
            .chain(&self.mains)
            .chain(&self.init_runs)
            .map(|r| r.handle.status.clone())
            .collect()
    }

    /// Marks every container's current status as seen, before a step reads
    /// them.
    fn mark_statuses_seen(&mut self) {
        for r in self
            .sidecars
            .iter_mut()
            .chain(self.mains.iter_mut())
            .chain(self.init_runs.iter_mut())
        {
            r.handle.status.borrow_and_update();
        }
    }

    /// When the volumes are next synced with the API: every
    /// [`VOLUME_SYNC_PERIOD`], sooner when a token is due for renewal.
    fn volumes_due(&self) -> Instant {
        let sync = self.volumes_synced_at + VOLUME_SYNC_PERIOD;
        self.volumes.renew_tokens_at.map_or(sync, |at| at.min(sync))
    }

    /// Rewrites the volumes from the API's current ConfigMaps and Secrets
    /// (renewing tokens that are due); on failure the files stay as they
    /// were and the next period tries again.
    async fn refresh_volumes(&mut self) {
        let renew_tokens = self
            .volumes
            .renew_tokens_at
            .is_some_and(|at| Instant::now() >= at);
        self.volumes_synced_at = Instant::now();
        match volumes::materialize(
            &self.pod,
            &self.pod_dir(),
            &self.volume_sources(),
            renew_tokens,
        )
        .await
        {
            Ok(mut fresh) => {
                if !renew_tokens {
                    fresh.renew_tokens_at = self.volumes.renew_tokens_at;
                }
                self.volumes = fresh;
            }
            Err(e) => tracing::warn!(
                pod = ?self.pod.metadata.name,
                "keeping the volumes as they were: {e}"
            ),
        }
    }

    fn volume_sources(&self) -> VolumeSources {
        VolumeSources {
            client: self.ctx.client.clone(),
            pod_ip: self
                .net
                .as_ref()
                .map(|n| n.ip.to_string())
                .unwrap_or_default(),
            host_ip: self.ctx.node_ip.to_string(),
        }
    }

    /// Moves the pod forward as far as it can go now.
    async fn step(&mut self) -> Step {
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        if self.net.is_none() {
            let ip = self.ctx.ipam.lock().ok().and_then(|mut i| i.assign(&uid));
            let Some(ip) = ip else {
                self.wait_all("ContainerCreating", "no pod address left on this node");
                return Step::Again(Duration::from_secs(5));
            };
            let net = PodNet::for_pod(&self.ctx.pod_netns_prefix, &uid, ip);
            if let Err(e) = net.create(self.ctx.node_ip).await {
                self.wait_all("ContainerCreating", &format!("pod network: {e}"));
                return Step::Again(Duration::from_secs(5));
            }
            let dir = self.pod_dir();
            let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
            let name = self.pod.metadata.name.clone().unwrap_or_default();
            let files = std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    std::fs::write(
                        dir.join("resolv.conf"),
                        dns::resolv_conf(
                            self.pod.spec.as_ref(),
                            &ns,
                            &self.ctx.cluster_domain,
                            self.ctx.dns_ip,
                            || std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                        ),
                    )
                })
                .and_then(|()| {
                    std::fs::write(
                        dir.join("hosts"),
                        format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n{ip}\t{name}\n"),
                    )
                });
            if let Err(e) = files {
                self.wait_all("ContainerCreating", &format!("pod files: {e}"));
                return Step::Again(Duration::from_secs(5));
            }
            self.net = Some(net);
            self.started_at = jiff::Timestamp::now();
        }
        // Until every volume is laid out (retried while one fails).
        if self.volumes.dirs.len() < self.spec().volumes.as_ref().map_or(0, Vec::len) {
            let sources = self.volume_sources();
            match volumes::materialize(&self.pod, &self.pod_dir(), &sources, true).await {
                Ok(v) => {
                    self.volumes = v;
                    self.volumes_synced_at = Instant::now();
                }
                Err(e) => {
                    self.wait_all("ContainerCreating", &e.to_string());
                    return Step::Again(Duration::from_secs(2));
                }
            }
        }
        self.waiting.clear();
        if !self.init_done {
            return self.step_init().await;
        }
        if self.mains.is_empty() {
            for c in self.spec().containers {
                match self.launch(&c, self.restart()).await {
                    Ok(handle) => self.mains.push(Running {
                        name: c.name.clone(),
                        handle,
                    }),
                    Err((reason, message)) => {
                        self.waiting.insert(c.name.clone(), (reason, message));
                    }
                }
            }
            if !self.waiting.is_empty() {
                // Start none until all can start, so restarts stay simple.
                for r in self.mains.drain(..) {
                    r.handle.stop(Duration::ZERO).await;
                }
                return Step::Again(Duration::from_secs(5));
            }
            self.phase = "Running";
        }
        // A pod that does not restart its containers completes with them.
        if self.restart() != Restart::Always {
            let finished: Vec<i32> = self
                .mains
                .iter()
                .filter_map(|r| match &r.handle.status.borrow().state {
                    State::Terminated { exit_code, .. } => Some(*exit_code),
                    _ => None,
                })
                .collect();
            if finished.len() == self.mains.len() {
                for r in self.sidecars.drain(..).rev() {
                    r.handle.stop(Duration::from_secs(2)).await;
                }
                self.phase = if finished.iter().all(|c| *c == 0) {
                    "Succeeded"
                } else {
                    "Failed"
                };
                if let Some(net) = &self.net {
                    net.delete().await;
                }
                return Step::Done;
            }
        }
        Step::Again(Duration::from_secs(3600))
    }

    async fn step_init(&mut self) -> Step {
        let init = self.spec().init_containers.unwrap_or_default();
        for c in &init {
            if is_sidecar(c) {
                if let Some(r) = self.sidecars.iter().find(|r| r.name == c.name) {
                    let s = r.handle.status.borrow().clone();
                    if !(matches!(s.state, State::Running { .. }) && s.started) {
                        return Step::Again(Duration::from_secs(3600));
                    }
                    continue;
                }
                return self.start_init(c, Restart::Always).await;
            }
            if let Some(r) = self.init_runs.iter().find(|r| r.name == c.name) {
                let state = r.handle.status.borrow().state.clone();
                match state {
                    State::Terminated { exit_code: 0, .. } => continue,
                    State::Terminated { .. } if self.restart() == Restart::Never => {
                        self.phase = "Failed";
                        return Step::Done;
                    }
                    _ => return Step::Again(Duration::from_secs(3600)),
                }
            }
            let restart = if self.restart() == Restart::Never {
                Restart::Never
            } else {
                Restart::OnFailure
            };
            return self.start_init(c, restart).await;
        }
        self.init_done = true;
        Box::pin(self.step()).await
    }

    /// Starts init container `c` (a sidecar when `restart` is Always) and
    /// waits for it to change.
    async fn start_init(&mut self, c: &Container, restart: Restart) -> Step {
        match self.launch(c, restart).await {
            Ok(handle) => {
                let running = Running {
                    name: c.name.clone(),
                    handle,
                };
                if restart == Restart::Always {
                    self.sidecars.push(running);
                } else {
                    self.init_runs.push(running);
                }
                Step::Again(Duration::from_secs(3600))
            }
            Err((reason, message)) => {
                self.waiting.insert(c.name.clone(), (reason, message));
                Step::Again(Duration::from_secs(5))
            }
        }
    }
}

enum Step {
    /// Look again after this long, or when something changes.
    Again(Duration),
    /// Nothing more to do until the pod is deleted.
    Done,
}

/// Waits until one of `statuses` has a value not yet seen. A container
/// whose status can no longer change (its sender is gone, its last value
/// seen) is dropped from the wait rather than waking it over and over.
async fn any_changed(statuses: &mut Vec<watch::Receiver<Snapshot>>) {
    loop {
        if statuses.is_empty() {
            return std::future::pending().await;
        }
        let (changed, index) = {
            let changes = statuses.iter_mut().map(|rx| Box::pin(rx.changed()));
            let (changed, index, _) = futures::future::select_all(changes).await;
            (changed, index)
        };
        if changed.is_ok() {
            return;
        }
        statuses.swap_remove(index);
    }
}

impl PodLife {
    fn wait_all(&mut self, reason: &str, message: &str) {
        let spec = self.spec();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            self.waiting
                .insert(c.name.clone(), (reason.to_owned(), message.to_owned()));
        }
    }

    /// Starts a container, or says why it cannot start.
    async fn launch(&self, c: &Container, restart: Restart) -> Result<Handle, (String, String)> {
        let spec = self.spec();
        let images = &self.ctx.images;
        let image = c.image.clone().unwrap_or_default();
        let argv = images
            .resolve(
                &image,
                c.command.as_deref().unwrap_or_default(),
                c.args.as_deref().unwrap_or_default(),
            )
            .map_err(|e| ("ErrImagePull".to_owned(), e.to_string()))?;
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| ("ContainerCreating".to_owned(), "no network yet".to_owned()))?;
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let (k8s_ip, k8s_port) = self.ctx.kubernetes_service;
        let base = BTreeMap::from([
            (
                "PATH".to_owned(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
            ("HOSTNAME".to_owned(), name.clone()),
            ("HOME".to_owned(), "/root".to_owned()),
            ("KUBERNETES_SERVICE_HOST".to_owned(), k8s_ip.to_string()),
            ("KUBERNETES_SERVICE_PORT".to_owned(), k8s_port.to_string()),
            (
                "KUBERNETES_SERVICE_PORT_HTTPS".to_owned(),
                k8s_port.to_string(),
            ),
            (
                "KUBERNETES_PORT".to_owned(),
                format!("tcp://{k8s_ip}:{k8s_port}"),
            ),
        ]);
        let sources = Sources {
            config_maps: Api::<ConfigMap>::namespaced(self.ctx.client.clone(), &ns),
            secrets: Api::<Secret>::namespaced(self.ctx.client.clone(), &ns),
        };
        let env = env::build(
            &self.pod,
            c,
            &sources,
            &net.ip.to_string(),
            &self.ctx.node_ip.to_string(),
            &base,
        )
        .await
        .map_err(|e| ("CreateContainerConfigError".to_owned(), e.to_string()))?;
        let dir = self.pod_dir();
        let mut binds = vec![
            Bind {
                source: dir.join("resolv.conf"),
                target: "/etc/resolv.conf".into(),
                read_only: true,
            },
            Bind {
                source: dir.join("hosts"),
                target: "/etc/hosts".into(),
                read_only: true,
            },
        ];
        for mount in c.volume_mounts.iter().flatten() {
            let Some(source) = self.volumes.dirs.get(&mount.name) else {
                return Err((
                    "CreateContainerConfigError".to_owned(),
                    format!("volumeMount {:?}: no such volume", mount.name),
                ));
            };
            let source = match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
                Some(sub) if !sub.split('/').any(|p| p == "..") => source.join(sub),
                Some(sub) => {
                    return Err((
                        "CreateContainerConfigError".to_owned(),
                        format!("subPath {sub:?} leaves the volume"),
                    ));
                }
                None => source.clone(),
            };
            binds.push(Bind {
                source,
                target: mount.mount_path.clone().into(),
                read_only: mount.read_only == Some(true),
            });
        }
        let mut shim_args = vec![
            "--netns".to_owned(),
            net.netns.clone(),
            "--hostname".to_owned(),
            spec.hostname.clone().unwrap_or_else(|| name.clone()),
        ];
        for b in &binds {
            shim_args.push("--bind".into());
            shim_args.push(b.to_string());
        }
        if let Some(dir) = &c.working_dir {
            shim_args.push("--workdir".into());
            shim_args.push(dir.clone());
        }
        let (uid, gid) = run_as(&spec, c);
        if let Some(uid) = uid {
            shim_args.push("--uid".into());
            shim_args.push(uid.to_string());
            shim_args.push("--gid".into());
            shim_args.push(gid.unwrap_or(0).to_string());
        }
        Ok(container::start(container::Spec {
            container: c.clone(),
            argv,
            tools: images.tools(&image),
            env,
            shim: self.ctx.shim.clone(),
            shim_args,
            log_dir: dir.join("logs").join(&c.name),
            pod_ip: IpAddr::V4(net.ip),
            restart,
            pgids_file: self.ctx.pgids_file.clone(),
        }))
    }

    async fn report(&mut self) {
        let status = self.status();
        self.reporter.report(status).await;
    }

    /// The Pod status, as JSON for a merge patch.
    fn status(&self) -> serde_json::Value {
        let spec = self.spec();
        let snapshot = |name: &str| {
            self.init_runs
                .iter()
                .chain(&self.sidecars)
                .chain(&self.mains)
                .find(|r| r.name == name)
                .map(|r| r.handle.status.borrow().clone())
        };
        let container_status = |c: &Container| {
            let snap = snapshot(&c.name);
            let state = match (&snap, self.waiting.get(&c.name)) {
                (Some(s), _) => state_json(&s.state),
                (None, Some((reason, message))) => {
                    serde_json::json!({"waiting": {"reason": reason, "message": message}})
                }
                (None, None) => serde_json::json!({"waiting": {"reason": "PodInitializing"}}),
            };
            let mut status = serde_json::json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": snap.as_ref().is_some_and(|s| s.ready),
                "started": snap.as_ref().is_some_and(|s| s.started),
                "restartCount": snap.as_ref().map_or(0, |s| s.restarts),
                "state": state,
            });
            if let Some(last) = snap.as_ref().and_then(|s| s.last.as_ref()) {
                status["lastState"] = state_json(last);
            }
            if snap.is_some() {
                status["containerID"] = serde_json::json!(format!(
                    "mesh://{}/{}",
                    self.pod.metadata.uid.clone().unwrap_or_default(),
                    c.name
                ));
            }
            status
        };
        let mains_ready = !self.mains.is_empty()
            && self.mains.iter().all(|r| r.handle.status.borrow().ready)
            && self.sidecars.iter().all(|r| r.handle.status.borrow().ready);
        let now = self.started_at.to_string();
        let condition = |kind: &str, ok: bool| {
            serde_json::json!({
                "type": kind,
                "status": if ok { "True" } else { "False" },
                "lastTransitionTime": now,
            })
        };
        let ip = self.net.as_ref().map(|n| n.ip.to_string());
        let mut status = serde_json::json!({
            "phase": self.phase,
            "hostIP": self.ctx.node_ip.to_string(),
            "hostIPs": [{"ip": self.ctx.node_ip.to_string()}],
            "startTime": self.started_at.to_string(),
            "conditions": [
                condition("PodReadyToStartContainers", self.net.is_some()),
                condition("Initialized", self.init_done),
                condition("ContainersReady", mains_ready),
                condition("Ready", mains_ready),
                condition("PodScheduled", true),
            ],
            "initContainerStatuses": spec.init_containers.iter().flatten().map(container_status).collect::<Vec<_>>(),
            "containerStatuses": spec.containers.iter().map(container_status).collect::<Vec<_>>(),
        });
        if let Some(ip) = ip {
            status["podIP"] = serde_json::json!(ip);
            status["podIPs"] = serde_json::json!([{"ip": ip}]);
        }
        status
    }

    /// Stops everything: containers (SIGTERM, then SIGKILL after the grace
    /// period), then sidecars in reverse order with what is left of the
    /// grace period (as the kubelet does: a proxy sidecar that keeps
    /// serving for a while after SIGTERM gets that time), then the network.
    async fn teardown(&mut self, deleted: bool) {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(self.spec().termination_grace_period_seconds)
            .unwrap_or(30);
        let grace = Duration::from_secs(grace.unsigned_abs());
        let started = tokio::time::Instant::now();
        let stops = self.mains.drain(..).map(|r| r.handle.stop(grace));
        futures::future::join_all(stops).await;
        for r in self.init_runs.drain(..) {
            r.handle.stop(Duration::ZERO).await;
        }
        for r in self.sidecars.drain(..).rev() {
            let left = grace
                .saturating_sub(started.elapsed())
                .max(SIDECAR_MIN_GRACE);
            r.handle.stop(left).await;
        }
        if deleted && let Some(net) = self.net.take() {
            net.delete().await;
        }
    }
}

fn state_json(state: &State) -> serde_json::Value {
    match state {
        State::Waiting { reason, message } => {
            serde_json::json!({"waiting": {"reason": reason, "message": message}})
        }
        State::Running { started_at } => {
            serde_json::json!({"running": {"startedAt": started_at.to_string()}})
        }
        State::Terminated {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => serde_json::json!({"terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_at.to_string(),
            "finishedAt": finished_at.to_string(),
        }}),
    }
}

/// The user and group a container runs as: its own `securityContext`, else
/// the pod's.
fn run_as(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    c: &k8s_openapi::api::core::v1::Container,
) -> (Option<i64>, Option<i64>) {
    let own = c.security_context.as_ref();
    let pod = spec.security_context.as_ref();
    (
        own.and_then(|s| s.run_as_user)
            .or_else(|| pod.and_then(|s| s.run_as_user)),
        own.and_then(|s| s.run_as_group)
            .or_else(|| pod.and_then(|s| s.run_as_group)),
    )
}
