//! Stored objects the Rust types cannot decode (a status time or an ApiKey from before the CRDs
//! refused them): only that object is affected, fail closed, and it recovers once corrected.

use super::*;
use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// The CRD of `kind` as generated, and as an older release had it: without
/// the pattern on its times (stored values then stay when the pattern
/// comes: the API server ratchets unchanged values).
fn crd_now_and_before(kind: &str) -> (serde_json::Value, serde_json::Value) {
    fn unbound(v: &mut serde_json::Value) {
        if let Some(map) = v.as_object_mut() {
            if map.get("format").and_then(|f| f.as_str()) == Some("date-time") {
                map.remove("pattern");
            }
            map.values_mut().for_each(unbound);
        } else if let Some(list) = v.as_array_mut() {
            list.iter_mut().for_each(unbound);
        }
    }
    let current = apikey_operator::api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("the CRD");
    let current = serde_json::to_value(&current).expect("CRD as JSON");
    let mut old = current.clone();
    unbound(&mut old);
    (current, old)
}

async fn apply_crd(cluster: &Cluster, crd: serde_json::Value) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(cluster.client.clone());
    let name = crd["metadata"]["name"].as_str().expect("name").to_owned();
    crds.patch(
        &name,
        &PatchParams::apply("upgrade-test").force(),
        &Patch::Apply(crd),
    )
    .await
    .expect("CRD applied");
}

/// An ApiToken stored before the CRDs refused the year 9999 in status (an
/// upgrade from an older release) keeps such a time: the API server ratchets
/// unchanged values, and the Rust types cannot decode it. That one token is
/// treated as deleted (its value rejected, never an older version of it
/// kept), every other token goes on, an operator and a verifier started
/// afterwards still sync, and clearing the field restores the token. (The
/// index is asked directly: a use through HTTP would have the verifier write
/// `lastUsedAt` itself, over the time under test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_time_the_types_cannot_read_blocks_only_its_token() {
    use kube::api::{Api, DynamicObject};

    const NS: &str = "upgrade";
    let cluster = Cluster::start(NS).await;
    let (current, old) = crd_now_and_before("ApiToken");
    apply_crd(&cluster, old).await;

    let operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(&cluster.api(NS), "far", "{apiKeyRef: {name: k}}").await;
    create_token(&cluster.api(NS), "near", "{apiKeyRef: {name: k}}").await;
    let (_, far) = settled(&cluster, NS, "far", DEADLINE).await;
    let (_, near) = settled(&cluster, NS, "near", DEADLINE).await;
    for value in [&near, &far] {
        eventually("the verifier to accept both values", || async {
            verifier.verify(value).is_ok().then_some(())
        })
        .await;
    }

    // Untyped: the answers carry the time, which ApiToken cannot decode.
    let untyped: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NS,
        &kube::discovery::ApiResource::erase::<ApiToken>(&()),
    );
    let last_used = |at: serde_json::Value| {
        let untyped = untyped.clone();
        async move {
            untyped
                .patch_status(
                    "far",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"lastUsedAt": at}})),
                )
                .await
                .expect("lastUsedAt written")
        }
    };
    last_used(json!("9999-12-31T23:59:59Z")).await;
    eventually("the verifier to drop the token it cannot read", || async {
        verifier.verify(&far).is_err().then_some(())
    })
    .await;
    assert!(verifier.verify(&near).is_ok());
    // `kubectl describe` says why, naming the field.
    eventually("an Undecodable event naming the field", || async {
        events_for(&cluster.client, NS, "far")
            .await
            .into_iter()
            .any(|(kind, reason, note)| {
                kind == "Warning" && reason == "Undecodable" && note.contains("status.lastUsedAt")
            })
            .then_some(())
    })
    .await;

    let unreadable_tokens = operator.handles.metrics.undecodable("ApiToken");
    assert_eq!(
        unreadable_tokens.get(),
        1,
        "one ApiToken counted unreadable"
    );

    // The bound CRD again; the stored time stays. A restarted operator and
    // verifier sync and serve every other token.
    apply_crd(&cluster, current).await;
    operator.stop().await;
    drop(verifier);
    let operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    let unreadable_tokens = operator.handles.metrics.undecodable("ApiToken");
    create_token(&cluster.api(NS), "new", "{apiKeyRef: {name: k}}").await;
    let (_, new) = settled(&cluster, NS, "new", DEADLINE).await;
    for value in [&near, &new] {
        eventually("the restarted verifier to accept the others", || async {
            verifier.verify(value).is_ok().then_some(())
        })
        .await;
    }
    assert!(verifier.verify(&far).is_err());
    assert_eq!(
        unreadable_tokens.get(),
        1,
        "counted by the restarted operator"
    );

    // Cleared as the log says: the token is back, with its value.
    last_used(serde_json::Value::Null).await;
    let (_, again) = settled(&cluster, NS, "far", DEADLINE).await;
    assert_eq!(again, far, "the value is kept");
    eventually("the verifier to accept the token again", || async {
        verifier.verify(&far).is_ok().then_some(())
    })
    .await;
    eventually("no longer counted unreadable", || async {
        (unreadable_tokens.get() == 0).then_some(())
    })
    .await;
}

/// The same for an ApiKey: while it cannot be read its tokens' values are
/// rejected by the verifier, but not removed or replaced (it is not
/// deleted); once corrected, every token has its old value back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apikey_the_types_cannot_read_keeps_its_tokens_values() {
    use kube::api::{Api, DynamicObject};

    const NS: &str = "upgrade-key";
    let cluster = Cluster::start(NS).await;
    let (current, old) = crd_now_and_before("ApiKey");
    let old_crd = old.clone();
    apply_crd(&cluster, old).await;
    let operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(&cluster.api(NS), "t", "{apiKeyRef: {name: k}}").await;
    let (_, value) = settled(&cluster, NS, "t", DEADLINE).await;
    eventually("the verifier to accept the value", || async {
        verifier.verify(&value).is_ok().then_some(())
    })
    .await;

    let keys: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NS,
        &kube::discovery::ApiResource::erase::<ApiKey>(&()),
    );
    // The key's Ready condition, written since `at`.
    let ready_since = |at: &'static str| {
        let keys = keys.clone();
        async move {
            let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                "reason": "OwnerResolved", "message": "", "lastTransitionTime": at}]}});
            keys.patch_status("k", &PatchParams::default(), &Patch::Merge(status))
                .await
                .expect("the key's status written");
        }
    };
    ready_since("9999-12-31T23:59:59Z").await;
    apply_crd(&cluster, current).await;
    eventually("an Undecodable event naming the key's field", || async {
        events_for(&cluster.client, NS, "k")
            .await
            .into_iter()
            .any(|(kind, reason, note)| {
                kind == "Warning"
                    && reason == "Undecodable"
                    && note.contains("status.conditions[0].lastTransitionTime")
            })
            .then_some(())
    })
    .await;
    let unreadable_keys = operator.handles.metrics.undecodable("ApiKey");
    assert_eq!(unreadable_keys.get(), 1, "one ApiKey counted unreadable");
    eventually("the verifier to reject the key's tokens", || async {
        verifier.verify(&value).is_err().then_some(())
    })
    .await;

    // A change to the token while its key cannot be read: reconciled,
    // and its value stays.
    let reconciles = || operator.handles.metrics.reconciles("ApiToken", true);
    let before = reconciles();
    cluster
        .api::<ApiToken>(NS)
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "while unreadable"}})),
        )
        .await
        .expect("token edited");
    eventually("the token to be reconciled", || async {
        (reconciles() > before).then_some(())
    })
    .await;
    let secret = cluster
        .api::<k8s_openapi::api::core::v1::Secret>(NS)
        .get("t")
        .await
        .expect("the Secret is still there");
    assert_eq!(secret_value(&secret, "token"), value, "the value is kept");

    // Corrected: the same value works again.
    ready_since("2026-01-01T00:00:00Z").await;
    let (_, again) = settled(&cluster, NS, "t", DEADLINE).await;
    assert_eq!(again, value, "no new value was issued");
    eventually("the verifier to accept the value again", || async {
        verifier.verify(&value).is_ok().then_some(())
    })
    .await;
    eventually("no longer counted unreadable", || async {
        (unreadable_keys.get() == 0).then_some(())
    })
    .await;

    // Unreadable once more, then deleted: no longer counted.
    apply_crd(&cluster, old_crd).await;
    ready_since("9999-12-31T23:59:59Z").await;
    eventually("the key to be counted unreadable again", || async {
        (unreadable_keys.get() == 1).then_some(())
    })
    .await;
    keys.delete("k", &Default::default())
        .await
        .expect("deleted");
    eventually("the deleted key to be no longer counted", || async {
        (unreadable_keys.get() == 0).then_some(())
    })
    .await;
}
