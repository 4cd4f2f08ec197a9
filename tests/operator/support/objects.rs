//! Objects made from YAML and read back: create one, a key, a token; a Secret's value; the Events
//! about an object.

use std::fmt::Debug;

use apikey_operator::api::{ApiKey, ApiToken};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};
use serde::de::DeserializeOwned;

pub fn apply_yaml<K: DeserializeOwned>(yaml: &str) -> K {
    serde_yaml::from_str(yaml).expect("test manifest parses")
}

/// Creates the object `yaml` describes through `api`, which must succeed.
pub async fn create<K>(api: &Api<K>, yaml: &str) -> K
where
    K: Clone + DeserializeOwned + serde::Serialize + Debug,
{
    api.create(&PostParams::default(), &apply_yaml(yaml))
        .await
        .unwrap_or_else(|e| panic!("created from {yaml:?}: {e}"))
}

/// Creates the ApiKey `name` of the owner `owner_kind` (`User` or `ServiceAccount`) `owner`.
pub async fn create_key(api: &Api<ApiKey>, name: &str, owner_kind: &str, owner: &str) -> ApiKey {
    create(
        api,
        &format!(
            "metadata: {{name: {name}}}\nspec: {{owner: {{kind: {owner_kind}, name: {owner}}}}}"
        ),
    )
    .await
}

/// Creates the ApiToken `name` with `spec`, a YAML flow mapping: `{apiKeyRef: {name: k}}`.
pub async fn create_token(api: &Api<ApiToken>, name: &str, spec: &str) -> ApiToken {
    create(api, &format!("metadata: {{name: {name}}}\nspec: {spec}")).await
}

/// The hash of the token's current value, as its status records it (which must).
pub fn hash_of(token: &ApiToken) -> String {
    token
        .status
        .as_ref()
        .and_then(|s| s.hash.clone())
        .expect("status.hash")
}

/// The token value stored in a Secret.
pub fn secret_value(secret: &Secret, key: &str) -> String {
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .expect("Secret holds the value");
    String::from_utf8(data.0.clone()).expect("value is UTF-8")
}

/// Events (events.k8s.io/v1) about the object `name` in `ns`, as (type, reason, note).
pub async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<(String, String, String)> {
    counted_events_for(client, ns, name)
        .await
        .into_iter()
        .map(|(ty, reason, note, _)| (ty, reason, note))
        .collect()
}

/// Like `events_for`, with how often each happened: repeats of the same
/// type, reason and action are recorded as one Event with a series count.
pub async fn counted_events_for(
    client: &Client,
    ns: &str,
    name: &str,
) -> Vec<(String, String, String, i32)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await.expect("events list");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                count,
            )
        })
        .collect()
}
