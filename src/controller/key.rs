//! The ApiKey reconciler: resolves the owner to a principal (a ServiceAccount
//! owner must exist) and counts the key's tokens. `adopt` makes the key the
//! controller owner of a token, so deleting a key deletes its tokens.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, warn};

use super::conditions::{self, Wanted, is_true};
use super::{Context, Error, FIELD_MANAGER, kube_err, object_key};
use crate::api::conditions::{EXPIRED, READY, reason};
use crate::api::{ApiKey, ApiKeyStatus, ApiToken, OwnerKind};

/// At most one write of token counts per key in this interval.
const COUNTS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a reconcile waits for the token store's first list before retrying.
const STORE_SYNC: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn reconcile(key: Arc<ApiKey>, ctx: Arc<Context>) -> Result<Action, Error> {
    if key.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let span = tracing::info_span!("reconcile", kind = crate::metrics::API_KEY, object = %object_key(key.as_ref()));
    let result = reconcile_key(&key, &ctx).instrument(span).await;
    ctx.handles
        .metrics
        .reconciled(crate::metrics::API_KEY, result.is_ok());
    if result.is_ok() {
        ctx.succeeded(&object_key(key.as_ref()));
    }
    ctx.handles
        .stats
        .key_reconciles
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    let owner = &key.spec.owner;
    // Token events wake the key many times a second during a burst; look at
    // most once a second (the owner check and the count scan are not free).
    if ctx.recently_written(&object_key(key), COUNTS_INTERVAL) {
        return Ok(Action::requeue(COUNTS_INTERVAL));
    }

    let owner_found = match owner.kind {
        OwnerKind::User => true,
        OwnerKind::ServiceAccount => {
            let sas: Api<ServiceAccount> = ctx.api(&ns);
            sas.get_opt(&owner.name)
                .await
                .map_err(kube_err("looking up the owner ServiceAccount"))?
                .is_some()
        }
    };

    // Counting from a store that has not listed yet would report zero tokens.
    if tokio::time::timeout(STORE_SYNC, super::store_ready(&ctx.tokens))
        .await
        .is_err()
    {
        return Ok(Action::requeue(STORE_SYNC));
    }
    let tokens: Vec<Arc<ApiToken>> = ctx
        .tokens
        .state()
        .into_iter()
        .filter(|t| {
            t.namespace().as_deref() == Some(ns.as_str()) && t.spec.api_key_ref.name == name
        })
        .collect();

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
    let current = key.status.clone().unwrap_or_default();
    let desired = desired_status(
        &current,
        &ns,
        key,
        owner_found,
        [tokens.len() as i32, count(READY), count(EXPIRED)],
        ctx.clock.now(),
    );
    if desired != current {
        let was_ready = is_true(&current.conditions, READY);
        // No resourceVersion precondition: the operator is the only writer of
        // this status and every field is derived afresh on each reconcile, so a
        // write from a slightly stale cache is corrected by the next one.
        let body = json!({
            "apiVersion": "apikeys.dev/v1alpha1",
            "kind": "ApiKey",
            "metadata": { "name": name },
            "status": desired,
        });
        ctx.mark_written(object_key(key));
        let keys: Api<ApiKey> = ctx.api(&ns);
        keys.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(kube_err("writing the ApiKey status"))?;
        if !owner_found && (was_ready || current.conditions.is_empty()) {
            let event = Event {
                type_: EventType::Warning,
                reason: reason::OWNER_NOT_FOUND.to_owned(),
                note: Some(owner_message(&ns, key, false)),
                action: "ResolveOwner".to_owned(),
                secondary: None,
            };
            if let Err(err) = ctx.recorder.publish(&event, &key.object_ref(&())).await {
                warn!(key = %object_key(key), error = %err, "could not publish event");
            }
        }
    }
    Ok(ctx.requeue_at(None))
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
    let ready_condition = Wanted::new(READY, owner_found, why, owner_message(ns, key, owner_found));
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
    match super::write_light(&api, |r| r.patch(&name, &params, &Patch::Merge(&patch))).await {
        // The ownerReference change (or the conflicting one) wakes the token again.
        Ok(_) => {
            ctx.replaced(&object_key(token), token.resource_version());
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(kube_err("setting the ApiToken's owner reference")(e)),
    }
}
