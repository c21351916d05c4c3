//! `charts/mesh-failover`, generated from the renderer of `mesh failover
//! install` as the control plane's chart is from `mesh install` (see
//! `crate::install::chart`): the controller's ServiceAccount, permissions
//! and Deployment. Values: the control plane's image values
//! (`linkerdVersion`, `imageRegistry`, `controllerImage`), `controlledBy`
//! (the `failover.linkerd.io/controlled-by` value it manages) and
//! `prometheusUrl`. Helm makes the namespace (`-n linkerd-failover
//! --create-namespace`).

use mesh_api::labels::FAILOVER_CONTROLLER_NAME;

use super::install::{InstallArgs, objects};
use crate::images::ControllerImageArgs;
use crate::install::chart::ChartFile;
use crate::install::chart::template::{
    CONTROLLER_IMAGE_PREAMBLE, GENERATED, Substitutions, chart_yaml, controller_image_values,
    escape_braces, substitute, wrap_line,
};
use crate::install::manifest;

const MARKERS: [(&str, &str); 3] = [
    ("__MESH_FO_CONTROLLED_BY__", ".Values.controlledBy"),
    ("__MESH_FO_PROMETHEUS_URL__", ".Values.prometheusUrl"),
    ("__MESH_FO_IMAGE__", "$controllerImage"),
];

/// Every file of `charts/mesh-failover`.
pub fn files() -> anyhow::Result<Vec<ChartFile>> {
    let args = InstallArgs {
        prometheus_url: Some(MARKERS[1].0.into()),
        controlled_by: MARKERS[0].0.into(),
        image: ControllerImageArgs {
            registry: None,
            controller_image: Some(MARKERS[2].0.into()),
        },
    };
    let substitutions = Substitutions {
        markers: &MARKERS,
        literals: Vec::new(),
        lines: Vec::new(),
    };
    let mut template = format!("{{{{- /* {GENERATED} */}}}}\n{CONTROLLER_IMAGE_PREAMBLE}");
    for object in objects(&args) {
        if object["kind"] == "Namespace" {
            continue;
        }
        let text = escape_braces(&manifest::to_yaml(std::slice::from_ref(&object))?);
        let text = wrap_line(&text, MARKERS[1].0, ".Values.prometheusUrl");
        template.push_str(&substitute(&text, &substitutions));
    }
    if let Some((left, _)) = MARKERS.iter().find(|(m, _)| template.contains(m)) {
        anyhow::bail!("the failover chart still holds {left}");
    }
    Ok(vec![
        ChartFile {
            path: "mesh-failover/Chart.yaml".into(),
            contents: chart_yaml(
                "mesh-failover",
                "mesh's failover controller (moves a TrafficSplit's or HTTPRoute's traffic by success rate)",
            ),
        },
        ChartFile {
            path: "mesh-failover/values.yaml".into(),
            contents: format!(
                "# {GENERATED}\n{}# The failover.linkerd.io/controlled-by value of the TrafficSplits and\n\
                 # HTTPRoutes this controller manages.\ncontrolledBy: {FAILOVER_CONTROLLER_NAME}\n\
                 # Read success rates from this Prometheus server (http://host:port) instead\n\
                 # of scraping the client proxies.\nprometheusUrl: \"\"\n",
                controller_image_values()
            ),
        },
        ChartFile {
            path: "mesh-failover/templates/failover.yaml".into(),
            contents: template,
        },
    ])
}
