//! Why a value that no longer works is refused: a value the controller took away (disabled,
//! expired, revoked) is answered with that reason, not `mismatch`, also after the token got a
//! fresh value (issue: someone on call read an expiry as a forgery).

use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken, REVOKE_ANNOTATION};
use apikey_operator::verifier::Reject;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const NS: &str = "reasons";

/// The token's settled value, once the verifier accepts it.
async fn accepted(
    tokens: &Api<ApiToken>,
    secrets: &Api<Secret>,
    verifier: &InProcessVerifier,
    name: &str,
    not: Option<&str>,
) -> String {
    eventually(&format!("a new value of {name} accepted"), || async {
        let (_, value) = settled_with_value(tokens, secrets, name).await?;
        (Some(value.as_str()) != not && verifier.verify(&value).is_ok()).then_some(value)
    })
    .await
}

async fn edit(tokens: &Api<ApiToken>, name: &str, patch: serde_json::Value) {
    tokens
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("token edited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_taken_away_is_refused_with_why_it_went() {
    let cluster = Cluster::start(NS).await;
    let _operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    let (tokens, secrets) = (cluster.api::<ApiToken>(NS), cluster.api::<Secret>(NS));
    create_key(&cluster.api::<ApiKey>(NS), "k", "User", "alice").await;

    // Disabled, then enabled again: the old value stays refused as disabled.
    create_token(&tokens, "switched", "{apiKeyRef: {name: k}}").await;
    let first = accepted(&tokens, &secrets, &verifier, "switched", None).await;
    edit(&tokens, "switched", json!({"spec": {"disabled": true}})).await;
    wait_for(&tokens, "switched", "Disabled", token_reason("Disabled")).await;
    edit(&tokens, "switched", json!({"spec": {"disabled": false}})).await;
    accepted(&tokens, &secrets, &verifier, "switched", Some(&first)).await;
    assert_eq!(verifier.verify(&first).err(), Some(Reject::Disabled));
    let review = token_review(verifier.addr, &first).await;
    assert_eq!(review["status"]["authenticated"], json!(false));
    assert!(
        review["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("disabled")),
        "{review}"
    );

    // Expired, then given a later expiry: the old value stays refused as expired.
    create_token(
        &tokens,
        "short",
        "{apiKeyRef: {name: k}, expiration: {lifetime: 2s}}",
    )
    .await;
    let first = accepted(&tokens, &secrets, &verifier, "short", None).await;
    wait_for(&tokens, "short", "Expired", token_reason("Expired")).await;
    edit(
        &tokens,
        "short",
        json!({"spec": {"expiration": {"lifetime": "1h"}}}),
    )
    .await;
    accepted(&tokens, &secrets, &verifier, "short", Some(&first)).await;
    assert_eq!(verifier.verify(&first).err(), Some(Reject::Expired));

    // Revoked: the old value is refused as revoked.
    create_token(&tokens, "leaked", "{apiKeyRef: {name: k}}").await;
    let first = accepted(&tokens, &secrets, &verifier, "leaked", None).await;
    let revoke = json!({"metadata": {"annotations": {REVOKE_ANNOTATION: "ticket-1"}}});
    edit(&tokens, "leaked", revoke).await;
    accepted(&tokens, &secrets, &verifier, "leaked", Some(&first)).await;
    assert_eq!(verifier.verify(&first).err(), Some(Reject::Revoked));
}
