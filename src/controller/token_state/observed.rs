//! What the shell observed of the token's key and Secret, in the form the
//! decision reads: [`KeyState`] from the cached ApiKey, [`SecretView`] from
//! the Secret (hashes only), and the fingerprint of what a token reads of its
//! key, so that other key changes wake no token.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use super::super::conditions::is_true;
use super::super::hashed_secret::HashedSecret;
use crate::api::conditions::READY;
use crate::api::{ApiKey, ApiToken, TokenDefaults};
use crate::token::{TokenHash, TokenId};

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
        defaults: Option<&'a TokenDefaults>,
        /// The key's `metadata.uid`.
        uid: &'a str,
        /// The key's `metadata.creationTimestamp`.
        created: Option<Timestamp>,
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
    /// Controlled by this ApiToken; the hash of the value under the token's
    /// key, if any, and the token id that value carries.
    Ours {
        value_hash: Option<TokenHash>,
        value_token_id: Option<TokenId>,
    },
}

/// Whether `token` belongs to a key other than the one with `key_uid`
/// (created at `key_created`): its status records the key its values were
/// issued under, and that is another; or it records none and the token is
/// older than the key, so it was admitted against an earlier key of that
/// name (or none). Such a token gets no value under this key, whose owner
/// the token's creator was never checked against.
pub fn bound_elsewhere(token: &ApiToken, key_uid: &str, key_created: Option<Timestamp>) -> bool {
    match token.status.as_ref().and_then(|s| s.api_key_uid.as_deref()) {
        Some(bound) => bound != key_uid,
        None => token
            .metadata
            .creation_timestamp
            .as_ref()
            .zip(key_created)
            .is_some_and(|(token_created, key_created)| token_created.0 < key_created),
    }
}

/// The key as the decision sees it: a key being deleted, or not (yet)
/// Ready, blocks its tokens.
pub fn key_state(key: Option<&ApiKey>) -> KeyState<'_> {
    match key {
        None => KeyState::Missing,
        Some(key) if key.metadata.deletion_timestamp.is_some() => KeyState::NotReady {
            message: "it is being deleted",
        },
        Some(key) => {
            let status = key.status.as_ref();
            let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
            if is_true(conditions, READY) {
                KeyState::Ready {
                    defaults: key.spec.token_defaults.as_ref(),
                    uid: key.metadata.uid.as_deref().unwrap_or_default(),
                    created: key.metadata.creation_timestamp.as_ref().map(|t| t.0),
                }
            } else {
                let message = conditions
                    .iter()
                    .find(|c| c.type_ == READY)
                    .map(|c| c.message.as_str())
                    .unwrap_or("its owner has not been checked yet");
                KeyState::NotReady { message }
            }
        }
    }
}

/// A digest of what a token's reconcile reads from its key (`key_state`,
/// the adoption check): key events that leave it unchanged, such as the
/// key's token counts, need not wake every token of the key.
pub fn key_fingerprint(key: &ApiKey) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.metadata.uid.hash(&mut h);
    serde_json::to_string(&key.spec)
        .unwrap_or_default()
        .hash(&mut h);
    let ready = key
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    ready.map(|c| (&c.status, &c.message)).hash(&mut h);
    key.metadata.deletion_timestamp.is_some().hash(&mut h);
    h.finish()
}

/// How a Secret relates to the token `uid`, with the hash of the value
/// under `key`.
pub fn view(secret: &HashedSecret, uid: &str, key: &str) -> SecretView {
    let controller = secret
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true));
    match controller {
        Some(OwnerReference { uid: owner, .. }) if owner == uid => {
            let value_hash = secret.hash_of(key).cloned();
            let value_token_id = secret.token_id_of(key).cloned();
            SecretView::Ours {
                value_hash,
                value_token_id,
            }
        }
        other => SecretView::Foreign {
            controller: other.map(|o| format!("{} {}", o.kind, o.name)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key being deleted blocks its tokens like a key that is not Ready.
    #[test]
    fn a_key_being_deleted_is_not_ready() {
        let mut key: crate::api::ApiKey = serde_json::from_value(serde_json::json!({
            "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": "key", "namespace": "ns", "uid": "k-1",
                         "deletionTimestamp": "2026-06-01T00:00:00Z"},
            "spec": {"owner": {"kind": "User", "name": "alice"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "OwnerResolved",
                       "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .expect("ApiKey");
        assert!(matches!(
            key_state(Some(&key)),
            KeyState::NotReady { message } if message.contains("being deleted")
        ));
        key.metadata.deletion_timestamp = None;
        assert!(matches!(key_state(Some(&key)), KeyState::Ready { .. }));
    }
}
