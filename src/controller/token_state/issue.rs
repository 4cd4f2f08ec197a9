//! The decision to write a new value (or promote the pending one): the
//! status to write once the value is in the Secret, worked out from the kind
//! of issue and the policy.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::checks::token_id_is_own;
use super::facts::Facts;
use super::notes::issue_note;
use super::status::{bounded_previous, holds_a_value, retire, revoking, value_conditions};
use super::{Decision, IssueKind, Requeue, ValueAction};
use crate::api::conditions::reason;
use crate::api::{ApiTokenStatus, PreviousValue};
use crate::schedule::{self, Observed, Policy};
use crate::token::TokenId;

/// Write a value of `kind` (or promote it: `action`) under the key `key_uid`.
pub(super) fn issue(
    f: &Facts<'_>,
    policy: &Policy,
    key_uid: &str,
    action: ValueAction,
    kind: IssueKind,
) -> Decision {
    let (current, now) = (&f.current, f.now);
    let status = issued_status(f, policy, key_uid, kind);
    let after = schedule::plan(
        policy,
        &Observed {
            has_value: true,
            issued_at: Some(status.issued_at.as_ref().map_or(now, |t| t.0)),
            grace_ends: status.previous.iter().map(|p| p.valid_until.0).collect(),
            last_rotation_request: status.last_rotation_request.as_deref().map(String::as_str),
        },
        schedule::Intent::default(),
        now,
    );
    let mut status = status;
    status.conditions = value_conditions(
        current,
        &status,
        true,
        &f.token.spec,
        after.validity,
        &f.secret_name,
        f.generation,
        now,
    );
    let moved_from = current
        .secret_name
        .as_deref()
        .filter(|old| *old != f.secret_name);
    let request = match kind {
        IssueKind::Revocation => status
            .last_revocation_request
            .as_deref()
            .map(String::as_str),
        _ => f.request,
    };
    Decision {
        action,
        note: issue_note(kind, &f.secret_name, moved_from, request),
        status,
        requeue: after.next_due.map_or(Requeue::OnChange, Requeue::At),
    }
}

/// The status once the new value is in the Secret, but for its hash, which
/// `promoted` fills in, and the conditions.
///
/// The new value carries the token's own id (see `checks::token_id_is_own`),
/// else the id derived from its uid; `None` (a random id) only for an object
/// without a uid.
fn issued_status(f: &Facts<'_>, policy: &Policy, key_uid: &str, kind: IssueKind) -> ApiTokenStatus {
    let (current, now) = (&f.current, f.now);
    let mut status = current.clone();
    if kind == IssueKind::Revocation {
        // As the pending status did: the revoked value is answered `revoked`.
        retire(&mut status, reason::REVOKED);
    }
    status.observed_generation = f.generation;
    status.pending = None;
    status.secret_name = Some(f.secret_name.clone());
    status.api_key_uid = Some(Box::new(key_uid.to_owned()));
    status.token_id = issued_token_id(f);
    record_issue(&mut status, current, policy, kind, now);
    bounded_previous(&mut status, now);
    // A value started before a crash answers only the request that was there
    // when it was started; one that arrived since still gets its own rotation.
    let answered = match &current.pending {
        Some(pending) => pending.rotation_request.clone(),
        None => f.request.map(str::to_owned),
    };
    if let Some(request) = answered {
        status.last_rotation_request = Some(Box::new(request));
    }
    // A revocation resumed after a crash answers the request its pending
    // status recorded. A fresh one answers the annotation's value, and so
    // does the first value of a token that held none (nothing to refuse).
    let fresh_revocation = kind == IssueKind::Revocation && !revoking(current);
    if (fresh_revocation || !holds_a_value(current))
        && let Some(request) = f.new_revocation
    {
        status.last_revocation_request = Some(Box::new(request.to_owned()));
    }
    let issued_at = status.issued_at.as_ref().map_or(now, |t| t.0);
    status.expires_at = policy.expires_at(issued_at).map(Time);
    status.next_rotation_at = policy.next_rotation_at(issued_at).map(Time);
    // `promoted` fills in the new value's hash once it is in the Secret.
    status.hash = None;
    status
}

/// When the new value counts as issued, and what a rotation keeps of the old one.
fn record_issue(
    status: &mut ApiTokenStatus,
    current: &ApiTokenStatus,
    policy: &Policy,
    kind: IssueKind,
    now: Timestamp,
) {
    match kind {
        IssueKind::Initial => {
            status.issued_at = Some(Time(now));
            status.previous.clear();
        }
        IssueKind::Rotation(_) => {
            if let Some(old) = current.hash.clone() {
                let grace_end = now.checked_add(policy.grace).unwrap_or(Timestamp::MAX);
                let own_expiry = current.expires_at.as_ref().map_or(Timestamp::MAX, |t| t.0);
                let valid_until = grace_end.min(own_expiry);
                if policy.grace > SignedDuration::ZERO && valid_until > now {
                    status.previous.push(PreviousValue {
                        hash: old,
                        valid_until: Time(valid_until),
                    });
                }
            }
            status.issued_at = Some(Time(now));
            status.last_rotated_at = Some(Time(now));
            status.rotations = Some(current.rotations.unwrap_or(0) + 1);
        }
        // Nothing issued before stays valid: no grace period.
        IssueKind::Revocation => {
            status.previous.clear();
            status.issued_at = Some(Time(now));
        }
        // A re-issued value inherits the schedule of the value it replaces:
        // deleting the Secret must not extend a token's life.
        IssueKind::Reissue { .. } => {
            if status.issued_at.is_none() {
                status.issued_at = Some(Time(now));
            }
        }
    }
}

/// The id a new value of the token carries.
fn issued_token_id(f: &Facts<'_>) -> Option<String> {
    match f.current.token_id.as_deref() {
        Some(id) if token_id_is_own(id, f.uid(), f.secret) => Some(id.to_owned()),
        _ if f.uid().is_empty() => None,
        _ => Some(TokenId::for_uid(f.uid()).to_string()),
    }
}
