//! The controller against the embedded emulator: every behaviour of the
//! ApiKey and ApiToken reconcilers, with durations of seconds so rotation,
//! grace and expiry are observed for real.

mod expiring_soon;
mod expiry;
mod issue;
mod keys;
mod rotation;
mod secret_options;
mod secrets;

use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::token;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::PostParams;

const NS: &str = "team";

async fn create_key(cluster: &Cluster, name: &str, owner_kind: &str, owner: &str) -> ApiKey {
    let key: ApiKey = apply_yaml(&format!(
        "apiVersion: apikeys.dev/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}}}\nspec:\n  owner: {{kind: {owner_kind}, name: {owner}}}\n"
    ));
    cluster
        .api::<ApiKey>(NS)
        .create(&PostParams::default(), &key)
        .await
        .expect("key created")
}

async fn create_token(cluster: &Cluster, name: &str, spec_yaml: &str) -> ApiToken {
    let token: ApiToken = apply_yaml(&format!(
        "apiVersion: apikeys.dev/v1alpha1\nkind: ApiToken\nmetadata: {{name: {name}}}\nspec:\n{spec_yaml}"
    ));
    cluster
        .api::<ApiToken>(NS)
        .create(&PostParams::default(), &token)
        .await
        .expect("token created")
}

async fn ready_token(cluster: &Cluster, name: &str) -> ApiToken {
    wait_for(
        &cluster.api::<ApiToken>(NS),
        name,
        "Ready=True",
        token_condition("Ready", "True"),
    )
    .await
}

fn hash_of(token: &ApiToken) -> String {
    token
        .status
        .as_ref()
        .and_then(|s| s.hash.clone())
        .expect("status.hash")
}

/// The Secret's value and the status agree, and the value is well-formed.
async fn assert_secret_matches(cluster: &Cluster, token: &ApiToken) -> String {
    let status = token.status.as_ref().expect("status");
    let secret_name = status.secret_name.as_deref().expect("secretName");
    let secret = cluster
        .api::<Secret>(NS)
        .get(secret_name)
        .await
        .expect("Secret exists");
    let value = secret_value(&secret, "token");
    assert_eq!(
        token::hash_value(&value).as_str(),
        hash_of(token),
        "Secret value hash == status.hash"
    );
    let parsed = token::parse(&value).expect("value parses");
    assert_eq!(Some(parsed.token_id()), status.token_id.as_deref());
    assert!(
        secret
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == token.metadata.uid.as_ref()),
        "Secret is controlled by its ApiToken"
    );
    value
}
