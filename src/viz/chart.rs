//! `charts/mesh-viz`, generated from the renderer of `mesh viz install` as
//! the other charts are from theirs (see `crate::install::chart`):
//! Prometheus's ServiceAccount, permissions, configuration, Service and
//! Deployment. Values use Linkerd viz's names: `linkerdNamespace`,
//! `prometheus.image.{registry,name,tag}`,
//! `prometheus.globalConfig.scrape_interval` and
//! `prometheus.args."storage.tsdb.retention.time"`, and `prometheusUrl`
//! (an in-cluster Prometheus instead of the bundled one, checked as the
//! CLI checks it). Helm makes the
//! namespace (`-n linkerd-viz --create-namespace`).

use super::install::{InstallArgs, PROMETHEUS_IMAGE, objects};
use crate::install::chart::ChartFile;
use crate::install::chart::template::{
    CONTROLLER_IMAGE_PREAMBLE, GENERATED, Substitutions, chart_yaml, controller_image_values,
    escape_braces, substitute, wrap_block, wrap_document,
};
use crate::install::manifest;

const MARKERS: [(&str, &str); 11] = [
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
    ("__MESH_VIZ_PROMETHEUS_URL__", ".Values.prometheusUrl"),
    ("__MESH_VIZ_TRUST_DOMAIN__", ".Values.identityTrustDomain"),
    ("__MESH_VIZ_CLUSTER_DOMAIN__", ".Values.clusterDomain"),
    ("__MESH_VIZ_TAP_IMAGE__", "$controllerImage"),
    ("__MESH_VIZ_TAP_CRT__", "$tapCrt"),
    ("__MESH_VIZ_TAP_KEY__", "$tapKey"),
    ("__MESH_VIZ_TAP_CA__", "$tapCaPem"),
];

/// The tap component's serving certificate, made at each render (as the
/// control plane's chart makes the injector's).
const TAP_TLS: &str = r#"{{- $tapService := "tap.linkerd-viz.svc" }}
{{- $tapCa := genCA $tapService 3650 }}
{{- $tapCert := genSignedCert $tapService nil (list $tapService (printf "%s.%s" $tapService .Values.clusterDomain)) 3650 $tapCa }}
{{- $tapCrt := $tapCert.Cert }}
{{- $tapKey := $tapCert.Key }}
{{- $tapCaPem := $tapCa.Cert }}
"#;

/// What the chart refuses as `prometheusUrl`, as `mesh viz install
/// --prometheus-url` does: anything but an in-cluster Service URL.
const URL_CHECK: &str = r#"{{- if and .Values.prometheusUrl (not (regexMatch `^http://[a-z0-9]([a-z0-9-]*[a-z0-9])?\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.svc(\.[a-z0-9.-]+)?)?(:[0-9]{1,5})?/?$` .Values.prometheusUrl)) }}
{{- fail (printf "prometheusUrl %q: give an in-cluster Service URL such as http://prometheus.monitoring.svc.cluster.local:9090 (mesh asks Prometheus through the API server's service proxy)" .Values.prometheusUrl) }}
{{- end }}
"#;

/// Every file of `charts/mesh-viz`.
pub fn files() -> anyhow::Result<Vec<ChartFile>> {
    let args = InstallArgs {
        scrape_interval: MARKERS[0].0.into(),
        retention: MARKERS[1].0.into(),
        prometheus_image: MARKERS[2].0.into(),
        linkerd_namespace: MARKERS[3].0.into(),
        prometheus_url: None,
        identity_trust_domain: MARKERS[5].0.into(),
        cluster_domain: MARKERS[6].0.into(),
        image: crate::images::ControllerImageArgs {
            registry: None,
            controller_image: Some(MARKERS[7].0.into()),
        },
        // Rendered as --ha; the values decide (`tap.replicas`,
        // `enablePodAntiAffinity`, `enablePodDisruptionBudget`).
        ha: true,
    };
    let tls = crate::install::injector::WebhookTls {
        cert_pem: MARKERS[8].0.into(),
        key_pem: MARKERS[9].0.into(),
        ca_pem: MARKERS[10].0.into(),
    };
    let external = InstallArgs {
        prometheus_url: Some(MARKERS[4].0.into()),
        ..args.clone()
    };
    let substitutions = Substitutions {
        markers: &MARKERS,
        literals: Vec::new(),
        lines: vec![(
            format!("replicas: {}", super::install::TAP_HA_REPLICAS),
            "replicas: {{ .Values.tap.replicas }}".into(),
        )],
    };
    let mut template =
        format!("{{{{- /* {GENERATED} */}}}}\n{URL_CHECK}{CONTROLLER_IMAGE_PREAMBLE}{TAP_TLS}");
    let yaml = |object: &serde_json::Value| -> anyhow::Result<String> {
        let text = escape_braces(&manifest::to_yaml(std::slice::from_ref(object))?);
        let text = match object["kind"].as_str() {
            Some("PodDisruptionBudget") => {
                wrap_document(&text, ".Values.enablePodDisruptionBudget")
            }
            Some("Deployment") if object["spec"]["template"]["spec"]["affinity"].is_object() => {
                wrap_block(&text, "      affinity:", ".Values.enablePodAntiAffinity")?
            }
            _ => text,
        };
        Ok(substitute(&text, &substitutions))
    };
    // The configuration, from the render with an external Prometheus; the
    // bundled Prometheus only when none is given.
    let external = objects(&external, &tls);
    let key = |o: &serde_json::Value| (o["kind"].clone(), o["metadata"]["name"].clone());
    let always: Vec<_> = external.iter().map(key).collect();
    for object in &external {
        if object["kind"] != "Namespace" {
            template.push_str(&yaml(object)?);
        }
    }
    for object in objects(&args, &tls) {
        if !always.contains(&key(&object)) {
            template.push_str(&wrap_document(&yaml(&object)?, "not .Values.prometheusUrl"));
        }
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
                "# {GENERATED}\n{}# The control plane's namespace: its proxies are scraped.\n\
                 linkerdNamespace: {}\nprometheus:\n  image:\n    registry: {registry}\n    \
                 name: {name}\n    tag: {tag}\n  globalConfig:\n    # How often every proxy is scraped.\n    \
                 scrape_interval: 10s\n  args:\n    # How long samples are kept.\n    \
                 storage.tsdb.retention.time: 6h\n# Use this in-cluster Prometheus (http://NAME.NAMESPACE.svc.cluster.local:PORT)\n\
                 # instead of installing one; it must scrape the proxies with Linkerd's\n\
                 # configuration.\nprometheusUrl: \"\"\n\
                 # The trust domain of workload identities (tap's is in it).\n\
                 identityTrustDomain: {}\n# The cluster's DNS domain.\nclusterDomain: cluster.local\n\
                 # tap's replicas (3 in values-ha.yaml).\ntap:\n  replicas: 1\n\
                 # Spread tap's replicas over nodes and zones.\nenablePodAntiAffinity: false\n\
                 # A PodDisruptionBudget letting one tap replica down at a time.\nenablePodDisruptionBudget: false\n",
                controller_image_values(),
                mesh_api::labels::CONTROL_PLANE_NAMESPACE,
                mesh_api::identity::DEFAULT_TRUST_DOMAIN,
            ),
        },
        ChartFile {
            path: "mesh-viz/values-ha.yaml".into(),
            contents: format!(
                "# {GENERATED}\n# What `mesh viz install --ha` sets (Linkerd viz's values-ha.yaml).\n\
                 tap:\n  replicas: {}\nenablePodAntiAffinity: true\nenablePodDisruptionBudget: true\n",
                super::install::TAP_HA_REPLICAS
            ),
        },
        ChartFile {
            path: "mesh-viz/templates/prometheus.yaml".into(),
            contents: template,
        },
    ])
}
