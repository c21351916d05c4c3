//! `mesh up` and `mesh down`: the local cluster on this machine.

use std::path::PathBuf;
use std::process::ExitCode;

use mesh_clusters::local;

use crate::cli::StateArgs;
use crate::output;

fn state_dir(args: &StateArgs) -> anyhow::Result<PathBuf> {
    match &args.state_dir {
        Some(dir) => Ok(dir.clone()),
        None => local::default_state_dir(),
    }
}

pub async fn up(args: &StateArgs) -> anyhow::Result<ExitCode> {
    let outcome = local::up(&state_dir(args)?).await?;
    let cluster = &outcome.cluster;
    let status = if outcome.started {
        "is up"
    } else {
        "is already up"
    };
    println!(
        "\n{} cluster {:?} {status}\n",
        console::style("✔").green(),
        cluster.name
    );
    let kubectl = outcome.bin_dir.join("kubectl");
    output::print_rows(&[
        ("API server", cluster.server.clone()),
        ("kubeconfig", cluster.kubeconfig.display().to_string()),
        ("kubectl", kubectl.display().to_string()),
        ("logs", cluster.dir.join("logs").display().to_string()),
    ]);
    println!("\nTo use it:\n");
    println!("  export KUBECONFIG={}", cluster.kubeconfig.display());
    println!("  {} get namespaces\n", kubectl.display());
    println!("`mesh down` stops it.");
    Ok(ExitCode::SUCCESS)
}

pub async fn down(args: &StateArgs) -> anyhow::Result<ExitCode> {
    if local::down(&state_dir(args)?).await? {
        println!(
            "{} the local cluster is stopped and its files removed",
            console::style("✔").green()
        );
    } else {
        println!("no local cluster is running; nothing to do");
    }
    Ok(ExitCode::SUCCESS)
}
