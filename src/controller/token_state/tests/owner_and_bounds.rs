//! Decisions when the key's owner goes and comes back (an expired value
//! never returns), and under bounded rotation (the floor of `every`, grace
//! shorter than `every`, `status.previous` capped).

use super::*;
use crate::api::MAX_PREVIOUS;

fn with_lifetime(lifetime: &str) -> impl FnOnce(&mut ApiTokenSpec) + '_ {
    move |s| {
        s.expiration = Some(Box::new(Expiration {
            expires_at: None,
            lifetime: Some(lifetime.into()),
        }))
    }
}

fn rotating(every: &str, grace: Option<&str>) -> impl FnOnce(&mut ApiTokenSpec) {
    let (every, grace) = (every.to_owned(), grace.map(str::to_owned));
    move |s| {
        s.rotation = Some(TokenRotation {
            schedule: Rotation {
                every: Some(every),
                renew_before: None,
                grace_period: grace,
            },
            restart_targets: vec![],
        })
    }
}

const OWNER_GONE: KeyState<'static> = KeyState::NotReady {
    message: "ServiceAccount \"ci\" does not exist",
};

/// A token whose value expired stays expired while its key is not Ready
/// and once it is Ready again: no fresh value, Expired stays true.
#[test]
fn an_expired_value_never_returns_when_the_owner_comes_back() {
    let issued = issued_status("v1", "2026-05-01T00:00:00Z");
    let tok = token(with_lifetime("1d"), Some(issued));
    let expired = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(expired.action, ValueAction::Remove);
    assert!(is_true(&expired.status.conditions, EXPIRED));

    let tok = token(with_lifetime("1d"), Some(expired.status));
    let gone = decide(&tok, OWNER_GONE, &SecretView::Missing, t(NOW));
    assert_eq!(ready(&gone.status), ("False", reason::KEY_NOT_READY));
    assert!(is_true(&gone.status.conditions, EXPIRED));
    let message = &gone
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .expect("Ready")
        .message;
    assert!(message.contains("stays expired"), "{message}");

    let tok = token(with_lifetime("1d"), Some(gone.status));
    let back = decide(&tok, READY_KEY, &SecretView::Missing, t(NOW));
    assert_eq!(back.action, ValueAction::Keep, "no fresh value");
    assert_eq!(back.status.hash, None);
    assert!(is_true(&back.status.conditions, EXPIRED));
    assert_eq!(ready(&back.status).0, "False");

    // A spec change ends the expiry: a longer lifetime issues a fresh value.
    let tok = token(with_lifetime("90d"), Some(back.status));
    let extended = decide(&tok, READY_KEY, &SecretView::Missing, t(NOW));
    assert_eq!(extended.action, ValueAction::Issue(IssueKind::Initial));
}

/// A live value goes with its owner and a fresh one is issued when the key
/// is Ready again (for a ServiceAccount key that takes a new key: see
/// `controller::key`).
#[test]
fn a_live_value_is_removed_while_the_owner_is_gone() {
    let tok = token(
        with_lifetime("90d"),
        Some(issued_status("v1", "2026-05-01T00:00:00Z")),
    );
    let gone = decide(&tok, OWNER_GONE, &ours("v1"), t(NOW));
    assert_eq!(gone.action, ValueAction::Remove);
    assert_eq!(
        (gone.status.hash.as_ref(), gone.status.issued_at.as_ref()),
        (None, None)
    );
    assert!(!is_true(&gone.status.conditions, EXPIRED));
}

/// Rotation under the floor or a grace period not shorter than the period:
/// InvalidSpec, the current value kept; the operator's floor may be higher.
#[test]
fn rotation_bounds_are_invalid_spec() {
    let status = issued_status("v1", "2026-06-01T11:00:00Z");
    for (every, grace) in [
        ("1s", None),
        ("59s", None),
        ("1h", Some("100w")),
        ("1h", Some("1h")),
    ] {
        let tok = token(rotating(every, grace), Some(status.clone()));
        let d = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
        assert_eq!(d.action, ValueAction::Keep, "{every} {grace:?}");
        assert_eq!(
            ready(&d.status),
            ("False", reason::INVALID_SPEC),
            "{every} {grace:?}"
        );
    }
    let tok = token(rotating("1h", Some("10m")), Some(status.clone()));
    let d = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
    assert_eq!(ready(&d.status).0, "True");
    let d = decide_with_floor(
        &tok,
        READY_KEY,
        &ours("v1"),
        t(NOW),
        SignedDuration::from_hours(2),
    );
    assert_eq!(ready(&d.status), ("False", reason::INVALID_SPEC));
    let message = &d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .expect("Ready")
        .message;
    assert!(
        message.contains("minimum rotation period (2h)"),
        "{message}"
    );
}

/// `status.previous` never holds more than `MAX_PREVIOUS`: a rotation drops
/// the oldest first, and a longer list recorded earlier shrinks on the next write.
#[test]
fn previous_values_are_capped_oldest_first() {
    let mut status = issued_status("v0", "2026-06-01T11:58:00Z");
    status.previous = (0..MAX_PREVIOUS + 5)
        .map(|i| PreviousValue {
            hash: h(&format!("old{i}")).as_str().to_owned(),
            valid_until: Time(t("2026-06-01T12:30:00Z") + SignedDuration::from_secs(i as i64)),
        })
        .collect();
    let tok = token(
        |s| {
            rotating("1h", Some("50m"))(s);
        },
        Some(status.clone()),
    );
    let steady = decide(&tok, READY_KEY, &ours("v0"), t(NOW));
    assert_eq!(steady.status.previous.len(), MAX_PREVIOUS);
    assert_eq!(
        steady.status.previous[0].hash, status.previous[5].hash,
        "the oldest went first"
    );

    let mut requested = token(|s| rotating("1h", Some("50m"))(s), Some(status.clone()));
    requested
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(crate::api::ROTATE_ANNOTATION.into(), "now".into());
    let rotated = decide(&requested, READY_KEY, &ours("v0"), t(NOW));
    assert!(
        matches!(rotated.action, ValueAction::Issue(_)),
        "{:?}",
        rotated.action
    );
    let previous = &rotated.status.previous;
    assert_eq!(previous.len(), MAX_PREVIOUS);
    assert_eq!(
        previous.last().map(|p| p.hash.as_str()),
        Some(h("v0").as_str()),
        "newest kept"
    );
}

fn is_true(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}
