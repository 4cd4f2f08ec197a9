//! Revocation (annotation `apikeys.dev/revoke`): each new request value drops
//! the current value and every earlier one at once and issues a fresh value;
//! where no value may be issued the values only go; a request is acted on once.

use super::*;
use crate::api::REVOKE_ANNOTATION;

/// `status` with an earlier value `old` still inside its grace period.
fn in_grace(value: &str, old: &str) -> ApiTokenStatus {
    ApiTokenStatus {
        previous: vec![PreviousValue {
            hash: h(old).as_str().to_owned(),
            valid_until: Time(t("2026-06-01T12:30:00Z")),
        }],
        rotations: Some(1),
        last_rotation_request: Some(Box::new("r0".into())),
        ..issued_status(value, "2026-06-01T11:50:00Z")
    }
}

fn with_annotations(mut tok: ApiToken, pairs: &[(&str, &str)]) -> ApiToken {
    tok.metadata.annotations = Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    tok
}

fn revoke(tok: ApiToken, request: &str) -> ApiToken {
    with_annotations(tok, &[(REVOKE_ANNOTATION, request)])
}

fn revoked(status: &ApiTokenStatus) -> Option<&str> {
    status
        .last_revocation_request
        .as_deref()
        .map(String::as_str)
}

fn grace_1h(s: &mut ApiTokenSpec) {
    s.rotation = Some(TokenRotation {
        schedule: Rotation {
            every: Some("2h".into()),
            grace_period: Some("1h".into()),
            ..Default::default()
        },
        restart_targets: vec![],
    });
}

#[test]
fn a_revoke_request_drops_every_value_and_issues_a_fresh_one() {
    let tok = revoke(token(grace_1h, Some(in_grace("v2", "v1"))), "leak-1");
    let d = decide(&tok, READY_KEY, &ours("v2"), t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Revocation));
    assert!(d.status.previous.is_empty(), "no grace for revoked values");
    assert_eq!(d.status.hash, None, "filled in by promoted()");
    assert_eq!(revoked(&d.status), Some("leak-1"));
    assert_eq!(d.status.issued_at, Some(Time(t(NOW))));
    assert_eq!(
        d.status.next_rotation_at,
        Some(Time(t("2026-06-01T14:00:00Z"))),
        "the schedule starts again from the fresh value"
    );
    assert_eq!(
        d.status.rotations,
        Some(1),
        "a revocation is not a rotation"
    );
    let note = d.note.expect("an Event");
    assert_eq!((note.warning, note.reason), (false, "Revoked"));
    assert!(note.message.contains("\"leak-1\""), "{}", note.message);

    // Phase one already refuses the old values: no current, no previous.
    let p = pending(
        &tok.status.clone().unwrap_or_default(),
        &tok,
        IssueKind::Revocation,
        &h("v3"),
        "abcdefghijklmnop",
        t(NOW),
    );
    assert_eq!(p.hash, None);
    assert!(p.previous.is_empty());
    assert_eq!(revoked(&p), Some("leak-1"));
    // The revoked current value is remembered as such: the verifier answers it `revoked`.
    let retired = p.retired.as_deref().expect("retired");
    assert_eq!(
        (retired.hash.as_str(), retired.reason.as_str()),
        (h("v2").as_str(), "Revoked")
    );
    assert_eq!(
        p.pending.as_ref().map(|p| p.reason.as_str()),
        Some("Revoke")
    );
    assert_eq!(ready(&p), ("False", reason::ISSUING));

    // Promoted, the same request is not acted on again (an Argo CD re-sync).
    let done = promoted(&d.status, h("v3").as_str(), "abcdefghijklmnop");
    assert_eq!(ready(&done), ("True", reason::ISSUED));
    let again = revoke(token(grace_1h, Some(done.clone())), "leak-1");
    let d = decide(&again, READY_KEY, &ours("v3"), t("2026-06-01T12:00:05Z"));
    assert_eq!(d.action, ValueAction::Keep);
    assert_eq!(d.status, done);
    assert_eq!(d.note, None);
}

#[test]
fn a_revoke_wins_over_a_due_rotation_and_answers_a_rotate_request() {
    // Issued 11:50 with `every: 2h`: a rotation is due at 13:50; at 14:00 both are due.
    let tok = with_annotations(
        token(grace_1h, Some(in_grace("v2", "v1"))),
        &[(REVOKE_ANNOTATION, "leak-1"), (ROTATE_ANNOTATION, "r1")],
    );
    let at = t("2026-06-01T14:00:00Z");
    let d = decide(&tok, READY_KEY, &ours("v2"), at);
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Revocation));
    assert!(
        d.status.previous.is_empty(),
        "the rotation's grace is not kept"
    );
    assert_eq!(
        d.status
            .last_rotation_request
            .as_deref()
            .map(String::as_str),
        Some("r1")
    );
    assert_eq!(
        d.status.next_rotation_at,
        Some(Time(t("2026-06-01T16:00:00Z")))
    );
    let done = promoted(&d.status, h("v3").as_str(), "abcdefghijklmnop");
    let mut tok = tok;
    tok.status = Some(done);
    let d = decide(&tok, READY_KEY, &ours("v3"), at);
    assert_eq!(d.action, ValueAction::Keep, "neither request acts again");
}

#[test]
fn a_revoke_request_with_the_secret_missing_writes_a_fresh_value() {
    let tok = revoke(token(grace_1h, Some(in_grace("v2", "v1"))), "leak-1");
    let d = decide(&tok, READY_KEY, &SecretView::Missing, t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Revocation));
    assert!(d.status.previous.is_empty());
    assert_eq!(revoked(&d.status), Some("leak-1"));
}

#[test]
fn a_revoke_request_after_a_lifetime_expiry_issues_a_fresh_value() {
    let expired = ApiTokenStatus {
        hash: None,
        ..issued_status("v1", "2026-05-01T00:00:00Z")
    };
    let tok = revoke(
        token(
            |s| {
                s.expiration = Some(Box::new(Expiration {
                    expires_at: None,
                    lifetime: Some("7d".into()),
                }))
            },
            Some(expired),
        ),
        "leak-1",
    );
    let d = decide(&tok, READY_KEY, &SecretView::Missing, t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Revocation));
    assert_eq!(d.status.expires_at, Some(Time(t("2026-06-08T12:00:00Z"))));
}

/// Where no value may be issued, a revoke removes every value, answers the
/// request (once) and says why nothing new comes.
#[test]
fn where_no_value_may_be_issued_a_revoke_only_removes() {
    let (past, invalid) = (expires_at_passed, renew_before_not_shorter);
    let not_ready = KeyState::NotReady {
        message: "ServiceAccount \"bot\" does not exist",
    };
    type Case<'a> = (
        &'a str,
        &'a dyn Fn(&mut ApiTokenSpec),
        KeyState<'a>,
        SecretView,
        ValueAction,
        &'a str,
        &'a str,
    );
    let cases: [Case<'_>; 6] = [
        (
            "disabled",
            &|s| s.disabled = true,
            READY_KEY,
            ours("v2"),
            ValueAction::Remove,
            reason::DISABLED,
            "spec.disabled",
        ),
        (
            "expiresAt passed",
            &past,
            READY_KEY,
            ours("v2"),
            ValueAction::Remove,
            reason::EXPIRED,
            "has passed",
        ),
        (
            "key not Ready",
            &|_| {},
            not_ready,
            ours("v2"),
            ValueAction::Remove,
            reason::KEY_NOT_READY,
            "meanwhile: ApiKey \"key\" is not Ready",
        ),
        (
            "invalid spec",
            &invalid,
            READY_KEY,
            ours("v2"),
            ValueAction::Remove,
            reason::INVALID_SPEC,
            "spec is fixed",
        ),
        (
            "invalid spec and disabled",
            &|s| {
                invalid(s);
                s.disabled = true;
            },
            READY_KEY,
            ours("v2"),
            ValueAction::Remove,
            reason::INVALID_SPEC,
            "spec.disabled",
        ),
        (
            "Secret someone else's",
            &|_| {},
            READY_KEY,
            SecretView::Foreign { controller: None },
            ValueAction::Keep,
            reason::SECRET_CONFLICT,
            "meanwhile: Secret \"tok\" exists",
        ),
    ];
    for (name, spec, key, secret, action, why, says) in cases {
        let tok = revoke(token(spec, Some(in_grace("v2", "v1"))), "leak-1");
        revoke_only_removes(name, tok, key, &secret, &action, why, says);
    }
}

fn expires_at_passed(s: &mut ApiTokenSpec) {
    s.expiration = Some(Box::new(Expiration {
        expires_at: Some(Time(t("2026-06-01T11:00:00Z"))),
        lifetime: None,
    }))
}

fn renew_before_not_shorter(s: &mut ApiTokenSpec) {
    s.expiration = Some(Box::new(Expiration {
        expires_at: None,
        lifetime: Some("1h".into()),
    }));
    s.rotation = Some(TokenRotation {
        schedule: Rotation {
            renew_before: Some("2h".into()),
            ..Default::default()
        },
        restart_targets: vec![],
    });
}

/// The revoke request on `tok` removes every value with `action`, leaves Ready=False with
/// `why`, says `says`, and is acted on once.
fn revoke_only_removes(
    name: &str,
    tok: ApiToken,
    key: KeyState<'_>,
    secret: &SecretView,
    action: &ValueAction,
    why: &str,
    says: &str,
) {
    let d = decide(&tok, key, secret, t(NOW));
    assert_eq!(&d.action, action, "{name}");
    assert_eq!(d.status.hash, None, "{name}");
    assert!(d.status.previous.is_empty(), "{name}");
    assert_eq!(d.status.pending, None, "{name}");
    assert_eq!(revoked(&d.status), Some("leak-1"), "{name}");
    assert_eq!(ready(&d.status), ("False", why), "{name}");
    let message = d.note.map(|n| format!("{} {}", n.reason, n.message));
    let said = message
        .iter()
        .chain(d.status.conditions.iter().map(|c| &c.message))
        .any(|m| m.contains(says));
    assert!(said, "{name}: {message:?} / {:?}", d.status.conditions);

    // Acted on once: the same request does nothing more.
    let mut tok = tok;
    tok.status = Some(d.status.clone());
    let again = decide(&tok, key, &SecretView::Missing, t(NOW));
    assert_eq!(revoked(&again.status), Some("leak-1"), "{name}");
    assert!(
        again.note.is_none_or(|n| n.reason != "Revoked"),
        "{name}: revoked twice"
    );
}

/// A crash between the phases of a revocation: the next reconcile finishes
/// it as a revocation and answers the request recorded with it, so a newer
/// request made meanwhile still gets its own revocation.
#[test]
fn an_unfinished_revocation_is_finished_and_a_newer_request_acted_on_after() {
    let status = ApiTokenStatus {
        hash: None,
        previous: Vec::new(),
        pending: Some(PendingValue {
            hash: h("v3").as_str().to_owned(),
            reason: "Revoke".into(),
            started_at: Time(t(NOW)),
            rotation_request: None,
        }),
        last_revocation_request: Some(Box::new("leak-1".into())),
        ..in_grace("v2", "v1")
    };
    let tok = revoke(token(grace_1h, Some(status.clone())), "leak-2");

    // The value never reached the Secret: issued again, still for leak-1.
    let d = decide(&tok, READY_KEY, &ours("v2"), t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Revocation));
    assert_eq!(revoked(&d.status), Some("leak-1"));
    let redo = pending(
        &status,
        &tok,
        IssueKind::Revocation,
        &h("v4"),
        "abcdefghijklmnop",
        t(NOW),
    );
    assert_eq!(
        revoked(&redo),
        Some("leak-1"),
        "the redo answers leak-1 only"
    );
    assert_eq!(redo.hash, None);

    // It did reach the Secret: promoted, for leak-1.
    let d = decide(&tok, READY_KEY, &ours("v3"), t(NOW));
    assert_eq!(d.action, ValueAction::Promote(IssueKind::Revocation));
    assert_eq!(revoked(&d.status), Some("leak-1"));
    let done = promoted(&d.status, h("v3").as_str(), "abcdefghijklmnop");

    // Then leak-2 revokes the value leak-1 brought.
    let mut tok = tok;
    tok.status = Some(done);
    let d = decide(&tok, READY_KEY, &ours("v3"), t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Revocation));
    assert_eq!(revoked(&d.status), Some("leak-2"));
}

/// A token created with the annotation already set (a GitOps repository
/// replayed into a new cluster) holds nothing to revoke: its first value is
/// issued as usual, publishes no Event, and answers the request.
#[test]
fn the_first_value_of_a_new_token_answers_a_revoke_request() {
    let tok = revoke(token(|_| {}, None), "leak-1");
    let d = decide(&tok, READY_KEY, &SecretView::Missing, t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Initial));
    assert_eq!(d.note, None);
    assert_eq!(revoked(&d.status), Some("leak-1"));
    let p = pending(
        &ApiTokenStatus::default(),
        &tok,
        IssueKind::Initial,
        &h("v1"),
        "abcdefghijklmnop",
        t(NOW),
    );
    // Crash before the promotion: the value may be in the Secret and was
    // never accepted; the revoke replaces it rather than promote it.
    let mut tok = tok;
    tok.status = Some(p);
    let d = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Revocation));
    assert_eq!(revoked(&d.status), Some("leak-1"));
}

/// A rotation under way when a revoke comes: the revoke replaces it, and
/// the rotation's grace keeps nothing.
#[test]
fn a_revoke_replaces_an_unfinished_rotation() {
    let status = ApiTokenStatus {
        pending: Some(PendingValue {
            hash: h("v3").as_str().to_owned(),
            reason: "Request".into(),
            started_at: Time(t(NOW)),
            rotation_request: Some("r1".into()),
        }),
        ..in_grace("v2", "v1")
    };
    let tok = revoke(token(grace_1h, Some(status.clone())), "leak-1");
    let d = decide(&tok, READY_KEY, &ours("v3"), t(NOW));
    assert_eq!(d.action, ValueAction::Issue(IssueKind::Revocation));
    assert!(d.status.previous.is_empty());
    assert_eq!(revoked(&d.status), Some("leak-1"));
    assert_eq!(
        d.status
            .last_rotation_request
            .as_deref()
            .map(String::as_str),
        Some("r1")
    );
    let p = pending(
        &status,
        &tok,
        IssueKind::Revocation,
        &h("v4"),
        "abcdefghijklmnop",
        t(NOW),
    );
    assert_eq!((p.hash.as_deref(), p.previous.len()), (None, 0));
    assert_eq!(revoked(&p), Some("leak-1"));
}
