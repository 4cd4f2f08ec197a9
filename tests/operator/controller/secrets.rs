//! The Secret that holds a value: replaced when tampered with or deleted, never written when
//! another owner's, and its restart targets rolled only when the value changes.

use super::*;
use crate::support::*;
use apikey_operator::api::ApiToken;
use apikey_operator::token;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn tampered_or_deleted_secret_is_replaced_by_a_fresh_value() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(&cluster.api(NS), "guarded", "{apiKeyRef: {name: k}}").await;
    let api = cluster.api::<ApiToken>(NS);
    let secrets = cluster.api::<Secret>(NS);
    let original = hash_of(&ready_token(&cluster.api(NS), "guarded").await);

    // A hand edit puts a value the operator never recorded into the Secret.
    let forged = token::generate(token::TokenKind::Personal, &token::TokenId::generate());
    let forged_hash = forged.hash();
    let patch = json!({"data": {"token": k8s_openapi::ByteString(forged.expose_secret().as_bytes().to_vec())}});
    secrets
        .patch("guarded", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("tamper");
    let replaced = wait_for(
        &api,
        "guarded",
        "a re-issued value",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
                s.hash.as_deref().is_some_and(|h| h != original) && s.pending.is_none()
            })
        },
    )
    .await;
    assert_ne!(
        hash_of(&replaced),
        forged_hash.as_str(),
        "the forged value is never recorded"
    );
    let value = eventually("the Secret to hold the recorded value", || async {
        let s = secrets.get("guarded").await.ok()?;
        let v = secret_value(&s, "token");
        (token::hash_value(&v).as_str() == hash_of(&replaced)).then_some(v)
    })
    .await;
    assert_ne!(value, forged.expose_secret());

    // A deleted Secret comes back with a fresh value.
    secrets
        .delete("guarded", &DeleteParams::default())
        .await
        .expect("delete Secret");
    let reissued = wait_for(
        &api,
        "guarded",
        "another re-issue",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
                s.hash.as_deref().is_some_and(|h| h != hash_of(&replaced)) && s.pending.is_none()
            })
        },
    )
    .await;
    assert_secret_matches(&cluster, &reissued).await;
    // Repeats of one reason are one Event with a series count.
    let events = counted_events_for(&cluster.client, NS, "guarded").await;
    let reissues: i32 = events
        .iter()
        .filter(|(ty, reason, _, _)| ty == "Warning" && reason == "Reissued")
        .map(|e| e.3)
        .sum();
    assert!(reissues >= 2, "two Reissued events: {events:?}");
}

#[tokio::test]
async fn a_secret_the_operator_does_not_own_is_never_overwritten() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    let secrets = cluster.api::<Secret>(NS);
    let theirs: Secret = apply_yaml(
        "metadata: {name: taken}\nstringData: {token: precious}\ndata: {token: cHJlY2lvdXM=}",
    );
    secrets
        .create(&PostParams::default(), &theirs)
        .await
        .expect("foreign Secret");
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "claimer",
        "{apiKeyRef: {name: k}, secret: {name: taken}}",
    )
    .await;

    let token = wait_for(
        &cluster.api::<ApiToken>(NS),
        "claimer",
        "SecretConflict",
        token_reason("SecretConflict"),
    )
    .await;
    assert_eq!(token.status.as_ref().and_then(|s| s.hash.clone()), None);
    let token = wait_for(
        &cluster.api::<ApiToken>(NS),
        "claimer",
        "no pending value for a Secret it cannot write",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .is_some_and(|s| s.pending.is_none())
        },
    )
    .await;
    assert_eq!(token.status.as_ref().and_then(|s| s.hash.clone()), None);
    let after = secrets.get("taken").await.expect("still there");
    assert_eq!(secret_value(&after, "token"), "precious");
    assert!(after.owner_references().is_empty());
    let events = events_for(&cluster.client, NS, "claimer").await;
    assert!(
        events
            .iter()
            .any(|(ty, reason, _)| ty == "Warning" && reason == "SecretConflict"),
        "{events:?}"
    );
}

/// The restart annotation the token `rolled` put on a Deployment's pod template.
fn template_value(d: &Deployment) -> Option<String> {
    let annotations = d
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?;
    annotations.get("token-hash.apikeys.dev/rolled").cloned()
}

#[tokio::test]
async fn restart_targets_roll_only_when_the_value_changes() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    let deployments = cluster.api::<Deployment>(NS);
    let deployment: Deployment = apply_yaml(
        "metadata: {name: consumer}\nspec:\n  selector: {matchLabels: {app: c}}\n  template:\n    metadata: {labels: {app: c}}\n    spec: {containers: [{name: c, image: busybox}]}\n",
    );
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("deployment");
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "rolled",
        "{apiKeyRef: {name: k}, rotation: {restartTargets: [{kind: Deployment, name: consumer}]}}",
    )
    .await;
    let token = ready_token(&cluster.api(NS), "rolled").await;
    let first = wait_for(
        &deployments,
        "consumer",
        "the first roll",
        move |d: Option<&Deployment>| d.and_then(template_value).is_some(),
    )
    .await;
    let first_value = template_value(&first).expect("annotation");
    assert!(hash_of(&token).contains(&first_value));

    // An edit that does not change the value does not roll again.
    let api = cluster.api::<ApiToken>(NS);
    api.patch(
        "rolled",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"description": "no roll"}})),
    )
    .await
    .expect("edit");
    wait_for(
        &api,
        "rolled",
        "generation 2 observed",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .is_some_and(|s| s.observed_generation == Some(2))
        },
    )
    .await;
    let unchanged = deployments.get("consumer").await.expect("get");
    assert_eq!(
        unchanged.resource_version(),
        first.resource_version(),
        "no restart loop"
    );

    apikey_operator::cli::rotate(cluster.client.clone(), NS, "rolled", "now", Some(DEADLINE))
        .await
        .expect("rotate");
    let rotated = api.get("rolled").await.expect("get");
    let second = wait_for(
        &deployments,
        "consumer",
        "the second roll",
        move |d: Option<&Deployment>| d.and_then(template_value).is_some_and(|v| v != first_value),
    )
    .await;
    assert!(hash_of(&rotated).contains(&template_value(&second).expect("annotation")));
}
