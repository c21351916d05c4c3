//! `mesh inject`: adds the proxy to the workloads of YAML manifests (files
//! or stdin), offline, exactly as the injector webhook would, and prints
//! them for `kubectl apply -f -`; what it did to each object goes to stderr.
//! The trust anchors come from `--identity-trust-anchors-file`, else from
//! the cluster's `linkerd-identity-trust-roots` ConfigMap.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use k8s_openapi::api::core::v1::ConfigMap;
use mesh_api::labels::{CONTROL_PLANE_NAMESPACE, TRUST_ROOTS_CONFIGMAP};
use mesh_injector::Values;
use mesh_injector::workload::{self, Outcome};

use crate::cli::{GlobalArgs, InjectArgs, OutputFormat};

/// Reads the manifests named by `args` (`-` is stdin).
fn read_inputs(args: &InjectArgs) -> anyhow::Result<Vec<(String, String)>> {
    args.files
        .iter()
        .map(|file| {
            let name = file.display().to_string();
            let text = if name == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading stdin")?;
                text
            } else {
                std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?
            };
            Ok((name, text))
        })
        .collect()
}

async fn trust_anchors(global: &GlobalArgs, args: &InjectArgs) -> anyhow::Result<String> {
    if let Some(file) = &args.identity_trust_anchors_file {
        return std::fs::read_to_string(file)
            .with_context(|| format!("--identity-trust-anchors-file {}", file.display()));
    }
    let client = mesh_api::kube_client::client(
        global.kubeconfig.as_deref(),
        global.context.as_deref(),
    )
    .await
    .context(
        "the trust anchors come from the cluster unless --identity-trust-anchors-file is given",
    )?;
    let config_maps: kube::Api<ConfigMap> = kube::Api::namespaced(client, CONTROL_PLANE_NAMESPACE);
    let roots = config_maps
        .get(TRUST_ROOTS_CONFIGMAP)
        .await
        .with_context(|| {
            format!(
                "reading ConfigMap {CONTROL_PLANE_NAMESPACE}/{TRUST_ROOTS_CONFIGMAP} \
                 (is mesh installed? or give --identity-trust-anchors-file)"
            )
        })?;
    roots
        .data
        .and_then(|d| d.get("ca-bundle.crt").cloned())
        .filter(|pem| pem.contains("BEGIN CERTIFICATE"))
        .with_context(|| {
            format!(
                "ConfigMap {CONTROL_PLANE_NAMESPACE}/{TRUST_ROOTS_CONFIGMAP} has no ca-bundle.crt"
            )
        })
}

/// Runs `mesh inject`.
pub async fn run(global: &GlobalArgs, args: &InjectArgs) -> anyhow::Result<ExitCode> {
    let inputs = read_inputs(args)?;
    let anchors = trust_anchors(global, args).await?;
    let values = Values::new(anchors, args.proxy_version.clone());
    let mut objects = Vec::new();
    let mut reports = Vec::new();
    for (name, text) in inputs {
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).with_context(|| format!("{name} is not YAML"))?;
        for mut object in documents.into_iter().filter(|d| !d.is_null()) {
            reports.extend(
                workload::inject_offline(&mut object, &values)
                    .with_context(|| format!("in {name}"))?,
            );
            objects.push(object);
        }
    }
    match args.output {
        OutputFormat::Json => crate::output::print_json(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": objects,
        }))?,
        OutputFormat::Table => print!("{}", crate::install::manifest::to_yaml(&objects)?),
    }
    let width = reports.iter().map(|r| r.object.len()).max().unwrap_or(0);
    for report in &reports {
        let what = match &report.outcome {
            Outcome::Injected => console::style("injected".to_owned()).green(),
            Outcome::Skipped(why) => console::style(format!("skipped: {why}")).yellow(),
            Outcome::NotAWorkload => console::style("skipped: not a workload".to_owned()).dim(),
        };
        eprintln!("{:<width$}  {what}", report.object);
    }
    Ok(ExitCode::SUCCESS)
}
