//! Audiences as the Kubernetes TokenReview API defines them, end to end:
//! a review asking for audiences the token is not valid for is refused
//! (no longer echoed as granted), one asking for some gets the
//! intersection, and a forward-auth route requires its audience.

use std::net::SocketAddr;

use crate::support::*;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

const NS: &str = "aud";

async fn review(addr: SocketAddr, value: &str, audiences: &[&str]) -> Value {
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": value, "audiences": audiences},
    });
    let (status, _, body) = http::request(
        addr,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &[],
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("TokenReview JSON")
}

async fn value_of(cluster: &Cluster, name: &str) -> String {
    let (tokens, secrets) = (cluster.api(NS), cluster.api::<Secret>(NS));
    let (_, value) = eventually("a settled value", || async {
        settled_with_value(&tokens, &secrets, name).await
    })
    .await;
    value
}

#[tokio::test]
async fn reviews_get_only_the_audiences_the_token_is_valid_for() {
    let cluster = Cluster::start(NS).await;
    let _operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster.api(NS), "alice", "User", "alice").await;
    create_token(
        &cluster.api(NS),
        "scoped",
        "{apiKeyRef: {name: alice}, audiences: [billing, reports]}",
    )
    .await;
    create_token(&cluster.api(NS), "plain", "{apiKeyRef: {name: alice}}").await;
    let scoped = value_of(&cluster, "scoped").await;
    let plain = value_of(&cluster, "plain").await;
    eventually("the verifier to learn both tokens", || async {
        (authenticated(verifier.addr, &scoped).await && authenticated(verifier.addr, &plain).await)
            .then_some(())
    })
    .await;

    // `spec.audiences: [anything]` is not granted, whether the token lists
    // audiences or falls back to the verifier's default.
    for value in [&scoped, &plain] {
        let r = review(verifier.addr, value, &["anything"]).await;
        assert_eq!(r["status"]["authenticated"], false, "{r}");
        assert!(r["status"].get("audiences").is_none(), "{r}");
        assert!(r["status"].get("user").is_none(), "{r}");
        assert!(
            r["status"]["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{r}"
        );
    }

    // Asked for some: the intersection.
    let r = review(verifier.addr, &scoped, &["reports", "anything"]).await;
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    assert_eq!(r["status"]["audiences"], json!(["reports"]));
    // Asked for none: the token's own.
    let r = review(verifier.addr, &scoped, &[]).await;
    assert_eq!(r["status"]["audiences"], json!(["billing", "reports"]));
    // A token listing none is valid for the verifier's default (`--audience`):
    // the kube-apiserver's usual audience.
    let api = apikey_operator::verifier::DEFAULT_AUDIENCE;
    let r = review(verifier.addr, &plain, &[api, "anything"]).await;
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    assert_eq!(r["status"]["audiences"], json!([api]));
    let r = review(verifier.addr, &scoped, &[api]).await;
    assert_eq!(r["status"]["authenticated"], false, "{r}");
}

#[tokio::test]
async fn a_forward_auth_route_requires_its_audience() {
    let cluster = Cluster::start(NS).await;
    let _operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster.api(NS), "alice", "User", "alice").await;
    create_token(
        &cluster.api(NS),
        "scoped",
        "{apiKeyRef: {name: alice}, audiences: [billing]}",
    )
    .await;
    let value = value_of(&cluster, "scoped").await;
    let bearer = format!("Bearer {value}");
    eventually("the verifier to learn the token", || async {
        authenticated(verifier.addr, &value).await.then_some(())
    })
    .await;
    let cases = [
        ("/auth?audience=billing", &[][..], 200),
        ("/auth", &[], 200),
        ("/auth?audience=reports", &[], 403),
        // The gateway's header, as NGINX and Envoy set it.
        ("/auth", &[("X-Auth-Audience", "billing")], 200),
        ("/auth", &[("X-Auth-Audience", "reports")], 403),
        // A client's extra value or path never lifts the route's requirement.
        (
            "/auth?audience=reports",
            &[("X-Auth-Audience", "billing")],
            403,
        ),
        ("/auth/billing?audience=reports", &[], 403),
        ("/auth?audience=reports&audience=billing", &[], 403),
    ];
    for (path, extra, expected) in cases {
        let mut headers = vec![("Authorization", bearer.as_str())];
        headers.extend_from_slice(extra);
        let (status, _, body) = http::request(verifier.addr, "GET", path, &headers, "").await;
        assert_eq!(status, expected, "{path} {extra:?}: {body}");
    }
}
