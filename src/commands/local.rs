//! `mesh up`, `mesh down` and `mesh wan`: the two local clusters on this
//! machine and the WAN between them.

use std::path::PathBuf;
use std::process::ExitCode;

use mesh_clusters::local::{self, UpOptions};
use mesh_clusters::topology::Side;
use serde_json::json;

use crate::cli::{OutputFormat, StateArgs, UpArgs, WanCommand};
use crate::output;

pub(crate) fn state_dir(args: &StateArgs) -> anyhow::Result<PathBuf> {
    match &args.state_dir {
        Some(dir) => Ok(dir.clone()),
        None => local::default_state_dir(),
    }
}

/// Where `mesh-node` and the other binaries built with this CLI are.
pub(crate) fn mesh_bin_dir() -> anyhow::Result<PathBuf> {
    mesh_clusters::programs::find(
        &["mesh-node", "mesh-podinfo"],
        "the local clusters need mesh's programs built beside this CLI (`scripts/up.sh` builds them)",
    )
}

pub async fn up(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let options = UpOptions {
        wan_settings: args.wan_settings(),
        flat: args.flat,
        cluster_domain: args.cluster_domain.clone(),
        mesh_bin_dir: mesh_bin_dir()?,
    };
    let outcome = local::up(&state_dir(&args.state)?, &options).await?;
    let pair = &outcome.pair;
    let plan = pair.plan();
    let kubectl = outcome.bin_dir.join("kubectl");
    let export = format!(
        "export KUBECONFIG={} PATH={}:$PATH",
        pair.kubeconfig.display(),
        outcome.bin_dir.display()
    );
    if args.output == OutputFormat::Json {
        let clusters: Vec<_> = [Side::West, Side::East]
            .iter()
            .zip(&pair.clusters)
            .map(|(side, cluster)| {
                let net = plan.cluster(*side);
                json!({
                    "name": cluster.name,
                    "context": cluster.name,
                    "server": cluster.server,
                    "podCIDR": net.pod_cidr.to_string(),
                    "serviceCIDR": net.service_cidr.to_string(),
                    "loadBalancerPool": net.lb_pool.to_string(),
                    "wanAddress": net.wan_ip.to_string(),
                })
            })
            .collect();
        output::print_json(&json!({
            "started": outcome.started,
            "kubeconfig": pair.kubeconfig,
            "kubectl": kubectl,
            "wan": outcome.wan,
            "flat": plan.flat,
            "clusters": clusters,
            "export": export,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let status = if outcome.started {
        "are up"
    } else {
        "are already up"
    };
    println!(
        "\n{} clusters west and east {status}\n",
        console::style("✔").green()
    );
    let rows: Vec<Vec<String>> = [Side::West, Side::East]
        .iter()
        .zip(&pair.clusters)
        .map(|(side, cluster)| {
            let net = plan.cluster(*side);
            vec![
                cluster.name.clone(),
                cluster.server.clone(),
                net.pod_cidr.to_string(),
                net.service_cidr.to_string(),
                net.lb_pool.to_string(),
            ]
        })
        .collect();
    output::print_table(
        &[
            "CONTEXT",
            "API SERVER",
            "PODS",
            "SERVICES",
            "LOAD BALANCERS",
        ],
        &rows,
    );
    println!();
    output::print_rows(&[
        ("kubeconfig", pair.kubeconfig.display().to_string()),
        ("kubectl", kubectl.display().to_string()),
        ("WAN", outcome.wan.clone()),
        (
            "network",
            if plan.flat {
                "flat: pod addresses are routed between the clusters".into()
            } else {
                "only LoadBalancer addresses cross the WAN".into()
            },
        ),
        ("logs", format!("{}/{{west,east}}/logs", pair.dir.display())),
    ]);
    println!("\nTo use them:\n");
    println!("  {export}");
    println!("  kubectl --context west get nodes");
    for cluster in &pair.clusters {
        if viz_installed(&pair.kubeconfig, &cluster.name).await {
            println!(
                "  mesh --context {0} viz dashboard     # viz is installed in {0}",
                cluster.name
            );
        }
    }
    println!(
        "\n`mesh wan cut` / `mesh wan restore` break and heal the WAN; `mesh down` stops everything."
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether viz's namespace exists in `context` (asked briefly: a cluster
/// that does not answer at once has no next step to offer).
async fn viz_installed(kubeconfig: &std::path::Path, context: &str) -> bool {
    let ask = async {
        let client = mesh_api::kube_client::client(Some(kubeconfig), Some(context))
            .await
            .ok()?;
        kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
            .get_opt(mesh_viz::NAMESPACE)
            .await
            .ok()?
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), ask).await,
        Ok(Some(_))
    )
}

pub async fn down(args: &StateArgs) -> anyhow::Result<ExitCode> {
    if local::down(&state_dir(args)?).await? {
        println!(
            "{} clusters west and east are stopped; their processes, network namespaces, \
             links, rules and files are gone",
            console::style("✔").green()
        );
    } else {
        println!("no local clusters are running; nothing to do");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn wan(command: &WanCommand) -> anyhow::Result<ExitCode> {
    let (state, line) = match command {
        WanCommand::Show(state) => (state, "show".to_owned()),
        WanCommand::Cut(state) => (state, "cut".to_owned()),
        WanCommand::Restore(state) => (state, "restore".to_owned()),
        WanCommand::Clear(state) => (state, "clear".to_owned()),
        WanCommand::Set { state, settings } => (state, format!("set {}", settings.join(" "))),
    };
    let now = local::wan_command(&state_dir(state)?, &line).await?;
    println!("WAN  {now}");
    Ok(ExitCode::SUCCESS)
}
