//! [`Facts`]: what every check of `decide` reads, gathered once.

use jiff::{SignedDuration, Timestamp};

use super::status::stored_precision;
use super::{SecretView, revocation_request, rotation_request, secret_target};
use crate::api::{ApiToken, ApiTokenStatus};
use crate::schedule::{self, Observed, Plan, Policy};

/// What every check reads: the token, its status and the Secret as observed.
pub(super) struct Facts<'a> {
    pub token: &'a ApiToken,
    pub secret: &'a SecretView,
    /// `now` at the precision of stored times (see `stored_precision`).
    pub now: Timestamp,
    /// The status as recorded (empty for a new token).
    pub current: ApiTokenStatus,
    pub generation: Option<i64>,
    /// The Secret the value belongs in (`spec.secret.name` or the token's name).
    pub secret_name: String,
    /// The current value of the rotate annotation.
    pub request: Option<&'a str>,
    /// The value of the revoke annotation, if it is one not acted on yet.
    pub new_revocation: Option<&'a str>,
    /// The shortest `rotation.every` this operator accepts.
    pub min_rotation: SignedDuration,
}

impl<'a> Facts<'a> {
    pub(super) fn new(
        token: &'a ApiToken,
        secret: &'a SecretView,
        now: Timestamp,
        min_rotation: SignedDuration,
    ) -> Self {
        let current = token.status.clone().unwrap_or_default();
        let acted_on = current
            .last_revocation_request
            .as_deref()
            .map(String::as_str);
        let new_revocation = revocation_request(token).filter(|r| Some(*r) != acted_on);
        Facts {
            token,
            secret,
            now: stored_precision(now),
            current,
            generation: token.metadata.generation,
            secret_name: secret_target(token).0,
            request: rotation_request(token),
            new_revocation,
            min_rotation,
        }
    }

    /// The token's `metadata.uid`.
    pub(super) fn uid(&self) -> &'a str {
        self.token.metadata.uid.as_deref().unwrap_or_default()
    }

    /// Whether the Secret is ours.
    pub(super) fn ours(&self) -> bool {
        matches!(self.secret, SecretView::Ours { .. })
    }

    /// The schedule's next step for the recorded value.
    pub(super) fn plan(&self, policy: &Policy) -> Plan {
        let current = &self.current;
        let observed = Observed {
            has_value: current.hash.is_some(),
            issued_at: current.issued_at.as_ref().map(|t| t.0),
            grace_ends: current.previous.iter().map(|p| p.valid_until.0).collect(),
            last_rotation_request: current.last_rotation_request.as_deref().map(String::as_str),
        };
        let intent = schedule::Intent {
            disabled: self.token.spec.disabled,
            rotation_request: self.request,
        };
        schedule::plan(policy, &observed, intent, self.now)
    }
}
