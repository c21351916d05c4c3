//! Authorization policy on the local clusters, as a user follows Linkerd's
//! guide: the guide's Server, AuthorizationPolicy and MeshTLSAuthentication
//! (all `policy.linkerd.io/v1beta3`) applied verbatim but for the
//! namespace, in front of a `my-service` on 8080.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use mesh_podinfo::report::LoadSecond;

use crate::kube_util::{self, Finished};
use crate::mesh;
use crate::multicluster::wait_for;
use crate::provider::{Cluster, Provider};
use crate::scenarios::{PODINFO, ROLLOUT, curl_with_retries, default_identity};

/// The guide's manifests, in namespace `ns`.
fn guide_manifests(ns: &str) -> String {
    format!(
        "apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {{name: my-service-server, namespace: {ns}}}
spec: {{podSelector: {{matchLabels: {{app: my-service}}}}, port: 8080, proxyProtocol: HTTP/2}}
---
apiVersion: policy.linkerd.io/v1beta3
kind: AuthorizationPolicy
metadata: {{name: my-service-authn, namespace: {ns}}}
spec:
  targetRef: {{group: policy.linkerd.io, kind: Server, name: my-service-server}}
  requiredAuthenticationRefs: [{{name: meshed-only, kind: MeshTLSAuthentication, group: policy.linkerd.io}}]
---
apiVersion: policy.linkerd.io/v1beta3
kind: MeshTLSAuthentication
metadata: {{name: meshed-only, namespace: {ns}}}
spec: {{identities: [\"*.{ns}.serviceaccount.identity.linkerd.cluster.local\"]}}
"
    )
}

/// A curl of `url` (`--fail`, retried only on connection refused, while a
/// new Service is not yet routable), meshed unless `unmeshed`.
pub(crate) async fn curl_once(
    client: &kube::Client,
    ns: &str,
    name: &str,
    url: &str,
    unmeshed: bool,
) -> anyhow::Result<Finished> {
    let annotations = if unmeshed {
        serde_json::json!({"linkerd.io/inject": "disabled"})
    } else {
        serde_json::json!({})
    };
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "curlimages/curl:8.10.1",
                // Retried only while the new Service is not routable yet
                // (connection refused); a refusal by policy is final.
                "command": ["curl", "-sS", "--fail", "--retry", "10", "--retry-connrefused", "--retry-delay", "1",
                    "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", url],
            }],
        }
    }))?;
    kube_util::run_pod(client, ns, pod, Duration::from_secs(60)).await
}

/// How many seconds in a row [`until_load_answers`] waits for.
const STEADY_SECONDS: usize = 3;

/// Waits until the load pod of `ns` has printed, after its first `after`
/// lines, [`STEADY_SECONDS`] seconds in a row with requests, each of which
/// `holds`; returns how many lines it had printed then.
async fn until_load(
    client: &kube::Client,
    ns: &str,
    after: usize,
    what: &str,
    holds: impl Fn(&LoadSecond) -> bool,
) -> anyhow::Result<usize> {
    let printed = std::sync::atomic::AtomicUsize::new(after);
    wait_for(
        &format!("the load in {ns}: {what} for {STEADY_SECONDS} s"),
        ROLLOUT,
        || async {
            let seconds = mesh_podinfo::drive::load_seconds(client, ns, "load", "main").await;
            printed.store(seconds.len(), std::sync::atomic::Ordering::Relaxed);
            let recent: Vec<_> = seconds
                .iter()
                .skip(after)
                .rev()
                .take(STEADY_SECONDS)
                .collect();
            Ok(recent.len() == STEADY_SECONDS
                && recent.iter().all(|s| s.requests() > 0 && holds(s)))
        },
    )
    .await?;
    Ok(printed.into_inner())
}

/// [`until_load`] every request answered `code`.
async fn until_load_answers(
    client: &kube::Client,
    ns: &str,
    after: usize,
    code: &str,
) -> anyhow::Result<usize> {
    until_load(client, ns, after, &format!("every answer {code}"), |s| {
        s.codes.get(code).copied() == Some(s.requests())
    })
    .await
}

/// The guide's policy in front of `my-service`: a meshed pod of the
/// namespace gets in; an unmeshed pod and a meshed pod of another namespace
/// are refused (403), and the refusals and the admission are counted by
/// the server's proxy with the Server's and the policy's names; `mesh
/// diagnostics policy` and `mesh authz` show the controller's answer;
/// `mesh check` names the mesh-only `v1beta3` spelling and a refused
/// Server; editing the MeshTLSAuthentication to name the other namespace
/// swaps who gets in, and refuses the next requests of a client whose
/// connections are open. A namespace annotated `deny` refuses a meshed pod
/// while kubelet's HTTP probes keep its pods Ready.
pub async fn mesh_policy_the_guides_manifests_are_enforced(
    p: &impl Provider,
) -> anyhow::Result<()> {
    mesh::ensure_installed(p, Cluster::West).await?;
    let west = p.client(Cluster::West);
    let prod = kube_util::meshed_namespace(&west, "e2e-production").await?;
    let other = kube_util::meshed_namespace(&west, "e2e-elsewhere").await?;
    let my_service = PODINFO
        .replace("9898", "8080")
        .replace("app: podinfo", "app: my-service")
        .replace("name: podinfo", "name: my-service");
    kube_util::apply(&west, &prod, &my_service).await?;
    kube_util::wait_rollout(&west, &prod, "my-service", ROLLOUT).await?;
    let url = format!("http://my-service.{prod}.svc.cluster.local:8080/");
    // Before any policy: the cluster default lets everyone in.
    let open =
        crate::scenarios::curl(&west, &other, "before-policy", &curl_with_retries(&url)).await?;
    anyhow::ensure!(
        open.succeeded,
        "before the policy, another namespace gets in: {}",
        open.logs
    );

    kube_util::apply(&west, &prod, &guide_manifests(&prod)).await?;
    let attempt = std::sync::atomic::AtomicUsize::new(0);
    let next = |what: &str| {
        let n = attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{what}-{n}")
    };
    wait_for(
        "a meshed pod of another namespace refused",
        ROLLOUT,
        || async {
            let answer = curl_once(&west, &other, &next("elsewhere"), &url, false).await?;
            Ok(!answer.succeeded && answer.logs.contains("403"))
        },
    )
    .await?;
    let allowed =
        crate::scenarios::curl(&west, &prod, "same-namespace", &curl_with_retries(&url)).await?;
    anyhow::ensure!(
        allowed.succeeded,
        "a meshed pod of {prod} gets in: {}",
        allowed.logs
    );
    let unmeshed = curl_once(&west, &prod, "unmeshed", &url, true).await?;
    anyhow::ensure!(
        !unmeshed.succeeded && unmeshed.logs.contains("403"),
        "an unmeshed pod is refused with 403: {}",
        unmeshed.logs
    );

    // What the server's proxies counted.
    let pods = kube_util::ready_pods(&west, &prod, "app=my-service").await?;
    let (mut allow, mut deny) = (0.0, 0.0);
    for pod in pods.iter().filter_map(|p| p.metadata.name.as_deref()) {
        let metrics = mesh::proxy_metrics(&west, &prod, pod).await?;
        allow += mesh::sum(
            &metrics,
            "inbound_http_authz_allow_total",
            &[
                ("srv_name", "my-service-server"),
                ("authz_kind", "authorizationpolicy"),
                ("authz_name", "my-service-authn"),
                ("client_id", &default_identity(&prod)),
            ],
        );
        deny += mesh::sum(
            &metrics,
            "inbound_http_authz_deny_total",
            &[("srv_name", "my-service-server")],
        );
    }
    anyhow::ensure!(
        allow >= 1.0 && deny >= 2.0,
        "the proxies count {allow} admitted and {deny} refused requests"
    );

    // What the CLI shows is the controller's own answer.
    let pod = pods
        .first()
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| anyhow::anyhow!("no my-service pod"))?;
    let diagnostics = mesh::mesh(
        p,
        Cluster::West,
        &[
            "diagnostics",
            "policy",
            "-n",
            &prod,
            &pod,
            "8080",
            "-o",
            "json",
        ],
    )
    .await?;
    let served: serde_json::Value = serde_json::from_str(&diagnostics.stdout).map_err(|e| {
        anyhow::anyhow!(
            "mesh diagnostics policy -o json: {e}: {}",
            diagnostics.stdout
        )
    })?;
    anyhow::ensure!(
        served["server"]["name"] == "my-service-server"
            && served["authorizations"][0]["name"] == "my-service-authn",
        "mesh diagnostics policy shows the Server and its policy: {served}"
    );
    let authz = mesh::mesh(
        p,
        Cluster::West,
        &["authz", "-n", &prod, "deploy/my-service"],
    )
    .await?;
    anyhow::ensure!(
        authz.success
            && authz.stdout.contains("my-service-server")
            && authz.stdout.contains("my-service-authn"),
        "mesh authz lists the Server and its policy: {}{}",
        authz.stdout,
        authz.stderr
    );
    // mesh check: the controller serves; the guide's v1beta3 spelling is
    // named as mesh-only; a broken Server is named with its field.
    kube_util::apply(
        &west,
        &prod,
        &format!(
            "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {{name: broken, namespace: {prod}}}\n\
             spec: {{podSelector: {{matchLabels: {{app: my-service}}}}, port: 9797, accessPolicy: open-to-all}}\n"
        ),
    )
    .await?;
    let check_result = |checks: &serde_json::Value, description: &str| {
        checks["categories"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["checks"].as_array().into_iter().flatten())
            .find(|c| c["description"] == description)
            .cloned()
            .unwrap_or_default()
    };
    wait_for("mesh check naming the refused Server", ROLLOUT, || async {
        let out = mesh::mesh(p, Cluster::West, &["check", "--wait", "1m", "-o", "json"]).await?;
        let checks: serde_json::Value = serde_json::from_str(&out.stdout)
            .map_err(|e| anyhow::anyhow!("mesh check -o json: {e}: {}", out.stdout))?;
        let serves = check_result(&checks, "the policy controller serves policies");
        anyhow::ensure!(
            serves["result"] == "success",
            "the policy controller serves: {serves}"
        );
        let versions = check_result(&checks, "policy objects use versions Linkerd serves");
        anyhow::ensure!(
            versions["result"] == "warning"
                && versions["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(&format!("{prod}/my-service-authn"))),
            "the v1beta3 AuthorizationPolicy is named as mesh-only: {versions}"
        );
        let refused = check_result(
            &checks,
            "the policy controller accepted every policy object",
        );
        Ok(refused["result"] == "warning"
            && refused["error"].as_str().is_some_and(|e| {
                e.contains(&format!("{prod}/broken")) && e.contains("spec.accessPolicy")
            }))
    })
    .await?;

    // A client with open connections: a load from `prod` is admitted...
    kube_util::start_load(&west, &prod, &url, 20).await?;
    let admitted = until_load_answers(&west, &prod, 0, "200").await?;

    // The MeshTLSAuthentication edited: now only the other namespace.
    kube_util::apply(
        &west,
        &prod,
        &format!(
            "apiVersion: policy.linkerd.io/v1beta3\nkind: MeshTLSAuthentication\n\
             metadata: {{name: meshed-only, namespace: {prod}}}\n\
             spec: {{identities: [\"*.{other}.serviceaccount.identity.linkerd.cluster.local\"]}}\n"
        ),
    )
    .await?;
    // ...and its next requests, on the connections its proxy holds open,
    // are refused.
    until_load_answers(&west, &prod, admitted, "403").await?;
    wait_for("the other namespace let in once named", ROLLOUT, || async {
        Ok(
            curl_once(&west, &other, &next("elsewhere-named"), &url, false)
                .await?
                .succeeded,
        )
    })
    .await?;
    let refused = curl_once(&west, &prod, "same-namespace-unnamed", &url, false).await?;
    anyhow::ensure!(
        !refused.succeeded && refused.logs.contains("403"),
        "{prod}'s own pods are refused once the authentication names another namespace: {}",
        refused.logs
    );
    kube_util::delete_namespace(&west, &prod).await;

    // `deny` on a namespace: nothing gets in but kubelet's HTTP probes, so
    // its pods still become Ready.
    let denied = kube_util::meshed_namespace(&west, "e2e-denied").await?;
    crate::mesh::kubectl(
        p,
        Cluster::West,
        &[
            "annotate",
            "namespace",
            &denied,
            "config.linkerd.io/default-inbound-policy=deny",
        ],
        None,
    )
    .await?
    .ok("annotating the namespace deny")?;
    let probed = PODINFO.replace(
        "          exec:\n            command:\n            - podcli\n            - check\n            - http\n            - localhost:9898/readyz\n",
        "          httpGet:\n            path: /readyz\n            port: 9898\n",
    );
    anyhow::ensure!(
        probed != PODINFO,
        "podinfo's readiness probe became an HTTP probe"
    );
    kube_util::apply(&west, &denied, &probed).await?;
    kube_util::wait_rollout(&west, &denied, "podinfo", ROLLOUT)
        .await
        .map_err(|e| e.context("under deny, kubelet's HTTP probes still reach podinfo"))?;
    let url = format!("http://podinfo.{denied}.svc.cluster.local:9898/");
    let refused = curl_once(&west, &other, &next("into-denied"), &url, false).await?;
    anyhow::ensure!(
        !refused.succeeded && refused.logs.contains("403"),
        "a meshed pod is refused by a deny namespace: {}",
        refused.logs
    );
    kube_util::delete_namespace(&west, &denied).await;
    kube_util::delete_namespace(&west, &other).await;
    Ok(())
}

/// A Server for podinfo's `http` port (by name) as opaque TCP, admitting
/// only meshed clients of `ns`.
fn opaque_server(ns: &str) -> String {
    format!(
        "apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {{name: podinfo-opaque, namespace: {ns}}}
spec: {{podSelector: {{matchLabels: {{app: podinfo}}}}, port: http, proxyProtocol: opaque}}
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: podinfo-same-namespace, namespace: {ns}}}
spec:
  targetRef: {{group: policy.linkerd.io, kind: Server, name: podinfo-opaque}}
  requiredAuthenticationRefs: [{{name: same-namespace, kind: MeshTLSAuthentication, group: policy.linkerd.io}}]
---
apiVersion: policy.linkerd.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {{name: same-namespace, namespace: {ns}}}
spec: {{identities: [\"*.{ns}.serviceaccount.identity.linkerd.cluster.local\"]}}
"
    )
}

/// The sum of `metric` with `labels` over the proxies of `ns`'s podinfo.
async fn podinfo_count(
    client: &kube::Client,
    ns: &str,
    metric: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for pod in kube_util::ready_pods(client, ns, "app=podinfo").await? {
        let name = pod.metadata.name.unwrap_or_default();
        total += mesh::sum(
            &mesh::proxy_metrics(client, ns, &name).await?,
            metric,
            labels,
        );
    }
    Ok(total)
}

/// `audit` on a namespace lets an unmeshed client in and counts it as
/// admitted by `audit`. Then an opaque Server on podinfo's port (named
/// `http`) admitting only the namespace's meshed pods: a meshed load gets
/// through as TCP; an unmeshed client's connection is refused; once the
/// AuthorizationPolicy is deleted a connection held open (a request podinfo
/// answers after a minute) is closed at once and new ones are refused, and
/// podinfo's proxies count each.
pub async fn mesh_policy_audit_counts_and_an_opaque_server_refuses_and_closes(
    p: &impl Provider,
) -> anyhow::Result<()> {
    mesh::ensure_installed(p, Cluster::West).await?;
    let west = p.client(Cluster::West);
    let ns = kube_util::meshed_namespace(&west, "e2e-audit").await?;
    mesh::kubectl(
        p,
        Cluster::West,
        &[
            "annotate",
            "namespace",
            &ns,
            "config.linkerd.io/default-inbound-policy=audit",
        ],
        None,
    )
    .await?
    .ok("annotating the namespace audit")?;
    crate::scenarios::deploy_podinfo(&west, &ns).await?;
    let url = format!("http://podinfo.{ns}.svc.cluster.local:9898/");
    let unmeshed = curl_once(&west, &ns, "unmeshed-audited", &url, true).await?;
    anyhow::ensure!(
        unmeshed.succeeded,
        "audit lets an unmeshed client in: {}",
        unmeshed.logs
    );
    let audited = podinfo_count(
        &west,
        &ns,
        "inbound_http_authz_allow_total",
        &[
            ("srv_name", "audit"),
            ("authz_kind", "default"),
            ("authz_name", "audit"),
            ("tls", "no_identity"),
        ],
    )
    .await?;
    anyhow::ensure!(
        audited >= 1.0,
        "podinfo's proxies count the unmeshed request as admitted by audit ({audited})"
    );

    // The opaque Server. Clients learn that the port is opaque from the
    // Service, as with Linkerd.
    mesh::kubectl(
        p,
        Cluster::West,
        &[
            "annotate",
            "-n",
            &ns,
            "service",
            "podinfo",
            "config.linkerd.io/opaque-ports=9898",
        ],
        None,
    )
    .await?
    .ok("annotating podinfo's Service opaque")?;
    kube_util::apply(&west, &ns, &opaque_server(&ns)).await?;
    let attempt = std::sync::atomic::AtomicUsize::new(0);
    wait_for(
        "an unmeshed client refused by the opaque Server",
        ROLLOUT,
        || async {
            let n = attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let answer = curl_once(&west, &ns, &format!("unmeshed-opaque-{n}"), &url, true).await?;
            // Refused as TCP: the connection closes before any HTTP answer.
            Ok(!answer.succeeded && !answer.logs.contains("403"))
        },
    )
    .await?;
    kube_util::start_load(&west, &ns, &url, 20).await?;
    let admitted = until_load_answers(&west, &ns, 0, "200").await?;
    let allowed = podinfo_count(
        &west,
        &ns,
        "inbound_tcp_authz_allow_total",
        &[
            ("srv_name", "podinfo-opaque"),
            ("authz_name", "podinfo-same-namespace"),
        ],
    )
    .await?;
    anyhow::ensure!(
        allowed >= 1.0,
        "the meshed load's connections are counted as admitted"
    );

    // A connection held open: a meshed request podinfo answers only after
    // a minute.
    let slow: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "slow", "labels": {"app": "slow"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "curlimages/curl:8.10.1",
                "command": ["curl", "-sS", "--max-time", "90", &format!("{url}delay/60")],
            }],
        }
    }))?;
    let pods = kube::Api::<Pod>::namespaced(west.clone(), &ns);
    pods.create(&kube::api::PostParams::default(), &slow)
        .await?;
    let phase = |pods: kube::Api<Pod>| async move {
        Ok::<_, anyhow::Error>(
            pods.get("slow")
                .await?
                .status
                .and_then(|s| s.phase)
                .unwrap_or_default(),
        )
    };
    wait_for("the slow request under way", ROLLOUT, || async {
        Ok(phase(pods.clone()).await? == "Running")
    })
    .await?;
    // Its connection is admitted (and open) once the proxy counts it.
    wait_for(
        "the slow request's connection admitted",
        ROLLOUT,
        || async {
            Ok(podinfo_count(
                &west,
                &ns,
                "inbound_tcp_authz_allow_total",
                &[
                    ("srv_name", "podinfo-opaque"),
                    ("client_id", &default_identity(&ns)),
                ],
            )
            .await?
                > allowed)
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    mesh::kubectl(
        p,
        Cluster::West,
        &[
            "delete",
            "-n",
            &ns,
            "authorizationpolicy.policy.linkerd.io",
            "podinfo-same-namespace",
        ],
        None,
    )
    .await?
    .ok("deleting the AuthorizationPolicy")?;
    // The open connection is closed long before podinfo would answer.
    wait_for(
        "the slow request's connection closed",
        Duration::from_secs(30),
        || async { Ok(phase(pods.clone()).await? == "Failed") },
    )
    .await?;
    until_load(
        &west,
        &ns,
        admitted,
        "no request answered by podinfo",
        |s| !s.codes.contains_key("200"),
    )
    .await?;
    let terminated = podinfo_count(
        &west,
        &ns,
        "inbound_tcp_authz_terminate_total",
        &[("srv_name", "podinfo-opaque")],
    )
    .await?;
    let denied = podinfo_count(
        &west,
        &ns,
        "inbound_tcp_authz_deny_total",
        &[("srv_name", "podinfo-opaque")],
    )
    .await?;
    anyhow::ensure!(
        terminated >= 1.0 && denied >= 1.0,
        "podinfo's proxies closed {terminated} open connections and refused {denied} new ones"
    );
    kube_util::delete_namespace(&west, &ns).await;
    Ok(())
}
