//! `mesh multicluster check`: named checks of the multicluster extension in
//! this cluster and of each Link, printed like `mesh check` (✔ / ‼ / ×
//! with a hint, `--output json` in Linkerd's shape, exit 1 on failure).
//!
//! The linked cluster is read through the Link's own credentials. When
//! this machine cannot reach the linked API server (its address is only
//! routable from inside the cluster), the checks that need it use what the
//! Link's service mirror, which can, wrote on the Link's status, and say
//! so.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ListParams, PostParams};
use mesh_api::crds::link::Link;
use mesh_api::labels::{
    MIRROR_CLUSTER_NAME, MIRROR_MIRRORED_SERVICE, MULTICLUSTER_NAMESPACE as NS,
};
use mesh_identity::inspect::inspect;

use crate::check::certificates::read_anchors_in;
use mesh_mirror::link::LinkSettings;
use mesh_mirror::status::{condition, last_remote_error};

use crate::check::Waiter;
use crate::check::report::{Outcome, Problem, Report};
use crate::cli::{GlobalArgs, OutputFormat};

const LINK_CRD: &str = "links.multicluster.linkerd.io";
const LINK_HINT: &str = "link again: `mesh --context=<linked> multicluster link --cluster-name <name> | kubectl apply -f -`";

/// Runs the checks; the exit code says whether they all passed.
pub async fn run(
    global: &GlobalArgs,
    wait: Duration,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    crate::check::run_extension(global, wait, output, checks).await
}

/// A Link and what the checks found out about it.
struct Checked {
    link: Link,
    name: String,
    settings: Option<LinkSettings>,
    /// A client that reaches the linked API from here, when one does.
    remote: Option<kube::Client>,
}

async fn checks(client: &kube::Client, report: &mut Report, waiter: &Waiter) {
    report.category("linkerd-multicluster");
    if !report.record("Link CRD exists", link_crd(client).await) {
        return;
    }
    let links = match Api::<Link>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            report.record(
                "Link resources are valid",
                Err(Problem::error(format!("listing Links in {NS}: {e}"), "")),
            );
            return;
        }
    };
    if links.is_empty() {
        report.record(
            "Link resources are valid",
            Err(Problem::warning(
                format!("no Links in {NS}: no cluster is linked to this one"),
                LINK_HINT,
            )),
        );
    } else {
        let mut checked: Vec<Checked> = links
            .into_iter()
            .map(|link| Checked {
                name: link.metadata.name.clone().unwrap_or_default(),
                settings: None,
                remote: None,
                link,
            })
            .collect();
        report.record("Link resources are valid", links_valid(&mut checked));
        report.record(
            "remote cluster access credentials are valid",
            credentials(client, &mut checked).await,
        );
        report.record(
            "service mirrors reach the linked clusters",
            waiter
                .until_ok("service mirrors reaching the linked clusters", || {
                    mirrors_reach(client, &checked)
                })
                .await,
        );
        report.record(
            "clusters share trust anchors",
            shared_anchors(client, &checked).await,
        );
        report.record(
            "service mirror controller has required permissions",
            mirror_permissions(client, &checked).await,
        );
        let deployments: Vec<String> = checked
            .iter()
            .filter_map(|c| c.settings.as_ref())
            .map(|s| format!("linkerd-service-mirror-{}", s.cluster))
            .collect();
        let names: Vec<&str> = deployments.iter().map(String::as_str).collect();
        report.record(
            "service mirror controllers are running",
            waiter
                .until_ok("service mirror controllers ready", || {
                    crate::check::control_plane::deployments_ready(client, NS, &names)
                })
                .await,
        );
        report.record(
            "all gateways are alive",
            waiter
                .until_ok("gateways alive", || gateways_alive(client, &checked))
                .await,
        );
        report.record(
            "no local object holds a mirror's name",
            mirror_conflicts(&checked),
        );
    }
    report.record(
        "the gateway's QUIC sockets have the buffers they want",
        super::quic_buffers::gateway_quic_buffers(client, waiter).await,
    );
    report.record(
        "all mirror services have endpoints",
        waiter
            .until_ok("mirror services with endpoints", || {
                mirrors_have_endpoints(client)
            })
            .await,
    );
    report.record(
        "all mirror services are part of a Link",
        mirrors_owned(client).await,
    );
}

async fn link_crd(client: &kube::Client) -> Outcome {
    match Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt(LINK_CRD)
        .await
    {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Problem::error(
            format!("CustomResourceDefinition {LINK_CRD} does not exist"),
            "install the extension: `mesh multicluster install | kubectl apply -f -`",
        )),
        Err(e) => Err(Problem::error(format!("reading {LINK_CRD}: {e}"), "")),
    }
}

fn links_valid(checked: &mut [Checked]) -> Outcome {
    let mut problems = Vec::new();
    for c in checked.iter_mut() {
        match LinkSettings::from_link(&c.link) {
            Ok(settings) => c.settings = Some(settings),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(problems.join("\n"), LINK_HINT))
    }
}

/// Whether an error means the linked API server was not reached at all
/// (as opposed to reached and refusing).
fn unreachable(error: &kube::Error) -> bool {
    !matches!(error, kube::Error::Api(_))
}

async fn credentials(client: &kube::Client, checked: &mut [Checked]) -> Outcome {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for c in checked.iter_mut() {
        let Some(settings) = &c.settings else {
            continue;
        };
        let secret_name = &settings.credentials_secret;
        let secret = match Api::<Secret>::namespaced(client.clone(), NS)
            .get_opt(secret_name)
            .await
        {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                problems.push(format!(
                    "Link {}: Secret {NS}/{secret_name} does not exist",
                    c.name
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!(
                    "Link {}: reading Secret {NS}/{secret_name}: {e}",
                    c.name
                ));
                continue;
            }
        };
        let remote = match mesh_mirror::controller::client_from_secret(&secret).await {
            Ok(remote) => remote,
            Err(e) => {
                problems.push(format!("Link {}: Secret {NS}/{secret_name}: {e:#}", c.name));
                continue;
            }
        };
        let services = Api::<Service>::all(remote.clone());
        let first_page = ListParams::default().limit(1);
        let probe = services.list(&first_page);
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok(_)) => c.remote = Some(remote),
            Ok(Err(e)) if !unreachable(&e) => problems.push(format!(
                "Link {}: the linked API server refused the credentials in {NS}/{secret_name}: {e}",
                c.name
            )),
            // Not reachable from here: the mirror, in the cluster, may be.
            not_reached => {
                let why = match not_reached {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer within 5s".to_owned(),
                };
                notes.push(format!(
                    "Link {}: the linked API is not reachable from here ({why}); what counts is whether \
                     its service mirror reaches it (next check)",
                    c.name
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(Problem::error(
            problems.join("\n"),
            format!("check the linked cluster's address and token; {LINK_HINT}"),
        ));
    }
    if notes.is_empty() {
        Ok(())
    } else {
        Err(Problem::warning(
            notes.join("\n"),
            "run the check where the linked API server is routable to test the credentials from here too",
        ))
    }
}

/// Whether each Link's service mirror reaches its linked API, as the mirror
/// itself reports it on the Link's status (read again on every try): the
/// only view that counts, since the mirror runs where this CLI may not.
async fn mirrors_reach(client: &kube::Client, checked: &[Checked]) -> Outcome {
    let links = Api::<Link>::namespaced(client.clone(), NS);
    let mut problems = Vec::new();
    for c in checked.iter().filter(|c| c.settings.is_some()) {
        let link = match links.get_opt(&c.name).await {
            Ok(Some(link)) => link,
            Ok(None) => {
                problems.push(format!("Link {} was deleted", c.name));
                continue;
            }
            Err(e) => {
                problems.push(format!("reading Link {}: {e}", c.name));
                continue;
            }
        };
        if let Some(problem) = mirror_view(&link) {
            problems.push(format!("Link {}: {problem}", c.name));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            problems.join("\n"),
            "the mirror reaches the linked API at the server of the Link's credentials Secret: relink with an address \
             the mirror's pod can reach (`mesh --context=<linked> multicluster link --cluster-name <name> \
             --api-server-address https://<address>:<port> | kubectl apply -f -`); \
             `kubectl -n linkerd-multicluster logs deploy/linkerd-service-mirror-<name>` has the details",
        ))
    }
}

/// What is wrong with a Link's view of its linked API, from its status.
fn mirror_view(link: &Link) -> Option<String> {
    let last_error = last_remote_error(link).map(|(message, at)| format!("{message} (at {at})"));
    match condition(link, "RemoteReachable") {
        Some((reachable, _)) if reachable == "True" => None,
        Some((_, message)) => Some(format!(
            "its service mirror cannot reach the linked API server: {}",
            last_error.unwrap_or(message)
        )),
        None => Some(match last_error {
            Some(error) => format!("its service mirror has never reached the linked API server; last error: {error}"),
            None => "its service mirror has not reported reaching the linked API server (is it running?)".into(),
        }),
    }
}

/// The PEM trust anchors of a cluster, with where they were read.
async fn remote_anchors(c: &Checked) -> Result<String, String> {
    let Some(settings) = &c.settings else {
        return Err("the Link is not valid".into());
    };
    if let Some(remote) = &c.remote {
        return read_anchors_in(remote, &settings.linkerd_namespace)
            .await
            .map(|anchors| anchors.text)
            .map_err(|problem| format!("the linked cluster's {}", problem.message()));
    }
    let status = c
        .link
        .status
        .as_ref()
        .and_then(|s| s.0.get("remoteTrustAnchors"))
        .cloned()
        .unwrap_or_default();
    if let Some(pem) = status["pem"].as_str() {
        return Ok(pem.to_owned());
    }
    Err(match status["error"].as_str() {
        Some(error) => format!(
            "the linked cluster's trust anchors: the service mirror could not read them: {error}"
        ),
        None => "the linked cluster's trust anchors: the service mirror has not reported them yet"
            .into(),
    })
}

/// Each anchor of a PEM bundle as `subject (serial …)`.
fn anchor_names(pem: &str) -> Result<Vec<String>, String> {
    let chain = inspect(pem.as_bytes(), None, SystemTime::now()).map_err(|e| e.to_string())?;
    Ok(chain
        .certificates
        .iter()
        .map(|c| format!("{} (serial {})", c.subject, c.serial))
        .collect())
}

/// Whether two PEM bundles have an anchor in common; when not, the anchors
/// each side has.
fn anchors_shared(local: &str, remote: &str) -> Result<(), String> {
    let local = anchor_names(local).map_err(|e| format!("this cluster's trust anchors: {e}"))?;
    let remote =
        anchor_names(remote).map_err(|e| format!("the linked cluster's trust anchors: {e}"))?;
    if remote.iter().any(|r| local.contains(r)) {
        return Ok(());
    }
    Err(format!(
        "no trust anchor in common\n  this cluster: {}\n  linked cluster: {}",
        local.join(", "),
        remote.join(", ")
    ))
}

async fn shared_anchors(client: &kube::Client, checked: &[Checked]) -> Outcome {
    let local = read_anchors_in(client, mesh_api::labels::CONTROL_PLANE_NAMESPACE)
        .await?
        .text;
    let mut problems = Vec::new();
    for c in checked.iter().filter(|c| c.settings.is_some()) {
        let shared = remote_anchors(c)
            .await
            .and_then(|remote| anchors_shared(&local, &remote));
        if let Err(e) = shared {
            problems.push(format!("Link {}: {e}", c.name));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            problems.join("\n"),
            "proxies of the two clusters cannot verify each other: install both with the same trust anchor \
             (`mesh install --identity-trust-anchors-file`, the same file on both), or add each side's anchor to the other's bundle",
        ))
    }
}

/// One permission a Link's service mirror needs.
struct Need {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: Option<&'static str>,
    /// Empty: in every namespace.
    namespace: &'static str,
    name: Option<String>,
}

impl Need {
    fn describe(&self) -> String {
        let sub = self
            .subresource
            .map(|s| format!("/{s}"))
            .unwrap_or_default();
        let name = self
            .name
            .as_ref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        let scope = if self.namespace.is_empty() {
            "in every namespace".to_owned()
        } else {
            format!("in {}", self.namespace)
        };
        format!("{} {}{sub}{name} {scope}", self.verb, self.resource)
    }
}

/// What the service mirror of Link `link` must be allowed.
/// The conflicts each mirror reports on its Link: local objects it did
/// not write that hold a mirror's name (it leaves them alone, so those
/// Services are not mirrored).
fn mirror_conflicts(checked: &[Checked]) -> Outcome {
    let mut held = Vec::new();
    for c in checked {
        let status = serde_json::to_value(c.link.status.as_ref()).unwrap_or_default();
        for conflict in status["conflicts"].as_array().into_iter().flatten() {
            held.push(format!(
                "{}/{} (Link {})",
                conflict["namespace"].as_str().unwrap_or("?"),
                conflict["name"].as_str().unwrap_or("?"),
                c.name
            ));
        }
    }
    if held.is_empty() {
        return Ok(());
    }
    Err(Problem::warning(
        format!(
            "names held by objects the mirror did not write, so not mirrored: {}",
            held.join(", ")
        ),
        "rename or delete the local object, or stop exporting the Service in the linked cluster",
    ))
}

fn mirror_needs(settings: &LinkSettings, link: &str) -> Vec<Need> {
    let mut needs = Vec::new();
    for resource in ["services", "endpoints"] {
        for verb in ["get", "list", "watch", "create", "patch", "delete"] {
            needs.push(Need {
                verb,
                group: "",
                resource,
                subresource: None,
                namespace: "",
                name: None,
            });
        }
    }
    let link = Some(link.to_owned());
    let multicluster = "multicluster.linkerd.io";
    needs.push(Need {
        verb: "get",
        group: multicluster,
        resource: "links",
        subresource: None,
        namespace: NS,
        name: link.clone(),
    });
    needs.push(Need {
        verb: "patch",
        group: multicluster,
        resource: "links",
        subresource: Some("status"),
        namespace: NS,
        name: link,
    });
    needs.push(Need {
        verb: "get",
        group: "",
        resource: "secrets",
        subresource: None,
        namespace: NS,
        name: Some(settings.credentials_secret.clone()),
    });
    // Its Lease (one active replica of two) and its Events (conflicts).
    for verb in ["get", "create", "update"] {
        needs.push(Need {
            verb,
            group: "coordination.k8s.io",
            resource: "leases",
            subresource: None,
            namespace: NS,
            name: None,
        });
    }
    needs.push(Need {
        verb: "create",
        group: "events.k8s.io",
        resource: "events",
        subresource: None,
        namespace: NS,
        name: None,
    });
    needs
}

async fn mirror_permissions(client: &kube::Client, checked: &[Checked]) -> Outcome {
    let reviews = Api::<SubjectAccessReview>::all(client.clone());
    let mut missing = Vec::new();
    for c in checked {
        let Some(settings) = &c.settings else {
            continue;
        };
        let user = format!(
            "system:serviceaccount:{NS}:linkerd-service-mirror-{}",
            settings.cluster
        );
        for need in mirror_needs(settings, &c.name) {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.clone()),
                    groups: Some(vec![
                        "system:serviceaccounts".into(),
                        format!("system:serviceaccounts:{NS}"),
                    ]),
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(need.verb.into()),
                        group: Some(need.group.into()),
                        resource: Some(need.resource.into()),
                        subresource: need.subresource.map(str::to_owned),
                        namespace: (!need.namespace.is_empty()).then(|| need.namespace.to_owned()),
                        name: need.name.clone(),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            match reviews.create(&PostParams::default(), &review).await {
                Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
                Ok(_) => missing.push(format!("{user} may not {}", need.describe())),
                Err(e) => {
                    return Err(Problem::warning(
                        format!("could not review the service mirror's permissions: {e}"),
                        "run the check as a user allowed to create SubjectAccessReviews",
                    ));
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(missing.join("\n"), LINK_HINT))
    }
}

async fn gateways_alive(client: &kube::Client, checked: &[Checked]) -> Outcome {
    let links = Api::<Link>::namespaced(client.clone(), NS);
    let mut problems = Vec::new();
    for c in checked.iter().filter(|c| c.settings.is_some()) {
        // Read afresh: this check is retried while the mirror catches up.
        let link = links.get(&c.name).await.unwrap_or_else(|_| c.link.clone());
        match condition(&link, "GatewayAlive") {
            Some((status, _)) if status == "True" => {}
            Some((_, message)) => {
                problems.push(format!("Link {}: gateway not alive: {message}", c.name))
            }
            None => problems.push(format!(
                "Link {}: its service mirror has not probed the gateway yet",
                c.name
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            problems.join("\n"),
            "the gateway's LoadBalancer address must be reachable from this cluster on the probe port: \
             `kubectl --context=<linked> -n linkerd-multicluster get svc linkerd-gateway`",
        ))
    }
}

fn mirror_selector() -> ListParams {
    ListParams::default().labels(&format!("{MIRROR_MIRRORED_SERVICE}=true"))
}

fn key(service: &Service) -> String {
    format!(
        "{}/{}",
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default()
    )
}

async fn mirrors_have_endpoints(client: &kube::Client) -> Outcome {
    let mirrors = Api::<Service>::all(client.clone())
        .list(&mirror_selector())
        .await
        .map_err(|e| Problem::error(format!("listing mirror Services: {e}"), ""))?;
    let mut empty = Vec::new();
    for service in &mirrors.items {
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let ready = Api::<Endpoints>::namespaced(client.clone(), &namespace)
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|e| e.subsets)
            .unwrap_or_default()
            .iter()
            .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()));
        if !ready {
            empty.push(key(service));
        }
    }
    if empty.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            format!(
                "mirror Services without ready endpoints: {}",
                empty.join(", ")
            ),
            "the linked cluster's Service has no ready pods, or its gateway is not alive (see `mesh multicluster gateways`)",
        ))
    }
}

async fn mirrors_owned(client: &kube::Client) -> Outcome {
    let clusters: Vec<String> = Api::<Link>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|l| l.spec.target_cluster_name)
                .collect()
        })
        .unwrap_or_default();
    let mirrors = Api::<Service>::all(client.clone())
        .list(&mirror_selector())
        .await
        .map_err(|e| Problem::error(format!("listing mirror Services: {e}"), ""))?;
    let orphans: Vec<String> = mirrors
        .items
        .iter()
        .filter(|s| {
            let cluster = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MIRROR_CLUSTER_NAME));
            cluster.is_none_or(|c| !clusters.contains(c))
        })
        .map(|s| {
            let cluster = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MIRROR_CLUSTER_NAME))
                .cloned()
                .unwrap_or_default();
            format!("{} (cluster {cluster:?})", key(s))
        })
        .collect();
    if orphans.is_empty() {
        Ok(())
    } else {
        Err(Problem::error(
            format!("mirror Services of no Link: {}", orphans.join(", ")),
            "remove them: `mesh multicluster unlink --cluster-name <cluster> | kubectl delete -f -`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(name: &str) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.self_signed(&key).expect("sign").pem()
    }

    #[test]
    fn clusters_share_an_anchor_when_one_is_in_both_bundles_and_else_each_side_is_named() {
        let (ours, theirs) = (anchor("root.west.example"), anchor("root.east.example"));
        assert_eq!(anchors_shared(&ours, &ours), Ok(()));
        let rotating = format!("{ours}{theirs}");
        assert_eq!(
            anchors_shared(&rotating, &theirs),
            Ok(()),
            "a bundle mid-rotation"
        );
        let error = anchors_shared(&ours, &theirs).expect_err("different roots");
        assert!(
            error.contains("this cluster: CN=root.west.example"),
            "{error}"
        );
        assert!(
            error.contains("linked cluster: CN=root.east.example"),
            "{error}"
        );
        let same_name = anchor("root.west.example");
        assert!(
            anchors_shared(&ours, &same_name).is_err(),
            "two roots with one name are still two roots"
        );
        assert!(anchors_shared(&ours, "not a certificate").is_err());
    }
}
