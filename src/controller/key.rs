//! The ApiKey reconciler: resolves the owner to a principal (a ServiceAccount
//! owner must exist) and counts the key's tokens. `adopt` makes the key the
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

/// The identity a key's tokens authenticate as.
pub fn principal(namespace: &str, owner_kind: OwnerKind, owner_name: &str) -> String {
    match owner_kind {
        OwnerKind::User => owner_name.to_owned(),
        OwnerKind::ServiceAccount => format!("system:serviceaccount:{namespace}:{owner_name}"),
    }
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
    let owner_found = owner_exists(ctx, &ns, &key.spec.owner).await?;

    // Counting from a store that has not listed yet would report zero tokens.
    if tokio::time::timeout(STORE_SYNC, store_ready(&ctx.tokens))
        .await
        .is_err()
    {
        return Ok(Action::requeue(STORE_SYNC));
    }
    let counts = token_counts(ctx, &ns, &name);
    let current = key.status.clone().unwrap_or_default();
    let desired = desired_status(&current, &ns, key, owner_found, counts, ctx.clock.now());
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
        let was_ready = is_true(&current.conditions, READY);
        if !owner_found && (was_ready || current.conditions.is_empty()) {
            publish_owner_not_found(ctx, &ns, key).await;
        }
    }
    Ok(ctx.requeue_at(None))
}

/// Whether the key's owner exists: a user always does, a ServiceAccount
/// must exist in the key's namespace.
async fn owner_exists(ctx: &Context, ns: &str, owner: &Owner) -> Result<bool, Error> {
    Ok(match owner.kind {
        OwnerKind::User => true,
        OwnerKind::ServiceAccount => {
            let sas: Api<ServiceAccount> = ctx.api(ns);
            sas.get_opt(&owner.name)
                .await
                .map_err(kube_err("looking up the owner ServiceAccount"))?
                .is_some()
        }
    })
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

/// The Warning that the key's ServiceAccount owner does not exist (best effort).
async fn publish_owner_not_found(ctx: &Context, ns: &str, key: &ApiKey) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason::OWNER_NOT_FOUND.to_owned(),
        note: Some(owner_message(ns, key, false)),
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

fn owner_message(ns: &str, key: &ApiKey, found: bool) -> String {
    let owner = &key.spec.owner;
    match (owner.kind, found) {
        (OwnerKind::User, _) => format!("tokens authenticate as user {:?}", owner.name),
        (OwnerKind::ServiceAccount, true) => {
            format!("tokens authenticate as ServiceAccount {ns}/{}", owner.name)
        }
        (OwnerKind::ServiceAccount, false) => format!(
            "ServiceAccount {:?} does not exist in namespace {ns:?}; create it (no token values are issued until it exists)",
            owner.name
        ),
    }
}

/// The key's status: principal, Ready, and token counts `[all, ready, expired]`.
pub fn desired_status(
    current: &ApiKeyStatus,
    ns: &str,
    key: &ApiKey,
    owner_found: bool,
    [tokens, ready, expired]: [i32; 3],
    now: Timestamp,
) -> ApiKeyStatus {
    let why = if owner_found {
        reason::OWNER_RESOLVED
    } else {
        reason::OWNER_NOT_FOUND
    };
    let ready_condition =
        DesiredCondition::new(READY, owner_found, why, owner_message(ns, key, owner_found));
    let generation = key.metadata.generation;
    ApiKeyStatus {
        conditions: conditions::merge(&current.conditions, &[ready_condition], generation, now),
        principal: Some(principal(ns, key.spec.owner.kind, &key.spec.owner.name)),
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
