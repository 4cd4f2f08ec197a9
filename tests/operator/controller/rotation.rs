//! Rotation: on schedule (the old hash kept for the grace period), on request (once per request
//! value), and renewal before expiry.

use super::*;
use crate::support::*;
use apikey_operator::api::ApiToken;
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// On a clock the test moves: the rotation falls due `every` after the issue, the old hash stays
/// in `status.previous` for the grace period and is dropped when it ends.
#[tokio::test]
async fn scheduled_rotation_keeps_the_old_hash_for_the_grace_period() {
    let cluster = Cluster::start(NS).await;
    let issued_at = Timestamp::from_second(Timestamp::now().as_second()).expect("now");
    let clock = ManualClock::new(issued_at);
    let _op = cluster.controller_on(clock.clone());
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "rot",
        "{apiKeyRef: {name: k}, rotation: {every: 1h, gracePeriod: 10m}}",
    )
    .await;
    let api = cluster.api::<ApiToken>(NS);
    let first = ready_token(&cluster.api(NS), "rot").await;
    let first_hash = hash_of(&first);

    clock.set(later(issued_at, "1h 1s"));
    reconcile_now(&api, "rot", "the rotation is due").await;
    let rotated = wait_for(&api, "rot", "a rotation", |t: Option<&ApiToken>| {
        t.and_then(|t| t.status.as_ref())
            .is_some_and(|s| s.rotations.unwrap_or(0) >= 1 && s.pending.is_none())
    })
    .await;
    let status = rotated.status.as_ref().expect("status");
    assert_ne!(status.hash.as_deref(), Some(first_hash.as_str()));
    assert!(status.last_rotated_at.is_some());
    assert_eq!(status.rotations, Some(1), "one rotation per due time");
    assert_eq!(
        status.previous.first().map(|p| p.hash.as_str()),
        Some(first_hash.as_str()),
        "old hash kept for grace"
    );
    assert_secret_matches(&cluster, &rotated).await;
    // The first value's grace ends and its hash is forgotten.
    clock.set(later(issued_at, "1h 11m"));
    reconcile_now(&api, "rot", "the grace period is over").await;
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

fn later(t: Timestamp, by: &str) -> Timestamp {
    let by: jiff::Span = by.parse().expect("a span");
    t.checked_add(by).expect("time in range")
}

#[tokio::test]
async fn rotation_annotation_rotates_exactly_once_per_value() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(&cluster.api(NS), "manual", "{apiKeyRef: {name: k}}").await;
    let api = cluster.api::<ApiToken>(NS);
    let before = hash_of(&ready_token(&cluster.api(NS), "manual").await);

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
            .and_then(|s| s.last_rotation_request.as_deref().map(String::as_str)),
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

    // A second request gets an Event of its own, naming it (not a repeat of the first one's).
    apikey_operator::cli::rotate(client.clone(), NS, "manual", "2026-11-28", Some(DEADLINE))
        .await
        .expect("rotated again");
    let notes = eventually("an Event for each request", || async {
        let notes: Vec<String> = events_for(&client, NS, "manual")
            .await
            .into_iter()
            .filter(|(_, reason, _)| reason == "Rotated")
            .map(|(_, _, note)| note)
            .collect();
        (notes.len() == 2).then_some(notes)
    })
    .await;
    for request in ["2026-11-27", "2026-11-28"] {
        assert!(
            notes.iter().any(|n| n.contains(request)),
            "no Event names {request}: {notes:?}"
        );
    }
}

#[tokio::test]
async fn renew_before_replaces_the_value_before_it_expires() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &cluster.api(NS),
        "renew",
        "{apiKeyRef: {name: k}, expiration: {lifetime: 4s}, rotation: {renewBefore: 2s}}",
    )
    .await;
    let first = ready_token(&cluster.api(NS), "renew").await;
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
