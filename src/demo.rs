//! `mesh demo`: the whole story on this machine. It starts the local
//! clusters (20 ms WAN), installs mesh on both with one trust anchor, the
//! multicluster extension on both, links west to east, deploys podinfo in
//! both and exports east's, installs the failover controller in west with
//! the docs' TrafficSplit, and starts a meshed client sending 50 requests a
//! second. Then it breaks west's podinfo — a bad deploy whose Ready pods
//! answer 500, then a full outage — and shows each failover and failback
//! second by second (weights, the controller's state, what the client
//! saw), and ends with a summary. Every step is the command a user would
//! type, printed before it runs. The clusters stay up (`--down` removes
//! them).

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Args;
use kube::Api;
use mesh_api::crds::traffic_split::TrafficSplit;
use mesh_clusters::local::{self, UpOptions};
use mesh_clusters::progress::Step;
use mesh_failover::status::SplitStatus;
use mesh_podinfo::drive;
use mesh_podinfo::report::LoadSecond;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::cli::StateArgs;
use crate::output;

/// The demo's namespace, in both clusters.
const NS: &str = "demo";
/// podinfo as its docs deploy it.
const PODINFO: &str = include_str!("../demo/podinfo.yaml");
/// podinfo's retryable GETs.
const RETRIES: &str = include_str!("../demo/podinfo-retries.yaml");

/// Flags of `mesh demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// One-way delay on the WAN between west and east.
    #[arg(
        long,
        env = "MESH_WAN_DELAY",
        default_value = "20ms",
        value_name = "DURATION"
    )]
    pub wan_delay: String,
    /// Remove the clusters at the end instead of leaving them up to explore.
    #[arg(long, env = "MESH_DEMO_DOWN")]
    pub down: bool,
}

/// How to run the tools against the demo's clusters.
struct Tools {
    mesh: PathBuf,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Tools {
    /// Runs `program args` (stdin `input`), showing the command; its
    /// stdout, or its stderr as the error.
    async fn run(
        &self,
        program: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("NO_COLOR", "1")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        anyhow::ensure!(
            out.status.success(),
            "{name} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `mesh --context <context> <args>`.
    async fn mesh(&self, context: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["--context", context];
        all.extend_from_slice(args);
        self.run(&self.mesh, &all, None).await
    }

    /// `kubectl --context <context> <args>` with `input` on stdin.
    async fn kubectl(
        &self,
        context: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut all = vec!["--context", context];
        all.extend_from_slice(args);
        self.run(&self.kubectl, &all, input).await
    }

    /// `mesh --context <from> <args> | kubectl --context <to> apply -f -`.
    async fn mesh_apply(&self, from: &str, args: &[&str], to: &str) -> anyhow::Result<()> {
        show(&format!(
            "mesh --context {from} {} | kubectl --context {to} apply -f -",
            args.join(" ")
        ));
        let rendered = self.mesh(from, args).await?;
        self.kubectl(to, &["apply", "-f", "-"], Some(&rendered))
            .await?;
        Ok(())
    }

    /// `kubectl apply` of `yaml` in the demo namespace of `context`.
    async fn apply(&self, context: &str, what: &str, yaml: &str) -> anyhow::Result<()> {
        show(&format!(
            "kubectl --context {context} -n {NS} apply -f {what}"
        ));
        self.kubectl(context, &["-n", NS, "apply", "-f", "-"], Some(yaml))
            .await?;
        Ok(())
    }

    async fn rollout(&self, context: &str, ns: &str, deployment: &str) -> anyhow::Result<()> {
        self.kubectl(
            context,
            &[
                "-n",
                ns,
                "rollout",
                "status",
                &format!("deploy/{deployment}"),
                "--timeout=5m",
            ],
            None,
        )
        .await
        .map(drop)
    }
}

/// A command the demo runs, as the user would type it.
fn show(command: &str) {
    eprintln!("{}", console::style(format!("  $ {command}")).dim());
}

/// One trust anchor for both clusters and an issuer for each, kept in the
/// state directory so a second `mesh demo` reuses them.
fn trust_material(dir: &Path) -> anyhow::Result<PathBuf> {
    let trust = dir.join("demo-trust");
    mesh_identity::generate::shared_trust(&trust, &["west", "east"])?;
    Ok(trust)
}

/// Runs the demo.
pub async fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let state_dir = crate::commands::local::state_dir(&args.state)?;
    let step = Step::start(format!(
        "starting clusters west and east ({} WAN delay)",
        args.wan_delay
    ));
    let outcome = local::up(
        &state_dir,
        &UpOptions {
            wan_settings: format!("delay={}", args.wan_delay),
            flat: false,
            cluster_domain: "cluster.local".into(),
            mesh_bin_dir: crate::commands::local::mesh_bin_dir()?,
        },
    )
    .await?;
    step.done();
    let tools = Tools {
        mesh: std::env::current_exe()?,
        kubectl: outcome.bin_dir.join("kubectl"),
        kubeconfig: outcome.pair.kubeconfig.clone(),
    };
    let west = mesh_clusters::control_plane::client_for(&outcome.pair.clusters[0].kubeconfig)
        .await
        .map_err(|e| anyhow::anyhow!("a client for west: {e}"))?;
    install(&tools, &trust_material(&state_dir)?).await?;
    link(&tools).await?;
    deploy(&tools).await?;
    let viz = install_viz(&tools).await?;

    println!("\n{}", console::style("The client in west sends 50 GET/s to podinfo; TrafficSplit podinfo sends them to podinfo (west, primary) and podinfo-east.").bold());
    let step =
        Step::start("waiting for the client's steady 50 GET/s and the controller's first status");
    Story::new(&west).await?.settle().await?;
    step.done();
    let mut summary = Vec::new();
    let bad = Story::new(&west).await?;
    println!(
        "\n{}",
        console::style(
            "1. A bad deploy: west's podinfo pods stay Ready but answer 500 to every request"
        )
        .bold()
    );
    show(&format!(
        "kubectl --context west -n {NS} set env deploy/podinfo MESH_DEMO_ERROR_RATE=1"
    ));
    drive::set_error_rate(&west, NS, "1").await?;
    summary.push(
        bad.watch("failover", |s, w| s.state == "FailedOver" && w[1] >= 99)
            .await?,
    );
    println!("\n{}", console::style("   Fixed: the primary must stay healthy for the hold time (30 s), then gets its traffic back in steps").bold());
    show(&format!(
        "kubectl --context west -n {NS} set env deploy/podinfo MESH_DEMO_ERROR_RATE=0"
    ));
    let fixed = Story::new(&west).await?;
    drive::set_error_rate(&west, NS, "0").await?;
    summary.push(
        fixed
            .watch("failback", |s, w| s.state == "Primary" && w[0] == 100)
            .await?,
    );

    println!(
        "\n{}",
        console::style("2. A full outage: no podinfo pod left in west").bold()
    );
    show(&format!(
        "kubectl --context west -n {NS} scale deploy/podinfo --replicas=0"
    ));
    let outage = Story::new(&west).await?;
    drive::scale(&west, NS, 0).await?;
    summary.push(
        outage
            .watch("failover", |s, w| s.state == "FailedOver" && w[1] >= 99)
            .await?,
    );
    show(&format!(
        "kubectl --context west -n {NS} scale deploy/podinfo --replicas=2"
    ));
    let back = Story::new(&west).await?;
    drive::scale(&west, NS, 2).await?;
    summary.push(
        back.watch("failback", |s, w| s.state == "Primary" && w[0] == 100)
            .await?,
    );

    println!("\n{}\n", console::style("Summary").bold());
    output::print_table(
        &["WHAT", "TOOK", "CLIENT REQUESTS", "FAILED"],
        &summary
            .iter()
            .zip([
                "bad deploy → east",
                "fixed → west",
                "outage → east",
                "restored → west",
            ])
            .map(|(r, what)| {
                vec![
                    what.to_owned(),
                    format!("{:.1}s", r.took.as_secs_f64()),
                    r.requests.to_string(),
                    r.failed.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    if args.down {
        let step = Step::start("removing the clusters");
        local::down(&state_dir).await?;
        step.done();
    } else {
        println!(
            "\nThe clusters are up:\n  export KUBECONFIG={} PATH={}:$PATH\n  mesh --context west failover status\n  mesh --context west multicluster gateways",
            outcome.pair.kubeconfig.display(),
            outcome.bin_dir.display()
        );
        match &viz {
            Ok(()) => println!(
                "  mesh --context west viz dashboard    # http://localhost:50750: the Clusters page charts the failovers above"
            ),
            Err(why) => println!("  (viz is not installed: {why})"),
        }
        println!("`mesh down` removes them.");
    }
    Ok(ExitCode::SUCCESS)
}

/// mesh on both clusters (one anchor), then the multicluster extension.
async fn install(tools: &Tools, trust: &Path) -> anyhow::Result<()> {
    for context in ["west", "east"] {
        let step = Step::start(format!("installing mesh on {context}"));
        tools
            .mesh_apply(context, &["install", "--crds"], context)
            .await?;
        let file = |name: &str| trust.join(name).display().to_string();
        let (anchor, cert, key) = (
            file("ca.crt"),
            file(&format!("{context}.crt")),
            file(&format!("{context}.key")),
        );
        tools
            .mesh_apply(
                context,
                &[
                    "install",
                    "--identity-trust-anchors-file",
                    &anchor,
                    "--identity-issuer-certificate-file",
                    &cert,
                    "--identity-issuer-key-file",
                    &key,
                ],
                context,
            )
            .await?;
        show(&format!("mesh --context {context} check"));
        tools.mesh(context, &["check", "--wait", "5m"]).await?;
        tools
            .mesh_apply(context, &["multicluster", "install"], context)
            .await?;
        step.done();
    }
    Ok(())
}

/// viz in west (Prometheus scraping the proxies and the failover
/// controller, the dashboard), when the Prometheus the local clusters run
/// is built; otherwise why not, for the summary.
async fn install_viz(tools: &Tools) -> anyhow::Result<Result<(), String>> {
    if let Err(e) = mesh_clusters::prometheus::locate() {
        return Ok(Err(format!("{e:#}")));
    }
    let step = Step::start("installing viz in west");
    tools
        .mesh_apply(
            "west",
            &["viz", "install", "--scrape-interval", "5s"],
            "west",
        )
        .await?;
    tools
        .rollout("west", mesh_viz::NAMESPACE, "prometheus")
        .await?;
    step.done();
    Ok(Ok(()))
}

/// West linked to east, as the docs do it: the address west reaches east's
/// API server at is the one east publishes in `kube-public/cluster-info`.
async fn link(tools: &Tools) -> anyhow::Result<()> {
    let step = Step::start("linking west to east");
    tools
        .rollout("east", "linkerd-multicluster", "linkerd-gateway")
        .await?;
    let args = ["multicluster", "link", "--cluster-name", "east"];
    let deadline = Instant::now() + Duration::from_secs(60);
    // The read-only account's token appears a moment after the install.
    let rendered = loop {
        match tools.mesh("east", &args).await {
            Ok(rendered) => break rendered,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    show(&format!(
        "mesh --context east {} | kubectl --context west apply -f -",
        args.join(" ")
    ));
    tools
        .kubectl("west", &["apply", "-f", "-"], Some(&rendered))
        .await?;
    tools
        .rollout(
            "west",
            "linkerd-multicluster",
            "linkerd-service-mirror-east",
        )
        .await?;
    show("mesh --context west multicluster gateways");
    step.done();
    Ok(())
}

/// podinfo in both clusters, east's exported, the failover controller, the
/// docs' TrafficSplit and the client.
async fn deploy(tools: &Tools) -> anyhow::Result<()> {
    let step = Step::start("deploying podinfo in west and east, exporting east's");
    for context in ["west", "east"] {
        let namespace = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n  annotations:\n    linkerd.io/inject: enabled\n"
        );
        tools
            .kubectl(context, &["apply", "-f", "-"], Some(&namespace))
            .await?;
        tools.apply(context, "podinfo.yaml", PODINFO).await?;
    }
    for context in ["west", "east"] {
        tools.rollout(context, NS, "podinfo").await?;
    }
    show(&format!(
        "kubectl --context east -n {NS} label svc podinfo mirror.linkerd.io/exported=true"
    ));
    tools
        .kubectl(
            "east",
            &[
                "-n",
                NS,
                "label",
                "--overwrite",
                "svc",
                "podinfo",
                "mirror.linkerd.io/exported=true",
            ],
            None,
        )
        .await?;
    step.done();
    let step = Step::start("installing the failover controller in west");
    tools
        .mesh_apply("west", &["failover", "install"], "west")
        .await?;
    tools
        .rollout("west", "linkerd-failover", "linkerd-failover")
        .await?;
    tools
        .apply(
            "west",
            "podinfo-retries.yaml",
            &RETRIES.replace("NAMESPACE", NS),
        )
        .await?;
    tools
        .apply(
            "west",
            "trafficsplit.yaml",
            mesh_failover::split::DOCS_EXAMPLE,
        )
        .await?;
    let client = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  containers:\n  - name: main\n    \
         image: ghcr.io/stefanprodan/podinfo:6.9.2\n    command: [load, --rps, \"50\", http://podinfo.{NS}.svc.cluster.local:9898/]\n"
    );
    tools.apply("west", "client.yaml", &client).await?;
    step.done();
    Ok(())
}

/// One part of the story: what the client and the controller did from
/// its start until a condition held.
struct Story {
    client: kube::Client,
    started: Instant,
    seconds_before: usize,
}

/// What a part of the story took and cost.
struct Outcome {
    took: Duration,
    requests: u64,
    failed: u64,
}

impl Story {
    async fn new(client: &kube::Client) -> anyhow::Result<Self> {
        Ok(Self {
            client: client.clone(),
            started: Instant::now(),
            seconds_before: client_seconds(client).await.len(),
        })
    }

    /// Waits until the controller manages the split and the client has
    /// sent three full seconds.
    async fn settle(&self) -> anyhow::Result<()> {
        let deadline = self.started + Duration::from_secs(300);
        loop {
            let (status, _) = self.split().await?;
            let seconds = client_seconds(&self.client).await;
            let steady =
                seconds.len() >= 3 && seconds[seconds.len() - 3..].iter().all(|s| s.ok >= 45);
            if status.state == "Primary" && steady {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the client or the failover controller did not start within 5 minutes \
                 (kubectl --context west -n {NS} logs client; \
                 kubectl --context west -n linkerd-failover logs deploy/linkerd-failover)"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The split's status and weights.
    async fn split(&self) -> anyhow::Result<(SplitStatus, Vec<u32>)> {
        let split = Api::<TrafficSplit>::namespaced(self.client.clone(), NS)
            .get("podinfo")
            .await?;
        Ok((
            SplitStatus::of(&split).unwrap_or_default(),
            split.spec.percentages(),
        ))
    }

    /// Prints the state, weights and the client's last second whenever
    /// the state or weights change (and every 5 s otherwise) until `done`
    /// holds of the split's status and weights.
    async fn watch(
        &self,
        what: &str,
        done: impl Fn(&SplitStatus, &[u32]) -> bool,
    ) -> anyhow::Result<Outcome> {
        let deadline = self.started + Duration::from_secs(300);
        let mut shown: Option<(String, Vec<u32>, Instant)> = None;
        loop {
            let (status, weights) = self.split().await?;
            let seconds = client_seconds(&self.client).await;
            let recent = seconds.get(self.seconds_before..).unwrap_or_default();
            let last = recent.last().cloned().unwrap_or_default();
            let changed = shown.as_ref().is_none_or(|(state, w, at)| {
                *state != status.state || *w != weights || at.elapsed() >= Duration::from_secs(5)
            });
            if changed {
                shown = Some((status.state.clone(), weights.clone(), Instant::now()));
                println!(
                    "  {:>5.1}s  {:<12} podinfo {:>3}  podinfo-east {:>3}   client: {:>3} ok {:>3} failed",
                    self.started.elapsed().as_secs_f64(),
                    status.state,
                    weights.first().copied().unwrap_or(0),
                    weights.get(1).copied().unwrap_or(0),
                    last.ok,
                    last.failed,
                );
            }
            if done(&status, &weights) {
                let failed = recent.iter().map(|s| s.failed).sum();
                let ok: u64 = recent.iter().map(|s| s.ok).sum();
                let took = self.started.elapsed();
                let why = status.last_transition.map(|t| t.reason).unwrap_or_default();
                println!(
                    "  {} {what} in {:.1}s: {why}; the client saw {failed} failed of {} requests",
                    console::style("✔").green(),
                    took.as_secs_f64(),
                    ok + failed
                );
                return Ok(Outcome {
                    took,
                    requests: ok + failed,
                    failed,
                });
            }
            anyhow::ensure!(Instant::now() < deadline, "{what}: not within 5 minutes");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The client's lines so far, one per second.
async fn client_seconds(client: &kube::Client) -> Vec<LoadSecond> {
    drive::load_seconds(client, NS, "client", "main").await
}
