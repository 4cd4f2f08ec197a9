//! Forbidden owners (a `system:` user, control characters, an invalid ServiceAccount name), a
//! forged `status.principal`, and a ServiceAccount deleted and created again.

use super::*;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::token::{self, TokenId, TokenKind};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

/// The users a tenant must never mint: Kubernetes components and another
/// namespace's ServiceAccount.
const SYSTEM_USERS: [&str; 2] = [
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:x",
];

/// The CRD refuses, through the API, a User key naming a `system:` user or
/// a name with a control character, and a ServiceAccount key whose name is
/// not a DNS-1123 subdomain; each with a message that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_owners_are_refused_at_admission() {
    const NS: &str = "owner-admission";
    let cluster = Cluster::start(NS).await;
    let keys = cluster.api::<ApiKey>(NS);
    for name in SYSTEM_USERS {
        let message = refused(
            &keys,
            &format!("metadata: {{name: k}}\nspec: {{owner: {{kind: User, name: '{name}'}}}}"),
        )
        .await;
        assert!(
            message.contains("reserved for Kubernetes components"),
            "{message}"
        );
    }
    let message = refused(
        &keys,
        "metadata: {name: k}\nspec: {owner: {kind: User, name: \"alice\\r\\nX-Auth-Request-User: admin\"}}",
    )
    .await;
    assert!(message.contains("control characters"), "{message}");
    for name in ["CI", "ci:bot", "-ci"] {
        let message = refused(
            &keys,
            &format!(
                "metadata: {{name: k}}\nspec: {{owner: {{kind: ServiceAccount, name: '{name}'}}}}"
            ),
        )
        .await;
        assert!(message.contains("DNS-1123"), "{message}");
    }
    // What the rules allow still goes in.
    create_key(&keys, "alice", "User", "alice@example.com").await;
    create_key(&keys, "systemd", "User", "systemd").await;
    create_key(&keys, "bot", "ServiceAccount", "ci.bot-1").await;
}

/// Marks the key Ready with `principal` and records a value of `token_id`
/// for the token: what an older operator (or anyone with status write)
/// left behind. Returns the value.
async fn forge_issued(
    cluster: &Cluster,
    ns: &str,
    key: &str,
    principal: &str,
    tok: &str,
    token_id: &str,
) -> String {
    let keys = cluster.api::<ApiKey>(ns);
    let ready = json!({"status": {"principal": principal, "conditions": [{"type": "Ready",
        "status": "True", "reason": "OwnerResolved", "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    keys.patch_status(key, &PatchParams::default(), &Patch::Merge(ready))
        .await
        .expect("key status written");
    let value = token::generate(TokenKind::Personal, &TokenId::parse(token_id).expect("id"));
    let value = value.expose_secret().to_owned();
    let issued =
        json!({"status": {"tokenId": token_id, "hash": token::hash_value(&value).as_str()}});
    cluster
        .api::<ApiToken>(ns)
        .patch_status(tok, &PatchParams::default(), &Patch::Merge(issued))
        .await
        .expect("token status written");
    value
}

/// A User key naming a `system:` user stored anyway (the CRD applied without
/// its rules, as before an upgrade), with a value issued and the key Ready:
/// the verifier refuses the value (TokenReview `authenticated: false`) while
/// the same forged state of an allowed key is accepted; the controller then
/// marks the key Ready=False, reason ForbiddenOwner, with a Warning Event and
/// the metric, and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_user_key_stored_anyway_authenticates_no_one() {
    const NS: &str = "owner-stored";
    let cluster = Cluster::start(NS).await;
    let (with_rules, without_rules) = crd_with_and_without_rules("ApiKey");
    apply_crd(&cluster, without_rules).await;
    let keys = cluster.api::<ApiKey>(NS);
    let tokens = cluster.api::<ApiToken>(NS);
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;

    create_key(&keys, "alice", "User", "alice").await;
    create_token(&tokens, "alice-t", "{apiKeyRef: {name: alice}}").await;
    let alice = forge_issued(
        &cluster,
        NS,
        "alice",
        "alice",
        "alice-t",
        "aaaaaaaaaaaaaaaa",
    )
    .await;
    eventually("the verifier to accept the allowed key's value", || async {
        authenticated(verifier.addr, &alice).await.then_some(())
    })
    .await;

    let mut values = Vec::new();
    for (i, user) in SYSTEM_USERS.iter().enumerate() {
        let (key, tok) = (format!("sys{i}"), format!("sys{i}-t"));
        create_key(&keys, &key, "User", &format!("'{user}'")).await;
        create_token(&tokens, &tok, &format!("{{apiKeyRef: {{name: {key}}}}}")).await;
        let id = format!("{i}bbbbbbbbbbbbbbb");
        values.push(forge_issued(&cluster, NS, &key, user, &tok, &id).await);
    }
    apply_crd(&cluster, with_rules).await;
    // The alice value, written after the others, is accepted: the verifier has seen them all.
    let marker_id = "cccccccccccccccc";
    create_token(&tokens, "alice-t2", "{apiKeyRef: {name: alice}}").await;
    let marker = {
        let value = token::generate(TokenKind::Personal, &TokenId::parse(marker_id).expect("id"));
        let value = value.expose_secret().to_owned();
        tokens
            .patch_status(
                "alice-t2",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"tokenId": marker_id, "hash": token::hash_value(&value).as_str()}})),
            )
            .await
            .expect("marker");
        value
    };
    eventually("the verifier to see every forged token", || async {
        authenticated(verifier.addr, &marker).await.then_some(())
    })
    .await;
    for value in &values {
        let review = token_review(verifier.addr, value).await;
        assert_eq!(review["status"]["authenticated"], json!(false), "{review}");
        assert!(review["status"].get("user").is_none(), "{review}");
    }

    let operator = cluster.controller();
    for i in 0..SYSTEM_USERS.len() {
        let key = wait_for(
            &keys,
            &format!("sys{i}"),
            "ForbiddenOwner",
            |k: Option<&ApiKey>| {
                k.and_then(|k| k.status.as_ref()).is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == "Ready" && c.status == "False" && c.reason == "ForbiddenOwner"
                    })
                })
            },
        )
        .await;
        let status = key.status.expect("status");
        // The forged status.principal, written by another field manager, is
        // not the operator's to remove by apply; the verifier ignores it.
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert!(ready.message.contains("reserved"), "{}", ready.message);
        eventually("a ForbiddenOwner Warning", || async {
            events_for(&cluster.client, NS, &format!("sys{i}"))
                .await
                .into_iter()
                .any(|(kind, reason, _)| kind == "Warning" && reason == "ForbiddenOwner")
                .then_some(())
        })
        .await;
        wait_for(
            &tokens,
            &format!("sys{i}-t"),
            "ApiKeyNotReady",
            token_reason("ApiKeyNotReady"),
        )
        .await;
    }
    eventually("the metric to count both keys", || async {
        (operator.handles.metrics.owners_refused("ForbiddenOwner") == 2).then_some(())
    })
    .await;
    for value in &values {
        assert!(!authenticated(verifier.addr, value).await);
    }
    // Nothing deleted: the keys and their tokens are still there.
    for i in 0..SYSTEM_USERS.len() {
        keys.get(&format!("sys{i}")).await.expect("key kept");
        tokens.get(&format!("sys{i}-t")).await.expect("token kept");
    }
}

/// A forged `status.principal` (anyone with `apikeys/status` patch rights can
/// write one) changes nothing in the verifier's answer: it names the owner
/// of the key's spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_status_principal_does_not_change_the_answer() {
    const NS: &str = "owner-forged";
    let cluster = Cluster::start(NS).await;
    let keys = cluster.api::<ApiKey>(NS);
    let tokens = cluster.api::<ApiToken>(NS);
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&keys, "alice", "User", "alice").await;
    create_token(&tokens, "t", "{apiKeyRef: {name: alice}}").await;
    let operator = cluster.controller();
    let secrets = cluster.api::<Secret>(NS);
    let (_, value) = eventually("a value", || settled_with_value(&tokens, &secrets, "t")).await;
    eventually("alice's value accepted", || async {
        authenticated(verifier.addr, &value).await.then_some(())
    })
    .await;
    operator.stop().await;

    // Not Ready first, so that the answer shows when the forged status arrives.
    let condition = |status: &str| {
        json!([{"type": "Ready", "status": status, "reason": "OwnerResolved", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    };
    keys.patch_status(
        "alice",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": condition("False")}})),
    )
    .await
    .expect("not Ready");
    eventually("the value refused while the key is not Ready", || async {
        (!authenticated(verifier.addr, &value).await).then_some(())
    })
    .await;
    keys.patch_status(
        "alice",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"principal": "system:masters", "conditions": condition("True")}}),
        ),
    )
    .await
    .expect("forged principal");
    let review = eventually("the value accepted again", || async {
        let review = token_review(verifier.addr, &value).await;
        (review["status"]["authenticated"] == json!(true)).then_some(review)
    })
    .await;
    assert_eq!(
        review["status"]["user"]["username"],
        json!("alice"),
        "{review}"
    );
}

/// A ServiceAccount key is bound to the ServiceAccount's uid. Deleted: the
/// key is OwnerNotFound and the values are refused. Created again under the
/// same name: the key is not re-bound (OwnerReplaced, its message says to
/// delete and re-create the key), the old value stays refused, no value is
/// issued, and a token that had expired stays expired. Deleting and
/// re-creating the key binds the new ServiceAccount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_created_again_does_not_inherit_the_key() {
    const NS: &str = "owner-sa";
    let cluster = Cluster::start(NS).await;
    let keys = cluster.api::<ApiKey>(NS);
    let tokens = cluster.api::<ApiToken>(NS);
    let secrets = cluster.api::<Secret>(NS);
    let sas = cluster.api::<ServiceAccount>(NS);
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    let _operator = cluster.controller();

    let first = create(&sas, "metadata: {name: ci}").await;
    create_key(&keys, "ci", "ServiceAccount", "ci").await;
    create_token(&tokens, "live", "{apiKeyRef: {name: ci}}").await;
    create_token(
        &tokens,
        "short",
        "{apiKeyRef: {name: ci}, expiration: {lifetime: 2s}}",
    )
    .await;
    let (_, value) = eventually("a value", || settled_with_value(&tokens, &secrets, "live")).await;
    let identity = eventually("the value accepted", || async {
        verifier.verify(&value).ok()
    })
    .await;
    assert_eq!(&*identity.username, "system:serviceaccount:owner-sa:ci");
    let key = keys.get("ci").await.expect("key");
    assert_eq!(
        key.status.and_then(|s| s.owner_uid),
        first.metadata.uid,
        "bound to the uid"
    );
    wait_for(
        &tokens,
        "short",
        "Expired",
        token_condition("Expired", "True"),
    )
    .await;

    sas.delete("ci", &DeleteParams::default())
        .await
        .expect("SA deleted");
    wait_for(&keys, "ci", "OwnerNotFound", key_ready("False")).await;
    eventually("the value refused", || async {
        (!authenticated(verifier.addr, &value).await).then_some(())
    })
    .await;

    let second = create(&sas, "metadata: {name: ci}").await;
    assert_ne!(second.metadata.uid, first.metadata.uid);
    let key = wait_for(&keys, "ci", "OwnerReplaced", |k: Option<&ApiKey>| {
        k.and_then(|k| k.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "OwnerReplaced")
        })
    })
    .await;
    let status = key.status.expect("status");
    assert_eq!(status.owner_uid, first.metadata.uid, "not re-bound");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert!(
        ready.message.contains("Delete and re-create this ApiKey"),
        "{}",
        ready.message
    );
    eventually("a Warning OwnerReplaced", || async {
        events_for(&cluster.client, NS, "ci")
            .await
            .into_iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "OwnerReplaced")
            .then_some(())
    })
    .await;
    assert!(
        !authenticated(verifier.addr, &value).await,
        "the old value stays refused"
    );
    let live = wait_for(
        &tokens,
        "live",
        "not Ready",
        token_condition("Ready", "False"),
    )
    .await;
    assert_eq!(
        live.status.as_ref().and_then(|s| s.hash.clone()),
        None,
        "no value issued"
    );
    let short = tokens.get("short").await.expect("short");
    let short_status = short.status.expect("status");
    assert!(
        short_status
            .conditions
            .iter()
            .any(|c| c.type_ == "Expired" && c.status == "True"),
        "the expired token stays expired: {short_status:?}"
    );
    assert_eq!(short_status.hash, None);
    assert!(
        secrets.get_opt("short").await.expect("get").is_none(),
        "no value for it"
    );

    // What the message says to do: delete the key and create it again.
    keys.delete("ci", &DeleteParams::default())
        .await
        .expect("key deleted");
    wait_gone(&keys, "ci").await;
    create_key(&keys, "ci", "ServiceAccount", "ci").await;
    let key = wait_for(&keys, "ci", "Ready", key_ready("True")).await;
    assert_eq!(
        key.status.and_then(|s| s.owner_uid),
        second.metadata.uid,
        "bound to the new one"
    );
}

/// The verifier binds a ServiceAccount key to its ServiceAccount by itself: with the controller
/// stopped (so the key stays Ready in its status, naming the old uid), deleting the ServiceAccount
/// refuses the value at once, and creating one of the same name again (another identity, as for
/// bound ServiceAccount tokens) keeps it refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_refuses_a_service_account_keys_values_once_it_is_gone_or_replaced() {
    const NS: &str = "owner-sa-verifier";
    let cluster = Cluster::start(NS).await;
    let keys = cluster.api::<ApiKey>(NS);
    let tokens = cluster.api::<ApiToken>(NS);
    let secrets = cluster.api::<Secret>(NS);
    let sas = cluster.api::<ServiceAccount>(NS);
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    let operator = cluster.controller();

    create(&sas, "metadata: {name: ci}").await;
    create_key(&keys, "ci", "ServiceAccount", "ci").await;
    create_token(&tokens, "live", "{apiKeyRef: {name: ci}}").await;
    let (_, value) = eventually("a value", || settled_with_value(&tokens, &secrets, "live")).await;
    eventually("the value accepted", || async {
        verifier.verify(&value).ok()
    })
    .await;
    operator.stop().await;

    sas.delete("ci", &DeleteParams::default())
        .await
        .expect("ServiceAccount deleted");
    eventually("the value refused without the ServiceAccount", || async {
        (!authenticated(verifier.addr, &value).await).then_some(())
    })
    .await;
    let second = create(&sas, "metadata: {name: ci}").await;
    let key = keys.get("ci").await.expect("key");
    assert_eq!(
        key.status
            .as_ref()
            .and_then(|s| s.conditions.first())
            .map(|c| c.status.as_str()),
        Some("True"),
        "the key still looks Ready: only the verifier's own check refuses"
    );
    // A second key bound to the new ServiceAccount (its status written by hand, as the stopped
    // controller would): once its value authenticates, the verifier has seen the new one.
    create_key(&keys, "ci-again", "ServiceAccount", "ci").await;
    create_token(&tokens, "again", "{apiKeyRef: {name: ci-again}}").await;
    let bound = json!({"status": {"ownerUID": second.metadata.uid}});
    keys.patch_status("ci-again", &PatchParams::default(), &Patch::Merge(bound))
        .await
        .expect("bound to the new ServiceAccount");
    let principal = format!("system:serviceaccount:{NS}:ci");
    let again = forge_issued(
        &cluster,
        NS,
        "ci-again",
        &principal,
        "again",
        "zzzzzzzzzzzzzzzz",
    )
    .await;
    eventually("the new ServiceAccount's key accepted", || async {
        authenticated(verifier.addr, &again).await.then_some(())
    })
    .await;
    assert!(
        !authenticated(verifier.addr, &value).await,
        "the key bound to the deleted ServiceAccount stays refused"
    );
}
