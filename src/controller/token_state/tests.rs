//! The reconciler's decisions, without I/O: each test builds a token in some
//! state, the key and Secret as observed, and checks the action and status.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

use super::*;
use crate::api::conditions::{EXPIRED, READY, reason};
use crate::api::{
    ApiKeyRef, ApiTokenSpec, Expiration, PendingValue, PreviousValue, Rotation, TokenRotation,
};
use crate::schedule::RotateReason;
use crate::token::{TokenHash, hash_value};

const NOW: &str = "2026-06-01T12:00:00Z";

fn t(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn token(spec_edit: impl FnOnce(&mut ApiTokenSpec), status: Option<ApiTokenStatus>) -> ApiToken {
    let mut spec = ApiTokenSpec {
        api_key_ref: ApiKeyRef { name: "key".into() },
        display_name: None,
        description: None,
        tags: BTreeMap::new(),
        expiration: None,
        rotation: None,
        secret: None,
        audiences: Vec::new(),
        disabled: false,
    };
    spec_edit(&mut spec);
    let mut token = ApiToken::new("tok", spec);
    token.metadata = ObjectMeta {
        name: Some("tok".into()),
        namespace: Some("ns".into()),
        uid: Some("uid-1".into()),
        generation: Some(3),
        ..Default::default()
    };
    token.status = status;
    token
}

const READY_KEY: KeyState<'static> = KeyState::Ready {
    defaults: None,
    uid: "key-uid",
    created: None,
};

fn h(value: &str) -> TokenHash {
    hash_value(value)
}

fn issued_status(value: &str, issued_at: &str) -> ApiTokenStatus {
    ApiTokenStatus {
        token_id: Some("abcdefghijklmnop".into()),
        secret_name: Some("tok".into()),
        hash: Some(h(value).as_str().to_owned()),
        issued_at: Some(Time(t(issued_at))),
        ..Default::default()
    }
}

/// The retired value's hash and why it went.
fn retired(status: &ApiTokenStatus) -> Option<(TokenHash, &str)> {
    let retired = status.retired.as_deref()?;
    Some((
        TokenHash::parse(&retired.hash).expect("a hash"),
        retired.reason.as_str(),
    ))
}

fn ours(value: &str) -> SecretView {
    SecretView::Ours {
        value_hash: Some(h(value)),
        // The id `issued_status` records: an id from before ids were derived.
        value_token_id: crate::token::TokenId::parse("abcdefghijklmnop").ok(),
    }
}

fn ready(status: &ApiTokenStatus) -> (&str, &str) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .expect("Ready condition");
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn new_token_is_issued_and_the_status_is_ready_after_promotion() {
    let tok = token(|_| {}, None);
    let d = decide(&tok, READY_KEY, &SecretView::Missing, t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Initial));
    assert_eq!(d.status.hash, None, "hash is filled in by promoted()");
    assert_eq!(d.status.issued_at, Some(Time(t(NOW))));
    let promoted = promoted(&d.status, "sha256:x", "abcdefghijklmnop");
    assert_eq!(ready(&promoted), ("True", reason::ISSUED));
    assert_eq!(
        d.note, None,
        "the first value of a new token publishes no Event"
    );
}

#[test]
fn pending_records_the_hash_before_the_value_exists() {
    let tok = token(|_| {}, None);
    let hash = h("v1");
    let p = pending(
        &ApiTokenStatus::default(),
        &tok,
        IssueKind::Initial,
        &hash,
        "abcdefghijklmnop",
        t(NOW),
    );
    assert_eq!(
        p.pending.as_ref().map(|p| p.hash.as_str()),
        Some(hash.as_str())
    );
    assert_eq!(p.hash, None);
    assert_eq!(ready(&p), ("False", reason::ISSUING));
}

#[test]
fn steady_state_decides_to_keep_and_changes_nothing() {
    let tok = token(|_| {}, None);
    let d = decide(&tok, READY_KEY, &SecretView::Missing, t(NOW));
    let status = promoted(&d.status, h("v1").as_str(), "abcdefghijklmnop");
    let tok = token(|_| {}, Some(status.clone()));
    let again = decide(&tok, READY_KEY, &ours("v1"), t("2026-06-01T13:00:00Z"));
    assert_eq!(again.action, ValueAction::Keep);
    assert_eq!(
        again.status, status,
        "a reconcile with nothing to do must not change the status"
    );
    assert_eq!(again.note, None);
}

#[test]
fn a_sub_second_issue_instant_needs_no_second_status_write() {
    // Status times are stored with whole seconds: the promoted status must be
    // what the next reconcile computes from the stored copy, or every issue
    // costs one more status write.
    let tok = token(
        |s| {
            s.expiration = Some(Box::new(Expiration {
                lifetime: Some("90d".into()),
                ..Default::default()
            }));
            s.rotation = Some(TokenRotation {
                schedule: Rotation {
                    every: Some("30d".into()),
                    ..Default::default()
                },
                ..Default::default()
            });
        },
        None,
    );
    let issued_at = t("2026-06-01T12:00:00.807413658Z");
    let d = decide(&tok, READY_KEY, &SecretView::Missing, issued_at);
    let status = promoted(&d.status, h("v1").as_str(), "abcdefghijklmnop");
    let stored: ApiTokenStatus =
        serde_json::from_value(serde_json::to_value(&status).expect("serialize"))
            .expect("deserialize");
    let mut tok = tok;
    tok.status = Some(stored.clone());
    let again = decide(&tok, READY_KEY, &ours("v1"), t("2026-06-01T12:00:01.1Z"));
    assert_eq!(again.action, ValueAction::Keep);
    assert!(
        same_status(&again.status, &stored),
        "the next reconcile would write again:\n{:#?}\nvs stored\n{:#?}",
        again.status,
        stored
    );
}

#[test]
fn pending_value_found_in_the_secret_is_promoted() {
    let mut status = issued_status("v1", "2026-06-01T00:00:00Z");
    status.pending = Some(PendingValue {
        hash: h("v2").as_str().to_owned(),
        reason: "Request".into(),
        started_at: Time(t(NOW)),
        rotation_request: Some("r1".into()),
    });
    let tok = token(|_| {}, Some(status));
    let d = decide(&tok, READY_KEY, &ours("v2"), t(NOW));
    assert_eq!(
        d.action,
        ValueAction::Promote(IssueKind::Rotation(RotateReason::Requested))
    );
    assert_eq!(d.status.pending, None);
    assert_eq!(
        d.status
            .last_rotation_request
            .as_deref()
            .map(String::as_str),
        Some("r1")
    );
    assert_eq!(d.status.rotations, Some(1));
    assert_eq!(
        ready(&d.status),
        ("True", reason::ROTATED),
        "Ready says the value came from a rotation"
    );
}

#[test]
fn pending_value_missing_from_the_secret_is_issued_again() {
    let mut status = issued_status("v1", "2026-06-01T00:00:00Z");
    status.pending = Some(PendingValue {
        hash: h("v2").as_str().to_owned(),
        reason: "Rotate".into(),
        started_at: Time(t(NOW)),
        rotation_request: None,
    });
    let tok = token(|_| {}, Some(status));
    let d = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(
        d.action,
        ValueAction::Issue(IssueKind::Rotation(RotateReason::Scheduled))
    );
}

#[test]
fn a_request_made_while_a_pending_value_waited_is_not_swallowed() {
    // A re-issue was started with no rotate annotation, then the process
    // died; the user asked for a rotation before it came back.
    let mut status = issued_status("v1", "2026-06-01T00:00:00Z");
    status.pending = Some(PendingValue {
        hash: h("v2").as_str().to_owned(),
        reason: "Reissue".into(),
        started_at: Time(t(NOW)),
        rotation_request: None,
    });
    let mut tok = token(|_| {}, Some(status));
    tok.metadata.annotations = Some(BTreeMap::from([(
        ROTATE_ANNOTATION.to_owned(),
        "r1".to_owned(),
    )]));
    let d = decide(&tok, READY_KEY, &ours("v2"), t(NOW));
    assert_eq!(
        d.action,
        ValueAction::Promote(IssueKind::Reissue {
            secret_missing: false
        })
    );
    assert_eq!(
        d.status.last_rotation_request, None,
        "r1 is still to be answered"
    );

    let mut promoted = promoted(&d.status, h("v2").as_str(), "abcdefghijklmnop");
    promoted.pending = None;
    tok.status = Some(promoted);
    let next = decide(&tok, READY_KEY, &ours("v2"), t(NOW));
    assert_eq!(
        next.action,
        ValueAction::Issue(IssueKind::Rotation(RotateReason::Requested))
    );
}

#[test]
fn tampered_or_deleted_secret_gets_a_fresh_value_with_the_same_expiry() {
    let status = issued_status("v1", "2026-06-01T00:00:00Z");
    let tok = token(
        |s| {
            s.expiration = Some(Box::new(Expiration {
                expires_at: None,
                lifetime: Some("30d".into()),
            }))
        },
        Some(status),
    );
    for (secret, missing) in [(ours("hand-edited"), false), (SecretView::Missing, true)] {
        let d = decide(&tok, READY_KEY, &secret, t(NOW));
        assert_eq!(
            d.action,
            ValueAction::Issue(IssueKind::Reissue {
                secret_missing: missing
            })
        );
        assert_eq!(d.status.issued_at, Some(Time(t("2026-06-01T00:00:00Z"))));
        assert_eq!(d.status.expires_at, Some(Time(t("2026-07-01T00:00:00Z"))));
        let note = d.note.expect("event");
        assert!(note.warning && note.reason == "Reissued");
    }
}

#[test]
fn rotation_keeps_the_old_hash_for_the_grace_period() {
    let status = issued_status("v1", "2026-06-01T00:00:00Z");
    let tok = token(
        |s| {
            s.rotation = Some(TokenRotation {
                schedule: Rotation {
                    every: Some("12h".into()),
                    renew_before: None,
                    grace_period: Some("1h".into()),
                },
                restart_targets: vec![],
            })
        },
        Some(status),
    );
    let d = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(
        d.action,
        ValueAction::Issue(IssueKind::Rotation(RotateReason::Scheduled))
    );
    assert_eq!(
        d.status.previous,
        vec![PreviousValue {
            hash: h("v1").as_str().to_owned(),
            valid_until: Time(t("2026-06-01T13:00:00Z"))
        }]
    );
    assert_eq!(d.status.rotations, Some(1));
    assert_eq!(d.status.last_rotated_at, Some(Time(t(NOW))));
    assert_eq!(
        d.requeue,
        Requeue::At(t("2026-06-01T13:00:00Z")),
        "the end of grace comes first"
    );

    // At the end of grace the old value goes, remembered as expired.
    let rotated = promoted(&d.status, h("v2").as_str(), "abcdefghijklmnop");
    let tok = token(
        |s| {
            s.rotation = Some(TokenRotation {
                schedule: Rotation {
                    every: Some("12h".into()),
                    renew_before: None,
                    grace_period: Some("1h".into()),
                },
                restart_targets: vec![],
            })
        },
        Some(rotated),
    );
    let d = decide(&tok, READY_KEY, &ours("v2"), t("2026-06-01T13:00:00Z"));
    assert_eq!(d.action, ValueAction::Keep);
    assert!(d.status.previous.is_empty());
    assert_eq!(retired(&d.status), Some((h("v1"), reason::EXPIRED)));
}

#[test]
fn expiry_removes_the_value_and_reports_expired() {
    let status = issued_status("v1", "2026-05-01T00:00:00Z");
    let tok = token(
        |s| {
            s.expiration = Some(Box::new(Expiration {
                expires_at: None,
                lifetime: Some("7d".into()),
            }))
        },
        Some(status),
    );
    let d = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(d.action, ValueAction::Remove);
    assert_eq!(d.status.hash, None);
    assert_eq!(retired(&d.status), Some((h("v1"), reason::EXPIRED)));
    assert_eq!(
        d.status.expires_at,
        Some(Time(t("2026-05-08T00:00:00Z"))),
        "the expiry stays recorded (the expiry gauge and its alert read it)"
    );
    assert_eq!(ready(&d.status), ("False", reason::EXPIRED));
    assert!(
        d.status
            .conditions
            .iter()
            .any(|c| c.type_ == EXPIRED && c.status == "True")
    );
    // Once expired and the Secret gone, nothing more happens.
    let tok = token(
        |s| {
            s.expiration = Some(Box::new(Expiration {
                expires_at: None,
                lifetime: Some("7d".into()),
            }))
        },
        Some(d.status.clone()),
    );
    let again = decide(
        &tok,
        READY_KEY,
        &SecretView::Missing,
        t("2026-06-02T00:00:00Z"),
    );
    assert_eq!(again.action, ValueAction::Keep);
    assert_eq!(again.status, d.status);
}

#[test]
fn disabled_token_loses_its_value_and_reenabling_issues_a_fresh_one() {
    let status = issued_status("v1", "2026-06-01T00:00:00Z");
    let tok = token(|s| s.disabled = true, Some(status));
    let d = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(d.action, ValueAction::Remove);
    assert_eq!(ready(&d.status), ("False", reason::DISABLED));
    assert_eq!(retired(&d.status), Some((h("v1"), reason::DISABLED)));
    let tok = token(|s| s.disabled = false, Some(d.status));
    let d = decide(&tok, READY_KEY, &SecretView::Missing, t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Initial));
    assert_eq!(
        retired(&d.status),
        Some((h("v1"), reason::DISABLED)),
        "the fresh value leaves the retired one as it was: still refused, with its reason"
    );
}

#[test]
fn missing_or_unready_key_means_no_value() {
    let status = issued_status("v1", "2026-06-01T00:00:00Z");
    let tok = token(|_| {}, Some(status));
    let d = decide(&tok, KeyState::Missing, &ours("v1"), t(NOW));
    assert_eq!(d.action, ValueAction::Remove);
    assert_eq!(d.status.hash, None);
    assert_eq!(ready(&d.status), ("False", reason::KEY_NOT_FOUND));
    assert_eq!(retired(&d.status), Some((h("v1"), reason::KEY_NOT_FOUND)));
    let d = decide(
        &tok,
        KeyState::NotReady {
            message: "ServiceAccount \"bot\" does not exist",
        },
        &SecretView::Missing,
        t(NOW),
    );
    assert_eq!(d.action, ValueAction::Keep);
    let (status, why) = ready(&d.status);
    assert_eq!((status, why), ("False", reason::KEY_NOT_READY));
    assert!(d.status.conditions[0].message.contains("does not exist"));
}

#[test]
fn foreign_secret_is_never_touched() {
    let tok = token(|_| {}, None);
    let d = decide(
        &tok,
        READY_KEY,
        &SecretView::Foreign { controller: None },
        t(NOW),
    );
    assert_eq!(d.action, ValueAction::Keep);
    assert_eq!(ready(&d.status), ("False", reason::SECRET_CONFLICT));
    assert_eq!(d.requeue, Requeue::Later);
    // The event is published on the transition only.
    let tok = token(|_| {}, Some(d.status));
    let again = decide(
        &tok,
        READY_KEY,
        &SecretView::Foreign { controller: None },
        t(NOW),
    );
    assert_eq!(again.note, None);

    // A value recorded as pending before the Secret turned out to be someone
    // else's was never written: the conflict drops it from status.
    let mut status = again.status;
    status.pending = Some(PendingValue {
        hash: h("v1").as_str().to_owned(),
        reason: "Issue".into(),
        started_at: Time(t(NOW)),
        rotation_request: None,
    });
    let tok = token(|_| {}, Some(status));
    let cleared = decide(
        &tok,
        READY_KEY,
        &SecretView::Foreign { controller: None },
        t(NOW),
    );
    assert_eq!(cleared.action, ValueAction::Keep);
    assert_eq!(cleared.status.pending, None);
}

/// A value records the uid of the key it was issued under; under a key of
/// the same name and another uid it is removed, and none is issued again:
/// the token stays bound to its key, and says to re-create it.
#[test]
fn a_token_bound_to_another_key_uid_loses_its_value_and_gets_none_again() {
    let fresh = decide(
        &token(|_| {}, None),
        READY_KEY,
        &SecretView::Missing,
        t(NOW),
    );
    assert_eq!(
        fresh.status.api_key_uid.as_deref().map(String::as_str),
        Some("key-uid")
    );

    let earlier = ApiTokenStatus {
        api_key_uid: Some(Box::new("earlier-uid".into())),
        ..issued_status("v1", "2026-06-01T00:00:00Z")
    };
    let d = decide(
        &token(|_| {}, Some(earlier)),
        READY_KEY,
        &ours("v1"),
        t(NOW),
    );
    assert_eq!(d.action, ValueAction::Remove);
    assert_eq!(d.status.hash, None);
    assert_eq!(
        d.status.api_key_uid.as_deref().map(String::as_str),
        Some("earlier-uid"),
        "still bound to the earlier key"
    );
    assert_eq!(ready(&d.status), ("False", reason::KEY_REPLACED));
    let message = &d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready")
        .message;
    assert!(
        message.contains("Delete this ApiToken and create it again"),
        "{message}"
    );
    let again = decide(
        &token(|_| {}, Some(d.status.clone())),
        READY_KEY,
        &SecretView::Missing,
        t(NOW),
    );
    assert_eq!(
        again.action,
        ValueAction::Keep,
        "no value under the new key"
    );
    assert!(same_status(&again.status, &d.status), "and no write");
}

/// A token that never got a value is bound by its age: older than the key,
/// it was created for an earlier key of that name (or none), and gets none.
#[test]
fn a_token_older_than_its_key_gets_no_value() {
    let created = |at: &str| {
        let mut tok = token(|_| {}, None);
        tok.metadata.creation_timestamp = Some(Time(at.parse().expect("time")));
        tok
    };
    let key = KeyState::Ready {
        defaults: None,
        uid: "key-uid",
        created: Some("2026-06-01T00:00:10Z".parse().expect("time")),
    };
    let older = created("2026-06-01T00:00:09Z");
    let d = decide(&older, key, &SecretView::Missing, t(NOW));
    assert_eq!(d.action, ValueAction::Keep);
    assert_eq!(ready(&d.status), ("False", reason::KEY_REPLACED));
    for at in ["2026-06-01T00:00:10Z", "2026-06-01T00:00:11Z"] {
        let d = decide(&created(at), key, &SecretView::Missing, t(NOW));
        assert!(
            matches!(d.action, ValueAction::Issue(IssueKind::Initial)),
            "created at {at}: {:?}",
            d.action
        );
    }
}

/// A value from before the uid was recorded is judged by the owner
/// reference (in the shell, `adopted_key_state`), not here.
#[test]
fn a_value_from_before_the_key_uid_was_recorded_is_kept() {
    let unrecorded = issued_status("v1", "2026-06-01T00:00:00Z");
    let d = decide(
        &token(|_| {}, Some(unrecorded)),
        READY_KEY,
        &ours("v1"),
        t(NOW),
    );
    assert_eq!(d.action, ValueAction::Keep);
}

#[test]
fn stray_value_in_our_secret_without_a_recorded_hash_is_removed() {
    let tok = token(|s| s.disabled = true, None);
    let d = decide(&tok, READY_KEY, &ours("unrecorded"), t(NOW));
    assert_eq!(d.action, ValueAction::Remove);
}

mod invalid_spec;
mod messages;
mod owner_and_bounds;
mod revocation;
mod token_ids;
