//! Decisions that keep or remove the value without issuing one: a blocked
//! token (its key), a Ready condition that only reports why nothing else
//! happens, and the three outcomes of an invalid spec.

use jiff::Timestamp;

use super::super::conditions::{self, DesiredCondition};
use super::facts::Facts;
use super::notes::revoked_note;
use super::status::{ready_reason, retire, revoke_every_value, with_ready};
use super::{Decision, Note, Requeue, SecretView, ValueAction};
use crate::api::ApiTokenStatus;
use crate::api::conditions::{EXPIRED, EXPIRING_SOON, READY, reason};

/// No value may exist (the key is missing, replaced or not Ready): the
/// status forgets every value, and a Secret of ours is deleted. An expired
/// token stays expired: its issue time and expiry are kept, so that the key
/// coming back (its owner found again) issues it no value; only a change of
/// `spec.expiration` (or a rotation request) ends an expiry.
pub(super) fn blocked(f: &Facts<'_>, why: &'static str, message: String) -> Decision {
    let current = &f.current;
    let expired = was_expired(current, f.now);
    let mut status = current.clone();
    status.observed_generation = f.generation;
    retire(&mut status, why);
    status.pending = None;
    status.previous.clear();
    if !expired {
        status.issued_at = None;
        status.expires_at = None;
    }
    status.next_rotation_at = None;
    status.secret_name = None;
    // Kept: the key the token is bound to (`bound_elsewhere`).
    let message = if expired {
        format!(
            "{message}. The value had expired and stays expired whatever happens to the key: \
             set a later spec.expiration to get a fresh one"
        )
    } else {
        message
    };
    let ready = DesiredCondition::new(READY, false, why, message.clone());
    status.conditions = if expired {
        // Expired (and ExpiringSoon) stay as they were: still expired.
        with_ready(&current.conditions, ready, f.generation, f.now)
    } else {
        conditions::merge(&current.conditions, &[ready], f.generation, f.now)
    };
    // No value is left to revoke: the request is answered, and the fresh
    // value comes when the key does.
    let note = match f.new_revocation {
        Some(request) => {
            status.last_revocation_request = Some(Box::new(request.to_owned()));
            let then = format!("no value is issued meanwhile: {message}");
            Some(revoked_note(request, &then))
        }
        None => block_note(current, why, message),
    };
    Decision {
        action: remove_if_ours(f.secret),
        status,
        note,
        requeue: Requeue::OnChange,
    }
}

/// The token's last value expired (and was removed, or is due to be).
fn was_expired(current: &ApiTokenStatus, now: Timestamp) -> bool {
    let expired_condition = current
        .conditions
        .iter()
        .any(|c| c.type_ == EXPIRED && c.status == "True");
    let past_expiry = current.expires_at.as_ref().is_some_and(|t| t.0 <= now);
    current.issued_at.is_some() && (expired_condition || past_expiry)
}

/// Keep the value as `current` records it and only report why nothing else
/// happens; the Warning is published on the transition only.
pub(super) fn keep_with_ready(
    f: &Facts<'_>,
    current: &ApiTokenStatus,
    why: &'static str,
    message: String,
    requeue: Requeue,
) -> Decision {
    let mut status = current.clone();
    status.observed_generation = f.generation;
    status.conditions = with_ready(
        &current.conditions,
        DesiredCondition::new(READY, false, why, message.clone()),
        f.generation,
        f.now,
    );
    Decision {
        action: ValueAction::Keep,
        status,
        note: block_note(current, why, message),
        requeue,
    }
}

/// The Warning that the token is blocked for `why`; none when `current`
/// already reports that reason (one Event per transition).
fn block_note(current: &ApiTokenStatus, why: &'static str, message: String) -> Option<Note> {
    (ready_reason(current) != Some(why)).then_some(Note {
        warning: true,
        reason: why,
        action: "Block",
        message,
    })
}

/// Delete the Secret if it is ours: no value may remain, and one that is not
/// ours is never touched.
pub(super) fn remove_if_ours(secret: &SecretView) -> ValueAction {
    if matches!(secret, SecretView::Ours { .. }) {
        ValueAction::Remove
    } else {
        ValueAction::Keep
    }
}

/// The spec cannot be acted on (`err` says why). The current value (if any)
/// stays: fixing the spec must not cost a rotation. Its recorded expiry
/// still holds (rule 5): it is removed then. Disabling needs no policy.
pub(super) fn invalid_spec(f: &Facts<'_>, err: &str) -> Decision {
    if f.token.spec.disabled {
        return disabled_under_invalid_spec(f, err);
    }
    if let Some(request) = f.new_revocation {
        return revoked_under_invalid_spec(f, err, request);
    }
    let expires_at = f.current.expires_at.as_ref().map(|t| t.0);
    match expires_at.filter(|_| f.current.hash.is_some()) {
        Some(at) if at <= f.now => expired_under_invalid_spec(f, err, at),
        until => kept_under_invalid_spec(f, err, until),
    }
}

/// The value stays, until its recorded expiry if it has one.
fn kept_under_invalid_spec(f: &Facts<'_>, err: &str, until: Option<Timestamp>) -> Decision {
    let mut decision = keep_with_ready(
        f,
        &f.current,
        reason::INVALID_SPEC,
        format!("{err}; the current value, if any, stays in place until the spec is fixed"),
        until.map_or(Requeue::OnChange, Requeue::At),
    );
    // A Secret of ours with no recorded value holds something nobody may use.
    if f.current.hash.is_none() && f.ours() {
        decision.action = ValueAction::Remove;
    }
    decision
}

/// A value past its recorded expiry while the spec is invalid: removed as
/// any expired value is, the status saying both why nothing new is issued and
/// that the value expired.
fn expired_under_invalid_spec(f: &Facts<'_>, err: &str, expired_at: Timestamp) -> Decision {
    let (current, now) = (&f.current, f.now);
    let mut status = current.clone();
    status.observed_generation = f.generation;
    retire(&mut status, reason::EXPIRED);
    status.secret_name = None;
    status.next_rotation_at = None;
    status.previous.retain(|p| p.valid_until.0 > now);
    let ready = DesiredCondition::new(
        READY,
        false,
        reason::INVALID_SPEC,
        format!(
            "{err}; the value expired at {expired_at} and was removed; a fresh one is issued once \
             the spec is fixed"
        ),
    );
    let expired_at_message = format!("expired at {expired_at}");
    let expired = DesiredCondition::new(EXPIRED, true, reason::EXPIRED, &expired_at_message);
    let soon = DesiredCondition::new(EXPIRING_SOON, false, reason::EXPIRED, expired_at_message);
    status.conditions = conditions::merge(
        &current.conditions,
        &[ready, expired, soon],
        f.generation,
        now,
    );
    let secret_name = &f.secret_name;
    Decision {
        action: remove_if_ours(f.secret),
        status,
        note: Some(Note {
            warning: true,
            reason: "Expired",
            action: "Expire",
            message: format!(
                "the value expired; Secret {secret_name:?} was deleted and the verifier rejects \
                 it. No new value is issued until the spec is fixed: {err}"
            ),
        }),
        requeue: Requeue::OnChange,
    }
}

/// A revoke request while the spec is invalid: a leaked value must not
/// outlive the spec's repair, so every value goes now; the fresh one is
/// issued once the spec is fixed. The issue time and expiry stay recorded,
/// so the repair does not extend the token's life.
fn revoked_under_invalid_spec(f: &Facts<'_>, err: &str, request: &str) -> Decision {
    let mut status = f.current.clone();
    revoke_every_value(&mut status, request);
    let mut decision = keep_with_ready(
        f,
        &status,
        reason::INVALID_SPEC,
        format!("{err}; no value is kept (revoked), a fresh one is issued once the spec is fixed"),
        Requeue::OnChange,
    );
    decision.action = remove_if_ours(f.secret);
    decision.note = Some(revoked_note(
        request,
        &format!("no value is issued until the spec is fixed: {err}"),
    ));
    decision
}

/// `spec.disabled` with a spec that is otherwise invalid: disabling needs no
/// policy, and the value goes as it would with a valid spec.
fn disabled_under_invalid_spec(f: &Facts<'_>, err: &str) -> Decision {
    let current = &f.current;
    let mut decision = keep_with_ready(
        f,
        current,
        reason::INVALID_SPEC,
        format!("{err}; spec.disabled is true, so no value is kept"),
        Requeue::OnChange,
    );
    let had_value =
        current.hash.is_some() || current.pending.is_some() || !current.previous.is_empty();
    let status = &mut decision.status;
    retire(status, reason::DISABLED);
    status.pending = None;
    status.previous.clear();
    status.issued_at = None;
    status.next_rotation_at = None;
    status.secret_name = None;
    if let Some(request) = f.new_revocation {
        status.last_revocation_request = Some(Box::new(request.to_owned()));
    }
    if had_value {
        let secret_name = &f.secret_name;
        decision.note = Some(Note {
            warning: false,
            reason: "Disabled",
            action: "Disable",
            message: format!("spec.disabled is true; Secret {secret_name:?} was deleted"),
        });
    }
    decision.action = remove_if_ours(f.secret);
    decision
}
