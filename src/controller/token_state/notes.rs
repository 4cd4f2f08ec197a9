//! The Events a decision publishes about a new value. Never carry a value.

use super::{IssueKind, Note};
use crate::api::conditions::reason;
use crate::schedule::RotateReason;

/// The Event an issue publishes. None for the first value of a new token: that
/// is what the user asked for, the Ready condition (reason `Issued`) and the
/// `issued` metric record it, and an Event per token would add a fifth API
/// write to every token created. Events are for what changes a value later.
/// `moved_from`: the Secret the value was in, when `spec.secret.name` changed;
/// `request`: the rotate request (the revoke request for a revocation).
pub(super) fn issue_note(
    kind: IssueKind,
    secret_name: &str,
    moved_from: Option<&str>,
    request: Option<&str>,
) -> Option<Note> {
    Some(match kind {
        IssueKind::Initial => return None,
        IssueKind::Reissue { .. } if moved_from.is_some() => Note {
            warning: false,
            reason: "Reissued",
            action: "Reissue",
            message: format!(
                "spec.secret.name changed from {:?}; issued a fresh value in Secret \
                 {secret_name:?} and deleted the old Secret",
                moved_from.unwrap_or_default()
            ),
        },
        IssueKind::Rotation(RotateReason::Scheduled) => Note {
            warning: false,
            reason: "Rotated",
            action: "Rotate",
            message: format!("rotation.every elapsed; rotated the value in Secret {secret_name:?}"),
        },
        IssueKind::Rotation(RotateReason::Requested) => Note {
            warning: false,
            reason: "Rotated",
            action: "Rotate",
            message: format!(
                "rotated the value in Secret {secret_name:?} on request {:?}",
                request.unwrap_or_default()
            ),
        },
        IssueKind::Revocation => revoked_note(
            request.unwrap_or_default(),
            &format!("issued a fresh value in Secret {secret_name:?}"),
        ),
        IssueKind::Rotation(RotateReason::Renewal) => Note {
            warning: false,
            reason: "Renewed",
            action: "Renew",
            message: format!("renewBefore reached; renewed the value in Secret {secret_name:?}"),
        },
        IssueKind::Reissue {
            secret_missing: true,
        } => Note {
            warning: true,
            reason: "Reissued",
            action: "Reissue",
            message: format!("Secret {secret_name:?} was missing; issued a fresh value"),
        },
        IssueKind::Reissue {
            secret_missing: false,
        } => Note {
            warning: true,
            reason: "Reissued",
            action: "Reissue",
            message: format!(
                "the value in Secret {secret_name:?} did not match the recorded hash (edited or \
                 tampered, or spec.secret.key changed); replaced it with a fresh value"
            ),
        },
    })
}

/// The Event of a revoke request acted on; `then` says what became of the
/// token (a fresh value, or why none is issued).
pub(super) fn revoked_note(request: &str, then: &str) -> Note {
    Note {
        warning: false,
        reason: reason::REVOKED,
        action: "Revoke",
        message: format!(
            "revoked on request {request:?}: the current value and every earlier one are refused \
             from now on; {then}"
        ),
    }
}
