//! A tenant with status write rights copies another namespace's
//! `status.tokenId` into its own ApiToken: the victim's value keeps
//! authenticating during the copy and after it is deleted, the copier's
//! values are refused under the copied id, and the controller gives the
//! copier a Warning and a fresh id and value of its own.

use crate::support::*;
use apikey_operator::api::ApiToken;
use apikey_operator::token::{self, TokenId, TokenKind};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const VICTIM_NS: &str = "victim";
const EVIL_NS: &str = "evil";

async fn value_of(cluster: &Cluster, ns: &str, name: &str) -> (ApiToken, String) {
    let tokens = cluster.api::<ApiToken>(ns);
    let secrets = cluster.api::<Secret>(ns);
    eventually("a settled value", || async {
        settled_with_value(&tokens, &secrets, name).await
    })
    .await
}

fn id_of(token: &ApiToken) -> String {
    token
        .status
        .as_ref()
        .and_then(|s| s.token_id.clone())
        .expect("status.tokenId")
}

#[tokio::test]
async fn a_copied_token_id_neither_takes_over_nor_breaks_the_victim() {
    let cluster = Cluster::start(VICTIM_NS).await;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": EVIL_NS}})).expect("ns"),
        )
        .await
        .expect("namespace");
    let _operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;

    create_key(&cluster.api(VICTIM_NS), "alice", "User", "alice").await;
    create_token(
        &cluster.api(VICTIM_NS),
        "prod",
        "{apiKeyRef: {name: alice}}",
    )
    .await;
    create_key(&cluster.api(EVIL_NS), "mallory", "User", "mallory").await;
    create_token(
        &cluster.api(EVIL_NS),
        "copy",
        "{apiKeyRef: {name: mallory}}",
    )
    .await;
    let (victim, victim_value) = value_of(&cluster, VICTIM_NS, "prod").await;
    let (copier, copier_value) = value_of(&cluster, EVIL_NS, "copy").await;
    let victim_id = id_of(&victim);
    let copier_uid = copier.metadata.uid.clone().expect("uid");
    assert_eq!(
        victim_id,
        TokenId::for_uid(victim.metadata.uid.as_deref().expect("uid")).to_string(),
        "ids are derived from the ApiToken's uid"
    );
    eventually("both values authenticate", || async {
        (authenticated(verifier.addr, &victim_value).await
            && authenticated(verifier.addr, &copier_value).await)
            .then_some(())
    })
    .await;

    // The copy: the victim's id, with the hash of a value the copier made up under it.
    let crafted = token::generate(
        TokenKind::Personal,
        &TokenId::parse(&victim_id).expect("id"),
    );
    let copies: Api<ApiToken> = cluster.api(EVIL_NS);
    let status_patch = json!({"status": {"tokenId": victim_id, "hash": crafted.hash().as_str()}});
    copies
        .patch_status(
            "copy",
            &PatchParams::default(),
            &Patch::Merge(&status_patch),
        )
        .await
        .expect("status patched");

    // During: the victim authenticates as alice; the copier's values are refused.
    for _ in 0..5 {
        let review = token_review(verifier.addr, &victim_value).await;
        assert_eq!(review["status"]["authenticated"], true, "{review}");
        assert_eq!(review["status"]["user"]["username"], "alice", "{review}");
        assert!(!authenticated(verifier.addr, crafted.expose_secret()).await);
    }

    // The copier gets a Warning and a fresh id and value of its own.
    let fixed = wait_for(
        &copies,
        "copy",
        "a fresh tokenId",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .and_then(|s| s.token_id.as_deref())
                .is_some_and(|id| id == TokenId::for_uid(&copier_uid).as_str())
        },
    )
    .await;
    assert_ne!(id_of(&fixed), victim_id);
    let events = events_for(&cluster.client, EVIL_NS, "copy").await;
    assert!(
        events
            .iter()
            .any(|(ty, reason, _)| ty == "Warning" && reason == "TokenIdReplaced"),
        "{events:?}"
    );
    let (_, fresh_value) = value_of(&cluster, EVIL_NS, "copy").await;
    assert_ne!(fresh_value, copier_value);
    eventually("the fresh value authenticates as mallory", || async {
        let review = token_review(verifier.addr, &fresh_value).await;
        (review["status"]["user"]["username"] == "mallory").then_some(())
    })
    .await;
    assert!(!authenticated(verifier.addr, crafted.expose_secret()).await);
    assert!(authenticated(verifier.addr, &victim_value).await);

    // After: the copy made again, then deleted; the victim still authenticates.
    copies
        .patch_status(
            "copy",
            &PatchParams::default(),
            &Patch::Merge(&status_patch),
        )
        .await
        .expect("status patched again");
    copies
        .delete("copy", &DeleteParams::default())
        .await
        .expect("copy deleted");
    wait_gone(&copies, "copy").await;
    eventually("the verifier to drop the copy", || async {
        let index = verifier.index.read().unwrap_or_else(|e| e.into_inner());
        (index.tokens_len() == 1).then_some(())
    })
    .await;
    let review = token_review(verifier.addr, &victim_value).await;
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(review["status"]["user"]["username"], "alice", "{review}");
    assert!(!authenticated(verifier.addr, crafted.expose_secret()).await);
}
