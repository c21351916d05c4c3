//! `mesh version`: this CLI's version and the Kubernetes release it runs.

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{OutputFormat, VersionArgs};
use crate::output;

#[derive(Debug, Serialize)]
struct Versions {
    client: &'static str,
    kubernetes: &'static str,
}

pub fn run(args: &VersionArgs) -> anyhow::Result<ExitCode> {
    let versions = Versions {
        client: env!("CARGO_PKG_VERSION"),
        kubernetes: mesh_clusters::KUBERNETES_VERSION,
    };
    match args.output {
        OutputFormat::Json => output::print_json(&versions)?,
        OutputFormat::Table => output::print_rows(&[
            ("Client version:", versions.client.to_owned()),
            ("Local Kubernetes:", versions.kubernetes.to_owned()),
        ]),
    }
    Ok(ExitCode::SUCCESS)
}
