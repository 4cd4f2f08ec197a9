//! Waits with a deadline, never a bare sleep: for a watched object to meet a condition or to go,
//! for a token to settle or to record an edit, for any check to pass; and the conditions.

use std::fmt::Debug;
use std::time::Duration;

use super::DEADLINE;
use apikey_operator::api::{ApiKey, ApiToken, ROTATE_ANNOTATION};
use apikey_operator::token;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::wait::{Condition, await_condition};
use serde::de::DeserializeOwned;

/// Waits (event-driven, via a watch) until `name` satisfies `cond`.
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, cond: impl Condition<K>) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    match tokio::time::timeout(DEADLINE, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{name}: deleted while waiting for {what}"),
        Ok(Err(e)) => panic!("{name}: watch failed while waiting for {what}: {e}"),
        Err(_) => {
            let now = api.get_opt(name).await.ok().flatten();
            panic!("{name}: no {what} within {DEADLINE:?}; last seen: {now:#?}")
        }
    }
}

/// Waits until `name` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    match tokio::time::timeout(
        DEADLINE,
        await_condition(
            api.clone(),
            name,
            kube::runtime::wait::conditions::is_deleted(""),
        ),
    )
    .await
    {
        Ok(_) => {
            // is_deleted("") matches any uid being absent; confirm with a read.
            let deadline = tokio::time::Instant::now() + DEADLINE;
            while api.get_opt(name).await.ok().flatten().is_some() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name} still exists"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(_) => panic!("{name} not deleted within {DEADLINE:?}"),
    }
}

/// The condition `type_` of a token has `status`.
pub fn token_condition(type_: &'static str, status: &'static str) -> impl Condition<ApiToken> {
    move |t: Option<&ApiToken>| {
        t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == status)
        })
    }
}

/// The Ready reason of a token is `reason`.
pub fn token_reason(reason: &'static str) -> impl Condition<ApiToken> {
    move |t: Option<&ApiToken>| {
        t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == reason)
        })
    }
}

pub fn key_ready(status: &'static str) -> impl Condition<ApiKey> {
    move |k: Option<&ApiKey>| {
        k.and_then(|k| k.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == status)
        })
    }
}

/// Waits until the token is Ready with no value half-issued (`status.pending` empty).
pub async fn settled_token(api: &Api<ApiToken>, name: &str) -> ApiToken {
    wait_for(
        api,
        name,
        "Ready=True, nothing pending",
        |t: Option<&ApiToken>| {
            token_condition("Ready", "True").matches_object(t)
                && t.and_then(|t| t.status.as_ref())
                    .is_some_and(|s| s.pending.is_none())
        },
    )
    .await
}

/// The token `name` if it has settled — Ready, no value pending, its spec and any rotate request
/// handled — with the value its Secret holds, which hashes to the one its status records.
pub async fn settled_with_value(
    tokens: &Api<ApiToken>,
    secrets: &Api<Secret>,
    name: &str,
) -> Option<(ApiToken, String)> {
    let token = tokens.get(name).await.ok()?;
    let status = token.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let request = token.annotations().get(ROTATE_ANNOTATION);
    if !ready
        || status.pending.is_some()
        || status.observed_generation != token.metadata.generation
        || (request.is_some() && request != status.last_rotation_request.as_deref())
    {
        return None;
    }
    let secret = secrets.get(status.secret_name.as_deref()?).await.ok()?;
    let value = String::from_utf8(secret.data?.get("token")?.0.clone()).ok()?;
    (Some(token::hash_value(&value).as_str()) == status.hash.as_deref()).then_some((token, value))
}

/// Makes the controller look at `name` again (a spec edit bumps the
/// generation) and waits until it recorded that generation, so the status
/// read back was decided at the clock's current time.
pub async fn reconcile_now(api: &Api<ApiToken>, name: &str, edit: &str) -> ApiToken {
    let patched = api
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&serde_json::json!({"spec": {"description": edit}})),
        )
        .await
        .expect("edit the description");
    let generation = patched.metadata.generation.expect("generation");
    wait_for(
        api,
        name,
        "the edit observed",
        move |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .is_some_and(|s| s.observed_generation == Some(generation))
        },
    )
    .await
}

/// Polls `check` until it returns Some, or fails after the deadline.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, DEADLINE, check).await
}

/// Like `eventually`, with its own deadline.
pub async fn eventually_within<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the token is Ready=True.
pub async fn ready_token(api: &Api<ApiToken>, name: &str) -> ApiToken {
    wait_for(api, name, "Ready=True", token_condition("Ready", "True")).await
}
