//! The `ExpiringSoon` condition of an ApiToken, with the controller on an
//! injected clock that the test steps: it turns True exactly when the value
//! enters its warning window (a third of its lifetime, at most 7 days), with
//! reason `ExpiresSoon` and the expiry in its message; it stays False with
//! reason `Valid` before that, `RenewalScheduled` when a renewal comes first
//! and `NoExpiry` without an expiry. One test on the real clock shows the flip
//! arrives by itself (a requeue), with no change to the token.

use std::sync::Arc;

use crate::support::*;
use apikey_operator::api::ApiToken;
use apikey_operator::api::conditions::{EXPIRED, EXPIRING_SOON, READY, reason};
use apikey_operator::token;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

const NS: &str = "soon";

fn at(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).expect("time in range")
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// Now in whole seconds, as status times are stored.
fn whole_second_now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now")
}

/// A cluster whose controller reads a clock that stands at `t0` (now, in whole
/// seconds) until the test moves it, with the key `k` and `tokens` created.
struct Clocked {
    cluster: Cluster,
    clock: Arc<ManualClock>,
    t0: Timestamp,
    api: kube::Api<ApiToken>,
    _controller: Operator,
}

impl Clocked {
    async fn start(tokens: &[(&str, &str)]) -> Clocked {
        let cluster = Cluster::start(NS).await;
        let t0 = whole_second_now();
        let clock = ManualClock::new(t0);
        let controller = cluster.controller_on(clock.clone());
        setup(&cluster, tokens).await;
        Clocked {
            api: cluster.api::<ApiToken>(NS),
            cluster,
            clock,
            t0,
            _controller: controller,
        }
    }
}

async fn setup(cluster: &Cluster, tokens: &[(&str, &str)]) {
    create_key(&cluster.api(NS), "k", "User", "u").await;
    for (name, spec) in tokens {
        create_token(&cluster.api(NS), name, spec).await;
    }
}

fn condition(token: &ApiToken, type_: &str) -> Condition {
    token
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", token.status))
}

fn expires_at(token: &ApiToken) -> Timestamp {
    token
        .status
        .as_ref()
        .and_then(|s| s.expires_at.as_ref())
        .expect("status.expiresAt")
        .0
}

/// ExpiringSoon=False, reason Valid, naming the expiry.
fn assert_not_yet(token: &ApiToken, when: &str) {
    let soon = condition(token, EXPIRING_SOON);
    assert_eq!(
        (soon.status.as_str(), soon.reason.as_str()),
        ("False", reason::VALID),
        "{when}: {soon:?}"
    );
    assert!(
        soon.message.contains(&expires_at(token).to_string()),
        "{when}: the message names the expiry: {soon:?}"
    );
}

#[tokio::test]
async fn a_thirty_day_value_warns_for_its_last_seven_days() {
    let Clocked {
        cluster,
        clock,
        t0,
        api,
        _controller,
    } = Clocked::start(&[(
        "month",
        "{apiKeyRef: {name: k}, expiration: {lifetime: 30d}}",
    )])
    .await;

    let issued = settled_token(&api, "month").await;
    let expiry = at(t0, days(30));
    assert_eq!(
        issued
            .status
            .as_ref()
            .and_then(|s| s.issued_at.as_ref())
            .map(|t| t.0),
        Some(t0),
        "issued on the injected clock"
    );
    assert_eq!(expires_at(&issued), expiry);
    assert_not_yet(&issued, "at issue");

    // A third of 30 days would open the window at day 20; it is capped at 7 days.
    clock.set(at(t0, days(20)));
    assert_not_yet(&reconcile_now(&api, "month", "day 20").await, "day 20");
    let opens = at(t0, days(23));
    clock.set(at(opens, SignedDuration::from_secs(-1)));
    assert_not_yet(
        &reconcile_now(&api, "month", "one second before").await,
        "one second before the window",
    );

    clock.set(opens);
    let warned = reconcile_now(&api, "month", "window open").await;
    let soon = condition(&warned, EXPIRING_SOON);
    assert_eq!(soon.status, "True", "{soon:?}");
    assert_eq!(soon.reason, reason::EXPIRES_SOON);
    assert!(
        soon.message.contains(&expiry.to_string()) && soon.message.contains("no renewal"),
        "the message says when and that nothing renews it: {}",
        soon.message
    );
    assert_eq!(
        soon.last_transition_time.0, opens,
        "flipped at the window's start"
    );
    assert_eq!(soon.observed_generation, warned.metadata.generation);

    // A warning only: the value stays valid, unchanged, in its Secret.
    let ready_cond = condition(&warned, READY);
    assert_eq!(
        (ready_cond.status.as_str(), ready_cond.reason.as_str()),
        ("True", reason::ISSUED)
    );
    let expired = condition(&warned, EXPIRED);
    assert_eq!(
        (expired.status.as_str(), expired.reason.as_str()),
        ("False", reason::VALID)
    );
    assert_eq!(hash_of(&warned), hash_of(&issued), "no new value");
    assert_eq!(expires_at(&warned), expiry);
    let secret = cluster
        .api::<Secret>(NS)
        .get("month")
        .await
        .expect("Secret");
    assert_eq!(
        token::hash_value(&secret_value(&secret, "token")).as_str(),
        hash_of(&warned)
    );
}

#[tokio::test]
async fn a_three_hour_value_warns_for_its_last_hour() {
    let Clocked {
        cluster: _cluster,
        clock,
        t0,
        api,
        _controller,
    } = Clocked::start(&[(
        "short",
        "{apiKeyRef: {name: k}, expiration: {lifetime: 3h}}",
    )])
    .await;
    let issued = settled_token(&api, "short").await;
    assert_not_yet(&issued, "at issue");

    let opens = at(t0, SignedDuration::from_hours(2));
    clock.set(at(opens, SignedDuration::from_secs(-1)));
    assert_not_yet(
        &reconcile_now(&api, "short", "one second before").await,
        "one second before the last third",
    );
    clock.set(opens);
    let warned = reconcile_now(&api, "short", "last third").await;
    let soon = condition(&warned, EXPIRING_SOON);
    assert_eq!(
        (soon.status.as_str(), soon.reason.as_str()),
        ("True", reason::EXPIRES_SOON),
        "{soon:?}"
    );
    assert!(
        soon.message
            .contains(&at(t0, SignedDuration::from_hours(3)).to_string())
    );
    assert_eq!(hash_of(&warned), hash_of(&issued));
}

#[tokio::test]
async fn a_scheduled_renewal_or_no_expiry_is_never_expiring_soon() {
    let Clocked {
        cluster: _cluster,
        clock,
        t0,
        api,
        _controller,
    } = Clocked::start(&[
        (
            "renewing",
            "{apiKeyRef: {name: k}, expiration: {lifetime: 30d}, rotation: {renewBefore: 1d}}",
        ),
        ("forever", "{apiKeyRef: {name: k}}"),
    ])
    .await;
    let renewing = settled_token(&api, "renewing").await;
    let forever = settled_token(&api, "forever").await;

    let renewal = at(t0, days(29));
    assert_eq!(
        renewing
            .status
            .as_ref()
            .and_then(|s| s.next_rotation_at.as_ref())
            .map(|t| t.0),
        Some(renewal)
    );
    let never = condition(&forever, EXPIRING_SOON);
    assert_eq!(
        (never.status.as_str(), never.reason.as_str()),
        ("False", reason::NO_EXPIRY),
        "{never:?}"
    );
    let never_expired = condition(&forever, EXPIRED);
    assert_eq!(
        (never_expired.status.as_str(), never_expired.reason.as_str()),
        ("False", reason::NO_EXPIRY)
    );

    // Day 25: inside the 7-day window, but the renewal on day 29 comes first.
    clock.set(at(t0, days(25)));
    for (name, before) in [("renewing", &renewing), ("forever", &forever)] {
        let now = reconcile_now(&api, name, "day 25").await;
        let soon = condition(&now, EXPIRING_SOON);
        assert_eq!(soon.status, "False", "{name}: {soon:?}");
        assert_eq!(hash_of(&now), hash_of(before), "{name}: no new value yet");
        if name == "renewing" {
            assert_eq!(soon.reason, reason::RENEWAL_SCHEDULED, "{soon:?}");
            assert!(
                soon.message.contains(&renewal.to_string()),
                "names the renewal: {}",
                soon.message
            );
        } else {
            assert_eq!(soon.reason, reason::NO_EXPIRY, "{soon:?}");
        }
    }
}

#[tokio::test]
async fn on_the_real_clock_the_flip_comes_by_itself() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    // A 6 s lifetime warns for its last 2 s; nothing touches the token meanwhile.
    setup(
        &cluster,
        &[(
            "brief",
            "{apiKeyRef: {name: k}, expiration: {lifetime: 6s}}",
        )],
    )
    .await;
    let api = cluster.api::<ApiToken>(NS);
    let issued = settled_token(&api, "brief").await;
    let generation = issued.metadata.generation;

    let warned = wait_for(
        &api,
        "brief",
        "ExpiringSoon=True",
        token_condition(EXPIRING_SOON, "True"),
    )
    .await;
    let soon = condition(&warned, EXPIRING_SOON);
    assert_eq!(soon.reason, reason::EXPIRES_SOON);
    let expiry = expires_at(&warned);
    assert!(
        soon.last_transition_time.0 >= at(expiry, SignedDuration::from_secs(-2)),
        "not before the window opened: {soon:?}, expires {expiry}"
    );
    assert_eq!(warned.metadata.generation, generation, "no edit woke it");
    assert_eq!(hash_of(&warned), hash_of(&issued));
}
