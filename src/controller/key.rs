//! The ApiKey reconciler: resolves the owner to a principal (a ServiceAccount
//! owner must exist, and stays bound to the uid first seen; a forbidden owner
//! resolves to none, see [`owner_check`]) and counts the key's tokens. `adopt` makes the key the
//! controller owner of a token, so deleting a key deletes its tokens.
//! `key_throttle` decides how often a key is looked at and written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, warn};

use super::FIELD_MANAGER;
use super::conditions::{self, DesiredCondition, is_true};
use super::context::{Context, object_key, store_ready};
use super::error::{Error, kube_err};
use super::metrics::API_KEY;
use crate::api::conditions::{EXPIRED, READY, reason};
use crate::api::owner::ForbiddenOwner;
use crate::api::{ApiKey, ApiKeyStatus, ApiToken, Owner, OwnerKind};

/// How long a reconcile waits for the token store's first list before retrying.
const STORE_SYNC: Duration = Duration::from_secs(5);

pub async fn reconcile(key: Arc<ApiKey>, ctx: Arc<Context>) -> Result<Action, Error> {
    if key.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let span = tracing::info_span!("reconcile", kind = API_KEY, object = %object_key(key.as_ref()));
    let result = reconcile_key(&key, &ctx).instrument(span).await;
    ctx.handles.metrics.reconciled(API_KEY, result.is_ok());
    if result.is_ok() {
        ctx.backoff.succeeded(&object_key(key.as_ref()));
    }
    result
}

async fn reconcile_key(key: &ApiKey, ctx: &Context) -> Result<Action, Error> {
    let ns = key
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = key.name_any();
    // Token events wake the key many times a second during a burst; look at
    // most once a second (the owner check and the count scan are not free).
    let object = object_key(key);
    if let Some(wait) = ctx.key_throttle().look(&object, Instant::now()) {
        return Ok(Action::requeue(wait));
    }
    let recorded_uid = key.status.as_ref().and_then(|s| s.owner_uid.as_deref());
    let check = match owner_check(&ns, &key.spec.owner, recorded_uid, None) {
        // Only an owner the rules allow is looked up.
        OwnerCheck::Resolved { .. } => {
            let found = owner_uid(ctx, &ns, &key.spec.owner).await?;
            owner_check(&ns, &key.spec.owner, recorded_uid, Some(found.as_deref()))
        }
        refused => refused,
    };

    // Counting from a store that has not listed yet would report zero tokens.
    if tokio::time::timeout(STORE_SYNC, store_ready(&ctx.tokens))
        .await
        .is_err()
    {
        return Ok(Action::requeue(STORE_SYNC));
    }
    let counts = token_counts(ctx, &ns, &name);
    let current = key.status.clone().unwrap_or_default();
    let desired = desired_status(&current, key, &check, counts, ctx.clock.now());
    if desired != current && only_counts_differ(&current, &desired) {
        // During a burst of token changes the counts move every second; one
        // write once they settle (or every 10 s) instead of one per second.
        if let Some(wait) = ctx.key_throttle().settle(&object, counts, Instant::now()) {
            return Ok(Action::requeue(wait));
        }
    } else {
        ctx.key_throttle().settled(&object);
    }
    if desired != current {
        write_status(ctx, &ns, &name, &desired).await?;
        let was = ready_reason(&current);
        if let Some(why) = check.refusal().filter(|why| was != Some(*why)) {
            if why != reason::OWNER_NOT_FOUND {
                ctx.handles.metrics.owner_refused(why);
            }
            publish_refusal(ctx, key, why, check.message(&ns, &key.spec.owner)).await;
        }
    }
    Ok(ctx.requeue_at(None))
}

/// The reason of the key's Ready condition, if it has one.
fn ready_reason(status: &ApiKeyStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| c.reason.as_str())
}

/// The uid of the key's owner ServiceAccount, `None` when it does not
/// exist; a user needs no lookup (`Some("")`).
async fn owner_uid(ctx: &Context, ns: &str, owner: &Owner) -> Result<Option<String>, Error> {
    Ok(match owner.kind {
        OwnerKind::User => Some(String::new()),
        OwnerKind::ServiceAccount => {
            let sas: Api<ServiceAccount> = ctx.api(ns);
            sas.get_opt(&owner.name)
                .await
                .map_err(kube_err("looking up the owner ServiceAccount"))?
                .map(|sa| sa.metadata.uid.unwrap_or_default())
        }
    })
}

/// What the owner check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerCheck {
    /// Tokens authenticate as `principal`; a ServiceAccount owner is bound
    /// to `uid` (recorded in `status.ownerUID`).
    Resolved {
        principal: String,
        uid: Option<String>,
    },
    /// The rules forbid this owner (a `system:` user, a control character,
    /// an invalid ServiceAccount name): no principal, whatever got stored.
    Forbidden(ForbiddenOwner),
    /// The ServiceAccount does not exist; `bound` is the uid the key was
    /// bound to, if it ever found one.
    NotFound {
        principal: String,
        bound: Option<String>,
    },
    /// The ServiceAccount was deleted and one created again under its name:
    /// another identity, to which the key is not silently re-bound (as a
    /// bound ServiceAccount token dies when its ServiceAccount is re-created).
    Replaced {
        principal: String,
        bound: String,
        found: String,
    },
}

impl OwnerCheck {
    /// The Ready reason of a key that is not Ready, `None` when it is.
    fn refusal(&self) -> Option<&'static str> {
        match self {
            OwnerCheck::Resolved { .. } => None,
            OwnerCheck::Forbidden(_) => Some(reason::FORBIDDEN_OWNER),
            OwnerCheck::NotFound { .. } => Some(reason::OWNER_NOT_FOUND),
            OwnerCheck::Replaced { .. } => Some(reason::OWNER_REPLACED),
        }
    }

    /// The Ready condition's message: what holds, and what the user does.
    fn message(&self, ns: &str, owner: &Owner) -> String {
        let name = &owner.name;
        match self {
            OwnerCheck::Resolved { .. } => match owner.kind {
                OwnerKind::User => format!("tokens authenticate as user {name:?}"),
                OwnerKind::ServiceAccount => {
                    format!("tokens authenticate as ServiceAccount {ns}/{name}")
                }
            },
            OwnerCheck::Forbidden(why) => format!(
                "owner {name:?} is not allowed: {why}. The key's tokens authenticate no one and \
                 get no values; nothing is deleted. Delete this ApiKey (owner is immutable)"
            ),
            OwnerCheck::NotFound { bound: None, .. } => format!(
                "ServiceAccount {name:?} does not exist in namespace {ns:?}; create it (no token \
                 values are issued until it exists)"
            ),
            OwnerCheck::NotFound {
                bound: Some(uid), ..
            } => format!(
                "ServiceAccount {name:?} (uid {uid}) was deleted from namespace {ns:?}; the values \
                 of this key's tokens were removed. The key stays bound to that ServiceAccount: \
                 one created again under this name is another identity and gets no values from \
                 this key; delete and re-create the ApiKey (and its ApiTokens) to issue tokens for it"
            ),
            OwnerCheck::Replaced { bound, found, .. } => format!(
                "ServiceAccount {name:?} was deleted and created again (this key is bound to uid \
                 {bound}, the ServiceAccount now has uid {found}); tokens issued for the earlier \
                 one no longer authenticate, and no values are issued for the new one. Delete \
                 and re-create this ApiKey (and its ApiTokens) to issue tokens for it"
            ),
        }
    }

    fn principal(&self) -> Option<&str> {
        match self {
            OwnerCheck::Resolved { principal, .. }
            | OwnerCheck::NotFound { principal, .. }
            | OwnerCheck::Replaced { principal, .. } => Some(principal),
            OwnerCheck::Forbidden(_) => None,
        }
    }

    /// The ServiceAccount uid the key is bound to after this check.
    fn bound_uid(&self) -> Option<&str> {
        match self {
            OwnerCheck::Resolved { uid, .. } | OwnerCheck::NotFound { bound: uid, .. } => {
                uid.as_deref()
            }
            OwnerCheck::Replaced { bound, .. } => Some(bound),
            OwnerCheck::Forbidden(_) => None,
        }
    }
}

/// Checks the key's owner: the rules first (`api::owner::principal`), then
/// for a ServiceAccount what was `found` (`None`: not looked up yet, taken as
/// resolved; `Some(None)`: it does not exist; `Some(Some(uid))`) against the
/// uid the key is bound to (`recorded`, from `status.ownerUID`). The first
/// uid seen binds the key.
pub fn owner_check(
    ns: &str,
    owner: &Owner,
    recorded: Option<&str>,
    found: Option<Option<&str>>,
) -> OwnerCheck {
    let principal = match crate::api::owner::principal(ns, owner) {
        Ok(principal) => principal,
        Err(why) => return OwnerCheck::Forbidden(why),
    };
    if owner.kind == OwnerKind::User {
        return OwnerCheck::Resolved {
            principal,
            uid: None,
        };
    }
    let bound = recorded.filter(|uid| !uid.is_empty()).map(str::to_owned);
    match found {
        None => OwnerCheck::Resolved {
            principal,
            uid: bound,
        },
        Some(None) => OwnerCheck::NotFound { principal, bound },
        Some(Some(found)) => match bound {
            Some(bound) if bound != found => OwnerCheck::Replaced {
                principal,
                bound,
                found: found.to_owned(),
            },
            _ => OwnerCheck::Resolved {
                principal,
                uid: Some(found.to_owned()),
            },
        },
    }
}

/// The key's token counts `[all, ready, expired]` from the token store.
fn token_counts(ctx: &Context, ns: &str, name: &str) -> [i32; 3] {
    // Filtered inside the store: cloning all of its Arcs (10,000 at 10k
    // tokens, for every key looked at) to keep a hundred cost more than the look.
    let tokens: Vec<Arc<ApiToken>> = ctx.tokens.state_filter(|t| {
        t.metadata.namespace.as_deref() == Some(ns) && t.spec.api_key_ref.name == name
    });

    // Borrowed, not cloned: a key of 100 tokens is counted many times a second in a burst.
    let count = |condition: &str| {
        tokens
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .is_some_and(|s| is_true(&s.conditions, condition))
            })
            .count() as i32
    };
    [tokens.len() as i32, count(READY), count(EXPIRED)]
}

/// Writes the key's status by server-side apply. No resourceVersion
/// precondition: the operator is the only writer of this status and every
/// field is derived afresh on each reconcile, so a write from a slightly
/// stale cache is corrected by the next one.
async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    desired: &ApiKeyStatus,
) -> Result<(), Error> {
    let body = json!({
        "apiVersion": "apikeys.dev/v1alpha1",
        "kind": "ApiKey",
        "metadata": { "name": name },
        "status": desired,
    });
    let keys: Api<ApiKey> = ctx.api(ns);
    keys.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(kube_err("writing the ApiKey status"))?;
    Ok(())
}

/// The Warning that the key's owner does not resolve, for reason `why` (best effort).
async fn publish_refusal(ctx: &Context, key: &ApiKey, why: &'static str, note: String) {
    let event = Event {
        type_: EventType::Warning,
        reason: why.to_owned(),
        note: Some(note),
        action: "ResolveOwner".to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &key.object_ref(&())).await {
        warn!(key = %object_key(key), error = %err, "could not publish event");
    }
}

/// Whether `desired` differs from `current` in the token counts alone.
fn only_counts_differ(current: &ApiKeyStatus, desired: &ApiKeyStatus) -> bool {
    let mut without_counts = desired.clone();
    without_counts.tokens = current.tokens;
    without_counts.ready_tokens = current.ready_tokens;
    without_counts.expired_tokens = current.expired_tokens;
    without_counts == *current
}

/// The key's status: principal, bound ServiceAccount uid, Ready, and token
/// counts `[all, ready, expired]`.
pub fn desired_status(
    current: &ApiKeyStatus,
    key: &ApiKey,
    check: &OwnerCheck,
    [tokens, ready, expired]: [i32; 3],
    now: Timestamp,
) -> ApiKeyStatus {
    let ns = key.metadata.namespace.as_deref().unwrap_or_default();
    let why = check.refusal().unwrap_or(reason::OWNER_RESOLVED);
    let ready_condition = DesiredCondition::new(
        READY,
        check.refusal().is_none(),
        why,
        check.message(ns, &key.spec.owner),
    );
    let generation = key.metadata.generation;
    ApiKeyStatus {
        conditions: conditions::merge(&current.conditions, &[ready_condition], generation, now),
        principal: check.principal().map(str::to_owned),
        owner_uid: check.bound_uid().map(str::to_owned),
        tokens: Some(tokens),
        ready_tokens: Some(ready),
        expired_tokens: Some(expired),
        observed_generation: generation,
    }
}

/// Makes `key` the controller owner of `token`, keeping other owners and
/// replacing a controller reference left by an earlier key of the same name.
/// Called by the token reconciler the first time it sees its key Ready, so a
/// key with many tokens does not adopt them one by one.
pub(crate) async fn adopt(ctx: &Context, key: &ApiKey, token: &ApiToken) -> Result<(), Error> {
    let (Some(owner), Some(ns)) = (key.controller_owner_ref(&()), token.namespace()) else {
        return Ok(());
    };
    let mut refs: Vec<_> = token
        .owner_references()
        .iter()
        .filter(|r| r.controller != Some(true))
        .cloned()
        .collect();
    refs.push(owner);
    let patch = json!({ "metadata": { "ownerReferences": refs, "resourceVersion": token.resource_version() } });
    let api: Api<ApiToken> = ctx.api(&ns);
    let name = token.name_any();
    let params = PatchParams::default();
    match super::write::write_light(&api, |r| r.patch(&name, &params, &Patch::Merge(&patch))).await
    {
        // The ownerReference change (or the conflicting one) wakes the token again.
        Ok(_) => {
            ctx.replaced(&object_key(token), token.resource_version());
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(kube_err("setting the ApiToken's owner reference")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(kind: OwnerKind, name: &str) -> Owner {
        Owner {
            kind,
            name: name.to_owned(),
        }
    }

    /// Name, owner, recorded uid, ServiceAccount found, expected check.
    type Case<'a> = (
        &'a str,
        Owner,
        Option<&'a str>,
        Option<Option<&'a str>>,
        OwnerCheck,
    );

    /// Runs the owner check on each row of an owner check table.
    fn check_owner_cases(cases: Vec<Case<'_>>) {
        for (name, owner, recorded, found, want) in cases {
            assert_eq!(owner_check("ns", &owner, recorded, found), want, "{name}");
        }
    }

    /// The owner check, one row per situation: the rules on the owner's
    /// kind and name.
    #[test]
    fn owner_check_rules_table() {
        use OwnerKind::{ServiceAccount as Sa, User};
        let cases: Vec<Case<'_>> = vec![
            (
                "user",
                owner(User, "alice"),
                None,
                Some(Some("")),
                OwnerCheck::Resolved {
                    principal: "alice".into(),
                    uid: None,
                },
            ),
            (
                "system user",
                owner(User, "system:kube-controller-manager"),
                None,
                None,
                OwnerCheck::Forbidden(ForbiddenOwner::SystemUser),
            ),
            (
                "a ServiceAccount's name as a user",
                owner(User, "system:serviceaccount:kube-system:x"),
                None,
                Some(Some("")),
                OwnerCheck::Forbidden(ForbiddenOwner::SystemUser),
            ),
            (
                "control character",
                owner(User, "alice\r\nX-Auth: admin"),
                None,
                None,
                OwnerCheck::Forbidden(ForbiddenOwner::ControlCharacter),
            ),
            (
                "invalid ServiceAccount name",
                owner(Sa, "CI"),
                None,
                None,
                OwnerCheck::Forbidden(ForbiddenOwner::ServiceAccountName("CI".into())),
            ),
        ];
        check_owner_cases(cases);
    }

    /// The owner check, one row per situation: the ServiceAccount found
    /// against the uid the key is bound to.
    #[test]
    fn owner_check_binding_table() {
        use OwnerKind::ServiceAccount as Sa;
        let sa = "system:serviceaccount:ns:ci".to_owned();
        let resolved = |uid: Option<&str>| OwnerCheck::Resolved {
            principal: sa.clone(),
            uid: uid.map(str::to_owned),
        };
        let cases: Vec<Case<'_>> = vec![
            (
                "first seen: bound",
                owner(Sa, "ci"),
                None,
                Some(Some("u1")),
                resolved(Some("u1")),
            ),
            (
                "same uid",
                owner(Sa, "ci"),
                Some("u1"),
                Some(Some("u1")),
                resolved(Some("u1")),
            ),
            (
                "not looked up yet",
                owner(Sa, "ci"),
                Some("u1"),
                None,
                resolved(Some("u1")),
            ),
            (
                "missing, never bound",
                owner(Sa, "ci"),
                None,
                Some(None),
                OwnerCheck::NotFound {
                    principal: sa.clone(),
                    bound: None,
                },
            ),
            (
                "deleted: stays bound",
                owner(Sa, "ci"),
                Some("u1"),
                Some(None),
                OwnerCheck::NotFound {
                    principal: sa.clone(),
                    bound: Some("u1".into()),
                },
            ),
            (
                "re-created: not re-bound",
                owner(Sa, "ci"),
                Some("u1"),
                Some(Some("u2")),
                OwnerCheck::Replaced {
                    principal: sa.clone(),
                    bound: "u1".into(),
                    found: "u2".into(),
                },
            ),
        ];
        check_owner_cases(cases);
    }

    /// A forbidden or replaced owner: Ready=False with its reason, a message
    /// saying what to do, no principal for a forbidden owner, and the bound
    /// uid kept for a replaced ServiceAccount.
    #[test]
    fn refused_owners_in_status() {
        let now: Timestamp = "2026-06-01T12:00:00Z".parse().expect("time");
        let key = |kind: &str, name: &str| -> ApiKey {
            serde_json::from_value(json!({
                "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
                "metadata": {"name": "k", "namespace": "ns", "uid": "k-1", "generation": 1},
                "spec": {"owner": {"kind": kind, "name": name}},
                "status": {"principal": name, "conditions": [{"type": "Ready", "status": "True",
                    "reason": "OwnerResolved", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
            }))
            .expect("ApiKey")
        };
        let forbidden = key("User", "system:kube-controller-manager");
        let current = forbidden.status.clone().unwrap_or_default();
        let check = owner_check("ns", &forbidden.spec.owner, None, None);
        let status = desired_status(&current, &forbidden, &check, [1, 0, 0], now);
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ForbiddenOwner")
        );
        assert!(ready.message.contains("reserved"), "{}", ready.message);
        assert!(
            ready.message.contains("nothing is deleted"),
            "{}",
            ready.message
        );
        assert_eq!(status.principal, None);

        let sa = key("ServiceAccount", "ci");
        let check = owner_check("ns", &sa.spec.owner, Some("u1"), Some(Some("u2")));
        let status = desired_status(&current, &sa, &check, [1, 0, 0], now);
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "OwnerReplaced")
        );
        assert!(
            ready.message.contains("Delete and re-create this ApiKey"),
            "{}",
            ready.message
        );
        assert_eq!(status.owner_uid.as_deref(), Some("u1"));
    }

    #[test]
    fn only_the_counts_differ() {
        let current = ApiKeyStatus {
            principal: Some("alice".into()),
            tokens: Some(1),
            ready_tokens: Some(0),
            ..Default::default()
        };
        let mut desired = current.clone();
        desired.ready_tokens = Some(1);
        assert!(only_counts_differ(&current, &desired));
        desired.principal = Some("bob".into());
        assert!(!only_counts_differ(&current, &desired));
    }
}
