//! The fixture every later test relies on: a real kube-apiserver, reached
//! with kube-rs, that issues ServiceAccount tokens for the identity audience
//! (TokenRequest) and validates them (TokenReview), as the identity service
//! will.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::Api;
use kube::api::PostParams;
use mesh_api::labels::IDENTITY_TOKEN_AUDIENCE;
use mesh_clusters::testing::shared_cluster;

async fn review(client: &kube::Client, token: &str, audience: &str) -> TokenReviewStatus {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: Some(vec![audience.to_owned()]),
        },
        ..TokenReview::default()
    };
    Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview is served")
        .status
        .expect("a TokenReview answer has a status")
}

#[tokio::test]
async fn identity_tokens_are_issued_and_reviewed() {
    let cluster = shared_cluster().await;
    let ns = cluster.namespace("tokens").await;
    mesh_clusters::testing::service_account(&cluster.client, &ns, "books").await;
    let token = mesh_clusters::testing::request_token(
        &cluster.client,
        &ns,
        "books",
        IDENTITY_TOKEN_AUDIENCE,
    )
    .await;
    assert!(
        token.split('.').count() == 3,
        "a JWT has three parts: {token}"
    );

    let status = review(&cluster.client, &token, IDENTITY_TOKEN_AUDIENCE).await;
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    let user = status.user.expect("an authenticated token names its user");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{ns}:books").as_str())
    );
    assert_eq!(
        status.audiences,
        Some(vec![IDENTITY_TOKEN_AUDIENCE.to_owned()])
    );

    let wrong_audience = review(&cluster.client, &token, "some-other-audience").await;
    assert_ne!(
        wrong_audience.authenticated,
        Some(true),
        "{wrong_audience:?}"
    );

    let forged = format!("{}x", token);
    let garbage = review(&cluster.client, &forged, IDENTITY_TOKEN_AUDIENCE).await;
    assert_ne!(garbage.authenticated, Some(true), "{garbage:?}");
}

#[tokio::test]
async fn tests_share_one_api_server_and_isolate_by_namespace() {
    let first = shared_cluster().await;
    let second = shared_cluster().await;
    assert_eq!(first.info.server, second.info.server);
    let a = first.namespace("iso").await;
    let b = second.namespace("iso").await;
    assert_ne!(a, b);
}
