//! [`HashedSecret`]: a Secret as the token reconciler reads it, with every
//! value replaced by its hash while the API's answer is decoded.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use crate::token::{self as tokens, TokenHash, TokenId};

/// A Secret's metadata and, per data key, the hash of its value. The watch
/// cache and the reconciler's GETs decode Secrets into this type, so no token
/// value is kept once a response is decoded. It is also far smaller than a
/// `Secret`, whose data map alone took ~550 bytes per cached Secret (massif,
/// BENCHMARKS.md). Read-only: writes send a `Secret`.
#[derive(Clone, Debug, Deserialize)]
pub struct HashedSecret {
    #[serde(deserialize_with = "crate::lean::metadata")]
    pub metadata: ObjectMeta,
    /// Behind a thin pointer: with the slice's length inline, a cached Secret
    /// was 8 bytes past the 384-byte allocation size class (BENCHMARKS.md §16).
    #[serde(default, rename = "data", deserialize_with = "hash_values")]
    hashes: Box<Hashes>,
}

/// Data key → hash of its value, and the token id the value carries if it
/// is a token value; a Secret has one or a few keys.
type Hashes = Box<[(Box<str>, TokenHash, Option<TokenId>)]>;

impl HashedSecret {
    /// The hash of the value under `key`, if the Secret has that key.
    pub fn hash_of(&self, key: &str) -> Option<&TokenHash> {
        self.hashes
            .iter()
            .find(|(k, _, _)| &**k == key)
            .map(|(_, hash, _)| hash)
    }

    /// The token id carried by the value under `key`, if it is a token value.
    pub fn token_id_of(&self, key: &str) -> Option<&TokenId> {
        self.hashes
            .iter()
            .find(|(k, _, _)| &**k == key)
            .and_then(|(_, _, id)| id.as_ref())
    }
}

fn hash_values<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Box<Hashes>, D::Error> {
    let data = Option::<BTreeMap<String, ByteString>>::deserialize(deserializer)?;
    Ok(Box::new(
        data.unwrap_or_default()
            .into_iter()
            .map(|(key, value)| {
                let id = token_id_in(&value.0);
                (key.into_boxed_str(), hash_bytes(&value.0), id)
            })
            .collect(),
    ))
}

/// The (non-secret) token id of a token value.
fn token_id_in(value: &[u8]) -> Option<TokenId> {
    let text = std::str::from_utf8(value).ok()?;
    let parsed = tokens::parse(text).ok()?;
    TokenId::parse(parsed.token_id()).ok()
}

fn hash_bytes(value: &[u8]) -> TokenHash {
    match std::str::from_utf8(value) {
        Ok(text) => tokens::hash_value(text),
        // Not a token value (the operator writes UTF-8 only): a hash nothing matches.
        Err(_) => tokens::hash_value("\u{0}invalid-utf8"),
    }
}

impl k8s_openapi::Resource for HashedSecret {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Secret";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "secrets";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for HashedSecret {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_hashed_while_decoding() {
        let value = "not-a-real-token";
        let encoded = "bm90LWEtcmVhbC10b2tlbg=="; // base64 of `value`
        let secret: HashedSecret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "ns"},
            "data": {"token": encoded, "binary": "/w=="}
        }))
        .expect("decodes");
        assert_eq!(secret.hash_of("token"), Some(&tokens::hash_value(value)));
        assert!(secret.hash_of("binary").is_some());
        assert!(secret.hash_of("missing").is_none());
        assert!(!format!("{secret:?}").contains(encoded));
    }

    /// Like a cached token (controller::runner::slim_tests), a cached Secret is an
    /// `Arc` rounded up to an allocation size class: 384 bytes, the next is 448.
    #[test]
    fn a_cached_secret_fits_the_384_byte_allocation_class() {
        let arc = 2 * size_of::<usize>() + size_of::<HashedSecret>();
        assert!(arc <= 384, "an Arc<HashedSecret> takes {arc} bytes");
    }

    #[test]
    fn a_secret_without_data_has_no_hashes() {
        for data in [json!(null), json!({})] {
            let secret: HashedSecret = serde_json::from_value(json!({
                "metadata": {"name": "s"}, "data": data
            }))
            .expect("decodes");
            assert!(secret.hash_of("token").is_none());
        }
        let secret: HashedSecret =
            serde_json::from_value(json!({"metadata": {"name": "s"}})).expect("decodes");
        assert!(secret.hash_of("token").is_none());
    }
}
