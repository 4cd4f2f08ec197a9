//! The verifier end to end: emulator + controller + verifier, a real value
//! read from its Secret, asked about over HTTP (TokenReview and forward-auth).

use std::net::SocketAddr;

use crate::support::*;
use apikey_operator::api::ApiToken;
use apikey_operator::token;
use apikey_operator::verifier::{self, VerifierConfig};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const NS: &str = "auth";

struct Stack {
    cluster: Cluster,
    operator: Option<Operator>,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn stack() -> Stack {
    let cluster = Cluster::start(NS).await;
    let operator = Some(cluster.controller());
    let cfg = VerifierConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    let verifier = verifier::bind(cluster.client.clone(), cfg)
        .await
        .expect("verifier binds");
    let addr = verifier.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(verifier.run(async move {
        let _ = stopped.await;
    }));
    let stack = Stack {
        cluster,
        operator,
        addr,
        _stop: stop,
    };
    eventually("the verifier to be ready", || async {
        let (status, _, _) = http::request(stack.addr, "GET", "/readyz", &[], "").await;
        (status == 200).then_some(())
    })
    .await;
    stack
}

async fn value_of(cluster: &Cluster, name: &str) -> (ApiToken, String) {
    let token = wait_for(
        &cluster.api::<ApiToken>(NS),
        name,
        "Ready=True",
        token_condition("Ready", "True"),
    )
    .await;
    let secret = cluster.api::<Secret>(NS).get(name).await.expect("Secret");
    (token, secret_value(&secret, "token"))
}

#[tokio::test]
async fn a_user_token_authenticates_as_its_owner() {
    let s = stack().await;
    create_key(&s.cluster.api(NS), "alice", "User", "alice@example.com").await;
    create_token(&s.cluster.api(NS), "laptop", "{apiKeyRef: {name: alice}}").await;
    let (token, value) = value_of(&s.cluster, "laptop").await;
    let review = eventually("the verifier to learn the token", || async {
        let r = token_review(s.addr, &value).await;
        (r["status"]["authenticated"] == json!(true)).then_some(r)
    })
    .await;
    let user = &review["status"]["user"];
    assert_eq!(user["username"], json!("alice@example.com"));
    assert_eq!(user["uid"].as_str(), token.metadata.uid.as_deref());
    assert_eq!(user["extra"]["apikeys.dev/apitoken"], json!(["laptop"]));
    assert!(
        !review.to_string().contains(&value),
        "the answer never carries the value"
    );

    for header in [
        ("Authorization", format!("Bearer {value}")),
        ("X-API-Key", value.clone()),
    ] {
        let (status, head, _) =
            http::request(s.addr, "GET", "/auth", &[(header.0, &header.1)], "").await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-auth-user: alice@example.com"),
            "{head}"
        );
    }
    let (status, head, _) = http::request(s.addr, "GET", "/auth", &[], "").await;
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
}

#[tokio::test]
async fn a_service_account_token_carries_the_service_account_groups() {
    let s = stack().await;
    let sa: ServiceAccount = apply_yaml("metadata: {name: ci}");
    s.cluster
        .api::<ServiceAccount>(NS)
        .create(&PostParams::default(), &sa)
        .await
        .expect("SA");
    create_key(&s.cluster.api(NS), "ci", "ServiceAccount", "ci").await;
    create_token(&s.cluster.api(NS), "ci-token", "{apiKeyRef: {name: ci}}").await;
    let (_, value) = value_of(&s.cluster, "ci-token").await;
    let review = eventually("the verifier to learn the token", || async {
        let r = token_review(s.addr, &value).await;
        (r["status"]["authenticated"] == json!(true)).then_some(r)
    })
    .await;
    let user = &review["status"]["user"];
    assert_eq!(user["username"], json!("system:serviceaccount:auth:ci"));
    let groups: Vec<&str> = user["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        groups.contains(&"system:serviceaccounts")
            && groups.contains(&"system:serviceaccounts:auth"),
        "{groups:?}"
    );
}

#[tokio::test]
async fn after_a_rotation_the_old_value_works_during_grace_only() {
    let s = stack().await;
    create_key(&s.cluster.api(NS), "k", "User", "u").await;
    create_token(
        &s.cluster.api(NS),
        "rot",
        "{apiKeyRef: {name: k}, rotation: {gracePeriod: 3s}}",
    )
    .await;
    let (_, old) = value_of(&s.cluster, "rot").await;
    eventually("the first value to be accepted", || async {
        authenticated(s.addr, &old).await.then_some(())
    })
    .await;

    apikey_operator::cli::rotate(s.cluster.client.clone(), NS, "rot", "r1", Some(DEADLINE))
        .await
        .expect("rotate");
    let new = eventually("the Secret to hold the new value", || async {
        let secret = s.cluster.api::<Secret>(NS).get("rot").await.ok()?;
        let v = secret_value(&secret, "token");
        (v != old).then_some(v)
    })
    .await;
    eventually("the new value to be accepted", || async {
        authenticated(s.addr, &new).await.then_some(())
    })
    .await;
    let rotated = s
        .cluster
        .api::<ApiToken>(NS)
        .get("rot")
        .await
        .expect("token");
    let grace_end = rotated
        .status
        .as_ref()
        .and_then(|st| st.previous.first())
        .map(|p| p.valid_until.0)
        .expect("grace");
    if jiff::Timestamp::now() < grace_end {
        assert!(
            authenticated(s.addr, &old).await,
            "the old value works inside its grace period"
        );
    }
    eventually("the old value to be rejected after its grace", || async {
        (!authenticated(s.addr, &old).await).then_some(())
    })
    .await;
    assert!(
        jiff::Timestamp::now() >= grace_end,
        "rejected only once the grace ended"
    );
    assert!(authenticated(s.addr, &new).await);
}

#[tokio::test]
async fn an_expired_value_is_rejected_even_with_the_controller_stopped() {
    let mut s = stack().await;
    create_key(&s.cluster.api(NS), "k", "User", "u").await;
    create_token(
        &s.cluster.api(NS),
        "brief",
        "{apiKeyRef: {name: k}, expiration: {lifetime: 3s}}",
    )
    .await;
    let (token, value) = value_of(&s.cluster, "brief").await;
    let expires = token
        .status
        .as_ref()
        .and_then(|st| st.expires_at.clone())
        .expect("expiresAt")
        .0;
    eventually("the value to be accepted", || async {
        authenticated(s.addr, &value).await.then_some(())
    })
    .await;
    s.operator.take().expect("operator").stop().await;

    eventually("the value to be rejected at its expiry", || async {
        (!authenticated(s.addr, &value).await).then_some(())
    })
    .await;
    assert!(
        jiff::Timestamp::now() >= expires,
        "not rejected before expiresAt"
    );
    let still = s
        .cluster
        .api::<ApiToken>(NS)
        .get("brief")
        .await
        .expect("token");
    assert!(
        still.status.and_then(|st| st.hash).is_some(),
        "the controller (stopped) did not remove it: the verifier's own clock did"
    );
    let review = token_review(s.addr, &value).await;
    assert!(
        review["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired")),
        "{review}"
    );
}

#[tokio::test]
async fn deleted_disabled_and_forged_values_are_rejected() {
    let s = stack().await;
    create_key(&s.cluster.api(NS), "k", "User", "u").await;
    create_token(&s.cluster.api(NS), "a", "{apiKeyRef: {name: k}}").await;
    let token: ApiToken = apply_yaml("metadata: {name: b}\nspec: {apiKeyRef: {name: k}}");
    let tokens = s.cluster.api::<ApiToken>(NS);
    tokens
        .create(&PostParams::default(), &token)
        .await
        .expect("token b");
    let (a, value_a) = value_of(&s.cluster, "a").await;
    let (_, value_b) = value_of(&s.cluster, "b").await;
    for v in [&value_a, &value_b] {
        eventually("the values to be accepted", || async {
            authenticated(s.addr, v).await.then_some(())
        })
        .await;
    }

    // A value with a valid checksum and the real token id, but a secret nobody issued.
    let id = token::TokenId::parse(
        a.status
            .as_ref()
            .and_then(|st| st.token_id.as_deref())
            .expect("id"),
    )
    .expect("id");
    let forged = token::generate(token::TokenKind::Personal, &id);
    assert!(
        token::parse(forged.expose_secret()).is_ok(),
        "the forgery is well-formed"
    );
    assert!(
        !authenticated(s.addr, forged.expose_secret()).await,
        "a forged value is rejected"
    );

    tokens
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"disabled": true}})),
        )
        .await
        .expect("disable");
    eventually("the disabled value to be rejected", || async {
        (!authenticated(s.addr, &value_a).await).then_some(())
    })
    .await;

    tokens
        .delete("b", &DeleteParams::default())
        .await
        .expect("delete token");
    eventually("the deleted token's value to be rejected", || async {
        (!authenticated(s.addr, &value_b).await).then_some(())
    })
    .await;
    let review = token_review(s.addr, &value_b).await;
    assert_eq!(review["status"]["authenticated"], json!(false));
}
