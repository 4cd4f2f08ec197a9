//! Issuing a value: a token of a personal key and of a ServiceAccount key (once the account
//! exists) gets a well-formed value in its Secret at a known cost in writes, nothing without its
//! key, nothing more when reconciled again, and no unrecorded value after a crash between the
//! two phases of an issue.

use super::*;
use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::controller::FaultPoint;
use apikey_operator::token;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::PostParams;

#[tokio::test]
async fn personal_key_token_gets_a_value_in_its_secret() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    let key = create_key(&cluster.api(NS), "alice", "User", "alice@example.com").await;
    create_token(
        &cluster.api(NS),
        "laptop",
        "{apiKeyRef: {name: alice}, displayName: Laptop}",
    )
    .await;

    let token = ready_token(&cluster.api(NS), "laptop").await;
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
    create_key(&cluster.api(NS), "alice", "User", "alice").await;
    wait_for(
        &cluster.api::<ApiKey>(NS),
        "alice",
        "a Ready key",
        |k: Option<&ApiKey>| k.and_then(|k| k.status.as_ref()).is_some(),
    )
    .await;
    let before = cluster.emulator.requests_by();
    create_token(&cluster.api(NS), "fresh", "{apiKeyRef: {name: alice}}").await;
    ready_token(&cluster.api(NS), "fresh").await;

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
    create_key(&cluster.api(NS), "bot", "ServiceAccount", "deployer").await;
    create_token(&cluster.api(NS), "bot-token", "{apiKeyRef: {name: bot}}").await;

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
    let token = ready_token(&cluster.api(NS), "bot-token").await;
    let value = assert_secret_matches(&cluster, &token).await;
    assert!(value.starts_with("aksat_"));
}

#[tokio::test]
async fn missing_key_means_no_value_until_it_exists() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_token(&cluster.api(NS), "orphan", "{apiKeyRef: {name: later}}").await;
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
    create_key(&cluster.api(NS), "later", "User", "u").await;
    let token = ready_token(&cluster.api(NS), "orphan").await;
    assert_secret_matches(&cluster, &token).await;
}

#[tokio::test]
async fn a_ready_token_reconciled_again_makes_no_writes() {
    let cluster = Cluster::start(NS).await;
    let op = cluster.controller();
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "steady",
        "{apiKeyRef: {name: k}, expiration: {lifetime: 30d}, rotation: {every: 7d}}",
    )
    .await;
    ready_token(&cluster.api(NS), "steady").await;
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
            let stats = &op.handles.metrics;
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
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(&cluster.api(NS), "crashy", "{apiKeyRef: {name: k}}").await;
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
    assert!(
        op.handles.metrics.errors() >= 2,
        "both injected faults fired"
    );
    op.stop().await;
}
