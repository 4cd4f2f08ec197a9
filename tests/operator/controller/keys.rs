//! A token's ApiKey going away: its tokens and their Secrets go with it (also when it never
//! became Ready), and a value issued under an earlier key of the same name is not kept.

use super::*;
use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::token;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn deleting_a_key_deletes_its_tokens_and_their_secrets() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster.api(NS), "doomed", "User", "u").await;
    create_token(&cluster.api(NS), "t1", "{apiKeyRef: {name: doomed}}").await;
    create_token(&cluster.api(NS), "t2", "{apiKeyRef: {name: doomed}}").await;
    let tokens = cluster.api::<ApiToken>(NS);
    for name in ["t1", "t2"] {
        ready_token(&cluster.api(NS), name).await;
        wait_for(&tokens, name, "owner reference", |t: Option<&ApiToken>| {
            t.is_some_and(|t| t.owner_references().iter().any(|o| o.kind == "ApiKey"))
        })
        .await;
    }
    cluster
        .api::<ApiKey>(NS)
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete key");
    for name in ["t1", "t2"] {
        wait_gone(&tokens, name).await;
        wait_gone(&cluster.api::<Secret>(NS), name).await;
    }
}

/// A key that never became Ready still owns its tokens: they are adopted
/// while blocked, so deleting the key takes them with it.
#[tokio::test]
async fn deleting_a_key_that_never_became_ready_deletes_its_tokens() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster.api(NS), "stalled", "ServiceAccount", "nobody").await;
    create_token(&cluster.api(NS), "waiting", "{apiKeyRef: {name: stalled}}").await;
    let tokens = cluster.api::<ApiToken>(NS);
    wait_for(
        &tokens,
        "waiting",
        "ApiKeyNotReady",
        token_reason("ApiKeyNotReady"),
    )
    .await;
    wait_for(
        &tokens,
        "waiting",
        "owner reference",
        |t: Option<&ApiToken>| {
            t.is_some_and(|t| t.owner_references().iter().any(|o| o.kind == "ApiKey"))
        },
    )
    .await;
    cluster
        .api::<ApiKey>(NS)
        .delete("stalled", &DeleteParams::default())
        .await
        .expect("delete key");
    wait_gone(&tokens, "waiting").await;
}

/// A token whose controller reference names another ApiKey than the one its
/// value was issued under (as when a key is replaced before the garbage
/// collector takes its tokens, or after a hand edit of the reference) does
/// not keep that value: it is removed, and since the status binds the token
/// to the current key, a fresh one is issued once that key has adopted it.
/// (A token bound to an earlier key gets none:
/// `reliability::replaced_key`.)
#[tokio::test]
async fn a_value_issued_under_an_earlier_key_of_the_same_name_is_not_kept() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster.api(NS), "shared", "User", "bob@example.com").await;
    create_token(&cluster.api(NS), "inherited", "{apiKeyRef: {name: shared}}").await;
    let tokens = cluster.api::<ApiToken>(NS);
    let token = ready_token(&cluster.api(NS), "inherited").await;
    let earlier = assert_secret_matches(&cluster, &token).await;

    // Controlled by another key than the current one, as until the garbage
    // collector takes the token of a replaced key. (An existing key: the
    // emulator's collector is prompt and would delete the token if its
    // owner were gone, which ends the scenario as well.)
    let decoy = create_key(&cluster.api(NS), "earlier", "User", "alice@example.com").await;
    let mut refs = token.owner_references().to_vec();
    let controller = refs
        .iter_mut()
        .find(|r| r.controller == Some(true))
        .expect("adopted by the key");
    controller.name = "earlier".to_owned();
    controller.uid = decoy.metadata.uid.clone().expect("uid");
    tokens
        .patch(
            "inherited",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": refs}})),
        )
        .await
        .expect("owner reference rewritten");

    wait_for(
        &tokens,
        "inherited",
        "the earlier value removed and a fresh one issued",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .and_then(|s| s.hash.as_deref())
                .is_some_and(|h| h != token::hash_value(&earlier).as_str())
        },
    )
    .await;
    let fresh = ready_token(&cluster.api(NS), "inherited").await;
    let value = assert_secret_matches(&cluster, &fresh).await;
    assert_ne!(value, earlier, "a fresh value");
    let key = cluster.api::<ApiKey>(NS).get("shared").await.expect("key");
    assert!(
        fresh
            .owner_references()
            .iter()
            .any(|r| r.controller == Some(true) && Some(&r.uid) == key.metadata.uid.as_ref()),
        "adopted by the key that exists"
    );
    eventually("a Warning Event ApiKeyReplaced", || async {
        events_for(&cluster.client, NS, "inherited")
            .await
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "ApiKeyReplaced")
            .then_some(())
    })
    .await;
}
