//! An ApiKey replaced by another of the same name while the operator is down: its tokens'
//! values are not inherited by the new key, and the tokens get none under it.

use super::*;
use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::Condition;
use serde_json::json;

/// An ApiKey deleted with `--cascade=orphan` and created again under the same
/// name, for another owner, while the operator is down: its tokens keep their
/// values and no owner reference, yet the verifier names no one for them (the
/// status records the uid of the key they were issued under); once the
/// operator is back, the token loses its value and gets none under the new
/// key (whose owner its creator was never checked against), and says to
/// re-create it; re-created, it gets a value the verifier answers with the
/// new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_replaced_while_the_operator_is_down_inherits_no_values() {
    use apikey_operator::verifier::Reject;
    use kube::api::{DeleteParams, PropagationPolicy};

    const NS: &str = "replaced";
    let cluster = Cluster::start(NS).await;
    let operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(&cluster.api(NS), "kept", "{apiKeyRef: {name: k}}").await;
    let (_, earlier) = settled(&cluster, NS, "kept", DEADLINE).await;
    eventually("the verifier to name the first owner", || async {
        verifier
            .verify(&earlier)
            .ok()
            .filter(|identity| &*identity.username == "u")
    })
    .await;

    operator.stop().await;
    let keys = cluster.api::<ApiKey>(NS);
    keys.delete(
        "k",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .expect("orphaning delete");
    let tokens = cluster.api::<ApiToken>(NS);
    wait_gone(&keys, "k").await;
    let orphan = tokens.get("kept").await.expect("the token stays");
    assert!(orphan.owner_references().is_empty(), "orphaned");
    create_key(&keys, "k", "User", "someone-else").await;
    // The new key is Ready only once the operator runs; even a Ready key of
    // another uid gets no value issued under the earlier one.
    let ready = json!({"status": {"principal": "someone-else", "conditions": [{"type": "Ready",
        "status": "True", "reason": "OwnerResolved", "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    keys.patch_status("k", &PatchParams::default(), &Patch::Merge(ready))
        .await
        .expect("the new key looks Ready");
    eventually("the verifier to refuse the earlier value", || async {
        matches!(verifier.verify(&earlier), Err(Reject::KeyReplaced)).then_some(())
    })
    .await;

    let _operator = cluster.controller();
    let refused = wait_for(
        &tokens,
        "kept",
        "Ready=False, ApiKeyReplaced, no value",
        |t: Option<&ApiToken>| {
            token_reason("ApiKeyReplaced").matches_object(t)
                && t.and_then(|t| t.status.as_ref())
                    .is_some_and(|s| s.hash.is_none())
        },
    )
    .await;
    let ready = refused
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .expect("Ready");
    assert!(
        ready
            .message
            .contains("Delete this ApiToken and create it again"),
        "{}",
        ready.message
    );
    assert!(
        refused
            .owner_references()
            .iter()
            .all(|r| r.controller != Some(true)),
        "not adopted by the new key"
    );
    assert!(verifier.verify(&earlier).is_err());

    tokens
        .delete("kept", &DeleteParams::default())
        .await
        .expect("token deleted");
    wait_gone(&tokens, "kept").await;
    create_token(&tokens, "kept", "{apiKeyRef: {name: k}}").await;
    let (token, value) = settled(&cluster, NS, "kept", DEADLINE).await;
    let new_key = keys.get("k").await.expect("key");
    assert_eq!(
        token
            .status
            .as_ref()
            .and_then(|s| s.api_key_uid.as_deref().cloned()),
        new_key.metadata.uid,
        "recorded under the new key"
    );
    eventually("the verifier to name the new owner", || async {
        verifier
            .verify(&value)
            .ok()
            .filter(|identity| &*identity.username == "someone-else")
    })
    .await;
    assert!(verifier.verify(&earlier).is_err());
}
