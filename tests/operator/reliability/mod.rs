//! Reliability under API trouble (issue 8, items 2 and 3): an API outage,
//! and conflicting writers on an ApiToken and its Secret. The controller
//! runs in this process so its request and error counters can be read; see
//! docs/reliability.md for what each test proves and the soak variants.

mod conflicts;
mod crash;
mod outage;
mod replaced_key;
mod undecodable;

use std::time::Duration;

use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken, ROTATE_ANNOTATION};
use apikey_operator::token;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::PostParams;

async fn create_key(cluster: &Cluster, ns: &str) {
    let key: ApiKey = apply_yaml("metadata: {name: k}\nspec: {owner: {kind: User, name: u}}");
    cluster
        .api::<ApiKey>(ns)
        .create(&PostParams::default(), &key)
        .await
        .expect("key");
}

async fn create_token(cluster: &Cluster, ns: &str, name: &str, spec: &str) {
    let token: ApiToken = apply_yaml(&format!("metadata: {{name: {name}}}\nspec: {spec}\n"));
    cluster
        .api::<ApiToken>(ns)
        .create(&PostParams::default(), &token)
        .await
        .expect("token");
}

/// Waits until the token is Ready with no pending value, every spec change
/// and rotate request handled, and the Secret holding the recorded value.
async fn settled(cluster: &Cluster, ns: &str, name: &str, within: Duration) -> (ApiToken, String) {
    let tokens = cluster.api::<ApiToken>(ns);
    let secrets = cluster.api::<Secret>(ns);
    eventually_within(&format!("{name} to settle"), within, || {
        let (tokens, secrets) = (tokens.clone(), secrets.clone());
        async move {
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
                || (request.is_some() && request != status.last_rotation_request.as_ref())
            {
                return None;
            }
            let secret = secrets.get(status.secret_name.as_deref()?).await.ok()?;
            let value = String::from_utf8(secret.data?.get("token")?.0.clone()).ok()?;
            (Some(token::hash_value(&value).as_str()) == status.hash.as_deref())
                .then_some((token, value))
        }
    })
    .await
}

fn rotations(token: &ApiToken) -> i64 {
    token.status.as_ref().and_then(|s| s.rotations).unwrap_or(0)
}
