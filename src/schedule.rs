//! When is the next issue, rotation, renewal, end of grace or expiry — pure.
//!
//! `Policy::resolve` turns an ApiToken's spec (plus its key's defaults) into
//! checked durations; `plan` takes that policy, what the status records and
//! `now`, and returns the one step the controller should take next and the
//! instant the controller must look again. No I/O, no clock: `now` is an argument.

use jiff::{SignedDuration, Timestamp};

use crate::api::{ApiTokenSpec, Expiration, Rotation, TokenDefaults};
use crate::duration::{DurationError, format_duration, parse_duration};

/// The shortest `rotation.every` accepted (the CRD's CEL refuses less at
/// admission; `--min-rotation-period` may raise the controller's floor).
pub const MIN_ROTATION_PERIOD: SignedDuration = SignedDuration::from_mins(1);

/// The longest warning window of the `ExpiringSoon` condition.
const EXPIRING_SOON_MAX_WINDOW: SignedDuration = SignedDuration::from_hours(7 * 24);

/// How a value's expiry is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Every value expires at this instant.
    At(Timestamp),
    /// Each value expires this long after it was issued.
    Lifetime(SignedDuration),
}

/// The checked expiration and rotation settings of one token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub expiry: Option<Expiry>,
    pub every: Option<SignedDuration>,
    pub renew_before: Option<SignedDuration>,
    pub grace: SignedDuration,
}

/// A spec the controller cannot act on; the message is shown in the Ready condition.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("spec.{field} is not a valid duration: {source}")]
    BadDuration {
        field: &'static str,
        #[source]
        source: DurationError,
    },
    #[error(
        "spec.{field} must be longer than 0s; remove it or give a positive duration such as 1h"
    )]
    NotPositive { field: &'static str },
    #[error(
        "spec.expiration sets both expiresAt and lifetime (or neither); set exactly one of them"
    )]
    ExpirationNotOneOf,
    #[error(
        "spec.rotation.renewBefore ({renew_before}) must be shorter than spec.expiration.lifetime \
         ({lifetime}); otherwise every new value would be due for renewal at once"
    )]
    RenewBeforeNotShorter {
        renew_before: String,
        lifetime: String,
    },
    #[error(
        "spec.rotation.every ({every}) is shorter than this operator's minimum rotation period \
         ({floor}); rotate less often"
    )]
    EveryTooShort { every: String, floor: String },
    #[error(
        "spec.rotation.gracePeriod ({grace}) must be shorter than the rotation period \
         ({every}, from spec.rotation.every or the key's tokenDefaults); otherwise earlier values \
         pile up, each still valid"
    )]
    GraceNotShorter { grace: String, every: String },
    #[error(
        "spec.rotation.renewBefore needs spec.expiration.lifetime: with expiresAt every value \
         expires at the same instant, so renewing cannot extend it; use lifetime or remove renewBefore"
    )]
    RenewBeforeWithoutLifetime,
}

impl Policy {
    /// Resolves the token's own settings over its key's defaults. The
    /// expiration is taken as a whole (its two fields are one choice); the
    /// rotation fields fall back one by one. `every` must be at least
    /// `min_every`, and a grace period shorter than `every`.
    pub fn resolve(
        spec: &ApiTokenSpec,
        defaults: Option<&TokenDefaults>,
        min_every: SignedDuration,
    ) -> Result<Policy, PolicyError> {
        let expiration = spec
            .expiration
            .as_deref()
            .or_else(|| defaults.and_then(|d| d.expiration.as_ref()));
        let own = spec.rotation.as_ref().map(|r| &r.schedule);
        let fallback = defaults.and_then(|d| d.rotation.as_ref());
        let pick = |get: fn(&Rotation) -> &Option<String>| {
            own.and_then(|r| get(r).as_deref())
                .or_else(|| fallback.and_then(|r| get(r).as_deref()))
        };

        let expiry = expiration.map(resolve_expiration).transpose()?;
        let every = positive("rotation.every", pick(|r| &r.every))?;
        let renew_before = positive("rotation.renewBefore", pick(|r| &r.renew_before))?;
        let grace =
            duration("rotation.gracePeriod", pick(|r| &r.grace_period))?.unwrap_or_default();
        check_rotation_bounds(every, grace, min_every)?;

        if let Some(renew_before) = renew_before {
            match expiry {
                Some(Expiry::Lifetime(lifetime)) if renew_before >= lifetime => {
                    return Err(PolicyError::RenewBeforeNotShorter {
                        renew_before: format_duration(renew_before),
                        lifetime: format_duration(lifetime),
                    });
                }
                Some(Expiry::Lifetime(_)) => {}
                Some(Expiry::At(_)) => return Err(PolicyError::RenewBeforeWithoutLifetime),
                // Nothing expires, so there is nothing to renew before: harmless.
                None => {}
            }
        }
        Ok(Policy {
            expiry,
            every,
            renew_before,
            grace,
        })
    }

    /// When a value issued at `issued_at` expires.
    pub fn expires_at(&self, issued_at: Timestamp) -> Option<Timestamp> {
        match self.expiry? {
            Expiry::At(at) => Some(at),
            Expiry::Lifetime(lifetime) => Some(add(issued_at, lifetime)),
        }
    }

    /// When a value issued at `issued_at` is next rotated or renewed, if that
    /// comes before it expires.
    pub fn next_rotation_at(&self, issued_at: Timestamp) -> Option<Timestamp> {
        let expires_at = self.expires_at(issued_at);
        let by_period = self.every.map(|every| add(issued_at, every));
        let by_renewal = self
            .renew_before
            .zip(expires_at)
            .map(|(before, expires)| sub(expires, before));
        let next = earliest([by_period, by_renewal])?;
        match expires_at {
            Some(expires) if next >= expires => None,
            _ => Some(next),
        }
    }
}

/// Bounded rotation: `every` at least `min_every`, and a grace period
/// shorter than `every`, so that at most one earlier value is in its grace
/// period on a schedule.
fn check_rotation_bounds(
    every: Option<SignedDuration>,
    grace: SignedDuration,
    min_every: SignedDuration,
) -> Result<(), PolicyError> {
    let Some(every) = every else { return Ok(()) };
    if every < min_every {
        return Err(PolicyError::EveryTooShort {
            every: format_duration(every),
            floor: format_duration(min_every),
        });
    }
    if grace >= every {
        return Err(PolicyError::GraceNotShorter {
            grace: format_duration(grace),
            every: format_duration(every),
        });
    }
    Ok(())
}

fn resolve_expiration(expiration: &Expiration) -> Result<Expiry, PolicyError> {
    match (&expiration.expires_at, &expiration.lifetime) {
        (Some(at), None) => Ok(Expiry::At(at.0)),
        (None, Some(_)) => {
            let lifetime = positive("expiration.lifetime", expiration.lifetime.as_deref())?;
            lifetime
                .map(Expiry::Lifetime)
                .ok_or(PolicyError::ExpirationNotOneOf)
        }
        _ => Err(PolicyError::ExpirationNotOneOf),
    }
}

fn duration(field: &'static str, raw: Option<&str>) -> Result<Option<SignedDuration>, PolicyError> {
    raw.map(|raw| parse_duration(raw).map_err(|source| PolicyError::BadDuration { field, source }))
        .transpose()
}

fn positive(field: &'static str, raw: Option<&str>) -> Result<Option<SignedDuration>, PolicyError> {
    match duration(field, raw)? {
        Some(d) if d <= SignedDuration::ZERO => Err(PolicyError::NotPositive { field }),
        other => Ok(other),
    }
}

// Timestamps saturate instead of failing: a lifetime of 100 years on a far
// future instant is still "never" for practical purposes.
fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn sub(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

fn earliest<const N: usize>(instants: [Option<Timestamp>; N]) -> Option<Timestamp> {
    instants.into_iter().flatten().min()
}

/// What the status records about the token's value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed<'a> {
    /// A current value exists (its hash is recorded).
    pub has_value: bool,
    /// When the current value — or, if it expired, the last one — was issued.
    pub issued_at: Option<Timestamp>,
    /// End of the grace period of each previous value.
    pub grace_ends: Vec<Timestamp>,
    /// The rotation request (annotation value) last acted on.
    pub last_rotation_request: Option<&'a str>,
}

/// What the user asks for beyond the policy: `spec.disabled` and the
/// rotate annotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Intent<'a> {
    pub disabled: bool,
    /// The current value of the rotate annotation.
    pub rotation_request: Option<&'a str>,
}

/// Why a value is (re)issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueReason {
    /// The token never had a value, or was re-enabled.
    Initial,
    /// The last value expired and the expiry moved into the future.
    ExpiryExtended,
    /// A rotation was requested after the last value expired.
    RequestedAfterExpiry,
}

/// Why a value is replaced by a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateReason {
    /// `rotation.every` elapsed.
    Scheduled,
    /// `rotation.renewBefore` the expiry was reached.
    Renewal,
    /// The rotate annotation has a value not acted on before.
    Requested,
}

/// The one step due now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Issue a value where there is none.
    Issue(IssueReason),
    /// Replace the current value.
    Rotate(RotateReason),
    /// The current value expired: remove it.
    Expire,
    /// `disabled` is set: remove the current value and forget when it was
    /// issued, so that enabling the token again issues a fresh value.
    Disable,
    /// At least one previous value left its grace period: forget its hash.
    EndGrace,
    /// Nothing is due.
    Idle,
}

impl Step {
    /// Why the value this step writes is written; `None` when it writes none.
    pub fn issue_kind(self) -> Option<IssueKind> {
        match self {
            Step::Issue(_) => Some(IssueKind::Initial),
            Step::Rotate(reason) => Some(IssueKind::Rotation(reason)),
            Step::Expire | Step::Disable | Step::EndGrace | Step::Idle => None,
        }
    }
}

/// Why a new value is written: the vocabulary the schedule, the decision
/// (`controller::token_state`, which adds re-issues of a lost or altered
/// value), the status (`status.pending.reason`) and the metrics share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueKind {
    /// First value, value after a re-enable or after an expiry was extended.
    Initial,
    Rotation(RotateReason),
    /// The revoke annotation has a value not acted on before: the current
    /// value and every earlier one are dropped at once (no grace period),
    /// and a fresh value replaces them.
    Revocation,
    /// The recorded value is missing from the Secret or the Secret holds another value.
    Reissue {
        secret_missing: bool,
    },
}

impl IssueKind {
    /// Every kind as recorded (`secret_missing` only words the Event).
    const RECORDED: [IssueKind; 6] = [
        IssueKind::Initial,
        IssueKind::Rotation(RotateReason::Scheduled),
        IssueKind::Rotation(RotateReason::Renewal),
        IssueKind::Rotation(RotateReason::Requested),
        IssueKind::Revocation,
        IssueKind::Reissue {
            secret_missing: false,
        },
    ];

    /// The word recorded in `status.pending.reason` (and the metrics' reason label).
    pub fn as_str(self) -> &'static str {
        match self {
            IssueKind::Initial => "Issue",
            IssueKind::Rotation(RotateReason::Scheduled) => "Rotate",
            IssueKind::Rotation(RotateReason::Renewal) => "Renew",
            IssueKind::Rotation(RotateReason::Requested) => "Request",
            IssueKind::Revocation => "Revoke",
            IssueKind::Reissue { .. } => "Reissue",
        }
    }

    /// The kind `status.pending.reason` records: the inverse of
    /// [`as_str`](Self::as_str). A word this operator does not write (a hand
    /// edit) reads as a first issue.
    pub fn from_recorded(word: &str) -> IssueKind {
        IssueKind::RECORDED
            .into_iter()
            .find(|kind| kind.as_str() == word)
            .unwrap_or(IssueKind::Initial)
    }
}

/// The state of the value that the conditions report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// No expiry.
    NoExpiry,
    /// Expires at the instant, and a renewal or rotation comes before it.
    RenewalScheduled,
    /// Expires at the instant with nothing scheduled before; not yet inside the warning window.
    Valid,
    /// Expires at the instant, inside the warning window.
    ExpiringSoon,
    /// The value expired (or would be expired at issue).
    Expired,
}

/// The decision for one token at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub step: Step,
    /// Expiry of the current value (after `step`, for the value then current).
    pub expires_at: Option<Timestamp>,
    /// Next rotation or renewal of the current value.
    pub next_rotation_at: Option<Timestamp>,
    pub validity: Validity,
    /// When to look again if nothing else happens (the earliest future due instant).
    pub next_due: Option<Timestamp>,
    /// The rotate annotation value this step consumes, to record in status.
    pub consumes_request: bool,
}

/// Decides the next step for a token.
pub fn plan(policy: &Policy, observed: &Observed<'_>, intent: Intent<'_>, now: Timestamp) -> Plan {
    let new_request = intent
        .rotation_request
        .is_some_and(|r| Some(r) != observed.last_rotation_request);
    let first_grace_end = observed.grace_ends.iter().copied().min();
    let grace_over = first_grace_end.is_some_and(|end| end <= now);

    let step = if intent.disabled {
        // A request made while disabled is left for the re-enable to consume.
        if observed.has_value {
            Step::Disable
        } else if grace_over {
            Step::EndGrace
        } else {
            Step::Idle
        }
    } else if observed.has_value {
        let issued_at = observed.issued_at.unwrap_or(now);
        let expires_at = policy.expires_at(issued_at);
        let next_rotation = policy.next_rotation_at(issued_at);
        let expired = expires_at.is_some_and(|at| at <= now);
        // A new value must not be born expired (absolute expiry already passed).
        let can_renew = !expiry_passed_for_new_value(policy, now);
        if new_request && can_renew {
            Step::Rotate(RotateReason::Requested)
        } else if let Some(due) = next_rotation.filter(|due| *due <= now && can_renew) {
            Step::Rotate(rotate_reason(policy, issued_at, due))
        } else if expired {
            Step::Expire
        } else if grace_over {
            Step::EndGrace
        } else {
            Step::Idle
        }
    } else {
        match observed.issued_at {
            None if expiry_passed_for_new_value(policy, now) => Step::Idle,
            None => Step::Issue(IssueReason::Initial),
            Some(last) => {
                let still_valid = policy.expires_at(last).is_none_or(|at| at > now);
                if expiry_passed_for_new_value(policy, now) {
                    if grace_over {
                        Step::EndGrace
                    } else {
                        Step::Idle
                    }
                } else if still_valid {
                    Step::Issue(IssueReason::ExpiryExtended)
                } else if new_request {
                    Step::Issue(IssueReason::RequestedAfterExpiry)
                } else if grace_over {
                    Step::EndGrace
                } else {
                    Step::Idle
                }
            }
        }
    };

    // Describe the value that is current once the step is done.
    let (has_value, issued_at) = match step {
        Step::Issue(_) | Step::Rotate(_) => (true, Some(now)),
        Step::Expire | Step::Disable => (false, observed.issued_at),
        Step::EndGrace | Step::Idle => (observed.has_value, observed.issued_at),
    };
    let expires_at = issued_at.and_then(|at| policy.expires_at(at)).or_else(|| {
        // Never issued: report the absolute expiry so an expired-at-creation token says when.
        match policy.expiry {
            Some(Expiry::At(at)) if issued_at.is_none() => Some(at),
            _ => None,
        }
    });
    let next_rotation_at = if has_value && !intent.disabled {
        issued_at.and_then(|at| policy.next_rotation_at(at))
    } else {
        None
    };
    let validity = validity(
        has_value || intent.disabled,
        issued_at,
        expires_at,
        next_rotation_at,
        now,
    );

    let remaining_grace = observed
        .grace_ends
        .iter()
        .copied()
        .filter(|end| *end > now)
        .min();
    let soon_flip = match validity {
        Validity::Valid => expires_at
            .zip(issued_at)
            .map(|(exp, iss)| sub(exp, warning_window(iss, exp))),
        _ => None,
    };
    let value_due = if has_value && !intent.disabled {
        earliest([expires_at, next_rotation_at, soon_flip])
    } else {
        None
    };
    let next_due = earliest([value_due, remaining_grace]).filter(|due| *due > now);

    let consumes_request = new_request
        && !intent.disabled
        && matches!(
            step,
            Step::Issue(_) | Step::Rotate(_) | Step::Idle | Step::EndGrace
        );
    Plan {
        step,
        expires_at,
        next_rotation_at,
        validity,
        next_due,
        consumes_request,
    }
}

/// A value issued now would already be expired (absolute expiry in the past).
fn expiry_passed_for_new_value(policy: &Policy, now: Timestamp) -> bool {
    matches!(policy.expiry, Some(Expiry::At(at)) if at <= now)
}

fn rotate_reason(policy: &Policy, issued_at: Timestamp, due: Timestamp) -> RotateReason {
    let by_period = policy.every.map(|every| add(issued_at, every));
    if by_period == Some(due) {
        RotateReason::Scheduled
    } else {
        RotateReason::Renewal
    }
}

/// How long before the expiry `ExpiringSoon` turns true: a third of the
/// value's lifetime, at most seven days.
fn warning_window(issued_at: Timestamp, expires_at: Timestamp) -> SignedDuration {
    let lifetime = expires_at.duration_since(issued_at);
    (lifetime / 3).clamp(SignedDuration::ZERO, EXPIRING_SOON_MAX_WINDOW)
}

fn validity(
    value_or_disabled: bool,
    issued_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    next_rotation_at: Option<Timestamp>,
    now: Timestamp,
) -> Validity {
    let Some(expires_at) = expires_at else {
        return Validity::NoExpiry;
    };
    if expires_at <= now || !value_or_disabled && issued_at.is_some() {
        return Validity::Expired;
    }
    if next_rotation_at.is_some() {
        return Validity::RenewalScheduled;
    }
    let window = warning_window(issued_at.unwrap_or(now), expires_at);
    if now >= sub(expires_at, window) {
        Validity::ExpiringSoon
    } else {
        Validity::Valid
    }
}

#[cfg(test)]
mod tests;
