//! `rotate` and `revoke`: set the request annotation to a value the operator
//! has not acted on, wait until it did, and say what that came to. Whether a
//! token can rotate at all, and what a recorded request came to, are pure
//! functions of the token (and `now`); `send` only reads and writes the API.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::CliError;
use crate::api::conditions::{READY, reason};
use crate::api::{ApiToken, ApiTokenStatus, REVOKE_ANNOTATION, ROTATE_ANNOTATION};

/// What a request annotation asks the operator for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Rotate,
    Revoke,
}

impl RequestKind {
    fn annotation(self) -> &'static str {
        match self {
            RequestKind::Rotate => ROTATE_ANNOTATION,
            RequestKind::Revoke => REVOKE_ANNOTATION,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            RequestKind::Rotate => "rotate",
            RequestKind::Revoke => "revoke",
        }
    }

    /// The error when the operator did not act within `timeout`.
    fn timeout(self, namespace: &str, name: &str, request: &str, timeout: Duration) -> CliError {
        let (namespace, name, request) =
            (namespace.to_owned(), name.to_owned(), request.to_owned());
        match self {
            RequestKind::Rotate => CliError::RotateTimeout {
                namespace,
                name,
                request,
                timeout,
            },
            RequestKind::Revoke => CliError::RevokeTimeout {
                namespace,
                name,
                request,
                timeout,
            },
        }
    }

    /// The last value of this request the operator acted on.
    fn acted_on(self, status: &ApiTokenStatus) -> Option<&str> {
        match self {
            RequestKind::Rotate => status.last_rotation_request.as_deref().map(String::as_str),
            RequestKind::Revoke => status
                .last_revocation_request
                .as_deref()
                .map(String::as_str),
        }
    }
}

/// Why the operator does not act on a rotation request now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The Ready condition's reason (`Disabled`, `InvalidSpec`, `ApiKeyNotFound`, ...).
    pub reason: String,
    pub message: String,
}

/// Ready=False reasons under which a rotation request is not acted on until
/// something else changes (the spec, or the key).
const BLOCKING: [&str; 5] = [
    reason::DISABLED,
    reason::INVALID_SPEC,
    reason::KEY_NOT_FOUND,
    reason::KEY_NOT_READY,
    reason::KEY_REPLACED,
];

fn ready_condition(token: &ApiToken) -> Option<&Condition> {
    token
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
}

/// Why `token` cannot rotate at `now`, if it cannot: it is disabled, its
/// `expiresAt` passed (a fresh value would be born expired), or its Ready
/// condition, written for its current spec, names a reason the operator
/// waits out (an invalid spec, its key missing, not Ready or replaced). A
/// condition written for an earlier spec says nothing: the operator has yet
/// to look at the current one.
pub fn rotation_blocked(token: &ApiToken, now: Timestamp) -> Option<Blocked> {
    let ready = ready_condition(token);
    let ready_says = |why: &str| {
        ready
            .filter(|c| c.reason == why && !c.message.is_empty())
            .map(|c| c.message.clone())
    };
    if token.spec.disabled {
        return Some(Blocked {
            reason: reason::DISABLED.to_owned(),
            message: ready_says(reason::DISABLED).unwrap_or_else(|| {
                "spec.disabled is true; set it to false, which issues a fresh value".to_owned()
            }),
        });
    }
    let expires_at = token
        .spec
        .expiration
        .as_ref()
        .and_then(|e| e.expires_at.as_ref());
    if let Some(at) = expires_at.filter(|at| at.0 <= now) {
        return Some(Blocked {
            reason: reason::EXPIRED.to_owned(),
            message: format!(
                "spec.expiration.expiresAt ({}) is in the past, so a fresh value would be born \
                 expired; set a later spec.expiration",
                at.0
            ),
        });
    }
    let generation = token.metadata.generation;
    let ready = ready.filter(|c| {
        c.status == "False"
            && BLOCKING.contains(&c.reason.as_str())
            && generation.is_some()
            && c.observed_generation == generation
    })?;
    Some(Blocked {
        reason: ready.reason.clone(),
        message: ready.message.clone(),
    })
}

/// What the rotation `request` came to: `None` while the operator has not
/// acted on it (and nothing blocks it), `Ok` once a fresh value is recorded,
/// an error when it cannot or did not issue one.
pub fn rotated(
    token: &ApiToken,
    request: &str,
    now: Timestamp,
) -> Option<Result<Rotated, CliError>> {
    let status = token.status.as_ref();
    let done = status
        .is_some_and(|s| RequestKind::Rotate.acted_on(s) == Some(request) && s.pending.is_none());
    let not_rotated = |blocked: Blocked| CliError::NotRotated {
        namespace: token.metadata.namespace.clone().unwrap_or_default(),
        name: token.metadata.name.clone().unwrap_or_default(),
        reason: blocked.reason,
        message: blocked.message,
    };
    if done {
        if let Some(s) = status.filter(|s| s.hash.is_some()) {
            // Recorded with its Secret: done (without one, the status is still being written).
            return s.secret_name.clone().map(|secret| {
                Ok(Rotated {
                    secret,
                    earlier_valid_until: s.previous.iter().map(|p| p.valid_until.0).max(),
                })
            });
        }
        // Acted on without a value: an expiry (the key's expiresAt, say) the
        // request cannot move.
        let ready = ready_condition(token);
        return Some(Err(not_rotated(Blocked {
            reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
            message: ready.map(|c| c.message.clone()).unwrap_or_default(),
        })));
    }
    rotation_blocked(token, now).map(|b| Err(not_rotated(b)))
}

/// What a rotation came to, once the operator recorded the fresh value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    /// The Secret the fresh value is in.
    pub secret: String,
    /// Until when some earlier value is still accepted (grace periods); `None`: none is.
    pub earlier_valid_until: Option<Timestamp>,
}

/// Requests a rotation by setting the rotate annotation to `request`; with
/// `wait`, waits until the operator recorded a fresh value and says where it is
/// (`None` without `wait`). Fails at once, without setting the annotation, when the
/// request value was acted on before or the token cannot rotate (see [`rotation_blocked`]).
pub async fn rotate(
    client: Client,
    namespace: &str,
    name: &str,
    request: &str,
    wait: Option<Duration>,
) -> Result<Option<Rotated>, CliError> {
    let api: Api<ApiToken> = Api::namespaced(client, namespace);
    let outcome = |token: &ApiToken| rotated(token, request, Timestamp::now());
    send(
        &api,
        namespace,
        name,
        RequestKind::Rotate,
        request,
        wait,
        outcome,
    )
    .await
}

/// What a revocation came to, once the operator acted on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// Every earlier value is refused; a fresh value is in this Secret.
    Reissued { secret: String },
    /// Every earlier value is refused, and no value is issued for now: the
    /// token's Ready condition says why (disabled, expired, key not Ready, ...).
    NoValue { reason: String, message: String },
}

/// Requests a revocation by setting the revoke annotation to `request`;
/// with `wait`, waits until the operator acted on it and says what it came
/// to (`None` without `wait`).
pub async fn revoke(
    client: Client,
    namespace: &str,
    name: &str,
    request: &str,
    wait: Option<Duration>,
) -> Result<Option<Revoked>, CliError> {
    let api: Api<ApiToken> = Api::namespaced(client, namespace);
    let outcome = |token: &ApiToken| {
        token
            .status
            .as_ref()
            .and_then(|s| revoked(s, request))
            .map(Ok)
    };
    send(
        &api,
        namespace,
        name,
        RequestKind::Revoke,
        request,
        wait,
        outcome,
    )
    .await
}

/// What the revocation `request` came to, once `status` records it done.
fn revoked(status: &ApiTokenStatus, request: &str) -> Option<Revoked> {
    if RequestKind::Revoke.acted_on(status) != Some(request) || status.pending.is_some() {
        return None;
    }
    if let (Some(_), Some(secret)) = (&status.hash, &status.secret_name) {
        return Some(Revoked::Reissued {
            secret: secret.clone(),
        });
    }
    let ready = status.conditions.iter().find(|c| c.type_ == READY);
    Some(Revoked::NoValue {
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
    })
}

/// Sets `kind`'s annotation to `request` and, with `wait`, polls until
/// `outcome` says what it came to. Refuses a request value the operator
/// acted on before (reporting it done would claim what nobody did now),
/// and a token whose `outcome` is already an error, before writing anything.
async fn send<T>(
    api: &Api<ApiToken>,
    namespace: &str,
    name: &str,
    kind: RequestKind,
    request: &str,
    wait: Option<Duration>,
    outcome: impl Fn(&ApiToken) -> Option<Result<T, CliError>>,
) -> Result<Option<T>, CliError> {
    let not_found = || CliError::TokenNotFound {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let read = |source| CliError::Kube {
        action: "reading the ApiToken",
        source,
    };
    let token = api
        .get_opt(name)
        .await
        .map_err(read)?
        .ok_or_else(not_found)?;
    if token
        .status
        .as_ref()
        .is_some_and(|s| kind.acted_on(s) == Some(request))
    {
        return Err(CliError::RequestRepeated {
            verb: kind.verb(),
            request: request.to_owned(),
        });
    }
    if let Some(Err(refused)) = outcome(&token) {
        return Err(refused);
    }
    let patch = json!({ "metadata": { "annotations": { kind.annotation(): request } } });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(not_found()),
        Err(source) => {
            return Err(CliError::Kube {
                action: "setting the request annotation",
                source,
            });
        }
    }
    let Some(timeout) = wait else { return Ok(None) };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let token = api.get(name).await.map_err(read)?;
        if let Some(done) = outcome(&token) {
            return done.map(Some);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(kind.timeout(namespace, name, request, timeout));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests;
