//! The status a decision writes: the three conditions that describe the
//! value (Ready, Expired, ExpiringSoon), the pending record of the two-phase
//! issue, and the comparisons that keep a steady state free of writes.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::super::conditions::{self, DesiredCondition};
use super::{IssueKind, revocation_request, rotation_request, secret_target};
use crate::api::conditions::{EXPIRED, EXPIRING_SOON, READY, reason};
use crate::api::{
    ApiToken, ApiTokenSpec, ApiTokenStatus, MAX_PREVIOUS, PendingValue, RetiredValue,
};
use crate::schedule::Validity;
use crate::token::TokenHash;

/// `now` without its fraction of a second: status times are stored in whole
/// seconds, so instants and the messages that quote them are computed at that
/// precision, or the next reconcile (reading the stored copy) would compute a
/// different status and write again. Rounding down never makes work early: a
/// due instant is itself in whole seconds.
pub(super) fn stored_precision(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// Earlier values still in their grace period at `now`, at most
/// `MAX_PREVIOUS`: the oldest go first (`previous` is kept oldest first).
/// Applied to every status written, so that one recorded before the cap
/// (or edited) shrinks on the next write instead of being refused by the CRD.
/// The latest value whose grace ended becomes `status.retired` (`Expired`).
pub(super) fn bounded_previous(status: &mut ApiTokenStatus, now: Timestamp) {
    // The latest value whose grace ended is remembered as expired (see `retire`).
    let ended = status
        .previous
        .iter()
        .filter(|p| p.valid_until.0 <= now)
        .max_by_key(|p| p.valid_until.0)
        .map(|p| p.hash.clone());
    if let Some(hash) = ended {
        status.retired = Some(Box::new(RetiredValue {
            hash,
            reason: reason::EXPIRED.to_owned(),
        }));
    }
    let previous = &mut status.previous;
    previous.retain(|p| p.valid_until.0 > now);
    let excess = previous.len().saturating_sub(MAX_PREVIOUS);
    previous.drain(..excess);
}

/// The status that records `hash` as pending before the Secret is written.
pub fn pending(
    current: &ApiTokenStatus,
    token: &ApiToken,
    kind: IssueKind,
    hash: &TokenHash,
    token_id: &str,
    now: Timestamp,
) -> ApiTokenStatus {
    let now = stored_precision(now);
    let (secret_name, _) = secret_target(token);
    let mut status = current.clone();
    let excess = status.previous.len().saturating_sub(MAX_PREVIOUS);
    status.previous.drain(..excess);
    status.token_id = Some(token_id.to_owned());
    let revocation = kind == IssueKind::Revocation;
    if revocation {
        // The revoked values stop being accepted with this write, before the
        // fresh one exists. Redoing a revocation (its value never reached the
        // Secret) keeps the request it answers: a newer one is answered after.
        let redo = revoking(current);
        retire(&mut status, reason::REVOKED);
        status.previous.clear();
        if !redo {
            status.last_revocation_request =
                revocation_request(token).map(|r| Box::new(r.to_owned()));
        }
    }
    status.pending = Some(PendingValue {
        hash: hash.as_str().to_owned(),
        reason: kind.as_str().to_owned(),
        started_at: Time(now),
        rotation_request: rotation_request(token).map(str::to_owned),
    });
    if status.hash.is_none() {
        let message = if revocation {
            format!(
                "the earlier values were revoked; writing a fresh value to Secret {secret_name:?}"
            )
        } else {
            format!("writing a new value to Secret {secret_name:?}")
        };
        let issuing = DesiredCondition::new(READY, false, reason::ISSUING, message);
        status.conditions =
            with_ready(&current.conditions, issuing, token.metadata.generation, now);
    }
    status
}

/// The final status of an `Issue`/`Promote` decision with the new value's hash filled in.
pub fn promoted(decided: &ApiTokenStatus, hash: &str, token_id: &str) -> ApiTokenStatus {
    let mut status = decided.clone();
    status.hash = Some(hash.to_owned());
    status.token_id = Some(token_id.to_owned());
    status
}

/// Takes the current value away, remembering its hash as `status.retired`
/// with `why` (a condition reason) so that the verifier can answer someone
/// still presenting it with the reason instead of `mismatch`; never accepted.
pub(super) fn retire(status: &mut ApiTokenStatus, why: &str) {
    if let Some(hash) = status.hash.take() {
        status.retired = Some(Box::new(RetiredValue {
            hash,
            reason: why.to_owned(),
        }));
    }
}

/// Drops every value the status records (current, pending, in grace) and
/// records `request` as the revoke request acted on.
pub(super) fn revoke_every_value(status: &mut ApiTokenStatus, request: &str) {
    retire(status, reason::REVOKED);
    status.pending = None;
    status.previous.clear();
    status.secret_name = None;
    status.next_rotation_at = None;
    status.last_revocation_request = Some(Box::new(request.to_owned()));
}

/// Whether the status records a revocation under way (its pending value).
pub(super) fn revoking(status: &ApiTokenStatus) -> bool {
    status
        .pending
        .as_ref()
        .is_some_and(|p| IssueKind::from_recorded(&p.reason) == IssueKind::Revocation)
}

/// Whether the status records a value (current, pending or in grace).
pub fn holds_a_value(status: &ApiTokenStatus) -> bool {
    status.hash.is_some() || status.pending.is_some() || !status.previous.is_empty()
}

/// Equal for our purposes: ignores the verifier's field and condition order.
pub fn same_status(a: &ApiTokenStatus, b: &ApiTokenStatus) -> bool {
    let normal = |s: &ApiTokenStatus| {
        let mut s = s.clone();
        s.last_used_at = None;
        s.conditions.sort_by(|x, y| x.type_.cmp(&y.type_));
        s
    };
    normal(a) == normal(b)
}

/// The conditions that describe the value once the decision is carried out:
/// `next` is the status then, `previous` the one it replaces.
#[allow(clippy::too_many_arguments)]
pub(super) fn value_conditions(
    previous: &ApiTokenStatus,
    next: &ApiTokenStatus,
    has_value: bool,
    spec: &ApiTokenSpec,
    validity: Validity,
    secret_name: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let ready = ready_condition(previous, next, has_value, spec, validity, secret_name);
    let expires = next
        .expires_at
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let (expired, soon) = if spec.disabled && !has_value && validity != Validity::Expired {
        // No value exists, so none expires: not "the value never expires".
        let none = "spec.disabled is true: there is no value to expire";
        (
            DesiredCondition::new(EXPIRED, false, reason::DISABLED, none),
            DesiredCondition::new(EXPIRING_SOON, false, reason::DISABLED, none),
        )
    } else {
        (
            expired_condition(validity, &expires),
            expiring_soon_condition(validity, &expires, next),
        )
    };
    conditions::merge(
        &previous.conditions,
        &[ready, expired, soon],
        generation,
        now,
    )
}

/// Ready: whether a valid value is in the Secret, and if not, why.
fn ready_condition(
    previous: &ApiTokenStatus,
    next: &ApiTokenStatus,
    has_value: bool,
    spec: &ApiTokenSpec,
    validity: Validity,
    secret_name: &str,
) -> DesiredCondition {
    if has_value {
        // Rotated once the token has been rotated or renewed: the history of the token,
        // which a later re-issue (a deleted Secret) or revocation does not undo.
        match (next.rotations.filter(|n| *n > 0), &next.last_rotated_at) {
            (Some(n), Some(at)) => DesiredCondition::new(
                READY,
                true,
                reason::ROTATED,
                format!(
                    "a valid value is in Secret {secret_name:?}; rotated or renewed {n} \
                     time{}, the last at {}",
                    if n == 1 { "" } else { "s" },
                    at.0
                ),
            ),
            _ => DesiredCondition::new(
                READY,
                true,
                reason::ISSUED,
                format!("a valid value is in Secret {secret_name:?}"),
            ),
        }
    } else if spec.disabled {
        DesiredCondition::new(
            READY,
            false,
            reason::DISABLED,
            "spec.disabled is true; set it to false to issue a fresh value",
        )
    } else if validity == Validity::Expired {
        let hint = match previous.expires_at.as_ref().or(next.expires_at.as_ref()) {
            Some(at) => format!("the value expired at {}", at.0),
            None => "the value expired".to_owned(),
        };
        DesiredCondition::new(
            READY,
            false,
            reason::EXPIRED,
            format!("{hint}; {}", renewal_hint(spec)),
        )
    } else {
        DesiredCondition::new(
            READY,
            false,
            reason::ISSUING,
            format!("a value is being issued into Secret {secret_name:?}"),
        )
    }
}

/// What brings a fresh value after an expiry: a fixed `expiresAt` only moves
/// with the spec; a `lifetime` starts again with every fresh value.
pub(super) fn renewal_hint(spec: &ApiTokenSpec) -> &'static str {
    if spec
        .expiration
        .as_ref()
        .is_some_and(|e| e.expires_at.is_some())
    {
        "set a later spec.expiration.expiresAt to issue a fresh value"
    } else {
        "request a rotation (apikey-operator rotate, or the annotation apikeys.dev/rotate) to \
         issue a fresh value with a new lifetime"
    }
}

/// Expired: whether the value's expiry passed; `expires` quotes it.
fn expired_condition(validity: Validity, expires: &str) -> DesiredCondition {
    match validity {
        Validity::Expired => DesiredCondition::new(
            EXPIRED,
            true,
            reason::EXPIRED,
            format!("expired at {expires}"),
        ),
        Validity::NoExpiry => {
            DesiredCondition::new(EXPIRED, false, reason::NO_EXPIRY, "the value never expires")
        }
        _ => DesiredCondition::new(
            EXPIRED,
            false,
            reason::VALID,
            format!("valid until {expires}"),
        ),
    }
}

/// ExpiringSoon: whether the value expires within its warning window with
/// no renewal scheduled before.
fn expiring_soon_condition(
    validity: Validity,
    expires: &str,
    next: &ApiTokenStatus,
) -> DesiredCondition {
    match validity {
        Validity::ExpiringSoon => DesiredCondition::new(
            EXPIRING_SOON,
            true,
            reason::EXPIRES_SOON,
            format!(
                "expires at {expires} and no renewal is scheduled before; rotate it or extend spec.expiration"
            ),
        ),
        Validity::RenewalScheduled => {
            let at = next
                .next_rotation_at
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            DesiredCondition::new(
                EXPIRING_SOON,
                false,
                reason::RENEWAL_SCHEDULED,
                format!("a new value is due at {at}, before the expiry"),
            )
        }
        Validity::Valid => DesiredCondition::new(
            EXPIRING_SOON,
            false,
            reason::VALID,
            format!("valid until {expires}"),
        ),
        Validity::NoExpiry => DesiredCondition::new(
            EXPIRING_SOON,
            false,
            reason::NO_EXPIRY,
            "the value never expires",
        ),
        Validity::Expired => DesiredCondition::new(
            EXPIRING_SOON,
            false,
            reason::EXPIRED,
            format!("expired at {expires}"),
        ),
    }
}

/// Replaces the Ready condition and keeps the others as they are.
pub(super) fn with_ready(
    existing: &[Condition],
    ready: DesiredCondition,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out = conditions::merge(existing, &[ready], generation, now);
    out.extend(existing.iter().filter(|c| c.type_ != READY).cloned());
    out
}

/// The Ready reason of a blocked value, if the status reports one: its
/// Event is published on the transition only.
pub(super) fn ready_reason(status: &ApiTokenStatus) -> Option<&'static str> {
    let ready = status.conditions.iter().find(|c| c.type_ == READY)?;
    [
        reason::KEY_NOT_FOUND,
        reason::KEY_REPLACED,
        reason::KEY_NOT_READY,
        reason::INVALID_SPEC,
        reason::SECRET_CONFLICT,
    ]
    .into_iter()
    .find(|r| *r == ready.reason)
}
