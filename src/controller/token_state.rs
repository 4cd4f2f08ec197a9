//! What the ApiToken reconciler should do, decided without I/O.
//!
//! [`decide`] takes the token, what the shell observed of its key and Secret
//! (`observed`), and `now`; it runs the named checks of `checks` in order,
//! one per trigger, and the first that applies decides: the one value action
//! to take (keep, issue, promote, remove), the status to write once that
//! action succeeded, the event to publish and when to look again. `issue`,
//! `verdicts`, `status` and `notes` build those; `secret_spec` reads
//! `spec.secret`. The shell in `token.rs` only reads and writes.

mod checks;
mod facts;
mod issue;
mod notes;
mod observed;
mod secret_spec;
mod status;
mod verdicts;

use std::ops::ControlFlow::{Break, Continue};

use jiff::{SignedDuration, Timestamp};

use crate::api::{ApiToken, ApiTokenStatus, REVOKE_ANNOTATION, ROTATE_ANNOTATION};
use crate::schedule::MIN_ROTATION_PERIOD;
use checks::Verdict;
use facts::Facts;
pub use observed::{KeyState, SecretView, bound_elsewhere, key_fingerprint, key_state, view};
pub use secret_spec::{DEFAULT_SECRET_KEY, secret_target, secret_template_error};
pub use status::{holds_a_value, pending, promoted, same_status};

/// Why a new value is written; the schedule's vocabulary.
pub use crate::schedule::IssueKind;

/// The one thing to do to the token's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueAction {
    /// Leave the value and the Secret as they are.
    Keep,
    /// Write a new value in two phases: record `pending`, write the Secret, promote.
    Issue(IssueKind),
    /// The pending value already is in the Secret: promote it.
    Promote(IssueKind),
    /// Delete the token's Secret: no value may remain.
    Remove,
}

/// An event to publish once the action succeeded. Never carries a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

/// When to reconcile again if nothing else happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// At this instant (a rotation, expiry, end of grace or condition flip is due).
    At(Timestamp),
    /// Only on a change of the token, its key or its Secret (or the periodic resync).
    OnChange,
    /// Check again later: the blocker is outside the objects we watch.
    Later,
}

/// The decision for one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub action: ValueAction,
    /// The status to write after the action. For `Issue`, `hash` is the
    /// placeholder that `promoted` replaces with the new value's hash.
    pub status: ApiTokenStatus,
    pub note: Option<Note>,
    pub requeue: Requeue,
}

/// Decides what to do with the token: the first check whose trigger
/// applies, under the default floor of `rotation.every`.
pub fn decide(
    token: &ApiToken,
    key: KeyState<'_>,
    secret: &SecretView,
    now: Timestamp,
) -> Decision {
    decide_with_floor(token, key, secret, now, MIN_ROTATION_PERIOD)
}

/// [`decide`] with the operator's floor of `rotation.every` (`--min-rotation-period`).
pub fn decide_with_floor(
    token: &ApiToken,
    key: KeyState<'_>,
    secret: &SecretView,
    now: Timestamp,
    min_rotation: SignedDuration,
) -> Decision {
    let facts = Facts::new(token, secret, now, min_rotation);
    let (Break(decision) | Continue(decision)) = run_checks(&facts, key);
    decision
}

/// The checks in order; each ends the run with its decision when its
/// trigger applies.
fn run_checks(f: &Facts<'_>, key: KeyState<'_>) -> Verdict<Decision> {
    let key = checks::usable_key(f, key)?;
    let policy = checks::valid_spec(f, key.defaults)?;
    checks::secret_conflict(f)?;
    checks::foreign_token_id(f, &policy, key)?;
    checks::revocation(f, &policy, key)?;
    checks::unfinished_issue(f, &policy, key)?;
    let plan = f.plan(&policy);
    let needed = checks::due_value(&plan)
        .or_else(|| checks::missing_secret(f, &plan))
        .or_else(|| checks::tampered_value(f, &plan));
    checks::new_value(f, &policy, key, needed)?;
    checks::expired(f, &plan)?;
    checks::disabled(f, &plan)?;
    Continue(checks::unchanged(f, &plan))
}

/// The current value of the rotate annotation.
pub fn rotation_request(token: &ApiToken) -> Option<&str> {
    token
        .metadata
        .annotations
        .as_ref()?
        .get(ROTATE_ANNOTATION)
        .map(String::as_str)
}

/// The current value of the revoke annotation.
pub fn revocation_request(token: &ApiToken) -> Option<&str> {
    token
        .metadata
        .annotations
        .as_ref()?
        .get(REVOKE_ANNOTATION)
        .map(String::as_str)
}

#[cfg(test)]
mod tests;
