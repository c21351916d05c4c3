//! Authorization policy on the local clusters, as a user follows Linkerd's
//! guide: the guide's Server, AuthorizationPolicy and MeshTLSAuthentication
//! (all `policy.linkerd.io/v1beta3`) applied verbatim but for the
//! namespace, in front of a `my-service` on 8080.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

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

/// A one-shot curl of `url` (one try, `--fail`), meshed unless `unmeshed`.
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
                "command": ["curl", "-sS", "--fail", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", url],
            }],
        }
    }))?;
    kube_util::run_pod(client, ns, pod, Duration::from_secs(60)).await
}

/// The guide's policy in front of `my-service`: a meshed pod of the
/// namespace gets in; an unmeshed pod and a meshed pod of another namespace
/// are refused (403), and the refusals and the admission are counted by
/// the server's proxy with the Server's and the policy's names; `mesh
/// diagnostics policy` and `mesh authz` show the controller's answer;
/// `mesh check` names the mesh-only `v1beta3` spelling and a refused
/// Server; editing the MeshTLSAuthentication to name the other namespace
/// swaps who gets in. A namespace annotated `deny` refuses a meshed pod
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
