//! `mesh diagnostics policy`, `mesh diagnostics outbound` and `mesh authz`:
//! what the policy controller itself serves for a pod's ports and a
//! Service's clients, read from its admin server (`/policy`, `/outbound`)
//! through the API server's pod proxy, so what is shown is the controller's
//! answer, not a guess from the objects.

use std::collections::BTreeSet;
use std::process::ExitCode;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use mesh_api::labels::{CONTROL_PLANE_COMPONENT, CONTROL_PLANE_NAMESPACE as NS};
use serde_json::Value;

use crate::cli::{
    AuthzArgs, DiagnosticsOutboundArgs, DiagnosticsPolicyArgs, GlobalArgs, OutputFormat,
};
use crate::output;

async fn client(global: &GlobalArgs) -> anyhow::Result<kube::Client> {
    mesh_api::kube_client::client(global.kubeconfig.as_deref(), global.context.as_deref()).await
}

/// The policy controller's answer for `port` of pod `ns/pod`.
pub async fn served_policy(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    port: u16,
) -> anyhow::Result<Value> {
    controller_answer(
        client,
        &format!("/policy?ns={ns}&pod={pod}&port={port}"),
        &format!("{ns}/{pod}:{port}"),
    )
    .await
}

/// What a ready policy controller answers on its admin server at `path`
/// (about `what`), through the API server's pod proxy.
async fn controller_answer(client: &kube::Client, path: &str, what: &str) -> anyhow::Result<Value> {
    let controllers = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("{CONTROL_PLANE_COMPONENT}=policy")))
        .await
        .map_err(|e| anyhow::anyhow!("listing the policy controller's pods in {NS}: {e}"))?;
    let controller = controllers
        .items
        .iter()
        .find(|p| mesh_api::pod::is_ready(p))
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| {
            anyhow::anyhow!("no ready policy controller pod in {NS} (run `mesh check` to see why)")
        })?;
    let body = mesh_api::kube_client::pod_get(
        client,
        NS,
        &controller,
        mesh_api::ports::POLICY_ADMIN,
        path,
    )
    .await
    .map_err(|e| anyhow::anyhow!("asking {NS}/{controller} for {what}: {e:#}"))?;
    serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("{NS}/{controller} answered {body:?}: {e}"))
}

/// `mesh diagnostics outbound`: the routes a client of a Service port is
/// given, as the policy controller serves them.
pub async fn outbound(
    global: &GlobalArgs,
    args: &DiagnosticsOutboundArgs,
) -> anyhow::Result<ExitCode> {
    let client = client(global).await?;
    let ns = args.namespace.as_deref().unwrap_or("default");
    let (service, port) = match args.service.rsplit_once(':') {
        Some((service, port)) => (
            service,
            port.parse::<u16>()
                .map_err(|_| anyhow::anyhow!("{}: {port:?} is not a port", args.service))?,
        ),
        None => (args.service.as_str(), 80),
    };
    let from = args
        .from
        .as_deref()
        .map(|from| format!("&from={from}"))
        .unwrap_or_default();
    let policy = controller_answer(
        &client,
        &format!("/outbound?ns={ns}&svc={service}&port={port}{from}"),
        &format!("Service {ns}/{service}:{port}"),
    )
    .await?;
    if args.output == OutputFormat::Json {
        output::print_json(&policy)?;
        return Ok(ExitCode::SUCCESS);
    }
    output::print_rows(&[
        ("service", format!("{ns}/{service}:{port}")),
        (
            "protocol",
            policy["protocol"].as_str().unwrap_or_default().to_owned(),
        ),
    ]);
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows = Vec::new();
    for route in policy["routes"].as_array().into_iter().flatten() {
        // A consumer route (of the client's namespace) says whose it is.
        let name = match route["namespace"].as_str() {
            Some(route_ns) if route_ns != ns => {
                format!(
                    "{} {route_ns}/{}",
                    text(&route["kind"]),
                    text(&route["name"])
                )
            }
            _ => format!("{} {}", text(&route["kind"]), text(&route["name"])),
        };
        for rule in route["rules"].as_array().into_iter().flatten() {
            let matches: Vec<String> = rule["matches"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let backends: Vec<String> = rule["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    let authority = b["authority"].as_str().map_or_else(
                        || format!("{} (missing)", text(&b["service"])),
                        str::to_owned,
                    );
                    format!("{authority} ×{}", text(&b["weight"]))
                })
                .collect();
            let retry = match &rule["retry"] {
                Value::Null => "-".to_owned(),
                r => {
                    let list = |key: &str| {
                        r[key]
                            .as_array()
                            .map(|s| s.iter().map(text).collect::<Vec<_>>().join(","))
                            .filter(|s| !s.is_empty())
                    };
                    let on = list("statuses")
                        .or_else(|| list("grpcCodes"))
                        .unwrap_or_else(|| "failures".into());
                    format!("{} × on {on}", text(&r["limit"]))
                }
            };
            rows.push(vec![
                name.clone(),
                matches.join(" | "),
                backends.join(", "),
                retry,
                text(&rule["timeouts"]["request"]),
            ]);
        }
    }
    println!();
    output::print_table(
        &["ROUTE", "MATCHES", "BACKENDS", "RETRIES", "TIMEOUT"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// `mesh diagnostics policy`.
pub async fn diagnostics(
    global: &GlobalArgs,
    args: &DiagnosticsPolicyArgs,
) -> anyhow::Result<ExitCode> {
    let client = client(global).await?;
    let ns = args.namespace.as_deref().unwrap_or("default");
    let policy = served_policy(&client, ns, &args.pod, args.port).await?;
    if args.output == OutputFormat::Json {
        output::print_json(&policy)?;
        return Ok(ExitCode::SUCCESS);
    }
    let server = &policy["server"];
    output::print_rows(&[
        ("pod", format!("{ns}/{}:{}", args.pod, args.port)),
        (
            "server",
            format!(
                "{} {}",
                server["kind"].as_str().unwrap_or_default(),
                server["name"].as_str().unwrap_or_default()
            ),
        ),
        (
            "protocol",
            policy["protocol"].as_str().unwrap_or_default().to_owned(),
        ),
    ]);
    let rows = authorization_rows(&policy["authorizations"], "(server)");
    let mut rows = rows;
    for route in enforced_routes(&policy) {
        let name = route["name"].as_str().unwrap_or_default();
        rows.extend(authorization_rows(&route["authorizations"], name));
    }
    println!();
    if rows.is_empty() {
        println!("No authorization: every connection and request to this port is refused.");
    } else {
        output::print_table(&["ROUTE", "AUTHORIZATION", "NETWORKS", "CLIENTS"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// The routes a port's proxy enforces: a gRPC Server's GRPCRoutes when it
/// has any, else its HTTP routes.
fn enforced_routes(policy: &Value) -> impl Iterator<Item = &Value> {
    policy["grpcRoutes"]
        .as_array()
        .filter(|routes| !routes.is_empty())
        .or_else(|| policy["httpRoutes"].as_array())
        .into_iter()
        .flatten()
}

fn authorization_rows(authorizations: &Value, route: &str) -> Vec<Vec<String>> {
    authorizations
        .as_array()
        .into_iter()
        .flatten()
        .map(|authz| {
            let networks: Vec<&str> = authz["networks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let clients = match &authz["authentication"] {
                Value::String(s) if s == "none" => "anyone".to_owned(),
                Value::String(s) => s.clone(),
                other => other["identities"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            vec![
                route.to_owned(),
                format!(
                    "{} {}",
                    authz["kind"].as_str().unwrap_or_default(),
                    authz["name"].as_str().unwrap_or_default()
                ),
                networks.join(", "),
                clients,
            ]
        })
        .collect()
}

/// One row of `mesh authz`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
struct AuthzRow {
    route: String,
    server: String,
    authorization_policy: String,
    server_authorization: String,
}

/// `mesh authz`: for each port of the resource's pods, the routes, Server
/// and authorizations the controller serves (Linkerd's columns).
pub async fn authz(global: &GlobalArgs, args: &AuthzArgs) -> anyhow::Result<ExitCode> {
    let client = client(global).await?;
    let ns = args.namespace.as_deref().unwrap_or("default");
    let pods = resource_pods(&client, ns, &args.resource).await?;
    let mut rows = BTreeSet::new();
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ports: BTreeSet<u16> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| u16::try_from(p.container_port).ok())
            .collect();
        for port in ports {
            let policy = served_policy(&client, ns, &name, port).await?;
            let server = format!(
                "{}:{}",
                policy["server"]["kind"].as_str().unwrap_or_default(),
                policy["server"]["name"].as_str().unwrap_or_default()
            );
            let server_authz = |authzs: &Value, kind: &str| -> Vec<String> {
                authzs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|a| {
                        a["kind"] == kind
                            || (kind == "AuthorizationPolicy" && a["kind"] == "default")
                    })
                    .map(|a| {
                        let prefix = if a["kind"] == "default" {
                            "default:"
                        } else {
                            ""
                        };
                        format!("{prefix}{}", a["name"].as_str().unwrap_or_default())
                    })
                    .collect()
            };
            for route in enforced_routes(&policy) {
                let authzs = if route["authorizations"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
                {
                    &route["authorizations"]
                } else {
                    &policy["authorizations"]
                };
                let policies = server_authz(authzs, "AuthorizationPolicy");
                let legacy = server_authz(authzs, "ServerAuthorization");
                rows.insert(AuthzRow {
                    route: route["name"].as_str().unwrap_or_default().to_owned(),
                    server: server.clone(),
                    authorization_policy: if policies.is_empty() {
                        "-".into()
                    } else {
                        policies.join(",")
                    },
                    server_authorization: if legacy.is_empty() {
                        "-".into()
                    } else {
                        legacy.join(",")
                    },
                });
            }
        }
    }
    let rows: Vec<AuthzRow> = rows.into_iter().collect();
    if args.output == OutputFormat::Json {
        output::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.route.clone(),
                r.server.clone(),
                r.authorization_policy.clone(),
                r.server_authorization.clone(),
            ]
        })
        .collect();
    output::print_table(
        &[
            "ROUTE",
            "SERVER",
            "AUTHORIZATION_POLICY",
            "SERVER_AUTHORIZATION",
        ],
        &table,
    );
    Ok(ExitCode::SUCCESS)
}

/// The pods of `resource` (`deploy/NAME`, `pod/NAME` or `NAME` for a
/// Deployment) in `ns`.
async fn resource_pods(
    client: &kube::Client,
    ns: &str,
    resource: &str,
) -> anyhow::Result<Vec<Pod>> {
    let (kind, name) = resource.split_once('/').unwrap_or(("deploy", resource));
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    match kind {
        "po" | "pod" | "pods" => Ok(vec![
            pods.get(name)
                .await
                .map_err(|e| anyhow::anyhow!("pod {ns}/{name}: {e}"))?,
        ]),
        "deploy" | "deployment" | "deployments" => {
            let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .map_err(|e| anyhow::anyhow!("deployment {ns}/{name}: {e}"))?;
            let labels = deployment
                .spec
                .and_then(|s| s.selector.match_labels)
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            Ok(pods
                .list(&ListParams::default().labels(&labels))
                .await?
                .items)
        }
        other => anyhow::bail!("{other:?}: expected deploy/NAME or pod/NAME"),
    }
}
