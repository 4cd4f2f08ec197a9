//! The controller against the embedded emulator: every behaviour of the ApiKey and ApiToken
//! reconcilers. Expiry and renewal run on the real clock with lifetimes of seconds (they show
//! the requeue that brings them arrives by itself); scheduled rotation and `ExpiringSoon` run on
//! a clock the test moves.

mod expiring_soon;
mod expiry;
mod issue;
mod keys;
mod revocation;
mod rotation;
mod secret_options;
mod secrets;

use crate::support::*;
use apikey_operator::api::ApiToken;
use apikey_operator::token;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

const NS: &str = "team";

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
