//! What a token's conditions and Events tell the user: the state it is really in, and one
//! instruction per situation that can be followed.

use super::*;

fn condition<'s>(status: &'s ApiTokenStatus, type_: &str) -> (&'s str, &'s str, &'s str) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

/// A disabled token has no value: its Expired and ExpiringSoon conditions say so, instead of
/// "the value never expires" (it had a one-week lifetime).
#[test]
fn a_disabled_tokens_conditions_describe_no_value() {
    let tok = token(
        |s| {
            s.disabled = true;
            s.expiration = Some(Box::new(Expiration {
                expires_at: None,
                lifetime: Some("7d".into()),
            }));
        },
        Some(issued_status("v1", "2026-06-01T00:00:00Z")),
    );
    let d = decide(&tok, READY_KEY, &ours("v1"), t(NOW));
    for type_ in [EXPIRED, "ExpiringSoon"] {
        let (status, why, message) = condition(&d.status, type_);
        assert_eq!((status, why), ("False", reason::DISABLED), "{type_}");
        assert!(message.contains("no value"), "{type_}: {message}");
    }
}

/// Each situation gets the one instruction that works: an expired `expiresAt` moves only with
/// the spec; an expired `lifetime` starts again with a rotation; a missing key cannot be fixed
/// in the (immutable) `apiKeyRef`.
#[test]
fn every_instruction_is_one_that_can_be_followed() {
    let expiring = |expiration: Expiration| {
        token(
            move |s| s.expiration = Some(Box::new(expiration)),
            Some(issued_status("v1", "2026-05-01T00:00:00Z")),
        )
    };
    let fixed = expiring(Expiration {
        expires_at: Some(Time(t("2026-05-02T00:00:00Z"))),
        lifetime: None,
    });
    let d = decide(&fixed, READY_KEY, &ours("v1"), t(NOW));
    let (_, _, message) = condition(&d.status, READY);
    assert!(
        message.contains("set a later spec.expiration.expiresAt"),
        "{message}"
    );
    assert!(!message.contains("rotat"), "{message}");

    let lifetime = expiring(Expiration {
        expires_at: None,
        lifetime: Some("1d".into()),
    });
    let d = decide(&lifetime, READY_KEY, &ours("v1"), t(NOW));
    let (_, _, message) = condition(&d.status, READY);
    assert!(message.contains("request a rotation"), "{message}");

    let tok = token(|_| {}, Some(issued_status("v1", "2026-06-01T00:00:00Z")));
    let d = decide(&tok, KeyState::Missing, &ours("v1"), t(NOW));
    let (_, _, message) = condition(&d.status, READY);
    assert!(!message.contains("fix spec.apiKeyRef"), "{message}");
    assert!(message.contains("delete this ApiToken"), "{message}");
}

/// Deleting a key deletes its tokens: a token whose owning key is gone gets no Warning (one
/// per token, for nothing anyone must do); a token whose key never owned it does.
#[test]
fn a_token_of_a_deleted_key_goes_without_a_warning() {
    let mut owned = token(|_| {}, Some(issued_status("v1", "2026-06-01T00:00:00Z")));
    owned.metadata.owner_references = Some(vec![
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey", "name": "k",
            "uid": "key-uid", "controller": true,
        }))
        .expect("owner reference"),
    ]);
    let d = decide(&owned, KeyState::Missing, &ours("v1"), t(NOW));
    assert_eq!(d.action, ValueAction::Remove);
    assert_eq!(ready(&d.status), ("False", reason::KEY_NOT_FOUND));
    assert!(d.note.is_none(), "{:?}", d.note);

    let unowned = token(|_| {}, Some(issued_status("v1", "2026-06-01T00:00:00Z")));
    let d = decide(&unowned, KeyState::Missing, &ours("v1"), t(NOW));
    let note = d.note.expect("a Warning");
    assert!(note.warning && note.reason == reason::KEY_NOT_FOUND);
}
