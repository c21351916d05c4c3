//! `mesh k8s build` and `mesh k8s path`: the pinned Kubernetes binaries.

use std::path::Path;
use std::process::ExitCode;

use mesh_clusters::{Binaries, binaries};

use crate::cli::K8sCommand;

pub async fn run(command: K8sCommand) -> anyhow::Result<ExitCode> {
    match command {
        K8sCommand::Build(args) => {
            let dir = match args.bin_dir {
                Some(dir) => dir,
                None => Binaries::default_dir()?,
            };
            binaries::build(Path::new(binaries::GO_MODULE_DIR), &dir).await?;
        }
        K8sCommand::Path => println!("{}", Binaries::default_dir()?.display()),
    }
    Ok(ExitCode::SUCCESS)
}
