//! `charts/mesh-multicluster`, generated from the renderer of `mesh
//! multicluster install` as the control plane's chart is from `mesh
//! install` (see `crate::install::chart`): the gateway, its Service and
//! policy and the remote-access ServiceAccount (the Link CRD is in
//! `mesh-crds`, as `mesh install --crds` renders it), with
//! Linkerd's value names where Linkerd's chart has the value
//! (`identityTrustDomain`, `gateway.replicas`, `gateway.serviceType`,
//! `gateway.probe.seconds`, `gateway.pauseImage`, `enablePodAntiAffinity`,
//! `enablePodDisruptionBudget`) and mesh's own for the rest
//! (`gateway.waitBeforeExitSeconds`, `gateway.allowedIdentities`,
//! `gateway.exportSelector`). As with Linkerd's chart, Helm makes the
//! namespace (`-n linkerd-multicluster --create-namespace`).

use mesh_api::labels::{GATEWAY_EXPORTS_ANNOTATION, GATEWAY_RESET_KEY};

use super::install::{InstallArgs, objects};
use crate::install::chart::ChartFile;
use crate::install::chart::template::{
    GENERATED, Substitutions, chart_yaml, escape_braces, replace_value, substitute, wrap_block,
    wrap_document,
};
use crate::install::manifest;

/// Sentinels for the numbers the chart takes.
const REPLICAS: u32 = 7919;
const PROBE_SECONDS: u32 = 7727;
const WAIT_BEFORE_EXIT: u32 = 7741;

/// The string markers and the expressions that read them.
const MARKERS: [(&str, &str); 3] = [
    ("__MESH_MC_TRUST_DOMAIN__", ".Values.identityTrustDomain"),
    ("__MESH_MC_SERVICE_TYPE__", ".Values.gateway.serviceType"),
    ("__MESH_MC_PAUSE_IMAGE__", ".Values.gateway.pauseImage"),
];

/// Markers that must pass the renderer's own checks (an identity, a label).
const IDENTITIES_MARKER: &str = "mesh-marker-allowed-identities";
const EXPORT_MARKER: &str = "mesh-marker-export=mesh-marker-value";

/// The checks `mesh multicluster install` makes of its flags, made of the
/// values, and what the template works out first.
const PREAMBLE: &str = r#"{{- if not (has .Values.gateway.serviceType (list "LoadBalancer" "NodePort")) }}
{{- fail (printf "gateway.serviceType %q: LoadBalancer or NodePort" .Values.gateway.serviceType) }}
{{- end }}
{{- if lt (int .Values.gateway.replicas) 1 }}
{{- fail "gateway.replicas: at least 1" }}
{{- end }}
{{- range .Values.gateway.allowedIdentities }}
{{- if not (regexMatch "^([*]|([*][.])?[a-z0-9-]+([.][a-z0-9-]+)*)$" .) }}
{{- fail (printf "gateway.allowedIdentities: %q is not `*`, `*.<suffix>` or a name such as web.shop.serviceaccount.identity.linkerd.cluster.local" .) }}
{{- end }}
{{- end }}
{{- $labels := dict }}
{{- range $key, $value := .Values.gateway.exportSelector }}
{{- $_ := set $labels $key (toString $value) }}
{{- end }}
{{- if not $labels }}
{{- fail "gateway.exportSelector: at least one label (an empty selector would export every Service)" }}
{{- end }}
{{- $exports := dict "matchLabels" $labels | toJson }}
{{- $resetKey := randBytes 32 }}
{{- with lookup "v1" "Secret" "linkerd-multicluster" "linkerd-gateway-quic" }}
{{- with .data }}{{ with index . "reset-key" }}{{ $resetKey = b64dec . }}{{ end }}{{ end }}
{{- end }}
"#;

/// The flags with a marker or sentinel in every value the chart takes.
fn marked_args() -> InstallArgs {
    InstallArgs {
        identity_trust_domain: MARKERS[0].0.into(),
        gateway_service_type: MARKERS[1].0.into(),
        gateway_probe_seconds: PROBE_SECONDS,
        gateway_replicas: REPLICAS,
        ha: true,
        gateway_wait_before_exit_seconds: WAIT_BEFORE_EXIT,
        gateway_pause_image: MARKERS[2].0.into(),
        gateway_allowed_identities: vec![IDENTITIES_MARKER.into()],
        export_selector: EXPORT_MARKER.into(),
    }
}

/// The defaults of `mesh multicluster install`, as the chart's values.
fn values() -> anyhow::Result<String> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstallArgs,
    }
    let defaults = <Cli as clap::Parser>::try_parse_from(["install"])?.args;
    let mut exports = String::new();
    for pair in defaults.export_selector.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("default export selector {pair:?}"))?;
        exports.push_str(&format!("    {key}: {value:?}\n"));
    }
    let identities: Vec<String> = defaults
        .gateway_allowed_identities
        .iter()
        .map(|i| format!("{i:?}"))
        .collect();
    Ok(format!(
        r#"# {GENERATED}
# The trust domain of workload identities (the gateway's identity is under it).
identityTrustDomain: {trust_domain}
gateway:
  replicas: {replicas}
  # How linked clusters reach the gateway: LoadBalancer or NodePort.
  serviceType: {service_type}
  probe:
    # Seconds between linked clusters' probes of the gateway.
    seconds: {probe}
  # The image of the gateway pod's own (idle) container.
  pauseImage: {pause}
  # How long a stopping gateway pod keeps serving before it drains.
  waitBeforeExitSeconds: {wait}
  # The mesh identities that may use the gateway: `*` (any under the shared
  # trust anchor), `*.<suffix>`, or names.
  allowedIdentities: [{identities}]
  # The labels of the Services the gateway forwards to (all required).
  exportSelector:
{exports}# Spread gateway replicas over nodes and zones.
enablePodAntiAffinity: false
# A PodDisruptionBudget (one gateway pod down at a time) and rolling updates
# that start a new pod before stopping an old one.
enablePodDisruptionBudget: false
"#,
        trust_domain = defaults.identity_trust_domain,
        replicas = defaults.gateway_replicas,
        service_type = defaults.gateway_service_type,
        probe = defaults.gateway_probe_seconds,
        pause = defaults.gateway_pause_image,
        wait = defaults.gateway_wait_before_exit_seconds,
        identities = identities.join(", "),
    ))
}

/// What `mesh multicluster install --ha` sets, as a values file.
const HA_VALUES: &str =
    "gateway:\n  replicas: 3\nenablePodAntiAffinity: true\nenablePodDisruptionBudget: true\n";

/// Every file of `charts/mesh-multicluster`.
pub fn files() -> anyhow::Result<Vec<ChartFile>> {
    let substitutions = Substitutions {
        markers: &MARKERS,
        literals: vec![
            (
                format!("\"{PROBE_SECONDS}\""),
                "{{ .Values.gateway.probe.seconds | quote }}".into(),
            ),
            (
                format!("\"{WAIT_BEFORE_EXIT}\""),
                "{{ .Values.gateway.waitBeforeExitSeconds | quote }}".into(),
            ),
        ],
        lines: vec![
            (
                format!("replicas: {REPLICAS}"),
                "replicas: {{ .Values.gateway.replicas }}".into(),
            ),
            (
                format!("terminationGracePeriodSeconds: {}", WAIT_BEFORE_EXIT + 30),
                "terminationGracePeriodSeconds: {{ add .Values.gateway.waitBeforeExitSeconds 30 }}"
                    .into(),
            ),
            (
                format!("- {IDENTITIES_MARKER}"),
                "{{- toYaml .Values.gateway.allowedIdentities | nindent 2 }}".into(),
            ),
        ],
    };
    let mut template = format!("{{{{- /* {GENERATED} */}}}}\n{PREAMBLE}");
    for object in objects(&marked_args())? {
        let text = escape_braces(&manifest::to_yaml(std::slice::from_ref(&object))?);
        let text = match object["kind"].as_str() {
            // The Link CRD is mesh-crds' (a CRD belongs to one release).
            Some("Namespace" | "CustomResourceDefinition") => continue,
            Some("PodDisruptionBudget") => {
                wrap_document(&text, ".Values.enablePodDisruptionBudget")
            }
            Some("Deployment") => {
                let text = wrap_block(&text, "      affinity:", ".Values.enablePodAntiAffinity")?;
                let text = wrap_block(&text, "  strategy:", ".Values.enablePodDisruptionBudget")?;
                replace_value(&text, GATEWAY_EXPORTS_ANNOTATION, "$exports | quote")
            }
            // Kept across `helm upgrade` (a new key would make the pods of a
            // rollout unable to reset each other's QUIC connections).
            Some("Secret") => replace_value(&text, GATEWAY_RESET_KEY, "$resetKey | quote"),
            _ => text,
        };
        template.push_str(&substitute(&text, &substitutions));
    }
    for left in MARKERS.iter().map(|(marker, _)| *marker).chain([
        "mesh-marker",
        &REPLICAS.to_string(),
        &PROBE_SECONDS.to_string(),
    ]) {
        anyhow::ensure!(
            !template.contains(left),
            "the multicluster chart still holds {left}"
        );
    }
    Ok(vec![
        ChartFile {
            path: "mesh-multicluster/Chart.yaml".into(),
            contents: chart_yaml(
                "mesh-multicluster",
                "mesh's multicluster extension (the gateway, its policy and the access linked clusters read with), with Linkerd's value names",
            ),
        },
        ChartFile {
            path: "mesh-multicluster/values.yaml".into(),
            contents: values()?,
        },
        ChartFile {
            path: "mesh-multicluster/values-ha.yaml".into(),
            contents: format!("# {GENERATED}\n{HA_VALUES}"),
        },
        ChartFile {
            path: "mesh-multicluster/templates/multicluster.yaml".into(),
            contents: template,
        },
    ])
}
