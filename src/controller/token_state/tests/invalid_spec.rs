//! Decisions under a spec the controller cannot act on: the value stays
//! until its recorded expiry, and disabling still removes it.

use super::*;

/// A token whose policy cannot be resolved (renewBefore longer than its lifetime).
fn invalid_policy(disabled: bool, status: ApiTokenStatus) -> ApiToken {
    token(
        |s| {
            s.disabled = disabled;
            s.expiration = Some(Box::new(Expiration {
                expires_at: None,
                lifetime: Some("1h".into()),
            }));
            s.rotation = Some(TokenRotation {
                schedule: Rotation {
                    every: None,
                    renew_before: Some("2h".into()),
                    grace_period: None,
                },
                restart_targets: vec![],
            });
        },
        Some(status),
    )
}

#[test]
fn invalid_spec_keeps_the_current_value() {
    let status = issued_status("v1", "2026-06-01T00:00:00Z");
    let tok = invalid_policy(false, status.clone());
    let d = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(d.action, ValueAction::Keep);
    assert_eq!(d.status.hash, status.hash);
    assert_eq!(ready(&d.status), ("False", reason::INVALID_SPEC));
    assert!(d.status.conditions[0].message.contains("renewBefore"));
    assert_eq!(
        d.requeue,
        Requeue::OnChange,
        "a permanent error waits for a spec change"
    );
}

/// An invalid spec keeps the value, but not beyond its recorded expiry
/// (rule 5): the reconcile comes back at that instant and removes it then.
#[test]
fn invalid_spec_still_lets_the_current_value_expire() {
    let invalid = |status: ApiTokenStatus| invalid_policy(false, status);
    let expires = t("2026-06-01T18:00:00Z");
    let status = ApiTokenStatus {
        expires_at: Some(Time(expires)),
        ..issued_status("v1", "2026-06-01T00:00:00Z")
    };
    let before = decide(&invalid(status.clone()), READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(before.action, ValueAction::Keep);
    assert_eq!(before.status.hash, status.hash);
    assert_eq!(before.requeue, Requeue::At(expires), "back at the expiry");

    let after = decide(&invalid(before.status), READY_KEY, &ours("v1"), expires);
    assert_eq!(after.action, ValueAction::Remove);
    assert_eq!(after.status.hash, None);
    assert_eq!(ready(&after.status), ("False", reason::INVALID_SPEC));
    assert!(after.status.conditions[0].message.contains("renewBefore"));
    assert!(after.status.conditions[0].message.contains("expired"));
    let expired = after.status.conditions.iter().find(|c| c.type_ == EXPIRED);
    assert_eq!(expired.map(|c| c.status.as_str()), Some("True"));
    assert_eq!(after.note.as_ref().map(|n| n.reason), Some("Expired"));
    assert_eq!(after.requeue, Requeue::OnChange);

    // Removed once: the next reconcile keeps things as they are.
    let again = decide(
        &invalid(after.status.clone()),
        READY_KEY,
        &SecretView::Missing,
        expires,
    );
    assert_eq!(again.action, ValueAction::Keep);
    assert_eq!(again.note, None);
    assert_eq!(again.status.hash, None);
}

/// Disabling needs no valid policy: with an invalid spec the value still
/// goes; and a Secret of ours holding a value the status does not record is
/// removed whatever the spec.
#[test]
fn an_invalid_spec_still_disables_and_clears_stray_values() {
    let invalid = invalid_policy;
    let issued = issued_status("v1", "2026-06-01T00:00:00Z");
    let d = decide(
        &invalid(true, issued.clone()),
        READY_KEY,
        &ours("v1"),
        t(NOW),
    );
    assert_eq!(d.action, ValueAction::Remove);
    assert_eq!(d.status.hash, None);
    assert_eq!(d.status.secret_name, None);
    assert_eq!(ready(&d.status), ("False", reason::INVALID_SPEC));
    assert!(d.status.conditions[0].message.contains("spec.disabled"));
    assert_eq!(d.note.as_ref().map(|n| n.reason), Some("Disabled"));

    let cleared = ApiTokenStatus {
        hash: None,
        ..issued
    };
    let d = decide(&invalid(false, cleared), READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(d.action, ValueAction::Remove, "a stray value goes");
    let d = decide(
        &invalid(false, d.status.clone()),
        READY_KEY,
        &SecretView::Missing,
        t(NOW),
    );
    assert_eq!(d.action, ValueAction::Keep);
}
