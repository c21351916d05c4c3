//! A container's environment from ConfigMaps and Secrets held by a real
//! API server: `envFrom` with prefixes, single keys, optional and missing
//! sources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;
use kube::api::PostParams;
use mesh_clusters::node::env::{self, Sources};
use mesh_clusters::testing::shared_cluster;

fn container(json: serde_json::Value) -> Container {
    serde_json::from_value(json).expect("container")
}

#[tokio::test]
async fn config_maps_and_secrets_fill_the_environment() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("env").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &ns);
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "settings"}, "data": {"COLOR": "blue", "SIZE": "9"}
    }))
    .expect("configmap");
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "creds"}, "stringData": {"TOKEN": "s3cret"}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let sources = Sources {
        config_maps,
        secrets,
    };
    let pod = Pod::default();
    let base = BTreeMap::new();

    let app = container(serde_json::json!({
        "name": "app",
        "envFrom": [
            {"configMapRef": {"name": "settings"}, "prefix": "APP_"},
            {"secretRef": {"name": "creds"}},
            {"configMapRef": {"name": "absent", "optional": true}}
        ],
        "env": [
            {"name": "ONLY_SIZE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "SIZE"}}},
            {"name": "ONLY_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}},
            {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "NONE", "optional": true}}}
        ]
    }));
    let vars = env::build(&pod, &app, &sources, "10.0.0.2", "10.0.0.1", &base)
        .await
        .expect("the environment");
    assert_eq!(vars.get("APP_COLOR").map(String::as_str), Some("blue"));
    assert_eq!(vars.get("TOKEN").map(String::as_str), Some("s3cret"));
    assert_eq!(vars.get("ONLY_SIZE").map(String::as_str), Some("9"));
    assert_eq!(vars.get("ONLY_TOKEN").map(String::as_str), Some("s3cret"));
    assert!(!vars.contains_key("MAYBE"));

    let missing_source = container(serde_json::json!({
        "name": "app", "envFrom": [{"secretRef": {"name": "absent"}}]
    }));
    let err = env::build(&pod, &missing_source, &sources, "", "", &base)
        .await
        .expect_err("a missing secret");
    assert_eq!(err.to_string(), "secret \"absent\" not found");
    let missing_key = container(serde_json::json!({
        "name": "app",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "NONE"}}}]
    }));
    let err = env::build(&pod, &missing_key, &sources, "", "", &base)
        .await
        .expect_err("a missing key");
    assert_eq!(
        err.to_string(),
        "env X: key \"NONE\" of configmap \"settings\" not found"
    );
}
