//! The Helm charts as an operator uses them, with the real helm (built by
//! `scripts/setup.sh` from its Go module): the charts in `charts/` are
//! what `mesh charts generate` writes (one source of truth with `mesh
//! install`), `helm lint` passes, and `helm template` renders the same
//! objects as `mesh install` for the same values file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use mesh_identity::generate;
use support::text;

mod support;

/// Runs `program`, which must succeed; what it printed.
fn run(program: &Path, args: &[&str]) -> String {
    text(&support::run_ok(program, args).stdout)
}

/// The helm `scripts/setup.sh` builds, or `$MESH_HELM`.
fn helm() -> PathBuf {
    mesh_clusters::helm::locate().unwrap_or_else(|e| panic!("{e:#}"))
}

fn charts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts")
}

/// Every file under `dir`, by path relative to it.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .expect("under dir")
                    .display()
                    .to_string();
                found.push((relative, std::fs::read_to_string(&path).expect("read")));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_charts_in_the_repository_are_what_the_renderer_generates() {
    let out = tempfile::tempdir().expect("tempdir");
    run(
        Path::new(env!("CARGO_BIN_EXE_mesh")),
        &[
            "charts",
            "generate",
            "--out",
            &out.path().display().to_string(),
        ],
    );
    let generated = files(out.path());
    let committed = files(&charts_dir());
    let names = |files: &[(String, String)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&committed), names(&generated));
    for ((path, committed), (_, generated)) in committed.iter().zip(&generated) {
        assert!(
            committed == generated,
            "charts/{path} differs from what `mesh charts generate` writes: run it and commit the result"
        );
    }
}

/// A values file with trust material and a webhook certificate (so that
/// both renderers use the same), and `extra` YAML over it.
fn values(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let day = Duration::from_secs(86400);
    let now = SystemTime::now();
    let anchor =
        generate::trust_anchor("root.linkerd.cluster.local", now, 365 * day).expect("anchor");
    let issuer =
        generate::issuer(&anchor, "identity.linkerd.cluster.local", now, 30 * day).expect("issuer");
    let webhook_ca = generate::trust_anchor("webhook CA", now, day).expect("webhook CA");
    let webhook = generate::issuer(&webhook_ca, "linkerd-proxy-injector.linkerd.svc", now, day)
        .expect("webhook");
    let mut material = serde_json::json!({
        "identityTrustAnchorsPEM": anchor.cert_pem,
        "identity": {"issuer": {"tls": {"crtPEM": issuer.cert_pem, "keyPEM": issuer.key_pem}}},
        "proxyInjector": {
            "crtPEM": webhook.cert_pem,
            "keyPEM": webhook.key_pem,
            "caBundle": webhook_ca.cert_pem,
        },
    });
    if extra.contains("kubernetes.io/tls") {
        // An external issuer's Secret is cert-manager's to write.
        material["identity"] = serde_json::json!({});
    }
    let path = dir.join(name);
    let mut merged: serde_json::Value = if extra.is_empty() {
        serde_json::json!({})
    } else {
        serde_saphyr::from_str(extra).expect("extra values")
    };
    add_missing(&mut merged, material);
    // JSON is YAML.
    std::fs::write(&path, merged.to_string()).expect("write values");
    path
}

/// Adds to `into` what `from` has and it lacks, map by map.
fn add_missing(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (serde_json::Value::Object(into), serde_json::Value::Object(from)) = (into, from) {
        for (key, value) in from {
            match into.get_mut(&key) {
                Some(existing) => add_missing(existing, value),
                None => {
                    into.insert(key, value);
                }
            }
        }
    }
}

/// The objects of a YAML stream by kind and name; linkerd-config's stored
/// values aside (each renderer stores its own view of the values).
fn objects(yaml: &str) -> Vec<((String, String), serde_json::Value)> {
    let mut objects: Vec<_> = serde_saphyr::from_multiple::<serde_json::Value>(yaml)
        .expect("YAML documents")
        .into_iter()
        .filter(|o| !o.is_null())
        .map(|mut o| {
            let key = (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            if key.1 == "linkerd-config" {
                o["data"]["values"] = serde_json::Value::Null;
            }
            (key, o)
        })
        .collect();
    objects.sort_by(|a, b| a.0.cmp(&b.0));
    objects
}

#[test]
fn helm_template_renders_what_mesh_install_renders() {
    let helm = helm();
    let chart = charts_dir().join("mesh-control-plane");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, extra) in [
        ("defaults", ""),
        ("ha-flag", ""),
        (
            "ha",
            "controllerReplicas: 3\nenablePodAntiAffinity: true\nenablePodDisruptionBudget: true\n",
        ),
        (
            "custom",
            "imageRegistry: registry.example/acme/\nclusterDomain: corp.example\n\
             identityTrustDomain: corp.example\nwebhookFailurePolicy: Fail\n\
             clusterNetworks: 10.0.0.0/8\ninstallNamespace: false\n\
             proxy:\n  logLevel: debug\n  defaultInboundPolicy: cluster-authenticated\n  image:\n    version: v9.9.9\n\
             proxyInit:\n  image:\n    name: other.example/init\n\
             identity:\n  issuer:\n    issuanceLifetime: 12h\n    clockSkewAllowance: 1m\n",
        ),
        (
            "external-issuer",
            "identity:\n  issuer:\n    scheme: kubernetes.io/tls\n",
        ),
        (
            "external-ca",
            "identity:\n  externalCA: true\n  issuer:\n    scheme: kubernetes.io/tls\n",
        ),
        (
            "resources",
            "controllerResources:\n  memory:\n    request: 30Mi\n\
             destinationResources:\n  cpu:\n    limit: 1\n\
             policyController:\n  resources:\n    ephemeral-storage:\n      limit: 1Gi\n\
             proxy:\n  resources:\n    memory:\n      limit: 64Mi\n    cpu:\n      request: \"0.5\"\n",
        ),
    ] {
        let values = values(dir.path(), &format!("{name}.yaml"), extra);
        let values_arg = values.display().to_string();
        let chart_arg = chart.display().to_string();
        run(&helm, &["lint", &chart_arg, "-f", &values_arg]);
        // `mesh install --ha` is the chart's values-ha.yaml.
        let ha = name == "ha-flag";
        let ha_values = chart.join("values-ha.yaml").display().to_string();
        let mut helm_args = vec![
            "template",
            "linkerd-control-plane",
            &chart_arg,
            "-n",
            "linkerd",
        ];
        if ha {
            helm_args.extend(["-f", &ha_values]);
        }
        helm_args.extend(["-f", &values_arg]);
        let from_helm = run(&helm, &helm_args);
        let mut mesh_args = vec!["install", "--ignore-cluster", "--values", &values_arg];
        if ha {
            mesh_args.push("--ha");
        }
        let from_mesh = run(Path::new(env!("CARGO_BIN_EXE_mesh")), &mesh_args);
        // Helm makes the namespace (`--create-namespace`): the chart has
        // none, where `mesh install` renders it unless installNamespace is
        // off.
        let (helm_objects, mut mesh_objects) = (objects(&from_helm), objects(&from_mesh));
        assert!(
            helm_objects.iter().all(|o| o.0.0 != "Namespace"),
            "{name}: the chart renders no Namespace"
        );
        mesh_objects.retain(|o| o.0.0 != "Namespace");
        let kinds = |objects: &[((String, String), serde_json::Value)]| {
            objects.iter().map(|o| o.0.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(&helm_objects),
            kinds(&mesh_objects),
            "{name}: the same objects"
        );
        for ((key, from_helm), (_, from_mesh)) in helm_objects.iter().zip(&mesh_objects) {
            assert_eq!(
                from_helm, from_mesh,
                "{name}: {key:?} as helm and mesh install render it"
            );
        }
        // What helm stores in linkerd-config: its version, no key.
        let stored = from_helm
            .split("---")
            .find(|doc| doc.contains("name: linkerd-config"))
            .expect("linkerd-config");
        assert!(stored.contains("linkerdVersion"), "{stored}");
        assert!(
            !stored.contains("PRIVATE KEY"),
            "no key is stored: {stored}"
        );
    }
    run(
        &helm,
        &[
            "lint",
            &charts_dir().join("mesh-crds").display().to_string(),
        ],
    );
}

#[test]
fn the_chart_refuses_to_render_without_trust_material() {
    let output = Command::new(helm())
        .args(["template", "linkerd-control-plane"])
        .arg(charts_dir().join("mesh-control-plane"))
        .output()
        .expect("helm");
    assert!(!output.status.success(), "rendered without anchors");
    let error = text(&output.stderr);
    assert!(error.contains("identityTrustAnchorsPEM"), "{error}");
}

/// One extension's value set and the `mesh` flags that say the same.
struct Case {
    name: &'static str,
    values: &'static str,
    ha: bool,
    flags: &'static [&'static str],
}

/// The chart's own values against the CLI's defaults.
const DEFAULTS: Case = Case {
    name: "defaults",
    values: "",
    ha: false,
    flags: &[],
};

/// `helm template` of `chart` (release `release` in `namespace`) against
/// `mesh <command>` for each case: the same objects, but for the Namespace
/// (Helm makes it), CRDs (`mesh-crds` holds them all) and the QUIC reset
/// key (random in both, 32 bytes).
fn extension_renders_as_the_cli(
    chart: &str,
    release: &str,
    namespace: &str,
    command: &[&str],
    cases: &[Case],
) {
    let helm = helm();
    let chart_dir = charts_dir().join(chart);
    let chart_arg = chart_dir.display().to_string();
    let ha_values = chart_dir.join("values-ha.yaml").display().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    for case in cases {
        let values = dir.path().join(format!("{}.yaml", case.name));
        std::fs::write(&values, case.values).expect("values");
        let values_arg = values.display().to_string();
        run(&helm, &["lint", &chart_arg, "-f", &values_arg]);
        let mut helm_args = vec!["template", release, &chart_arg, "-n", namespace];
        if case.ha {
            helm_args.extend(["-f", &ha_values]);
        }
        helm_args.extend(["-f", &values_arg]);
        let from_helm = run(&helm, &helm_args);
        let mut mesh_args = command.to_vec();
        mesh_args.extend(case.flags);
        let from_mesh = run(Path::new(env!("CARGO_BIN_EXE_mesh")), &mesh_args);
        let without_reset_key = |yaml: &str| {
            objects(yaml)
                .into_iter()
                .filter(|o| o.0.0 != "Namespace" && o.0.0 != "CustomResourceDefinition")
                .map(|(key, mut o)| {
                    if let Some(reset) = o["stringData"]["reset-key"].as_str() {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(reset)
                            .expect("a base64 reset key");
                        assert_eq!(bytes.len(), 32, "{}: a 32-byte reset key", case.name);
                        o["stringData"]["reset-key"] = serde_json::Value::Null;
                    }
                    // A serving certificate made at each render (viz's tap):
                    // present, then set aside.
                    if o["kind"] == "APIService" {
                        let ca = o["spec"]["caBundle"].as_str().unwrap_or_default();
                        let pem = base64::engine::general_purpose::STANDARD
                            .decode(ca)
                            .expect("a base64 caBundle");
                        assert!(
                            pem.starts_with(b"-----BEGIN CERTIFICATE-----"),
                            "{}: caBundle",
                            case.name
                        );
                        o["spec"]["caBundle"] = serde_json::Value::Null;
                    }
                    if o["kind"] == "Secret"
                        && o["type"] == "kubernetes.io/tls"
                        && chart == "mesh-viz"
                    {
                        let crt = o["stringData"]["tls.crt"].as_str().unwrap_or_default();
                        assert!(
                            crt.starts_with("-----BEGIN CERTIFICATE-----"),
                            "{}: tls.crt",
                            case.name
                        );
                        o["stringData"] = serde_json::Value::Null;
                    }
                    (key, o)
                })
                .collect::<Vec<_>>()
        };
        assert!(
            objects(&from_helm)
                .iter()
                .all(|o| o.0.0 != "Namespace" && o.0.0 != "CustomResourceDefinition"),
            "{chart} {}: Helm makes the namespace and mesh-crds has the CRDs, not this chart",
            case.name
        );
        let (helm_objects, mesh_objects) =
            (without_reset_key(&from_helm), without_reset_key(&from_mesh));
        let kinds = |objects: &[((String, String), serde_json::Value)]| {
            objects.iter().map(|o| o.0.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(&helm_objects),
            kinds(&mesh_objects),
            "{chart} {}: the same objects",
            case.name
        );
        for ((key, from_helm), (_, from_mesh)) in helm_objects.iter().zip(&mesh_objects) {
            assert_eq!(
                from_helm, from_mesh,
                "{chart} {}: {key:?} as helm and mesh render it",
                case.name
            );
        }
    }
}

#[test]
fn helm_template_renders_what_mesh_multicluster_install_renders() {
    extension_renders_as_the_cli(
        "mesh-multicluster",
        "linkerd-multicluster",
        "linkerd-multicluster",
        &["multicluster", "install"],
        &[
            DEFAULTS,
            Case {
                name: "ha",
                values: "",
                ha: true,
                flags: &["--ha"],
            },
            Case {
                name: "custom",
                values: "identityTrustDomain: corp.example\n\
                         gateway:\n  replicas: 2\n  serviceType: NodePort\n  probe:\n    seconds: 5\n\
                         \x20 pauseImage: registry.example/pause:1\n  waitBeforeExitSeconds: 20\n\
                         \x20 allowedIdentities: [\"*.shop.serviceaccount.identity.linkerd.corp.example\", web.front.serviceaccount.identity.linkerd.corp.example]\n\
                         \x20 exportSelector:\n    tier: public\n    team: shop\n    mirror.linkerd.io/exported: null\n",
                ha: false,
                flags: &[
                    "--identity-trust-domain=corp.example",
                    "--gateway-replicas=2",
                    "--gateway-service-type=NodePort",
                    "--gateway-probe-seconds=5",
                    "--gateway-pause-image=registry.example/pause:1",
                    "--gateway-wait-before-exit-seconds=20",
                    "--gateway-allowed-identity=*.shop.serviceaccount.identity.linkerd.corp.example",
                    "--gateway-allowed-identity=web.front.serviceaccount.identity.linkerd.corp.example",
                    "--export-selector=tier=public,team=shop",
                ],
            },
        ],
    );
}

#[test]
fn helm_template_renders_what_mesh_failover_install_renders() {
    extension_renders_as_the_cli(
        "mesh-failover",
        "linkerd-failover",
        "linkerd-failover",
        &["failover", "install"],
        &[
            DEFAULTS,
            Case {
                name: "custom",
                values: "imageRegistry: registry.example/acme\ncontrolledBy: shop-failover\n\
                         prometheusUrl: http://prometheus.monitoring:9090\n",
                ha: false,
                flags: &[
                    "--registry=registry.example/acme",
                    "--controlled-by=shop-failover",
                    "--prometheus-url=http://prometheus.monitoring:9090",
                ],
            },
        ],
    );
}

#[test]
fn helm_template_renders_what_mesh_viz_install_renders() {
    extension_renders_as_the_cli(
        "mesh-viz",
        "linkerd-viz",
        "linkerd-viz",
        &["viz", "install"],
        &[
            DEFAULTS,
            Case {
                name: "custom",
                values: "linkerdNamespace: mesh-system\nprometheus:\n  image:\n    registry: registry.example\n    \
                         name: prom\n    tag: v9\n  globalConfig:\n    scrape_interval: 2s\n  args:\n    \
                         storage.tsdb.retention.time: 1d\n",
                ha: false,
                flags: &[
                    "--linkerd-namespace=mesh-system",
                    "--prometheus-image=registry.example/prom:v9",
                    "--scrape-interval=2s",
                    "--retention=1d",
                ],
            },
            Case {
                name: "external",
                values: "prometheusUrl: http://prometheus.monitoring.svc.cluster.local:9090\n",
                ha: false,
                flags: &["--prometheus-url=http://prometheus.monitoring.svc.cluster.local:9090"],
            },
            Case {
                name: "ha",
                values: "",
                ha: true,
                flags: &["--ha"],
            },
        ],
    );
}

/// The viz chart refuses a Prometheus URL the CLI refuses.
#[test]
fn the_viz_chart_refuses_a_prometheus_it_cannot_reach() {
    let chart = charts_dir().join("mesh-viz").display().to_string();
    for url in [
        "https://prometheus.monitoring:9090",
        "http://10.0.0.1:9090",
        "http://prometheus:9090",
    ] {
        let out = Command::new(helm())
            .args([
                "template",
                "linkerd-viz",
                &chart,
                "--set",
                &format!("prometheusUrl={url}"),
            ])
            .output()
            .expect("helm runs");
        assert!(!out.status.success(), "{url} accepted");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("in-cluster Service URL"), "{url}: {stderr}");
        let cli = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .args(["viz", "install", "--prometheus-url", url])
            .output()
            .expect("mesh runs");
        assert!(!cli.status.success(), "the CLI accepted {url}");
    }
}

/// The multicluster chart refuses what `mesh multicluster install` refuses,
/// naming the value.
#[test]
fn the_multicluster_chart_refuses_bad_values_naming_them() {
    for (set, named) in [
        ("gateway.serviceType=ClusterIP", "gateway.serviceType"),
        ("gateway.replicas=0", "gateway.replicas"),
        (
            "gateway.allowedIdentities[0]=Web.Shop",
            "gateway.allowedIdentities",
        ),
        ("gateway.exportSelector=null", "gateway.exportSelector"),
    ] {
        let output = Command::new(helm())
            .args(["template", "linkerd-multicluster"])
            .arg(charts_dir().join("mesh-multicluster"))
            .args(["--set", set])
            .output()
            .expect("helm");
        let error = text(&output.stderr);
        assert!(
            !output.status.success() && error.contains(named),
            "--set {set}: refused naming {named}: {error}"
        );
    }
}
