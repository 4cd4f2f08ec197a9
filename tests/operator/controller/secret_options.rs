//! `spec.secret` of an ApiToken against the emulator with the in-process
//! controller: a custom data key, extra labels and annotations next to the
//! operator's own, and what renaming the Secret does (a fresh value in the new
//! Secret, the old Secret deleted).

use std::collections::BTreeMap;

use crate::support::*;
use apikey_operator::api::ApiToken;
use apikey_operator::controller::{MANAGED_BY, MANAGED_BY_LABEL, TOKEN_LABEL};
use apikey_operator::token;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const NS: &str = "secrets";

/// A JSON merge patch of `name`, which must succeed (`what` says what it does).
async fn merge<K>(api: &kube::Api<K>, name: &str, patch: serde_json::Value, what: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect(what);
}

async fn start() -> (Cluster, Operator) {
    let cluster = Cluster::start(NS).await;
    let op = cluster.controller();
    create_key(&cluster.api(NS), "k", "User", "u").await;
    (cluster, op)
}

fn controlled_by(secret: &Secret, token: &ApiToken) -> bool {
    secret
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == token.metadata.uid.as_ref())
}

#[tokio::test]
async fn a_custom_key_holds_the_value_under_that_key_only() {
    let (cluster, _op) = start().await;
    create_token(
        &cluster.api(NS),
        "keyed",
        "{apiKeyRef: {name: k}, secret: {key: API_KEY}}",
    )
    .await;
    let token = settled_token(&cluster.api::<ApiToken>(NS), "keyed").await;

    let secret = cluster
        .api::<Secret>(NS)
        .get("keyed")
        .await
        .expect("the Secret is named after the token");
    let keys: Vec<&String> = secret.data.as_ref().expect("data").keys().collect();
    assert_eq!(keys, ["API_KEY"], "only the configured key, no `token` key");
    let value = secret_value(&secret, "API_KEY");
    assert_eq!(
        token::hash_value(&value).as_str(),
        hash_of(&token),
        "the value under API_KEY is the recorded one"
    );
    assert!(controlled_by(&secret, &token));
}

#[tokio::test]
async fn spec_labels_and_annotations_are_added_next_to_the_operators_own() {
    let (cluster, _op) = start().await;
    // The user also tries to set the operator's managed-by label: the
    // operator's value wins, or its Secret watch (selecting on it) would lose the Secret.
    create_token(
        &cluster.api(NS),
        "labelled",
        "{apiKeyRef: {name: k}, secret: {name: labelled-secret, \
          labels: {app: deployer, team: payments, app.kubernetes.io/managed-by: someone-else}, \
          annotations: {owner: platform, example.com/ticket: OPS-1}}}",
    )
    .await;
    let token = settled_token(&cluster.api::<ApiToken>(NS), "labelled").await;
    assert_eq!(
        token.status.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some("labelled-secret")
    );

    let secret = cluster
        .api::<Secret>(NS)
        .get("labelled-secret")
        .await
        .expect("Secret");
    let labels = secret.labels();
    let expected_labels = BTreeMap::from([
        ("app".to_owned(), "deployer".to_owned()),
        ("team".to_owned(), "payments".to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (TOKEN_LABEL.to_owned(), "labelled".to_owned()),
    ]);
    assert_eq!(labels, &expected_labels);
    let annotations = secret.annotations();
    assert_eq!(
        annotations.get("owner").map(String::as_str),
        Some("platform")
    );
    assert_eq!(
        annotations.get("example.com/ticket").map(String::as_str),
        Some("OPS-1")
    );
    assert_eq!(
        annotations.get(TOKEN_LABEL).map(String::as_str),
        Some("labelled"),
        "the operator's annotation names the token"
    );
    assert!(controlled_by(&secret, &token));
    assert_eq!(
        token::hash_value(&secret_value(&secret, "token")).as_str(),
        hash_of(&token)
    );
}

#[tokio::test]
async fn editing_spec_labels_updates_the_secret_without_a_new_value() {
    let (cluster, _op) = start().await;
    let tokens = cluster.api::<ApiToken>(NS);
    create_token(
        &cluster.api(NS),
        "relabel",
        "{apiKeyRef: {name: k}, secret: {labels: {team: a}}}",
    )
    .await;
    let before = settled_token(&tokens, "relabel").await;

    merge(
        &tokens,
        "relabel",
        json!({"spec": {"secret": {
            "labels": {"team": "b"},
            "annotations": {"owner": "platform"},
        }}}),
        "edit spec.secret",
    )
    .await;
    let secrets = cluster.api::<Secret>(NS);
    let secret = eventually("the Secret to carry the edited labels", || async {
        let s = secrets.get("relabel").await.ok()?;
        (s.labels().get("team").map(String::as_str) == Some("b")).then_some(s)
    })
    .await;
    assert_eq!(
        secret.annotations().get("owner").map(String::as_str),
        Some("platform")
    );
    assert_eq!(
        secret.labels().get(MANAGED_BY_LABEL).map(String::as_str),
        Some(MANAGED_BY)
    );
    let after = tokens.get("relabel").await.expect("token");
    assert_eq!(
        hash_of(&after),
        hash_of(&before),
        "a label edit does not change the value"
    );
    assert_eq!(
        token::hash_value(&secret_value(&secret, "token")).as_str(),
        hash_of(&before)
    );

    // Keys dropped from the spec go; what someone else put on the Secret stays.
    merge(
        &secrets,
        "relabel",
        json!({"metadata": {"labels": {"theirs": "x"}}}),
        "someone else's label",
    )
    .await;
    merge(
        &tokens,
        "relabel",
        json!({"spec": {"secret": {
            "labels": {"team": null},
            "annotations": {"owner": null, "contact": "ops"},
        }}}),
        "edit spec.secret again",
    )
    .await;
    let secret = eventually("the dropped keys to be removed", || async {
        let s = secrets.get("relabel").await.ok()?;
        (!s.labels().contains_key("team") && !s.annotations().contains_key("owner")).then_some(s)
    })
    .await;
    assert_eq!(
        secret.annotations().get("contact").map(String::as_str),
        Some("ops")
    );
    assert_eq!(secret.labels().get("theirs").map(String::as_str), Some("x"));
    assert_eq!(
        secret.labels().get(MANAGED_BY_LABEL).map(String::as_str),
        Some(MANAGED_BY)
    );
    let after = tokens.get("relabel").await.expect("token");
    assert_eq!(hash_of(&after), hash_of(&before), "still no new value");
}

/// A label the API server would refuse blocks the spec (InvalidSpec) and
/// is never sent: the Secret and its value stay, and no reconcile fails.
#[tokio::test]
async fn an_invalid_label_edit_is_reported_not_retried() {
    let (cluster, op) = start().await;
    let tokens = cluster.api::<ApiToken>(NS);
    create_token(&cluster.api(NS), "strict", "{apiKeyRef: {name: k}}").await;
    let before = settled_token(&tokens, "strict").await;
    merge(
        &tokens,
        "strict",
        json!({"spec": {"secret": {"labels": {"not a key": "x"}}}}),
        "an invalid label",
    )
    .await;
    wait_for(
        &tokens,
        "strict",
        "InvalidSpec",
        token_reason("InvalidSpec"),
    )
    .await;
    let after = reconcile_now(&tokens, "strict", "later").await;
    assert_eq!(hash_of(&after), hash_of(&before), "the value stays");
    let secret = cluster
        .api::<Secret>(NS)
        .get("strict")
        .await
        .expect("Secret");
    assert!(!secret.labels().contains_key("not a key"));
    assert_eq!(op.handles.metrics.errors(), 0, "no reconcile failed");
}

#[tokio::test]
async fn renaming_the_secret_issues_a_fresh_value_there_and_deletes_the_old_secret() {
    let (cluster, _op) = start().await;
    let tokens = cluster.api::<ApiToken>(NS);
    let secrets = cluster.api::<Secret>(NS);
    create_token(&cluster.api(NS), "mover", "{apiKeyRef: {name: k}}").await;
    let before = settled_token(&tokens, "mover").await;
    let before_status = before.status.clone().expect("status");
    assert_eq!(before_status.secret_name.as_deref(), Some("mover"));
    let old_value = secret_value(&secrets.get("mover").await.expect("Secret"), "token");

    merge(
        &tokens,
        "mover",
        json!({"spec": {"secret": {"name": "mover-v2"}}}),
        "rename the Secret",
    )
    .await;
    let after = wait_for(
        &tokens,
        "mover",
        "the value recorded for the new Secret",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
                s.secret_name.as_deref() == Some("mover-v2")
                    && s.pending.is_none()
                    && s.hash.is_some()
            })
        },
    )
    .await;
    wait_gone(&secrets, "mover").await;

    let status = after.status.clone().expect("status");
    let new_secret = secrets.get("mover-v2").await.expect("the new Secret");
    let new_value = secret_value(&new_secret, "token");
    assert!(controlled_by(&new_secret, &after));
    assert_eq!(
        token::hash_value(&new_value).as_str(),
        hash_of(&after),
        "the new Secret holds the recorded value"
    );
    // The controller treats the new name as a lost Secret: a fresh value (re-issued,
    // not rotated) with the same token id and schedule, and no grace for the old one.
    assert!(
        new_value != old_value,
        "a fresh value, not the old one moved"
    );
    assert_ne!(status.hash, before_status.hash);
    assert_eq!(status.token_id, before_status.token_id, "token id kept");
    assert_eq!(status.issued_at, before_status.issued_at, "schedule kept");
    assert_eq!(status.rotations, before_status.rotations, "not a rotation");
    assert!(
        status.previous.is_empty(),
        "the old value gets no grace period"
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.message.contains("mover-v2")),
        "{:?}",
        status.conditions
    );
    eventually("a Normal Event saying the Secret moved", || async {
        events_for(&cluster.client, NS, "mover")
            .await
            .iter()
            .any(|(ty, reason, note)| {
                ty == "Normal"
                    && reason == "Reissued"
                    && note.contains("spec.secret.name changed from \"mover\"")
                    && note.contains("mover-v2")
            })
            .then_some(())
    })
    .await;
}

/// Renamed and disabled in one edit: neither Secret keeps the value.
#[tokio::test]
async fn renaming_and_disabling_at_once_leaves_no_value() {
    let (cluster, _op) = start().await;
    let tokens = cluster.api::<ApiToken>(NS);
    let secrets = cluster.api::<Secret>(NS);
    create_token(&cluster.api(NS), "gone", "{apiKeyRef: {name: k}}").await;
    settled_token(&tokens, "gone").await;
    merge(
        &tokens,
        "gone",
        json!({"spec": {"disabled": true, "secret": {"name": "gone-v2"}}}),
        "rename and disable",
    )
    .await;
    wait_for(&tokens, "gone", "Disabled", token_reason("Disabled")).await;
    wait_gone(&secrets, "gone").await;
    assert!(
        secrets.get_opt("gone-v2").await.expect("get").is_none(),
        "no Secret under the new name either"
    );
}

#[tokio::test]
async fn renaming_onto_a_foreign_secret_keeps_the_value_where_it_was() {
    let (cluster, _op) = start().await;
    let tokens = cluster.api::<ApiToken>(NS);
    let secrets = cluster.api::<Secret>(NS);
    create(
        &secrets,
        "metadata: {name: theirs}\ndata: {token: cHJlY2lvdXM=}",
    )
    .await;
    create_token(&cluster.api(NS), "stay", "{apiKeyRef: {name: k}}").await;
    let before = settled_token(&tokens, "stay").await;

    merge(
        &tokens,
        "stay",
        json!({"spec": {"secret": {"name": "theirs"}}}),
        "rename onto a foreign Secret",
    )
    .await;
    wait_for(
        &tokens,
        "stay",
        "SecretConflict",
        token_reason("SecretConflict"),
    )
    .await;
    // One more spec edit: once its generation is observed, the reconcile
    // that saw the conflict has finished all of its writes and deletes.
    let blocked = reconcile_now(&tokens, "stay", "after the conflict").await;
    // The foreign Secret is never overwritten.
    let foreign = secrets.get("theirs").await.expect("foreign Secret");
    assert_eq!(secret_value(&foreign, "token"), "precious");
    assert!(foreign.owner_references().is_empty());

    // The status still records the old value as current; its Secret must still hold it.
    let status = blocked.status.clone().expect("status");
    assert_eq!(
        status.hash,
        before.status.as_ref().and_then(|s| s.hash.clone())
    );
    let kept = status.secret_name.as_deref().expect("status.secretName");
    let secret = secrets
        .get_opt(kept)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("Secret {kept} named by status.secretName was deleted"));
    assert_eq!(
        token::hash_value(&secret_value(&secret, "token")).as_str(),
        hash_of(&blocked)
    );
}
