//! `charts/mesh-viz`, generated from the renderer of `mesh viz install` as
//! the other charts are from theirs (see `crate::install::chart`):
//! Prometheus's ServiceAccount, permissions, configuration, Service and
//! Deployment. Values use Linkerd viz's names: `linkerdNamespace`,
//! `prometheus.image.{registry,name,tag}`,
//! `prometheus.globalConfig.scrape_interval` and
//! `prometheus.args."storage.tsdb.retention.time"`. Helm makes the
//! namespace (`-n linkerd-viz --create-namespace`).

use super::install::{InstallArgs, PROMETHEUS_IMAGE, objects};
use crate::install::chart::ChartFile;
use crate::install::chart::template::{
    GENERATED, Substitutions, chart_yaml, escape_braces, substitute,
};
use crate::install::manifest;

const MARKERS: [(&str, &str); 4] = [
    (
        "__MESH_VIZ_INTERVAL__",
        ".Values.prometheus.globalConfig.scrape_interval",
    ),
    (
        "__MESH_VIZ_RETENTION__",
        r#"index .Values.prometheus.args "storage.tsdb.retention.time""#,
    ),
    (
        "__MESH_VIZ_IMAGE__",
        r#"printf "%s/%s:%s" .Values.prometheus.image.registry .Values.prometheus.image.name .Values.prometheus.image.tag"#,
    ),
    ("__MESH_VIZ_LINKERD_NS__", ".Values.linkerdNamespace"),
];

/// Every file of `charts/mesh-viz`.
pub fn files() -> anyhow::Result<Vec<ChartFile>> {
    let args = InstallArgs {
        scrape_interval: MARKERS[0].0.into(),
        retention: MARKERS[1].0.into(),
        prometheus_image: MARKERS[2].0.into(),
        linkerd_namespace: MARKERS[3].0.into(),
    };
    let substitutions = Substitutions {
        markers: &MARKERS,
        literals: Vec::new(),
        lines: Vec::new(),
    };
    let mut template = format!("{{{{- /* {GENERATED} */}}}}\n");
    for object in objects(&args) {
        if object["kind"] == "Namespace" {
            continue;
        }
        let text = escape_braces(&manifest::to_yaml(std::slice::from_ref(&object))?);
        template.push_str(&substitute(&text, &substitutions));
    }
    if let Some((left, _)) = MARKERS.iter().find(|(m, _)| template.contains(m)) {
        anyhow::bail!("the viz chart still holds {left}");
    }
    let (repository, tag) = PROMETHEUS_IMAGE
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{PROMETHEUS_IMAGE} has no tag"))?;
    let (registry, name) = repository
        .rsplit_once('/')
        .ok_or_else(|| anyhow::anyhow!("{PROMETHEUS_IMAGE} has no registry"))?;
    Ok(vec![
        ChartFile {
            path: "mesh-viz/Chart.yaml".into(),
            contents: chart_yaml(
                "mesh-viz",
                "mesh's observability extension (Prometheus scraping every proxy)",
            ),
        },
        ChartFile {
            path: "mesh-viz/values.yaml".into(),
            contents: format!(
                "# {GENERATED}\n# The control plane's namespace: its proxies are scraped.\n\
                 linkerdNamespace: {}\nprometheus:\n  image:\n    registry: {registry}\n    \
                 name: {name}\n    tag: {tag}\n  globalConfig:\n    # How often every proxy is scraped.\n    \
                 scrape_interval: 10s\n  args:\n    # How long samples are kept.\n    \
                 storage.tsdb.retention.time: 6h\n",
                mesh_api::labels::CONTROL_PLANE_NAMESPACE
            ),
        },
        ChartFile {
            path: "mesh-viz/templates/prometheus.yaml".into(),
            contents: template,
        },
    ])
}
