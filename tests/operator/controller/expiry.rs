//! Values that end: expiry removes the value, an edited expiration moves the expiry and keeps the
//! value, disabling removes it and enabling issues a fresh one.

use super::*;
use crate::support::*;
use apikey_operator::api::ApiToken;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn lifetime_expiry_removes_the_value() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "short",
        "{apiKeyRef: {name: k}, expiration: {lifetime: 2s}}",
    )
    .await;
    ready_token(&cluster.api(NS), "short").await;

    let expired = wait_for(
        &cluster.api::<ApiToken>(NS),
        "short",
        "Expired=True",
        token_condition("Expired", "True"),
    )
    .await;
    let status = expired.status.as_ref().expect("status");
    assert_eq!(status.hash, None);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "Expired")
    );
    wait_gone(&cluster.api::<Secret>(NS), "short").await;
    let events = events_for(&cluster.client, NS, "short").await;
    assert!(
        events
            .iter()
            .any(|(ty, reason, _)| ty == "Warning" && reason == "Expired"),
        "{events:?}"
    );
}

#[tokio::test]
async fn editing_the_expiration_changes_the_expiry_not_the_value() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "edit",
        "{apiKeyRef: {name: k}, expiration: {lifetime: 1h}}",
    )
    .await;
    let api = cluster.api::<ApiToken>(NS);
    let before = ready_token(&cluster.api(NS), "edit").await;
    let issued = before
        .status
        .as_ref()
        .and_then(|s| s.issued_at.clone())
        .expect("issuedAt")
        .0;

    let patch = json!({"spec": {"expiration": {"lifetime": "2h"}, "tags": {"team": "payments"}}});
    api.patch("edit", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit");
    let after = wait_for(&api, "edit", "the new expiry", |t: Option<&ApiToken>| {
        t.and_then(|t| t.status.as_ref())
            .is_some_and(|s| s.observed_generation == Some(2))
    })
    .await;
    assert_eq!(hash_of(&after), hash_of(&before), "same value");
    let expires = after
        .status
        .as_ref()
        .and_then(|s| s.expires_at.clone())
        .expect("expiresAt")
        .0;
    assert_eq!(
        expires,
        issued
            .checked_add(jiff::SignedDuration::from_hours(2))
            .expect("time")
    );
}

#[tokio::test]
async fn disabling_removes_the_value_and_enabling_issues_a_fresh_one() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(&cluster.api(NS), "tog", "{apiKeyRef: {name: k}}").await;
    let api = cluster.api::<ApiToken>(NS);
    let before = hash_of(&ready_token(&cluster.api(NS), "tog").await);

    api.patch(
        "tog",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"disabled": true}})),
    )
    .await
    .expect("disable");
    wait_for(&api, "tog", "Disabled", token_reason("Disabled")).await;
    wait_gone(&cluster.api::<Secret>(NS), "tog").await;

    api.patch(
        "tog",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"disabled": false}})),
    )
    .await
    .expect("enable");
    let token = wait_for(&api, "tog", "Ready again", token_reason("Issued")).await;
    assert_ne!(hash_of(&token), before, "a fresh value after re-enabling");
    assert_secret_matches(&cluster, &token).await;
}
