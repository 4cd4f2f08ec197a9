//! The controller against the embedded emulator: every behaviour of the
//! ApiKey and ApiToken reconcilers, with durations of seconds so rotation,
//! grace and expiry are observed for real.

mod expiring_soon;
mod secret_options;

use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::controller::FaultPoint;
use apikey_operator::token;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "team";

async fn create_key(cluster: &Cluster, name: &str, owner_kind: &str, owner: &str) -> ApiKey {
    let key: ApiKey = apply_yaml(&format!(
        "apiVersion: apikeys.dev/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}}}\nspec:\n  owner: {{kind: {owner_kind}, name: {owner}}}\n"
    ));
    cluster
        .api::<ApiKey>(NS)
        .create(&PostParams::default(), &key)
        .await
        .expect("key created")
}

async fn create_token(cluster: &Cluster, name: &str, spec_yaml: &str) -> ApiToken {
    let token: ApiToken = apply_yaml(&format!(
        "apiVersion: apikeys.dev/v1alpha1\nkind: ApiToken\nmetadata: {{name: {name}}}\nspec:\n{spec_yaml}"
    ));
    cluster
        .api::<ApiToken>(NS)
        .create(&PostParams::default(), &token)
        .await
        .expect("token created")
}

async fn ready_token(cluster: &Cluster, name: &str) -> ApiToken {
    wait_for(
        &cluster.api::<ApiToken>(NS),
        name,
        "Ready=True",
        token_condition("Ready", "True"),
    )
    .await
}

fn hash_of(token: &ApiToken) -> String {
    token
        .status
        .as_ref()
        .and_then(|s| s.hash.clone())
        .expect("status.hash")
}

/// The Secret's value and the status agree, and the value is well-formed.
async fn assert_secret_matches(cluster: &Cluster, token: &ApiToken) -> String {
    let status = token.status.as_ref().expect("status");
    let secret_name = status.secret_name.as_deref().expect("secretName");
    let secret = cluster
        .api::<Secret>(NS)
        .get(secret_name)
        .await
        .expect("Secret exists");
    let value = secret_value(&secret, "token");
    assert_eq!(
        token::hash_value(&value).as_str(),
        hash_of(token),
        "Secret value hash == status.hash"
    );
    let parsed = token::parse(&value).expect("value parses");
    assert_eq!(Some(parsed.token_id()), status.token_id.as_deref());
    assert!(
        secret
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == token.metadata.uid.as_ref()),
        "Secret is controlled by its ApiToken"
    );
    value
}

#[tokio::test]
async fn personal_key_token_gets_a_value_in_its_secret() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    let key = create_key(&cluster, "alice", "User", "alice@example.com").await;
    create_token(
        &cluster,
        "laptop",
        "  apiKeyRef: {name: alice}\n  displayName: Laptop\n",
    )
    .await;

    let token = ready_token(&cluster, "laptop").await;
    let value = assert_secret_matches(&cluster, &token).await;
    assert!(
        value.starts_with("akpat_"),
        "personal tokens use the akpat_ prefix"
    );
    let key = wait_for(
        &cluster.api::<ApiKey>(NS),
        &key.name_any(),
        "one ready token",
        |k: Option<&ApiKey>| {
            k.and_then(|k| k.status.as_ref())
                .is_some_and(|s| s.ready_tokens == Some(1))
        },
    )
    .await;
    let status = key.status.expect("key status");
    assert_eq!(status.principal.as_deref(), Some("alice@example.com"));
    assert_eq!(status.tokens, Some(1));

    let token = wait_for(
        &cluster.api::<ApiToken>(NS),
        "laptop",
        "owner reference to its key",
        |t: Option<&ApiToken>| {
            t.is_some_and(|t| {
                t.owner_references()
                    .iter()
                    .any(|o| o.kind == "ApiKey" && o.controller == Some(true))
            })
        },
    )
    .await;
    assert!(token.status.as_ref().is_some_and(|s| s.pending.is_none()));
    let events = events_for(&cluster.client, NS, "laptop").await;
    assert!(
        events.is_empty(),
        "the first value of a new token publishes no Event (its Ready condition says Issued): {events:?}"
    );
    for (_, _, note) in &events {
        assert!(!note.contains(&value), "an event carried the token value");
    }
}

#[tokio::test]
async fn a_new_token_costs_four_writes_and_no_read_of_its_secret() {
    let cluster = Cluster::start(NS).await;
    let op = cluster.controller();
    let deadline = std::time::Instant::now() + DEADLINE;
    while !op.handles.synced.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the controller caches never synced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    create_key(&cluster, "alice", "User", "alice").await;
    wait_for(
        &cluster.api::<ApiKey>(NS),
        "alice",
        "a Ready key",
        |k: Option<&ApiKey>| k.and_then(|k| k.status.as_ref()).is_some(),
    )
    .await;
    let before = cluster.emulator.requests_by();
    create_token(&cluster, "fresh", "  apiKeyRef: {name: alice}\n").await;
    ready_token(&cluster, "fresh").await;

    let after = cluster.emulator.requests_by();
    let made = |request: &str| {
        after.get(request).copied().unwrap_or(0) - before.get(request).copied().unwrap_or(0)
    };
    // ownerReference, pending hash, Secret, promotion (DESIGN.md rules 1, 6).
    assert_eq!(made("PATCH apitokens 200"), 1, "{after:?}");
    assert_eq!(made("PATCH apitokens/status 200"), 2, "{after:?}");
    assert_eq!(made("POST secrets 201"), 1, "{after:?}");
    assert_eq!(
        made("GET secrets 404"),
        0,
        "a never-issued token's missing Secret was read: {after:?}"
    );
}

#[tokio::test]
async fn service_account_key_waits_for_its_owner() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "bot", "ServiceAccount", "deployer").await;
    create_token(&cluster, "bot-token", "  apiKeyRef: {name: bot}\n").await;

    let key = wait_for(
        &cluster.api::<ApiKey>(NS),
        "bot",
        "Ready=False",
        key_ready("False"),
    )
    .await;
    let ready = key
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned())
        .expect("Ready");
    assert_eq!(ready.reason, "OwnerNotFound");
    wait_for(
        &cluster.api::<ApiToken>(NS),
        "bot-token",
        "KeyNotReady",
        token_reason("ApiKeyNotReady"),
    )
    .await;
    assert!(
        cluster
            .api::<Secret>(NS)
            .get_opt("bot-token")
            .await
            .expect("get")
            .is_none(),
        "no value before the owner exists"
    );

    let sa: ServiceAccount = apply_yaml("metadata: {name: deployer}");
    cluster
        .api::<ServiceAccount>(NS)
        .create(&PostParams::default(), &sa)
        .await
        .expect("SA created");
    let key = wait_for(
        &cluster.api::<ApiKey>(NS),
        "bot",
        "Ready=True",
        key_ready("True"),
    )
    .await;
    assert_eq!(
        key.status.and_then(|s| s.principal).as_deref(),
        Some("system:serviceaccount:team:deployer")
    );
    let token = ready_token(&cluster, "bot-token").await;
    let value = assert_secret_matches(&cluster, &token).await;
    assert!(value.starts_with("aksat_"));
}

#[tokio::test]
async fn scheduled_rotation_keeps_the_old_hash_for_the_grace_period() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "k", "User", "u").await;
    create_token(
        &cluster,
        "rot",
        "  apiKeyRef: {name: k}\n  rotation: {every: 2s, gracePeriod: 1s}\n",
    )
    .await;
    let api = cluster.api::<ApiToken>(NS);
    let first = ready_token(&cluster, "rot").await;
    let first_hash = hash_of(&first);

    let rotated = wait_for(&api, "rot", "a rotation", |t: Option<&ApiToken>| {
        t.and_then(|t| t.status.as_ref())
            .is_some_and(|s| s.rotations.unwrap_or(0) >= 1 && s.pending.is_none())
    })
    .await;
    let status = rotated.status.as_ref().expect("status");
    assert_ne!(status.hash.as_deref(), Some(first_hash.as_str()));
    assert!(status.last_rotated_at.is_some());
    if status.rotations == Some(1) {
        assert_eq!(
            status.previous.first().map(|p| p.hash.as_str()),
            Some(first_hash.as_str()),
            "old hash kept for grace"
        );
    }
    assert_secret_matches(&cluster, &rotated).await;
    // The first value's grace ends and its hash is forgotten.
    wait_for(
        &api,
        "rot",
        "end of the first value's grace",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .is_some_and(|s| s.previous.iter().all(|p| p.hash != first_hash))
        },
    )
    .await;
}

#[tokio::test]
async fn rotation_annotation_rotates_exactly_once_per_value() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "k", "User", "u").await;
    create_token(&cluster, "manual", "  apiKeyRef: {name: k}\n").await;
    let api = cluster.api::<ApiToken>(NS);
    let before = hash_of(&ready_token(&cluster, "manual").await);

    let client = cluster.client.clone();
    apikey_operator::cli::rotate(client.clone(), NS, "manual", "2026-11-27", Some(DEADLINE))
        .await
        .expect("rotated");
    let after = api.get("manual").await.expect("get");
    assert_ne!(hash_of(&after), before);
    assert_eq!(after.status.as_ref().and_then(|s| s.rotations), Some(1));
    assert_eq!(
        after
            .status
            .as_ref()
            .and_then(|s| s.last_rotation_request.as_deref()),
        Some("2026-11-27")
    );

    // The same request again is not a new request; an unrelated edit does not rotate either.
    let patch = json!({"metadata": {"annotations": {"apikeys.dev/rotate": "2026-11-27"}}, "spec": {"displayName": "renamed"}});
    api.patch("manual", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let renamed = wait_for(
        &api,
        "manual",
        "observed generation 2",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .is_some_and(|s| s.observed_generation == Some(2))
        },
    )
    .await;
    assert_eq!(
        hash_of(&renamed),
        hash_of(&after),
        "display edits never rotate"
    );
    assert_eq!(renamed.status.as_ref().and_then(|s| s.rotations), Some(1));
}

#[tokio::test]
async fn lifetime_expiry_removes_the_value() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "k", "User", "u").await;
    create_token(
        &cluster,
        "short",
        "  apiKeyRef: {name: k}\n  expiration: {lifetime: 2s}\n",
    )
    .await;
    ready_token(&cluster, "short").await;

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
async fn renew_before_replaces_the_value_before_it_expires() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "k", "User", "u").await;
    create_token(
        &cluster,
        "renew",
        "  apiKeyRef: {name: k}\n  expiration: {lifetime: 4s}\n  rotation: {renewBefore: 2s}\n",
    )
    .await;
    let first = ready_token(&cluster, "renew").await;
    let first_expiry = first
        .status
        .as_ref()
        .and_then(|s| s.expires_at.clone())
        .expect("expiresAt");
    let renewed = wait_for(
        &cluster.api::<ApiToken>(NS),
        "renew",
        "a renewal",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .is_some_and(|s| s.rotations.unwrap_or(0) >= 1 && s.pending.is_none())
        },
    )
    .await;
    let status = renewed.status.as_ref().expect("status");
    assert!(
        status.expires_at.as_ref().expect("expiresAt").0 > first_expiry.0,
        "the renewed value lives longer"
    );
    assert!(
        status
            .conditions
            .iter()
            .all(|c| !(c.type_ == "Expired" && c.status == "True")),
        "never expired"
    );
    let events = events_for(&cluster.client, NS, "renew").await;
    assert!(
        events.iter().any(|(_, reason, _)| reason == "Renewed"),
        "{events:?}"
    );
}

#[tokio::test]
async fn disabling_removes_the_value_and_enabling_issues_a_fresh_one() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "k", "User", "u").await;
    create_token(&cluster, "tog", "  apiKeyRef: {name: k}\n").await;
    let api = cluster.api::<ApiToken>(NS);
    let before = hash_of(&ready_token(&cluster, "tog").await);

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

#[tokio::test]
async fn tampered_or_deleted_secret_is_replaced_by_a_fresh_value() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "k", "User", "u").await;
    create_token(&cluster, "guarded", "  apiKeyRef: {name: k}\n").await;
    let api = cluster.api::<ApiToken>(NS);
    let secrets = cluster.api::<Secret>(NS);
    let original = hash_of(&ready_token(&cluster, "guarded").await);

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
    create_key(&cluster, "k", "User", "u").await;
    create_token(
        &cluster,
        "claimer",
        "  apiKeyRef: {name: k}\n  secret: {name: taken}\n",
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

#[tokio::test]
async fn editing_the_expiration_changes_the_expiry_not_the_value() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "k", "User", "u").await;
    create_token(
        &cluster,
        "edit",
        "  apiKeyRef: {name: k}\n  expiration: {lifetime: 1h}\n",
    )
    .await;
    let api = cluster.api::<ApiToken>(NS);
    let before = ready_token(&cluster, "edit").await;
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
async fn missing_key_means_no_value_until_it_exists() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_token(&cluster, "orphan", "  apiKeyRef: {name: later}\n").await;
    let token = wait_for(
        &cluster.api::<ApiToken>(NS),
        "orphan",
        "ApiKeyNotFound",
        token_reason("ApiKeyNotFound"),
    )
    .await;
    let message = token
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .expect("Ready")
        .message;
    assert!(message.contains("later"), "{message}");
    create_key(&cluster, "later", "User", "u").await;
    let token = ready_token(&cluster, "orphan").await;
    assert_secret_matches(&cluster, &token).await;
}

#[tokio::test]
async fn deleting_a_key_deletes_its_tokens_and_their_secrets() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "doomed", "User", "u").await;
    create_token(&cluster, "t1", "  apiKeyRef: {name: doomed}\n").await;
    create_token(&cluster, "t2", "  apiKeyRef: {name: doomed}\n").await;
    let tokens = cluster.api::<ApiToken>(NS);
    for name in ["t1", "t2"] {
        ready_token(&cluster, name).await;
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

/// Rule 6 holds for a key that never became Ready too: its tokens are
/// adopted while blocked, so deleting the key takes them with it.
#[tokio::test]
async fn deleting_a_key_that_never_became_ready_deletes_its_tokens() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "stalled", "ServiceAccount", "nobody").await;
    create_token(&cluster, "waiting", "  apiKeyRef: {name: stalled}\n").await;
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

/// A token still controlled by an earlier ApiKey of the same name (deleted
/// and created again before the garbage collector took the token, e.g.
/// `kubectl replace --force` with another owner) does not carry its value
/// over to the new key: the value is removed, and a fresh one is issued
/// once the new key has adopted the token.
#[tokio::test]
async fn a_value_issued_under_an_earlier_key_of_the_same_name_is_not_kept() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster, "shared", "User", "bob@example.com").await;
    create_token(&cluster, "inherited", "  apiKeyRef: {name: shared}\n").await;
    let tokens = cluster.api::<ApiToken>(NS);
    let token = ready_token(&cluster, "inherited").await;
    let earlier = assert_secret_matches(&cluster, &token).await;

    // Controlled by another key than the current one, as until the garbage
    // collector takes the token of a replaced key. (An existing key: the
    // emulator's collector is prompt and would delete the token if its
    // owner were gone, which ends the scenario as well.)
    let decoy = create_key(&cluster, "earlier", "User", "alice@example.com").await;
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
    let fresh = ready_token(&cluster, "inherited").await;
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

#[tokio::test]
async fn a_ready_token_reconciled_again_makes_no_writes() {
    let cluster = Cluster::start(NS).await;
    let op = cluster.controller();
    create_key(&cluster, "k", "User", "u").await;
    create_token(
        &cluster,
        "steady",
        "  apiKeyRef: {name: k}\n  expiration: {lifetime: 30d}\n  rotation: {every: 7d}\n",
    )
    .await;
    ready_token(&cluster, "steady").await;
    wait_for(
        &cluster.api::<ApiKey>(NS),
        "k",
        "the key to count the ready token",
        |k: Option<&ApiKey>| {
            k.and_then(|k| k.status.as_ref())
                .is_some_and(|s| s.ready_tokens == Some(1))
        },
    )
    .await;
    wait_for(
        &cluster.api::<ApiToken>(NS),
        "steady",
        "owner reference",
        |t: Option<&ApiToken>| t.is_some_and(|t| !t.owner_references().is_empty()),
    )
    .await;
    op.stop().await;

    // A fresh controller reconciles every object once at start-up.
    let before = cluster.emulator.stats();
    let op = cluster.controller();
    eventually(
        "the new controller to reconcile the token and the key",
        || async {
            let stats = &op.handles.stats;
            (stats.token_reconciles() >= 1 && stats.key_reconciles() >= 1).then_some(())
        },
    )
    .await;
    let delta = cluster.emulator.stats() - before;
    assert_eq!(delta.writes, 0, "a steady state makes no writes: {delta:?}");
    op.stop().await;
}

#[tokio::test]
async fn a_crash_between_the_phases_converges_without_an_unrecorded_value() {
    let cluster = Cluster::start(NS).await;
    let op = cluster.controller();
    // The first issue stops after recording the pending hash, the redo after writing the Secret.
    op.handles.faults.arm(FaultPoint::AfterPending, 1);
    op.handles.faults.arm(FaultPoint::AfterSecret, 1);
    create_key(&cluster, "k", "User", "u").await;
    create_token(&cluster, "crashy", "  apiKeyRef: {name: k}\n").await;
    let api = cluster.api::<ApiToken>(NS);
    let secrets = cluster.api::<Secret>(NS);

    // Every state observed on the way: a value in the Secret is either the
    // recorded one or the pending one, never anything else.
    let token = eventually("convergence to Ready", || async {
        let token = api.get("crashy").await.ok()?;
        let status = token.status.clone().unwrap_or_default();
        if let Some(secret) = secrets.get_opt("crashy").await.ok().flatten() {
            let hash = token::hash_value(&secret_value(&secret, "token"));
            let pending = status.pending.as_ref().map(|p| p.hash.as_str());
            // The status may lag the Secret by one write: re-read before judging.
            let fresh = api.get("crashy").await.ok()?.status.unwrap_or_default();
            let fresh_pending = fresh.pending.as_ref().map(|p| p.hash.as_str());
            let known = [
                status.hash.as_deref(),
                pending,
                fresh.hash.as_deref(),
                fresh_pending,
            ];
            assert!(
                known.contains(&Some(hash.as_str())),
                "the Secret holds a value the status never recorded"
            );
        }
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && status.pending.is_none()).then_some(token)
    })
    .await;
    assert_secret_matches(&cluster, &token).await;
    assert!(op.handles.stats.errors() >= 2, "both injected faults fired");
    op.stop().await;
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
    create_key(&cluster, "k", "User", "u").await;
    create_token(&cluster, "rolled", "  apiKeyRef: {name: k}\n  rotation:\n    restartTargets: [{kind: Deployment, name: consumer}]\n").await;
    let token = ready_token(&cluster, "rolled").await;
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
