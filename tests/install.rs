//! `mesh install` as an operator uses it: render, `kubectl apply -f -` to a
//! real API server, and the identity service's objects and permissions are
//! there; trust material the operator brings is checked before anything is
//! rendered.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use mesh_clusters::testing::shared_cluster;
use mesh_identity::generate;
use support::{kubectl, text};

fn mesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("running mesh")
}

/// `mesh install` with the operator's anchors and issuer from `dir`, and
/// the injector's webhook certificate when `dir` has one.
fn install_with_files(dir: &Path) -> Output {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        "install".to_owned(),
        "--identity-trust-anchors-file".into(),
        path("ca.crt"),
        "--identity-issuer-certificate-file".into(),
        path("issuer.crt"),
        "--identity-issuer-key-file".into(),
        path("issuer.key"),
    ];
    if dir.join("webhook.crt").exists() {
        args.extend([
            "--proxy-injector-tls-cert-file".into(),
            path("webhook.crt"),
            "--proxy-injector-tls-key-file".into(),
            path("webhook.key"),
            "--proxy-injector-ca-file".into(),
            path("webhook-ca.crt"),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    mesh(&args)
}

/// Writes `ca.crt`, `issuer.crt` and `issuer.key` into `dir`.
fn write_material(dir: &Path, anchor: &generate::CertAndKey, issuer: &generate::CertAndKey) {
    for (name, pem) in [
        ("ca.crt", &anchor.cert_pem),
        ("issuer.crt", &issuer.cert_pem),
        ("issuer.key", &issuer.key_pem),
    ] {
        std::fs::write(dir.join(name), pem).expect("write");
    }
}

#[tokio::test]
async fn the_rendered_identity_service_applies_with_its_permissions() {
    let cluster = shared_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86400);
    let anchor =
        generate::trust_anchor("root.linkerd.cluster.local", SystemTime::now(), 3650 * day)
            .expect("anchor");
    let issuer = generate::issuer(
        &anchor,
        "identity.linkerd.cluster.local",
        SystemTime::now(),
        365 * day,
    )
    .expect("issuer");
    write_material(dir.path(), &anchor, &issuer);
    let webhook_ca =
        generate::trust_anchor("webhook CA", SystemTime::now(), day).expect("webhook CA");
    let webhook = generate::issuer(
        &webhook_ca,
        "linkerd-proxy-injector.linkerd.svc",
        SystemTime::now(),
        day,
    )
    .expect("webhook certificate");
    for (name, pem) in [
        ("webhook-ca.crt", &webhook_ca.cert_pem),
        ("webhook.crt", &webhook.cert_pem),
        ("webhook.key", &webhook.key_pem),
    ] {
        std::fs::write(dir.path().join(name), pem).expect("write");
    }
    let rendered = install_with_files(dir.path());
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    let again = install_with_files(dir.path());
    assert_eq!(
        rendered.stdout, again.stdout,
        "the same inputs render the same output"
    );

    let kubeconfig = cluster.kubeconfig();
    let applied = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&rendered.stdout));
    assert!(
        applied.status.success(),
        "kubectl apply: {}",
        text(&applied.stderr)
    );
    let out = text(&applied.stdout);
    for object in [
        "namespace/linkerd",
        "configmap/linkerd-identity-trust-roots",
        "configmap/linkerd-config",
        "secret/linkerd-identity-issuer",
        "serviceaccount/linkerd-identity",
        "deployment.apps/linkerd-identity",
        "service/linkerd-identity ",
        "service/linkerd-identity-headless",
        "deployment.apps/linkerd-destination",
        "service/linkerd-dst ",
        "service/linkerd-dst-headless",
        "secret/linkerd-proxy-injector-k8s-tls",
        "deployment.apps/linkerd-proxy-injector",
        "service/linkerd-proxy-injector",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/linkerd-proxy-injector-webhook-config",
    ] {
        assert!(out.contains(object), "{object} not applied:\n{out}");
    }

    let bundle = kubectl(
        &kubeconfig,
        &[
            "get",
            "configmap",
            "-n",
            "linkerd",
            "linkerd-identity-trust-roots",
            "-o",
            "jsonpath={.data.ca-bundle\\.crt}",
        ],
        None,
    );
    assert_eq!(text(&bundle.stdout).trim(), anchor.cert_pem.trim());
    let secret_type = kubectl(
        &kubeconfig,
        &[
            "get",
            "secret",
            "-n",
            "linkerd",
            "linkerd-identity-issuer",
            "-o",
            "jsonpath={.type}",
        ],
        None,
    );
    assert_eq!(text(&secret_type.stdout), "kubernetes.io/tls");
    let can = kubectl(
        &kubeconfig,
        &[
            "auth",
            "can-i",
            "create",
            "tokenreviews",
            "--as=system:serviceaccount:linkerd:linkerd-identity",
        ],
        None,
    );
    assert_eq!(text(&can.stdout).trim(), "yes", "{}", text(&can.stderr));
    let cannot = kubectl(
        &kubeconfig,
        &[
            "auth",
            "can-i",
            "list",
            "secrets",
            "--as=system:serviceaccount:linkerd:linkerd-identity",
        ],
        None,
    );
    assert_eq!(text(&cannot.stdout).trim(), "no");
    for (verb, resource, account, expected) in [
        (
            "watch",
            "endpointslices.discovery.k8s.io",
            "linkerd-destination",
            "yes",
        ),
        ("watch", "pods", "linkerd-destination", "yes"),
        ("list", "secrets", "linkerd-destination", "no"),
        ("get", "namespaces", "linkerd-proxy-injector", "yes"),
        ("list", "secrets", "linkerd-proxy-injector", "no"),
    ] {
        let can = kubectl(
            &kubeconfig,
            &[
                "auth",
                "can-i",
                verb,
                resource,
                &format!("--as=system:serviceaccount:linkerd:{account}"),
            ],
            None,
        );
        assert_eq!(
            text(&can.stdout).trim(),
            expected,
            "{account} {verb} {resource}: {}",
            text(&can.stderr)
        );
    }
    // Everything `mesh uninstall` names exists once installed: a server-side
    // dry run of the delete finds each one (and removes nothing).
    let crds = mesh(&["install", "--crds"]);
    let applied = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&crds.stdout));
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let uninstall = mesh(&["uninstall"]);
    let deleted = kubectl(
        &kubeconfig,
        &["delete", "--dry-run=server", "-f", "-"],
        Some(&uninstall.stdout),
    );
    assert!(
        deleted.status.success(),
        "every object uninstall names exists: {}",
        text(&deleted.stderr)
    );

    // `mesh version` reads the control plane's version from linkerd-config,
    // and counts the proxies of a namespace by the version they run.
    let ns = format!("mesh-version-{}", std::process::id());
    let pods: String = (0..2)
        .map(|n| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-{n}\n  namespace: {ns}\n  \
                 labels: {{linkerd.io/control-plane-ns: linkerd}}\n  \
                 annotations: {{linkerd.io/proxy-version: v9.9.9}}\nspec:\n  containers:\n  \
                 - {{name: app, image: busybox}}\n  - {{name: linkerd-proxy, image: mesh/proxy:v9.9.9}}\n"
            )
        })
        .collect();
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  \
         labels: {{config.linkerd.io/admission-webhooks: disabled}}\n{pods}"
    );
    let created = kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some(manifest.as_bytes()),
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let kubeconfig_arg = kubeconfig.display().to_string();
    let version = mesh(&[
        "version",
        "--proxy",
        "-n",
        &ns,
        "-o",
        "json",
        "--kubeconfig",
        &kubeconfig_arg,
    ]);
    assert!(version.status.success(), "{}", text(&version.stderr));
    let version: serde_json::Value = serde_json::from_slice(&version.stdout).expect("JSON");
    assert_eq!(
        version["server"],
        concat!("v", env!("CARGO_PKG_VERSION")),
        "{version}"
    );
    assert_eq!(
        version["proxies"],
        serde_json::json!([{"version": "v9.9.9", "pods": 2}]),
        "{version}"
    );
    let deleted = kubectl(
        &kubeconfig,
        &["delete", "namespace", &ns, "--wait=false"],
        None,
    );
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));

    // `mesh upgrade` renders from what the cluster holds: a value set once
    // stays set, the anchors, issuer and webhook certificate are kept, and
    // a new issuer or anchors bundle is given alone.
    let upgrade = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["upgrade", "--kubeconfig", &kubeconfig_arg];
        args.extend(extra);
        let out = mesh(&args);
        assert!(
            out.status.success(),
            "mesh upgrade {extra:?}: {}",
            text(&out.stderr)
        );
        let applied = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&out.stdout));
        assert!(applied.status.success(), "{}", text(&applied.stderr));
        serde_saphyr::from_multiple(&text(&out.stdout)).expect("YAML documents")
    };
    let issuer_data = |objects: &[serde_json::Value], key: &str| {
        find(objects, "Secret", "linkerd-identity-issuer")["stringData"][key]
            .as_str()
            .expect("issuer Secret")
            .to_owned()
    };
    let anchors_of = |objects: &[serde_json::Value]| {
        find(objects, "ConfigMap", "linkerd-identity-trust-roots")["data"]["ca-bundle.crt"]
            .as_str()
            .expect("trust roots")
            .to_owned()
    };
    upgrade(&["--set", "proxy.logLevel=debug"]);
    let objects = upgrade(&[]);
    assert!(
        args_of(&objects, "linkerd-proxy-injector").contains(&"--proxy-log-level=debug".to_owned()),
        "a value set by an earlier upgrade is kept"
    );
    assert_eq!(anchors_of(&objects).trim(), anchor.cert_pem.trim());
    assert_eq!(
        issuer_data(&objects, "tls.crt").trim(),
        issuer.cert_pem.trim()
    );
    assert_eq!(
        find(&objects, "Secret", "linkerd-proxy-injector-k8s-tls")["stringData"]["tls.crt"]
            .as_str()
            .map(str::trim),
        Some(webhook.cert_pem.trim()),
        "the webhook certificate is kept"
    );

    // The issuer rotated alone, under the same anchors.
    let new_issuer = generate::issuer(
        &anchor,
        "identity.linkerd.cluster.local",
        SystemTime::now(),
        365 * day,
    )
    .expect("new issuer");
    std::fs::write(dir.path().join("new-issuer.crt"), &new_issuer.cert_pem).expect("write");
    std::fs::write(dir.path().join("new-issuer.key"), &new_issuer.key_pem).expect("write");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (new_crt, new_key) = (file("new-issuer.crt"), file("new-issuer.key"));
    let objects = upgrade(&[
        "--identity-issuer-certificate-file",
        &new_crt,
        "--identity-issuer-key-file",
        &new_key,
    ]);
    assert_eq!(
        issuer_data(&objects, "tls.crt").trim(),
        new_issuer.cert_pem.trim()
    );
    assert_eq!(anchors_of(&objects).trim(), anchor.cert_pem.trim());

    // A new anchors bundle alone keeps the (new) issuer, which chains to
    // one of them; an anchor the issuer does not chain to is refused.
    // (It outlives the old one: the newest anchor is the one that expires last.)
    let new_anchor =
        generate::trust_anchor("root.linkerd.cluster.local", SystemTime::now(), 3651 * day)
            .expect("new anchor");
    let bundle = format!("{}{}", anchor.cert_pem, new_anchor.cert_pem);
    std::fs::write(dir.path().join("bundle.crt"), &bundle).expect("write");
    std::fs::write(dir.path().join("new-anchor.crt"), &new_anchor.cert_pem).expect("write");
    let objects = upgrade(&["--identity-trust-anchors-file", &file("bundle.crt")]);
    assert_eq!(anchors_of(&objects), bundle);
    assert_eq!(
        issuer_data(&objects, "tls.crt").trim(),
        new_issuer.cert_pem.trim()
    );
    // `mesh check` says where the rotation stands and what comes next
    // (the control plane has no pods here: the other checks fail fast).
    let rotation_check = || {
        let check = mesh(&[
            "check",
            "--wait",
            "1s",
            "-o",
            "json",
            "--kubeconfig",
            &kubeconfig_arg,
        ]);
        let check: serde_json::Value = serde_json::from_slice(&check.stdout).expect("check JSON");
        check["categories"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["checks"].as_array().cloned().unwrap_or_default())
            .find(|c| c["description"] == "no trust anchor rotation is half done")
            .unwrap_or_else(|| panic!("no rotation check in {check}"))
    };
    let says = |rotation: &serde_json::Value, step: &str, next: &str| {
        assert_eq!(rotation["result"], "warning", "{rotation}");
        assert!(
            rotation["error"].as_str().is_some_and(|e| e.contains(step))
                && rotation["hint"].as_str().is_some_and(|h| h.contains(next)),
            "{rotation}"
        );
    };
    says(
        &rotation_check(),
        "step 1 of 4",
        "--identity-issuer-certificate-file",
    );
    let refused = mesh(&[
        "upgrade",
        "--kubeconfig",
        &kubeconfig_arg,
        "--identity-trust-anchors-file",
        &file("new-anchor.crt"),
    ]);
    assert!(
        !refused.status.success(),
        "an issuer outside the anchors is refused"
    );
    assert!(refused.stdout.is_empty(), "nothing is rendered");
    let error = text(&refused.stderr);
    assert!(
        error.contains("linkerd-identity-issuer"),
        "the error names the issuer's origin: {error}"
    );

    // Step 3: an issuer from the new anchor (named as the old one is, as
    // the guides name a new root); next, drop the old anchor.
    let newest_issuer = generate::issuer(
        &new_anchor,
        "identity.linkerd.cluster.local",
        SystemTime::now(),
        365 * day,
    )
    .expect("issuer from the new anchor");
    std::fs::write(dir.path().join("newest.crt"), &newest_issuer.cert_pem).expect("write");
    std::fs::write(dir.path().join("newest.key"), &newest_issuer.key_pem).expect("write");
    let (newest_crt, newest_key) = (file("newest.crt"), file("newest.key"));
    upgrade(&[
        "--identity-issuer-certificate-file",
        &newest_crt,
        "--identity-issuer-key-file",
        &newest_key,
    ]);
    says(
        &rotation_check(),
        "step 3 of 4",
        "--identity-trust-anchors-file",
    );

    // With a webhook that fails closed and no injector to answer (no
    // nodes here), a control-plane pod is still admitted in a namespace
    // with no labels (as `helm install --create-namespace` makes), and
    // any other pod is refused.
    let failing = kubectl(
        &kubeconfig,
        &[
            "patch",
            "mutatingwebhookconfiguration",
            "linkerd-proxy-injector-webhook-config",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Fail"}]"#,
        ],
        None,
    );
    assert!(failing.status.success(), "{}", text(&failing.stderr));
    let bare = format!("mesh-bare-{}", std::process::id());
    let pod = |name: &str, labels: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {bare}\n  labels: {{{labels}}}\n\
             spec:\n  containers:\n  - {{name: app, image: busybox}}\n"
        )
    };
    let made = kubectl(&kubeconfig, &["create", "namespace", &bare], None);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let control_plane = pod("identity", "linkerd.io/control-plane-component: identity");
    let admitted = kubectl(
        &kubeconfig,
        &["create", "-f", "-"],
        Some(control_plane.as_bytes()),
    );
    assert!(
        admitted.status.success(),
        "a control-plane pod is not sent to the webhook: {}",
        text(&admitted.stderr)
    );
    let workload = pod("web", "app: web");
    let refused = kubectl(
        &kubeconfig,
        &["create", "-f", "-"],
        Some(workload.as_bytes()),
    );
    assert!(
        !refused.status.success(),
        "any other pod waits for the injector when the webhook fails closed"
    );
    let deleted = kubectl(
        &kubeconfig,
        &["delete", "namespace", &bare, "--wait=false"],
        None,
    );
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));

    // The webhook has no pod to answer here (no nodes): leave the shared
    // API server as other tests expect it.
    let removed = kubectl(
        &kubeconfig,
        &[
            "delete",
            "mutatingwebhookconfiguration",
            "linkerd-proxy-injector-webhook-config",
        ],
        None,
    );
    assert!(removed.status.success(), "{}", text(&removed.stderr));
}

#[test]
fn trust_material_that_does_not_fit_is_refused_by_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86400);
    let now = SystemTime::now();
    let anchor =
        generate::trust_anchor("root.linkerd.cluster.local", now, 10 * day).expect("anchor");
    let other = generate::trust_anchor("someone-else", now, 10 * day).expect("other");
    let foreign =
        generate::issuer(&other, "identity.linkerd.cluster.local", now, day).expect("issuer");
    write_material(dir.path(), &anchor, &foreign);
    let path = |name: &str| dir.path().join(name).display().to_string();
    let out = install_with_files(dir.path());
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing is rendered");
    let err = text(&out.stderr);
    assert!(
        err.contains("--identity-issuer-certificate-file") && err.contains("does not chain"),
        "{err}"
    );

    let out = mesh(&["install", "--identity-trust-anchors-file", &path("ca.crt")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--identity-issuer-certificate-file"), "{err}");

    let out = mesh(&[
        "identity",
        "inspect",
        &path("issuer.crt"),
        "--trust-anchors-file",
        &path("ca.crt"),
    ]);
    assert!(!out.status.success(), "an untrusted chain fails inspect");
    assert!(
        text(&out.stdout).contains("does not chain"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn inspect_explains_a_chain_in_text_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86400);
    let now = SystemTime::now();
    let anchor =
        generate::trust_anchor("root.linkerd.cluster.local", now, 10 * day).expect("anchor");
    let issuer = generate::issuer(&anchor, "identity.linkerd.cluster.local", now, 365 * day)
        .expect("issuer");
    std::fs::write(dir.path().join("ca.crt"), &anchor.cert_pem).expect("write");
    std::fs::write(dir.path().join("issuer.crt"), &issuer.cert_pem).expect("write");
    let ca = dir.path().join("ca.crt").display().to_string();
    let crt = dir.path().join("issuer.crt").display().to_string();
    let out = mesh(&["identity", "inspect", &crt, "--trust-anchors-file", &ca]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("CN=identity.linkerd.cluster.local"),
        "{shown}"
    );
    assert!(
        shown.contains("chains to trust anchor CN=root.linkerd.cluster.local"),
        "{shown}"
    );
    let json = mesh(&[
        "identity",
        "inspect",
        &crt,
        "--trust-anchors-file",
        &ca,
        "-o",
        "json",
    ]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(value["anchor"], "CN=root.linkerd.cluster.local");
    assert_eq!(value["certificates"][0]["is_ca"], true);
}

/// Renders `mesh install` with `extra` arguments and parses the objects.
fn render(extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["install"];
    args.extend(extra);
    let out = mesh(&args);
    assert!(out.status.success(), "mesh install: {}", text(&out.stderr));
    serde_saphyr::from_multiple(&text(&out.stdout)).expect("YAML documents")
}

fn find<'a>(objects: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn args_of(objects: &[serde_json::Value], deployment: &str) -> Vec<String> {
    let args = &find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
        [0]["args"];
    serde_json::from_value(args.clone()).expect("args")
}

const CONTROLLERS: [&str; 4] = [
    "linkerd-identity",
    "linkerd-destination",
    "linkerd-policy",
    "linkerd-proxy-injector",
];

#[tokio::test]
async fn ha_renders_spread_replicas_with_disruption_budgets_that_the_api_server_accepts() {
    let cluster = shared_cluster().await;
    let plain = render(&[]);
    assert!(plain.iter().all(|o| o["kind"] != "PodDisruptionBudget"));
    for name in CONTROLLERS {
        let deployment = find(&plain, "Deployment", name);
        assert_eq!(deployment["spec"]["replicas"], 1, "{name}");
        assert!(deployment["spec"]["template"]["spec"]["affinity"].is_null());
    }

    let ha = render(&["--ha"]);
    for name in CONTROLLERS {
        let deployment = find(&ha, "Deployment", name);
        assert_eq!(deployment["spec"]["replicas"], 3, "{name}");
        let anti = &deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
        assert_eq!(
            anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
            "kubernetes.io/hostname",
            "{name}: never two replicas on one node"
        );
        assert_eq!(
            anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"],
            "topology.kubernetes.io/zone"
        );
        let budget = find(&ha, "PodDisruptionBudget", name);
        assert_eq!(budget["spec"]["maxUnavailable"], 1, "{name}");
        assert_eq!(
            budget["spec"]["selector"]["matchLabels"],
            deployment["spec"]["selector"]["matchLabels"],
            "{name}: the budget covers the Deployment's pods"
        );
    }
    // --controller-replicas still wins over --ha.
    let two = render(&["--ha", "--controller-replicas", "2"]);
    assert_eq!(
        find(&two, "Deployment", "linkerd-identity")["spec"]["replicas"],
        2
    );

    // A server-side dry run does not create the namespace the rest needs.
    let namespace = kubectl(
        &cluster.kubeconfig(),
        &["apply", "-f", "-"],
        Some(b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: linkerd\n"),
    );
    assert!(namespace.status.success(), "{}", text(&namespace.stderr));
    let out = mesh(&["install", "--ha"]);
    let checked = kubectl(
        &cluster.kubeconfig(),
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&out.stdout),
    );
    assert!(
        checked.status.success(),
        "the API server accepts the HA manifests: {}",
        text(&checked.stderr)
    );
}

/// The images every component and injected pod would pull, as rendered
/// for `extra`: (controller image of each Deployment, injector's proxy
/// image flags).
fn images(extra: &[&str]) -> (Vec<String>, Vec<String>) {
    let objects = render(extra);
    let controllers = CONTROLLERS
        .iter()
        .map(|name| {
            find(&objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .expect("image")
                .to_owned()
        })
        .collect();
    let injector = args_of(&objects, "linkerd-proxy-injector")
        .into_iter()
        .filter(|arg| arg.starts_with("--proxy-image=") || arg.starts_with("--proxy-init-image="))
        .collect();
    (controllers, injector)
}

#[test]
fn a_registry_names_every_image_and_an_explicit_image_wins() {
    let tag = concat!("v", env!("CARGO_PKG_VERSION"));
    let (controllers, injector) = images(&[]);
    assert!(
        controllers
            .iter()
            .all(|image| *image == format!("mesh/controller:{tag}")),
        "{controllers:?}"
    );
    assert_eq!(
        injector,
        ["--proxy-image=mesh/proxy"],
        "the proxy image is named, the default too; its image runs the init container"
    );

    let (controllers, injector) = images(&["--registry", "registry.example:5000/acme/"]);
    assert!(
        controllers
            .iter()
            .all(|image| *image == format!("registry.example:5000/acme/controller:{tag}")),
        "{controllers:?}"
    );
    assert_eq!(injector, ["--proxy-image=registry.example:5000/acme/proxy"]);

    // Linkerd's value names, and a flag over a value.
    let (controllers, injector) = images(&[
        "--set",
        "imageRegistry=values.example/mesh",
        "--set",
        "proxy.image.version=v9.9.9",
        "--set",
        "proxyInit.image.name=other.example/init",
        "--controller-image",
        "flag.example/controller:dev",
    ]);
    assert!(
        controllers
            .iter()
            .all(|image| image == "flag.example/controller:dev"),
        "{controllers:?}"
    );
    assert_eq!(
        injector,
        [
            "--proxy-image=values.example/mesh/proxy",
            "--proxy-init-image=other.example/init:v9.9.9",
        ]
    );
}

/// What `linkerd-config` stores is a values file: rendering from it gives
/// the same control plane as the flags it was rendered with (the basis of
/// an upgrade that keeps what the install chose).
#[test]
fn the_stored_values_render_the_same_control_plane() {
    let flags = [
        "--ha",
        "--registry",
        "registry.example/acme",
        "--cluster-domain",
        "corp.example",
        "--proxy-log-level",
        "debug",
        "--webhook-failure-policy",
        "fail",
        "--set",
        "proxy.defaultInboundPolicy=cluster-authenticated",
    ];
    let first = render(&flags);
    let stored = find(&first, "ConfigMap", "linkerd-config")["data"]["values"]
        .as_str()
        .expect("values")
        .to_owned();
    assert!(
        !stored.contains("PRIVATE KEY"),
        "no key is stored:\n{stored}"
    );
    // The anchors go with their issuer, which stays in its Secret: an
    // upgrade reads both from the cluster; here they are generated anew.
    let mut values: serde_json::Value = serde_saphyr::from_str(&stored).expect("YAML");
    values
        .as_object_mut()
        .expect("map")
        .remove("identityTrustAnchorsPEM")
        .expect("the anchors are stored");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("values.yaml");
    std::fs::write(&path, values.to_string()).expect("write values");
    let again = render(&["--values", &path.display().to_string()]);
    let workloads = |objects: &[serde_json::Value]| -> Vec<serde_json::Value> {
        objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "PodDisruptionBudget")
            .map(|o| {
                let mut o = o.clone();
                // Checksums of the generated certificates differ.
                if let Some(annotations) =
                    o["spec"]["template"]["metadata"]["annotations"].as_object_mut()
                {
                    annotations.retain(|k, _| !k.contains("checksum"));
                }
                o
            })
            .collect()
    };
    assert_eq!(
        workloads(&first),
        workloads(&again),
        "stored values:\n{stored}"
    );
    let webhook = |objects: &[serde_json::Value]| {
        find(
            objects,
            "MutatingWebhookConfiguration",
            "linkerd-proxy-injector-webhook-config",
        )["webhooks"][0]["failurePolicy"]
            .clone()
    };
    assert_eq!(webhook(&again), "Fail");
    let stored_again = find(&again, "ConfigMap", "linkerd-config")["data"]["values"].clone();
    let mut stored_again: serde_json::Value =
        serde_saphyr::from_str(stored_again.as_str().expect("values")).expect("YAML");
    stored_again
        .as_object_mut()
        .expect("map")
        .remove("identityTrustAnchorsPEM");
    assert_eq!(values, stored_again);
}

/// An issuer written by someone else (cert-manager): mesh renders no
/// issuer Secret, only the anchors it is given (none with an external CA
/// too), stores the scheme, and refuses an issuer given alongside.
#[test]
fn an_external_issuer_is_not_rendered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86400);
    let anchor = generate::trust_anchor("root.linkerd.cluster.local", SystemTime::now(), day)
        .expect("anchor");
    let issuer = generate::issuer(
        &anchor,
        "identity.linkerd.cluster.local",
        SystemTime::now(),
        day,
    )
    .expect("issuer");
    write_material(dir.path(), &anchor, &issuer);
    let ca = dir.path().join("ca.crt").display().to_string();
    let objects = render(&[
        "--ignore-cluster",
        "--identity-external-issuer",
        "--identity-trust-anchors-file",
        &ca,
    ]);
    assert!(
        !objects
            .iter()
            .any(|o| o["metadata"]["name"] == "linkerd-identity-issuer" && o["kind"] == "Secret"),
        "no issuer Secret is rendered"
    );
    assert_eq!(
        find(&objects, "ConfigMap", "linkerd-identity-trust-roots")["data"]["ca-bundle.crt"],
        anchor.cert_pem.as_str()
    );
    let volumes =
        &find(&objects, "Deployment", "linkerd-identity")["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes
            .to_string()
            .contains("\"secretName\":\"linkerd-identity-issuer\""),
        "the identity service still reads the Secret cert-manager writes: {volumes}"
    );
    let stored = find(&objects, "ConfigMap", "linkerd-config")["data"]["values"]
        .as_str()
        .expect("values")
        .to_owned();
    assert!(stored.contains("scheme: kubernetes.io/tls"), "{stored}");

    let objects = render(&[
        "--ignore-cluster",
        "--set",
        "identity.issuer.scheme=kubernetes.io/tls",
        "--set",
        "identity.externalCA=true",
    ]);
    assert!(
        !objects
            .iter()
            .any(|o| o["metadata"]["name"] == "linkerd-identity-trust-roots"
                || o["metadata"]["name"] == "linkerd-identity-issuer"),
        "with an external CA, neither the trust roots nor the issuer are rendered"
    );

    let issuer_file = dir.path().join("issuer.crt").display().to_string();
    let key_file = dir.path().join("issuer.key").display().to_string();
    for (args, expected) in [
        (
            vec![
                "install",
                "--ignore-cluster",
                "--identity-external-issuer",
                "--identity-trust-anchors-file",
                &ca,
                "--identity-issuer-certificate-file",
                &issuer_file,
                "--identity-issuer-key-file",
                &key_file,
            ],
            "give no issuer certificate or key",
        ),
        (
            vec!["install", "--ignore-cluster", "--identity-external-issuer"],
            "needs the trust anchors",
        ),
        (
            vec![
                "install",
                "--ignore-cluster",
                "--set",
                "identity.issuer.scheme=cert-manager",
            ],
            "identity.issuer.scheme",
        ),
    ] {
        let out = mesh(&args);
        assert!(!out.status.success(), "{args:?} is refused");
        assert!(out.stdout.is_empty(), "nothing is rendered for {args:?}");
        let error = text(&out.stderr);
        assert!(error.contains(expected), "{args:?}: {error}");
    }
}

/// `--ha` sets requests and limits on every control-plane container and
/// every injected proxy, as Linkerd's HA values do; a value over it wins,
/// and a quantity that is not one is named.
#[test]
fn ha_sets_resources_and_a_value_overrides_them() {
    let objects = render(&["--ha", "--ignore-cluster"]);
    for name in CONTROLLERS {
        let resources = &find(&objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
            [0]["resources"];
        assert!(
            resources["requests"]["cpu"].is_string() && resources["limits"]["memory"] == "250Mi",
            "{name}: {resources}"
        );
    }
    let injector = args_of(&objects, "linkerd-proxy-injector");
    for flag in [
        "--proxy-cpu-request=100m",
        "--proxy-memory-request=20Mi",
        "--proxy-memory-limit=250Mi",
    ] {
        assert!(injector.contains(&flag.to_owned()), "{flag}: {injector:?}");
    }

    let objects = render(&[
        "--ha",
        "--ignore-cluster",
        "--set",
        "identityResources.memory.limit=1Gi",
    ]);
    let identity = &find(&objects, "Deployment", "linkerd-identity")["spec"]["template"]["spec"]["containers"]
        [0]["resources"];
    assert_eq!(identity["limits"]["memory"], "1Gi", "{identity}");
    assert!(
        identity["requests"].is_null(),
        "the value replaces --ha's identity resources: {identity}"
    );

    let objects = render(&["--ignore-cluster"]);
    assert!(
        find(&objects, "Deployment", "linkerd-identity")["spec"]["template"]["spec"]["containers"]
            [0]["resources"]
            .is_null(),
        "without --ha, no resources are set"
    );

    let out = mesh(&[
        "install",
        "--ignore-cluster",
        "--set",
        "proxy.resources.cpu.request=lots",
    ]);
    assert!(!out.status.success() && out.stdout.is_empty());
    let error = text(&out.stderr);
    assert!(
        error.contains("proxy.resources.cpu.request") && error.contains("lots"),
        "{error}"
    );
}

#[test]
fn a_values_file_sets_what_flags_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "clusterDomain: example.org\n\
         controllerReplicas: 2\n\
         webhookFailurePolicy: Fail\n\
         identity:\n  issuer:\n    issuanceLifetime: 12h\n\
         proxy:\n  image:\n    version: v9.9.9\n  logLevel: debug\n",
    )
    .expect("write values");
    let path = values.display().to_string();
    let objects = render(&["--values", &path]);
    assert_eq!(
        find(&objects, "Deployment", "linkerd-identity")["spec"]["replicas"],
        2
    );
    assert!(
        args_of(&objects, "linkerd-destination")
            .contains(&"--cluster-domain=example.org".to_owned())
    );
    assert!(
        args_of(&objects, "linkerd-identity")
            .contains(&"--identity-issuance-lifetime=12h".to_owned())
    );
    let injector = args_of(&objects, "linkerd-proxy-injector");
    assert!(
        injector.contains(&"--proxy-version=v9.9.9".to_owned()),
        "{injector:?}"
    );
    assert!(
        injector.contains(&"--proxy-log-level=debug".to_owned()),
        "{injector:?}"
    );
    let webhook = find(
        &objects,
        "MutatingWebhookConfiguration",
        "linkerd-proxy-injector-webhook-config",
    );
    assert_eq!(webhook["webhooks"][0]["failurePolicy"], "Fail");

    // A flag wins over the file.
    let objects = render(&["--values", &path, "--cluster-domain", "flag.example"]);
    assert!(
        args_of(&objects, "linkerd-destination")
            .contains(&"--cluster-domain=flag.example".to_owned())
    );

    // Mistakes are named, and nothing is rendered.
    for (content, expected) in [
        ("clusterDomian: typo.example\n", "clusterDomian"),
        ("controllerReplicas: many\n", "controllerReplicas"),
        (
            "identity:\n  issuer:\n    issuanceLifetime: soon\n",
            "identity.issuer.issuanceLifetime",
        ),
        ("proxyInjector:\n  crtPEM: x\n", "proxyInjector"),
    ] {
        std::fs::write(&values, content).expect("write values");
        let out = mesh(&["install", "--values", &path, "--set", "proxy.logLevel=info"]);
        assert!(!out.status.success(), "{content:?} is refused");
        assert!(out.stdout.is_empty(), "nothing is rendered for {content:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(expected) && err.contains(&path),
            "{content:?}: {err}"
        );
    }
}

#[test]
fn set_writes_helm_values_and_the_default_inbound_policy_reaches_the_policy_controller() {
    let objects = render(&[
        "--set",
        "proxy.defaultInboundPolicy=cluster-authenticated",
        "--set",
        "clusterNetworks=10.0.0.0/8,fd00::/8",
        "--set",
        "controllerReplicas=2",
    ]);
    let policy = args_of(&objects, "linkerd-policy");
    assert!(
        policy.contains(&"--default-policy=cluster-authenticated".to_owned())
            && policy.contains(&"--cluster-networks=10.0.0.0/8,fd00::/8".to_owned()),
        "{policy:?}"
    );
    assert_eq!(
        find(&objects, "Deployment", "linkerd-policy")["spec"]["replicas"],
        2
    );
    let service = find(&objects, "Service", "linkerd-policy");
    assert_eq!(service["spec"]["ports"][0]["port"], 8090);
    let defaults = args_of(&render(&[]), "linkerd-policy");
    assert!(defaults.contains(&"--default-policy=all-unauthenticated".to_owned()));

    for (set, expected) in [
        (
            "proxy.defaultInboundPolicy=open",
            "proxy.defaultInboundPolicy",
        ),
        ("clusterNetworks=10.0.0.0/33", "clusterNetworks"),
        ("proxy.defaultInboundPolicyy=deny", "defaultInboundPolicyy"),
        ("proxy", "key.path=value"),
        ("clusterDomain.x=1", "clusterDomain"),
    ] {
        let out = mesh(&["install", "--set", set]);
        assert!(!out.status.success(), "--set {set} is refused");
        assert!(out.stdout.is_empty(), "nothing is rendered for --set {set}");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "--set {set}: {err}");
    }
}

#[test]
fn uninstall_names_the_webhook_first_then_everything_cluster_wide() {
    let out = mesh(&["uninstall"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let objects: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text(&out.stdout)).expect("YAML documents");
    assert_eq!(
        objects[0]["kind"], "MutatingWebhookConfiguration",
        "the webhook goes first, so no pod waits on a disappearing injector"
    );
    for (kind, name) in [
        ("Namespace", "linkerd"),
        ("ClusterRole", "linkerd-linkerd-destination"),
        ("ClusterRoleBinding", "linkerd-linkerd-identity"),
        ("CustomResourceDefinition", "serviceprofiles.linkerd.io"),
        ("CustomResourceDefinition", "servers.policy.linkerd.io"),
        ("CustomResourceDefinition", "links.multicluster.linkerd.io"),
    ] {
        find(&objects, kind, name);
    }
}
