//! Revocation (`apikeys.dev/revoke`), the answer to a leaked value: the current value and every
//! earlier one still in its grace period are refused by the verifier (TokenReview and
//! forward-auth) once it sees the new status, a fresh value is in the Secret, and each request
//! value is acted on once (an Argo CD re-sync of the same value revokes nothing more).

use std::net::SocketAddr;

use super::*;
use crate::support::*;
use apikey_operator::api::{REVOKE_ANNOTATION, ROTATE_ANNOTATION};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Whether the verifier at `addr` lets `value` through forward-auth, with both headers; the two
/// must agree.
async fn forward_auth_accepts(addr: SocketAddr, value: &str) -> bool {
    let mut answers = Vec::new();
    for (header, v) in [
        ("Authorization", format!("Bearer {value}")),
        ("X-API-Key", value.to_owned()),
    ] {
        let (status, head, _) = http::request(addr, "GET", "/auth", &[(header, &v)], "").await;
        assert!(status == 200 || status == 401, "{head}");
        answers.push(status == 200);
    }
    assert_eq!(answers[0], answers[1], "both headers give the same answer");
    answers[0]
}

/// Whether TokenReview and forward-auth both accept `value` (they must agree).
async fn accepted(addr: SocketAddr, value: &str) -> bool {
    let review = authenticated(addr, value).await;
    assert_eq!(review, forward_auth_accepts(addr, value).await);
    review
}

/// The token's current value from its Secret, checked against its status.
async fn current_value(cluster: &Cluster, token: &ApiToken) -> String {
    assert_secret_matches(cluster, token).await
}

fn revoked(t: &ApiToken) -> Option<&str> {
    t.status
        .as_ref()
        .and_then(|s| s.last_revocation_request.as_deref())
        .map(String::as_str)
}

/// The token once the revoke `request` is done: recorded, nothing pending, a value issued.
async fn revoke_done(api: &Api<ApiToken>, name: &str, request: &'static str) -> ApiToken {
    wait_for(api, name, "the revocation", move |t: Option<&ApiToken>| {
        t.is_some_and(|t| {
            revoked(t) == Some(request)
                && t.status
                    .as_ref()
                    .is_some_and(|s| s.pending.is_none() && s.hash.is_some())
        })
    })
    .await
}

async fn annotate(api: &Api<ApiToken>, name: &str, annotation: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {annotation: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
}

#[tokio::test]
async fn revoke_annotation_refuses_the_current_and_every_earlier_value_once() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "leaky",
        "{apiKeyRef: {name: k}, rotation: {gracePeriod: 1h}}",
    )
    .await;
    let api = cluster.api::<ApiToken>(NS);

    // Three values: two rotations leave two earlier values in their grace period.
    let mut values = vec![current_value(&cluster, &ready_token(&api, "leaky").await).await];
    for request in ["r1", "r2"] {
        apikey_operator::cli::rotate(cluster.client.clone(), NS, "leaky", request, Some(DEADLINE))
            .await
            .expect("rotated");
        values.push(current_value(&cluster, &api.get("leaky").await.expect("get")).await);
    }
    let before = api.get("leaky").await.expect("get");
    let old_hashes: Vec<String> = values
        .iter()
        .map(|v| token::hash_value(v).as_str().to_owned())
        .collect();
    assert_eq!(before.status.as_ref().map(|s| s.previous.len()), Some(2));
    for value in &values {
        eventually("the verifier to accept every value in grace", || async {
            accepted(verifier.addr, value).await.then_some(())
        })
        .await;
    }

    // The GitOps path: a commit sets the annotation.
    annotate(&api, "leaky", REVOKE_ANNOTATION, "leak-2026-06-01").await;
    // From the first status that records the request on, no old hash is in it.
    let first = wait_for(
        &api,
        "leaky",
        "the request recorded",
        |t: Option<&ApiToken>| t.is_some_and(|t| revoked(t) == Some("leak-2026-06-01")),
    )
    .await;
    let status = first.status.as_ref().expect("status");
    assert!(status.previous.is_empty(), "{status:#?}");
    assert!(
        status.hash.as_ref().is_none_or(|h| !old_hashes.contains(h)),
        "{status:#?}"
    );

    let after = revoke_done(&api, "leaky", "leak-2026-06-01").await;
    let fresh = current_value(&cluster, &after).await;
    assert!(!values.contains(&fresh), "a fresh value");
    let status = after.status.as_ref().expect("status");
    assert!(status.previous.is_empty(), "no grace for revoked values");
    assert_eq!(
        status.rotations,
        Some(2),
        "a revocation is not counted as a rotation"
    );
    eventually("the verifier to accept the fresh value", || async {
        accepted(verifier.addr, &fresh).await.then_some(())
    })
    .await;
    for (i, value) in values.iter().enumerate() {
        assert!(
            !accepted(verifier.addr, value).await,
            "value {i} is still accepted after the revocation"
        );
    }
    let events = events_for(&cluster.client, NS, "leaky").await;
    let revocations: Vec<_> = events
        .iter()
        .filter(|(_, reason, _)| reason == "Revoked")
        .collect();
    assert_eq!(revocations.len(), 1, "{events:?}");
    assert_eq!(revocations[0].0, "Normal");
    assert!(revocations[0].2.contains("leak-2026-06-01"), "{events:?}");
    for value in values.iter().chain([&fresh]) {
        assert!(
            !format!("{events:?}").contains(value.as_str()),
            "a value in an Event"
        );
    }

    // An Argo CD re-sync applies the same annotation again with another edit: nothing revoked.
    let patch = json!({
        "metadata": {"annotations": {REVOKE_ANNOTATION: "leak-2026-06-01"}},
        "spec": {"displayName": "re-synced"},
    });
    let generation = api
        .patch("leaky", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("re-sync")
        .metadata
        .generation;
    let resynced = wait_for(
        &api,
        "leaky",
        "the re-sync observed",
        move |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .is_some_and(|s| s.observed_generation == generation)
        },
    )
    .await;
    assert_eq!(
        hash_of(&resynced),
        hash_of(&after),
        "the same request revokes once"
    );
    assert_eq!(current_value(&cluster, &resynced).await, fresh);
    assert!(accepted(verifier.addr, &fresh).await);
    let events = events_for(&cluster.client, NS, "leaky").await;
    assert_eq!(
        events
            .iter()
            .filter(|(_, reason, _)| reason == "Revoked")
            .count(),
        1,
        "{events:?}"
    );

    // A new request value revokes again.
    annotate(&api, "leaky", REVOKE_ANNOTATION, "leak-2026-06-02").await;
    let again = revoke_done(&api, "leaky", "leak-2026-06-02").await;
    let newest = current_value(&cluster, &again).await;
    assert_ne!(newest, fresh);
    eventually("the verifier to accept the newest value", || async {
        accepted(verifier.addr, &newest).await.then_some(())
    })
    .await;
    assert!(!accepted(verifier.addr, &fresh).await);
}

/// A revoke and a scheduled rotation due at the same time: the revoke wins, the rotation's
/// grace period keeps nothing, and the schedule starts again from the fresh value.
#[tokio::test]
async fn a_revoke_wins_over_a_rotation_due_at_the_same_time() {
    let cluster = Cluster::start(NS).await;
    let issued_at = Timestamp::from_second(Timestamp::now().as_second()).expect("now");
    let clock = ManualClock::new(issued_at);
    let _op = cluster.controller_on(clock.clone());
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "due",
        "{apiKeyRef: {name: k}, rotation: {every: 1h, gracePeriod: 10m}}",
    )
    .await;
    let api = cluster.api::<ApiToken>(NS);
    let first = settled_token(&api, "due").await;

    // The rotation is due; the revoke request is what wakes the token.
    let now = issued_at
        .checked_add(jiff::SignedDuration::from_secs(3601))
        .expect("time");
    clock.set(now);
    annotate(&api, "due", REVOKE_ANNOTATION, "leak").await;
    let after = revoke_done(&api, "due", "leak").await;
    let status = after.status.as_ref().expect("status");
    assert_ne!(hash_of(&after), hash_of(&first));
    assert!(status.previous.is_empty(), "{status:#?}");
    assert_eq!(
        status.rotations, None,
        "the revoke took the rotation's place"
    );
    assert_eq!(
        status.next_rotation_at.as_ref().map(|t| t.0),
        now.checked_add(jiff::SignedDuration::from_hours(1)).ok(),
    );
    assert_secret_matches(&cluster, &after).await;
}

/// A revoke while the operator is down and the Secret was deleted meanwhile: the revoke (not a
/// re-issue) writes the fresh value; a revoke of a disabled token removes every value, answers
/// the request and issues none until the token is enabled.
#[tokio::test]
async fn a_revoke_with_the_secret_missing_or_the_token_disabled() {
    let cluster = Cluster::start(NS).await;
    let op = cluster.controller();
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "lost",
        "{apiKeyRef: {name: k}, rotation: {gracePeriod: 1h}}",
    )
    .await;
    create_token(&cluster.api(NS), "off", "{apiKeyRef: {name: k}}").await;
    let api = cluster.api::<ApiToken>(NS);
    let lost = settled_token(&api, "lost").await;
    settled_token(&api, "off").await;
    apikey_operator::cli::rotate(cluster.client.clone(), NS, "lost", "r1", Some(DEADLINE))
        .await
        .expect("rotated");
    op.stop().await;

    let secrets = cluster.api::<k8s_openapi::api::core::v1::Secret>(NS);
    secrets
        .delete("lost", &Default::default())
        .await
        .expect("Secret deleted");
    annotate(&api, "lost", REVOKE_ANNOTATION, "leak").await;
    let disable = json!({
        "metadata": {"annotations": {REVOKE_ANNOTATION: "leak", ROTATE_ANNOTATION: "r9"}},
        "spec": {"disabled": true},
    });
    api.patch("off", &PatchParams::default(), &Patch::Merge(&disable))
        .await
        .expect("disable");

    let _op = cluster.controller();
    let after = revoke_done(&api, "lost", "leak").await;
    assert!(after.status.as_ref().is_some_and(|s| s.previous.is_empty()));
    assert_ne!(hash_of(&after), hash_of(&lost));
    assert_secret_matches(&cluster, &after).await;
    let events = events_for(&cluster.client, NS, "lost").await;
    assert!(events.iter().any(|(_, r, _)| r == "Revoked"), "{events:?}");
    assert!(
        !events.iter().any(|(_, r, _)| r == "Reissued"),
        "{events:?}"
    );

    let off = wait_for(
        &api,
        "off",
        "the revoke answered",
        |t: Option<&ApiToken>| t.is_some_and(|t| revoked(t) == Some("leak")),
    )
    .await;
    let status = off.status.as_ref().expect("status");
    assert_eq!((status.hash.as_deref(), status.previous.len()), (None, 0));
    wait_gone(&secrets, "off").await;
    let events = events_for(&cluster.client, NS, "off").await;
    assert!(
        events
            .iter()
            .any(|(_, r, note)| r == "Revoked" && note.contains("spec.disabled")),
        "{events:?}"
    );
    // Enabled again: a fresh value; neither request acts once more.
    api.patch(
        "off",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"disabled": false}})),
    )
    .await
    .expect("enable");
    let on = settled_token(&api, "off").await;
    assert_eq!(revoked(&on), Some("leak"));
    assert_secret_matches(&cluster, &on).await;
    let events = events_for(&cluster.client, NS, "off").await;
    assert_eq!(
        events.iter().filter(|(_, r, _)| r == "Revoked").count(),
        1,
        "{events:?}"
    );
}
