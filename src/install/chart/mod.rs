//! mesh's Helm charts, `charts/mesh-crds` and `charts/mesh-control-plane`,
//! generated from the renderer `mesh install` uses, so that the two can
//! never be two hand-kept copies (`tests/charts.rs` checks that the
//! charts in the repository are what this module generates, and that
//! `helm template` renders what `mesh install` renders for the same
//! values).
//!
//! How: the control plane is rendered once from settings in which every
//! value the chart takes is a marker (`__MESH_CLUSTER_DOMAIN__`, a
//! sentinel number or duration where the type needs one, each boolean on),
//! and each marker is then replaced by the Go template expression that
//! reads the value (`{{ .Values.clusterDomain }}`; `| quote` where it is a
//! whole YAML value). What a boolean adds is wrapped in an `if`: the
//! PodDisruptionBudgets, the anti-affinity blocks, the rolling-update
//! strategy (more than one replica). The chart renders no Namespace: as
//! with Linkerd's chart, Helm makes it (`-n linkerd --create-namespace`),
//! since Helm refuses to install over a namespace it did not make.
//! The values keep Linkerd's names; derived defaults (images named after
//! `imageRegistry`, the proxy version after `linkerdVersion`) are worked
//! out in the template as `mesh install` works them out.

pub(crate) mod template;

use std::time::Duration;

use anyhow::Context;

use self::template::{
    CONTROLLER_IMAGE_PREAMBLE, GENERATED, Substitutions, chart_yaml, controller_image_values,
    escape_braces, resources_block, substitute, wrap_block, wrap_document, wrap_line,
};

use super::injector::WebhookTls;
use super::resources::{Quantities, Resources};
use super::settings::{FailurePolicy, Settings, duration_arg};
use super::{TrustMaterial, config, manifest};

/// Where `mesh charts generate` writes the charts unless told.
pub const DEFAULT_DIR: &str = "charts";
pub use self::template::ChartFile;

/// Sentinels for the values whose type cannot hold a marker.
const REPLICAS_SENTINEL: u32 = 7919;
const ISSUANCE_LIFETIME_SENTINEL: Duration = Duration::from_secs(1_234_567);
const CLOCK_SKEW_SENTINEL: Duration = Duration::from_secs(7_654_321);

/// Each marker and the template expression that stands for it.
const MARKERS: [(&str, &str); 20] = [
    ("__MESH_CLUSTER_DOMAIN__", ".Values.clusterDomain"),
    ("__MESH_TRUST_DOMAIN__", ".Values.identityTrustDomain"),
    ("__MESH_CLUSTER_NETWORKS__", ".Values.clusterNetworks"),
    (
        "__MESH_DEFAULT_POLICY__",
        ".Values.proxy.defaultInboundPolicy",
    ),
    ("__MESH_CONTROLLER_IMAGE__", "$controllerImage"),
    ("__MESH_PROXY_IMAGE__", "$proxyImage"),
    ("__MESH_PROXY_VERSION__", "$proxyVersion"),
    ("__MESH_PROXY_INIT_IMAGE__", "$proxyInitImage"),
    ("__MESH_PROXY_LOG_LEVEL__", ".Values.proxy.logLevel"),
    ("__MESH_ANCHORS__", "$anchors"),
    ("__MESH_ISSUER_CRT__", "$issuerCrt"),
    ("__MESH_ISSUER_KEY__", "$issuerKey"),
    ("__MESH_INJECTOR_CRT__", "$injectorCrt"),
    ("__MESH_INJECTOR_KEY__", "$injectorKey"),
    ("__MESH_INJECTOR_CA__", "$injectorCA"),
    ("__MESH_STORED_VALUES__", "toYaml $stored"),
    (
        "__MESH_PROXY_CPU_REQUEST__",
        ".Values.proxy.resources.cpu.request",
    ),
    (
        "__MESH_PROXY_CPU_LIMIT__",
        ".Values.proxy.resources.cpu.limit",
    ),
    (
        "__MESH_PROXY_MEMORY_REQUEST__",
        ".Values.proxy.resources.memory.request",
    ),
    (
        "__MESH_PROXY_MEMORY_LIMIT__",
        ".Values.proxy.resources.memory.limit",
    ),
];

/// Each component's `resources` marker and the values it reads (its own,
/// else `controllerResources`).
const RESOURCES: [(&str, &str, &str); 4] = [
    (
        "linkerd-identity",
        "__MESH_RESOURCES_IDENTITY__",
        ".Values.identityResources",
    ),
    (
        "linkerd-destination",
        "__MESH_RESOURCES_DESTINATION__",
        ".Values.destinationResources",
    ),
    (
        "linkerd-policy",
        "__MESH_RESOURCES_POLICY__",
        ".Values.policyController.resources",
    ),
    (
        "linkerd-proxy-injector",
        "__MESH_RESOURCES_INJECTOR__",
        ".Values.proxyInjectorResources",
    ),
];

/// The injector's optional flags, by the marker in each line: a line is
/// rendered only when its value is set ([`optional_condition`]).
const OPTIONAL_ARGS: [&str; 5] = [
    "__MESH_PROXY_INIT_IMAGE__",
    "__MESH_PROXY_CPU_REQUEST__",
    "__MESH_PROXY_CPU_LIMIT__",
    "__MESH_PROXY_MEMORY_REQUEST__",
    "__MESH_PROXY_MEMORY_LIMIT__",
];

/// When the line of optional flag `marker` is rendered: when its value is
/// set (the init image: when its name is).
fn optional_condition(marker: &str) -> &'static str {
    if marker == "__MESH_PROXY_INIT_IMAGE__" {
        return ".Values.proxyInit.image.name";
    }
    MARKERS
        .iter()
        .find(|(m, _)| *m == marker)
        .map_or("false", |(_, expression)| expression)
}

/// Turns Linkerd's resources shape (`{cpu: {request, limit}, …}`) into a
/// container's `resources` (`{requests: {cpu}, limits: {…}}`), empty
/// when nothing is set.
const HELPERS: &str = r#"{{- define "mesh.resources" -}}
{{- $requests := dict -}}
{{- $limits := dict -}}
{{- range $name, $quantities := . -}}
{{- with $quantities -}}
{{- if .request }}{{ $_ := set $requests $name (toString .request) }}{{ end -}}
{{- if .limit }}{{ $_ := set $limits $name (toString .limit) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- $out := dict -}}
{{- if $limits }}{{ $_ := set $out "limits" $limits }}{{ end -}}
{{- if $requests }}{{ $_ := set $out "requests" $requests }}{{ end -}}
{{- toYaml $out -}}
{{- end }}
"#;

/// The variables the control plane's template works out first.
const PREAMBLE: &str = r#"{{- $proxyImage := .Values.proxy.image.name | default (printf "%s/proxy" $registry) }}
{{- $proxyVersion := .Values.proxy.image.version | default .Values.linkerdVersion }}
{{- $proxyInitImage := printf "%s:%s" .Values.proxyInit.image.name (.Values.proxyInit.image.version | default $proxyVersion) }}
{{- $externalIssuer := eq .Values.identity.issuer.scheme "kubernetes.io/tls" }}
{{- $anchors := .Values.identityTrustAnchorsPEM }}
{{- if not .Values.identity.externalCA }}
{{- $anchors = required "identityTrustAnchorsPEM: the trust anchors (PEM) are required (--set-file identityTrustAnchorsPEM=ca.crt)" .Values.identityTrustAnchorsPEM }}
{{- end }}
{{- $issuerCrt := .Values.identity.issuer.tls.crtPEM }}
{{- $issuerKey := .Values.identity.issuer.tls.keyPEM }}
{{- if not $externalIssuer }}
{{- $issuerCrt = required "identity.issuer.tls.crtPEM: the issuer certificate (PEM) is required (or identity.issuer.scheme=kubernetes.io/tls)" .Values.identity.issuer.tls.crtPEM }}
{{- $issuerKey = required "identity.issuer.tls.keyPEM: the issuer key (PEM) is required" .Values.identity.issuer.tls.keyPEM }}
{{- end }}
{{- $injectorCrt := .Values.proxyInjector.crtPEM }}
{{- $injectorKey := .Values.proxyInjector.keyPEM }}
{{- $injectorCA := .Values.proxyInjector.caBundle }}
{{- if not $injectorCrt }}
{{- $service := "linkerd-proxy-injector.linkerd.svc" }}
{{- $ca := genCA $service 3650 }}
{{- $cert := genSignedCert $service nil (list $service (printf "%s.%s" $service .Values.clusterDomain)) 3650 $ca }}
{{- $injectorCrt = $cert.Cert }}
{{- $injectorKey = $cert.Key }}
{{- $injectorCA = $ca.Cert }}
{{- end }}
{{- $stored := deepCopy .Values }}
{{- $_ := unset $stored "proxyInjector" }}
{{- $_ := unset $stored.identity.issuer "tls" }}
"#;

/// Writes every file of both charts under `dir`.
pub fn write(dir: &std::path::Path) -> anyhow::Result<Vec<ChartFile>> {
    let files = generate()?;
    for file in &files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files)
}

/// Every file of both charts.
pub fn generate() -> anyhow::Result<Vec<ChartFile>> {
    let mut files = crds_chart()?;
    files.extend(control_plane_chart()?);
    files.extend(crate::multicluster::chart::files()?);
    files.extend(crate::failover::chart::files()?);
    files.extend(crate::viz::chart::files()?);
    Ok(files)
}

fn crds_chart() -> anyhow::Result<Vec<ChartFile>> {
    let mut template = format!("{{{{- /* {GENERATED} */}}}}\n");
    for crd in super::crd_objects(true)? {
        let text = escape_braces(&manifest::to_yaml(std::slice::from_ref(&crd))?);
        if crd["spec"]["group"] == super::gateway_api::GROUP {
            template.push_str(&wrap_document(&text, ".Values.installGatewayAPI"));
        } else {
            template.push_str(&text);
        }
    }
    Ok(vec![
        ChartFile {
            path: "mesh-crds/Chart.yaml".into(),
            contents: chart_yaml(
                "mesh-crds",
                "mesh's CustomResourceDefinitions (Linkerd's, and the Gateway API's HTTPRoute and GRPCRoute)",
            ),
        },
        ChartFile {
            path: "mesh-crds/values.yaml".into(),
            contents: format!(
                "# {GENERATED}\n\n# Install the Gateway API's HTTPRoute and GRPCRoute CRDs (off when the\n# cluster has its own).\ninstallGatewayAPI: true\n"
            ),
        },
        ChartFile {
            path: "mesh-crds/templates/crds.yaml".into(),
            contents: template,
        },
    ])
}

fn control_plane_chart() -> anyhow::Result<Vec<ChartFile>> {
    let settings = marked_settings();
    let material = TrustMaterial {
        anchors_pem: "__MESH_ANCHORS__".into(),
        issuer_cert_pem: "__MESH_ISSUER_CRT__".into(),
        issuer_key_pem: "__MESH_ISSUER_KEY__".into(),
    };
    let tls = WebhookTls {
        ca_pem: "__MESH_INJECTOR_CA__".into(),
        cert_pem: "__MESH_INJECTOR_CRT__".into(),
        key_pem: "__MESH_INJECTOR_KEY__".into(),
    };
    let substitutions = substitutions();
    let mut template =
        format!("{{{{- /* {GENERATED} */}}}}\n{CONTROLLER_IMAGE_PREAMBLE}{PREAMBLE}");
    for mut object in super::control_plane_with(&settings, &material, &tls)? {
        if object["kind"] == "Namespace" {
            continue;
        }
        if object["kind"] == "ConfigMap" && object["metadata"]["name"] == config::NAME {
            object["data"][config::VALUES_KEY] = "__MESH_STORED_VALUES__".into();
        }
        if object["kind"] == "Deployment"
            && let Some((_, marker, _)) = RESOURCES
                .iter()
                .find(|(name, _, _)| object["metadata"]["name"] == *name)
        {
            object["spec"]["template"]["spec"]["containers"][0]["resources"] = (*marker).into();
        }
        let mut text = escape_braces(&manifest::to_yaml(std::slice::from_ref(&object))?);
        for marker in OPTIONAL_ARGS {
            text = wrap_line(&text, marker, optional_condition(marker));
        }
        for (_, marker, value) in RESOURCES {
            text = resources_block(&text, marker, value);
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let text = match object["kind"].as_str() {
            Some("Secret") if name == mesh_api::labels::ISSUER_SECRET => {
                wrap_document(&text, "not $externalIssuer")
            }
            Some("ConfigMap") if name == mesh_api::labels::TRUST_ROOTS_CONFIGMAP => {
                wrap_document(&text, "not .Values.identity.externalCA")
            }
            Some("PodDisruptionBudget") => {
                wrap_document(&text, ".Values.enablePodDisruptionBudget")
            }
            Some("Deployment") => {
                let text = wrap_block(&text, "      affinity:", ".Values.enablePodAntiAffinity")?;
                wrap_block(
                    &text,
                    "  strategy:",
                    "gt (int .Values.controllerReplicas) 1",
                )?
            }
            _ => text,
        };
        template.push_str(&substitute(&text, &substitutions));
    }
    if let Some(left) = MARKERS
        .iter()
        .map(|(marker, _)| *marker)
        .chain(RESOURCES.iter().map(|(_, marker, _)| *marker))
        .find(|marker| template.contains(marker))
    {
        anyhow::bail!("the chart template still holds {left}");
    }
    Ok(vec![
        ChartFile {
            path: "mesh-control-plane/Chart.yaml".into(),
            contents: chart_yaml(
                "mesh-control-plane",
                "mesh's control plane (identity, destination, policy, proxy injector), with Linkerd's value names",
            ),
        },
        ChartFile {
            path: "mesh-control-plane/values.yaml".into(),
            contents: format!("# {GENERATED}\n{}", control_plane_values()),
        },
        ChartFile {
            path: "mesh-control-plane/values-ha.yaml".into(),
            contents: format!("# {GENERATED}\n{}", ha_values()),
        },
        ChartFile {
            path: "mesh-control-plane/templates/_helpers.tpl".into(),
            contents: format!("{{{{- /* {GENERATED} */}}}}\n{HELPERS}"),
        },
        ChartFile {
            path: "mesh-control-plane/templates/control-plane.yaml".into(),
            contents: template,
        },
    ])
}

/// Settings with a marker or sentinel in every value the chart takes.
fn marked_settings() -> Settings {
    Settings {
        cluster_domain: "__MESH_CLUSTER_DOMAIN__".into(),
        identity_trust_domain: "__MESH_TRUST_DOMAIN__".into(),
        issuance_lifetime: ISSUANCE_LIFETIME_SENTINEL,
        clock_skew_allowance: CLOCK_SKEW_SENTINEL,
        trust_anchors: None,
        issuer_cert: None,
        issuer_key: None,
        injector_tls: None,
        registry: None,
        controller_image: "__MESH_CONTROLLER_IMAGE__".into(),
        proxy_image: Some("__MESH_PROXY_IMAGE__".into()),
        proxy_version: Some("__MESH_PROXY_VERSION__".into()),
        proxy_init_image: Some("__MESH_PROXY_INIT_IMAGE__".into()),
        proxy_log_level: Some("__MESH_PROXY_LOG_LEVEL__".into()),
        replicas: REPLICAS_SENTINEL,
        anti_affinity: true,
        disruption_budget: true,
        webhook_failure_policy: FailurePolicy::Fail,
        default_inbound_policy: "__MESH_DEFAULT_POLICY__".into(),
        cluster_networks: "__MESH_CLUSTER_NETWORKS__".into(),
        install_namespace: true,
        external_issuer: false,
        external_ca: false,
        resources: super::settings::ResourceSettings {
            proxy: Resources {
                cpu: Some(Quantities {
                    request: Some("__MESH_PROXY_CPU_REQUEST__".into()),
                    limit: Some("__MESH_PROXY_CPU_LIMIT__".into()),
                }),
                memory: Some(Quantities {
                    request: Some("__MESH_PROXY_MEMORY_REQUEST__".into()),
                    limit: Some("__MESH_PROXY_MEMORY_LIMIT__".into()),
                }),
                ephemeral_storage: None,
            },
            ..Default::default()
        },
    }
}

/// What `mesh install --ha` sets, as a values file over the chart's own
/// (Linkerd ships the same as `values-ha.yaml`).
fn ha_values() -> String {
    let yaml = |resources: Resources| {
        serde_saphyr::to_string(&resources)
            .unwrap_or_default()
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect::<String>()
    };
    format!(
        "\ncontrollerReplicas: 3\nenablePodAntiAffinity: true\nenablePodDisruptionBudget: true\n\
         # Every controller's, unless its own is set.\ncontrollerResources:\n{}\
         identityResources:\n{}proxy:\n  resources:\n{}",
        yaml(super::resources::ha_controller()),
        yaml(super::resources::ha_identity()),
        yaml(super::resources::ha_proxy())
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect::<String>(),
    )
}

/// The chart's values: Linkerd's names, mesh install's defaults.
fn control_plane_values() -> String {
    format!(
        r#"
{image_values}controllerReplicas: 1
enablePodAntiAffinity: false
enablePodDisruptionBudget: false
# What the API server does when the injector cannot be reached: Ignore or Fail.
webhookFailurePolicy: Ignore
clusterDomain: cluster.local
clusterNetworks: "{networks}"
identityTrustDomain: {trust_domain}
# The trust anchors (PEM), required: --set-file identityTrustAnchorsPEM=ca.crt
identityTrustAnchorsPEM: ""
identity:
  # The trust-roots ConfigMap is managed by someone else (trust-manager, say).
  externalCA: false
  issuer:
    # linkerd.io/tls: the chart renders the issuer Secret from tls below;
    # kubernetes.io/tls: someone else (cert-manager) writes it.
    scheme: linkerd.io/tls
    issuanceLifetime: {lifetime}
    clockSkewAllowance: {skew}
    # The issuer certificate and key (PEM), required:
    # --set-file identity.issuer.tls.crtPEM=issuer.crt --set-file identity.issuer.tls.keyPEM=issuer.key
    tls:
      crtPEM: ""
      keyPEM: ""
# Resource requests and limits (`cpu`, `memory`, `ephemeral-storage`, each
# with `request` and `limit`): every controller's, unless its own is set.
controllerResources: {{}}
identityResources: {{}}
destinationResources: {{}}
proxyInjectorResources: {{}}
policyController:
  resources: {{}}
proxy:
  image:
    # <imageRegistry>/proxy when empty.
    name: ""
    # linkerdVersion when empty.
    version: ""
  # Every injected proxy's requests and limits (a pod's
  # config.linkerd.io/proxy-cpu-request and the like override them).
  resources:
    cpu:
      request: ""
      limit: ""
    memory:
      request: ""
      limit: ""
  logLevel: {log_level}
  defaultInboundPolicy: all-unauthenticated
proxyInit:
  image:
    # An init container image of its own, run with its own entrypoint;
    # the proxy's image (which holds mesh-init) when empty.
    name: ""
    # the proxy's version when empty.
    version: ""
# The proxy injector's webhook certificate, key and CA (PEM); generated when empty.
proxyInjector:
  crtPEM: ""
  keyPEM: ""
  caBundle: ""
"#,
        image_values = controller_image_values(),
        networks = mesh_api::ports::DEFAULT_CLUSTER_NETWORKS,
        trust_domain = mesh_api::identity::DEFAULT_TRUST_DOMAIN,
        lifetime = duration_arg(Duration::from_secs(24 * 3600)),
        skew = duration_arg(Duration::from_secs(20)),
        log_level = mesh_injector::values::DEFAULT_PROXY_LOG_LEVEL,
    )
}

/// How the control plane's template reads its values: the markers, the
/// duration sentinels, and the lines whose number or word is the value.
fn substitutions() -> Substitutions<'static> {
    Substitutions {
        markers: &MARKERS,
        literals: vec![
            (
                duration_arg(ISSUANCE_LIFETIME_SENTINEL),
                "{{ .Values.identity.issuer.issuanceLifetime }}".into(),
            ),
            (
                duration_arg(CLOCK_SKEW_SENTINEL),
                "{{ .Values.identity.issuer.clockSkewAllowance }}".into(),
            ),
        ],
        lines: vec![
            (
                format!("replicas: {REPLICAS_SENTINEL}"),
                "replicas: {{ .Values.controllerReplicas }}".into(),
            ),
            (
                "failurePolicy: Fail".into(),
                "failurePolicy: {{ .Values.webhookFailurePolicy }}".into(),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_wrapped_up_to_the_next_line_as_shallow() {
        let text = "spec:\n  strategy:\n    type: RollingUpdate\n  template:\n    x: 1\n";
        let wrapped = wrap_block(text, "  strategy:", "COND").expect("wrapped");
        assert_eq!(
            wrapped,
            "spec:\n  {{- if COND }}\n  strategy:\n    type: RollingUpdate\n  {{- end }}\n  template:\n    x: 1\n"
        );
        assert!(wrap_block(text, "  affinity:", "COND").is_err());
    }

    #[test]
    fn a_whole_value_is_quoted_and_a_part_is_not() {
        let text = "image: __MESH_CONTROLLER_IMAGE__\nargs:\n- --cluster-domain=__MESH_CLUSTER_DOMAIN__\n- __MESH_PROXY_VERSION__\n";
        assert_eq!(
            substitute(text, &substitutions()),
            "image: {{ $controllerImage | quote }}\nargs:\n- --cluster-domain={{ .Values.clusterDomain }}\n- {{ $proxyVersion | quote }}\n"
        );
    }

    #[test]
    fn the_control_plane_template_holds_no_marker_and_escapes_braces() {
        let files = generate().expect("charts");
        let template = files
            .iter()
            .find(|f| f.path.ends_with("control-plane.yaml"))
            .expect("template");
        assert!(!template.contents.contains("__MESH_"));
        assert!(!template.contents.contains("7919"));
        assert_eq!(escape_braces("a {{ b"), "a {{ \"{{\" }} b");
    }
}
