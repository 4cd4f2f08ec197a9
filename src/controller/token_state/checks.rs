//! The checks [`decide`](super::decide) runs in order, one per trigger, in
//! the manner of cert-manager's `policies.go`: each reads the [`Facts`] (and
//! what an earlier check established) and gives a [`Verdict`]: `Break` with
//! the decision when its trigger applies, `Continue` to let the next look.
//! The triggers of a new value (due, missing Secret, tampered value) give
//! the kind of value needed, which [`new_value`] writes.

use std::ops::ControlFlow::{self, Break, Continue};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::facts::Facts;
use super::issue::issue;
use super::notes::revoked_note;
use super::status::{
    bounded_previous, holds_a_value, renewal_hint, retire, revoke_every_value, revoking,
    value_conditions,
};
use super::verdicts::{blocked, invalid_spec, keep_with_ready, remove_if_ours};
use super::{
    Decision, IssueKind, KeyState, Note, Requeue, SecretView, ValueAction, bound_elsewhere,
    secret_template_error,
};
use crate::api::conditions::{READY, reason};
use crate::api::{ApiTokenStatus, TokenDefaults};
use crate::schedule::{Plan, Policy, Step, Validity};
use crate::token::{TokenHash, TokenId};

/// A check's outcome: `Break(decision)` when its trigger applies, else
/// `Continue` with what it established for the checks after it.
pub(super) type Verdict<T = ()> = ControlFlow<Decision, T>;

/// The key Ready and the one the value was issued under.
#[derive(Clone, Copy)]
pub(super) struct ReadyKey<'k> {
    pub defaults: Option<&'k TokenDefaults>,
    pub uid: &'k str,
}

/// Missing, replaced or not Ready key: no value may exist. A token stays
/// bound to the key it was created for: under a key of the same name
/// created since (the first deleted), it gets no value, ever — whoever
/// created it was checked against the earlier key's owner only.
pub(super) fn usable_key<'k>(f: &Facts<'_>, key: KeyState<'k>) -> Verdict<ReadyKey<'k>> {
    let key_name = &f.token.spec.api_key_ref.name;
    let (why, message) = match key {
        KeyState::Ready {
            defaults,
            uid,
            created,
        } if !bound_elsewhere(f.token, uid, created) => {
            return Continue(ReadyKey { defaults, uid });
        }
        KeyState::Ready { .. } | KeyState::Replaced => (
            reason::KEY_REPLACED,
            format!(
                "ApiKey {key_name:?} is not the key this ApiToken was created for (that one was \
                 deleted, and this one created after the token): values are issued only under \
                 the key a token was created for, whose owner its creator was checked against. \
                 Delete this ApiToken and create it again for the current key"
            ),
        ),
        KeyState::Missing => (
            reason::KEY_NOT_FOUND,
            format!(
                "ApiKey {key_name:?} does not exist in this namespace (deleted, or never \
                 created), so this ApiToken has no value. A token stays bound to the key it was \
                 created for: delete this ApiToken, and create it again once the key exists"
            ),
        ),
        KeyState::NotReady { message } => (
            reason::KEY_NOT_READY,
            format!("ApiKey {key_name:?} is not Ready: {message}"),
        ),
    };
    let mut decision = blocked(f, why, message);
    if matches!(key, KeyState::Missing) && f.token.controlling_key_uid().is_some() {
        // The key that owns it was deleted: the garbage collector deletes this token next.
        // Nothing for anyone to do, so no Warning (one per token of a deleted key).
        decision.note = None;
    }
    Break(decision)
}

/// Invalid spec: a policy that cannot be scheduled, or Secret labels or
/// annotations the API server would refuse. Else the checked policy.
pub(super) fn valid_spec(f: &Facts<'_>, defaults: Option<&TokenDefaults>) -> Verdict<Policy> {
    let err = match Policy::resolve(&f.token.spec, defaults, f.min_rotation) {
        Err(err) => err.to_string(),
        Ok(policy) => match secret_template_error(f.token) {
            None => return Continue(policy),
            Some(err) => err,
        },
    };
    Break(invalid_spec(f, &err))
}

/// The Secret exists and is someone else's: it is never overwritten.
pub(super) fn secret_conflict(f: &Facts<'_>) -> Verdict {
    let SecretView::Foreign { controller } = f.secret else {
        return Continue(());
    };
    let owner = controller
        .as_deref()
        .map(|c| format!(" (it is controlled by {c})"))
        .unwrap_or_default();
    let secret_name = &f.secret_name;
    let message = format!(
        "Secret {secret_name:?} exists and is not owned by this ApiToken{owner}; it is never \
         overwritten: delete it or set spec.secret.name to another name"
    );
    // A pending value can only be bound for this Secret, which is never
    // written: it was dropped, and nothing may record it as coming.
    let mut current = ApiTokenStatus {
        pending: None,
        ..f.current.clone()
    };
    // A revoke cannot wait for the conflict to end: the values go now (the
    // Secret that held them, if another, is deleted), a fresh one comes after.
    if let Some(request) = f.new_revocation {
        revoke_every_value(&mut current, request);
    }
    let revoked = f
        .new_revocation
        .map(|r| revoked_note(r, &format!("no value is issued meanwhile: {message}")));
    let mut decision = keep_with_ready(
        f,
        &current,
        reason::SECRET_CONFLICT,
        message,
        Requeue::Later,
    );
    decision.note = revoked.or(decision.note);
    Break(decision)
}

/// `status.tokenId` is not this token's: neither the id derived from its
/// uid nor an id from before ids were derived that its own Secret's value
/// carries. Only a status edited by hand (a tokenId copied from another
/// ApiToken) does that; the verifier does not accept it under that id, and
/// the token gets a Warning and a fresh id and value.
pub(super) fn foreign_token_id(f: &Facts<'_>, policy: &Policy, key: ReadyKey<'_>) -> Verdict {
    let Some(recorded) = f.current.token_id.as_deref() else {
        return Continue(());
    };
    // Without the Secret an old id cannot be checked: the missing-Secret
    // reissue gives the value the derived id (`issue::issued_token_id`).
    if token_id_is_own(recorded, f.uid(), f.secret) || *f.secret == SecretView::Missing {
        return Continue(());
    }
    let kind = IssueKind::Reissue {
        secret_missing: false,
    };
    let mut decision = issue(f, policy, key.uid, ValueAction::Issue(kind), kind);
    // Hashes recorded next to a foreign id are not this token's either.
    decision.status.previous.clear();
    decision.note = Some(Note {
        warning: true,
        reason: "TokenIdReplaced",
        action: "Reissue",
        message: format!(
            "status.tokenId {recorded:?} is not this ApiToken's id (copied from another \
             ApiToken?); the verifier does not accept it, and a fresh id and value were issued"
        ),
    });
    Break(decision)
}

/// Whether `recorded` is the token id of the ApiToken `uid`: derived from
/// the uid, or (an id issued before ids were derived) carried by the value
/// in the token's own Secret.
pub(super) fn token_id_is_own(recorded: &str, uid: &str, secret: &SecretView) -> bool {
    let Ok(id) = TokenId::parse(recorded) else {
        return false;
    };
    id.is_bound_to(uid)
        || matches!(secret, SecretView::Ours { value_token_id: Some(carried), .. } if *carried == id)
}

/// An issue was started and not finished (a crash or a failed write between
/// its phases): promoted when the Secret holds the pending value, else
/// issued again, as the kind of issue it was started as.
pub(super) fn unfinished_issue(f: &Facts<'_>, policy: &Policy, key: ReadyKey<'_>) -> Verdict {
    let Some(pending) = &f.current.pending else {
        return Continue(());
    };
    let kind = IssueKind::from_recorded(&pending.reason);
    let in_secret = matches!(f.secret, SecretView::Ours { value_hash: Some(h), .. } if h.as_str() == pending.hash);
    let action = if in_secret {
        ValueAction::Promote(kind)
    } else {
        ValueAction::Issue(kind)
    };
    Break(issue(f, policy, key.uid, action, kind))
}

/// A revoke request not acted on yet (annotation `apikeys.dev/revoke`): the
/// current value and every earlier one stop being accepted at once, with no
/// grace period, and a fresh value replaces them. It comes before the
/// schedule, so it wins over a rotation due at the same time (due again
/// from the fresh value's issue), and before an unfinished issue of another
/// kind, whose value (perhaps in the Secret, never accepted yet) it
/// replaces. Where no value may be issued (disabled, or `expiresAt` passed)
/// the values only go. A token that holds no value and is due its first
/// one (new, re-enabled) gets it as usual, and that issue answers the request.
pub(super) fn revocation(f: &Facts<'_>, policy: &Policy, key: ReadyKey<'_>) -> Verdict {
    let Some(request) = f.new_revocation else {
        return Continue(());
    };
    // A revocation under way is finished by `unfinished_issue`; a newer
    // request is acted on after it.
    if revoking(&f.current) {
        return Continue(());
    }
    if !holds_a_value(&f.current) && f.plan(policy).step.issue_kind().is_some() {
        return Continue(());
    }
    let expiry_passed = policy.expires_at(f.now).filter(|at| *at <= f.now);
    let mut status = refreshed(f);
    revoke_every_value(&mut status, request);
    let then = match (f.token.spec.disabled, expiry_passed) {
        (false, None) => {
            let kind = IssueKind::Revocation;
            return Break(issue(f, policy, key.uid, ValueAction::Issue(kind), kind));
        }
        (true, _) => {
            // As `disabled` does: enabling the token again issues a fresh value.
            status.issued_at = None;
            "no value is issued while spec.disabled is true".to_owned()
        }
        (false, Some(at)) => {
            format!("no value is issued: the expiry {at} has passed; set a later spec.expiration")
        }
    };
    let note = revoked_note(request, &then);
    Break(settled(
        f,
        &f.plan(policy),
        status,
        remove_if_ours(f.secret),
        Some(note),
    ))
}

/// A value is due: the first one, a scheduled rotation or renewal, or a
/// requested rotation.
pub(super) fn due_value(plan: &Plan) -> Option<IssueKind> {
    plan.step.issue_kind()
}

/// The Secret of a recorded value is gone: a fresh value is issued, on the
/// schedule of the one it replaces.
pub(super) fn missing_secret(f: &Facts<'_>, plan: &Plan) -> Option<IssueKind> {
    (keeps_recorded_value(f, plan) && *f.secret == SecretView::Missing).then_some(
        IssueKind::Reissue {
            secret_missing: true,
        },
    )
}

/// The Secret holds a value other than the recorded one (edited or tampered,
/// or `spec.secret.key` changed): never accepted, replaced by a fresh value.
pub(super) fn tampered_value(f: &Facts<'_>, plan: &Plan) -> Option<IssueKind> {
    let SecretView::Ours { value_hash, .. } = f.secret else {
        return None;
    };
    let recorded = f.current.hash.as_deref();
    let other = value_hash.as_ref().map(TokenHash::as_str) != recorded;
    (keeps_recorded_value(f, plan) && other).then_some(IssueKind::Reissue {
        secret_missing: false,
    })
}

/// Writes the value that one of the checks above found needed.
pub(super) fn new_value(
    f: &Facts<'_>,
    policy: &Policy,
    key: ReadyKey<'_>,
    kind: Option<IssueKind>,
) -> Verdict {
    match kind {
        Some(kind) => Break(issue(f, policy, key.uid, ValueAction::Issue(kind), kind)),
        None => Continue(()),
    }
}

/// A value is recorded and the schedule keeps it.
fn keeps_recorded_value(f: &Facts<'_>, plan: &Plan) -> bool {
    matches!(plan.step, Step::Idle | Step::EndGrace) && f.current.hash.is_some()
}

/// The value reached its expiry: removed (rule 5), with a Warning.
pub(super) fn expired(f: &Facts<'_>, plan: &Plan) -> Verdict {
    if plan.step != Step::Expire {
        return Continue(());
    }
    let mut status = refreshed(f);
    retire(&mut status, reason::EXPIRED);
    let secret_name = &f.secret_name;
    let note = Note {
        warning: true,
        reason: "Expired",
        action: "Expire",
        message: format!(
            "the value expired; Secret {secret_name:?} was deleted and the verifier rejects it"
        ),
    };
    Break(settled(f, plan, status, ValueAction::Remove, Some(note)))
}

/// `spec.disabled`: the value goes, and when it was issued is forgotten, so
/// that enabling the token again issues a fresh one.
pub(super) fn disabled(f: &Facts<'_>, plan: &Plan) -> Verdict {
    if plan.step != Step::Disable {
        return Continue(());
    }
    let mut status = refreshed(f);
    retire(&mut status, reason::DISABLED);
    status.previous.clear();
    status.issued_at = None;
    let secret_name = &f.secret_name;
    let note = Note {
        warning: false,
        reason: "Disabled",
        action: "Disable",
        message: format!("spec.disabled is true; Secret {secret_name:?} was deleted"),
    };
    Break(settled(f, plan, status, ValueAction::Remove, Some(note)))
}

/// Nothing to write but the status: grace periods end, an expiry in the
/// past that keeps a token without a value is reported once, and a value in
/// our Secret that the status does not record is removed.
pub(super) fn unchanged(f: &Facts<'_>, plan: &Plan) -> Decision {
    let status = refreshed(f);
    let note = expired_before_issue(f, plan, &status);
    // A Secret of ours with no recorded value holds something nobody may use.
    let action = if status.hash.is_none() && f.ours() {
        ValueAction::Remove
    } else {
        ValueAction::Keep
    };
    settled(f, plan, status, action, note)
}

/// The Warning about a token that gets no value because its expiry
/// (`expiresAt`) is in the past; once, on the transition.
fn expired_before_issue(f: &Facts<'_>, plan: &Plan, status: &ApiTokenStatus) -> Option<Note> {
    let was_expired = f
        .current
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.reason == reason::EXPIRED);
    if status.hash.is_some()
        || f.token.spec.disabled
        || plan.validity != Validity::Expired
        || was_expired
    {
        return None;
    }
    let at = plan
        .expires_at
        .map(|t| t.to_string())
        .unwrap_or_else(|| "the configured expiry".to_owned());
    Some(Note {
        warning: true,
        reason: "Expired",
        action: "Expire",
        message: format!(
            "the expiry {at} is in the past, so no value is issued; {}",
            renewal_hint(&f.token.spec)
        ),
    })
}

/// The recorded status at this generation, without grace periods that ended.
fn refreshed(f: &Facts<'_>) -> ApiTokenStatus {
    let mut status = f.current.clone();
    status.observed_generation = f.generation;
    bounded_previous(&mut status, f.now);
    status
}

/// The decision when no new value is written: `status` as the check left
/// it, with the times and conditions of the plan.
fn settled(
    f: &Facts<'_>,
    plan: &Plan,
    mut status: ApiTokenStatus,
    action: ValueAction,
    note: Option<Note>,
) -> Decision {
    if plan.consumes_request {
        status.last_rotation_request = f.request.map(|r| Box::new(r.to_owned()));
    }
    status.expires_at = plan.expires_at.map(Time);
    status.next_rotation_at = plan.next_rotation_at.map(Time);
    if status.hash.is_none() {
        status.secret_name = None;
    }
    let has_value = status.hash.is_some();
    status.conditions = value_conditions(
        &f.current,
        &status,
        has_value,
        &f.token.spec,
        plan.validity,
        &f.secret_name,
        f.generation,
        f.now,
    );
    Decision {
        action,
        status,
        note,
        requeue: plan.next_due.map_or(Requeue::OnChange, Requeue::At),
    }
}
