//! What the ApiToken reconciler should do, decided without I/O.
//!
//! `decide` takes the token, what the shell observed of its key and Secret,
//! and `now`; it returns the one value action to take (keep, issue, promote,
//! remove), the status to write once that action succeeded, the event to
//! publish and when to look again. The shell in `token.rs` only reads and writes.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::conditions::{self, DesiredCondition};
use crate::api::conditions::{EXPIRED, EXPIRING_SOON, READY, reason};
use crate::api::{
    ApiToken, ApiTokenStatus, PendingValue, PreviousValue, ROTATE_ANNOTATION, TokenDefaults,
};
use crate::schedule::{self, Observed, Policy, RotateReason, Step, Validity};
use crate::token::{TokenHash, TokenKind};

/// Key of the value inside the Secret when `spec.secret.key` is not set.
pub const DEFAULT_SECRET_KEY: &str = "token";

/// What the reconciler knows about the token's ApiKey.
#[derive(Clone, Copy, Debug)]
pub enum KeyState<'a> {
    Missing,
    /// The token holds a value issued under an earlier ApiKey of this name
    /// (it is still the token's controller owner), since deleted.
    Replaced,
    NotReady {
        message: &'a str,
    },
    Ready {
        kind: TokenKind,
        defaults: Option<&'a TokenDefaults>,
        /// The key's `metadata.uid`.
        uid: &'a str,
    },
}

/// What the reconciler knows about the Secret the value belongs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretView {
    Missing,
    /// Exists and is not controlled by this ApiToken.
    Foreign {
        controller: Option<String>,
    },
    /// Controlled by this ApiToken; the hash of the value under the token's key, if any.
    Ours {
        value_hash: Option<TokenHash>,
    },
}

/// Why a new value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueKind {
    /// First value, value after a re-enable or after an expiry was extended.
    Initial,
    Rotation(RotateReason),
    /// The recorded value is missing from the Secret or the Secret holds another value.
    Reissue {
        secret_missing: bool,
    },
}

impl IssueKind {
    /// The word recorded in `status.pending.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueKind::Initial => "Issue",
            IssueKind::Rotation(RotateReason::Scheduled) => "Rotate",
            IssueKind::Rotation(RotateReason::Renewal) => "Renew",
            IssueKind::Rotation(RotateReason::Requested) => "Request",
            IssueKind::Reissue { .. } => "Reissue",
        }
    }

    fn from_pending(reason: &str) -> IssueKind {
        match reason {
            "Rotate" => IssueKind::Rotation(RotateReason::Scheduled),
            "Renew" => IssueKind::Rotation(RotateReason::Renewal),
            "Request" => IssueKind::Rotation(RotateReason::Requested),
            "Reissue" => IssueKind::Reissue {
                secret_missing: false,
            },
            _ => IssueKind::Initial,
        }
    }
}

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

/// Where the token's value goes.
pub fn secret_target(token: &ApiToken) -> (String, String) {
    let spec = token.spec.secret.as_ref();
    let name = spec
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| token.metadata.name.clone().unwrap_or_default());
    let key = spec
        .and_then(|s| s.key.clone())
        .unwrap_or_else(|| DEFAULT_SECRET_KEY.to_owned());
    (name, key)
}

/// What the API server would refuse in the Secret's extra labels and
/// annotations (`spec.secret.labels`, `spec.secret.annotations`), which the
/// CRD schema cannot express; `None` when they are valid.
pub fn secret_template_error(token: &ApiToken) -> Option<String> {
    let template = token.spec.secret.as_ref()?;
    for (key, value) in &template.labels {
        if let Some(why) = qualified_name_error(key) {
            return Some(format!(
                "spec.secret.labels: key {key:?} is not a valid label key: {why}"
            ));
        }
        if value.len() > 63 {
            return Some(format!(
                "spec.secret.labels: the value of {key:?} is {} characters long, a label value allows at most 63",
                value.len()
            ));
        }
        if !value.is_empty() && !is_label_token(value) {
            return Some(format!(
                "spec.secret.labels: the value of {key:?} is not a valid label value: use letters, \
                 digits, '-', '_' and '.', starting and ending with a letter or digit"
            ));
        }
    }
    // The operator records the template's keys in one more annotation (a
    // JSON object of two lists of quoted keys).
    let record = 32
        + template
            .labels
            .keys()
            .chain(template.annotations.keys())
            .map(|k| k.len() + 3)
            .sum::<usize>();
    let mut total = record;
    for (key, value) in &template.annotations {
        total += key.len() + value.len();
        if let Some(why) = qualified_name_error(&key.to_lowercase()) {
            return Some(format!(
                "spec.secret.annotations: key {key:?} is not a valid annotation key: {why}"
            ));
        }
    }
    // Leaves room for the annotation the operator adds.
    const ANNOTATIONS_MAX: usize = 256 * 1024 - 512;
    if total > ANNOTATIONS_MAX {
        return Some(format!(
            "spec.secret.annotations are {total} bytes with the record of the labels' and \
             annotations' keys the operator adds, at most {ANNOTATIONS_MAX} are allowed"
        ));
    }
    None
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Why `key` is not a Kubernetes qualified name (`[dns-subdomain/]name`).
fn qualified_name_error(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let dns = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            });
        if !dns {
            return Some(
                "the prefix before '/' must be a lowercase DNS subdomain such as example.com",
            );
        }
    }
    if name.len() > 63 {
        return Some("the name part must be no more than 63 characters");
    }
    if name.contains('/') || !is_label_token(name) {
        return Some(
            "the name part must consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        );
    }
    None
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

/// Decides what to do with the token.
pub fn decide(
    token: &ApiToken,
    key: KeyState<'_>,
    secret: &SecretView,
    now: Timestamp,
) -> Decision {
    let now = stored_precision(now);
    let current = token.status.clone().unwrap_or_default();
    let generation = token.metadata.generation;
    let (secret_name, _) = secret_target(token);
    let key_name = &token.spec.api_key_ref.name;

    let (defaults, key_uid) = match key {
        KeyState::Missing => {
            let message = format!(
                "ApiKey {key_name:?} does not exist in this namespace; create it or fix spec.apiKeyRef.name"
            );
            return blocked(
                &current,
                generation,
                secret,
                reason::KEY_NOT_FOUND,
                message,
                now,
            );
        }
        KeyState::Replaced => return replaced(&current, generation, secret, key_name, now),
        KeyState::NotReady { message } => {
            let message = format!("ApiKey {key_name:?} is not Ready: {message}");
            return blocked(
                &current,
                generation,
                secret,
                reason::KEY_NOT_READY,
                message,
                now,
            );
        }
        KeyState::Ready { uid, .. }
            if holds_a_value(&current)
                && current
                    .api_key_uid
                    .as_deref()
                    .is_some_and(|issued| issued != uid) =>
        {
            return replaced(&current, generation, secret, key_name, now);
        }
        KeyState::Ready { defaults, uid, .. } => (defaults, uid),
    };

    // The current value (if any) stays: fixing the spec must not cost a
    // rotation. Its recorded expiry still holds (rule 5): it is removed then.
    let invalid_spec = |err: &dyn std::fmt::Display| {
        if token.spec.disabled {
            return disabled_under_invalid_spec(
                &current,
                generation,
                secret,
                &secret_name,
                err,
                now,
            );
        }
        let expires_at = current.expires_at.as_ref().map(|t| t.0);
        match expires_at.filter(|_| current.hash.is_some()) {
            Some(at) if at <= now => expired_under_invalid_spec(
                &current,
                generation,
                secret,
                &secret_name,
                &err.to_string(),
                at,
                now,
            ),
            until => {
                let mut decision = keep_with_ready(
                    &current,
                    generation,
                    reason::INVALID_SPEC,
                    format!(
                        "{err}; the current value, if any, stays in place until the spec is fixed"
                    ),
                    until.map_or(Requeue::OnChange, Requeue::At),
                    now,
                );
                // A Secret of ours with no recorded value holds something nobody may use.
                if current.hash.is_none() && matches!(secret, SecretView::Ours { .. }) {
                    decision.action = ValueAction::Remove;
                }
                decision
            }
        }
    };
    let policy = match Policy::resolve(&token.spec, defaults) {
        Ok(policy) => policy,
        Err(err) => return invalid_spec(&err),
    };
    if let Some(err) = secret_template_error(token) {
        return invalid_spec(&err);
    }

    if let SecretView::Foreign { controller } = secret {
        let owner = controller
            .as_deref()
            .map(|c| format!(" (it is controlled by {c})"))
            .unwrap_or_default();
        let message = format!(
            "Secret {secret_name:?} exists and is not owned by this ApiToken{owner}; it is never \
             overwritten: delete it or set spec.secret.name to another name"
        );
        // A pending value can only be bound for this Secret, which is never
        // written: it was dropped, and nothing may record it as coming.
        let current = ApiTokenStatus {
            pending: None,
            ..current
        };
        return keep_with_ready(
            &current,
            generation,
            reason::SECRET_CONFLICT,
            message,
            Requeue::Later,
            now,
        );
    }

    let request = rotation_request(token);
    if let Some(pending) = &current.pending {
        let kind = IssueKind::from_pending(&pending.reason);
        let in_secret = matches!(secret, SecretView::Ours { value_hash: Some(h) } if h.as_str() == pending.hash);
        let action = if in_secret {
            ValueAction::Promote(kind)
        } else {
            ValueAction::Issue(kind)
        };
        return issue_decision(
            token, &current, &policy, key_uid, action, kind, request, now,
        );
    }

    let observed = Observed {
        has_value: current.hash.is_some(),
        issued_at: current.issued_at.as_ref().map(|t| t.0),
        grace_ends: current.previous.iter().map(|p| p.valid_until.0).collect(),
        last_rotation_request: current.last_rotation_request.as_deref(),
    };
    let intent = schedule::Intent {
        disabled: token.spec.disabled,
        rotation_request: request,
    };
    let plan = schedule::plan(&policy, &observed, intent, now);

    let kind = match plan.step {
        Step::Issue(_) => Some(IssueKind::Initial),
        Step::Rotate(reason) => Some(IssueKind::Rotation(reason)),
        Step::Idle | Step::EndGrace if observed.has_value => match secret {
            SecretView::Missing => Some(IssueKind::Reissue {
                secret_missing: true,
            }),
            SecretView::Ours { value_hash }
                if value_hash.as_ref().map(TokenHash::as_str) != current.hash.as_deref() =>
            {
                Some(IssueKind::Reissue {
                    secret_missing: false,
                })
            }
            _ => None,
        },
        _ => None,
    };
    if let Some(kind) = kind {
        return issue_decision(
            token,
            &current,
            &policy,
            key_uid,
            ValueAction::Issue(kind),
            kind,
            request,
            now,
        );
    }

    // No new value: expire, disable, end a grace period or just refresh the status.
    let mut status = current.clone();
    status.observed_generation = generation;
    status.previous.retain(|p| p.valid_until.0 > now);
    let mut note = None;
    let mut action = ValueAction::Keep;
    match plan.step {
        Step::Expire => {
            status.hash = None;
            action = ValueAction::Remove;
            note = Some(Note {
                warning: true,
                reason: "Expired",
                action: "Expire",
                message: format!(
                    "the value expired; Secret {secret_name:?} was deleted and the verifier rejects it"
                ),
            });
        }
        Step::Disable => {
            status.hash = None;
            status.previous.clear();
            status.issued_at = None;
            action = ValueAction::Remove;
            note = Some(Note {
                warning: false,
                reason: "Disabled",
                action: "Disable",
                message: format!("spec.disabled is true; Secret {secret_name:?} was deleted"),
            });
        }
        _ => {}
    }
    // Expired before any value was issued (expiresAt in the past): say so once.
    let was_expired = current
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.reason == reason::EXPIRED);
    if note.is_none()
        && status.hash.is_none()
        && !token.spec.disabled
        && plan.validity == Validity::Expired
        && !was_expired
    {
        let at = plan
            .expires_at
            .map(|t| t.to_string())
            .unwrap_or_else(|| "the configured expiry".to_owned());
        note = Some(Note {
            warning: true,
            reason: "Expired",
            action: "Expire",
            message: format!(
                "the expiry {at} is in the past, so no value is issued; set a later spec.expiration"
            ),
        });
    }
    // A Secret of ours with no recorded value holds something nobody may use.
    if action == ValueAction::Keep
        && status.hash.is_none()
        && matches!(secret, SecretView::Ours { .. })
    {
        action = ValueAction::Remove;
    }
    if plan.consumes_request {
        status.last_rotation_request = request.map(str::to_owned);
    }
    status.expires_at = plan.expires_at.map(Time);
    status.next_rotation_at = plan.next_rotation_at.map(Time);
    if status.hash.is_none() {
        status.secret_name = None;
    }
    let has_value = status.hash.is_some();
    status.conditions = value_conditions(
        &current,
        &status,
        has_value,
        token.spec.disabled,
        plan.validity,
        &secret_name,
        generation,
        now,
    );
    Decision {
        action,
        status,
        note,
        requeue: plan.next_due.map_or(Requeue::OnChange, Requeue::At),
    }
}

/// The decision to write a value (or promote the pending one): the status to
/// write once the new value is in the Secret.
#[allow(clippy::too_many_arguments)]
fn issue_decision(
    token: &ApiToken,
    current: &ApiTokenStatus,
    policy: &Policy,
    key_uid: &str,
    action: ValueAction,
    kind: IssueKind,
    request: Option<&str>,
    now: Timestamp,
) -> Decision {
    let (secret_name, _) = secret_target(token);
    let generation = token.metadata.generation;
    let mut status = current.clone();
    status.observed_generation = generation;
    status.pending = None;
    status.secret_name = Some(secret_name.clone());
    status.api_key_uid = Some(Box::new(key_uid.to_owned()));
    status.previous.retain(|p| p.valid_until.0 > now);

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
        // A re-issued value inherits the schedule of the value it replaces:
        // deleting the Secret must not extend a token's life.
        IssueKind::Reissue { .. } => {
            if status.issued_at.is_none() {
                status.issued_at = Some(Time(now));
            }
        }
    }
    // A value started before a crash answers only the request that was there
    // when it was started; one that arrived since still gets its own rotation.
    let answered = match &current.pending {
        Some(pending) => pending.rotation_request.clone(),
        None => request.map(str::to_owned),
    };
    if let Some(request) = answered {
        status.last_rotation_request = Some(request);
    }

    let issued_at = status.issued_at.as_ref().map_or(now, |t| t.0);
    status.expires_at = policy.expires_at(issued_at).map(Time);
    status.next_rotation_at = policy.next_rotation_at(issued_at).map(Time);
    // `promoted` fills in the new value's hash once it is in the Secret.
    status.hash = None;

    let after = schedule::plan(
        policy,
        &Observed {
            has_value: true,
            issued_at: Some(issued_at),
            grace_ends: status.previous.iter().map(|p| p.valid_until.0).collect(),
            last_rotation_request: status.last_rotation_request.as_deref(),
        },
        schedule::Intent::default(),
        now,
    );
    status.conditions = value_conditions(
        current,
        &status,
        true,
        false,
        after.validity,
        &secret_name,
        generation,
        now,
    );
    let next_due = after.next_due;

    Decision {
        action,
        status,
        note: issue_note(
            kind,
            &secret_name,
            current
                .secret_name
                .as_deref()
                .filter(|old| *old != secret_name),
            request,
        ),
        requeue: next_due.map_or(Requeue::OnChange, Requeue::At),
    }
}

/// `now` without its fraction of a second: status times are stored in whole
/// seconds, so instants and the messages that quote them are computed at that
/// precision, or the next reconcile (reading the stored copy) would compute a
/// different status and write again. Rounding down never makes work early: a
/// due instant is itself in whole seconds.
fn stored_precision(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
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
    status.token_id = Some(token_id.to_owned());
    status.pending = Some(PendingValue {
        hash: hash.as_str().to_owned(),
        reason: kind.as_str().to_owned(),
        started_at: Time(now),
        rotation_request: rotation_request(token).map(str::to_owned),
    });
    if status.hash.is_none() {
        let issuing = DesiredCondition::new(
            READY,
            false,
            reason::ISSUING,
            format!("writing a new value to Secret {secret_name:?}"),
        );
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

/// The Event an issue publishes. None for the first value of a new token: that
/// is what the user asked for, the Ready condition (reason `Issued`) and the
/// `issued` metric record it, and an Event per token would add a fifth API
/// write to every token created. Events are for what changes a value later.
/// `moved_from`: the Secret the value was in, when `spec.secret.name` changed.
fn issue_note(
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

#[allow(clippy::too_many_arguments)]
fn value_conditions(
    previous: &ApiTokenStatus,
    next: &ApiTokenStatus,
    has_value: bool,
    disabled: bool,
    validity: Validity,
    secret_name: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let ready = if has_value {
        DesiredCondition::new(
            READY,
            true,
            reason::ISSUED,
            format!("a valid value is in Secret {secret_name:?}"),
        )
    } else if disabled {
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
            format!(
                "{hint}; extend spec.expiration or request a rotation (annotation apikeys.dev/rotate) to issue a fresh value"
            ),
        )
    } else {
        DesiredCondition::new(
            READY,
            false,
            reason::ISSUING,
            format!("a value is being issued into Secret {secret_name:?}"),
        )
    };
    let expires = next
        .expires_at
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let expired = match validity {
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
    };
    let soon = match validity {
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
    };
    conditions::merge(
        &previous.conditions,
        &[ready, expired, soon],
        generation,
        now,
    )
}

/// The key is missing or not Ready: no value may exist.
fn blocked(
    current: &ApiTokenStatus,
    generation: Option<i64>,
    secret: &SecretView,
    why: &'static str,
    message: String,
    now: Timestamp,
) -> Decision {
    let mut status = current.clone();
    status.observed_generation = generation;
    status.hash = None;
    status.pending = None;
    status.previous.clear();
    status.issued_at = None;
    status.expires_at = None;
    status.next_rotation_at = None;
    status.secret_name = None;
    status.api_key_uid = None;
    let was = ready_reason(current);
    status.conditions = conditions::merge(
        &current.conditions,
        &[DesiredCondition::new(READY, false, why, message.clone())],
        generation,
        now,
    );
    let action = remove_if_ours(secret);
    let note = (was != Some(why)).then_some(Note {
        warning: true,
        reason: why,
        action: "Block",
        message,
    });
    Decision {
        action,
        status,
        note,
        requeue: Requeue::OnChange,
    }
}

/// A value past its recorded expiry while the spec is invalid: removed as
/// any expired value is, the status saying both why nothing new is issued and
/// that the value expired.
fn expired_under_invalid_spec(
    current: &ApiTokenStatus,
    generation: Option<i64>,
    secret: &SecretView,
    secret_name: &str,
    err: &str,
    expired_at: Timestamp,
    now: Timestamp,
) -> Decision {
    let mut status = current.clone();
    status.observed_generation = generation;
    status.hash = None;
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
    let expired = DesiredCondition::new(
        EXPIRED,
        true,
        reason::EXPIRED,
        format!("expired at {expired_at}"),
    );
    let soon = DesiredCondition::new(
        EXPIRING_SOON,
        false,
        reason::EXPIRED,
        format!("expired at {expired_at}"),
    );
    status.conditions = conditions::merge(
        &current.conditions,
        &[ready, expired, soon],
        generation,
        now,
    );
    let action = remove_if_ours(secret);
    Decision {
        action,
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

/// `spec.disabled` with a spec that is otherwise invalid: disabling needs no
/// policy, and the value goes as it would with a valid spec.
fn disabled_under_invalid_spec(
    current: &ApiTokenStatus,
    generation: Option<i64>,
    secret: &SecretView,
    secret_name: &str,
    err: &dyn std::fmt::Display,
    now: Timestamp,
) -> Decision {
    let mut decision = keep_with_ready(
        current,
        generation,
        reason::INVALID_SPEC,
        format!("{err}; spec.disabled is true, so no value is kept"),
        Requeue::OnChange,
        now,
    );
    let had_value =
        current.hash.is_some() || current.pending.is_some() || !current.previous.is_empty();
    let status = &mut decision.status;
    status.hash = None;
    status.pending = None;
    status.previous.clear();
    status.issued_at = None;
    status.next_rotation_at = None;
    status.secret_name = None;
    if had_value {
        decision.note = Some(Note {
            warning: false,
            reason: "Disabled",
            action: "Disable",
            message: format!("spec.disabled is true; Secret {secret_name:?} was deleted"),
        });
    }
    decision.action = remove_if_ours(secret);
    decision
}

/// Delete the Secret if it is ours: no value may remain, and one that is not
/// ours is never touched.
fn remove_if_ours(secret: &SecretView) -> ValueAction {
    if matches!(secret, SecretView::Ours { .. }) {
        ValueAction::Remove
    } else {
        ValueAction::Keep
    }
}

/// Whether the status records a value (current, pending or in grace).
pub fn holds_a_value(status: &ApiTokenStatus) -> bool {
    status.hash.is_some() || status.pending.is_some() || !status.previous.is_empty()
}

/// The values were issued under an earlier key of this name: removed, so
/// that a fresh one is issued under the current key.
fn replaced(
    current: &ApiTokenStatus,
    generation: Option<i64>,
    secret: &SecretView,
    key_name: &str,
    now: Timestamp,
) -> Decision {
    let message = format!(
        "ApiKey {key_name:?} was deleted and created again; the value issued under the earlier \
         key was removed, and a fresh one is issued under the new key"
    );
    blocked(
        current,
        generation,
        secret,
        reason::KEY_REPLACED,
        message,
        now,
    )
}

/// Keep the value as it is and only report why nothing else happens.
fn keep_with_ready(
    current: &ApiTokenStatus,
    generation: Option<i64>,
    why: &'static str,
    message: String,
    requeue: Requeue,
    now: Timestamp,
) -> Decision {
    let mut status = current.clone();
    status.observed_generation = generation;
    let was = ready_reason(current);
    status.conditions = with_ready(
        &current.conditions,
        DesiredCondition::new(READY, false, why, message.clone()),
        generation,
        now,
    );
    let note = (was != Some(why)).then_some(Note {
        warning: true,
        reason: why,
        action: "Block",
        message,
    });
    Decision {
        action: ValueAction::Keep,
        status,
        note,
        requeue,
    }
}

/// Replaces the Ready condition and keeps the others as they are.
fn with_ready(
    existing: &[Condition],
    ready: DesiredCondition,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out = conditions::merge(existing, &[ready], generation, now);
    out.extend(existing.iter().filter(|c| c.type_ != READY).cloned());
    out
}

fn ready_reason(status: &ApiTokenStatus) -> Option<&'static str> {
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

#[cfg(test)]
mod tests;
